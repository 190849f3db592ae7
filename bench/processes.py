"""Child processes: every measured client runs in its own process, so the harness and the GIL of
one client never slow another, and a child's peak RSS is its own.

Processes are forked from a ``forkserver``: a clean interpreter (nothing inherited from the
harness, as with ``spawn``) that imported the clients once, so a child starts in milliseconds
instead of the seconds a fresh interpreter takes to import them on 2 busy cores (a run starts a
few hundred children).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.context
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

logger = logging.getLogger(__name__)

CTX: multiprocessing.context.ForkServerContext = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(
    [
        "bench.producers",
        "bench.subscribing",
        "bench.subscriber_group",
        "bench.peering",
        "bench.peers.project",
        "bench.peers.rabbitmq",
        "bench.peers.nats_jetstream",
        "bench.peers.pgqueuer_jobs",
        "bench.peers.procrastinate_jobs",
        # The peers' clients, imported lazily by the modules above (an absent one is skipped).
        "aio_pika",
        "rstream",
        "nats",
        "pgqueuer",
        "procrastinate",
    ]
)


@contextlib.contextmanager
def running(
    target: Callable[..., None], arg_lists: Sequence[tuple[Any, ...]], *, name: str
) -> Iterator[list[multiprocessing.context.ForkServerProcess]]:
    """Start one process per argument tuple; on exit join them (terminating any that hang)."""
    procs = [
        CTX.Process(target=target, args=args, name=f"{name}-{i}", daemon=True)
        for i, args in enumerate(arg_lists)
    ]
    for proc in procs:
        proc.start()
    try:
        yield procs
    finally:
        deadline = time.monotonic() + 30
        for proc in procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                logger.warning("child %s did not stop in time; terminating it", proc.name)
                proc.terminate()
                proc.join(timeout=5)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.005) -> float:
    """Poll ``condition`` until true; return the monotonic time it became true. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:g} s")
        time.sleep(interval)


def check_alive(procs: Sequence[multiprocessing.context.ForkServerProcess]) -> None:
    dead = [p.name for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
    if dead:
        raise RuntimeError(f"child process(es) failed: {', '.join(dead)} (see the log above)")
