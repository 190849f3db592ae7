from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from pgsubscriber import InvalidEventError, InvalidPayloadError, InvalidTopicError, PgSubscriberError
from pgsubscriber.publish import NewEvent, publish, publish_many

pytestmark = pytest.mark.integration


def count(db) -> int:
    return int(db.scalar("SELECT count(*) FROM events"))


def test_publish_returns_the_id_and_commits_only_with_the_callers_transaction(db):
    with psycopg.connect(db.role_dsn("events_producer")) as conn:
        first = publish(conn, "courses", {"type": "course.created", "course_id": "c1"})
        second = publish(conn, "courses", {"type": "course.renamed", "course_id": "c1"})
        assert second > first
        assert count(db) == 0  # not committed yet
        conn.rollback()
    assert count(db) == 0
    with psycopg.connect(db.role_dsn("events_producer")) as conn:
        publish(conn, "courses", {"n": 1})
    assert count(db) == 1  # the connection's context manager commits


def test_publishing_the_same_key_again_stores_nothing_and_returns_the_stored_id(db):
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        first = publish(conn, "courses", {"n": 1}, key="order-42")
        again = publish(conn, "courses", {"n": 2}, key="order-42")
    assert again == first
    assert count(db) == 1


def test_publish_many_returns_ids_in_input_order_and_dedupes_keys(db):
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        existing = publish(conn, "courses", {"n": 0}, key="k-existing")
        ids = publish_many(
            conn,
            [
                NewEvent("courses", {"n": 1}),
                NewEvent("courses", {"n": 2}, "k-a"),
                ("audit", {"n": 3}, "k-existing"),
                NewEvent("courses", {"n": 4}),
                NewEvent("courses", {"n": 5}, "k-a"),
            ],
        )
    assert ids[2] == existing and ids[4] == ids[1]
    assert ids[0] < ids[1] < ids[3]
    with db.connect() as conn:
        rows = dict(conn.execute("SELECT id, payload->>'n' FROM events").fetchall())
    assert rows[ids[0]] == "1" and rows[ids[1]] == "2" and rows[ids[3]] == "4"
    assert count(db) == 4


@pytest.mark.parametrize("topic", ["", " courses", "a b", "x" * 129, "ünï", "-lead", None, 42])
def test_a_bad_topic_is_refused_and_nothing_is_written(db, topic):
    with psycopg.connect(db.role_dsn("events_producer")) as conn:
        with pytest.raises(InvalidTopicError, match="invalid topic"):
            publish(conn, topic, {"n": 1})
        with pytest.raises(InvalidTopicError):
            publish_many(conn, [("courses", {"n": 1}), (topic, {"n": 2})])
    assert count(db) == 0


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        "text",
        3,
        None,
        {"when": object()},
        {"s": {1, 2}},
        {"n": float("nan")},
        {"deep": [{"n": float("-inf")}]},
        {"text": "a\x00b"},
    ],
)
def test_a_payload_that_is_not_a_json_object_is_refused_and_nothing_is_written(db, payload):
    with psycopg.connect(db.role_dsn("events_producer")) as conn:
        with pytest.raises(InvalidPayloadError):
            publish(conn, "courses", payload)
        with pytest.raises(InvalidPayloadError):
            publish_many(conn, [("courses", {"ok": 1}), ("courses", payload)])
    assert count(db) == 0


def test_input_errors_are_catchable_as_the_package_base_error_and_as_value_error(db):
    with psycopg.connect(db.role_dsn("events_producer")) as conn:
        for bad in (lambda: publish(conn, "", {}), lambda: publish(conn, "t", [])):
            with pytest.raises(PgSubscriberError):
                bad()
            with pytest.raises(ValueError):
                bad()
            with pytest.raises(InvalidEventError):
                bad()


def test_the_database_enforces_the_same_rules_for_plain_inserts(db):
    with db.connect(autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="events_topic_format"):
            conn.execute("INSERT INTO events (topic, payload) VALUES ('bad topic', '{}')")
        with pytest.raises(psycopg.errors.CheckViolation, match="events_payload_is_object"):
            conn.execute("INSERT INTO events (topic, payload) VALUES ('courses', '[1]')")
        with pytest.raises(psycopg.errors.GeneratedAlways):
            conn.execute("INSERT INTO events (id, topic, payload) VALUES (5, 'courses', '{}')")
    assert count(db) == 0


def test_numbers_a_float_cannot_hold_are_published_exactly(db):
    payload = {"big": 123456789012345678901234567890, "price": Decimal("0.1000000000000000000001")}
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        publish(conn, "courses", payload)
    stored = db.scalar("SELECT payload::text FROM events")
    assert stored == '{"big": 123456789012345678901234567890, "price": 0.1000000000000000000001}'
