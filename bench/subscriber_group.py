"""Several subscribers in one child process, each on its own topics, counting their round trips.

Every statement the process's subscribers send is counted in shared memory, and so is every fetch
(a statement that calls ``events_fetch``), so the harness can tell how often subscribers with
nothing to deliver still query the server. One subscriber of a group may report each event's
``seq`` and handler time to a queue (latency runs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg

from pgsubscriber import Event, Subscriber, SubscriberSettings


class TimingHandler:
    """No-op handler; with a queue, it reports each event's ``seq`` and the time of the call."""

    def __init__(self, times: Any) -> None:
        self.latest = 0
        self._times = times

    def on_notification(self, events: list[Event]) -> None:
        now = time.monotonic()
        self.latest = events[-1].id
        if self._times is not None:
            self._times.put([(e.payload.get("seq"), now) for e in events])

    def get_latest_received_id(self) -> int:
        return self.latest


def count_statements(fetches: Any, statements: Any, slot: int) -> None:
    """Count this process's statements, and the fetches among them, in ``slot`` of shared arrays."""
    original = psycopg.AsyncCursor.execute  # connections and client-side cursors run it too

    async def execute(self: psycopg.AsyncCursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements[slot] += 1
        text = statement if isinstance(statement, bytes) else str(statement).encode()
        # A fetch calls events_fetch; the subscriber's schema check only names it (to_regprocedure).
        if b"events_fetch" in text and b"to_regprocedure" not in text:
            fetches[slot] += 1
        return await original(self, statement, *args, **kwargs)

    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]


async def _run(subscribers: list[Subscriber], ready: Any, slot: int, stop: Any) -> None:
    tasks = [asyncio.ensure_future(s.run()) for s in subscribers]
    while not all(s.status.caught_up_at is not None for s in subscribers) and not stop.is_set():
        ended = [t for t in tasks if t.done()]
        if ended:
            await ended[0]  # raises the subscriber's error, if it had one
            raise RuntimeError("a subscriber stopped before it caught up")
        await asyncio.sleep(0.01)
    ready[slot] = 1
    await asyncio.to_thread(stop.wait)
    for s in subscribers:
        s.stop()
    done, pending = await asyncio.wait(tasks, timeout=20)
    for task in pending:
        task.cancel()
    for task in done:
        task.result()


def group_main(
    dsn: str,
    topic_lists: list[list[str]],
    slot: int,
    counters: tuple[Any, Any, Any],
    stop: Any,
    times: Any,
    log_level: int,
) -> None:
    """Child entry point: one subscriber per topic list, in one event loop, until ``stop`` is set.

    ``counters`` are shared arrays (fetches, statements, ready), one slot per process; ``ready``
    becomes 1 once every subscriber of the process has caught up.
    """
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s [subscribers] %(name)s %(message)s"
    )
    # Each subscriber warns about the first producer transaction it finds in flight, however short
    # (the busy topic's producer always has one soon): one line per subscriber, 51 alike per run.
    logging.getLogger("pgsubscriber.subscriber").addFilter(lambda record: not hasattr(record, "blocking_pid"))
    fetches, statements, ready = counters
    count_statements(fetches, statements, slot)
    subscribers = [
        Subscriber(TimingHandler(times), SubscriberSettings(dsn=dsn, topics=topics)) for topics in topic_lists
    ]
    asyncio.run(_run(subscribers, ready, slot, stop))
