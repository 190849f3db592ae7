"""The promise through a transaction-pooling PgBouncer (the system's pgbouncer, pool of 5 per user).

In transaction mode each transaction of a client may run on another server connection, and a
server connection outlives its clients. Server-side prepared statements (psycopg prepares a query
after 5 executions) then collide or go missing, so every connection through the pooler is opened
with ``prepare_threshold=None``. Each test checks that exactly the committed events were delivered,
once each, in id order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from pgsubscriber import SubscriberSettings
from pgsubscriber.testing import FaultyProxy, TemporaryPgBouncer
from producer.generator import Generator
from producer.settings import ProducerSettings
from tests.support.handlers import RecordingHandler
from tests.support.pgbouncer_fixtures import pool_backends, terminate_pool_backends
from tests.support.producers import Committed, mixed_producer, randomized_producer, run_threads
from tests.support.running import SubscriberThread, running_subscriber
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def stored_ids(db, topics: tuple[str, ...] = ("courses",)) -> list[int]:
    with db.connect(autocommit=True) as conn:
        rows = conn.execute("SELECT id FROM events WHERE topic = ANY(%s) ORDER BY id", (list(topics),))
        return [int(row[0]) for row in rows]


def assert_delivered_once_in_order(handler: RecordingHandler, committed: list[int]) -> None:
    ids = handler.ids
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert ids == sorted(ids), "events were delivered out of order"
    assert ids == sorted(committed), "the delivered set differs from the committed set"


def wait_while_alive(
    sub: SubscriberThread, condition: Callable[[], object], message: str, timeout: float = 20.0
) -> None:
    """Wait for ``condition``, failing at once if the subscriber has died."""

    def check() -> object:
        assert sub.alive, f"the subscriber stopped while waiting for {message}: {sub.error!r}"
        return condition()

    wait_until(check, timeout=timeout, message=message)


def test_producers_publish_through_the_pooler_under_concurrent_load(db, pgbouncer, pooled):
    """4 threads x 500 events: single events, keyed events, transactions, batches, rollbacks."""
    handler = RecordingHandler()
    committed = Committed()
    dsn = pooled("events_producer")
    with running_subscriber(handler, db.settings()) as sub:
        run_threads(
            [mixed_producer(dsn, seed, committed, events=500, prepare_threshold=None) for seed in range(4)],
            committed,
            timeout=60,
        )
        wait_while_alive(sub, lambda: len(handler.ids) >= len(committed.ids), "all committed events")
        time.sleep(0.3)  # anything extra (a rolled-back id, a duplicate) would show now
    assert len(committed.ids) == 2000
    assert committed.ids == stored_ids(db)
    assert pool_backends(pgbouncer, db.name, "events_producer"), "the producers did not use the pool"
    assert_delivered_once_in_order(handler, committed.ids)


def test_the_example_generator_publishes_through_the_pooler(db, pooled):
    """``python -m producer``'s loop: one run, then three at once (single events and batches).

    The later runs are new clients of server connections the first run used, as a restarted
    producer process is.
    """
    committed = Committed()
    published: list[int] = []

    def generator(n: int, batch_size: int) -> threading.Thread:
        settings = ProducerSettings(
            dsn=pooled("events_producer"),
            rate=100_000,
            count=300,
            batch_size=batch_size,
            producer_id=f"generator-{n}",
            seed=n,
        )

        def run() -> None:
            try:
                published.append(Generator(settings).run())
            except BaseException as exc:
                committed.errors.append(exc)

        return threading.Thread(target=run, name=f"generator-{n}")

    handler = RecordingHandler()
    topics = ("courses", "enrollments")
    with running_subscriber(handler, db.settings(topics=list(topics))) as sub:
        run_threads([generator(0, 1)], committed, timeout=60)
        run_threads([generator(n, size) for n, size in ((1, 1), (2, 1), (3, 7))], committed, timeout=60)
        assert published == [300, 300, 300, 300]
        expected = stored_ids(db, topics)
        assert len(expected) == 1200
        wait_while_alive(sub, lambda: len(handler.ids) >= len(expected), "all published events")
        time.sleep(0.3)
    assert_delivered_once_in_order(handler, expected)


def test_prepared_statements_fail_through_the_pooler(db, pooled):
    """Why the generator prepares nothing by default: through the pooler, prepared statements collide.

    The second run is a new client of the first run's server connection, where psycopg's ``_pg3_0``
    already exists.
    """

    def generator(n: int) -> Generator:
        return Generator(
            ProducerSettings(
                dsn=pooled("events_producer"),
                rate=100_000,
                count=20,
                producer_id=f"prepared-{n}",
                prepared_statements=True,
            )
        )

    assert generator(0).run() == 20
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        generator(1).run()


def _through(dsn: str, proxy: FaultyProxy) -> str:
    return psycopg.conninfo.make_conninfo(dsn, host="127.0.0.1", port=proxy.port)


def _deliver_through_pool_faults(
    db, pgbouncer: TemporaryPgBouncer, pooled, proxy: FaultyProxy, settings: SubscriberSettings
) -> None:
    """3 pooled producers for several seconds; the subscriber's pooled connection fails 3 times.

    1. While it is idle, its server connections are terminated (pg_terminate_backend): its next
       fetch runs on a new server connection, where nothing of its own was ever prepared.
    2. While it is idle, its connection to the pooler is cut: the pooler keeps the server
       connection, with whatever the former client prepared on it, for the next client.
    3. Under load, the cut again, at whatever moment.
    Before each, more than 5 fetches ran on the connection, so psycopg would have prepared its
    statements. The subscriber goes on or reconnects, and delivers everything.
    """
    handler = RecordingHandler()
    committed = Committed()
    stop, gate = threading.Event(), threading.Event()
    gate.set()
    producers = [
        mixed_producer(
            pooled("events_producer"),
            seed,
            committed,
            stop=stop,
            gate=gate,
            pause=0.01,
            prepare_threshold=None,
        )
        for seed in range(3)
    ]
    started = time.monotonic()
    with running_subscriber(handler, settings) as sub:
        status = sub.subscriber.status

        def more_batches(message: str) -> None:
            mark = status.batches_delivered
            wait_while_alive(sub, lambda: status.batches_delivered > mark + 10, message)

        def caught_up() -> bool:
            return status.writers == 0 and len(handler.ids) == len(committed.ids)

        def quiesce() -> None:
            gate.clear()
            time.sleep(0.1)
            wait_while_alive(sub, caught_up, "the subscriber to catch up")
            time.sleep(0.3)  # its last round is over: it waits, and holds no server connection

        def reconnected(before: int) -> None:
            wait_while_alive(sub, lambda: status.reconnects > before and status.connected, "the reconnect")

        for thread in producers:
            thread.start()
        try:
            more_batches("fetches on the first pooled connection")
            quiesce()
            assert terminate_pool_backends(pgbouncer, db, "events_consumer") >= 1
            gate.set()
            more_batches("fetches after its server connections died")

            quiesce()
            reconnects = status.reconnects
            assert proxy.cut() >= 1
            gate.set()
            reconnected(reconnects)
            more_batches("fetches after the reconnect")

            reconnects = status.reconnects
            assert proxy.cut() >= 1
            reconnected(reconnects)
            more_batches("fetches after the second reconnect")
            time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))  # several seconds of load
        finally:
            gate.set()
            stop.set()
            for thread in producers:
                thread.join(30)
        assert not any(t.is_alive() for t in producers), "a producer thread hangs"
        assert not committed.errors, committed.errors
        wait_while_alive(sub, caught_up, "all committed events")
        time.sleep(0.3)  # anything extra (a rolled-back id, a duplicate) would show now
        assert status.reconnects >= 2
    assert len(committed.ids) > 500
    assert committed.ids == stored_ids(db)
    assert_delivered_once_in_order(handler, committed.ids)


def test_subscriber_fetches_through_the_pooler_and_listens_directly(db, pgbouncer, pooled):
    with FaultyProxy(pgbouncer.port) as proxy:
        settings = db.settings(
            dsn=_through(pooled("events_consumer"), proxy), listen_dsn=db.role_dsn("events_consumer")
        )
        _deliver_through_pool_faults(db, pgbouncer, pooled, proxy, settings)


def test_poll_only_subscriber_through_the_pooler(db, pgbouncer, pooled):
    with FaultyProxy(pgbouncer.port) as proxy:
        settings = db.settings(
            dsn=_through(pooled("events_consumer"), proxy), poll_only=True, poll_only_interval=0.1
        )
        _deliver_through_pool_faults(db, pgbouncer, pooled, proxy, settings)


@pytest.mark.parametrize("consumer_isolation", [None, "serializable"])
def test_randomized_concurrent_producers_through_the_pooler(db, pooled, consumer_isolation):
    """test_gap_free's stress, with every producer and two subscribers' fetches through the pooler.

    With the consumer role's default isolation set to serializable, a server connection of the
    pool does not keep what a subscriber's session set: its fetches then bring their own READ
    COMMITTED transaction.

    6 producers share a pool of 5 server connections, so their transactions move between server
    connections and some wait for one. The subscribers (one listening directly, one polling) share
    their pool too, as worker processes behind one pooler do.
    """
    if consumer_isolation:
        with db.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "ALTER ROLE events_consumer IN DATABASE {} SET default_transaction_isolation = {}"
                ).format(sql.Identifier(db.name), sql.Literal(consumer_isolation))
            )
    listening, polling = RecordingHandler(), RecordingHandler()
    committed = Committed()
    consumer = pooled("events_consumer")
    with (
        running_subscriber(
            listening, db.settings(dsn=consumer, listen_dsn=db.role_dsn("events_consumer"), batch_size=37)
        ) as first,
        running_subscriber(
            polling, db.settings(dsn=consumer, poll_only=True, poll_only_interval=0.05, batch_size=37)
        ) as second,
    ):
        dsn = pooled("events_producer")
        run_threads(
            [randomized_producer(dsn, seed, 250, committed, prepare_threshold=None) for seed in range(6)],
            committed,
        )
        for sub, handler in ((first, listening), (second, polling)):
            wait_while_alive(
                sub, lambda h=handler: len(h.ids) >= len(committed.ids), "all committed events", timeout=60
            )
        time.sleep(0.5)  # anything extra (a rolled-back id, a duplicate) would show now
        assert first.subscriber.status.writers == 0
    assert len(committed.ids) > 2000
    assert committed.ids == stored_ids(db)
    assert_delivered_once_in_order(listening, committed.ids)
    assert_delivered_once_in_order(polling, committed.ids)
