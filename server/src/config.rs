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

/// Parsed `notify-keyspace-events`: which classes are published, on which channel kinds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyspaceFlags {
    /// `K`: publish on `__keyspace@<db>__:<key>`.
    pub keyspace: bool,
    /// `E`: publish on `__keyevent@<db>__:<event>`.
    pub keyevent: bool,
    /// Enabled class letters (`A` expanded), e.g. "gtx".
    pub classes: String,
}

impl KeyspaceFlags {
    /// Whether events of this class letter are published at all.
    pub fn wants(&self, class: char) -> bool {
        (self.keyspace || self.keyevent) && self.classes.contains(class)
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
            config_file: None,
        }
    }
}
