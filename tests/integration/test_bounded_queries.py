"""A query that overruns its bound ends as a lost connection, closed, with the task usable after."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pgsubscriber._session import _bounded
from pgsubscriber.errors import ConnectionLostError
from pgsubscriber.testing import EventsDatabase


def test_a_query_past_its_bound_closes_the_connection_and_raises_connection_lost(db: EventsDatabase) -> None:
    async def main() -> tuple[bool, str]:
        conn = await psycopg.AsyncConnection.connect(db.dsn, autocommit=True)
        with pytest.raises(ConnectionLostError, match=r"within 0\.2s"):
            await _bounded(conn, conn.execute("SELECT pg_sleep(30)"), 0.2, "the probe")
        await asyncio.sleep(0)  # the task is not left with a cancellation pending
        return conn.closed, "went on"

    closed, went_on = asyncio.run(asyncio.wait_for(main(), 10))
    assert closed and went_on == "went on"


def test_a_query_within_its_bound_returns_its_result_and_leaves_no_timer(db: EventsDatabase) -> None:
    async def main() -> object:
        async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
            cur = await _bounded(conn, conn.execute("SELECT 42"), 0.2, "the probe")
            row = await cur.fetchone()
            await asyncio.sleep(0.4)  # past the bound: a timer left behind would close it now
            assert not conn.closed
            return row[0] if row else None

    assert asyncio.run(main()) == 42


def test_an_outside_cancellation_is_not_taken_for_a_timeout(db: EventsDatabase) -> None:
    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(db.dsn, autocommit=True)
        try:
            task = asyncio.ensure_future(_bounded(conn, conn.execute("SELECT pg_sleep(30)"), 5, "the probe"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(main(), 15))
