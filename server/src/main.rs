fn main() {
    eprintln!("sluice-server: not yet wired");
    std::process::exit(1);
}
