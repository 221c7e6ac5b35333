//! `sluice-load`: drives a RESP server on the loopback interface with one workload and prints
//! one `figure ... metric=M value=V` line per measured value.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use sluice_bench::figure::valid_tag;
use sluice_bench::workload::{
    loopback_addr, pubsub, ready, stream_range, xadd, xread_latency, xreadgroup, EntryShape,
    MAX_CLIENTS, MAX_PIPELINE,
};
use sluice_bench::{Error, Result};

#[derive(Parser)]
#[command(
    name = "sluice-load",
    about = "RESP load generator for Sluice and redis-server"
)]
struct Cli {
    /// Server address; only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1", global = true)]
    host: String,
    #[arg(long, default_value_t = 6379, global = true)]
    port: u16,
    /// Extra `key=value` labels copied into every figure line (repeatable).
    #[arg(long = "tag", global = true)]
    tags: Vec<String>,
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Seconds to run (capped at 3600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests in total (whichever comes first).
    #[arg(long)]
    requests: Option<u64>,
}

#[derive(Args, Clone)]
struct ShapeArgs {
    /// Field-value pairs per entry.
    #[arg(long, default_value_t = 1)]
    fields: usize,
    #[arg(long, default_value_t = 8)]
    field_size: usize,
    #[arg(long, default_value_t = 16)]
    value_size: usize,
}

impl ShapeArgs {
    fn shape(&self) -> EntryShape {
        EntryShape {
            fields: self.fields.clamp(1, 1000),
            field_size: self.field_size.min(1 << 20),
            value_size: self.value_size.min(64 << 20),
        }
    }
}

#[derive(Subcommand)]
enum Workload {
    /// XADD key * field value ... from many pipelined clients.
    Xadd {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        shape: ShapeArgs,
        #[arg(long, default_value = "bench:xadd")]
        key: String,
        /// Spread clients over this many streams.
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Keep the existing stream instead of deleting it first.
        #[arg(long)]
        keep: bool,
    },
    /// XRANGE key <random start> + COUNT n over a prefilled stream.
    Xrange(RangeArgs),
    /// XREVRANGE key <random end> - COUNT n over a prefilled stream.
    Xrevrange(RangeArgs),
    /// XREADGROUP COUNT n + XACK by several consumers of one group over a prefilled stream.
    Xreadgroup {
        #[arg(long, default_value_t = 10)]
        consumers: usize,
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Entries written first; enough that 10 consumers do not run out within the
        /// default duration.
        #[arg(long, default_value_t = 6_000_000)]
        prefill: u64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[command(flatten)]
        shape: ShapeArgs,
        #[arg(long, default_value = "bench:group")]
        key: String,
    },
    /// Blocking XREAD wake-up latency after an XADD.
    XreadLatency {
        #[arg(long, default_value_t = 1)]
        readers: usize,
        #[arg(long, default_value_t = 5000)]
        samples: u64,
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Microseconds between readers re-blocking and the next XADD.
        #[arg(long, default_value_t = 200)]
        gap_us: u64,
        #[arg(long, default_value = "bench:block")]
        key: String,
    },
    /// PUBLISH fan-out to SUBSCRIBE and PSUBSCRIBE clients.
    Pubsub {
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        #[arg(long, default_value_t = 0)]
        psubscribers: usize,
        #[arg(long, default_value_t = 0)]
        patterns: usize,
        #[arg(long, default_value_t = 2)]
        matching: usize,
        #[arg(long, default_value_t = 0)]
        slow_subscribers: usize,
        #[arg(long, default_value_t = 1)]
        channels: usize,
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        #[arg(long, default_value_t = 16)]
        pipeline: usize,
        #[arg(long, default_value_t = 64)]
        message_size: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long)]
        requests: Option<u64>,
        /// Messages per second over all publishers (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seconds to wait for in-flight messages after the last publish.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// Seconds of publishing before `--duration` whose messages count in no rate or
        /// latency (a cold start's burst would otherwise set the p99 of a short run).
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// Polls PING until the server answers PONG and prints the time since its start.
    WaitReady {
        /// The server's start as `date +%s%N`.
        #[arg(long)]
        since_unix_ns: Option<u128>,
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
        /// Milliseconds between polls.
        #[arg(long, default_value_t = 1)]
        interval_ms: u64,
        /// Also print XLEN of this key once ready.
        #[arg(long)]
        xlen_key: Option<String>,
    },
}

#[derive(Args, Clone)]
struct RangeArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    shape: ShapeArgs,
    #[arg(long, default_value_t = 100)]
    count: u64,
    #[arg(long, default_value_t = 100_000)]
    prefill: u64,
    #[arg(long, default_value = "bench:range")]
    key: String,
    /// Keep a stream already holding --prefill entries instead of writing it again.
    #[arg(long)]
    reuse: bool,
}

fn seconds(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| Error::Msg(format!("bad duration {s}")))
}

fn check_run(run: &RunArgs) -> Result<()> {
    if run.clients == 0 || run.clients > MAX_CLIENTS {
        return Err(Error::Msg(format!("--clients must be 1..={MAX_CLIENTS}")));
    }
    if run.pipeline == 0 || run.pipeline > MAX_PIPELINE {
        return Err(Error::Msg(format!("--pipeline must be 1..={MAX_PIPELINE}")));
    }
    Ok(())
}

fn range_options(a: RangeArgs, reverse: bool) -> Result<stream_range::RangeOptions> {
    check_run(&a.run)?;
    Ok(stream_range::RangeOptions {
        reverse,
        clients: a.run.clients,
        pipeline: a.run.pipeline,
        duration: seconds(a.run.duration)?,
        requests: a.run.requests,
        key: a.key,
        prefill: a.prefill,
        count: a.count,
        shape: a.shape.shape(),
        reuse: a.reuse,
    })
}

async fn run(cli: Cli) -> Result<()> {
    let addr = loopback_addr(&cli.host, cli.port)?;
    if let Some(bad) = cli.tags.iter().find(|t| !valid_tag(t)) {
        return Err(Error::Msg(format!(
            "--tag {bad:?} is not a single key=value word"
        )));
    }
    let tags = &cli.tags;
    match cli.workload {
        Workload::Xadd {
            run,
            shape,
            key,
            streams,
            keep,
        } => {
            check_run(&run)?;
            let opts = xadd::XaddOptions {
                clients: run.clients,
                pipeline: run.pipeline,
                duration: seconds(run.duration)?,
                requests: run.requests,
                streams: streams.clamp(1, MAX_CLIENTS),
                key,
                shape: shape.shape(),
                fresh: !keep,
            };
            xadd::run(addr, &opts, tags).await
        }
        Workload::Xrange(a) => stream_range::run(addr, &range_options(a, false)?, tags).await,
        Workload::Xrevrange(a) => stream_range::run(addr, &range_options(a, true)?, tags).await,
        Workload::Xreadgroup {
            consumers,
            count,
            prefill,
            duration,
            shape,
            key,
        } => {
            let opts = xreadgroup::ReadGroupOptions {
                consumers: consumers.clamp(1, MAX_CLIENTS),
                duration: seconds(duration)?,
                key,
                group: "bench-group".into(),
                prefill,
                count: count.clamp(1, 100_000),
                shape: shape.shape(),
            };
            xreadgroup::run(addr, &opts, tags).await
        }
        Workload::XreadLatency {
            readers,
            samples,
            duration,
            gap_us,
            key,
        } => {
            let opts = xread_latency::XreadLatencyOptions {
                readers: readers.clamp(1, MAX_CLIENTS),
                samples,
                duration: seconds(duration)?,
                gap: Duration::from_micros(gap_us.min(1_000_000)),
                key,
            };
            xread_latency::run(addr, &opts, tags).await
        }
        Workload::Pubsub {
            subscribers,
            psubscribers,
            patterns,
            matching,
            slow_subscribers,
            channels,
            publishers,
            pipeline,
            message_size,
            duration,
            requests,
            rate,
            drain,
            warmup,
        } => {
            let clients = subscribers + psubscribers + slow_subscribers + publishers;
            if clients > MAX_CLIENTS || pipeline == 0 || pipeline > MAX_PIPELINE {
                return Err(Error::Msg("too many connections or bad --pipeline".into()));
            }
            let opts = pubsub::PubSubOptions {
                subscribers,
                psubscribers,
                patterns: patterns.min(1_000_000),
                matching,
                slow_subscribers,
                channels: channels.clamp(1, 1_000_000),
                publishers,
                pipeline,
                message_size: message_size.min(64 << 20),
                duration: seconds(duration)?,
                requests,
                rate,
                drain: seconds(drain)?,
                warmup: seconds(warmup)?,
            };
            pubsub::run(addr, &opts, tags).await
        }
        Workload::WaitReady {
            since_unix_ns,
            timeout,
            interval_ms,
            xlen_key,
        } => {
            let opts = ready::ReadyOptions {
                since_unix_ns,
                timeout: seconds(timeout)?,
                interval: Duration::from_millis(interval_ms.clamp(1, 10_000)),
                xlen_key,
            };
            ready::run(addr, &opts, tags).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.clamp(1, 64));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-load: {e}");
            ExitCode::FAILURE
        }
    }
}
