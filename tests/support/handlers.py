"""Handlers used by the tests: they record what they receive, in memory."""

from __future__ import annotations

import threading

from pgsubscriber import Event


class RecordingHandler:
    """A sync handler that keeps every event; optionally fails its first ``fail_times`` calls."""

    def __init__(self, start_after: int = 0, fail_times: int = 0) -> None:
        self.events: list[Event] = []
        self.batches: list[list[int]] = []
        self.calls = 0
        self.fail_times = fail_times
        self._latest = start_after
        self._lock = threading.Lock()

    def on_notification(self, events: list[Event]) -> None:
        with self._lock:
            self.calls += 1
            if self.calls <= self.fail_times:
                raise RuntimeError(f"handler failure {self.calls} of {self.fail_times}")
            self.events.extend(events)
            self.batches.append([e.id for e in events])
            self._latest = events[-1].id

    def get_latest_received_id(self) -> int:
        return self._latest

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return [e.id for e in self.events]


class AsyncRecordingHandler(RecordingHandler):
    """The same, with ``async def`` methods."""

    async def on_notification(self, events: list[Event]) -> None:  # type: ignore[override]
        RecordingHandler.on_notification(self, events)

    async def get_latest_received_id(self) -> int:  # type: ignore[override]
        return RecordingHandler.get_latest_received_id(self)
