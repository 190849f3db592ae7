"""The handler conformance check: ``check_handler(make_handler, events, observe=..., database=db)``.

It publishes ``events``, delivers them once through the real subscriber (the reference), then
attacks the handler the way production will, each attack on a fresh store:

- **redelivery**: every batch delivered twice in a row (after a failed call or a crash, a batch
  comes again);
- **batch cuts**: the events delivered one per batch (the subscriber cuts batches by size, bytes
  and what is committed);
- **overlap**: after the first batch, one batch from the middle of what the handler already has to
  the end (the retry of a batch the handler had stored in part);
- **crash**: for each crash point the handler passes while handling the middle batch (its store
  calls :meth:`HandlerRun.crash_point` between its writes), the process dies there: a new handler
  instance on the same store gets the rest of that batch from its ``get_latest_received_id()``,
  then the real subscriber delivers the rest;
- **restart**: a new handler instance after half of the events, redelivered from its position.

After each attack the handler's observable state (``observe(handler)``, any value compared with
``==``) must equal its state after the clean delivery, and its position the last event's id; after
a crash or a restart, also at the end of the interrupted batch, before later events can overwrite
(and so hide) a lost effect. A
failure raises :class:`HandlerCheckError` (an ``AssertionError``) that names, in plain words, each
property that failed and the event ids concerned. The check is deterministic: batches are cut by
size from events published before delivery starts.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pgsubscriber.events import Event
from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.publish import NewEvent
from pgsubscriber.subscriber import _call  # a handler method called as the subscriber calls it
from pgsubscriber.testing.database import EventsDatabase
from pgsubscriber.testing.delivery import DeliveryTimeout, deliver_async, run_sync

H = TypeVar("H", bound=ApplicationEventHandler)

_SHOWN = 400  # characters of a state shown in a message


class InjectedCrash(BaseException):
    """The check killed the handler here, as a crash of the process would.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that ``except Exception`` in a store does
    not swallow it: once raised, the handler instance is dead and the check never calls it again.
    """


class HandlerCheckWarning(UserWarning):
    """Part of the check could not run (e.g. the handler passes no crash point)."""


@dataclass(frozen=True)
class Failure:
    """One property the handler does not have, in plain words."""

    property: str
    message: str


class HandlerCheckError(AssertionError):
    """The handler failed the conformance check; :attr:`failures` lists each property that failed."""

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = failures
        lines = [f"the handler failed {len(failures)} propert{'y' if len(failures) == 1 else 'ies'}:"]
        lines += [f"- {failure.property}: {failure.message}" for failure in failures]
        super().__init__("\n".join(lines))


class HandlerRun:
    """What ``make_handler`` receives: the store to use, and the crash hook for that store.

    ``store`` names a store the check owns: the same name for every handler instance of one attack
    (a new instance after a crash or a restart must see what the previous one wrote), a new name
    for each attack, never used before in the check (the handler must start empty: position 0).
    Use it to pick a database, a schema, a collection prefix or a key in a dict of in-memory stores.

    Call :meth:`crash_point` in the store between its writes (``run.crash_point("after effects")``):
    outside a crash attack it does nothing; in one, it raises :class:`InjectedCrash` there.
    """

    def __init__(self, store: str) -> None:
        self.store = store
        self.passed: list[str] = []
        """Crash points passed since the check last cleared this list."""
        self._crash_at: int | None = None
        self.crashed_at: str | None = None
        """The crash point where the injected crash happened, if it did."""

    def crash_point(self, where: str) -> None:
        """Mark a point between two writes of the store, named by ``where`` (e.g. "after effects")."""
        if self.crashed_at is not None:
            raise InjectedCrash(f"the process already died at {self.crashed_at!r}")
        self.passed.append(where)
        if self._crash_at is not None and len(self.passed) == self._crash_at:
            self.crashed_at = where
            raise InjectedCrash(where)

    def _arm(self, nth: int) -> None:
        self.passed = []
        self._crash_at = nth


@dataclass
class HandlerCheckReport:
    """What the check did (returned when every property held)."""

    events: int
    batches: list[tuple[int, int]]
    """First and last id of each batch of the clean delivery."""
    attacks: list[str] = field(default_factory=list)
    crash_points: list[str] = field(default_factory=list)
    """Each crash point a crash was injected at, in order."""
    notes: list[str] = field(default_factory=list)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _difference(expected: object, got: object) -> str:
    """The part of two states that differs (by key for mappings), short enough for a message."""
    if isinstance(expected, Mapping) and isinstance(got, Mapping):
        keys = [k for k in {**expected, **got} if expected.get(k) != got.get(k)]
        if keys:
            return "; ".join(
                f"{k!r}: expected {_short(expected.get(k, '(absent)'))}, got {_short(got.get(k, '(absent)'))}"
                for k in keys[:5]
            ) + (f"; and {len(keys) - 5} more keys" if len(keys) > 5 else "")
    return f"expected {_short(expected)}, got {_short(got)}"


def _raised(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ids(events: Sequence[Event]) -> str:
    first, last = events[0].id, events[-1].id
    return str(first) if first == last else f"{first}..{last}"


class _Check(Generic[H]):
    def __init__(
        self,
        make_handler: Callable[[HandlerRun], H],
        observe: Callable[[H], object],
        database: EventsDatabase,
        topics: list[str],
        batch_size: int,
        timeout: float,
    ) -> None:
        self.make_handler = make_handler
        self.observe = observe
        self.database = database
        self.topics = topics
        self.batch_size = batch_size
        self.timeout = timeout
        self.failures: list[Failure] = []
        self.batches: list[list[Event]] = []
        self.states: list[object] = []  # the state after each batch of the clean delivery
        self.passed: list[list[str]] = []  # the crash points passed in each batch

    # -- helpers ----------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]

    @property
    def last_id(self) -> int:
        return self.batches[-1][-1].id

    def fail(self, prop: str, message: str) -> None:
        self.failures.append(Failure(prop, message))

    async def new_handler(self, store: str, *, fresh: bool) -> tuple[H, HandlerRun]:
        run = HandlerRun(store)
        handler = await _call(self.make_handler, run)
        if fresh:
            position = int(await _call(handler.get_latest_received_id))
            if position != 0:
                raise HandlerCheckError(
                    [
                        Failure(
                            "a fresh store per attack",
                            f"the handler made for store {store!r} (a name not used before) starts at "
                            f"position {position}, not 0: make_handler(run) must give a handler on an empty "
                            "store of its own for each run.store",
                        )
                    ]
                )
        return handler, run

    async def state(self, handler: H) -> object:
        """``observe(handler)``, copied: a state that is a live view of the store must not change
        after it was taken."""
        state = await _call(self.observe, handler)
        try:
            return copy.deepcopy(state)
        except Exception:  # not copyable (a lock, a connection...): compared as it is
            return state

    async def position(self, handler: H) -> int:
        return int(await _call(handler.get_latest_received_id))

    async def apply(self, handler: H, batch: Sequence[Event]) -> None:
        await _call(handler.on_notification, list(batch))

    async def deliver(self, handler: ApplicationEventHandler, **settings: Any) -> None:
        await deliver_async(handler, self.database, self.topics, timeout=self.timeout, **settings)

    # -- the reference ----------------------------------------------------------------------

    async def clean(self) -> None:
        handler, run = await self.new_handler("clean", fresh=True)
        check = self

        class Recorder:
            """Passes each batch on, then records it, the crash points it passed and the state."""

            async def on_notification(self, events: list[Event]) -> None:
                run.passed = []
                await check.apply(handler, events)
                check.batches.append(events)
                check.passed.append(list(run.passed))
                check.states.append(await check.state(handler))

            async def get_latest_received_id(self) -> int:
                return await check.position(handler)

        await self.deliver(Recorder(), batch_size=self.batch_size)
        if not self.batches:
            raise HandlerCheckError([Failure("clean delivery", "no event was delivered: nothing to check")])
        position = await self.position(handler)
        if position != self.last_id:
            consequence = (
                f"the subscriber would deliver events {position + 1}..{self.last_id} again at every start"
                if position < self.last_id
                else "it claims events that were never delivered"
            )
            self.fail(
                "position after a clean delivery",
                f"after one clean delivery of events {_ids(self.events)}, get_latest_received_id() "
                f"returns {position}, not {self.last_id}: {consequence}",
            )

    # -- the attacks ------------------------------------------------------------------------

    async def redelivery(self) -> None:
        handler, _ = await self.new_handler("redelivery", fresh=True)
        for batch, expected in zip(self.batches, self.states, strict=True):
            await self.apply(handler, batch)
            try:
                await self.apply(handler, batch)
            except Exception as exc:
                self.fail(
                    "idempotent redelivery",
                    f"delivering the same batch again (events {_ids(batch)}) raised {_raised(exc)}: a batch "
                    "comes again after a failed call or a crash, and the subscriber would retry it for "
                    "ever, delivering nothing after it",
                )
                return
            got = await self.state(handler)
            if got != expected:
                self.fail(
                    "idempotent redelivery",
                    f"delivering the same batch again (events {_ids(batch)}) changed the handler's state: "
                    "its effects are not idempotent, and a batch comes again after a failed call or a "
                    f"crash ({_difference(expected, got)})",
                )
                return
            position = await self.position(handler)
            if position != batch[-1].id:
                self.fail(
                    "idempotent redelivery",
                    f"after the same batch (events {_ids(batch)}) came twice, get_latest_received_id() "
                    f"is {position}, not {batch[-1].id}",
                )
                return

    async def batch_cuts(self) -> None:
        """The real subscriber, one event per batch; the state is compared at the end of each batch
        of the clean delivery (so a difference that later events overwrite shows too)."""
        handler, _ = await self.new_handler("one-per-batch", fresh=True)
        ends = {batch[-1].id: (batch, state) for batch, state in zip(self.batches, self.states, strict=True)}
        differences: list[tuple[list[Event], object, object]] = []
        check = self

        class Watcher:
            async def on_notification(self, events: list[Event]) -> None:
                await check.apply(handler, events)
                if events[-1].id in ends and not differences:
                    batch, expected = ends[events[-1].id]
                    got = await check.state(handler)
                    if got != expected:
                        differences.append((batch, expected, got))

            async def get_latest_received_id(self) -> int:
                return await check.position(handler)

        await self.deliver(Watcher(), batch_size=1)
        if differences:
            batch, expected, got = differences[0]
            self.fail(
                "independent of batch cuts",
                f"delivered one event per batch, events up to {batch[-1].id} leave another state than "
                f"delivered in batches of {self.batch_size} (up to events {_ids(batch)}): the effects "
                f"depend on how the subscriber cuts batches ({_difference(expected, got)})",
            )

    async def overlap(self) -> None:
        events = self.events
        first = self.batches[0]
        if len(events) < 2 or len(first) == len(events):
            return
        handler, _ = await self.new_handler("overlap", fresh=True)
        await self.apply(handler, first)
        held = await self.position(handler)
        start = (len(first) - 1) // 2
        again = events[start:]
        intro = (
            f"a batch that starts before the handler's position (events {_ids(again)}, the handler at "
            f"{held}: a retry of a batch it had stored in part)"
        )
        try:
            await self.apply(handler, again)
        except Exception as exc:
            self.fail(
                "overlapping redelivery",
                f"{intro} raised {_raised(exc)}: the subscriber would retry it for ever, delivering "
                "nothing after it",
            )
            return
        got, position = await self.state(handler), await self.position(handler)
        if got == self.states[-1] and position == self.last_id:
            return
        if got == self.states[0]:
            lost = f"{held + 1}..{self.last_id}"
            tail = (
                f"; get_latest_received_id() is {position}, so they would never be applied"
                if position >= self.last_id
                else ""
            )
            self.fail("overlapping redelivery", f"{intro} was skipped: events {lost} were not applied{tail}")
        elif got != self.states[-1]:
            self.fail(
                "overlapping redelivery",
                f"{intro} leaves another state than one clean delivery: the events it already had "
                f"({_ids(events[start : len(first)])}) changed it again or later events "
                f"were lost ({_difference(self.states[-1], got)})",
            )
        else:
            self.fail(
                "overlapping redelivery",
                f"{intro} leaves get_latest_received_id() at {position}, not {self.last_id}",
            )

    async def resume(self, handler: H, upto: int) -> tuple[int, object]:
        """A new instance resumes: the events after its position up to ``upto`` come in one batch
        (what the subscriber's next fetch holds), then its position and its state."""
        resumed_at = await self.position(handler)
        missing = [event for event in self.events if resumed_at < event.id <= upto]
        if missing:
            await self.apply(handler, missing)
        return resumed_at, await self.state(handler)

    async def crashes(self) -> list[str]:
        """One attack per crash point passed in the middle batch; returns those crash points.

        After the crash a new instance gets the rest of the crashed batch from its position (as
        the subscriber's next fetch), and its state is compared with the clean one right there,
        before later events can overwrite a loss; then the real subscriber delivers the rest.
        """
        middle = len(self.batches) // 2
        points = self.passed[middle]
        batch = self.batches[middle]
        first, last = batch[0].id, batch[-1].id
        for nth, where in enumerate(points, start=1):
            store = f"crash-{nth}"
            handler, run = await self.new_handler(store, fresh=True)
            for earlier in self.batches[:middle]:
                await self.apply(handler, earlier)
            run._arm(nth)
            with contextlib.suppress(InjectedCrash):
                await self.apply(handler, batch)
            if run.crashed_at is None:
                self.fail(
                    "deterministic crash points",
                    f"handling events {_ids(batch)} again, the handler did not pass crash point {nth} "
                    f"({where!r}) that it passed in the clean delivery",
                )
                continue
            crash = f"after a crash at {where!r} (crash point {nth} while handling events {_ids(batch)})"
            restarted, _ = await self.new_handler(store, fresh=False)
            resumed_at, got = await self.resume(restarted, last)
            if resumed_at > last:
                self.fail(
                    "crash safety",
                    f"{crash}, get_latest_received_id() is {resumed_at}: events {last + 1}..{resumed_at} "
                    "were never delivered, and would never be",
                )
                continue
            if got != self.states[middle]:
                if resumed_at >= first:
                    message = (
                        f"{crash}, get_latest_received_id() is {resumed_at}, ahead of the stored effects: "
                        f"events {first}..{resumed_at} would never be applied "
                        "(store the position with the effects, or after them)"
                    )
                else:
                    message = (
                        f"{crash} and redelivery of events {resumed_at + 1}..{last}, the state differs from "
                        "one clean delivery up to there: what was written before the crash was applied "
                        f"again, or lost ({_difference(self.states[middle], got)})"
                    )
                self.fail("crash safety", message)
                continue
            await self.deliver(restarted, batch_size=self.batch_size)
            got, position = await self.state(restarted), await self.position(restarted)
            if got != self.states[-1] or position != self.last_id:
                self.fail(
                    "crash safety",
                    f"{crash} and redelivery, the handler ends at position {position} (not {self.last_id}) "
                    f"or in another state than one clean delivery ({_difference(self.states[-1], got)})",
                )
        return points

    async def restart(self) -> None:
        if len(self.batches) < 2:
            return
        half = len(self.batches) // 2
        handled = self.batches[half - 1][-1].id
        first, _ = await self.new_handler("restart", fresh=True)
        for batch in self.batches[:half]:
            await self.apply(first, batch)
        restarted, _ = await self.new_handler("restart", fresh=False)
        resumed_at, got = await self.resume(restarted, handled)
        if resumed_at > handled:
            self.fail(
                "restart from the position",
                f"a new handler instance reports position {resumed_at}, but only events up to {handled} "
                f"were handled: events {handled + 1}..{resumed_at} would never be applied",
            )
            return
        if got != self.states[half - 1]:
            self.fail(
                "restart from the position",
                f"stopped after events up to {handled}, a new handler instance reports position "
                f"{resumed_at} in another state than one clean delivery up to there: the state is not "
                f"all in the store ({_difference(self.states[half - 1], got)})",
            )
            return
        await self.deliver(restarted, batch_size=self.batch_size)
        got, position = await self.state(restarted), await self.position(restarted)
        if got != self.states[-1] or position != self.last_id:
            self.fail(
                "restart from the position",
                f"restarted after events up to {handled} with get_latest_received_id() = {resumed_at}, "
                f"the handler ends at position {position} in another state than one clean delivery "
                f"({_difference(self.states[-1], got)})",
            )

    async def run(self) -> HandlerCheckReport:
        try:
            await self.clean()
            report = HandlerCheckReport(
                events=len(self.events), batches=[(b[0].id, b[-1].id) for b in self.batches]
            )
            await self.redelivery()
            await self.batch_cuts()
            await self.overlap()
            report.crash_points = await self.crashes()
            await self.restart()
        except DeliveryTimeout as exc:
            self.fail("delivery", str(exc))
            raise HandlerCheckError(self.failures) from exc
        report.attacks = ["redelivery", "batch cuts", "overlap", "crash", "restart"]
        if not report.crash_points:
            note = (
                "the handler passes no crash point: crashes between its writes were not checked (call "
                "run.crash_point('after ...') in the store between its writes)"
            )
            report.notes.append(note)
        if self.failures:
            raise HandlerCheckError(self.failures)
        return report


def check_handler(
    make_handler: Callable[[HandlerRun], H],
    events: Sequence[NewEvent | tuple[str, Mapping[str, Any]]],
    *,
    observe: Callable[[H], object],
    database: EventsDatabase,
    topics: Sequence[str] | None = None,
    batch_size: int | None = None,
    timeout: float = 30.0,
) -> HandlerCheckReport:
    """Publish ``events`` into ``database`` (a fresh one), deliver them, attack the handler; raise
    :class:`HandlerCheckError` naming every property that failed, else return what was checked.

    ``make_handler(run)`` builds a handler on the store named ``run.store`` (sync or async; called
    again with the same name for the instance after a crash or a restart). ``observe(handler)``
    returns its observable state: what the application's readers see, without what legitimately
    differs between two deliveries (receive times, generated ids). ``topics`` defaults to the
    topics of ``events``; ``batch_size`` to a third of them, so the clean delivery has a few batches.
    """
    new_events = [event if isinstance(event, NewEvent) else NewEvent(*event) for event in events]
    if not new_events:
        raise ValueError("check_handler needs at least one event")
    chosen = list(topics) if topics is not None else sorted({event.topic for event in new_events})
    size = batch_size or max(1, -(-len(new_events) // 3))
    database.publish_many(new_events)
    check = _Check(make_handler, observe, database, chosen, size, timeout)
    report = run_sync(check.run())
    for note in report.notes:  # warned from here, so that the warning names the caller's line
        warnings.warn(note, HandlerCheckWarning, stacklevel=2)
    return report
