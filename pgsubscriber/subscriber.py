"""The subscriber loop: connect, LISTEN, catch up, wait, deliver; reconnect on any network fault."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from tenacity import AsyncRetrying, RetryCallState, retry_if_not_exception_type, stop_never

from pgsubscriber._reconnect import ReconnectPolicy, backoff
from pgsubscriber._registry import Registry, default_name
from pgsubscriber._session import CONNECTION_ERRORS, Batch, DeliverySession, Horizon, IdleLockHolder, Session
from pgsubscriber._stopping import StopSignal
from pgsubscriber.errors import ConfigurationError, EventsPurgedError
from pgsubscriber.events import Event
from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.settings import SubscriberSettings
from pgsubscriber.status import SubscriberStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Writers stop notifying at this usage of the server's NOTIFY queue (events_register_writer in SQL);
#: from there on listeners poll.
NOTIFY_QUEUE_POLL_AT = 0.1

#: A handler call that lasts longer than this makes the subscriber stop counting as idle, so
#: writers stop notifying a listener that is not draining its notifications.
BUSY_AFTER = 1.0

#: A writer seen holding delivery back for this long (or for blocked_warning_after, if shorter) is
#: asked when its transaction started: that lookup costs more than a fetch, and most writers are
#: gone by then.
WRITER_START_LOOKUP_AFTER = 0.1


class _StopRequested(Exception):
    """Internal: unwinds the loop when stop() was called."""


async def _call(method: Callable[..., Any], *args: Any) -> Any:
    """Call a handler method that may be sync (run in a thread) or async (awaited)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    result = await asyncio.to_thread(method, *args)
    if inspect.isawaitable(result):
        return await result
    return result


class Subscriber:
    """Delivers every event on ``settings.topics`` to ``handler``, in id order, with no gap.

    ``await subscriber.run()`` runs until :meth:`stop` is called or the task is cancelled. It
    installs no signal handlers, so it can run in any thread or event loop. Network faults are
    retried forever by default; :class:`~pgsubscriber.SchemaMissingError`, a privilege error and
    :class:`~pgsubscriber.EventsPurgedError` end ``run()`` with that error.
    """

    def __init__(self, handler: ApplicationEventHandler, settings: SubscriberSettings | None = None) -> None:
        for method in ("on_notification", "get_latest_received_id"):
            if not callable(getattr(handler, method, None)):
                raise ConfigurationError(
                    f"the handler {handler!r} has no method {method}(): implement "
                    "pgsubscriber.ApplicationEventHandler"
                )
        self.handler = handler
        self.settings = settings if settings is not None else SubscriberSettings()
        self.status = SubscriberStatus()
        #: How a session is opened; unit tests put a fake session here.
        self.open_session: Callable[[SubscriberSettings], Any] = Session.open
        self._stop = StopSignal()
        self._writer_delay: float | None = None
        self._idle = False  # holds the idle-listener lock: writers notify it
        self._known_position: int | None = None
        self._blocked_first_seen: tuple[int, float] | None = None
        self._blocked_first_seen_at = datetime.now(UTC)
        self._blocking_since: datetime | None = None  # the blocking writer's start, once asked
        self._blocking_since_asked = False
        self._idle_lock_holder: IdleLockHolder | None = None  # a foreign session, while it lasts
        self._blocked_check_at = float("inf")  # look again then: is a writer still holding back?
        self._last_blocked_log = float("-inf")
        self._last_foreign_log = float("-inf")
        self._foreign_first_seen: tuple[int, float] | None = None
        self._last_idle_holder_log = float("-inf")
        self._acknowledged_purge = 0
        #: Its record in events_subscribers (None with ``registry=false``).
        self.registry: Registry | None = (
            Registry(self.settings, self.status, self.settings.name or default_name(handler))
            if self.settings.registry
            else None
        )

    # -- public control ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run()`` to return after the handler call in progress. Safe from any thread."""
        self._stop.request()

    @property
    def stopping(self) -> bool:
        return self._stop.requested

    async def run(self) -> None:
        """Deliver events until stopped. Returns after :meth:`stop`; raises on fatal errors."""
        self._stop.bind()
        self.status.running = True
        policy = ReconnectPolicy(self.settings)
        registry = self._start_registry()
        try:
            while not self.stopping:
                try:
                    await self._connect_and_serve(policy)
                except _StopRequested:
                    break
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise ConfigurationError(
                        f"the subscriber's role lacks a privilege ({exc}); connect with a role "
                        "that is a member of events_consumer"
                    ) from exc
        finally:
            self.status.running = False
            await self._stop_registry(registry)
            logger.info("subscriber stopped")

    def _start_registry(self) -> tuple[asyncio.Task[None], asyncio.Event] | None:
        """The registry's own task: it writes beside delivery and never holds it up."""
        if self.registry is None:
            return None
        stop = asyncio.Event()
        return asyncio.ensure_future(self.registry.run(stop)), stop

    async def _stop_registry(self, registry: tuple[asyncio.Task[None], asyncio.Event] | None) -> None:
        if registry is None:
            return
        task, stop = registry
        stop.set()  # the task writes "stopped" once, bounded, then closes its connection
        done, _ = await asyncio.wait({task}, timeout=self.settings.heartbeat_timeout + 1.0)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and task.exception() is not None:
            logger.debug("the registry task ended with an error", exc_info=task.exception())

    async def _connect_and_serve(self, policy: ReconnectPolicy) -> None:
        """One session: connect, serve until the connection fails, wait out the backoff."""
        try:
            session: DeliverySession = await self.open_session(self.settings)
        except CONNECTION_ERRORS as exc:
            self.status.last_error = f"cannot connect: {exc}"
            await self._stop.sleep(policy.failed(exc))
            return
        policy.connected()
        self.status.connected = True
        logger.info("connected; %s", "poll-only" if self.settings.poll_only else "listening")
        lost: BaseException | None = None
        try:
            await self._serve(session)
        except CONNECTION_ERRORS as exc:
            lost = exc
        finally:
            # Before the backoff: the status tells the truth meanwhile, and the socket is let go.
            self.status.connected = False
            self.status.mode = "disconnected"
            await session.close()
        if lost is not None:
            self.status.reconnects += 1
            self.status.last_error = f"connection lost: {lost}"
            await self._stop.sleep(policy.failed(lost))

    # -- the loop ---------------------------------------------------------------------------

    async def _serve(self, session: DeliverySession) -> None:
        s = self.settings
        poll_every = s.poll_only_interval if s.poll_only else s.safety_poll_interval
        # A new session starts polling: writers that registered before it took the idle lock may
        # have skipped their NOTIFY. The first round takes the lock, then fetches once more.
        self._idle = False
        self._writer_delay = None
        self.status.mode = "poll-only" if s.poll_only else "polling"
        await self._round(session)
        self.status.last_error = None
        self.status.caught_up_at = datetime.now(UTC)
        logger.info("caught up at id %s", self.status.position)
        last_heard = time.monotonic()
        next_poll = last_heard + poll_every
        while not self.stopping:
            wake_at = min(next_poll, last_heard + s.heartbeat_interval, self._blocked_check_at)
            timeout = wake_at - time.monotonic()
            if self._writer_delay is not None:
                timeout = min(timeout, self._writer_delay)
            woke = await self._wait(session, max(timeout, 0.0))
            if self.stopping:
                return
            now = time.monotonic()
            if woke:
                last_heard = now
            if woke or self._writer_delay is not None or now >= next_poll or now >= self._blocked_check_at:
                await self._round(session)
                last_heard = time.monotonic()
                if now >= next_poll:
                    next_poll = last_heard + poll_every
            elif now - last_heard >= s.heartbeat_interval:
                await session.heartbeat()
                last_heard = time.monotonic()

    async def _wait(self, session: DeliverySession, timeout: float) -> bool:
        """Wait for a notification, the timeout, or stop(); True if a notification came."""
        return bool(await self._stop.interruptible(session.wait_for_notification(timeout)))

    async def _round(self, session: DeliverySession) -> None:
        """Deliver what is available, then wait for NOTIFY (idle) or keep polling.

        Idle, every writer that registers will NOTIFY, so a few writers in flight need no
        polling; at ``writer_poll_threshold`` writers the subscriber polls instead, and writers
        skip NOTIFY (its commit lock serializes concurrent producers). It also polls while the
        server's notification queue is nearly full (writers then stop notifying) and while a
        session outside pgsubscriber holds the idle-listener lock. Going idle, it looks once more
        after taking the lock: a writer that registered while it polled may have skipped NOTIFY.
        """
        s = self.settings
        threshold = s.writer_poll_threshold if self._idle else 1
        while True:
            delivered, horizon = await self._deliver_available(session)
            if self._must_poll(horizon, threshold):
                await self._set_idle(session, False)
                # Poll fast while events flow; back off while one transaction holds delivery back.
                delay = self._writer_delay
                if delay is not None and not delivered:
                    self._writer_delay = min(delay * 2, s.writer_poll_max)
                else:
                    self._writer_delay = s.writer_poll_min
                return
            if self._idle or s.poll_only:
                self._writer_delay = None
                return
            holder = await session.set_idle(True)
            if holder is not None:
                self._report_idle_lock_holder(holder)
                self._writer_delay = s.writer_poll_max
                return
            self._idle = True
            self._idle_lock_holder = None
            self.status.mode = "listening"
            self._writer_delay = None  # a writer seen from here on is a new one: poll for it fast
            threshold = 1

    def _must_poll(self, horizon: Horizon, threshold: int) -> bool:
        return horizon.writers >= threshold or horizon.notify_queue_usage >= NOTIFY_QUEUE_POLL_AT

    async def _set_idle(self, session: DeliverySession, idle: bool) -> None:
        if self._idle == idle or self.settings.poll_only:
            return
        await session.set_idle(idle)
        self._idle = idle
        self.status.mode = "listening" if idle else "polling"

    async def _first_batch(self, session: DeliverySession) -> tuple[int, Batch]:
        """Ask the handler its position and read the batch after it.

        Both at once: the read starts from the last position this process knows while the
        handler answers; if the answer differs (the handler is authoritative), the batch read is
        dropped and the read starts again from the answer.
        """
        size = self.settings.batch_size
        guess = self._known_position
        read = asyncio.ensure_future(self._fetch(session, guess, size)) if guess is not None else None
        try:
            position = int(await self._with_handler_retry(self.handler.get_latest_received_id))
        except BaseException:
            if read is not None:
                await asyncio.gather(read, return_exceptions=True)
            raise
        self.status.position = self._known_position = position
        if read is not None:
            batch = await read
            if position == guess:
                return position, batch
        return position, await self._fetch(session, position, size)

    async def _deliver_available(self, session: DeliverySession) -> tuple[int, Horizon]:
        """Deliver batches until the delivery horizon is reached; return how many events, and
        the last horizon read.

        The handler's position is asked once per round; within the round, a delivered batch
        moves it (the handler recorded it before returning). While the handler works on a full
        batch, the next one is already being read (the server works while Python does).
        """
        delivered = 0
        size = self.settings.batch_size
        position, batch = await self._first_batch(session)
        next_read: asyncio.Future[Batch] | None = None
        try:
            while True:
                await self._note_horizon(session, batch.horizon)
                if batch.purged_up_to_id > position:
                    self._on_purged(position, batch.purged_up_to_id)
                if not batch.events:
                    return delivered, batch.horizon
                if batch.more:
                    next_read = asyncio.ensure_future(self._fetch(session, batch.events[-1].id, size))
                await self._deliver(session, batch.events)
                delivered += len(batch.events)
                position = self._known_position = batch.events[-1].id
                if next_read is None:
                    return delivered, batch.horizon
                if self.stopping:
                    raise _StopRequested
                batch, next_read = await next_read, None
        finally:
            if next_read is not None:
                # Let the read finish (it is bounded) rather than cancel it mid-protocol.
                await asyncio.gather(next_read, return_exceptions=True)

    def _fetch(self, session: DeliverySession, after_id: int, size: int) -> Awaitable[Batch]:
        self.status.fetches += 1
        return session.fetch(after_id, size)

    async def _note_horizon(self, session: DeliverySession, horizon: Horizon) -> None:
        st = self.status
        st.safe_id = horizon.safe_id
        st.last_drawn_id = horizon.last_drawn_id
        st.writers = horizon.writers
        st.notify_queue_usage = horizon.notify_queue_usage
        now = time.monotonic()
        # A writer that is ending shows its key without its table lock for an instant (it releases
        # the table lock first, once committed): only a holder that stays is foreign.
        foreign = horizon.foreign_pid
        if foreign is None or self._foreign_first_seen is None or self._foreign_first_seen[0] != foreign:
            self._foreign_first_seen = (foreign, now) if foreign is not None else None
        lasting = self._foreign_first_seen is not None and (
            now - self._foreign_first_seen[1] >= self.settings.blocked_warning_after
        )
        holder = self._idle_lock_holder
        st.foreign_lock_pid = foreign if lasting else (holder.pid if holder is not None else None)
        log_every = self.settings.blocked_log_interval
        if lasting and now - self._last_foreign_log >= log_every:
            self._last_foreign_log = now
            logger.warning(
                "backend pid %d (role %s) holds a lock key reserved for pgsubscriber writers without "
                "writing events; it is ignored (check what that session runs)",
                horizon.foreign_pid,
                horizon.foreign_role,
                extra={"foreign_pid": horizon.foreign_pid},
            )
        if horizon.blocking_pid is None:
            st.blocked_by_pid = st.blocked_since = None
            self._blocked_first_seen = None
            self._blocked_check_at = float("inf")
            return
        if self._blocked_first_seen is None or self._blocked_first_seen[0] != horizon.blocking_pid:
            self._blocked_first_seen = (horizon.blocking_pid, now)
            self._blocked_first_seen_at = datetime.now(UTC)
            self._blocking_since, self._blocking_since_asked = None, False
        warn_after, log_every = self.settings.blocked_warning_after, self.settings.blocked_log_interval
        held_for = now - self._blocked_first_seen[1]
        lookup_after = min(WRITER_START_LOOKUP_AFTER, warn_after)
        if not self._blocking_since_asked and held_for >= lookup_after:
            self._blocking_since_asked = True
            self._blocking_since = await session.writer_since(horizon.blocking_pid)
        st.blocked_by_pid = horizon.blocking_pid
        st.blocked_since = self._blocking_since or self._blocked_first_seen_at
        if self._blocking_since is not None:
            held_for = max(held_for, (datetime.now(UTC) - self._blocking_since).total_seconds())
        if not self._blocking_since_asked:
            self._blocked_check_at = now + lookup_after - held_for
        elif held_for < warn_after:
            self._blocked_check_at = now + warn_after - held_for
        elif now - self._last_blocked_log < log_every:
            self._blocked_check_at = self._last_blocked_log + log_every
        else:
            self._last_blocked_log = now
            self._blocked_check_at = now + log_every
            logger.warning(
                "delivery after id %d waits for a producer transaction open for %.1fs "
                "(backend pid %d, open since %s); %d id(s) drawn after it are held back",
                horizon.safe_id,
                held_for,
                horizon.blocking_pid,
                st.blocked_since,
                horizon.last_drawn_id - horizon.safe_id,
                extra={"safe_id": horizon.safe_id, "blocking_pid": horizon.blocking_pid},
            )

    def _report_idle_lock_holder(self, holder: IdleLockHolder) -> None:
        self._idle_lock_holder = holder
        self.status.foreign_lock_pid = holder.pid
        now = time.monotonic()
        if now - self._last_idle_holder_log >= self.settings.blocked_log_interval:
            self._last_idle_holder_log = now
            logger.warning(
                "backend pid %s (role %s) holds pgsubscriber's idle-listener lock exclusively; "
                "polling every %.2fs instead of waiting for NOTIFY until it lets go",
                holder.pid,
                holder.role,
                self.settings.writer_poll_max,
                extra={"foreign_pid": holder.pid},
            )

    def _on_purged(self, position: int, purged_up_to_id: int) -> None:
        if self.settings.on_purged == "raise":
            raise EventsPurgedError(position + 1, purged_up_to_id, self.settings.topics)
        if purged_up_to_id > self._acknowledged_purge:
            self._acknowledged_purge = purged_up_to_id
            self.status.purged_ranges.append((position + 1, purged_up_to_id))
            logger.error(
                "EVENTS LOST: ids %d..%d on topics %s were purged before this subscriber received "
                "them; continuing from the oldest event still stored (on_purged=continue)",
                position + 1,
                purged_up_to_id,
                self.settings.topics,
                extra={"first_missing_id": position + 1, "last_missing_id": purged_up_to_id},
            )

    async def _deliver(self, session: DeliverySession, events: list[Event]) -> None:
        started = time.perf_counter()
        # A slow or failing handler: this subscriber drains no notification meanwhile, so after
        # BUSY_AFTER it stops counting as idle. A timer, not a task per batch (the latency path).
        going_busy: list[asyncio.Task[None]] = []

        def busy() -> None:
            if self._idle:
                going_busy.append(asyncio.ensure_future(self._set_idle(session, False)))

        timer = asyncio.get_running_loop().call_later(BUSY_AFTER, busy)
        try:
            await self._with_handler_retry(self.handler.on_notification, events)
        except BaseException:
            # The handler's failure or a cancellation is what propagates, not the idle flag's.
            timer.cancel()
            await asyncio.gather(*going_busy, return_exceptions=True)
            raise
        timer.cancel()
        if going_busy:
            await going_busy[0]  # bounded (heartbeat_timeout); a connection error reconnects
        st = self.status
        st.handler_seconds += time.perf_counter() - started
        st.events_delivered += len(events)
        st.batches_delivered += 1
        st.position = events[-1].id
        if st.last_error and st.last_error.startswith("handler "):
            st.last_error = None

    async def _with_handler_retry(self, method: Callable[..., Any], *args: Any) -> Any:
        """Call a handler method; on failure call it again after a backoff, until it succeeds."""
        if self.stopping:
            raise _StopRequested
        try:
            return await _call(method, *args)  # the usual case, without the retry machinery
        except Exception as exc:
            first_failure = exc
        return await self._retry_handler(method, args, first_failure)

    async def _retry_handler(
        self, method: Callable[..., Any], args: tuple[Any, ...], failure: Exception
    ) -> Any:
        s = self.settings

        def log_failure(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.status.handler_failures += 1
            self.status.last_error = f"handler {method.__name__} failed: {exc!r}"
            ids = f" for events {args[0][0].id}..{args[0][-1].id}" if args else ""
            # One line per attempt (a store that is down fails every few seconds); the traceback
            # is at DEBUG.
            logger.warning(
                "handler %s failed%s (attempt %d), retrying in %.1fs: %s: %s",
                method.__name__,
                ids,
                state.attempt_number,
                delay,
                type(exc).__name__,
                str(exc).splitlines()[0][:300] if str(exc) else "",
            )
            logger.debug("handler %s failure", method.__name__, exc_info=exc)

        retrying = AsyncRetrying(
            retry=retry_if_not_exception_type(_StopRequested),
            wait=backoff(s.handler_retry_initial_delay, s.handler_retry_max_delay),
            stop=stop_never,
            before_sleep=log_failure,
            sleep=self._stop.sleep,
            reraise=True,
        )
        first = True
        async for attempt in retrying:
            with attempt:
                if self.stopping:
                    raise _StopRequested
                if first:
                    first = False
                    raise failure  # the failure of the direct call: logged, then a backoff
                return await _call(method, *args)
        raise AssertionError("unreachable")  # pragma: no cover
