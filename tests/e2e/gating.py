"""Health-gated rollouts for end-to-end tests: `Gated`, one test's world (a sandboxed Estate with real Terraform
whose example module writes its status files where the demo exporter reads them, judged by the session's real
Prometheus; the `gated` fixture of tests/e2e/conftest.py), and `watching(sandbox)`, which reads a rollout's
first wave on a store of its own, so a thread can watch while the CLI (or an engine process) drives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from estate.app import bootstrap
from estate.errors import NotFoundError
from estate.testing.services import DemoExporter, PrometheusServer
from tests.support.cli import Cli, CliResult
from tests.support.terraform import Sandbox, estate_doc


@dataclass
class Gated:
    """One test's world: a sandboxed Estate (real Terraform) pointed at the real Prometheus."""

    cli: Cli
    sandbox: Sandbox
    prometheus: PrometheusServer
    exporter: DemoExporter

    def apply(self, envs: dict[str, str], *plans: dict[str, Any], **doc: Any) -> None:
        estate = estate_doc(envs)
        estate["settings"].update(doc.pop("settings", {}))
        estate["rollout_plans"] = list(plans)
        estate.update(doc)
        self.sandbox.apply(estate)

    def run(self, *args: str, code: int = 0) -> CliResult:
        result = self.cli(*args)
        assert result.code == code, f"estate {' '.join(args)} exited {result.code}:\n{result.out}\n{result.err}"
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return self.run(*args, "-o", "json", code=code).json

    def status(self, rollout: str) -> dict[str, Any]:
        view: dict[str, Any] = self.json("rollout", "status", rollout)
        return view

    def usage(self) -> dict[str, str]:
        """`estate module usage postgres`: the version each environment is meant to be on."""
        return {e["env"]: e["version"] for e in self.json("module", "usage", "postgres")["environments"]}

    def deployed(self, env: str) -> str:
        """The version Terraform last wrote for shop/<env> (the file the exporter reads)."""
        version: str = self.sandbox.status("shop", env)["version"]
        return version

    def deploy_all(self, *envs: str) -> None:
        """Deploy the rule's version (1.0.0) and wait until Prometheus has scraped every one of them."""
        self.json("deploy", *(f"shop/{e}" for e in envs))
        for env in envs:
            self.prometheus.wait_for_metric("pg_errors_ratio", project="shop", env=env, version="1.0.0")


@contextlib.contextmanager
def watching(sandbox: Sandbox) -> Iterator[Callable[[str], dict[str, Any]]]:
    """`wave1(rollout)`: wave 1 as `estate rollout status` shows it ({} before the rollout exists), read
    on a store of its own, so a thread can watch while the CLI (or an engine process) drives."""
    app = bootstrap(sandbox.environ)

    def wave1(rollout: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = app.rollouts.status(rollout).waves[0].model_dump()
        except NotFoundError:
            return {}
        return found

    try:
        yield wave1
    finally:
        app.close()
