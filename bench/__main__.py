"""``python -m bench``: parse the command line and run the suite."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from bench.scenarios import OPT_IN, SCENARIO_NAMES
from bench.suite import Options, run_suite


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the project against raw PostgreSQL baselines measured in the same run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short durations and a small backlog (a smoke run of ~2 min)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only this scenario (repeatable, or comma-separated): {', '.join(SCENARIO_NAMES)}; "
        f"{' and '.join(sorted(OPT_IN))} run only when named",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where latest.json and a timestamped copy are written (default: bench/results)",
    )
    parser.add_argument(
        "--peer-seconds",
        type=float,
        default=None,
        metavar="S",
        help="seconds per row of the peer comparison (default: 4, --quick: 1); "
        "`--only peers --peer-seconds 30` is the README's peer table, under 8 minutes",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the library's INFO lines too")
    args = parser.parse_args(argv)
    only = [name.strip() for value in args.only for name in value.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SCENARIO_NAMES))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIO_NAMES)}")
    return Options(
        quick=args.quick,
        only=only,
        results_dir=args.results_dir,
        log_level=logging.INFO if args.verbose else logging.WARNING,
        peer_seconds=args.peer_seconds,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the harness: its cluster, its nats-servers and its children are stopped.
    sys.exit(128 + signum)


def main() -> int:
    options = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("aio_pika", "aiormq", "rstream", "nats", "procrastinate", "pgqueuer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_suite(options)


if __name__ == "__main__":
    sys.exit(main())
