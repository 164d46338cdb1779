"""Terraform throughput: what Estate costs on top of the loop a user would write for the same job.

Both sides run the same example module (postgres, null provider from a filesystem mirror) in fresh directories
with a shared, pre-warmed plugin cache and the same Terraform 1.0.3 binary, `--parallel` at a time:

  deploy    `estate deploy shop/e01 ... shop/eNN` (1.0.0 into new environments)
            vs the blind loop: `xargs -P` running `terraform init && terraform apply -auto-approve` per directory
  rollout   `estate rollout start postgres 2.0.0` with preflight (a plan of every environment to review, then
            a one-wave rollout that applies those saved plans) on environments deployed at 1.0.0
            vs the careful loop: `init && plan -out` of every directory, then `apply` of every saved plan

Prints the median wall time of `--runs` runs of each (interleaved, so drift in machine load hits both alike),
the median CPU seconds of every process (Python, Terraform, providers), and the ratios (target <= 1.05).
`--estate` measures another checkout's `estate` executable (e.g. the commit before a change: before/after).

    .venv/bin/python bench/terraform_throughput.py [--scenario deploy rollout] [--envs 24] [--parallel 4]
        [--runs 3] [--estate PATH]
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
        "ESTATE_HOME": str(root / "loops"),  # where the example module writes its status file (Estate: its own)
    }


Timing = tuple[float, float]  # (wall seconds, CPU seconds)


def estate_home(root: Path, envs: list[str], parallel: int, base_env: dict[str, str], estate: str) -> dict[str, str]:
    """A fresh Estate home on the warm plugin cache with the estate applied; its environment variables."""
    home = root / "estate"
    home.mkdir(parents=True)
    os.symlink(base_env["TF_PLUGIN_CACHE_DIR"], home / "plugin-cache")  # the same warm cache the loops use
    env = {**base_env, "ESTATE_HOME": str(home), "ESTATE_TF_BINARY": str(real_terraform())}
    env.pop("TF_PLUGIN_CACHE_DIR")
    doc = estate_doc(dict.fromkeys(envs, "ephemeral"), settings={"max_parallel": parallel})
    doc.pop("access")  # embedded mode trusts its user; older checkouts (--estate) do not know the section
    one_wave = {"name": "all", "select": {"env_type": "ephemeral"}, "max_parallel": parallel}
    doc["rollout_plans"] = [{"id": "all", "waves": [one_wave]}]
    (root / "estate.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    subprocess.run([estate, "apply", "-f", str(root / "estate.yaml")], env=env, check=True, capture_output=True)
    return env


def estate_deploy(root: Path, envs: list[str], parallel: int, base_env: dict[str, str], estate: str) -> Timing:
    env = estate_home(root, envs, parallel, base_env, estate)
    return estate_run([estate, "deploy", *(f"shop/{e}" for e in envs), "-o", "json"], env)


def estate_rollout(root: Path, envs: list[str], parallel: int, base_env: dict[str, str], estate: str) -> Timing:
    env = estate_home(root, envs, parallel, base_env, estate)
    estate_run([estate, "deploy", *(f"shop/{e}" for e in envs), "-o", "json"], env)  # 1.0.0: not measured
    start = [estate, "rollout", "start", "postgres", "2.0.0", "--plan", "all", "--allow-destroy", "-o", "json"]
    return estate_run(start, env)


def estate_run(argv: list[str], env: dict[str, str]) -> Timing:
    """One measured Estate command that must succeed: every deployment, or the rollout."""
    done, wall, cpu = measured(argv, env=env, capture_output=True)
    result = json.loads(done.stdout) if done.stdout.strip() else None
    ok = isinstance(result, list) and all(r["status"] == "succeeded" for r in result)
    ok = ok or (isinstance(result, dict) and result.get("phase") == "completed")
    if done.returncode != 0 or not ok:
        raise SystemExit(f"{' '.join(argv[1:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, cpu


def roots(root: Path, envs: list[str], version: str) -> list[str]:
    """One Terraform root directory per environment using `version` of the module (rewritten in place)."""
    dirs = []
    for env_id in envs:
        work = root / env_id
        work.mkdir(parents=True, exist_ok=True)
        module = {"source": str(MODULES / f"v{version}"), "env": env_id, "project": "shop", "env_type": "ephemeral"}
        (work / "main.tf.json").write_text(json.dumps({"module": {"db": {**module, "size": "small"}}}))
        dirs.append(str(work))
    return dirs


def loop(dirs: list[str], parallel: int, steps: str, env: dict[str, str]) -> Timing:
    """`steps` (shell, with $TF) in every directory, `parallel` at a time, as `xargs -P` runs them."""
    script = f'cd "$1" && {steps.replace("$TF", str(real_terraform()))}'
    done, wall, cpu = measured(
        ["xargs", f"-P{parallel}", "-n1", "sh", "-c", script, "sh"], input="\n".join(dirs), env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"the loop failed: {steps}")
    return wall, cpu


INIT = "$TF init -input=false >/dev/null"
APPLY = "$TF apply -auto-approve -input=false >/dev/null"


def blind_loop(root: Path, envs: list[str], parallel: int, base_env: dict[str, str]) -> Timing:
    return loop(roots(root / "blind", envs, "1.0.0"), parallel, f"{INIT} && {APPLY}", base_env)


def careful_loop(root: Path, envs: list[str], parallel: int, base_env: dict[str, str]) -> Timing:
    dirs = roots(root / "careful", envs, "1.0.0")
    loop(dirs, parallel, f"{INIT} && {APPLY}", base_env)  # the environments as they stand: not measured
    roots(root / "careful", envs, "2.0.0")
    planned = loop(dirs, parallel, f"{INIT} && $TF plan -input=false -out=tfplan >/dev/null", base_env)
    applied = loop(dirs, parallel, "$TF apply -input=false tfplan >/dev/null", base_env)
    return planned[0] + applied[0], planned[1] + applied[1]


def measured(argv: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run `argv`; its result, wall seconds and CPU seconds of every process it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, text=True, check=False, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


SCENARIOS = {
    "deploy": ("blind loop", blind_loop, "estate deploy", estate_deploy),
    "rollout": ("careful loop", careful_loop, "estate rollout", estate_rollout),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=["deploy", "rollout"])
    parser.add_argument("--envs", type=int, default=24)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--estate", default=str(Path(sys.executable).parent / "estate"))
    args = parser.parse_args()
    envs = [f"e{i:02d}" for i in range(1, args.envs + 1)]
    top = Path(tempfile.mkdtemp(prefix="estate-bench-"))
    try:
        cache = top / "plugin-cache"
        cache.mkdir()
        base_env = environ(top, write_mirror(top), cache)
        loop(roots(top / "warmup", envs[:1], "1.0.0"), 1, f"{INIT} && {APPLY}", base_env)  # fills the cache once
        print(
            f"{args.envs} environments, {args.parallel} at a time, median of {args.runs} runs, Terraform 1.0.3, "
            f"{os.cpu_count()} CPUs, estate: {args.estate}"
        )
        print(f"{'':15} {'wall s':>7} {'cpu s':>7}  runs (wall)")
        for scenario in args.scenario:
            baseline, measure_baseline, ours, measure_ours = SCENARIOS[scenario]
            runs: dict[str, list[Timing]] = {baseline: [], ours: []}
            for i in range(args.runs):
                runs[baseline].append(measure_baseline(top / f"{scenario}-b{i}", envs, args.parallel, base_env))
                runs[ours].append(measure_ours(top / f"{scenario}-e{i}", envs, args.parallel, base_env, args.estate))
            wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
            cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
            for name in (baseline, ours):
                walls = ", ".join(f"{w:.2f}" for w, _ in runs[name])
                print(f"{name:15} {wall[name]:7.2f} {cpu[name]:7.2f}  {walls}")
            print(
                f"{'ratio':15} {wall[ours] / wall[baseline]:7.2f} {cpu[ours] / cpu[baseline]:7.2f}  "
                f"{ours} / {baseline} (target <= 1.05)",
                flush=True,
            )
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
