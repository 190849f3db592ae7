"""``python -m demo`` as a newcomer runs it: everything starts, courses appear, the lines it prints make
the README's examples run as written in another terminal, Ctrl-C leaves nothing behind,
and a start that fails leaves nothing either and says why in one line."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from pymongo import MongoClient

from tests.support.processes import alive, descendants
from tests.support.waiting import wait_until
from webconsumer.embedded_mongo import free_port

pytestmark = [pytest.mark.integration, pytest.mark.mongo]

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def readme_code(after: str) -> list[tuple[str, str]]:
    """(language, code) of each code block between the line ``after`` and the next heading."""
    blocks = []
    for found in re.finditer(r"^```(\w+)\n(.*?)^```|^#+ ", README.split(after, 1)[1], re.S | re.M):
        if found.group(1) is None:
            break  # the next heading (a comment in a code block is part of the block's match)
        blocks.append((found.group(1), found.group(2)))
    return blocks


def make_scratch() -> Path:
    """The demo's TMPDIR: every temporary file it makes lands here (readable by the postgres user)."""
    path = Path(tempfile.mkdtemp(prefix="demo-test-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = make_scratch()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def demo_environment(scratch: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT), **extra}
    for name in ("MONGO_URL", "PRODUCER_RATE", "WEBCONSUMER_PORT", "DATABASE_URL", "PG_BINDIR"):
        if name not in extra:
            env.pop(name, None)
    return env


def postgres_pids(scratch: Path) -> set[int]:
    """The postmaster of the demo's cluster and its children."""
    pids: set[int] = set()
    for pidfile in scratch.glob("pgsubscriber-pg-*/data/postmaster.pid"):
        postmaster = int(pidfile.read_text().splitlines()[0])
        pids |= {postmaster, *descendants(postmaster)}
    return pids


def processes_of(scratch: Path) -> list[str]:
    """Every live process started for the demo: its TMPDIR in the environment or its files in argv."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not alive(int(entry.name)):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(scratch) in cmdline or f"TMPDIR={scratch}".encode() in environ:
            found.append(f"{entry.name}: {cmdline}")
    return found


@dataclass
class Demo:
    """``python -m demo`` in its own process group, as a shell runs a job in a terminal."""

    process: subprocess.Popen[bytes]
    port: int
    scratch: Path
    stdout: Path
    stderr: Path

    def out(self) -> str:
        return self.stdout.read_text()

    def err(self) -> str:
        return self.stderr.read_text()

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        def printed() -> bool:
            assert self.process.poll() is None, self.err()[-3000:]
            return text in self.out()

        wait_until(printed, timeout=timeout, interval=0.05, message=f"the demo to print {text!r}")

    def exports(self) -> dict[str, str]:
        """The variables of the ``export`` lines it printed, as a shell reads them."""
        found = {}
        for line in self.out().splitlines():
            if line.startswith("export "):
                words = shlex.split(line)
                assert len(words) == 2, line
                name, _, value = words[1].partition("=")
                found[name] = value
        return found

    def press_enter(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"\n")
        self.process.stdin.flush()

    def ctrl_c(self) -> float:
        """SIGINT to the demo's process group, as a terminal sends it; the seconds until it exited."""
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        status = self.process.wait(60)  # only to fail a hang
        elapsed = time.monotonic() - started
        assert status == 0, self.err()[-3000:]
        return elapsed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_demo(scratch: Path, logs: Path, *args: str) -> Demo:
    port = free_port()
    stdout, stderr = logs / "demo-stdout.txt", logs / "demo-stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "demo", "--port", str(port), *args],
            cwd=ROOT,
            env=demo_environment(scratch),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            process_group=0,
        )
    return Demo(process, port, scratch, stdout, stderr)


def wait_for_courses(demo: Demo) -> None:
    def courses_served() -> bool:
        assert demo.process.poll() is None, demo.err()[-3000:]
        try:
            health = httpx.get(f"http://127.0.0.1:{demo.port}/health", timeout=2)
            courses = httpx.get(f"http://127.0.0.1:{demo.port}/courses", timeout=2)
        except httpx.HTTPError:
            return False
        return health.status_code == 200 and bool(courses.json()["courses"])

    wait_until(courses_served, timeout=90, interval=0.2, message="the demo to serve courses")


def test_one_command_runs_the_system_and_ctrl_c_stops_everything_in_order(scratch, tmp_path):
    started = time.monotonic()
    demo = start_demo(scratch, tmp_path, "--rate", "20")
    pids: set[int] = set()
    try:
        wait_for_courses(demo)
        print(f"demo: first course served {time.monotonic() - started:.1f}s after the command started")
        assert f"http://localhost:{demo.port}/courses" in demo.out()

        children = descendants(demo.process.pid)
        pids = children | postgres_pids(scratch)
        assert len(pids) >= 5, pids  # producer, web consumer, purger, MongoDB, PostgreSQL
        # A terminal's Ctrl-C reaches its whole foreground process group: only the demo may be in
        # it, so that it stops the others in order (MongoDB after the web consumer that writes to it).
        in_group = [pid for pid in children if os.getpgid(pid) == demo.process.pid]
        assert not in_group, f"in the demo's process group: {in_group}"
        httpx.get(f"http://127.0.0.1:{demo.port}/courses", timeout=2)
        time.sleep(0.5)

        elapsed = demo.ctrl_c()
        print(f"demo: Ctrl-C to exit (every process stopped, every file removed) in {elapsed:.2f}s")
    finally:
        demo.kill()
    assert not [pid for pid in pids if alive(pid)], "processes left behind"
    assert list(scratch.iterdir()) == [], "temporary files left behind"
    assert "stopped; temporary files removed" in demo.err()
    # How long it took is printed above (a figure, not a pass mark: it depends on the machine's
    # load). What makes it quick is checked: the web consumer stopped cleanly while MongoDB still
    # answered, instead of waiting out pymongo's server-selection timeout on a dead MongoDB.
    log = demo.err()
    assert "web consumer stopped" in log, log[-3000:]
    assert "ServerSelectionTimeoutError" not in log and "AutoReconnect" not in log, log[-3000:]


# One demo for the checks of what it prints; Ctrl-C ends it, and nothing may be left.
@pytest.fixture(scope="module")
def running_demo() -> Iterator[Demo]:
    scratch = make_scratch()
    logs = Path(tempfile.mkdtemp(prefix="demo-test-logs-"))
    demo = start_demo(scratch, logs, "--rate", "20")
    try:
        demo.wait_for_output("Press Ctrl-C")
        wait_for_courses(demo)
        yield demo
        demo.ctrl_c()
        assert processes_of(scratch) == []
        assert list(scratch.iterdir()) == []
    finally:
        demo.kill()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def test_the_printed_export_lines_reach_the_demo(running_demo):
    exports = running_demo.exports()
    assert set(exports) == {"PGSUBSCRIBER_DSN", "PRODUCER_DSN", "DATABASE_URL", "MONGO_URL"}
    for variable, role in [
        ("PGSUBSCRIBER_DSN", "events_consumer"),
        ("PRODUCER_DSN", "events_producer"),
        ("DATABASE_URL", "postgres"),
    ]:
        with psycopg.connect(exports[variable], connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,), variable
    with psycopg.connect(exports["PGSUBSCRIBER_DSN"], connect_timeout=5) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events WHERE topic = 'courses'").fetchone()
        assert count > 0
    with MongoClient(exports["MONGO_URL"], serverSelectionTimeoutMS=3000) as client:
        assert client.admin.command("ping")["ok"] == 1
        assert client["consumer"]["receivedEvents"].count_documents({}) > 0


def test_the_readme_handler_runs_as_written_with_the_printed_lines(running_demo, tmp_path):
    [(language, code)] = readme_code("A handler in 15 lines:")
    assert language == "python"
    assert len(code.splitlines()) <= 15
    script = tmp_path / "handler.py"
    script.write_text(code)
    env = {**demo_environment(running_demo.scratch), **running_demo.exports(), "PYTHONUNBUFFERED": "1"}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        handler = subprocess.Popen([sys.executable, str(script)], env=env, stdout=stdout, stderr=stderr)
    try:

        def printed_events() -> bool:
            assert handler.poll() is None, err.read_text()
            return len(re.findall(r"^\d+ courses \{", out.read_text(), re.M)) >= 3

        wait_until(printed_events, timeout=30, interval=0.1, message="the handler to print events")
        handler.send_signal(signal.SIGINT)
        assert handler.wait(30) == 0, err.read_text()
    finally:
        if handler.poll() is None:
            handler.kill()
            handler.wait(10)
    assert "Traceback" not in err.read_text()


def test_the_readme_verify_recipe_finds_nothing_missing_once_the_producer_is_paused(running_demo):
    blocks = dict(readme_code("### Verify events received"))
    exports = running_demo.exports()
    env = {**demo_environment(running_demo.scratch), **exports}

    running_demo.press_enter()
    running_demo.wait_for_output("the web consumer has received every event")
    with psycopg.connect(exports["DATABASE_URL"]) as conn:
        (produced,) = conn.execute("SELECT count(*) FROM events WHERE topic = 'courses'").fetchone()
    assert produced > 0

    done = subprocess.run(
        [sys.executable, "-c", blocks["python"]], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    print(f"README verify recipe: {done.stdout.strip()}")
    assert re.search(rf"^{produced} events, {produced} received, 0 missing, 0 duplicates$", done.stdout, re.M)

    if shutil.which("psql"):
        done = subprocess.run(
            ["bash", "-c", blocks["bash"]], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert re.search(rf"^\s*{produced}\s*\|", done.stdout, re.M), done.stdout

    running_demo.press_enter()
    running_demo.wait_for_output("producer resumed")

    def producing_again() -> bool:
        with psycopg.connect(exports["DATABASE_URL"]) as conn:
            row = conn.execute("SELECT count(*) FROM events WHERE topic = 'courses'").fetchone()
        return row is not None and row[0] > produced

    wait_until(producing_again, timeout=30, interval=0.1, message="the producer to publish again")


def own_lines(stderr: str) -> list[str]:
    """The demo's own lines: not its services' (``[name] ...``), not its log lines."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("[") and not re.match(r"\d{4}-\d\d-\d\d ", line)
    ]


def fake_mongod(directory: Path) -> dict[str, str]:
    """A ``mongod`` on PATH that fails at once: the embedded MongoDB cannot start."""
    directory.mkdir()
    mongod = directory / "mongod"
    mongod.write_text("#!/bin/sh\necho 'mongod: refusing to start' >&2\nexit 1\n")
    mongod.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize(
    "failure",
    ["port taken", "no PostgreSQL binaries", "MongoDB cannot start", "a service exits at once"],
)
def test_a_failed_start_leaves_nothing_and_says_why_in_one_line(failure, scratch, tmp_path):
    port = free_port()
    extra: dict[str, str] = {}
    expected = {
        "port taken": f"error: port {port} is in use",
        "no PostgreSQL binaries": "error: could not start the demo: PG_BINDIR=",
        "MongoDB cannot start": "error: could not start the demo: MONGO_URL is not set and no embedded "
        "MongoDB could start: mongod exited at start",
        "a service exits at once": "error: could not start the demo: web_consumer exited at start",
    }[failure]
    if failure == "no PostgreSQL binaries":
        extra["PG_BINDIR"] = str(tmp_path / "no-such-directory")
    elif failure == "MongoDB cannot start":
        extra.update(fake_mongod(tmp_path / "bin"))
    elif failure == "a service exits at once":
        extra["MONGO_URL"] = "http://not-mongodb"  # the web consumer cannot start with it
    with socket.socket() as busy:
        if failure == "port taken":
            busy.bind(("127.0.0.1", port))
            busy.listen()
        done = subprocess.run(
            [sys.executable, "-m", "demo", "--port", str(port)],
            cwd=ROOT,
            env=demo_environment(scratch, **extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    lines = own_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert "Traceback" not in "\n".join([*lines, done.stdout])
    assert processes_of(scratch) == [], "processes left behind"
    assert list(scratch.iterdir()) == [], "temporary files left behind"
