"""Parsing Terraform's -json UI on lines recorded from Terraform 1.0.3."""

from __future__ import annotations

import json

from estate.domain.deployments import OutputValue
from estate.runners.events import ChangeSummary, Collector, Diagnostic, Outputs, ResourceChange, describe, parse_line

RES = {
    "addr": "module.db.null_resource.status",
    "module": "module.db",
    "resource": "null_resource.status",
    "implied_provider": "null",
    "resource_type": "null_resource",
    "resource_name": "status",
    "resource_key": None,
}


def line(kind: str, message: str, level: str = "info", **payload: object) -> str:
    return json.dumps(
        {
            "@level": level,
            "@message": message,
            "@module": "terraform.ui",
            "@timestamp": "2026-11-26T17:50:21.387098Z",
            "type": kind,
            **payload,
        }
    )


PLAN = [
    line("version", "Terraform 1.0.3", terraform="1.0.3", ui="0.1.0"),
    line(
        "resource_drift",
        "module.db.null_resource.old: Drift detected (update)",
        change={"resource": {**RES, "addr": "module.db.null_resource.old"}, "action": "update"},
    ),
    line(
        "planned_change",
        "module.db.null_resource.status: Plan to replace",
        change={"resource": RES, "action": "replace"},
    ),
    line(
        "planned_change",
        "module.db.null_resource.x: Plan to create",
        change={"resource": {**RES, "addr": "module.db.null_resource.x"}, "action": "create"},
    ),
    line(
        "change_summary",
        "Plan: 2 to add, 0 to change, 1 to destroy.",
        changes={"add": 2, "change": 0, "remove": 1, "operation": "plan"},
    ),
]


def test_plan_lines_fold_into_a_summary_with_destructive_actions_and_drift() -> None:
    collector = Collector()
    for text in PLAN:
        collector.add(parse_line(text)[0])
    summary = collector.plan_summary()
    assert (summary.add, summary.change, summary.remove) == (2, 0, 1)
    assert [(c.address, c.action) for c in summary.destructive] == [("module.db.null_resource.status", "replace")]
    assert [c.action for c in summary.changes] == ["replace", "create"]
    assert [c.address for c in summary.drift] == ["module.db.null_resource.old"]
    assert str(summary) == "2 to add, 0 to change, 1 to destroy"


def test_apply_events_are_typed() -> None:
    event, _ = parse_line(
        line(
            "apply_errored",
            "module.db.null_resource.status: Creation errored after 0s",
            "error",
            hook={"resource": RES, "action": "create", "elapsed_seconds": 0},
        )
    )
    assert isinstance(event, ResourceChange)
    assert (event.type, event.address, event.action) == ("apply_errored", RES["addr"], "create")
    summary, _ = parse_line(
        line("change_summary", "Apply complete!", changes={"add": 1, "change": 0, "remove": 0, "operation": "apply"})
    )
    assert isinstance(summary, ChangeSummary) and summary.operation == "apply"


def test_diagnostics_become_reasons() -> None:
    text = line(
        "diagnostic",
        "Error: local-exec provisioner error",
        "error",
        diagnostic={
            "severity": "error",
            "summary": "local-exec provisioner error",
            "detail": "Error running command: exit status 3. Output: postgres: fail_apply is set",
            "address": "module.db.null_resource.status",
            "range": {"filename": ".terraform/modules/db/main.tf", "start": {"line": 31, "column": 3}},
        },
    )
    event, _ = parse_line(text)
    assert isinstance(event, Diagnostic) and event.where == ".terraform/modules/db/main.tf:31"
    collector = Collector()
    collector.add(event)
    assert collector.errors == [
        "module.db.null_resource.status: local-exec provisioner error: Error running "
        "command: exit status 3. Output: postgres: fail_apply is set"
    ]
    assert describe(json.loads(text)).startswith(
        "error: local-exec provisioner error (.terraform/modules/db/main.tf:31)"
    )


def test_sensitive_output_values_are_stripped_before_storage_and_display() -> None:
    text = line(
        "outputs",
        "Outputs: 2",
        outputs={
            "db__host": {"sensitive": False, "type": "string", "value": "h"},
            "db__password": {"sensitive": True, "type": "string", "value": "s3cret"},
        },
    )
    event, raw = parse_line(text)
    assert isinstance(event, Outputs)
    assert event.outputs == {"db__host": OutputValue(False, "h"), "db__password": OutputValue(True, None)}
    assert event.secrets == {"db__password": "s3cret"}
    assert "s3cret" not in json.dumps(raw)
    assert describe(raw) == 'outputs: db__host="h", db__password=(sensitive)'


def test_non_json_lines_are_text_events() -> None:
    event, raw = parse_line("Initializing modules...\n")
    assert (event.type, event.message) == ("estate.text", "Initializing modules...")
    assert raw == {"type": "estate.text", "@level": "info", "@message": "Initializing modules..."}
