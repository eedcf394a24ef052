"""What the operator commands show, from hand-made etcd snapshots (no etcd, no click)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tfleet.cli.views import FleetView, dry_run, dry_run_text, explain_model, fleet_status, health, host_row, model_row
from tfleet.keyspace import Keyspace
from tfleet.schema import HostControl, ModelIntent
from tfleet.store import KeyValue, Snapshot

KS = Keyspace("/f")
NOW = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.timezone.utc)


def view(keys: dict[str, Any]) -> FleetView:
    items = []
    for revision, (key, value) in enumerate(keys.items(), start=1):
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        items.append(KeyValue(key, raw, revision, revision, 1, 0))
    return FleetView.of(Snapshot(len(items), tuple(items)), KS)


def host(name: str, memory_mb: int = 1024, **labels: str) -> tuple[str, dict]:
    return KS.host(name), {
        "host": name,
        "grpc_address": f"{name}:8500",
        "rest_address": f"{name}:8501",
        "memory_mb": memory_mb,
        "labels": labels,
        "agent_version": "0.1.0",
        "started_at": "2026-11-27T14:00:00Z",
    }


def intent(name: str, **fields: Any) -> tuple[str, dict]:
    return KS.model(name), {"base_path": f"/m/{name}", **fields}


def report(name: str, replicas: list[dict], wanted: int, **fields: Any) -> tuple[str, dict]:
    return KS.modelstatus(name), {"intent_revision": None, "wanted_replicas": wanted, "replicas": replicas, "updated_at": "2026-11-27T15:00:00Z", **fields}


def replica(name: str, **versions: str) -> dict:
    return {"host": name, "versions": {v.lstrip("v"): s for v, s in versions.items()}, "ready": all(s == "AVAILABLE" for s in versions.values())}


def test_health_of_models() -> None:
    fleet = view(
        dict(
            [
                intent("ok", replicas=2),
                report("ok", [replica("h1", v1="AVAILABLE"), replica("h2", v1="AVAILABLE")], 2),
                intent("short", replicas=3),
                report("short", [replica("h1", v1="AVAILABLE")], 3, reasons=["2 of 3 replicas not placed: no room"]),
                intent("down", replicas=1),
                report("down", [replica("h1", v1="LOADING")], 1),
                intent("bad", replicas="many"),
                intent("new", replicas=1),
                report("gone", [], 0),
                intent("failed", replicas=1),
                report(
                    "failed",
                    [replica("h1", v1="AVAILABLE")],
                    1,
                    failures=[{"version": 2, "host": "h1", "error": "boom", "at": "2026-11-27T14:59:00Z", "retry_after": "2026-11-27T15:04:00Z"}],
                ),
            ]
        )
    )
    assert health(fleet, "ok") == ("ok", "")
    assert health(fleet, "short") == ("degraded", "2 of 3 replicas not placed: no room")
    assert health(fleet, "down") == ("unavailable", "no replica serves any version yet")
    state, why = health(fleet, "bad")
    assert state == "failing" and why.startswith("invalid intent: /f/models/bad: replicas: Input should be a valid integer")
    assert health(fleet, "new") == ("unknown", "no report from the controller yet")
    assert health(fleet, "gone")[0] == "deleting"
    assert health(fleet, "failed") == ("failing", "version 2 failed to load on h1: boom")
    row = model_row(fleet, "short")
    assert (row["serving"], row["wanted"], row["versions"], row["health"]) == (1, 3, "latest 1", "degraded")
    summary = fleet_status(fleet)
    assert summary["models"] == {"total": 7, "ok": 1, "degraded": 1, "failing": 2, "unavailable": 1, "unknown": 1, "deleting": 1}


def test_host_rows_count_memory_of_assigned_models() -> None:
    fleet = view(
        dict(
            [
                host("h1", 2048, zone="a"),
                intent("a", memory_mb=300),
                intent("b", memory_mb=200),
                (KS.assignment("h1", "a"), {"base_path": "/m/a"}),
                (KS.assignment("h1", "b"), {"base_path": "/m/b"}),
                (KS.assignment("h1", "byhand"), {"base_path": "/m/byhand"}),
                (KS.status("h1", "a"), {"assignment_revision": 5, "versions": {"1": {"state": "AVAILABLE"}}, "updated_at": "2026-11-27T15:00:00Z"}),
                (KS.hostctl("h1"), {"cordoned": True, "reason": "disk"}),
                (KS.hostctl("h9"), {"draining": True}),
            ]
        )
    )
    row = host_row(fleet, "h1")
    assert (row["state"], row["memory_used_mb"], row["memory_mb"], row["models"], row["reason"]) == ("up, cordoned", 500, 2048, ["a"], "disk")
    assert host_row(fleet, "h9")["state"] == "down, draining"
    assert fleet.hosts() == ["h1", "h9"]


def test_explain_names_selector_cordon_memory_and_agent_errors() -> None:
    fleet = view(
        dict(
            [
                host("h1", 1024, zone="a"),
                host("h2", 1024, zone="a"),
                host("h3", 1024, zone="b"),
                host("h4", 100, zone="a"),
                (KS.hostctl("h2"), {"cordoned": True, "reason": "disk swap"}),
                intent("m", replicas=3, memory_mb=512, host_selector={"zone": "a"}, model_version_policy={"specific": {"versions": [3]}}),
                (KS.assignment("h1", "m"), {"base_path": "/m/m", "model_version_policy": {"specific": {"versions": [3]}}}),
                (
                    KS.status("h1", "m"),
                    {
                        "assignment_revision": 7,
                        "versions": {"3": {"state": "END", "error_code": 5, "error_message": "no SavedModel"}},
                        "error": "version 3 failed to load: no SavedModel",
                        "updated_at": "2026-11-27T15:00:00Z",
                    },
                ),
                ("/f/leader", {"id": "c1", "since": "2026-11-27T14:00:00Z", "version": "0.1.0"}),
            ]
        )
    )
    text = explain_model(fleet, "m", NOW)
    assert text[0] == "m wants 3 replicas of version 3, each needing 512 MB (from memory_mb in the intent)."
    assert text[1] == "Its host selector zone=a matches 3 of 4 live hosts (h1, h2, h4); not h3 (zone=b)."
    assert "h1 holds a replica; 1024 MB offered, 512 MB free after placement." in text
    assert "h2 is cordoned: it takes no new replica (reason: disk swap); 1024 MB offered, 1024 MB free after placement." in text
    assert "h4 has too little free memory for a replica (100 MB < 512 MB); 100 MB offered, 100 MB free after placement." in text
    assert "The placement puts it on h1." in text
    assert any(line.startswith("Short of replicas: 2 of 3 replicas not placed") for line in text), text
    assert "h1 is assigned version 3; its agent reports 3 END." in text
    assert "h1's agent reports an error: version 3 failed to load: no SavedModel." in text
    assert "The controller has not reported on m yet (no modelstatus/m key)." in text
    assert not any("No controller leads" in line for line in text)


def test_dry_run_shows_placement_rollout_and_affected_models() -> None:
    current = [3]
    fleet = view(
        dict(
            [
                host("h1", 1024),
                host("h2", 1024),
                intent("m", replicas=2, memory_mb=256, model_version_policy={"specific": {"versions": current}}, version_labels={"stable": 3}),
                (KS.assignment("h1", "m"), {"base_path": "/m/m", "model_version_policy": {"specific": {"versions": [3]}}, "version_labels": {"stable": 3}}),
                (KS.assignment("h2", "m"), {"base_path": "/m/m", "model_version_policy": {"specific": {"versions": [3]}}, "version_labels": {"stable": 3}}),
                intent("other", replicas=1, memory_mb=100),
                (KS.assignment("h2", "other"), {"base_path": "/m/other"}),
            ]
        )
    )
    new = ModelIntent.model_validate(
        {"base_path": "/m/m", "replicas": 2, "memory_mb": 256, "model_version_policy": {"specific": {"versions": [4]}}, "version_labels": {"stable": 4}}
    )
    result = dry_run(fleet, {"m": new}, {"h2": HostControl(cordoned=True, draining=True)}, NOW)
    [m] = result["models"]
    assert m["action"] == "update"
    assert [c["path"] for c in m["changes"]] == ["model_version_policy.specific.versions", "version_labels.stable"]
    assert m["rollout"].phase == "adding" and m["rollout"].from_versions == [3] and m["rollout"].to_versions == [4]
    [other] = result["affected"]
    assert other["name"] == "other" and other["puts"].keys() == {"h1"}, "draining h2 moves its replica to h1"
    text = dry_run_text(result)
    assert "model m: update (model_version_policy.specific.versions: [3] -> [4]; version_labels.stable: 3 -> 4)" in text
    assert "  rollout:   adding, 3 -> 4: adding version 4" in text
    assert "model other: affected" in text and "host h2: create, cordoned, draining" in text
    unchanged = dry_run(fleet, {"m": fleet.fleet.intents["m"].value}, {}, NOW)
    assert unchanged["models"][0]["action"] == "unchanged" and unchanged["affected"] == []
