"""A blocking entry point for worker processes: run a subscriber until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from pgsubscriber.errors import ConfigurationError
from pgsubscriber.group import GroupMember, HandlerFactory
from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.settings import SubscriberSettings
from pgsubscriber.subscriber import Subscriber

logger = logging.getLogger(__name__)


def run_subscriber(
    handler: ApplicationEventHandler | HandlerFactory, settings: SubscriberSettings | None = None
) -> None:
    """Run a :class:`Subscriber` in this thread until SIGTERM/SIGINT, then stop it cleanly.

    With ``settings.group`` set it runs a :class:`~pgsubscriber.GroupMember` instead (``handler``
    may then be a factory, ``handler(partition)``).

    When the application has configured no logging, it logs at INFO to stderr (connects, catch-ups,
    failures and what to check).

    Must be called from the main thread (signal handlers can only be installed there); from any
    other thread, use ``asyncio.run(Subscriber(handler, settings).run())`` and call ``stop()``.
    """
    if not logging.getLogger().handlers:  # the application configured no logging: say something
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = settings if settings is not None else SubscriberSettings()
    subscriber: Subscriber | GroupMember
    if settings.group is not None:
        subscriber = GroupMember(handler, settings)
    else:
        if not isinstance(handler, ApplicationEventHandler):
            raise ConfigurationError("a handler factory needs a group: set settings.group")
        subscriber = Subscriber(handler, settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _request_stop, subscriber, signum)
        try:
            await subscriber.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    asyncio.run(main())


def _request_stop(subscriber: Subscriber | GroupMember, signum: int) -> None:
    logger.info("received %s, stopping", signal.Signals(signum).name)
    subscriber.stop()
