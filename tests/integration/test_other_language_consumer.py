"""docs/protocol.md holds for a consumer in another language: the Node.js example receives exactly
the committed events, in order, once each, woken by NOTIFY; the page's psql session works as written.

The Node.js tests skip when node or npm is missing or ``npm ci`` cannot install the example's one
dependency (``pg``, from the npm registry), once per session, into a temporary copy.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgsubscriber.testing import terminate
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node-consumer"
PROTOCOL = ROOT / "docs" / "protocol.md"
SAFETY_POLL = 30.0  # the consumer's safety timeout: a wake-up well before it came from NOTIFY
BIG = 12345678901234567890123  # beyond 64 bits: the payload must carry it exactly
INSERT = "INSERT INTO events (topic, payload) VALUES (%s, %s) RETURNING id"
# The live producers' plan (see produce_live), and how many "courses" events it commits.
SINGLES, BATCHES, HELD = 60, 25, 6
LIVE_COMMITTED = (
    sum(1 for i in range(SINGLES) if i % 5 != 4)
    + sum(1 + i % 4 for i in range(BATCHES) if i % 5 != 4)
    + sum(2 for i in range(HELD) if i != 2)
)
IDLE_LISTENER_HELD = """
    SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory' AND classid = 1884487679 AND objid = 1 AND objsubid = 2
      AND mode = 'ShareLock' AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@pytest.fixture(scope="session")
def consume_js(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs examples/node-consumer/consume.js, its dependencies installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the Node.js consumer needs node and npm on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    if int(version.strip().lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"the Node.js consumer needs Node.js 18 or newer, found {version.strip()}")
    workdir = tmp_path_factory.mktemp("node-consumer")
    for name in ("package.json", "package-lock.json", "consume.js"):
        shutil.copy2(EXAMPLE / name, workdir / name)
    command = [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci did not finish within 300 s: is the npm registry reachable?")
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("npm error")]
        first = errors[0] if errors else done.stderr.strip()[-300:]
        pytest.skip(f"npm ci failed (is the npm registry reachable?): {first}")
    return [node, str(workdir / "consume.js")]


def url(conninfo: str) -> str:
    """A libpq connection string as the URL node-postgres takes."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user, password = quote(str(info["user"]), safe=""), quote(str(info.get("password", "")), safe="")
    host = quote(str(info.get("host", "localhost")), safe="")
    return f"postgresql://{user}:{password}@{host}:{info.get('port', 5432)}/{quote(str(info['dbname']))}"


class NodeConsumer:
    """consume.js as a child process; each line it prints is kept with the time it arrived."""

    def __init__(self, command: list[str], dsn: str, stderr_path: Path, *args: str) -> None:
        self._stderr_path = stderr_path
        self._stderr = stderr_path.open("w")
        self.process = subprocess.Popen(
            [*command, "--dsn", url(dsn), "--safety-poll", str(SAFETY_POLL), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[tuple[float, dict]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), json.loads(line)))

    @property
    def ids(self) -> list[int]:
        return [event["id"] for _, event in list(self.lines)]

    def printed_at(self, event_id: int) -> float | None:
        return next((at for at, event in list(self.lines) if event["id"] == event_id), None)

    def wait_for(self, ids: list[int], timeout: float = 30.0) -> None:
        wanted = set(ids)
        wait_until(
            lambda: wanted <= set(self.ids) or self.process.poll() is not None,
            timeout=timeout,
            message=f"the Node.js consumer to print ids up to {max(ids)}",
        )
        if self.process.poll() is not None:
            self._reader.join(5.0)  # it ended: every line it printed is read
        assert wanted <= set(self.ids), f"consume.js ended early: {self.stderr()}"

    def stderr(self) -> str:
        self._stderr.flush()
        return self._stderr_path.read_text()

    def close(self) -> None:
        terminate(self.process, 5.0)
        self._reader.join(5.0)
        self._stderr.close()


def produce_live(dsn: str, committed: list[tuple[int, ...]]) -> None:
    """3 producer threads, each transaction's ids appended to ``committed`` in commit order:
    autocommit single inserts (a fifth on a topic the consumer ignores), transactions of 1-4
    events (every fifth rolled back), and transactions held open while the others commit (one
    rolled back)."""
    lock = threading.Lock()
    errors: list[BaseException] = []

    def commit(conn: psycopg.Connection, ids: list[int]) -> None:
        conn.commit()
        with lock:
            committed.append(tuple(ids))

    def single() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(SINGLES):
                topic = "other" if i % 5 == 4 else "courses"
                event_id = conn.execute(INSERT, (topic, Jsonb({"n": BIG, "i": i}))).fetchone()[0]
                if topic == "courses":
                    with lock:
                        committed.append((event_id,))
                time.sleep(random.uniform(0, 0.01))

    def batches() -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(BATCHES):
                ids = [conn.execute(INSERT, ("courses", Jsonb({"n": BIG}))).fetchone()[0]]
                for _ in range(i % 4):
                    time.sleep(random.uniform(0, 0.005))
                    ids.append(conn.execute(INSERT, ("courses", Jsonb({"n": -BIG}))).fetchone()[0])
                if i % 5 == 4:
                    conn.rollback()
                else:
                    commit(conn, ids)

    def held_open() -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(HELD):
                ids = [conn.execute(INSERT, ("courses", Jsonb({"n": BIG}))).fetchone()[0] for _ in range(2)]
                time.sleep(0.25)  # the other threads commit later ids meanwhile
                if i == 2:
                    conn.rollback()
                else:
                    commit(conn, ids)

    def run(target) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in (single, batches, held_open)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_a_node_consumer_receives_exactly_the_committed_events_woken_by_notify(db, consume_js, tmp_path):
    """Wake-ups are timed against a 30 s safety poll: each event comes well before it or fails."""
    producer = db.role_dsn("events_producer")
    with psycopg.connect(producer, autocommit=True) as conn:
        backlog = [conn.execute(INSERT, ("courses", Jsonb({"n": BIG}))).fetchone()[0] for _ in range(4)]
    # A transaction that wrote before the consumer took its lock does not NOTIFY: the consumer
    # sees it in `writers` and polls until it ends.
    early = psycopg.connect(producer)
    early_id = early.execute(INSERT, ("courses", Jsonb({"n": BIG}))).fetchone()[0]
    committed: list[tuple[int, ...]] = []
    expected_count = 2 + 1 + LIVE_COMMITTED + 3  # 2 of the backlog, the early one, live, idle
    consumer = NodeConsumer(
        consume_js,
        db.role_dsn("events_consumer"),
        tmp_path / "consume.stderr",
        "--topics",
        "courses",
        "--after",
        str(backlog[1]),
        "--count",
        str(expected_count),
    )
    try:
        consumer.wait_for(backlog[2:], timeout=10)  # caught up from the start position
        time.sleep(0.5)
        assert early_id not in consumer.ids
        started = time.monotonic()
        early.commit()
        consumer.wait_for([early_id], timeout=10)
        assert consumer.printed_at(early_id) - started < 2.0, "a writer in flight was not polled for"

        produce_live(producer, committed)
        live = sorted(i for ids in committed for i in ids)
        consumer.wait_for(live, timeout=10)
        # Commits came out of id order: a transaction committed ids below ones committed before it.
        highest = 0
        out_of_order = False
        for ids in committed:
            out_of_order |= min(ids) < highest
            highest = max(highest, *ids)
        assert out_of_order

        # Idle, the consumer holds the idle-listener lock and waits for NOTIFY.
        latencies = []
        idle = []
        with psycopg.connect(producer, autocommit=True) as conn:
            for _ in range(3):
                time.sleep(1.0)
                assert db.scalar(IDLE_LISTENER_HELD) == 1
                started = time.monotonic()
                event_id = conn.execute(INSERT, ("courses", Jsonb({"n": BIG}))).fetchone()[0]
                idle.append(event_id)
                consumer.wait_for([event_id], timeout=SAFETY_POLL * 2)
                latencies.append(consumer.printed_at(event_id) - started)
        assert max(latencies) < 2.0, f"not woken by NOTIFY: {latencies} s (safety poll {SAFETY_POLL} s)"

        assert consumer.process.wait(10) == 0, consumer.stderr()  # it stops after --count events
    finally:
        early.close()
        consumer.close()
    expected = [*backlog[2:], early_id, *live, *idle]
    assert len(expected) == expected_count
    assert consumer.ids == expected, f"printed {consumer.ids}, committed {expected}"
    for _, event in consumer.lines:
        assert event["topic"] == "courses"
        assert event["payload"]["n"] in (BIG, -BIG)  # exact, not rounded to a double


def test_a_node_consumer_stops_after_its_time_limit(db, consume_js, tmp_path):
    started = time.monotonic()
    args = ["--topics", "courses", "--seconds", "1"]
    consumer = NodeConsumer(consume_js, db.role_dsn("events_consumer"), tmp_path / "stderr", *args)
    try:
        assert consumer.process.wait(15) == 0, consumer.stderr()
    finally:
        consumer.close()
    assert 1.0 <= time.monotonic() - started < 10.0
    assert consumer.ids == []


def psql_blocks() -> list[str]:
    """The SQL blocks of the page's "Try it in psql" section: the consumer's, the producer's."""
    section = PROTOCOL.read_text().split("## Try it in psql", 1)[1]
    return re.findall(r"^```sql\n(.*?)^```", section, re.MULTILINE | re.DOTALL)


PSQL_FETCHED = """
    SELECT count(*) FROM pg_stat_activity
    WHERE usename = 'events_consumer' AND datname = current_database()
      AND state = 'idle' AND query ILIKE 'COMMIT%%'
"""


def test_the_documented_psql_session_works_as_written(db):
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not on PATH")
    consumer_sql, producer_sql = psql_blocks()
    fetch = consumer_sql[consumer_sql.index("BEGIN") :]
    session = subprocess.Popen(
        [psql, "-X", "-v", "ON_ERROR_STOP=1", db.role_dsn("events_consumer")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdin is not None
        session.stdin.write(consumer_sql)
        session.stdin.flush()
        # The lock is taken and the first fetch has ended: the session waits for more input.
        wait_until(
            lambda: db.scalar(IDLE_LISTENER_HELD) == 1 and db.scalar(PSQL_FETCHED) == 1,
            timeout=15,
            message="the psql session to take the lock and fetch",
        )
        producer = subprocess.run(
            [psql, "-X", "-v", "ON_ERROR_STOP=1", db.role_dsn("events_producer")],
            input=producer_sql,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert producer.returncode == 0, producer.stderr
        out, err = session.communicate(fetch, timeout=30)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert session.returncode == 0, err
    assert "events:courses" in out
    first_fetch, second_fetch = out.split("COMMIT\n")[:2]
    assert "Asynchronous notification" not in first_fetch and str(BIG) not in first_fetch
    assert 'Asynchronous notification "events:courses" received from server process with PID' in second_fetch
    assert str(BIG) in second_fetch
