#!/usr/bin/env bash
# Sluice vs redis-server, same machine, same run: each workload of sluice-load against both
# servers in alternation (Redis, Sluice, Redis, Sluice, ...) for every fsync mode, then a table
# of medians and Sluice/Redis ratios. Also memory after N XADDs and start-up time on that data.
#
# Usage: bench/compare.sh [--quick] [--rounds N] [--duration S] [--modes "always everysec no"]
#          [--workloads "xadd-p1 xadd-p16 ..."] [--mem-count N] [--skip-memory]
#          [--redis-only | --sluice-bin PATH] [--out DIR] [--port-base P] [--pin]
#          [--load-threads N] [--pin-load-threads] [--max-steal PCT] [--steal-retries N]
# Run bench/compare.sh --help for the workload names. Only 127.0.0.1 is ever a target.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=3
DURATION=5
MODES="always everysec no"
ALL_WORKLOADS="xadd-p1 xadd-p16 xrange xrevrange xreadgroup xread-latency pubsub-1 pubsub-10 pubsub-100 pubsub-1000 pubsub-patterns pubsub-slow pubsub-1-paced pubsub-10-paced pubsub-100-paced pubsub-1000-paced pubsub-patterns-paced pubsub-10-loaded pubsub-100-loaded pubsub-1000-loaded"
WORKLOADS="$ALL_WORKLOADS"
MEM_COUNT=10000000
MEM_MODE=everysec
SKIP_MEMORY=0
REDIS_ONLY=0
PORT_BASE=7301
OUT=""
SLUICE_BIN=""
PIN=0
PIN_LOAD_THREADS=0
LOAD_THREADS=""
MAX_STEAL=2
STEAL_RETRIES=2

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Workloads (default: all): $ALL_WORKLOADS
  xadd-p1 / xadd-p16  XADD, 50 clients, pipeline 1 / 16, one field of 8 bytes, 16-byte value
  xrange / xrevrange  100 entries from a random point of a 100,000-entry stream, 50 clients
  xreadgroup          10 consumers, XREADGROUP COUNT 10 + XACK over a stream of 600,000 entries
                      per second of duration (the group must not run dry before the end)
  xread-latency       XADD -> blocked XREAD reader wake-up, 1 reader, 2,000 samples
  pubsub-N            N subscribers of one channel, 1 publisher, pipeline 16, 64-byte messages
  pubsub-patterns     10 subscribers + 10 pattern subscribers holding 1,000 patterns (3 match)
  pubsub-slow         pubsub-10 plus one subscriber that never reads
  pubsub-N-paced      pubsub-N at a fixed 100,000 deliveries/s (100,000/N publishes/s), below
                      both servers' capacity: latency at equal load, not at saturation
  pubsub-patterns-paced  pubsub-patterns at 100,000 deliveries/s (7,692 publishes/s x 13)
  pubsub-N-loaded     pubsub-N at a fixed 1,000,000 deliveries/s, 45-70 % of Redis' capacity
                      here: latency at equal load near saturation
Pub/sub keeps nothing on disk, so its workloads run in one mode only (everysec if listed).
Each pub/sub run publishes for 1 s before its measured duration (--warmup 1): messages sent
then are checked for loss but count in no rate or latency, so a cold start's burst (the
first ~0.1 s, with either server) does not set the p99 of a 5-second run.
--pin: servers on CPU 0 (Sluice with one tokio worker thread), the load tool on CPU 1, so
      both servers get one core and never compete with the load tool (needs 2+ CPUs).
--load-threads N: the load tool's tokio worker threads (default: one per CPU it may use).
      On a small machine, fewer threads than CPUs leave the servers a CPU to run on.
--pin-load-threads: the servers float over every CPU as by default, but each of the load
      tool's worker threads is pinned to its own CPU (round robin) just after the tool
      starts, before its warm-up ends: two of its threads can then never queue on one CPU
      (a diagnostic view of the shared set-up; not with --pin).
--max-steal PCT: a round (one run per server) in which the hypervisor took more than PCT % of
      the machine's CPU time (steal in /proc/stat) from either run is repeated, up to
      --steal-retries N times (default 2 % and 2); each run's steal is kept as steal_pct,
      and the figures of repeated rounds go to OUT/discarded.txt.
      A busy neighbour delays every wake-up of this VM's CPUs, so such runs measure the host.
--quick = --rounds 3 --duration 2 --modes everysec --mem-count 1000000
          --workloads "xadd-p16 xrange xreadgroup xread-latency pubsub-10"
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --quick)
      ROUNDS=3; DURATION=2; MODES=everysec; MEM_COUNT=1000000
      WORKLOADS="xadd-p16 xrange xreadgroup xread-latency pubsub-10" ;;
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --modes) MODES="$2"; shift ;;
    --workloads) WORKLOADS="$2"; shift ;;
    --mem-count) MEM_COUNT="$2"; shift ;;
    --mem-mode) MEM_MODE="$2"; shift ;;
    --skip-memory) SKIP_MEMORY=1 ;;
    --redis-only) REDIS_ONLY=1 ;;
    --sluice-bin) SLUICE_BIN="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --port-base) PORT_BASE="$2"; shift ;;
    --pin) PIN=1 ;;
    --pin-load-threads) PIN_LOAD_THREADS=1 ;;
    --load-threads) LOAD_THREADS="$2"; shift ;;
    --max-steal) MAX_STEAL="$2"; shift ;;
    --steal-retries) STEAL_RETRIES="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$PIN" = 1 ] && [ "$PIN_LOAD_THREADS" = 1 ]; then
  echo "compare.sh: --pin and --pin-load-threads exclude each other" >&2
  exit 2
fi
if [ "$ROUNDS" -lt 3 ]; then
  echo "compare.sh: --rounds must be at least 3 (medians of alternating runs)" >&2
  exit 2
fi
for w in $WORKLOADS; do
  case " $ALL_WORKLOADS " in *" $w "*) ;; *) echo "unknown workload $w" >&2; exit 2 ;; esac
done
for m in $MODES; do
  case "$m" in always|everysec|no) ;; *) echo "unknown mode $m" >&2; exit 2 ;; esac
done

OUT="${OUT:-$(mktemp -d /tmp/sluice-compare.XXXXXX)}"
mkdir -p "$OUT"
RAW="$OUT/figures.txt"
: > "$RAW"
: > "$OUT/discarded.txt"
: > "$OUT/errors.txt"
REDIS_PORT=$PORT_BASE
SLUICE_PORT=$((PORT_BASE + 1))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
# "steal total": the machine's stolen and total CPU ticks so far (all CPUs, /proc/stat).
cpu_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t }' /proc/stat; }
# steal_pct "BEFORE" "AFTER": the share of CPU time stolen by the hypervisor in between.
steal_pct() {
  echo "$1 $2" | awk '{ d = $4 - $2; printf "%.1f", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}

if ! command -v redis-server >/dev/null 2>&1; then
  log "installing Debian's redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi

log "building sluice-server and sluice-load (release)"
cd "$ROOT"
cargo build --release -q -p sluice-bench --bin sluice-load
LOAD_BIN="$ROOT/target/release/sluice-load"
# With --pin the servers run on CPU 0 and the load tool on CPU 1.
LOAD_ARGS=()
[ -n "$LOAD_THREADS" ] && LOAD_ARGS=(--threads "$LOAD_THREADS")
SERVER_CPU=()
if [ "$PIN" = 1 ]; then
  SERVER_CPU=(taskset -c 0)
  LOAD() { taskset -c 1 "$LOAD_BIN" "${LOAD_ARGS[@]}" "$@"; }
elif [ "$PIN_LOAD_THREADS" = 1 ]; then
  NCPU=$(nproc)
  # Tokio names its worker threads tokio-rt-worker (tokio-runtime-worker, cut to 15 bytes,
  # in older versions); the tool has no blocking-pool threads, which would share the name.
  # The runtime starts its workers before the tool connects, so 50 ms is well inside the
  # warm-up second.
  LOAD() {
    "$LOAD_BIN" "${LOAD_ARGS[@]}" "$@" &
    local pid=$! cpu=0 pinned=0 task
    sleep 0.05
    for task in /proc/"$pid"/task/*; do
      case "$(cat "$task/comm" 2>/dev/null)" in tokio-rt-worker|tokio-runtime-w) ;; *) continue ;; esac
      taskset -p -c "$cpu" "${task##*/}" >/dev/null && pinned=$((pinned + 1))
      cpu=$(((cpu + 1) % NCPU))
    done
    [ "$pinned" -gt 0 ] || log "  no load-tool thread pinned"
    wait "$pid"
  }
else
  LOAD() { "$LOAD_BIN" "${LOAD_ARGS[@]}" "$@"; }
fi
SLUICE="${SLUICE_BIN:-$ROOT/target/release/sluice-server}"
if [ "$REDIS_ONLY" = 0 ] && [ -n "$SLUICE_BIN" ]; then
  [ -x "$SLUICE" ] || { log "no executable $SLUICE: Redis-only run"; REDIS_ONLY=1; }
elif [ "$REDIS_ONLY" = 0 ]; then
  if ! cargo build --release -q -p sluice-server --bin sluice-server || [ ! -x "$SLUICE" ]; then
    log "sluice-server does not build: Redis-only run"
    REDIS_ONLY=1
  fi
fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

# port_busy PORT: true when something already listens there (never benchmark a stranger).
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server KIND MODE PORT DIR: starts redis or sluice in the background, prints its pid.
start_server() {
  local kind=$1 mode=$2 port=$3 dir=$4
  if port_busy "$port"; then
    log "port $port is already in use by another process: pick others with --port-base"
    exit 1
  fi
  mkdir -p "$dir"
  if [ "$kind" = redis ]; then
    local persist=(--appendonly no)
    [ "$mode" != no ] && persist=(--appendonly yes --appendfsync "$mode")
    "${SERVER_CPU[@]}" redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' "${persist[@]}" \
      --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 &
  else
    local threads=()
    [ "$PIN" = 1 ] && threads=(env TOKIO_WORKER_THREADS=1)
    "${threads[@]}" "${SERVER_CPU[@]}" "$SLUICE" --port "$port" --bind 127.0.0.1 --dir "$dir" --appendfsync "$mode" \
      >"$dir.log" 2>&1 &
  fi
  echo $!
}

# stop_server PID: SIGTERM, then SIGKILL after 60 s.
stop_server() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM for 60 s: killing"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_ready PORT TIMEOUT [PID]: true once PING answers; false at once if PID has exited.
wait_ready() {
  if [ -n "${3:-}" ]; then
    sleep 0.2
    kill -0 "$3" 2>/dev/null || return 1
  fi
  LOAD --port "$1" wait-ready --timeout "${2:-30}" >/dev/null 2>&1
}

# workload_args NAME: the sluice-load arguments of a named workload.
workload_args() {
  local d=$DURATION
  # Every pub/sub row: one publisher, pipeline 16, 64-byte messages, a warm-up second.
  local pub="--publishers 1 --pipeline 16 --message-size 64 --warmup 1 --duration $d"
  case "$1" in
    xadd-p1) echo "xadd --clients 50 --pipeline 1 --duration $d" ;;
    xadd-p16) echo "xadd --clients 50 --pipeline 16 --duration $d" ;;
    xrange) echo "xrange --clients 50 --count 100 --prefill 100000 --reuse --duration $d" ;;
    xrevrange) echo "xrevrange --clients 50 --count 100 --prefill 100000 --reuse --duration $d" ;;
    # Enough entries that the group does not run dry before the duration (600k/s per second).
    xreadgroup) echo "xreadgroup --consumers 10 --count 10 --prefill $((600000 * d)) --duration $d" ;;
    xread-latency) echo "xread-latency --readers 1 --samples 2000 --duration $((d * 6))" ;;
    pubsub-1) echo "pubsub --subscribers 1 $pub" ;;
    pubsub-10) echo "pubsub --subscribers 10 $pub" ;;
    pubsub-100) echo "pubsub --subscribers 100 $pub" ;;
    pubsub-1000) echo "pubsub --subscribers 1000 $pub" ;;
    pubsub-patterns) echo "pubsub --subscribers 10 --psubscribers 10 --patterns 1000 --matching 3 $pub" ;;
    pubsub-patterns-paced) # 13 deliveries per publish: 10 subscribers + 3 matching patterns
      echo "pubsub --subscribers 10 --psubscribers 10 --patterns 1000 --matching 3 --rate 7692 $pub" ;;
    pubsub-*-paced)
      local n=${1#pubsub-}; n=${n%-paced}
      echo "pubsub --subscribers $n --rate $((100000 / n)) $pub" ;;
    pubsub-*-loaded)
      local n=${1#pubsub-}; n=${n%-loaded}
      echo "pubsub --subscribers $n --rate $((1000000 / n)) $pub" ;;
    pubsub-slow) echo "pubsub --subscribers 10 --slow-subscribers 1 $pub" ;;
  esac
}

SERVERS="redis"
[ "$REDIS_ONLY" = 0 ] && SERVERS="redis sluice"
PUBSUB_MODE=$(echo "$MODES" | tr ' ' '\n' | grep -x everysec || echo "$MODES" | awk '{print $1}')

for mode in $MODES; do
  declare -A PID=() PORT=([redis]=$REDIS_PORT [sluice]=$SLUICE_PORT)
  for s in $SERVERS; do
    rm -rf "$OUT/data-$s-$mode"
    PID[$s]=$(start_server "$s" "$mode" "${PORT[$s]}" "$OUT/data-$s-$mode")
    PIDS+=("${PID[$s]}")
    if ! wait_ready "${PORT[$s]}" 30 "${PID[$s]}"; then
      if [ "$s" = sluice ]; then
        log "sluice-server did not answer PING (see $OUT/data-sluice-$mode.log): Redis-only"
        stop_server "${PID[$s]}"; SERVERS="redis"; unset 'PID[sluice]'
      else
        log "redis-server did not start"; exit 1
      fi
    fi
  done
  for w in $WORKLOADS; do
    case "$w" in pubsub-*) [ "$mode" = "$PUBSUB_MODE" ] || continue ;; esac
    for round in $(seq "$ROUNDS"); do
      for attempt in $(seq $((STEAL_RETRIES + 1))); do
        : >"$OUT/round.txt"
        stolen=""
        for s in $SERVERS; do
          log "mode=$mode $w round $round/$ROUNDS on $s"
          before=$(cpu_ticks)
          # shellcheck disable=SC2046
          if ! LOAD --port "${PORT[$s]}" --tag "case=$w" --tag "server=$s" --tag "mode=$mode" \
              --tag "round=$round" $(workload_args "$w") >>"$OUT/round.txt" 2>>"$OUT/errors.txt"; then
            log "  failed (see $OUT/errors.txt)"
          fi
          pct=$(steal_pct "$before" "$(cpu_ticks)")
          echo "figure workload=host case=$w server=$s mode=$mode round=$round metric=steal_pct value=$pct" \
            >>"$OUT/round.txt"
          awk -v p="$pct" -v m="$MAX_STEAL" 'BEGIN { exit !(p > m) }' && stolen="$stolen $s:$pct%"
        done
        if [ -z "$stolen" ] || [ "$attempt" -gt "$STEAL_RETRIES" ]; then
          [ -n "$stolen" ] && log "  host steal above $MAX_STEAL % ($stolen ) in every attempt: kept"
          cat "$OUT/round.txt" >>"$RAW"
          break
        fi
        cat "$OUT/round.txt" >>"$OUT/discarded.txt"
        log "  host steal above $MAX_STEAL % ($stolen ): round repeated"
      done
    done
  done
  for s in $SERVERS; do stop_server "${PID[$s]}"; done
  rm -rf "$OUT"/data-*-"$mode" "$OUT/round.txt"
done

# Memory after MEM_COUNT XADDs of a 16-byte value, then start-up time on that data.
# rss_kib PID [FIELD]: VmRSS (or RssAnon: memory not backed by a file, which mmap'd
# segments are not part of) from /proc.
rss_kib() {
  local v
  v=$(awk -v f="${2:-VmRSS}:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null)
  echo "${v:-0}"
}
used_memory() {
  command -v redis-cli >/dev/null 2>&1 || { echo -1; return; }
  local v
  v=$(redis-cli -p "$1" info memory 2>/dev/null | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
  echo "${v:--1}"
}
fig() { echo "figure workload=$1 case=$1 server=$2 mode=$MEM_MODE round=$3 count=$MEM_COUNT metric=$4 value=$5" >>"$RAW"; }

if [ "$SKIP_MEMORY" = 0 ]; then
  MEM_SERVERS="redis"
  [ "$REDIS_ONLY" = 0 ] && [[ " $SERVERS " == *" sluice "* ]] && MEM_SERVERS="redis sluice"
  for s in $MEM_SERVERS; do
    port=$REDIS_PORT; [ "$s" = sluice ] && port=$SLUICE_PORT
    dir="$OUT/mem-$s"
    rm -rf "$dir"
    pid=$(start_server "$s" "$MEM_MODE" "$port" "$dir"); PIDS+=("$pid")
    wait_ready "$port" 30 "$pid" || { log "$s did not start for the memory test"; continue; }
    log "memory: $MEM_COUNT XADDs into $s ($MEM_MODE)"
    LOAD --port "$port" --tag "case=memory-fill" --tag "server=$s" --tag "mode=$MEM_MODE" \
      --tag round=1 xadd --clients 50 --pipeline 64 --requests "$MEM_COUNT" --duration 3600 \
      --fields 1 --field-size 1 --value-size 16 --key bench:mem >>"$RAW" 2>>"$OUT/errors.txt"
    sleep 2 # let everysec / background work settle before measuring
    fig memory "$s" 1 rss_mib "$(( $(rss_kib "$pid") / 1024 ))"
    fig memory "$s" 1 rss_anon_mib "$(( $(rss_kib "$pid" RssAnon) / 1024 ))"
    used=$(used_memory "$port")
    [ "$used" -ge 0 ] 2>/dev/null && fig memory "$s" 1 used_memory_mib "$(( used / 1048576 ))"
    stop_server "$pid"
    fig memory "$s" 1 disk_mib "$(( $(du -sk "$dir" | awk '{print $1}') / 1024 ))"
  done
  for round in $(seq "$ROUNDS"); do
    for s in $MEM_SERVERS; do
      port=$REDIS_PORT; [ "$s" = sluice ] && port=$SLUICE_PORT
      [ -d "$OUT/mem-$s" ] || continue
      sync; t0=$(date +%s%N)
      pid=$(start_server "$s" "$MEM_MODE" "$port" "$OUT/mem-$s"); PIDS+=("$pid")
      if LOAD --port "$port" --tag case=startup --tag "server=$s" --tag "mode=$MEM_MODE" \
          --tag "round=$round" wait-ready --since-unix-ns "$t0" --timeout 1800 \
          --xlen-key bench:mem >>"$RAW" 2>>"$OUT/errors.txt"; then
        fig startup "$s" "$round" rss_after_start_mib "$(( $(rss_kib "$pid") / 1024 ))"
        fig startup "$s" "$round" rss_anon_after_start_mib "$(( $(rss_kib "$pid" RssAnon) / 1024 ))"
      else
        log "$s did not come back up on its data"
      fi
      stop_server "$pid"
    done
  done
  rm -rf "$OUT"/mem-*
fi

log "raw figures: $RAW"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (at the start: $LOAD_START)" \
  | tee "$OUT/load.txt"
python3 "$(dirname "$0")/summarize.py" "$RAW" "$REDIS_ONLY" | tee "$OUT/table.md"
