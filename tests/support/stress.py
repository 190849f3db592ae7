"""The randomized concurrent-producer scenario: the committed set must arrive exactly, in order."""

from __future__ import annotations

import time
from typing import Any

from pgsubscriber import SubscriberSettings
from tests.support.handlers import RecordingHandler
from tests.support.producers import Committed, randomized_producer, run_threads
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until


def run_stress(
    producer_dsn: str,
    settings: SubscriberSettings,
    *,
    producers: int = 6,
    transactions: int = 250,
    **connect: Any,
) -> list[int]:
    """Producers with transactions of 1-4 events, 0-50 ms long, about 10% rolled back, while a
    subscriber runs; asserts the delivered ids equal the committed ones, once each, in order, and
    returns them."""
    handler = RecordingHandler()
    committed = Committed()
    with running_subscriber(handler, settings) as sub:
        run_threads(
            [
                randomized_producer(producer_dsn, seed, transactions, committed, **connect)
                for seed in range(producers)
            ],
            committed,
        )
        wait_until(lambda: len(handler.ids) >= len(committed.ids), timeout=60, message="all committed events")
        time.sleep(0.5)  # anything extra (a rolled-back id, a duplicate) would show now
        assert sub.subscriber.status.writers == 0
    ids = handler.ids
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert ids == sorted(ids), "events were delivered out of order"
    assert ids == committed.ids, "the delivered set differs from the committed set"
    return ids
