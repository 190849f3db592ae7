"""The runnable entry points, as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_producer_publishes_the_requested_count_on_two_topics(db):
    env = {
        **os.environ,
        "PRODUCER_DSN": db.role_dsn("events_producer"),
        "PRODUCER_RATE": "500",
        "PRODUCER_COUNT": "60",
        "PRODUCER_BATCH_SIZE": "7",
        "PRODUCER_SEED": "1",
    }
    done = subprocess.run(
        # A service of the repository: it runs from the checkout, like the compose file's image does.
        [sys.executable, "-m", "producer"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert db.scalar("SELECT count(*) FROM events") == 60
    assert db.scalar("SELECT count(DISTINCT topic) FROM events") == 2
    assert db.scalar("SELECT count(DISTINCT key) FROM events") == 60


def test_run_subscriber_blocks_and_stops_cleanly_on_sigterm(db, tmp_path):
    out = tmp_path / "received.txt"
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import logging
        from pgsubscriber import run_subscriber

        class Handler:
            latest = 0
            def on_notification(self, events):
                with open({str(out)!r}, "a") as f:
                    f.writelines(f"{{e.id}}\\n" for e in events)
                self.latest = events[-1].id
            def get_latest_received_id(self):
                return self.latest

        logging.basicConfig(level=logging.INFO)
        run_subscriber(Handler())
        print("clean exit")
    """)
    )
    env = {**os.environ, "PGSUBSCRIBER_DSN": db.role_dsn("events_consumer"), "PGSUBSCRIBER_TOPICS": "courses"}
    with db.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO events (topic, payload) SELECT 'courses', '{}' FROM generate_series(1, 5)")
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: out.exists() and len(out.read_text().split()) == 5, timeout=30)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "clean exit" in stdout and "received SIGTERM" in stderr
    assert time.monotonic() - started < 10
