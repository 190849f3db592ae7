"""``python -m producer``: publish example "courses" events at ``PRODUCER_RATE`` per second."""

from __future__ import annotations

import logging
import signal
import sys

from producer.generator import Generator
from producer.settings import ProducerSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    generator = Generator(ProducerSettings())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: generator.stop())
    generator.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
