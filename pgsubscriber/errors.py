"""The exceptions pgsubscriber raises. Catch :class:`PgSubscriberError` to catch them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class PgSubscriberError(Exception):
    """Base class of every error raised by pgsubscriber."""


class ConfigurationError(PgSubscriberError, ValueError):
    """A setting is invalid. The message names the setting and what is accepted."""

    @classmethod
    def from_validation_error(
        cls, exc: ValidationError, subject: str, name_field: Callable[[str], str] | None = None
    ) -> ConfigurationError:
        """One message for every problem pydantic found; ``name_field`` says how to name a field
        to the user (e.g. its environment variable)."""
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            message = str(err.get("ctx", {}).get("error", err["msg"]))
            label = name_field(field) if name_field and field else ".".join(str(p) for p in err["loc"])
            problems.append(f"{label}: {message}" if label else message)
        return cls(f"invalid {subject}: {'; '.join(problems)}")


class InvalidEventError(PgSubscriberError, ValueError):
    """An event cannot be published as given; nothing was written."""


class InvalidTopicError(InvalidEventError):
    """A topic is empty, too long or uses characters outside the allowed set."""


class InvalidPayloadError(InvalidEventError):
    """A payload is not a JSON object, or cannot be serialized to JSON."""


class SchemaMissingError(PgSubscriberError):
    """The events schema is not in the database: run ``pgsubscriber migrate`` first."""


class ConnectionLostError(PgSubscriberError):
    """The connection to PostgreSQL stopped answering. The subscriber reconnects on its own."""


class EventsPurgedError(PgSubscriberError):
    """Events this subscriber never received were deleted by the purger.

    ``first_missing_id`` .. ``last_missing_id`` is the range of ids that may have held such events.
    Restore them from a backup and replay them to the handler, or set
    ``on_purged="continue"`` to accept the loss and continue from the oldest event available.
    """

    def __init__(self, first_missing_id: int, last_missing_id: int, topics: list[str]) -> None:
        self.first_missing_id = first_missing_id
        self.last_missing_id = last_missing_id
        self.topics = list(topics)
        super().__init__(
            f"events with ids {first_missing_id}..{last_missing_id} on topics {self.topics} were "
            "purged before this subscriber received them. Replay them from a backup, or set "
            "on_purged='continue' (PGSUBSCRIBER_ON_PURGED=continue) to accept the loss and "
            "continue from the oldest event still stored."
        )


class PartitionLostError(PgSubscriberError):
    """Internal: a group member found, right before a handler call, that it no longer owns the
    partition (its lease session ended or it handed the partition over); the batch is not
    delivered and the member stops delivering that partition."""
