"""The production walk-through (docs/operations.md, "Production setup") grants each agent
exactly the keys the keyspace module gives it, and shows the steps a production etcd needs."""

from __future__ import annotations

import shlex

from tests.deployfiles import production_section
from tfleet.keyspace import Keyspace


def etcdctl_grants(text: str) -> dict[str, list[tuple[str, bool, str]]]:
    """role -> [(permission, prefix?, key)] from the `etcdctl role grant-permission` lines."""
    grants: dict[str, list[tuple[str, bool, str]]] = {}
    for line in text.splitlines():
        if "role grant-permission" not in line or "$" in line:
            continue  # shell variables: a template, not the literal example checked here
        words = shlex.split(line.split("#", 1)[0])
        words = words[words.index("grant-permission") + 1 :]
        prefix = any(w in {"--prefix", "--prefix=true"} for w in words)
        rest = [w for w in words if not w.startswith("--")]
        role, permission, key = rest[0], rest[1], rest[2]
        grants.setdefault(role, []).append((permission, prefix, key))
    return grants


def test_the_production_walkthrough_grants_each_agent_only_its_own_keys() -> None:
    """The doc's example agent role is pinned to the keyspace module: exactly its host key,
    its status prefix (write) and its assignments prefix (read)."""
    section = production_section()
    assert section, "docs/operations.md has no '## Production setup' section"
    grants = etcdctl_grants(section)
    agent_roles = [role for role in grants if any("/hosts/" in key for _, _, key in grants[role])]
    assert agent_roles, "the walk-through shows no agent role"
    for role in agent_roles:
        host = next(key for _, _, key in grants[role] if "/hosts/" in key).rsplit("/", 1)[1]
        ks = Keyspace()
        assert sorted(grants[role]) == sorted(
            [
                ("readwrite", False, ks.host(host)),
                ("readwrite", True, ks.status_prefix(host)),
                ("read", True, ks.assignments_prefix(host)),
            ]
        ), f"role {role}: {grants[role]}"
    controller = grants.get("tfleet-controller", [])
    assert ("read", True, "/tfleet/") in controller or ("readwrite", True, "/tfleet/") in controller
    for needed in ("snapshot save", "--client-cert-auth", "auth enable", "user grant-role"):
        assert needed in section, f"the walk-through does not show {needed!r}"
