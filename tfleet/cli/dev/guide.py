"""The guide printed once the local fleet runs: the commands to try, with etcdctl equivalents."""

from __future__ import annotations

import pathlib

import click

from tfleet.cli.dev.rundir import DEFAULT_RUN_DIR
from tfleet.cli.dev.samples import CANARY_MODEL, HostPorts


def print_guide(
    endpoint: str,
    etcdctl: str,
    root: pathlib.Path,
    models_dir: pathlib.Path,
    fleet: list[HostPorts],
    logs_dir: pathlib.Path,
    controller_ports: list[int],
    dashboard_ports: list[int],
    lease_ttl: int,
    context_note: str,
    restart: bool,
) -> None:
    first = fleet[0]
    second = fleet[1] if len(fleet) > 1 else fleet[0]
    dashboards = ", ".join(f"http://127.0.0.1:{p}/ (c{i + 1})" for i, p in enumerate(dashboard_ports))
    run_dir_flag = "" if str(root) == DEFAULT_RUN_DIR else f" --run-dir {root}"
    down = "they restart (--restart)" if restart else "a killed daemon stays down"
    click.echo(
        f"""
tfleet local fleet is running ({len(fleet)} hosts, 2 controllers; run directory {root}).

  dashboard (live, read-only; every controller serves one): {dashboards}
  {context_note}

In another terminal, at the repository's root:

  export PATH="$PWD/.venv/bin:$PWD/scripts:$PATH" ETCDCTL_API=3 ETCDCTL_ENDPOINTS={endpoint}
  # (scripts/etcdctl is {etcdctl})

  # the fleet, with the CLI                 # ... and the same keys with etcdctl
  tfleet status                             # etcdctl get --prefix /tfleet/modelstatus/
  tfleet get hosts                          # etcdctl get --prefix /tfleet/hosts/
  tfleet get models                         # etcdctl get --prefix /tfleet/models/ --keys-only
  tfleet describe model resnet_lite         # etcdctl get /tfleet/modelstatus/resnet_lite
  tfleet alerts render                      # Prometheus rules from the models' alert thresholds

  # a canary of {CANARY_MODEL} version 2 runs on one replica
  tfleet rollout status {CANARY_MODEL}
  tfleet rollout promote {CANARY_MODEL}            # roll it out everywhere (or: tfleet rollout abort {CANARY_MODEL})
  tfleet history {CANARY_MODEL}                    # etcdctl get --prefix /tfleet/history/{CANARY_MODEL}/

  # serve version 2 of half_plus_two on {first.name} by hand, labelled stable
  etcdctl put /tfleet/assignments/{first.name}/half_plus_two \\
    '{{"base_path": "{models_dir}/half_plus_two", "model_version_policy": {{"specific": {{"versions": [2]}}}}, "version_labels": {{"stable": 2}}}}'
  etcdctl get /tfleet/status/{first.name}/half_plus_two
  # a bad value is reported in the status key; the model keeps serving
  etcdctl put /tfleet/assignments/{first.name}/half_plus_two '{{"base_path": '
  etcdctl get /tfleet/status/{first.name}/half_plus_two
  # ask the simulated TF Serving directly (REST)
  curl -s -d '{{"instances": [1.0, 2.0]}}' http://127.0.0.1:{first.rest}/v1/models/half_plus_two:predict

  # drills (docs/operations.md): watch the fleet heal in the dashboard, or with `tfleet watch`
  tfleet dev{run_dir_flag} kill-leader        # fail over: the standby controller leads within the lease TTL ({lease_ttl} s)
  tfleet dev{run_dir_flag} kill-host {second.name}       # lose a host: its agent and TF Serving die; its replicas move after the TTL
  tfleet dev{run_dir_flag} ps                 # which daemons run ({down})

agent metrics: {", ".join(f"http://127.0.0.1:{h.http}/metrics" for h in fleet)}
controllers (c1, c2; one leads): {", ".join(f"http://127.0.0.1:{p}/metrics" for p in controller_ports)}
logs: {logs_dir}
Press Ctrl-C to stop everything.
"""
    )
