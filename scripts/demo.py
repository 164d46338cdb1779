"""The Estate demo: the story of DESIGN.md on the example estate, narrated command by command.

Runs against a fresh ESTATE_HOME (SQLite + the local runner) so it never touches your own data.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ESTATE = str(Path(sys.executable).with_name("estate"))


def say(text: str) -> None:
    print(f"\n\033[1;36m== {text}\033[0m", flush=True)


def run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"\033[2m$ estate {shlex.join(args)}\033[0m", flush=True)
    done = subprocess.run([ESTATE, *args], env=env, check=False, text=True)
    if check and done.returncode != 0:
        sys.exit(f"demo: `estate {shlex.join(args)}` failed with exit code {done.returncode}")
    return done


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="estate-demo-"))
    env = {**os.environ, "ESTATE_HOME": str(home), "ESTATE_ACTOR": "alex"}
    env.pop("ESTATE_DATABASE_URL", None)
    say(f"A fresh estate in {home}")
    run("init", env=env)
    say("Load the example estate: 3 teams, 16 environments, the postgres module 1.0.0 and 2.0.0")
    run("apply", "-f", str(REPO / "examples" / "estate"), env=env)
    say("Applying again changes nothing (idempotent)")
    run("apply", "-f", str(REPO / "examples" / "estate"), env=env)
    say("The environments, by risk class")
    run("env", "list", env=env)
    say("Impact analysis: which environments would a postgres update touch?")
    run("module", "usage", "postgres", env=env)
    say("The standard rollout plan: four waves, production behind an approval")
    run("plan", "show", "standard", env=env)
    say("Done. Explore further with ESTATE_HOME=" + str(home))


if __name__ == "__main__":
    main()
