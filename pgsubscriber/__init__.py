"""pgsubscriber: a dependable, gap-free event stream on PostgreSQL.

Create the schema with :func:`migrate` (or ``pgsubscriber migrate``), publish with :func:`publish`
inside your own transaction, implement :class:`ApplicationEventHandler`, then
``await Subscriber(handler, settings).run()`` (or ``run_subscriber(handler)`` in a worker process).
"""

from __future__ import annotations

import logging

from pgsubscriber._decoding import register_tolerant_timestamps
from pgsubscriber.errors import (
    ConfigurationError,
    ConnectionLostError,
    EventsPurgedError,
    InvalidEventError,
    InvalidPayloadError,
    InvalidTopicError,
    PartitionLostError,
    PgSubscriberError,
    SchemaMissingError,
)
from pgsubscriber.events import TOPIC_PATTERN, Event, channel_for, validate_topic
from pgsubscriber.group import GroupMember, HandlerFactory, partition_of
from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.migrate import MigrationError, migrate
from pgsubscriber.monitor import StreamStatus, Thresholds, read_status
from pgsubscriber.publish import NewEvent, publish, publish_many
from pgsubscriber.replay import read_events
from pgsubscriber.runner import run_subscriber
from pgsubscriber.settings import SubscriberSettings
from pgsubscriber.status import SubscriberStatus
from pgsubscriber.subscriber import Subscriber

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "TOPIC_PATTERN",
    "ApplicationEventHandler",
    "ConfigurationError",
    "ConnectionLostError",
    "Event",
    "EventsPurgedError",
    "GroupMember",
    "HandlerFactory",
    "InvalidEventError",
    "InvalidPayloadError",
    "InvalidTopicError",
    "MigrationError",
    "NewEvent",
    "PartitionLostError",
    "PgSubscriberError",
    "SchemaMissingError",
    "StreamStatus",
    "Subscriber",
    "SubscriberSettings",
    "SubscriberStatus",
    "Thresholds",
    "channel_for",
    "migrate",
    "partition_of",
    "publish",
    "publish_many",
    "read_events",
    "read_status",
    "register_tolerant_timestamps",
    "run_subscriber",
    "validate_topic",
]
