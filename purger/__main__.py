"""``python -m purger``: delete expired events every ``PURGER_INTERVAL``, or once with ``--once``."""

from __future__ import annotations

import logging
import sys

from pgsubscriber.errors import ConfigurationError
from purger.cli import parse_command_line
from purger.service import run


def main() -> int:
    try:
        settings, once = parse_command_line()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(settings, once=once)


if __name__ == "__main__":
    sys.exit(main())
