"""What a running subscriber reports about itself (for health checks and metrics).

Vocabulary, the same in code, SQL, logs and docs:
``position`` is the id of the last event the handler recorded (``get_latest_received_id``);
``safe_id`` is how far delivery may go now; ``last_drawn_id`` the newest id any writer drew,
committed or not; ``writers`` the producer transactions in flight; ``purged_up_to_id`` the
purger's watermark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Mode = Literal["disconnected", "listening", "polling", "poll-only", "standby"]
Role = Literal["active", "standby"]


@dataclass
class SubscriberStatus:
    """A live view of a :class:`~pgsubscriber.Subscriber`; read it, do not write it."""

    running: bool = False
    connected: bool = False
    mode: Mode = "disconnected"
    """listening: waits for NOTIFY; polling: re-fetches on its own (writers in flight, a slow
    handler, a full notification queue); poll-only: configured never to LISTEN; standby: a group member
    that owns no partition (connected, delivering nothing, ready to take over)."""
    reconnects: int = 0
    last_error: str | None = None
    position: int | None = None
    """The handler's position, as last reported by ``get_latest_received_id`` or moved by a batch."""
    safe_id: int | None = None
    last_drawn_id: int | None = None
    """The newest id drawn in ``events`` (any topic) at the last fetch."""
    fetches: int = 0
    """Fetch round trips so far (a quiet subscriber makes few: other topics do not wake it)."""
    events_delivered: int = 0
    batches_delivered: int = 0
    handler_seconds: float = 0.0
    handler_failures: int = 0
    writers: int = 0
    blocked_by_pid: int | None = None
    """A producer transaction that holds delivery back, if any."""
    blocked_since: datetime | None = None
    foreign_lock_pid: int | None = None
    """A session outside pgsubscriber holding one of its lock keys (ignored, reported)."""
    notify_queue_usage: float | None = None
    """Fraction of the server's NOTIFY queue in use at the last fetch."""
    caught_up_at: datetime | None = None
    purged_ranges: list[tuple[int, int]] = field(default_factory=list)
    group: str | None = None
    """The consumer group of this member (None: an independent subscriber)."""
    role: Role | None = None
    """In a group: active while it owns at least one partition, standby otherwise."""
    partitions_owned: list[int] = field(default_factory=list)
    """In a group: the partitions this member delivers now (of ``partitions``)."""
    partitions: int | None = None
    """In a group: how many partitions the group has."""
    group_members: int | None = None
    """In a group: live members at the last check (this one included)."""
    takeovers: int = 0
    """In a group: partitions this member took over (at start, after a member died or left)."""

    @property
    def lag(self) -> int | None:
        """Ids between the newest id drawn and the handler's position (an upper bound on events)."""
        if self.last_drawn_id is None or self.position is None:
            return None
        return max(0, self.last_drawn_id - self.position)
