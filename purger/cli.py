"""Command line of ``python -m purger``: flags override the ``PURGER_*`` environment variables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from purger.settings import PurgerSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m purger",
        description="Delete events older than the retention period, in small batches. Durations: "
        "90s, 15m, 12h, 7d, 2w, or sums such as 1h30m.",
    )
    parser.add_argument("--once", action="store_true", help="run one pass and exit (cron, Kubernetes jobs)")
    parser.add_argument("--dsn", help="connection string (PURGER_DSN)")
    parser.add_argument("--retention", help="delete events older than this, e.g. 7d (PURGER_RETENTION)")
    parser.add_argument("--interval", help="time between passes, default 15m (PURGER_INTERVAL)")
    parser.add_argument(
        "--topic-retention",
        help="per-topic exceptions, e.g. audit=90d,billing=30d (PURGER_TOPIC_RETENTION)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="most events deleted per transaction, default 10000 (PURGER_BATCH_SIZE)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port, not with --once (PURGER_METRICS_PORT)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="accept a retention shorter than the safety minimum of 1h (PURGER_FORCE)",
    )
    return parser


def parse_command_line(argv: Sequence[str] | None = None) -> tuple[PurgerSettings, bool]:
    """Settings from the environment and ``argv``, and whether to run one pass only.

    Raises :class:`~pgsubscriber.errors.ConfigurationError` for a bad or missing setting.
    """
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        name: value for name, value in vars(args).items() if name != "once" and value is not None
    }
    return PurgerSettings(**overrides), bool(args.once)
