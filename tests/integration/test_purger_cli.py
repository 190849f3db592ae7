"""``python -m purger`` as a real process: one pass, the loop and its clean stop, refused starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from pgsubscriber.testing.postgres import free_port
from tests.support.purger_fixtures import event_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
ROOT = Path(__file__).resolve().parents[2]


def purger_env(dsn: str, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PURGER_")}
    env.update(PURGER_DSN=dsn, **{f"PURGER_{k.upper()}": v for k, v in variables.items()})
    # The package from this checkout, also where the installed distribution predates it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def run_purger(env: dict[str, str], *args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "purger", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_once_deletes_what_has_expired_and_reports_it(db, purger_dsn, aged_events, server_now, tmp_path):
    aged_events("courses", [server_now - 2 * HOUR] * 3)
    audit = aged_events("audit", [server_now - 2 * HOUR])
    young = aged_events("courses", [server_now])
    env = purger_env(purger_dsn, retention="1h", topic_retention="audit=90d", batch_size="2")

    done = run_purger(env, "--once", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert event_ids(db) == sorted(audit + young)
    assert "retention 1h (audit: 90d)" in done.stderr
    assert "purge pass: deleted 3 event(s) in 3 batch(es)" in done.stderr
    assert "oldest remaining event created at" in done.stderr


def test_the_loop_purges_then_stops_cleanly_on_sigterm(db, purger_dsn, aged_events, server_now, tmp_path):
    aged_events("courses", [server_now - 2 * HOUR] * 2)
    log = tmp_path / "purger.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "purger", "--retention", "1h", "--interval", "1h"],
            cwd=tmp_path,
            env=purger_env(purger_dsn),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        wait_until(lambda: "purge pass: deleted 2 event(s)" in log.read_text(), message="the first pass")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        proc.kill()
    assert "received SIGTERM" in log.read_text() and "purger stopped" in log.read_text()
    assert event_ids(db) == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"retention": "10m"}, "safety minimum of 1h"),
        ({"retention": "7 days"}, "cannot read duration '7 days'"),
        ({"retention": "7d", "topic_retention": "audit=-1d"}, "negative"),
    ],
)
def test_bad_configuration_refuses_to_start(
    db, purger_dsn, aged_events, server_now, tmp_path, variables, expected
):
    old = aged_events("courses", [server_now - 2 * HOUR])
    done = run_purger(purger_env(purger_dsn, **variables), "--once", cwd=tmp_path)
    assert done.returncode == 2
    assert expected in done.stderr and done.stderr.startswith("error: invalid purger settings")
    assert event_ids(db) == old


def test_a_login_outside_events_purger_refuses_to_start(db, tmp_path):
    done = run_purger(purger_env(db.role_dsn("events_consumer"), retention="7d"), "--once", cwd=tmp_path)
    assert done.returncode == 2
    assert "not a member of events_purger" in done.stderr


def test_once_exits_non_zero_when_the_database_is_unreachable(tmp_path):
    dsn = f"postgresql://events_purger:test@127.0.0.1:{free_port()}/app?connect_timeout=2"
    done = run_purger(purger_env(dsn, retention="7d"), "--once", cwd=tmp_path)
    assert done.returncode == 1
    assert "purge pass failed" in done.stderr
