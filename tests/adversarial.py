"""Adversarial etcd values for the parsing tests and the fuzzer of running daemons.

VALID holds one valid document per schema model; ``adversarial_value`` derives a value from
it with a seeded ``random.Random``: random bytes, invalid UTF-8, a byte order mark, deep
nesting, lone surrogate escapes, NUL and control characters, integers beyond int64, NaN and
Infinity, floats where integers belong, wrong types, duplicate keys, huge strings, or a
plausible document with one field changed (sometimes still valid, on purpose).
"""

from __future__ import annotations

import json
import random

from tfleet import schema

NOW = "2026-12-06T10:00:00Z"
VALID: dict[type, dict] = {
    schema.Assignment: {"base_path": "/m", "model_version_policy": {"specific": {"versions": [1, 2]}}, "version_labels": {"stable": 1}},
    schema.ModelIntent: {
        "base_path": "/m",
        "replicas": 2,
        "host_selector": {"zone": "a"},
        "memory_mb": 10,
        "rollout": {"strategy": "canary", "failure_backoff_seconds": 30.5},
        "tags": ["x"],
        "alerts": {"latency_p99_ms": 20, "error_rate": 0.5, "for": "5m"},
    },
    schema.HostRecord: {
        "host": "h1",
        "grpc_address": "a:1",
        "rest_address": "a:2",
        "memory_mb": 5,
        "labels": {"z": "a"},
        "agent_version": "1",
        "started_at": NOW,
        "metrics_address": "a:3",
        "tfs_unresponsive_since": NOW,
    },
    schema.ModelStatus: {
        "assignment_revision": 3,
        "versions": {"1": {"state": "AVAILABLE", "error_code": 0}},
        "version_labels": {"s": 1},
        "error": None,
        "updated_at": NOW,
    },
    schema.HostControl: {"cordoned": True, "draining": False, "reason": "r"},
    schema.ScheduledAction: {"at": NOW, "action": "rollback", "to_sequence": 3},
    schema.VersionRecord: {"model": "m", "version": 3, "path": "/m/3", "checksum": "sha256:00", "size_bytes": 7, "created_at": NOW, "registered_at": NOW},
    schema.LeaderRecord: {"id": "c1", "since": NOW, "version": "1", "dashboard_address": "127.0.0.1:8080"},
    schema.ModelStatusReport: {
        "intent_revision": 2,
        "wanted_replicas": 1,
        "ready_replicas": {"1": 1},
        "replicas": [{"host": "h1", "versions": {"1": "AVAILABLE"}, "labels": {"s": 1}, "ready": True, "errors": ["e"]}],
        "rollout": {"phase": "stable", "from_versions": [1], "to_versions": [2], "from_labels": {"s": 1}},
        "reasons": ["x"],
        "failures": [{"version": 1, "host": "h1", "error": "e", "at": NOW, "retry_after": NOW}],
        "updated_at": NOW,
        "serving_replicas": 1,
        "health": "degraded",
        "health_reason": "r",
    },
    schema.RouteTable: {"model": "m", "versions": {"1": [{"host": "h1", "grpc_address": "a:1", "rest_address": "a:2"}]}, "updated_at": NOW},
    schema.HistoryEntry: {
        "sequence": 1,
        "model": "m",
        "action": "gap",
        "revision": 3,
        "at": NOW,
        "new": {"base_path": "/m"},
        "revisions": {"first": 1, "last": 3},
        "note": "n",
    },
    schema.HistoryCursor: {"revision": 5, "updated_at": NOW, "keep": 10, "last_gap": {"revisions": {"first": 1, "last": 3}, "at": NOW, "models": 2}},
}

# Raw JSON tokens that no strict reader may accept where a value belongs.
BAD_TOKENS = [
    '"\\ud800"',
    '"\\udfff x"',
    '"a\\u0000b"',
    '"/m\\n"',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "1e308",
    "-1",
    "2.0",
    "9223372036854775808",
    "-9223372036854775809",
    "1" * 40,
    '"1"',
    '"yes"',
    "true",
    "null",
    "[]",
    "{}",
    '"\\u00b2"',
    '""',
]


def value_paths(document: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys and indexes) to a value inside a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += value_paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += value_paths(value, (*prefix, index))
    return found


def _with_token(document: dict, path: tuple, token: str) -> str:
    """The document's JSON text with the value at path replaced by a raw token."""
    marker = "\u0001MARK\u0001"
    copy = json.loads(json.dumps(document))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), token)


def random_json(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(8 if depth < 4 else 5)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, rng.randint(-(10**6), 10**6)])
    if choice == 3:
        return rng.choice([0.5, 2.0, -0.0, 1e308, 5e-324, rng.uniform(-1e6, 1e6)])
    if choice == 4:
        return rng.choice(["", "x", "1", "yes", "AVAILABLE", "/m", "a:1", "2026-01-01T00:00:00Z", "\u00b2", "\ud800", "a\x00b", "\n"])
    if choice == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "base_path", "versions", "1", "\ud800", ""]): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def adversarial_value(rng: random.Random, model: type, *, huge: bool = True, kind: str | None = None) -> bytes:
    """One value aimed at documents of ``model`` (see the module docstring)."""
    document = VALID[model]
    text = json.dumps(document)
    kind = (
        kind
        or rng.choices(
            ["bytes", "utf8", "bom", "deep", "token", "replace", "duplicate", "add", "valid", "huge", "utf16"],
            weights=[6, 4, 2, 5, 20, 25, 5, 6, 4, 1 if huge else 0, 2],
        )[0]
    )
    if kind == "bytes":
        return rng.randbytes(rng.randrange(200))
    if kind == "utf8":
        raw = text.encode()
        cut = rng.randrange(len(raw))
        return raw[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + raw[cut:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if kind == "utf16":
        return text.encode(rng.choice(["utf-16", "utf-32", "utf-16-be"]))
    if kind == "deep":
        depth = rng.choice([65, 200, 1000, 50_000])
        opening, closing = rng.choice([("[", "]"), ('{"a":', "}")])
        return (text[:-1] + ', "x": ' + opening * depth + "1" + closing * depth + "}").encode()
    paths = value_paths(document)
    if kind == "token":
        return _with_token(document, rng.choice(paths), rng.choice(BAD_TOKENS)).encode("utf-8", "surrogatepass")
    if kind == "replace":
        return _with_token(document, rng.choice(paths), json.dumps(random_json(rng), allow_nan=True)).encode("utf-8", "surrogatepass")
    if kind == "duplicate":
        key = rng.choice(list(document))
        return (text[:-1] + f", {json.dumps(key)}: {json.dumps(document[key])}" + "}").encode()
    if kind == "add":
        return (text[:-1] + f', "{rng.choice(["extra", "model_version_polcy", "x" * 300])}": 1' + "}").encode()
    if kind in ("huge", "biggest"):
        # "biggest" is near etcd's 1.5 MiB request limit; keep a few per prefix (see the fuzzer)
        return _with_token(document, rng.choice(paths), json.dumps("x" * (1_400_000 if kind == "biggest" else 70_000))).encode()
    return text.encode()  # valid, as is


def is_valid(model: type, raw: bytes) -> bool:
    try:
        schema.parse(model, raw, "k")
    except schema.SchemaError:
        return False
    return True
