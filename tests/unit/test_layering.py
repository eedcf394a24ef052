"""The core (tfleet/ outside cli/) never imports the daemons or the CLI built on it.

docs/architecture.md: agent/ and controller/ use the core, the CLI uses all three; an import
the other way (even one only for type checking) would tie the core to a daemon's internals.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
UPPER = ("tfleet.controller", "tfleet.agent", "tfleet.cli")


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _core_modules() -> list[pathlib.Path]:
    core = ROOT / "tfleet"
    return sorted(p for p in core.rglob("*.py") if not p.is_relative_to(core / "cli") and p != core / "__main__.py")


def test_core_modules_do_not_import_upwards() -> None:
    modules = _core_modules()
    assert ROOT / "tfleet" / "routing.py" in modules  # the one that used to
    wrong = {path.relative_to(ROOT).as_posix(): sorted(name for name in _imports(path) if name.startswith(UPPER)) for path in modules}
    assert {path: names for path, names in wrong.items() if names} == {}


ETCD_CLIENT = ("pyetcd", "etcd3")


def test_only_the_store_package_imports_the_etcd_client() -> None:
    """tfleet/store/ is the etcd adapter: nothing else may depend on pyetcd's types or quirks."""
    store = ROOT / "tfleet" / "store"
    sources = sorted(p for top in ("tfleet", "agent", "controller", "bench", "scripts") if (ROOT / top).is_dir() for p in (ROOT / top).rglob("*.py"))
    assert store / "client.py" in sources  # the adapter is scanned, and allowed
    users = {
        path.relative_to(ROOT).as_posix()
        for path in sources
        if not path.is_relative_to(store) and any(name == root or name.startswith(root + ".") for name in _imports(path) for root in ETCD_CLIENT)
    }
    assert users == set()
    adapter = {path.name for path in store.glob("*.py") if any(n.startswith("pyetcd") for n in _imports(path))}
    assert {"client.py", "members.py", "errors.py"} <= adapter  # the check sees the imports it forbids elsewhere


def test_the_store_package_stays_in_small_modules() -> None:
    """tfleet/store/ was one 1,500-line module; each of its parts has one job and stays small."""
    sizes = {path.name: len(path.read_text().splitlines()) for path in (ROOT / "tfleet" / "store").glob("*.py")}
    assert {"types.py", "settings.py", "errors.py", "convert.py", "members.py", "client.py", "watch.py"} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n >= 500} == {}
