"""The example web consumer: a pgsubscriber handler that keeps events and a read model in MongoDB.

``python -m webconsumer`` serves ``/courses``, ``/health`` and ``/metrics`` over HTTP and runs a
:class:`pgsubscriber.Subscriber` in the same process. Copy :mod:`webconsumer.store` to see how to
implement :class:`pgsubscriber.ApplicationEventHandler` against a store without transactions.
"""

from webconsumer.app import create_app, serve
from webconsumer.settings import WebConsumerSettings, subscriber_settings
from webconsumer.store import MongoEventStore

__all__ = ["MongoEventStore", "WebConsumerSettings", "create_app", "serve", "subscriber_settings"]
