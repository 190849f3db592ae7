"""The subscriber loop: connect, LISTEN, catch up, wait, deliver; reconnect on any network fault."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from pgsubscriber._session import CONNECTION_ERRORS, Batch, Horizon, Session
from pgsubscriber.errors import ConfigurationError, EventsPurgedError
from pgsubscriber.events import Event
from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.settings import SubscriberSettings
from pgsubscriber.status import SubscriberStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _StopRequested(Exception):
    """Internal: unwinds the loop when stop() was called."""


def _backoff(initial: float, maximum: float) -> wait_base:
    """Exponential backoff from ``initial`` to ``maximum``, plus up to ``initial`` of jitter."""
    return wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial)


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = False
        self._stop_lock = threading.Lock()
        self._writer_delay: float | None = None
        self._polling = False
        self._known_position: int | None = None
        self._last_blocked_log = 0.0
        self._acknowledged_purge = 0

    # -- public control ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run()`` to return after the handler call in progress. Safe from any thread."""
        with self._stop_lock:
            self._stop_requested = True
            loop, event = self._loop, self._stop_event
        if loop is None or event is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    async def run(self) -> None:
        """Deliver events until stopped. Returns after :meth:`stop`; raises on fatal errors."""
        with self._stop_lock:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            if self._stop_requested:
                self._stop_event.set()
        self.status.running = True
        try:
            while not self.stopping:
                session = await self._connect()
                if session is None:
                    break
                try:
                    await self._serve(session)
                except CONNECTION_ERRORS as exc:
                    self.status.reconnects += 1
                    self.status.last_error = f"connection lost: {exc}"
                    logger.warning("connection lost, reconnecting: %s", exc)
                    await self._sleep_unless_stopped(self.settings.reconnect_initial_delay)
                except _StopRequested:
                    break
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise ConfigurationError(
                        f"the subscriber's role lacks a privilege ({exc}); connect with a role "
                        "that is a member of events_consumer"
                    ) from exc
                finally:
                    self.status.connected = False
                    await session.close()
        finally:
            self.status.running = False
            logger.info("subscriber stopped")

    # -- connection -------------------------------------------------------------------------

    async def _connect(self) -> Session | None:
        s = self.settings
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(CONNECTION_ERRORS),
            wait=_backoff(s.reconnect_initial_delay, s.reconnect_max_delay),
            stop=stop_never
            if s.reconnect_max_attempts is None
            else stop_after_attempt(s.reconnect_max_attempts),
            before_sleep=self._log_connect_failure,
            sleep=self._sleep_unless_stopped,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self.stopping:
                    return None
                session = await Session.open(s)
                self.status.connected = True
                logger.info(
                    "connected; %s",
                    "polling" if s.poll_only else f"listening on channel {s.channel!r}",
                )
                return session
        return None  # pragma: no cover - the loop above always returns or raises

    def _log_connect_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        self.status.last_error = f"cannot connect: {exc}"
        logger.warning("cannot connect (attempt %d), retrying in %.1fs: %s", state.attempt_number, delay, exc)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=seconds)

    # -- the loop ---------------------------------------------------------------------------

    async def _serve(self, session: Session) -> None:
        s = self.settings
        poll_every = s.poll_only_interval if s.poll_only else s.safety_poll_interval
        self._polling = False
        await self._round(session, after_connect=True)
        self.status.last_error = None
        self.status.caught_up_at = datetime.now(UTC)
        logger.info("caught up at id %s", self.status.latest_received_id)
        last_heard = time.monotonic()
        next_poll = last_heard + poll_every
        while not self.stopping:
            timeout = min(next_poll, last_heard + s.heartbeat_interval) - time.monotonic()
            if self._writer_delay is not None:
                timeout = min(timeout, self._writer_delay)
            woke = await self._wait(session, max(timeout, 0.0))
            if self.stopping:
                return
            now = time.monotonic()
            if woke:
                last_heard = now
            if woke or self._writer_delay is not None or now >= next_poll:
                await self._round(session)
                last_heard = time.monotonic()
                if now >= next_poll:
                    next_poll = last_heard + poll_every
            elif now - last_heard >= s.heartbeat_interval:
                await session.heartbeat()
                last_heard = time.monotonic()

    async def _wait(self, session: Session, timeout: float) -> bool:
        """Wait for a notification, the timeout, or stop(); True if a notification came."""
        assert self._stop_event is not None
        waiter = asyncio.ensure_future(session.wait_for_notification(timeout))
        stopper = asyncio.ensure_future(self._stop_event.wait())
        try:
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not waiter.done():
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
        return waiter in done and not waiter.cancelled() and bool(waiter.result())

    async def _round(self, session: Session, *, after_connect: bool = False) -> None:
        """Deliver what is available, then enter or leave polling mode for writers in flight.

        Idle, every writer that registers will NOTIFY, so a few writers in flight need no
        polling; at ``writer_poll_threshold`` writers the subscriber polls instead, and writers
        skip NOTIFY (its commit lock serializes concurrent producers). Just after a connect, and
        on the check after leaving polling mode, any writer may have skipped: threshold 1.
        """
        threshold = 1 if self._polling or after_connect else self.settings.writer_poll_threshold
        while True:
            delivered = await self._deliver_available(session)
            if self.status.writers_in_flight >= threshold:
                if not self._polling:
                    await session.set_polling(True)
                    self._polling = True
                s, delay = self.settings, self._writer_delay
                # Poll fast while events flow; back off while one transaction holds delivery back.
                if delay is not None and not delivered:
                    self._writer_delay = min(delay * 2, s.writer_poll_max)
                else:
                    self._writer_delay = s.writer_poll_min
                return
            self._writer_delay = None
            if not self._polling:
                return
            # Leave polling mode, then look once more: a writer that registered while we were
            # polling may have skipped its NOTIFY.
            await session.set_polling(False)
            self._polling = False
            threshold = 1

    async def _first_batch(self, session: Session) -> tuple[int, Batch]:
        """Ask the handler its position and read the batch after it.

        Both at once: the read starts from the last position this process knows while the
        handler answers; if the answer differs (the handler is authoritative), the batch read is
        dropped and the read starts again from the answer.
        """
        size = self.settings.batch_size
        guess = self._known_position
        read = asyncio.ensure_future(session.fetch(guess, size)) if guess is not None else None
        try:
            latest = int(await self._with_handler_retry(self.handler.get_latest_received_id))
        except BaseException:
            if read is not None:
                await asyncio.gather(read, return_exceptions=True)
            raise
        self.status.latest_received_id = self._known_position = latest
        if read is not None:
            batch = await read
            if latest == guess:
                return latest, batch
        return latest, await session.fetch(latest, size)

    async def _deliver_available(self, session: Session) -> int:
        """Deliver batches until the delivery horizon is reached; return how many events.

        The handler's position is asked once per round; within the round, a delivered batch
        moves it (the handler recorded it before returning). While the handler works on a full
        batch, the next one is already being read (the server works while Python does).
        """
        delivered = 0
        size = self.settings.batch_size
        latest, batch = await self._first_batch(session)
        next_read: asyncio.Future[Batch] | None = None
        try:
            while True:
                self._note_horizon(batch.horizon)
                if batch.purged_up_to > latest:
                    self._on_purged(latest, batch.purged_up_to)
                if not batch.events:
                    return delivered
                if len(batch.events) == size:
                    next_read = asyncio.ensure_future(session.fetch(batch.events[-1].id, size))
                await self._deliver(batch.events)
                delivered += len(batch.events)
                latest = self._known_position = batch.events[-1].id
                if next_read is None:
                    return delivered
                if self.stopping:
                    raise _StopRequested
                batch, next_read = await next_read, None
        finally:
            if next_read is not None:
                # Let the read finish (it is bounded) rather than cancel it mid-protocol.
                await asyncio.gather(next_read, return_exceptions=True)

    def _note_horizon(self, horizon: Horizon) -> None:
        st = self.status
        st.newest_event_id = horizon.last_drawn_id
        st.writers_in_flight = horizon.writers
        if horizon.blocking_pid is None:
            st.blocked_by_pid = st.blocked_since = None
            return
        st.blocked_by_pid = horizon.blocking_pid
        st.blocked_since = horizon.blocking_since or st.blocked_since or datetime.now(UTC)
        now = time.monotonic()
        if now - self._last_blocked_log >= self.settings.blocked_log_interval:
            self._last_blocked_log = now
            logger.warning(
                "delivery after id %d waits for a producer transaction still open "
                "(backend pid %d, open since %s); %d id(s) drawn after it are held back",
                horizon.safe_id,
                horizon.blocking_pid,
                st.blocked_since,
                horizon.last_drawn_id - horizon.safe_id,
                extra={"safe_id": horizon.safe_id, "blocking_pid": horizon.blocking_pid},
            )

    def _on_purged(self, latest: int, purged_up_to: int) -> None:
        if self.settings.on_purged == "raise":
            raise EventsPurgedError(latest + 1, purged_up_to, self.settings.topics)
        if purged_up_to > self._acknowledged_purge:
            self._acknowledged_purge = purged_up_to
            self.status.purged_ranges.append((latest + 1, purged_up_to))
            logger.error(
                "EVENTS LOST: ids %d..%d on topics %s were purged before this subscriber received "
                "them; continuing from the oldest event still stored (on_purged=continue)",
                latest + 1,
                purged_up_to,
                self.settings.topics,
                extra={"first_missing_id": latest + 1, "last_missing_id": purged_up_to},
            )

    async def _deliver(self, events: list[Event]) -> None:
        started = time.perf_counter()
        await self._with_handler_retry(self.handler.on_notification, events)
        st = self.status
        st.handler_seconds += time.perf_counter() - started
        st.events_delivered += len(events)
        st.batches_delivered += 1
        st.latest_received_id = events[-1].id
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
            logger.error(
                "handler %s failed%s (attempt %d), retrying in %.1fs: %r",
                method.__name__,
                ids,
                state.attempt_number,
                delay,
                exc,
                exc_info=exc,
            )

        retrying = AsyncRetrying(
            retry=retry_if_not_exception_type(_StopRequested),
            wait=_backoff(s.handler_retry_initial_delay, s.handler_retry_max_delay),
            stop=stop_never,
            before_sleep=log_failure,
            sleep=self._sleep_unless_stopped,
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
