"""``python -m webconsumer``: serve HTTP and receive "courses" events into MongoDB until SIGTERM."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from pgsubscriber import ConfigurationError
from webconsumer.app import serve
from webconsumer.settings import WebConsumerSettings, subscriber_settings


def main() -> int:
    """Read the configuration, configure logging, serve."""
    try:
        settings = WebConsumerSettings()
        pg_settings = subscriber_settings()
    except (ValidationError, ConfigurationError) as exc:
        print(f"webconsumer: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    serve(settings, pg_settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
