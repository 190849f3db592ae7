"""Peers on equal terms: every system runs the workload of :mod:`bench.peering`, at both shapes.

Systems, in this order: the project, RabbitMQ (quorum queue, stream), NATS JetStream (the server's
default fsync, then fsync on every write), PgQueuer, procrastinate. A system whose server does not
answer or whose client is not installed gets one row saying why; the run goes on. Each row's ratio
is the project's delivered events/s at the same shape divided by the system's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.context import Context
from bench.peering import SHAPES, Measurement, PeerSystem, PeerUnavailable, Shape, measure
from bench.peers.nats_jetstream import NatsPeer, NatsServer
from bench.peers.pgqueuer_jobs import PgQueuerPeer
from bench.peers.procrastinate_jobs import ProcrastinatePeer
from bench.peers.project import ProjectPeer
from bench.peers.rabbitmq import RabbitQueuePeer, RabbitStreamPeer
from bench.report import Result

logger = logging.getLogger(__name__)

SCENARIO = "peers"
PROJECT = "pgsubscriber (this project)"

# A factory per system: given the context, yields a fresh system (own database / queue / stream).
Factory = Callable[[Context], contextlib.AbstractContextManager[PeerSystem]]


@contextmanager
def _on_database(ctx: Context, purpose: str, make: Callable[[str], PeerSystem]) -> Iterator[PeerSystem]:
    with ctx.cluster.database(purpose) as dsn:
        yield make(dsn)


@contextmanager
def _plain(system: PeerSystem) -> Iterator[PeerSystem]:
    yield system


def _nats_factory(server: NatsServer | None, reason: str, sync_always: bool) -> Factory:
    @contextmanager
    def make(ctx: Context) -> Iterator[PeerSystem]:
        if server is None:
            raise PeerUnavailable(reason)
        yield NatsPeer(server.url, server.fsync, sync_always=sync_always, version=server.version)

    return make


def _skipped(name: str, shape: Shape, reason: str, prefix: str = "skipped: ") -> Result:
    return Result(
        scenario=f"peers, {shape.label}",
        figure=name,
        unit="events/s",
        baseline=None,
        project=None,
        ratio=None,
        target="report it",
        met=None,
        note=f"{prefix}{reason}",
        details={"peer": name, "shape": shape.label, "skipped": reason},
    )


def _result(
    system: PeerSystem, shape: Shape, m: Measurement, facts: dict[str, Any], project: float | None
) -> Result:
    rate = m.delivered_rate
    return Result(
        scenario=f"peers, {shape.label}",
        figure=system.name,
        unit="events/s",
        baseline=rate,
        project=project,
        ratio=project / rate if project and rate else None,
        target="report it",
        met=None,
        note="" if project else "project row not run",
        details={
            "peer": system.name,
            "shape": shape.label,
            "acknowledged": system.acknowledged(shape),
            "seconds": m.seconds,
            "producers": 4,
            "events_per_ack": shape.batch,
            "acknowledged_to_producers_per_s": m.committed_rate,
            "delivered_per_s": rate,
            "ack_wait_p50_ms": m.ack_wait_p50_ms,
            "ack_wait_p99_ms": m.ack_wait_p99_ms,
            "p50_ms": m.p50_ms,
            "p99_ms": m.p99_ms,
            "latency_samples": m.latency_samples,
            "lag_growth_events_per_s": m.lag_growth_per_s,
            "lag_growing": m.lag_growing,
            "lag_mean_events": m.lag_mean,
            "lag_max_events": m.lag_max,
            "delivered_after_drain": m.delivered_after_drain,
            "acknowledged_to_producers": m.committed,
            "drain_s": m.drain_seconds,
            "lag_samples": m.lag_samples,
            **facts,
        },
    )


def run(ctx: Context) -> list[Result]:
    seconds = ctx.profile.peer_seconds
    drain_limit = ctx.profile.peer_drain_seconds
    servers: list[NatsServer] = []
    nats: dict[bool, tuple[NatsServer | None, str]] = {}
    for sync_always in (False, True):
        try:
            server = NatsServer(sync_always).start()
            servers.append(server)
            nats[sync_always] = (server, "")
        except PeerUnavailable as exc:
            nats[sync_always] = (None, str(exc))
    factories: list[tuple[str, Factory]] = [
        (PROJECT, lambda c: _on_database(c, "peer_project", ProjectPeer)),
        ("RabbitMQ quorum queue", lambda c: _plain(RabbitQueuePeer())),
        ("RabbitMQ stream", lambda c: _plain(RabbitStreamPeer())),
        ("NATS JetStream, default fsync", _nats_factory(*nats[False], sync_always=False)),
        ("NATS JetStream, fsync always", _nats_factory(*nats[True], sync_always=True)),
        ("PgQueuer", lambda c: _on_database(c, "peer_pgqueuer", PgQueuerPeer)),
        ("procrastinate", lambda c: _on_database(c, "peer_procrastinate", ProcrastinatePeer)),
    ]
    measured: list[tuple[PeerSystem, Shape, Measurement, dict[str, Any]]] = []
    skipped: list[Result] = []
    try:
        for name, factory in factories:
            for shape in SHAPES:
                try:
                    with factory(ctx) as system:
                        facts = asyncio.run(system.setup())
                        try:
                            m = measure(system, shape, seconds, drain_limit, ctx.log_level)
                        finally:
                            asyncio.run(system.teardown())
                except PeerUnavailable as exc:
                    logger.warning("peers: %s skipped: %s", name, exc)
                    skipped.append(_skipped(name, shape, str(exc)))
                    if shape is SHAPES[0]:
                        skipped.extend(_skipped(name, s, str(exc)) for s in SHAPES[1:])
                    break
                except Exception as exc:
                    # One system failing (a server gone mid-run) costs its row, not the others'.
                    logger.exception("peers: %s, %s failed", name, shape.label)
                    skipped.append(_skipped(name, shape, f"failed: {exc}", prefix=""))
                    continue
                logger.info(
                    "peers: %s, %s: %.0f events/s delivered (acknowledged %.0f/s), p50 %.1f ms, p99 %.1f ms",
                    name,
                    shape.label,
                    m.delivered_rate,
                    m.committed_rate,
                    m.p50_ms,
                    m.p99_ms,
                )
                measured.append((system, shape, m, facts))
    finally:
        for server in servers:
            server.stop()
    project_rates = {shape.key: m.delivered_rate for s, shape, m, _ in measured if s.name == PROJECT}
    results = [_result(s, shape, m, facts, project_rates.get(shape.key)) for s, shape, m, facts in measured]
    results.extend(skipped)
    shapes = {shape.label: i for i, shape in enumerate(SHAPES)}
    systems = {name: i for i, (name, _) in enumerate(factories)}
    # Shape by shape, each in the systems' order (skipped ones included).
    results.sort(key=lambda r: (shapes.get(r.details.get("shape", ""), 0), systems.get(r.figure, 0)))
    return results
