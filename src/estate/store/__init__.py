"""Persistence: SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL by URL."""

from estate.store.repository import Store
from estate.store.sync import Action, Change, SyncPlan

__all__ = ["Action", "Change", "Store", "SyncPlan"]
