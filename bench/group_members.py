"""A consumer group member in a child process, with no-op handlers that report to shared memory.

Only the probe's plain shared values are used (no Event): a member may be SIGKILLed, and a
process killed while waiting on a multiprocessing Event leaves it unusable for the others. Stop
and readiness are ``flags`` (stop, ready), shared bytes.

Throughput runs give each member its own :class:`~bench.subscribing.Probe`; each partition's
handler keeps its position in memory (every member starts when the database is empty of new
events, so a partition taken over mid-run does not happen). Failover runs give every member the
same probe: its ``latest`` is the shared position the member taking over continues from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from bench.subscribing import Probe
from pgsubscriber import Event, GroupMember, SubscriberSettings


class PartitionHandler:
    """No-op handler of one partition; ``shared`` keeps the position in the probe (failover runs)."""

    def __init__(
        self, probe: Probe, start_after_id: int, shared: bool, active: Any, seconds_per_event: float = 0.0
    ) -> None:
        self._probe = probe
        self._seconds_per_event = seconds_per_event
        self._shared = shared
        self._active = active  # (pid of the member that delivered last, when it took over)
        self.latest = start_after_id

    def on_notification(self, events: list[Event]) -> None:
        if self._seconds_per_event:
            time.sleep(self._seconds_per_event * len(events))  # a handler bound by its store's latency
        probe = self._probe
        self.latest = events[-1].id
        now = time.monotonic()
        probe.delivered.value += len(events)
        probe.delivered_at.value = now
        if self._shared or self.latest > probe.latest.value:
            probe.latest.value = self.latest
        if self._active is not None and self._active[0].value != os.getpid():
            self._active[1].value = now
            self._active[0].value = os.getpid()

    def get_latest_received_id(self) -> int:
        return int(self._probe.latest.value) if self._shared else self.latest


def member_main(
    dsn: str,
    topics: list[str],
    settings: dict[str, Any],
    probe: Probe,
    shared: bool,
    active: Any,
    flags: tuple[Any, Any],
    log_level: int,
    seconds_per_event: float = 0.0,
) -> None:
    """Child entry point: one group member until ``probe.stop`` is set (or the process is killed)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s [member] %(name)s %(message)s")
    start = int(probe.latest.value)
    member = GroupMember(
        lambda _partition: PartitionHandler(probe, start, shared, active, seconds_per_event),
        SubscriberSettings(dsn=dsn, topics=topics, **settings),
    )

    stop, ready = flags

    def watch() -> None:
        while not stop.value:
            time.sleep(0.01)
            st = member.status
            if st.connected and st.group_members is not None:
                ready.value = 1
        member.stop()

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    asyncio.run(member.run())
