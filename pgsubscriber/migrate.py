"""The events schema: numbered SQL files shipped in ``pgsubscriber/migrations``, each applied once.

``migrate(dsn)`` (or ``pgsubscriber migrate``) applies what is missing. Kept small on purpose: the
migrations are plain SQL (roles, triggers, functions) and the only requirements are "once each, in
order, safe from two processes at once", which one advisory lock and one bookkeeping table give.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from pgsubscriber.errors import PgSubscriberError

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every runner.
_MIGRATION_LOCK_KEY = 7_310_042_001
_LOGIN_ROLES = ("events_producer", "events_consumer", "events_purger")


class MigrationError(PgSubscriberError):
    """A migration could not be applied; nothing of it was kept."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in the order they apply."""
    found = []
    for entry in resources.files("pgsubscriber").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        version_text, _, _ = entry.name.partition("_")
        found.append(Migration(int(version_text), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number: {versions}")
    return found


def applied_migrations(conn: psycopg.Connection) -> list[int]:
    """Versions already applied to the database behind ``conn`` (empty when none)."""
    exists = conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def migrate(dsn: str, *, role_passwords: dict[str, str] | None = None, up_to: int | None = None) -> list[str]:
    """Apply every missing migration to the database at ``dsn``; return the names applied.

    ``up_to`` stops after that version (to test or stage an upgrade); by default all are applied.

    ``role_passwords`` maps ``events_producer`` / ``events_consumer`` / ``events_purger`` to a
    password; those roles are then allowed to log in with it.
    """
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Session lock: a second runner waits here, then finds everything applied.
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = set(applied_migrations(conn))
            for migration in available_migrations():
                if migration.version in done or (up_to is not None and migration.version > up_to):
                    continue
                logger.info("applying migration %s", migration.name)
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (migration.version, migration.name),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.name} failed and was rolled back: {exc}"
                    ) from exc
                applied_now.append(migration.name)
            for role, password in (role_passwords or {}).items():
                if role not in _LOGIN_ROLES:
                    raise MigrationError(f"unknown role {role!r}; expected one of {_LOGIN_ROLES}")
                conn.execute(
                    sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return applied_now
