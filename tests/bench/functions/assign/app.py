"""Seed 004's assignment service as one function (issue 21's realistic workload): each
experiment the user is eligible for gets a variant by consistent hashing — sha256 of
"user_id:key:salt" as a 64-bit integer, scaled onto the experiment's cumulative variant
weights — so the same user always lands in the same variant, and changing one experiment's
salt reshuffles only that experiment."""
import hashlib


def point(user_id, key, salt):
    """The user's 64-bit position for one experiment."""
    digest = hashlib.sha256(f"{user_id}:{key}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def eligible(audience, attributes):
    """An experiment without an audience takes everyone; else each listed attribute must
    hold one of the allowed values."""
    return all(attributes.get(name) in allowed for name, allowed in (audience or {}).items())


def pick(variants, h):
    """The variant whose cumulative weight range holds h scaled onto [0, total)."""
    total = sum(v["weight"] for v in variants)
    at = (h * total) >> 64  # integer scaling: no float rounding at the edges
    for v in variants:
        at -= v["weight"]
        if at < 0:
            return v["name"]
    return variants[-1]["name"]


def handler(event, context):
    user, attributes = event["user_id"], event.get("attributes") or {}
    assignments, bucket = {}, {}
    for exp in event["experiments"]:
        if not eligible(exp.get("audience"), attributes):
            continue
        h = point(user, exp["key"], exp["salt"])
        assignments[exp["key"]] = pick(exp["variants"], h)
        bucket[exp["key"]] = h % 10000  # the user's bucket out of 10,000, for the exposure log
    return {"user_id": user, "assignments": assignments, "bucket": bucket}
