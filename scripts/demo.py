"""The Estate demo: the story of DESIGN.md on the example estate, narrated command by command.

postgres 1.0.0 everywhere -> publish 2.0.0 -> preview -> start -> wave 1 fails its compare gate (its
ephemerals against the development environments still on 1.0.0; samples count only once 2.0.0 reports:
the landed check), rolls back, and 2.0.0 is marked defective -> publish 2.0.1 -> retarget -> rerun wave 1
-> promote through dev and staging -> production waits for a four-eyes approval, then for a freeze to be
lifted -> completed, every environment on 2.0.1.

Everything is real and local: SQLite, Terraform 1.0.3 with the null provider (offline, from PyPI wheels),
the demo metrics exporter and a Prometheus server on free loopback ports. A fresh ESTATE_HOME is used, so
your own data is never touched. Without Prometheus installed, the demo says so and uses approval gates.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from estate.testing.offline_terraform import offline_environ
from estate.testing.services import PrometheusServer, prometheus_binary_path, start_exporter, stop_exporter

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
ESTATE = str(Path(sys.executable).with_name("estate"))
ENVS = [
    f"{p}/{e}"
    for p, envs in (
        ("checkout", ["eph-1", "eph-2", "dev", "staging", "prod-eu", "prod-us"]),
        ("payments", ["eph-1", "dev", "staging", "prod-eu", "prod-us"]),
        ("search", ["eph-1", "eph-2", "dev", "staging", "prod"]),
    )
    for e in envs
]


def say(text: str) -> None:
    print(f"\n\033[1;36m== {text}\033[0m", flush=True)


def run(*args: str, env: dict[str, str], expect: int = 0) -> None:
    print(f"\033[2m$ estate {shlex.join(args)}\033[0m", flush=True)
    done = subprocess.run([ESTATE, *args], env=env, check=False)
    if done.returncode != expect:
        sys.exit(f"demo: `estate {shlex.join(args)}` exited {done.returncode}, expected {expect}")


def estate_files(target: Path, with_prometheus: bool) -> Path:
    """The example estate; without Prometheus, each Prometheus gate becomes an approval gate."""
    shutil.copytree(EXAMPLES / "estate", target)
    text = (target / "plans.yaml").read_text()
    if not with_prometheus:
        text = re.sub(r"- (?:prometheus|compare):\n(?:\s{14}.*\n)+", "- approval: {role: approver}\n", text)
    (target / "plans.yaml").write_text(text)
    for f in target.glob("*.yaml"):
        f.write_text(f.read_text().replace("../modules/", f"{EXAMPLES / 'modules'}/"))
    return target


def story(env: dict[str, str], files: Path, with_prometheus: bool) -> None:
    say("Load the example estate: 3 teams, 16 environments, postgres 1.0.0 everywhere")
    run("apply", "-f", str(files), env=env)
    run("env", "list", "--type", "production", env=env)
    say("Deploy every environment for real (Terraform, 4 at a time)")
    run("deploy", *ENVS, env=env)
    say("Alex publishes postgres 2.0.0 (the new operator) and asks: who would it touch?")
    run("module", "publish", "postgres", "2.0.0", "--source", str(EXAMPLES / "modules/postgres/v2.0.0"), env=env)
    run("rollout", "preview", "postgres", "2.0.0", "--plan", "standard", env=env)
    say("Starting is refused: preflight found destructive changes (the demo module replaces its marker)")
    run("rollout", "start", "postgres", "2.0.0", "--plan", "standard", env=env, expect=2)
    say("Reviewed and intended: start with --allow-destroy. Wave 1 (ephemeral) deploys, then the gate runs")
    run("rollout", "start", "postgres", "2.0.0", "--plan", "standard", "--allow-destroy", env=env)
    if with_prometheus:
        say(
            "The compare gate: 2.0.0's ephemerals fail ~25% of their queries, the development environments still on"
            " 1.0.0 ~0.1% (each sample counted only once pg_up reported 2.0.0: the landed check). Worse beyond"
            " tolerance with 95% confidence (Mann-Whitney U): wave 1 rolled back, and the plan marks 2.0.0 defective"
        )
        run("rollout", "status", "postgres-1", "--wave", "ephemeral", env=env)
        run("module", "list", env=env)
        say("A defective version is refused for every new deployment, rollout start and retarget")
        run("rollout", "retarget", "postgres-1", "2.0.0", "--no-preflight", env=env, expect=2)
    else:
        say("(no Prometheus) Alex rejects wave 1 by hand: roll it back")
        run("rollout", "rollback", "postgres-1", env=env)
    run("module", "usage", "postgres", env=env)
    say("Alex publishes the patched 2.0.1, retargets the rollout and re-runs wave 1")
    run("module", "publish", "postgres", "2.0.1", "--source", str(EXAMPLES / "modules/postgres/v2.0.1"), env=env)
    run("rollout", "retarget", "postgres-1", "2.0.1", "--allow-destroy", env=env)
    run("rollout", "rerun", "postgres-1", "--wave", "ephemeral", env=env)
    if with_prometheus:
        say("2.0.1 is not worse than its baseline, and below the error budget: wave 1 passed its gates")
        run("rollout", "status", "postgres-1", "--wave", "ephemeral", env=env)
    approve = [] if with_prometheus else [("approve", "--as", "bob")]
    for _ in approve:
        run("rollout", *_, "postgres-1", env=env)
    say("Healthy: promote to dev (wave gate on the error ratio), then to staging (5 s bake)")
    run("rollout", "promote", "postgres-1", env=env)
    for _ in approve:
        run("rollout", *_, "postgres-1", env=env)
    run("rollout", "promote", "postgres-1", env=env)
    say("Promote to production: it waits for an approver other than the one who started the rollout")
    run("rollout", "promote", "postgres-1", env=env)
    run("rollout", "approve", "postgres-1", env=env, expect=1)
    say("An incident elsewhere: production is frozen. Bob approves, yet nothing deploys there until it is lifted")
    run(
        "freeze",
        "--env-type",
        "production",
        "--reason",
        "incident 4711 in the payments datacenter",
        "--until",
        "2h",
        env=env,
    )
    run("rollout", "approve", "postgres-1", "--as", "bob", env=env)
    run("deploy", "payments/prod-eu", env=env, expect=2)
    say("The incident is over: lift the freeze, and production carries on")
    run("unfreeze", "--env-type", "production", env=env)
    run("rollout", "resume", "postgres-1", env=env)
    for _ in approve:
        run("rollout", *_, "postgres-1", env=env)
    say("Done: every environment is on 2.0.1, and the global rule says so for new environments")
    run("module", "usage", "postgres", env=env)
    run("rollout", "status", "postgres-1", env=env)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="estate-demo-"))
    env = {
        **os.environ,
        **offline_environ(home / "terraform"),
        "ESTATE_HOME": str(home / "estate"),
        "ESTATE_ACTOR": "alex",
    }
    env.pop("ESTATE_DATABASE_URL", None)
    status_dir = home / "estate" / "demo" / "status"
    status_dir.mkdir(parents=True)
    exporter, port = start_exporter(status_dir)
    prometheus = None
    try:
        binary = prometheus_binary_path()
        if binary:
            (home / "prometheus").mkdir()
            prometheus = PrometheusServer(binary, home / "prometheus", [f"127.0.0.1:{port}"]).start()
            env["ESTATE_PROMETHEUS_URL"] = prometheus.url
            say(f"Prometheus {prometheus.url} scrapes the demo exporter (127.0.0.1:{port}) every second")
        else:
            say("Prometheus is not installed (Debian: apt-get install prometheus): approval gates stand in")
        story(env, estate_files(home / "estate-files", prometheus is not None), prometheus is not None)
        print(f"\nExplore further: export ESTATE_HOME={home / 'estate'}")
    finally:
        if prometheus is not None:
            prometheus.stop()
        stop_exporter(exporter)


if __name__ == "__main__":
    main()
