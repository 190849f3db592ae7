"""A subscriber in a child process with a no-op handler that reports its progress to the harness.

The handler keeps nothing: it counts, remembers the last id, and writes both (and the time of the
call) to shared memory. It is synchronous (called in a worker thread) or, with ``async_handler``,
a coroutine handler awaited in the subscriber's loop. For latency runs it also sends each event's
``seq`` and the time of the handler call to a queue.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.processes import CTX
from pgsubscriber import Event, Subscriber, SubscriberSettings


@dataclass
class Probe:
    """Shared memory between one subscriber child and the harness."""

    delivered: Any = field(default_factory=lambda: CTX.Value("q", 0, lock=False))
    latest: Any = field(default_factory=lambda: CTX.Value("q", 0, lock=False))
    delivered_at: Any = field(default_factory=lambda: CTX.Value("d", 0.0, lock=False))
    started_at: Any = field(default_factory=lambda: CTX.Value("d", 0.0, lock=False))
    done_at: Any = field(default_factory=lambda: CTX.Value("d", 0.0, lock=False))
    max_rss_kb: Any = field(default_factory=lambda: CTX.Value("q", 0, lock=False))
    caught_up: Any = field(default_factory=CTX.Event)
    stop: Any = field(default_factory=CTX.Event)


@dataclass(frozen=True)
class SubscriberSpec:
    dsn: str
    topics: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    start_after_id: int = 0
    stop_at_id: int | None = None  # stop once this id is delivered (catch-up runs)
    send_times: bool = False
    async_handler: bool = False  # coroutine methods, awaited in the loop (no thread hop)


class NoOpHandler:
    def __init__(self, spec: SubscriberSpec, probe: Probe, times: Any) -> None:
        self.latest = spec.start_after_id
        self.subscriber: Subscriber | None = None
        self._spec = spec
        self._probe = probe
        self._times = times

    def on_notification(self, events: list[Event]) -> None:
        now = time.monotonic()
        probe = self._probe
        self.latest = events[-1].id
        probe.delivered.value += len(events)
        probe.latest.value = self.latest
        probe.delivered_at.value = now
        if self._times is not None:
            self._times.put([(e.payload.get("seq"), now) for e in events])
        stop_at = self._spec.stop_at_id
        if stop_at is not None and self.latest >= stop_at and self.subscriber is not None:
            probe.done_at.value = now
            self.subscriber.stop()

    def get_latest_received_id(self) -> int:
        return self.latest


class AsyncNoOpHandler(NoOpHandler):
    """The same handler with coroutine methods: the subscriber awaits them in its own loop."""

    async def on_notification(self, events: list[Event]) -> None:  # type: ignore[override]
        NoOpHandler.on_notification(self, events)

    async def get_latest_received_id(self) -> int:  # type: ignore[override]
        return self.latest


def subscriber_main(spec: SubscriberSpec, probe: Probe, times: Any, log_level: int) -> None:
    """Child entry point: run a subscriber until ``probe.stop`` is set or ``stop_at_id`` is reached."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s [subscriber] %(name)s %(message)s")
    handler = (AsyncNoOpHandler if spec.async_handler else NoOpHandler)(spec, probe, times)
    subscriber = Subscriber(handler, SubscriberSettings(dsn=spec.dsn, topics=spec.topics, **spec.settings))
    handler.subscriber = subscriber

    def watch() -> None:
        while not probe.stop.wait(0.01):
            if subscriber.status.caught_up_at is not None and not probe.caught_up.is_set():
                probe.caught_up.set()
        subscriber.stop()

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    probe.started_at.value = time.monotonic()
    asyncio.run(subscriber.run())
    probe.max_rss_kb.value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
