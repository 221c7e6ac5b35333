//! The Sluice RESP server: connections, request parsing, typed commands, blocking reads and
//! the pub/sub hub, over the storage engine in `sluice-engine`.

#![deny(unsafe_code)]

pub mod blocking;
pub mod client;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod expiry;
pub mod glob;
pub mod pubsub;
pub mod reply;
pub mod resp;
pub mod server;
pub mod shutdown;

/// The Redis version Sluice reports (HELLO, INFO) so clients enable Redis 7 features.
pub const REDIS_VERSION: &str = "7.0.15";

/// Logs a line to stderr with a timestamp, as Redis' log does (`pid:M date time * msg`).
pub fn log(msg: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let days = secs / 86400;
    let (y, mo, d) = civil_from_days(days as i64);
    let level = if msg.starts_with('#') { "" } else { "* " };
    eprintln!(
        "{}:M {d:02} {} {y} {h:02}:{m:02}:{s:02}.{:03} {level}{msg}",
        std::process::id(),
        MONTHS[(mo as usize).saturating_sub(1) % 12],
        now.subsec_millis()
    );
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
