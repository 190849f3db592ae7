"""The web consumer against the suite's PostgreSQL and MongoDB-protocol server, over its HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from pymongo.errors import DuplicateKeyError

from pgsubscriber import Event, SubscriberSettings
from pgsubscriber.publish import NewEvent, publish_many
from pgsubscriber.testing import HandlerCheckError, HandlerRun, check_handler
from tests.support.courses_stream import (
    StreamPublisher,
    course_rows,
    received_ids,
    replay_courses,
    stored_courses,
)
from tests.support.waiting import wait_until
from webconsumer import MongoEventStore, WebConsumerSettings, create_app, subscriber_settings
from webconsumer.embedded_mongo import EmbeddedMongo, free_port

pytestmark = [pytest.mark.integration, pytest.mark.mongo]

STORY = [
    NewEvent("courses", {"type": "course.created", "course_id": "c1", "title": "Algebra 101"}),
    NewEvent("courses", {"type": "course.created", "course_id": "c2", "title": "Biology 201"}),
    NewEvent("enrollments", {"type": "enrollment.created", "course_id": "c1", "student": "s-1"}),
    NewEvent("courses", {"type": "course.created", "course_id": "c3", "title": "Chemistry"}),
    NewEvent("courses", {"type": "course.renamed", "course_id": "c1", "title": "Algebra Advanced"}),
    NewEvent("courses", {"type": "course.deleted", "course_id": "c2"}),
    NewEvent("courses", {"type": "course.created", "course_id": "c4", "title": "Databases"}),
]


def web_settings(mongo_url: str, database: str = "consumer") -> WebConsumerSettings:
    return WebConsumerSettings(mongo_url=mongo_url, mongo_database=database, mongo_timeout=0.5)


def event(
    event_id: int, kind: str, course_id: str, title: str | None = None, topic: str = "courses"
) -> Event:
    payload = {"type": kind, "course_id": course_id}
    if title is not None:
        payload["title"] = title
    return Event(id=event_id, topic=topic, payload=payload, created_at=datetime(2025, 1, 1, tzinfo=UTC))


EVENTS = [
    event(1, "course.created", "a", "A"),
    event(2, "course.created", "b", "B"),
    event(3, "enrollment.created", "a", topic="enrollments"),
    event(4, "course.renamed", "a", "A2"),
    event(5, "course.created", "c", "C"),
    event(6, "course.deleted", "b"),
    event(7, "course.renamed", "c", "C2"),
    event(8, "course.renamed", "a", "A3"),
]


def snapshot(store: MongoEventStore) -> tuple[list[tuple[object, ...]], list[dict[str, object]]]:
    """Both collections; courses by value (nx-27017 returns a $set bool as 0/1, a $set date as text)."""
    courses = sorted(
        (d["course_id"], d["title"], bool(d["deleted"]), d["last_event_id"], d.get("created_event_id"))
        for d in store.courses.find()
    )
    received = sorted(store.received.find({}, {"_id": 0}), key=lambda d: int(d["event_id"]))
    return courses, received


def test_the_app_serves_the_read_model_of_every_course_event(db, mongo):
    with db.connect(autocommit=True) as conn:
        publish_many(conn, STORY)
    app = create_app(web_settings(mongo.url, mongo.name), db.settings())
    with TestClient(app) as http, mongo.client() as client:
        database = client[mongo.name]
        wait_until(lambda: len(received_ids(database)) == 6, timeout=20, message="6 course events stored")

        page1 = http.get("/courses", params={"limit": 2}).json()
        assert [c["course_id"] for c in page1["courses"]] == ["c1", "c3"]
        page2 = http.get("/courses", params={"limit": 2, "after": page1["next_after"]}).json()
        assert [c["course_id"] for c in page2["courses"]] == ["c4"] and page2["next_after"] is None
        course = http.get("/courses/c1").json()
        assert course["title"] == "Algebra Advanced"
        assert http.get("/courses/c2").status_code == 404  # deleted: a tombstone, not served
        assert http.get("/courses/nope").status_code == 404

        with db.connect() as conn:
            rows = course_rows(conn)
        assert received_ids(database) == [row[0] for row in rows]  # enrollments are not subscribed
        assert stored_courses(database) == replay_courses(rows)

        health = http.get("/health")
        assert health.status_code == 200, health.json()
        body = health.json()
        assert body["healthy"] and body["reasons"] == []
        assert body["subscriber"]["connected"] is True
        assert body["subscriber"]["position"] == rows[-1][0]
        assert body["subscriber"]["last_drawn_id"] == rows[-1][0]
        assert body["subscriber"]["lag"] == 0
        assert body["subscriber"]["reconnects"] == 0
        assert body["mongo"] == {"reachable": True, "error": None}

        metrics = http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "webconsumer_events_delivered_total 6.0" in metrics.text
        assert "webconsumer_lag 0.0" in metrics.text
        for name in ("batches_total", "handler_seconds_total", "reconnects_total", "subscriber_connected"):
            assert f"webconsumer_{name} " in metrics.text


def observable(store: MongoEventStore) -> dict[str, object]:
    """What readers see: the courses (their times left out: nx-27017 returns a date written by $set as
    text, by an insert as a date) and the received events (without received_at, the clock's)."""
    courses, received = snapshot(store)
    for document in received:
        document.pop("received_at")
    return {"courses": courses, "receivedEvents": received}


LONGER_STORY = [
    *STORY,
    NewEvent("courses", {"type": "course.renamed", "course_id": "c3", "title": "Organic Chemistry"}),
    NewEvent("courses", {"type": "course.deleted", "course_id": "c4"}),
    NewEvent("courses", {"type": "course.created", "course_id": "c5", "title": "Economics"}),
]


def check_store(store_class: type[MongoEventStore], db, mongo):
    """check_handler on ``store_class``, each attack in its own MongoDB database."""
    with mongo.client() as client:

        def make_handler(run: HandlerRun) -> MongoEventStore:
            return store_class(client[f"{mongo.name}_{run.store}"], crash_point=run.crash_point)

        try:
            return check_handler(make_handler, LONGER_STORY, observe=observable, database=db)
        finally:
            for name in client.list_database_names():
                if name.startswith(f"{mongo.name}_"):
                    client.drop_database(name)


def test_the_store_passes_the_handler_check(db, mongo):
    report = check_store(MongoEventStore, db, mongo)
    assert report.crash_points == ["after the read model", "after receivedEvents"]
    assert report.batches == [(1, 4), (5, 8), (9, 10)]


class ReceivedFirstStore(MongoEventStore):
    """The two writes the other way round: receivedEvents (the position) before the read model."""

    def on_notification(self, events: list[Event]) -> None:
        self.ensure_indexes()
        self.record_received(events)
        self.crash_point("after receivedEvents")
        self.apply_to_read_model(events)
        self.crash_point("after the read model")


def test_the_store_with_its_writes_swapped_fails_the_handler_check(db, mongo):
    with pytest.raises(HandlerCheckError) as excinfo:
        check_store(ReceivedFirstStore, db, mongo)
    assert [failure.property for failure in excinfo.value.failures] == ["crash safety"]
    assert excinfo.value.failures[0].message.startswith(
        "after a crash at 'after receivedEvents' (crash point 1 while handling events 5..8), "
        "get_latest_received_id() is 8, ahead of the stored effects: events 5..8 would never be applied"
    )


def test_a_redelivered_batch_changes_nothing(mongo_db):
    store = MongoEventStore(mongo_db)
    assert store.get_latest_received_id() == 0
    store.on_notification(EVENTS[:5])
    before = snapshot(store)
    store.on_notification(EVENTS[:5])
    assert snapshot(store) == before
    assert store.get_latest_received_id() == 5


def test_a_crash_between_the_two_writes_is_repaired_by_the_redelivery(mongo, mongo_db):
    store = MongoEventStore(mongo_db)
    store.on_notification(EVENTS[:3])
    # The process died after the read model took events 4..6 and before receivedEvents did.
    store.ensure_indexes()
    store.apply_to_read_model(EVENTS[3:6])
    assert store.get_latest_received_id() == 3  # the position did not move: 4.. come again
    # ... and after a restart they come again, cut differently, with newer events.
    store.on_notification(EVENTS[3:])

    with mongo.client() as client:
        reference = MongoEventStore(client[f"{mongo.name}_reference"])
        try:
            reference.on_notification(EVENTS)
            assert snapshot(store)[0] == snapshot(reference)[0]
        finally:
            client.drop_database(f"{mongo.name}_reference")
    assert received_ids(mongo_db) == [e.id for e in EVENTS]


def test_a_retry_after_a_partial_insert_stores_each_event_once(mongo_db):
    store = MongoEventStore(mongo_db)
    store.ensure_indexes()
    store.apply_to_read_model(EVENTS)
    store.record_received(EVENTS[:4])  # the insert stopped after a prefix (MongoDB went away)
    store.on_notification(EVENTS)  # the subscriber delivers the same batch again
    assert received_ids(mongo_db) == [e.id for e in EVENTS]
    assert store.get_latest_received_id() == 8


def test_the_position_comes_from_a_unique_index_on_the_event_id(mongo_db):
    store = MongoEventStore(mongo_db)
    store.on_notification(EVENTS[:2])
    indexes = store.received.index_information()
    assert any(info["key"] == [("event_id", 1)] and info.get("unique") for info in indexes.values())
    with pytest.raises(DuplicateKeyError):
        store.received.insert_one({"event_id": 2})


def test_mongodb_unreachable_fails_the_batch_and_health_says_why_until_it_is_back(db, tmp_path):
    port = free_port()
    with db.connect(autocommit=True) as conn:
        publish_many(conn, STORY[:2])
    app = create_app(web_settings(f"mongodb://127.0.0.1:{port}/?directConnection=true"), db.settings())
    server = EmbeddedMongo(port=port, basedir=tmp_path / "mongo")
    try:
        with TestClient(app) as http:

            def unhealthy_because_of_mongo() -> bool:
                response = http.get("/health")
                reasons = " ".join(response.json()["reasons"])
                return (
                    response.status_code == 503
                    and "MongoDB unreachable" in reasons
                    and "last handler attempt failed" in reasons
                )

            wait_until(unhealthy_because_of_mongo, timeout=20, message="/health to report MongoDB down")
            assert http.get("/courses").status_code == 503
            server.start()
            wait_until(lambda: http.get("/health").status_code == 200, timeout=30, message="healthy again")
            assert [c["course_id"] for c in http.get("/courses").json()["courses"]] == ["c1", "c2"]
            assert http.get("/health").json()["subscriber"]["handler_failures"] > 0
    finally:
        server.cleanup()


def test_postgres_unreachable_makes_health_503(mongo):
    settings = WebConsumerSettings(mongo_url=mongo.url, mongo_database=mongo.name)
    pg = SubscriberSettings(
        dsn=f"postgresql://nobody@127.0.0.1:{free_port()}/app", topics=["courses"], reconnect_max_delay=0.5
    )
    with TestClient(create_app(settings, pg)) as http:
        wait_until(lambda: "PostgreSQL" in " ".join(http.get("/health").json()["reasons"]), timeout=10)
        response = http.get("/health")
        assert response.status_code == 503
        assert response.json()["subscriber"]["connected"] is False


def test_topics_default_to_courses_unless_configured(monkeypatch):
    monkeypatch.setenv("PGSUBSCRIBER_DSN", "postgresql://localhost/app")
    monkeypatch.delenv("PGSUBSCRIBER_TOPICS", raising=False)
    assert subscriber_settings().topics == ["courses"]
    monkeypatch.setenv("PGSUBSCRIBER_TOPICS", "courses,enrollments")
    assert subscriber_settings().topics == ["courses", "enrollments"]
    monkeypatch.setenv("MONGO_URL", "mongodb://db.example:27017")
    monkeypatch.setenv("WEBCONSUMER_PORT", "8080")
    settings = WebConsumerSettings()
    assert (settings.mongo_url, settings.port, settings.mongo_database) == (
        "mongodb://db.example:27017",
        8080,
        "consumer",
    )


def test_odd_payloads_are_recorded_and_the_consumer_goes_on(db, mongo):
    """Exact decimals, integers beyond 64 bits, nesting beyond MongoDB's: recorded, never blocking."""
    odd = [
        '"price": 0.1000000000000000000001',
        '"seats": 123456789012345678901234567890',
        '"deep": ' + "[" * 150 + "]" * 150,
        '"title": "after"',
    ]
    with db.connect(autocommit=True) as conn:
        for n, field in enumerate(odd, 1):
            conn.execute(
                "INSERT INTO events (topic, payload) VALUES ('courses', %s::jsonb)",
                (f'{{"type": "course.created", "course_id": "d{n}", {field}}}',),
            )
    app = create_app(web_settings(mongo.url, mongo.name), db.settings())
    with TestClient(app) as http, mongo.client() as client:
        database = client[mongo.name]
        wait_until(lambda: len(received_ids(database)) == 4, timeout=20, message="4 events stored")
        assert http.get("/courses/d4").json()["title"] == "after"
        stored = {d["event_id"]: d for d in database["receivedEvents"].find()}
    first, second, third, _ = sorted(stored)
    assert stored[first]["payload"]["price"] == "0.1000000000000000000001"  # exact, as text
    assert stored[second]["payload"] is None and "OverflowError" in stored[second]["payload_not_stored"]
    assert stored[third]["payload"] is None and "deeper" in stored[third]["payload_not_stored"]


def test_three_web_consumers_share_three_partitions_and_the_read_model_equals_a_replay(db, mongo):
    """A consumer group of web consumers: each course in one partition, one member leaves midway."""
    settings = db.settings(group="web", partitions=3, group_check_interval=0.2, group_lease_timeout=3.0)
    apps = [create_app(web_settings(mongo.url, mongo.name), settings) for _ in range(3)]
    publisher = StreamPublisher(db.role_dsn("events_producer"), 600)
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second, mongo.client() as client:
        with TestClient(apps[2]) as third:
            wait_until(
                lambda: (
                    [
                        len(h.get("/health").json()["group"]["partitions_owned"])
                        for h in (first, second, third)
                    ]
                    == [1, 1, 1]
                ),
                timeout=20,
                message="one partition each",
            )
            body = third.get("/health").json()
            assert body["group"]["role"] == "active" and body["group"]["members"] == 3, body
            publisher.start()
            wait_until(lambda: len(received_ids(client[mongo.name])) >= 100, timeout=30, message="100 events")
        # The third member left: its partition moves to one of the others.
        wait_until(
            lambda: (
                sorted(
                    p for h in (first, second) for p in h.get("/health").json()["group"]["partitions_owned"]
                )
                == [0, 1, 2]
            ),
            timeout=20,
            message="its partition taken over",
        )
        publisher.finish()
        with db.connect() as conn:
            rows = course_rows(conn)
        database = client[mongo.name]
        wait_until(lambda: len(received_ids(database)) == len(rows), timeout=60, message="every course event")
        assert received_ids(database) == [row[0] for row in rows]
        assert stored_courses(database) == replay_courses(rows)
