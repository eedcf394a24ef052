"""tfleet.controller: the central controller (placement, rollouts, election)."""
