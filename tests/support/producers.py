"""Concurrent producer threads for the delivery tests; each records the ids it committed."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgsubscriber.publish import NewEvent, publish, publish_many

INSERT = "INSERT INTO events (topic, payload) VALUES ('courses', %s) RETURNING id"


def insert(conn: psycopg.Connection, n: int = 0) -> int:
    row = conn.execute(INSERT, (Jsonb({"n": n}),)).fetchone()
    assert row is not None
    return int(row[0])


def produce(db: Any, count: int, topic: str = "courses") -> list[int]:
    """``count`` events on ``topic``, each its own transaction as events_producer; their ids."""
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        return [
            conn.execute(
                "INSERT INTO events (topic, payload) VALUES (%s, %s) RETURNING id", (topic, f'{{"n": {i}}}')
            ).fetchone()[0]
            for i in range(count)
        ]


class Committed:
    """Ids committed by many threads, and the errors they met."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def add(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.extend(ids)

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._ids)


def run_threads(threads: list[threading.Thread], committed: Committed, timeout: float = 120.0) -> None:
    """Start, join (the timeout only fails a hang), and raise the first error of any thread."""
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    assert not any(t.is_alive() for t in threads), "a producer thread hangs"
    assert not committed.errors, committed.errors


def randomized_producer(
    dsn: str, seed: int, transactions: int, committed: Committed, **connect: Any
) -> threading.Thread:
    """Transactions of 1-4 inserts with pauses of up to 25 ms between them, about 10% rolled back."""

    def run() -> None:
        rnd = random.Random(seed)
        try:
            with psycopg.connect(dsn, **connect) as conn:
                for _ in range(transactions):
                    ids = []
                    for _ in range(rnd.randint(1, 4)):
                        ids.append(insert(conn, seed))
                        if rnd.random() < 0.5:
                            time.sleep(rnd.uniform(0, 0.05) / 2)
                    if rnd.random() < 0.1:
                        conn.rollback()
                    else:
                        conn.commit()
                        committed.add(ids)
        except BaseException as exc:
            committed.errors.append(exc)

    return threading.Thread(target=run, name=f"randomized-producer-{seed}")


def mixed_producer(
    dsn: str,
    seed: int,
    committed: Committed,
    *,
    events: int | None = None,
    stop: threading.Event | None = None,
    gate: threading.Event | None = None,
    pause: float = 0.0,
    **connect: Any,
) -> threading.Thread:
    """Events published with ``producer.publish`` and ``publish_many``, in a random mix.

    Single events in their own transaction (autocommit), keyed single events, several events in
    one transaction, batches of 2-20 (some keyed), and about 5% of batches rolled back; on average
    ``pause`` s between transactions. Until ``events`` are committed, or until ``stop`` is set;
    while ``gate`` is cleared, no transaction starts.
    """

    def run() -> None:
        rnd = random.Random(seed)
        done = 0
        try:
            with psycopg.connect(dsn, autocommit=True, **connect) as conn:
                while (events is None or done < events) and not (stop is not None and stop.is_set()):
                    if gate is not None and not gate.wait(0.05):
                        continue
                    left = 20 if events is None else events - done
                    choice = rnd.random()
                    if choice < 0.3:
                        ids = [publish(conn, "courses", {"producer": seed, "n": done})]
                    elif choice < 0.5:
                        key = f"p{seed}:{done}"
                        ids = [publish(conn, "courses", {"producer": seed, "n": done}, key=key)]
                    elif choice < 0.7:
                        with conn.transaction():
                            ids = [
                                publish(conn, "courses", {"producer": seed, "n": done + i})
                                for i in range(min(rnd.randint(2, 4), left))
                            ]
                    else:
                        keyed = rnd.random() < 0.5
                        batch = [
                            NewEvent("courses", {"producer": seed, "n": done + i}, f"p{seed}:{done + i}b")
                            if keyed
                            else NewEvent("courses", {"producer": seed, "n": done + i})
                            for i in range(min(rnd.randint(2, 20), left))
                        ]
                        if rnd.random() < 0.05:
                            with conn.transaction(force_rollback=True):
                                publish_many(conn, batch)
                            continue
                        ids = publish_many(conn, batch)
                    committed.add(ids)
                    done += len(ids)
                    if pause:
                        time.sleep(rnd.uniform(0, 2 * pause))
        except BaseException as exc:
            committed.errors.append(exc)

    return threading.Thread(target=run, name=f"mixed-producer-{seed}")
