"""Find the Terraform/OpenTofu binary and check its version (>= 1.0, for the `-json` UI we parse)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from estate.errors import ComponentError

MINIMUM = (1, 0)
_HINT = "install terraform or tofu >= 1.0, or point runner.binary / ESTATE_TF_BINARY at one"


@dataclass(frozen=True)
class Toolchain:
    """A usable binary: its absolute path, product name and version."""

    path: Path
    product: str  # "terraform" or "tofu"
    version: str

    def __str__(self) -> str:
        return f"{self.product} {self.version}"


def find_toolchain(binary: str, environ: Mapping[str, str]) -> Toolchain:
    """Resolve `binary` (a name looked up on the runner's PATH, or a path) and check its version.

    ComponentError names the binary when it is missing, not executable, unusable or older than 1.0.
    """
    path = _locate(binary, environ)
    try:
        done = subprocess.run(
            [str(path), "version", "-json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**environ, "CHECKPOINT_DISABLE": "1"},
            check=True,
        )
        data = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
        raise ComponentError(binary, f"'{path}' does not report its version ({exc})", hint=_HINT) from exc
    version = str(data.get("terraform_version") or data.get("tofu_version") or "")
    product = "tofu" if "tofu_version" in data or path.name.startswith("tofu") else "terraform"
    if _parse(version) < MINIMUM:
        raise ComponentError(
            binary,
            f"'{path}' is {product} {version or '(unknown version)'}; "
            f"Estate needs {'.'.join(map(str, MINIMUM))} or newer",
            hint=_HINT,
        )
    return Toolchain(path, product, version)


def _locate(binary: str, environ: Mapping[str, str]) -> Path:
    if os.sep in binary:
        path = Path(binary)
        if not path.is_file():
            raise ComponentError(binary, f"binary '{binary}' does not exist", hint=_HINT)
        if not os.access(path, os.X_OK):
            raise ComponentError(binary, f"binary '{binary}' is not executable", hint=_HINT)
        return path.absolute()
    found = shutil.which(binary, path=environ.get("PATH", ""))
    if found is None:
        raise ComponentError(binary, f"binary '{binary}' was not found on PATH", hint=_HINT)
    return Path(found)


def _parse(version: str) -> tuple[int, int]:
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return (0, 0)
