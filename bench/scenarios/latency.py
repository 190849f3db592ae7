"""Latency at a steady rate: commit to delivery, p50 and p99.

Baseline: psycopg's own NOTIFY round trip, committed as durably as a publish: one autocommit
statement inserts the event into ``raw_events`` (no trigger) and calls ``pg_notify``, received by a
LISTENing connection in another process. Project: an autocommit ``publish`` to the handler call of
a subscriber in another process, once with a synchronous handler (called in a worker thread) and
once with a coroutine handler (awaited in the subscriber's event loop). All are timed from just
before the committing statement is sent (CLOCK_MONOTONIC is shared by all processes of the
machine), so all include the commit's WAL flush.
A bare ``pg_notify`` writes no WAL and skips that flush: its round trip is measured too and kept in
the details (``bare_notify_*``), but it is not the baseline of a durable publish.

The floor: the durable NOTIFY round trip again, but received by an asyncio client (psycopg's
``AsyncConnection``, as the subscriber) that reads the new row (a keyset read on the primary key)
before it reports. No delivery that keeps the events out of the NOTIFY payload (which any role
that can connect may LISTEN to) can beat that; its rows show what is left for the project's own
work.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
from psycopg import sql

from bench.context import Context
from bench.payloads import TOPIC, payload
from bench.processes import CTX, running
from bench.report import Result
from bench.scenarios.publish import _checkpoint
from bench.subscribing import Probe, SubscriberSpec, subscriber_main
from pgsubscriber.publish import publish

logger = logging.getLogger(__name__)

CHANNEL = "bench_latency"


def listener_main(dsn: str, times: Any, ready: Any, stop: Any) -> None:
    """Child entry point: LISTEN and report ``(seq, receive time)`` for every notification."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        ready.set()
        while not stop.is_set():
            for note in conn.notifies(timeout=0.2):
                times.put([(int(note.payload), time.monotonic())])


_READ_AFTER = (
    "SELECT id, topic, payload, created_at FROM public.raw_events WHERE id > %s ORDER BY id LIMIT 100"
)


def read_listener_main(dsn: str, times: Any, ready: Any, stop: Any) -> None:
    """Child entry point: LISTEN with an asyncio client; on every notification read the new rows,
    then report ``(seq, time the read returned)``."""

    async def listen() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            cur = await conn.execute("SELECT coalesce(max(id), 0) FROM public.raw_events")
            row = await cur.fetchone()
            last = int(row[0]) if row else 0
            ready.set()
            while not stop.is_set():
                notes = [note async for note in conn.notifies(timeout=0.2, stop_after=1)]
                if not notes:
                    continue
                cur = await conn.execute(_READ_AFTER, (last,))
                rows = await cur.fetchall()
                at = time.monotonic()
                if rows:
                    last = int(rows[-1][0])
                times.put([(int(note.payload), at) for note in notes])

    asyncio.run(listen())


def _paced(send: Callable[[int], None], rate: float, seconds: float) -> dict[int, float]:
    """Call ``send(seq)`` ``rate`` times a second for ``seconds``; return each seq's send time."""
    sent: dict[int, float] = {}
    interval = 1.0 / rate
    start = time.monotonic()
    seq = 0
    while True:
        due = start + seq * interval
        if due > start + seconds:
            return sent
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        seq += 1
        sent[seq] = time.monotonic()
        send(seq)


def _collect(times: Any, sent: dict[int, float], timeout: float) -> list[float]:
    """Latencies in ms of the seqs in ``sent``, from the child's queue."""
    received: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(received) < len(sent) and time.monotonic() < deadline:
        try:
            for seq, at in times.get(timeout=0.2):
                if seq in sent and seq not in received:
                    received[seq] = at
        except queue.Empty:
            continue
    missing = len(sent) - len(received)
    if missing:
        logger.warning("latency: %d of %d events never arrived", missing, len(sent))
    return sorted((received[s] - sent[s]) * 1000 for s in received)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


_DURABLE_NOTIFY = """
WITH stored AS (INSERT INTO public.raw_events (topic, payload) VALUES (%s, %s::jsonb) RETURNING 1)
SELECT pg_notify(%s, %s) FROM stored
"""


def _notify_round_trips(
    dsn: str, rate: float, seconds: float, durable: bool, listener: Callable[..., None] = listener_main
) -> list[float]:
    times, ready, stop = CTX.Queue(), CTX.Event(), CTX.Event()
    with (
        running(listener, [(dsn, times, ready, stop)], name="listener"),
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        if not ready.wait(60):
            raise RuntimeError("the NOTIFY listener did not start")

        def notify(seq: int) -> None:
            if durable:
                conn.execute(_DURABLE_NOTIFY, (TOPIC, orjson.dumps(payload(seq)).decode(), CHANNEL, str(seq)))
            else:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))

        sent = _paced(notify, rate, seconds)
        received = _collect(times, sent, timeout=10)
        stop.set()
    return received


def _project_round_trips(
    dsn: str, rate: float, seconds: float, async_handler: bool, log_level: int
) -> list[float]:
    """Latencies of ``publish`` to the handler call, in a subscriber in another process."""
    probe, times = Probe(), CTX.Queue()
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM public.events").fetchone()
    # From the newest event on: an earlier run's events carry the same seqs.
    start = int(row[0]) if row else 0
    spec = SubscriberSpec(
        dsn=dsn, topics=[TOPIC], send_times=True, async_handler=async_handler, start_after_id=start
    )
    with (
        running(subscriber_main, [(spec, probe, times, log_level)], name="subscriber"),
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        if not probe.caught_up.wait(60):
            raise RuntimeError("the subscriber did not connect within 60 s")

        def send(seq: int) -> None:
            publish(conn, TOPIC, payload(seq))

        sent = _paced(send, rate, seconds)
        received = _collect(times, sent, timeout=30)
        probe.stop.set()
    return received


def run(ctx: Context) -> list[Result]:
    p = ctx.profile
    with ctx.cluster.database("latency") as dsn:
        # Each measurement starts from a checkpoint: none pays for the WAL of the one before (or
        # of the scenario before), which the server would otherwise flush meanwhile.
        # Baselines: the NOTIFY round trip, committed durably (the baseline) and bare.
        _checkpoint(dsn)
        raw = _notify_round_trips(dsn, p.latency_rate, p.latency_seconds, durable=True)
        bare = _notify_round_trips(dsn, p.latency_rate, p.latency_seconds / 2, durable=False)
        _checkpoint(dsn)
        floor = _notify_round_trips(dsn, p.latency_rate, p.latency_seconds, True, read_listener_main)
        # Project: publish to handler call, with a synchronous handler (called in a worker
        # thread), then with a coroutine handler (awaited in the subscriber's loop).
        _checkpoint(dsn)
        project = _project_round_trips(dsn, p.latency_rate, p.latency_seconds, False, ctx.log_level)
        _checkpoint(dsn)
        awaited = _project_round_trips(dsn, p.latency_rate, p.latency_seconds, True, ctx.log_level)

    logger.info(
        "latency: raw p50 %.2f p99 %.2f ms; floor (async read) p50 %.2f p99 %.2f ms; "
        "project p50 %.2f p99 %.2f ms; async handler p50 %.2f p99 %.2f ms",
        *(_percentile(samples, q) for samples in (raw, floor, project, awaited) for q in (0.5, 0.99)),
    )
    details = {
        "rate": p.latency_rate,
        "seconds": p.latency_seconds,
        "raw_samples": len(raw),
        "floor_samples": len(floor),
        "project_samples": len(project),
        "async_handler_samples": len(awaited),
        "raw_max_ms": raw[-1] if raw else None,
        "project_max_ms": project[-1] if project else None,
        "raw_p90_ms": _percentile(raw, 0.9),
        "bare_notify_p50_ms": _percentile(bare, 0.5),
        "bare_notify_p99_ms": _percentile(bare, 0.99),
        "project_p90_ms": _percentile(project, 0.9),
        "async_handler_p90_ms": _percentile(awaited, 0.9),
    }
    scenario = f"latency, {p.latency_rate:g} events/s"
    return [
        *_rows(scenario, raw, project, p50_margin_ms=1.0, details=details),
        *_rows(f"{scenario}, async handler", raw, awaited, p50_margin_ms=0.5),
        *_rows(
            f"{scenario}, floor: NOTIFY then one read by an asyncio client", raw, floor, p50_margin_ms=None
        ),
    ]


def _rows(
    scenario: str,
    raw: list[float],
    measured: list[float],
    p50_margin_ms: float | None,
    details: dict[str, Any] | None = None,
) -> list[Result]:
    """The p50 row (target: raw + ``p50_margin_ms``) and the p99 row (target: 2x raw) of one run
    against raw; with no margin (the floor, which is not the project's) both are reported only."""
    rows = []
    for figure, q in (("p50", 0.5), ("p99", 0.99)):
        base, mine = _percentile(raw, q), _percentile(measured, q)
        target: str
        met: bool | None
        if p50_margin_ms is None:
            target, met = "(report)", None
        elif figure == "p50":
            target, met = f"<= raw + {p50_margin_ms:g} ms", mine <= base + p50_margin_ms
        else:
            target, met = "<= 2x raw", mine <= 2 * base
        rows.append(
            Result(
                scenario=scenario,
                figure=figure,
                unit="ms",
                baseline=base,
                project=mine,
                ratio=mine / base if base else None,
                target=target,
                met=met,
                details=(details or {}) if figure == "p50" else {},
            )
        )
    return rows
