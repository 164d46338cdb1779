"""Persistence: SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL by URL."""

from estate.store.repository import Store
from estate.store.sync import Change, SyncAction, SyncPlan

__all__ = ["Change", "Store", "SyncAction", "SyncPlan"]
