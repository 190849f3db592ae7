"""Configuration of ``python -m producer``, from ``PRODUCER_*`` environment variables."""

from __future__ import annotations

import os
import socket
import uuid

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_producer_id() -> str:
    # Unique per run: a restarted container has the same hostname and pid (1), and reused keys would
    # make its new events collide with stored ones (ON CONFLICT DO NOTHING drops them).
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ProducerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCER_", extra="forbid")

    dsn: str = Field(description="Connection string (a role that is a member of events_producer).")
    rate: float = Field(default=5.0, gt=0, description="Events per second.")
    count: int = Field(default=0, ge=0, description="Stop after this many events (0: run forever).")
    batch_size: int = Field(default=1, ge=1, le=10_000, description="Events per transaction.")
    producer_id: str = Field(
        default_factory=_default_producer_id, description="Prefix of the idempotency keys."
    )
    seed: int | None = Field(default=None, description="Random seed, for a reproducible stream.")
    retry_max_delay: float = Field(default=5.0, gt=0, description="Longest backoff during an outage.")
    prepared_statements: bool = Field(
        default=False,
        description="Let psycopg prepare its statements on the server (after 5 executions): about "
        "0.1 ms less per transaction, but only for a direct connection or a session-pooling "
        "PgBouncer. Through a transaction-pooling PgBouncer prepared statements fail.",
    )
