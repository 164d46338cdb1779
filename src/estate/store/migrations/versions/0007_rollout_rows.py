"""per-environment rollout state: a row per wave and per environment, the rollout row kept small; deployments
record which saved plan they apply and how the applied plan was made

Revision ID: 0007
Revises: 0006

Until now a rollout's whole state was one JSON value in `rollouts.state`. This migration moves each wave
(without its member list) to `rollout_waves` and each environment to `rollout_envs`, turns each wave's
rollback queue into per-environment `queued` flags, links every environment to the preflight plan made for
it, and leaves in `rollouts.state` and `rollouts.preflight` only what is not per environment. It works on
plain JSON, not on today's domain classes, so it keeps working when they change.
"""

from collections import Counter
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_LISTED = 20  # preflight lists kept in the rollout row; the rest is per environment


def upgrade() -> None:
    op.create_table(
        "rollout_waves",
        sa.Column("rollout_id", sa.String(length=80), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", "number", name="pk_rollout_waves"),
    )
    envs = op.create_table(
        "rollout_envs",
        sa.Column("rollout_id", sa.String(length=80), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("env", sa.String(length=63), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("previous_version", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("action_key", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("deployment_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("plan_version", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("rollout_id", "position", name="pk_rollout_envs"),
    )
    op.create_index("ux_rollout_envs_env", "rollout_envs", ["rollout_id", "project", "env"], unique=True)
    op.create_index("ix_rollout_envs_status", "rollout_envs", ["rollout_id", "status", "position"])
    op.create_index("ix_rollout_envs_wave", "rollout_envs", ["rollout_id", "wave", "position"])
    with op.batch_alter_table("rollout_events", schema=None) as batch_op:
        batch_op.drop_index("ix_rollout_events_rollout_id")
        batch_op.create_index("ix_rollout_events_rollout", ["rollout_id", "id"])
        batch_op.create_index("ix_rollout_events_kind", ["rollout_id", "kind", "id"])
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("apply_plan", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("plan_source", sa.Text(), nullable=True))

    conn = op.get_bind()
    rollouts = sa.table(
        "rollouts", sa.column("id", sa.String), sa.column("state", sa.JSON), sa.column("preflight", sa.JSON)
    )
    waves = sa.table(
        "rollout_waves",
        sa.column("rollout_id", sa.String),
        sa.column("number", sa.Integer),
        sa.column("state", sa.JSON),
        sa.column("counts", sa.JSON),
    )
    for rollout_id, state, preflight in conn.execute(sa.select(rollouts)).all():
        head, wave_rows, env_rows = _split(rollout_id, state, preflight)
        conn.execute(
            rollouts.update().where(rollouts.c.id == rollout_id).values(state=head, preflight=_summary(preflight))
        )
        if wave_rows:
            conn.execute(waves.insert(), wave_rows)
        for start in range(0, len(env_rows), 500):
            conn.execute(envs.insert(), env_rows[start : start + 500])


def _split(rollout_id: str, state: dict[str, Any], preflight: Any) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """The old one-value state as (the rollout row's state, wave rows, environment rows)."""
    queued = {(r["project"], r["env"]) for w in state["waves"] for r in w.get("rollback_queue", ())}
    plans = _plans(preflight)
    env_rows = []
    for position, e in enumerate(state["envs"]):
        ref = (e["env"]["project"], e["env"]["env"])
        plan = plans.get(ref)
        env_rows.append(
            {
                "rollout_id": rollout_id,
                "position": position,
                "project": ref[0],
                "env": ref[1],
                "wave": e["wave"],
                "status": e.get("status", "pending"),
                "previous_version": e["previous_version"],
                "version": e["version"],
                "changed": bool(e.get("changed", False)),
                "attempts": int(e.get("attempts", 0)),
                "action_key": e.get("key"),
                "kind": e.get("kind"),
                "target": e.get("target"),
                "deployment_id": e.get("deployment_id"),
                "reason": e.get("reason", ""),
                "retry_at": datetime.fromisoformat(e["retry_at"]) if e.get("retry_at") else None,
                "errors": int(e.get("errors", 0)),
                "queued": ref in queued,
                "plan_id": plan,
                "plan_version": preflight.get("version") if plan is not None else None,
            }
        )
    wave_rows = []
    for w in state["waves"]:
        members = [r for r in env_rows if r["wave"] == w["number"]]
        wave_state = {k: v for k, v in w.items() if k not in ("envs", "rollback_queue")}
        counts = Counter(str(r["status"]) for r in members)
        wave_rows.append({"rollout_id": rollout_id, "number": w["number"], "state": wave_state, "counts": counts})
    head = {k: v for k, v in state.items() if k not in ("envs", "waves")}
    return head, wave_rows, env_rows


def _plans(preflight: Any) -> dict[tuple[str, str], int]:
    """`(project, env) -> the preflight's plan deployment` from an old preflight preview."""
    found: dict[tuple[str, str], int] = {}
    for wave in (preflight or {}).get("waves", ()):
        for e in wave.get("envs", ()):
            project, _, env = str(e.get("env", "")).partition("/")
            if e.get("deployment_id") is not None and not e.get("error"):
                found[(project, env)] = int(e["deployment_id"])
    return found


def _summary(preflight: Any) -> Any:
    """An old preflight preview without its per-environment entries (each environment's plan is linked from
    its row), in the shape `estate.app.preflight.summary` writes."""
    if not preflight:
        return preflight
    waves = []
    for wave in preflight.get("waves", ()):
        envs = wave.get("envs", ())
        totals = {k: sum(int(e.get(k, 0)) for e in envs) for k in ("add", "change", "destroy")}
        waves.append({"number": wave.get("number"), "name": wave.get("name"), "environments": len(envs), **totals})
    listed = {k: list(preflight.get(k, ()))[:_LISTED] for k in ("uncovered", "destructive", "errors")}
    counted = {f"{k}_count": len(preflight.get(k, ())) for k in ("uncovered", "destructive", "errors")}
    kept = {k: preflight.get(k) for k in ("module", "version", "plan", "planned")}
    return {**kept, "waves": waves, **listed, **counted}


def downgrade() -> None:
    raise NotImplementedError("the per-environment rollout state cannot be folded back into one value")
