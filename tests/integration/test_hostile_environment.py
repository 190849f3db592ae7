"""No event lost whatever the database's settings, the roles' settings, and whoever else connects."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from pgsubscriber import ConfigurationError, Subscriber
from tests.support.handlers import RecordingHandler
from tests.support.producers import INSERT
from tests.support.running import running_subscriber
from tests.support.stress import run_stress
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ISOLATION_LEVELS = ["read committed", "repeatable read", "serializable"]


def insert(conn: psycopg.Connection, n: int = 0) -> int:
    row = conn.execute(INSERT, (Jsonb({"n": n}),)).fetchone()
    assert row is not None
    return int(row[0])


def set_default(db, target: str, setting: str, value: str) -> None:
    """ALTER ROLE events_consumer IN DATABASE <db> / ALTER DATABASE <db> SET setting = value."""
    if target == "role":
        statement = sql.SQL("ALTER ROLE events_consumer IN DATABASE {} SET {} = {}")
    else:
        statement = sql.SQL("ALTER DATABASE {} SET {} = {}")
    with db.connect(autocommit=True) as conn:
        conn.execute(statement.format(sql.Identifier(db.name), sql.Identifier(setting), sql.Literal(value)))


# -- isolation and session settings -----------------------------------------------------------


@pytest.mark.parametrize("target", ["role", "database"])
@pytest.mark.parametrize("isolation", ISOLATION_LEVELS)
def test_the_stress_scenario_holds_under_every_default_isolation_level(db, target, isolation):
    set_default(db, target, "default_transaction_isolation", isolation)
    with psycopg.connect(db.role_dsn("events_consumer")) as probe:
        assert probe.execute("SHOW default_transaction_isolation").fetchone() == (isolation,)
    ids = run_stress(
        db.role_dsn("events_producer"), db.settings(batch_size=37), producers=4, transactions=120
    )
    assert len(ids) > 250


def test_the_fetch_refuses_to_run_outside_read_committed(db):
    with psycopg.connect(db.role_dsn("events_consumer")) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="needs READ COMMITTED"):
            conn.execute("SELECT * FROM events_fetch(0, '{courses}', 10, 1000000)")


def test_timeouts_and_formats_of_the_role_do_not_reach_the_subscriber(db):
    for setting, value in [
        ("statement_timeout", "1ms"),
        ("lock_timeout", "1ms"),
        ("search_path", "nowhere"),
        ("DateStyle", "SQL, DMY"),
        ("TimeZone", "Pacific/Kiritimati"),
        ("default_transaction_read_only", "on"),
    ]:
        set_default(db, "role", setting, value)
    handler = RecordingHandler()
    with (
        running_subscriber(handler, db.settings()) as sub,
        psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer,
    ):
        ids = [insert(producer, n) for n in range(20)]
        wait_until(lambda: handler.ids == ids, timeout=15, message="every event")
        assert sub.subscriber.status.reconnects == 0
    assert all(e.created_at.utcoffset().total_seconds() == 0 for e in handler.events)


def test_a_forged_registration_marker_still_registers_the_writer(db):
    """A session that sets the once-per-transaction marker itself still holds delivery back."""
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings()) as sub:
        status = sub.subscriber.status
        with psycopg.connect(db.role_dsn("events_producer")) as a:
            # Session level, forged: the marker of today and the one of the first schema versions.
            a.execute("SET pgsubscriber.writer_key = '999999999'")
            a.execute("SET pgsubscriber.writer_registered = 'on'")
            a.commit()
            a_id = insert(a)
            with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as b:
                b_id = insert(b)
            wait_until(lambda: (status.last_drawn_id or 0) >= b_id, message="B seen")
            time.sleep(0.3)
            assert handler.ids == [], "B was delivered while A, with an earlier id, was open"
            a.commit()
        wait_until(lambda: len(handler.ids) == 2, timeout=10)
    assert handler.ids == [a_id, b_id]


# -- ids and created_at are the database's ----------------------------------------------------


def test_a_producer_cannot_choose_an_id_or_a_creation_time(db):
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer:
        for statement in [
            "INSERT INTO events (id, topic, payload) OVERRIDING SYSTEM VALUE VALUES (-5, 'courses', '{}')",
            "INSERT INTO events (id, topic, payload) OVERRIDING SYSTEM VALUE VALUES (10^15, 'courses', '{}')",
            "INSERT INTO events (topic, payload, created_at) VALUES ('courses', '{}', '2001-01-01')",
            "INSERT INTO events (topic, payload, created_at) VALUES ('courses', '{}', 'infinity')",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                producer.execute(statement)
        assert insert(producer) > 0  # an ordinary publish still works
    assert db.scalar("SELECT count(*) FROM events") == 1


def test_ids_past_the_lock_key_range_fail_with_a_message_that_says_why(db):
    with db.connect(autocommit=True) as owner:
        owner.execute("SELECT setval('events_id_seq', 1129559080000000000)")
    with (
        psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer,
        pytest.raises(psycopg.errors.ProgramLimitExceeded, match="ids are exhausted") as caught,
    ):
        insert(producer)
    assert "48-bit advisory lock key" in (caught.value.diag.message_detail or "")


# -- least privilege --------------------------------------------------------------------------


def test_shadowed_operators_in_the_callers_search_path_change_nothing(db):
    """A producer login with its own schema shadows every operator the write path uses."""
    with db.connect(autocommit=True) as owner:
        owner.execute("DROP ROLE IF EXISTS sneaky")
        owner.execute("CREATE ROLE sneaky LOGIN PASSWORD 'test' IN ROLE events_producer")
        owner.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO sneaky").format(sql.Identifier(db.name)))
    try:
        with psycopg.connect(db.role_dsn("sneaky"), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA sneaky")
            conn.execute(
                """
                CREATE FUNCTION sneaky.escalate(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
                BEGIN
                    BEGIN EXECUTE 'ALTER ROLE sneaky SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                    RETURN true;
                END $$
                """
            )
            for op in ["=", "<", ">", "<=", ">=", "<>", "~"]:
                for types in ["bigint, bigint", "text, text", "timestamptz, timestamptz"]:
                    left, right = types.split(", ")
                    conn.execute(
                        f"CREATE FUNCTION sneaky.f_{abs(hash((op, types)))}(a {left}, b {right}) "
                        f"RETURNS boolean LANGUAGE sql AS $$ SELECT sneaky.escalate(1, 2) $$"
                    )
                    conn.execute(
                        f"CREATE OPERATOR sneaky.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                        f"FUNCTION = sneaky.f_{abs(hash((op, types)))})"
                    )
            conn.execute("SET search_path = sneaky, pg_catalog, public")
            conn.execute("INSERT INTO public.events (topic, payload) VALUES ('courses', '{}')")
        assert db.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = 'sneaky'") is False
        # The definer functions are the read path's (a writer's start and application name).
        definers = db.scalar(
            "SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc "
            "WHERE prosecdef AND proname LIKE 'events%%'"
        )
        assert definers == ["events_writer_since", "events_writers"]
    finally:
        with db.connect(autocommit=True) as owner:
            owner.execute("DROP SCHEMA IF EXISTS sneaky CASCADE")
            owner.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM sneaky").format(sql.Identifier(db.name)))
            owner.execute("DROP ROLE sneaky")


def test_foreign_holders_of_the_lock_keys_neither_stop_nor_hang_delivery(db, caplog):
    """A role that can only connect takes the writers' key of id 0 and the idle-listener lock."""
    with db.connect(autocommit=True) as owner:
        owner.execute("DROP ROLE IF EXISTS bystander")
        owner.execute("CREATE ROLE bystander LOGIN PASSWORD 'test'")
    try:
        with psycopg.connect(db.role_dsn("bystander"), autocommit=True) as bystander:
            bystander.execute("SELECT pg_advisory_lock_shared(1884487680, 0)")
            bystander.execute("SELECT pg_advisory_lock(1884487679, 1)")
            handler = RecordingHandler()
            with (
                caplog.at_level(logging.WARNING, logger="pgsubscriber"),
                running_subscriber(handler, db.settings(writer_poll_max=0.05)) as sub,
                psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer,
            ):
                ids = [insert(producer, n) for n in range(10)]
                wait_until(lambda: handler.ids == ids, timeout=15, message="every event")
                # Reported once the subscriber, done delivering, tries to go idle and finds it taken.
                wait_until(
                    lambda: sub.subscriber.status.foreign_lock_pid == bystander.info.backend_pid,
                    timeout=15,
                    message="the foreign holder reported",
                )
            messages = " ".join(r.getMessage() for r in caplog.records)
            assert f"backend pid {bystander.info.backend_pid}" in messages
            assert "role bystander" in messages
    finally:
        with db.connect(autocommit=True) as owner:
            owner.execute("DROP ROLE bystander")


# -- faults that are not the network ----------------------------------------------------------


def test_backends_terminated_in_a_loop_exhaust_the_attempts_instead_of_spinning(db):
    settings = db.settings(reconnect_max_attempts=3, reconnect_initial_delay=0.05, reconnect_max_delay=5.0)
    sub = Subscriber(RecordingHandler(), settings)
    stop = threading.Event()

    def terminator() -> None:
        with db.connect(autocommit=True) as admin:
            while not stop.is_set():
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename = 'events_consumer' AND pid <> pg_backend_pid()"
                )
                time.sleep(0.02)

    killer = threading.Thread(target=terminator, daemon=True)
    killer.start()
    try:
        with pytest.raises(ConfigurationError, match="3 failed connection attempts in a row"):
            asyncio.run(asyncio.wait_for(sub.run(), 60))
    finally:
        stop.set()
        killer.join(5)
    assert sub.status.reconnects <= 3


def test_a_slow_handler_stops_counting_as_an_idle_listener(db):
    """Writers notify idle listeners only: a listener stuck in its handler drains nothing."""
    release = threading.Event()

    class SlowHandler(RecordingHandler):
        def on_notification(self, events):
            release.wait(20)
            super().on_notification(events)

    handler = SlowHandler()
    with (
        running_subscriber(handler, db.settings()) as sub,
        psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer,
    ):
        wait_until(lambda: sub.subscriber.status.mode == "listening", message="an idle subscriber")
        first = insert(producer)
        wait_until(lambda: sub.subscriber.status.mode == "polling", timeout=10, message="polling")
        idle_holders = db.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1884487679 AND objid = 1"
        )
        assert idle_holders == 0
        rest = [insert(producer, n) for n in range(5)]
        release.set()
        wait_until(lambda: handler.ids == [first, *rest], timeout=15, message="every event")
        wait_until(lambda: sub.subscriber.status.mode == "listening", message="idle again")
        assert sub.subscriber.status.notify_queue_usage == 0.0


# -- topics ------------------------------------------------------------------------------------


def test_a_quiet_subscriber_is_not_woken_by_other_topics(db):
    handler = RecordingHandler()
    settings = db.settings(topics=["quiet"], safety_poll_interval=3600, heartbeat_interval=3600)
    with (
        running_subscriber(handler, settings) as sub,
        psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer,
    ):
        status = sub.subscriber.status
        wait_until(lambda: status.mode == "listening", message="an idle subscriber")
        fetches = status.fetches
        for n in range(30):
            insert(producer, n)  # topic courses
        time.sleep(0.5)
        assert status.fetches == fetches
        row = producer.execute(
            "INSERT INTO events (topic, payload) VALUES ('quiet', '{}') RETURNING id"
        ).fetchone()
        wait_until(lambda: handler.ids == [row[0]], timeout=10, message="the quiet topic's event")


def test_a_long_topic_gets_a_hashed_channel_that_both_sides_agree_on(db):
    topic = "t" * 120
    handler = RecordingHandler()
    with (
        running_subscriber(handler, db.settings(topics=[topic], safety_poll_interval=3600)) as sub,
        psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as producer,
    ):
        wait_until(lambda: sub.subscriber.status.mode == "listening", message="an idle subscriber")
        fetches = sub.subscriber.status.fetches
        row = producer.execute(
            "INSERT INTO events (topic, payload) VALUES (%s, '{}') RETURNING id", (topic,)
        ).fetchone()
        wait_until(lambda: handler.ids == [row[0]], timeout=5, message="a prompt wake-up")
        assert sub.subscriber.status.fetches > fetches
