"""Tables of rollouts: state snapshots, the append-only event log, the command inbox and the engine lease."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Integer, String, Table, Text

from estate.store.tables import UtcDateTime, metadata

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("module", String(63), nullable=False, index=True),
    Column("target_version", String(128), nullable=False),
    Column("plan_id", String(63), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("state", JSON, nullable=False),  # the pure state machine's state (store.codec)
    Column("preflight", JSON),  # per-wave plan results of the target version
    Column("revision", Integer, nullable=False),  # optimistic lock: bumped on every save
    Column("created_by", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

rollout_events = Table(
    "rollout_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", String(80), nullable=False, index=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),  # created | command | refused | phase | transition
    Column("actor", String(255)),
    Column("summary", Text, nullable=False),
    Column("payload", JSON, nullable=False),
)

rollout_inbox = Table(
    "rollout_inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", String(80), nullable=False, index=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("command", JSON, nullable=False),
    Column("done_at", UtcDateTime()),
    Column("outcome", Text),  # "ok" or why the state machine refused it
)

rollout_deployments = Table(
    "rollout_deployments",
    metadata,
    # Maps an action's idempotency key to the deployment it created, so a redo never deploys twice.
    Column("action_key", String(255), primary_key=True),
    Column("rollout_id", String(80), nullable=False, index=True),
    Column("deployment_id", Integer, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(120), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)
