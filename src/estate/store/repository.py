"""The store: load the estate, sync estate-as-code into it, publish module versions, keep an audit trail."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from estate.domain.access import Binding
from estate.domain.ids import EnvRef
from estate.domain.model import Environment, Estate, ModuleVersion
from estate.domain.versions import Version
from estate.errors import ComponentError, ConflictError, NotFoundError
from estate.store import tables
from estate.store.database import create_database_engine, migrate
from estate.store.lookups import chunks, pair_in
from estate.store.rollout_tables import rollout_envs
from estate.store.rows import KINDS, access_bindings, estate_from_rows
from estate.store.sync import SyncAction, SyncPlan, environments_with_history, plan_sync, write_sync


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

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads; a database that is down or unreachable is a transient ComponentError."""
        with _translated(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, committed when the block ends (rolled back on an error), translated like `connect`."""
        with _translated(), self.engine.begin() as conn:
            yield conn

    def load_estate(self, conn: Connection | None = None) -> Estate:
        """The estate as stored now (config objects, published versions and rollout pins)."""
        if conn is None:
            with self.connect() as c:
                return self.load_estate(c)
        with _translated():
            rows = {k.name: [dict(r._mapping) for r in conn.execute(select(k.table))] for k in KINDS}
        return estate_from_rows(rows)

    def usage_slice(self, module_id: str, *, outside_rollout: str | None = None) -> Estate:
        """Just enough of the estate for `module_usage(slice, module_id)`: the projects whose manifest needs
        the module's resource type, their environments (labels not loaded; with `outside_rollout`, only those
        that rollout does not hold) and the rules for that type. `rollout status` of a large estate reads
        this instead of everything."""
        with self.connect() as conn:
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
            query = select(e.c.project, e.c.id, e.c.type).where(e.c.project.in_(projects))
            if outside_rollout is not None:
                m = rollout_envs
                member = select(m.c.position).where(
                    m.c.rollout_id == outside_rollout, m.c.project == e.c.project, m.c.env == e.c.id
                )
                query = query.where(~member.exists())
            rows["environment"] = [{"project": p, "id": i, "type": t, "labels": {}} for p, i, t in conn.execute(query)]
            rows["module_rule"] = [
                dict(x._mapping) for x in conn.execute(select(r).where(r.c.resource_type == resource_type))
            ]
            rows["env_type"] = [dict(x._mapping) for x in conn.execute(select(tables.env_types))]
        return estate_from_rows(rows)

    def resource_type(self, module_id: str) -> str:
        """The resource type `module_id` implements; NotFoundError when the module is not in the store."""
        m = tables.modules
        with self.connect() as conn:
            found = conn.execute(select(m.c.resource_type).where(m.c.id == module_id)).scalar()
        if found is None:
            raise NotFoundError(f"unknown module '{module_id}'", hint="see `estate module list`")
        return str(found)

    def environments(self, refs: Sequence[EnvRef]) -> list[Environment]:
        """The stored environments among `refs` (labels included), in the order of `refs`."""
        e = tables.environments
        found: dict[EnvRef, Environment] = {}
        with self.connect() as conn:
            for chunk in chunks(sorted({(r.project, r.env) for r in refs})):
                for row in conn.execute(select(e).where(pair_in(e.c.project, e.c.id, chunk))):
                    env = Environment(row.project, row.id, row.type, MappingProxyType(dict(row.labels)))
                    found[env.ref] = env
        return [found[r] for r in refs if r in found]

    def graph_estate(self, conn: Connection, refs: Sequence[EnvRef]) -> Estate:
        """Just enough of the estate to resolve the graphs of `refs`: those environments, their projects,
        every module version and the rules that can apply to them (general rules and their own pins), so a
        rollout over 100,000 environments resolves each batch without reading all of them."""
        rows: dict[str, list[dict[str, Any]]] = {k.name: [] for k in KINDS}
        e, p, r = tables.environments, tables.projects, tables.module_rules
        pairs = sorted({(ref.project, ref.env) for ref in refs})
        for chunk in chunks(pairs):
            rows["environment"] += _rows(conn, select(e).where(pair_in(e.c.project, e.c.id, chunk)))
            rows["module_rule"] += _rows(conn, select(r).where(pair_in(r.c.project, r.c.env, chunk)))
        for names in chunks(sorted({ref.project for ref in refs})):
            rows["project"] += _rows(conn, select(p).where(p.c.id.in_(names)))
        rows["module_rule"] += _rows(conn, select(r).where(r.c.env.is_(None)))
        for kind in ("env_type", "module", "module_version"):
            table = next(k.table for k in KINDS if k.name == kind)
            rows[kind] = _rows(conn, select(table))
        return estate_from_rows(rows)

    def access(self) -> tuple[Binding, ...]:
        """The estate's access bindings alone (every authenticated request reads them)."""
        d = tables.documents
        with self.connect() as conn:
            found = {n: b for n, b in conn.execute(select(d.c.name, d.c.body).where(d.c.name.in_(["access", "roles"])))}
        return access_bindings(found)

    def settings(self) -> Mapping[str, Any]:
        """The estate's `settings:` section alone."""
        d = tables.documents
        with self.connect() as conn:
            body = conn.execute(select(d.c.body).where(d.c.name == "settings")).scalar()
        return dict(body or {})

    def publications(self) -> dict[tuple[str, str], dict[str, Any]]:
        """When and by whom each module version was published, and its lifecycle: `(module, version) ->
        {published_at, published_by, lifecycle, lifecycle_reason, lifecycle_by, lifecycle_at}`."""
        v = tables.module_versions
        columns = ("published_at", "published_by", "lifecycle", "lifecycle_reason", "lifecycle_by", "lifecycle_at")
        with self.connect() as conn:
            rows = conn.execute(select(v.c.module, v.c.version, *(v.c[c] for c in columns)))
            return {(r.module, r.version): {c: r._mapping[c] for c in columns} for r in rows}

    def published_versions(self) -> dict[str, set[str]]:
        v = tables.module_versions
        with self.connect() as conn:
            out: dict[str, set[str]] = {}
            for module, version in conn.execute(select(v.c.module, v.c.version)):
                out.setdefault(module, set()).add(version)
            return out

    def sync(self, desired: Estate, *, prune: bool, force: bool, dry_run: bool, actor: str, now: datetime) -> SyncPlan:
        """Diff `desired` against the store and, unless `dry_run`, write it in one transaction."""
        with self.begin() as conn:
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
                if c.kind == "environment" and c.action is SyncAction.REMOVE
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
        return plan

    def publish(self, version: ModuleVersion, actor: str, now: datetime) -> bool:
        """Publish a module version; False when the identical version exists, ConflictError if it differs."""
        Version.parse(version.version)
        t = tables.module_versions
        with self.begin() as conn:
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
        return True


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise ComponentError("database", str(exc.orig), transient=True) from exc


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(x._mapping) for x in conn.execute(query)]
