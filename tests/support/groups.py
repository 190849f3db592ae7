"""Consumer group members for the tests: in threads (one process) or as processes of their own.

:class:`CallLog` is a handler store in PostgreSQL (the test's database), shared by every member
of a group: each partition's position, every event received (no unique constraint, so a
duplicate shows), and every handler call with its member, partition and start and end times, so
a test can check that no two members' calls for one partition overlapped.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import psycopg

from pgsubscriber import Event, GroupMember, SubscriberSettings

SCHEMA = """
CREATE TABLE IF NOT EXISTS group_positions (partition int PRIMARY KEY, position bigint NOT NULL);
CREATE TABLE IF NOT EXISTS group_received (event_id bigint NOT NULL, partition int NOT NULL,
                                           member text NOT NULL, partition_key text);
CREATE TABLE IF NOT EXISTS group_calls (member text NOT NULL, partition int NOT NULL,
                                        first_id bigint NOT NULL, last_id bigint NOT NULL,
                                        started double precision NOT NULL,
                                        ended double precision NOT NULL);
"""


def create_call_log(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)


class CallLogHandler:
    """One partition's handler: a batch, its position and its call record in one transaction."""

    def __init__(
        self, dsn: str, member: str, partition: int, delay: float = 0.0, fence_ms: int | None = None
    ) -> None:
        self.dsn = dsn
        self.fence_ms = fence_ms
        self.member = member
        self.partition = partition
        self.delay = delay
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn)
            if self.fence_ms is not None:
                # The recipe for a store in PostgreSQL (pgsubscriber.group): the server ends this
                # session when it stays silent, idle or in a transaction, for less than the group's
                # lease timeout, so a member frozen before or in the middle of a call writes nothing
                # once it thaws after a takeover.
                for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
                    self._conn.execute("SELECT set_config(%s, %s, false)", (setting, str(self.fence_ms)))
                self._conn.commit()
        return self._conn

    def on_notification(self, events: list[Event]) -> None:
        started = time.time()
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO group_received (event_id, partition, member) "
                        "SELECT unnest(%s::bigint[]), %s, %s",
                        ([e.id for e in events], self.partition, self.member),
                    )
                    conn.execute(
                        "INSERT INTO group_positions VALUES (%s, %s) ON CONFLICT (partition) "
                        "DO UPDATE SET position = greatest(group_positions.position, excluded.position)",
                        (self.partition, events[-1].id),
                    )
                    if self.delay:
                        time.sleep(self.delay)
                    conn.execute(
                        "INSERT INTO group_calls VALUES (%s, %s, %s, %s, %s, %s)",
                        (self.member, self.partition, events[0].id, events[-1].id, started, time.time()),
                    )
            except (psycopg.OperationalError, psycopg.InterfaceError):
                conn.close()
                raise

    def get_latest_received_id(self) -> int:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    row = conn.execute(
                        "SELECT position FROM group_positions WHERE partition = %s", (self.partition,)
                    ).fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError):
                conn.close()
                raise
        return int(row[0]) if row else 0


def overlapping_calls(dsn: str) -> list[tuple[Any, ...]]:
    """Pairs of calls of different members on one partition whose times overlap."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT a.member, b.member, a.partition, a.first_id, a.last_id, b.first_id, b.last_id "
            "FROM group_calls a JOIN group_calls b ON a.partition = b.partition AND a.member < b.member "
            "AND a.started < b.ended AND b.started < a.ended"
        ).fetchall()


def received(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM group_received ORDER BY event_id")]


def calls_by(dsn: str, member: str, since: float = 0.0) -> list[tuple[float, float]]:
    """(started, ended) of each call of ``member`` that started after ``since`` (time.time())."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT started, ended FROM group_calls WHERE member = %s AND started > %s ORDER BY started",
            (member, since),
        ).fetchall()


def received_by_member(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT member, count(*) FROM group_received GROUP BY member").fetchall())


class MemberThread:
    """A GroupMember in a thread of its own (its own event loop)."""

    def __init__(self, settings: SubscriberSettings, store_dsn: str, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.member = GroupMember(lambda p: CallLogHandler(store_dsn, name, p, delay), settings)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"member-{name}", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self.member.run())
        except BaseException as exc:
            self.error = exc

    def start(self) -> MemberThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.member.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"member {self.name} did not stop"
        assert self.error is None, self.error


def member_process_main() -> None:
    """``python -m tests.support.groups``: a member process; settings from PGSUBSCRIBER_*."""
    from pgsubscriber import run_subscriber

    name = os.environ["GROUP_MEMBER_NAME"]
    store = os.environ["GROUP_STORE_DSN"]
    delay = float(os.environ.get("GROUP_HANDLER_DELAY", "0"))
    fence = os.environ.get("GROUP_STORE_FENCE_MS")
    fence_ms = int(fence) if fence else None
    run_subscriber(lambda p: CallLogHandler(store, name, p, delay, fence_ms), SubscriberSettings())


if __name__ == "__main__":
    member_process_main()
