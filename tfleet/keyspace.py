"""Every etcd key tfleet reads or writes, built and parsed in one place.

The keyspace is a public, versioned contract (docs/keyspace.md): operators read and write it
with etcdctl. Nothing else in the project formats or parses a key by hand (Keyspace.classify
is the one parser, tests/unit/test_keyspace_classify.py greps for others), so a change to the
layout is a change to this module, its tests and the document together.

Version 1 layout under a prefix (default ``/tfleet``)::

    <prefix>/hosts/<host>                   agent, leased: the host and its addresses
    <prefix>/assignments/<host>/<model>     controller or operator: what the host must serve
    <prefix>/status/<host>/<model>          agent, leased: what the host serves, and errors
    <prefix>/models/<model>                 operator: the model's intent
    <prefix>/versions/<model>/<version>     operator (CLI): registered version metadata
    <prefix>/history/<model>/<seq>          controller or CLI: every change of an intent
    <prefix>/historycursor                  controller: the revision the history recorder reached
    <prefix>/modelstatus/<model>            controller: replicas, rollout, reasons, errors
    <prefix>/hostctl/<host>                 operator: cordon / drain a host
    <prefix>/schedules/<model>/<id>         operator: a promote or rollback at a given time
    <prefix>/leader                         controller, leased: the leading controller
    <prefix>/routes/<model>                 controller: where each version and label is AVAILABLE
    <prefix>/problems                       controller: every value in etcd no reader can use
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

KEYSPACE_VERSION = 1
DEFAULT_PREFIX = "/tfleet"
HISTORY_SEQUENCE_MAX = 10**12 - 1  # history sequence numbers are 12 zero-padded digits
VERSION_MAX = 10**19 - 1  # a version key's number has at most 19 decimal digits (TF Serving's are int64)

# Host and model names become path segments of keys, TF Serving model names, REST URL
# segments and file names: a conservative set, like a DNS label but allowing '_' and '.'.
NAME_MAX_LENGTH = 128
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,127})")
_PREFIX_RE = re.compile(r"(/[A-Za-z0-9._-]+)+")


class InvalidName(ValueError):
    """A host or model name, or a key, that the keyspace does not accept."""


def validate_name(kind: str, name: str) -> str:
    """Return name unchanged, or raise InvalidName with a sentence saying what is wrong."""
    if not name:
        raise InvalidName(f"{kind} name is empty")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidName(f"{kind} name {name[:40]!r}... is {len(name)} characters long; the limit is {NAME_MAX_LENGTH}")
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidName(f"{kind} name {name!r} is not allowed: use letters, digits, '.', '_' and '-', starting with a letter or digit, without '..'")
    return name


def validate_prefix(prefix: str) -> str:
    if not _PREFIX_RE.fullmatch(prefix):
        raise InvalidName(
            f"key prefix {prefix!r} is not allowed: it must start with '/', have no trailing '/', and use letters, digits, '.', '_' and '-' in its segments"
        )
    return prefix


@dataclass(frozen=True)
class Keyspace:
    """Builds and parses the keys of one tfleet installation (one prefix)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    # -- hosts ------------------------------------------------------------------------------
    def hosts_prefix(self) -> str:
        return f"{self.prefix}/hosts/"

    def host(self, host: str) -> str:
        return f"{self.hosts_prefix()}{validate_name('host', host)}"

    # -- assignments ------------------------------------------------------------------------
    def assignments_prefix(self, host: str | None = None) -> str:
        if host is None:
            return f"{self.prefix}/assignments/"
        return f"{self.prefix}/assignments/{validate_name('host', host)}/"

    def assignment(self, host: str, model: str) -> str:
        return f"{self.assignments_prefix(host)}{validate_name('model', model)}"

    # -- status ------------------------------------------------------------------------------
    def status_prefix(self, host: str | None = None) -> str:
        if host is None:
            return f"{self.prefix}/status/"
        return f"{self.prefix}/status/{validate_name('host', host)}/"

    def status(self, host: str, model: str) -> str:
        return f"{self.status_prefix(host)}{validate_name('model', model)}"

    # -- registry and intent (controller) -------------------------------------------------------
    def models_prefix(self) -> str:
        return f"{self.prefix}/models/"

    def model(self, model: str) -> str:
        return f"{self.models_prefix()}{validate_name('model', model)}"

    def versions_prefix(self, model: str | None = None) -> str:
        if model is None:
            return f"{self.prefix}/versions/"
        return f"{self.prefix}/versions/{validate_name('model', model)}/"

    def version(self, model: str, version: int) -> str:
        if not 0 <= version <= VERSION_MAX:
            raise InvalidName(f"version {version} of model {model!r} must be an integer in 0..{VERSION_MAX}")
        return f"{self.versions_prefix(model)}{version}"

    def history_prefix(self, model: str | None = None) -> str:
        if model is None:
            return f"{self.prefix}/history/"
        return f"{self.prefix}/history/{validate_name('model', model)}/"

    def history(self, model: str, sequence: int) -> str:
        # Zero-padded so that etcd's key order is the order of changes.
        if not 0 <= sequence <= HISTORY_SEQUENCE_MAX:
            raise InvalidName(f"history sequence {sequence} of model {model!r} must be in 0..{HISTORY_SEQUENCE_MAX}")
        return f"{self.history_prefix(model)}{sequence:012d}"

    def history_range(self, model: str, first: int | None = None, end: int | None = None) -> tuple[str, str]:
        """[start, end) keys of the entries ``first <= seq < end`` of a model (None: unbounded).

        Only well-formed sequence keys fall in the range (all digits sort between "0" and
        ":"), so a stray key written by hand under history/<model>/ is never read or deleted
        by a range built here.
        """
        prefix = self.history_prefix(model)
        start = self.history(model, first) if first is not None else f"{prefix}0"
        stop = self.history(model, end) if end is not None and end <= HISTORY_SEQUENCE_MAX else f"{prefix}:"
        return start, stop

    def history_cursor(self) -> str:
        """The history recorder's cursor (controller/history.py): every change of models/ up
        to its revision has a history entry (or a gap entry)."""
        return f"{self.prefix}/historycursor"

    def modelstatus_prefix(self) -> str:
        return f"{self.prefix}/modelstatus/"

    def modelstatus(self, model: str) -> str:
        return f"{self.modelstatus_prefix()}{validate_name('model', model)}"

    def hostctl_prefix(self) -> str:
        return f"{self.prefix}/hostctl/"

    def hostctl(self, host: str) -> str:
        return f"{self.hostctl_prefix()}{validate_name('host', host)}"

    def schedules_prefix(self, model: str | None = None) -> str:
        if model is None:
            return f"{self.prefix}/schedules/"
        return f"{self.prefix}/schedules/{validate_name('model', model)}/"

    def schedule(self, model: str, schedule_id: str) -> str:
        return f"{self.schedules_prefix(model)}{validate_name('schedule', schedule_id)}"

    def leader(self) -> str:
        return f"{self.prefix}/leader"

    def problems(self) -> str:
        return f"{self.prefix}/problems"

    def routes_prefix(self) -> str:
        return f"{self.prefix}/routes/"

    def routes(self, model: str) -> str:
        return f"{self.routes_prefix()}{validate_name('model', model)}"

    # -- parsing: classify is the only parser of keys; the helpers below are built on it ---------
    def classify(self, key: str) -> ParsedKey:
        """What ``key`` is: its section and the names, version, sequence or id it holds.

        Total and strict: any string gives a result and nothing raises. A key outside the
        prefix is FOREIGN, one under it in no section of this version is UNKNOWN (a later
        version's key: read past, never acted upon), and a key of a known section whose shape or
        names are wrong carries ``error`` (the sentence an operator reads in <prefix>/problems)
        with whatever parts were valid, so that a stray key written by hand is reported rather
        than acted upon.
        """
        section, tail = self._locate(key)
        shape = _SHAPES.get(section)
        if shape is None:  # FOREIGN, UNKNOWN, or a single key: nothing more to parse
            return ParsedKey(section)
        head = self.prefix + "/"
        parts = tail.split("/")
        if len(parts) != len(shape):
            form = "/".join(f"<{field}>" for field in shape)
            return ParsedKey(section, error=f"key {key!r} must have the form {head}{section}/{form}")
        host = model = schedule = None
        version = sequence = None
        errors: list[str] = []
        for field, text in zip(shape, parts, strict=True):
            try:
                if field == "host":
                    host = validate_name("host", text)
                elif field == "model":
                    model = validate_name("model", text)
                elif field == "schedule":
                    schedule = validate_name("schedule", text)
                elif field == "version":
                    version = _parse_version(text, key, head + section)
                else:
                    sequence = _parse_sequence(text, key, head + section)
            except InvalidName as e:
                errors.append(str(e))
        return ParsedKey(section, host, model, version, schedule, sequence, "; ".join(errors) or None)

    def section(self, key: str) -> Section:
        """classify(key).section, without parsing the names (the fleet cache files every key
        and watch event by section; the snapshot classifies the keys it keeps)."""
        return self._locate(key)[0]

    def _locate(self, key: str) -> tuple[Section, str]:
        """(the key's section, the rest of the key after <prefix>/<section>/)."""
        head = self.prefix + "/"
        if not key.startswith(head):
            return Section.FOREIGN, ""
        rest = key[len(head) :]
        single = _SINGLE_KEYS.get(rest)
        if single is not None:
            return single, ""
        segment, slash, tail = rest.partition("/")
        section = _DIRECTORIES.get(segment) if slash else None
        if section is None:
            return Section.UNKNOWN, ""
        return section, tail

    def build(self, parsed: ParsedKey) -> str:
        """The key ``parsed`` describes (the inverse of classify for every well-formed key).

        InvalidName for a description no key has (an error, a missing part, FOREIGN, UNKNOWN)."""
        if parsed.error is not None or parsed.section in (Section.FOREIGN, Section.UNKNOWN):
            raise InvalidName(f"no key is described by {parsed}")
        if parsed.section in _SINGLE_KEYS:
            return f"{self.prefix}/{parsed.section}"
        parts = [getattr(parsed, field) for field in _SHAPES[parsed.section]]
        if any(part is None for part in parts):
            raise InvalidName(f"no key is described by {parsed}: a part is missing")
        if parsed.section is Section.HISTORY:
            return self.history(parsed.model or "", parsed.sequence or 0)
        if parsed.section is Section.VERSIONS:
            return self.version(parsed.model or "", parsed.version or 0)
        shape = _SHAPES[parsed.section]
        return f"{self.prefix}/{parsed.section}/" + "/".join(validate_name(f, str(p)) for f, p in zip(shape, parts, strict=True))

    def expect(self, key: str, section: Section) -> ParsedKey:
        """classify(key), or InvalidName unless it is a well-formed key of ``section``."""
        parsed = self.classify(key)
        if parsed.section is not section:
            raise InvalidName(f"key {key!r} is not under {self.prefix}/{section}")
        if parsed.error is not None:
            raise InvalidName(parsed.error)
        return parsed

    def section_of(self, key: str) -> str:
        """The keyspace section a key is in ("models", "hosts", "leader", ...; "" if outside
        the prefix, "unknown" if in no section of this version)."""
        section = self.section(key)
        return "" if section is Section.FOREIGN else str(section)

    def first_segment(self, key: str, section: Section) -> str:
        """The raw first name of a key under <prefix>/<section>/ ("" if it is not under it),
        valid or not: what a skip scan of the section steps past (Registry.models_with_history)."""
        parsed = self.classify(key)
        if parsed.section is not section or section in _SINGLE_KEYS:
            return ""
        return key.removeprefix(f"{self.prefix}/{section}/").partition("/")[0]

    def in_section(self, key: str, section: Section) -> bool:
        """Whether ``key`` is in ``section`` (well-formed or not), without parsing its names: the
        cheap test for a hot path that files keys by section before classify parses them."""
        if section in _SINGLE_KEYS:
            return key == f"{self.prefix}/{section}"
        return key.startswith(f"{self.prefix}/{section}/")

    def relative(self, key: str) -> str:
        """The key as an operator reads it under this prefix ("models/m"); a foreign key whole."""
        return key.removeprefix(self.prefix + "/")

    def parent_prefix(self, parsed: ParsedKey) -> str:
        """The prefix a key lives directly under: <prefix>/models/ for a model's intent,
        <prefix>/status/<host>/ for a status, ...; InvalidName for FOREIGN, UNKNOWN or an
        error."""
        key = self.build(parsed)
        return key[: key.rindex("/") + 1]

    def name_after(self, key: str, section_prefix: str) -> str:
        """The last name of ``key``, which must lie directly under ``section_prefix`` (one of the
        prefixes built here: models_prefix(), status_prefix(host), ...)."""
        parsed = self.classify(key)
        if parsed.section in (Section.FOREIGN, Section.UNKNOWN) or not key.startswith(section_prefix):
            raise InvalidName(f"key {key!r} is not under {section_prefix!r}")
        if parsed.error is not None:
            raise InvalidName(parsed.error)
        parent, _, leaf = key.rpartition("/")
        if parent + "/" != section_prefix:
            raise InvalidName(f"key {key!r} must have the form {section_prefix}<name>")
        return leaf

    def parse_host_model(self, key: str, section: str) -> tuple[str, str]:
        """(host, model) of a well-formed ``<prefix>/<section>/<host>/<model>`` key (section:
        "assignments" or "status"); InvalidName otherwise."""
        if section not in (Section.ASSIGNMENTS, Section.STATUS):
            raise InvalidName(f"section {section!r} has no <host>/<model> keys")
        parsed = self.expect(key, Section(section))
        assert parsed.host is not None and parsed.model is not None  # expect: no error, every part
        return parsed.host, parsed.model

    def model_of_assignment(self, key: str, host: str) -> str:
        """The model named by an assignment key of ``host``; InvalidName if it is malformed."""
        key_host, model = self.parse_host_model(key, Section.ASSIGNMENTS)
        if key_host != host:
            raise InvalidName(f"key {key!r} belongs to host {key_host!r}, not {host!r}")
        return model

    def history_sequence(self, key: str, model: str) -> int:
        """The sequence number of a history key of ``model``; InvalidName if malformed."""
        parsed = self.classify(key)
        if parsed.section is not Section.HISTORY or parsed.model != model:
            raise InvalidName(f"key {key!r} is not under {self.history_prefix(model)!r}")
        if parsed.sequence is None:
            raise InvalidName(parsed.error or f"key {key!r} has no sequence")
        return parsed.sequence


class Section(StrEnum):
    """The sections of the keyspace (a StrEnum: each compares equal to its path segment)."""

    HOSTS = "hosts"
    ASSIGNMENTS = "assignments"
    STATUS = "status"
    MODELS = "models"
    VERSIONS = "versions"
    HISTORY = "history"
    HISTORYCURSOR = "historycursor"
    MODELSTATUS = "modelstatus"
    HOSTCTL = "hostctl"
    SCHEDULES = "schedules"
    LEADER = "leader"
    ROUTES = "routes"
    PROBLEMS = "problems"
    UNKNOWN = "unknown"  # under the prefix but in no section of this version (a later version's key)
    FOREIGN = "foreign"  # not under the prefix at all


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """What a key is (Keyspace.classify): its section, the parts it names, or why it is malformed.

    A part is None when the section has no such part, or when it is malformed (then ``error``
    says why: the other parts are still filled in, so a report can name the model of a bad
    version key)."""

    section: Section
    host: str | None = None
    model: str | None = None
    version: int | None = None
    schedule: str | None = None
    sequence: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A well-formed key of a section of this version."""
        return self.error is None and self.section not in (Section.FOREIGN, Section.UNKNOWN)

    @property
    def leaf(self) -> str:
        """The last part, as written in the key ("" for a single key such as leader)."""
        shape = _SHAPES.get(self.section, ())
        if not shape:
            return ""
        field = shape[-1]
        value = getattr(self, field)
        if field == "sequence" and value is not None:
            return f"{value:012d}"
        return "" if value is None else str(value)


# The parts of each directory section, in key order (the field names of ParsedKey).
_SHAPES: dict[Section, tuple[str, ...]] = {
    Section.HOSTS: ("host",),
    Section.ASSIGNMENTS: ("host", "model"),
    Section.STATUS: ("host", "model"),
    Section.MODELS: ("model",),
    Section.VERSIONS: ("model", "version"),
    Section.HISTORY: ("model", "sequence"),
    Section.MODELSTATUS: ("model",),
    Section.HOSTCTL: ("host",),
    Section.SCHEDULES: ("model", "schedule"),
    Section.ROUTES: ("model",),
}
_SINGLE_KEYS = {str(s): s for s in (Section.HISTORYCURSOR, Section.LEADER, Section.PROBLEMS)}
# (dict lookups: classify runs for every key the controller files, and Section(text) is slow)
_DIRECTORIES = {str(section): section for section in _SHAPES}
_VERSION_RE = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() accepts "²", which int() refuses
_SEQUENCE_RE = re.compile(r"[0-9]{12}")


def _parse_version(text: str, key: str, section_prefix: str) -> int:
    if not _VERSION_RE.fullmatch(text):
        raise InvalidName(f"key {key!r} must have the form {section_prefix}/<model>/<version>, the version in decimal digits")
    number = int(text)
    if str(number) != text:  # "01" and "1" must not share a slot
        raise InvalidName(f"key {key!r}: version {text!r} must be written without leading zeros ({number})")
    return number


def _parse_sequence(text: str, key: str, section_prefix: str) -> int:
    if not _SEQUENCE_RE.fullmatch(text):
        raise InvalidName(f"key {key!r} must have the form {section_prefix}/<model>/<12-digit sequence>")
    return int(text)
