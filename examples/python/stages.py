"""The simulated work of each stage: pure functions of a document's fields, so a checker can
recompute every stage's expected output and compare it with what went through the streams."""

import hashlib
import json
import random
import re
import time

from common import fails_first_try, is_poison


class SimulatedFailure(Exception):
    """The stage "crashed" on this entry; it stays pending and will be redelivered."""


def _simulate(doc_id, stage, first_delivery):
    time.sleep(random.uniform(0.002, 0.02))
    if is_poison(doc_id, stage):
        raise SimulatedFailure(f"{stage}: document {doc_id} is poison")
    if first_delivery and fails_first_try(doc_id, stage):
        raise SimulatedFailure(f"{stage}: transient failure on first delivery of {doc_id}")


def extract(fields):
    """Text extraction: collapse whitespace."""
    return {"text": " ".join(fields["content"].split())}


def entities(fields):
    """Entity tagging: the distinct capitalised words, sorted."""
    found = sorted(set(re.findall(r"\b[A-Z][a-zA-Z]+\b", fields["text"])))
    return {"entities": json.dumps(found)}


def classify(fields, taxonomy):
    """Classification against the current taxonomy (a cached config entry)."""
    labels = json.loads(taxonomy["labels"])
    digest = hashlib.sha256(fields["text"].encode()).digest()
    return {"label": labels[digest[0] % len(labels)], "taxonomy_version": taxonomy["version"]}


def embed(fields):
    """A toy 8-dimensional embedding derived from the text and label."""
    digest = hashlib.sha256((fields["text"] + "|" + fields["label"]).encode()).digest()
    return {"embedding": json.dumps([round(b / 255.0, 4) for b in digest[:8]])}


def run_stage(stage, fields, first_delivery, taxonomy=None):
    """Do `stage`'s work on an entry and return the fields for the next stream: the input's
    fields plus this stage's results. Raises SimulatedFailure on a simulated crash."""
    _simulate(fields["doc_id"], stage, first_delivery)
    if stage == "extract":
        result = extract(fields)
    elif stage == "entities":
        result = entities(fields)
    elif stage == "classify":
        result = classify(fields, taxonomy)
    elif stage == "embed":
        result = embed(fields)
    else:
        raise ValueError(f"unknown stage {stage}")
    out = dict(fields)
    out.update(result)
    return out
