"""Terraform's machine-readable UI (`-json`): parse lines into typed events, redact, summarise.

Each line of `plan -json` / `apply -json` is one JSON object with `type`, `@level`, `@message` and a
payload. We keep the raw object (redacted: sensitive output values removed) as the deployment's
event log, and derive typed events for progress, summaries and outputs. Lines that are not JSON
(e.g. `init`, which has no `-json` in Terraform 1.0) become `estate.text` events.
Estate's own events use types prefixed `estate.` (`estate.step`, `estate.text`, `estate.error`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from estate.domain.deployments import SENSITIVE, OutputValue, PlannedChange, PlanSummary

Raw = dict[str, Any]


@dataclass(frozen=True)
class TerraformEvent:
    """Any line: its type, level and human message."""

    type: str
    level: str
    message: str


@dataclass(frozen=True)
class ResourceChange(TerraformEvent):
    """planned_change, resource_drift, apply_start/complete/errored: one resource and an action."""

    address: str = ""
    action: str = ""


@dataclass(frozen=True)
class ChangeSummary(TerraformEvent):
    add: int = 0
    change: int = 0
    remove: int = 0
    operation: str = ""


@dataclass(frozen=True)
class Diagnostic(TerraformEvent):
    severity: str = "error"
    summary: str = ""
    detail: str = ""
    address: str = ""
    where: str = ""  # file:line, when Terraform says


@dataclass(frozen=True)
class Outputs(TerraformEvent):
    outputs: Mapping[str, OutputValue] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)  # sensitive values: never logged or shown


RESOURCE_TYPES = (
    "planned_change",
    "resource_drift",
    "apply_start",
    "apply_progress",
    "apply_complete",
    "apply_errored",
    "provision_start",
    "provision_progress",
    "provision_complete",
    "provision_errored",
    "refresh_start",
    "refresh_complete",
)


def estate_event(kind: str, message: str, level: str = "info", **extra: Any) -> Raw:
    """An event of Estate's own (a step starting, text output, an error), shaped like Terraform's."""
    return {"type": f"estate.{kind}", "@level": level, "@message": message, **extra}


def step_event(message: str) -> tuple[TerraformEvent, Raw]:
    """A step of Estate's own (`init skipped ...`, `applying the saved plan ...`) as a typed and a raw event."""
    return TerraformEvent("estate.step", "info", message), estate_event("step", message)


def parse_line(line: str) -> tuple[TerraformEvent, Raw]:
    """One stdout line -> (typed event, redacted raw object to store)."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError:
        raw = None
    if not isinstance(raw, dict) or "type" not in raw:
        text = line.rstrip("\n")
        return TerraformEvent("estate.text", "info", text), estate_event("text", text)
    return typed(raw)


def typed(raw: Raw) -> tuple[TerraformEvent, Raw]:
    """The typed view of one raw event, and the raw event with sensitive values removed."""
    kind, level, message = str(raw["type"]), str(raw.get("@level", "info")), str(raw.get("@message", ""))
    if kind in RESOURCE_TYPES:
        body = raw.get("change") or raw.get("hook") or {}
        address = str((body.get("resource") or {}).get("addr", ""))
        return ResourceChange(kind, level, message, address, str(body.get("action", ""))), raw
    if kind == "change_summary":
        c = raw.get("changes") or {}
        return ChangeSummary(
            kind,
            level,
            message,
            int(c.get("add", 0)),
            int(c.get("change", 0)),
            int(c.get("remove", 0)),
            str(c.get("operation", "")),
        ), raw
    if kind == "diagnostic":
        return _diagnostic(raw, level, message), raw
    if kind == "outputs":
        return _outputs(raw, level, message)
    return TerraformEvent(kind, level, message), raw


def _diagnostic(raw: Raw, level: str, message: str) -> Diagnostic:
    d = raw.get("diagnostic") or {}
    rng = d.get("range") or {}
    where = f"{rng.get('filename')}:{(rng.get('start') or {}).get('line', '?')}" if rng.get("filename") else ""
    return Diagnostic(
        "diagnostic",
        level,
        message,
        str(d.get("severity", level)),
        str(d.get("summary", "")),
        str(d.get("detail", "")),
        str(d.get("address", "")),
        where,
    )


def _outputs(raw: Raw, level: str, message: str) -> tuple[Outputs, Raw]:
    # Terraform 1.0 puts sensitive output values into the -json stream in clear: strip them here,
    # before anything is stored or printed, and hand them over separately for encryption.
    outputs: dict[str, OutputValue] = {}
    secrets: dict[str, Any] = {}
    redacted: dict[str, Any] = {}
    for name, out in (raw.get("outputs") or {}).items():
        sensitive = bool(out.get("sensitive"))
        if sensitive:
            secrets[name] = out.get("value")
            redacted[name] = {k: v for k, v in out.items() if k != "value"}
        else:
            redacted[name] = out
        outputs[name] = OutputValue(sensitive, None if sensitive else out.get("value"))
    return Outputs("outputs", level, message, outputs, secrets), {**raw, "outputs": redacted}


@dataclass
class Collector:
    """Folds a stream of events into a plan summary, outputs and the errors worth reporting."""

    changes: list[PlannedChange] = field(default_factory=list)
    drift: list[PlannedChange] = field(default_factory=list)
    summary: ChangeSummary | None = None
    outputs: dict[str, OutputValue] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, event: TerraformEvent) -> None:
        if isinstance(event, ResourceChange) and event.type == "planned_change":
            self.changes.append(PlannedChange(event.address, event.action))
        elif isinstance(event, ResourceChange) and event.type == "resource_drift":
            self.drift.append(PlannedChange(event.address, event.action))
        elif isinstance(event, ChangeSummary) and event.operation == "plan":
            self.summary = event
        elif isinstance(event, Diagnostic) and event.severity == "error":
            self.errors.append(_one_line(event))
        elif isinstance(event, Outputs):
            self.outputs.update(event.outputs)
            self.secrets.update(event.secrets)
        elif event.type == "estate.error":
            self.errors.append(event.message)

    def plan_summary(self) -> PlanSummary:
        s = self.summary
        # Terraform repeats planned_change events during apply: keep one per address, last wins.
        changes = tuple({c.address: c for c in self.changes if c.action != "noop"}.values())
        return PlanSummary(s.add if s else 0, s.change if s else 0, s.remove if s else 0, changes, tuple(self.drift))


def _one_line(d: Diagnostic) -> str:
    text = d.summary or d.message
    if d.detail:
        text += f": {d.detail}"
    if d.address:
        text = f"{d.address}: {text}"
    return " ".join(text.split())


def describe(raw: Mapping[str, Any]) -> str:
    """One human line for a stored event (the `estate deployment logs` rendering)."""
    event, _ = typed(dict(raw)) if "type" in raw else (TerraformEvent("?", "info", str(raw)), raw)
    if isinstance(event, Diagnostic):
        where = f" ({event.where})" if event.where else ""
        detail = f"\n    {event.detail}" if event.detail else ""
        return f"{event.severity}: {event.summary}{where}{detail}"
    if isinstance(event, Outputs):
        return "outputs: " + ", ".join(f"{k}={_show(v)}" for k, v in sorted(event.outputs.items()))
    return event.message


def _show(value: OutputValue) -> str:
    return SENSITIVE if value.sensitive else json.dumps(value.value)
