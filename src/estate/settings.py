"""Process settings from ESTATE_* variables, built once from an injectable mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where Estate keeps its data and which components it talks to."""

    home: Path
    database_url: str
    tf_binary: str | None = None
    prometheus_url: str | None = None
    secret_key: str | None = None
    actor: str = "unknown"

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
        )
