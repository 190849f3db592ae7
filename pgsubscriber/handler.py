"""The contract between pgsubscriber and the application."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from pgsubscriber.events import Event


@runtime_checkable
class ApplicationEventHandler(Protocol):
    """What an application implements to receive events. No base class to inherit.

    Either method may be a plain ``def`` (it then runs in a worker thread) or an ``async def``
    (awaited in the subscriber's own task: let ``CancelledError`` propagate).

    The application owns its position: ``get_latest_received_id`` returns the id of the last event
    it has durably recorded (0 when none), and ``on_notification`` must record the batch's last id
    together with the batch's effects. The subscriber delivers every event with a greater id, in id
    order. If ``on_notification`` raises, the same batch is delivered again after a backoff: it is
    never skipped, and it may contain events a failed attempt already stored in part. After a
    process restart, a batch whose effects were not recorded is delivered again (at-least-once),
    so make ``on_notification`` idempotent, e.g. by upserting on ``event.id``.
    """

    def on_notification(self, events: list[Event]) -> Awaitable[None] | None:
        """Handle a non-empty batch of events, in increasing id order."""
        ...

    def get_latest_received_id(self) -> int | Awaitable[int]:
        """The id of the newest event already handled, or 0."""
        ...
