"""What other topics cost a subscriber: it should pay for its own topics' events only.

Three measurements, each against a baseline measured in the same run:

1. A quiet topic (10 events) behind ``topics_backlog`` events of 100 other topics. The fetch
   round trip of a subscriber of that topic, caught up (``after_id`` = the topic's last id), as
   the subscriber sends it on every wake-up, 20 times in a row (their p99 is the largest); a new
   subscriber's fetch from id 0 is in the details. Baseline: the same fetches before the other
   events exist. Measured twice: with the planner statistics as they were before the bulk insert
   (what subscribers meet until autovacuum analyzes the table; autovacuum is off on the table
   meanwhile, so the case is not left to chance), then after ``ANALYZE``.
2. A subscriber of 1,000 topics (the quiet topic and 999 without events), caught up, with
   ``topics_many_backlog`` other-topic events after its position: 30 fetches in a row on one
   connection, so PL/pgSQL's plan cache may move from custom plans to a generic plan after the
   fifth; p50 and max (with 30 fetches the p99 is the max). Baseline: a subscriber of the quiet
   topic alone at the same position. The backlog is smaller than in (1) because a generic-plan
   fetch checks every row after the position against the 1,000 topics one by one: behind
   1,000,000 events one fetch takes 10 to 30 s. Each fetch is cut off after 10 s, and the 30 stop
   early after 30 s (both noted in the results).
3. One busy topic, 1,000 events/s published by a paced producer (batches of 10, one transaction
   each), with 50 real subscribers, each on its own quiet topic, in 5 processes, plus one
   subscriber of the busy topic in its own process; all connect as a member of
   ``events_consumer``. Over the window: the CPU of the PostgreSQL server (the postmaster and
   every child process of the bench cluster, utime + stime from /proc, ended children included),
   the fetches the quiet subscribers made, the busy subscriber's commit-to-handler delay, the rate
   the producer managed (a late batch is sent at once, none after the window) and the mean server
   time of a fetch. Baseline: the same with one quiet subscriber. Each side runs in its own fresh
   database.

Fetches in (1) and (2) run the library's own statement (``pgsubscriber/sql/fetch.sql``) through
psycopg as a member of ``events_consumer``, with the subscriber's default batch size. Fetches in
(3) are counted twice: in each subscriber process (every statement that calls ``events_fetch``)
and by the server (``pg_stat_user_functions``, ``track_functions = all`` on the database, read
once every subscriber's backend has ended); the details show both, and a result notes any
difference.
"""

from __future__ import annotations

import logging
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._sql import query
from bench.context import Context
from bench.payloads import payload
from bench.processes import CTX, check_alive, running, wait_for
from bench.report import Result
from bench.scenarios.latency import _collect, _percentile
from bench.subscriber_group import group_main
from pgsubscriber import SubscriberSettings
from pgsubscriber.publish import NewEvent, publish_many

logger = logging.getLogger(__name__)

FETCH = resources.files("pgsubscriber").joinpath("sql", "fetch.sql").read_bytes()
BATCH_SIZE: int = SubscriberSettings.model_fields["batch_size"].default
CONSUMER_ROLE = "bench_consumer"

QUIET = "quiet"
QUIET_EVENTS = 10
OTHER_PREFIX = "other"
OTHER_TOPICS = 100  # the backlog's events are spread round-robin over this many topics
LOAD_CHUNK = 100_000
CAUGHT_UP_FETCHES = 20  # per state
FRESH_FETCHES = 5  # after_id = 0 (a new subscriber), in the details

MANY_TOPICS = 1000
MANY_FETCHES = 30
FETCH_TIMEOUT_S = 10.0  # a fetch that overruns this is cut off and counted at this value
MANY_BUDGET_S = 30.0  # the 1,000-topic fetches stop early past this much time

BUSY = "busy"
BUSY_RATE = 1000.0  # events/s
BUSY_BATCH = 10  # events per transaction
QUIET_SUBSCRIBERS = 50
QUIET_PROCESSES = 5


# -- shared --------------------------------------------------------------------------------------


def _consumer_dsn(dsn: str) -> str:
    """``dsn`` for a login role that is a member of ``events_consumer`` (created once per cluster)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name}) "
                "THEN CREATE ROLE {role} LOGIN IN ROLE events_consumer; END IF; END $$"
            ).format(name=sql.Literal(CONSUMER_ROLE), role=sql.Identifier(CONSUMER_ROLE))
        )
    return psycopg.conninfo.make_conninfo(dsn, user=CONSUMER_ROLE)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": _percentile(ordered, 0.5),
        "p99": _percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else float("nan"),
    }


def _fetch_times(dsn: str, topics: list[str], after_id: int, count: int, budget: float) -> dict[str, Any]:
    """``count`` fetches in a row on one connection: round trips in ms, and the events of each."""
    timeout_ms = int(FETCH_TIMEOUT_S * 1000)
    times: list[float] = []
    events: list[int] = []
    timed_out = 0
    params = {
        "topics": topics,
        "after_id": after_id,
        "limit": BATCH_SIZE,
        "max_bytes": 16 * 1024 * 1024,
        "statement_timeout_ms": timeout_ms,
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + budget
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            cur = psycopg.ClientCursor(conn)  # one message: BEGIN; SET LOCAL ...; the fetch; COMMIT
            try:
                cur.execute(FETCH, params)
                while cur.description is None or "id" not in [c.name for c in cur.description]:
                    cur.nextset()
                rows = cur.fetchall()
                id_column = [c.name for c in cur.description].index("id")
            except psycopg.errors.QueryCanceled:
                conn.execute("ROLLBACK")
                times.append(FETCH_TIMEOUT_S * 1000)
                timed_out += 1
                continue
            times.append((time.perf_counter() - started) * 1000)
            events.append(sum(1 for row in rows if row[id_column] is not None))
    return {"ms": times, "events": events, "timed_out": timed_out}


# -- 1 and 2: fetches behind other topics' events -------------------------------------------------


def _load(dsn: str, prefix: str, topics: int, rows: int) -> None:
    statement = query("load_topics")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for first in range(1, rows + 1, LOAD_CHUNK):
            last = min(rows, first + LOAD_CHUNK - 1)
            conn.execute(statement, {"prefix": prefix, "topics": topics, "first": first, "last": last})


def _quiet_fetches(dsn: str, quiet_last_id: int) -> dict[str, Any]:
    """The caught-up fetches (the figure) and a few from id 0 (details); checks what they return."""
    caught_up = _fetch_times(dsn, [QUIET], quiet_last_id, CAUGHT_UP_FETCHES, budget=60)
    fresh = _fetch_times(dsn, [QUIET], 0, FRESH_FETCHES, budget=30)
    if set(caught_up["events"]) - {0} or set(fresh["events"]) - {QUIET_EVENTS}:
        raise RuntimeError(
            f"the fetches returned unexpected events: caught up {caught_up['events']}, "
            f"from 0 {fresh['events']} (expected 0 and {QUIET_EVENTS})"
        )
    return {
        "caught_up": _percentiles(caught_up["ms"]),
        "from_0": _percentiles(fresh["ms"]),
        "samples": len(caught_up["ms"]),
        "timed_out": caught_up["timed_out"] + fresh["timed_out"],
    }


def _behind_other_topics(ctx: Context) -> tuple[list[Result], list[Result]]:
    backlog = ctx.profile.topics_backlog
    many_backlog = ctx.profile.topics_many_backlog
    with ctx.cluster.database("topics_backlog") as dsn:
        consumer = _consumer_dsn(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE public.events SET (autovacuum_enabled = false)")
            conn.execute(
                sql.SQL(query("load_backlog")).format(table=sql.Identifier("events")),
                {"topic": QUIET, "created_at": "now", "first": 1, "last": QUIET_EVENTS},
            )
            row = conn.execute("SELECT max(id) FROM public.events").fetchone()
            quiet_last_id = int(row[0]) if row and row[0] is not None else 0
        base_stale = _quiet_fetches(consumer, quiet_last_id)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE public.events")
        base_analyzed = _quiet_fetches(consumer, quiet_last_id)

        loading = time.monotonic()
        _load(dsn, OTHER_PREFIX, OTHER_TOPICS, backlog)
        load_seconds = time.monotonic() - loading
        logger.info("topics: %d other-topic events loaded in %.1f s", backlog, load_seconds)
        stale = _quiet_fetches(consumer, quiet_last_id)
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.monotonic()
            conn.execute("ANALYZE public.events")
            analyze_seconds = time.monotonic() - started
            row = conn.execute("SELECT max(id) FROM public.events").fetchone()
            last_id = int(row[0]) if row and row[0] is not None else 0
        analyzed = _quiet_fetches(consumer, quiet_last_id)

        # 2: caught up at a position with `many_backlog` other-topic events after it.
        position = last_id - many_backlog
        many_topics = [QUIET] + [f"{QUIET}-{i:04d}" for i in range(1, MANY_TOPICS)]
        one = _fetch_times(consumer, [QUIET], position, MANY_FETCHES, budget=MANY_BUDGET_S)
        many = _fetch_times(consumer, many_topics, position, MANY_FETCHES, budget=MANY_BUDGET_S)

    quiet_label = f"topics: quiet topic behind {backlog:,} other-topic events"
    quiet_results = []
    for state, base, project in (
        ("stats from before the insert", base_stale, stale),
        ("after ANALYZE", base_analyzed, analyzed),
    ):
        for q, target, slack in (("p50", "<= base + 1 ms", 1.0), ("p99", "<= base + 5 ms", 5.0)):
            b, v = base["caught_up"][q], project["caught_up"][q]
            quiet_results.append(
                Result(
                    scenario=quiet_label,
                    figure=f"fetch {q}, {state}",
                    unit="ms",
                    baseline=b,
                    project=v,
                    ratio=v / b if b else None,
                    target=target,
                    met=v <= b + slack,
                    details={
                        "baseline": base,
                        "project": project,
                        "quiet_events": QUIET_EVENTS,
                        "other_topics": OTHER_TOPICS,
                        "load_seconds": load_seconds,
                        "analyze_seconds": analyze_seconds,
                    }
                    if q == "p50"
                    else {},
                )
            )
    logger.info(
        "topics: quiet fetch p50 %.2f ms without others, %.2f ms behind %d (stale), %.2f ms (analyzed)",
        base_stale["caught_up"]["p50"],
        stale["caught_up"]["p50"],
        backlog,
        analyzed["caught_up"]["p50"],
    )

    one_p, many_p = _percentiles(one["ms"]), _percentiles(many["ms"])
    count = len(many["ms"])
    many_label = f"topics: subscriber of {MANY_TOPICS:,} topics, {many_backlog:,} other-topic events after it"
    many_details = {
        # With 30 fetches the nearest-rank p99 is the largest: the table shows p50 and max.
        "p99_1_topic_ms": one_p["p99"],
        "p99_many_topics_ms": many_p["p99"],
        # PL/pgSQL plans the first 5 calls with the topics' values, later ones maybe generically.
        "p50_first_5_many_topics_ms": _percentile(sorted(many["ms"][:5]), 0.5),
        "p50_after_5_many_topics_ms": _percentile(sorted(many["ms"][5:]), 0.5),
        "fetches_1_topic": len(one["ms"]),
        "fetches_many_topics": count,
        "timed_out": many["timed_out"],
        "fetch_timeout_s": FETCH_TIMEOUT_S,
        "ms_1_topic": [round(x, 2) for x in one["ms"]],
        "ms_many_topics": [round(x, 2) for x in many["ms"]],
    }
    note = f"{many['timed_out']} fetch(es) cut off at {FETCH_TIMEOUT_S:g} s" if many["timed_out"] else ""
    if count < MANY_FETCHES:
        note = (note + "; " if note else "") + f"only {count} fetches within {MANY_BUDGET_S:g} s"
    many_results = [
        Result(
            scenario=many_label,
            figure=f"fetch {q} of {count} in a row",
            unit="ms",
            baseline=one_p[q],
            project=many_p[q],
            ratio=many_p[q] / one_p[q] if one_p[q] else None,
            target=f"<= base + {slack:g} ms",
            met=many_p[q] <= one_p[q] + slack,
            note=note,
            details=many_details if q == "p50" else {},
        )
        for q, slack in (("p50", 1.0), ("max", 10.0))
    ]
    logger.info(
        "topics: 1,000 topics fetch p50 %.2f ms max %.2f ms (1 topic: %.2f, %.2f)",
        many_p["p50"],
        many_p["max"],
        one_p["p50"],
        one_p["max"],
    )
    return quiet_results, many_results


# -- 3: quiet subscribers while one topic is busy -------------------------------------------------


def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of ``pids``, plus what they reaped of their ended children (cutime + cstime)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended since it was listed
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total


def _server_pids(datadir: Path) -> list[int]:
    """The postmaster and its children (every backend and auxiliary process of the cluster)."""
    postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(entry.name))
    return pids


def _publish_busy(conn: psycopg.Connection[Any], seconds: float) -> dict[int, float]:
    """Publish batches on the busy topic at ``BUSY_RATE`` events/s for ``seconds``; each event's send time.

    A batch due while the previous one is still being committed goes out at once (the schedule is
    kept, so a slowed producer catches up when it can); nothing is sent after ``seconds``.
    """
    sent: dict[int, float] = {}
    interval = BUSY_BATCH / BUSY_RATE
    start = time.monotonic()
    end = start + seconds
    call = 0
    while start + call * interval < end:
        pause = start + call * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        now = time.monotonic()
        if now >= end:
            break
        seqs = range(call * BUSY_BATCH + 1, (call + 1) * BUSY_BATCH + 1)
        sent.update(dict.fromkeys(seqs, now))
        publish_many(conn, [NewEvent(BUSY, payload(seq)) for seq in seqs])
        call += 1
    return sent


def _consumer_backends(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = %s",
        (CONSUMER_ROLE,),
    ).fetchone()
    return int(row[0]) if row else 0


def _fan_out(ctx: Context, quiet: int) -> dict[str, Any]:
    """One busy-topic window with ``quiet`` quiet subscribers; the figures of that window."""
    seconds = ctx.profile.topics_seconds
    processes = min(QUIET_PROCESSES, quiet)
    quiet_topics = [f"{QUIET}-{i}" for i in range(quiet)]
    # Slot 0: the busy topic's subscriber alone; then the quiet ones, spread over `processes`.
    topic_lists = [[[BUSY]]] + [[[t] for t in quiet_topics[i::processes]] for i in range(processes)]
    slots = len(topic_lists)
    fetches, statements, ready = (CTX.Array("q", slots, lock=False) for _ in range(3))
    stop, times = CTX.Event(), CTX.Queue()
    clock = os.sysconf("SC_CLK_TCK")
    with ctx.cluster.database(f"topics_fan_out_{quiet}") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET track_functions = 'all'").format(
                    sql.Identifier(conn.info.dbname)
                )
            )
        consumer = _consumer_dsn(dsn)
        args = [
            (
                consumer,
                lists,
                slot,
                (fetches, statements, ready),
                stop,
                times if slot == 0 else None,
                ctx.log_level,
            )
            for slot, lists in enumerate(topic_lists)
        ]
        with running(group_main, args, name="topics-subscribers") as procs:
            try:

                def all_ready() -> bool:
                    check_alive(procs)
                    return all(ready[i] for i in range(slots))

                wait_for(all_ready, 90, f"{quiet + 1} subscribers caught up", interval=0.05)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    time.sleep(0.5)  # let the connect-time rounds settle
                    server = _server_pids(ctx.cluster.pg.datadir)
                    clients = [p.pid for p in procs[1:] if p.pid is not None]
                    fetches0, statements0 = list(fetches), list(statements)
                    server0, clients0 = _cpu_ticks(server), _cpu_ticks(clients)
                    started = time.monotonic()
                    sent = _publish_busy(conn, seconds)
                    window = time.monotonic() - started
                    server1 = _cpu_ticks(_server_pids(ctx.cluster.pg.datadir))
                    clients1 = _cpu_ticks(clients)
                    fetches1, statements1 = list(fetches), list(statements)
                delays = _collect(times, sent, timeout=30)
            finally:
                stop.set()
        check_alive(procs)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # A backend flushes its function statistics as it ends: wait for all of them.
            wait_for(lambda: _consumer_backends(conn) == 0, 15, "the subscribers' backends ended", 0.05)
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(total_time), 0) "
                "FROM pg_stat_user_functions WHERE funcname = 'events_fetch'"
            ).fetchone()
    server_calls, server_ms = (int(row[0]), float(row[1])) if row else (0, 0.0)
    quiet_fetches = sum(fetches1[1:]) - sum(fetches0[1:])
    transactions = len(sent) // BUSY_BATCH
    return {
        "quiet_subscribers": quiet,
        "processes": processes,
        "window_s": window,
        "transactions": transactions,
        "published_per_s": len(sent) / window,
        "events_published": len(sent),
        "events_delivered": len(delays),
        "server_cpu_pct": (server1 - server0) / clock / window * 100,
        "quiet_processes_cpu_pct": (clients1 - clients0) / clock / window * 100,
        "quiet_fetches": quiet_fetches,
        "quiet_fetches_per_subscriber_per_transaction": quiet_fetches / quiet / max(1, transactions),
        "busy_fetches": fetches1[0] - fetches0[0],
        "quiet_statements": sum(statements1[1:]) - sum(statements0[1:]),
        "busy_p50_ms": _percentile(delays, 0.5),
        "busy_p99_ms": _percentile(delays, 0.99),
        "client_fetches_total": sum(fetches),
        "server_fetch_calls_total": server_calls,
        # Over the whole run of the subscribers (connect and stop included), every caller.
        "server_fetch_mean_ms": server_ms / server_calls if server_calls else None,
    }


def _fan_out_results(ctx: Context) -> list[Result]:
    base = _fan_out(ctx, 1)
    project = _fan_out(ctx, QUIET_SUBSCRIBERS)
    label = (
        f"topics: 1 busy topic ({BUSY_RATE:,.0f} events/s), {QUIET_SUBSCRIBERS} quiet subscribers (base: 1)"
    )
    note = ""
    for side in (base, project):
        if side["client_fetches_total"] != side["server_fetch_calls_total"]:
            note = "fetch counts of client and server differ (see details)"
            logger.warning(
                "topics: %d fetches counted by the subscribers, %d calls by the server",
                side["client_fetches_total"],
                side["server_fetch_calls_total"],
            )
    logger.info(
        "topics: server CPU %.0f%% with 1 quiet subscriber, %.0f%% with %d; quiet fetches %d vs %d",
        base["server_cpu_pct"],
        project["server_cpu_pct"],
        QUIET_SUBSCRIBERS,
        base["quiet_fetches"],
        project["quiet_fetches"],
    )

    def ratio(key: str) -> float | None:
        b, v = base[key], project[key]
        return v / b if b and v is not None else None

    mean_b, mean_p = base["server_fetch_mean_ms"], project["server_fetch_mean_ms"]
    return [
        Result(
            scenario=label,
            figure="PostgreSQL CPU",
            unit="% of a core",
            baseline=base["server_cpu_pct"],
            project=project["server_cpu_pct"],
            ratio=ratio("server_cpu_pct"),
            target="<= 1.25x base",
            met=project["server_cpu_pct"] <= 1.25 * base["server_cpu_pct"],
            details={"baseline": base, "project": project},
        ),
        Result(
            scenario=label,
            figure="fetches by the quiet subscribers",
            unit="fetches",
            baseline=base["quiet_fetches"],
            project=project["quiet_fetches"],
            ratio=ratio("quiet_fetches"),
            target=f"<= 1 per quiet sub. ({QUIET_SUBSCRIBERS})",
            met=project["quiet_fetches"] <= QUIET_SUBSCRIBERS,
            note=note,
        ),
        Result(
            scenario=label,
            figure="busy subscriber delay p50",
            unit="ms",
            baseline=base["busy_p50_ms"],
            project=project["busy_p50_ms"],
            ratio=ratio("busy_p50_ms"),
            target="<= base + 1 ms",
            met=project["busy_p50_ms"] <= base["busy_p50_ms"] + 1.0,
        ),
        Result(
            scenario=label,
            figure="busy topic published",
            unit="events/s",
            baseline=base["published_per_s"],
            project=project["published_per_s"],
            ratio=ratio("published_per_s"),
            target=">= 0.95x base",
            met=project["published_per_s"] >= 0.95 * base["published_per_s"],
        ),
        Result(
            scenario=label,
            figure="events_fetch mean server time",
            unit="ms",
            baseline=mean_b,
            project=mean_p,
            ratio=mean_p / mean_b if mean_b and mean_p is not None else None,
            target="(report)",
            met=None,
        ),
    ]


def run(ctx: Context) -> list[Result]:
    quiet_results, many_results = _behind_other_topics(ctx)
    return [*quiet_results, *many_results, *_fan_out_results(ctx)]
