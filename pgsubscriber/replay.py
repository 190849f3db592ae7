"""Read a range of events without writing a handler: :func:`read_events`.

The same reads, with the same guarantee, as a :class:`~pgsubscriber.Subscriber`: each batch is one
``events_fetch`` call in its own READ COMMITTED transaction, so it stops at the delivery horizon
and never passes over an event whose transaction commits late. The range ends at the newest id
drawn when the call started (or ``to_id``); while a producer transaction still holds part of it
back, the iterator waits for it, as a subscriber does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.types.string import TextLoader

from pgsubscriber._decoding import register_tolerant_timestamps
from pgsubscriber._queries import query
from pgsubscriber._session import batch_from_rows
from pgsubscriber.events import Event, validate_topic

#: Payload bytes per batch (as the subscriber's default).
_MAX_BYTES = 16 * 1024 * 1024


def _connect(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, prepare_threshold=None, application_name="pgsubscriber read_events")
    conn.isolation_level = IsolationLevel.READ_COMMITTED
    conn.adapters.register_loader("jsonb", TextLoader)
    register_tolerant_timestamps(conn)
    return conn


def first_id_since(conn: psycopg.Connection[Any], topics: Sequence[str], since: datetime) -> int | None:
    """The smallest id of ``topics`` created at or after ``since`` (None: none yet)."""
    with conn.transaction():
        row = conn.execute(
            query("replay_first_id_since"), {"since": since, "topics": list(topics)}
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


@dataclass(frozen=True)
class Start:
    """Where a read begins: after ``position``; below ``first``, only the events created at or after
    ``since`` (with ``since``: those a producer transaction still open held back when the start was
    chosen, whose ids are below the first event visible then)."""

    position: int
    first: int = 0
    since: datetime | None = None

    def wanted(self, event: Event) -> bool:
        return self.since is None or event.id >= self.first or event.created_at >= self.since


def start(
    conn: psycopg.Connection[Any],
    topics: Sequence[str],
    *,
    from_id: int | None = None,
    since: datetime | timedelta | None = None,
    last: int | None = None,
) -> Start:
    """Where to read from: after ``from_id - 1``; from the first event created since ``since``; or
    from the ``last`` newest events of ``topics``; from the start by default."""
    if from_id is not None:
        return Start(max(from_id - 1, 0))
    if since is not None:
        when = datetime.now(UTC) - since if isinstance(since, timedelta) else since
        # The horizon first: an event a transaction still holds back has an id above safe_id, and
        # may be below the first event visible now although created since then (its transaction
        # started since then and commits later). Read from safe_id, keep those created since.
        safe_id, last_drawn_id = _horizon(conn)
        first = first_id_since(conn, topics, when)
        if first is None:  # nothing visible created since then: start after everything drawn
            first = last_drawn_id + 1
        return Start(min(first - 1, safe_id), first, when)
    if last is not None:
        with conn.transaction():
            row = conn.execute(query("replay_last_n"), {"topics": list(topics), "n": last}).fetchone()
        return Start(int(row[0]) - 1 if row and row[0] is not None else newest_id(conn))
    return Start(0)


def start_after(
    conn: psycopg.Connection[Any],
    topics: Sequence[str],
    *,
    from_id: int | None = None,
    since: datetime | timedelta | None = None,
    last: int | None = None,
) -> int:
    """The position to read after (see :func:`start`; with ``since``, keep only ``Start.wanted``)."""
    return start(conn, topics, from_id=from_id, since=since, last=last).position


def _horizon(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    with conn.transaction():
        row = conn.execute("SELECT safe_id, last_drawn_id FROM public.events_delivery_horizon()").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def newest_id(conn: psycopg.Connection[Any]) -> int:
    """The newest id drawn (any topic, committed or not)."""
    with conn.transaction():
        row = conn.execute("SELECT last_drawn_id FROM public.events_delivery_horizon()").fetchone()
    return int(row[0]) if row else 0


def read_events(
    dsn: str,
    topics: Sequence[str],
    *,
    from_id: int | None = None,
    since: datetime | timedelta | None = None,
    to_id: int | None = None,
    batch_size: int = 1000,
    poll_interval: float = 0.05,
) -> Iterator[Event]:
    """Yield the events of ``topics`` in id order, from ``from_id`` (inclusive) or from the first
    one created at or after ``since`` (a time, or a duration back from now), up to ``to_id`` or
    the newest id drawn when the call started.

    ``dsn`` needs a member of ``events_consumer``. Gap-free: an event committed late by a producer
    transaction still open when the range ends is waited for and yielded in its place.
    """
    wanted = sorted({validate_topic(t) for t in topics})
    with _connect(dsn) as conn:
        begin = start(conn, wanted, from_id=from_id, since=since)
        position = begin.position
        end = to_id if to_id is not None else newest_id(conn)
        while position < end:
            batch = batch_from_rows(_fetch(conn, position, wanted, batch_size))
            events, more, safe_id = batch.events, batch.more, batch.horizon.safe_id
            for event in events:
                if event.id > end:
                    return
                if begin.wanted(event):
                    yield event
            if events:
                position = events[-1].id
            if more:
                continue
            if safe_id >= end:
                return  # everything up to the end is delivered
            position = max(position, safe_id)
            if not events:
                time.sleep(poll_interval)  # a producer transaction holds the rest back


def _fetch(
    conn: psycopg.Connection[Any], after_id: int, topics: list[str], limit: int
) -> list[tuple[Any, ...]]:
    params = {"after_id": after_id, "topics": topics, "limit": limit, "max_bytes": _MAX_BYTES}
    with conn.transaction():
        return conn.execute(query("fetch_in_session"), params).fetchall()
