"""The read-only web dashboard every controller serves (leader or standby).

It reads the process's fleet cache (controller/fleetcache.py), which runs on a standby as
on the leader, so a standby's dashboard is as live as the leader's:

* the cache's one watch of the prefix keeps the keys of every section but history/; the page
  asks for a model's history when it shows it (a bounded read of its newest entries);
* a thread named ``dashboard-state`` (the one supervised loop, tfleet/loop.py), woken by the
  cache, takes the keys changed since its last build from its own cursor of the cache, and
  turns them into a JSON state of the fleet at most once per coalescing window (100 ms)
  (``StateBuilder``: only the models whose keys changed are rebuilt; ``build_state`` is the
  pure one-shot form), and pushes a patch to every connected browser over server-sent
  events: the models that changed and the top-level parts that changed. A browser gets the
  whole state when its stream opens; while it lags, its patches are merged, so a slow
  browser never holds up the others;
* uvicorn serves the Starlette app in a thread named ``dashboard-http`` with its own event
  loop: ``/`` (a static page, vanilla JS, no build step), ``/api/state`` (the same JSON, for
  scripts), ``/api/events`` (the live stream) and ``/api/history/<model>``.

Nothing here writes to etcd, and the app has no route that accepts anything but GET.
"""

from tfleet.controller.dashboard.feed import FULL, merge_patches
from tfleet.controller.dashboard.history import HISTORY_LIMIT, HISTORY_LIMIT_MAX, PagedHistoryReader, build_history, default_history_reader
from tfleet.controller.dashboard.server import COALESCE_SECONDS, KEEPALIVE_SECONDS, SECURITY_HEADERS, Dashboard, SecurityHeaders
from tfleet.controller.dashboard.state import ModelPart, StateBuilder, build_state

__all__ = [
    "COALESCE_SECONDS",
    "FULL",
    "HISTORY_LIMIT",
    "HISTORY_LIMIT_MAX",
    "KEEPALIVE_SECONDS",
    "SECURITY_HEADERS",
    "Dashboard",
    "ModelPart",
    "PagedHistoryReader",
    "SecurityHeaders",
    "StateBuilder",
    "build_history",
    "build_state",
    "default_history_reader",
    "merge_patches",
]
