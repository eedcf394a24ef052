"""Regenerate the committed Python modules in tfleet/tfs/pb/ and tfleet/store/pb/ from
proto/tfleet/tfs/pb/*.proto and proto/tfleet/store/pb/*.proto.

Usage:
    python proto/generate.py           # rewrite the committed modules
    python proto/generate.py --check   # exit 1 and name the stale files (used by the tests)

The output depends on the grpcio-tools version, which is pinned in pyproject.toml's
`test` extra so that every machine generates the same bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import pathlib
import sys
import tempfile

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
# each generated package, with its __init__ docstring
PACKAGES = {
    pathlib.PurePosixPath("tfleet/tfs/pb"): "Generated protobuf modules (wire-compatible TF Serving subset); see proto/generate.py.",
    pathlib.PurePosixPath("tfleet/store/pb"): "Generated protobuf modules (wire-compatible subset of etcd's Watch API); see proto/generate.py.",
}
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Run protoc into out_dir and return the generated files (relative to out_dir)."""
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for package in PACKAGES for p in (PROTO_ROOT / package).glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return sorted(p.relative_to(out_dir) for package in PACKAGES for p in (out_dir / package).glob("*") if p.name.endswith(GENERATED_SUFFIXES))


def committed_files() -> list[pathlib.Path]:
    return sorted(p.relative_to(REPO_ROOT) for package in PACKAGES for p in (REPO_ROOT / package).glob("*") if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    options = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        fresh = generate(out)
        if options.check:
            stale = [str(p) for p in fresh if not (REPO_ROOT / p).exists() or not filecmp.cmp(out / p, REPO_ROOT / p, shallow=False)]
            extra = [str(p) for p in committed_files() if p not in fresh]
            if stale or extra:
                print("generated protobuf modules are stale; run `python proto/generate.py`:", file=sys.stderr)
                for name in stale + extra:
                    print(f"  {name}", file=sys.stderr)
                return 1
            print(f"{len(fresh)} generated modules are up to date")
            return 0
        for old in committed_files():
            (REPO_ROOT / old).unlink()
        for rel in fresh:
            (REPO_ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
            (REPO_ROOT / rel).write_bytes((out / rel).read_bytes())
        for package, docstring in PACKAGES.items():
            (REPO_ROOT / package / "__init__.py").write_text(f'"""{docstring}"""\n')
        print(f"wrote {len(fresh)} modules to {', '.join(str(p) for p in PACKAGES)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
