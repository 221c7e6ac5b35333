//! Process-crash replay on the real binary: concurrent XADD writers with self-checking payloads,
//! a consumer group reading and acknowledging, and XDEL/XTRIM now and then; the server is
//! SIGKILLed at a random moment of every cycle, restarted on the same directory and checked
//! against everything the clients were told (see `verify` for the list of checks).
//!
//! Environment:
//! - `SLUICE_SEED=N` reproduces a run (every random choice derives from it; thread timing
//!   still varies, so a seed replays the same workload and kill times, not the same interleaving).
//! - `SLUICE_SOAK_CYCLES=N` / `SLUICE_SOAK_SECS=N` run a long soak (default: 50 cycles).
//! - `SLUICE_CRASH_FSYNC=always|everysec|no|mixed` (default `mixed`, `always` against
//!   Redis): the server's fsync policy (`mixed`: chosen per restart). A SIGKILL keeps the page cache, so every policy
//!   must keep every acknowledged write here; power loss is `engine/tests/power_loss.rs`' job.
//! - `SLUICE_CRASH_KEEP=1` keeps the data directory and server log of a passing run too.
//! - `SLUICE_CRASH_TARGET=redis` runs the same test against Debian's `redis-server` with an
//!   `appendfsync always` AOF, which validates the checker itself.
//!
//! Long soak: `SLUICE_SOAK_SECS=3600 cargo test --release -p sluice-server --test crash_replay -- --nocapture`

#[path = "crash_replay/model.rs"]
mod model;
#[path = "crash_replay/resp.rs"]
mod resp;
#[path = "crash_replay/server.rs"]
mod server;
#[path = "crash_replay/verify.rs"]
mod verify;
#[path = "crash_replay/workload.rs"]
mod workload;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use model::{mix, Model, GROUP, KEY};
use resp::{cmd, Conn, Value};
use server::{dir_bytes, log_tail, Server, Target, Workdir};
use workload::Shared;

const WRITERS: usize = 4;
const DEFAULT_CYCLES: u64 = 50;
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes straight to the process's stdout, past the test harness' capture, so the seed and
/// the summary line show in `cargo test` output.
fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

struct Config {
    seed: u64,
    cycles: u64,
    deadline: Option<Duration>,
    target: Target,
    fsync: String,
}

impl Config {
    fn from_env() -> Config {
        let seed = env_u64("SLUICE_SEED").unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            mix(t, u64::from(std::process::id()), 0)
        });
        let secs = env_u64("SLUICE_SOAK_SECS");
        let cycles = env_u64("SLUICE_SOAK_CYCLES").unwrap_or(if secs.is_some() {
            u64::MAX
        } else {
            DEFAULT_CYCLES
        });
        let target = Target::from_env();
        Config {
            seed,
            cycles,
            deadline: secs.map(Duration::from_secs),
            target,
            // Sluice: every policy, one per restart (`everysec` and `no` buffer appends
            // until the reply, `always` does not). Redis: only `always` keeps them all.
            fsync: std::env::var("SLUICE_CRASH_FSYNC").unwrap_or_else(|_| match target {
                Target::Redis => "always".into(),
                _ => "mixed".into(),
            }),
        }
    }
}

fn percentile(sorted: &[Duration], p: usize) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)].as_millis()
}

/// Runs one cycle's clients against `port` until `stop`; returns their join handles.
fn spawn_clients(shared: &Arc<Shared>, rng: &mut StdRng) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let (sh, seed) = (Arc::clone(shared), rng.gen());
        handles.push(std::thread::spawn(move || workload::writer(&sh, w, seed)));
    }
    let (sh, seed) = (Arc::clone(shared), rng.gen());
    handles.push(std::thread::spawn(move || workload::consumer(&sh, seed)));
    let (sh, seed) = (Arc::clone(shared), rng.gen());
    handles.push(std::thread::spawn(move || workload::deleter(&sh, seed)));
    handles
}

#[test]
fn crash_replay() {
    let cfg = Config::from_env();
    let seed = cfg.seed;
    say(&format!(
        "crash_replay: seed={seed} target={:?} appendfsync={} (reproduce with SLUICE_SEED={seed})",
        cfg.target, cfg.fsync
    ));
    let work = Workdir::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut recovery: Vec<Duration> = Vec::new();
    let mut fatal: Option<String> = None;

    let mut policy_rng = StdRng::seed_from_u64(mix(seed, 0xF5, 0));
    let mut start = |recovery: &mut Vec<Duration>, initial: bool| -> Result<Server, String> {
        let fsync = match cfg.fsync.as_str() {
            "mixed" => ["always", "everysec", "no"][policy_rng.gen_range(0..3)],
            other => other,
        };
        let (server, took) = Server::start(cfg.target, fsync, &work.data, &work.log)?;
        if !initial {
            recovery.push(took);
        }
        Ok(server)
    };
    let mut server = match start(&mut recovery, true) {
        Ok(s) => s,
        Err(e) => panic!("crash_replay: seed={seed}: {e}"),
    };
    match Conn::connect(server.port, VERIFY_TIMEOUT)
        .and_then(|mut c| c.call(cmd(["XGROUP", "CREATE", KEY, GROUP, "0", "MKSTREAM"])))
    {
        Ok(Value::Simple(ok)) if ok == "OK" => {}
        other => panic!("crash_replay: seed={seed}: XGROUP CREATE answered {other:?}"),
    }

    let shared = Arc::new(Shared {
        model: Mutex::new(Model::new(seed, WRITERS)),
        stop: AtomicBool::new(false),
        port: AtomicU16::new(server.port),
    });
    let mut cycles = 0u64;
    let mut recovery_kills = 0u64;
    while cycles < cfg.cycles && cfg.deadline.iter().all(|&d| started.elapsed() < d) {
        cycles += 1;
        let kill_after = Duration::from_millis(rng.gen_range(10..=300));
        shared.lock().cycle = u32::try_from(cycles).unwrap_or(u32::MAX);
        shared.stop.store(false, Ordering::Relaxed);
        shared.port.store(server.port, Ordering::Relaxed);
        let handles = spawn_clients(&shared, &mut rng);
        std::thread::sleep(kill_after);
        server.kill();
        shared.stop.store(true, Ordering::Relaxed);
        for h in handles {
            if h.join().is_err() {
                fatal = Some(String::from("a client thread panicked"));
            }
        }
        // Now and then a second crash in the middle of recovery: its repairs must be
        // idempotent and must never cost an acknowledged write.
        if rng.gen_bool(0.2) {
            let early = Duration::from_millis(rng.gen_range(0..40));
            match Server::spawn(
                cfg.target,
                &cfg.fsync.replace("mixed", "always"),
                &work.data,
                &work.log,
            ) {
                Ok(mut s) => {
                    std::thread::sleep(early);
                    s.kill();
                    recovery_kills += 1;
                }
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        server = match start(&mut recovery, false) {
            Ok(s) => s,
            Err(e) => {
                fatal = Some(e);
                break;
            }
        };
        let mut m = shared.lock();
        let checked = Conn::connect(server.port, VERIFY_TIMEOUT)
            .and_then(|mut c| verify::after_restart(&mut c, &mut m, false));
        if let Err(e) = checked {
            fatal = Some(format!("cycle {cycles}: verification failed: {e}"));
        }
        if fatal.is_some() || m.failures.total() > 0 {
            break;
        }
    }

    // Final drain, then one more crash: every acknowledgement of the drain must survive it.
    if fatal.is_none() && shared.lock().failures.total() == 0 {
        let mut m = shared.lock();
        let drained = Conn::connect(server.port, VERIFY_TIMEOUT)
            .and_then(|mut c| verify::drain(&mut c, &mut m));
        if let Err(e) = drained {
            fatal = Some(format!("final drain failed: {e}"));
        }
        drop(m);
        server.kill();
        match start(&mut recovery, false) {
            Ok(s) => {
                server = s;
                let mut m = shared.lock();
                let checked = Conn::connect(server.port, VERIFY_TIMEOUT)
                    .and_then(|mut c| verify::after_restart(&mut c, &mut m, true));
                if let Err(e) = checked {
                    fatal = Some(format!("verification after the drain failed: {e}"));
                }
            }
            Err(e) => fatal = Some(e),
        }
    }
    server.kill();

    recovery.sort();
    let m = shared.lock();
    let (st, f) = (&m.stats, &m.failures);
    say(&format!(
        "crash_replay: seed={seed} cycles={cycles} acked={} recovered={} indeterminate={} \
         lost_acked={} phantoms={} id_regressions={} group_violations={} recovery_p50_ms={} \
         recovery_p99_ms={} holes={} indeterminate_survived={} deliveries={} xacks={} xdels={} \
         xtrims={} recovery_kills={recovery_kills} target={:?} data_kib={} secs={:.1}",
        st.acked,
        st.recovered,
        st.indeterminate,
        f.lost_acked,
        f.phantoms,
        f.id_regressions,
        f.group_violations,
        percentile(&recovery, 50),
        percentile(&recovery, 99),
        f.holes,
        st.indeterminate_survived,
        st.deliveries,
        st.xacks,
        st.xdels,
        st.xtrims,
        cfg.target,
        dir_bytes(&work.data) / 1024,
        started.elapsed().as_secs_f64(),
    ));
    if fatal.is_none() && f.total() == 0 && std::env::var_os("SLUICE_CRASH_KEEP").is_some() {
        say(&format!(
            "crash_replay: data directory kept in {}",
            work.keep().display()
        ));
        return;
    }
    if fatal.is_some() || f.total() > 0 {
        let mut msg =
            format!("crash_replay FAILED: seed={seed} (reproduce with SLUICE_SEED={seed})\n");
        for line in &f.messages {
            msg.push_str(line);
            msg.push('\n');
        }
        if let Some(e) = &fatal {
            msg.push_str(&format!("fatal: {e}\n"));
        }
        msg.push_str(&format!(
            "--- server log tail ---\n{}\n",
            log_tail(&work.log, 30)
        ));
        msg.push_str(&format!(
            "data directory and log kept in {}\n",
            work.keep().display()
        ));
        say(&msg);
        panic!("{msg}");
    }
}
