"""What to keep: the retention period (a default plus per-topic exceptions), and duration parsing."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pgsubscriber.errors import ConfigurationError, InvalidTopicError
from pgsubscriber.events import validate_topic

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"(?:\d+\s*[smhdw]\s*)+")


def parse_duration(text: str) -> timedelta:
    """``'90s'``, ``'15m'``, ``'12h'``, ``'7d'``, ``'2w'`` or a sum such as ``'1h30m'``.

    Raises :class:`~pgsubscriber.errors.ConfigurationError` on anything else (no unit, a
    negative or fractional number, an unknown unit).
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"a duration is a string such as '7d', not {text!r}")
    cleaned = text.strip().lower()
    if cleaned.startswith("-"):
        raise ConfigurationError(f"duration {text!r} is negative: give a positive duration such as '7d'")
    if not _WHOLE.fullmatch(cleaned):
        raise ConfigurationError(
            f"cannot read duration {text!r}: use a whole number and a unit, s (seconds), m (minutes), "
            "h (hours), d (days) or w (weeks), e.g. '90s', '15m', '12h', '7d', '1h30m'"
        )
    return timedelta(seconds=sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned)))


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration`, to whole seconds: ``timedelta(hours=26)`` -> ``'1d2h'``."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _to_timedelta(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


class RetentionPolicy(BaseModel):
    """Events older than their topic's retention are deleted, ``batch_size`` rows per transaction.

    Durations may be given as :class:`~datetime.timedelta` or as strings (``'7d'``). A topic in
    ``per_topic`` uses its own retention; every other topic uses ``default``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: timedelta
    per_topic: dict[str, timedelta] = Field(default_factory=dict)
    batch_size: int = Field(default=10_000, ge=1, le=1_000_000)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError.from_validation_error(exc, "retention policy") from None

    @field_validator("default", mode="before")
    @classmethod
    def _parse_default(cls, value: object) -> object:
        return _to_timedelta(value)

    @field_validator("per_topic", mode="before")
    @classmethod
    def _parse_per_topic(cls, value: object) -> object:
        if isinstance(value, dict):
            return {topic: _to_timedelta(duration) for topic, duration in value.items()}
        return value

    @field_validator("default")
    @classmethod
    def _check_default(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"retention {value} is negative")
        return value

    @field_validator("per_topic")
    @classmethod
    def _check_per_topic(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        for topic, duration in value.items():
            try:
                validate_topic(topic)
            except InvalidTopicError as exc:
                raise ValueError(str(exc)) from None
            if duration < timedelta(0):
                raise ValueError(f"retention {duration} of topic {topic!r} is negative")
        return value

    def retention_for(self, topic: str) -> timedelta:
        """How long events of ``topic`` are kept."""
        return self.per_topic.get(topic, self.default)

    def describe(self) -> str:
        """One line for the log: ``'7d (audit: 90d, billing: 30d)'``."""
        text = format_duration(self.default)
        if self.per_topic:
            exceptions = ", ".join(f"{t}: {format_duration(d)}" for t, d in sorted(self.per_topic.items()))
            text += f" ({exceptions})"
        return text
