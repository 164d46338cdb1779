"""The store on SQLite and on a throwaway PostgreSQL: apply is one transaction, idempotent, and prunes carefully."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from estate.config import load_estate
from estate.domain.model import ModuleVersion
from estate.errors import ConflictError, NotFoundError
from estate.store import Store, SyncAction, sync, tables
from tests.support.cli import EXAMPLE_ESTATE

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'estate.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    opened = Store.open(url)
    request.addfinalizer(opened.close)
    return opened


def _example(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    """A copy of the example estate (module sources made absolute), optionally with one text edit."""
    out = tmp_path / "estate"
    out.mkdir(parents=True, exist_ok=True)
    for f in EXAMPLE_ESTATE.glob("*.yaml"):
        text = f.read_text().replace("../modules/", f"{EXAMPLE_ESTATE.parent / 'modules'}/")
        (out / f.name).write_text(text.replace(*edit) if edit else text)
    return out


def _apply(store: Store, path: Path, **kw: bool) -> sync.SyncPlan:
    options = {"prune": False, "force": False, "dry_run": False} | kw
    return store.sync(load_estate(path, store.published_versions()).estate, actor="alex", now=NOW, **options)


def test_apply_is_idempotent_and_round_trips(store: Store, tmp_path: Path) -> None:
    path = _example(tmp_path)
    first = _apply(store, path)
    assert {c.action for c in first.changes} == {SyncAction.ADD}
    assert _apply(store, path).empty
    loaded = load_estate(path).estate
    stored = store.load_estate()
    assert stored.plans == loaded.plans
    assert sorted(stored.environments, key=lambda e: e.ref) == sorted(loaded.environments, key=lambda e: e.ref)
    assert stored.settings == loaded.settings


def test_dry_run_writes_nothing(store: Store, tmp_path: Path) -> None:
    plan = _apply(store, _example(tmp_path), dry_run=True)
    assert len(plan.changes) > 20
    assert store.load_estate().environments == ()


def test_removed_objects_stay_without_prune(store: Store, tmp_path: Path) -> None:
    _apply(store, _example(tmp_path))
    smaller = _example(tmp_path / "b", ("      - {id: eph-2, type: ephemeral, labels: {region: us}}\n", ""))
    plan = _apply(store, smaller)
    assert [c.key for c in plan.held if c.kind == "environment"] == ["checkout/eph-2"]
    assert len(store.load_estate().environments) == 16
    pruned = _apply(store, smaller, prune=True)
    assert [c.key for c in pruned.changes] == ["checkout/eph-2"]
    assert len(store.load_estate().environments) == 15


def test_env_with_deployment_history_is_never_pruned_silently(store: Store, tmp_path: Path) -> None:
    _apply(store, _example(tmp_path))
    with store.engine.begin() as conn:
        conn.execute(
            insert(tables.deployments).values(
                project="checkout",
                env="eph-2",
                kind="deploy",
                status="succeeded",
                triggered_by="alex",
                graph={},
                transitions=[],
                created_at=NOW,
                updated_at=NOW,
            )
        )
    smaller = _example(tmp_path / "b", ("      - {id: eph-2, type: ephemeral, labels: {region: us}}\n", ""))
    with pytest.raises(ConflictError, match="checkout/eph-2"):
        _apply(store, smaller, prune=True)
    assert len(store.load_estate().environments) == 16
    _apply(store, smaller, prune=True, force=True)
    assert len(store.load_estate().environments) == 15


def test_apply_is_all_or_nothing(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = sync.write_sync

    def fail_halfway(conn, plan, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(conn, sync.SyncPlan(plan.changes[:10]), *args, **kwargs)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("estate.store.repository.write_sync", fail_halfway)
    with pytest.raises(RuntimeError):
        _apply(store, _example(tmp_path))
    estate = store.load_estate()
    assert (estate.env_types, estate.projects, estate.environments) == ((), (), ())


def test_published_versions_are_immutable(store: Store, tmp_path: Path) -> None:
    _apply(store, _example(tmp_path))
    v201 = ModuleVersion("postgres", "2.0.1", "/srv/pg-2.0.1", {"env": "${context.env_id}"})
    assert store.publish(v201, "alex", NOW) is True
    assert store.publish(v201, "alex", NOW) is False
    with pytest.raises(ConflictError, match="immutable"):
        store.publish(ModuleVersion("postgres", "2.0.1", "/srv/other"), "alex", NOW)
    with pytest.raises(NotFoundError):
        store.publish(ModuleVersion("redis", "1.0.0", "/srv/redis"), "alex", NOW)
    # A version published by CLI survives a re-apply of files that do not list it.
    assert _apply(store, _example(tmp_path)).empty
    assert {v.version for v in store.load_estate().modules[0].versions} == {"1.0.0", "2.0.1"}


def test_editing_a_published_version_in_the_files_is_refused(store: Store, tmp_path: Path) -> None:
    _apply(store, _example(tmp_path))
    edited = _example(tmp_path / "b", ("postgres/v1.0.0", "postgres/v2.0.0"))
    with pytest.raises(ConflictError, match=r"postgres@1\.0\.0 \(source\)"):
        _apply(store, edited)
