"""Engine overhead per environment for rollouts over 2,000 and 10,000 generated environments.

Each measurement runs in a fresh process on a fresh SQLite store: four waves (ephemeral, development,
staging, production, all auto-promoted), a runner that completes instantly (estate.testing.FakeRunner),
the real engine (persist, then act) and the real store. The baseline, in the same process, creates and
runs the same number of deployments on the bare runner; overhead = (rollout - baseline) / environments.
Also measured: peak RSS of the rollout process and the time `rollout status` takes to answer.

    .venv/bin/python bench/rollout_overhead.py [--sizes 2000 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

from estate.app import Caller, Wiring, bootstrap
from estate.config import load_estate
from estate.domain.deployments import DeploymentKind
from estate.domain.graph import ResolvedGraph
from estate.store import Store
from estate.store.deployments import DeploymentRepository, NewDeployment
from estate.testing.fake_runner import FakeRunner

TYPES = (("ephemeral", 0.1), ("development", 0.2), ("staging", 0.3), ("production", 0.4))


def estate_yaml(n: int) -> dict[str, object]:
    envs: list[tuple[str, str]] = []
    for env_type, share in TYPES:
        envs += [(env_type, f"{env_type[:4]}-{i}") for i in range(int(n * share))]
    projects = [
        {
            "id": f"p{k}",
            "owner": f"team-{k % 7}",
            "resources": {"db": {"type": "postgres"}},
            "environments": [{"id": e, "type": t} for t, e in envs[k::100]],
        }
        for k in range(100)
    ]
    return {
        "env_types": [{"id": t, "rank": i} for i, (t, _) in enumerate(TYPES)],
        "modules": [
            {
                "id": "postgres",
                "resource_type": "postgres",
                "versions": [{"version": "1.0.0", "source": "/srv/pg-1"}, {"version": "2.0.0", "source": "/srv/pg-2"}],
            }
        ],
        "module_rules": [{"resource_type": "postgres", "module": "postgres", "version": "1.0.0"}],
        "projects": projects,
        "rollout_plans": [
            {
                "id": "bench",
                "waves": [
                    {"name": t[:4], "select": {"env_type": t}, "max_parallel": 200, "auto_promote": True}
                    for t, _ in TYPES
                ],
            }
        ],
    }


def child(n: int) -> None:
    """One measurement, printed as JSON on stdout."""

    def now() -> datetime:
        return datetime.now(UTC)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "estate.yaml"
        path.write_text(yaml.safe_dump(estate_yaml(n)))
        store = Store.open(f"sqlite:///{tmp}/estate.db")
        estate = load_estate(path).estate
        store.sync(estate, prune=False, force=False, dry_run=False, actor="bench", now=now())

        repo = DeploymentRepository(store)
        bare = FakeRunner(repo, now)
        start = time.perf_counter()
        requests = [
            NewDeployment(e.ref, DeploymentKind.DEPLOY, "bench", ResolvedGraph(e.ref, e.type))
            for e in estate.environments
        ]
        for dep in repo.create(requests, now()):
            bare.run(dep.id)
        baseline = time.perf_counter() - start

        runner = FakeRunner(repo, now)
        app = bootstrap(
            {"ESTATE_HOME": tmp, "ESTATE_DATABASE_URL": f"sqlite:///{tmp}/estate.db"},
            Wiring(runner=lambda _store, _settings: runner),
        )
        start = time.perf_counter()
        rollout = app.rollouts.start(Caller("bench"), "postgres", "2.0.0", "bench", preflight=False).id
        elapsed = time.perf_counter() - start
        phase = app.rollouts.state(rollout).phase
        assert str(phase) == "completed", phase
        assert len(runner.runs) == len(estate.environments)

        # `rollout status` runs in a fresh process: leave the rollout's garbage behind before timing it.
        gc.collect()
        status = statistics.median(_timed(lambda: app.rollouts.status(rollout)) for _ in range(3))
        app.close()
        store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "n": len(estate.environments),
                "rollout_s": elapsed,
                "baseline_s": baseline,
                "status_s": status,
                "rss_mb": rss_mb,
            }
        )
    )


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(n: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(
        f"{'envs':>6} {'rollout s':>10} {'baseline s':>11} {'overhead ms/env':>16} {'ratio':>7} "
        f"{'peak RSS MB':>12} {'status ms':>10}"
    )
    for n in args.sizes:
        runs = [measure(n) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        overhead = (med["rollout_s"] - med["baseline_s"]) / med["n"] * 1000
        ratio = med["rollout_s"] / med["baseline_s"]
        print(
            f"{int(med['n']):>6} {med['rollout_s']:>10.2f} {med['baseline_s']:>11.3f} {overhead:>16.3f} "
            f"{ratio:>7.1f} {med['rss_mb']:>12.0f} {med['status_s'] * 1000:>10.0f}",
            flush=True,
        )
    print(f"(median of {args.runs} runs each; targets: <= 2 ms/env at 10,000, peak RSS <= 300 MB, status <= 200 ms)")


if __name__ == "__main__":
    main()
