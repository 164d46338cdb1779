"""Throughput: deploy N environments with max_parallel=4 through Estate vs. a naive `xargs -P4` baseline.

Both sides deploy the same example module (postgres 1.0.0, null provider from a filesystem mirror)
into fresh directories with a shared, pre-warmed plugin cache, using the same Terraform 1.0.3 binary:

  estate    `estate deploy shop/e01 ... shop/eNN` (a fresh ESTATE_HOME per run): init, plan -json to a
            file, apply -json of that plan, every event parsed and stored in SQLite
  baseline  `xargs -P4` running `terraform init && terraform apply -auto-approve` per directory

Prints the median wall time of `--runs` runs of each and the ratio estate/baseline (target <= 1.10), and
the median CPU seconds (all processes: Python, Terraform, providers), which other load on the machine
disturbs less than wall time.
Usage: .venv/bin/python bench/terraform_throughput.py [--envs 24] [--parallel 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.terraform import MODULES, estate_doc, real_terraform, write_mirror  # noqa: E402


def environ(root: Path, cli_config: Path, cache: Path) -> dict[str, str]:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "CHECKPOINT_DISABLE": "1",
        "TF_PLUGIN_CACHE_DIR": str(cache),
        "TF_IN_AUTOMATION": "1",
    }


Timing = tuple[float, float]  # (wall seconds, CPU seconds)


def run_estate(root: Path, envs: list[str], parallel: int, base_env: dict[str, str], cache: Path) -> Timing:
    home = root / "estate"
    home.mkdir(parents=True)
    os.symlink(cache, home / "plugin-cache")  # the same warm cache the baseline uses
    env = {**base_env, "ESTATE_HOME": str(home), "ESTATE_TF_BINARY": str(real_terraform())}
    env.pop("TF_PLUGIN_CACHE_DIR")
    doc = estate_doc(dict.fromkeys(envs, "ephemeral"), settings={"max_parallel": parallel})
    (root / "estate.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    estate = str(Path(sys.executable).parent / "estate")
    subprocess.run([estate, "apply", "-f", str(root / "estate.yaml")], env=env, check=True, capture_output=True)
    done, wall, cpu = measured(
        [estate, "deploy", *(f"shop/{e}" for e in envs), "-o", "json"], env=env, capture_output=True
    )
    results = json.loads(done.stdout) if done.stdout else []
    if done.returncode != 0 or any(r["status"] != "succeeded" for r in results):
        raise SystemExit(f"estate deploy failed:\n{done.stderr}")
    return wall, cpu


def run_baseline(root: Path, envs: list[str], parallel: int, base_env: dict[str, str]) -> Timing:
    terraform = str(real_terraform())
    dirs = []
    for env_id in envs:
        work = root / "baseline" / env_id
        work.mkdir(parents=True)
        module = {
            "source": str(MODULES / "v1.0.0"),
            "env": env_id,
            "project": "shop",
            "env_type": "ephemeral",
            "size": "small",
        }
        (work / "main.tf.json").write_text(json.dumps({"module": {"db": module}}))
        dirs.append(str(work))
    init = f"{terraform} init -input=false >/dev/null"
    script = f'cd "$1" && {init} && {terraform} apply -auto-approve -input=false >/dev/null'
    env = {**base_env, "ESTATE_HOME": str(root / "baseline-home")}
    done, wall, cpu = measured(
        ["xargs", f"-P{parallel}", "-n1", "sh", "-c", script, "sh"], input="\n".join(dirs), env=env
    )
    if done.returncode != 0:
        raise SystemExit("baseline failed")
    return wall, cpu


def measured(argv: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run `argv`; its result, wall seconds and CPU seconds of every process it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, text=True, check=False, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=24)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    envs = [f"e{i:02d}" for i in range(1, args.envs + 1)]
    top = Path(tempfile.mkdtemp(prefix="estate-bench-"))
    try:
        cli_config = write_mirror(top)
        cache = top / "plugin-cache"
        cache.mkdir()
        base_env = environ(top, cli_config, cache)
        run_baseline(top / "warmup", envs[:1], 1, base_env)  # fills the shared plugin cache once
        runs: dict[str, list[Timing]] = {"baseline": [], "estate": []}
        for i in range(args.runs):  # interleaved, so drift in machine load hits both alike
            runs["baseline"].append(run_baseline(top / f"b{i}", envs, args.parallel, base_env))
            runs["estate"].append(run_estate(top / f"e{i}", envs, args.parallel, base_env, cache))
        wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
        print(
            f"{args.envs} environments, max_parallel={args.parallel}, {args.runs} runs each, "
            f"Terraform 1.0.3, {os.cpu_count()} CPUs"
        )
        print(f"{'':10} {'wall s':>7} {'cpu s':>7}  runs (wall)")
        for name in ("baseline", "estate"):
            walls = ", ".join(f"{w:.2f}" for w, _ in runs[name])
            print(f"{name:10} {wall[name]:7.2f} {cpu[name]:7.2f}  {walls}")
        print(
            f"ratio estate/baseline: wall {wall['estate'] / wall['baseline']:.2f} (target <= 1.10), "
            f"cpu {cpu['estate'] / cpu['baseline']:.2f}"
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
