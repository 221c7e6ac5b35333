"""End-to-end check of the document pipeline under failures (run by tests/python_pipeline.rs).

    python e2e_check.py --port 6379 --workdir /tmp/run [--control stdio|self|none]

It starts the ingest service, two workers per stage and the dashboard; submits documents over
HTTP in three batches; SIGKILLs one worker while it holds pending entries; has the server
killed with SIGKILL and restarted on the same data directory in the middle of the second
batch; publishes a new taxonomy (cache invalidation) after the restart; waits for the pipeline
to drain; then checks:

* every document the ingest service acknowledged is still in `docs:ingest` (same entry ID);
* every document completes every stage with exactly the expected results, except the
  deterministic "poison" documents, which are dead-lettered, each after MAX_DELIVERIES;
* every stage hand-off a worker saw acknowledged (EXEC replied) is in the next stream under
  the returned entry ID, and no entry's XACK returned 1 twice (an acknowledgement is never
  undone by the crash);
* no consumer group has anything pending;
* the killed worker's pending entries were taken over by the other worker;
* documents ingested after the invalidation were classified with the new taxonomy;
* the dashboard received, in every session, every status event published while it was
  subscribed (all except those published in the seconds around the server crash).

Server control: `stdio` prints `E2E:KILL-SERVER` and waits for a `RESTARTED` line on stdin
(the Rust test does the kill -9 and restart); `self --server-cmd CMD` starts and kills CMD
itself; `none` skips the server crash. The last stdout line is `E2E:PASS` or `E2E:FAIL`.
"""

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


import stages  # noqa: E402
from common import (  # noqa: E402
    DEAD_LETTER,
    MAX_DELIVERIES,
    STAGE_INPUT,
    STAGE_OUTPUT,
    STAGES,
    TAXONOMY,
    connect,
    is_poison,
    logger,
    retrying,
)
from admin import set_taxonomy, setup  # noqa: E402

log = logger("e2e")
WORKERS_PER_STAGE = 2
KILLED_WORKER = "entities-1"
CRASH_MARGIN_S = 3.0
NEW_LABELS = ["invoice", "contract", "report", "letter", "memo", "receipt"]

COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell"]
PEOPLE = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi"]
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Madrid", "Vienna", "Prague", "Dublin"]
KINDS = ["an invoice", "a contract", "a quarterly report", "a letter", "a memo"]


def make_documents(n, seed):
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        docs.append(
            f"Document {i}: {rng.choice(COMPANIES)} sent {rng.choice(KINDS)} to "
            f"{rng.choice(PEOPLE)} in {rng.choice(CITIES)}.\n  Reference   {rng.randrange(10**9)} "
            f"filed by {rng.choice(PEOPLE)} of {rng.choice(COMPANIES)}."
        )
    return docs


class ServerControl:
    def __init__(self, mode, server_cmd):
        self.mode = mode
        self.cmd = shlex.split(server_cmd) if server_cmd else None
        self.proc = None

    def start(self):
        if self.mode == "self":
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL)

    def crash_and_restart(self):
        """Kill -9 the server and start it again; returns (killed_at, restarted_at)."""
        if self.mode == "none":
            log("--control none: skipping the server crash")
            return None, None
        killed_at = time.time()
        if self.mode == "stdio":
            print("E2E:KILL-SERVER", flush=True)
            line = sys.stdin.readline()
            if line.strip() != "RESTARTED":
                raise RuntimeError(f"expected RESTARTED on stdin, got {line!r}")
        else:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.start()
        return killed_at, time.time()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Pipeline:
    """The pipeline's processes, each logging to its own file in the log directory."""

    def __init__(self, port, log_dir):
        self.port = port
        self.log_dir = log_dir
        self.procs = {}
        self.env = dict(os.environ, REDIS_PORT=str(port), PIPELINE_LOG_DIR=log_dir, PYTHONUNBUFFERED="1")

    def spawn(self, name, args, stdout=None):
        err = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=HERE, env=self.env, stdout=stdout or err, stderr=err
        )
        self.procs[name] = proc
        return proc

    def stop_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.time() + 8
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log(f"{name} ignored SIGTERM; killing it")
                proc.kill()
                proc.wait()


def post_document(base_url, content, deadline):
    """POST one document, retrying (the same content, hence the same doc_id) until accepted."""
    while True:
        try:
            req = urllib.request.Request(base_url + "/documents", data=content.encode(), method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            if time.time() > deadline:
                raise RuntimeError(f"ingest kept failing: {err}") from err
            time.sleep(0.1)


def read_stream(r, stream):
    """Every entry of a stream, paged with XRANGE."""
    out, start = [], "-"
    while True:
        page = r.xrange(stream, start, "+", count=500)
        out.extend(page)
        if len(page) < 500:
            return out
        start = "(" + page[-1][0]


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    parser = argparse.ArgumentParser(description="pipeline end-to-end check")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("E2E_SEED", "7")))
    parser.add_argument("--control", choices=["stdio", "self", "none"], default="stdio")
    parser.add_argument("--server-cmd")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the drain")
    args = parser.parse_args()
    os.environ["REDIS_PORT"] = str(args.port)
    log_dir = os.path.join(args.workdir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    log(f"seed {args.seed}, {args.docs} documents, port {args.port}, logs in {log_dir}")

    server = ServerControl(args.control, args.server_cmd)
    server.start()
    pipeline = Pipeline(args.port, log_dir)
    failures = []
    summary = {}
    try:
        run(args, server, pipeline, failures, summary)
    except Exception as err:  # noqa: BLE001 - report any crash of the driver as a failure
        failures.append(f"driver error: {type(err).__name__}: {err}")
    finally:
        pipeline.stop_all()
        server.stop()
    for name, proc in pipeline.procs.items():
        # Stopped with SIGTERM: the workers and dashboard exit 0, ingest dies of the signal.
        if name != KILLED_WORKER and proc.returncode not in (0, -signal.SIGTERM):
            with open(os.path.join(pipeline.log_dir, f"{name}.log")) as f:
                tail = "".join(f.readlines()[-15:])
            failures.insert(0, f"{name} crashed (exit {proc.returncode}); its log ends:\n{tail}")
    print("E2E:SUMMARY " + json.dumps(summary, sort_keys=True), flush=True)
    for failure in failures[:30]:
        print("E2E:FAILURE " + failure[:2000].replace("\n", "\n    "), flush=True)
    if len(failures) > 30:
        print(f"E2E:FAILURE ... and {len(failures) - 30} more", flush=True)
    print("E2E:FAIL" if failures else "E2E:PASS", flush=True)
    sys.exit(1 if failures else 0)


def run(args, server, pipeline, failures, summary):
    r = connect()
    retrying(r.ping, "PING", deadline_s=20, log=log)
    setup(r)

    pipeline.spawn("dashboard", ["dashboard.py", "--events-log", os.path.join(pipeline.log_dir, "dashboard.jsonl")])
    for stage in STAGES:
        for n in range(1, WORKERS_PER_STAGE + 1):
            pipeline.spawn(f"{stage}-{n}", ["worker.py", stage, f"{stage}-{n}"])
    ingest = pipeline.spawn("ingest", ["ingest.py", "serve", "--http-port", "0"], stdout=subprocess.PIPE)
    line = ingest.stdout.readline().decode()
    if not line.startswith("listening on "):
        raise RuntimeError(f"ingest did not start: {line!r}")
    base_url = line.split("listening on ", 1)[1].strip()
    wait_for(lambda: any(e["kind"] == "connected" for e in read_jsonl(os.path.join(pipeline.log_dir, "dashboard.jsonl"))), 15, "dashboard subscribed")

    docs = make_documents(args.docs, args.seed)
    n1, n2 = args.docs * 2 // 5, args.docs * 3 // 4
    accepted = {}  # index -> reply
    deadline = time.time() + 60

    def submit_range(lo, hi):
        for i in range(lo, hi):
            accepted[i] = post_document(base_url, docs[i], deadline)

    # Batch 1, with the worker kill while it holds pending entries.
    submitter = threading.Thread(target=submit_range, args=(0, n1))
    submitter.start()
    pending_at_kill = wait_for(
        lambda: [p["message_id"] for p in r.xpending_range("docs:extracted", "entities", "-", "+", 100, KILLED_WORKER)],
        15,
        f"{KILLED_WORKER} holding pending entries",
    )
    pipeline.procs[KILLED_WORKER].send_signal(signal.SIGKILL)
    pipeline.procs[KILLED_WORKER].wait()
    log(f"SIGKILLed {KILLED_WORKER} holding {len(pending_at_kill)} pending entries")
    submitter.join()

    # Batch 2, with the server crash in the middle of it.
    submitter = threading.Thread(target=submit_range, args=(n1, n2))
    submitter.start()
    wait_for(lambda: len(accepted) >= (n1 + n2) // 2, 30, "half of batch 2 accepted")
    killed_at, restarted_at = server.crash_and_restart()
    retrying(r.ping, "PING after restart", deadline_s=20, log=log)
    submitter.join()

    # New taxonomy, broadcast to the classify workers' caches once both listen again.
    told = 0
    def invalidate():
        nonlocal told
        told = set_taxonomy(r, "2", NEW_LABELS)
        return told >= WORKERS_PER_STAGE or None
    try:
        wait_for(lambda: retrying(invalidate, "set taxonomy", log=log), 20, "classify caches resubscribed")
    except RuntimeError as err:
        failures.append(str(err))
    time.sleep(1.0)
    invalidated_at = time.time()

    # Batch 3: classified with taxonomy 2.
    submit_range(n2, args.docs)
    summary["accepted"] = len(accepted)

    doc_ids = {accepted[i]["doc_id"]: i for i in accepted}
    poison = {d: s for d in doc_ids for s in STAGES if is_poison(d, s)}

    def drained():
        done = {f["doc_id"] for _, f in read_stream(r, "docs:done")}
        dead = {f["doc_id"] for _, f in read_stream(r, DEAD_LETTER)}
        pending = sum(r.xpending(STAGE_INPUT[s], s)["pending"] for s in STAGES)
        return (done | dead) >= set(doc_ids) and pending == 0

    try:
        wait_for(lambda: retrying(drained, "drain check", log=log), args.timeout, "pipeline drained")
    except RuntimeError as err:
        failures.append(str(err))  # and check what did arrive, to say what is missing
    time.sleep(0.5)
    pipeline.stop_all()

    check(r, args, pipeline, docs, accepted, poison, pending_at_kill, killed_at, restarted_at, invalidated_at, failures, summary)


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for: {what}")


def explain_duplicates(outputs, handoffs):
    """Trace each input entry handed on more than once (at-least-once duplicates) to a cause:
    `race` - two workers processed it (one claimed it while the other still worked on it;
    both EXECs seen, only one acknowledged the entry); `reply-lost` - an output no worker saw
    acknowledged (its EXEC reply was lost in the crash, or the killed worker never logged it)."""
    logged = {(h["stage"], h["out"]): h for h in handoffs}
    causes = {}
    for stage in STAGES:
        by_source = {}
        for out_id, f in outputs[stage].items():
            by_source.setdefault(f.get(f"{stage}_from"), []).append(out_id)
        for source, outs in by_source.items():
            if len(outs) < 2:
                continue
            seen = [logged.get((stage, o)) for o in outs]
            if all(seen) and sum(h["acked"] for h in seen) == 1:
                cause = "race"
            else:
                cause = "reply-lost"
            causes[f"{stage}:{source}"] = {"cause": cause, "outputs": outs, "acked": [h and h["acked"] for h in seen]}
    return causes


def check(r, args, pipeline, docs, accepted, poison, pending_at_kill, killed_at, restarted_at, invalidated_at, failures, summary):
    def fail(msg):
        log("FAILURE: " + msg)
        failures.append(msg)

    # 1. Nothing the ingest service acknowledged is lost.
    ingest_entries = {i: f for i, f in read_stream(r, "docs:ingest")}
    for idx, reply in accepted.items():
        fields = ingest_entries.get(reply["entry_id"])
        if fields is None or fields.get("doc_id") != reply["doc_id"] or fields.get("content") != docs[idx]:
            fail(f"acknowledged ingest entry {reply['entry_id']} (doc {reply['doc_id']}) lost or altered: {fields!r}")
    summary["ingest_entries"] = len(ingest_entries)
    summary["ingest_duplicates"] = len(ingest_entries) - len({f["doc_id"] for f in ingest_entries.values()})

    # 2. Every document completed every stage with exactly the expected results.
    taxonomies = {f["version"]: json.loads(f["labels"]) for _, f in read_stream(r, TAXONOMY)}
    done = {}
    for entry_id, f in read_stream(r, "docs:done"):
        done.setdefault(f["doc_id"], []).append(f)
    summary["done_duplicates"] = sum(len(v) - 1 for v in done.values())
    dead = {}
    for entry_id, f in read_stream(r, DEAD_LETTER):
        dead.setdefault(f["doc_id"], f)
    late = {accepted[i]["doc_id"] for i in range(len(docs) * 3 // 4, len(docs)) if i in accepted}
    for idx, reply in accepted.items():
        doc_id, content = reply["doc_id"], docs[idx]
        if doc_id in poison:
            if doc_id in done:
                fail(f"poison document {doc_id} (fails at {poison[doc_id]}) reached docs:done")
            entry = dead.get(doc_id)
            if entry is None:
                fail(f"poison document {doc_id} (fails at {poison[doc_id]}) was not dead-lettered")
            elif entry["stage"] != poison[doc_id] or int(entry["deliveries"]) < MAX_DELIVERIES:
                fail(f"dead letter for {doc_id} wrong: {entry!r}")
            continue
        if doc_id in dead:
            fail(f"healthy document {doc_id} was dead-lettered: {dead[doc_id]!r}")
        if doc_id not in done:
            fail(f"document {doc_id} never reached docs:done")
            continue
        for f in done[doc_id]:  # duplicates too must carry exactly the right results
            want = {"doc_id": doc_id, "content": content, "submitted_at": f.get("submitted_at", "")}
            want.update({f"{s}_from": f.get(f"{s}_from", "") for s in STAGES})
            want.update(stages.extract(want))
            want.update(stages.entities(want))
            version = f.get("taxonomy_version", "?")
            if version not in taxonomies:
                fail(f"document {doc_id} classified with unknown taxonomy {version!r}")
                continue
            want.update(stages.classify(want, {"version": version, "labels": json.dumps(taxonomies[version])}))
            want.update(stages.embed(want))
            if f != want:
                fail(f"document {doc_id} has wrong results: got {f!r}, want {want!r}")
            if doc_id in late and version != "2":
                fail(f"document {doc_id} ingested after the cache invalidation was classified with taxonomy {version}")
    summary["done"] = len(done)
    summary["dead_lettered"] = len(dead)
    summary["poison_expected"] = len(poison)
    for doc_id in dead:
        if doc_id not in poison:
            fail(f"dead letter for a document never accepted or not poison: {doc_id}")

    # 3. Every hand-off a worker saw acknowledged (EXEC replied) is in the next stream, under
    #    the entry ID the server returned.
    outputs = {s: dict(read_stream(r, STAGE_OUTPUT[s])) for s in STAGES}
    handoffs = []
    for name in pipeline.procs:
        handoffs.extend(read_jsonl(os.path.join(pipeline.log_dir, f"handoffs-{name}.jsonl")))
    for h in handoffs:
        fields = outputs[h["stage"]].get(h["out"])
        if fields is None or fields.get("doc_id") != h["doc"]:
            fail(f"acknowledged hand-off lost: {h!r} -> {fields!r}")
    summary["handoffs_acknowledged"] = len(handoffs)
    # An XACK that returned 1 removed the entry from the pending list; if a second one for the
    # same entry also returned 1, the entry came back: an acknowledged XACK was lost.
    acks = {}
    for h in handoffs:
        if h.get("acked") == 1:
            acks.setdefault((h["stage"], h["in"]), []).append(h)
    for (stage, entry_id), hs in acks.items():
        if len(hs) > 1:
            fail(f"acknowledged XACK lost: {stage} entry {entry_id} acknowledged {len(hs)} times: {hs!r}")
    summary["duplicate_handoffs"] = explain_duplicates(outputs, handoffs)
    published = []
    for name in pipeline.procs:
        published.extend(read_jsonl(os.path.join(pipeline.log_dir, f"published-{name}.jsonl")))
    stage_docs = {s: {f["doc_id"] for f in outputs[s].values()} for s in STAGES}
    for event in published:
        if event["state"] == "done" and event["doc"] not in stage_docs[event["stage"]]:
            fail(f"acknowledged hand-off lost: {event!r}")
    summary["published_events"] = len(published)

    # 4. Nothing left pending; the killed worker's entries were taken over.
    for stage in STAGES:
        pending = r.xpending(STAGE_INPUT[stage], stage)["pending"]
        if pending:
            fail(f"group {stage} still has {pending} pending entries")
    if not pending_at_kill:
        fail(f"{KILLED_WORKER} held no pending entries when killed")
    tagged = {f["doc_id"] for _, f in read_stream(r, "docs:tagged")}
    extracted = {i: f for i, f in read_stream(r, "docs:extracted")}
    for entry_id in pending_at_kill:
        fields = extracted.get(entry_id)
        if fields is None:
            fail(f"entry {entry_id} pending at the killed worker vanished from docs:extracted")
        elif fields["doc_id"] not in tagged and not is_poison(fields["doc_id"], "entities"):
            fail(f"entry {entry_id} pending at the killed worker was never processed")
    summary["pending_at_kill"] = len(pending_at_kill)

    # 5. The dashboard saw events in every session, and every event published while it was
    #    subscribed (outside the crash window).
    board = read_jsonl(os.path.join(pipeline.log_dir, "dashboard.jsonl"))
    sessions = {}
    for e in board:
        if e["kind"] == "event":
            sessions[e["session"]] = sessions.get(e["session"], 0) + 1
    summary["dashboard_sessions"] = sessions
    want_sessions = 1 if killed_at is None else 2
    if len([s for s, n in sessions.items() if n > 0]) < want_sessions:
        fail(f"dashboard saw events in fewer than {want_sessions} sessions: {sessions}")
    seen = {(e["event"]["doc"], e["event"]["stage"], e["event"]["state"], e["event"]["worker"], e["event"]["ts"]) for e in board if e["kind"] == "event"}
    missed = []
    for event in published:
        if event["receivers"] < 1:
            continue
        # Around the crash a message may be published but die in the server's buffers; the
        # margin before the kill is generous so a loaded machine does not make this flaky.
        if killed_at is not None and killed_at - CRASH_MARGIN_S <= event["ts"] <= restarted_at + 1.0:
            continue
        key = (event["doc"], event["stage"], event["state"], event["worker"], event["ts"])
        if key not in seen:
            missed.append(event)
    if missed:
        fail(f"dashboard missed {len(missed)} events published while it was subscribed, e.g. {missed[:3]!r}")
    summary["dashboard_events"] = len(seen)

    # 6. The classify workers got the invalidation.
    for n in range(1, WORKERS_PER_STAGE + 1):
        path = os.path.join(pipeline.log_dir, f"worker-classify-{n}.json")
        stats = json.load(open(path)) if os.path.exists(path) else {}
        if stats.get("cache_invalidations", 0) < 1:
            fail(f"classify-{n} never received a cache invalidation: {stats!r}")
    summary["invalidated_at"] = invalidated_at


if __name__ == "__main__":
    main()
