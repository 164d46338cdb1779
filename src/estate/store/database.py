"""Open the database (SQLite under $ESTATE_HOME by default, PostgreSQL by URL) and migrate it to head."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from estate.errors import ComponentError

_MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (rollout status) run while the engine writes; busy_timeout waits out writers.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _to_json(value: Any) -> str:
    # Rollout state is one JSON value of a few MB on a large estate: orjson writes and reads it several
    # times faster than the standard library, and compactly.
    return orjson.dumps(value).decode()


def _from_json(text: str | bytes) -> Any:
    return orjson.loads(text)


def create_database_engine(url: str) -> Engine:
    """An engine for `url` with SQLite tuned for one writer and many readers."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30}, json_serializer=_to_json, json_deserializer=_from_json
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, json_serializer=_to_json, json_deserializer=_from_json)


# Alembic's `context`/`op` are process-wide proxies: two threads migrating at once corrupt each other's
# configuration (seen as KeyError: 'script'). Migrations therefore run one at a time, once per database.
_MIGRATION_LOCK = threading.Lock()
_migrated: set[str] = set()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; once per database and process)."""
    url = engine.url.render_as_string(hide_password=False)
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with _MIGRATION_LOCK:
            if url in _migrated:
                return
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            _migrated.add(url)
    except SQLAlchemyError as exc:
        raise ComponentError("database", f"cannot migrate {engine.url.render_as_string()}: {exc}") from exc


def at_head(engine: Engine) -> bool:
    """The database's schema is the newest migration (what `migrate` would leave)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads()) == heads
