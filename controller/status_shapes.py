"""Agent statuses read by their shape: the part of a status that repeats is validated once.

Why: a fleet of 100,000 models has 200,000 agent statuses (``status/<host>/<model>``), and
every one an agent writes comes through the fleet cache's watch thread, which holds the
interpreter lock while it parses. Nearly all of them say the same thing in the same bytes
(``"versions":{"1":{"state":"AVAILABLE",...}},"version_labels":{"stable":1},"error":null``)
and differ only in the assignment revision they name, first, and the time, last, as the
agent writes them (pydantic's field order, compact JSON). The strict parse of such a status
cost ~18 us (tfleet/schema/codec.py, then the shared-value table); this ~3 us. While a
tenth of the hosts are re-placed at 100,000 models ~20,000 arrive, and the watch thread's
share of the lock is taken from the pass that re-places the replicas.

How, and why it is exactly the strict parse: a status whose bytes are ``{"assignment_revision":
<digits>,<body>,"updated_at":"<text>"}`` with a ``body`` seen before in a status that passed
the strict parse gives that status's versions, labels and error (the same shared objects),
the revision read from its digits, and the time validated by pydantic's own strict datetime
validator (the field's). ModelStatus has no validator across fields, so each field's
validity is its own; a body that passed once passes again; the digits are a JSON integer
without sign or leading zero that fits an int64; the time holds no quote or backslash, so
the three parts are the document's fields and nothing else (a duplicate of the first or last
field inside the body was refused by the strict parse, so such a body is never known).
Anything else (another shape, an unknown body, a time pydantic refuses) returns None and
the caller parses strictly, which decides and reports as before. tests/unit/
test_status_shapes.py checks the equality on generated and mutated statuses.
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import TypeAdapter, ValidationError

from tfleet.schema import StatusFacts

# (printable ASCII but '"' and '\\' in the time; a body of any length here: learn remembers
# only bodies of at most BODY_AT_MOST bytes)
_SHAPE = re.compile(rb'\{"assignment_revision":(0|[1-9][0-9]{0,17}),(.+),"updated_at":"([\x20\x21\x23-\x5b\x5d-\x7e]{1,64})"\}', re.DOTALL)
_TIME = TypeAdapter(dt.datetime)
BODIES_AT_MOST = 4096  # distinct bodies remembered (then forgotten all at once, and learnt again)
BODY_AT_MOST = 512  # bytes: a longer body (a long error message) is not remembered


class StatusShapes:
    """The bodies of statuses that passed the strict parse, and what they hold."""

    def __init__(self) -> None:
        self._bodies: dict[bytes, tuple[object, object, str | None]] = {}

    def __len__(self) -> int:
        return len(self._bodies)

    def parse(self, value: bytes) -> StatusFacts | None:
        """The status in value, when its shape and body are known; None: parse it strictly."""
        match = _SHAPE.fullmatch(value)
        if match is None:
            return None
        known = self._bodies.get(match.group(2))
        if known is None:
            return None
        try:
            time = _TIME.validate_json(b'"' + match.group(3) + b'"', strict=True)
        except ValidationError:
            return None
        versions, labels, error = known
        return StatusFacts(int(match.group(1)), versions, labels, error, time)  # type: ignore[arg-type]

    def learn(self, value: bytes, facts: StatusFacts) -> None:
        """value passed the strict parse and gave facts: remember its body, if it has the shape."""
        match = _SHAPE.fullmatch(value)
        if match is None or len(match.group(2)) > BODY_AT_MOST or facts.assignment_revision != int(match.group(1)):
            return
        if len(self._bodies) >= BODIES_AT_MOST:
            self._bodies.clear()
        self._bodies[match.group(2)] = (facts.versions, facts.version_labels, facts.error)


# The process's one set (the fleet cache parses statuses from its watch thread and its reads).
STATUS_SHAPES = StatusShapes()

__all__ = ["BODIES_AT_MOST", "BODY_AT_MOST", "STATUS_SHAPES", "StatusShapes"]
