"""tfleet rollout start, promote, abort, status: move a model to a new version."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import click

from tfleet.cli.ops.context import Ops, _check_model_name, _unknown_model, author_option, fleet_command
from tfleet.cli.output import (
    OpsGroup,
    bad_input,
    emit,
    format_time,
    note,
    one_line,
    output_option,
    refused,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tfleet.schema import ModelIntent, VersionFailure

# -- rollout --------------------------------------------------------------------------------------


@click.group("rollout", cls=OpsGroup)
def rollout() -> None:
    """Start, promote, abort and follow a version rollout of a model."""


def _intent_for_rollout(ops: Ops, model: str) -> tuple[ModelIntent, int]:
    from tfleet.registry import RegistryError

    _check_model_name(model)
    try:
        intent, revision = ops.registry.get_intent(model)
    except RegistryError as exc:
        raise bad_input(f"{exc}; fix the intent first (tfleet rollback {model}, or tfleet apply)") from None
    if intent is None:
        raise bad_input(f"unknown model {model}: it has no intent (declare it first: tfleet apply -f FILE)")
    return intent, revision


def _write_rollout(ops: Ops, model: str, intent: ModelIntent, revision: int, author: str, rerun: str) -> int:
    from tfleet.registry import ConflictError

    try:
        return ops.registry.apply_intent(model, intent, author=author or None, expected_revision=revision)
    except ConflictError as exc:
        raise refused(ops.conflict(exc, rerun)) from None


def _with(intent: ModelIntent, **changes: Any) -> ModelIntent:
    """A copy of the intent with changes, validated again (labels must point at served versions)."""
    from tfleet.schema import ModelIntent

    document = intent.model_dump(mode="json", by_alias=True)
    rollout_changes = changes.pop("rollout", None)
    if rollout_changes:
        document["rollout"] = {**document["rollout"], **rollout_changes}
    document.update(changes)
    return ModelIntent.model_validate(document)


@rollout.command("start")
@click.argument("model")
@click.option("--version", "version", type=click.IntRange(min=0), required=True, help="The version to roll out.")
@click.option("--canary", "canary", type=click.IntRange(min=1), help="Canary on N replicas first (promote or abort it later).")
@click.option("--rolling", is_flag=True, help="Roll out to every replica at once (make-before-break), whatever the intent's strategy.")
@click.option("--label", default="stable", show_default=True, help="Label moved to the new version once it is AVAILABLE everywhere.")
@click.option("--no-label", is_flag=True, help="Move no label.")
@click.option("--force", is_flag=True, help="Start even if a rollout is in progress or the version is neither registered nor on disk.")
@author_option
@output_option
@fleet_command
def rollout_start(
    ops: Ops, model: str, version: int, canary: int | None, rolling: bool, label: str, no_label: bool, force: bool, author: str, output: str
) -> None:
    """Serve VERSION of MODEL instead of its current versions, make-before-break.

    Sets the intent's versions to [VERSION] and moves the label to it; with --canary N, only
    N replicas get it until `tfleet rollout promote`.
    """
    from tfleet.controller.rollout import CANARY_LABEL
    from tfleet.schema import utc_now

    if canary is not None and rolling:
        raise bad_input("--canary and --rolling exclude each other")
    if not no_label and label == CANARY_LABEL:
        raise bad_input(f"label {CANARY_LABEL!r} is set by the controller on canaries; pick another --label")
    intent, revision = _intent_for_rollout(ops, model)
    registered = [record.version for record in ops.registry.versions(model)]
    if version not in registered:
        _check_unregistered_version(model, intent.base_path, version, registered, force)
    report = ops.view().fleet.modelstatus.get(model)
    target = [version]
    if report is not None and not force:
        phase = report.rollout.phase
        if phase in ("adding", "labeling", "removing", "canary") and list(report.rollout.to_versions) != target:
            raise refused(
                f"{model} is in the middle of a rollout ({phase}, {_versions(report.rollout.from_versions)} -> "
                f"{_versions(report.rollout.to_versions)}); wait for it, abort it (tfleet rollout abort {model}), or pass --force"
            )
        now = utc_now()
        blocked = [f for f in report.failures if f.version == version and f.retry_after > now]
        if blocked:
            failure = blocked[0]
            raise refused(
                f"version {version} of {model} failed to load on {failure.host} ({one_line(failure.error)}); "
                f"the controller does not retry it before {format_time(failure.retry_after)}; fix the files and register a new version"
            )
    labels = {name: v for name, v in intent.version_labels.items() if v == version}
    dropped = {name: v for name, v in intent.version_labels.items() if v != version and (no_label or name != label)}
    if not no_label:
        labels[label] = version
    strategy = "canary" if canary is not None else ("rolling" if rolling else intent.rollout.strategy)
    rollout_changes: dict[str, Any] = {"strategy": strategy, "promote": False, "abort": False}
    if canary is not None:
        rollout_changes["canary_replicas"] = canary
    new = _with(intent, model_version_policy={"specific": {"versions": target}}, version_labels=labels, rollout=rollout_changes)
    if new == intent:
        emit(
            output,
            {"model": model, "action": "unchanged", "revision": revision},
            lambda: f"{model} already rolls out version {version} ({strategy}): nothing written",
        )
        return
    new_revision = _write_rollout(ops, model, new, revision, author, "tfleet rollout start")
    from_versions = _policy_versions(intent)
    data = {
        "model": model,
        "action": "started",
        "revision": new_revision,
        "from": from_versions,
        "to": target,
        "strategy": strategy,
        "canary_replicas": new.rollout.canary_replicas if strategy == "canary" else None,
        "labels": labels,
        "dropped_labels": dropped,
    }

    def human() -> str:
        how = (
            f"canary on {new.rollout.canary_replicas} replica{'s' if new.rollout.canary_replicas != 1 else ''}; then tfleet rollout promote {model} (or abort)"
            if strategy == "canary"
            else "rolling, make-before-break"
        )
        moving = f"version {from_versions} -> {version}" if intent.model_version_policy.specific is not None else f"{from_versions} -> version {version}"
        text = f"rollout of {model} started: {moving} ({how}); revision {new_revision}"
        if dropped:
            text += f"\nlabels dropped (their versions are no longer served): {', '.join(f'{k}={v}' for k, v in sorted(dropped.items()))}"
        return text + f"\nfollow it: tfleet rollout status {model}"

    emit(output, data, human)


def _check_unregistered_version(model: str, base_path: str, version: int, registered: list[int], force: bool) -> None:
    """A version that is not registered must at least be on disk where this CLI can look.

    Without the check, a typo (or a version not copied yet) starts a rollout every agent
    reports "not found", which the controller aborts only after a round trip. Refused (exit
    2) when base_path is visible here and lacks the version, or when it is not visible and
    the model has registered versions; a warning when nothing can be checked. --force
    starts it anyway.
    """
    from tfleet import modelfs

    listed = f" (registered: {', '.join(map(str, registered))})" if registered else " (none is registered)"
    path = modelfs.local_path(base_path)
    visible = path is not None and os.path.isdir(path)
    if visible and version in modelfs.inspect(base_path).versions:
        if registered:
            note(
                f"tfleet rollout start: version {version} of {model} is not registered{listed}; "
                f"it is on disk, so starting (register it: tfleet register {model} {version})"
            )
        return
    if force:
        note(f"tfleet rollout start: version {version} of {model} is neither registered nor found under {base_path}; starting anyway (--force)")
        return
    if visible:
        raise bad_input(
            f"version {version} of {model} is neither registered{listed} nor found under its base_path "
            f"(no {base_path.rstrip('/')}/{version}/saved_model.pb); copy it there and register it "
            f"(tfleet register {model} {version}), or pass --force"
        )
    if registered:
        raise bad_input(
            f"version {version} of {model} is not registered{listed} and its base_path {base_path} cannot be "
            f"looked into from here; register it first (tfleet register {model} {version}) or pass --force"
        )
    note(
        f"tfleet rollout start: warning: version {version} of {model} is not registered and its base_path {base_path} cannot be "
        f"looked into from here; if the agents do not find it, the controller aborts the rollout"
    )


def _versions(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in values) or "none"


def _policy_versions(intent: ModelIntent | None) -> str:
    from tfleet.cli.views import versions_text

    return versions_text(intent)


def _set_rollout_flag(ops: Ops, model: str, flag: str, author: str, output: str, done: str) -> None:
    intent, revision = _intent_for_rollout(ops, model)
    if flag == "promote" and intent.rollout.strategy != "canary":
        raise refused(f"{model}'s rollout strategy is rolling: there is no canary to promote")
    if getattr(intent.rollout, flag):
        emit(output, {"model": model, "action": "unchanged", "revision": revision}, lambda: f"{model}: rollout.{flag} is already set: nothing written")
        return
    new = _with(intent, rollout={flag: True})
    new_revision = _write_rollout(ops, model, new, revision, author, f"tfleet rollout {flag}")
    report = ops.view().fleet.modelstatus.get(model)
    phase = report.rollout.phase if report else None
    data = {"model": model, "action": flag, "revision": new_revision, "phase": phase}

    def human() -> str:
        text = f"{model}: {done} (rollout.{flag} set, revision {new_revision})"
        if flag == "promote" and phase not in (None, "canary"):
            text += f"\nnote: the controller last reported phase {phase}, not canary"
        return text

    emit(output, data, human)


@rollout.command("promote")
@click.argument("model")
@author_option
@output_option
@fleet_command
def rollout_promote(ops: Ops, model: str, author: str, output: str) -> None:
    """Promote MODEL's canary: roll the new version out to every replica."""
    _set_rollout_flag(ops, model, "promote", author, output, "canary promoted, the new version goes to every replica")


@rollout.command("abort")
@click.argument("model")
@author_option
@output_option
@fleet_command
def rollout_abort(ops: Ops, model: str, author: str, output: str) -> None:
    """Abort MODEL's rollout: the new version is taken away again (start a new rollout to clear it)."""
    _set_rollout_flag(ops, model, "abort", author, output, "rollout aborted, the new version is taken away again")


# What `rollout status -o json` prints (keys in this order); "from" is a keyword, hence the call form.
_RolloutStatus = TypedDict(
    "_RolloutStatus",
    {
        "model": str,
        "intent_versions": str,
        "strategy": Literal["rolling", "canary"] | None,
        "promote": bool | None,
        "abort": bool | None,
        "phase": str | None,
        "from": list[int],
        "to": list[int],
        "reason": str | None,
        "available": dict[str, int],
        "canary_hosts": list[str],
        "wanted": int,
        "failures": "list[VersionFailure]",
    },
)


@rollout.command("status")
@click.argument("model")
@output_option
@fleet_command
def rollout_status(ops: Ops, model: str, output: str) -> None:
    """Phase, versions from -> to, replicas serving each version, canaries and reason."""
    from tfleet.cli.views import versions_text

    _check_model_name(model)
    view = ops.view()
    if not view.knows_model(model):
        raise _unknown_model(ops, model, view)
    intent = view.intent(model)
    report = view.fleet.modelstatus.get(model)
    data: _RolloutStatus = {
        "model": model,
        "intent_versions": versions_text(intent),
        "strategy": intent.rollout.strategy if intent else None,
        "promote": intent.rollout.promote if intent else None,
        "abort": intent.rollout.abort if intent else None,
        "phase": report.rollout.phase if report else None,
        "from": report.rollout.from_versions if report else [],
        "to": report.rollout.to_versions if report else [],
        "reason": report.rollout.reason if report else None,
        "available": dict(report.ready_replicas) if report else {},
        "canary_hosts": [r.host for r in report.replicas if r.canary] if report else [],
        "wanted": report.wanted_replicas if report else (intent.replicas if intent else 0),
        "failures": report.failures if report else [],
    }

    def human() -> str:
        if report is None:
            return f"{model}: no report from the controller yet (intent versions {data['intent_versions']})"
        lines = [
            f"Phase:      {data['phase']}"
            + (f", {_versions(data['from'])} -> {_versions(data['to'])}" if data["phase"] != "stable" else f" (versions {_versions(data['to'])})")
        ]
        lines.append(f"Strategy:   {data['strategy']}" + (" (promoted)" if data["promote"] else "") + (" (aborted)" if data["abort"] else ""))
        available = ", ".join(f"version {v}: {n}/{data['wanted']}" for v, n in sorted(data["available"].items(), key=lambda i: int(i[0]))) or "none"
        lines.append(f"Available:  {available}")
        if data["canary_hosts"]:
            lines.append(f"Canaries:   {', '.join(data['canary_hosts'])}")
        if data["reason"]:
            lines.append(f"Reason:     {one_line(data['reason'])}")
        for failure in data["failures"]:
            lines.append(
                f"Failure:    version {failure.version} on {failure.host}: {one_line(failure.error)} (not retried before {format_time(failure.retry_after)})"
            )
        return "\n".join(lines)

    emit(output, data, human)
