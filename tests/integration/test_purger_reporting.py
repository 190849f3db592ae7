"""The purger reports what it did: its row in events_purger_passes (status, dashboard) and, as a
service, Prometheus metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from datetime import timedelta

import pytest

from pgsubscriber import read_status
from pgsubscriber.monitor import connect
from pgsubscriber.testing.postgres import free_port
from tests.integration.test_purger_cli import purger_env, run_purger
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


def purgers(db):
    with connect(db.role_dsn("events_consumer")) as conn:
        return read_status(conn).purgers


def test_a_pass_is_recorded_and_shown_by_the_status(db, purger_dsn, aged_events, server_now, tmp_path):
    aged_events("courses", [server_now - 2 * HOUR] * 3)
    with db.connect(autocommit=True) as owner:  # a subscriber record gone for two days
        owner.execute(
            "INSERT INTO events_subscribers (instance, db_role, name, host, pid, topics, mode, "
            "heartbeat_seconds, last_seen) VALUES (gen_random_uuid(), 'events_consumer', 'old', 'h', 1, "
            "'{courses}', 'listening', 5, now() - interval '2 days')"
        )
    done = run_purger(purger_env(purger_dsn, retention="1h"), "--once", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (purger,) = purgers(db)
    assert purger.last_deleted == 3 and purger.total_deleted == 3 and purger.last_pass_at is not None
    assert purger.next_pass_at is None and purger.last_error is None  # --once: no next pass
    assert db.scalar("SELECT count(*) FROM events_subscribers") == 0
    text = subprocess.run(
        [sys.executable, "-m", "pgsubscriber", "status", "--dsn", db.role_dsn("events_consumer")],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "PURGER" in text and purger.host in text


def test_the_service_serves_prometheus_metrics_and_its_next_pass(
    db, purger_dsn, aged_events, server_now, tmp_path
):
    aged_events("courses", [server_now - 2 * HOUR] * 2)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "purger",
            "--retention",
            "1h",
            "--interval",
            "1h",
            "--metrics-port",
            str(port),
        ],
        cwd=tmp_path,
        env=purger_env(purger_dsn),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def metrics() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return ""

        wait_until(lambda: "purger_passes_total 1.0" in metrics(), message="one pass counted")
        assert "purger_events_deleted_total 2.0" in metrics()
        assert "purger_next_pass_timestamp_seconds" in metrics()
        (purger,) = purgers(db)
        assert purger.next_pass_at is not None and purger.last_deleted == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
