"""The purger's configuration: durations, the retention policy, settings and flags, refused starts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgsubscriber import ConfigurationError, PgSubscriberError
from purger import PurgerSettings, RetentionPolicy, parse_duration
from purger.cli import parse_command_line
from purger.settings import parse_topic_retention

DSN = "postgresql://events_purger@localhost/app"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("DSN", "RETENTION", "INTERVAL", "TOPIC_RETENTION", "BATCH_SIZE", "FORCE"):
        monkeypatch.delenv(f"PURGER_{name}", raising=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 1d 12h ", timedelta(days=1, hours=12)),
        ("7D", timedelta(days=7)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration_reads_human_units(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "7x", "1.5h", "h", "7d-", "seven days", "P7D", "1h 30"])
def test_parse_duration_refuses_what_it_cannot_read(text):
    with pytest.raises(ConfigurationError, match="cannot read duration") as caught:
        parse_duration(text)
    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, PgSubscriberError)


def test_parse_duration_refuses_a_negative_duration():
    with pytest.raises(ConfigurationError, match="negative"):
        parse_duration("-5d")


def test_policy_gives_each_topic_its_retention():
    policy = RetentionPolicy(default=timedelta(days=7), per_topic={"audit": "90d", "billing": "30d"})
    assert policy.retention_for("courses") == timedelta(days=7)
    assert policy.retention_for("audit") == timedelta(days=90)
    assert policy.retention_for("billing") == timedelta(days=30)
    assert policy.batch_size == 10_000
    assert RetentionPolicy(default="12h").default == timedelta(hours=12)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"default": timedelta(days=-1)}, "negative"),
        ({"default": "7 days"}, "cannot read duration"),
        ({"default": "7d", "per_topic": {"audit": timedelta(hours=-1)}}, "negative"),
        ({"default": "7d", "per_topic": {"bad topic": "1d"}}, "invalid topic"),
        ({"default": "7d", "batch_size": 0}, "batch_size"),
    ],
)
def test_policy_refuses_bad_values(values, message):
    with pytest.raises(ConfigurationError, match=message):
        RetentionPolicy(**values)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PURGER_DSN", DSN)
    monkeypatch.setenv("PURGER_RETENTION", "7d")
    monkeypatch.setenv("PURGER_INTERVAL", "5m")
    monkeypatch.setenv("PURGER_TOPIC_RETENTION", "audit=90d, billing=30d")
    monkeypatch.setenv("PURGER_BATCH_SIZE", "500")
    settings = PurgerSettings()
    assert settings.interval == timedelta(minutes=5)
    assert settings.policy() == RetentionPolicy(
        default=timedelta(days=7),
        per_topic={"audit": timedelta(days=90), "billing": timedelta(days=30)},
        batch_size=500,
    )


def test_flags_override_the_environment(monkeypatch):
    monkeypatch.setenv("PURGER_DSN", DSN)
    monkeypatch.setenv("PURGER_RETENTION", "7d")
    monkeypatch.setenv("PURGER_BATCH_SIZE", "500")
    settings, once = parse_command_line(["--once", "--retention", "2d", "--topic-retention", "audit=1w"])
    assert once is True
    assert settings.retention == timedelta(days=2)
    assert settings.topic_retention == {"audit": timedelta(weeks=1)}
    assert settings.batch_size == 500
    assert settings.interval == timedelta(minutes=15)
    assert parse_command_line([])[1] is False


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--retention", "30m"], ["PURGER_RETENTION", "safety minimum of 1h", "--force"]),
        (["--retention", "7d", "--topic-retention", "audit=10m"], ["audit=10m", "safety minimum", "--force"]),
        (["--retention=-5d"], ["PURGER_RETENTION", "negative"]),
        (["--retention", "soon"], ["PURGER_RETENTION", "cannot read duration 'soon'"]),
        (["--retention", "7d", "--topic-retention", "audit"], ["PURGER_TOPIC_RETENTION", "topic=duration"]),
        (["--retention", "7d", "--topic-retention", "a b=9d"], ["PURGER_TOPIC_RETENTION", "invalid topic"]),
        (["--retention", "7d", "--interval", "0s"], ["PURGER_INTERVAL", "positive"]),
        (["--retention", "7d", "--batch-size", "0"], ["PURGER_BATCH_SIZE"]),
        ([], ["PURGER_RETENTION", "required"]),
    ],
)
def test_bad_configuration_is_a_clear_error(monkeypatch, argv, names):
    monkeypatch.setenv("PURGER_DSN", DSN)
    with pytest.raises(ConfigurationError) as caught:
        parse_command_line(argv)
    for name in names:
        assert name in str(caught.value)


def test_a_missing_connection_string_is_named(monkeypatch):
    with pytest.raises(ConfigurationError, match="PURGER_DSN"):
        parse_command_line(["--retention", "7d"])


def test_force_accepts_a_short_retention_but_not_a_negative_one(monkeypatch):
    monkeypatch.setenv("PURGER_DSN", DSN)
    settings, _ = parse_command_line(["--retention", "10m", "--topic-retention", "tmp=0s", "--force"])
    assert settings.policy().retention_for("courses") == timedelta(minutes=10)
    assert settings.policy().retention_for("tmp") == timedelta(0)
    with pytest.raises(ConfigurationError, match="negative"):
        PurgerSettings(dsn=DSN, retention=timedelta(hours=-2), force=True)


def test_the_safety_minimum_itself_is_accepted(monkeypatch):
    monkeypatch.setenv("PURGER_FORCE", "false")
    assert PurgerSettings(dsn=DSN, retention="1h").retention == timedelta(hours=1)


def test_topic_retention_lists():
    assert parse_topic_retention("audit=90d,billing=30d,") == {
        "audit": timedelta(days=90),
        "billing": timedelta(days=30),
    }
    assert parse_topic_retention("") == {}
    with pytest.raises(ConfigurationError, match="two retentions"):
        parse_topic_retention("audit=90d,audit=30d")
