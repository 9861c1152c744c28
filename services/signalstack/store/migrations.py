"""Apply the ordered migrations in sql/ with yoyo-migrations (psycopg 3 backend).

yoyo records every applied migration in its ``_yoyo_migration`` table and serialises
concurrent runners with its lock table, so several sinks starting at once are safe. The SQL
directory is found via ``SIGNALSTACK_SQL_DIR``, the wheel's bundled copy, or the repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from signalstack.store.base import StoreError


def sql_dir() -> Path:
    env = os.environ.get("SIGNALSTACK_SQL_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parents[1] / "sql", here.parents[3] / "sql"]
    for c in candidates:
        if (c / "001_core_tables.sql").is_file():
            return c
    raise StoreError(
        "cannot find the sql/ migrations directory; set SIGNALSTACK_SQL_DIR "
        f"(looked in {', '.join(str(c) for c in candidates)})"
    )


def yoyo_url(dsn: str) -> str:
    """libpq URL → yoyo's psycopg 3 backend URL."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"expected a postgresql:// DSN, got scheme {parts.scheme!r}")
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; return the ids applied by this call (in order)."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(dsn))
    try:
        migrations = read_migrations(str(directory or sql_dir()))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


def applied(dsn: str) -> list[str]:
    """Ids of the migrations recorded as applied, oldest first."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc, migration_id"
        ).fetchall()
    return [str(r[0]) for r in rows]
