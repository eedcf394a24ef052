"""Build the conformance fixtures with the OFFICIAL TensorFlow Serving message classes.

Not a test and not run by CI. `make_fixtures.py` starts this script with the interpreter of
its throwaway venv (protobuf + grpcio only, no TensorFlow, no tfleet), with `--official`
pointing at the `*_pb2.py` / `*_pb2_grpc.py` modules it extracted from the
tensorflow-serving-api and tensorflow wheels. It must run in its own process: the official
modules register the same proto names as tfleet's, and one descriptor pool cannot hold both.

Writes into --out:
  <case>.bin                  SerializeToString(deterministic=True) of each case in cases.py
  official_descriptors.binpb  FileDescriptorSet of the official .proto files behind the four
                              RPCs (and everything they import), so the tests can compare
                              field numbers/types of tfleet's subset without the official code
  build.json                  case -> message type, official RPC paths, runtime versions
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import pathlib
import platform
import sys

HERE = pathlib.Path(__file__).resolve().parent

# What tfleet mirrors: the four RPCs' request/response modules and both service stubs.
OFFICIAL_MODULES = (
    "tensorflow_serving.apis.model_management_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.apis.prediction_service_pb2",
)
OFFICIAL_STUBS = (
    ("tensorflow_serving.apis.model_service_pb2_grpc", "ModelServiceStub"),
    ("tensorflow_serving.apis.prediction_service_pb2_grpc", "PredictionServiceStub"),
)


class RecordingChannel:
    """Stands in for a grpc.Channel: a generated stub's __init__ only asks the channel for
    callables, one per method path, which is exactly what we want to read."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _record(self, kind: str):
        def factory(path, *args, **kwargs):
            self.calls.append((kind, path))
            return lambda *a, **k: None

        return factory

    def __getattr__(self, kind: str):
        if kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            return self._record(kind)
        raise AttributeError(kind)


def stub_methods(stub_class, pool) -> dict[str, dict[str, str]]:
    """path -> {kind, request, response} for every method the stub wires up."""
    channel = RecordingChannel()
    stub_class(channel)
    methods = {}
    for kind, path in channel.calls:
        service_name, method_name = path.lstrip("/").split("/")
        method = pool.FindServiceByName(service_name).methods_by_name[method_name]
        methods[path] = {"kind": kind, "request": method.input_type.full_name, "response": method.output_type.full_name}
    return methods


def descriptor_set(modules) -> bytes:
    """The FileDescriptorSet of the modules' files and their imports, dependencies first."""
    from google.protobuf import descriptor_pb2

    ordered, seen = [], set()

    def visit(file_descriptor):
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in sorted(file_descriptor.dependencies, key=lambda d: d.name):
            visit(dependency)
        ordered.append(file_descriptor)

    for module in modules:
        visit(module.DESCRIPTOR)
    result = descriptor_pb2.FileDescriptorSet()
    for file_descriptor in ordered:
        file_descriptor.CopyToProto(result.file.add())
    return result.SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=pathlib.Path, required=True, help="folder with the extracted official modules")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="empty folder for the fixtures")
    options = parser.parse_args(argv)
    official = options.official.resolve()
    sys.path[:0] = [str(official), str(HERE)]

    import google.protobuf
    import grpc
    from google.protobuf import descriptor_pool
    from google.protobuf.internal import api_implementation

    import cases

    modules = [importlib.import_module(name) for name in OFFICIAL_MODULES]
    # Guard against a real TensorFlow (or tfleet) leaking into this process: the point is to
    # use exactly the extracted generated code and nothing else.
    for top in ("tensorflow", "tensorflow_serving"):
        origin = pathlib.Path(sys.modules[top].__file__).resolve()
        if official not in origin.parents:
            raise SystemExit(f"{top} was imported from {origin}, not from {official}")
    if importlib.util.find_spec("tfleet") is not None:
        raise SystemExit("tfleet must not be importable in the official-classes process")

    pool = descriptor_pool.Default()
    ns = cases.Namespace(pool)
    options.out.mkdir(parents=True, exist_ok=True)
    built = {}
    for case in cases.CASES:
        if case.name in built:
            raise SystemExit(f"duplicate case name {case.name!r} in cases.py")
        (options.out / f"{case.name}.bin").write_bytes(cases.build(case, ns))
        built[case.name] = case.message

    methods = {}
    for module_name, stub_name in OFFICIAL_STUBS:
        methods.update(stub_methods(getattr(importlib.import_module(module_name), stub_name), pool))
    for path, (request, response) in cases.REQUIRED_METHODS.items():
        found = methods.get(path)
        if found is None or (found["request"], found["response"]) != (request, response):
            raise SystemExit(f"official stubs do not offer {path}({request}) -> {response}; found {found}")

    (options.out / "official_descriptors.binpb").write_bytes(descriptor_set(modules))
    report = {
        "cases": built,
        "methods": dict(sorted(methods.items())),
        "runtime": {
            "python": platform.python_version(),
            "protobuf": google.protobuf.__version__,
            "protobuf_implementation": api_implementation.Type(),
            "grpcio": grpc.__version__,
        },
    }
    (options.out / "build.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"built {len(built)} cases with the official classes ({len(methods)} RPC paths recorded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
