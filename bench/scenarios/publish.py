"""Publish throughput: `publish` (one event per transaction) and `publish_many` (batches).

Baselines: the same statements on ``raw_events``, which has no trigger: a plain INSERT without
NOTIFY, and a multi-row INSERT with one NOTIFY.

Whether the schema's trigger sends NOTIFY depends on the subscribers (a writer notifies when a
subscriber is idle, waiting for a wake-up), so the single-event figures are measured with one
subscriber attached (no-op handler, its own process), as in production. At the largest producer
count the figure without any subscriber is recorded in the details too.
"""

from __future__ import annotations

import logging

import psycopg

from bench.context import Context
from bench.payloads import TOPIC
from bench.processes import running
from bench.producers import ProducerSpec, measure_rate
from bench.report import Result, rate_ratio
from bench.subscribing import Probe, SubscriberSpec, subscriber_main

logger = logging.getLogger(__name__)


def _checkpoint(dsn: str) -> None:
    """Start each measurement from a clean checkpoint, so neither side pays for the other's WAL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _publish_with_subscriber(ctx: Context, dsn: str, producers: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    probe = Probe()
    spec = SubscriberSpec(dsn=dsn, topics=[TOPIC], start_after_id=int(row[0]) if row else 0)
    with running(subscriber_main, [(spec, probe, None, ctx.log_level)], name="subscriber"):
        if not probe.caught_up.wait(60):
            raise RuntimeError("the subscriber did not connect within 60 s")
        rate = measure_rate(
            ProducerSpec(dsn, "publish", ctx.profile.publish_seconds), producers, ctx.log_level
        )
        probe.stop.set()
    return rate


def run_single(ctx: Context) -> list[Result]:
    p = ctx.profile
    results = []
    with ctx.cluster.database("publish_single") as dsn:
        for producers in p.single_producers:
            gated = producers == max(p.single_producers)
            _checkpoint(dsn)
            raw = measure_rate(ProducerSpec(dsn, "raw-single", p.publish_seconds), producers, ctx.log_level)
            _checkpoint(dsn)
            project = _publish_with_subscriber(ctx, dsn, producers)
            details: dict[str, object] = {"producers": producers, "seconds": p.publish_seconds}
            if gated:
                _checkpoint(dsn)
                alone = measure_rate(
                    ProducerSpec(dsn, "publish", p.publish_seconds), producers, ctx.log_level
                )
                details["project_without_subscriber"] = alone
                details["ratio_without_subscriber"] = rate_ratio(alone, raw)
            ratio = rate_ratio(project, raw)
            logger.info("publish, %d producer(s): raw %.0f/s, project %.0f/s", producers, raw, project)
            results.append(
                Result(
                    scenario="publish, 1 event/tx",
                    figure=f"{producers} producer{'s' if producers > 1 else ''}",
                    unit="events/s",
                    baseline=raw,
                    project=project,
                    ratio=ratio,
                    target=">= 0.9" if gated else "(report)",
                    met=(ratio is not None and ratio >= 0.9) if gated else None,
                    details=details,
                )
            )
    return results


def run_batch(ctx: Context) -> list[Result]:
    p = ctx.profile
    with ctx.cluster.database("publish_batch") as dsn:
        _checkpoint(dsn)
        raw = measure_rate(
            ProducerSpec(dsn, "raw-batch", p.publish_seconds, p.batch_size), p.batch_producers, ctx.log_level
        )
        _checkpoint(dsn)
        project = measure_rate(
            ProducerSpec(dsn, "publish-many", p.publish_seconds, p.batch_size),
            p.batch_producers,
            ctx.log_level,
        )
    ratio = rate_ratio(project, raw)
    return [
        Result(
            scenario=f"publish, batches of {p.batch_size}",
            figure=f"{p.batch_producers} producers",
            unit="events/s",
            baseline=raw,
            project=project,
            ratio=ratio,
            target=">= 0.9",
            met=ratio is not None and ratio >= 0.9,
            details={
                "producers": p.batch_producers,
                "batch_size": p.batch_size,
                "seconds": p.publish_seconds,
            },
        )
    ]
