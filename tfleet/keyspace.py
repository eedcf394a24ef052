"""Every etcd key tfleet reads or writes, built and parsed in one place.

The keyspace is a public, versioned contract (docs/keyspace.md): operators read and write it
with etcdctl. Nothing else in the project formats a key by hand, so a change to the layout is
a change to this module, its tests and the document together.

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

KEYSPACE_VERSION = 1
DEFAULT_PREFIX = "/tfleet"
HISTORY_SEQUENCE_MAX = 10**12 - 1  # history sequence numbers are 12 zero-padded digits

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
        if version < 0:
            raise InvalidName(f"version {version} of model {model!r} must be a non-negative integer")
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

    def history_sequence(self, key: str, model: str) -> int:
        """The sequence number of a history key of ``model``; InvalidName if malformed."""
        prefix = self.history_prefix(model)
        if not key.startswith(prefix):
            raise InvalidName(f"key {key!r} is not under {prefix!r}")
        rest = key[len(prefix) :]
        if len(rest) != 12 or not rest.isascii() or not rest.isdigit():
            raise InvalidName(f"key {key!r} must have the form {prefix}<12-digit sequence>")
        return int(rest)

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

    def section_of(self, key: str) -> str:
        """The keyspace section a key is in ("models", "hosts", "leader", ...; "" if outside)."""
        if not key.startswith(self.prefix + "/"):
            return ""
        return key[len(self.prefix) + 1 :].partition("/")[0]

    def routes_prefix(self) -> str:
        return f"{self.prefix}/routes/"

    def routes(self, model: str) -> str:
        return f"{self.routes_prefix()}{validate_name('model', model)}"

    def name_after(self, key: str, section_prefix: str) -> str:
        """The single name segment of ``key`` directly under ``section_prefix``."""
        if not key.startswith(section_prefix):
            raise InvalidName(f"key {key!r} is not under {section_prefix!r}")
        rest = key[len(section_prefix) :]
        if "/" in rest:
            raise InvalidName(f"key {key!r} must have the form {section_prefix}<name>")
        return validate_name("key", rest)

    # -- parsing -----------------------------------------------------------------------------
    def parse_host_model(self, key: str, section: str) -> tuple[str, str]:
        """Split ``<prefix>/<section>/<host>/<model>`` into (host, model).

        Raises InvalidName for a key outside the section or with an invalid segment, so that
        a stray key written by hand is reported rather than acted upon.
        """
        head = f"{self.prefix}/{section}/"
        if not key.startswith(head):
            raise InvalidName(f"key {key!r} is not under {head!r}")
        parts = key[len(head) :].split("/")
        if len(parts) != 2:
            raise InvalidName(f"key {key!r} must have the form {head}<host>/<model>")
        host, model = parts
        return validate_name("host", host), validate_name("model", model)

    def model_of_assignment(self, key: str, host: str) -> str:
        """The model named by an assignment key of ``host``; InvalidName if it is malformed."""
        key_host, model = self.parse_host_model(key, "assignments")
        if key_host != host:
            raise InvalidName(f"key {key!r} belongs to host {key_host!r}, not {host!r}")
        return model
