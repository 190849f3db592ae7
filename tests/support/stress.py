"""The randomized concurrent-producer scenario: the committed set must arrive exactly, in order."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

from pgsubscriber import SubscriberSettings
from tests.support.handlers import RecordingHandler
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

INSERT = "INSERT INTO events (topic, payload) VALUES ('courses', %s) RETURNING id"


def run_stress(
    producer_dsn: str,
    settings: SubscriberSettings,
    *,
    producers: int = 6,
    transactions: int = 250,
    connect: Callable[[str], psycopg.Connection] = psycopg.connect,
) -> list[int]:
    """Producers with transactions of 1-4 events, 0-50 ms long, about 10% rolled back, while a
    subscriber runs; asserts the delivered ids equal the committed ones, once each, in order, and
    returns them."""
    handler = RecordingHandler()
    committed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def producer(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            with connect(producer_dsn) as conn:
                for _ in range(transactions):
                    ids = []
                    for _ in range(rnd.randint(1, 4)):
                        row = conn.execute(INSERT, (Jsonb({"n": seed}),)).fetchone()
                        assert row is not None
                        ids.append(int(row[0]))
                        if rnd.random() < 0.5:
                            time.sleep(rnd.uniform(0, 0.05) / 2)
                    if rnd.random() < 0.1:
                        conn.rollback()
                    else:
                        conn.commit()
                        with lock:
                            committed.extend(ids)
        except BaseException as exc:
            errors.append(exc)

    with running_subscriber(handler, settings) as sub:
        threads = [threading.Thread(target=producer, args=(seed,)) for seed in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        wait_until(lambda: len(handler.ids) >= len(committed), timeout=60, message="all committed events")
        time.sleep(0.5)  # anything extra (a rolled-back id, a duplicate) would show now
        assert sub.subscriber.status.writers == 0
    ids = handler.ids
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert ids == sorted(ids), "events were delivered out of order"
    assert ids == sorted(committed), "the delivered set differs from the committed set"
    return ids
