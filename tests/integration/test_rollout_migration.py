"""Migrations on a real SQLite database: a rollout in flight, stored the old way (its whole state as one JSON
value), is split into wave and environment rows (0007) and the engine then completes it; rollouts recorded
before 0009 learn their environments' types, and published versions are `published`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, insert, text

from estate.app import Wiring, bootstrap
from estate.config import load_estate
from estate.domain.lifecycle import Lifecycle
from estate.domain.model import ModuleVersion
from estate.domain.plans import RolloutPlan, Wave
from estate.domain.rollout import decide
from estate.domain.rollout_events import Start, StartDeployment
from estate.domain.rollout_state import new_rollout
from estate.domain.selectors import Selector
from estate.domain.usage import module_usage
from estate.domain.waves import assign_waves
from estate.store import Store, tables
from estate.store.codec import encode
from estate.store.database import _MIGRATIONS, create_database_engine, migrate
from estate.store.deployments import DeploymentRepository
from estate.store.rollout_tables import rollouts
from estate.testing.fake_runner import FakeRunner
from tests.support.cli import EXAMPLE_ESTATE

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def database_at(tmp_path: Path, revision: str) -> tuple[str, Engine]:
    """A SQLite database migrated up to `revision` (its URL and an engine on it)."""
    url = f"sqlite:///{tmp_path / 'estate.db'}"
    engine = create_database_engine(url)
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return url, engine


def test_an_in_flight_rollout_of_the_old_format_completes_after_the_upgrade(tmp_path: Path) -> None:
    url, engine = database_at(tmp_path, "0004")
    types = ("ephemeral", "development", "staging", "production")
    plan = RolloutPlan("quick", tuple(Wave(t, Selector(env_types=frozenset({t})), auto_promote=True) for t in types))
    estate = replace(load_estate(EXAMPLE_ESTATE).estate, plans=(plan,))

    # What the old engine saved after `start`: wave 1 deploying, its environments in flight, nothing run yet.
    usage = module_usage(estate, "postgres")
    membership = assign_waves(plan, [b.env for b in usage]).waves
    state = new_rollout(
        rollout_id="postgres-1",
        module="postgres",
        version="2.0.0",
        plan=plan,
        membership=membership,
        previous_versions={b.env.ref: b.version or "" for b in usage},
        started_by="alex",
        now=T0,
    )
    decision = decide(state, Start("alex"), T0)
    in_flight = [a for a in decision.actions if isinstance(a, StartDeployment)]
    assert in_flight
    old_format = encode(decision.state)
    for wave in old_format["waves"]:
        wave["rollback_queue"] = []  # a field the old format had
    for env in old_format["envs"]:
        del env["queued"]  # a field it did not have
    with engine.begin() as conn:
        values = {"module": "postgres", "target_version": "2.0.0", "plan_id": "quick", "phase": "running"}
        conn.execute(
            insert(rollouts).values(
                id="postgres-1",
                state=old_format,
                preflight=None,
                revision=1,
                created_by="alex",
                created_at=T0,
                updated_at=T0,
                **values,
            )
        )
        conn.execute(insert(tables.counters).values(name="rollout:postgres", value=1))
    engine.dispose()

    migrate(create_database_engine(url))
    store = Store.open(url)
    store.sync(estate, prune=False, force=False, dry_run=False, actor="alex", now=T0)  # today's tables: after
    store.publish(ModuleVersion("postgres", "2.0.0", "/srv/pg-2"), "alex", T0)
    runner = FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC))
    app = bootstrap(
        {"ESTATE_HOME": str(tmp_path / "home"), "ESTATE_DATABASE_URL": url},
        Wiring(runner=lambda _store, _settings: runner),
    )
    loaded = app.rollouts.state("postgres-1")
    assert loaded == decision.state, "the split state is the state the old engine saved"
    app.rollouts.drive("postgres-1")
    view = app.rollouts.status("postgres-1")
    assert view.phase == "completed"
    assert [sum(w.counts.values()) for w in view.waves] == [len(m) for m in membership]
    assert {b.version for b in module_usage(store.load_estate(), "postgres")} == {"2.0.0"}
    assert len(runner.runs) == len(usage), "every environment deployed once, the in-flight ones included"
    app.close()
    store.close()


def test_0009_gives_recorded_rollouts_their_env_types_and_versions_a_lifecycle(tmp_path: Path) -> None:
    url, engine = database_at(tmp_path, "0008")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO modules (id, resource_type) VALUES ('postgres', 'postgres')"))
        conn.execute(
            text(
                "INSERT INTO module_versions (module, version, source, inputs, published_at, published_by)"
                " VALUES ('postgres', '1.0.0', '/srv/pg-1', '{}', :at, 'alex')"
            ),
            {"at": T0},
        )
        conn.execute(text("INSERT INTO environments VALUES ('shop', 'prod', 'production', '{}')"))
        for position, env in enumerate(("prod", "gone")):
            conn.execute(
                text(
                    "INSERT INTO rollout_envs (rollout_id, position, project, env, wave, status, previous_version,"
                    " version, changed, attempts, reason, errors, queued)"
                    " VALUES ('postgres-1', :p, 'shop', :e, 1, 'pending', '1.0.0', '1.0.0', 0, 0, '', 0, 0)"
                ),
                {"p": position, "e": env},
            )
    engine.dispose()
    migrate(create_database_engine(url))
    store = Store.open(url)
    with store.connect() as conn:
        rows = dict(conn.execute(text("SELECT env, env_type FROM rollout_envs ORDER BY position")).all())
    assert rows == {"prod": "production", "gone": ""}, "an environment no longer in the estate has no type"
    (version,) = store.load_estate().require_module("postgres").versions
    assert (version.lifecycle, version.lifecycle_reason) == (Lifecycle.PUBLISHED, "")
    store.close()
