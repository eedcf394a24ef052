"""store/convert.py's _txn_request writes each operation into the request in place: the
bytes on the wire must be those of the RequestOp-per-operation construction it replaced."""

from __future__ import annotations

import pyetcd.utils
from hypothesis import given, settings
from hypothesis import strategies as st
from pyetcd import etcdrpc

from tfleet.store.convert import _compare_message, _key_bytes, _txn_request
from tfleet.store.types import Compare, Delete, Put

_keys = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).map(lambda t: "/t/" + t)
_puts = st.builds(Put, key=_keys, value=st.binary(max_size=40), lease=st.sampled_from([None, 0, 7, 2**62]))
_deletes = st.one_of(st.builds(Delete, key=_keys), st.builds(Delete, key=_keys, prefix=st.just(True)), st.builds(lambda k: Delete(k, end=k + "~"), _keys))
_ops = st.lists(st.one_of(_puts, _deletes), max_size=6)
_compares = st.lists(
    st.one_of(
        st.builds(
            Compare, key=_keys, target=st.sampled_from(["mod", "create", "version"]), op=st.sampled_from(["==", "!=", "<", ">"]), value=st.integers(0, 2**40)
        ),
        st.builds(Compare, key=_keys, target=st.just("value"), op=st.just("=="), value=st.binary(max_size=10)),
    ),
    max_size=3,
)


def _reference_op(op: Put | Delete) -> etcdrpc.RequestOp:
    if isinstance(op, Put):
        return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=_key_bytes(op.key), value=op.value, lease=op.lease or 0))
    key = _key_bytes(op.key)
    delete = etcdrpc.DeleteRangeRequest(key=key)
    if op.prefix:
        delete.range_end = pyetcd.utils.prefix_range_end(key)
    elif op.end is not None:
        delete.range_end = _key_bytes(op.end)
    return etcdrpc.RequestOp(request_delete_range=delete)


@settings(max_examples=300, deadline=None)
@given(_compares, _ops, _ops)
def test_the_request_is_the_one_built_operation_by_operation(compares, success, failure) -> None:
    reference = etcdrpc.TxnRequest(
        compare=[_compare_message(c) for c in compares], success=[_reference_op(op) for op in success], failure=[_reference_op(op) for op in failure]
    )
    assert _txn_request(compares, success, failure).SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True)
