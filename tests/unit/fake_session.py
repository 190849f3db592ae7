"""A scripted stand-in for the subscriber's link to PostgreSQL, and helpers to run a subscriber on it.

:class:`FakeDatabase` holds what the server would: the committed events of each topic, the
delivery horizon (``safe_id``, ``writers`` in flight, a ``blocking_pid``, the NOTIFY queue usage, a
foreign lock holder), the purge watermark, and who holds the idle-listener lock. A test puts
``db.open`` in ``Subscriber.open_session``; each call returns a new :class:`FakeSession`.

Every call the subscriber makes is appended to ``db.calls``, in order, as a tuple::

    ("open",)  ("fetch", after_id, limit)  ("set_idle", True)  ("wait",)  ("heartbeat",)  ("close",)

and :class:`TracingHandler` adds ``("handle", first_id, last_id)`` when a handler call starts and
``("handled", first_id, last_id)`` when it succeeds, so one list shows the order of everything.
The timeout of each wait is kept in ``db.wait_timeouts``. ``db.when(call, action)`` changes the
world at a chosen point (e.g. a writer registers just as the subscriber takes the idle lock).
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pgsubscriber import Event, Subscriber, SubscriberSettings
from pgsubscriber._session import Batch, Horizon, IdleLockHolder

#: Every scenario fails rather than hangs after this many seconds.
DEADLINE = 5.0

#: The writers' trigger stops notifying at this NOTIFY queue usage (events_register_writer).
NOTIFY_QUEUE_LIMIT = 0.1


class FakeDatabase:
    """The server's side of every session: events, horizon, locks, and a log of the calls."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.last_id = 0  # the id sequence
        # The horizon, as events_delivery_horizon would report it; set these to script it.
        self.safe_id: int | None = None  # None: every committed event may be delivered
        self.last_drawn_id: int | None = None  # None: the last id drawn
        self.writers = 0
        self.blocking_pid: int | None = None
        self.blocking_since: datetime | None = None  # what events_writer_since answers
        self.foreign_pid: int | None = None
        self.foreign_role: str | None = None
        self.notify_queue_usage = 0.0
        self.purged_up_to_id = 0
        #: A session outside pgsubscriber holding the idle-listener lock exclusively.
        self.idle_lock_holder: IdleLockHolder | None = None

        self.calls: list[tuple[Any, ...]] = []
        self.wait_timeouts: list[float] = []
        self.sessions: list[FakeSession] = []
        self._triggers: list[tuple[tuple[Any, ...], Callable[[], None]]] = []
        self._open_failures: list[BaseException] = []
        self._fetch_failures: list[BaseException] = []

    # -- scripting ------------------------------------------------------------------------------

    def commit(self, topic: str, count: int = 1) -> list[int]:
        """Commit ``count`` events on ``topic``; like the writers' trigger, notify only a session that
        holds the idle-listener lock, and only while the NOTIFY queue is below 10%."""
        ids = []
        for _ in range(count):
            self.last_id += 1
            ids.append(self.last_id)
            self.events[topic].append(
                Event(id=self.last_id, topic=topic, payload={"n": self.last_id}, created_at=datetime.now(UTC))
            )
        if self.notify_queue_usage < NOTIFY_QUEUE_LIMIT:
            for session in self.live_sessions():
                if session.idle and topic in session.settings.topics:
                    session.notify()
        return ids

    def notify(self) -> None:
        """A notification reaches every live session that listens (whatever sent it)."""
        for session in self.live_sessions():
            session.notify()

    def purge(self, up_to_id: int) -> None:
        """Delete the events up to ``up_to_id`` and raise the watermark, as the purger does."""
        for topic, events in self.events.items():
            self.events[topic] = [e for e in events if e.id > up_to_id]
        self.purged_up_to_id = max(self.purged_up_to_id, up_to_id)

    def when(self, call: tuple[Any, ...], action: Callable[[], None]) -> None:
        """Run ``action`` once, the next time the subscriber makes ``call`` (before it is answered)."""
        self._triggers.append((call, action))

    def record(self, *call: Any) -> None:
        self.calls.append(call)
        for trigger in [t for t in self._triggers if t[0] == call]:
            self._triggers.remove(trigger)
            trigger[1]()

    def fail_next_open(self, exc: BaseException, times: int = 1) -> None:
        self._open_failures.extend([exc] * times)

    def fail_next_fetch(self, exc: BaseException, times: int = 1) -> None:
        self._fetch_failures.extend([exc] * times)

    def drop_connection(self, exc: BaseException) -> None:
        """The live session breaks: a wait in progress and every later call raise ``exc``."""
        for session in self.live_sessions():
            session.break_with(exc)

    # -- what the subscriber sees ---------------------------------------------------------------

    def horizon(self) -> Horizon:
        safe_id = self.last_id if self.safe_id is None else self.safe_id
        return Horizon(
            safe_id=safe_id,
            last_drawn_id=max(self.last_id, safe_id) if self.last_drawn_id is None else self.last_drawn_id,
            writers=self.writers,
            blocking_pid=self.blocking_pid,
            foreign_pid=self.foreign_pid,
            foreign_role=self.foreign_role,
            notify_queue_usage=self.notify_queue_usage,
        )

    async def open(self, settings: SubscriberSettings) -> FakeSession:
        """What a test puts in ``Subscriber.open_session``."""
        self.record("open")
        await asyncio.sleep(0)
        if self._open_failures:
            raise self._open_failures.pop(0)
        session = FakeSession(self, settings)
        self.sessions.append(session)
        return session

    # -- observing ------------------------------------------------------------------------------

    def trace(self, *names: str) -> list[tuple[Any, ...]]:
        """The calls with these names, in order (all calls when no name is given)."""
        return [call for call in self.calls if not names or call[0] in names]

    def waits_after(self, call: tuple[Any, ...]) -> list[float]:
        """The timeouts of the waits after the first ``call``."""
        return self.wait_timeouts[self.calls[: self.calls.index(call)].count(("wait",)) :]

    def count(self, name: str) -> int:
        return len(self.trace(name))

    def live_sessions(self) -> list[FakeSession]:
        return [s for s in self.sessions if not s.closed and s.broken is None]

    @property
    def session(self) -> FakeSession:
        """The most recently opened session."""
        return self.sessions[-1]

    def waiting(self) -> bool:
        """The subscriber sits in a wait for a notification (or for its next poll)."""
        return bool(self.calls) and self.calls[-1] == ("wait",)


class FakeSession:
    """One session: implements :class:`pgsubscriber._session.DeliverySession` over a FakeDatabase."""

    def __init__(self, db: FakeDatabase, settings: SubscriberSettings) -> None:
        self.db = db
        self.settings = settings
        self.idle = False  # holds the idle-listener lock
        self.closed = False
        self.broken: BaseException | None = None
        self._wakeup = asyncio.Event()
        self._notified = False

    def notify(self) -> None:
        if not self.settings.poll_only:  # a poll-only session does not LISTEN
            self._notified = True
            self._wakeup.set()

    def break_with(self, exc: BaseException) -> None:
        self.broken = exc
        self.idle = False  # the server releases a dead session's locks
        self._wakeup.set()

    def _enter(self, *call: Any) -> None:
        self.db.record(*call)
        if self.broken is not None:
            raise self.broken

    async def fetch(self, after_id: int, limit: int) -> Batch:
        self._enter("fetch", after_id, limit)
        if self.db._fetch_failures:
            self.break_with(self.db._fetch_failures.pop(0))
            raise self.broken  # type: ignore[misc]
        await asyncio.sleep(0)  # a round trip: other tasks run meanwhile
        horizon = self.db.horizon()
        below = sorted(
            (e for topic in self.settings.topics for e in self.db.events[topic]),
            key=lambda e: e.id,
        )
        below = [e for e in below if after_id < e.id <= horizon.safe_id]
        return Batch(horizon, below[:limit], self.db.purged_up_to_id, more=len(below) > limit)

    async def wait_for_notification(self, timeout: float) -> bool:
        self._enter("wait")
        self.db.wait_timeouts.append(timeout)
        if not self._notified:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return False
        if self.broken is not None:
            raise self.broken
        self._notified = False  # the backlog is drained: bursts fold into one wakeup
        self._wakeup.clear()
        return True

    async def set_idle(self, idle: bool) -> IdleLockHolder | None:
        self._enter("set_idle", idle)
        await asyncio.sleep(0)
        if self.settings.poll_only:
            return None
        if idle and self.db.idle_lock_holder is not None:
            return self.db.idle_lock_holder
        self.idle = idle
        return None

    async def heartbeat(self) -> None:
        self._enter("heartbeat")

    async def writer_since(self, pid: int) -> datetime | None:
        self._enter("writer_since", pid)
        return self.db.blocking_since if pid == self.db.blocking_pid else None

    async def close(self) -> None:
        self.db.record("close")
        self.closed = True
        self.idle = False


class TracingHandler:
    """An async handler that logs its calls into ``db.calls``.

    ``delay``: seconds each call takes; ``fail_times``: how many calls raise before one succeeds;
    ``during``: an async callable run inside every call (to look at the world while it works).
    """

    def __init__(
        self,
        db: FakeDatabase,
        position: int = 0,
        *,
        delay: float = 0.0,
        fail_times: int = 0,
        during: Callable[[list[Event]], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.position = position
        self.delay = delay
        self.fail_times = fail_times
        self.during = during
        self.attempts: list[list[int]] = []  # the ids of every call, failed or not
        self.delivered: list[int] = []

    async def on_notification(self, events: list[Event]) -> None:
        first, last = events[0].id, events[-1].id
        self.db.record("handle", first, last)
        self.attempts.append([e.id for e in events])
        if self.during is not None:
            await self.during(events)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError(f"handler failure on events {first}..{last}")
        self.delivered.extend(e.id for e in events)
        self.position = last
        self.db.record("handled", first, last)

    async def get_latest_received_id(self) -> int:
        return self.position


# -- running a subscriber on it ---------------------------------------------------------------------


def fast_settings(**overrides: Any) -> SubscriberSettings:
    """Settings with tiny delays; heartbeat and safety poll far away, so waits are predictable."""
    values: dict[str, Any] = {
        "dsn": "postgresql://fake/events",
        "topics": ["courses"],
        "batch_size": 100,
        "writer_poll_min": 0.001,
        "writer_poll_max": 0.008,
        "heartbeat_interval": 60.0,
        "safety_poll_interval": 60.0,
        "reconnect_initial_delay": 0.001,
        "reconnect_max_delay": 0.01,
        "handler_retry_initial_delay": 0.001,
        "handler_retry_max_delay": 0.005,
        "registry": False,  # no database to record itself in
    }
    values.update(overrides)
    return SubscriberSettings(**values)


def subscriber_on(db: FakeDatabase, handler: Any, settings: SubscriberSettings | None = None) -> Subscriber:
    sub = Subscriber(handler, settings or fast_settings())
    sub.open_session = db.open
    return sub


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test under asyncio.run, failing it if it takes longer than DEADLINE."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), DEADLINE))

    return run


@asynccontextmanager
async def running(sub: Subscriber) -> AsyncIterator[asyncio.Task[None]]:
    """``sub.run()`` in a task; on exit, stop() it and wait for run() to return."""
    task = asyncio.create_task(sub.run())
    try:
        yield task
    finally:
        sub.stop()
        await asyncio.wait_for(task, 1.0)


async def until(condition: Callable[[], bool], timeout: float = 2.0, db: FakeDatabase | None = None) -> None:
    """Wait until ``condition()`` holds; fail (with the last calls, if ``db`` is given) after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            tail = f"; last calls: {db.calls[-12:]}" if db is not None else ""
            raise AssertionError(f"condition not met within {timeout}s{tail}")
        await asyncio.sleep(0.0005)
