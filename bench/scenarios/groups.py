"""Consumer groups: what three partitioned members deliver against one subscriber, and failovers.

Throughput: producers publish batches at full speed for the end-to-end duration, once with one
subscriber (the baseline, same run and cluster), once with a group of three members of three
partitions, each member in its own process; the figure is the events handed to handlers per
second while the producers run. Each member reads its topic's whole range and keeps a third of it
(events without a partition key are spread by id), so the group costs the server three scans for
one; on a 2-core machine the members also compete with the producers for the CPU.

The same with a handler that waits 0.5 ms per event (a store's latency, no CPU): one member of a
one-partition group against three members of three partitions, which is what partitions are for.

Failover: a group of one partition with two members and a producer at a steady rate. The active
member is SIGKILLed (the server ends its session at once: the standby takes over at its next
check) or SIGSTOPped (the server ends its session after ``group_lease_timeout`` of silence); the
time is from the fault until the standby hands the next event to its handler. The victim is then
killed and started again, to stand by for the next round. Default group settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from bench.context import Context
from bench.group_members import member_main
from bench.payloads import TOPIC, payload
from bench.processes import CTX, running, wait_for
from bench.producers import ProducerGroup, ProducerSpec
from bench.report import Result, rate_ratio
from bench.subscribing import Probe, SubscriberSpec, subscriber_main
from pgsubscriber import SubscriberSettings, publish

logger = logging.getLogger(__name__)

MEMBERS = 3
FAILOVER_RATE = 200.0  # events/s while failovers are measured
SLOW_HANDLER = 0.0005  # s per event: a handler bound by its store's latency, not by the CPU
DEFAULTS = SubscriberSettings.model_fields


def _flags() -> tuple[Any, Any]:
    """(stop, ready) for one member: plain shared bytes (see bench/group_members.py)."""
    return CTX.Value("b", 0, lock=False), CTX.Value("b", 0, lock=False)


def _drive(ctx: Context, dsn: str, probes: list[Probe], seconds: float) -> tuple[float, float]:
    """Run the producers for ``seconds``; return (committed/s, delivered/s during the run)."""
    p = ctx.profile
    spec = ProducerSpec(dsn, "publish-many", seconds, p.batch_size)
    group = ProducerGroup(spec, p.end_to_end_producers, ctx.log_level)
    before = sum(pr.delivered.value for pr in probes)
    group.start()
    committed = group.join()
    delivered = sum(pr.delivered.value for pr in probes) - before
    return committed / seconds, delivered / seconds


def _members(ctx: Context, dsn: str, count: int, partitions: int, cost: float, seconds: float) -> float:
    """Delivered/s of ``count`` members of a group of ``partitions``, handlers taking ``cost`` s
    per event, while the producers run for ``seconds``."""
    probes = [Probe() for _ in range(count)]
    flags = [_flags() for _ in range(count)]
    settings = {"group": f"bench_{count}", "partitions": partitions}
    args = [
        (dsn, [TOPIC], settings, pr, False, None, fl, ctx.log_level, cost)
        for pr, fl in zip(probes, flags, strict=True)
    ]
    with running(member_main, args, name="member"):
        wait_for(lambda: all(fl[1].value for fl in flags), 60, "members connected")
        time.sleep(3 * DEFAULTS["group_check_interval"].default)
        _, delivered = _drive(ctx, dsn, probes, seconds)
        for fl in flags:
            fl[0].value = 1
    return delivered


def _throughput(ctx: Context, seconds: float) -> tuple[float, float, float, float]:
    with ctx.cluster.database("groups_one") as dsn:
        probe = Probe()
        spec = SubscriberSpec(dsn=dsn, topics=[TOPIC])
        with running(subscriber_main, [(spec, probe, None, ctx.log_level)], name="subscriber"):
            if not probe.caught_up.wait(60):
                raise RuntimeError("the subscriber did not connect within 60 s")
            one = _drive(ctx, dsn, [probe], seconds)
            probe.stop.set()
    with ctx.cluster.database("groups_three") as dsn:
        probes = [Probe() for _ in range(MEMBERS)]
        flags = [_flags() for _ in range(MEMBERS)]
        settings = {"group": "bench", "partitions": MEMBERS}
        args = [
            (dsn, [TOPIC], settings, pr, False, None, fl, ctx.log_level)
            for pr, fl in zip(probes, flags, strict=True)
        ]
        with running(member_main, args, name="member"):
            wait_for(lambda: all(fl[1].value for fl in flags), 60, "three members connected")
            # Until every member holds its share (each takes ceil(3 / members) at its checks).
            time.sleep(3 * DEFAULTS["group_check_interval"].default)
            three = _drive(ctx, dsn, probes, seconds)
            for fl in flags:
                fl[0].value = 1
    return one[0], one[1], three[0], three[1]


@contextlib.contextmanager
def _steady_producer(dsn: str, rate: float) -> Iterator[None]:
    stop = threading.Event()

    def produce() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            seq = 0
            while not stop.wait(1.0 / rate):
                seq += 1
                publish(conn, TOPIC, payload(seq))

    thread = threading.Thread(target=produce, name="steady-producer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def _failovers(ctx: Context, fault: str, rounds: int) -> list[float]:
    times: list[float] = []
    with ctx.cluster.database(f"groups_failover_{fault}") as dsn:
        probe = Probe()
        active_pid = CTX.Value("q", 0, lock=False)
        took_over_at = CTX.Value("d", 0.0, lock=False)
        active = (active_pid, took_over_at)
        stop = CTX.Value("b", 0, lock=False)
        procs = {}

        def start() -> None:
            flags = (stop, CTX.Value("b", 0, lock=False))
            args = (dsn, [TOPIC], {"group": "failover"}, probe, True, active, flags, ctx.log_level)
            proc = CTX.Process(target=member_main, args=args, daemon=True)
            proc.start()
            procs[proc.pid] = proc

        with psycopg.connect(dsn, autocommit=True) as conn, _steady_producer(dsn, FAILOVER_RATE):

            def members() -> int:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
                    "AND mode = 'ShareLock' AND granted"
                ).fetchone()
                return int(row[0]) if row else 0

            try:
                start()
                start()
                for _ in range(rounds):
                    wait_for(lambda: members() == 2, 60, "two members")
                    wait_for(lambda: active_pid.value in procs, 60, "an active member")
                    time.sleep(1.0)
                    victim = procs.pop(active_pid.value)
                    faulted = time.monotonic()
                    os.kill(victim.pid or 0, signal.SIGKILL if fault == "sigkill" else signal.SIGSTOP)
                    wait_for(lambda v=victim.pid: active_pid.value not in (0, v), 120, "the takeover")
                    times.append(took_over_at.value - faulted)
                    logger.info("failover after %s: %.2f s", fault, times[-1])
                    victim.kill()
                    if fault == "sigstop":
                        os.kill(victim.pid or 0, signal.SIGCONT)
                    victim.join(10)
                    start()
            finally:
                stop.value = 1
                for proc in procs.values():
                    proc.join(15)
                    if proc.is_alive():
                        proc.kill()
    return times


def _distribution(times: list[float]) -> str:
    ordered = sorted(times)
    return ", ".join(f"{t:.2f}" for t in ordered)


def run(ctx: Context) -> list[Result]:
    p = ctx.profile
    seconds = p.end_to_end_seconds / 2
    one_committed, one_delivered, three_committed, three_delivered = _throughput(ctx, seconds)
    with ctx.cluster.database("groups_slow_one") as dsn:
        slow_one = _members(ctx, dsn, 1, 1, SLOW_HANDLER, seconds)
    with ctx.cluster.database("groups_slow_three") as dsn:
        slow_three = _members(ctx, dsn, MEMBERS, MEMBERS, SLOW_HANDLER, seconds)
    quick = p.name == "quick"
    kills = _failovers(ctx, "sigkill", 3 if quick else 6)
    stops = _failovers(ctx, "sigstop", 1 if quick else 3)
    check = DEFAULTS["group_check_interval"].default
    lease = DEFAULTS["group_lease_timeout"].default
    ratio = rate_ratio(three_delivered, one_delivered)
    return [
        Result(
            scenario="groups",
            figure=f"end to end, {p.end_to_end_producers} producers: 3 members x 3 partitions vs 1 subscr.",
            unit="events/s",
            baseline=one_delivered,
            project=three_delivered,
            ratio=ratio,
            target="(report)",
            met=None,
            note=f"committed {one_committed:,.0f}/s and {three_committed:,.0f}/s",
            details={
                "seconds": seconds,
                "one_subscriber": {"committed_per_s": one_committed, "delivered_per_s": one_delivered},
                "three_members": {"committed_per_s": three_committed, "delivered_per_s": three_delivered},
            },
        ),
        Result(
            scenario="groups",
            figure=f"handler of {SLOW_HANDLER * 1000:g} ms/event: 3 members x 3 partitions vs 1 member",
            unit="events/s",
            baseline=slow_one,
            project=slow_three,
            ratio=rate_ratio(slow_three, slow_one),
            target="(report)",
            met=None,
            details={"seconds": seconds, "handler_seconds_per_event": SLOW_HANDLER},
        ),
        Result(
            scenario="groups",
            figure=f"failover after SIGKILL of the active member: median of {len(kills)}",
            unit="s",
            baseline=None,
            project=statistics.median(kills),
            ratio=None,
            target=f"<= check interval + 2 s ({check + 2:g} s)",
            met=max(kills) <= check + 2,
            note=f"all: {_distribution(kills)}",
            details={"times_s": kills},
        ),
        Result(
            scenario="groups",
            figure=f"failover after SIGSTOP of the active member: median of {len(stops)}",
            unit="s",
            baseline=None,
            project=statistics.median(stops),
            ratio=None,
            target=f"<= lease + check + 2 s ({lease + check + 2:g} s)",
            met=max(stops) <= lease + check + 2,
            note=f"all: {_distribution(stops)}",
            details={"times_s": stops},
        ),
    ]
