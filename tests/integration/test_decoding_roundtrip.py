"""What PostgreSQL accepts comes back exact: jsonb text through decode_payload, and timestamptz values
beyond Python's datetime range through the tolerant loaders (text and binary)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pgsubscriber._decoding import EARLIEST, LATEST, decode_payload, register_tolerant_timestamps
from tests.support.handlers import RecordingHandler
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until
from tests.unit.test_decoding import depth_of, same

pytestmark = pytest.mark.integration

BIG = "9" * 5000

PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ('{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),
    ('{"n": -' + BIG + "}", {"n": -(10**5000 - 1)}),
    ('{"n": 1e400}', {"n": 10**400}),  # stored as numeric: an integer, written out plainly
    ('{"n": 1e-400}', {"n": Decimal("1e-400")}),
    ('{"n": 3.' + "1415926535" * 40 + "}", {"n": Decimal("3." + "1415926535" * 40)}),
    ('{"n": 0.1, "m": 1.50, "k": -12.25, "e": 2.5E-3}', {"n": 0.1, "m": 1.5, "k": -12.25, "e": 0.0025}),
    ('{"n": 0.10000000000000000001}', {"n": Decimal("0.10000000000000000001")}),
    (
        r'{"s": "\"\\\/\b\f\n\r\t", "pair": "\ud83d\ude00", "u": "\u00e9日本😀", "k\u00e9y": true}',
        {"s": '"\\/\b\f\n\r\t', "pair": "😀", "u": "é日本😀", "kéy": True},
    ),
    ("{}", {}),
    ('{"a": [], "b": {}, "c": null, "d": false}', {"a": [], "b": {}, "c": None, "d": False}),
]


def jsonb_text(conn: psycopg.Connection[Any], text: str) -> str:
    row = conn.execute("SELECT %s::jsonb::text", (text,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(("text", "expected"), PAYLOADS)
def test_jsonb_text_decodes_to_the_exact_values(db, text, expected):
    with db.connect(autocommit=True) as conn:
        stored = jsonb_text(conn, text)
    assert not re.search(r"[0-9][eE]", stored)  # PostgreSQL writes numbers without exponents
    assert same(decode_payload(stored), expected)


@pytest.mark.parametrize("depth", [1_100, 5_000])
def test_deep_jsonb_decodes(db, depth):
    with db.connect(autocommit=True) as conn:
        arrays = jsonb_text(conn, '{"a": ' + "[" * depth + "0.5" + "]" * depth + "}")
        objects = jsonb_text(conn, '{"k": ' * depth + "{}" + "}" * depth)
    assert depth_of(decode_payload(arrays)) == (depth + 1, 0.5)
    assert depth_of(decode_payload(objects)) == (depth, {})


TIMESTAMPS: list[tuple[str, datetime]] = [
    ("infinity", LATEST),
    ("-infinity", EARLIEST),
    ("20000-01-01 00:00:00+00", LATEST),
    ("294276-12-31 23:59:59.999999+00", LATEST),
    ("0044-03-15 00:00:00+00 BC", EARLIEST),
    ("4713-01-01 00:00:00+00 BC", EARLIEST),
    ("9999-12-31 23:59:59.999999+00", datetime.max.replace(tzinfo=UTC)),
    ("0001-01-01 00:00:00+00", datetime.min.replace(tzinfo=UTC)),
    ("2024-05-06 07:08:09.123456+02", datetime(2024, 5, 6, 5, 8, 9, 123456, tzinfo=UTC)),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("timezone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_timestamptz_out_of_datetime_range_is_clamped(db, binary, timezone):
    with db.connect(autocommit=True) as conn:
        conn.execute(f"SET timezone = '{timezone}'")
        with pytest.raises(psycopg.DataError):
            conn.cursor(binary=binary).execute("SELECT 'infinity'::timestamptz").fetchone()
        register_tolerant_timestamps(conn)
        cur = conn.cursor(binary=binary)
        for value, expected in TIMESTAMPS:
            row = cur.execute("SELECT %s::timestamptz", (value,)).fetchone()
            assert row is not None
            assert row[0] == expected, value
            assert row[0].tzinfo is not None


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_in_range_timestamptz_loads_as_psycopg_loads_it(db, binary):
    query = (
        "SELECT '2024-05-06 07:08:09.123456+00'::timestamptz + make_interval(days => d, secs => d / 7.0)"
        " FROM generate_series(-700000, 700000, 9973) AS d"
    )
    with db.connect(autocommit=True) as conn:
        conn.execute("SET timezone = 'Europe/Paris'")
        plain = [r[0] for r in conn.cursor(binary=binary).execute(query).fetchall()]
        cur = conn.cursor(binary=binary)
        register_tolerant_timestamps(cur)  # a cursor is a context too
        tolerant = [r[0] for r in cur.execute(query).fetchall()]
    assert tolerant == plain and [t.utcoffset() for t in tolerant] == [t.utcoffset() for t in plain]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_events_with_any_stored_payload_and_timestamp_decode(db, binary):
    rows = [
        ('{"price": 0.10000000000000000001, "big": 1e40}', "infinity"),
        ('{"nested": ' + "[" * 2_000 + "]" * 2_000 + "}", "0044-03-15 00:00:00+00 BC"),
        ('{"title": "Intro to databases", "credits": 5}', "2024-05-06 07:08:09+00"),
    ]
    with db.connect(autocommit=True) as conn:
        for payload, created_at in rows:
            conn.execute(
                "INSERT INTO events (topic, payload, created_at) VALUES ('courses', %s::jsonb, %s)",
                (payload, created_at),
            )
        register_tolerant_timestamps(conn)
        cur = conn.cursor(binary=binary)
        fetched = cur.execute("SELECT payload::text, created_at FROM events ORDER BY id").fetchall()
    decoded = [(decode_payload(text), created_at) for text, created_at in fetched]
    assert same(decoded[0][0], {"price": Decimal("0.10000000000000000001"), "big": 10**40})
    assert decoded[0][1] == LATEST
    assert depth_of(decoded[1][0]) == (2_000, [])
    assert decoded[1][1] == EARLIEST
    assert same(decoded[2][0], {"title": "Intro to databases", "credits": 5})
    assert decoded[2][1] == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert decoded[2][1] - decoded[1][1] > timedelta(0)


def test_the_subscriber_delivers_poison_events_and_the_stream_goes_on(db):
    """Deep nesting, numbers beyond a double, timestamps beyond Python's: all delivered, exact."""
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (topic, payload, created_at) VALUES"
            " ('courses', %s::jsonb, 'infinity'), ('courses', %s::jsonb, '-infinity'),"
            " ('courses', %s::jsonb, '20000-01-01 00:00:00+00'), ('courses', '{\"after\": 1}', now())",
            (
                '{"nested": ' + "[" * 1_100 + "]" * 1_100 + "}",
                '{"big": 123456789012345678901234567890, "huge": 1e400}',
                '{"long": 0.' + "1" * 400 + "}",
            ),
        )
    handler = RecordingHandler()
    with running_subscriber(handler, db.settings(topics=["courses"])):
        wait_until(lambda: len(handler.ids) == 4, timeout=30, message="every event")
    deep, numbers, long_decimal, after = handler.events
    assert depth_of(deep.payload)[0] == 1_100 and deep.created_at == LATEST
    assert same(numbers.payload, {"big": 123456789012345678901234567890, "huge": 10**400})
    assert numbers.created_at == EARLIEST
    assert long_decimal.payload["long"] == Decimal("0." + "1" * 400) and long_decimal.created_at == LATEST
    assert after.payload == {"after": 1} and all(e.raw_payload is None for e in handler.events)
