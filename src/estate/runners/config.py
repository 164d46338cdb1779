"""Runner settings: the estate's `settings.runner` (stored), overridden by the process settings.

`ESTATE_TF_BINARY` beats `runner.binary`; `$ESTATE_HOME` decides where work directories, state,
the plugin cache and locks live; `ESTATE_SECRET_KEY` encrypts sensitive outputs at rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estate.domain.ids import EnvRef
from estate.settings import Settings

_DEFAULT_TIMEOUT = 3600


@dataclass(frozen=True)
class RunnerConfig:
    """Everything the local runner needs, built once from settings."""

    home: Path
    binary: str = "terraform"
    max_parallel: int = 4
    timeout_seconds: float = _DEFAULT_TIMEOUT
    backend: Mapping[str, Any] | None = None  # e.g. {"pg": {"conn_str": ..., "schema_name": "estate_{project}_{env}"}}
    secret_key: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)  # what Terraform inherits (see Settings)
    lock_timeout_seconds: float = 0.0  # plan/apply wait this long for a held state lock (Terraform -lock-timeout)
    kill_grace_seconds: float = 10.0  # after SIGINT, before SIGKILL: lets Terraform save state and unlock

    @classmethod
    def build(cls, settings: Settings, estate_settings: Mapping[str, Any]) -> RunnerConfig:
        runner = dict(estate_settings.get("runner") or {})
        return cls(
            home=settings.home,
            binary=settings.tf_binary or runner.get("binary") or "terraform",
            max_parallel=int(runner.get("max_parallel") or 4),
            timeout_seconds=float(runner.get("timeout") or _DEFAULT_TIMEOUT),
            backend=runner.get("backend") or None,
            lock_timeout_seconds=float(runner.get("lock_timeout") or 0),
            secret_key=settings.secret_key,
            environ=dict(settings.runner_env),
        )

    def work_dir(self, env: EnvRef) -> Path:
        """Disposable: rendered files, `.terraform/`, the saved plan."""
        return self.home / "work" / env.project / env.env

    def state_dir(self, env: EnvRef) -> Path:
        """Local-backend state; kept apart from the work dir so wiping that loses nothing."""
        return self.home / "state" / env.project / env.env

    def plan_path(self, deployment_id: int) -> Path:
        """Where a plan deployment keeps its saved plan until a deploy applies it (may hold secret values:
        the folder is owner-only)."""
        return self.home / "plans" / f"{deployment_id}.tfplan"

    def lock_path(self, env: EnvRef) -> Path:
        return self.home / "locks" / env.project / f"{env.env}.lock"

    @property
    def plugin_cache(self) -> Path:
        return self.home / "plugin-cache"
