"""``python -m webconsumer``: serve HTTP and receive "courses" events into MongoDB until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from pgsubscriber import ConfigurationError, SubscriberSettings
from pgsubscriber.settings import environment_help
from webconsumer.app import serve
from webconsumer.settings import WebConsumerSettings, subscriber_settings


def main(argv: list[str] | None = None) -> int:
    """Read the configuration, configure logging, serve."""
    argparse.ArgumentParser(
        prog="python -m webconsumer",
        description="Serve the courses read model over HTTP (/courses, /health, /metrics) and receive "
        "events into MongoDB with a pgsubscriber Subscriber, until SIGTERM.",
        epilog="environment:\n"
        + environment_help(WebConsumerSettings)
        + "\n"
        + environment_help(SubscriberSettings).replace(
            "PGSUBSCRIBER_TOPICS (required)", "PGSUBSCRIBER_TOPICS (default courses)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    try:
        settings = WebConsumerSettings()
        pg_settings = subscriber_settings()
    except (ValidationError, ConfigurationError) as exc:
        print(
            f"webconsumer: invalid configuration: {exc} (see python -m webconsumer --help)", file=sys.stderr
        )
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    serve(settings, pg_settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
