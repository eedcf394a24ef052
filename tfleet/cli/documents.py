"""The documents `tfleet apply` reads: YAML or JSON files holding one or more documents.

Each document names one object and its spec::

    kind: Model            # optional: Model is the default
    name: resnet
    spec: {base_path: /models/resnet, replicas: 2, ...}     # a ModelIntent
    ---
    kind: HostControl
    name: h1
    spec: {cordoned: true, reason: disk swap}               # a HostControl

Every document of every file is checked before anything is written, and every problem is
reported, one line each, naming the file, the document number and the object:
``models.yaml document 2 (resnet): replicas: Input should be a valid integer``.
Pure: no etcd, no click.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tfleet.keyspace import InvalidName, validate_name
from tfleet.schema import HostControl, ModelIntent, explain

KINDS = ("Model", "HostControl")
_TOP_LEVEL = ("kind", "name", "spec")


class DocumentError(ValueError):
    """One or more documents are unusable; ``problems`` has one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ModelDocument:
    name: str
    intent: ModelIntent
    where: str  # "models.yaml document 2"


@dataclass(frozen=True)
class HostControlDocument:
    name: str
    control: HostControl
    where: str


Document = ModelDocument | HostControlDocument


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one,
    silently: ``replicas`` written twice would apply whichever came second)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: let PyYAML report it
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {problem}"


def split_documents(text: str, source: str) -> list[Any]:
    """The documents of one file's text (empty YAML documents are skipped).

    ``source`` is the file name; a name ending in ``.json`` is read as JSON (one object, or
    a list of objects), anything else as YAML (which also reads JSON).
    """
    if source.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentError([f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
        return data if isinstance(data, list) else [data]
    loader = _StrictLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            documents.append(loader.construct_document(node))
    except yaml.YAMLError as exc:
        raise DocumentError([f"{source}: {_yaml_problem(exc)}"]) from None
    finally:
        loader.dispose()
    return [doc for doc in documents if doc is not None]


def check_document(raw: Any, where: str) -> Document:
    """Validate one document; DocumentError with one sentence naming ``where`` otherwise."""
    if not isinstance(raw, dict):
        raise DocumentError([f"{where}: must be a mapping with kind, name and spec, found {type(raw).__name__}"])
    name = raw.get("name")
    label = f"{where} ({name})" if isinstance(name, str) and name else where
    unknown = sorted(str(key) for key in raw if key not in _TOP_LEVEL)
    if unknown:
        raise DocumentError([f"{label}: unknown field {', '.join(unknown)} (a document has kind, name and spec)"])
    kind = raw.get("kind", "Model")
    if kind not in KINDS:
        raise DocumentError([f"{label}: kind {kind!r} is not known; use {' or '.join(KINDS)}"])
    if not isinstance(name, str) or not name:
        raise DocumentError([f"{label}: name: required field is missing (the {kind.lower() if kind == 'Model' else 'host'} name)"])
    try:
        validate_name("host" if kind == "HostControl" else "model", name)
    except InvalidName as exc:
        raise DocumentError([f"{label}: {exc}"]) from None
    spec = raw.get("spec")
    if spec is None and kind == "HostControl":
        spec = {}
    if not isinstance(spec, dict):
        found = "nothing" if spec is None else type(spec).__name__
        raise DocumentError([f"{label}: spec must be a mapping of {'ModelIntent' if kind == 'Model' else 'HostControl'} fields, found {found}"])
    try:
        if kind == "Model":
            return ModelDocument(name, ModelIntent.model_validate(spec, strict=True), where)
        return HostControlDocument(name, HostControl.model_validate(spec, strict=True), where)
    except ValidationError as exc:
        raise DocumentError([f"{label}: {explain(exc)}"]) from None


def check_documents(sources: Iterable[tuple[str, str]]) -> list[Document]:
    """Every document of every (name, text) source, validated; DocumentError lists every
    problem of every source (a file that cannot be parsed counts as one problem)."""
    problems: list[str] = []
    documents: list[Document] = []
    seen: dict[tuple[str, str], str] = {}
    for source, text in sources:
        try:
            raws = split_documents(text, source)
        except DocumentError as exc:
            problems.extend(exc.problems)
            continue
        if not raws:
            problems.append(f"{source}: holds no document")
        for number, raw in enumerate(raws, start=1):
            where = f"{source} document {number}"
            try:
                document = check_document(raw, where)
            except DocumentError as exc:
                problems.extend(exc.problems)
                continue
            kind = "Model" if isinstance(document, ModelDocument) else "HostControl"
            first = seen.get((kind, document.name))
            if first is not None:
                problems.append(f"{where} ({document.name}): {kind} {document.name} is already defined in {first}")
                continue
            seen[(kind, document.name)] = where
            documents.append(document)
    if problems:
        raise DocumentError(problems)
    return documents


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise DocumentError([f"{path}: is a directory, not a file"]) from None
    except UnicodeDecodeError:
        raise DocumentError([f"{path}: is not UTF-8 text"]) from None
    except OSError as exc:
        raise DocumentError([f"{path}: cannot be read: {exc.strerror}"]) from None


def load(paths: Iterable[str]) -> list[Document]:
    """Read and validate every document of every file (``-``: stdin): every document, or
    DocumentError with every problem (unreadable files included)."""
    problems: list[str] = []
    sources: list[tuple[str, str]] = []
    for path in paths:
        try:
            sources.append(("stdin" if path == "-" else path, _read(path)))
        except DocumentError as exc:
            problems.extend(exc.problems)
    try:
        documents = check_documents(sources)
    except DocumentError as exc:
        problems.extend(exc.problems)
    if problems:
        raise DocumentError(problems)
    return documents
