"""Catch-up of a large backlog.

Baseline: a keyset read (pages of ``batch_size`` in id order) with psycopg's defaults, rows as
Python dicts and the jsonb payload decoded into dicts. Project: a subscriber that starts at id 0
and hands every event to a no-op handler. Each runs in its own child process, which reports its
own peak RSS. The same read with the payload left as text is reported too, as the ceiling of
what moving rows costs when nothing is decoded.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench._sql import query
from bench.context import Context
from bench.payloads import TOPIC
from bench.processes import CTX, running
from bench.report import Result, rate_ratio
from bench.subscribing import Probe, SubscriberSpec, subscriber_main

logger = logging.getLogger(__name__)

BATCH_SIZE = 500  # the subscriber's default batch_size
LOAD_CHUNK = 100_000


def load_backlog(dsn: str, table: str, rows: int, created_at: str = "now") -> int:
    """Insert ``rows`` events into ``table`` (chunks of one statement each); return the last id."""
    statement = sql.SQL(query("load_backlog")).format(table=sql.Identifier(table))
    with psycopg.connect(dsn, autocommit=True) as conn:
        for first in range(1, rows + 1, LOAD_CHUNK):
            last = min(rows, first + LOAD_CHUNK - 1)
            conn.execute(statement, {"topic": TOPIC, "created_at": created_at, "first": first, "last": last})
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        row = conn.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def keyset_reader_main(dsn: str, as_text: bool, out: Any) -> None:
    """Child entry point: read every event in pages; report rows, seconds and peak RSS."""
    statement = query("raw_keyset_read_text" if as_text else "raw_keyset_read")
    rows = 0
    last_id = 0
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        started = time.perf_counter()
        while True:
            page = conn.execute(
                statement, {"topics": [TOPIC], "after_id": last_id, "limit": BATCH_SIZE}
            ).fetchall()
            if not page:
                break
            rows += len(page)
            last_id = page[-1]["id"]
        out["seconds"] = time.perf_counter() - started
    out["rows"] = rows
    out["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _read_raw(dsn: str, as_text: bool) -> dict[str, Any]:
    with CTX.Manager() as manager:
        out = manager.dict()
        with running(keyset_reader_main, [(dsn, as_text, out)], name="keyset-reader") as procs:
            procs[0].join()
        if procs[0].exitcode != 0:
            raise RuntimeError("the keyset reader failed (see the log above)")
        return dict(out)


def run(ctx: Context) -> list[Result]:
    backlog = ctx.profile.backlog
    with ctx.cluster.database("catch_up") as dsn:
        loading = time.monotonic()
        last_id = load_backlog(dsn, "events", backlog)
        logger.info("catch-up: %d events loaded in %.1f s", backlog, time.monotonic() - loading)
        # Warm the cache once so that neither side pays for reading the table from disk first.
        _read_raw(dsn, as_text=True)
        text = _read_raw(dsn, as_text=True)
        raw = _read_raw(dsn, as_text=False)

        probe = Probe()
        spec = SubscriberSpec(dsn=dsn, topics=[TOPIC], stop_at_id=last_id)
        with running(subscriber_main, [(spec, probe, None, ctx.log_level)], name="subscriber") as procs:
            procs[0].join(timeout=600)
        if probe.done_at.value == 0.0:
            raise RuntimeError("the subscriber did not reach the end of the backlog")
        project_seconds = probe.done_at.value - probe.started_at.value
        delivered = probe.delivered.value

    raw_rate = raw["rows"] / raw["seconds"]
    text_rate = text["rows"] / text["seconds"]
    project_rate = delivered / project_seconds
    ratio = rate_ratio(project_rate, raw_rate)
    rss_mb = probe.max_rss_kb.value / 1024
    raw_rss_mb = raw["max_rss_kb"] / 1024
    logger.info(
        "catch-up: raw %.0f rows/s (text %.0f), project %.0f events/s, RSS %.0f MB",
        raw_rate,
        text_rate,
        project_rate,
        rss_mb,
    )
    details = {
        "backlog": backlog,
        "batch_size": BATCH_SIZE,
        "raw_dicts_rows_per_s": raw_rate,
        "raw_text_rows_per_s": text_rate,
        "project_events_per_s": project_rate,
        "project_vs_text_ratio": project_rate / text_rate,
        "project_seconds": project_seconds,
        "delivered": delivered,
    }
    label = f"catch-up of {backlog:,} events"
    return [
        Result(
            scenario=label,
            figure="rate",
            unit="events/s",
            baseline=raw_rate,
            project=project_rate,
            ratio=ratio,
            target=">= 1.0",
            met=ratio is not None and ratio >= 1.0,
            details=details,
        ),
        Result(
            scenario=label,
            figure="peak RSS",
            unit="MB",
            baseline=raw_rss_mb,
            project=rss_mb,
            ratio=rss_mb / raw_rss_mb if raw_rss_mb else None,
            target="< 200 MB",
            met=rss_mb < 200,
        ),
    ]
