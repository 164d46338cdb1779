"""an index on module rules by environment: a rollout's batches look their environments' pins up by it

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_module_rules_env", "module_rules", ["project", "env"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_module_rules_env", table_name="module_rules")
