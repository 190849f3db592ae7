"""A connection that dies silently: the subscriber's TCP link is blackholed (no error, no close).

No baseline: PostgreSQL itself does not notice for the client. Project: with default settings,
the time from the blackhole until the subscriber has delivered an event published right after it
(noticing, reconnecting through the proxy, catching up).
"""

from __future__ import annotations

import logging
import time

import psycopg

from bench.context import Context
from bench.payloads import TOPIC, payload
from bench.processes import running, wait_for
from bench.report import Result
from bench.subscribing import Probe, SubscriberSpec, subscriber_main
from pgsubscriber.publish import publish
from pgsubscriber.testing import FaultyProxy

logger = logging.getLogger(__name__)

TARGET_S = 15.0


def run(ctx: Context) -> list[Result]:
    with ctx.cluster.database("dead_connection") as dsn:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        with FaultyProxy(ctx.cluster.pg.port) as proxy:
            info["port"] = str(proxy.port)
            spec = SubscriberSpec(dsn=psycopg.conninfo.make_conninfo(**info), topics=[TOPIC])
            probe = Probe()
            with running(subscriber_main, [(spec, probe, None, ctx.log_level)], name="subscriber"):
                if not probe.caught_up.wait(60):
                    raise RuntimeError("the subscriber did not connect within 60 s")
                time.sleep(1.0)
                links = proxy.blackhole()
                started = time.monotonic()
                with psycopg.connect(dsn, autocommit=True) as conn:
                    event_id = publish(conn, TOPIC, payload(1))
                reconnected = wait_for(
                    lambda: proxy.connections() > 0, 60, "reconnect through the proxy", 0.01
                )
                wait_for(lambda: probe.latest.value >= event_id, 60, "delivery after the blackhole")
                delivered = probe.delivered_at.value - started
                probe.stop.set()
    logger.info(
        "dead connection: reconnected after %.2f s, delivered after %.2f s", reconnected - started, delivered
    )
    return [
        Result(
            scenario="dead connection (blackholed TCP)",
            figure="default settings",
            unit="s",
            baseline=None,
            project=delivered,
            ratio=None,
            target=f"<= {TARGET_S:g} s",
            met=delivered <= TARGET_S,
            details={"blackholed_links": links, "reconnected_after_s": reconnected - started},
        )
    ]
