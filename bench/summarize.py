#!/usr/bin/env python3
"""Summarizes compare.sh's raw figures (figures.txt) as a Markdown table: per case and
metric, each server's median over the rounds, their ratio, and p(worse): a one-sided
rank-sum test over the rounds, small when Sluice's rounds are consistently worse than
Redis'. Bold marks p below 0.05 with medians at least 1 % worse. Below the table, the host
steal compare.sh recorded per run (CPU time the hypervisor gave to other guests).

Usage: summarize.py FIGURES [REDIS_ONLY(0|1)]
"""
import itertools, math, statistics, sys
from collections import defaultdict

raw = sys.argv[1]
redis_only = len(sys.argv) > 2 and sys.argv[2] == "1"
# What each case's row shows, and whether higher is better.
SHOW = {
    "xadd": [("ops_per_sec", True), ("batch_latency_p50_us", False), ("batch_latency_p99_us", False)],
    "xrange": [("ops_per_sec", True), ("batch_latency_p99_us", False)],
    "xrevrange": [("ops_per_sec", True), ("batch_latency_p99_us", False)],
    "xreadgroup": [("entries_per_sec", True), ("pending_after", False)],
    "xread-latency": [("wake_p50_us", False), ("wake_p99_us", False), ("wake_p999_us", False)],
    "pubsub": [("delivered_per_sec", True), ("delivery_p50_us", False), ("delivery_p99_us", False),
               ("delivery_p999_us", False), ("lost", False), ("min_per_subscriber", True)],
    "memory": [("rss_mib", False), ("rss_anon_mib", False), ("used_memory_mib", False),
               ("disk_mib", False)],
    "memory-fill": [("ops_per_sec", True)],
    "startup": [("ready_ms", False), ("xlen", True), ("rss_after_start_mib", False),
                ("rss_anon_after_start_mib", False)],
    # compare.sh: the share of CPU time the hypervisor took during each run.
    "host": [("steal_pct", False)],
}
STEAL_NOTED = 2.0
values = defaultdict(list)
order = []
higher = {}
steal = []
for line in open(raw):
    if not line.startswith("figure "):
        continue
    kv = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
    workload = kv.get("workload")
    if workload == "host":
        wanted = dict(SHOW["host"])
        steal.append((float(kv["value"]), kv["case"], kv["server"], kv["round"]))
    else:
        wanted = dict(SHOW.get(kv.get("case"), SHOW.get(workload, [])))
    if kv["metric"] not in wanted:
        continue
    key = (kv["case"], kv["mode"], kv["metric"])
    if key not in order:
        order.append(key)
        higher[key] = wanted[kv["metric"]]
    values[key + (kv["server"],)].append(float(kv["value"]))

def fmt(v):
    if v is None:
        return "pending" if redis_only else "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def p_worse(redis, sluice, higher_is_better):
    """One-sided Mann-Whitney rank-sum test: the chance, were both servers alike, of rounds
    at least this unfavourable to Sluice. Small (below 0.05) means Sluice is worse by more
    than the rounds' spread. Exact over every split of the rounds up to 200,000 splits,
    else the normal approximation; ties share their mean rank."""
    if not redis or not sluice:
        return None
    sign = -1.0 if higher_is_better else 1.0
    pooled = sorted((sign * v, i) for i, v in enumerate(redis + sluice))
    ranks = [0.0] * len(pooled)
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[pooled[k][1]] = (i + j) / 2 + 1
        i = j + 1
    n, m = len(redis), len(sluice)
    observed = sum(ranks[n:])
    if math.comb(n + m, m) <= 200_000:
        sums = [sum(c) for c in itertools.combinations(ranks, m)]
        return sum(1 for s in sums if s >= observed - 1e-9) / len(sums)
    mean = m * (n + m + 1) / 2
    var = statistics.pvariance(ranks) * n * m / (n + m - 1)
    if var == 0:
        return 1.0
    z = (observed - mean) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))

print("| case | fsync | metric | Redis median | Sluice median | Sluice/Redis | better | runs | p(worse) |")
print("|---|---|---|---:|---:|---:|---|---|---:|")
for case, mode, metric in order:
    r = values.get((case, mode, metric, "redis"), [])
    s = values.get((case, mode, metric, "sluice"), [])
    rm = statistics.median(r) if r else None
    sm = statistics.median(s) if s else None
    ratio = f"{sm / rm:.2f}" if rm and sm is not None and metric != "steal_pct" else "-"
    up = higher[(case, mode, metric)]
    better = "higher" if up else "lower"
    p = p_worse(r, s, up) if metric not in ("lost", "steal_pct") else None
    # Bold: worse in the rounds (p below 0.05) and by at least 1 % in the medians; a
    # paced rate held to within 0.01 % can be "consistently" lower and still not matter.
    worse_by = rm and sm is not None and (sm / rm < 0.99 if up else sm / rm > 1.01)
    shown = "-" if p is None else (f"**{p:.3f}**" if p < 0.05 and worse_by else f"{p:.3f}")
    print(f"| {case} | {mode} | {metric} | {fmt(rm)} | {fmt(sm)} | {ratio} | {better} | "
          f"{len(r)}+{len(s)} | {shown} |")

if steal:
    worst = max(steal)
    above = sum(1 for v, *_ in steal if v > STEAL_NOTED)
    print(f"\nHost steal per run: median {statistics.median(v for v, *_ in steal):.1f} %, "
          f"max {worst[0]:.1f} % ({worst[1]} round {worst[3]} on {worst[2]}); "
          f"{above} of {len(steal)} runs above {STEAL_NOTED:.0f} %.")
