"""purge_once against the real schema: ages, batches, watermarks, per-topic retention, the role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgsubscriber import ConfigurationError
from purger import RetentionPolicy, purge_once
from purger.purge import PASS_LOCK_KEY, connect
from tests.support.purger_fixtures import event_ids, watermarks

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
MS = timedelta(milliseconds=1)
US = timedelta(microseconds=1)


def test_events_just_older_than_the_retention_go_and_those_just_younger_stay(
    db, purger_dsn, aged_events, server_now
):
    cutoff = server_now - HOUR
    old = aged_events("courses", [cutoff - HOUR, cutoff - MS, cutoff - US])
    young = aged_events("courses", [cutoff, cutoff + US, cutoff + MS, server_now])

    report = purge_once(purger_dsn, RetentionPolicy(default=HOUR), now=server_now)

    assert event_ids(db) == young
    assert report.deleted == len(old) == 3
    assert report.deleted_per_topic == {"courses": 3}
    assert report.oldest_remaining == cutoff
    assert watermarks(db) == {"courses": max(old)}


def test_without_now_the_cutoff_follows_the_server_clock(db, purger_dsn, aged_events, server_now):
    old = aged_events("courses", [server_now - HOUR - timedelta(minutes=1)])
    young = aged_events("courses", [server_now - HOUR + timedelta(minutes=1)])
    purge_once(purger_dsn, RetentionPolicy(default="1h"))
    assert event_ids(db) == young
    assert watermarks(db) == {"courses": old[0]}


def test_deletes_in_batches_of_at_most_batch_size_also_when_timestamps_tie(
    db, purger_dsn, aged_events, server_now
):
    # One producer transaction gives all its events the same created_at: 25 ties, batches of 10.
    tied = aged_events("courses", [server_now - 2 * HOUR] * 25)
    spread = aged_events("courses", [server_now - 3 * HOUR + i * MS for i in range(7)])
    young = aged_events("courses", [server_now])

    report = purge_once(purger_dsn, RetentionPolicy(default=HOUR, batch_size=10), now=server_now)

    assert event_ids(db) == young
    assert report.deleted == len(tied) + len(spread) == 32
    assert report.batches == 4  # 10, 10, 10, then 2: a short batch ends the pass
    assert 0 < report.longest_batch_seconds <= report.seconds
    assert report.oldest_remaining == server_now
    assert watermarks(db) == {"courses": max(tied + spread)}


def test_per_topic_overrides_keep_their_topics_for_their_own_time(db, purger_dsn, aged_events, server_now):
    day = timedelta(days=1)
    courses_old = aged_events("courses", [server_now - 2 * day])
    courses_young = aged_events("courses", [server_now - 12 * HOUR])
    audit_kept = aged_events("audit", [server_now - 89 * day, server_now - 2 * day])
    audit_old = aged_events("audit", [server_now - 91 * day])
    billing_old = aged_events("billing", [server_now - 3 * HOUR])
    billing_kept = aged_events("billing", [server_now - HOUR])
    policy = RetentionPolicy(default=day, per_topic={"audit": 90 * day, "billing": 2 * HOUR})

    report = purge_once(purger_dsn, policy, now=server_now)

    assert event_ids(db) == sorted(courses_young + audit_kept + billing_kept)
    assert report.deleted_per_topic == {"courses": 1, "audit": 1, "billing": 1}
    assert watermarks(db) == {"courses": courses_old[0], "audit": audit_old[0], "billing": billing_old[0]}
    assert report.oldest_remaining == server_now - 89 * day


def test_the_watermark_keeps_the_greatest_id_ever_deleted(db, purger_dsn, aged_events, server_now):
    # ids and ages are not in the same order: a later pass may delete a smaller id.
    younger_first = aged_events("courses", [server_now - 90 * timedelta(minutes=1)])
    older_second = aged_events("courses", [server_now - 3 * HOUR])
    purge_once(purger_dsn, RetentionPolicy(default=2 * HOUR), now=server_now)
    assert watermarks(db) == {"courses": older_second[0]}
    purge_once(purger_dsn, RetentionPolicy(default=HOUR), now=server_now)
    assert event_ids(db) == []
    assert watermarks(db) == {"courses": older_second[0]} and younger_first[0] < older_second[0]


def test_a_naive_now_is_refused(purger_dsn):
    with pytest.raises(ConfigurationError, match="time zone"):
        purge_once(purger_dsn, RetentionPolicy(default=HOUR), now=datetime(2030, 1, 1))


def test_nothing_to_delete_is_a_quiet_pass(db, purger_dsn):
    report = purge_once(purger_dsn, RetentionPolicy(default="7d"))
    assert (report.deleted, report.batches, report.oldest_remaining) == (0, 1, None)
    assert watermarks(db) == {}


def test_an_administrator_login_acts_as_events_purger_and_cannot_insert(db, aged_events, server_now):
    with connect(db.dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("events_purger",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO events (topic, payload) VALUES ('courses', '{}')")
    aged_events("courses", [server_now - 2 * HOUR])
    assert purge_once(db.dsn, RetentionPolicy(default=HOUR)).deleted == 1


def test_a_login_outside_events_purger_is_refused(db, aged_events, server_now):
    aged_events("courses", [server_now - 2 * HOUR])
    with pytest.raises(ConfigurationError, match="not a member of events_purger"):
        purge_once(db.role_dsn("events_consumer"), RetentionPolicy(default=HOUR))
    assert len(event_ids(db)) == 1


def test_a_second_purger_skips_its_pass_while_one_is_running(db, purger_dsn, aged_events, server_now):
    aged_events("courses", [server_now - 2 * HOUR])
    with db.connect(autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (PASS_LOCK_KEY,))
        report = purge_once(purger_dsn, RetentionPolicy(default=HOUR))
    assert report.skipped and report.deleted == 0
    assert purge_once(purger_dsn, RetentionPolicy(default=HOUR)).deleted == 1


def test_times_python_cannot_represent_do_not_stop_a_pass(db, purger_dsn, server_now):
    """Times the owner stored beyond what Python represents ('infinity', BC) are clamped, not fatal."""
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (topic, payload, created_at) VALUES"
            " ('courses', '{}', '-infinity'), ('courses', '{}', '0044-03-15 00:00:00+00 BC'),"
            " ('courses', '{}', 'infinity')"
        )
    report = purge_once(purger_dsn, RetentionPolicy(default=HOUR), now=server_now)
    assert report.deleted == 2
    assert report.oldest_remaining == datetime.max.replace(tzinfo=UTC)
