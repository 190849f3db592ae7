"""The event model, and the rule every topic follows."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from pgsubscriber.errors import InvalidTopicError
from pgsubscriber.schema import CHANNEL_PREFIX

#: A topic: 1 to 128 characters, starting with a letter or digit, then letters, digits and ``_.:/-``.
#: The database enforces the same rule (constraint ``events_topic_format``).
TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"
_TOPIC_RE = re.compile(TOPIC_PATTERN)


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name, else raise :class:`InvalidTopicError`."""
    if not isinstance(topic, str) or not _TOPIC_RE.fullmatch(topic):
        raise InvalidTopicError(
            f"invalid topic {topic!r}: a topic is 1 to 128 characters, starts with a letter or "
            "digit and uses only letters, digits and _ . : / -"
        )
    return topic


def channel_for(topic: str) -> str:
    """The NOTIFY channel writers use for ``topic`` (the schema's ``events_channel(topic)``).

    ``events:<topic>``, or ``events:<md5 of topic>`` when that would exceed PostgreSQL's 63-byte
    identifiers. A client in any language LISTENs on it to be woken by that topic's commits.
    """
    validate_topic(topic)
    if len(CHANNEL_PREFIX) + len(topic) <= 63:
        return CHANNEL_PREFIX + topic
    return CHANNEL_PREFIX + hashlib.md5(topic.encode(), usedforsecurity=False).hexdigest()


class Event(BaseModel):
    """One event of the log, as delivered to a handler."""

    model_config = ConfigDict(frozen=True)

    id: int
    """The global position: strictly increasing in delivery order."""
    topic: str
    payload: dict[str, Any]
    created_at: datetime
    key: str | None = None
    """The idempotency key the producer gave, if any."""
    raw_payload: str | None = None
    """Set only when the stored payload could not be decoded: its JSON text as PostgreSQL returned
    it, and ``payload`` is then empty. The event is delivered in order all the same, never skipped;
    a handler that cares checks this field."""


_EVENT_FIELDS = frozenset(Event.model_fields)
_new_object = object.__new__
_set_attribute = object.__setattr__


def trusted_event(
    id: int,
    topic: str,
    payload: dict[str, Any],
    created_at: datetime,
    key: str | None,
    raw_payload: str | None = None,
) -> Event:
    """An :class:`Event` from values the database already checked, without validation.

    The same object ``Event.model_construct`` builds (equal, dumpable, frozen), at a quarter of the
    cost: catch-up builds one per delivered event.
    """
    event = _new_object(Event)
    _set_attribute(
        event,
        "__dict__",
        {
            "id": id,
            "topic": topic,
            "payload": payload,
            "created_at": created_at,
            "key": key,
            "raw_payload": raw_payload,
        },
    )
    _set_attribute(event, "__pydantic_fields_set__", _EVENT_FIELDS)
    _set_attribute(event, "__pydantic_extra__", None)
    _set_attribute(event, "__pydantic_private__", None)
    return event
