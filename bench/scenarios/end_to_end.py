"""End to end: producers publish batches at full speed; one subscriber hands them to a no-op handler.

Baseline: the events committed during the run. Project: the events handed to the handler in the
same run. The lag (committed minus delivered) is sampled twice a second; it must not grow.
"""

from __future__ import annotations

import logging
import time

from bench.context import Context
from bench.payloads import TOPIC
from bench.processes import running
from bench.producers import ProducerGroup, ProducerSpec
from bench.report import Result, rate_ratio
from bench.stats import slope
from bench.subscribing import Probe, SubscriberSpec, subscriber_main

logger = logging.getLogger(__name__)

SAMPLE_EVERY = 0.5


def run(ctx: Context) -> list[Result]:
    p = ctx.profile
    seconds = p.end_to_end_seconds
    with ctx.cluster.database("end_to_end") as dsn:
        probe = Probe()
        spec = SubscriberSpec(dsn=dsn, topics=[TOPIC])
        with running(subscriber_main, [(spec, probe, None, ctx.log_level)], name="subscriber"):
            if not probe.caught_up.wait(60):
                raise RuntimeError("the subscriber did not connect within 60 s")
            group = ProducerGroup(
                ProducerSpec(dsn, "publish-many", seconds, p.batch_size),
                p.end_to_end_producers,
                ctx.log_level,
            )
            started = group.start()
            samples: list[tuple[float, float]] = []
            while time.monotonic() < started + seconds:
                time.sleep(SAMPLE_EVERY)
                samples.append((time.monotonic() - started, float(group.committed() - probe.delivered.value)))
            delivered = probe.delivered.value
            committed = group.join()
            # How long the last events took to arrive after the producers stopped (the final lag).
            drain_started = time.monotonic()
            while probe.delivered.value < committed and time.monotonic() < drain_started + 30:
                time.sleep(0.01)
            drain_seconds = time.monotonic() - drain_started
            probe.stop.set()
    committed_rate = committed / seconds
    delivered_rate = delivered / seconds
    ratio = rate_ratio(delivered_rate, committed_rate)
    # The first tenth is start-up (connections, the first batches); the trend is measured after it.
    steady = [(t, lag) for t, lag in samples if t >= seconds / 10]
    growth = slope(steady)
    lags = [lag for _, lag in steady] or [0.0]
    # "Not growing": over the whole run the trend adds less than one second's worth of events.
    not_growing = growth * seconds < committed_rate
    logger.info(
        "end to end: committed %.0f/s, delivered %.0f/s, lag growth %.1f events/s",
        committed_rate,
        delivered_rate,
        growth,
    )
    details = {
        "seconds": seconds,
        "producers": p.end_to_end_producers,
        "batch_size": p.batch_size,
        "committed": committed,
        "delivered_during_run": delivered,
        "lag_max_events": max(lags),
        "lag_mean_events": sum(lags) / len(lags),
        "lag_growth_events_per_s": growth,
        "drain_after_stop_s": drain_seconds,
    }
    return [
        Result(
            scenario="end to end",
            figure=f"{p.end_to_end_producers} producers, {seconds:g} s",
            unit="events/s",
            baseline=committed_rate,
            project=delivered_rate,
            ratio=ratio,
            target=">= 0.95",
            met=ratio is not None and ratio >= 0.95,
            details=details,
        ),
        Result(
            scenario="end to end",
            figure="lag trend",
            unit="events/s",
            baseline=None,
            project=growth,
            ratio=None,
            target="not growing",
            met=not_growing,
            note=f"mean lag {sum(lags) / len(lags):,.0f} events, max {max(lags):,.0f}",
            details={"lag_samples": [[round(t, 2), lag] for t, lag in samples]},
        ),
    ]
