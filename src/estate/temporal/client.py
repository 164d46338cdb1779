"""Where Temporal is and how to reach it: settings from estate-as-code (`settings.engine`) overridden by
ESTATE_ENGINE_* variables, and a client that speaks Estate's data converter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import TLSConfig

from estate.errors import ComponentError, InputError
from estate.temporal.converter import data_converter

_TLS_FILES = ("ca_file", "cert_file", "key_file")


@dataclass(frozen=True)
class TemporalSettings:
    """The Temporal frontend, namespace and task queue this estate's rollouts run on."""

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "estate"
    tls: Mapping[str, str] | None = None  # ca_file, cert_file, key_file, server_name
    heartbeat_timeout: float = 30.0  # a runner silent this long is presumed dead: its run is retried elsewhere

    @classmethod
    def build(cls, environ: Mapping[str, str], stored: Mapping[str, Any]) -> TemporalSettings:
        tls = dict(stored.get("tls") or {})
        for name in (*_TLS_FILES, "server_name"):
            value = environ.get(f"ESTATE_ENGINE_TLS_{name.upper()}")
            if value:
                tls[name] = value
        return cls(
            address=environ.get("ESTATE_ENGINE_ADDRESS") or stored.get("address") or cls.address,
            namespace=environ.get("ESTATE_ENGINE_NAMESPACE") or stored.get("namespace") or cls.namespace,
            task_queue=environ.get("ESTATE_ENGINE_TASK_QUEUE") or stored.get("task_queue") or cls.task_queue,
            tls={k: v for k, v in tls.items() if v} or None,
            heartbeat_timeout=float(
                environ.get("ESTATE_ENGINE_HEARTBEAT_TIMEOUT") or stored.get("heartbeat_timeout") or 30
            ),
        )

    def tls_config(self) -> TLSConfig | bool:
        if not self.tls:
            return False
        files: dict[str, bytes] = {}
        for name in _TLS_FILES:
            if name in self.tls:
                try:
                    files[name] = Path(self.tls[name]).read_bytes()
                except OSError as exc:
                    raise InputError(f"settings.engine.tls.{name}: cannot read {self.tls[name]}: {exc}") from exc
        return TLSConfig(
            server_root_ca_cert=files.get("ca_file"),
            client_cert=files.get("cert_file"),
            client_private_key=files.get("key_file"),
            domain=self.tls.get("server_name"),
        )


def engine_kind(environ: Mapping[str, str], stored: Mapping[str, Any]) -> str:
    """`local` or `temporal`: ESTATE_ENGINE_KIND, else `settings.engine.kind`, else local."""
    kind = environ.get("ESTATE_ENGINE_KIND") or stored.get("kind") or "local"
    if kind not in ("local", "temporal"):
        raise InputError(f"ESTATE_ENGINE_KIND: '{kind}' is not an engine (local or temporal)")
    return str(kind)


async def connect(settings: TemporalSettings) -> Client:
    """A client on `settings` (ComponentError naming the address when Temporal cannot be reached)."""
    try:
        return await Client.connect(
            settings.address,
            namespace=settings.namespace,
            tls=settings.tls_config(),
            data_converter=data_converter(),
        )
    except RuntimeError as exc:
        raise ComponentError(
            "temporal",
            f"cannot reach {settings.address}: {exc}",
            hint="is the Temporal server running?",
            transient=True,
        ) from exc
