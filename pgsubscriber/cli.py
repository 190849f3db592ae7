"""The ``pgsubscriber`` command (also ``python -m pgsubscriber``): ``migrate``, ``status``,
``tail`` and ``dashboard``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import psycopg

from pgsubscriber import _operate
from pgsubscriber.migrate import MigrationError, migrate

_PASSWORD_VARIABLES = (
    ("events_producer", "EVENTS_PRODUCER_PASSWORD"),
    ("events_consumer", "EVENTS_CONSUMER_PASSWORD"),
    ("events_purger", "EVENTS_PURGER_PASSWORD"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgsubscriber", description="Operate a pgsubscriber event stream on PostgreSQL."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate_parser = commands.add_parser(
        "migrate",
        help="create or upgrade the events schema and its roles",
        description="Apply every missing migration (the events table, its triggers and functions, "
        "the roles events_producer, events_consumer and events_purger) to a database. Safe to run "
        "again, and from two processes at once. Environment: DATABASE_URL (the connection string, "
        "a role that may create roles and tables), EVENTS_PRODUCER_PASSWORD, "
        "EVENTS_CONSUMER_PASSWORD, EVENTS_PURGER_PASSWORD (optional: let those roles log in).",
    )
    migrate_parser.add_argument(
        "--dsn", default=os.environ.get("DATABASE_URL"), help="connection string (default: DATABASE_URL)"
    )
    _operate.add_commands(commands)
    return parser


def _migrate(args: argparse.Namespace) -> int:
    if not args.dsn:
        print(
            "pgsubscriber migrate: no database: set DATABASE_URL or give --dsn, e.g. "
            "postgresql://postgres@localhost:5432/app",
            file=sys.stderr,
        )
        return 2
    passwords = {role: os.environ[name] for role, name in _PASSWORD_VARIABLES if os.environ.get(name)}
    try:
        applied = migrate(args.dsn, role_passwords=passwords)
    except (MigrationError, psycopg.Error) as exc:
        print(f"pgsubscriber migrate: {str(exc).strip()}", file=sys.stderr)
        return 1
    logging.getLogger("pgsubscriber").info(
        "schema up to date (%d migration(s) applied now: %s)", len(applied), ", ".join(applied) or "none"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pgsubscriber`` console script."""
    args = _parser().parse_args(argv)
    level = logging.INFO if args.command in ("migrate", "dashboard") else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "migrate":
        return _migrate(args)
    return _operate.run(args)
