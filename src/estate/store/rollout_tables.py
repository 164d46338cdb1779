"""Tables of rollouts: the rollout's own small record, one row per wave and one per environment, the
append-only event log, the command inbox and the engine lease.

A rollout's state is split so that an engine turn writes only what changed: the rollout row (phase, target,
plan: a few kB), the rows of the waves that changed and the rows of the environments that changed.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from estate.store.tables import UtcDateTime, metadata

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("module", String(63), nullable=False, index=True),
    Column("target_version", String(128), nullable=False),
    Column("plan_id", String(63), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("state", JSON, nullable=False),  # the state machine's state without waves and environments (codec)
    Column("preflight", JSON),  # the preflight's summary per wave (each environment's plan: rollout_envs)
    Column("revision", Integer, nullable=False),  # optimistic lock: bumped on every save
    Column("created_by", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

rollout_waves = Table(
    "rollout_waves",
    metadata,
    Column("rollout_id", String(80), nullable=False),
    Column("number", Integer, nullable=False),  # 1-based
    Column("state", JSON, nullable=False),  # the wave's state without its members (codec), gate evidence included
    Column("counts", JSON, nullable=False),  # {status: environments}, written with the environments' rows
    PrimaryKeyConstraint("rollout_id", "number", name="pk_rollout_waves"),
)

rollout_envs = Table(
    "rollout_envs",
    metadata,
    # One environment of a rollout, as the state machine's `EnvState` says, and its preflight plan.
    Column("rollout_id", String(80), nullable=False),
    Column("position", Integer, nullable=False),  # membership order over every wave (0-based)
    Column("project", String(63), nullable=False),
    Column("env", String(63), nullable=False),
    Column("wave", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("previous_version", String(128), nullable=False),
    Column("version", String(128), nullable=False),
    Column("changed", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("action_key", String(255)),  # the deployment in flight
    Column("kind", String(16)),
    Column("target", String(128)),
    Column("deployment_id", String(32)),
    Column("reason", Text, nullable=False),
    Column("retry_at", UtcDateTime()),
    Column("errors", Integer, nullable=False),
    Column("queued", Boolean, nullable=False),
    Column("plan_id", Integer),  # the preflight's plan deployment, whose saved plan a deploy may apply
    Column("plan_version", String(128)),  # the version that plan was made for
    Column("env_type", String(63), nullable=False, server_default=""),  # what freezes are scoped by
    Column("finished_at", UtcDateTime()),  # when its latest deploy succeeded (its gates' window start)
    PrimaryKeyConstraint("rollout_id", "position", name="pk_rollout_envs"),
    Index("ux_rollout_envs_env", "rollout_id", "project", "env", unique=True),
    Index("ix_rollout_envs_status", "rollout_id", "status", "position"),
    Index("ix_rollout_envs_wave", "rollout_id", "wave", "position"),
)

rollout_events = Table(
    "rollout_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", String(80), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),  # created | command | refused | phase | transition
    Column("actor", String(255)),
    Column("summary", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    # The latest lines, and the few commands among a large rollout's many transitions, without a scan.
    Index("ix_rollout_events_rollout", "rollout_id", "id"),
    Index("ix_rollout_events_kind", "rollout_id", "kind", "id"),
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
