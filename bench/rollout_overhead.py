"""Engine overhead per environment for rollouts of 10,000 to 100,000 generated environments, on SQLite or
PostgreSQL.

Each measurement runs in fresh processes on a fresh database: one syncs the generated estate into the store (not
measured), one runs the baseline: the bare runner creating and running one deployment per environment, one runs the
rollout: four waves (ephemeral, development, staging, production, all auto-promoted), a runner that completes
instantly (estate.testing.FakeRunner: it records every run in the real store), the real engine (persist, then act)
and the real store. Overhead = (rollout - baseline) / environments, in wall time and in CPU seconds of the
measuring process (less disturbed by other load on the machine). Also measured, in the rollout's process: the SQL
statements per environment it sends beyond the baseline's (an executemany counts once: round trips, which do not
depend on the machine), its peak RSS, `rollout status --summary` (counts per wave and state) and one page of the
environment list (`--state succeeded --wave 4 --limit 50`, after the first page).

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
from sqlalchemy import Engine, event

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.generated import estate_yaml  # noqa: E402
from tests.support.postgres import PostgresServer, start_postgres, stop_postgres  # noqa: E402

from estate.app import Caller, Wiring, bootstrap  # noqa: E402
from estate.app.views.rollouts import EnvQuery  # noqa: E402
from estate.config import load_estate  # noqa: E402
from estate.domain.deployments import DeploymentKind  # noqa: E402
from estate.domain.graph import ResolvedGraph  # noqa: E402
from estate.store import Store  # noqa: E402
from estate.store.deployments import DeploymentRepository, NewDeployment  # noqa: E402
from estate.testing.fake_runner import FakeRunner  # noqa: E402


def now() -> datetime:
    return datetime.now(UTC)


def setup(n: int, url: str, home: str) -> None:
    """Sync the generated estate into a fresh store (its own process: not part of what is measured)."""
    path = Path(home) / "estate.yaml"
    path.write_text(yaml.safe_dump(estate_yaml(n)))
    store = Store.open(url)
    store.sync(load_estate(path).estate, prune=False, force=False, dry_run=False, actor="bench", now=now())
    store.close()


STATEMENTS = [0]  # SQL statements this process sent (an executemany counts once)


def _count(*_: object) -> None:
    STATEMENTS[0] += 1


def baseline(url: str) -> None:
    """The bare runner deploying every environment once, printed as JSON on stdout (its own process)."""
    event.listen(Engine, "before_cursor_execute", _count)
    store = Store.open(url)
    estate = store.load_estate()
    repo = DeploymentRepository(store)
    bare = FakeRunner(repo, now)
    start, cpu, before = time.perf_counter(), time.process_time(), STATEMENTS[0]
    requests = [
        NewDeployment(e.ref, DeploymentKind.DEPLOY, "bench", ResolvedGraph(e.ref, e.type)) for e in estate.environments
    ]
    for dep in repo.create(requests, now()):
        bare.run(dep.id)
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - cpu
    store.close()
    result = {"n": len(requests), "baseline_s": elapsed, "baseline_cpu_s": elapsed_cpu}
    print(json.dumps({**result, "baseline_statements": STATEMENTS[0] - before}))


def rollout(url: str, home: str, n: int) -> None:
    """The rollout and the status queries, printed as JSON on stdout (its own process: its peak RSS)."""
    event.listen(Engine, "before_cursor_execute", _count)
    store = Store.open(url)
    runner = FakeRunner(DeploymentRepository(store), now)
    app = bootstrap({"ESTATE_HOME": home, "ESTATE_DATABASE_URL": url}, Wiring(runner=lambda _store, _settings: runner))
    start, cpu, before = time.perf_counter(), time.process_time(), STATEMENTS[0]
    rollout = app.rollouts.start(Caller("bench"), "postgres", "2.0.0", "bench", preflight=False).id
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - cpu
    statements = STATEMENTS[0] - before
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
    result = {"rollout_s": elapsed, "rollout_cpu_s": elapsed_cpu, "statements": statements, "summary_s": summary}
    print(json.dumps({**result, "page_s": page, "rss_mb": rss_mb}))


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(n: int, database: str, server: PostgresServer | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        url = server.create_database("bench") if server else f"sqlite:///{home}/estate.db"
        subprocess.run([*ME, "--setup", str(n), url, home], check=True)
        first = _json([*ME, "--baseline", url])
        return {**first, **_json([*ME, "--rollout", url, home, str(int(first["n"]))])}


ME = [sys.executable, __file__]


def _json(argv: list[str]) -> dict[str, float]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
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
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--rollout", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup(int(args.setup[0]), args.setup[1], args.setup[2])
        return
    if args.baseline:
        baseline(args.baseline)
        return
    if args.rollout:
        rollout(args.rollout[0], args.rollout[1], int(args.rollout[2]))
        return
    server = start_postgres(Path(tempfile.mkdtemp(prefix="estate-bench-pg-"))) if args.database == "postgres" else None
    try:
        print(f"{args.database}, median of {args.runs} run(s) each")
        print(
            f"{'envs':>7} {'rollout s':>10} {'baseline s':>11} {'overhead ms/env':>16} "
            f"{'cpu ms/env':>11} {'SQL/env':>8} {'peak RSS MB':>12} {'summary ms':>11} {'page ms':>8}"
        )
        for n in args.sizes:
            runs = [measure(n, args.database, server) for _ in range(args.runs)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            overhead = (med["rollout_s"] - med["baseline_s"]) / med["n"] * 1000
            cpu = (med["rollout_cpu_s"] - med["baseline_cpu_s"]) / med["n"] * 1000
            sql = (med["statements"] - med["baseline_statements"]) / med["n"]
            print(
                f"{int(med['n']):>7} {med['rollout_s']:>10.2f} {med['baseline_s']:>11.2f} {overhead:>16.3f} "
                f"{cpu:>11.3f} {sql:>8.2f} "
                f"{med['rss_mb']:>12.0f} {med['summary_s'] * 1000:>11.1f} {med['page_s'] * 1000:>8.1f}",
                flush=True,
            )
        print("targets: overhead <= 1 ms/env and linear, peak RSS <= 500 MB, summary and page <= 100 ms")
    finally:
        if server is not None:
            stop_postgres(server)


if __name__ == "__main__":
    main()
