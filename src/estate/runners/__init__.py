"""Terraform/OpenTofu runner: render the root module as JSON, init/plan/apply with `-json`, record it all.

Public API (see `service` for how the CLI and the engine use it):
"""

from estate.runners.config import RunnerConfig
from estate.runners.locks import EnvironmentBusy
from estate.runners.pool import LocalPool
from estate.runners.ports import Runner
from estate.runners.service import DeploymentOutcome, DeploymentService
from estate.runners.toolchain import Toolchain, find_toolchain

__all__ = [
    "DeploymentOutcome",
    "DeploymentService",
    "EnvironmentBusy",
    "LocalPool",
    "Runner",
    "RunnerConfig",
    "Toolchain",
    "find_toolchain",
]
