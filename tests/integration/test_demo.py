"""``python -m demo`` as a newcomer runs it: everything starts, courses appear, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import alive, descendants
from tests.support.waiting import wait_until
from webconsumer.embedded_mongo import free_port

pytestmark = [pytest.mark.integration, pytest.mark.mongo]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The demo's TMPDIR: every temporary file it makes lands here (readable by the postgres user)."""
    path = Path(tempfile.mkdtemp(prefix="demo-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def postgres_pids(scratch: Path) -> set[int]:
    """The postmaster of the demo's cluster and its children."""
    pids: set[int] = set()
    for pidfile in scratch.glob("pgsubscriber-pg-*/data/postmaster.pid"):
        postmaster = int(pidfile.read_text().splitlines()[0])
        pids |= {postmaster, *descendants(postmaster)}
    return pids


def test_one_command_runs_the_system_and_ctrl_c_stops_everything(scratch, tmp_path):
    port = free_port()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT)}
    for name in ("MONGO_URL", "PRODUCER_RATE", "WEBCONSUMER_PORT"):
        env.pop(name, None)
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    started = time.monotonic()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--port", str(port), "--rate", "20"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
    pids: set[int] = set()
    try:

        def courses_served() -> bool:
            assert demo.poll() is None, stderr.read_text()[-3000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                courses = httpx.get(f"http://127.0.0.1:{port}/courses", timeout=2)
            except httpx.HTTPError:
                return False
            return health.status_code == 200 and bool(courses.json()["courses"])

        wait_until(courses_served, timeout=90, interval=0.2, message="the demo to serve courses")
        first_course = time.monotonic() - started
        print(f"demo: first course served {first_course:.1f}s after the command started")
        assert f"http://localhost:{port}/courses" in stdout.read_text()

        pids = descendants(demo.pid) | postgres_pids(scratch)
        assert len(pids) >= 5, pids  # producer, web consumer, purger, MongoDB, PostgreSQL
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, stderr.read_text()[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    assert not [pid for pid in pids if alive(pid)], "processes left behind"
    assert list(scratch.iterdir()) == [], "temporary files left behind"
    assert "stopped; temporary files removed" in stderr.read_text()


def test_a_port_in_use_is_reported_before_anything_starts(scratch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "demo", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr
    assert list(scratch.iterdir()) == []
