"""Database tables (SQLAlchemy 2 Core metadata); the schema itself evolves only through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Estate stores UTC times only")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    }
)

env_types = Table(
    "env_types",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("rank", Integer, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("resources", JSON, nullable=False),
)

environments = Table(
    "environments",
    metadata,
    Column("project", String(63), primary_key=True),
    Column("id", String(63), primary_key=True),
    Column("type", String(63), nullable=False),
    Column("labels", JSON, nullable=False),
)

modules = Table(
    "modules",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("resource_type", String(63), nullable=False),
)

module_versions = Table(
    "module_versions",
    metadata,
    Column("module", String(63), primary_key=True),
    Column("version", String(128), primary_key=True),
    Column("source", Text, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("published_at", UtcDateTime(), nullable=False),
    Column("published_by", String(255), nullable=False),
    # published | deprecated | defective (estate.domain.lifecycle); who set it last, when and why
    Column("lifecycle", String(16), nullable=False, server_default="published"),
    Column("lifecycle_reason", Text, nullable=False, server_default=""),
    Column("lifecycle_by", String(255)),
    Column("lifecycle_at", UtcDateTime()),
)

module_rules = Table(
    "module_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # slot = resource_type|project|env_type|env|owner: NULL-safe uniqueness of a rule's scope.
    Column("slot", String(400), nullable=False),
    Column("resource_type", String(63), nullable=False),
    Column("module", String(63), nullable=False),
    Column("version", String(128), nullable=False),
    Column("project", String(63)),
    Column("env_type", String(63)),
    Column("env", String(63)),
    Column("owner", String(128), nullable=False),
    UniqueConstraint("slot", name="uq_module_rules_slot"),
    # a rollout pins each of its environments: its batches look their pins up by environment
    Index("ix_module_rules_env", "project", "env"),
)

rollout_plans = Table(
    "rollout_plans",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("spec", JSON, nullable=False),
)

documents = Table(
    "documents",
    metadata,
    # Single-row sections of estate-as-code: "settings", "access".
    Column("name", String(63), primary_key=True),
    Column("body", JSON, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    # Append-only: Estate has no code path that updates or deletes a row of this table.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False, index=True),
    Column("actor", String(255), nullable=False, index=True),  # the subject who asked
    Column("auth", String(32), nullable=False, server_default="local"),  # how they authenticated
    Column("source", String(255), nullable=False, server_default="cli"),  # where from: "cli", an address
    Column("request_id", String(64)),
    Column("action", String(255), nullable=False),  # "rollout promote", "apply", "deploy"
    Column("target", String(255), nullable=False, server_default="", index=True),  # "rollout:postgres-1"
    Column("outcome", String(16), nullable=False, server_default="ok"),  # ok | refused | failed | denied
    Column("reason", Text, nullable=False, server_default=""),
    Column("details", JSON, nullable=False),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(63), nullable=False, index=True),
    Column("env", String(63), nullable=False),
    Column("kind", String(16), nullable=False),  # plan | deploy | rollback
    # queued | planning | applying | succeeded | failed | errored | interrupted | cancelled
    Column("status", String(16), nullable=False, index=True),
    Column("reason", Text),  # why it failed, errored or was cancelled
    Column("retryable", Boolean, nullable=False, server_default=false()),  # errored, may pass by itself
    Column("retried_by", Integer),  # the deployment that redid this interrupted one
    Column("holder", String(255)),  # the process that runs (or will run) it, `host:pid`
    Column("pool", String(63)),  # the runner pool it was sent to (Temporal engine); NULL: the local runner
    Column("triggered_by", String(255), nullable=False),
    Column("rollout_id", String(63), index=True),
    Column("graph", JSON, nullable=False),  # resolved graph snapshot
    Column("plan_summary", JSON),
    Column("outputs", JSON),  # sensitive values masked
    Column("secrets", Text),  # Fernet-encrypted sensitive values, or NULL
    Column("tool_version", String(64)),
    Column("apply_plan", Integer),  # the plan deployment whose saved plan this deploy is to apply
    Column("plan_source", Text),  # how the applied plan was made: a saved plan, or a fresh plan and why
    Column("transitions", JSON, nullable=False),  # [{status, at}]
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    # A token is `est_<id>_<secret>`; only a SHA-256 of the secret is kept, so the store never holds one.
    Column("id", String(32), primary_key=True),
    Column("user", String(255), nullable=False, index=True),
    Column("groups", JSON, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("expires_at", UtcDateTime()),
    Column("revoked_at", UtcDateTime()),
    Column("revoked_by", String(255)),
    Column("last_used_at", UtcDateTime()),
)

freezes = Table(
    "freezes",
    metadata,
    # While a freeze is in force (not lifted, `until` not passed), no new deployment starts in its scope.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("env_type", String(63)),  # NULL: the whole estate
    Column("reason", Text, nullable=False),
    Column("until", UtcDateTime()),  # NULL: until lifted
    Column("created_by", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("lifted_by", String(255)),
    Column("lifted_at", UtcDateTime(), index=True),
)

counters = Table(
    "counters",
    metadata,
    # Ids handed out one at a time per name, e.g. `rollout:postgres` -> postgres-1, postgres-2...
    Column("name", String(120), primary_key=True),
    Column("value", Integer, nullable=False),
)

deployment_events = Table(
    "deployment_events",
    metadata,
    Column("deployment_id", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("event", JSON, nullable=False),
)

events = Table(
    "events",
    metadata,
    # The event feed (an outbox): one row per transition anyone may follow (`GET /api/v1/events`), written in
    # the transaction of the change itself; ids are handed out in commit order (see `estate.store.feed`).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    # rollout | target | wave | gate | env | command | deployment
    Column("kind", String(16), nullable=False, index=True),
    Column("rollout_id", String(80), index=True),
    Column("deployment_id", Integer),
    Column("wave", Integer),
    Column("gate", Integer),
    Column("env", String(127)),  # project/env
    Column("before", String(64), nullable=False, server_default=""),
    Column("after", String(64), nullable=False, server_default=""),
    Column("reason", Text, nullable=False, server_default=""),
    Column("actor", String(255)),
    Column("summary", Text, nullable=False, server_default=""),
)

jobs = Table(
    "jobs",
    metadata,
    # Long work a server runs in the background (preflight plans, deploys, drift checks) and its outcome.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # deploy | drift | rollback | preview | start | retarget
    Column("status", String(16), nullable=False, index=True),  # queued | running | succeeded | failed | interrupted
    Column("actor", String(255), nullable=False),
    Column("request", JSON, nullable=False),
    Column("progress", JSON, nullable=False),  # {label, total, done: [[item, outcome], ...]}
    Column("result", JSON),  # the view the work returned
    Column("error", JSON),  # {type, message, hint, problems} when it raised
    Column("holder", String(255), nullable=False),  # the process running it, `host:pid`
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
)
