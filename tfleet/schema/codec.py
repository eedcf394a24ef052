"""Total, strict JSON decoding and validation of documents, and their encoding for etcd.

``parse`` turns ANY input into a valid document or a SchemaError whose message an operator
can act on (a reader's pass must never die on a value in etcd); the checks the standard JSON
decoder does not make (depth, duplicate keys, huge integers, NaN, lone surrogates, NUL) run
here, before or around it. ``encode`` never fails a writer's pass on text either.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError


class SchemaError(ValueError):
    """A JSON value that does not match its schema, explained in one sentence per problem."""


M = TypeVar("M", bound=BaseModel)


# Limits checked before the JSON decoder runs (so that it cannot recurse or allocate without
# bound): etcd's default request limit is 1.5 MiB, a value can never be larger unless the
# cluster raised it; no tfleet document nests deeper than a handful of levels.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_INT_DIGITS = 20  # int64 has at most 19 digits (and a sign): longer is rejected unread
MAX_PROBLEM_CHARS = 300  # one explained problem, in an error message
MAX_ERROR_CHARS = 2000  # a whole SchemaError message (it is stored in status keys)

_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*+"', re.DOTALL)
_BRACKETS_RE = re.compile(r"[\[\]{}]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SUSPECT_ESCAPE_RE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


class _Rejected(ValueError):
    """Raised by the JSON decoder's hooks; becomes a SchemaError."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _location(loc: tuple[Any, ...]) -> str:
    return _clip(".".join(str(part) for part in loc), 200) or "(document)"


def explain(error: ValidationError) -> str:
    """One line per problem, naming the field path, e.g. ``model_version_policy.latest.num_versions: ...``."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        elif item["type"] == "missing":
            message = "required field is missing"
        problems.append(_clip(f"{_location(item['loc'])}: {message}", MAX_PROBLEM_CHARS))
    return safe_text("; ".join(problems))


def safe_text(text: str) -> str:
    """Text that encodes as UTF-8 whatever it quotes (a lone surrogate becomes U+FFFD)."""
    return _SURROGATE_RE.sub("\ufffd", text)


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest more than MAX_DEPTH levels (strings skipped), without
    recursing; stops at the first bracket too deep."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        # (fewer opening brackets in all, strings included, than the limit: no nesting can
        # pass it; every document tfleet writes, read in ~0.2 us instead of ~6)
        return False
    depth = 0
    for match in _BRACKETS_RE.finditer(_STRING_RE.sub("", text) if '"' in text else text):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Rejected(f"duplicate key {key!r} (JSON readers disagree on which one wins)")
            seen.add(key)
    return document


def _no_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not a number JSON allows")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Rejected(f"integer {digits[:24]}... has {len(digits)} digits; integers must fit in 64 bits")
    return int(digits)


def _finite_float(text: str) -> float:
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        raise _Rejected(f"number {text[:24]!r} is out of range")
    return number


def _check_strings(node: Any, path: str) -> None:
    """Reject what no field may hold: lone surrogates (cannot be encoded again) and NUL."""
    stack = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            bad = _SURROGATE_RE.search(item) or ("\x00" in item and "\x00")
            if bad:
                what = "a NUL character" if bad == "\x00" else "a lone UTF-16 surrogate escape"
                raise _Rejected(f"{where or '(document)'}: text holds {what}")
        elif isinstance(item, dict):
            for key, value in item.items():
                child = f"{where}.{_clip(safe_text(key), 60)}" if where else _clip(safe_text(key), 60)
                stack.append((key, child + " (key)"))
                stack.append((value, child))
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{index}]") for index, value in enumerate(item))


def _decode(raw: bytes | str) -> tuple[str, Any]:
    """The document's text and its JSON value, after the checks no decoder makes."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _Rejected(f"document is {len(raw)} bytes long; the limit is {MAX_DOCUMENT_BYTES}")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Rejected(f"invalid JSON: not UTF-8 text (byte {exc.start})") from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise _Rejected("invalid JSON: starts with a byte order mark")
    if _too_deep(text):
        raise _Rejected(f"invalid JSON: nests arrays or objects more than {MAX_DEPTH} levels deep")
    # Every number goes through a hook (a Python call each, ~0.1 us): a regular expression that
    # looked for the numbers that could be huge, to skip the hooks, scanned the whole text and
    # cost ~6 us on an agent's 190-byte status, half of its parse.
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise _Rejected(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    # Decoded UTF-8 holds no surrogates and JSON strings no raw control characters: only an
    # escape (or a str given directly) can bring in a lone surrogate or NUL; walk the value
    # (to name the field) only then.
    if _SUSPECT_ESCAPE_RE.search(text) or (isinstance(raw, str) and _SURROGATE_RE.search(text)):
        _check_strings(data, "")
    return text, data


def parse(model: type[M], raw: bytes | str, what: str) -> M:
    """Decode and validate one JSON document; ``what`` names it in the error (a key, a file).

    Total: for ANY input this returns a valid document or raises SchemaError, nothing else
    (tests/unit/test_schema_fuzz.py). Strict: no coercion between strings, numbers and
    booleans ("1" is not 1, 2.0 is not 2, "yes" is not true); timestamps are RFC 3339
    strings; duplicate keys, NaN/Infinity, integers beyond int64, lone surrogate escapes and
    NUL characters are refused, and nesting is bounded before the decoder recurses.
    """
    where = _clip(safe_text(what), 300)
    try:
        text, data = _decode(raw)
        if not isinstance(data, dict):
            raise _Rejected(f"must be a JSON object, found {type(data).__name__}")
        return model.model_validate_json(text, strict=True)
    except _Rejected as exc:
        raise SchemaError(_clip(f"{where}: {exc}", MAX_ERROR_CHARS)) from None
    except ValidationError as exc:
        raise SchemaError(_clip(f"{where}: {explain(exc)}", MAX_ERROR_CHARS)) from None
    except Exception as exc:  # noqa: BLE001 - parse is total: a reader's pass must never die on a value
        raise SchemaError(_clip(f"{where}: could not be read ({type(exc).__name__}: {safe_text(str(exc))})", MAX_ERROR_CHARS)) from None


def decode_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """The JSON object in raw, decoded with parse's checks (no schema); SchemaError otherwise."""
    try:
        _, data = _decode(raw)
    except _Rejected as exc:
        raise SchemaError(_clip(f"{safe_text(what)}: {exc}", MAX_ERROR_CHARS)) from None
    except Exception as exc:  # noqa: BLE001 - as total as parse
        raise SchemaError(_clip(f"{safe_text(what)}: could not be read ({type(exc).__name__})", MAX_ERROR_CHARS)) from None
    if not isinstance(data, dict):
        raise SchemaError(f"{safe_text(what)}: must be a JSON object, found {type(data).__name__}")
    return data


def validate(model: type[M], data: Any, what: str) -> M:
    """Validate a document already decoded (a YAML mapping from the CLI), as strictly as parse.

    YAML gives integers, floats and booleans natively, so strict types cost a YAML author
    nothing; a quoted "2" for replicas is refused as it would be in etcd.
    """
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise SchemaError(_clip(f"{safe_text(what)}: {explain(exc)}", MAX_ERROR_CHARS)) from None


def encode(document: BaseModel) -> bytes:
    """Compact JSON as stored in etcd (RFC 3339 timestamps, null fields kept).

    Never raises for text: a lone surrogate (a file name read with surrogateescape, quoted in
    an error message) is written as U+FFFD instead of failing the writer's pass.
    """
    try:
        return document.model_dump_json().encode()
    except ValueError:  # PydanticSerializationError: text that UTF-8 cannot encode
        return pydantic_core.to_json(_safe_tree(document.model_dump(mode="python")))


def _safe_tree(node: Any) -> Any:
    if isinstance(node, str):
        return safe_text(node)
    if isinstance(node, dict):
        return {_safe_tree(key): _safe_tree(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_safe_tree(value) for value in node]
    return node
