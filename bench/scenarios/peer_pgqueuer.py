"""Peer: PgQueuer on the same cluster.

PgQueuer 1.x ships no benchmark in its package (its ``tools/benchmark.py`` lives only in its source
repository), so this is the same measurement written with its public API: the shape of that
benchmark's default "throughput" strategy (1 enqueuer of batches of 10, 5 dequeuers fetching
batches of 10, a no-op async entrypoint, jobs done per second), on the psycopg driver (asyncpg is
not a dependency here). It runs in its own process. The ratio is the project's end-to-end
events/s (measured earlier in this run) divided by PgQueuer's jobs/s: a peer comparison, not a
target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from bench.context import Context
from bench.processes import CTX, running
from bench.report import Result

logger = logging.getLogger(__name__)

ENQUEUERS = 1
ENQUEUE_BATCH = 10
DEQUEUERS = 5
DEQUEUE_BATCH = 10


async def _throughput(dsn: str, seconds: float) -> dict[str, Any]:
    import psycopg
    from pgqueuer import PgQueuer, PsycopgDriver, Queries
    from pgqueuer.models import Job

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    setup = await connect()
    await Queries(PsycopgDriver(setup)).install()
    done = 0
    enqueued = 0
    stop = asyncio.Event()

    async def enqueue(queries: Queries) -> None:
        nonlocal enqueued
        while not stop.is_set():
            await queries.enqueue(
                ["bench"] * ENQUEUE_BATCH,
                [f"{enqueued + i}".encode() for i in range(ENQUEUE_BATCH)],
                [0] * ENQUEUE_BATCH,
            )
            enqueued += ENQUEUE_BATCH

    pgqs = []
    for _ in range(DEQUEUERS):
        pgq = PgQueuer(PsycopgDriver(await connect()))

        @pgq.entrypoint("bench")
        async def bench(job: Job) -> None:
            nonlocal done
            done += 1

        pgqs.append(pgq)

    producers = [
        asyncio.create_task(enqueue(Queries(PsycopgDriver(await connect())))) for _ in range(ENQUEUERS)
    ]
    workers = [asyncio.create_task(pgq.run(batch_size=DEQUEUE_BATCH)) for pgq in pgqs]
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    finished = done
    elapsed = time.perf_counter() - started
    stop.set()
    for pgq in pgqs:
        pgq.shutdown.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*producers, *workers, return_exceptions=True), 30)
    return {"jobs": finished, "seconds": elapsed, "enqueued": enqueued}


def pgqueuer_main(dsn: str, seconds: float, out: Any) -> None:
    """Child entry point: run the throughput measurement and report jobs and seconds."""
    logging.basicConfig(level=logging.WARNING)
    out.update(asyncio.run(_throughput(dsn, seconds)))


def run(ctx: Context) -> list[Result]:
    try:
        import pgqueuer
    except ImportError:
        return [
            Result(
                "peer: PgQueuer",
                "",
                "jobs/s",
                None,
                None,
                None,
                "report it",
                None,
                note="skipped: pgqueuer not installed",
            )
        ]
    with ctx.cluster.database("pgqueuer") as dsn, CTX.Manager() as manager:
        out = manager.dict()
        with running(pgqueuer_main, [(dsn, ctx.profile.peer_seconds, out)], name="pgqueuer") as procs:
            procs[0].join(ctx.profile.peer_seconds + 120)
        figures = dict(out)
    if not figures.get("seconds"):
        raise RuntimeError("the PgQueuer measurement did not finish (see the log above)")
    jobs_rate = figures["jobs"] / figures["seconds"]
    end_to_end = ctx.figure(
        "end to end", f"{ctx.profile.end_to_end_producers} producers, {ctx.profile.end_to_end_seconds:g} s"
    )
    project = end_to_end.project if end_to_end else None
    logger.info("PgQueuer: %.0f jobs/s", jobs_rate)
    return [
        Result(
            scenario="peer: PgQueuer throughput",
            figure=f"pgqueuer {pgqueuer.__version__}, psycopg driver",
            unit="events/s",
            baseline=jobs_rate,
            project=project,
            ratio=project / jobs_rate if project and jobs_rate else None,
            target="report it",
            met=None,
            note="" if project else "project end-to-end not run",
            details={
                "benchmark": "equivalent of PgQueuer's tools/benchmark.py throughput strategy "
                "(not shipped in the package)",
                "enqueuers": ENQUEUERS,
                "enqueue_batch": ENQUEUE_BATCH,
                "dequeuers": DEQUEUERS,
                "dequeue_batch": DEQUEUE_BATCH,
                **figures,
            },
        )
    ]
