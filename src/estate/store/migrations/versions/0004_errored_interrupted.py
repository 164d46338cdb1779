"""errored and interrupted deployments, the process that runs each one, id counters, a richer audit trail

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retryable", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("retried_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("holder", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_deployments_status"), ["status"], unique=False)
    # Until now an interrupted run was recorded as failed with the reason "interrupted".
    op.execute("UPDATE deployments SET status = 'interrupted' WHERE status = 'failed' AND reason = 'interrupted'")
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )
    op.execute("INSERT INTO counters (name, value) SELECT 'rollout:' || module, count(*) FROM rollouts GROUP BY module")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.alter_column("command", new_column_name="action", existing_type=sa.String(length=255))
        batch_op.add_column(sa.Column("auth", sa.String(length=32), nullable=False, server_default="local"))
        batch_op.add_column(sa.Column("source", sa.String(length=255), nullable=False, server_default="cli"))
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("target", sa.String(length=255), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=False, server_default="ok"))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))
        batch_op.create_index(batch_op.f("ix_audit_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_target"), ["target"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit", schema=None) as batch_op:
        for index in ("ix_audit_target", "ix_audit_actor", "ix_audit_at"):
            batch_op.drop_index(batch_op.f(index))
        for column in ("reason", "outcome", "target", "request_id", "source", "auth"):
            batch_op.drop_column(column)
        batch_op.alter_column("action", new_column_name="command", existing_type=sa.String(length=255))
    op.drop_table("counters")
    op.execute("UPDATE deployments SET status = 'failed', reason = 'interrupted' WHERE status = 'interrupted'")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployments_status"))
        batch_op.drop_column("holder")
        batch_op.drop_column("retried_by")
        batch_op.drop_column("retryable")
