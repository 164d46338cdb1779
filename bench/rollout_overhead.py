"""Engine overhead per environment for rollouts of 10,000 to 100,000 generated environments, on SQLite or
PostgreSQL.

Each measurement runs in fresh processes on a fresh database: one process syncs the generated estate into the
store (not measured), another measures. Four waves (ephemeral, development, staging, production, all
auto-promoted), a runner that completes instantly (estate.testing.FakeRunner: it records every run in the
real store), the real engine (persist, then act) and the real store. The baseline, in the same process, creates
and runs the same number of deployments on the bare runner; overhead = (rollout - baseline) / environments.
Also measured: the peak RSS of the measuring process, `rollout status --summary` (counts per wave and state)
and one page of the environment list (`--state succeeded --wave 4 --limit 50`, after the first page).

    .venv/bin/python bench/rollout_overhead.py [--sizes 10000 30000 100000] [--runs 1] [--database sqlite|postgres]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.postgres import PostgresServer, start_postgres, stop_postgres  # noqa: E402

from estate.app import Caller, Wiring, bootstrap  # noqa: E402
from estate.app.views.rollouts import EnvQuery  # noqa: E402
from estate.config import load_estate  # noqa: E402
from estate.domain.deployments import DeploymentKind  # noqa: E402
from estate.domain.graph import ResolvedGraph  # noqa: E402
from estate.store import Store  # noqa: E402
from estate.store.deployments import DeploymentRepository, NewDeployment  # noqa: E402
from estate.testing.fake_runner import FakeRunner  # noqa: E402

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
            "environments": [
                {"id": e, "type": t, "labels": {"region": ("eu", "us")[i % 2]}} for i, (t, e) in enumerate(envs[k::100])
            ],
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


def now() -> datetime:
    return datetime.now(UTC)


def setup(n: int, url: str, home: str) -> None:
    """Sync the generated estate into a fresh store (its own process: not part of what is measured)."""
    path = Path(home) / "estate.yaml"
    path.write_text(yaml.safe_dump(estate_yaml(n)))
    store = Store.open(url)
    store.sync(load_estate(path).estate, prune=False, force=False, dry_run=False, actor="bench", now=now())
    store.close()


def child(url: str, home: str) -> None:
    """One measurement, printed as JSON on stdout."""
    store = Store.open(url)
    estate = store.load_estate()
    repo = DeploymentRepository(store)
    bare = FakeRunner(repo, now)
    start = time.perf_counter()
    requests = [
        NewDeployment(e.ref, DeploymentKind.DEPLOY, "bench", ResolvedGraph(e.ref, e.type)) for e in estate.environments
    ]
    for dep in repo.create(requests, now()):
        bare.run(dep.id)
    baseline = time.perf_counter() - start
    n = len(estate.environments)
    del estate, requests
    gc.collect()

    runner = FakeRunner(repo, now)
    app = bootstrap({"ESTATE_HOME": home, "ESTATE_DATABASE_URL": url}, Wiring(runner=lambda _store, _settings: runner))
    start = time.perf_counter()
    rollout = app.rollouts.start(Caller("bench"), "postgres", "2.0.0", "bench", preflight=False).id
    elapsed = time.perf_counter() - start
    summary_view = app.rollouts.status(rollout, query=EnvQuery(summary=True))
    assert summary_view.phase == "completed", summary_view.phase
    assert len(runner.runs) == n

    gc.collect()  # `rollout status` runs in a fresh process: leave the rollout's garbage behind before timing it
    summary = statistics.median(
        _timed(lambda: app.rollouts.status(rollout, query=EnvQuery(summary=True))) for _ in range(3)
    )
    first = app.rollouts.status(rollout, query=EnvQuery(wave="4", state="succeeded", limit=50))
    following = EnvQuery(wave="4", state="succeeded", limit=50, after=first.next_cursor)
    page = statistics.median(_timed(lambda: app.rollouts.status(rollout, query=following)) for _ in range(3))
    app.close()
    store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "n": n,
                "rollout_s": elapsed,
                "baseline_s": baseline,
                "summary_s": summary,
                "page_s": page,
                "rss_mb": rss_mb,
            }
        )
    )


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(n: int, database: str, server: PostgresServer | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        url = server.create_database("bench") if server else f"sqlite:///{home}/estate.db"
        me = [sys.executable, __file__]
        subprocess.run([*me, "--setup", str(n), url, home], check=True)
        done = subprocess.run([*me, "--child", url, home], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 100000])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--setup", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup(int(args.setup[0]), args.setup[1], args.setup[2])
        return
    if args.child:
        child(*args.child)
        return
    server = start_postgres(Path(tempfile.mkdtemp(prefix="estate-bench-pg-"))) if args.database == "postgres" else None
    try:
        print(f"{args.database}, median of {args.runs} run(s) each")
        print(
            f"{'envs':>7} {'rollout s':>10} {'baseline s':>11} {'overhead ms/env':>16} "
            f"{'peak RSS MB':>12} {'summary ms':>11} {'page ms':>8}"
        )
        for n in args.sizes:
            runs = [measure(n, args.database, server) for _ in range(args.runs)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            overhead = (med["rollout_s"] - med["baseline_s"]) / med["n"] * 1000
            print(
                f"{int(med['n']):>7} {med['rollout_s']:>10.2f} {med['baseline_s']:>11.2f} {overhead:>16.3f} "
                f"{med['rss_mb']:>12.0f} {med['summary_s'] * 1000:>11.1f} {med['page_s'] * 1000:>8.1f}",
                flush=True,
            )
        print("targets: overhead <= 1 ms/env and linear, peak RSS <= 500 MB, summary and page <= 100 ms")
    finally:
        if server is not None:
            stop_postgres(server)


if __name__ == "__main__":
    main()
