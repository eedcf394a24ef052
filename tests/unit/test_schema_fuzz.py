"""parse is total and strict: for ANY bytes, and for adversarial JSON aimed at every field of
every document, it returns a valid document or raises SchemaError, nothing else; whatever it
accepts encodes again without error and reads back equal.

The strategies target the classes of value that stopped daemons before (issue: "one etcdctl
put stops the control plane"): lone surrogate escapes, deep nesting, integers beyond int64,
NUL and control characters, NaN/Infinity, duplicate keys, wrong types, huge strings.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial import VALID, adversarial_value, value_paths
from tfleet import schema
from tfleet.schema import SchemaError, encode, parse

EXAMPLES = int(os.environ.get("TFLEET_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MODELS = sorted(VALID, key=lambda m: m.__name__)

# -- adversarial values ---------------------------------------------------------------------
nasty_text = st.one_of(
    st.text(alphabet=st.characters(codec=None, categories=("Cs", "Cc", "Zs", "Lo", "So", "Nd", "No")), max_size=20),
    st.sampled_from(["\ud800", "\udfff", "a\x00b", "/m\n", "\ufeff", "²", "٣", "-1", "1e3", "NaN", "yes", "true", "1", ""]),
    st.integers(0, 200_000).map(lambda n: "x" * n),
)
nasty_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**63 - 1, -(2**63) - 1, -1, 0, 2**31, 2**32, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 2.0, 0.5, 5e-324, 86400.0, 86400.5]),
)
scalar = st.one_of(st.none(), st.booleans(), nasty_number, nasty_text)
tree = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)), max_leaves=20)


def _dumps(value: object) -> str:
    return json.dumps(value, allow_nan=True)  # ensure_ascii: lone surrogates become \ud800 escapes


def _replace(document: object, path: tuple, value: object) -> object:
    copy = json.loads(json.dumps(document))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


@st.composite
def mutated(draw) -> tuple[type, str]:
    """A valid document of some model with one field (or nested field) replaced, or with
    deep nesting, duplicate keys or raw tokens spliced into its text."""
    model = draw(st.sampled_from(MODELS))
    document = VALID[model]
    kind = draw(st.sampled_from(["replace", "replace", "replace", "deep", "duplicate", "token", "add"]))
    if kind == "replace":
        path = draw(st.sampled_from(value_paths(document)))
        return model, _dumps(_replace(document, path, draw(tree)))
    if kind == "add":
        return model, _dumps({**document, draw(nasty_text): draw(tree)})
    text = _dumps(document)
    if kind == "deep":
        depth = draw(st.sampled_from([63, 64, 65, 100, 1000, 100_000]))
        bracket = draw(st.sampled_from(["[", '{"a":']))
        closing = "]" if bracket == "[" else "}"
        return model, text[:-1] + ', "x": ' + bracket * depth + "1" + closing * depth + "}"
    if kind == "duplicate":
        key = draw(st.sampled_from(list(document)))
        return model, text[:-1] + f", {json.dumps(key)}: {_dumps(draw(tree))}" + "}"
    token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1" * 5000, "-" + "9" * 25, "1e999", '"\\ud800"', '"\\u0000"', "01", "[]" * 3]))
    key = draw(st.sampled_from(list(document)))
    return model, text[:-1] + f", {json.dumps(key)}: {token}" + "}"


def _check_total(model: type, raw: bytes | str) -> None:
    try:
        document = parse(model, raw, "/tfleet/fuzz/key")
    except SchemaError as exc:
        str(exc).encode("utf-8")  # the message itself must be storable and printable
        assert "/tfleet/fuzz/key" in str(exc)
        return
    encoded = encode(document)  # must not raise (surrogates, huge values)
    assert parse(model, encoded, "again") == document


@FUZZ
@given(st.sampled_from(MODELS), st.binary(max_size=3000))
def test_any_bytes_give_a_document_or_a_schema_error(model: type, raw: bytes) -> None:
    _check_total(model, raw)


@FUZZ
@given(mutated())
def test_adversarial_json_gives_a_document_or_a_schema_error(case: tuple[type, str]) -> None:
    model, text = case
    _check_total(model, text.encode("utf-8", "surrogatepass"))
    _check_total(model, text)


@FUZZ
@given(st.sampled_from(MODELS), tree)
def test_any_json_tree_gives_a_document_or_a_schema_error(model: type, value: object) -> None:
    _check_total(model, _dumps(value).encode())


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_daemon_fuzzers_values_give_a_document_or_a_schema_error(model: type) -> None:
    import random

    rng = random.Random(f"schema-{model.__name__}")
    for _ in range(max(EXAMPLES // 3, 50)):
        _check_total(model, adversarial_value(rng, model, huge=False))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_valid_examples_are_valid(model: type) -> None:
    assert parse(model, json.dumps(VALID[model]), "k") is not None


@pytest.mark.parametrize(
    ("model", "raw", "message"),
    [
        # issue 1: each of these stopped every controller (or the agent) before
        (schema.ModelIntent, b'{"base_path": "\\ud800"}', "lone UTF-16 surrogate"),
        (schema.ModelIntent, b'{"base_path": "/m", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "more than 64 levels deep"),
        (schema.Assignment, b'{"base_path": "/m", "model_version_policy": {"specific": {"versions": [99999999999999999999]}}}', "9223372036854775807"),
        (schema.Assignment, b'{"base_path": "/m", "model_version_policy": {"latest": {"num_versions": 1' + b"0" * 5000 + b"}}}", "64 bits"),
        (schema.Assignment, b'{"base_path": "/m\\u0000x"}', "NUL"),
        (schema.Assignment, b'{"base_path": "/m\\nx"}', "control characters"),
        (schema.ModelStatus, b'{"assignment_revision": 1, "versions": {"\xc2\xb2": {"state": "END"}}, "updated_at": "2026-01-01T00:00:00Z"}', "decimal digits"),
        # issue 7: lenient parsing
        (schema.ModelIntent, b'{"base_path": "/m", "replicas": "1"}', "replicas"),
        (schema.ModelIntent, b'{"base_path": "/m", "replicas": 2.0}', "replicas"),
        (schema.HostControl, b'{"cordoned": "yes"}', "cordoned"),
        (schema.HostControl, b'{"cordoned": 1}', "cordoned"),
        (schema.ModelIntent, b'{"base_path": "/m", "rollout": {"failure_backoff_seconds": Infinity}}', "Infinity"),
        (schema.ModelIntent, b'{"base_path": "/m", "rollout": {"failure_backoff_seconds": 1e308}}', "failure_backoff_seconds"),
        (schema.ModelIntent, b'{"base_path": "/m", "rollout": {"failure_backoff_seconds": 1e999}}', "out of range"),
        (schema.ModelIntent, b'{"base_path": "/m", "base_path": "/n"}', "duplicate key 'base_path'"),
        (schema.HostControl, b"\xef\xbb\xbf{}", "byte order mark"),
        (schema.HostControl, '{"reason": "x"}'.encode("utf-16"), "not UTF-8"),
    ],
)
def test_each_crashing_or_lenient_class_is_a_schema_error(model: type, raw: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse(model, raw, "/tfleet/k")


def test_timestamps_are_still_read_from_rfc3339_strings_and_enums_from_names() -> None:
    status = parse(schema.ModelStatus, json.dumps(VALID[schema.ModelStatus]), "k")
    assert status.updated_at.year == 2026 and status.versions["1"].state == "AVAILABLE"


def test_encode_never_raises_on_text_it_cannot_encode() -> None:
    status = schema.ModelStatus(assignment_revision=1, error="bad file name \udcff", updated_at=schema.utc_now())
    assert parse(schema.ModelStatus, encode(status), "k").error == "bad file name \ufffd"


def test_yaml_documents_are_validated_as_strictly() -> None:
    from tfleet.cli.documents import DocumentError, check_document

    assert (
        check_document({"kind": "Model", "name": "m", "spec": {"base_path": "/m", "replicas": 2, "rollout": {"failure_backoff_seconds": 30}}}, "f").name == "m"
    )
    with pytest.raises(DocumentError, match="replicas"):
        check_document({"kind": "Model", "name": "m", "spec": {"base_path": "/m", "replicas": "2"}}, "f")


def test_encode_replaces_surrogates_nested_in_free_form_documents() -> None:
    # found by the daemon fuzzer: an etcdctl-written intent holding "\ud800" reached the
    # history recorder as a plain dict, and encoding its entry failed every controller pass
    entry = schema.HistoryEntry(
        sequence=1, model="m", action="create", revision=None, at=schema.utc_now(), new={"base_path": "\ud800", "\udcff": [1, "x\ud800"]}
    )
    assert parse(schema.HistoryEntry, encode(entry), "k").new == {"base_path": "\ufffd", "\ufffd": [1, "x\ufffd"]}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["[", "]", "{", "}", '"[{"', "1", ","]), max_size=150))
def test_the_depth_check_counts_brackets_as_the_full_scan_does(tokens: list[str]) -> None:
    """codec._too_deep answers at once for a text with few opening brackets: the same
    answer as the full scan, which skips strings (texts need not be JSON here)."""
    from tfleet.schema import codec

    text = "".join(tokens)
    depth, deepest = 0, 0
    for match in codec._BRACKETS_RE.finditer(codec._STRING_RE.sub("", text) if '"' in text else text):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    assert codec._too_deep(text) == (deepest > codec.MAX_DEPTH)
