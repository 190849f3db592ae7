"""The project in the peer comparison: ``publish``/``publish_many`` and the real ``Subscriber``.

Producer: one autocommit ``publish`` per event (shape 1/commit) or one ``publish_many`` of 100
events per transaction. Consumer: a ``Subscriber`` whose handler records the events, then writes
its position to a PostgreSQL table in one transaction per handler call (the durable ack);
``get_latest_received_id`` returns that stored position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from bench._sql import query
from bench.payloads import TOPIC
from bench.peering import Shape, Sink
from pgsubscriber import Event, Subscriber, SubscriberSettings
from pgsubscriber.publish import NewEvent, publish, publish_many


class _Producer:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    async def send(self, payloads: Sequence[dict[str, Any]]) -> None:
        # The sync API in a process of its own: nothing else waits on this event loop.
        if len(payloads) == 1:
            publish(self._conn, TOPIC, payloads[0])
        else:
            publish_many(self._conn, [NewEvent(TOPIC, p) for p in payloads])

    async def close(self) -> None:
        self._conn.close()


class _PositionHandler:
    """Records the events, then stores the position durably (one transaction per call)."""

    def __init__(self, sink: Sink, conn: psycopg.Connection[Any]) -> None:
        self._sink = sink
        self._conn = conn
        self._update = query("peer_position_update")
        self.latest = 0

    def on_notification(self, events: list[Event]) -> None:
        self._sink.received([e.payload for e in events])
        self._conn.execute(self._update, (events[-1].id,))
        self.latest = events[-1].id

    def get_latest_received_id(self) -> int:
        return self.latest


@dataclass(frozen=True)
class ProjectPeer:
    dsn: str

    @property
    def name(self) -> str:
        return "pgsubscriber (this project)"

    def acknowledged(self, shape: Shape) -> str:
        unit = "the event's" if shape.batch == 1 else "the batch's"
        return (
            f"producer: {unit} transaction committed (WAL fsynced); consumer: handler done and its "
            "position committed to PostgreSQL, one transaction per handler call"
        )

    async def setup(self) -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(query("peer_position"))
            row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        return {"synchronous_commit": row[0] if row else None, "fsync": "on (WAL flush at every commit)"}

    async def teardown(self) -> None:
        return None

    async def producer(self, shape: Shape) -> _Producer:
        return _Producer(psycopg.connect(self.dsn, autocommit=True))

    async def consume(self, shape: Shape, sink: Sink, stop: asyncio.Event) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as position:
            handler = _PositionHandler(sink, position)
            subscriber = Subscriber(handler, SubscriberSettings(dsn=self.dsn, topics=[TOPIC]))
            task = asyncio.ensure_future(subscriber.run())
            while subscriber.status.caught_up_at is None:
                if task.done():
                    await task
                    raise RuntimeError("the subscriber stopped before it caught up")
                await asyncio.sleep(0.01)
            sink.ready()
            await stop.wait()
            subscriber.stop()
            await asyncio.wait_for(task, 30)
