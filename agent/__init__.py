"""tfleet.agent: the per-host agent (planner, reconciler, heartbeat, app)."""
