"""Health-gated rollouts end to end: the `estate` CLI driving real Terraform 1.0.3, judged by a real
Prometheus that scrapes the demo exporter every second.

The example module writes `$ESTATE_HOME/demo/status/<project>/<env>.json` when it applies; that
directory is a symlink to the exporter's status directory, so Prometheus sees exactly what Terraform
deployed (`pg_errors_ratio` ~0.25 on 2.0.0, ~0.001 on 1.0.0 and 2.0.1).

Sampling starts right after a wave's deployments. So that the first sample never finds a series
Prometheus has not scraped yet (no data, hence inconclusive), every wave either deploys environments
Prometheus already sees (deployed beforehand) or bakes 2 s before its Prometheus gate.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gating import Gated, watching
from tests.support.terraform import Sandbox, wait_for

pytestmark = pytest.mark.slow

ESTATE = str(Path(sys.executable).with_name("estate"))
ERRORS = 'max(pg_errors_ratio{project="{{ env.project }}", env="{{ env.id }}"})'
BAKE_2S = {"bake": "2s"}


def prom_gate(*, count: int = 3, failure_limit: int = 0, max_: float = 0.05, interval: str = "1s") -> dict[str, Any]:
    return {
        "prometheus": {
            "query": ERRORS,
            "max": max_,
            "interval": interval,
            "count": count,
            "failure_limit": failure_limit,
        }
    }


def wave(name: str, env_type: str, gates: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "select": {"env_type": env_type}, "max_parallel": 5, "gates": gates or [], **extra}


def gate_values(gate: dict[str, Any]) -> dict[str, list[float]]:
    """Every value each subject's samples observed."""
    return {s["subject"]: [v for sample in s["samples"] for v in sample["values"]] for s in gate["details"]["subjects"]}


def verdicts(gate: dict[str, Any]) -> dict[str, str]:
    return {s["subject"]: s["verdict"] for s in gate["details"]["subjects"]}


def env_versions(wave_view: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {e["env"]: (e["status"], e["version"]) for e in wave_view["envs"]}


# -- 1. the story -----------------------------------------------------------------------------------


def test_the_story_bad_wave_rolled_back_patch_promoted_to_production_with_four_eyes(gated: Gated) -> None:
    the_seed_story(gated)


def the_seed_story(gated: Gated) -> None:
    """The story of DESIGN.md, driven as a user drives it through `gated` (the CLI here; the Temporal engine
    runs it too, see tests/e2e/test_temporal_story.py; an over-HTTP variant plugs in the same way)."""
    envs = {"eph-1": "ephemeral", "eph-2": "ephemeral", "dev-1": "development", "prod-1": "production"}
    story = {
        "id": "story",
        "waves": [
            wave("eph", "ephemeral", [prom_gate()], on_failure="rollback"),
            wave("dev", "development", [BAKE_2S]),
            wave("prod", "production", [{"approval": {"role": "approver", "four_eyes": True}}, prom_gate(count=2)]),
        ],
    }
    gated.apply(envs, story, roles={"approver": ["alex", "bob"]})
    gated.deploy_all(*envs)
    untouched = {e: (gated.sandbox.home / "demo" / "status" / "shop" / f"{e}.json").stat().st_mtime for e in envs}

    # Alex starts 2.0.0: the ephemerals deploy it, the gate sees ~0.25 and wave 1 is rolled back.
    view = gated.json("rollout", "start", "postgres", "2.0.0", "--plan", "story", "--allow-destroy", "--as", "alex")
    rollout = view["id"]
    assert view["phase"] == "failed", view["reason"]
    eph = view["waves"][0]
    assert eph["phase"] == "rolled_back" and "gate 0 failed" in eph["reason"]
    gate = eph["gates"][0]
    assert gate["result"] == "failed"
    assert verdicts(gate) == {"shop/eph-1": "failed", "shop/eph-2": "failed"}
    for subject, values in gate_values(gate).items():
        assert 0.2 < max(values) < 0.3, f"{subject} observed {values}: 2.0.0's error ratio is ~0.25"
    for subject in gate["details"]["subjects"]:  # where to look: the query as sent, over the wave's window
        assert subject["links"]["prometheus"].startswith(f"{gated.prometheus.url}/graph?g0.expr=")
    assert env_versions(eph) == {"shop/eph-1": ("rolled_back", "1.0.0"), "shop/eph-2": ("rolled_back", "1.0.0")}
    assert [w["phase"] for w in view["waves"][1:]] == ["pending", "pending"]
    assert gated.deployed("eph-1") == gated.deployed("eph-2") == "1.0.0", "Terraform put 1.0.0 back"
    assert gated.usage() == dict.fromkeys(("shop/eph-1", "shop/eph-2", "shop/dev-1", "shop/prod-1"), "1.0.0")
    for env in ("dev-1", "prod-1"):
        path = gated.sandbox.home / "demo" / "status" / "shop" / f"{env}.json"
        assert gated.deployed(env) == "1.0.0" and path.stat().st_mtime == untouched[env], f"{env} was touched"

    # The patch: retarget 2.0.1 and rerun wave 1, which passes this time.
    assert gated.json("rollout", "retarget", rollout, "2.0.1", "--allow-destroy", "--as", "alex")["version"] == "2.0.1"
    view = gated.json("rollout", "rerun", rollout, "--wave", "1", "--as", "alex")
    assert view["phase"] == "awaiting_promotion", view["reason"]
    gate = view["waves"][0]["gates"][0]
    assert gate["result"] == "passed" and set(verdicts(gate).values()) == {"passed"}
    assert all(max(v) < 0.01 for v in gate_values(gate).values()), gate_values(gate)
    assert gated.deployed("eph-1") == gated.deployed("eph-2") == "2.0.1"

    # Wave 2 bakes, then production waits for a second pair of eyes.
    view = gated.json("rollout", "promote", rollout, "--as", "alex")
    assert view["phase"] == "awaiting_promotion" and view["current_wave"] == 2
    assert view["waves"][1]["gates"][0]["result"] == "passed" and gated.deployed("dev-1") == "2.0.1"
    view = gated.json("rollout", "promote", rollout, "--as", "alex")
    assert view["phase"] == "awaiting_approval" and view["current_wave"] == 3
    assert gated.deployed("prod-1") == "1.0.0", "an entry gate: nothing deploys before the approval"

    refused = gated.run("rollout", "approve", rollout, "--as", "alex", code=1)
    assert "four-eyes" in refused.err and "alex" in refused.err
    assert gated.status(rollout)["phase"] == "awaiting_approval"

    view = gated.json("rollout", "approve", rollout, "--as", "bob")
    assert view["phase"] == "completed", view["reason"]
    prod = view["waves"][2]
    assert prod["gates"][0]["approved_by"] == ["bob"] and prod["gates"][1]["result"] == "passed"
    assert {e: gated.deployed(e) for e in envs} == dict.fromkeys(envs, "2.0.1")
    assert set(gated.usage().values()) == {"2.0.1"}
    audit = [a["summary"] for a in view["audit"]]
    assert any("four-eyes" in s for s in audit), "the refused approval is in the audit trail"


# -- 2. failure_limit -------------------------------------------------------------------------------


def test_one_sick_environment_fails_the_gate_unless_failure_limit_tolerates_it(gated: Gated) -> None:
    """One environment is made unhealthy deterministically, with no race against Terraform: the
    exporter serves every `<status dir>/*/*.json`, so a second status file for shop/eph-3 in another
    directory (`sick/`) adds a pg_errors_ratio series for it at ~0.25 (version label 2.0.0) that
    Terraform never rewrites. It exists, and Prometheus has scraped it, before the rollout starts, so
    each of eph-3's samples sees max(...) ~0.25 while the other four see only their own 2.0.1 series.

    The same wave then meets two Prometheus gates on the same query and the same situation: with
    `failure_limit: 3` (count 3) eph-3's three failing samples are tolerated and the gate passes; with
    `failure_limit: 2` the gate fails, naming eph-3 alone."""
    envs = {f"eph-{i}": "ephemeral" for i in range(1, 6)}
    plan = {
        "id": "limits",
        "waves": [
            wave("eph", "ephemeral", [BAKE_2S, prom_gate(failure_limit=3), prom_gate(failure_limit=2)]),
            wave("dev", "development"),
        ],
    }
    gated.apply(envs, plan)
    sick = gated.exporter.status_dir / "sick" / "eph-3.json"
    sick.parent.mkdir()
    sick.write_text(json.dumps({"project": "shop", "env": "eph-3", "env_type": "ephemeral", "version": "2.0.0"}))
    gated.prometheus.wait_for_metric("pg_errors_ratio", project="shop", env="eph-3", version="2.0.0")

    view = gated.json("rollout", "start", "postgres", "2.0.1", "--plan", "limits", "--no-preflight")
    assert {e: gated.deployed(e) for e in envs} == dict.fromkeys(envs, "2.0.1")
    eph = view["waves"][0]
    tolerant, strict = eph["gates"][1], eph["gates"][2]

    assert tolerant["result"] == "passed"
    assert set(verdicts(tolerant).values()) == {"passed"}
    sick_subject = next(s for s in tolerant["details"]["subjects"] if s["subject"] == "shop/eph-3")
    assert "3 failed, failure_limit 3" in sick_subject["reason"]

    assert strict["result"] == "failed"
    assert verdicts(strict) == {f"shop/eph-{i}": "passed" if i != 3 else "failed" for i in range(1, 6)}
    assert strict["details"]["reason"].startswith("1 of 5 failed: shop/eph-3: 3 of 3 samples failed max 0.05")
    values = gate_values(strict)
    assert all(0.2 < v < 0.3 for v in values["shop/eph-3"]), values
    assert all(v < 0.01 for env, vs in values.items() if env != "shop/eph-3" for v in vs), values

    assert eph["phase"] == "failed" and eph["reason"] == "gate 2 failed"
    assert view["phase"] == "halted", "on_failure halt (the default): the wave stays deployed for a human"
    gated.run("rollout", "promote", view["id"], code=1)


# -- 3. Prometheus down -----------------------------------------------------------------------------


def test_prometheus_down_mid_gate_is_inconclusive_and_never_promotes(gated: Gated) -> None:
    """Prometheus is stopped while the gate samples (after its first sample): the missing evidence
    makes the gate inconclusive, the rollout halts, `promote` is refused; only a human's
    `approve --override` accepts the wave. The `prometheus` fixture restarts it for the next test."""
    plan = {
        "id": "outage",
        "waves": [wave("eph", "ephemeral", [prom_gate(interval="2s")]), wave("dev", "development")],
    }
    gated.apply({"eph-1": "ephemeral", "dev-1": "development"}, plan)
    gated.deploy_all("eph-1")
    errors: list[BaseException] = []

    def kill_prometheus_mid_gate() -> None:
        try:
            with watching(gated.sandbox) as wave1:
                wait_for(lambda: wave1("postgres-1").get("phase") == "verifying", timeout=120)
            time.sleep(1.0)  # samples at +0 s, +2 s, +4 s: the first one goes through
            gated.prometheus.stop()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    killer = threading.Thread(target=kill_prometheus_mid_gate)
    killer.start()
    try:
        view = gated.json("rollout", "start", "postgres", "2.0.1", "--plan", "outage", "--no-preflight")
    finally:
        killer.join()
    assert not errors, errors
    assert not gated.prometheus.running

    rollout, eph = view["id"], view["waves"][0]
    assert view["phase"] == "halted" and eph["phase"] == "inconclusive"
    gate = eph["gates"][0]
    assert gate["result"] == "inconclusive"
    (subject,) = gate["details"]["subjects"]
    assert subject["verdict"] == "inconclusive" and "unreachable" in subject["reason"], subject
    statuses = [s["status"] for s in subject["samples"]]
    assert statuses[0] == "ok" and "error" in statuses, statuses

    refused = gated.run("rollout", "promote", rollout, code=1)
    assert "halted" in refused.err
    assert gated.status(rollout)["phase"] == "halted", "inconclusive is never a pass"
    assert not (gated.sandbox.home / "demo" / "status" / "shop" / "dev-1.json").exists()

    view = gated.json("rollout", "approve", rollout, "--override", "--as", "bob")
    assert view["phase"] == "awaiting_promotion"
    assert view["waves"][0]["phase"] == "awaiting_promotion" and view["waves"][0]["overridden_by"] == "bob"
    assert view["waves"][1]["phase"] == "pending"


# -- 4. bake across an engine restart ---------------------------------------------------------------


def test_a_bake_counts_from_verification_start_across_an_engine_restart(gated: Gated) -> None:
    """`estate engine run` is SIGKILLed (with its process group) 6 s into a 20 s bake; the restarted
    engine ends the bake 20 s after the wave's verify_started_at, not 20 s after the restart."""
    gated.apply({"eph-1": "ephemeral"}, {"id": "soak", "waves": [wave("eph", "ephemeral", [{"bake": "20s"}])]})
    rollout = gated.json("rollout", "start", "postgres", "2.0.1", "--plan", "soak", "--no-preflight", "--detach")["id"]
    assert gated.status(rollout)["phase"] == "pending"

    engine = subprocess.Popen(
        [ESTATE, "engine", "run", rollout],
        env=gated.sandbox.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes it and anything it started
    )
    try:
        verify_started = _wait_for_verification(gated.sandbox, rollout, engine)
        wait_for(lambda: time.time() > verify_started.timestamp() + 6, timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(engine.pid, signal.SIGKILL)
        engine.wait()
    restarted = time.time()
    assert gated.status(rollout)["waves"][0]["phase"] == "verifying", "the bake was cut short by the kill"

    gated.run("engine", "run", rollout, "--once")
    view = gated.status(rollout)
    assert view["phase"] == "completed", view["reason"]
    eph = view["waves"][0]
    assert datetime.fromisoformat(eph["verify_started_at"]) == verify_started, "the restart kept the bake's start"
    bake = eph["gates"][0]
    assert bake["result"] == "passed" and bake["details"]["baked_seconds"] == 20
    baked = (datetime.fromisoformat(bake["at"]) - verify_started).total_seconds()
    assert restarted - verify_started.timestamp() > 5
    assert 20 <= baked < 20 + 4, f"the bake ended {baked:.1f}s after verification started"
    assert any("gate 0 baking -> passed" in e["summary"] for e in view["events"])
    assert gated.deployed("eph-1") == "2.0.1"


def _wait_for_verification(sandbox: Sandbox, rollout: str, engine: subprocess.Popen[bytes]) -> datetime:
    deadline = time.monotonic() + 120
    with watching(sandbox) as wave1:
        while time.monotonic() < deadline:
            assert engine.poll() is None, f"estate engine run exited ({engine.returncode}) before the bake"
            started: datetime | None = wave1(rollout).get("verify_started_at")
            if started is not None:
                return started
            time.sleep(0.1)
    raise AssertionError("wave 1 never started verifying")


# -- 5. auto_promote --------------------------------------------------------------------------------


def test_auto_promote_runs_into_the_next_wave_without_a_promote(gated: Gated) -> None:
    plan = {
        "id": "auto",
        "waves": [
            wave("eph", "ephemeral", [BAKE_2S, prom_gate(count=2)], auto_promote=True),
            wave("dev", "development"),
        ],
    }
    gated.apply({"eph-1": "ephemeral", "dev-1": "development"}, plan)

    view = gated.json("rollout", "start", "postgres", "2.0.1", "--plan", "auto", "--no-preflight")
    assert view["phase"] == "completed", json.dumps(view["waves"][0]["gates"], indent=1)
    eph, dev = view["waves"]
    assert eph["phase"] == "succeeded" and eph["reason"] == "auto-promoted"
    assert eph["gates"][1]["result"] == "passed"
    assert dev["phase"] == "succeeded" and env_versions(dev) == {"shop/dev-1": ("succeeded", "2.0.1")}
    commands = [a["summary"] for a in view["audit"] if a["kind"] in ("command", "refused")]
    assert commands == ["tester: start"], "one command: no promote"
    assert gated.deployed("eph-1") == gated.deployed("dev-1") == "2.0.1"


# -- 6. Grafana annotations -------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


class GrafanaStub(ThreadingHTTPServer):
    """Stands in for Grafana's annotation API (no Grafana server can be installed in CI): records
    every request and answers 200, 500, or nothing for longer than Estate's 2 s client timeout."""

    daemon_threads = False  # server_close() joins the handler threads

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _GrafanaHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def texts(self) -> list[str]:
        with self.lock:
            return [r.body["text"] for r in self.requests]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) breaks the pipe: expected here


class _GrafanaHandler(BaseHTTPRequestHandler):
    server: GrafanaStub

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with self.server.lock:
            self.server.requests.append(Request(self.path, dict(self.headers.items()), body))
        if self.server.mode == "hang":
            self.server.release.wait(3.0)  # past the client's 2 s timeout
            return
        status = 200 if self.server.mode == "ok" else 500
        payload = b'{"id": 1, "message": "Annotation added"}' if status == 200 else b'{"message": "boom"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def grafana_stub(mode: str) -> Iterator[GrafanaStub]:
    server = GrafanaStub(mode)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        thread.join()
        server.server_close()


def _outcome(view: dict[str, Any]) -> dict[str, Any]:
    """What a rollout decided, without times or IDs."""
    return {
        "phase": view["phase"],
        "waves": [
            {
                "phase": w["phase"],
                "reason": w["reason"],
                "gates": [
                    (g["kind"], g["result"], verdicts(g) if g["kind"] == "prometheus" else None) for g in w["gates"]
                ],
                "envs": env_versions(w),
            }
            for w in view["waves"]
        ],
    }


GRAFANA_OUTCOME = {
    "phase": "completed",
    "waves": [
        {
            "phase": "succeeded",
            "reason": "last wave passed its gates",
            "gates": [("bake", "passed", None), ("prometheus", "passed", {"shop/eph-1": "passed"})],
            "envs": {"shop/eph-1": ("succeeded", "2.0.1")},
        }
    ],
}


@pytest.mark.parametrize("mode", ["ok", "error", "hang"])
def test_grafana_annotations_and_a_grafana_outage_changes_nothing(
    gated: Gated, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A local http.server stands in for Grafana (no Grafana server can be installed in CI). With a
    Grafana that accepts them, every wave milestone arrives as a tagged annotation with the service
    account token; with one that answers 500 or never answers, the rollout's outcome is the same."""
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_test_token")
    plan = {"id": "annotated", "waves": [wave("eph", "ephemeral", [BAKE_2S, prom_gate(count=2)])]}
    with grafana_stub(mode) as grafana:
        settings = {"grafana": {"url": grafana.url, "token_env": "GRAFANA_TOKEN"}}
        gated.apply({"eph-1": "ephemeral"}, plan, settings=settings)
        started = time.time()
        view = gated.json("rollout", "start", "postgres", "2.0.1", "--plan", "annotated", "--no-preflight")
        assert _outcome(view) == GRAFANA_OUTCOME
        assert gated.deployed("eph-1") == "2.0.1"
        rollout = view["id"]
        wait_for(lambda: bool(grafana.texts()), timeout=10)  # Grafana was tried, whatever it answered
        if mode != "ok":
            return
        wait_for(lambda: any("succeeded" in t for t in grafana.texts()), timeout=10)

    texts = grafana.texts()
    prefix = f"{rollout}: wave 1 (eph)"
    assert any(t.startswith(f"{prefix} started") for t in texts), texts
    assert any(t.startswith(f"{prefix} gate 0 passed: baked 2s") for t in texts), texts
    assert any(t.startswith(f"{prefix} gate 1 passed") for t in texts), texts
    assert any(t.startswith(f"{prefix} succeeded") for t in texts), texts
    for request in grafana.requests:
        assert request.path == "/api/annotations"
        assert request.headers["Authorization"] == "Bearer glsa_test_token"
        assert request.headers["Content-Type"] == "application/json"
        assert request.body["tags"] == ["estate", f"rollout:{rollout}", "wave:eph", "module:postgres"]
        when = request.body["time"]
        assert isinstance(when, int) and started * 1000 - 1000 <= when <= time.time() * 1000, when
        assert request.body["text"].endswith("[postgres 2.0.1]")
