"""Consumer groups under real faults, with members as processes of their own.

The active member is SIGKILLed, blackholed (its connections go through the test proxy) or
SIGSTOPped while a producer runs. Each time a standby must take over within the documented bound,
nothing may be lost, and no two members' handler calls for one partition may overlap in time: the
handler records every call (member, partition, start, end) in the store, and the test checks them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from pgsubscriber.testing import FaultyProxy
from pgsubscriber.testing.processes import terminate
from tests.support.groups import calls_by, create_call_log, overlapping_calls, received
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CHECK_INTERVAL = 0.2
LEASE_TIMEOUT = 3.0
#: The store's own sessions end after this much silence, below the lease timeout (see
#: tests/support/groups.py): a member frozen mid-call writes nothing after a takeover.
STORE_FENCE_MS = 1500
#: Startup, connect and catch-up on a shared 2-core machine, beyond the documented bound.
SLACK = 4.0


class Producer:
    """Publishes one "courses" event every few milliseconds until stopped."""

    def __init__(self, dsn: str, keys: int = 0, interval: float = 0.005) -> None:
        self.dsn, self.keys, self.interval = dsn, keys, interval
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                key = f"course-{self.count % self.keys}" if self.keys else None
                conn.execute(
                    "INSERT INTO events (topic, payload, partition_key) VALUES ('courses', '{}', %s)", (key,)
                )
                self.count += 1
                time.sleep(self.interval)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Members:
    """Member processes (``python -m tests.support.groups``), stopped at the end of the test."""

    def __init__(self, db, partitions: int = 1) -> None:
        self.db = db
        self.partitions = partitions
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, port: int | None = None) -> subprocess.Popen[bytes]:
        dsn = self.db.role_dsn("events_consumer")
        if port is not None:
            dsn = dsn.replace(f"port={self.db.server.port}", f"port={port}")
        env = {
            **os.environ,
            "PGSUBSCRIBER_DSN": dsn,
            "PGSUBSCRIBER_TOPICS": "courses",
            "PGSUBSCRIBER_GROUP": "chaos-group",
            "PGSUBSCRIBER_PARTITIONS": str(self.partitions),
            "PGSUBSCRIBER_GROUP_CHECK_INTERVAL": str(CHECK_INTERVAL),
            "PGSUBSCRIBER_GROUP_LEASE_TIMEOUT": str(LEASE_TIMEOUT),
            "PGSUBSCRIBER_HEARTBEAT_INTERVAL": "1",
            "PGSUBSCRIBER_HEARTBEAT_TIMEOUT": "1",
            "PGSUBSCRIBER_QUERY_TIMEOUT": "2",
            "PGSUBSCRIBER_RECONNECT_MAX_DELAY": "1",
            "PGSUBSCRIBER_HANDLER_RETRY_INITIAL_DELAY": "0.05",
            "PGSUBSCRIBER_HANDLER_RETRY_MAX_DELAY": "0.2",
            "GROUP_MEMBER_NAME": name,
            "GROUP_STORE_DSN": self.db.dsn,
            "GROUP_STORE_FENCE_MS": str(STORE_FENCE_MS),
        }
        process = subprocess.Popen([sys.executable, "-m", "tests.support.groups"], cwd=ROOT, env=env)
        self.processes[name] = process
        return process

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                terminate(process, 20)


def live_members(db) -> int:
    from pgsubscriber._lease import group_id

    return int(
        db.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
            "AND classid = %s::oid AND objid::bigint & 65535 = 0 AND mode = 'ShareLock'",
            (group_id("chaos-group"),),
        )
    )


def all_ids(db) -> list[int]:
    with db.connect() as conn:
        return [r[0] for r in conn.execute("SELECT id FROM events WHERE topic = 'courses' ORDER BY id")]


def wait_for_calls(db, member: str, since: float = 0.0, timeout: float = 30.0) -> None:
    wait_until(lambda: calls_by(db.dsn, member, since), timeout=timeout, message=f"a call by {member}")


def assert_exactly_once_and_never_together(db) -> None:
    expected = all_ids(db)
    wait_until(lambda: len(received(db.dsn)) >= len(expected), timeout=60, message="catch-up")
    got = received(db.dsn)
    assert len(got) == len(set(got)), f"delivered twice: {sorted({i for i in got if got.count(i) > 1})[:10]}"
    assert got == expected, f"missing: {sorted(set(expected) - set(got))[:10]}"
    assert overlapping_calls(db.dsn) == []


@pytest.mark.parametrize("fault", ["sigkill", "blackhole", "sigstop"])
def test_a_standby_takes_over_from_a_failed_active_member_within_the_bound(db, pg_server, fault):
    create_call_log(db.dsn)
    members = Members(db)
    with ExitStack() as stack:
        stack.callback(members.stop_all)
        proxy = stack.enter_context(FaultyProxy(pg_server.port)) if fault == "blackhole" else None
        producer = Producer(db.role_dsn("events_producer"))
        with producer:
            victim = members.start("victim", proxy.port if proxy else None)
            wait_for_calls(db, "victim")
            members.start("standby")
            wait_until(lambda: live_members(db) == 2, message="two members")
            time.sleep(0.5)
            assert calls_by(db.dsn, "standby") == [], "a standby delivered"
            faulted_at = time.time()
            if fault == "sigkill":
                victim.kill()
                bound = CHECK_INTERVAL
            elif fault == "blackhole":
                # A network partition: the member's own close of its lease does not reach the
                # server either, nor can it reconnect; the server ends the silent session after the
                # lease timeout.
                assert proxy is not None and proxy.partition() >= 2
                bound = LEASE_TIMEOUT + CHECK_INTERVAL
            else:
                os.kill(victim.pid, signal.SIGSTOP)
                bound = LEASE_TIMEOUT + CHECK_INTERVAL
            wait_for_calls(db, "standby", timeout=bound + 30)
            takeover = calls_by(db.dsn, "standby")[0][0] - faulted_at
            if fault == "sigstop":
                time.sleep(1.0)
                os.kill(victim.pid, signal.SIGCONT)  # thawed: it must not deliver what it held
            if proxy is not None:
                proxy.heal()  # it reconnects, and stands by
            time.sleep(1.5)
        assert producer.count > 0
        assert_exactly_once_and_never_together(db)
        late = [c for c in calls_by(db.dsn, "victim", faulted_at) if c[1] > faulted_at + takeover]
        assert late == [], f"the failed member delivered after the takeover: {late}"
    print(f"\n{fault}: takeover after {takeover:.2f}s (bound {bound:.1f}s)")
    assert takeover < bound + SLACK, takeover


def test_partitions_move_to_the_live_members_when_one_of_three_is_killed(db):
    create_call_log(db.dsn)
    members = Members(db, partitions=3)
    try:
        with Producer(db.role_dsn("events_producer"), keys=30):
            for name in ("m0", "m1", "m2"):
                members.start(name)
            wait_until(lambda: live_members(db) == 3, message="three members")
            for name in ("m0", "m1", "m2"):
                wait_for_calls(db, name)
            for round_ in range(2):
                victim = f"m{round_}"
                killed_at = time.time()
                members.processes[victim].kill()
                members.processes[victim].wait()
                time.sleep(2 * CHECK_INTERVAL + SLACK / 2)
                members.start(victim)
                wait_for_calls(db, victim, since=time.time())
                assert killed_at
    finally:
        members.stop_all()
    assert_exactly_once_and_never_together(db)
