"""The peer comparison's harness: every system runs the same workload and is measured the same way.

Workload (one row = one system at one shape, for a fixed time):

- 4 producer processes. Each writes, waits for the system's own durable acknowledgement of the
  write (a commit, a publisher confirm, a stored-message ack), and only then writes again. Shape
  ``1/commit`` writes one event per acknowledgement; shape ``100/commit`` writes 100 events per
  transaction, or a window of 100 messages whose confirms are all awaited before the next window.
- 1 consumer process. It receives the events, calls the handler (which records each event's
  latency and counts it), then acknowledges durably in the way its system provides.

Every event carries ``t``, the time (CLOCK_MONOTONIC, shared by all processes of the machine) at
which its producer started the write that commits it (for a batch: the start of the batch's write).
Latency is handler call time minus ``t``: it includes the commit or confirm wait, the delivery and
any queueing at the consumer. The producers also report how long each write waited for its
acknowledgement, so the part of the latency that comes after the commit can be told apart. The
lag (events acknowledged to producers minus events handed to the handler) is sampled twice a
second; its trend over the run says whether the consumer keeps up.

A system is a picklable object (see :class:`PeerSystem`): the harness calls ``setup``/``teardown``
in its own process, and each child process calls ``producer`` or ``consume`` on its own copy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.payloads import payload
from bench.processes import CTX
from bench.stats import percentile, slope

logger = logging.getLogger(__name__)

PRODUCERS = 4
SAMPLE_EVERY = 0.5


@dataclass(frozen=True)
class Shape:
    """How many events each durable acknowledgement covers."""

    key: str
    batch: int

    @property
    def label(self) -> str:
        return "1 event/commit" if self.batch == 1 else f"{self.batch} events/commit"


ONE = Shape("one", 1)
HUNDRED = Shape("hundred", 100)
SHAPES = (ONE, HUNDRED)


class PeerUnavailable(Exception):
    """The system cannot run here (server not answering, client not installed): the row is skipped."""


class Producer(Protocol):
    async def send(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Write the events; return once the system acknowledged all of them durably."""

    async def close(self) -> None: ...


class Sink:
    """The consumer side's measuring handler: each system's consumer calls :meth:`received`."""

    def __init__(self, probe: ConsumerProbe) -> None:
        self._probe = probe
        self.latencies_ms = array("d")

    def ready(self) -> None:
        """The consumer is subscribed and would receive an event written now."""
        self._probe.ready.set()

    def received(self, payloads: Sequence[Mapping[str, Any]]) -> None:
        """The handler call: record each event's latency and count it."""
        now = time.monotonic()
        for item in payloads:
            self.latencies_ms.append((now - item["t"]) * 1000.0)
        self._probe.delivered.value += len(payloads)


class PeerSystem(Protocol):
    """One system at one shape: what it is, how it writes, how it consumes."""

    @property
    def name(self) -> str:
        """The row's label, e.g. ``RabbitMQ quorum queue``."""

    def acknowledged(self, shape: Shape) -> str:
        """What "acknowledged" means for this system: for the producer, then for the consumer."""

    async def setup(self) -> dict[str, Any]:
        """Create the queue/stream/schema; return facts for the row (versions, settings).

        Raises :class:`PeerUnavailable` when the system cannot run here.
        """

    async def teardown(self) -> None: ...

    async def producer(self, shape: Shape) -> Producer: ...

    async def consume(self, shape: Shape, sink: Sink, stop: asyncio.Event) -> None:
        """Receive, call ``sink.received``, acknowledge durably, until ``stop`` is set."""


@dataclass
class ConsumerProbe:
    """Shared memory between the consumer child and the harness."""

    delivered: Any = field(default_factory=lambda: CTX.Value("q", 0, lock=False))
    p50: Any = field(default_factory=lambda: CTX.Value("d", math.nan, lock=False))
    p99: Any = field(default_factory=lambda: CTX.Value("d", math.nan, lock=False))
    samples: Any = field(default_factory=lambda: CTX.Value("q", 0, lock=False))
    ready: Any = field(default_factory=CTX.Event)
    stop: Any = field(default_factory=CTX.Event)


@dataclass(frozen=True)
class Measurement:
    seconds: float
    committed: int  # acknowledged to the producers during the run
    delivered: int  # handed to the handler during the run
    delivered_after_drain: int
    drain_seconds: float
    ack_wait_p50_ms: float  # a producer's write to its acknowledgement (commit, confirms, PubAcks)
    ack_wait_p99_ms: float
    p50_ms: float
    p99_ms: float
    latency_samples: int
    lag_growth_per_s: float
    lag_mean: float
    lag_max: float
    lag_samples: list[tuple[float, float]]

    @property
    def committed_rate(self) -> float:
        return self.committed / self.seconds

    @property
    def delivered_rate(self) -> float:
        return self.delivered / self.seconds

    @property
    def lag_growing(self) -> bool:
        """Growing: over the run, the trend adds more than one second's worth of events."""
        return self.lag_growth_per_s * self.seconds > max(self.committed_rate, 1.0)


def _child_logging(log_level: int, role: str) -> None:
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s [{role}] %(name)s %(message)s")
    for noisy in ("aio_pika", "aiormq", "rstream", "nats", "procrastinate", "pgqueuer"):
        logging.getLogger(noisy).setLevel(max(log_level, logging.WARNING))


def producer_main(
    system: PeerSystem,
    shape: Shape,
    slot: int,
    seconds: float,
    counts: Any,
    barrier: Any,
    ack_waits: Any,
    log_level: int,
) -> None:
    """Child entry point: write for ``seconds`` after the barrier, one acknowledged batch at a time.

    At the end it sends the time each write waited for its acknowledgement (ms) to ``ack_waits``.
    """
    _child_logging(log_level, f"producer {slot}")
    waits = array("d")
    asyncio.run(_produce(system, shape, slot, seconds, counts, barrier, waits))
    ack_waits.put(waits.tobytes())


async def _produce(
    system: PeerSystem,
    shape: Shape,
    slot: int,
    seconds: float,
    counts: Any,
    barrier: Any,
    waits: array[float],
) -> None:
    producer = await system.producer(shape)
    seq = slot * 1_000_000_000
    await asyncio.to_thread(barrier.wait)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            t = time.monotonic()
            batch = []
            for _ in range(shape.batch):
                seq += 1
                batch.append({**payload(seq), "t": t})
            await producer.send(batch)
            waits.append((time.monotonic() - t) * 1000.0)
            counts[slot] += shape.batch
    finally:
        await producer.close()


def consumer_main(system: PeerSystem, shape: Shape, probe: ConsumerProbe, log_level: int) -> None:
    """Child entry point: consume until ``probe.stop``; then publish the latency percentiles."""
    _child_logging(log_level, "consumer")
    sink = Sink(probe)
    asyncio.run(_consume(system, shape, sink, probe))
    latencies = sorted(sink.latencies_ms)
    probe.samples.value = len(latencies)
    probe.p50.value = percentile(latencies, 0.5)
    probe.p99.value = percentile(latencies, 0.99)


async def _consume(system: PeerSystem, shape: Shape, sink: Sink, probe: ConsumerProbe) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch() -> None:
        probe.stop.wait()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    await system.consume(shape, sink, stop)


def measure(
    system: PeerSystem, shape: Shape, seconds: float, drain_limit: float, log_level: int
) -> Measurement:
    """Run one row: the consumer, then the producers for ``seconds``, then a bounded drain."""
    probe = ConsumerProbe()
    consumer = CTX.Process(
        target=consumer_main, args=(system, shape, probe, log_level), name="peer-consumer", daemon=True
    )
    counts: Any = CTX.Array("q", PRODUCERS, lock=False)
    barrier: Any = CTX.Barrier(PRODUCERS + 1)
    ack_waits: Any = CTX.Queue()
    procs = [
        CTX.Process(
            target=producer_main,
            args=(system, shape, slot, seconds, counts, barrier, ack_waits, log_level),
            name=f"peer-producer-{slot}",
            daemon=True,
        )
        for slot in range(PRODUCERS)
    ]
    # The producers start (and connect) while the consumer subscribes; they write only once the
    # harness joins the barrier, after the consumer is ready.
    consumer.start()
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + 60
        while not probe.ready.wait(0.1):
            if not consumer.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{system.name}: the consumer did not start (see the log above)")
        barrier.wait(timeout=120)
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        while time.monotonic() < started + seconds:
            time.sleep(SAMPLE_EVERY)
            samples.append((time.monotonic() - started, float(sum(counts) - probe.delivered.value)))
        delivered = int(probe.delivered.value)
        waits = array("d")
        for _ in procs:  # read before joining: a child with queued data exits once it is read
            try:
                waits.frombytes(ack_waits.get(timeout=60))
            except queue.Empty:
                break
        for proc in procs:
            proc.join(timeout=60)
        failed = [p.name for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{system.name}: producer(s) failed: {', '.join(failed)} (see the log above)")
        committed = int(sum(counts))
        drain_started = time.monotonic()
        while probe.delivered.value < committed and time.monotonic() < drain_started + drain_limit:
            time.sleep(0.01)
        drain_seconds = time.monotonic() - drain_started
        delivered_after_drain = int(probe.delivered.value)
    finally:
        probe.stop.set()
        barrier.abort()  # producers still waiting (a failed start) give up
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        consumer.join(timeout=60)
        if consumer.is_alive():
            logger.warning("%s: the consumer did not stop in time; terminating it", system.name)
            consumer.terminate()
            consumer.join(5)
    if consumer.exitcode != 0:
        raise RuntimeError(f"{system.name}: the consumer failed (exit code {consumer.exitcode})")
    ack_wait = sorted(waits)
    # The first tenth is start-up (connections, first batches); the trend is measured after it.
    steady = [(t, lag) for t, lag in samples if t >= seconds / 10] or samples
    lags = [lag for _, lag in steady] or [0.0]
    return Measurement(
        seconds=seconds,
        committed=committed,
        delivered=delivered,
        delivered_after_drain=delivered_after_drain,
        drain_seconds=drain_seconds,
        ack_wait_p50_ms=percentile(ack_wait, 0.5),
        ack_wait_p99_ms=percentile(ack_wait, 0.99),
        p50_ms=float(probe.p50.value),
        p99_ms=float(probe.p99.value),
        latency_samples=int(probe.samples.value),
        lag_growth_per_s=slope(steady),
        lag_mean=sum(lags) / len(lags),
        lag_max=max(lags),
        lag_samples=[(round(t, 2), lag) for t, lag in samples],
    )
