"""`make serve`: `estate server` on the example estate, on 127.0.0.1 (PORT, default 8080).

The store is $ESTATE_HOME (default ./.estate); the example estate is applied to it first (idempotent), and
Terraform 1.0.3 with the null provider comes from the PyPI wheels (offline), like `make demo`. Then:
    export ESTATE_URL=http://127.0.0.1:8080 && estate env list      # the CLI as a client of the server
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from estate.testing.offline_terraform import offline_environ

REPO = Path(__file__).resolve().parents[1]
ESTATE = str(Path(sys.executable).with_name("estate"))


def main() -> int:
    home = Path(os.environ.get("ESTATE_HOME", REPO / ".estate")).absolute()
    env = {**os.environ, **offline_environ(home / "terraform"), "ESTATE_HOME": str(home)}
    env.pop("ESTATE_URL", None)  # apply to the server's own store, not through a server
    subprocess.run([ESTATE, "apply", "-f", str(REPO / "examples" / "estate")], env=env, check=True)
    port = os.environ.get("PORT", "8080")
    print(
        f"serving on http://127.0.0.1:{port} (API /api/v1, OpenAPI /openapi.json); in another shell:\n"
        f"  export ESTATE_URL=http://127.0.0.1:{port}; estate env list",
        flush=True,
    )
    return subprocess.run([ESTATE, "server", "--host", "127.0.0.1", "--port", port], env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
