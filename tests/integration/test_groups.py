"""Consumer groups, in one process: election, standby, partitions shared among members."""

from __future__ import annotations

import random

import psycopg
import pytest

from pgsubscriber import NewEvent, partition_of, publish, publish_many
from pgsubscriber.monitor import Thresholds, read_status
from tests.support.groups import MemberThread, create_call_log, overlapping_calls, received
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def group_settings(db, **overrides):
    values = {
        "group": "courses-app",
        "group_check_interval": 0.2,
        "group_lease_timeout": 3.0,
        "heartbeat_interval": 1.0,
        "heartbeat_timeout": 1.0,
    }
    values.update(overrides)
    return db.settings(**values)


def produce(db, count, keys=None):
    with psycopg.connect(db.role_dsn("events_producer")) as conn:
        events = [
            NewEvent("courses", {"n": i}, partition_key=None if keys is None else keys[i % len(keys)])
            for i in range(count)
        ]
        ids = publish_many(conn, events)
        conn.commit()
    return ids


def all_ids(db):
    with db.connect() as conn:
        return [r[0] for r in conn.execute("SELECT id FROM events WHERE topic = 'courses' ORDER BY id")]


def test_python_and_sql_agree_on_every_partition(db):
    rnd = random.Random(3)
    keys = [None, "course-1", "é-ü-中文", "x" * 512] + [f"c-{rnd.random()}" for _ in range(300)]
    cases = [(k, rnd.randint(1, 10**12), n) for k in keys for n in (1, 2, 3, 7, 64, 1024)]
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT public.events_partition(k, i, n) FROM unnest(%s::text[], %s::bigint[], %s::int[]) "
            "WITH ORDINALITY AS c(k, i, n, o) ORDER BY o",
            ([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases]),
        ).fetchall()
    assert [r[0] for r in rows] == [partition_of(*c) for c in cases]


def test_producers_set_the_partition_key_and_nothing_else(db):
    with psycopg.connect(db.role_dsn("events_producer")) as conn:
        one = publish(conn, "courses", {"a": 1}, partition_key="course-7")
        keyed = publish(conn, "courses", {"a": 2}, key="k1", partition_key="course-7")
        again = publish(conn, "courses", {"a": 2}, key="k1", partition_key="course-7")
        many = publish_many(
            conn, [NewEvent("courses", {"b": 1}, None, "course-8"), NewEvent("courses", {"b": 2})]
        )
        conn.commit()
    assert keyed == again
    with db.connect() as conn:
        stored = dict(conn.execute("SELECT id, partition_key FROM events").fetchall())
    assert stored == {one: "course-7", keyed: "course-7", many[0]: "course-8", many[1]: None}


def test_one_member_delivers_the_other_stands_by_then_takes_over(db):
    create_call_log(db.dsn)
    settings = group_settings(db)
    first = MemberThread(settings, db.dsn, "a").start()
    wait_until(lambda: first.member.status.role == "active", message="the first member active")
    second = MemberThread(settings, db.dsn, "b").start()
    try:
        wait_until(lambda: second.member.status.group_members == 2, message="two members")
        assert second.member.status.role == "standby" and second.member.status.mode == "standby"
        produce(db, 50)
        wait_until(lambda: len(received(db.dsn)) == 50, message="50 events")
        first.stop()
        wait_until(lambda: second.member.status.role == "active", timeout=10, message="takeover")
        produce(db, 50)
        wait_until(lambda: len(received(db.dsn)) == 100, message="100 events")
    finally:
        second.stop()
    assert received(db.dsn) == all_ids(db)
    assert overlapping_calls(db.dsn) == []
    assert second.member.status.takeovers == 1


def test_three_members_share_three_partitions_and_keys_keep_their_order(db):
    create_call_log(db.dsn)
    settings = group_settings(db, partitions=3)
    members = [MemberThread(settings, db.dsn, name).start() for name in "abc"]
    try:
        wait_until(
            lambda: (
                sorted(p for m in members for p in m.member.status.partitions_owned) == [0, 1, 2]
                and all(m.member.status.role == "active" for m in members)
            ),
            timeout=20,
            message="one partition each",
        )
        keys = [f"course-{i}" for i in range(20)]
        produce(db, 300, keys)
        produce(db, 30)  # without a key: spread by id
        wait_until(lambda: len(received(db.dsn)) == 330, message="every event")

        # pgsubscriber status shows the group: one record per partition, each with its role.
        def group_rows() -> list[tuple[object, ...]]:
            with psycopg.connect(db.role_dsn("events_consumer")) as conn:
                status = read_status(conn, Thresholds())
            return sorted((s.group_name, s.role, s.state) for s in status.subscribers)

        wait_until(
            lambda: group_rows() == [("courses-app", f"partition {p}/3", "listening") for p in range(3)],
            message="the group's partitions in the status",
        )
    finally:
        for m in members:
            m.stop()
    assert received(db.dsn) == all_ids(db)
    assert overlapping_calls(db.dsn) == []
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT r.partition, e.partition_key, e.id "
            "FROM group_received r JOIN events e ON e.id = r.event_id"
        ).fetchall()
    for partition, key, event_id in rows:
        assert partition == partition_of(key, event_id, 3)


def test_members_hand_partitions_over_as_they_come_and_go(db):
    create_call_log(db.dsn)
    settings = group_settings(db, partitions=4)
    a = MemberThread(settings, db.dsn, "a").start()
    wait_until(lambda: a.member.status.partitions_owned == [0, 1, 2, 3], message="a owns all")
    b = MemberThread(settings, db.dsn, "b").start()
    try:
        wait_until(
            lambda: len(a.member.status.partitions_owned) == 2 and len(b.member.status.partitions_owned) == 2,
            timeout=20,
            message="two each",
        )
        produce(db, 200)
        wait_until(lambda: len(received(db.dsn)) == 200, message="200 events")
        a.stop()
        wait_until(lambda: len(b.member.status.partitions_owned) == 4, timeout=10, message="b owns all")
        produce(db, 200)
        wait_until(lambda: len(received(db.dsn)) == 400, message="400 events")
    finally:
        b.stop()
    assert received(db.dsn) == all_ids(db)
    assert overlapping_calls(db.dsn) == []


def test_members_with_another_partition_count_deliver_nothing_beside_each_other(db):
    create_call_log(db.dsn)
    a = MemberThread(group_settings(db, partitions=2), db.dsn, "a").start()
    wait_until(lambda: a.member.status.role == "active", message="a active")
    b = MemberThread(group_settings(db, partitions=3), db.dsn, "b").start()
    try:
        wait_until(lambda: a.member.status.role == "standby", timeout=10, message="a stands down")
        assert b.member.status.role == "standby"
    finally:
        b.stop()
        a.stop()
