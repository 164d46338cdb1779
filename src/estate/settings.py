"""Process settings from ESTATE_* variables, built once from an injectable mapping.

Nothing else in Estate reads `os.environ`: `estate.app.bootstrap` builds `Settings` from the mapping it
is given (the process environment for the CLI and the server, a plain dict in tests), and secrets named
by estate-as-code (`token_env: GRAFANA_TOKEN`) are looked up in `Settings.environ`.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
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
    lease_ttl: timedelta = timedelta(seconds=30)
    runner_env: Mapping[str, str] = field(default_factory=dict)  # passed through to Terraform processes
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # where `*_env` secrets are looked up

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        home = Path(environ.get("ESTATE_HOME", ".estate")).absolute()
        return cls(
            home=home,
            database_url=environ.get("ESTATE_DATABASE_URL") or f"sqlite:///{home / 'estate.db'}",
            tf_binary=environ.get("ESTATE_TF_BINARY") or None,
            prometheus_url=environ.get("ESTATE_PROMETHEUS_URL") or None,
            secret_key=environ.get("ESTATE_SECRET_KEY") or None,
            actor=environ.get("ESTATE_ACTOR") or f"local:{os_account()}",
            lease_ttl=timedelta(seconds=float(environ.get("ESTATE_LEASE_TTL") or 30)),
            runner_env={k: v for k, v in environ.items() if _passed_to_runner(k)},
            environ=dict(environ),
        )


def os_account() -> str:
    """The operating-system account running this process (not `$USER`, which may be unset or anything)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry for this uid (some containers)
        return f"uid-{os.getuid()}"


def _passed_to_runner(name: str) -> bool:
    return name in _RUNNER_ENV_NAMES or name.startswith(_RUNNER_ENV_PREFIXES) or name.upper().endswith("_PROXY")
