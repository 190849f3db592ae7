"""Consumer groups: several worker processes of one application share its events.

Members of a group run with the same ``group`` name (and the same ``partitions``). PostgreSQL
elects: each partition is a session advisory lock on the member's *lease session* (one extra
connection per member, see ``_lease.py``), so each partition is owned by at most one live
session, and the server frees a member's partitions when that session ends. With
``partitions = 1`` (the default) one member is active and the others stand by; with
``partitions = N`` the members share the partitions, each taking up to ``ceil(N / live members)``
and handing extras back when more members arrive.

When a member's partitions move
    * **Its process dies** (SIGKILL, crash, OOM): the kernel closes its sockets, the server ends
      the session at once, another member takes the partitions at its next check:
      within ``group_check_interval``.
    * **It is frozen** (SIGSTOP, a stalled event loop) **or cut off** (blackholed or cut
      network): it stops running its checks, and the server ends its lease session after
      ``group_lease_timeout`` of silence (``idle_session_timeout``, set on that session by the
      member itself; no clock on the client side decides anything). Takeover within
      ``group_lease_timeout + group_check_interval``.
    * **It leaves** (SIGTERM) or more members join: it stops delivering those partitions, then
      releases them; another member takes them at its next check.

What "never two members at once" means, precisely
    Before every handler call, the member asks its lease session whether it still holds the
    partition (``group_owns.sql``) and calls the handler only on a yes. A yes proves the session
    was alive a moment ago, and the server frees the lock only when the session ends, which
    for a live member happens only after it was silent for ``group_lease_timeout``: a member
    that was frozen or cut off gets no yes (its session is gone, or the question gets no answer),
    so it delivers nothing more, and its fetch connection is not trusted for anything. A member
    releases a partition voluntarily only after that partition's handler call has returned.

    What no lock can prevent: a handler call that is *already running* when its process is
    frozen, or its network cut, and that lasts beyond ``group_lease_timeout`` (the member is
    frozen that long, or the handler is that slow while cut off from PostgreSQL), may finish
    its writes after another member took over (the same holds for the instant between the
    answer and the call). It is at most one batch per partition, already delivered once, so it
    is what a crash causes too: a redelivery, which the handler's idempotency covers (upserts by
    event id, positions that only move forward). A handler whose store is this PostgreSQL can
    close even that: write each batch in one transaction on a session with
    ``idle_in_transaction_session_timeout`` below ``group_lease_timeout``, so the server aborts a
    frozen call's transaction before a standby can start.

Positions
    Each partition has its own handler, from ``handler_factory(partition)`` (with one partition a
    plain handler is enough), whose ``get_latest_received_id()`` reads that partition's position
    from the shared store: the member taking a partition over continues from it. Events of one
    ``partition_key`` are in one partition, in id order; events without one are spread by id.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgsubscriber._lease import Lease
from pgsubscriber._partitions import PartitionSession, partition_of
from pgsubscriber._reconnect import ReconnectPolicy
from pgsubscriber._registry import default_name
from pgsubscriber._session import CONNECTION_ERRORS
from pgsubscriber._stopping import StopSignal
from pgsubscriber.errors import ConfigurationError, PartitionLostError
from pgsubscriber.events import Event
from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.settings import SubscriberSettings
from pgsubscriber.status import SubscriberStatus
from pgsubscriber.subscriber import Subscriber, _call

logger = logging.getLogger(__name__)

HandlerFactory = Callable[[int], ApplicationEventHandler]
"""Called with a partition number (0 .. partitions - 1); returns that partition's handler."""

__all__ = ["GroupMember", "HandlerFactory", "partition_of"]


class _FencedHandler:
    """The partition's handler, called only while the member's lease session holds the partition."""

    def __init__(self, member: GroupMember, partition: int, inner: ApplicationEventHandler) -> None:
        self._member = member
        self._partition = partition
        self._inner = inner
        self.subscriber: Subscriber | None = None

    async def on_notification(self, events: list[Event]) -> None:
        lease = self._member._lease
        if lease is None or not await lease.owns(self._partition):
            if self.subscriber is not None:
                self.subscriber.stop()
            raise PartitionLostError(
                f"partition {self._partition} of group {self._member.settings.group!r} is no longer "
                f"owned by this member; events {events[0].id}..{events[-1].id} not delivered here"
            )
        await _call(self._inner.on_notification, events)

    async def get_latest_received_id(self) -> int:
        return int(await _call(self._inner.get_latest_received_id))


@dataclass
class _Worker:
    partition: int
    subscriber: Subscriber
    task: asyncio.Task[None]


_COUNTERS = (
    "reconnects",
    "fetches",
    "events_delivered",
    "batches_delivered",
    "handler_seconds",
    "handler_failures",
)


class GroupMember:
    """One member of the consumer group ``settings.group``: delivers the partitions it owns.

    ``handler`` is an :class:`~pgsubscriber.ApplicationEventHandler` (with one partition), or a
    factory ``handler(partition) -> ApplicationEventHandler``, called once per partition the
    first time this member takes it. ``await member.run()`` runs until :meth:`stop`; network faults
    are retried like a :class:`~pgsubscriber.Subscriber`'s.
    """

    def __init__(
        self, handler: ApplicationEventHandler | HandlerFactory, settings: SubscriberSettings | None = None
    ) -> None:
        self.settings = settings if settings is not None else SubscriberSettings()
        if self.settings.group is None:
            raise ConfigurationError("a GroupMember needs settings.group (PGSUBSCRIBER_GROUP)")
        if callable(getattr(handler, "on_notification", None)):
            if self.settings.partitions > 1:
                raise ConfigurationError(
                    f"a group of {self.settings.partitions} partitions needs one handler per partition: "
                    "pass a factory, handler(partition) -> ApplicationEventHandler"
                )
            single: ApplicationEventHandler = handler  # type: ignore[assignment]
            self._factory: HandlerFactory = lambda _partition: single
        elif callable(handler):
            self._factory = handler
        else:
            raise ConfigurationError(
                f"{handler!r} is neither an ApplicationEventHandler nor a factory of them"
            )
        self._handlers: dict[int, ApplicationEventHandler] = {}
        self._workers: dict[int, _Worker] = {}
        self._lease: Lease | None = None
        self._fatal: BaseException | None = None
        self._finished = dict.fromkeys(_COUNTERS, 0.0)
        self._members: int | None = None
        self._takeovers = 0
        self._last_error: str | None = None
        self._running = False
        self._stop = StopSignal()
        self._last_conflict_log = float("-inf")

    # -- public control ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run()`` to return once the handler calls in progress are done. Safe from any thread."""
        self._stop.request()

    @property
    def stopping(self) -> bool:
        return self._stop.requested

    @property
    def status(self) -> SubscriberStatus:
        """This member's status: the group fields, and its partitions' subscribers summed up."""
        s = self.settings
        lease = self._lease
        workers = sorted(self._workers.values(), key=lambda w: w.partition)
        parts = [w.subscriber.status for w in workers]
        lease_up = lease is not None and not lease.lost
        st = SubscriberStatus(
            running=self._running,
            connected=lease_up and all(p.connected for p in parts),
            group=s.group,
            role="active" if workers else "standby",
            partitions_owned=[w.partition for w in workers],
            partitions=s.partitions,
            group_members=self._members,
            takeovers=self._takeovers,
        )
        if not lease_up:
            st.mode = "disconnected"
        elif not parts:
            st.mode = "standby"
        else:
            st.mode = next((p.mode for p in parts if p.mode != "listening"), "listening")
        for name in _COUNTERS:
            total = self._finished[name] + sum(getattr(p, name) for p in parts)
            setattr(st, name, total if name == "handler_seconds" else int(total))
        positions = [p.position for p in parts if p.position is not None]
        st.position = max(positions) if positions else None
        drawn = [p.last_drawn_id for p in parts if p.last_drawn_id is not None]
        st.last_drawn_id = max(drawn) if drawn else None
        safe = [p.safe_id for p in parts if p.safe_id is not None]
        st.safe_id = min(safe) if safe else None
        st.writers = max((p.writers for p in parts), default=0)
        st.notify_queue_usage = max(
            (p.notify_queue_usage for p in parts if p.notify_queue_usage is not None), default=None
        )
        blocked = [p for p in parts if p.blocked_by_pid is not None]
        if blocked:
            st.blocked_by_pid, st.blocked_since = blocked[0].blocked_by_pid, blocked[0].blocked_since
        caught: list[datetime] = [p.caught_up_at for p in parts if p.caught_up_at is not None]
        st.caught_up_at = min(caught) if len(caught) == len(parts) and caught else None
        st.last_error = self._last_error or next((p.last_error for p in parts if p.last_error), None)
        st.purged_ranges = [r for p in parts for r in p.purged_ranges]
        return st

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Take part in the group until stopped. Returns after :meth:`stop`; raises on fatal errors."""
        self._stop.bind()
        self._running = True
        policy = ReconnectPolicy(self.settings)
        try:
            while not self.stopping:
                try:
                    lease = await Lease.open(self.settings)
                except CONNECTION_ERRORS as exc:
                    self._last_error = f"cannot connect: {exc}"
                    await self._stop.sleep(policy.failed(exc))
                    continue
                policy.connected()
                self._lease = lease
                self._last_error = None
                logger.info(
                    "joined group %r (%d partition(s)) as backend %s",
                    self.settings.group,
                    self.settings.partitions,
                    lease.backend_pid,
                    extra={"group": self.settings.group},
                )
                lost: BaseException | None = None
                try:
                    await self._serve(lease)
                except CONNECTION_ERRORS as exc:
                    lost = exc
                finally:
                    # Deliver nothing more, let the calls in progress end, then let go of the locks.
                    lease.lost = True
                    await self._stop_workers()
                    self._lease = None
                    await lease.close()
                if lost is not None:
                    self._finished["reconnects"] += 1
                    self._last_error = f"group lease lost: {lost}"
                    logger.warning(
                        "group %r: lease session lost (%s); this member's partitions stopped, rejoining",
                        self.settings.group,
                        lost,
                        extra={"group": self.settings.group},
                    )
                    await self._stop.sleep(policy.failed(lost))
                if self._fatal is not None:
                    raise self._fatal
        finally:
            await self._stop_workers()
            self._running = False
            logger.info("group member stopped")

    async def _serve(self, lease: Lease) -> None:
        s = self.settings
        while not self.stopping:
            self._reap_workers()
            state = await lease.state()
            self._members = state.members
            owned = set(state.owned)
            for partition in [p for p in self._workers if p not in owned]:
                await self._stop_worker(partition)  # not owned (cannot happen while the lease holds)
            if state.other_partition_counts:
                target = 0
                self._log_conflict(state.other_partition_counts)
            else:
                target = math.ceil(s.partitions / max(state.members, 1))
            for partition in sorted(owned, reverse=True)[: max(len(owned) - target, 0)]:
                await self._stop_worker(partition)
                await lease.release(partition)
                owned.discard(partition)
                logger.info(
                    "group %r: partition %d handed back (%d members)", s.group, partition, state.members
                )
            if len(owned) < target:
                start = (lease.backend_pid or 0) % s.partitions
                for i in range(s.partitions):
                    partition = (start + i) % s.partitions
                    if partition in owned:
                        continue
                    if await lease.take(partition):
                        owned.add(partition)
                        self._takeovers += 1
                        logger.info(
                            "group %r: took partition %d (%d members)",
                            s.group,
                            partition,
                            state.members,
                            extra={"group": s.group, "partition": partition},
                        )
                        if len(owned) >= target:
                            break
            for partition in sorted(owned):
                if partition not in self._workers:
                    self._start_worker(partition)
            await self._stop.sleep(s.group_check_interval)

    def _log_conflict(self, others: tuple[int, ...]) -> None:
        now = time.monotonic()
        if now - self._last_conflict_log >= self.settings.blocked_log_interval:
            self._last_conflict_log = now
            logger.error(
                "group %r: members with another partition count (%s, this one: %d) are live; this "
                "member delivers nothing until they are gone (give every member the same partitions)",
                self.settings.group,
                ", ".join(map(str, others)),
                self.settings.partitions,
            )

    def _start_worker(self, partition: int) -> None:
        s = self.settings
        if partition not in self._handlers:
            self._handlers[partition] = self._factory(partition)
        fenced = _FencedHandler(self, partition, self._handlers[partition])
        subscriber = Subscriber(fenced, s)
        fenced.subscriber = subscriber
        if subscriber.registry is not None:  # its record names the application, the group, the partition
            subscriber.registry.name = s.name or default_name(self._handlers[partition])
            subscriber.registry.group_name = s.group
            role = "active" if s.partitions == 1 else f"partition {partition}/{s.partitions}"
            subscriber.registry.role = role
        if s.partitions > 1:
            partitions = s.partitions

            def open_partition(settings: SubscriberSettings) -> Any:
                return PartitionSession.open_partition(settings, partitions, partition)

            subscriber.open_session = open_partition
        task = asyncio.create_task(subscriber.run(), name=f"pgsubscriber {s.group} partition {partition}")
        self._workers[partition] = _Worker(partition, subscriber, task)

    def _reap_workers(self) -> None:
        """Forget workers that ended on their own; a fatal error ends the member."""
        for worker in list(self._workers.values()):
            if worker.task.done():
                self._forget(worker)
                error = None if worker.task.cancelled() else worker.task.exception()
                if error is not None and not isinstance(error, CONNECTION_ERRORS):
                    self._fatal = error
                    raise error

    def _forget(self, worker: _Worker) -> None:
        if self._workers.get(worker.partition) is worker:
            del self._workers[worker.partition]
            for name in _COUNTERS:
                self._finished[name] += getattr(worker.subscriber.status, name)

    async def _stop_worker(self, partition: int) -> None:
        worker = self._workers.get(partition)
        if worker is None:
            return
        worker.subscriber.stop()
        await asyncio.gather(worker.task, return_exceptions=True)
        self._forget(worker)
        error = None if worker.task.cancelled() else worker.task.exception()
        if error is not None and not isinstance(error, CONNECTION_ERRORS) and self._fatal is None:
            self._fatal = error

    async def _stop_workers(self) -> None:
        for worker in self._workers.values():
            worker.subscriber.stop()  # all at once: each ends after its handler call in progress
        for partition in list(self._workers):
            await self._stop_worker(partition)
