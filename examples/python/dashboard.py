"""The dashboard: `python dashboard.py [--events-log FILE]`.

Watches every document's status channel with PSUBSCRIBE `docs:status:*` and prints a running
tally. Pub/Sub delivers only to connected subscribers, so after the server restarts the
dashboard resubscribes and carries on; what was published while it was away is not replayed
(the streams are the durable record, the channels are the live view).
"""

import argparse
import collections
import json
import signal
import time

import redis

from common import STATUS_PREFIX, connect, exit_with_parent, logger

log = logger("dashboard")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-log", help="append every received event (JSON lines) here")
    parser.add_argument("--print-every", type=float, default=5.0, help="seconds between tallies")
    args = parser.parse_args()
    exit_with_parent()

    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    events_log = open(args.events_log, "a") if args.events_log else None

    def record(entry):
        if events_log:
            events_log.write(json.dumps(entry, sort_keys=True) + "\n")
            events_log.flush()

    tally = collections.Counter()
    session = 0
    delay = 0.05
    last_print = time.monotonic()
    while not stopping:
        pubsub = None
        try:
            pubsub = connect().pubsub()
            pubsub.psubscribe(STATUS_PREFIX + "*")
            while not stopping:
                message = pubsub.get_message(timeout=0.5)
                if time.monotonic() - last_print > args.print_every:
                    last_print = time.monotonic()
                    log(" ".join(f"{k}={v}" for k, v in sorted(tally.items())) or "no events yet")
                if message is None:
                    continue
                if message["type"] == "psubscribe":
                    session += 1
                    delay = 0.05
                    log(f"watching {STATUS_PREFIX}* (session {session})")
                    record({"kind": "connected", "session": session, "at": time.time()})
                elif message["type"] == "pmessage":
                    event = json.loads(message["data"])
                    tally[f"{event['stage']}:{event['state']}"] += 1
                    record({"kind": "event", "session": session, "channel": message["channel"], "event": event})
        except (redis.ConnectionError, redis.TimeoutError) as err:
            record({"kind": "disconnected", "session": session, "at": time.time()})
            log(f"{type(err).__name__}: {err}; resubscribing in {delay:.2f}s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        finally:
            if pubsub is not None:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001 - closing a dead connection may fail
                    pass
    log("final: " + (" ".join(f"{k}={v}" for k, v in sorted(tally.items())) or "no events"))


if __name__ == "__main__":
    main()
