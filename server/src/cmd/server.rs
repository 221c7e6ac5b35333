//! Server commands: COMMAND, INFO, CONFIG, TIME, SHUTDOWN, DEBUG RELOAD, WAIT, ROLE, and
//! MONITOR (which is unsupported and says so).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::connection::help;
use super::keys::glob_match;
use super::stream::read;
use super::table::{self, COMMANDS};
use super::{int_arg, syntax_error, Ctx, Outcome};
use crate::blocking::BlockRequest;
use crate::connection::{ClientState, Execution};
use crate::reply::Reply;
use crate::server::{lock, Shared};

/// A parsed server command.
#[derive(Debug)]
pub enum ServerCommand {
    Command(CommandSub),
    Info(Vec<String>),
    ConfigGet(Vec<Bytes>),
    ConfigSet(Vec<(String, String)>),
    ConfigResetStat,
    ConfigHelp,
    Time,
    /// LASTSAVE: with no RDB snapshots, the start of the server, as Redis answers with AOF
    /// only (`save ""`): every write is persisted as it happens, by the fsync policy.
    LastSave,
    Shutdown {
        abort: bool,
    },
    DebugReload,
    Monitor,
    /// WAIT: a single node has no replicas to wait for, so it blocks for the whole timeout
    /// when asked for any (as Redis does without replicas) and answers 0.
    Wait {
        replicas: i64,
        timeout_ms: u64,
    },
    Role,
}

/// COMMAND subcommands.
#[derive(Debug)]
pub enum CommandSub {
    All,
    Count,
    Info(Vec<Bytes>),
    Docs(Vec<Bytes>),
    List(Option<Bytes>),
    Help,
}

/// Parses a server command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<ServerCommand, Reply> {
    let lower = |b: &Bytes| String::from_utf8_lossy(b).to_ascii_lowercase();
    Ok(match name {
        "command" => ServerCommand::Command(match args.first().map(lower).as_deref() {
            None => CommandSub::All,
            Some("count") => CommandSub::Count,
            Some("info") => CommandSub::Info(args[1..].to_vec()),
            Some("docs") => CommandSub::Docs(args[1..].to_vec()),
            Some("list") => match &args[1..] {
                [] => CommandSub::List(None),
                [f, kind, value] if f.eq_ignore_ascii_case(b"FILTERBY") => {
                    if kind.eq_ignore_ascii_case(b"PATTERN") {
                        CommandSub::List(Some(value.clone()))
                    } else if kind.eq_ignore_ascii_case(b"ACLCAT")
                        || kind.eq_ignore_ascii_case(b"MODULE")
                    {
                        // No module commands; ACL categories are not tracked: match nothing.
                        CommandSub::List(Some(Bytes::from_static(b"\0")))
                    } else {
                        return Err(syntax_error());
                    }
                }
                _ => return Err(syntax_error()),
            },
            Some(_) => CommandSub::Help,
        }),
        "info" => ServerCommand::Info(args.iter().map(lower).collect()),
        "config" => match lower(&args[0]).as_str() {
            "get" => ServerCommand::ConfigGet(args[1..].to_vec()),
            "set" => {
                let rest = &args[1..];
                if !rest.len().is_multiple_of(2) {
                    return Err(super::wrong_arity("config|set"));
                }
                let mut pairs: Vec<(String, String)> = Vec::new();
                for kv in rest.chunks(2) {
                    let [k, v] = kv else {
                        return Err(super::wrong_arity("config|set"));
                    };
                    let k = lower(k);
                    if pairs.iter().any(|(seen, _)| *seen == k) {
                        return Err(Reply::err(format!(
                            "CONFIG SET failed (possibly related to argument '{k}') - duplicate parameter"
                        )));
                    }
                    pairs.push((k, String::from_utf8_lossy(v).into_owned()));
                }
                ServerCommand::ConfigSet(pairs)
            }
            "resetstat" => ServerCommand::ConfigResetStat,
            _ => ServerCommand::ConfigHelp,
        },
        "time" => ServerCommand::Time,
        "lastsave" => ServerCommand::LastSave,
        "shutdown" => {
            let mut abort = false;
            for a in args {
                match lower(a).as_str() {
                    "nosave" | "save" | "now" | "force" => {}
                    "abort" => abort = true,
                    _ => return Err(syntax_error()),
                }
            }
            ServerCommand::Shutdown { abort }
        }
        "debug" => match args {
            [sub] if sub.eq_ignore_ascii_case(b"RELOAD") => ServerCommand::DebugReload,
            [sub, ..] => {
                return Err(Reply::err(format!(
                    "Unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
                    String::from_utf8_lossy(sub)
                )))
            }
            [] => return Err(super::wrong_arity("debug")),
        },
        "monitor" => ServerCommand::Monitor,
        "wait" => match args {
            [replicas, timeout] => ServerCommand::Wait {
                replicas: int_arg(replicas)?,
                timeout_ms: read::parse_timeout(timeout)?,
            },
            _ => return Err(super::wrong_arity("wait")),
        },
        "role" => ServerCommand::Role,
        _ => return Err(super::unknown_command(name.as_bytes(), args)),
    })
}

/// Executes a server command with the engine locked.
pub fn execute(
    cmd: ServerCommand,
    ctx: &mut Ctx,
    state: &mut ClientState,
    shared: &Arc<Shared>,
) -> Execution {
    let reply = match cmd {
        ServerCommand::Command(sub) => command(sub),
        ServerCommand::Info(sections) => {
            let text = info(&sections, ctx, shared);
            Reply::Verbatim("txt", Bytes::from(text.into_bytes()))
        }
        ServerCommand::ConfigGet(patterns) => {
            let config = shared.config();
            let mut pairs = Vec::new();
            for name in crate::config::DIRECTIVES {
                if patterns
                    .iter()
                    .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
                {
                    if let Some(v) = config.get(name) {
                        pairs.push((Reply::str(name), Reply::bulk(v.into_bytes())));
                    }
                }
            }
            // Read-only answers some tools (redis-benchmark) ask for.
            for (name, value) in [("save", ""), ("appendonly", "yes")] {
                if patterns.iter().any(|p| {
                    p.as_ref() != b"*" && glob_match(&p.to_ascii_lowercase(), name.as_bytes())
                }) {
                    pairs.push((Reply::str(name), Reply::str(value)));
                }
            }
            Reply::Map(pairs)
        }
        ServerCommand::ConfigSet(pairs) => config_set(pairs, ctx, shared),
        ServerCommand::ConfigResetStat => {
            shared.stats.reset();
            shared.hub.reset_stats();
            Reply::Ok
        }
        ServerCommand::ConfigHelp => help(
            "CONFIG",
            &[
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
            ],
        ),
        ServerCommand::Time => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Reply::Array(vec![
                Reply::bulk(now.as_secs().to_string().into_bytes()),
                Reply::bulk(now.subsec_micros().to_string().into_bytes()),
            ])
        }
        ServerCommand::LastSave => Reply::Int(shared.started_unix as i64),
        ServerCommand::Shutdown { abort } => {
            if abort {
                Reply::err("No shutdown in progress.")
            } else {
                crate::log("User requested shutdown...");
                return Execution::Shutdown;
            }
        }
        ServerCommand::DebugReload => {
            if ctx.in_multi {
                Reply::err("DEBUG RELOAD is not allowed inside MULTI")
            } else {
                return Execution::Reload;
            }
        }
        ServerCommand::Monitor => Reply::err("MONITOR is not supported by Sluice"),
        ServerCommand::Wait {
            replicas,
            timeout_ms,
        } => {
            // No replica ever acknowledges; Redis answers at once when that is enough, or
            // when the client may not block (inside MULTI).
            if replicas <= 0 || ctx.in_multi {
                Reply::Int(0)
            } else {
                return Execution::Outcome(Outcome::Block(BlockRequest {
                    keys: Vec::new(),
                    group: None,
                    count: 0,
                    timeout_ms,
                    timeout_reply: Reply::Int(0),
                }));
            }
        }
        ServerCommand::Role => Reply::Array(vec![
            Reply::str("master"),
            Reply::Int(0),
            Reply::Array(Vec::new()),
        ]),
    };
    let _ = state;
    Execution::Outcome(Outcome::Reply(reply))
}

fn command(sub: CommandSub) -> Reply {
    match sub {
        CommandSub::All => Reply::Array(COMMANDS.iter().map(table::info_reply).collect()),
        CommandSub::Count => Reply::Int(COMMANDS.len() as i64),
        CommandSub::Info(names) => {
            if names.is_empty() {
                return Reply::Array(COMMANDS.iter().map(table::info_reply).collect());
            }
            Reply::Array(
                names
                    .iter()
                    .map(|n| table::lookup(n).map_or(Reply::Null, table::info_reply))
                    .collect(),
            )
        }
        CommandSub::Docs(names) => {
            let specs: Vec<_> = if names.is_empty() {
                COMMANDS.iter().collect()
            } else {
                names.iter().filter_map(|n| table::lookup(n)).collect()
            };
            Reply::Map(specs.into_iter().map(table::docs_reply).collect())
        }
        CommandSub::List(pattern) => Reply::Array(
            COMMANDS
                .iter()
                .filter(|s| {
                    pattern
                        .as_ref()
                        .is_none_or(|p| glob_match(&p.to_ascii_lowercase(), s.name.as_bytes()))
                })
                .map(|s| Reply::str(s.name))
                .collect(),
        ),
        CommandSub::Help => help(
            "COMMAND",
            &[
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
            ],
        ),
    }
}

/// CONFIG SET: all pairs are validated on a copy first, so it applies all or nothing.
fn config_set(pairs: Vec<(String, String)>, ctx: &mut Ctx, shared: &Shared) -> Reply {
    let mut next = shared.config().clone();
    for (name, value) in &pairs {
        if !crate::config::DIRECTIVES.contains(&name.as_str()) {
            return Reply::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{name}'"
            ));
        }
        if crate::config::IMMUTABLE.contains(&name.as_str()) {
            return Reply::err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
            ));
        }
        let args: Vec<String> = if name == "bind" {
            value.split_whitespace().map(str::to_string).collect()
        } else {
            vec![value.clone()]
        };
        if let Err(e) = next.set(name, &args) {
            let why = match e {
                crate::config::DirectiveError::Invalid(why) => why,
                crate::config::DirectiveError::Unknown => "Bad directive".to_string(),
            };
            return Reply::err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - {why}"
            ));
        }
    }
    if ctx.engine.fsync_policy() != next.appendfsync {
        if let Err(e) = ctx.engine.set_fsync_policy(next.appendfsync) {
            return super::engine_error(&e);
        }
    }
    shared.hub.set_output_limit(next.output_pubsub);
    *shared.config.write().unwrap_or_else(|e| e.into_inner()) = next;
    Reply::Ok
}

/// INFO's sections in the order it prints them, and whether INFO with no argument (or
/// `default`) includes each; `all` and `everything` include every one.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("cluster", true),
    ("keyspace", true),
];

/// The INFO text for the requested sections, formatted as Redis does.
pub fn info(requested: &[String], ctx: &mut Ctx, shared: &Shared) -> String {
    let wanted = |name: &str, default: bool| {
        (default && requested.is_empty())
            || requested.iter().any(|r| {
                r == name || r == "all" || r == "everything" || (default && r == "default")
            })
    };
    let mut out = String::new();
    let mut first = true;
    for &(name, default) in SECTIONS {
        if !wanted(name, default) {
            continue;
        }
        if !first {
            out.push_str("\r\n");
        }
        first = false;
        section(name, &mut out, ctx, shared);
    }
    out
}

fn section(name: &str, out: &mut String, ctx: &mut Ctx, shared: &Shared) {
    let config = shared.config().clone();
    let stats = &shared.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    match name {
        "server" => {
            let uptime = shared.started.elapsed().as_secs();
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            out.push_str("# Server\r\n");
            kv(out, "redis_version", &crate::REDIS_VERSION);
            kv(out, "sluice_version", &env!("CARGO_PKG_VERSION"));
            kv(out, "redis_git_sha1", &"00000000");
            kv(out, "redis_git_dirty", &0);
            kv(out, "redis_mode", &"standalone");
            kv(out, "os", &std::env::consts::OS);
            kv(out, "arch_bits", &(usize::BITS));
            kv(out, "multiplexing_api", &"tokio");
            kv(out, "process_id", &std::process::id());
            kv(out, "run_id", &run_id());
            kv(out, "tcp_port", &config.port);
            kv(out, "server_time_usec", &now_us);
            kv(out, "uptime_in_seconds", &uptime);
            kv(out, "uptime_in_days", &(uptime / 86400));
            kv(out, "hz", &10);
            kv(out, "configured_hz", &10);
            kv(
                out,
                "executable",
                &std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            kv(
                out,
                "config_file",
                &config
                    .config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            return;
        }
        "clients" => {
            out.push_str("# Clients\r\n");
            kv(out, "connected_clients", &shared.clients.len());
            kv(out, "cluster_connections", &0);
            kv(out, "maxclients", &config.maxclients);
            kv(out, "client_recent_max_input_buffer", &0);
            kv(out, "client_recent_max_output_buffer", &0);
            kv(out, "blocked_clients", &shared.blocking.blocked_clients());
            kv(out, "tracking_clients", &0);
            kv(
                out,
                "clients_in_timeout_table",
                &shared.blocking.blocked_clients(),
            );
            return;
        }
        _ => {}
    }
    match name {
        "memory" => {
            let rss = rss_bytes();
            out.push_str("# Memory\r\n");
            kv(out, "used_memory", &rss);
            kv(out, "used_memory_human", &human(rss));
            kv(out, "used_memory_rss", &rss);
            kv(out, "used_memory_rss_human", &human(rss));
            kv(out, "maxmemory", &0);
            kv(out, "maxmemory_human", &"0B");
            kv(out, "maxmemory_policy", &"noeviction");
            kv(out, "mem_allocator", &"libc");
        }
        "persistence" => {
            let es = ctx.engine.stats();
            let report = lock(&shared.recovery).clone();
            out.push_str("# Persistence\r\n");
            kv(out, "loading", &0);
            kv(out, "async_loading", &0);
            kv(out, "rdb_changes_since_last_save", &0);
            kv(out, "rdb_bgsave_in_progress", &0);
            kv(out, "rdb_last_save_time", &shared.started_unix);
            kv(out, "rdb_last_bgsave_status", &"ok");
            kv(out, "aof_enabled", &1);
            kv(out, "aof_rewrite_in_progress", &0);
            kv(
                out,
                "aof_last_write_status",
                &if es.poisoned.is_some() { "err" } else { "ok" },
            );
            kv(out, "appendfsync", &ctx.engine.fsync_policy().as_str());
            kv(out, "sluice_fsyncs", &es.fsyncs);
            kv(out, "sluice_bytes_written", &es.bytes_written);
            kv(out, "sluice_last_fsync_ok", &u8::from(es.last_fsync_ok));
            kv(
                out,
                "sluice_write_error",
                &es.poisoned.clone().unwrap_or_default(),
            );
            kv(out, "sluice_recovered_streams", &report.streams);
            kv(out, "sluice_recovered_segments", &report.segments);
            kv(
                out,
                "sluice_recovery_bytes_truncated",
                &report.bytes_truncated,
            );
            kv(
                out,
                "sluice_recovery_records_truncated",
                &report.records_truncated,
            );
            kv(
                out,
                "sluice_recovery_corruptions",
                &report.corruptions.len(),
            );
            kv(out, "sluice_recovery_ms", &(report.elapsed.as_millis()));
        }
        "stats" => {
            out.push_str("# Stats\r\n");
            kv(
                out,
                "total_connections_received",
                &load(&stats.connections_received),
            );
            kv(
                out,
                "total_commands_processed",
                &load(&stats.commands_processed),
            );
            kv(out, "instantaneous_ops_per_sec", &0);
            kv(out, "total_net_input_bytes", &load(&stats.net_input_bytes));
            kv(
                out,
                "total_net_output_bytes",
                &load(&stats.net_output_bytes),
            );
            kv(
                out,
                "rejected_connections",
                &load(&stats.rejected_connections),
            );
            kv(out, "expired_keys", &load(&stats.expired_keys));
            kv(out, "evicted_keys", &0);
            kv(out, "keyspace_hits", &load(&stats.keyspace_hits));
            kv(out, "keyspace_misses", &load(&stats.keyspace_misses));
            kv(
                out,
                "total_error_replies",
                &load(&stats.total_error_replies),
            );
            kv(
                out,
                "client_output_buffer_limit_disconnections",
                &shared.hub.output_limit_disconnections(),
            );
        }
        "replication" => {
            out.push_str("# Replication\r\n");
            kv(out, "role", &"master");
            kv(out, "connected_slaves", &0);
            kv(out, "master_failover_state", &"no-failover");
            kv(out, "master_replid", &run_id());
            kv(
                out,
                "master_replid2",
                &"0000000000000000000000000000000000000000",
            );
            kv(out, "master_repl_offset", &0);
            kv(out, "second_repl_offset", &-1);
            kv(out, "repl_backlog_active", &0);
        }
        "cpu" => {
            let (user, sys) = cpu_times();
            out.push_str("# CPU\r\n");
            kv(out, "used_cpu_sys", &format!("{sys:.6}"));
            kv(out, "used_cpu_user", &format!("{user:.6}"));
        }
        "modules" => out.push_str("# Modules\r\n"),
        "cluster" => {
            out.push_str("# Cluster\r\n");
            let _ = write!(out, "cluster_enabled:0\r\n");
        }
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            let rows = lock(&stats.commands).clone();
            let mut rows: Vec<_> = rows.into_iter().collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, s) in rows {
                let per = if s.calls == 0 {
                    0.0
                } else {
                    s.usec as f64 / s.calls as f64
                };
                let _ = write!(
                    out,
                    "cmdstat_{name}:calls={},usec={},usec_per_call={per:.2},rejected_calls={},failed_calls={}\r\n",
                    s.calls, s.usec, s.rejected_calls, s.failed_calls
                );
            }
        }
        "errorstats" => {
            out.push_str("# Errorstats\r\n");
            let rows = lock(&stats.errors).clone();
            let mut rows: Vec<_> = rows.into_iter().collect();
            rows.sort();
            for (code, n) in rows {
                let _ = write!(out, "errorstat_{code}:count={n}\r\n");
            }
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            for db in 0..ctx.engine.databases() {
                let keys = ctx.engine.key_count(db);
                if keys == 0 {
                    continue;
                }
                let expires = ctx
                    .engine
                    .keys(db)
                    .filter(|k| ctx.engine.expire_at(db, k).is_some())
                    .count();
                let _ = write!(out, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
        }
        _ => {}
    }
}

/// A stable 40-hex-digit id for this process (INFO run_id).
fn run_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut s = String::with_capacity(48);
        for _ in 0..3 {
            let _ = write!(s, "{:016x}", super::random_u64());
        }
        s.truncate(40);
        s
    })
    .clone()
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// Resident set size from /proc (0 where unavailable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// User and system CPU seconds from /proc/self/stat (clock ticks at 100 Hz).
fn cpu_times() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (tick(11), tick(12))
}

fn kv(out: &mut String, k: &str, v: &dyn std::fmt::Display) {
    let _ = write!(out, "{k}:{v}\r\n");
}
