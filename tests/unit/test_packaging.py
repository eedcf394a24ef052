"""The wheel must install exactly the `tfleet` namespace (agent/ and controller/ mapped into it)."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_of(directory: pathlib.Path, package_dir: dict[str, str]) -> str:
    relative = directory.relative_to(ROOT).as_posix()
    for package, source in sorted(package_dir.items(), key=lambda item: -len(item[1])):
        if relative == source or relative.startswith(source + "/"):
            return package + relative[len(source) :].replace("/", ".")
    raise AssertionError(f"{relative} is not under any mapped source directory")


def test_every_package_directory_is_listed() -> None:
    config = _config()
    package_dir = config["package-dir"]
    found = set()
    for source in package_dir.values():
        for init in (ROOT / source).rglob("__init__.py"):
            found.add(_package_of(init.parent, package_dir))
    assert found == set(config["packages"])


def test_only_the_tfleet_namespace_is_installed() -> None:
    assert all(p == "tfleet" or p.startswith("tfleet.") for p in _config()["packages"])
