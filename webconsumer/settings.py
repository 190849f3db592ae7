"""Configuration of ``python -m webconsumer``, from environment variables."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgsubscriber import SubscriberSettings

DEFAULT_TOPICS = ["courses"]


class WebConsumerSettings(BaseSettings):
    """The web server and MongoDB side (``WEBCONSUMER_*``, and ``MONGO_URL``)."""

    model_config = SettingsConfigDict(env_prefix="WEBCONSUMER_", extra="forbid", frozen=True)

    host: str = Field(default="0.0.0.0", description="Address the HTTP server binds to.")
    port: int = Field(default=1337, ge=0, le=65535, description="HTTP port.")
    mongo_url: str = Field(
        default="mongodb://localhost:27017",
        validation_alias=AliasChoices("MONGO_URL", "mongo_url"),
        description="MongoDB connection string (environment variable MONGO_URL, no prefix).",
    )
    mongo_database: str = Field(default="consumer", description="Database of the received events.")
    mongo_timeout: float = Field(
        default=5.0, gt=0, description="Server selection and connect timeout for MongoDB, in seconds."
    )
    shutdown_timeout: float = Field(
        default=15.0, gt=0, description="Longest wait for the subscriber to stop at shutdown, in seconds."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")


def subscriber_settings() -> SubscriberSettings:
    """The subscriber's ``PGSUBSCRIBER_*`` settings; topics default to ``courses`` when unset."""
    if os.environ.get("PGSUBSCRIBER_TOPICS"):
        return SubscriberSettings()
    return SubscriberSettings(topics=DEFAULT_TOPICS)
