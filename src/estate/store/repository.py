"""The store: load the estate, sync estate-as-code into it, publish module versions, keep an audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from estate.domain.model import Estate, ModuleVersion
from estate.domain.versions import Version
from estate.errors import ComponentError, ConflictError, InputError, NotFoundError
from estate.store import tables
from estate.store.database import create_database_engine, migrate
from estate.store.rows import KINDS, estate_from_rows
from estate.store.sync import Action, SyncPlan, environments_with_history, plan_sync, write_sync


class Store:
    """One database, migrated to head on open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_database_engine(url)
        except Exception as exc:  # bad URL or missing driver
            raise ComponentError("database", f"cannot open {url}: {exc}") from exc
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def load_estate(self, conn: Connection | None = None) -> Estate:
        """The estate as stored now (config objects, published versions and rollout pins)."""
        if conn is None:
            with self.engine.connect() as c:
                return self.load_estate(c)
        try:
            rows = {k.name: [dict(r._mapping) for r in conn.execute(select(k.table))] for k in KINDS}
        except OperationalError as exc:
            raise ComponentError("database", str(exc.orig)) from exc
        return estate_from_rows(rows)

    def usage_slice(self, module_id: str) -> Estate:
        """Just enough of the estate for `module_usage(slice, module_id)`: the projects whose manifest needs
        the module's resource type, their environments (labels not loaded) and the rules for that type.
        `rollout status` of a large estate reads this instead of everything."""
        with self.engine.connect() as conn:
            resource_type = conn.execute(
                select(tables.modules.c.resource_type).where(tables.modules.c.id == module_id)
            ).scalar()
            rows: dict[str, list[dict[str, Any]]] = {k.name: [] for k in KINDS}
            rows["project"] = [
                dict(p._mapping)
                for p in conn.execute(select(tables.projects))
                if any(r.get("type") == resource_type for r in p.resources.values())
            ]
            e, r = tables.environments, tables.module_rules
            projects = [p["id"] for p in rows["project"]]
            rows["environment"] = [
                {"project": p, "id": i, "type": t, "labels": {}}
                for p, i, t in conn.execute(select(e.c.project, e.c.id, e.c.type).where(e.c.project.in_(projects)))
            ]
            rows["module_rule"] = [
                dict(x._mapping) for x in conn.execute(select(r).where(r.c.resource_type == resource_type))
            ]
            rows["env_type"] = [dict(x._mapping) for x in conn.execute(select(tables.env_types))]
        return estate_from_rows(rows)

    def settings(self) -> Mapping[str, Any]:
        """The estate's `settings:` section alone."""
        d = tables.documents
        with self.engine.connect() as conn:
            body = conn.execute(select(d.c.body).where(d.c.name == "settings")).scalar()
        return dict(body or {})

    def published_versions(self) -> dict[str, set[str]]:
        v = tables.module_versions
        with self.engine.connect() as conn:
            out: dict[str, set[str]] = {}
            for module, version in conn.execute(select(v.c.module, v.c.version)):
                out.setdefault(module, set()).add(version)
            return out

    def sync(self, desired: Estate, *, prune: bool, force: bool, dry_run: bool, actor: str, now: datetime) -> SyncPlan:
        """Diff `desired` against the store and, unless `dry_run`, write it in one transaction."""
        with self.engine.begin() as conn:
            current = self.load_estate(conn)
            plan = plan_sync(current, desired, prune=prune)
            if plan.immutable:
                names = ", ".join(f"{c.key} ({'/'.join(c.fields)})" for c in plan.immutable)
                raise ConflictError(
                    f"published module versions are immutable; these differ from the store: {names}",
                    hint="publish a new version (e.g. bump the patch) instead of editing one",
                )
            removed_envs = [
                tuple(c.key.split("/", 1))
                for c in plan.changes
                if c.kind == "environment" and c.action is Action.REMOVE
            ]
            history = environments_with_history(conn, removed_envs)  # type: ignore[arg-type]
            if history and not force:
                raise ConflictError(
                    f"refusing to prune environments with deployment history: {', '.join(history)}",
                    hint="destroy their infrastructure first, or pass --force to drop them and their history",
                )
            if dry_run or plan.empty:
                return plan
            write_sync(conn, plan, current, desired, actor, now)
            self.audit(conn, actor, "apply", {"changes": len(plan.changes)}, now)
        return plan

    def publish(self, version: ModuleVersion, actor: str, now: datetime) -> bool:
        """Publish a module version; False when the identical version exists, ConflictError if it differs."""
        try:
            Version.parse(version.version)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        t = tables.module_versions
        with self.engine.begin() as conn:
            if conn.execute(select(tables.modules.c.id).where(tables.modules.c.id == version.module)).first() is None:
                raise NotFoundError(
                    f"unknown module '{version.module}'", hint="declare it under `modules:` and run `estate apply`"
                )
            existing = conn.execute(
                select(t).where(t.c.module == version.module, t.c.version == version.version)
            ).first()
            if existing is not None:
                if existing.source == version.source and existing.inputs == dict(version.inputs):
                    return False
                raise ConflictError(
                    f"{version.module} {version.version} is already published with source "
                    f"'{existing.source}'; versions are immutable",
                    hint="publish a new version number instead",
                )
            try:
                conn.execute(
                    insert(t).values(
                        module=version.module,
                        version=version.version,
                        source=version.source,
                        inputs=dict(version.inputs),
                        published_at=now,
                        published_by=actor,
                    )
                )
            except IntegrityError as exc:  # a concurrent publish won the race
                raise ConflictError(f"{version.module} {version.version} was published concurrently") from exc
            self.audit(
                conn,
                actor,
                "module publish",
                {"module": version.module, "version": version.version, "source": version.source},
                now,
            )
        return True

    @staticmethod
    def audit(conn: Connection, actor: str, command: str, details: Mapping[str, Any], now: datetime) -> None:
        conn.execute(insert(tables.audit).values(at=now, actor=actor, command=command, details=dict(details)))
