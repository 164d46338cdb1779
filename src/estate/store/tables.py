"""Database tables (SQLAlchemy 2 Core metadata); the schema itself evolves only through Alembic migrations."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, Text, UniqueConstraint

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
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("published_by", String(255), nullable=False),
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
    # Single-row sections of estate-as-code: "settings", "roles".
    Column("name", String(63), primary_key=True),
    Column("body", JSON, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("command", String(255), nullable=False),
    Column("details", JSON, nullable=False),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(63), nullable=False, index=True),
    Column("env", String(63), nullable=False),
    Column("kind", String(16), nullable=False),  # plan | deploy | rollback
    Column("status", String(16), nullable=False),  # queued | planning | applying | succeeded | failed | cancelled
    Column("reason", Text),  # why it failed or was cancelled
    Column("triggered_by", String(255), nullable=False),
    Column("rollout_id", String(63), index=True),
    Column("graph", JSON, nullable=False),  # resolved graph snapshot
    Column("plan_summary", JSON),
    Column("outputs", JSON),  # sensitive values masked
    Column("secrets", Text),  # Fernet-encrypted sensitive values, or NULL
    Column("tool_version", String(64)),
    Column("transitions", JSON, nullable=False),  # [{status, at}]
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

deployment_events = Table(
    "deployment_events",
    metadata,
    Column("deployment_id", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("event", JSON, nullable=False),
)
