//! `sluice-server [config-file] [--directive value ...]`: the Sluice RESP server.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("-v" | "--version")) {
        println!("Sluice server v={}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        println!("Usage: sluice-server [/path/to/sluice.conf] [--directive value ...]");
        println!("Directives as in redis.conf: port, bind, dir, appendfsync, requirepass, ...");
        return;
    }
    let config = match sluice_server::config::Config::from_args(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(1);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(sluice_server::server::start(config));
    std::process::exit(code);
}
