"""A group member's lease session: membership and partition ownership, as advisory locks.

One connection per member holds, as session advisory locks, a shared membership lock (so live
members can be counted in ``pg_locks``) and one exclusive lock per partition it owns. PostgreSQL
releases them when the session ends: at once when the member's process dies (its socket closes),
and after ``group_lease_timeout`` of silence when the member is frozen or cut off
(``idle_session_timeout``, set by the member on this session: the member checks the group far
more often, so a live member never reaches it). No lease is computed from clocks on the client.

Keys are single ``bigint`` advisory locks (``objsubid = 1`` in ``pg_locks``, apart from the
two-int keys of writers and listeners): the high 32 bits are a 31-bit hash of the group name,
the low 32 bits ``(partitions << 16) | slot``, slot 0 for membership and ``p + 1`` for partition
``p``. Members configured with another partition count hold other keys: each sees the other in
``group_state`` and delivers nothing until only one count is live. Two group names whose hashes
collide (about one pair in 2^31) would share their locks: a partition held by a member of one
would stall the same partition of the other (nothing is delivered twice; rename one group).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg

from pgsubscriber._queries import query
from pgsubscriber._session import _connect
from pgsubscriber.errors import ConnectionLostError
from pgsubscriber.settings import SubscriberSettings


def group_id(group: str) -> int:
    """The group's 31-bit number: the first 32 bits of md5(name), top bit cleared."""
    return int(hashlib.md5(group.encode(), usedforsecurity=False).hexdigest()[:8], 16) & 0x7FFFFFFF


def lock_key(group: str, partitions: int, slot: int) -> int:
    """The bigint advisory lock key of a slot (0: membership, p + 1: partition p)."""
    return (group_id(group) << 32) | (partitions << 16) | slot


@dataclass(frozen=True)
class GroupState:
    members: int
    owned: frozenset[int]
    other_partition_counts: tuple[int, ...]


class Lease:
    """The lease session of one member, between two reconnects."""

    def __init__(self, settings: SubscriberSettings, conn: psycopg.AsyncConnection[Any]) -> None:
        assert settings.group is not None
        self._settings = settings
        self._conn = conn
        self._group_id = group_id(settings.group)
        self._partitions = settings.partitions
        self.backend_pid = conn.info.backend_pid
        self.lost = False
        """Set once a query failed: the member acts as if it owned nothing."""
        self._pending: set[asyncio.Future[tuple[Any, ...]]] = set()

    @classmethod
    async def open(cls, settings: SubscriberSettings) -> Lease:
        """Connect (``listen_dsn`` when set: a lease needs a session, not a pooler) and join."""
        assert settings.group is not None
        conn = await _connect(settings.listen_dsn or settings.dsn, settings)
        lease = cls(settings, conn)
        try:
            await lease._run(
                "group_join",
                {
                    "lease_timeout_ms": str(int(settings.group_lease_timeout * 1000)),
                    "statement_timeout_ms": str(int(settings.heartbeat_timeout * 1000)),
                    "member_key": lock_key(settings.group, settings.partitions, 0),
                },
            )
        except BaseException:
            await lease.close()
            raise
        return lease

    def _objid(self, slot: int) -> int:
        return (self._partitions << 16) | slot

    def _key(self, partition: int) -> int:
        return (self._group_id << 32) | self._objid(partition + 1)

    async def _run(self, name: str, params: dict[str, Any]) -> tuple[Any, ...]:
        """One bounded round trip; any failure marks the lease lost.

        A query left without an answer does not close the connection here (unlike the fetch's
        bound): the member first stops its partitions, so that a handler call in progress ends
        before the server can see the session go and free the partitions; :meth:`close` then
        closes it.
        """
        if self.lost:
            raise ConnectionLostError("the group lease was lost")
        task = asyncio.ensure_future(self._execute(name, params))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._settings.heartbeat_timeout)
        except BaseException:
            self.lost = True
            self._pending.add(task)
            raise
        if not done:
            self.lost = True
            self._pending.add(task)
            raise ConnectionLostError(
                f"the group lease got no answer within {self._settings.heartbeat_timeout:g}s: "
                "the connection is treated as dead"
            )
        try:
            return task.result()
        except BaseException:
            self.lost = True
            raise

    async def _execute(self, name: str, params: dict[str, Any]) -> tuple[Any, ...]:
        cur = await self._conn.execute(query(name), params)
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)

    async def state(self) -> GroupState:
        row = await self._run(
            "group_state",
            {"group_id": self._group_id, "member_objid": self._objid(0), "partitions": self._partitions},
        )
        return GroupState(int(row[0]), frozenset(row[1] or ()), tuple(sorted(row[2] or ())))

    async def take(self, partition: int) -> bool:
        row = await self._run("group_take", {"partition_key": self._key(partition)})
        return bool(row[0])

    async def release(self, partition: int) -> None:
        await self._run("group_release", {"partition_key": self._key(partition)})

    async def owns(self, partition: int) -> bool:
        """True only if the server answers, now, that this session holds the partition."""
        if self.lost:
            return False
        try:
            row = await self._run(
                "group_owns", {"group_id": self._group_id, "objid": self._objid(partition + 1)}
            )
        except Exception:
            return False
        return bool(row[0])

    async def close(self) -> None:
        self.lost = True
        await self._conn.close()
        for task in self._pending:
            task.cancel()
        if self._pending:
            await asyncio.wait(self._pending, timeout=1.0)
