"""The subscriber registry: a running Subscriber's record of itself in ``events_subscribers``.

Written off the delivery path: a task of its own, on a connection of its own (one autocommit
statement per write, nothing prepared, no session state, so ``dsn`` may go through a
transaction-pooling PgBouncer), every ``registry_interval`` seconds and soon after the mode
changes. A write that fails never touches delivery: a missing table or privilege is logged once
and the registry stops for this run; a network fault is logged once per streak and retried at the
next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from pgsubscriber._queries import query
from pgsubscriber._session import CONNECTION_ERRORS, _bounded
from pgsubscriber.settings import SubscriberSettings
from pgsubscriber.status import SubscriberStatus

logger = logging.getLogger(__name__)

#: How often the task looks whether the mode changed (in process, no query).
_CHANGE_CHECK = 0.25

#: A change of mode or error is written at most this often (besides the regular interval).
_CHANGE_MIN_GAP = 1.0

#: Errors that say this database cannot hold the record (schema before 0007, a role without the
#: privilege, a name the row security refuses): told once, then no more tries in this run.
_CANNOT_RECORD = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.CheckViolation,
)

#: Errors after which the next interval tries again (the network, the server restarting).
_RETRIED: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, psycopg.Error)


def default_name(handler: object | None = None) -> str:
    """The application's name: the package run with ``python -m`` (``webconsumer``), else the
    script's name, else the handler's top-level package."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        name = str(spec.name).removesuffix(".__main__").split(".")[0]
        if name:
            return name
    path = getattr(main, "__file__", None)
    if path:
        return Path(path).stem
    if handler is not None:
        module = type(handler).__module__.split(".")[0]
        if module and module != "__main__":
            return module
    return "python"


class Registry:
    """Keeps one subscriber's row in ``events_subscribers`` up to date."""

    def __init__(self, settings: SubscriberSettings, status: SubscriberStatus, name: str) -> None:
        self._settings = settings
        self._status = status
        self.instance = uuid.uuid4()
        self.name = name
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.group_name: str | None = None
        self.role: str | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._disabled = False
        self._failing = False
        self._registered = False
        self.writes = 0

    @property
    def disabled(self) -> bool:
        return self._disabled

    async def run(self, stop: asyncio.Event) -> None:
        """Write now, then every ``registry_interval`` and on mode changes, until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        try:
            while not self._disabled and not stop.is_set():
                written = (self._status.mode, self._status.last_error)
                await self.write()
                wrote_at = loop.time()
                due = wrote_at + self._settings.registry_interval
                while not stop.is_set() and loop.time() < due:
                    # A change is written soon, but at most once a second: under load the mode
                    # may flip between listening and polling many times a second.
                    changed = (self._status.mode, self._status.last_error) != written
                    if changed and loop.time() - wrote_at >= _CHANGE_MIN_GAP:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), min(_CHANGE_CHECK, due - loop.time()))
        finally:
            if not self._disabled and self._registered:
                await self.write(stopped=True)
            await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def write(self, *, stopped: bool = False) -> None:
        """One write of the record; never raises (what fails is logged, delivery goes on)."""
        if self._disabled:
            return
        s, st = self._settings, self._status
        params = {
            "statement_timeout_ms": int(s.heartbeat_timeout * 1000),
            "instance": self.instance,
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "topics": s.topics,
            "mode": "stopped" if stopped else st.mode,
            "position": st.position,
            "events_delivered": st.events_delivered,
            "last_error": st.last_error[:2000] if st.last_error else None,
            "heartbeat_seconds": s.registry_interval,
            "group_name": self.group_name,
            "role": self.role,
            "stopped": stopped,
        }
        try:
            conn = await self._connection()
            if not self._registered:
                await self._run(conn, "registry_cleanup", params)
            await self._run(conn, "registry_write", params)
        except _CANNOT_RECORD as exc:
            self._disabled = True
            logger.warning(
                "this subscriber cannot record itself in events_subscribers (%s); it keeps delivering, "
                "but `pgsubscriber status` will not list it: apply migration 0007 with `pgsubscriber "
                "migrate` and connect as a member of events_consumer",
                str(exc).splitlines()[0],
            )
            await self.close()
            return
        except _RETRIED as exc:
            if not self._failing:
                self._failing = True
                logger.warning(
                    "the registry write failed (%s: %s); retrying every %.0fs, delivery is not affected",
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    s.registry_interval,
                )
            await self.close()
            return
        self.writes += 1
        self._registered = True
        if self._failing:
            self._failing = False
            logger.info("the registry write works again")

    async def _run(self, conn: psycopg.AsyncConnection[Any], name: str, params: dict[str, Any]) -> None:
        """One message (simple protocol): BEGIN READ WRITE; its timeouts; the statement; COMMIT."""
        cur = psycopg.AsyncClientCursor(conn)
        try:
            await _bounded(
                conn, cur.execute(query(name), params), self._settings.heartbeat_timeout, "the registry"
            )
        except psycopg.Error:
            if not conn.closed and conn.info.transaction_status in (
                TransactionStatus.INERROR,
                TransactionStatus.INTRANS,
            ):
                await conn.execute("ROLLBACK")
            raise
        finally:
            await cur.close()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            kwargs = self._settings.connection_kwargs()
            kwargs["application_name"] = "pgsubscriber registry"
            self._conn = await psycopg.AsyncConnection.connect(
                self._settings.dsn, autocommit=True, prepare_threshold=None, **kwargs
            )
        return self._conn
