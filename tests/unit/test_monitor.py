"""The status's verdict and text, and the command line's durations, without a server."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from pgsubscriber._operate import parse_since
from pgsubscriber._registry import default_name
from pgsubscriber.monitor import (
    StreamStatus,
    SubscriberRecord,
    Thresholds,
    TopicStatus,
    WriterStatus,
    problems,
    render_text,
)

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def subscriber(state: str = "listening", lag_events: int = 0, lag_seconds: float = 0.0) -> SubscriberRecord:
    return SubscriberRecord(
        instance="i", name="billing", host="h", pid=7, db_role="events_consumer", topics=["courses"],
        state=state, mode="stopped" if state == "gone" else state, position=10, lag_events=lag_events,
        lag_seconds=lag_seconds, events_delivered=10, last_error=None, started_at=NOW, last_seen=NOW,
        seen_ago=3.0, group_name=None, role=None,
    )  # fmt: skip


def writer(open_seconds: float, holding_back: bool = True) -> WriterStatus:
    return WriterStatus(pid=99, role="events_producer", application_name="importer", since=NOW,
                        open_seconds=open_seconds, holding_back=holding_back)  # fmt: skip


def status(**parts: object) -> StreamStatus:
    return StreamStatus(at=NOW, safe_id=10, last_drawn_id=12, notify_queue_usage=0.0, **parts)  # type: ignore[arg-type]


def test_all_well_is_no_problem_and_the_text_says_ok():
    s = status(
        subscribers=[subscriber()],
        topics=[TopicStatus("courses", 12, 1, 12, 60.0, 1.0, 0.2, 0)],
    )
    assert problems(s, Thresholds()) == []
    text = render_text(s)
    assert "billing" in text and "listening" in text and text.endswith("OK")


def test_gone_lagging_and_held_back_are_problems_each_with_its_bound():
    s = status(subscribers=[subscriber("gone")], writers=[writer(90.0)])
    found = problems(s, Thresholds())
    assert any("is gone: stopped 3s ago" in p for p in found)
    assert any("importer" in p and "held delivery back for 90s" in p for p in found)
    assert problems(s, Thresholds(gone_is_problem=False, max_held_back=None)) == []
    lagging = status(subscribers=[subscriber(lag_events=500, lag_seconds=400.0)])
    assert len(problems(lagging, Thresholds(max_lag_events=100))) == 2
    assert problems(lagging, Thresholds(max_lag_seconds=None)) == []
    # A writer that holds nothing back is no problem, however long it is open.
    assert problems(status(writers=[writer(900.0, holding_back=False)]), Thresholds()) == []


def test_since_takes_a_duration_back_from_now_or_an_iso_time():
    assert parse_since("2h") == timedelta(hours=2)
    assert parse_since("1h30m") == timedelta(minutes=90)
    assert parse_since("90s") == timedelta(seconds=90)
    assert parse_since("2026-12-03T07:00:00+00:00") == datetime(2026, 12, 3, 7, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("yesterday")


def test_the_default_name_is_the_application_run():
    assert default_name() == "pytest"  # python -m pytest; `python -m webconsumer` gives webconsumer


def test_the_text_shows_control_characters_and_long_values_of_a_record_harmlessly():
    # Each role writes its own record: a name with a terminal escape, an error with a newline and a
    # 10 MB host must not rewrite the operator's terminal, add a line or widen every table.
    crafted = subscriber("gone")
    crafted.name = "ev\x1b[2Jil"
    crafted.host = "h" * 10_000_000
    crafted.last_error = "first\nOK"
    text = render_text(status(subscribers=[crafted]))
    assert "\x1b" not in text and "ev\\x1b[2Jil" in text
    assert "first\\nOK" in text and text.count("\nOK") == 1  # only the verdict
    assert len(text) < 5_000
    assert all(len(line) < 400 for line in text.splitlines())
