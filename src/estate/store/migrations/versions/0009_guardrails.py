"""guardrails: module version lifecycle (published, deprecated, defective), freezes, and per rollout environment
its env type (freezes are scoped by it) and when its latest deploy finished (gates' window start)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("module_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lifecycle", sa.String(length=16), nullable=False, server_default="published"))
        batch_op.add_column(sa.Column("lifecycle_reason", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("lifecycle_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("lifecycle_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("rollout_envs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("env_type", sa.String(length=63), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    # Rollouts recorded before this revision learn their environments' types from the estate as it is now.
    op.execute(
        "UPDATE rollout_envs SET env_type = COALESCE((SELECT environments.type FROM environments"
        " WHERE environments.project = rollout_envs.project AND environments.id = rollout_envs.env), '')"
    )
    op.create_table(
        "freezes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("env_type", sa.String(length=63), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_by", sa.String(length=255), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_freezes"),
    )
    op.create_index("ix_freezes_lifted_at", "freezes", ["lifted_at"])


def downgrade() -> None:
    op.drop_index("ix_freezes_lifted_at", table_name="freezes")
    op.drop_table("freezes")
    with op.batch_alter_table("rollout_envs", schema=None) as batch_op:
        batch_op.drop_column("finished_at")
        batch_op.drop_column("env_type")
    with op.batch_alter_table("module_versions", schema=None) as batch_op:
        batch_op.drop_column("lifecycle_at")
        batch_op.drop_column("lifecycle_by")
        batch_op.drop_column("lifecycle_reason")
        batch_op.drop_column("lifecycle")
