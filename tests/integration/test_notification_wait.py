"""Waiting for NOTIFY on a real session: a burst wakes the subscriber once, and nothing sent after
the wake, or while a query ran, is dropped."""

from __future__ import annotations

import asyncio
import time

import psycopg

from pgsubscriber import SubscriberSettings
from pgsubscriber._session import Session
from pgsubscriber.events import channel_for
from pgsubscriber.testing import EventsDatabase

TOPIC = "waits"


def _notify(dsn: str, times: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(times):
            conn.execute("SELECT pg_notify(%s, '')", (channel_for(TOPIC),))


async def _session(db: EventsDatabase) -> Session:
    return await Session.open(SubscriberSettings(dsn=db.dsn, topics=[TOPIC], registry=False))


def test_a_burst_wakes_once_and_a_later_notification_wakes_again(db: EventsDatabase) -> None:
    async def main() -> list[bool]:
        session = await _session(db)
        try:
            _notify(db.dsn, 20)
            await asyncio.sleep(0.3)  # the whole burst has arrived
            woke = [await session.wait_for_notification(5)]
            woke.append(await session.wait_for_notification(0.2))  # folded into the first wake
            _notify(db.dsn, 1)
            started = time.monotonic()
            woke.append(await session.wait_for_notification(5))
            assert time.monotonic() - started < 4, "the later notification was dropped"
            return woke
        finally:
            await session.close()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [True, False, True]


def test_a_notification_that_arrives_during_a_fetch_wakes_the_next_wait(db: EventsDatabase) -> None:
    async def main() -> list[bool]:
        session = await _session(db)
        try:
            _notify(db.dsn, 3)
            await asyncio.sleep(0.3)
            await session.fetch(0, 10)  # reads the socket: the notifications go to psycopg's backlog
            started = time.monotonic()
            woke = [await session.wait_for_notification(5)]
            assert time.monotonic() - started < 4, "the notifications read during the fetch were dropped"
            woke.append(await session.wait_for_notification(0.2))
            return woke
        finally:
            await session.close()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [True, False]
