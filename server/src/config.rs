//! Server configuration: redis.conf-style directives from a file and `--directive value`
//! arguments, parsed as Redis parses them.

use std::path::PathBuf;

use sluice_engine::FsyncPolicy;

/// Limits of one client-output-buffer-limit class (bytes; 0 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OutputLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_seconds: u64,
}

impl OutputLimit {
    /// `n` bytes of output reach the hard limit (close at once). Reaching counts, as in
    /// Redis' `checkClientOutputBufferLimits`, for every client class.
    pub fn over_hard(&self, n: u64) -> bool {
        self.hard > 0 && n >= self.hard
    }

    /// `n` bytes reach the soft limit (close if it lasts `soft_seconds`).
    pub fn over_soft(&self, n: u64) -> bool {
        self.soft > 0 && n >= self.soft
    }
}

/// Parsed `notify-keyspace-events`: which classes are published, on which channel kinds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyspaceFlags {
    /// `K`: publish on `__keyspace@<db>__:<key>`.
    pub keyspace: bool,
    /// `E`: publish on `__keyevent@<db>__:<event>`.
    pub keyevent: bool,
    /// Enabled class letters (`A` expanded), in Redis' canonical order, e.g. "gxt".
    pub classes: String,
}

/// The classes `A` stands for, in the order Redis prints them.
const ALL_CLASSES: &str = "g$lshzxetd";
/// Every class letter Redis accepts (besides `A`, `K`, `E`).
const CLASS_ORDER: &str = "g$lshzxetdmn";

impl KeyspaceFlags {
    /// Whether events of this class letter are published at all.
    pub fn wants(&self, class: char) -> bool {
        (self.keyspace || self.keyevent) && self.classes.contains(class)
    }

    /// Parses a flag string as Redis' `keyspaceEventsStringToFlags`.
    pub fn parse(s: &str) -> Result<KeyspaceFlags, String> {
        let mut f = KeyspaceFlags::default();
        let mut set = String::new();
        for c in s.chars() {
            match c {
                'A' => set.push_str(ALL_CLASSES),
                'K' => f.keyspace = true,
                'E' => f.keyevent = true,
                c if CLASS_ORDER.contains(c) => set.push(c),
                _ => {
                    return Err("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string())
                }
            }
        }
        f.classes = CLASS_ORDER.chars().filter(|c| set.contains(*c)).collect();
        Ok(f)
    }

    /// Formats as Redis' `keyspaceEventsFlagsToString` (which omits `n`).
    pub fn to_redis_string(&self) -> String {
        let mut out = String::new();
        if ALL_CLASSES.chars().all(|c| self.classes.contains(c)) {
            out.push('A');
        } else {
            // Every class but `m`, which is printed last: `n` shows here (not under `A`).
            out.extend(
                CLASS_ORDER
                    .chars()
                    .filter(|c| *c != 'm' && self.classes.contains(*c)),
            );
        }
        if self.keyspace {
            out.push('K');
        }
        if self.keyevent {
            out.push('E');
        }
        if self.classes.contains('m') {
            out.push('m');
        }
        out
    }
}

/// Every directive the server understands.
#[derive(Clone, Debug)]
pub struct Config {
    pub port: u16,
    pub bind: Vec<String>,
    pub dir: PathBuf,
    pub appendfsync: FsyncPolicy,
    pub requirepass: Option<String>,
    pub protected_mode: bool,
    pub databases: u32,
    pub maxclients: u64,
    pub proto_max_bulk_len: u64,
    pub client_query_buffer_limit: u64,
    pub output_normal: OutputLimit,
    pub output_replica: OutputLimit,
    pub output_pubsub: OutputLimit,
    pub notify_keyspace_events: KeyspaceFlags,
    /// Idle seconds before a client is disconnected (0 = never).
    pub timeout: u64,
    /// Threads serving connections; 0 = one per CPU (or `TOKIO_WORKER_THREADS`).
    pub worker_threads: usize,
    /// The config file given on the command line, if any (INFO server `config_file`).
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 6379,
            bind: vec!["127.0.0.1".to_string()],
            dir: PathBuf::from("./sluice-data"),
            appendfsync: FsyncPolicy::EverySec,
            requirepass: None,
            protected_mode: true,
            databases: 16,
            maxclients: 10000,
            proto_max_bulk_len: 512 << 20,
            client_query_buffer_limit: 1 << 30,
            output_normal: OutputLimit::default(),
            output_replica: OutputLimit {
                hard: 256 << 20,
                soft: 64 << 20,
                soft_seconds: 60,
            },
            output_pubsub: OutputLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_seconds: 60,
            },
            notify_keyspace_events: KeyspaceFlags::default(),
            timeout: 0,
            worker_threads: 0,
            config_file: None,
        }
    }
}

/// Every directive, in the order CONFIG GET lists them.
pub const DIRECTIVES: &[&str] = &[
    "port",
    "bind",
    "dir",
    "appendfsync",
    "requirepass",
    "protected-mode",
    "databases",
    "maxclients",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "client-output-buffer-limit",
    "notify-keyspace-events",
    "timeout",
    "worker-threads",
];

/// Directives CONFIG SET refuses ("can't set immutable config"): they shape the listener
/// and the engine at start-up.
pub const IMMUTABLE: &[&str] = &["port", "bind", "dir", "databases", "worker-threads"];

/// The most `worker-threads` accepts.
const MAX_WORKER_THREADS: i64 = 1024;

/// Why a directive was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectiveError {
    /// Not a directive we know (or the wrong number of arguments for one).
    Unknown,
    /// Known directive, bad argument: Redis' explanation.
    Invalid(String),
}

impl Config {
    /// Sets one directive from its arguments (already split), validating as Redis does.
    pub fn set(&mut self, name: &str, args: &[String]) -> Result<(), DirectiveError> {
        use DirectiveError::{Invalid, Unknown};
        let name = name.to_ascii_lowercase();
        if name == "client-output-buffer-limit" {
            return self.set_output_limits(args).map_err(Invalid);
        }
        if name == "bind" {
            if args.is_empty() {
                return Err(Invalid("wrong number of arguments".into()));
            }
            self.bind = args.to_vec();
            return Ok(());
        }
        if !DIRECTIVES.contains(&name.as_str()) {
            return Err(Unknown);
        }
        let [arg] = args else {
            return Err(Invalid("wrong number of arguments".into()));
        };
        match name.as_str() {
            "port" => self.port = int_in(arg, 0, 65535)? as u16,
            "dir" => self.dir = PathBuf::from(arg),
            "appendfsync" => {
                self.appendfsync = FsyncPolicy::parse(arg).ok_or_else(|| {
                    Invalid(
                        "argument(s) must be one of the following: everysec, always, no"
                            .to_string(),
                    )
                })?
            }
            "requirepass" => {
                self.requirepass = if arg.is_empty() {
                    None
                } else {
                    Some(arg.clone())
                }
            }
            "protected-mode" => self.protected_mode = yes_no(arg)?,
            "databases" => self.databases = int_in(arg, 1, i64::from(i32::MAX))? as u32,
            "maxclients" => self.maxclients = int_in(arg, 1, i64::from(u32::MAX))? as u64,
            "proto-max-bulk-len" => self.proto_max_bulk_len = memory_in(arg, 1 << 20)?,
            "client-query-buffer-limit" => {
                self.client_query_buffer_limit = memory_in(arg, 1 << 20)?
            }
            "notify-keyspace-events" => {
                self.notify_keyspace_events = KeyspaceFlags::parse(arg).map_err(Invalid)?
            }
            "timeout" => self.timeout = int_in(arg, 0, i64::from(i32::MAX))? as u64,
            "worker-threads" => self.worker_threads = int_in(arg, 0, MAX_WORKER_THREADS)? as usize,
            _ => return Err(Unknown),
        }
        Ok(())
    }

    /// A directive's current value as CONFIG GET prints it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "port" => self.port.to_string(),
            "bind" => self.bind.join(" "),
            "dir" => std::fs::canonicalize(&self.dir)
                .unwrap_or_else(|_| self.dir.clone())
                .display()
                .to_string(),
            "appendfsync" => self.appendfsync.as_str().to_string(),
            "requirepass" => self.requirepass.clone().unwrap_or_default(),
            "protected-mode" => if self.protected_mode { "yes" } else { "no" }.to_string(),
            "databases" => self.databases.to_string(),
            "maxclients" => self.maxclients.to_string(),
            "proto-max-bulk-len" => self.proto_max_bulk_len.to_string(),
            "client-query-buffer-limit" => self.client_query_buffer_limit.to_string(),
            "client-output-buffer-limit" => {
                let f = |class: &str, l: &OutputLimit| {
                    format!("{class} {} {} {}", l.hard, l.soft, l.soft_seconds)
                };
                format!(
                    "{} {} {}",
                    f("normal", &self.output_normal),
                    f("slave", &self.output_replica),
                    f("pubsub", &self.output_pubsub)
                )
            }
            "notify-keyspace-events" => self.notify_keyspace_events.to_redis_string(),
            "timeout" => self.timeout.to_string(),
            "worker-threads" => self.worker_threads.to_string(),
            _ => return None,
        })
    }

    /// `client-output-buffer-limit <class> <hard> <soft> <soft seconds> [<class> ...]`.
    fn set_output_limits(&mut self, args: &[String]) -> Result<(), String> {
        // CONFIG SET passes the whole value as one string; a config line passes words.
        let words: Vec<&str> = args.iter().flat_map(|a| a.split_whitespace()).collect();
        if words.is_empty() || !words.len().is_multiple_of(4) {
            return Err("Wrong number of arguments in buffer limit configuration.".into());
        }
        let mut next = (self.output_normal, self.output_replica, self.output_pubsub);
        for chunk in words.chunks(4) {
            let [class, hard, soft, secs] = chunk else {
                return Err("Wrong number of arguments in buffer limit configuration.".into());
            };
            let slot = match class.to_ascii_lowercase().as_str() {
                "normal" => &mut next.0,
                "replica" | "slave" => &mut next.1,
                "pubsub" => &mut next.2,
                _ => {
                    return Err(
                        "Invalid client class specified in buffer limit configuration.".into(),
                    )
                }
            };
            let bad =
                || "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
            let hard = parse_memory(hard).ok_or_else(bad)?;
            let soft = parse_memory(soft).ok_or_else(bad)?;
            let secs = secs
                .parse::<i64>()
                .ok()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(bad)?;
            *slot = OutputLimit {
                hard,
                soft,
                soft_seconds: secs,
            };
        }
        (self.output_normal, self.output_replica, self.output_pubsub) = next;
        Ok(())
    }

    /// Builds a configuration from the command line (`[config-file] [--directive value ...]`),
    /// as `redis-server` does: the file's lines, then one line per `--directive`.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let mut text = String::new();
        let mut rest = args;
        let mut config_file = None;
        if let Some(first) = args.first() {
            if !first.starts_with("--") {
                text = std::fs::read_to_string(first)
                    .map_err(|e| format!("Fatal error, can't open config file '{first}': {e}"))?;
                config_file = Some(PathBuf::from(first));
                rest = &args[1..];
            }
        }
        let mut options = String::new();
        for arg in rest {
            if let Some(name) = arg.strip_prefix("--") {
                if !options.is_empty() {
                    options.push('\n');
                }
                options.push_str(name);
            } else {
                options.push(' ');
                options.push_str(&quote(arg));
            }
        }
        if !options.is_empty() {
            text.push('\n');
            text.push_str(&options);
        }
        let mut config = Config::from_text(&text)?;
        config.config_file = config_file;
        Ok(config)
    }

    /// Parses redis.conf-style text. On error returns Redis' FATAL CONFIG FILE ERROR block.
    pub fn from_text(text: &str) -> Result<Config, String> {
        let mut config = Config::default();
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fatal = |why: &str| {
                format!(
                    "\n*** FATAL CONFIG FILE ERROR (Sluice {}) ***\nReading the configuration file, at line {}\n>>> '{}'\n{}",
                    env!("CARGO_PKG_VERSION"),
                    n + 1,
                    line,
                    why
                )
            };
            let words = crate::resp::split_args(line.as_bytes())
                .ok_or_else(|| fatal("Unbalanced quotes in configuration line"))?;
            let words: Vec<String> = words
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            let Some((name, args)) = words.split_first() else {
                continue;
            };
            match config.set(name, args) {
                Ok(()) => {}
                Err(DirectiveError::Unknown) => {
                    return Err(fatal("Bad directive or wrong number of arguments"))
                }
                Err(DirectiveError::Invalid(why)) => return Err(fatal(&why)),
            }
        }
        Ok(config)
    }
}

/// Quotes a command-line value like Redis' `sdscatrepr` so it reparses to itself.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn int_in(s: &str, min: i64, max: i64) -> Result<i64, DirectiveError> {
    let v: i64 = s.parse().map_err(|_| {
        DirectiveError::Invalid("argument couldn't be parsed into an integer".into())
    })?;
    if v < min || v > max {
        return Err(DirectiveError::Invalid(format!(
            "argument must be between {min} and {max} inclusive"
        )));
    }
    Ok(v)
}

fn memory_in(s: &str, min: u64) -> Result<u64, DirectiveError> {
    let v = parse_memory(s)
        .ok_or_else(|| DirectiveError::Invalid("argument must be a memory value".into()))?;
    if v < min || v > i64::MAX as u64 {
        return Err(DirectiveError::Invalid(format!(
            "argument must be between {min} and {} inclusive",
            i64::MAX
        )));
    }
    Ok(v)
}

fn yes_no(s: &str) -> Result<bool, DirectiveError> {
    match s.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(DirectiveError::Invalid(
            "argument must be 'yes' or 'no'".into(),
        )),
    }
}

/// A memory value as Redis' `memtoull`: a number with an optional unit (k=1000, kb=1024,
/// m, mb, g, gb; case-insensitive).
pub fn parse_memory(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if num.is_empty() {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_limits_are_reached_at_their_size_and_zero_means_none() {
        let limit = OutputLimit {
            hard: 100,
            soft: 10,
            soft_seconds: 1,
        };
        assert!(!limit.over_hard(99));
        assert!(limit.over_hard(100));
        assert!(!limit.over_soft(9));
        assert!(limit.over_soft(10));
        let none = OutputLimit::default();
        assert!(!none.over_hard(u64::MAX));
        assert!(!none.over_soft(u64::MAX));
    }

    #[test]
    fn defaults() {
        let c = Config::from_args(&[]).unwrap();
        assert_eq!(c.port, 6379);
        assert_eq!(c.bind, ["127.0.0.1"]);
        assert_eq!(c.dir, PathBuf::from("./sluice-data"));
        assert_eq!(c.appendfsync, FsyncPolicy::EverySec);
        assert_eq!(
            c.get("client-output-buffer-limit").unwrap(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
    }

    #[test]
    fn command_line_directives() {
        let c = Config::from_args(&args(&[
            "--port",
            "7000",
            "--bind",
            "127.0.0.1",
            "::1",
            "--appendfsync",
            "always",
            "--client-output-buffer-limit",
            "pubsub 1mb 2kb 3",
            "--notify-keyspace-events",
            "KEA",
        ]))
        .unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.bind, ["127.0.0.1", "::1"]);
        assert_eq!(c.appendfsync, FsyncPolicy::Always);
        assert_eq!(c.output_pubsub.hard, 1 << 20);
        assert_eq!(c.output_pubsub.soft, 2048);
        assert_eq!(c.get("notify-keyspace-events").unwrap(), "AKE");
    }

    #[test]
    fn worker_threads_default_to_one_per_cpu_and_are_bounded() {
        assert_eq!(Config::from_args(&[]).unwrap().worker_threads, 0);
        let c = Config::from_text("worker-threads 3").unwrap();
        assert_eq!(c.worker_threads, 3);
        assert_eq!(c.get("worker-threads").unwrap(), "3");
        let err = Config::from_text("worker-threads 1025").unwrap_err();
        assert!(
            err.ends_with("argument must be between 0 and 1024 inclusive"),
            "{err}"
        );
        assert!(IMMUTABLE.contains(&"worker-threads"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = Config::from_args(&args(&["--port", "7778", "--foo", "1"])).unwrap_err();
        assert!(err.contains("*** FATAL CONFIG FILE ERROR"), "{err}");
        assert!(
            err.contains("at line 3\n>>> 'foo \"1\"'\nBad directive or wrong number of arguments"),
            "{err}"
        );
        let err = Config::from_text("port 1\n# c\n\nappendfsync sometimes\n").unwrap_err();
        assert!(err.contains("at line 4\n>>> 'appendfsync sometimes'\nargument(s) must be one of the following: everysec, always, no"), "{err}");
        let err = Config::from_text("port \"1\n").unwrap_err();
        assert!(
            err.ends_with("Unbalanced quotes in configuration line"),
            "{err}"
        );
        let err = Config::from_text("port abc").unwrap_err();
        assert!(
            err.ends_with("argument couldn't be parsed into an integer"),
            "{err}"
        );
        let err = Config::from_text("timeout -1").unwrap_err();
        assert!(err.ends_with("argument must be between 0 and 2147483647 inclusive"));
    }

    #[test]
    fn keyspace_flags_format_like_redis() {
        let f = KeyspaceFlags::parse("KExg").unwrap();
        assert_eq!(f.to_redis_string(), "gxKE");
        assert!(f.wants('x') && !f.wants('t'));
        assert_eq!(KeyspaceFlags::parse("Em").unwrap().to_redis_string(), "Em");
        assert_eq!(KeyspaceFlags::parse("En").unwrap().to_redis_string(), "nE");
        assert_eq!(
            KeyspaceFlags::parse("Eg$lshzxetdn")
                .unwrap()
                .to_redis_string(),
            "AE"
        );
        assert!(KeyspaceFlags::parse("Q").is_err());
        assert!(!KeyspaceFlags::parse("A").unwrap().wants('g'));
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("2k"), Some(2000));
        assert_eq!(parse_memory("3MB"), Some(3 << 20));
        assert_eq!(parse_memory("x"), None);
        assert_eq!(parse_memory("1x"), None);
    }
}
