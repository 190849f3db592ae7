"""One live link to PostgreSQL: connections, LISTEN, heartbeat, and the delivery queries.

Every round trip is bounded in time. A connection whose peer went silent (a blackholed network,
a frozen server) reports no error by itself: a query on it would wait forever, and psycopg's own
cancellation would itself wait on the dead network. So a query that overruns its bound closes the
socket first, then cancels, and raises :class:`ConnectionLostError`.

Nothing here relies on the session's defaults or on session state surviving between statements
(a transaction-pooling PgBouncer may hand each transaction another server connection): each fetch
is one message that opens its own READ COMMITTED transaction with the timeouts it needs, and no
statement is prepared on the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import pq, sql
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from pgsubscriber._decoding import PayloadDecodeError, decode_payload, register_tolerant_timestamps
from pgsubscriber._queries import query
from pgsubscriber.errors import ConnectionLostError, SchemaMissingError
from pgsubscriber.events import Event, channel_for, trusted_event
from pgsubscriber.schema import SCHEMA_VERSION
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
    """How far delivery may go now, and what holds it back (``events_delivery_horizon``)."""

    safe_id: int
    last_drawn_id: int
    writers: int
    blocking_pid: int | None
    foreign_pid: int | None
    foreign_role: str | None
    notify_queue_usage: float


@dataclass(frozen=True)
class Batch:
    horizon: Horizon
    events: list[Event]
    purged_up_to_id: int
    more: bool
    """Events below the horizon were left for the next batch (by count or by bytes)."""


@dataclass(frozen=True)
class IdleLockHolder:
    """A session that holds the idle-listener lock exclusively (writers only do so for an instant)."""

    pid: int | None
    role: str | None


class DeliverySession(Protocol):
    """What the subscriber loop needs from its link to PostgreSQL (the seam unit tests replace)."""

    async def fetch(self, after_id: int, limit: int) -> Batch: ...

    async def wait_for_notification(self, timeout: float) -> bool: ...

    async def set_idle(self, idle: bool) -> IdleLockHolder | None: ...

    async def heartbeat(self) -> None: ...

    async def writer_since(self, pid: int) -> datetime | None: ...

    async def close(self) -> None: ...


async def _bounded(conn: psycopg.AsyncConnection[Any], work: Awaitable[T], timeout: float, what: str) -> T:
    """Await ``work`` (a query on ``conn``) in this task; past ``timeout`` s treat ``conn`` as dead.

    A timer, not a task: this runs once per fetch, on the latency path. When the timer fires it
    closes the socket first (with the socket gone, psycopg does not try to cancel the query over
    the dead network), then cancels the waiting task.
    """
    task = asyncio.current_task()
    assert task is not None, "_bounded runs in a task"
    expired = False
    already = task.cancelling()

    def expire() -> None:
        nonlocal expired
        expired = True
        conn.pgconn.finish()
        task.cancel()

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await work
    except (asyncio.CancelledError, psycopg.Error):
        # After expire(), either the cancellation or the closed socket's error ends the query.
        if expired and task.uncancel() <= already:
            raise ConnectionLostError(
                f"{what} got no answer within {timeout:g}s: the connection is treated as dead"
            ) from None
        raise
    finally:
        timer.cancel()


async def _connect(dsn: str, settings: SubscriberSettings) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(
        dsn,
        autocommit=True,
        # Prepared statements outlive a transaction; behind a transaction pooler another client's
        # server connection may already hold one of the same name.
        prepare_threshold=None,
        **settings.connection_kwargs(),
    )
    try:
        # Text output formats the loaders rely on, whatever the role or database sets (a pooler
        # such as PgBouncer keeps DateStyle and TimeZone per client).
        setup = query("session_setup").replace(
            b"%(statement_timeout_ms)s", str(int(settings.query_timeout * 1000)).encode()
        )
        await conn.execute(setup)
    except BaseException:
        await conn.close()
        raise
    conn.adapters.register_loader("jsonb", TextLoader)
    register_tolerant_timestamps(conn)
    return conn


def _event(row: Sequence[Any]) -> Event:
    event_id, topic, text, created_at, key = row[9], row[10], row[11], row[12], row[13]
    try:
        return trusted_event(event_id, topic, decode_payload(text), created_at, key)
    except PayloadDecodeError as exc:
        logger.error(
            "event %d (topic %s): its payload cannot be decoded (%s); delivered with raw_payload set",
            event_id,
            topic,
            exc,
            extra={"event_id": event_id},
        )
        return trusted_event(event_id, topic, {}, created_at, key, raw_payload=text)


def _drop_arrived_notifications(pgconn: pq.abc.PGconn) -> None:
    """Drop the notifications that have already arrived, without waiting: the fetch that follows
    sees every event they announce (they were sent at commit, before this call).

    What psycopg's ``notifies(timeout=0)`` does, without the event loop round trip it costs on
    the latency path (a wait on the socket with a zero timeout). psycopg's own backlog (what came
    in during a query) was emptied by the ``notifies()`` call that woke the subscriber.
    """
    pgconn.consume_input()
    while pgconn.notifies() is not None:
        pass


def batch_from_rows(rows: Sequence[Sequence[Any]]) -> Batch:
    """The rows of one ``events_fetch`` call (fetch.sql) as a :class:`Batch`."""
    last = rows[-1]  # the horizon row; before it the events, and maybe one row beyond them
    horizon = Horizon(
        safe_id=int(last[0]),
        last_drawn_id=int(last[1]),
        writers=int(last[2]),
        blocking_pid=last[3],
        foreign_pid=last[4],
        foreign_role=last[5],
        notify_queue_usage=float(last[6]),
    )
    more = len(rows) > 1 and bool(rows[-2][8])
    events = [_event(r) for r in rows[: -2 if more else -1]]
    return Batch(horizon, events, int(last[7]), more)


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
        self._explicit_transaction = False
        self._fetch_params: dict[str, Any] = {
            "topics": settings.topics,
            "max_bytes": settings.batch_max_bytes,
            "statement_timeout_ms": int(settings.query_timeout * 1000),
        }

    @classmethod
    async def open(cls, settings: SubscriberSettings) -> Session:
        """Connect, check the schema, and LISTEN (before any read, so no commit slips between)."""
        conn = await _connect(settings.dsn, settings)
        listen_conn: psycopg.AsyncConnection[Any] | None = None
        try:
            await _check_schema(conn)
            if not settings.poll_only:
                listen_conn = conn
                if settings.listen_dsn:
                    listen_conn = await _connect(settings.listen_dsn, settings)
                await listen_conn.execute(
                    sql.SQL("; ").join(
                        sql.SQL("LISTEN {}").format(sql.Identifier(channel_for(topic)))
                        for topic in settings.topics
                    )
                )
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
            _drop_arrived_notifications(self._listen_conn.pgconn)
        return received

    async def set_idle(self, idle: bool) -> IdleLockHolder | None:
        """Tell writers whether this subscriber waits for NOTIFY (idle) or re-polls on its own.

        Idle, it holds the shared idle-listener lock, so writers notify. Taking it never waits: a
        writer holds it exclusively for an instant only, so after a few tries the exclusive
        holder is someone else, returned so the caller can report it and keep polling.
        """
        conn = self._listen_conn
        if conn is None:
            return None
        timeout = self._settings.heartbeat_timeout
        if not idle:
            await _bounded(conn, conn.execute(query("idle_listener_unlock")), timeout, "the idle flag")
            return None
        for attempt in range(5):
            cur = await _bounded(conn, conn.execute(query("idle_listener_lock")), timeout, "the idle flag")
            row = await cur.fetchone()
            if row and row[0]:
                return None
            await asyncio.sleep(0.002 * 2**attempt)
        cur = await _bounded(conn, conn.execute(query("idle_listener_holder")), timeout, "the idle flag")
        holder = await cur.fetchone()
        return IdleLockHolder(holder[0], holder[1]) if holder else IdleLockHolder(None, None)

    async def heartbeat(self) -> None:
        """Prove every connection still answers, within ``heartbeat_timeout``."""
        for conn in {id(c): c for c in (self._conn, self._listen_conn) if c is not None}.values():
            await _bounded(conn, conn.execute("SELECT 1"), self._settings.heartbeat_timeout, "the heartbeat")

    async def fetch(self, after_id: int, limit: int) -> Batch:
        """The delivery horizon and up to ``limit`` events after ``after_id`` below it."""
        params = {**self._fetch_params, "after_id": after_id, "limit": limit}
        rows = await _bounded(self._conn, self._fetch_rows(params), self._settings.query_timeout, "the fetch")
        return batch_from_rows(rows)

    async def writer_since(self, pid: int) -> datetime | None:
        """When the transaction of the writer ``pid`` (one that holds delivery back) started."""
        cur = await _bounded(
            self._conn,
            self._conn.execute(query("writer_since"), {"pid": pid}),
            self._settings.query_timeout,
            "the writer's start",
        )
        row = await cur.fetchone()
        return row[0] if row else None

    async def _fetch_rows(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if not self._explicit_transaction:
            try:  # one statement, in the session's own settings (session_setup.sql)
                cur = await self._conn.execute(query("fetch_in_session"), params)
                return await cur.fetchall()
            except (psycopg.errors.InvalidTransactionState, psycopg.errors.QueryCanceled) as exc:
                # Another isolation level or timeout than the session set: a transaction pooler
                # gave this statement another server connection. From now on each fetch brings
                # its own transaction and settings.
                logger.info("the session's settings do not hold (%s): fetching in explicit transactions", exc)
                self._explicit_transaction = True
        # One message, simple protocol: BEGIN READ COMMITTED; timeouts; the fetch; COMMIT.
        cur = psycopg.AsyncClientCursor(self._conn)
        try:
            await cur.execute(query("fetch"), params)
            while cur.description is None or len(cur.description) < 14:
                if not cur.nextset():
                    raise ConnectionLostError("the fetch returned no rows: unexpected reply")
            return await cur.fetchall()
        except psycopg.Error:
            if self._conn.info.transaction_status in (TransactionStatus.INERROR, TransactionStatus.INTRANS):
                await self._conn.execute("ROLLBACK")
            raise
        finally:
            await cur.close()


async def _check_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    found = None
    present = await (await conn.execute(query("schema_present"))).fetchone()
    if present and present[0]:
        row = await (await conn.execute(query("schema_version"))).fetchone()
        found = int(row[0]) if row and row[0] is not None else None
    if found is None:
        raise SchemaMissingError(
            "the events schema is missing in the database the subscriber connects to: run "
            "`pgsubscriber migrate` with DATABASE_URL pointing at it"
        )
    if found < SCHEMA_VERSION:
        raise SchemaMissingError(
            f"the events schema is at migration {found:04d}, this pgsubscriber needs "
            f"{SCHEMA_VERSION:04d}: run `pgsubscriber migrate` to apply "
            f"{', '.join(f'{v:04d}' for v in range(found + 1, SCHEMA_VERSION + 1))}"
        )
