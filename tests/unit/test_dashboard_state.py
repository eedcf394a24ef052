"""The dashboard's state and history (pure: a snapshot of the prefix in, JSON-ready dicts out)."""

from __future__ import annotations

import json
from importlib import resources

from tfleet.controller.dashboard import StateBuilder, build_history, build_state, merge_patches
from tfleet.keyspace import Keyspace
from tfleet.store import KeyValue, Snapshot, WatchEvent

KS = Keyspace("/t")
NOW = "2026-11-27T15:00:00Z"


def kv(key: str, value: dict | str, revision: int = 10) -> KeyValue:
    raw = value if isinstance(value, str) else json.dumps(value)
    return KeyValue(key, raw.encode(), revision, revision, 1, 0)


def host(name: str, **labels: str) -> dict:
    return {
        "host": name,
        "grpc_address": f"{name}:8500",
        "rest_address": f"{name}:8501",
        "memory_mb": 4096,
        "labels": labels,
        "agent_version": "0.1.0",
        "started_at": NOW,
    }


def status(revision: int, versions: dict, labels: dict | None = None, error: str | None = None) -> dict:
    return {"assignment_revision": revision, "versions": versions, "version_labels": labels or {}, "error": error, "updated_at": NOW}


AVAILABLE = {"state": "AVAILABLE", "error_code": 0, "error_message": ""}
LOADING = {"state": "LOADING", "error_code": 0, "error_message": ""}
FAILED = {"state": "END", "error_code": 3, "error_message": "Could not find meta graph def"}

INTENT_M = {
    "base_path": "/models/m",
    "model_version_policy": {"specific": {"versions": [1, 2]}},
    "version_labels": {"stable": 1},
    "replicas": 2,
    "spread_by": "zone",
}
REPORT_M = {
    "intent_revision": 5,
    "wanted_replicas": 2,
    "ready_replicas": {"1": 2, "2": 1},
    "replicas": [
        {"host": "h1", "versions": {"1": "AVAILABLE", "2": "AVAILABLE"}, "labels": {"stable": 1}, "ready": True, "canary": False},
        {"host": "h2", "versions": {"1": "AVAILABLE", "2": "END"}, "labels": {"stable": 1}, "ready": False, "canary": False},
    ],
    "rollout": {"phase": "adding", "from_versions": [1], "to_versions": [1, 2], "reason": "waiting for the new versions to be AVAILABLE on every replica"},
    "reasons": [],
    "error": None,
    "failures": [{"version": 2, "host": "h2", "error": "Could not find meta graph def", "at": NOW, "retry_after": "2026-11-27T15:05:00Z"}],
    "updated_at": NOW,
}
REPORT_BIG = {
    "intent_revision": 6,
    "wanted_replicas": 1,
    "ready_replicas": {},
    "replicas": [],
    "rollout": {"phase": "stable"},
    "reasons": ["replica not placed: needs 100000 MB, the largest free host has 4096 MB"],
    "error": None,
    "failures": [],
    "updated_at": NOW,
}


def history_entry(seq: int, action: str, previous: dict | None, new: dict | None, author: str | None = "alice") -> dict:
    return {
        "sequence": seq,
        "model": "m",
        "action": action,
        "revision": None,
        "at": NOW,
        "author": author,
        "source": "cli" if author else "etcd",
        "previous": previous,
        "new": new,
    }


def fleet_snapshot() -> Snapshot:
    items = [
        kv(KS.leader(), {"id": "c1", "since": NOW, "version": "0.1.0", "dashboard_address": "ctl:8080"}),
        kv(KS.host("h1"), host("h1", zone="a")),
        kv(KS.host("h2"), host("h2", zone="b")),
        kv(KS.host("bogus"), "{not json"),
        kv(KS.hostctl("h2"), {"cordoned": True, "draining": True, "reason": "kernel upgrade"}),
        kv(KS.model("m"), INTENT_M, 5),
        kv(KS.model("big"), {"base_path": "/models/big", "memory_mb": 100000}, 6),
        kv(KS.model("broken"), '{"base_path": "/x", "replicas": "many"}', 7),
        kv(KS.modelstatus("m"), REPORT_M),
        kv(KS.modelstatus("big"), REPORT_BIG),
        kv(
            KS.assignment("h1", "m"), {"base_path": "/models/m", "model_version_policy": {"specific": {"versions": [1, 2]}}, "version_labels": {"stable": 1}}, 8
        ),
        kv(KS.assignment("h2", "m"), {"base_path": "/models/m", "model_version_policy": {"specific": {"versions": [1, 2]}}}, 9),
        kv(KS.status("h1", "m"), status(8, {"1": AVAILABLE, "2": AVAILABLE}, {"stable": 1})),
        kv(KS.status("h2", "m"), status(8, {"1": AVAILABLE, "2": FAILED}, {"stable": 1})),  # behind: assignment is at 9
        kv(KS.assignment("h1", "hand"), {"base_path": "/models/hand"}, 11),
        kv(KS.status("h1", "hand"), status(11, {"3": LOADING})),
        kv(KS.assignment("gone", "hand"), {"base_path": "/models/hand"}, 12),
        kv(KS.assignment("h2", "typo"), '{"base_pth": "/models/typo"}', 13),
        kv(KS.history("m", 1), history_entry(1, "create", None, {"base_path": "/models/m", "replicas": 1})),
        kv(KS.history("m", 2), history_entry(2, "update", {"base_path": "/models/m", "replicas": 1}, {"base_path": "/models/m", "replicas": 2}, author=None)),
    ]
    return Snapshot(42, tuple(items))


def by_name(items: list[dict]) -> dict[str, dict]:
    return {item["name"]: item for item in items}


def test_state_of_a_fleet() -> None:
    state = build_state(fleet_snapshot(), KS)
    json.dumps(state)  # JSON-ready as it is

    assert state["revision"] == 42 and state["prefix"] == "/t"
    assert state["leader"] == {"id": "c1", "since": "2026-11-27T15:00:00Z", "version": "0.1.0", "dashboard_address": "ctl:8080"}

    hosts = by_name(state["hosts"])
    assert list(hosts) == ["gone", "h1", "h2"]  # the invalid host record is not a host
    assert hosts["h1"]["alive"] and hosts["h1"]["labels"] == {"zone": "a"} and hosts["h1"]["models"] == 2
    assert hosts["h2"]["cordoned"] and hosts["h2"]["draining"] and hosts["h2"]["control_reason"] == "kernel upgrade"
    assert not hosts["gone"]["alive"] and hosts["gone"]["grpc_address"] is None

    models = by_name(state["models"])
    assert list(models) == ["big", "broken", "hand", "m", "typo"]
    m = models["m"]
    assert m["managed"] and m["intent"]["policy"] == "versions 1, 2" and m["intent"]["labels"] == {"stable": 1}
    assert (m["ready_replicas"], m["wanted_replicas"]) == (1, 2)
    assert m["available"] == {"1": 2, "2": 1}
    assert m["rollout"] == {"phase": "adding", "from_versions": [1], "to_versions": [1, 2], "reason": REPORT_M["rollout"]["reason"]}
    assert m["intent_revision"] == 5  # the page reads the history again when it moves
    assert m["failures"][0]["host"] == "h2" and m["failures"][0]["retry_after"] == "2026-11-27T15:05:00Z"

    hand = models["hand"]
    assert not hand["managed"] and hand["intent"] is None and hand["rollout"] is None
    assert (hand["ready_replicas"], hand["wanted_replicas"]) == (0, 2)  # derived from its hand-written assignments
    assert models["broken"]["managed"] and models["broken"]["intent"] is None and "replicas" in models["broken"]["error"]

    cells = state["cells"]
    assert set(cells["m"]) == {"h1", "h2"}
    h1 = cells["m"]["h1"]
    assert h1["versions"] == {"1": AVAILABLE, "2": AVAILABLE} and h1["labels"] == {"stable": 1}
    assert h1["assigned"] == {"policy": "versions 1, 2", "labels": {"stable": 1}} and not h1["pending"]
    assert cells["m"]["h2"]["pending"]  # status describes revision 8, the assignment is at 9
    assert cells["m"]["h2"]["versions"]["2"]["state"] == "END"
    assert cells["hand"]["gone"]["pending"] and cells["hand"]["gone"]["versions"] == {}
    assert cells["typo"]["h2"]["assigned"] is None and "base_pth" in cells["typo"]["h2"]["assignment_error"]

    assert state["rollouts"] == [{"model": "m", **m["rollout"]}]
    kinds = {(e["kind"], e["model"], e["host"]) for e in state["errors"]}
    assert ("intent", "broken", None) in kinds
    assert ("placement", "big", None) in kinds
    assert ("failure", "m", "h2") in kinds
    assert ("agent", "m", "h2") in kinds  # version 2 END with TF Serving's message
    assert ("assignment", "typo", "h2") in kinds
    assert ("host", None, "gone") in kinds
    assert any(e["kind"] == "key" and "/t/hosts/bogus" in e["message"] for e in state["errors"])
    assert state["summary"] == {
        "hosts": 3,
        "hosts_alive": 2,
        "models": 5,
        "versions": {"AVAILABLE": 3, "END": 1, "LOADING": 1},
        "rollouts": 1,
        "errors": len(state["errors"]),
    }


def test_state_is_deterministic() -> None:
    assert build_state(fleet_snapshot(), KS) == build_state(fleet_snapshot(), KS)


class _Mirror:
    """The keys of a prefix kept by watch events (what the fleet cache holds, in a dict)."""

    def __init__(self) -> None:
        self._items: dict[str, KeyValue] = {}
        self.revision = 0

    def reset(self, snapshot: Snapshot) -> None:
        self._items = {kv.key: kv for kv in snapshot.items}
        self.revision = snapshot.revision

    def apply(self, events) -> None:
        for event in events:
            if event.kind == "delete":
                self._items.pop(event.key, None)
            else:
                self._items[event.key] = KeyValue(event.key, event.value, 0, event.mod_revision, 0, 0)
            self.revision = max(self.revision, event.mod_revision)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.revision, tuple(self._items.values()))


def test_incremental_builds_equal_full_builds_and_name_the_changed_models() -> None:
    builder = StateBuilder(KS)
    mirror = _Mirror()
    mirror.reset(fleet_snapshot())
    assert builder.build(mirror.snapshot()) == build_state(mirror.snapshot(), KS)
    assert builder.changed == {"big", "broken", "hand", "m", "typo"}  # first build: everything is new
    steps = [
        ([WatchEvent("put", KS.status("h1", "hand"), json.dumps(status(11, {"3": AVAILABLE})).encode(), 43)], {"hand"}),
        ([WatchEvent("put", KS.hostctl("h1"), b'{"cordoned": true}', 44)], set()),  # hosts are not per model
        ([WatchEvent("put", KS.history("m", 3), b"{}", 45)], set()),  # history is not part of the state
        ([WatchEvent("delete", KS.model("broken"), b"", 46)], {"broken"}),  # gone
        (
            [WatchEvent("put", KS.model("new"), json.dumps({"base_path": "/n"}).encode(), 47), WatchEvent("put", KS.versions_prefix("m") + "1", b"{}", 47)],
            {"new", "m"},
        ),
        ([WatchEvent("put", KS.leader(), b"{}", 48)], set()),
    ]
    for events, changed in steps:
        mirror.apply(events)
        assert builder.build(mirror.snapshot()) == build_state(mirror.snapshot(), KS), events
        assert builder.changed == changed, events
    assert "broken" not in builder.parts and "new" in builder.parts


def test_patches_merge_with_the_newer_value_winning() -> None:
    older = {"revision": 5, "hosts": ["a"], "models": {"m": {"model": 1}, "gone": None}}
    newer = {"revision": 6, "summary": {"x": 1}, "models": {"m": {"model": 2}}}
    assert merge_patches(None, newer) == newer
    assert merge_patches(older, newer) == {"revision": 6, "hosts": ["a"], "summary": {"x": 1}, "models": {"m": {"model": 2}, "gone": None}}
    assert merge_patches({"revision": 1, "leader": None}, {"revision": 2})["models"] == {}


def test_empty_prefix() -> None:
    state = build_state(Snapshot(1, ()), KS)
    assert state["leader"] is None and state["hosts"] == [] and state["models"] == [] and state["errors"] == []
    assert state["summary"]["models"] == 0


def test_history_newest_first_with_changes() -> None:
    history = build_history(fleet_snapshot(), KS, "m", limit=1)
    assert history["total"] == 2 and len(history["entries"]) == 1
    newest = history["entries"][0]
    assert newest["sequence"] == 2 and newest["action"] == "update" and newest["author"] is None and newest["source"] == "etcd"
    assert newest["revision"] == 10  # null in the entry: the entry key's mod_revision
    assert newest["changes"] == [{"path": "replicas", "old": 1, "new": 2}]
    everything = build_history(fleet_snapshot(), KS, "m")
    assert [e["sequence"] for e in everything["entries"]] == [2, 1]
    assert build_history(fleet_snapshot(), KS, "hand")["entries"] == []


def test_page_ships_as_package_data_and_never_parses_html_from_etcd() -> None:
    static = resources.files("tfleet.controller") / "dashboard_static"
    page = (static / "index.html").read_text()
    script = (static / "dashboard.js").read_text()
    assert '<script src="dashboard.js"></script>' in page and "http://" not in page and "https://" not in page  # no CDN
    # values come from etcd (anyone with etcdctl): the script builds text nodes only
    assert "innerHTML" not in script and "outerHTML" not in script and "insertAdjacentHTML" not in script
    assert 'new EventSource("api/events")' in script


def test_the_history_reader_gives_the_newest_entries() -> None:
    from tests.unit.fakeetcd import FakeEtcd
    from tfleet.controller.dashboard import PagedHistoryReader

    etcd = FakeEtcd()
    for sequence in range(1, 31):
        etcd.put(KS.history("m", sequence), json.dumps(history_entry(sequence, "update", None, None)).encode())
    etcd.put(KS.history("other", 1), b"{}")
    etcd.put(KS.history_prefix("m") + "zz-by-hand", b"{}")  # not a sequence key: never an entry
    reader = PagedHistoryReader(etcd, KS)
    snapshot, total = reader.newest("m", 5)
    assert total == 31  # every key under the model's history
    body = build_history(snapshot, KS, "m", 5, total)
    assert [e["sequence"] for e in body["entries"]] == [30, 29, 28, 27, 26] and body["total"] == 31
    assert reader.newest("m", 50)[0].items[0].key == KS.history("m", 1)
    assert reader.newest("none", 5) == (Snapshot(reader.newest("none", 5)[0].revision, ()), 0)
