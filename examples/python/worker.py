"""A stage worker: `python worker.py STAGE CONSUMER`.

Reads its stage's input stream in the consumer group named after the stage (XREADGROUP),
does the simulated work, then in one MULTI/EXEC transaction adds the result to the next
stage's stream and acknowledges the input entry (XACK). The document's deterministic ID
travels in every payload, so a duplicate hand-off (possible only if a reply is lost and the
work redone) is recognisable downstream.

On (re)start and after every reconnect it first re-reads its own pending entries (ID 0),
then new ones (`>`). Between reads it runs the recovery pass (recovery.py). Status changes
are published on `docs:status:<doc_id>`.
"""

import json
import os
import signal
import sys
import time

import redis

from cache import InvalidatingCache
from common import (
    STAGE_INPUT,
    STAGE_OUTPUT,
    STAGES,
    TAXONOMY,
    connect,
    ensure_group,
    exit_with_parent,
    logger,
    publish_status,
    retrying,
)
from recovery import claim_abandoned, dead_letter_exhausted
from stages import SimulatedFailure, run_stage


def stream_entries(reply, stream):
    """[(id, fields)] for `stream` from an XREADGROUP reply.

    redis-py gives `[[stream, entries]]` over RESP2 and `{stream: [entries]}` over RESP3.
    """
    if not reply:
        return []
    if isinstance(reply, dict):
        wrapped = reply.get(stream) or [[]]
        return list(wrapped[0])
    for name, entries in reply:
        if name == stream:
            return list(entries)
    return []


class ConfigMissing(Exception):
    """A config stream the stage needs is still empty."""


class Worker:
    def __init__(self, stage, consumer):
        self.stage = stage
        self.consumer = consumer
        self.group = stage
        self.stream = STAGE_INPUT[stage]
        self.output = STAGE_OUTPUT[stage]
        self.log = logger(consumer)
        self.r = connect()
        self.stopping = False
        log_dir = os.environ.get("PIPELINE_LOG_DIR")
        self.status_log = open(os.path.join(log_dir, f"published-{consumer}.jsonl"), "a") if log_dir else None
        self.stats_path = os.path.join(log_dir, f"worker-{consumer}.json") if log_dir else None
        self.handoff_log = open(os.path.join(log_dir, f"handoffs-{consumer}.jsonl"), "a") if log_dir else None
        self.stats = {"done": 0, "failed": 0, "claimed": 0, "dead_lettered": 0, "reconnects": 0}
        self.cache = None
        if stage == "classify":
            self.cache = InvalidatingCache(consumer, self._load_config).start()

    def _load_config(self, key):
        """Cache loader: the newest entry of the `config:<key>` stream."""
        newest = self.r.xrevrange(f"config:{key}", "+", "-", count=1)
        if not newest:
            raise ConfigMissing(f"no config:{key} entry yet")
        return newest[0][1]

    def handle(self, entry_id, fields, first_delivery):
        if fields is None:
            # Deleted from the stream while pending: nothing to do but acknowledge it.
            self.r.xack(self.stream, self.group, entry_id)
            return
        doc_id = fields.get("doc_id", "?")
        try:
            taxonomy = self.cache.get(TAXONOMY.split(":", 1)[1]) if self.cache else None
            out = run_stage(self.stage, fields, first_delivery, taxonomy)
        except ConfigMissing as err:
            # Cannot classify without a taxonomy (`admin.py setup` stores the first one):
            # leave the entry pending; it is redelivered later.
            self.log(str(err))
            time.sleep(0.5)
            return
        except SimulatedFailure as err:
            # Leave the entry pending: recovery redelivers it after CLAIM_IDLE_MS.
            self.stats["failed"] += 1
            publish_status(self.r, doc_id, self.stage, "failed", self.consumer, self.status_log)
            self.log(str(err))
            return
        # Provenance: which entry of our input this result came from, so a duplicate
        # downstream can be traced to its cause.
        out[f"{self.stage}_from"] = entry_id
        tx = self.r.pipeline(transaction=True)
        tx.xadd(self.output, out)
        tx.xack(self.stream, self.group, entry_id)
        out_id, acked = tx.execute()
        if self.handoff_log:
            record = {"stage": self.stage, "doc": doc_id, "in": entry_id, "out": out_id, "acked": acked}
            self.handoff_log.write(json.dumps(record) + "\n")
            self.handoff_log.flush()
        self.stats["done"] += 1
        publish_status(self.r, doc_id, self.stage, "done", self.consumer, self.status_log)

    def run(self):
        retrying(lambda: ensure_group(self.r, self.stream, self.group), "create group", log=self.log)
        backlog, cursor = True, "0"
        last_recovery = last_stats = 0.0
        delay = 0.05
        while not self.stopping:
            try:
                if backlog:
                    # Our own pending entries first (after a crash or reconnect), paging
                    # through the pending list by ID; entries that fail again stay pending.
                    reply = self.r.xreadgroup(self.group, self.consumer, {self.stream: cursor}, count=10)
                    entries = stream_entries(reply, self.stream)
                    if entries:
                        cursor = entries[-1][0]
                    else:
                        backlog = False
                    for entry_id, fields in entries:
                        self.handle(entry_id, fields, first_delivery=False)
                else:
                    reply = self.r.xreadgroup(
                        self.group, self.consumer, {self.stream: ">"}, count=5, block=500
                    )
                    for entry_id, fields in stream_entries(reply, self.stream):
                        self.handle(entry_id, fields, first_delivery=True)
                if time.monotonic() - last_recovery > 0.5:
                    last_recovery = time.monotonic()
                    self.stats["dead_lettered"] += dead_letter_exhausted(
                        self.r, self.stage, self.stream, self.group, self.consumer, self.status_log
                    )
                    for entry_id, fields in claim_abandoned(self.r, self.stream, self.group, self.consumer):
                        self.stats["claimed"] += 1
                        self.handle(entry_id, fields, first_delivery=False)
                delay = 0.05
            except (redis.ConnectionError, redis.TimeoutError) as err:
                self.stats["reconnects"] += 1
                self.log(f"{type(err).__name__}: {err}; reconnecting in {delay:.2f}s")
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                backlog, cursor = True, "0"
            except redis.ResponseError as err:
                if "NOGROUP" not in str(err):
                    raise
                # The stream or group vanished (deleted, or a server without persistence
                # restarted): recreate it and carry on with whatever arrives.
                self.log(f"{err}; recreating group {self.group}")
                ensure_group(self.r, self.stream, self.group)
                backlog, cursor = True, "0"
            if time.monotonic() - last_stats > 1.0:
                last_stats = time.monotonic()
                self.write_stats()
        self.write_stats()

    def write_stats(self):
        if not self.stats_path:
            return
        stats = dict(self.stats)
        if self.cache:
            stats["cache_invalidations"] = self.cache.invalidations
            stats["cache_subscriptions"] = self.cache.subscriptions
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats, f)
        os.replace(tmp, self.stats_path)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: worker.py {{{'|'.join(STAGES)}}} CONSUMER_NAME")
    exit_with_parent()
    worker = Worker(sys.argv[1], sys.argv[2])

    def stop(_signum, _frame):
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.log(f"consuming {worker.stream} as {worker.group}/{worker.consumer} -> {worker.output}")
    worker.run()


if __name__ == "__main__":
    main()
