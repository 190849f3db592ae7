"""Producer child processes: the four ways of writing that the publish scenarios compare.

Each producer connects (autocommit: one statement is one transaction, like the project's producers
in their simplest use), waits at a barrier with the others, then writes for a fixed time and adds
every committed event to its own slot of a shared counter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import psycopg

from bench._sql import query
from bench.payloads import TOPIC, payload
from pgsubscriber.publish import NewEvent, publish, publish_many

Kind = Literal["raw-single", "publish", "raw-batch", "publish-many"]


@dataclass(frozen=True)
class ProducerSpec:
    dsn: str
    kind: Kind
    seconds: float
    batch_size: int = 1


def _writer(kind: Kind, conn: psycopg.Connection[Any], batch_size: int, slot: int) -> Callable[[], int]:
    seq = slot * 1_000_000_000

    def next_payload() -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return payload(seq)

    if kind == "raw-single":
        insert_one = query("raw_insert_one")

        def write() -> int:
            conn.execute(insert_one, (TOPIC, orjson.dumps(next_payload()).decode()))
            return 1

    elif kind == "publish":

        def write() -> int:
            publish(conn, TOPIC, next_payload())
            return 1

    elif kind == "raw-batch":
        insert_batch = query("raw_insert_batch")
        topics = [TOPIC] * batch_size

        def write() -> int:
            bodies = [orjson.dumps(next_payload()).decode() for _ in range(batch_size)]
            conn.execute(insert_batch, (topics, bodies))
            return batch_size

    else:

        def write() -> int:
            publish_many(conn, [NewEvent(TOPIC, next_payload()) for _ in range(batch_size)])
            return batch_size

    return write


def producer_main(spec: ProducerSpec, slot: int, counts: Any, barrier: Any, log_level: int) -> None:
    """Child entry point: write ``spec.kind`` for ``spec.seconds`` after the barrier."""
    logging.basicConfig(level=log_level)
    with psycopg.connect(spec.dsn, autocommit=True) as conn:
        write = _writer(spec.kind, conn, spec.batch_size, slot)
        barrier.wait()
        deadline = time.monotonic() + spec.seconds
        while time.monotonic() < deadline:
            counts[slot] += write()


class ProducerGroup:
    """``count`` producer processes of one kind, started together (harness side)."""

    def __init__(self, spec: ProducerSpec, count: int, log_level: int) -> None:
        from bench.processes import CTX

        self.spec = spec
        self.counts: Any = CTX.Array("q", count, lock=False)
        self._barrier: Any = CTX.Barrier(count + 1)
        self._procs = [
            CTX.Process(
                target=producer_main,
                args=(spec, slot, self.counts, self._barrier, log_level),
                name=f"{spec.kind}-{slot}",
                daemon=True,
            )
            for slot in range(count)
        ]
        self.started_at = 0.0

    def start(self) -> float:
        """Start the processes; return the monotonic time at which they all begin writing."""
        for proc in self._procs:
            proc.start()
        self._barrier.wait(timeout=120)
        self.started_at = time.monotonic()
        return self.started_at

    def committed(self) -> int:
        return int(sum(self.counts))

    def join(self) -> int:
        """Wait for the end of the run; return the events committed. Raises if a producer failed."""
        for proc in self._procs:
            proc.join(timeout=self.spec.seconds + 60)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        failed = [p.name for p in self._procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"producer process(es) failed: {', '.join(failed)}")
        return self.committed()


def measure_rate(spec: ProducerSpec, count: int, log_level: int) -> float:
    """Events committed per second by ``count`` producers of one kind writing for ``spec.seconds``."""
    group = ProducerGroup(spec, count, log_level)
    group.start()
    return group.join() / spec.seconds
