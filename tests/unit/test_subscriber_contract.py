from __future__ import annotations

import pytest

from pgsubscriber import ApplicationEventHandler, ConfigurationError, Subscriber, SubscriberSettings
from tests.support.handlers import AsyncRecordingHandler, RecordingHandler


def settings() -> SubscriberSettings:
    return SubscriberSettings(dsn="postgresql://nowhere/db", topics=["courses"])


def test_sync_and_async_handlers_satisfy_the_protocol_without_inheriting():
    assert isinstance(RecordingHandler(), ApplicationEventHandler)
    assert isinstance(AsyncRecordingHandler(), ApplicationEventHandler)


def test_an_object_missing_a_handler_method_is_refused_with_a_clear_error():
    class OnlyNotify:
        def on_notification(self, events):
            pass

    with pytest.raises(ConfigurationError, match="get_latest_received_id"):
        Subscriber(OnlyNotify(), settings())


def test_stop_before_run_is_harmless():
    sub = Subscriber(RecordingHandler(), settings())
    sub.stop()
    assert sub.stopping and not sub.status.running
