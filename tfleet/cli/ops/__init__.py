"""The operator commands: apply, get, describe, status, history, diff, rollback, register,
rollout, cordon, uncordon, drain, watch, explain, predict (docs/cli.md).

Thin: parse, call the core (Registry, the store, the controller's pure planner), print. What
is shown is computed in views/; documents are read in documents.py; exit codes and
one-line errors live in output.py.

Every command takes the shared etcd options (--etcd, TLS, auth, --etcd-timeout) and
--prefix. Exit codes: 0 ok, 1 refused or failed, 2 bad input, 3 etcd unreachable.

One module per subject: context.py (Ops, fleet_command, shared options and helpers), models.py
(apply, get, describe, explain), status.py, history.py (history, diff, rollback), versions.py
(register), rollout.py, hosts.py (cordon, uncordon, drain), watch.py, predict.py. tfleet/cli/main.py
loads each command from its module when it is called.
"""

from tfleet.cli.ops.context import SECTIONS, CliLog, Ops, _check_model_name, _unknown_model, author_option, fleet_command

__all__ = ["SECTIONS", "CliLog", "Ops", "_check_model_name", "_unknown_model", "author_option", "fleet_command"]
