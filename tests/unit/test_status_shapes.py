"""Agent statuses read by their shape (controller/status_shapes.py) are read exactly as the
strict parse reads them: the same facts for every status it answers, None for the rest."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfleet import schema
from tfleet.controller.keyfile import _parse_status
from tfleet.controller.status_shapes import BODIES_AT_MOST, StatusShapes
from tfleet.schema import ModelStatus, SchemaError, StatusFacts
from tfleet.tfs.types import VersionState

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = "/tfleet/status/h1/m"

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
statuses = st.builds(
    ModelStatus,
    assignment_revision=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    versions=st.dictionaries(
        st.integers(1, 10**6).map(str),
        st.builds(dict, state=st.sampled_from(list(VersionState)), error_code=st.integers(-(2**31), 2**31 - 1), error_message=texts),
        max_size=3,
    ),
    version_labels=st.dictionaries(texts, st.integers(0, 10**6), max_size=2),
    error=st.one_of(st.none(), texts),
    updated_at=st.datetimes(timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5, minutes=-30))])),
)


def strict(value: bytes) -> StatusFacts | None:
    """What the strict parse gives (None: it refuses the value)."""
    try:
        return StatusFacts.of(schema.parse(ModelStatus, value, KEY))
    except SchemaError:
        return None


def facts(status: StatusFacts | None) -> tuple | None:
    return None if status is None else (status.assignment_revision, dict(status.versions), dict(status.version_labels), status.error, status.updated_at)


@SETTINGS
@given(statuses, statuses, st.integers(0, 2**63 - 1), st.datetimes(timezones=st.just(dt.timezone.utc)))
def test_a_known_body_with_another_revision_and_time_reads_as_the_strict_parse(first: ModelStatus, other: ModelStatus, revision: int, at: dt.datetime) -> None:
    shapes = StatusShapes()
    value = schema.encode(first)
    known = strict(value)  # (None: the strict parse refuses it, e.g. a NUL in a message)
    if known is not None:
        shapes.learn(value, known)
    same_body = schema.encode(first.model_copy(update={"assignment_revision": revision, "updated_at": at}))
    fast = shapes.parse(same_body)
    assert fast is None or facts(fast) == facts(strict(same_body))
    if known is not None and first.assignment_revision is not None and max(first.assignment_revision, revision) < 10**18 and len(value) < 500:
        assert fast is not None  # (the shape agents write: known once learnt)
    unknown = schema.encode(other)
    answered = shapes.parse(unknown)
    assert answered is None or facts(answered) == facts(strict(unknown))


@SETTINGS
@given(statuses, st.data())
def test_a_status_changed_anywhere_reads_as_the_strict_parse_or_not_at_all(status: ModelStatus, data: st.DataObject) -> None:
    shapes = StatusShapes()
    value = schema.encode(status)
    known = strict(value)
    if known is not None:
        shapes.learn(value, known)
    index = data.draw(st.integers(0, len(value) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=4))
    changed = value[:index] + replacement + value[index + data.draw(st.integers(0, 3)) :]
    fast = shapes.parse(changed)
    assert fast is None or facts(fast) == facts(strict(changed)), changed


def test_what_it_cannot_vouch_for_is_left_to_the_strict_parse() -> None:
    shapes = StatusShapes()
    good = b'{"assignment_revision":7,"versions":{"1":{"state":"AVAILABLE","error_code":0,"error_message":""}},"version_labels":{"stable":1},"error":null,"updated_at":"2026-12-07T10:00:00Z"}'
    shapes.learn(good, strict(good))
    assert facts(shapes.parse(good)) == facts(strict(good))
    for bad in (
        good.replace(b"2026-12-07T10:00:00Z", b"2026-13-07T10:00:00Z"),  # a time pydantic refuses
        good.replace(b":7,", b":07,"),  # not a JSON integer
        good.replace(b":7,", b":-7,"),
        good.replace(b":7,", b':"7",'),
        good.replace(b"updated_at", b"updated_at\\u0000"),
        good.replace(b'"error":null', b'"error":null,"updated_at":"2026-12-07T10:00:00Z"'),  # a duplicate key
        good[:-1] + b" }",
    ):
        assert shapes.parse(bad) is None, bad
        # and the cache's parse (fast, then strict) answers as the strict parse does
        parsed = _parse_status(KEY, bad, 3)
        assert facts(parsed.value) == facts(strict(bad))
    for time in (b"2026-12-07", b"1700000000", b"2026-12-07T10:00:00", b"2026-12-07 10:00:00Z", b"2026-12-07T10:00:00+05:30", b"now", b"2026-12-07T25:00:00Z"):
        value = good.replace(b"2026-12-07T10:00:00Z", time)
        fast = shapes.parse(value)
        assert fast is None or facts(fast) == facts(strict(value)), time
        assert (fast is None) == (strict(value) is None), time  # (the time is the field's own validator's to judge)


def test_it_remembers_a_bounded_number_of_bodies() -> None:
    shapes = StatusShapes()
    for n in range(BODIES_AT_MOST + 10):
        value = b'{"assignment_revision":1,"versions":{},"version_labels":{"l%d":1},"error":null,"updated_at":"2026-12-07T10:00:00Z"}' % n
        shapes.learn(value, strict(value))
        assert len(shapes) <= BODIES_AT_MOST
    assert shapes.parse(value) is not None
