"""The state of a whole stream, read from the database: topics, subscribers, writers, purgers.

What ``pgsubscriber status`` prints and the dashboard shows. Everything comes from the events
database (the subscriber registry, ``events_writers()``, the delivery horizon), so it needs only a
read-only login that is a member of ``events_consumer``. :func:`read_status` reads it in one READ
COMMITTED transaction (one ``now()`` for every age); :attr:`StreamStatus.problems` says what is
wrong, against :class:`Thresholds`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import IsolationLevel

from pgsubscriber._queries import query
from pgsubscriber.errors import ConfigurationError, SchemaMissingError
from pgsubscriber.schema import SCHEMA_VERSION


@dataclass(frozen=True)
class Thresholds:
    """When the status counts as a problem (exit status 1 of ``pgsubscriber status``)."""

    max_lag_events: int | None = None
    """A live subscriber further behind than this many events (None: no bound)."""
    max_lag_seconds: float | None = 300.0
    """A live subscriber whose oldest undelivered event is older than this."""
    max_held_back: float | None = 60.0
    """A producer transaction holding delivery back for longer than this."""
    gone_is_problem: bool = True
    """A subscriber that stopped or stopped writing its record is a problem."""


@dataclass
class TopicStatus:
    topic: str
    events: int
    oldest_id: int | None
    newest_id: int | None
    oldest_age: float | None
    """Seconds since the oldest stored event was created."""
    newest_age: float | None
    events_per_second: float
    """Events created in the last minute, per second."""
    purged_up_to_id: int


@dataclass
class SubscriberRecord:
    instance: str
    name: str
    host: str
    pid: int
    db_role: str
    topics: list[str]
    state: str
    """listening, polling, poll-only, disconnected, or gone (stopped or not seen in time)."""
    mode: str
    """The mode it last wrote: the state, or ``stopped`` after a clean stop."""
    position: int | None
    lag_events: int | None
    lag_seconds: float | None
    """Age of the oldest event it has not received (0 when it has them all)."""
    events_delivered: int
    last_error: str | None
    started_at: datetime
    last_seen: datetime
    seen_ago: float
    group_name: str | None
    role: str | None


@dataclass
class WriterStatus:
    pid: int
    role: str | None
    application_name: str | None
    since: datetime | None
    open_seconds: float | None
    holding_back: bool
    """It registered before the newest id drawn: ids after its own wait for it."""


@dataclass
class PurgerStatus:
    host: str
    pid: int
    last_pass_at: datetime | None
    last_pass_seconds: float | None
    last_pass_age: float | None
    last_deleted: int
    total_deleted: int
    next_pass_at: datetime | None
    last_error: str | None


@dataclass
class StreamStatus:
    at: datetime
    safe_id: int
    last_drawn_id: int
    notify_queue_usage: float
    topics: list[TopicStatus] = field(default_factory=list)
    subscribers: list[SubscriberRecord] = field(default_factory=list)
    writers: list[WriterStatus] = field(default_factory=list)
    purgers: list[PurgerStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_json_default, sort_keys=False)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A connection for :func:`read_status`: read only, READ COMMITTED, nothing prepared."""
    conn = psycopg.connect(
        dsn, prepare_threshold=None, application_name="pgsubscriber status", connect_timeout=5
    )
    conn.isolation_level = IsolationLevel.READ_COMMITTED
    conn.read_only = True
    return conn


def read_status(conn: psycopg.Connection[Any], thresholds: Thresholds | None = None) -> StreamStatus:
    """Read the whole stream's status in one transaction; ``problems`` against ``thresholds``."""
    limits = thresholds or Thresholds()
    try:
        with conn.transaction():
            horizon = conn.execute(query("status_horizon")).fetchone()
            assert horizon is not None
            status = StreamStatus(
                at=horizon[5], safe_id=horizon[0], last_drawn_id=horizon[1], notify_queue_usage=horizon[4]
            )
            status.topics = [
                TopicStatus(
                    topic=r[0],
                    events=r[1],
                    oldest_id=r[2],
                    oldest_age=r[3],
                    newest_id=r[4],
                    newest_age=r[5],
                    events_per_second=r[6] / 60.0,
                    purged_up_to_id=r[7],
                )
                for r in conn.execute(query("status_topics")).fetchall()
            ]
            status.subscribers = [_subscriber(r) for r in conn.execute(query("status_subscribers"))]
            status.writers = [
                WriterStatus(r[0], r[4], r[3], r[2], r[5], r[1] < status.last_drawn_id)
                for r in conn.execute(query("status_writers"))
            ]
            status.purgers = [
                PurgerStatus(r[0], r[1], r[2], r[3], r[9], r[4], r[5], r[6], r[7])
                for r in conn.execute(query("status_purgers"))
            ]
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise SchemaMissingError(
            f"the events schema lacks what the status reads ({str(exc).splitlines()[0]}): apply "
            f"migrations up to {SCHEMA_VERSION:04d} with `pgsubscriber migrate`"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigurationError(
            f"the status needs a login that is a member of events_consumer ({str(exc).splitlines()[0]})"
        ) from exc
    status.problems = problems(status, limits)
    return status


def _subscriber(r: tuple[Any, ...]) -> SubscriberRecord:
    gone = bool(r[15])
    return SubscriberRecord(
        instance=str(r[0]),
        name=r[1],
        host=r[2],
        pid=r[3],
        db_role=r[4],
        topics=list(r[5]),
        state="gone" if gone else r[6],
        mode=r[6],
        position=r[7],
        lag_events=r[17],
        lag_seconds=(r[18] or 0.0) if r[17] is not None else None,
        events_delivered=r[8],
        last_error=r[9],
        started_at=r[10],
        last_seen=r[11],
        seen_ago=r[16],
        group_name=r[13],
        role=r[14],
    )


def problems(status: StreamStatus, limits: Thresholds) -> list[str]:
    """What is wrong, one line each (empty: all is well)."""
    found = []
    for sub in status.subscribers:
        who = f"subscriber {sub.name} on {sub.host} (pid {sub.pid})"
        if sub.state == "gone":
            if limits.gone_is_problem:
                how = "stopped" if sub.mode == "stopped" else "last seen"
                found.append(f"{who} is gone: {how} {sub.seen_ago:.0f}s ago")
            continue
        if limits.max_lag_events is not None and (sub.lag_events or 0) > limits.max_lag_events:
            found.append(f"{who} lags {sub.lag_events} events (bound {limits.max_lag_events})")
        if limits.max_lag_seconds is not None and (sub.lag_seconds or 0.0) > limits.max_lag_seconds:
            found.append(f"{who} lags {sub.lag_seconds:.0f}s (bound {limits.max_lag_seconds:g}s)")
    for writer in status.writers:
        if (
            writer.holding_back
            and limits.max_held_back is not None
            and (writer.open_seconds or 0.0) > limits.max_held_back
        ):
            found.append(
                f"producer transaction pid {writer.pid} ({writer.application_name or 'no application_name'}) "
                f"has held delivery back for {writer.open_seconds:.0f}s (bound {limits.max_held_back:g}s)"
            )
    return found


# -- text ---------------------------------------------------------------------------------------


def _group(group_name: str | None, role: str | None) -> str:
    """A consumer group member as ``group (role)``, e.g. ``web_consumer (partition 2/4)``."""
    if group_name is None:
        return "-"
    return f"{group_name} ({role})" if role else group_name


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


#: Control characters (C0, DEL, C1): a record's text is written by its own role, and must not move
#: the operator's cursor, clear the terminal or add a line to the report.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

#: The widest a cell gets (a 10 MB host name would widen every line of its table).
_CELL_LIMIT = 80


def _printable(text: str, limit: int = _CELL_LIMIT) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\n``), cut to ``limit`` characters."""
    text = text[: limit * 4]
    text = _CONTROL.sub(
        lambda m: {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(m[0], f"\\x{ord(m[0]):02x}"), text
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    rows = [[_printable(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def render_text(status: StreamStatus) -> str:
    """The status as ``pgsubscriber status`` prints it: four tables and the problems."""
    out = [
        f"pgsubscriber status at {status.at:%Y-%m-%d %H:%M:%S} UTC: newest id {status.last_drawn_id}, "
        f"deliverable up to {status.safe_id}, NOTIFY queue {status.notify_queue_usage:.1%}",
        "",
        "TOPICS",
    ]
    out += _table(
        ["topic", "events", "oldest id", "age", "newest id", "age", "events/s (1 min)", "purged up to"],
        [
            [
                t.topic,
                str(t.events),
                str(t.oldest_id or "-"),
                _age(t.oldest_age),
                str(t.newest_id or "-"),
                _age(t.newest_age),
                f"{t.events_per_second:.1f}",
                str(t.purged_up_to_id),
            ]
            for t in status.topics
        ],
    )
    out += ["", "SUBSCRIBERS"]
    out += _table(
        [
            "name",
            "login",
            "group",
            "host",
            "pid",
            "topics",
            "state",
            "position",
            "lag (events)",
            "lag (s)",
            "last seen",
            "error",
        ],
        [
            [
                s.name,
                s.db_role,
                _group(s.group_name, s.role),
                s.host,
                str(s.pid),
                ",".join(s.topics),
                s.state,
                str(s.position if s.position is not None else "-"),
                str(s.lag_events if s.lag_events is not None else "-"),
                f"{s.lag_seconds:.1f}" if s.lag_seconds is not None else "-",
                f"{_age(s.seen_ago)} ago",
                (s.last_error or "")[:60],
            ]
            for s in status.subscribers
        ],
    )
    out += ["", "PRODUCER TRANSACTIONS IN FLIGHT"]
    out += _table(
        ["pid", "role", "application", "open since", "open for", "holds delivery back"],
        [
            [
                str(w.pid),
                w.role or "-",
                w.application_name or "-",
                f"{w.since:%H:%M:%S}" if w.since else "-",
                _age(w.open_seconds),
                "yes" if w.holding_back else "no",
            ]
            for w in status.writers
        ],
    )
    out += ["", "PURGER"]
    out += _table(
        ["host", "pid", "last pass", "took", "deleted", "deleted in all", "next pass", "error"],
        [
            [
                p.host,
                str(p.pid),
                f"{_age(p.last_pass_age)} ago" if p.last_pass_at else "-",
                f"{p.last_pass_seconds:.2f}s" if p.last_pass_seconds is not None else "-",
                str(p.last_deleted),
                str(p.total_deleted),
                f"{p.next_pass_at:%H:%M:%S}" if p.next_pass_at else "-",
                (p.last_error or "")[:60],
            ]
            for p in status.purgers
        ],
    )
    out += [""]
    out += [f"PROBLEM: {_printable(line, 400)}" for line in status.problems] or ["OK"]
    return "\n".join(out)
