"""`pgsubscriber status`, `pgsubscriber tail` and read_events against the suite's PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from pgsubscriber import Thresholds, read_events, read_status
from pgsubscriber.monitor import connect
from tests.support.handlers import RecordingHandler
from tests.support.producers import produce
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def pgsubscriber(*args: str, dsn: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = str(Path(sys.executable).with_name("pgsubscriber"))
    env = {**os.environ, "PGSUBSCRIBER_DSN": dsn}
    return subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=timeout)


def status_of(db, **limits: object):
    with connect(db.role_dsn("events_consumer")) as conn:
        return read_status(conn, Thresholds(**limits))  # type: ignore[arg-type]


@pytest.fixture
def readonly_login(db):
    """A login that may only read: a member of events_consumer, read only by default."""
    with db.connect(autocommit=True) as owner:
        owner.execute("DROP ROLE IF EXISTS watcher")
        owner.execute("CREATE ROLE watcher LOGIN PASSWORD 'test' IN ROLE events_consumer")
        owner.execute("ALTER ROLE watcher SET default_transaction_read_only = on")
    yield db.role_dsn("watcher")
    with db.connect(autocommit=True) as owner:
        owner.execute("DROP ROLE watcher")


def test_status_shows_topics_subscribers_and_their_lag_and_exits_1_once_one_is_gone(db, readonly_login):
    produce(db, 5)
    produce(db, 3, topic="audit")
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(name="billing", registry_interval=0.2)):
        wait_until(lambda: len(handler.ids) == 5)
        wait_until(lambda: [s.lag_events for s in status_of(db).subscribers] == [0], message="lag 0")
        done = pgsubscriber("status", "--json", dsn=readonly_login)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        topics = {t["topic"]: t for t in report["topics"]}
        assert topics["courses"]["events"] == 5 and topics["audit"]["events"] == 3
        assert topics["courses"]["events_per_second"] == pytest.approx(5 / 60)
        assert (topics["courses"]["oldest_id"], topics["courses"]["newest_id"]) == (1, 5)
        assert (topics["audit"]["oldest_id"], topics["audit"]["newest_id"]) == (6, 8)
        assert 0 <= topics["audit"]["newest_age"] <= topics["courses"]["oldest_age"] < 600
        (sub,) = report["subscribers"]
        assert (sub["name"], sub["state"], sub["position"], sub["lag_events"]) == (
            "billing",
            "listening",
            handler.ids[-1],
            0,
        )
        text = pgsubscriber("status", dsn=readonly_login)
        assert text.returncode == 0 and "billing" in text.stdout and "listening" in text.stdout
        assert text.stdout.rstrip().endswith("OK")
    produce(db, 4)
    status = status_of(db)
    (sub,) = status.subscribers
    assert sub.state == "gone" and sub.lag_events == 4 and sub.lag_seconds is not None
    assert status.problems and "billing" in status.problems[0]
    done = pgsubscriber("status", dsn=readonly_login)
    assert done.returncode == 1 and "PROBLEM: subscriber billing" in done.stdout and "gone" in done.stdout
    assert pgsubscriber("status", "--gone-ok", dsn=readonly_login).returncode == 0


def test_status_names_a_producer_transaction_holding_delivery_back(db, readonly_login):
    with psycopg.connect(db.role_dsn("events_producer")) as slow:
        slow.execute("SET application_name = 'slow-importer'")
        slow.execute("INSERT INTO events (topic, payload) VALUES ('courses', '{}')")
        produce(db, 2)  # committed after the slow one's id: held back
        status = status_of(db, max_held_back=0.0)
        (writer,) = status.writers
        assert writer.pid == slow.info.backend_pid and writer.application_name == "slow-importer"
        assert writer.holding_back and writer.role == "events_producer" and writer.since is not None
        assert any("slow-importer" in p for p in status.problems)
        done = pgsubscriber("status", "--max-held-back", "0", dsn=readonly_login)
        assert done.returncode == 1 and "slow-importer" in done.stdout, done.stdout + done.stderr
        slow.rollback()
    assert status_of(db).writers == []


def test_status_watch_prints_again_and_says_what_is_missing_without_a_database(db):
    done = pgsubscriber(
        "status", "--watch", "0.1", "--count", "2", "--json", dsn=db.role_dsn("events_consumer")
    )
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    unreachable = "postgresql://events_consumer@127.0.0.1:1/app?connect_timeout=2"
    done = pgsubscriber("status", dsn=unreachable)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_read_events_reads_a_range_by_id_or_by_time(db):
    ids = produce(db, 10)
    produce(db, 5, topic="audit")
    dsn = db.role_dsn("events_consumer")
    assert [e.id for e in read_events(dsn, ["courses"])] == ids
    assert [e.id for e in read_events(dsn, ["courses"], from_id=ids[4])] == ids[4:]
    assert [e.id for e in read_events(dsn, ["courses"], from_id=ids[2], to_id=ids[5])] == ids[2:6]
    assert [e.id for e in read_events(dsn, ["courses"], since=timedelta(hours=1))] == ids
    assert list(read_events(dsn, ["courses"], since=timedelta(seconds=-60))) == []
    with db.connect(autocommit=True) as owner:
        owner.execute("UPDATE events SET created_at = now() - interval '3 hours' WHERE id <= %s", (ids[6],))
    assert [e.id for e in read_events(dsn, ["courses"], since=timedelta(hours=2))] == ids[7:]


def test_read_events_waits_for_an_event_committed_late_and_yields_it_in_its_place(db):
    early = produce(db, 2)
    slow = psycopg.connect(db.role_dsn("events_producer"))
    late = slow.execute(
        "INSERT INTO events (topic, payload) VALUES ('courses', '{}') RETURNING id"
    ).fetchone()[0]
    after = produce(db, 2)
    timer = threading.Timer(1.0, slow.commit)
    timer.start()
    try:
        got = [e.id for e in read_events(db.role_dsn("events_consumer"), ["courses"])]
    finally:
        timer.join()
        slow.close()
    assert got == [*early, late, *after]


def test_tail_prints_json_lines_from_an_id_a_time_or_the_last_ones(db):
    ids = produce(db, 15)
    dsn = db.role_dsn("events_consumer")
    done = pgsubscriber("tail", "--topics", "courses", "--from-id", str(ids[3]), dsn=dsn)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["id"] for line in lines] == ids[3:]
    assert lines[0]["topic"] == "courses" and lines[0]["payload"] == {"n": 3} and lines[0]["created_at"]
    assert (
        len(pgsubscriber("tail", "--topics", "courses", "--since", "2h", dsn=dsn).stdout.splitlines()) == 15
    )
    last = pgsubscriber("tail", "--topics", "courses", dsn=dsn).stdout.splitlines()
    assert [json.loads(line)["id"] for line in last] == ids[-10:]


def test_tail_follow_is_a_subscriber_that_prints_new_events_until_interrupted(db):
    ids = produce(db, 3)
    script = str(Path(sys.executable).with_name("pgsubscriber"))
    env = {**os.environ, "PGSUBSCRIBER_DSN": db.role_dsn("events_consumer")}
    follower = subprocess.Popen(
        [script, "tail", "--topics", "courses", "--from-id", str(ids[1]), "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[int] = []
        reader = threading.Thread(
            target=lambda: lines.extend(json.loads(line)["id"] for line in follower.stdout), daemon=True
        )
        reader.start()
        wait_until(lambda: len(lines) == 2, message="the first two events")
        more = produce(db, 3)
        wait_until(lambda: len(lines) == 5, message="the new events")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 0
        reader.join(10)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert lines == [*ids[1:], *more]


def test_a_live_subscriber_whose_handler_fails_shows_its_lag_growing_and_its_error(db):
    handler = RecordingHandler(fail_times=10_000)
    with running_subscriber(handler, db.settings(name="stuck", registry_interval=0.2)):
        produce(db, 3)

        def stuck():
            (sub,) = status_of(db, max_lag_seconds=0.5).subscribers
            return sub if sub.lag_events == 3 and (sub.lag_seconds or 0) > 0.5 and sub.last_error else None

        wait_until(stuck, message="lag 3, older than 0.5 s, with the handler's error")
        sub = stuck()
        assert sub.state != "gone" and "handler on_notification failed" in sub.last_error
        status = status_of(db, max_lag_seconds=0.5)
        assert any("stuck" in p and "lags" in p for p in status.problems)
        produce(db, 2)
        wait_until(lambda: status_of(db).subscribers[0].lag_events == 5, message="lag 5")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("last_seen", "infinity"),
        ("last_seen", "-infinity"),
        ("started_at", "infinity"),
        ("stopped_at", "-infinity"),
        ("heartbeat_seconds", "Infinity"),
        ("heartbeat_seconds", "NaN"),
        ("heartbeat_seconds", "1e300"),
    ],
)
def test_a_record_crafted_by_one_consumer_does_not_break_the_status_for_everyone(db, column, value):
    """A role writes its own records with any value the columns accept; the status still reads."""
    with db.connect(autocommit=True) as owner:
        owner.execute("DROP ROLE IF EXISTS crafter")
        owner.execute("CREATE ROLE crafter LOGIN PASSWORD 'test' IN ROLE events_consumer")
    try:
        produce(db, 2)
        values = {"last_seen": "now()", "started_at": "now()", "stopped_at": "NULL", "heartbeat_seconds": "5"}
        values[column] = f"'{value}'"
        crafted = (
            "INSERT INTO events_subscribers (instance, db_role, name, host, pid, topics, mode, position, "
            "last_seen, started_at, stopped_at, heartbeat_seconds) VALUES (gen_random_uuid(), "
            f"'crafter', 'crafted', 'h', 1, '{{courses}}', 'listening', 0, {values['last_seen']}, "
            f"{values['started_at']}, {values['stopped_at']}, {values['heartbeat_seconds']})"
        )
        with psycopg.connect(db.role_dsn("crafter"), autocommit=True) as crafter:
            if column in ("last_seen", "heartbeat_seconds"):
                # The row level security refuses a time other than now and a heartbeat that is not
                # a finite number of seconds up to a day; the table's owner may still write one.
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    crafter.execute(crafted)
                with db.connect(autocommit=True) as owner:
                    owner.execute(crafted)
            else:
                crafter.execute(crafted)
        (record,) = status_of(db).subscribers
        assert record.name == "crafted" and record.lag_events == 2
        if column in ("last_seen", "stopped_at"):  # a time that is not finite reads as the epoch
            assert record.state == "gone"
        result = pgsubscriber("status", dsn=db.role_dsn("events_consumer"))
        assert result.returncode in (0, 1), result.stderr
        assert "crafted" in result.stdout
    finally:
        with db.connect(autocommit=True) as owner:
            owner.execute("DELETE FROM events_subscribers WHERE db_role = 'crafter'")
            owner.execute("DROP ROLE crafter")


@pytest.mark.parametrize("follow", [False, True], ids=["tail", "tail --follow"])
def test_tail_into_a_reader_that_closes_early_ends_quietly(db, follow):
    """`pgsubscriber tail ... | head -1`: the tail ends when its reader has gone, without a traceback
    and without retrying the closed pipe forever."""
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (topic, payload) "
            "SELECT 'courses', jsonb_build_object('text', repeat('x', 200)) FROM generate_series(1, 2000)"
        )
    script = str(Path(sys.executable).with_name("pgsubscriber"))
    env = {**os.environ, "PGSUBSCRIBER_DSN": db.role_dsn("events_consumer")}
    args = [script, "tail", "--topics", "courses", "--from-id", "1", *(["--follow"] if follow else [])]
    tail = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert tail.stdout is not None and tail.stdout.readline()
        tail.stdout.close()  # the reader goes, as `head -1` does
        if follow:
            produce(db, 2)  # the next write finds the pipe closed
        assert tail.wait(60) == 0
        stderr = tail.stderr.read().decode() if tail.stderr else ""
        assert "Traceback" not in stderr and "retrying" not in stderr, stderr
    finally:
        if tail.poll() is None:
            tail.kill()


@pytest.mark.parametrize("committed_after", [True, False], ids=["a later event committed", "nothing else"])
def test_read_events_since_yields_an_event_of_the_window_held_back_by_an_open_transaction(
    db, committed_after
):
    """`since`: an event created in the window by a producer transaction still open when the start is
    chosen (its id below the first event visible then) is waited for, not skipped."""
    produce(db, 2)
    slow = psycopg.connect(db.role_dsn("events_producer"))
    late = slow.execute(
        "INSERT INTO events (topic, payload) VALUES ('courses', '{}') RETURNING id"
    ).fetchone()[0]
    after = produce(db, 2) if committed_after else []
    with db.connect(autocommit=True) as owner:  # what came before the window
        owner.execute("UPDATE events SET created_at = now() - interval '1 hour' WHERE id < %s", (late,))
    timer = threading.Timer(1.0, slow.commit)
    timer.start()
    try:
        dsn = db.role_dsn("events_consumer")
        got = [e.id for e in read_events(dsn, ["courses"], since=timedelta(minutes=5))]
    finally:
        timer.join()
        slow.close()
    assert got == [late, *after]
