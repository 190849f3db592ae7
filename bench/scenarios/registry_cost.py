"""What the subscriber registry costs delivery: the same subscriber with ``registry=false``
(baseline) and with the registry writing every second (five times the default rate), in the same
run, on the same database.

Throughput: 4 producers publish batches at full speed for a few seconds, events handed to a no-op
handler per second, the median of 3 runs each; the runs alternate (off, on, off, on...) so a
drift of the machine falls on both.
Latency: an autocommit publish to the handler call at a steady rate, p50 and p99.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from typing import Any

import psycopg

from bench.context import Context
from bench.payloads import TOPIC, payload
from bench.processes import CTX, running
from bench.producers import ProducerGroup, ProducerSpec
from bench.report import Result, rate_ratio
from bench.scenarios.latency import _collect, _paced, _percentile
from bench.subscribing import Probe, SubscriberSpec, subscriber_main
from pgsubscriber import Subscriber, SubscriberSettings
from pgsubscriber.publish import publish

logger = logging.getLogger(__name__)

OFF: dict[str, Any] = {"registry": False}
ON: dict[str, Any] = {"registry": True, "registry_interval": 1.0, "name": "bench"}

#: Throughput runs alternate off, on, off, on...: the machine's drift (other load) falls on both.
PAIRS = 3


def _throughput(ctx: Context, dsn: str, settings: dict[str, Any], seconds: float) -> float:
    p = ctx.profile
    probe = Probe()
    spec = SubscriberSpec(dsn=dsn, topics=[TOPIC], settings=settings)
    with running(subscriber_main, [(spec, probe, None, ctx.log_level)], name="subscriber"):
        if not probe.caught_up.wait(60):
            raise RuntimeError("the subscriber did not connect within 60 s")
        start_delivered = probe.delivered.value
        group = ProducerGroup(
            ProducerSpec(dsn, "publish-many", seconds, p.batch_size), p.end_to_end_producers, ctx.log_level
        )
        started = group.start()
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        delivered = probe.delivered.value - start_delivered
        group.join()
        probe.stop.set()
    return delivered / seconds


def _latencies(ctx: Context, dsn: str, settings: dict[str, Any]) -> list[float]:
    p = ctx.profile
    probe, times = Probe(), CTX.Queue()
    with psycopg.connect(dsn) as conn:  # from the end: the events of earlier runs reuse the seqs
        row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    start = int(row[0]) if row else 0
    spec = SubscriberSpec(dsn=dsn, topics=[TOPIC], settings=settings, send_times=True, start_after_id=start)
    with (
        running(subscriber_main, [(spec, probe, times, ctx.log_level)], name="subscriber"),
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        if not probe.caught_up.wait(60):
            raise RuntimeError("the subscriber did not connect within 60 s")
        sent = _paced(lambda seq: publish(conn, TOPIC, payload(seq)), p.latency_rate, p.latency_seconds)
        found = _collect(times, sent, timeout=30)
        probe.stop.set()
    return found


class _Idle:
    def on_notification(self, events: list[Any]) -> None:
        pass

    def get_latest_received_id(self) -> int:
        return 0


def _write_times(dsn: str, writes: int) -> list[float]:
    """Milliseconds per registry write (one round trip on its own connection), ``writes`` times."""
    settings = SubscriberSettings(dsn=dsn, topics=[TOPIC], name="bench-writes")
    registry = Subscriber(_Idle(), settings).registry  # the record a subscriber writes, never run
    assert registry is not None

    async def measure() -> list[float]:
        times = []
        try:
            for _ in range(writes + 1):
                started = time.perf_counter()
                await registry.write()
                times.append((time.perf_counter() - started) * 1000)
        finally:
            await registry.close()
        return sorted(times[1:])  # the first one connects

    return asyncio.run(measure())


def run(ctx: Context) -> list[Result]:
    p = ctx.profile
    seconds = max(5.0, p.end_to_end_seconds / 4)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    with ctx.cluster.database("registry_cost") as dsn:
        for _ in range(PAIRS):
            for label, settings in [("off", OFF), ("on", ON)]:
                rates[label].append(_throughput(ctx, dsn, settings, seconds))
        latency_off = _latencies(ctx, dsn, OFF)
        latency_on = _latencies(ctx, dsn, ON)
        writes = _write_times(dsn, 200)
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM events_subscribers WHERE name = 'bench'").fetchone()
        recorded = int(row[0]) if row else 0
    off_rate = statistics.median(rates["off"])
    on_rate = statistics.median(rates["on"])
    ratio = rate_ratio(on_rate, off_rate)
    off_p50, on_p50 = _percentile(latency_off, 0.5), _percentile(latency_on, 0.5)
    off_p99, on_p99 = _percentile(latency_off, 0.99), _percentile(latency_on, 0.99)
    logger.info(
        "registry cost: %.0f/s on, %.0f/s off; p50 %.2f/%.2f ms, p99 %.2f/%.2f ms",
        on_rate, off_rate, on_p50, off_p50, on_p99, off_p99,
    )  # fmt: skip
    scenario = "registry cost (base: registry off)"
    return [
        Result(
            scenario=scenario,
            figure=f"end to end, {p.end_to_end_producers} producers, median of {PAIRS} x {seconds:g} s",
            unit="events/s",
            baseline=off_rate,
            project=on_rate,
            ratio=ratio,
            target=">= 0.95",
            met=ratio is not None and ratio >= 0.95,
            note=f"registry written every 1 s; {recorded} record(s) written",
            details={"runs_off": rates["off"], "runs_on": rates["on"]},
        ),
        Result(
            scenario=scenario,
            figure="one registry write (the default: every 5 s), median of 200",
            unit="ms",
            baseline=None,
            project=statistics.median(writes),
            ratio=None,
            target="(report)",
            met=None,
            note=f"p99 {_percentile(writes, 0.99):.2f} ms",
        ),
        Result(
            scenario=scenario,
            figure=f"latency p50, {p.latency_rate:g} events/s",
            unit="ms",
            baseline=off_p50,
            project=on_p50,
            ratio=on_p50 / off_p50 if off_p50 else None,
            target="<= base + 0.5 ms",
            met=on_p50 <= off_p50 + 0.5,
        ),
        Result(
            scenario=scenario,
            figure=f"latency p99, {p.latency_rate:g} events/s",
            unit="ms",
            baseline=off_p99,
            project=on_p99,
            ratio=on_p99 / off_p99 if off_p99 else None,
            target="<= 1.5x base",
            met=on_p99 <= 1.5 * off_p99,
        ),
    ]
