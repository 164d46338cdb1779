"""Process settings from ESTATE_* variables, built once from an injectable mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# What Terraform/OpenTofu processes inherit from ours; everything else is left out so a stray
# TF_CLI_ARGS or TF_VAR_x cannot change a deployment behind Estate's back.
_RUNNER_ENV_NAMES = ("PATH", "HOME", "USER", "LANG", "TMPDIR", "TZ", "TF_CLI_CONFIG_FILE", "TF_LOG", "TF_LOG_PATH")
_RUNNER_ENV_PREFIXES = ("LC_", "SSL_CERT_", "AWS_", "GOOGLE_", "ARM_", "PG", "GIT_")


@dataclass(frozen=True)
class Settings:
    """Where Estate keeps its data and which components it talks to."""

    home: Path
    database_url: str
    tf_binary: str | None = None
    prometheus_url: str | None = None
    secret_key: str | None = None
    actor: str = "unknown"
    runner_env: Mapping[str, str] = field(default_factory=dict)  # passed through to Terraform processes

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("ESTATE_HOME", ".estate")).absolute()
        return cls(
            home=home,
            database_url=env.get("ESTATE_DATABASE_URL") or f"sqlite:///{home / 'estate.db'}",
            tf_binary=env.get("ESTATE_TF_BINARY") or None,
            prometheus_url=env.get("ESTATE_PROMETHEUS_URL") or None,
            secret_key=env.get("ESTATE_SECRET_KEY") or None,
            actor=env.get("ESTATE_ACTOR") or env.get("USER") or env.get("LOGNAME") or "unknown",
            runner_env={k: v for k, v in env.items() if _passed_to_runner(k)},
        )


def _passed_to_runner(name: str) -> bool:
    return name in _RUNNER_ENV_NAMES or name.startswith(_RUNNER_ENV_PREFIXES) or name.upper().endswith("_PROXY")
