"""Recovery after a crash: ``pg_ctl stop -m immediate``, then start.

Both figures come from the same restart, timed from the moment ``pg_ctl start`` is issued.
Baseline: until the server accepts a connection. Project: until a subscriber (default settings,
running all along in its own process) has delivered an event committed after the restart.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time

import psycopg

from bench.context import Context
from bench.payloads import TOPIC, payload
from bench.processes import running, wait_for
from bench.report import Result
from bench.subscribing import Probe, SubscriberSpec, subscriber_main
from pgsubscriber.publish import publish

logger = logging.getLogger(__name__)


def _publish_one(dsn: str, seq: int) -> int:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        return publish(conn, TOPIC, payload(seq))


def _accepts(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=1):
            return True
    except psycopg.OperationalError:
        return False


def run(ctx: Context) -> list[Result]:
    cluster = ctx.cluster
    raw_times: list[float] = []
    project_times: list[float] = []
    with cluster.database("recovery") as dsn:
        probe = Probe()
        spec = SubscriberSpec(dsn=dsn, topics=[TOPIC])
        with running(subscriber_main, [(spec, probe, None, ctx.log_level)], name="subscriber"):
            if not probe.caught_up.wait(60):
                raise RuntimeError("the subscriber did not connect within 60 s")
            for round_ in range(ctx.profile.recovery_rounds):
                first = _publish_one(dsn, round_ * 2 + 1)
                wait_for(lambda id_=first: probe.latest.value >= id_, 30, "delivery before the crash")
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("CHECKPOINT")
                cluster.pg.stop("immediate")
                starter = threading.Thread(target=cluster.pg.start, name="pg-start")
                started = time.monotonic()
                starter.start()
                accepted = wait_for(lambda: _accepts(dsn), 60, "server accepting connections", interval=0.01)
                after = _publish_one(dsn, round_ * 2 + 2)
                wait_for(lambda id_=after: probe.latest.value >= id_, 60, "delivery after the restart")
                starter.join()
                raw_times.append(accepted - started)
                project_times.append(probe.delivered_at.value - started)
                logger.info(
                    "recovery round %d: server %.2f s, subscriber %.2f s",
                    round_ + 1,
                    raw_times[-1],
                    project_times[-1],
                )
            probe.stop.set()
    raw = statistics.median(raw_times)
    project = statistics.median(project_times)
    return [
        Result(
            scenario="recovery after stop -m immediate",
            figure=f"median of {len(raw_times)}",
            unit="s",
            baseline=raw,
            project=project,
            ratio=project / raw if raw else None,
            target="<= raw + 2 s",
            met=project <= raw + 2.0,
            details={"raw_s": raw_times, "project_s": project_times},
        )
    ]
