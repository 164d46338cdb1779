"""The deployment service against real Terraform 1.0.3 and the null provider (through a filesystem mirror)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from estate.domain.deployments import DeploymentKind, DeploymentStatus
from estate.domain.ids import EnvRef
from estate.runners import LocalPool
from estate.runners.secrets import unseal
from estate.runners.workspace import INIT_MARKER, Workspace
from estate.store import Store, tables
from tests.support.terraform import MODULES, Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow

S = DeploymentStatus


@pytest.fixture
def store(sandbox: Sandbox) -> Iterator[Store]:
    sandbox.apply(estate_doc({"e1": "ephemeral", "e2": "ephemeral", "e3": "ephemeral", "d1": "development"}))
    opened = Store.open(sandbox.settings().database_url)
    yield opened
    opened.close()


def ref(env: str) -> EnvRef:
    return EnvRef("shop", env)


def test_parallel_deploys_each_env_records_its_version_and_history(sandbox: Sandbox, store: Store) -> None:
    service = sandbox.service(store, max_parallel=3)
    ids = [service.create(ref(e), triggered_by="alex") for e in ("e1", "e2", "e3", "d1")]
    with LocalPool(service, 3) as pool:
        results = [f.result() for f in [pool.submit(i) for i in ids]]

    assert [r.status for r in results] == [S.SUCCEEDED] * 4
    for r in results:
        assert sandbox.status("shop", r.env.env) == {
            "module": "postgres",
            "version": "1.0.0",
            "project": "shop",
            "env": r.env.env,
            "env_type": r.graph.env_type,
        }
        assert [t.status for t in r.transitions] == [S.QUEUED, S.PLANNING, S.APPLYING, S.SUCCEEDED]
        assert r.plan_summary is not None and r.plan_summary.add == 1
        assert [c.action for c in r.plan_summary.changes] == ["create"]
        assert r.outputs["db.host"].value == f"shop-{r.env.env}-db.internal"
        assert r.outputs["db.password"].sensitive and r.outputs["db.password"].value is None
        assert r.tool_version == "terraform 1.0.3"
        assert (sandbox.home / "state" / "shop" / r.env.env / "terraform.tfstate").exists()
    events = service.repo.events(ids[0])
    types = [e["type"] for _, e in events]
    assert {"planned_change", "change_summary", "apply_start", "apply_complete", "outputs"} <= set(types)
    assert "(sensitive)" not in json.dumps(events) and "password" in json.dumps(events)
    outputs_event = next(e for _, e in events if e["type"] == "outputs")
    assert "value" not in outputs_event["outputs"]["db__password"]  # redacted before storage


def test_plan_only_changes_nothing_and_a_second_deploy_skips_init(sandbox: Sandbox, store: Store) -> None:
    service = sandbox.service(store)
    plan = service.run(service.create(ref("e1"), DeploymentKind.PLAN, triggered_by="alex"))
    assert plan.status is S.SUCCEEDED
    assert [t.status for t in plan.transitions] == [S.QUEUED, S.PLANNING, S.SUCCEEDED]
    assert plan.plan_summary is not None and plan.plan_summary.add == 1
    assert not (sandbox.home / "demo" / "status" / "shop" / "e1.json").exists()

    marker = sandbox.home / "work" / "shop" / "e1" / INIT_MARKER
    first = marker.stat().st_mtime_ns
    deployed = service.run(service.create(ref("e1"), triggered_by="alex"))
    assert deployed.status is S.SUCCEEDED
    assert marker.stat().st_mtime_ns == first
    messages = [e["@message"] for _, e in service.repo.events(deployed.id)]
    assert any(m.startswith("init skipped") for m in messages)


def test_failing_apply_records_diagnostic_and_leaves_other_envs_alone(sandbox: Sandbox, store: Store) -> None:
    doc = estate_doc(
        {"e1": "ephemeral", "e2": "ephemeral"},
        rules=[{"resource_type": "postgres", "module": "postgres", "version": "1.0.0"}],
    )
    doc["projects"].append(
        {
            "id": "bad",
            "owner": "t",
            "resources": {"db": {"type": "postgres", "params": {"fail_apply": True}}},
            "environments": [{"id": "e1", "type": "ephemeral"}],
        }
    )
    sandbox.apply(doc)
    service = sandbox.service(store)
    ids = [service.create(r, triggered_by="alex") for r in (EnvRef("bad", "e1"), ref("e1"), ref("e2"))]
    with LocalPool(service, 3) as pool:
        bad, good1, good2 = (f.result() for f in [pool.submit(i) for i in ids])

    assert bad.status is S.FAILED
    assert bad.reason is not None and bad.reason.startswith("apply failed:")
    assert "local-exec provisioner error" in bad.reason
    diagnostics = [e for _, e in service.repo.events(bad.id) if e["type"] == "diagnostic"]
    assert diagnostics and diagnostics[0]["diagnostic"]["severity"] == "error"
    assert [t.status for t in bad.transitions][-2:] == [S.APPLYING, S.FAILED]
    assert good1.status is S.SUCCEEDED and good2.status is S.SUCCEEDED
    assert sandbox.status("shop", "e2")["version"] == "1.0.0"


def test_timeout_kills_the_process_group_and_records_why(sandbox: Sandbox, store: Store) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}, params={"apply_delay_seconds": 617}))
    service = sandbox.service(store, timeout_seconds=8, kill_grace_seconds=1)
    dep = service.run(service.create(ref("e1"), triggered_by="alex"))

    assert dep.status is S.FAILED
    assert dep.reason is not None and dep.reason.startswith("timeout: the deployment exceeded its 8s limit during")
    assert "killed" in dep.reason
    left = subprocess.run(["pgrep", "-f", "sleep 617"], capture_output=True, text=True, check=False)
    assert left.stdout == "", "the provisioner's sleep must die with the process group"


def test_cancel_stops_a_running_deployment(sandbox: Sandbox, store: Store) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}, params={"apply_delay_seconds": 619}))
    service = sandbox.service(store, kill_grace_seconds=1)
    dep_id = service.create(ref("e1"), triggered_by="alex")
    with LocalPool(service, 1) as pool:
        future = pool.submit(dep_id)
        wait_for(lambda: service.get(dep_id).status is S.APPLYING)
        time.sleep(0.5)
        assert service.cancel(dep_id)
        dep = future.result(timeout=60)
    assert dep.status is S.CANCELLED and dep.reason == "cancelled during apply"
    assert service.cancel(dep_id) is False


def test_second_deployment_of_a_busy_env_errors_retryably_without_running(sandbox: Sandbox, store: Store) -> None:
    sandbox.apply(estate_doc({"e1": "ephemeral"}, params={"apply_delay_seconds": 3}))
    service = sandbox.service(store)
    first, second = (service.create(ref("e1"), triggered_by="alex") for _ in range(2))
    with LocalPool(service, 2) as pool:
        running = pool.submit(first)
        wait_for(lambda: service.get(first).status is S.APPLYING)
        busy = service.run(second)
        assert running.result().status is S.SUCCEEDED
    assert (busy.status, busy.retryable) == (S.ERRORED, True), "nothing was attempted: errored, not failed"
    assert busy.reason is not None and f"deployment {first}" in busy.reason
    assert [t.status for t in busy.transitions] == [S.QUEUED, S.ERRORED]


def _dead_holder() -> str:
    """A `host:pid` naming a process of this host that has exited."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return f"{socket.gethostname()}:{gone.pid}"


def test_recovery_marks_orphans_interrupted_and_clears_a_stale_state_lock(sandbox: Sandbox, store: Store) -> None:
    service = sandbox.service(store)
    dep_id = service.create(ref("e1"), triggered_by="alex")
    dead = _dead_holder()
    service.repo.transition(dep_id, S.PLANNING, service.now(), holder=dead)  # as if that process died right here
    queued = service.create(ref("e2"), triggered_by="alex")
    alive = service.create(ref("e2"), triggered_by="alex")  # queued by this (live) process: left alone
    with store.begin() as conn:
        conn.execute(tables.deployments.update().where(tables.deployments.c.id == queued).values(holder=dead))
    state = sandbox.home / "state" / "shop" / "e1"
    state.mkdir(parents=True)
    (state / "terraform.tfstate").write_text("")
    stale = state / ".terraform.tfstate.lock.info"
    stale.write_text(json.dumps({"ID": "dead", "Operation": "OperationTypeApply"}))

    recovered = service.recover()
    assert [(d.id, d.status) for d in recovered] == [(queued, S.CANCELLED), (dep_id, S.INTERRUPTED)]
    assert f"{dead} stopped" in (recovered[1].reason or "") and "never started" in (recovered[0].reason or "")
    assert service.get(alive).status is S.QUEUED
    assert not stale.exists()
    again = service.run(service.create(ref("e1"), triggered_by="alex"))
    assert again.status is S.SUCCEEDED


def test_rollback_reapplies_an_earlier_graph(sandbox: Sandbox, store: Store) -> None:
    service = sandbox.service(store)
    v1 = service.run(service.create(ref("e1"), triggered_by="alex"))
    sandbox.apply(
        estate_doc({"e1": "ephemeral"}, rules=[{"resource_type": "postgres", "module": "postgres", "version": "2.0.0"}])
    )
    v2 = service.run(service.create(ref("e1"), triggered_by="alex"))
    assert sandbox.status("shop", "e1")["version"] == "2.0.0"
    assert v2.plan_summary is not None and [c.action for c in v2.plan_summary.destructive] == ["replace"]

    back = service.run(service.rollback_to(ref("e1"), v1.id, triggered_by="alex"))
    assert back.kind is DeploymentKind.ROLLBACK and back.status is S.SUCCEEDED
    assert back.graph == v1.graph
    assert sandbox.status("shop", "e1")["version"] == "1.0.0"
    with pytest.raises(Exception, match="belongs to shop/e1"):
        service.rollback_to(ref("e2"), v1.id, triggered_by="alex")


def test_drift_after_a_manual_state_change(sandbox: Sandbox, store: Store) -> None:
    service = sandbox.service(store)
    assert service.run(service.create(ref("e1"), triggered_by="alex")).status is S.SUCCEEDED
    clean = service.run(service.create(ref("e1"), DeploymentKind.PLAN, triggered_by="drift"))
    assert clean.plan_summary is not None and not clean.plan_summary.has_changes

    work = sandbox.home / "work" / "shop" / "e1"
    subprocess.run(
        [str(service.toolchain().path), "state", "rm", "module.db.null_resource.status"],
        cwd=work,
        env={**service.config.environ, "CHECKPOINT_DISABLE": "1"},
        check=True,
        capture_output=True,
    )
    drifted = service.run(service.create(ref("e1"), DeploymentKind.PLAN, triggered_by="drift"))
    assert drifted.status is S.SUCCEEDED
    assert drifted.plan_summary is not None and drifted.plan_summary.add == 1


def test_git_source_and_encrypted_sensitive_outputs(sandbox: Sandbox, store: Store, tmp_path: Path) -> None:
    repo = tmp_path / "modules.git"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["cp", "-r", f"{MODULES / 'v2.0.1'}/.", str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v2.0.1"], check=True)
    subprocess.run([*git, "tag", "v2.0.1"], check=True)
    doc = estate_doc(
        {"e1": "ephemeral"}, rules=[{"resource_type": "postgres", "module": "postgres", "version": "3.0.0"}]
    )
    doc["modules"][0]["versions"].append(
        {
            "version": "3.0.0",
            "source": f"git::file://{repo}?ref=v2.0.1",
            "inputs": doc["modules"][0]["versions"][0]["inputs"],
        }
    )
    sandbox.apply(doc)
    key = Fernet.generate_key().decode()
    service = sandbox.service(store, secret_key=key)

    dep = service.run(service.create(ref("e1"), triggered_by="alex"))
    assert dep.status is S.SUCCEEDED, dep.reason
    assert sandbox.status("shop", "e1")["version"] == "2.0.1"
    token = service.repo.secrets(dep.id)
    assert token is not None and "password" not in token
    assert len(unseal(token, key)["db.password"]) == 64


def test_an_internal_error_is_recorded_not_left_dangling(
    sandbox: Sandbox, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_disk(self: Workspace) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(Workspace, "render", broken_disk)
    service = sandbox.service(store)
    dep_id = service.create(ref("e1"), triggered_by="alex")
    returned = service.run(dep_id)
    dep = service.get(dep_id)
    assert returned == dep, "the outcome is recorded and returned, not raised"
    assert dep.status is S.ERRORED and dep.reason == "internal error: OSError: No space left on device"
    assert not dep.retryable, "a broken disk does not mend itself: a human looks"


def test_resource_references_order_modules_and_typos_fail_before_plan(sandbox: Sandbox, store: Store) -> None:
    doc = estate_doc({"e1": "ephemeral"})
    doc["projects"][0]["resources"]["replica"] = {
        "type": "postgres",
        # `password` depends on db's resource id, so Terraform must create db first.
        "params": {"env": "${context.env_id}-replica", "size": "after ${resources.db.outputs.password}"},
    }
    sandbox.apply(doc)
    service = sandbox.service(store)
    dep = service.run(service.create(ref("e1"), triggered_by="alex"))
    assert dep.status is S.SUCCEEDED, dep.reason
    assert dep.outputs["replica.host"].value == "shop-e1-replica-db.internal"
    done = [e["hook"]["resource"]["addr"] for _, e in service.repo.events(dep.id) if e["type"] == "apply_complete"]
    assert done == ["module.db.null_resource.status", "module.replica.null_resource.status"]

    doc["projects"][0]["resources"]["replica"]["params"]["size"] = "${resources.db.outputs.hots}"
    sandbox.apply(doc)
    typo = service.run(service.create(ref("e1"), triggered_by="alex"))
    assert typo.status is S.FAILED and typo.plan_summary is None
    assert typo.reason == (
        "graph: resource 'replica' input 'size' refers to output 'hots' of 'db', which postgres@1.0.0 does not "
        "declare (it declares: host, password, version)"
    )
