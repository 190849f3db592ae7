"""PgQueuer in the peer comparison, on the benchmark's PostgreSQL cluster, with its defaults.

Producer: ``Queries.enqueue`` on an autocommit psycopg connection: one job per call (shape
1/commit) or a list of 100 jobs in one statement. Consumer: one ``PgQueuer`` with the defaults of
``run()`` (dequeue batches of 10, LISTEN/NOTIFY wake-ups, no concurrency limit) and an async
entrypoint that calls the handler. PgQueuer acknowledges a job by moving it from its queue table to
its log table; completions are buffered and written in one transaction per 10 jobs or every 0.1 s
(its ``JobStatusLogBuffer`` defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from bench.peering import PeerUnavailable, Shape, Sink

ENTRYPOINT = "bench"
STOP_WAIT = 2.0  # seconds for a graceful stop once the row is measured


class _Producer:
    def __init__(self, conn: psycopg.AsyncConnection[Any], queries: Any) -> None:
        self._conn = conn
        self._queries = queries

    async def send(self, payloads: Sequence[dict[str, Any]]) -> None:
        bodies = [orjson.dumps(p) for p in payloads]
        if len(bodies) == 1:
            await self._queries.enqueue(ENTRYPOINT, bodies[0])
        else:
            await self._queries.enqueue([ENTRYPOINT] * len(bodies), list(bodies), [0] * len(bodies))

    async def close(self) -> None:
        await self._conn.close()


@dataclass(frozen=True)
class PgQueuerPeer:
    dsn: str

    @property
    def name(self) -> str:
        return "PgQueuer"

    def acknowledged(self, shape: Shape) -> str:
        unit = "the job's" if shape.batch == 1 else "the 100 jobs'"
        return (
            f"producer: {unit} enqueue committed (WAL fsynced); consumer: job done, completion "
            "committed in a buffered transaction (every 10 jobs or 0.1 s)"
        )

    async def setup(self) -> dict[str, Any]:
        try:
            import pgqueuer
            from pgqueuer import PsycopgDriver, Queries
        except ImportError as exc:
            raise PeerUnavailable("pgqueuer not installed (pip install -e '.[bench]')") from exc
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await Queries(PsycopgDriver(conn)).install()
        return {
            "pgqueuer": getattr(pgqueuer, "__version__", "?"),
            "driver": "psycopg",
            "settings": "run() defaults: batch_size 10, status log buffered (10 jobs or 0.1 s)",
        }

    async def teardown(self) -> None:
        return None

    async def producer(self, shape: Shape) -> _Producer:
        from pgqueuer import PsycopgDriver, Queries

        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        return _Producer(conn, Queries(PsycopgDriver(conn)))

    async def consume(self, shape: Shape, sink: Sink, stop: asyncio.Event) -> None:
        from pgqueuer import PgQueuer, PsycopgDriver
        from pgqueuer.models import Job

        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        pgq = PgQueuer(PsycopgDriver(conn))

        @pgq.entrypoint(ENTRYPOINT)
        async def handle(job: Job) -> None:
            sink.received([orjson.loads(job.payload or b"{}")])

        worker = asyncio.ensure_future(pgq.run())
        await asyncio.sleep(0.5)  # PgQueuer reports no "listening" moment; its LISTEN is set up by then
        if worker.done():
            await worker
        sink.ready()
        await stop.wait()
        pgq.shutdown.set()
        # The measurement is over: a shutdown that waits on its timers is cut short.
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(worker, STOP_WAIT)
        await conn.close()
