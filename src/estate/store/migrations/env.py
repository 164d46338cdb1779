"""Alembic environment: runs on the connection Estate hands over (see estate.store.database)."""

from alembic import context

from estate.store import rollout_tables  # noqa: F401 - registers the rollout tables on `metadata`
from estate.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
