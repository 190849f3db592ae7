"""``python -m demo``: the whole system on this machine (no Docker) until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from demo.system import run_demo


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run PostgreSQL, the migrations, the producer, the web consumer (with MongoDB: "
        "MONGO_URL, or an embedded server) and the purger on this machine until Ctrl-C. It prints "
        "the variables of the README's examples as export lines; Enter pauses and resumes the producer.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("WEBCONSUMER_PORT", "1337")),
        help="HTTP port of the web consumer (WEBCONSUMER_PORT, default 1337)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("PRODUCER_RATE", "5")),
        help="events per second (PRODUCER_RATE, default 5)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run_demo(
        port=args.port, rate=args.rate, mongo_url=os.environ.get("MONGO_URL") or None, keys=stdin_fd()
    )


def stdin_fd() -> int | None:
    """Standard input's file descriptor, where Enter pauses and resumes the producer (None: closed)."""
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
