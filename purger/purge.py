"""One purge pass: delete expired events in bounded batches, each its own short transaction."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from pgsubscriber import register_tolerant_timestamps
from pgsubscriber.errors import ConfigurationError, SchemaMissingError
from purger.policy import RetentionPolicy

logger = logging.getLogger(__name__)

#: The role the purger acts as: it may read and delete events and write the watermarks, nothing else.
PURGER_ROLE = "events_purger"

# Session advisory lock held for a whole pass, so two purger processes never purge at once (the
# second one skips its pass). A single bigint key: the writer registry of migration 0002 uses
# the two-int4 form only, so the two never collide.
PASS_LOCK_KEY = 7_310_042_002

# A batch waits at most this long for a table lock (e.g. behind a migration), then the pass fails
# and is retried, instead of queueing indefinitely.
_LOCK_TIMEOUT = "5s"

_START_OF_TIME = datetime.min.replace(tzinfo=UTC)


@cache
def _query(name: str) -> bytes:
    return resources.files("purger").joinpath("sql", f"{name}.sql").read_bytes()


@dataclass
class PurgeReport:
    """What one pass did."""

    deleted: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0
    oldest_remaining: datetime | None = None
    deleted_per_topic: dict[str, int] = field(default_factory=dict)
    skipped: bool = False
    """True when another purger held the pass lock, so this pass deleted nothing."""


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open an autocommit connection acting as ``events_purger`` (``SET ROLE``).

    The login must be ``events_purger``, a member of it, or a superuser. Raises
    :class:`~pgsubscriber.errors.ConfigurationError` otherwise, and
    :class:`~pgsubscriber.errors.SchemaMissingError` when the schema is not migrated.
    """
    kwargs.setdefault("application_name", "purger")
    kwargs.setdefault("connect_timeout", 10)
    # Never server-side prepared: each batch is planned with its actual cutoff and bounds.
    conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None, **kwargs)
    register_tolerant_timestamps(conn)  # rows from before migration 0005 may hold 'infinity'
    try:
        row = conn.execute(
            "SELECT current_user, to_regrole(%s) IS NOT NULL,"
            " to_regclass('public.events') IS NOT NULL"
            " AND to_regclass('public.events_purge_watermarks') IS NOT NULL",
            (PURGER_ROLE,),
        ).fetchone()
        assert row is not None
        login, role_exists, schema_exists = row
        if not role_exists or not schema_exists:
            raise SchemaMissingError(
                "the events schema (table events_purge_watermarks, role events_purger) is not in this "
                "database: run `pgsubscriber migrate` first"
            )
        member = conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (PURGER_ROLE,)).fetchone()
        if not member or not member[0]:
            raise ConfigurationError(
                f"the login role {login!r} is not a member of {PURGER_ROLE}: connect as a role that is "
                f"(e.g. GRANT {PURGER_ROLE} TO {login}), so the purger can do nothing but delete events"
            )
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(PURGER_ROLE)))
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (_LOCK_TIMEOUT,))
    except BaseException:
        conn.close()
        raise
    return conn


def purge_once(
    dsn: str,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> PurgeReport:
    """Delete every event older than its topic's retention, as of ``now`` (default: the server's clock).

    Deletes in batches of ``policy.batch_size``, each its own transaction that also raises the
    topic's watermark in ``events_purge_watermarks``. Returns early, between batches, once ``stop``
    is set. Connection errors propagate; a pass can be run again at any time.
    """
    if now is not None and now.tzinfo is None:
        raise ConfigurationError(f"now={now!r} has no time zone: pass an aware datetime (tzinfo=UTC)")
    started = time.perf_counter()
    report = PurgeReport()
    with connect(dsn) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (PASS_LOCK_KEY,)).fetchone()
        if not locked or not locked[0]:
            logger.warning("another purger is running a pass on this database; skipping this pass")
            report.skipped = True
            report.seconds = time.perf_counter() - started
            return report
        # If the pass fails, closing the connection releases the lock.
        if now is None:
            server_now = conn.execute("SELECT now()").fetchone()
            assert server_now is not None
            now = server_now[0]
        assert now is not None
        overridden = sorted(policy.per_topic)
        # (only these topics, all topics but these, cutoff): the default group, then each override.
        groups: list[tuple[list[str] | None, list[str], datetime]] = [
            (None, overridden, now - policy.default),
            *(([topic], [], now - policy.per_topic[topic]) for topic in overridden),
        ]
        try:
            for only_topics, excluded_topics, cutoff in groups:
                if stop is not None and stop.is_set():
                    break
                _purge_group(conn, policy.batch_size, only_topics, excluded_topics, cutoff, report, stop)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigurationError(
                f"{PURGER_ROLE} lacks a privilege ({exc}): run `pgsubscriber migrate` to restore its grants"
            ) from exc
        oldest = conn.execute("SELECT min(created_at) FROM public.events").fetchone()
        report.oldest_remaining = oldest[0] if oldest else None
        # Released now rather than at disconnection, which the server completes asynchronously:
        # a pass started right after this one must not find the lock still held.
        conn.execute("SELECT pg_advisory_unlock(%s)", (PASS_LOCK_KEY,))
    report.seconds = time.perf_counter() - started
    logger.info(
        "purge pass: deleted %d event(s) in %d batch(es) in %.2fs (longest batch %.3fs); "
        "oldest remaining event created at %s",
        report.deleted,
        report.batches,
        report.seconds,
        report.longest_batch_seconds,
        report.oldest_remaining.isoformat() if report.oldest_remaining else "(none: the table is empty)",
        extra={
            "deleted": report.deleted,
            "batches": report.batches,
            "seconds": round(report.seconds, 3),
            "longest_batch_seconds": round(report.longest_batch_seconds, 4),
            "oldest_remaining": report.oldest_remaining.isoformat() if report.oldest_remaining else None,
            "deleted_per_topic": dict(report.deleted_per_topic),
        },
    )
    return report


def _purge_group(
    conn: psycopg.Connection[Any],
    batch_size: int,
    only_topics: list[str] | None,
    excluded_topics: list[str],
    cutoff: datetime,
    report: PurgeReport,
    stop: threading.Event | None,
) -> None:
    """Delete batch after batch of one policy group until a batch comes back short."""
    params: dict[str, Any] = {
        "cutoff": cutoff,
        "resume_from": None,  # from the very first event, whatever its time
        "only_topics": only_topics,
        "excluded_topics": excluded_topics,
        "batch_size": batch_size,
    }
    while stop is None or not stop.is_set():
        batch_started = time.perf_counter()
        rows = conn.execute(_query("purge_batch"), params).fetchall()
        elapsed = time.perf_counter() - batch_started
        deleted = sum(count for _, count, _ in rows)
        report.batches += 1
        report.deleted += deleted
        report.longest_batch_seconds = max(report.longest_batch_seconds, elapsed)
        for topic, count, _ in rows:
            report.deleted_per_topic[topic] = report.deleted_per_topic.get(topic, 0) + count
        logger.debug(
            "deleted %d event(s) created before %s in %.3fs",
            deleted,
            cutoff.isoformat(),
            elapsed,
            extra={"deleted": deleted, "cutoff": cutoff.isoformat(), "batch_seconds": elapsed},
        )
        if deleted < batch_size:
            return
        newest = max(newest for _, _, newest in rows)
        # A time before year 1 comes back clamped to _START_OF_TIME: resume from the start then.
        params["resume_from"] = None if newest <= _START_OF_TIME else newest
