"""A stop request that may come from any thread, for a loop running in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class StopSignal:
    """``request()`` from anywhere; the running loop ``bind()``s it first, then waits or sleeps on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._waiting: asyncio.Task[Any] | None = None  # a task in interruptible()
        self._interrupted: asyncio.Task[Any] | None = None

    @property
    def requested(self) -> bool:
        return self._requested

    def request(self) -> None:
        """Ask the bound loop to stop. Safe from any thread, also before ``bind()``."""
        with self._lock:
            self._requested = True
            loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        # Always as a callback of the loop, even from inside it (a signal handler may run in the
        # very task that waits): cancelling a task that is running would leave the cancellation
        # pending past the wait it was meant for.
        loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        """In the loop: set the event, and cancel the await in interruptible(), if one waits."""
        assert self._event is not None
        self._event.set()
        task = self._waiting
        if task is not None and self._interrupted is None and not task.done():
            self._interrupted = task
            task.cancel()

    def bind(self) -> None:
        """Called in the running event loop before waiting on the signal; keeps an earlier request."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            if self._requested:
                self._event.set()

    async def wait(self) -> None:
        assert self._event is not None, "bind() first"
        await self._event.wait()

    async def interruptible(self, work: Coroutine[Any, Any, T]) -> T | None:
        """Await ``work`` in this task; a stop request cancels it, and then this returns None.

        One task, not two racing ones: this is on the path of every notification.
        """
        task = asyncio.current_task()
        assert task is not None and self._event is not None, "bind() first, then await in a task"
        if self._requested:
            work.close()
            return None
        already = task.cancelling()
        self._waiting = task
        try:
            return await work
        except asyncio.CancelledError:
            if self._interrupted is task and task.uncancel() <= already:
                return None
            raise
        finally:
            self._waiting = self._interrupted = None

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a stop is requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(), timeout=seconds)
