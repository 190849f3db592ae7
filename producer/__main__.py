"""``python -m producer``: publish example "courses" events at ``PRODUCER_RATE`` per second."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from pydantic import ValidationError

from pgsubscriber import ConfigurationError
from pgsubscriber.settings import environment_help
from producer.generator import Generator
from producer.settings import ProducerSettings


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m producer",
        description="Publish example 'courses' events (created, renamed, deleted) at a steady rate, "
        "retrying through database outages, until SIGTERM or PRODUCER_COUNT events.",
        epilog="environment:\n" + environment_help(ProducerSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    try:
        settings = ProducerSettings()
    except ValidationError as exc:
        error = ConfigurationError.from_validation_error(
            exc, "producer settings", lambda f: f"PRODUCER_{f.upper()}"
        )
        print(f"producer: {error} (see python -m producer --help)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    generator = Generator(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: generator.stop())
    generator.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
