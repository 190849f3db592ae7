"""Purging expired events.

Baseline: batched ``DELETE`` of 10,000 rows per transaction on ``raw_events``. Project: one pass of
the purger (``purger.purge.purge_once``) over the same number of expired rows in ``events``. Both
tables also hold recent rows that must stay.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench._sql import query
from bench.context import Context
from bench.report import Result, rate_ratio
from bench.scenarios.catch_up import load_backlog

logger = logging.getLogger(__name__)

BATCH_SIZE = 10_000
RECENT_ROWS = 10_000
RETENTION = timedelta(days=7)


def purger_available() -> bool:
    try:
        return importlib.util.find_spec("purger.purge") is not None
    except ImportError:
        return False


def _raw_purge(dsn: str, cutoff: datetime) -> tuple[int, float, float]:
    """Delete every expired raw row in batches; return (rows, seconds, longest batch seconds)."""
    deleted = 0
    longest = 0.0
    statement = query("raw_purge_batch")
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        while True:
            batch_started = time.perf_counter()
            count = conn.execute(statement, {"cutoff": cutoff, "batch_size": BATCH_SIZE}).rowcount
            longest = max(longest, time.perf_counter() - batch_started)
            deleted += count
            if count < BATCH_SIZE:
                break
        return deleted, time.perf_counter() - started, longest


def run(ctx: Context) -> list[Result]:
    label = f"purge {ctx.profile.purge_rows:,} expired events"
    if not purger_available():
        return [
            Result(
                label, "", "rows/s", None, None, None, ">= 0.8", None, note="skipped: purger not available"
            )
        ]
    from purger.policy import RetentionPolicy
    from purger.purge import purge_once

    rows = ctx.profile.purge_rows
    expired_at = datetime.now(UTC) - 2 * RETENTION
    with ctx.cluster.database("purge") as dsn:
        for table in ("raw_events", "events"):
            load_backlog(dsn, table, rows, created_at=expired_at.isoformat())
            load_backlog(dsn, table, RECENT_ROWS)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        cutoff = datetime.now(UTC) - RETENTION
        raw_rows, raw_seconds, raw_longest = _raw_purge(dsn, cutoff)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        report = purge_once(dsn, RetentionPolicy(default=RETENTION, batch_size=BATCH_SIZE))
        with psycopg.connect(dsn, autocommit=True) as conn:
            left = conn.execute("SELECT count(*) FROM events").fetchone()
    raw_rate = raw_rows / raw_seconds
    project_rate = report.deleted / report.seconds if report.seconds else 0.0
    ratio = rate_ratio(project_rate, raw_rate)
    logger.info("purge: raw %.0f rows/s, purger %.0f rows/s", raw_rate, project_rate)
    details = {
        "rows": rows,
        "batch_size": BATCH_SIZE,
        "raw_deleted": raw_rows,
        "project_deleted": report.deleted,
        "project_batches": report.batches,
        "events_left": left[0] if left else None,
        "recent_rows": RECENT_ROWS,
    }
    return [
        Result(
            label,
            "rate",
            "rows/s",
            raw_rate,
            project_rate,
            ratio,
            ">= 0.8",
            ratio is not None and ratio >= 0.8,
            details=details,
        ),
        Result(
            label,
            "longest transaction",
            "s",
            raw_longest,
            report.longest_batch_seconds,
            report.longest_batch_seconds / raw_longest if raw_longest else None,
            "< 1 s",
            report.longest_batch_seconds < 1.0,
        ),
    ]
