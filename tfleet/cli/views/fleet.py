"""FleetView: the fleet as of one etcd revision, the input of every view."""

from __future__ import annotations

from dataclasses import dataclass

from tfleet.controller.planner import estimate_memory_mb
from tfleet.controller.snapshot import FleetSnapshot, read
from tfleet.keyspace import Keyspace, Section
from tfleet.schema import LeaderRecord, ModelIntent, RouteTable, SchemaError, parse
from tfleet.store import Snapshot


@dataclass
class FleetView:
    """The fleet as of one etcd revision: the controller's parsed snapshot plus the keys it
    does not plan with (leader, routes)."""

    keyspace: Keyspace
    fleet: FleetSnapshot
    leader: LeaderRecord | None
    routes: dict[str, RouteTable]
    hostctl_revisions: dict[str, int]

    @classmethod
    def of(cls, snapshot: Snapshot, keyspace: Keyspace) -> FleetView:
        leader = None
        kv = snapshot.get(keyspace.leader())
        if kv is not None:
            try:
                leader = parse(LeaderRecord, kv.value, kv.key)
            except SchemaError:
                leader = None
        routes: dict[str, RouteTable] = {}
        hostctl_revisions: dict[str, int] = {}
        for item in snapshot.items:
            key = keyspace.classify(item.key)
            if key.ok and key.section is Section.ROUTES and key.model is not None:
                try:
                    routes[key.model] = parse(RouteTable, item.value, item.key)
                except SchemaError:
                    continue
            elif key.ok and key.section is Section.HOSTCTL and key.host is not None:
                hostctl_revisions[key.host] = item.mod_revision
        return cls(keyspace, read(snapshot, keyspace), leader, routes, hostctl_revisions)

    @property
    def revision(self) -> int:
        return self.fleet.revision

    def models(self) -> list[str]:
        """Models the controller manages: every intent, and every model it still reports on."""
        return sorted(set(self.fleet.intents) | set(self.fleet.modelstatus))

    def knows_model(self, model: str) -> bool:
        """Anything in etcd names the model: an intent, a report, an assignment, a status,
        a registered version or a route table."""
        fleet = self.fleet
        return (
            model in fleet.intents
            or model in fleet.modelstatus
            or bool(fleet.holders.get(model))
            or model in fleet.versions
            or model in self.routes
            or any(name == model for _, name in fleet.statuses)
        )

    def hosts(self) -> list[str]:
        """Live hosts, hosts with operator controls, and hosts still holding assignments."""
        names = set(self.fleet.hosts) | set(self.fleet.hostctl) | {h for h, models in self.fleet.held_by.items() if models}
        names |= {host for host, _ in self.fleet.statuses}
        return sorted(names)

    def invalid_intents(self) -> list[str]:
        return sorted(name for name, parsed in self.fleet.intents.items() if parsed.value is None)

    def intent(self, model: str) -> ModelIntent | None:
        parsed = self.fleet.intents.get(model)
        return parsed.value if parsed is not None else None

    def memory_mb(self, model: str, intent: ModelIntent) -> int:
        return estimate_memory_mb(intent, self.fleet.versions.get(model, {}))
