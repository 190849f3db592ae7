"""Subscriber configuration, read from ``PGSUBSCRIBER_*`` environment variables."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pgsubscriber.errors import ConfigurationError
from pgsubscriber.events import validate_topic

ENV_PREFIX = "PGSUBSCRIBER_"


class SubscriberSettings(BaseSettings):
    """How a :class:`~pgsubscriber.Subscriber` connects, what it reads, and its timing.

    Every field can be given as an argument or as the environment variable ``PGSUBSCRIBER_<NAME>``
    (``PGSUBSCRIBER_DSN``, ``PGSUBSCRIBER_TOPICS=courses,audit``, ...). Durations are in seconds.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    dsn: str = Field(description="libpq connection string of the events database.")
    listen_dsn: str | None = Field(
        default=None,
        description="Separate connection string for LISTEN, e.g. direct to PostgreSQL when `dsn` "
        "goes through a transaction-pooling PgBouncer (where LISTEN does not work).",
    )
    topics: Annotated[list[str], NoDecode] = Field(
        description="Topics to receive (comma-separated in the environment)."
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Most events per handler call.")
    batch_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="Most payload bytes (as JSON text) per handler call; a larger event comes alone.",
    )
    poll_only: bool = Field(
        default=False, description="Never LISTEN; fetch every `poll_only_interval` instead."
    )
    poll_only_interval: float = Field(default=1.0, gt=0, description="Fetch period in poll-only mode.")
    safety_poll_interval: float = Field(
        default=30.0, gt=0, description="Fetch at least this often, even without a notification."
    )
    writer_poll_min: float = Field(
        default=0.002,
        gt=0,
        description="First re-fetch delay while producer transactions are in flight.",
    )
    writer_poll_max: float = Field(
        default=0.1,
        gt=0,
        description="Longest re-fetch delay while producer transactions are in flight.",
    )
    writer_poll_threshold: int = Field(
        default=2,
        ge=1,
        description="Producer transactions in flight at which an idle subscriber re-polls instead of "
        "waiting for NOTIFY (writers then skip NOTIFY and its commit-time lock).",
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="Silence on the connection after which it is checked."
    )
    heartbeat_timeout: float = Field(
        default=5.0,
        gt=0,
        description="A check or query unanswered this long means a dead connection.",
    )
    query_timeout: float = Field(default=10.0, gt=0, description="Longest wait for a fetch query.")
    connect_timeout: int = Field(default=5, ge=1, description="libpq connect_timeout.")
    keepalives_idle: int = Field(default=10, ge=1, description="libpq keepalives_idle.")
    keepalives_interval: int = Field(default=5, ge=1, description="libpq keepalives_interval.")
    keepalives_count: int = Field(default=3, ge=1, description="libpq keepalives_count.")
    tcp_user_timeout_ms: int = Field(default=15_000, ge=0, description="libpq tcp_user_timeout.")
    reconnect_initial_delay: float = Field(default=0.1, gt=0, description="First reconnect backoff.")
    reconnect_max_delay: float = Field(default=10.0, gt=0, description="Longest reconnect backoff.")
    reconnect_max_attempts: int | None = Field(
        default=None,
        ge=1,
        description="Give up after this many failed attempts in a row (None: never). A connection "
        "lost before it served `reconnect_max_delay` counts as a failed attempt.",
    )
    fail_fast: bool = Field(
        default=False,
        description="End run() at the first connect error that retrying cannot fix (authentication "
        "failed, database or role missing) instead of retrying it like a network fault.",
    )
    handler_retry_initial_delay: float = Field(
        default=0.5, gt=0, description="First delay before a failed batch is delivered again."
    )
    handler_retry_max_delay: float = Field(
        default=30.0, gt=0, description="Longest delay before a failed batch is delivered again."
    )
    on_purged: Literal["raise", "continue"] = Field(
        default="raise",
        description="When events were purged before this subscriber received them: raise "
        "EventsPurgedError, or log the loss and continue from the oldest event left.",
    )
    blocked_warning_after: float = Field(
        default=1.0,
        gt=0,
        description="Warn about a producer transaction only once it has held delivery back this long.",
    )
    blocked_log_interval: float = Field(
        default=30.0,
        gt=0,
        description="At most one log line per this many seconds about a producer transaction "
        "that holds delivery back.",
    )

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="How this subscriber is named in the registry (`pgsubscriber status`, the "
        "dashboard); default: the application's name (`python -m webconsumer`: webconsumer).",
    )
    registry: bool = Field(
        default=True,
        description="Record this subscriber in the events_subscribers table (its position, mode, "
        "last error) every `registry_interval`, on its own short statements.",
    )
    registry_interval: float = Field(
        default=5.0,
        gt=0,
        le=86400,
        description="Seconds between registry writes; the subscriber shows as gone once not seen "
        "for 3 x this + 5 s.",
    )
    group: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Consumer group name: subscribers of one group share the work (one active member, "
        "the others stand by; or `partitions` shared among the members). None: an independent subscriber.",
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Partitions of the group (by each event's partition_key, or id without one); "
        "each is delivered by one live member at a time. Every member of a group must give the same.",
    )
    group_lease_timeout: float = Field(
        default=10.0,
        gt=0,
        description="A group member whose lease session stays silent this long (frozen process, "
        "cut network) is ended by the server, which hands its partitions to the others.",
    )
    group_check_interval: float = Field(
        default=1.0,
        gt=0,
        description="How often a group member checks the group (its lease heartbeat) and takes "
        "partitions left free (a dead member's, or its share when members leave).",
    )

    def __init__(self, **values: Any) -> None:
        if os.environ.get(f"{ENV_PREFIX}CHANNEL") or "channel" in values:
            raise ConfigurationError(
                f"invalid subscriber settings: channel ({ENV_PREFIX}CHANNEL) no longer exists: each "
                "topic has its own channel, events_channel(topic) = 'events:<topic>'; remove it"
            )
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError.from_validation_error(
                exc, "subscriber settings", lambda field: f"{field} ({ENV_PREFIX}{field.upper()})"
            ) from None

    @field_validator("topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one topic")
        return sorted({validate_topic(topic) for topic in value})

    @model_validator(mode="after")
    def _check_ranges(self) -> SubscriberSettings:
        if self.writer_poll_max < self.writer_poll_min:
            raise ValueError("writer_poll_max must be >= writer_poll_min")
        if self.reconnect_max_delay < self.reconnect_initial_delay:
            raise ValueError("reconnect_max_delay must be >= reconnect_initial_delay")
        if self.partitions > 1 and self.group is None:
            raise ValueError("partitions needs a group: set group as well")
        if (
            self.group is not None
            and self.group_lease_timeout < 2 * self.group_check_interval + self.heartbeat_timeout
        ):
            raise ValueError(
                "group_lease_timeout must be >= 2 * group_check_interval + heartbeat_timeout, so that "
                "a live member's checks keep its lease"
            )
        return self

    @property
    def dead_connection_bound(self) -> float:
        """Longest time a silently dead connection goes unnoticed: heartbeat interval + timeout
        while idle, ``query_timeout`` when it dies under a fetch in flight."""
        return max(self.heartbeat_interval + self.heartbeat_timeout, self.query_timeout)

    def connection_kwargs(self) -> dict[str, Any]:
        """libpq parameters that bound how long a broken network goes unnoticed."""
        return {
            "connect_timeout": self.connect_timeout,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.tcp_user_timeout_ms,
            "application_name": "pgsubscriber",
        }


def environment_help(model: type[BaseSettings]) -> str:
    """One line per environment variable a settings class reads: name, default, description.

    For ``--help`` texts: services built on pgsubscriber list what they read, e.g.
    ``environment_help(SubscriberSettings)``.
    """
    prefix = str(model.model_config.get("env_prefix", "")).upper()
    lines = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        variable = alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{name.upper()}"
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = "generated"
        else:
            default = f"default {field.default!r}"
        lines.append(f"  {variable} ({default}): {field.description or ''}".rstrip())
    return "\n".join(lines)
