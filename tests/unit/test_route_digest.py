"""routing.content_digest writes a table's canonical JSON from its fields: it must equal the
digest of the table's JSON document (what a table read back from etcd is digested as)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from tfleet import routing
from tfleet.schema import RouteEndpoint, RouteTable

_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=12)
_endpoints = st.builds(RouteEndpoint, host=_text, grpc_address=_text.map(lambda t: f"{t}:8500"), rest_address=_text.map(lambda t: f"{t}:8501"))
_groups = st.dictionaries(_text, st.lists(_endpoints, max_size=3), max_size=4)
_tables = st.builds(
    RouteTable,
    model=_text,
    versions=_groups,
    labels=_groups,
    endpoints=st.lists(_endpoints, max_size=4),
    updated_at=st.just(dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)),
)


@settings(max_examples=300, deadline=None)
@given(_tables)
def test_the_digest_of_a_table_is_that_of_its_json_document(table: RouteTable) -> None:
    assert routing.content_digest(table) == routing.document_digest(table.model_dump(mode="json"))


def test_the_digest_covers_every_field_of_a_table_but_its_time() -> None:
    """A field added to RouteTable must be written into content_digest too."""
    assert set(RouteTable.model_fields) == {"model", "versions", "labels", "endpoints", "updated_at"}
    assert set(RouteEndpoint.model_fields) == {"host", "grpc_address", "rest_address"}
