"""What a running subscriber reports about itself (for health checks and metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class SubscriberStatus:
    """A live view of a :class:`~pgsubscriber.Subscriber`; read it, do not write it."""

    running: bool = False
    connected: bool = False
    reconnects: int = 0
    last_error: str | None = None
    latest_received_id: int | None = None
    """The handler's position, as last reported by ``get_latest_received_id``."""
    newest_event_id: int | None = None
    """The newest id drawn in ``events`` (any topic) at the last fetch."""
    events_delivered: int = 0
    batches_delivered: int = 0
    handler_seconds: float = 0.0
    handler_failures: int = 0
    writers_in_flight: int = 0
    blocked_by_pid: int | None = None
    """A producer transaction that holds delivery back, if any."""
    blocked_since: datetime | None = None
    caught_up_at: datetime | None = None
    purged_ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def lag(self) -> int | None:
        """Ids between the newest event and the handler's position (an upper bound on events)."""
        if self.newest_event_id is None or self.latest_received_id is None:
            return None
        return max(0, self.newest_event_id - self.latest_received_id)
