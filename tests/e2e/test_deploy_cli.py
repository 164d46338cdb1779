"""`estate deploy | deployment | rollback | drift` as a user runs them, against real Terraform 1.0.3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from estate.cli.app import main
from estate.domain.deployments import DeploymentStatus
from estate.store import Store
from estate.store.deployments import DeploymentRepository
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object]:
    code, out, _ = run(capsys, *args, "--output", "json")
    return code, json.loads(out)


def test_deploy_show_logs_list(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral", "e2": "ephemeral", "d1": "development"}))

    code, data = as_json(capsys, "deploy", "shop/e1", "shop/e2", "shop/d1")
    assert code == 0
    assert isinstance(data, list) and [d["status"] for d in data] == ["succeeded"] * 3
    assert data[0]["outputs"] == {"db.host": "shop-e1-db.internal", "db.password": "(sensitive)", "db.version": "1.0.0"}
    assert sandbox.status("shop", "d1")["env_type"] == "development"

    code, out, _ = run(capsys, "deployment", "show", str(data[0]["id"]))
    assert code == 0 and "succeeded" in out and "(sensitive)" in out and "postgres@1.0.0" in out
    code, out, _ = run(capsys, "deployment", "logs", str(data[0]["id"]))
    assert code == 0 and "Plan: 1 to add" in out and "db__password=(sensitive)" in out
    code, out, _ = run(capsys, "deployment", "logs", str(data[0]["id"]), "--follow", "--output", "json")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and any(e["type"] == "change_summary" for e in events)
    code, listed = as_json(capsys, "deployment", "list", "shop/e1")
    assert code == 0 and [d["env"] for d in listed] == ["shop/e1"]  # type: ignore[union-attr]


def test_plan_only_then_failing_apply_then_rollback(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}))
    code, plan = as_json(capsys, "deploy", "shop/e1", "--plan-only")
    assert code == 0 and plan["kind"] == "plan" and plan["plan"]["add"] == 1  # type: ignore[index]
    assert not (sandbox.home / "demo" / "status").exists()

    code, good = as_json(capsys, "deploy", "shop/e1", "--as", "alex")
    assert code == 0 and good["triggered_by"] == "alex"  # type: ignore[index]

    sandbox.apply(
        estate_doc(
            {"e1": "ephemeral"},
            params={"fail_apply": True},
            rules=[{"resource_type": "postgres", "module": "postgres", "version": "2.0.0"}],
        )
    )
    code, out, err = run(capsys, "deploy", "shop/e1")
    assert code == 1
    assert "failed" in out and "apply failed" in err and "fail_apply is set" in err

    code, back = as_json(capsys, "rollback", "shop/e1", "--to", str(good["id"]))  # type: ignore[index]
    assert code == 0 and back["kind"] == "rollback" and back["versions"] == {"db": "postgres@1.0.0"}  # type: ignore[index]
    assert sandbox.status("shop", "e1")["version"] == "1.0.0"


def test_drift_reported_after_a_manual_change(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], terraform_binary: Path
) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral", "e2": "ephemeral"}))
    assert run(capsys, "deploy", "shop/e1", "shop/e2")[0] == 0
    code, out, _ = run(capsys, "drift", "--all", "--fail-on-drift")
    assert code == 0 and re.search(r"shop/e1 +in sync", out) and re.search(r"shop/e2 +in sync", out)

    subprocess.run(
        [str(terraform_binary), "state", "rm", "module.db.null_resource.status"],
        cwd=sandbox.home / "work" / "shop" / "e2",
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
        check=True,
        capture_output=True,
    )
    code, report = as_json(capsys, "drift", "--all")
    assert code == 0
    drifted = {r["env"]: r["drifted"] for r in report}  # type: ignore[attr-defined]
    assert drifted == {"shop/e1": False, "shop/e2": True}
    code, out, _ = run(capsys, "drift", "shop/e2", "--fail-on-drift")
    assert code == 1 and re.search(r"shop/e2 +drifted", out) and "module.db.null_resource.status" in out


def test_missing_and_too_old_binary_are_clear_errors(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}))
    monkeypatch.setenv("ESTATE_TF_BINARY", str(tmp_path / "no-such-tofu"))
    code, _, err = run(capsys, "deploy", "shop/e1")
    assert code == 1 and "no-such-tofu" in err and "does not exist" in err

    old = tmp_path / "terraform"
    old.write_text('#!/bin/sh\necho \'{"terraform_version": "0.15.5"}\'\n')
    old.chmod(0o755)
    monkeypatch.setenv("ESTATE_TF_BINARY", str(old))
    code, _, err = run(capsys, "deploy", "shop/e1")
    assert code == 1 and "0.15.5" in err and "1.0 or newer" in err
    code, listed = as_json(capsys, "deployment", "list")
    assert listed == []  # nothing was recorded


def test_bad_module_source_and_bad_input(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}, modules_dir=tmp_path / "nowhere"))
    code, _, err = run(capsys, "deploy", "shop/e1")
    assert code == 1 and "init failed" in err
    assert "nowhere" in err or "module" in err.lower()

    code, _, err = run(capsys, "deploy", "shop")
    assert code == 2 and "PROJECT/ENV" in err
    sandbox.apply(
        estate_doc({"e1": "ephemeral"}, params={"size": "${context.labels.tier}"}, modules_dir=tmp_path / "nowhere")
    )
    code, _, err = run(capsys, "deploy", "shop/e1")
    assert code == 2 and "no label 'tier'" in err


def test_console_script_runs_a_deploy(sandbox: Sandbox) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "estate"), "deploy", "shop/e1", "--output", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"


def test_logs_follow_streams_a_running_deployment(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}, params={"apply_delay_seconds": 2}))
    estate = str(Path(sys.executable).parent / "estate")
    with subprocess.Popen(
        [estate, "deploy", "shop/e1"], env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as deploy:
        store = Store.open(sandbox.settings().database_url)
        try:
            repo = DeploymentRepository(store)
            wait_for(lambda: bool(repo.list()) and repo.list()[0].status is DeploymentStatus.APPLYING)
        finally:
            store.close()
        code, out, _ = run(capsys, "deployment", "logs", "1", "--follow")
        assert deploy.wait(60) == 0
    assert code == 0
    lines = out.splitlines()
    assert any("Creation complete" in line for line in lines)
    assert lines[-1].startswith("outputs: ")  # followed to the end of the run
