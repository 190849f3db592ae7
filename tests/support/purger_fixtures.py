"""Fixtures and helpers of the purger's tests: events of chosen ages, the purger's connection string."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import Database

AddEvents = Callable[[str, Sequence[datetime]], list[int]]


def add_events(db: Database, topic: str, created_at: Sequence[datetime]) -> list[int]:
    """Insert one event per timestamp; ids in order (as the administrator: producers may not set
    created_at)."""
    with db.connect() as conn:
        rows = conn.execute(
            "INSERT INTO events (topic, payload, created_at)"
            " SELECT %s, jsonb_build_object('n', n), c"
            " FROM unnest(%s::timestamptz[]) WITH ORDINALITY AS t(c, n) ORDER BY n"
            " RETURNING id",
            (topic, list(created_at)),
        ).fetchall()
    return sorted(row[0] for row in rows)


def event_ids(db: Database, topic: str | None = None) -> list[int]:
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM events WHERE %(topic)s::text IS NULL OR topic = %(topic)s ORDER BY id",
            {"topic": topic},
        ).fetchall()
    return [row[0] for row in rows]


def watermarks(db: Database) -> dict[str, int]:
    with db.connect(autocommit=True) as conn:
        return dict(conn.execute("SELECT topic, purged_up_to_id FROM events_purge_watermarks").fetchall())


@pytest.fixture
def purger_dsn(db: Database) -> str:
    """A login that is the events_purger role itself."""
    return db.role_dsn("events_purger")


@pytest.fixture
def server_now(db: Database) -> datetime:
    """The database server's clock, which sets created_at and the purger's cutoff."""
    now = db.scalar("SELECT now()")
    assert isinstance(now, datetime)
    return now


@pytest.fixture
def aged_events(db: Database) -> AddEvents:
    """``aged_events(topic, [created_at, ...]) -> ids``."""
    return lambda topic, created_at: add_events(db, topic, created_at)
