"""Configuration of ``python -m purger``, from ``PURGER_*`` environment variables or flags."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pgsubscriber.errors import ConfigurationError
from pgsubscriber.events import validate_topic
from purger.policy import RetentionPolicy, format_duration, parse_duration

ENV_PREFIX = "PURGER_"

#: A retention shorter than this is refused unless ``force`` is set: it is more likely a unit
#: mistake (``7m`` for ``7d``) than a wish to delete events that subscribers may still need.
SAFETY_MINIMUM = timedelta(hours=1)

#: The command-line flag of each setting, to name it in error messages.
FLAGS = {
    "dsn": "--dsn",
    "retention": "--retention",
    "interval": "--interval",
    "topic_retention": "--topic-retention",
    "batch_size": "--batch-size",
    "force": "--force",
}


def parse_topic_retention(text: str) -> dict[str, timedelta]:
    """``'audit=90d,billing=30d'`` -> ``{'audit': 90 days, 'billing': 30 days}``."""
    result: dict[str, timedelta] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        topic, sep, duration = item.partition("=")
        if not sep or not topic.strip():
            raise ConfigurationError(
                f"cannot read topic retention {item.strip()!r}: write topic=duration, "
                "e.g. 'audit=90d,billing=30d'"
            )
        if topic.strip() in result:
            raise ConfigurationError(f"topic {topic.strip()!r} is given two retentions")
        result[topic.strip()] = parse_duration(duration)
    return result


class PurgerSettings(BaseSettings):
    """Every field is an argument, a ``PURGER_<NAME>`` environment variable, or a flag."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    dsn: str = Field(
        description="libpq connection string; the login must be a member of events_purger "
        "(or a superuser): the purger acts as events_purger."
    )
    retention: Annotated[timedelta, NoDecode] = Field(
        description="Events older than this are deleted (e.g. `7d`, `12h`, `1h30m`)."
    )
    interval: Annotated[timedelta, NoDecode] = Field(
        default=timedelta(minutes=15), description="Time between two passes (not used with `--once`)."
    )
    topic_retention: Annotated[dict[str, timedelta], NoDecode] = Field(
        default_factory=dict,
        description="Per-topic exceptions to `retention`, e.g. `audit=90d,billing=30d`.",
    )
    batch_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most events deleted per transaction."
    )
    force: bool = Field(
        default=False, description="Accept a retention shorter than the safety minimum of 1 hour."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve Prometheus metrics on this port (/metrics) when running as a service.",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError.from_validation_error(
                exc,
                "purger settings",
                lambda field: f"{ENV_PREFIX}{field.upper()} / {FLAGS.get(field, '--' + field)}",
            ) from None

    @field_validator("retention", "interval", mode="before")
    @classmethod
    def _parse_duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("topic_retention", mode="before")
    @classmethod
    def _parse_topic_retention(cls, value: object) -> object:
        return parse_topic_retention(value) if isinstance(value, str) else value

    @field_validator("topic_retention")
    @classmethod
    def _check_topics(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        for topic in value:
            validate_topic(topic)
        return value

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the interval must be positive, e.g. '15m'")
        return value

    @model_validator(mode="after")
    def _check_safety_minimum(self) -> PurgerSettings:
        self.policy()  # negative durations, invalid topic names
        if self.force:
            return self
        retentions = {
            f"{ENV_PREFIX}RETENTION / --retention {format_duration(self.retention)}": self.retention
        }
        retentions.update(
            (f"{ENV_PREFIX}TOPIC_RETENTION / --topic-retention: {t}={format_duration(d)}", d)
            for t, d in self.topic_retention.items()
        )
        for what, duration in retentions.items():
            if duration < SAFETY_MINIMUM:
                raise ValueError(
                    f"{what} is shorter than the safety minimum of {format_duration(SAFETY_MINIMUM)}; "
                    "give a longer retention, or add --force (PURGER_FORCE=true) if you mean it"
                )
        return self

    def policy(self) -> RetentionPolicy:
        """The retention policy these settings describe."""
        return RetentionPolicy(
            default=self.retention, per_topic=dict(self.topic_retention), batch_size=self.batch_size
        )
