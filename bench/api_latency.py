"""`estate server` latency on a 10,000-environment rollout (SQLite, fake runner, loopback HTTP).

- `GET /api/v1/rollouts/{id}` p50/p99, the full view and `?summary=true`, against the same use case called
  in-process (the baseline: what HTTP and JSON add);
- command accept latency: `POST .../pause` and `.../resume` until the state machine's answer, p50/p99;
- the CLI as a client (ESTATE_URL) vs embedded, `rollout status` and `env list`, each a fresh process as a
  user runs it (medians; ratio remote / embedded).

The rollout waits on an approval gate in wave 1, so nothing deploys while it is measured.

    .venv/bin/python bench/api_latency.py [--envs 10000] [--runs 30] [--cli-runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from estate.app import Caller, Wiring, bootstrap
from estate.app.views.rollouts import EnvQuery
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from estate.testing.server import bearer, serve_in_thread

sys.path.insert(0, str(Path(__file__).parent))
from rollout_overhead import estate_yaml  # the same generated estate as the engine benchmark

ESTATE = str(Path(sys.executable).with_name("estate"))


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def timed(work: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        out.append(time.perf_counter() - start)
    return out


def cli(args: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(
        timed(lambda: subprocess.run([ESTATE, *args], env=env, check=True, capture_output=True), runs)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cli-runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        doc = estate_yaml(args.envs)
        doc["rollout_plans"][0]["waves"][0]["gates"] = [{"approval": {"role": "approver"}}]  # type: ignore[index]
        doc["access"] = [{"role": "admin", "subjects": ["bench"]}]
        (Path(tmp) / "estate.yaml").write_text(yaml.safe_dump(doc))
        environ = {"ESTATE_HOME": tmp, "PATH": os.environ["PATH"]}
        setup = bootstrap(environ)
        setup.inventory.apply(Caller("bench"), Path(tmp) / "estate.yaml", dry_run=False, prune=False, force=False)
        rollout = setup.rollouts.start(Caller("bench"), "postgres", "2.0.0", "bench", preflight=False, follow=False).id
        setup.rollouts.drive(rollout)  # wave 1 now waits for its approval
        n = len(setup.rollouts.state(rollout).envs)
        token = setup.identity.create_token(Caller("bench"), "bench").token
        inproc_full = timed(lambda: setup.rollouts.status(rollout), args.runs)
        inproc_summary = timed(lambda: setup.rollouts.status(rollout, query=EnvQuery(summary=True)), args.runs)
        setup.close()

        wiring = Wiring(runner=lambda store, _s: FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC)))
        server = serve_in_thread(environ, wiring)
        try:
            with httpx.Client(base_url=server.url, headers=bearer(token), timeout=60) as http:
                path = f"/api/v1/rollouts/{rollout}"
                http_full = timed(lambda: http.get(path).raise_for_status(), args.runs)
                http_summary = timed(lambda: http.get(path, params={"summary": "true"}).raise_for_status(), args.runs)
                commands: list[float] = []
                for i in range(args.runs):
                    verb = "pause" if i % 2 == 0 else "resume"
                    commands += timed(lambda v=verb: http.post(f"{path}/{v}").raise_for_status(), 1)
            embedded = {**os.environ, "ESTATE_HOME": tmp}
            embedded.pop("ESTATE_URL", None)
            remote = {**embedded, "ESTATE_URL": server.url, "ESTATE_TOKEN": token}
            cli_rows = [
                (what, cli(argv, embedded, args.cli_runs), cli(argv, remote, args.cli_runs))
                for what, argv in (
                    ("rollout status --summary", ["rollout", "status", rollout, "--summary"]),
                    ("rollout status", ["rollout", "status", rollout]),
                    ("env list", ["env", "list"]),
                )
            ]
        finally:
            server.stop()

    print(f"\n{n} environments in the rollout, {args.runs} runs each (seconds)\n")
    print(f"{'measure':<46}{'p50':>10}{'p99':>10}")
    for label, samples in (
        ("status in-process (baseline), full", inproc_full),
        ("GET /rollouts/{id}, full", http_full),
        ("status in-process (baseline), summary", inproc_summary),
        ("GET /rollouts/{id}?summary=true", http_summary),
        ("command accepted (pause/resume round trip)", commands),
    ):
        p50, p99 = percentiles(samples)
        print(f"{label:<46}{p50:>10.4f}{p99:>10.4f}")
    print(f"\n{'CLI (fresh process, median)':<46}{'embedded':>10}{'remote':>10}{'ratio':>8}")
    for what, local, far in cli_rows:
        print(f"{what:<46}{local:>10.3f}{far:>10.3f}{far / local:>8.2f}")


if __name__ == "__main__":
    main()
