"""The partition of an event, and the delivery session of one partition of a consumer group."""

from __future__ import annotations

import hashlib
from typing import Any

from pgsubscriber._queries import query
from pgsubscriber._session import Batch, Session
from pgsubscriber.settings import SubscriberSettings


def partition_of(partition_key: str | None, event_id: int, partitions: int) -> int:
    """The partition of an event among ``partitions``, as ``events_partition`` computes it in SQL:
    the first 32 bits of md5(partition_key) (UTF-8) modulo ``partitions``, or the id modulo
    ``partitions`` when the event has no partition key."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    if partition_key is None:
        return event_id % partitions
    digest = hashlib.md5(partition_key.encode(), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) % partitions


class PartitionSession(Session):
    """A :class:`Session` whose fetch delivers one partition's events only.

    The scan of a partition reads the topics' index ranges and skips other partitions' rows, so a
    partition without events since its position would rescan the same range on every round. When
    the position asked for is the one of the previous fetch and that fetch was not cut short, its
    range up to the horizon held no event of the partition (every id up to the horizon is
    committed or gone for good), so the next scan starts at that horizon.
    """

    partitions = 1
    partition = 0
    _scanned: tuple[int, int] | None = None  # (after_id asked, scanned up to)

    @classmethod
    async def open_partition(
        cls, settings: SubscriberSettings, partitions: int, partition: int
    ) -> PartitionSession:
        session = await cls.open(settings)
        assert isinstance(session, PartitionSession)
        session.partitions = partitions
        session.partition = partition
        return session

    async def fetch(self, after_id: int, limit: int) -> Batch:
        start = after_id
        if self._scanned is not None and self._scanned[0] == after_id:
            start = max(after_id, self._scanned[1])
        batch = await super().fetch(start, limit)
        if not batch.more and not batch.events:
            self._scanned = (after_id, max(start, batch.horizon.safe_id))
        else:
            self._scanned = None
        return batch

    async def _fetch_rows(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        params = {**params, "partitions": self.partitions, "partition": self.partition}
        cur = await self._conn.execute(query("fetch_partition"), params)
        return await cur.fetchall()
