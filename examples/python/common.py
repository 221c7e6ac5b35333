"""Shared plumbing for the document pipeline: connection settings, stream names, retry with
back-off, status broadcasts and the deterministic "simulated failure" rules.

Everything here is plain redis-py; nothing is specific to Sluice.
"""

import hashlib
import json
import os
import random
import sys
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# The pipeline: each stage reads one stream in its own consumer group and writes the next.
STAGES = ["extract", "entities", "classify", "embed"]
STAGE_INPUT = {
    "extract": "docs:ingest",
    "entities": "docs:extracted",
    "classify": "docs:tagged",
    "embed": "docs:classified",
}
STAGE_OUTPUT = {
    "extract": "docs:extracted",
    "entities": "docs:tagged",
    "classify": "docs:classified",
    "embed": "docs:done",
}
DEAD_LETTER = "docs:dead"
TAXONOMY = "config:taxonomy"
STATUS_PREFIX = "docs:status:"
CACHE_CHANNEL = "cache:invalidate"

# After this many deliveries an entry is moved to the dead-letter stream instead of retried.
MAX_DELIVERIES = int(os.environ.get("PIPELINE_MAX_DELIVERIES", "6"))
# An entry pending this long with a consumer is presumed abandoned and claimed by another.
CLAIM_IDLE_MS = int(os.environ.get("PIPELINE_CLAIM_IDLE_MS", "1500"))


class RetryDeadline(Exception):
    """The server stayed unreachable for longer than the caller was willing to wait."""


def connect():
    """A client for the server named by REDIS_HOST/REDIS_PORT (default 127.0.0.1:6379).

    redis-py's own silent retries are switched off: the pipeline retries explicitly (see
    `retrying`) so that every re-sent write is a decision the code makes and can account for.
    """
    kwargs = {}
    protocol = os.environ.get("REDIS_PROTOCOL")
    if protocol:
        kwargs["protocol"] = int(protocol)
    return redis.Redis(
        host=os.environ.get("REDIS_HOST", "127.0.0.1"),
        port=int(os.environ.get("REDIS_PORT", "6379")),
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(NoBackoff(), 0),
        **kwargs,
    )


def retrying(action, what, deadline_s=120.0, log=None):
    """Run `action()`; on ConnectionError/TimeoutError back off (exponential, jittered, capped
    at 1 s) and try again until it succeeds or `deadline_s` has passed.

    Use it only for actions that are safe to repeat (reads, or writes whose duplicates are
    detectable by their document ID).
    """
    delay = 0.05
    start = time.monotonic()
    while True:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError) as err:
            if time.monotonic() - start > deadline_s:
                raise RetryDeadline(f"{what}: server unreachable for {deadline_s}s") from err
            if log:
                log(f"{what}: {type(err).__name__}: {err}; retrying in {delay:.2f}s")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


def ensure_group(r, stream, group):
    """Create `group` on `stream` (and the stream itself) unless it already exists."""
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


def doc_id_for(content):
    """The deterministic ID of a document: the same content always gets the same ID, so a
    document submitted (or handed on) twice is recognisable as a duplicate."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def _score(doc_id, salt):
    digest = hashlib.sha256(f"{salt}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000


def is_poison(doc_id, stage):
    """A poison document fails at `stage` on every delivery (about 1 in 60 documents, at one
    stage each); it must end up in the dead-letter stream, never in docs:done."""
    return _score(doc_id, "poison") < 17 and STAGES[_score(doc_id, "poison-stage") % 4] == stage


def fails_first_try(doc_id, stage):
    """A transient failure: about 8% of documents fail a stage on their first delivery and
    succeed when redelivered."""
    return _score(doc_id, "flaky:" + stage) < 80


def publish_status(r, doc_id, stage, state, worker, log_file=None):
    """Broadcast a status change on `docs:status:<doc_id>` (fire-and-forget Pub/Sub).

    Returns the number of subscribers that received it; with a log file, records the event
    so a test can check the dashboard saw what was published while it was connected.
    """
    event = {"doc": doc_id, "stage": stage, "state": state, "worker": worker, "ts": time.time()}
    receivers = r.publish(STATUS_PREFIX + doc_id, json.dumps(event, sort_keys=True))
    if log_file is not None:
        event["receivers"] = receivers
        log_file.write(json.dumps(event, sort_keys=True) + "\n")
        log_file.flush()
    return receivers


def exit_with_parent():
    """When PIPELINE_EXIT_WITH_PARENT is set (the e2e driver sets it), exit as soon as the
    process that started us is gone, so a killed test run leaves no stray workers."""
    if not os.environ.get("PIPELINE_EXIT_WITH_PARENT"):
        return
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def logger(name):
    """A tiny stderr logger prefixed with the process' role."""

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')} {name}] {msg}", file=sys.stderr, flush=True)

    return log
