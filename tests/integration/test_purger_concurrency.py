"""Purging while producers insert and a subscriber reads: no deadlock, no young event lost."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest

from pgsubscriber.publish import NewEvent, publish_many
from purger import RetentionPolicy, purge_once
from tests.support.handlers import RecordingHandler
from tests.support.purger_fixtures import event_ids, watermarks
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

TOPICS = ["courses", "enrollments"]
PRELOADED = 20_000


def test_purging_under_load_blocks_nobody_and_loses_no_young_event(db, purger_dsn):
    # Old and young events interleaved in id order, on two topics: every other one is 2 days old.
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (topic, payload, created_at)"
            " SELECT (%s::text[])[1 + g %% 2], jsonb_build_object('g', g),"
            "        CASE WHEN g %% 4 < 2 THEN now() - interval '2 days' - g * interval '1 ms'"
            "             ELSE now() - interval '30 minutes' END"
            " FROM generate_series(1, %s) AS g",
            (TOPICS, PRELOADED),
        )
        young = conn.execute("SELECT id FROM events WHERE created_at > now() - interval '1 hour' ORDER BY id")
        preloaded_young = [row[0] for row in young]
        last_preloaded = conn.execute("SELECT max(id) FROM events").fetchone()[0]
    handler = RecordingHandler(start_after=last_preloaded)
    purged = threading.Event()
    produced: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def producer(topic: str) -> None:
        try:
            with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
                n = 0
                while not purged.is_set() or n < 30:
                    ids = publish_many(conn, [NewEvent(topic, {"n": n + i}) for i in range(5)])
                    with lock:
                        produced.extend(ids)
                    n += 1
        except BaseException as exc:
            errors.append(exc)

    reports = []
    produced_while_purging: list[int] = []

    def purger() -> None:
        try:
            # Small batches: many short transactions interleaved with the producers' commits.
            policy = RetentionPolicy(default=timedelta(hours=1), batch_size=500)
            while not reports or reports[-1].deleted or reports[-1].skipped:
                reports.append(purge_once(purger_dsn, policy))
        except BaseException as exc:
            errors.append(exc)
        finally:
            with lock:
                produced_while_purging.append(len(produced))
            purged.set()

    with running_subscriber(handler, db.settings(topics=TOPICS, batch_size=200)) as subscriber:
        threads = [threading.Thread(target=producer, args=(t,)) for t in TOPICS]
        threads.append(threading.Thread(target=purger))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), "a producer or the purger is stuck"
        assert not errors, errors
        wait_until(lambda: len(handler.ids) == len(produced), message="every produced event delivered")
        assert subscriber.subscriber.status.purged_ranges == []
        elapsed = time.monotonic() - started

    assert produced_while_purging[0] > 0, "the producers did not overlap the purge"
    assert handler.ids == sorted(produced)  # in order, no gap, no duplicate
    assert event_ids(db) == preloaded_young + sorted(produced)
    assert sum(r.deleted for r in reports) == PRELOADED - len(preloaded_young)
    assert max(r.longest_batch_seconds for r in reports) < elapsed
    assert set(watermarks(db)) == set(TOPICS) and max(watermarks(db).values()) <= last_preloaded
