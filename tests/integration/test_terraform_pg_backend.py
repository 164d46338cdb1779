"""The `pg` backend (a template in `runner.backend`) against a throwaway PostgreSQL, with locking."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from estate.domain.deployments import DeploymentKind, DeploymentStatus
from estate.domain.ids import EnvRef
from estate.store import Store
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg_sandbox(sandbox: Sandbox, fresh_postgres_url: str) -> Iterator[tuple[Sandbox, str]]:
    backend = {"pg": {"conn_str": f"{fresh_postgres_url}?sslmode=disable", "schema_name": "estate_{project}_{env}"}}
    sandbox.apply(
        estate_doc(
            {"e1": "ephemeral", "e-2": "ephemeral"}, params={"apply_delay_seconds": 2}, settings={"backend": backend}
        )
    )
    yield sandbox, fresh_postgres_url


def test_state_lives_in_postgres_per_environment(pg_sandbox: tuple[Sandbox, str]) -> None:
    sandbox, url = pg_sandbox
    store = Store.open(sandbox.settings().database_url)
    try:
        service = sandbox.service(store)
        for env in ("e1", "e-2"):
            dep = service.run(service.create(EnvRef("shop", env), triggered_by="t"))
            assert dep.status is DeploymentStatus.SUCCEEDED, dep.reason
        again = service.run(service.create(EnvRef("shop", "e1"), DeploymentKind.PLAN, triggered_by="t"))
        assert again.plan_summary is not None and not again.plan_summary.has_changes
    finally:
        store.close()
    assert not (sandbox.home / "state").exists() or not any((sandbox.home / "state").rglob("*.tfstate"))
    with psycopg.connect(url) as conn:
        schemas = {r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata")}
        assert {"estate_shop_e1", "estate_shop_e-2"} <= schemas
        (count,) = conn.execute('SELECT count(*) FROM "estate_shop_e1".states').fetchone()  # type: ignore[misc]
        assert count == 1


def test_concurrent_runs_on_one_env_hit_terraforms_lock_and_state_stays_intact(
    pg_sandbox: tuple[Sandbox, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Two Estate homes (two runner hosts) share one pg backend: only Terraform's lock protects the env.
    sandbox, _ = pg_sandbox
    backend = sandbox.settings_backend()
    other_home = tmp_path_factory.mktemp("runner-b")
    other = Sandbox(other_home, {**sandbox.environ, "ESTATE_HOME": str(other_home / "estate")})
    stores = [Store.open(s.settings().database_url) for s in (sandbox, other)]
    try:
        first = sandbox.service(stores[0])  # the backend creates its schema on first use
        assert first.run(first.create(EnvRef("shop", "e1"), triggered_by="t")).status is DeploymentStatus.SUCCEEDED
        v2 = [{"resource_type": "postgres", "module": "postgres", "version": "2.0.0"}]
        for s in (sandbox, other):
            s.apply(
                estate_doc(
                    {"e1": "ephemeral"}, params={"apply_delay_seconds": 3}, rules=v2, settings={"backend": backend}
                )
            )
        a, b = (s.service(st) for s, st in zip((sandbox, other), stores, strict=True))
        a_id, b_id = a.create(EnvRef("shop", "e1"), triggered_by="a"), b.create(EnvRef("shop", "e1"), triggered_by="b")
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(a.run, a_id)
            # Once a's apply has started creating, it holds the state lock (and sleeps 3s in local-exec).
            wait_for(lambda: any(e["type"] == "apply_start" for _, e in a.repo.events(a_id)))
            refused = b.run(b_id)
            assert running.result().status is DeploymentStatus.SUCCEEDED

        assert refused.status is DeploymentStatus.ERRORED and refused.retryable, "busy, not a failed change"
        assert refused.reason is not None and "Error acquiring the state lock" in refused.reason
        check = a.run(a.create(EnvRef("shop", "e1"), DeploymentKind.PLAN, triggered_by="t"))
        assert check.status is DeploymentStatus.SUCCEEDED
        assert check.plan_summary is not None and not check.plan_summary.has_changes  # state intact
        assert sandbox.status("shop", "e1")["version"] == "2.0.0"
    finally:
        for st in stores:
            st.close()
