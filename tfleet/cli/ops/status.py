"""tfleet status: the fleet at a glance."""

from __future__ import annotations

import click

from tfleet.cli.ops.context import Ops, fleet_command
from tfleet.cli.output import (
    OpsCommand,
    emit,
    format_time,
    output_option,
    short,
)

# -- status ---------------------------------------------------------------------------------------


@click.command("status", cls=OpsCommand)
@output_option
@fleet_command
def status(ops: Ops, output: str) -> None:
    """The fleet at a glance: leader, hosts, model health, rollouts in progress, problems."""
    from tfleet.cli.views import fleet_status, numbers

    data = fleet_status(ops.view())

    def human() -> str:
        leader = data["leader"]
        hosts = data["hosts"]
        models = data["models"]
        lines = [
            "Leader:    "
            + (f"{leader.id} (since {format_time(leader.since)}, version {leader.version})" if leader else "none: no controller leads, nothing changes"),
            f"Hosts:     {hosts['up']} up" + "".join(f", {hosts[k]} {k}" for k in ("down", "cordoned", "draining") if hosts[k]),
            f"Models:    {models['total']}: {models['ok']} ok, {models['degraded']} degraded, {models['failing']} failing"
            + "".join(f", {models[k]} {k}" for k in ("unavailable", "unknown", "deleting") if models[k]),
        ]
        if data["rollouts"]:
            lines.append(f"Rollouts:  {len(data['rollouts'])} in progress")
            lines += [
                f"  {r['model']}: {r['phase']}, {numbers(r['from'])} -> {numbers(r['to'])}" + (f": {short(r['reason'], 80)}" if r["reason"] else "")
                for r in data["rollouts"]
            ]
        else:
            lines.append("Rollouts:  none in progress")
        for problem in data["problems"]:
            lines.append(f"  {problem['model']} {problem['health']}: {short(problem['problem'], 100)}")
            lines += [f"    agent error on {e['host']}: {short(e['message'], 100)}" for e in problem["agent_errors"]]
        if data["invalid_keys"]:
            lines.append(f"Invalid keys: {len(data['invalid_keys'])} (etcdctl get <prefix>/problems lists them)")
            lines += [f"  {short(p, 120)}" for p in data["invalid_keys"][:5]]
        return "\n".join(lines)

    emit(output, data, human)
