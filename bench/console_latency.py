"""The web console's rollout page on a 10,000-environment rollout (SQLite, fake runner, a sampler that passes):
how long the server takes to answer it, against the API's status of the same page of environments (the baseline:
what rendering the page adds).

Wave 1 (1,000 ephemeral environments) has deployed and passed a Prometheus gate (2 rounds per environment, so its
evidence holds 2,000 samples) and waits for promotion; 9,000 environments are pending in waves 2 to 4. Measured
over loopback HTTP with a session cookie, each request `--runs` times (median and slowest):

- the rollout page (first page: 50 environments), its live region (what the page asks for on each event), a page
  filtered to one wave and state, and the confirmations of `promote` (lists the next wave) and `rollback 1`;
- the same page for a person whose operator binding is scoped to projects (the page then reads every environment
  to decide which controls that binding allows), and for an admin (a binding everywhere decides at once).

    .venv/bin/python bench/console_latency.py [--envs 10000] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from estate.api import session
from estate.app import Caller, Wiring, bootstrap
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from estate.testing.passing_sampler import PassingSampler
from estate.testing.server import bearer, serve_in_thread

sys.path.insert(0, str(Path(__file__).parent))
from rollout_overhead import estate_yaml  # the same generated estate as the engine benchmark

BENCH = Caller("bench")


def timed(http: httpx.Client, path: str, runs: int, **headers: str) -> tuple[float, float, int]:
    """Median and slowest seconds of `runs` GETs of `path`, and the size of the answer."""
    samples, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        response = http.get(path, headers=headers)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
        size = len(response.content)
    return statistics.median(samples), max(samples), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        doc = estate_yaml(args.envs)
        first = doc["rollout_plans"][0]["waves"][0]  # type: ignore[index]
        first.update(
            auto_promote=False, gates=[{"prometheus": {"query": "errors", "max": 0.05, "interval": "1s", "count": 2}}]
        )
        projects = [p["id"] for p in doc["projects"]]  # type: ignore[union-attr]
        doc["access"] = [
            {"role": "admin", "subjects": ["bench"]},
            {"role": "operator", "subjects": ["scoped"], "scope": {"projects": projects}},
        ]
        (Path(tmp) / "estate.yaml").write_text(yaml.safe_dump(doc))
        environ = {"ESTATE_HOME": tmp, "PATH": os.environ["PATH"]}
        wiring = Wiring(
            runner=lambda store, _s: FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC)),
            sampler=PassingSampler(),
        )
        setup = bootstrap(environ, wiring)
        setup.inventory.apply(BENCH, Path(tmp) / "estate.yaml", dry_run=False, prune=False, force=False)
        rollout = setup.rollouts.start(BENCH, "postgres", "2.0.0", "bench", preflight=False, follow=False).id
        setup.rollouts.drive(rollout)  # wave 1 deploys, passes its gate, waits for promotion
        view = setup.rollouts.status(rollout)
        assert view.phase == "awaiting_promotion", view.phase
        n = sum(sum(w.counts.values()) for w in view.waves)
        tokens = {who: setup.identity.create_token(BENCH, who).token for who in ("bench", "scoped")}
        setup.close()

        server = serve_in_thread(environ, Wiring(sampler=PassingSampler()))
        rows = []
        try:
            for who, token in tokens.items():
                cookie = {"Cookie": f"{session.COOKIE}={token}"}
                with httpx.Client(base_url=server.url, headers=cookie, timeout=60) as http:
                    page = f"/rollouts/{rollout}"
                    for label, path, headers in (
                        ("rollout page", page, {}),
                        ("live region", page, {"X-Estate-Partial": "live"}),
                        ("page of wave 3, pending", f"{page}?wave=3&state=pending", {}),
                        ("confirm promote (lists wave 2)", f"{page}/confirm/promote", {}),
                        ("confirm rollback of wave 1", f"{page}/confirm/rollback?wave=1", {}),
                    ):
                        rows.append((who, label, *timed(http, path, args.runs, **headers)))
                with httpx.Client(base_url=server.url, headers=bearer(token), timeout=60) as http:
                    api = f"/api/v1/rollouts/{rollout}?limit=50"
                    rows.append((who, "baseline: API status, same page", *timed(http, api, args.runs)))
        finally:
            server.stop()

    print(f"\n{n} environments in the rollout; {args.runs} runs each; seconds over loopback HTTP\n")
    print(f"{'who':<8}{'request':<36}{'median':>9}{'slowest':>9}{'KiB':>8}{'x API':>8}")
    baseline = {who: median for who, label, median, _, _ in rows if label.startswith("baseline")}
    for who, label, median, slowest, size in rows:
        print(f"{who:<8}{label:<36}{median:>9.3f}{slowest:>9.3f}{size / 1024:>8.0f}{median / baseline[who]:>8.1f}")


if __name__ == "__main__":
    main()
