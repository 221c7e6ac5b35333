"""Recovery of abandoned work: entries a consumer took but never acknowledged (it crashed, or
its handler failed) are taken over with XAUTOCLAIM once idle for CLAIM_IDLE_MS, and an entry
delivered MAX_DELIVERIES times is moved to the dead-letter stream instead of retried again.

Every worker calls `recover` between reads, so any live worker of a stage picks up what a dead
one left behind.
"""

import json

from common import CLAIM_IDLE_MS, DEAD_LETTER, MAX_DELIVERIES, publish_status


def entries_of(reply):
    """[(id, fields)] from an XAUTOCLAIM/XCLAIM entry list (fields None for deleted entries)."""
    return [(entry_id, fields) for entry_id, fields in reply or []]


def dead_letter_exhausted(r, stage, stream, group, consumer, status_log=None):
    """Move every idle entry delivered MAX_DELIVERIES times or more to `docs:dead`.

    The entry is first claimed with XCLAIM (which only one of several racing workers wins,
    since claiming resets its idle time), then written to the dead-letter stream and
    acknowledged in one MULTI/EXEC transaction. Returns the number of entries moved.
    """
    moved = 0
    pending = r.xpending_range(stream, group, min="-", max="+", count=100, idle=CLAIM_IDLE_MS)
    for item in pending:
        deliveries = int(item["times_delivered"])
        if deliveries < MAX_DELIVERIES:
            continue
        entry_id = item["message_id"]
        claimed = entries_of(r.xclaim(stream, group, consumer, CLAIM_IDLE_MS, [entry_id]))
        if not claimed:
            continue  # another worker got there first, or the entry was deleted
        _, fields = claimed[0]
        fields = fields or {}
        record = {
            "doc_id": fields.get("doc_id", ""),
            "stage": stage,
            "source_stream": stream,
            "source_id": entry_id,
            "deliveries": str(deliveries),
            "payload": json.dumps(fields, sort_keys=True),
        }
        tx = r.pipeline(transaction=True)
        tx.xadd(DEAD_LETTER, record)
        tx.xack(stream, group, entry_id)
        tx.execute()
        moved += 1
        if record["doc_id"]:
            publish_status(r, record["doc_id"], stage, "dead", consumer, status_log)
    return moved


def claim_abandoned(r, stream, group, consumer, count=20):
    """Take over entries idle for CLAIM_IDLE_MS from any consumer of the group.

    Returns [(id, fields)]; entries deleted from the stream meanwhile are dropped from the
    pending list by XAUTOCLAIM itself and are not returned.
    """
    claimed = []
    cursor = "0-0"
    for _ in range(10):  # bounded: at most 10 pages per call
        reply = r.xautoclaim(stream, group, consumer, CLAIM_IDLE_MS, cursor, count=count)
        cursor, entries = reply[0], reply[1]
        claimed.extend((i, f) for i, f in entries_of(entries) if f is not None)
        if cursor in ("0-0", b"0-0") or len(claimed) >= count:
            break
    return claimed
