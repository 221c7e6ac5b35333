"""Operator commands for the pipeline.

    python admin.py setup                        # consumer groups + first taxonomy
    python admin.py set-taxonomy 2 invoice contract report memo
    python admin.py status                       # stream lengths and pending counts

`set-taxonomy` shows the cache-invalidation broadcast: the new config is XADDed to the
durable `config:taxonomy` stream, then its key is PUBLISHed on `cache:invalidate` so every
classify worker drops its cached copy.
"""

import json
import sys

from common import (
    CACHE_CHANNEL,
    DEAD_LETTER,
    STAGE_INPUT,
    STAGE_OUTPUT,
    TAXONOMY,
    connect,
    ensure_group,
)

DEFAULT_LABELS = ["invoice", "contract", "report", "letter"]


def setup(r):
    for stage, stream in STAGE_INPUT.items():
        ensure_group(r, stream, stage)
    if r.xlen(TAXONOMY) == 0:
        set_taxonomy(r, "1", DEFAULT_LABELS)


def set_taxonomy(r, version, labels):
    """Store a new taxonomy and tell the caches; returns how many subscribers were told."""
    r.xadd(TAXONOMY, {"version": version, "labels": json.dumps(labels)})
    return r.publish(CACHE_CHANNEL, TAXONOMY.split(":", 1)[1])


def status(r):
    report = {}
    for stage, stream in STAGE_INPUT.items():
        pending = r.xpending(stream, stage)
        report[stream] = {"length": r.xlen(stream), "group": stage, "pending": pending["pending"]}
    report[STAGE_OUTPUT["embed"]] = {"length": r.xlen(STAGE_OUTPUT["embed"])}
    report[DEAD_LETTER] = {"length": r.xlen(DEAD_LETTER)}
    return report


def main():
    r = connect()
    if len(sys.argv) >= 2 and sys.argv[1] == "setup":
        setup(r)
    elif len(sys.argv) >= 4 and sys.argv[1] == "set-taxonomy":
        told = set_taxonomy(r, sys.argv[2], sys.argv[3:])
        print(f"taxonomy {sys.argv[2]} stored; {told} cache subscriber(s) invalidated")
    elif len(sys.argv) == 2 and sys.argv[1] == "status":
        print(json.dumps(status(r), indent=2))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
