from __future__ import annotations

import re
from importlib import resources

import pytest

from pgsubscriber import (
    TOPIC_PATTERN,
    ConfigurationError,
    PgSubscriberError,
    SubscriberSettings,
    validate_topic,
)


def test_settings_come_from_the_environment_with_the_documented_prefix(monkeypatch):
    monkeypatch.setenv("PGSUBSCRIBER_DSN", "postgresql://events_consumer@db/app")
    monkeypatch.setenv("PGSUBSCRIBER_TOPICS", "courses, audit")
    monkeypatch.setenv("PGSUBSCRIBER_BATCH_SIZE", "50")
    settings = SubscriberSettings()
    assert settings.dsn.endswith("/app")
    assert settings.topics == ["audit", "courses"]
    assert settings.batch_size == 50
    assert settings.dead_connection_bound == 10.0


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"topics": ["courses"]}, "PGSUBSCRIBER_DSN"),
        ({"dsn": "x", "topics": []}, "at least one topic"),
        ({"dsn": "x", "topics": ["bad topic"]}, "invalid topic"),
        ({"dsn": "x", "topics": "courses", "batch_size": 0}, "PGSUBSCRIBER_BATCH_SIZE"),
        ({"dsn": "x", "topics": "courses", "on_purged": "ignore"}, "PGSUBSCRIBER_ON_PURGED"),
        ({"dsn": "x", "topics": "courses", "writer_poll_min": 1, "writer_poll_max": 0.5}, "writer_poll_max"),
        ({"dsn": "x", "topics": "courses", "unknown_knob": 1}, "unknown_knob"),
    ],
)
def test_bad_settings_raise_a_clear_configuration_error(monkeypatch, values, fragment):
    monkeypatch.delenv("PGSUBSCRIBER_DSN", raising=False)
    monkeypatch.delenv("PGSUBSCRIBER_TOPICS", raising=False)
    with pytest.raises(ConfigurationError, match=re.escape(fragment)) as caught:
        SubscriberSettings(**values)
    assert isinstance(caught.value, PgSubscriberError) and isinstance(caught.value, ValueError)


def test_the_database_checks_topics_with_the_same_pattern_as_python():
    sql = resources.files("pgsubscriber").joinpath("migrations", "0001_events.sql").read_text()
    assert f"topic ~ '{TOPIC_PATTERN}'" in sql


@pytest.mark.parametrize("topic", ["courses", "a", "orders.v2", "tenant/1:billing-x_y", "9" * 128])
def test_valid_topics(topic):
    assert validate_topic(topic) == topic


def test_the_removed_channel_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PGSUBSCRIBER_CHANNEL", "events")
    with pytest.raises(ConfigurationError, match="each topic has its own channel"):
        SubscriberSettings(dsn="postgresql://x/y", topics=["courses"])
