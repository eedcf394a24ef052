"""The documents `tfleet apply` reads, and the tensors `tfleet predict` sends and decodes."""

from __future__ import annotations

import struct

import pytest

from tfleet.cli.documents import DocumentError, HostControlDocument, ModelDocument, check_documents, load
from tfleet.tfs.pb import tensorflow_types_pb2
from tfleet.tfs.predict import TensorError, decode, float_tensor, shape_of


def problems(*sources: tuple[str, str]) -> list[str]:
    with pytest.raises(DocumentError) as caught:
        check_documents(list(sources))
    return caught.value.problems


def test_multi_document_yaml_with_default_kind_and_host_control() -> None:
    text = """
name: resnet
spec: {base_path: /m/resnet, replicas: 2, model_version_policy: {specific: {versions: [3]}}, version_labels: {stable: 3}}
---
kind: Model
name: bert
spec: {base_path: /m/bert}
---
kind: HostControl
name: h1
spec: {cordoned: true, reason: disk}
---
"""
    docs = check_documents([("models.yaml", text)])
    assert [type(d) for d in docs] == [ModelDocument, ModelDocument, HostControlDocument]
    assert docs[0].name == "resnet" and docs[0].intent.replicas == 2 and docs[0].where == "models.yaml document 1"
    assert docs[2].control.cordoned and docs[2].control.reason == "disk"


def test_every_bad_document_is_reported_with_file_number_and_name() -> None:
    text = """
name: ok
spec: {base_path: /m/ok}
---
name: resnet
spec: {base_path: /m/resnet, replicas: many}
---
kind: Modle
name: a
spec: {}
---
name: b
spec: {base_path: /b, replicass: 2}
---
[1, 2]
---
name: Bad/Name
spec: {base_path: /x}
---
name: c
metadata: {}
spec: {base_path: /c}
---
name: d
"""
    found = problems(("models.yaml", text))
    assert found[0].startswith("models.yaml document 2 (resnet): replicas: Input should be a valid integer")
    assert found[1] == "models.yaml document 3 (a): kind 'Modle' is not known; use Model or HostControl"
    assert found[2] == "models.yaml document 4 (b): replicass: unknown field (check its spelling)"
    assert found[3] == "models.yaml document 5: must be a mapping with kind, name and spec, found list"
    assert found[4].startswith("models.yaml document 6 (Bad/Name): model name 'Bad/Name' is not allowed")
    assert found[5].startswith("models.yaml document 7 (c): unknown field metadata")
    assert found[6] == "models.yaml document 8 (d): spec must be a mapping of ModelIntent fields, found nothing"
    assert len(found) == 7
    assert all("\n" not in line for line in found)


def test_yaml_syntax_errors_duplicate_keys_and_duplicate_names() -> None:
    assert problems(("a.yaml", "name: x\nspec: [\n"))[0].startswith("a.yaml: invalid YAML at line")
    dup = problems(("b.yaml", "name: x\nspec:\n  base_path: /x\n  replicas: 1\n  replicas: 2\n"))
    assert dup == ["b.yaml: invalid YAML at line 5 column 3: key 'replicas' appears twice in one mapping"]
    twice = problems(("c.yaml", "name: x\nspec: {base_path: /x}\n"), ("d.yaml", "name: x\nspec: {base_path: /y}\n"))
    assert twice == ["d.yaml document 1 (x): Model x is already defined in c.yaml document 1"]
    assert problems(("e.yaml", "---\n")) == ["e.yaml: holds no document"]


def test_json_files_one_object_or_a_list() -> None:
    one = check_documents([("m.json", '{"name": "x", "spec": {"base_path": "/x"}}')])
    many = check_documents([("m.json", '[{"name": "x", "spec": {"base_path": "/x"}}, {"kind": "HostControl", "name": "h1"}]')])
    assert len(one) == 1 and len(many) == 2 and isinstance(many[1], HostControlDocument)
    assert problems(("m.json", '{"name": '))[0].startswith("m.json: invalid JSON at line 1")


def test_unreadable_files_are_reported_with_the_others(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspec: {base_path: /x, replicas: -1}\n")
    with pytest.raises(DocumentError) as caught:
        load([str(tmp_path / "missing.yaml"), str(bad), str(tmp_path)])
    found = caught.value.problems
    assert found[0] == f"{tmp_path / 'missing.yaml'}: no such file"
    assert found[1] == f"{tmp_path}: is a directory, not a file"
    assert found[2].startswith(f"{bad} document 1 (x): replicas: Input should be greater than or equal to 0")


def test_float_tensors_and_decoding() -> None:
    assert shape_of([[1, 2], [3, 4]], "x") == ([2, 2], [1.0, 2.0, 3.0, 4.0])
    assert shape_of(5, "x") == ([], [5.0])
    with pytest.raises(TensorError, match="different lengths"):
        shape_of([1, [2]], "input x")
    with pytest.raises(TensorError, match="expected a number"):
        shape_of(["a"], "input x")
    with pytest.raises(TensorError, match="expected a number"):
        shape_of([True], "input x")
    tensor = float_tensor([[1.5, 2.5]], "x")
    assert tensor.dtype == tensorflow_types_pb2.DT_FLOAT and [d.size for d in tensor.tensor_shape.dim] == [1, 2]
    assert decode(tensor, "y") == [[1.5, 2.5]]
    packed = tensorflow_types_pb2.TensorProto(dtype=tensorflow_types_pb2.DT_DOUBLE, tensor_content=struct.pack("<3d", 1, 2, 3))
    packed.tensor_shape.dim.add(size=3)
    assert decode(packed, "y") == [1.0, 2.0, 3.0]
    splat = tensorflow_types_pb2.TensorProto(dtype=tensorflow_types_pb2.DT_INT64, int64_val=[7])
    splat.tensor_shape.dim.add(size=2)
    assert decode(splat, "y") == [7, 7]
    text = tensorflow_types_pb2.TensorProto(dtype=tensorflow_types_pb2.DT_STRING, string_val=[b"a", b"b"])
    text.tensor_shape.dim.add(size=2)
    assert decode(text, "y") == ["a", "b"]
