"""Real faults: the server crashes, the network goes silent or is cut. Nothing may be lost."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from pgsubscriber.testing import FaultyProxy
from producer.generator import Generator
from producer.settings import ProducerSettings
from tests.support.handlers import RecordingHandler
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def committed_ids(db, topics=("courses",)) -> list[int]:
    with db.connect() as conn:
        return [
            r[0]
            for r in conn.execute("SELECT id FROM events WHERE topic = ANY(%s) ORDER BY id", (list(topics),))
        ]


def assert_exactly_once_in_order(handler: RecordingHandler, expected: list[int]) -> None:
    ids = handler.ids
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert ids == sorted(ids), "events were delivered out of order"
    assert ids == expected, f"missing: {sorted(set(expected) - set(ids))[:10]}"


class GeneratorThread:
    def __init__(self, dsn: str, rate: float = 200.0) -> None:
        self.generator = Generator(
            ProducerSettings(dsn=dsn, rate=rate, retry_max_delay=0.5, producer_id="chaos", seed=7)
        )
        self.thread = threading.Thread(target=self.generator.run, daemon=True)

    def __enter__(self) -> Generator:
        self.thread.start()
        return self.generator

    def __exit__(self, *exc: object) -> None:
        self.generator.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_db_down_subscriber_reconnects_and_every_committed_event_arrives(db, cluster):
    """Scenario "db down": pg_ctl stop -m immediate while a subscriber runs and a producer retries."""
    handler = RecordingHandler()
    settings = db.settings(topics=["courses", "enrollments"])
    with running_subscriber(handler, settings) as sub:
        with GeneratorThread(db.role_dsn("events_producer")) as generator:
            wait_until(lambda: len(handler.ids) >= 50, message="events before the crash")
            cluster.stop("immediate")
            time.sleep(1.5)
            cluster.start()
            published_at_restart = generator.published
            wait_until(
                lambda: generator.published >= published_at_restart + 50,
                timeout=60,
                message="the producer to publish again",
            )
        expected = committed_ids(db, settings.topics)
        wait_until(lambda: len(handler.ids) >= len(expected), timeout=60, message="catch-up")
        assert sub.subscriber.status.reconnects >= 1
    assert len(expected) == generator.published, "the producer lost or duplicated an event"
    assert_exactly_once_in_order(handler, expected)


def test_a_silently_dead_connection_is_noticed_within_the_bound_and_nothing_is_lost(db, pg_server):
    """A proxy stops forwarding the subscriber's connection: no error, no close, just silence."""
    with FaultyProxy(pg_server.port) as proxy:
        handler = RecordingHandler()
        settings = db.settings(
            dsn=db.role_dsn("events_consumer").replace(f"port={pg_server.port}", f"port={proxy.port}"),
            heartbeat_interval=1.0,
            heartbeat_timeout=1.0,
            query_timeout=2.0,  # the silence may start under a fetch in flight
        )
        assert f"port={proxy.port}" in settings.dsn
        with running_subscriber(handler, settings) as sub:
            with db.connect(autocommit=True) as conn:
                conn.execute("INSERT INTO events (topic, payload) VALUES ('courses', '{}')")
            wait_until(lambda: len(handler.ids) == 1)
            assert proxy.blackhole() >= 1
            silenced_at = time.monotonic()
            with db.connect(autocommit=True) as conn:
                for _ in range(5):
                    conn.execute("INSERT INTO events (topic, payload) VALUES ('courses', '{}')")
            wait_until(lambda: len(handler.ids) == 6, timeout=30, message="delivery after the blackhole")
            noticed_after = time.monotonic() - silenced_at
            assert sub.subscriber.status.reconnects == 1
        assert_exactly_once_in_order(handler, committed_ids(db))
        # Documented bound: max(heartbeat_interval + heartbeat_timeout, query_timeout), plus the reconnect.
        assert noticed_after < settings.dead_connection_bound + 5, noticed_after


def test_a_cut_connection_is_reconnected_and_nothing_is_lost(db, pg_server):
    with FaultyProxy(pg_server.port) as proxy:
        handler = RecordingHandler()
        settings = db.settings(
            dsn=db.role_dsn("events_consumer").replace(f"port={pg_server.port}", f"port={proxy.port}")
        )
        with running_subscriber(handler, settings) as sub:
            for round_ in range(3):
                with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
                    for _ in range(10):
                        conn.execute("INSERT INTO events (topic, payload) VALUES ('courses', '{}')")
                proxy.cut()
                wait_until(lambda r=round_: len(handler.ids) == 10 * (r + 1), timeout=30)
            assert sub.subscriber.status.reconnects >= 1
        assert_exactly_once_in_order(handler, committed_ids(db))
