"""One live link to PostgreSQL: connections, LISTEN, heartbeat, and the two delivery queries.

Every round trip is bounded in time. A connection whose peer went silent (a blackholed network,
a frozen server) reports no error by itself: a query on it would wait forever, and psycopg's own
cancellation would itself wait on the dead network. So a query that overruns its bound closes the
socket first, then cancels, and raises :class:`ConnectionLostError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from pgsubscriber._queries import query
from pgsubscriber.errors import ConnectionLostError, SchemaMissingError
from pgsubscriber.events import Event, trusted_event
from pgsubscriber.settings import SubscriberSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors after which the subscriber reconnects. Anything else is a bug or a misconfiguration.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    ConnectionLostError,
    OSError,
)


@dataclass(frozen=True)
class Horizon:
    safe_id: int
    last_drawn_id: int
    writers: int
    blocking_pid: int | None
    blocking_since: datetime | None


@dataclass(frozen=True)
class Batch:
    horizon: Horizon
    events: list[Event]
    purged_up_to: int


async def _bounded(conn: psycopg.AsyncConnection[Any], work: Awaitable[T], timeout: float, what: str) -> T:
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    # Close first: with the socket gone, psycopg does not try to cancel over the dead network.
    await conn.close()
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)
    raise ConnectionLostError(f"{what} got no answer within {timeout:g}s: the connection is treated as dead")


async def _connect(dsn: str, settings: SubscriberSettings) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, prepare_threshold=None, **settings.connection_kwargs()
    )
    set_json_loads(orjson.loads, conn)
    return conn


class Session:
    """The connection(s) of one subscriber between two reconnects."""

    def __init__(
        self,
        settings: SubscriberSettings,
        conn: psycopg.AsyncConnection[Any],
        listen_conn: psycopg.AsyncConnection[Any] | None,
    ) -> None:
        self._settings = settings
        self._conn = conn
        self._listen_conn = listen_conn

    @classmethod
    async def open(cls, settings: SubscriberSettings) -> Session:
        """Connect, check the schema, and LISTEN (before any read, so no commit slips between)."""
        conn = await _connect(settings.dsn, settings)
        listen_conn: psycopg.AsyncConnection[Any] | None = None
        try:
            row = await (await conn.execute(query("schema_check"))).fetchone()
            if not row or not row[0]:
                raise SchemaMissingError(
                    "the events schema is missing or incomplete in the database the subscriber "
                    "connects to: run `python -m db_migrations` with DATABASE_URL pointing at it"
                )
            if not settings.poll_only:
                listen_conn = conn
                if settings.listen_dsn:
                    listen_conn = await _connect(settings.listen_dsn, settings)
                await listen_conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(settings.channel)))
                await listen_conn.execute(query("idle_listener_lock"))
        except BaseException:
            await conn.close()
            if listen_conn is not None:
                await listen_conn.close()
            raise
        return cls(settings, conn, listen_conn)

    async def close(self) -> None:
        await self._conn.close()
        if self._listen_conn is not None:
            await self._listen_conn.close()

    async def wait_for_notification(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True if a notification came. Drains the backlog (bursts fold)."""
        if self._listen_conn is None:
            await asyncio.sleep(timeout)
            return False
        received = False
        async for _ in self._listen_conn.notifies(timeout=timeout, stop_after=1):
            received = True
        if received:
            async for _ in self._listen_conn.notifies(timeout=0):
                pass
        return received

    async def set_polling(self, polling: bool) -> None:
        """Tell writers whether this subscriber is re-polling (they may then skip NOTIFY)."""
        if self._listen_conn is None:
            return
        await _bounded(
            self._listen_conn,
            self._listen_conn.execute(query("idle_listener_unlock" if polling else "idle_listener_lock")),
            self._settings.heartbeat_timeout,
            "the polling flag",
        )

    async def heartbeat(self) -> None:
        """Prove every connection still answers, within ``heartbeat_timeout``."""
        for conn in {id(c): c for c in (self._conn, self._listen_conn) if c is not None}.values():
            await _bounded(conn, conn.execute("SELECT 1"), self._settings.heartbeat_timeout, "the heartbeat")

    async def fetch(self, after_id: int, limit: int) -> Batch:
        """The delivery horizon and up to ``limit`` events after ``after_id`` below it."""
        params = {"topics": self._settings.topics, "after_id": after_id, "limit": limit}
        cur = await _bounded(
            self._conn,
            self._conn.execute(query("fetch"), params),
            self._settings.query_timeout,
            "the fetch query",
        )
        rows = await cur.fetchall()
        first = rows[0]
        horizon = Horizon(int(first[0]), int(first[1]), int(first[2]), first[3], first[4])
        events = [trusted_event(r[6], r[7], r[8], r[9], r[10]) for r in rows if r[6] is not None]
        return Batch(horizon, events, int(first[5]))
