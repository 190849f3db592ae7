"""Batches are bounded by bytes as well as count: any event PostgreSQL stores gets delivered."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.handlers import RecordingHandler
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def insert_blobs(conn: psycopg.Connection, count: int, size: int) -> list[int]:
    """Events whose payload holds ``size`` characters (plain SQL; PostgreSQL compresses them)."""
    rows = conn.execute(
        "INSERT INTO events (topic, payload)"
        " SELECT 'courses', jsonb_build_object('n', n, 'blob', repeat(chr(97 + n %% 26), %s))"
        " FROM generate_series(1, %s) AS n ORDER BY n RETURNING id",
        (size, count),
    ).fetchall()
    return sorted(r[0] for r in rows)


def payload_bytes(event) -> int:
    return len(event.payload.get("blob", "")) + 32


def test_big_events_come_in_batches_bounded_by_bytes(db):
    handler = RecordingHandler()
    settings = db.settings(batch_max_bytes=4 * MB, query_timeout=10.0)
    with db.connect(autocommit=True) as conn:
        ids = insert_blobs(conn, 12, 3 * MB)  # 36 MB in all, 12 events: one batch by count
    with running_subscriber(handler, settings):
        wait_until(lambda: handler.ids == ids, timeout=60, message="every big event")
    by_id = {e.id: e for e in handler.events}
    for batch in handler.batches:
        total = sum(payload_bytes(by_id[i]) for i in batch)
        assert len(batch) == 1 or total <= 4 * MB, (batch, total)
    assert len(handler.batches) >= 6


def test_an_event_larger_than_the_byte_bound_comes_alone_and_the_stream_goes_on(db):
    handler = RecordingHandler()
    with (
        running_subscriber(handler, db.settings(batch_max_bytes=1 * MB)),
        db.connect(autocommit=True) as conn,
    ):
        small = insert_blobs(conn, 3, 10)
        huge = insert_blobs(conn, 1, 60 * MB)
        after = insert_blobs(conn, 3, 10)
        wait_until(lambda: handler.ids == [*small, *huge, *after], timeout=60, message="every event")
    assert [huge[0]] in handler.batches
    assert len(handler.events[3].payload["blob"]) == 60 * MB
