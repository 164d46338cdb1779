"""`estate apply` of a generated estate-as-code of 10,000 to 100,000 environments: first apply, re-apply with one
change, and a no-op re-apply, each as the CLI runs it (a fresh process; wall time and peak RSS). The baseline, in
the same script, is a fresh process that only reads the same YAML file (PyYAML's C loader): what any tool reading
the file must pay. The one-change re-apply must write exactly one change.

    .venv/bin/python bench/estate_apply.py [--sizes 10000 30000 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.generated import estate_yaml  # noqa: E402

ESTATE = str(Path(sys.executable).parent / "estate")
READ_ONLY = "import sys, yaml; yaml.load(open(sys.argv[1]), Loader=yaml.CSafeLoader)"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run `argv` in a fresh process: wall seconds, its peak RSS in MB, its stdout."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
    # RUSAGE_CHILDREN holds the largest child so far: each measured command runs in its own helper process
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, done.stdout


def child(n: int, step: str) -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {"ESTATE_HOME": home, "PATH": "/usr/bin:/bin", "HOME": home}
        path = Path(home) / "estate.yaml"
        doc = estate_yaml(n)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        apply = [ESTATE, "apply", "-f", str(path), "-o", "json"]
        result: dict[str, float] = {}
        if step == "read":
            result["read_s"], result["read_mb"], _ = timed([sys.executable, "-c", READ_ONLY, str(path)], env)
        else:
            result["first_s"], result["first_mb"], _ = timed(apply, env)
            projects = doc["projects"]
            assert isinstance(projects, list)
            projects[0]["environments"][0]["labels"]["region"] = "ap"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            result["one_s"], _, out = timed(apply, env)
            result["one_changes"] = len(json.loads(out)["changes"])
            result["noop_s"], _, out = timed(apply, env)
            result["noop_changes"] = len(json.loads(out)["changes"])
        print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 100000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1])
        return
    print(f"estate apply, SQLite, median of {args.runs} runs; read = a process that only loads the YAML")
    header = ("envs", "read s", "apply s", "ratio", "per env ms", "RSS MB", "1-change s", "changes", "no-op s")
    print(" ".join(f"{h:>10}" for h in header))
    for n in args.sizes:
        runs = []
        for _ in range(args.runs):
            runs.append({**measure_step(n, "read"), **measure_step(n, "apply")})
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        row = (
            f"{n:>10} {med['read_s']:>10.2f} {med['first_s']:>10.2f} {med['first_s'] / med['read_s']:>10.1f} "
            f"{med['first_s'] / n * 1000:>10.3f} {med['first_mb']:>10.0f} {med['one_s']:>10.2f} "
            f"{int(med['one_changes']):>10} {med['noop_s']:>10.2f}"
        )
        print(row, flush=True)
        assert med["one_changes"] == 1 and med["noop_changes"] == 0, med


def measure_step(n: int, step: str) -> dict[str, float]:
    """One step on a fresh home, in a helper process of its own (so peak RSS is that step's)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(n), step], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
