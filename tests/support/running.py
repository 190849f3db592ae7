"""Run a Subscriber in a background thread for the duration of a test."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from pgsubscriber import ApplicationEventHandler, Subscriber, SubscriberSettings


class SubscriberThread:
    def __init__(self, handler: ApplicationEventHandler, settings: SubscriberSettings) -> None:
        self.subscriber = Subscriber(handler, settings)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="subscriber", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self.subscriber.run())
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def start(self) -> SubscriberThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.subscriber.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the subscriber did not stop"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


@contextlib.contextmanager
def running_subscriber(
    handler: ApplicationEventHandler, settings: SubscriberSettings
) -> Iterator[SubscriberThread]:
    thread = SubscriberThread(handler, settings).start()
    try:
        yield thread
    finally:
        thread.stop()
    if thread.error is not None:
        raise thread.error
