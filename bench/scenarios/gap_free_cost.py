"""What the gap-free mechanism costs producers, and what it adds to delivery delay.

"With": the schema as migrated (writers register before drawing ids; a writer NOTIFYs only while
an idle subscriber waits). "Without": the same database with the plain trigger of migration 0001
put back (NOTIFY from every transaction, no writer registry), so the subscriber reads up to the
newest id drawn, which is exactly the unsafe "everything after my last id" read. Producer
throughput at 1 / 4 / 8 producers with a subscriber attached, and commit-to-handler delay at the
latency scenario's rate, both ways, in the same run.
"""

from __future__ import annotations

import logging

import psycopg

from bench.context import Context
from bench.payloads import TOPIC, payload
from bench.processes import CTX, running
from bench.report import Result
from bench.scenarios.latency import _collect, _paced, _percentile
from bench.scenarios.publish import _checkpoint, _publish_with_subscriber
from bench.subscribing import Probe, SubscriberSpec, subscriber_main
from pgsubscriber import channel_for
from pgsubscriber.publish import publish

logger = logging.getLogger(__name__)

_WITHOUT_MECHANISM = f"""
DROP TRIGGER events_register_writer ON public.events;
DROP TRIGGER events_wake_listeners ON public.events;
CREATE FUNCTION public.events_notify() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_notify('{channel_for(TOPIC)}', ''); RETURN NULL; END $$;
CREATE TRIGGER events_notify AFTER INSERT ON public.events
    FOR EACH STATEMENT EXECUTE FUNCTION public.events_notify();
"""


def _delay(ctx: Context, dsn: str) -> list[float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    probe, times = Probe(), CTX.Queue()
    # Start after what the throughput runs published: their payloads reuse the same seq numbers.
    spec = SubscriberSpec(dsn=dsn, topics=[TOPIC], send_times=True, start_after_id=int(row[0]) if row else 0)
    with (
        running(subscriber_main, [(spec, probe, times, ctx.log_level)], name="subscriber"),
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        if not probe.caught_up.wait(60):
            raise RuntimeError("the subscriber did not connect within 60 s")
        sent = _paced(
            lambda seq: publish(conn, TOPIC, payload(seq)),
            ctx.profile.latency_rate,
            ctx.profile.latency_seconds,
        )
        delays = _collect(times, sent, timeout=30)
        probe.stop.set()
    return delays


def _measure(ctx: Context, dsn: str) -> tuple[dict[int, float], list[float]]:
    rates = {}
    for producers in ctx.profile.single_producers:
        _checkpoint(dsn)
        rates[producers] = _publish_with_subscriber(ctx, dsn, producers)
    return rates, _delay(ctx, dsn)


def run(ctx: Context) -> list[Result]:
    with ctx.cluster.database("gap_free_without") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(_WITHOUT_MECHANISM)
        without_rates, without_delay = _measure(ctx, dsn)
    with ctx.cluster.database("gap_free_with") as dsn:
        with_rates, with_delay = _measure(ctx, dsn)

    results = []
    for producers, rate in with_rates.items():
        base = without_rates[producers]
        logger.info("gap-free cost: %d producer(s): without %.0f/s, with %.0f/s", producers, base, rate)
        results.append(
            Result(
                scenario="gap-free mechanism: producer throughput",
                figure=f"{producers} producer{'s' if producers > 1 else ''}",
                unit="events/s",
                baseline=base,
                project=rate,
                ratio=rate / base if base else None,
                target="(report)",
                met=None,
            )
        )
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        base, value = _percentile(without_delay, q), _percentile(with_delay, q)
        results.append(
            Result(
                scenario="gap-free mechanism: commit-to-handler delay",
                figure=label,
                unit="ms",
                baseline=base,
                project=value,
                ratio=value / base if base else None,
                target="(report)",
                met=None,
                details={"added_ms": value - base},
            )
        )
    return results
