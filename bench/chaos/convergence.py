"""Convergence (invariant 4): does every model serve its latest intent on exactly its wanted
replicas, as the assignments, the agents' status and the simulators themselves agree?"""

from __future__ import annotations

import json
import pathlib
from collections import defaultdict
from typing import Any

from bench.chaos.fleet import Fleet, sim_state
from bench.chaos.schedule import JUNK_MODEL


def converged(fleet: Fleet, store: Any, wanted: dict[str, dict[str, Any]]) -> str | None:
    """None when every model serves its latest intent on exactly its wanted replicas (assignment,
    simulator and agent status agree), otherwise what is still missing."""
    from tfleet.schema import Assignment, ModelStatus

    ks = fleet.keyspace
    hosts = {ks.classify(kv.key).leaf for kv in store.list_prefix(ks.hosts_prefix()).items}
    if hosts != set(fleet.hosts):
        return f"hosts registered: {sorted(hosts)}"
    assigned: dict[str, dict[str, Any]] = defaultdict(dict)
    for kv in store.list_prefix(ks.assignments_prefix()).items:
        host, model = ks.parse_host_model(kv.key, "assignments")
        assigned[model][host] = kv
    if JUNK_MODEL in assigned or store.get(ks.model(JUNK_MODEL)) is not None:
        return "chaos-junk is still assigned or has an intent"
    statuses = {ks.parse_host_model(kv.key, "status"): kv for kv in store.list_prefix(ks.status_prefix()).items}
    states = {h: sim_state(fleet.rest[h]) for h in fleet.hosts}
    for model in fleet.models:
        intent = wanted[model]
        versions = frozenset(intent["model_version_policy"]["specific"]["versions"])
        if len(assigned[model]) != intent["replicas"]:
            return f"{model}: {len(assigned[model])} replicas assigned, {intent['replicas']} wanted"
        for host, kv in assigned[model].items():
            assignment = Assignment.model_validate_json(kv.value)
            policy = assignment.model_version_policy
            if policy.specific is None or frozenset(policy.specific.versions) != versions or assignment.version_labels != intent["version_labels"]:
                return f"{model} on {host}: assignment {kv.value.decode()} is not the latest intent"
            status_kv = statuses.get((host, model))
            if status_kv is None:
                return f"{model} on {host}: no status"
            status = ModelStatus.model_validate_json(status_kv.value)
            if status.assignment_revision != kv.mod_revision or status.error or status.version_labels != intent["version_labels"]:
                return f"{model} on {host}: status not ready ({status_kv.value.decode()[:200]})"
            if (states[host] or {}).get(model, frozenset()) != versions:
                return f"{model} on {host}: simulator serves {sorted((states[host] or {}).get(model, ()))}, wanted {sorted(versions)}"
        for host, state in states.items():
            if host not in assigned[model] and (state or {}).get(model):
                return f"{model}: {host} still serves it without an assignment"
    return None


def history_keep(fleet: Fleet) -> int:
    """The history retention the controllers apply (historycursor's `keep`; 100 by default)."""
    cursor = getattr(fleet.keyspace, "history_cursor", None)
    if cursor is None:
        return 100
    try:
        kv = fleet.store.get(cursor())
        return int(json.loads(kv.value).get("keep", 100)) if kv else 100
    except Exception:  # noqa: BLE001 (unreadable: assume the default)
        return 100


def dump_state(fleet: Fleet, path: pathlib.Path) -> None:
    """Every key and value under the prefix (except history), for a post-mortem."""
    try:
        items = fleet.store.list_prefix(fleet.keyspace.prefix + "/").items
    except Exception as exc:  # noqa: BLE001
        path.write_text(f"could not read etcd: {exc}\n")
        return
    lines = [f"{kv.key} (mod {kv.mod_revision}) {kv.value.decode(errors='replace')}" for kv in items if "/history/" not in kv.key]
    lines += [f"simulator {h}: {json.dumps({m: sorted(v) for m, v in (sim_state(fleet.rest[h]) or {}).items()})}" for h in fleet.hosts]
    path.write_text("\n".join(lines) + "\n")


class NotPlaced(Exception):
    """What the fleet still lacks (wait_until names the last one if it times out)."""


def placed(fleet: Fleet, wanted: dict[str, dict[str, Any]]) -> bool:
    """True once converged; otherwise raises NotPlaced saying what is missing and which
    daemons exited, so that a start that times out says why (it used to say only "timed out")."""
    missing = converged(fleet, fleet.store, wanted)
    if missing is None:
        return True
    dead = fleet.dead()
    raise NotPlaced(missing + (f"; exited: {', '.join(dead)} (logs in {fleet.logs})" if dead else ""))
