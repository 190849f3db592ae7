"""Gap-free delivery: transactions commit out of id order, and nothing is skipped."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest
from psycopg import sql

from tests.support.handlers import RecordingHandler
from tests.support.producers import Committed, insert, randomized_producer, run_threads
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_a_later_id_committed_first_waits_for_the_earlier_transaction(db):
    """A inserts and holds its transaction, B inserts and commits: B must wait for A."""
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings()) as sub:
        status = sub.subscriber.status
        with psycopg.connect(db.role_dsn("events_producer")) as a:
            a_id = insert(a)
            a_pid = a.info.backend_pid
            with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as b:
                b_id = insert(b)
            assert b_id > a_id
            # The subscriber has seen B's id drawn and knows who holds it back ...
            wait_until(
                lambda: (status.newest_event_id or 0) >= b_id and status.blocked_by_pid == a_pid,
                message="the subscriber to see B and the open transaction A",
            )
            time.sleep(0.3)
            # ... and has delivered nothing.
            assert handler.ids == []
            a.commit()
        wait_until(lambda: len(handler.ids) == 2, timeout=10)
        assert status.blocked_by_pid is None
    assert handler.ids == [a_id, b_id]


def test_a_rolled_back_id_is_simply_absent(db):
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings()):
        with psycopg.connect(db.role_dsn("events_producer")) as a:
            lost = insert(a)
            with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as b:
                kept = insert(b)
            a.rollback()
        wait_until(lambda: len(handler.ids) == 1, timeout=10)
    assert handler.ids == [kept] and lost < kept


def test_randomized_concurrent_producers_deliver_exactly_the_committed_set_in_order(db):
    """4+ producers, transactions of 0-50 ms, about 10% rolled back, thousands of events."""
    handler = RecordingHandler()
    committed = Committed()
    with running_subscriber(handler, db.settings(batch_size=37)) as sub:
        dsn = db.role_dsn("events_producer")
        run_threads([randomized_producer(dsn, seed, 250, committed) for seed in range(6)], committed)
        wait_until(lambda: len(handler.ids) >= len(committed.ids), timeout=60, message="all committed events")
        time.sleep(0.5)  # anything extra (a rolled-back id, a duplicate) would show now
        assert sub.subscriber.status.writers_in_flight == 0
    assert len(committed.ids) > 2000
    ids = handler.ids
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert ids == sorted(ids), "events were delivered out of order"
    assert ids == committed.ids, "the delivered set differs from the committed set"


@pytest.fixture
def other_database(pg_server, template_db):
    name = f"{template_db}_other"
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield pg_server.dsn_for(name)
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_long_transactions_that_do_not_write_events_here_delay_nothing(db, other_database):
    handler = RecordingHandler()
    with (
        running_subscriber(handler, db.settings(safety_poll_interval=3600)) as sub,
        db.connect() as same_db,
        psycopg.connect(other_database) as other_db,
    ):
        # A write transaction in this database (it has an xid, and holds it) ...
        same_db.execute("CREATE TABLE unrelated (x int)")
        same_db.execute("INSERT INTO unrelated VALUES (1)")
        # ... and a producer transaction in another database of the same cluster.
        insert(other_db)
        with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer:
            ids = [insert(producer, n) for n in range(5)]
        wait_until(lambda: handler.ids == ids, timeout=10, message="delivery despite long transactions")
        assert sub.subscriber.status.blocked_by_pid is None
        same_db.rollback()
        other_db.rollback()


def test_a_long_producer_transaction_delays_only_later_ids_and_is_reported(db, caplog):
    handler = RecordingHandler()
    settings = db.settings(blocked_log_interval=0.2)
    with (
        caplog.at_level(logging.WARNING, logger="pgsubscriber"),
        running_subscriber(handler, settings) as sub,
        psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as quick,
    ):
        before = [insert(quick, n) for n in range(3)]
        wait_until(lambda: handler.ids == before, timeout=10)
        with psycopg.connect(db.role_dsn("events_producer")) as slow:
            held = insert(slow)
            slow_pid = slow.info.backend_pid
            after = [insert(quick, n) for n in range(3)]
            status = sub.subscriber.status
            wait_until(lambda: status.blocked_by_pid == slow_pid, timeout=10)
            assert status.blocked_since is not None
            time.sleep(0.5)
            assert handler.ids == before
            slow.commit()
        wait_until(lambda: len(handler.ids) == 7, timeout=10)
    assert handler.ids == [*before, held, *after]
    reports = [r.getMessage() for r in caplog.records if "waits for a producer transaction" in r.getMessage()]
    assert reports and f"backend pid {slow_pid}" in reports[0]
    assert len(reports) < 20  # rate-limited, not one line per poll


def test_writers_that_skip_their_notification_are_still_delivered_promptly(db):
    """Only a writer that finds no other writer in flight NOTIFYs; the others must not be stranded."""
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(safety_poll_interval=3600)):
        for _ in range(3):
            with (
                psycopg.connect(db.role_dsn("events_producer")) as first,
                psycopg.connect(db.role_dsn("events_producer")) as second,
            ):
                insert(first)  # registers alone: will notify at commit
                insert(second)  # sees `first` in flight: will not notify
                first.commit()
                time.sleep(0.2)
                second.commit()  # no notification of its own
            expected = int(db.scalar("SELECT count(*) FROM events"))
            started = time.monotonic()
            wait_until(lambda e=expected: len(handler.ids) == e, timeout=10)
            assert time.monotonic() - started < 5
