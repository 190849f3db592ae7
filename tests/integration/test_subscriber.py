from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from pgsubscriber import (
    ConfigurationError,
    Event,
    SchemaMissingError,
    Subscriber,
    SubscriberSettings,
)
from pgsubscriber.publish import NewEvent, publish_many
from tests.support.handlers import AsyncRecordingHandler, RecordingHandler
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def produce(db, topic: str, count: int, start: int = 0) -> list[int]:
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        return publish_many(conn, [NewEvent(topic, {"n": start + i}) for i in range(count)])


def test_delivers_every_event_in_order_across_batches_of_at_most_batch_size(db):
    before = produce(db, "courses", 23)
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(batch_size=5)):
        wait_until(lambda: len(handler.ids) == 23, message="the backlog")
        after = produce(db, "courses", 30, start=23)
        wait_until(lambda: len(handler.ids) == 53, message="the new events")
    assert handler.ids == before + after
    assert all(1 <= len(batch) <= 5 for batch in handler.batches)
    assert [e.payload["n"] for e in handler.events] == list(range(53))
    event = handler.events[0]
    assert isinstance(event, Event) and event.topic == "courses" and event.created_at.tzinfo


def test_receives_only_its_topics(db):
    courses = produce(db, "courses", 5)
    produce(db, "audit", 5)
    other = produce(db, "enrollments", 3)
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(topics=["courses", "enrollments"])):
        wait_until(lambda: len(handler.ids) == 8)
        more = produce(db, "audit", 4) and produce(db, "courses", 2)
        wait_until(lambda: len(handler.ids) == 10)
    assert handler.ids == sorted(courses + other + more)
    assert {e.topic for e in handler.events} == {"courses", "enrollments"}


def test_a_plain_insert_from_any_client_is_a_complete_publish(db):
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(safety_poll_interval=3600)):
        wait_until(lambda: handler.calls == 0 and True)
        with db.connect(autocommit=True) as conn:
            conn.execute("INSERT INTO events (topic, payload) VALUES ('courses', '{\"via\": \"sql\"}')")
        wait_until(lambda: len(handler.ids) == 1, timeout=10, message="a notification-driven delivery")
    assert handler.events[0].payload == {"via": "sql"}


def test_consumer_down_then_started_catches_up_exactly(db):
    """Scenario "consumer down": a consumer stopped while events are produced resumes exactly."""
    handler = RecordingHandler()
    first = produce(db, "courses", 10)
    with running_subscriber(handler, db.settings()):
        wait_until(lambda: len(handler.ids) == 10)
    while_down = produce(db, "courses", 40, start=10)
    with running_subscriber(handler, db.settings(batch_size=7)):
        wait_until(lambda: len(handler.ids) == 50)
        later = produce(db, "courses", 5, start=50)
        wait_until(lambda: len(handler.ids) == 55)
    assert handler.ids == first + while_down + later


def test_starts_after_the_position_the_handler_reports(db):
    ids = produce(db, "courses", 10)
    handler = RecordingHandler(start_after=ids[5])
    with running_subscriber(handler, db.settings()):
        wait_until(lambda: len(handler.ids) == 4)
    assert handler.ids == ids[6:]


def test_a_handler_that_raises_twice_gets_the_same_batch_again_and_nothing_is_skipped(db, caplog):
    ids = produce(db, "courses", 4)
    handler = RecordingHandler(fail_times=2)
    with (
        caplog.at_level(logging.WARNING, logger="pgsubscriber"),
        running_subscriber(handler, db.settings()) as sub,
    ):
        wait_until(lambda: len(handler.ids) == 4)
    assert handler.ids == ids and handler.calls == 3
    assert sub.subscriber.status.handler_failures == 2
    failures = [r for r in caplog.records if "failed for events" in r.getMessage()]
    assert len(failures) == 2 and f"{ids[0]}..{ids[-1]}" in failures[0].getMessage()
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in failures)  # one line each


def test_async_handlers_work_like_sync_ones(db):
    ids = produce(db, "courses", 12)
    handler = AsyncRecordingHandler(fail_times=1)
    with running_subscriber(handler, db.settings(batch_size=5)):
        wait_until(lambda: len(handler.ids) == 12)
        more = produce(db, "courses", 3)
        wait_until(lambda: len(handler.ids) == 15)
    assert handler.ids == ids + more


def test_poll_only_mode_delivers_without_listen(db):
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(poll_only=True, poll_only_interval=0.1)) as sub:
        ids = produce(db, "courses", 3)
        wait_until(lambda: len(handler.ids) == 3)
        with db.connect() as conn:
            listening = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgsubscriber'"
                " AND query ILIKE 'LISTEN%%'"
            ).fetchone()
    assert handler.ids == ids and listening == (0,)
    assert sub.subscriber.status.connected is False  # stopped


def test_a_separate_listen_connection_can_be_given(db):
    handler = RecordingHandler()
    settings = db.settings(listen_dsn=db.role_dsn("events_consumer"), safety_poll_interval=3600)
    with running_subscriber(handler, settings):
        wait_until(lambda: handler.calls == 0 and True)
        ids = produce(db, "courses", 3)
        wait_until(lambda: len(handler.ids) == 3, timeout=10)
    assert handler.ids == ids


def test_a_missing_schema_is_a_clear_fatal_error(pg_server):
    settings = SubscriberSettings(dsn=pg_server.admin_dsn, topics=["courses"])
    with pytest.raises(SchemaMissingError, match="pgsubscriber migrate"):
        asyncio.run(asyncio.wait_for(Subscriber(RecordingHandler(), settings).run(), 30))


def test_a_role_without_privileges_is_a_clear_error(db):
    with db.connect(autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS nobody_in_particular")
        conn.execute("CREATE ROLE nobody_in_particular LOGIN")
    settings = db.settings(dsn=db.role_dsn("nobody_in_particular"))
    with pytest.raises(ConfigurationError, match="events_consumer"):
        asyncio.run(asyncio.wait_for(Subscriber(RecordingHandler(), settings).run(), 30))


def test_an_unreachable_database_at_start_is_retried_not_fatal(db):
    settings = db.settings(
        dsn="postgresql://events_consumer@127.0.0.1:1/nowhere",
        reconnect_initial_delay=0.05,
        reconnect_max_delay=0.1,
    )

    async def scenario() -> Subscriber:
        sub = Subscriber(RecordingHandler(), settings)
        task = asyncio.create_task(sub.run())
        await asyncio.sleep(1.0)
        assert not task.done() and "cannot connect" in (sub.status.last_error or "")
        sub.stop()
        await asyncio.wait_for(task, 10)
        return sub

    assert asyncio.run(scenario()).status.running is False


def test_run_can_be_cancelled(db):
    async def scenario() -> None:
        task = asyncio.create_task(Subscriber(RecordingHandler(), db.settings()).run())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


def test_status_reports_position_lag_and_counts(db):
    produce(db, "courses", 6)
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(batch_size=4)) as sub:
        wait_until(lambda: len(handler.ids) == 6)
        status = sub.subscriber.status
        assert status.connected and status.running
        assert status.events_delivered == 6 and status.batches_delivered == 2
        assert status.position == handler.ids[-1] and status.lag == 0
