"""The operator's subcommands of ``pgsubscriber``: ``status``, ``tail`` and ``dashboard``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from pgsubscriber import monitor
from pgsubscriber.errors import PgSubscriberError
from pgsubscriber.events import Event
from pgsubscriber.replay import Start, read_events, start

_DSN_HELP = "connection string, a member of events_consumer (default: PGSUBSCRIBER_DSN)"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> datetime | timedelta:
    """``2h``, ``90s``, ``1h30m`` (back from now) or an ISO time (``2026-12-03T07:00:00+00:00``)."""
    compact = text.strip().replace(" ", "")
    if compact and _DURATION.sub("", compact) == "":
        return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(compact)))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (2h, 1h30m) nor an ISO time: {text!r}") from None
    return when if when.tzinfo else when.astimezone()


def _topics(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_commands(commands: Any) -> None:
    dsn = os.environ.get("PGSUBSCRIBER_DSN")
    status = commands.add_parser(
        "status",
        help="topics, subscribers and their lag, producer transactions holding delivery back",
        description="Print the state of the stream: per topic the events stored, oldest and newest, "
        "events/s over the last minute and the purge watermark; per subscriber its state (listening, "
        "polling, poll-only, disconnected, gone), position and lag in events and seconds; the producer "
        "transactions in flight; the purger's last pass; the NOTIFY queue usage. Exit status 1 when a "
        "subscriber is gone, lags past a bound, or a producer transaction holds delivery back past a "
        "bound; 2 when the database cannot be read. A read-only login (a member of events_consumer) is "
        "enough.",
    )
    status.add_argument("--dsn", default=dsn, help=_DSN_HELP)
    status.add_argument("--json", action="store_true", help="one JSON object (one per line with --watch)")
    status.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="print again every SECONDS (default 2) until Ctrl-C",
    )
    status.add_argument("--count", type=int, default=None, help="with --watch: stop after this many")
    status.add_argument(
        "--max-lag-events", type=int, default=None, help="bound on a subscriber's lag in events"
    )
    status.add_argument(
        "--max-lag-seconds",
        type=float,
        default=300.0,
        help="bound on the age of a subscriber's oldest undelivered event (default 300)",
    )
    status.add_argument(
        "--max-held-back",
        type=float,
        default=60.0,
        help="bound on how long a producer transaction may hold delivery back (default 60 s)",
    )
    status.add_argument(
        "--gone-ok", action="store_true", help="a gone subscriber is shown but is not a problem"
    )

    tail = commands.add_parser(
        "tail",
        help="print events as JSON lines, in id order, gap-free",
        description="Print the events of TOPICS as JSON lines (id, topic, created_at, key, payload) in id "
        "order, with a subscriber's guarantee: no event is passed over, also one committed late. "
        "Without --from-id or --since, the last 10 events. --follow keeps printing new events (it runs "
        "a Subscriber) until Ctrl-C.",
    )
    tail.add_argument("--dsn", default=dsn, help=_DSN_HELP)
    tail.add_argument("--topics", type=_topics, required=True, help="comma-separated topics")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-id", type=int, default=None, help="first id to print")
    start.add_argument("--since", type=parse_since, default=None, help="2h, 1h30m, or an ISO time")
    start.add_argument("--last", type=int, default=None, help="the last N events (default 10)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")

    dashboard = commands.add_parser(
        "dashboard",
        help="a live web view of the status (needs the web extra)",
        description="Serve the status as a live web page (server-sent events; no CDN, works offline): "
        "topics, subscribers and their lag, charts of events/s and lag over the last minutes, producer "
        "transactions holding delivery back, the purger, the latest events of a topic. Needs the web "
        "extra: pip install 'pgsubscriber[web]'.",
    )
    dashboard.add_argument("--dsn", default=dsn, help=_DSN_HELP)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dashboard.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PGSUBSCRIBER_DASHBOARD_PORT", "8080")),
        help="port (default 8080, or PGSUBSCRIBER_DASHBOARD_PORT)",
    )
    dashboard.add_argument("--interval", type=float, default=1.0, help="seconds between updates (default 1)")


def run(args: argparse.Namespace) -> int:
    if not args.dsn:
        print(
            f"pgsubscriber {args.command}: no database: set PGSUBSCRIBER_DSN or give --dsn", file=sys.stderr
        )
        return 2
    try:
        if args.command == "status":
            return _status(args)
        if args.command == "tail":
            return _tail(args)
        if args.command == "dashboard":
            return _dashboard(args)
    except (PgSubscriberError, psycopg.Error) as exc:
        print(f"pgsubscriber {args.command}: {str(exc).strip()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went (`pgsubscriber tail | head -1`): what it wanted was printed. Point stdout at
        # /dev/null so that flushing it at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


def _status(args: argparse.Namespace) -> int:
    limits = monitor.Thresholds(
        max_lag_events=args.max_lag_events,
        max_lag_seconds=args.max_lag_seconds,
        max_held_back=args.max_held_back,
        gone_is_problem=not args.gone_ok,
    )
    code = 0
    shown = 0
    with monitor.connect(args.dsn) as conn:
        while True:
            status = monitor.read_status(conn, limits)
            code = 1 if status.problems else 0
            if args.json:
                print(status.to_json(), flush=True)
            else:
                if args.watch is not None and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")
                elif shown:
                    print("\n" + "-" * 100)
                print(monitor.render_text(status), flush=True)
            shown += 1
            if args.watch is None or (args.count is not None and shown >= args.count):
                return code
            try:
                time.sleep(args.watch)
            except KeyboardInterrupt:
                return code


def _number(value: Decimal) -> object:
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def event_line(event: Event) -> str:
    """One event as a JSON line (``raw_payload`` too when its payload could not be decoded)."""
    record: dict[str, Any] = {
        "id": event.id,
        "topic": event.topic,
        "created_at": event.created_at.isoformat(),
        "key": event.key,
        "payload": event.payload,
    }
    if event.raw_payload is not None:
        record["raw_payload"] = event.raw_payload
    return json.dumps(record, default=_json_default, ensure_ascii=False)


class _PrintingHandler:
    """``tail --follow``: a subscriber's handler that prints each event."""

    def __init__(self, begin: Start, closed: Callable[[], None]) -> None:
        self.position = begin.position
        self._wanted = begin.wanted
        self._closed = closed
        self.reader_gone = False

    def on_notification(self, events: list[Event]) -> None:
        if self.reader_gone:
            return
        try:
            sys.stdout.write("".join(event_line(e) + "\n" for e in events if self._wanted(e)))
            sys.stdout.flush()
        except BrokenPipeError:
            # Nobody reads any more (`| head`): stop, rather than retry the closed pipe forever.
            self.reader_gone = True
            self._closed()
            return
        self.position = events[-1].id

    def get_latest_received_id(self) -> int:
        return self.position


def _tail(args: argparse.Namespace) -> int:
    from pgsubscriber.replay import _connect
    from pgsubscriber.settings import SubscriberSettings
    from pgsubscriber.subscriber import Subscriber

    last = (
        args.last if args.last is not None else (10 if args.from_id is None and args.since is None else None)
    )
    if not args.follow:
        if last is None:
            events = read_events(args.dsn, args.topics, from_id=args.from_id, since=args.since)
        else:
            with _connect(args.dsn) as conn:
                position = start(conn, args.topics, last=last).position
            events = read_events(args.dsn, args.topics, from_id=position + 1)
        for event in events:
            sys.stdout.write(event_line(event) + "\n")
        sys.stdout.flush()
        return 0
    with _connect(args.dsn) as conn:
        begin = start(conn, args.topics, from_id=args.from_id, since=args.since, last=last)
    # A subscriber like any other, unregistered: an ad-hoc reader is not a consumer to watch.
    settings = SubscriberSettings(dsn=args.dsn, topics=args.topics, registry=False, fail_fast=True)
    handler = _PrintingHandler(begin, lambda: subscriber.stop())
    subscriber = Subscriber(handler, settings)

    async def follow() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, subscriber.stop)
        await subscriber.run()

    asyncio.run(follow())
    if handler.reader_gone:
        raise BrokenPipeError
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from pgsubscriber.dashboard import create_app
    except ImportError as exc:
        print(
            f"pgsubscriber dashboard needs the web extra ({exc}): pip install 'pgsubscriber[web]'",
            file=sys.stderr,
        )
        return 2
    app = create_app(args.dsn, interval=args.interval)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
