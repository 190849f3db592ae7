"""Deliver what was published to a handler with the real subscriber, then stop: ``deliver(handler, db)``.

The subscriber runs as it does in production (LISTEN, catch-up, batches, handler retries); the
only addition is a condition to stop on: the handler's position has reached the newest event
published on its topics when :func:`deliver` was called. A deadline fails a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.subscriber import Subscriber

if TYPE_CHECKING:
    from pgsubscriber.testing.database import EventsDatabase

T = TypeVar("T")

_POLL = 0.005


class DeliveryTimeout(AssertionError):
    """The subscriber did not bring the handler up to the newest event before the deadline."""


def newest_id(database: EventsDatabase, topics: Sequence[str]) -> int:
    """The id of the newest committed event on ``topics``, or 0."""
    with database.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(max(id), 0) FROM public.events WHERE topic = ANY(%s)", (list(topics),)
        ).fetchone()
    return int(row[0]) if row else 0


async def deliver_async(
    handler: ApplicationEventHandler,
    database: EventsDatabase,
    topics: Sequence[str] | None = None,
    *,
    timeout: float = 30.0,
    **settings: Any,
) -> int:
    """:func:`deliver` for a test that already runs an event loop."""
    topics = list(topics) if topics is not None else await asyncio.to_thread(database.topics)
    if not topics:
        return 0
    target = await asyncio.to_thread(newest_id, database, topics)
    subscriber = Subscriber(handler, database.settings(topics=topics, **settings))
    run = asyncio.ensure_future(subscriber.run())
    status = subscriber.status
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not run.done():
            if status.caught_up_at is not None and (status.position or 0) >= target:
                break
            if loop.time() >= deadline:
                raise DeliveryTimeout(
                    f"the subscriber did not bring the handler up to event {target} within {timeout:g}s: "
                    f"handler position {status.position}, {status.events_delivered} event(s) delivered, "
                    f"connected={status.connected}, last error: {status.last_error or 'none'}"
                )
            await asyncio.sleep(_POLL)
    finally:
        subscriber.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), timeout=15.0)
    if run.done() and not run.cancelled() and run.exception() is not None:
        raise run.exception()  # type: ignore[misc]
    return status.position or 0


def deliver(
    handler: ApplicationEventHandler,
    database: EventsDatabase,
    topics: Sequence[str] | None = None,
    *,
    timeout: float = 30.0,
    **settings: Any,
) -> int:
    """Run the real subscriber until ``handler`` has every event published on ``topics`` so far
    (default: every topic in ``database``); return the handler's position.

    ``settings`` override :meth:`EventsDatabase.settings` (e.g. ``batch_size=1``). A failing handler
    is retried as in production, so a handler that keeps failing ends in :class:`DeliveryTimeout`,
    whose message carries the last error. Callable from a test with or without a running loop.
    """
    return run_sync(deliver_async(handler, database, topics, timeout=timeout, **settings))


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end: here, or in a helper thread when this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:  # outside the except block: an error of the coroutine is not chained to it
        return asyncio.run(coroutine)
    result: list[T] = []
    error: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=main, name="pgsubscriber-testing")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
