"""procrastinate in the peer comparison, on the benchmark's PostgreSQL cluster, with its defaults.

Its own schema is applied to the row's fresh database. Producer: ``defer_async`` of one job per
call (shape 1/commit) or ``batch_defer_async`` of 100 jobs in one transaction. Consumer: one
worker (``run_worker_async`` with its defaults: concurrency 1, LISTEN/NOTIFY, jobs kept after they
succeed) running a task that calls the handler. procrastinate acknowledges a job by marking it
succeeded in one transaction per job (``procrastinate_finish_job``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.peering import PeerUnavailable, Shape, Sink

QUEUE = "bench"
STOP_WAIT = 2.0  # seconds for a graceful stop once the row is measured


def _app(dsn: str, sink: Sink | None = None) -> tuple[Any, Any]:
    """The procrastinate app with the benchmark's one task (the handler needs the sink)."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="bench_event", queue=QUEUE)
    async def bench_event(**event: Any) -> None:
        if sink is not None:
            sink.received([event])

    return app, bench_event


class _Producer:
    def __init__(self, app: Any, task: Any) -> None:
        self._app = app
        self._task = task

    async def send(self, payloads: Sequence[dict[str, Any]]) -> None:
        if len(payloads) == 1:
            await self._task.defer_async(**payloads[0])
        else:
            await self._task.batch_defer_async(*payloads)

    async def close(self) -> None:
        await self._app.close_async()


@dataclass(frozen=True)
class ProcrastinatePeer:
    dsn: str

    @property
    def name(self) -> str:
        return "procrastinate"

    def acknowledged(self, shape: Shape) -> str:
        unit = "the job's" if shape.batch == 1 else "the 100 jobs'"
        return (
            f"producer: {unit} defer committed (WAL fsynced); consumer: job marked succeeded, "
            "one transaction per job"
        )

    async def setup(self) -> dict[str, Any]:
        try:
            import procrastinate
        except ImportError as exc:
            raise PeerUnavailable("procrastinate not installed (pip install -e '.[bench]')") from exc
        app, _ = _app(self.dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
        return {
            "procrastinate": getattr(procrastinate, "__version__", "?"),
            "settings": "worker defaults: concurrency 1, listen_notify, delete_jobs never",
        }

    async def teardown(self) -> None:
        return None

    async def producer(self, shape: Shape) -> _Producer:
        app, task = _app(self.dsn)
        await app.open_async()
        return _Producer(app, task)

    async def consume(self, shape: Shape, sink: Sink, stop: asyncio.Event) -> None:
        app, _ = _app(self.dsn, sink)
        async with app.open_async():
            worker = asyncio.ensure_future(
                app.run_worker_async(queues=[QUEUE], install_signal_handlers=False)
            )
            await asyncio.sleep(0.5)  # the worker reports no "listening" moment; its LISTEN is set up by then
            if worker.done():
                await worker
            sink.ready()
            await stop.wait()
            worker.cancel()  # the worker's own graceful stop; cut short once the row is measured
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(worker, STOP_WAIT)
