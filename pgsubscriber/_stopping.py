"""A stop request that may come from any thread, for a loop running in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class StopSignal:
    """``request()`` from anywhere; the running loop ``bind()``s it first, then waits or sleeps on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

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
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

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

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a stop is requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(), timeout=seconds)
