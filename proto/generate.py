"""Regenerate the committed Python modules in tfleet/tfs/pb/ from proto/tfleet/tfs/pb/*.proto.

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
PACKAGE_DIR = pathlib.PurePosixPath("tfleet/tfs/pb")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Run protoc into out_dir and return the generated files (relative to out_dir)."""
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
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
    return sorted(p.relative_to(out_dir) for p in (out_dir / PACKAGE_DIR).glob("*") if p.name.endswith(GENERATED_SUFFIXES))


def committed_files() -> list[pathlib.Path]:
    target = REPO_ROOT / PACKAGE_DIR
    return sorted(p.relative_to(REPO_ROOT) for p in target.glob("*") if p.name.endswith(GENERATED_SUFFIXES))


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
        target = REPO_ROOT / PACKAGE_DIR
        for old in committed_files():
            (REPO_ROOT / old).unlink()
        for rel in fresh:
            (target / rel.name).write_bytes((out / rel).read_bytes())
        (target / "__init__.py").write_text('"""Generated protobuf modules (wire-compatible TF Serving subset); see proto/generate.py."""\n')
        print(f"wrote {len(fresh)} modules to {target}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
