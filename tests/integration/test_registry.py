"""The subscriber registry: every running Subscriber keeps its record in events_subscribers."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgsubscriber import read_status
from pgsubscriber.monitor import connect
from tests.support.handlers import RecordingHandler
from tests.support.producers import produce
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def records(db) -> list[dict[str, object]]:
    with db.connect(autocommit=True) as conn:
        cur = conn.execute("SELECT * FROM events_subscribers ORDER BY started_at")
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_a_running_subscriber_records_itself_and_keeps_the_record_fresh(db):
    produce(db, 7)
    handler = RecordingHandler()
    settings = db.settings(name="billing", registry_interval=0.2, topics=["courses", "audit"])
    with running_subscriber(handler, settings):
        wait_until(lambda: len(handler.ids) == 7)
        wait_until(
            lambda: [(r["mode"], r["position"]) for r in records(db)] == [("listening", handler.ids[-1])],
            message="the record at the handler's position",
        )
        first_seen = records(db)[0]["last_seen"]
        wait_until(lambda: records(db)[0]["last_seen"] > first_seen, message="a fresher last_seen")
        (row,) = records(db)
        assert row["name"] == "billing" and row["host"] == socket.gethostname()
        assert row["pid"] == os.getpid() and row["topics"] == ["audit", "courses"]
        assert row["events_delivered"] == 7 and row["db_role"] == "events_consumer"
        assert row["stopped_at"] is None and row["group_name"] is None
    (row,) = records(db)
    assert row["mode"] == "stopped" and row["stopped_at"] is not None


def test_a_restarted_subscriber_replaces_its_gone_record(db):
    for _ in range(2):
        handler = RecordingHandler()
        with running_subscriber(handler, db.settings(name="worker", registry_interval=0.2)):
            wait_until(lambda: any(r["mode"] == "listening" for r in records(db)))
    assert [r["mode"] for r in records(db)] == ["stopped"]


def test_a_consumer_role_writes_only_its_own_records(db):
    with db.connect(autocommit=True) as owner:
        owner.execute("DROP ROLE IF EXISTS other_consumer")
        owner.execute("CREATE ROLE other_consumer LOGIN PASSWORD 'test' IN ROLE events_consumer")
    try:
        handler = RecordingHandler()
        with running_subscriber(handler, db.settings(name="theirs", registry_interval=0.2)):
            wait_until(lambda: len(records(db)) == 1)
            with psycopg.connect(db.role_dsn("other_consumer"), autocommit=True) as other:
                # It sees every record, changes and deletes none of another role's.
                assert other.execute("SELECT count(*) FROM events_subscribers").fetchone() == (1,)
                assert other.execute("UPDATE events_subscribers SET position = 0").rowcount == 0
                assert other.execute("DELETE FROM events_subscribers").rowcount == 0
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                    other.execute(
                        "INSERT INTO events_subscribers (instance, db_role, name, host, pid, topics, mode, "
                        "heartbeat_seconds) VALUES (gen_random_uuid(), 'events_consumer', 'forged', 'h', 1, "
                        "'{courses}', 'listening', 5)"
                    )
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    other.execute("UPDATE events_purger_passes SET last_deleted = 0")
            # The member's own subscriber records itself under its own role.
            other_handler = RecordingHandler()
            other_settings = db.settings(
                dsn=db.role_dsn("other_consumer"), name="mine", registry_interval=0.2
            )
            with running_subscriber(other_handler, other_settings):
                wait_until(lambda: len(records(db)) == 2)
        assert {(r["name"], r["db_role"]) for r in records(db)} == {
            ("theirs", "events_consumer"),
            ("mine", "other_consumer"),
        }
    finally:
        with db.connect(autocommit=True) as owner:
            owner.execute("DELETE FROM events_subscribers WHERE db_role = 'other_consumer'")
            owner.execute(sql.SQL("DROP OWNED BY other_consumer"))
            owner.execute("DROP ROLE other_consumer")


@pytest.mark.parametrize("cause", ["table missing", "privilege missing"])
def test_a_subscriber_that_cannot_record_itself_still_delivers_and_says_so_once(db, caplog, cause):
    with db.connect(autocommit=True) as owner:
        if cause == "table missing":
            owner.execute("DROP TABLE events_subscribers")
        else:
            owner.execute("REVOKE INSERT, UPDATE, DELETE ON events_subscribers FROM events_consumer")
    handler = RecordingHandler()
    caplog.set_level(logging.WARNING, logger="pgsubscriber")
    with running_subscriber(handler, db.settings(registry_interval=0.05)) as running:
        produce(db, 5)
        wait_until(lambda: len(handler.ids) == 5)
        produce(db, 5)
        wait_until(lambda: len(handler.ids) == 10)
        assert running.subscriber.registry is not None and running.subscriber.registry.disabled
    told = [r for r in caplog.records if "cannot record itself" in r.getMessage()]
    assert len(told) == 1, [r.getMessage() for r in caplog.records]


def test_the_registry_can_be_turned_off(db):
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(registry=False)) as running:
        produce(db, 3)
        wait_until(lambda: len(handler.ids) == 3)
        assert running.subscriber.registry is None
    assert records(db) == []


def test_the_roles_defaults_do_not_stop_the_record(db):
    with db.connect(autocommit=True) as owner:
        for setting, value in [
            ("default_transaction_read_only", "on"),
            ("statement_timeout", "1ms"),
            ("default_transaction_isolation", "serializable"),
            ("search_path", "nowhere"),
        ]:
            owner.execute(f"ALTER ROLE events_consumer IN DATABASE {db.name} SET {setting} = '{value}'")
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(name="sturdy", registry_interval=0.2)) as running:
        produce(db, 3)
        wait_until(lambda: len(handler.ids) == 3)
        wait_until(lambda: [r["position"] for r in records(db)] == [handler.ids[-1]], message="the record")
        assert running.subscriber.registry is not None and not running.subscriber.registry.disabled


def test_the_documented_record_for_other_languages_works_as_written(db):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = doc.split("## Showing up in `pgsubscriber status`", 1)[1].split("\n## ", 1)[0]
    (statement,) = re.findall(r"^```sql\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    instance = uuid.uuid4()

    def text(position: int) -> str:  # (the instance's uuid may contain the digits of a position)
        return (
            statement.replace("$1", f"'{instance}'").replace("$2", str(position)).replace("$3", str(position))
        )

    with psycopg.connect(db.role_dsn("events_consumer"), autocommit=True) as conn:
        conn.execute(text(41))
        conn.execute(text(42))
    (row,) = records(db)
    assert (row["instance"], row["name"], row["position"], row["db_role"]) == (
        instance,
        "billing-node",
        42,
        "events_consumer",
    )


KILLED_SUBSCRIBER = """
import sys
from pgsubscriber import SubscriberSettings, run_subscriber

class Handler:
    def on_notification(self, events):
        pass

    def get_latest_received_id(self):
        return 0

run_subscriber(Handler(), SubscriberSettings(dsn=sys.argv[1], topics=["courses"], name="doomed",
                                             registry_interval=0.2))
"""


def test_a_killed_subscriber_shows_as_gone_once_not_seen_for_three_intervals_and_5_s(db):
    def states() -> list[str]:
        with connect(db.role_dsn("events_consumer")) as conn:
            return [s.state for s in read_status(conn).subscribers]

    process = subprocess.Popen([sys.executable, "-c", KILLED_SUBSCRIBER, db.role_dsn("events_consumer")])
    try:
        wait_until(lambda: states() == ["listening"], message="the record")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        killed_at = time.monotonic()
        assert states() == ["listening"]  # not yet: it may only be slow
        wait_until(lambda: states() == ["gone"], message="gone")
        assert time.monotonic() - killed_at >= 3 * 0.2 + 5 - 1.0
        (row,) = records(db)
        assert row["stopped_at"] is None  # it never said it stopped
    finally:
        if process.poll() is None:
            process.kill()
