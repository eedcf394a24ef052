"""tfleet's messages against bytes serialized by the official TensorFlow Serving classes.

The fixtures were written by make_fixtures.py with the official generated code
(tensorflow-serving-api and tensorflow wheels, see fixtures/manifest.json). Here the same
cases (cases.py) are built with tfleet's generated classes. Fast, offline and without
TensorFlow, so it runs in CI.

What a failure means:
* bytes differ, or a fixture is missing/stale: either cases.py changed and the fixtures were
  not regenerated (`make conformance-fixtures`), or our .proto subset disagrees with the
  official one (the descriptor test then usually names the field);
* unknown fields after parsing: the official message carries a field our subset lacks, so
  tfleet would silently ignore data a real server sends;
* a method path differs: our stubs would call an RPC the server does not have.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import pathlib
import pkgutil
import sys

import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message
from google.protobuf.unknown_fields import UnknownFieldSet

import tfleet.tfs.pb

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
REGENERATE = "if cases.py changed on purpose, run `make conformance-fixtures` (see docs/conformance.md)"

# Deliberate, wire-compatible differences between our subset and the official protos:
# (message, field) -> (our type, official type, reason).
ALLOWED_TYPE_DIFFERENCES = {
    ("tensorflow.serving.StatusProto", "error_code"): (
        descriptor.FieldDescriptor.TYPE_INT32,
        descriptor.FieldDescriptor.TYPE_ENUM,
        "officially tensorflow.error.Code; an open enum and an int32 are the same varint on the wire, and the subset does not pull in error_codes.proto",
    ),
}


def _load_sibling(name: str):
    """Import a module of this folder by path, independent of pytest's sys.path handling."""
    spec = importlib.util.spec_from_file_location(f"tfleet_conformance_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cases = _load_sibling("cases")
official_builder = _load_sibling("official_builder")  # for its RecordingChannel / stub_methods

OUR_MODULES = [
    importlib.import_module(f"tfleet.tfs.pb.{info.name}") for info in pkgutil.iter_modules(tfleet.tfs.pb.__path__) if info.name.endswith(("_pb2", "_pb2_grpc"))
]
OUR_FILES = [module.DESCRIPTOR for module in OUR_MODULES if module.__name__.endswith("_pb2")]
NS = cases.Namespace()
CASES_BY_NAME = {case.name: case for case in cases.CASES}


@pytest.fixture(scope="module")
def manifest() -> dict:
    path = FIXTURES / "manifest.json"
    if not path.exists():
        pytest.fail(f"{path} is missing; {REGENERATE}")
    return json.loads(path.read_text())


def _fixture_bytes(case) -> bytes:
    path = FIXTURES / f"{case.name}.bin"
    if not path.exists():
        pytest.fail(f"no fixture for case {case.name!r}; {REGENERATE}")
    return path.read_bytes()


# --- bookkeeping ---------------------------------------------------------------------------


def test_every_case_has_a_fixture(manifest):
    """cases.py and the committed fixtures must describe the same set of cases."""
    names = [case.name for case in cases.CASES]
    assert len(names) == len(set(names)), "duplicate case names in cases.py"
    files = {path.stem for path in FIXTURES.glob("*.bin")}
    assert not set(names) - files, f"cases without a fixture: {sorted(set(names) - files)}; {REGENERATE}"
    assert not files - set(names), f"fixtures without a case: {sorted(files - set(names))}; {REGENERATE}"
    assert set(manifest["cases"]) == set(names), f"manifest.json lists other cases than cases.py; {REGENERATE}"
    for case in cases.CASES:
        assert manifest["cases"][case.name]["message"] == case.message, f"{case.name}: message type changed; {REGENERATE}"


def test_fixture_files_match_manifest(manifest):
    """Catches hand-edited or truncated fixture files."""
    entries = [(info["file"], info["sha256"]) for info in manifest["cases"].values()]
    entries.append((manifest["descriptors"]["file"], manifest["descriptors"]["sha256"]))
    for file_name, digest in entries:
        assert hashlib.sha256((FIXTURES / file_name).read_bytes()).hexdigest() == digest, f"{file_name} changed since it was generated"


def test_fixtures_come_from_tensorflow_serving_2_21(manifest):
    assert manifest["official"]["tensorflow-serving-api"]["version"].startswith("2.21.")
    assert manifest["official"]["tensorflow"]["version"] == manifest["official"]["tensorflow-serving-api"]["version"]


# --- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=lambda case: case.name)
def test_our_bytes_equal_official_bytes(case):
    ours = cases.build(case, NS)
    official = _fixture_bytes(case)
    assert ours == official, (
        f"{case.name} ({case.message}; {case.why}): our serialization differs from the official one\n"
        f"  ours:     {ours.hex()}\n  official: {official.hex()}\n{REGENERATE}; otherwise see test_subset_matches_official_descriptors"
    )


def unknown_field_paths(msg: message.Message, path: str) -> list[str]:
    """Where in msg (recursively, through maps, repeated fields and Any) unknown fields remain."""
    found = [path] if len(UnknownFieldSet(msg)) else []
    if msg.DESCRIPTOR.full_name == "google.protobuf.Any" and msg.type_url:
        try:
            inner_class = NS(msg.TypeName())
        except KeyError:
            return [*found, f"{path} (Any of {msg.TypeName()}, a type tfleet does not define)"]
        inner = inner_class()
        assert msg.Unpack(inner)
        found += unknown_field_paths(inner, f"{path}<{msg.TypeName()}>")
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key in sorted(value):
                    found += unknown_field_paths(value[key], f"{path}.{field.name}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                found += unknown_field_paths(item, f"{path}.{field.name}[{index}]")
        else:
            found += unknown_field_paths(value, f"{path}.{field.name}")
    return found


@pytest.mark.parametrize("case", cases.CASES, ids=lambda case: case.name)
def test_official_bytes_parse_into_our_classes(case):
    """Reading direction: everything the official classes wrote lands in a known field."""
    official = _fixture_bytes(case)
    parsed = NS(case.message).FromString(official)
    assert unknown_field_paths(parsed, case.message) == [], f"{case.name}: fields our subset does not declare"
    assert parsed == case.build(NS)
    assert parsed.SerializeToString(deterministic=True) == official


def test_empty_model_config_list_stays_present():
    """The one case where presence alone carries the meaning ("unload every model")."""
    parsed = NS("tensorflow.serving.ReloadConfigRequest").FromString(_fixture_bytes(CASES_BY_NAME["reload_config_request_empty_list"]))
    assert parsed.config.WhichOneof("config") == "model_config_list"
    assert len(parsed.config.model_config_list.config) == 0


# --- RPCs ------------------------------------------------------------------------------------


def our_methods() -> dict[str, dict[str, str]]:
    methods = {}
    for module in OUR_MODULES:
        for name in dir(module):
            if name.endswith("Stub"):
                methods.update(official_builder.stub_methods(getattr(module, name), descriptor_pool.Default()))
    return methods


def test_stub_method_paths_match_official(manifest):
    ours = our_methods()
    for path, (request, response) in cases.REQUIRED_METHODS.items():
        assert path in ours, f"our stubs do not offer {path}"
        assert path in manifest["methods"], f"the official stubs do not offer {path}"
        assert (ours[path]["request"], ours[path]["response"]) == (request, response)
    for path, info in ours.items():
        assert manifest["methods"].get(path) == info, f"{path}: ours {info}, official {manifest['methods'].get(path)}"


# --- descriptors -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official_pool() -> descriptor_pool.DescriptorPool:
    """The official .proto files in a private pool: same names as ours, but no clash."""
    files = descriptor_pb2.FileDescriptorSet.FromString((FIXTURES / "official_descriptors.binpb").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in files.file:
        pool.Add(file_proto)
    return pool


def _messages(container):
    for msg in container.message_types_by_name.values():
        yield msg
        yield from _nested(msg)


def _nested(msg):
    for nested in msg.nested_types:
        yield nested
        yield from _nested(nested)


def _enums(file_descriptor):
    yield from file_descriptor.enum_types_by_name.values()
    for msg in _messages(file_descriptor):
        yield from msg.enum_types


def _type_label(field_type: int) -> str:
    return descriptor_pb2.FieldDescriptorProto.Type.Name(field_type)


def _type_name(field) -> str | None:
    target = field.message_type or field.enum_type
    return target.full_name if target is not None else None


def _rpc_signature(method) -> tuple:
    return (method.input_type.full_name, method.output_type.full_name, method.client_streaming, method.server_streaming)


def _compare_field(ours, official) -> list[str]:
    where = f"{ours.containing_type.full_name}.{ours.name} (= {ours.number})"
    if official is None:
        return [f"{where}: no field with this number in the official message"]
    problems = []
    if ours.name != official.name:
        problems.append(f"{where}: officially named {official.name} (names matter for JSON/REST and text format)")
    allowed = ALLOWED_TYPE_DIFFERENCES.get((ours.containing_type.full_name, ours.name))
    if ours.type != official.type and (allowed is None or allowed[:2] != (ours.type, official.type)):
        problems.append(f"{where}: type {_type_label(ours.type)}, officially {_type_label(official.type)}")
    elif ours.type == official.type and _type_name(ours) != _type_name(official):
        if not (ours.message_type and ours.message_type.GetOptions().map_entry):
            problems.append(f"{where}: type {_type_name(ours)}, officially {_type_name(official)}")
    if ours.message_type and ours.message_type.GetOptions().map_entry:
        if not (official.message_type and official.message_type.GetOptions().map_entry):
            problems.append(f"{where}: a map in ours, not officially")
    for attribute in ("is_repeated", "is_packed", "has_presence"):
        if getattr(ours, attribute) != getattr(official, attribute):
            problems.append(f"{where}: {attribute} {getattr(ours, attribute)}, officially {getattr(official, attribute)}")
    ours_oneof = ours.containing_oneof.name if ours.containing_oneof else None
    official_oneof = official.containing_oneof.name if official.containing_oneof else None
    if ours_oneof != official_oneof:
        problems.append(f"{where}: in oneof {ours_oneof}, officially {official_oneof}")
    return problems


def test_subset_matches_official_descriptors(official_pool):
    """Every message, field, enum value and RPC of our subset exists officially, identically.

    This covers the fields no case exercises (e.g. TensorProto.half_val), and names the field
    when a byte comparison above fails.
    """
    problems = []
    for file_descriptor in OUR_FILES:
        for ours in _messages(file_descriptor):
            try:
                official = official_pool.FindMessageTypeByName(ours.full_name)
            except KeyError:
                problems.append(f"message {ours.full_name} ({file_descriptor.name}) does not exist officially")
                continue
            for field in ours.fields:
                problems += _compare_field(field, official.fields_by_number.get(field.number))
        for ours in _enums(file_descriptor):
            try:
                official = official_pool.FindEnumTypeByName(ours.full_name)
            except KeyError:
                problems.append(f"enum {ours.full_name} does not exist officially")
                continue
            for value in ours.values:
                official_value = official.values_by_name.get(value.name)
                if official_value is None or official_value.number != value.number:
                    problems.append(
                        f"enum value {ours.full_name}.{value.name} = {value.number}: officially {official_value.number if official_value else 'absent'}"
                    )
        for ours in file_descriptor.services_by_name.values():
            try:
                official = official_pool.FindServiceByName(ours.full_name)
            except KeyError:
                problems.append(f"service {ours.full_name} does not exist officially")
                continue
            for method in ours.methods:
                official_method = official.methods_by_name.get(method.name)
                if official_method is None or _rpc_signature(method) != _rpc_signature(official_method):
                    problems.append(
                        f"rpc {ours.full_name}.{method.name}: {_rpc_signature(method)}, officially "
                        f"{_rpc_signature(official_method) if official_method else 'absent'}"
                    )
    assert not problems, "our .proto subset differs from the official protos:\n  " + "\n  ".join(problems)


def test_subset_actually_checked(official_pool):
    """Guard against the descriptor test passing vacuously (nothing imported, empty pool)."""
    names = {msg.full_name for file_descriptor in OUR_FILES for msg in _messages(file_descriptor)}
    assert {"tensorflow.serving.PredictRequest", "tensorflow.TensorProto", "tensorflow.serving.ModelConfig"} <= names
    assert official_pool.FindMessageTypeByName("tensorflow.serving.PredictRequest").fields_by_name["inputs"].number == 2
