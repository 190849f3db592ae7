"""The subscriber loop's decisions, against a scripted fake session (no server).

When to poll and when to wait for NOTIFY, when to take and release the idle-listener lock, what to
read while the handler works, what to log and when. The same behaviour against a real server is in
tests/integration/.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime

import pytest

import pgsubscriber.subscriber
from pgsubscriber import EventsPurgedError
from pgsubscriber._session import IdleLockHolder
from pgsubscriber.errors import ConnectionLostError
from tests.unit.fake_session import (
    FakeDatabase,
    FakeSession,
    TracingHandler,
    fast_settings,
    in_loop,
    running,
    subscriber_on,
    until,
)

LOOP_LOGGER = "pgsubscriber.subscriber"


def listening(sub, db):
    """The subscriber holds the idle-listener lock and waits for a notification."""
    return lambda: sub.status.mode == "listening" and db.session.idle and db.waiting()


def warnings_about(caplog, words):
    return [
        r
        for r in caplog.records
        if r.name == LOOP_LOGGER and r.levelno == logging.WARNING and words in r.getMessage()
    ]


# -- 1. a new session -------------------------------------------------------------------------------


@in_loop
async def test_a_new_session_delivers_what_is_there_then_takes_the_idle_lock_and_looks_once_more():
    db = FakeDatabase()
    db.commit("courses", 3)
    sub = subscriber_on(db, TracingHandler(db))

    async with running(sub):
        await until(listening(sub, db), db=db)
        assert db.calls == [
            ("open",),
            ("fetch", 0, 100),  # the session starts polling: no lock yet
            ("handle", 1, 3),
            ("handled", 1, 3),
            ("set_idle", True),  # writers notify from now on...
            ("fetch", 3, 100),  # ...but one that registered before the lock may not have: look again
            ("wait",),
        ]
        assert sub.status.position == 3 and sub.status.connected

        # Idle, a commit notifies it: one fetch, no lock traffic.
        mark = len(db.calls)
        db.commit("courses", 2)
        await until(lambda: ("handled", 4, 5) in db.calls and db.waiting(), db=db)
        assert db.calls[mark:] == [("fetch", 3, 100), ("handle", 4, 5), ("handled", 4, 5), ("wait",)]
        assert sub.status.mode == "listening"

    assert db.calls[-1] == ("close",)
    assert sub.status.mode == "disconnected" and not sub.status.running


@in_loop
async def test_an_empty_stream_still_takes_the_lock_before_its_second_look():
    db = FakeDatabase()
    sub = subscriber_on(db, TracingHandler(db, position=0))

    async with running(sub):
        await until(listening(sub, db), db=db)
        assert db.trace("fetch", "set_idle", "wait") == [
            ("fetch", 0, 100),
            ("set_idle", True),
            ("fetch", 0, 100),
            ("wait",),
        ]


@in_loop
async def test_poll_only_never_takes_the_idle_lock_and_fetches_every_interval():
    db = FakeDatabase()
    sub = subscriber_on(db, TracingHandler(db), fast_settings(poll_only=True, poll_only_interval=0.01))

    async with running(sub):
        await until(lambda: db.count("fetch") >= 4, db=db)
        db.commit("courses", 2)  # no notification reaches a poll-only session
        await until(lambda: ("handled", 1, 2) in db.calls, db=db)
        assert sub.status.mode == "poll-only"

    assert db.count("set_idle") == 0
    assert db.wait_timeouts[-1] == pytest.approx(0.01, abs=0.005)


# -- 2. writers in flight -----------------------------------------------------------------------------


@in_loop
async def test_writers_at_the_threshold_make_it_poll_with_a_doubling_delay_until_they_are_gone():
    db = FakeDatabase()
    sub = subscriber_on(db, TracingHandler(db), fast_settings(writer_poll_threshold=2))

    async with running(sub):
        await until(listening(sub, db), db=db)

        # One writer in flight, below the threshold: it will notify, so the subscriber keeps waiting.
        db.writers = 1
        db.commit("courses")
        await until(lambda: ("handled", 1, 1) in db.calls and db.waiting(), db=db)
        assert ("set_idle", False) not in db.calls
        assert sub.status.mode == "listening"

        # Two writers: they skip NOTIFY, so the subscriber lets go of the lock and polls.
        mark, waits = len(db.calls), len(db.wait_timeouts)
        db.writers = 2
        db.notify()  # an earlier commit's notification wakes it
        await until(lambda: len(db.wait_timeouts) >= waits + 6, db=db)
        assert db.calls[mark : mark + 3] == [("fetch", 1, 100), ("set_idle", False), ("wait",)]
        assert sub.status.mode == "polling"
        assert db.wait_timeouts[waits : waits + 6] == pytest.approx(
            [0.001, 0.002, 0.004, 0.008, 0.008, 0.008]
        )
        assert db.trace("set_idle") == [("set_idle", True), ("set_idle", False)]  # no lock traffic meanwhile

        # A writer commits (no NOTIFY: nobody is idle); polling finds it, and the delay starts over.
        db.writers = 1
        db.commit("courses")
        await until(lambda: ("handled", 2, 2) in db.calls and db.waiting(), db=db)
        assert db.waits_after(("handled", 2, 2))[0] == pytest.approx(0.001)
        # One writer left, below the threshold; but it may have skipped NOTIFY, so no lock yet.
        assert sub.status.mode == "polling"

        # The last writer finishes: take the lock, look once more, wait.
        mark = len(db.calls)
        db.writers = 0
        await until(listening(sub, db), db=db)
        assert db.calls[-3:] == [("set_idle", True), ("fetch", 2, 100), ("wait",)]
        assert db.calls[mark:].count(("set_idle", True)) == 1
        assert db.wait_timeouts[-1] > 1  # no more polling: the next wake is the safety poll


@in_loop
async def test_a_new_session_polls_while_any_writer_is_in_flight_whatever_the_threshold():
    db = FakeDatabase()
    db.commit("courses", 2)
    db.writers = 1  # registered before this session could take the lock: it may skip NOTIFY
    sub = subscriber_on(db, TracingHandler(db), fast_settings(writer_poll_threshold=5))

    async with running(sub):
        await until(lambda: db.count("wait") >= 3, db=db)
        assert db.trace("set_idle") == []
        assert sub.status.mode == "polling"
        db.writers = 0
        await until(listening(sub, db), db=db)


@in_loop
async def test_a_writer_seen_in_the_look_after_taking_the_lock_makes_it_let_go_and_poll():
    db = FakeDatabase()
    db.commit("courses", 2)
    db.when(("set_idle", True), lambda: setattr(db, "writers", 1))
    sub = subscriber_on(db, TracingHandler(db), fast_settings(writer_poll_threshold=5))

    async with running(sub):
        await until(lambda: db.count("wait") >= 3, db=db)
        assert db.trace("fetch", "set_idle", "wait")[:6] == [
            ("fetch", 0, 100),
            ("set_idle", True),
            ("fetch", 2, 100),  # one writer: it registered while the subscriber polled
            ("set_idle", False),
            ("wait",),
            ("fetch", 2, 100),
        ]
        assert db.waits_after(("set_idle", False))[:2] == pytest.approx([0.001, 0.002])
        db.writers = 0
        await until(listening(sub, db), db=db)


@in_loop
async def test_after_a_long_poll_a_new_writer_is_polled_for_fast_again():
    db = FakeDatabase()
    db.writers, db.blocking_pid = 1, 4242  # an old transaction holds delivery back
    sub = subscriber_on(db, TracingHandler(db))

    async with running(sub):
        await until(lambda: db.count("wait") >= 6, db=db)
        assert db.wait_timeouts[-1] == pytest.approx(0.008)  # backed off to writer_poll_max

        # It commits; a new writer registers just as the subscriber takes the idle lock.
        db.when(("set_idle", True), lambda: setattr(db, "writers", 1))
        db.writers, db.blocking_pid = 0, None
        db.commit("courses")
        await until(lambda: ("set_idle", False) in db.calls, db=db)
        await until(lambda: len(db.waits_after(("set_idle", False))) >= 3, db=db)
        assert db.waits_after(("set_idle", False))[:3] == pytest.approx([0.001, 0.002, 0.004])
        db.writers = 0
        await until(listening(sub, db), db=db)


# -- 3. a nearly full NOTIFY queue -----------------------------------------------------------------------


@in_loop
async def test_a_nearly_full_notify_queue_keeps_it_polling_even_without_writers():
    db = FakeDatabase()
    db.notify_queue_usage = 0.5
    sub = subscriber_on(db, TracingHandler(db))

    async with running(sub):
        await until(lambda: db.count("wait") >= 6, db=db)
        assert ("set_idle", True) not in db.calls
        assert sub.status.mode == "polling" and sub.status.notify_queue_usage == 0.5
        assert db.wait_timeouts[:5] == pytest.approx([0.001, 0.002, 0.004, 0.008, 0.008])

        db.commit("courses", 2)  # writers do not notify above 10%: polling finds the events
        await until(lambda: ("handled", 1, 2) in db.calls, db=db)
        assert ("set_idle", True) not in db.calls

        db.notify_queue_usage = 0.05
        await until(listening(sub, db), db=db)
        assert db.calls[-3:] == [("set_idle", True), ("fetch", 2, 100), ("wait",)]


# -- 4. a foreign session holds the idle-listener lock ----------------------------------------------


@in_loop
async def test_a_foreign_holder_of_the_idle_lock_keeps_it_polling_and_is_reported_once_per_interval(caplog):
    caplog.set_level(logging.WARNING, logger=LOOP_LOGGER)
    db = FakeDatabase()
    db.idle_lock_holder = IdleLockHolder(pid=777, role="intruder")
    sub = subscriber_on(
        db, TracingHandler(db), fast_settings(writer_poll_max=0.005, blocked_log_interval=0.1)
    )

    started = time.monotonic()
    async with running(sub):
        await asyncio.sleep(0.35)
        tries = db.count("set_idle")
        assert sub.status.mode == "polling"
        assert set(db.wait_timeouts) == {0.005}  # polls at writer_poll_max
        assert db.trace("set_idle") == [("set_idle", True)] * tries  # never idle, nothing to release

        db.commit("courses", 2)  # nobody is idle, so no notification: polling finds them
        await until(lambda: ("handled", 1, 2) in db.calls, db=db)

        elapsed = time.monotonic() - started
        db.idle_lock_holder = None
        await until(listening(sub, db), db=db)

    reports = warnings_about(caplog, "idle-listener lock")
    assert tries >= 20
    assert 2 <= len(reports) <= 1 + elapsed / 0.1
    assert all("777" in r.getMessage() and "intruder" in r.getMessage() for r in reports)
    gaps = [b.created - a.created for a, b in itertools.pairwise(reports)]
    assert all(gap >= 0.09 for gap in gaps), gaps


# -- 5. reading ahead while the handler works ----------------------------------------------------------------


@in_loop
async def test_a_full_batch_has_the_next_one_read_while_the_handler_works():
    db = FakeDatabase()
    db.commit("courses", 7)
    handler = TracingHandler(db, delay=0.01)
    sub = subscriber_on(db, handler, fast_settings(batch_size=3))

    async with running(sub):
        await until(listening(sub, db), db=db)

    assert handler.delivered == [1, 2, 3, 4, 5, 6, 7]
    assert db.calls[: db.calls.index(("set_idle", True))] == [
        ("open",),
        ("fetch", 0, 3),  # 1..3, more=True
        ("handle", 1, 3),
        ("fetch", 3, 3),  # read ahead while the handler works: 4..6, more=True
        ("handled", 1, 3),
        ("handle", 4, 6),
        ("fetch", 6, 3),  # read ahead: 7, more=False
        ("handled", 4, 6),
        ("handle", 7, 7),  # the last batch: nothing read meanwhile
        ("handled", 7, 7),
    ]


@in_loop
async def test_a_batch_that_is_not_full_has_nothing_read_while_the_handler_works():
    db = FakeDatabase()
    db.commit("courses", 3)
    handler = TracingHandler(db, delay=0.01)
    sub = subscriber_on(db, handler, fast_settings(batch_size=3))

    async with running(sub):
        await until(listening(sub, db), db=db)

    assert db.trace("fetch", "handle", "handled", "set_idle")[:5] == [
        ("fetch", 0, 3),  # exactly 3 events: more=False
        ("handle", 1, 3),
        ("handled", 1, 3),
        ("set_idle", True),
        ("fetch", 3, 3),
    ]


# -- 6. a slow or failing handler ---------------------------------------------------------------------------


@in_loop
async def test_a_slow_handler_releases_the_idle_lock_and_reports_polling(monkeypatch):
    monkeypatch.setattr(pgsubscriber.subscriber, "BUSY_AFTER", 0.05)
    db = FakeDatabase()
    handler = TracingHandler(db, delay=1.0)  # long enough to be seen working on a loaded machine
    sub = subscriber_on(db, handler)

    async with running(sub):
        await until(listening(sub, db), db=db)
        mark = len(db.calls)
        db.commit("courses", 2)
        # While the handler still works, writers are told not to count on this subscriber.
        await until(lambda: sub.status.mode == "polling", db=db)
        assert ("handle", 1, 2) in db.calls and ("handled", 1, 2) not in db.calls
        assert ("set_idle", False) in db.calls and not db.session.idle

        await until(listening(sub, db), db=db)
        assert db.calls[mark:] == [
            ("fetch", 0, 100),
            ("handle", 1, 2),
            ("set_idle", False),
            ("handled", 1, 2),
            ("set_idle", True),  # done: back to listening, with the look once more
            ("fetch", 2, 100),
            ("wait",),
        ]


@in_loop
async def test_cancelling_run_during_a_slow_handler_is_not_turned_into_a_reconnect(monkeypatch):
    """The idle flag's failure, while the handler works, does not replace run()'s cancellation."""
    monkeypatch.setattr(pgsubscriber.subscriber, "BUSY_AFTER", 0.05)
    db = FakeDatabase()
    sub = subscriber_on(db, TracingHandler(db, delay=1.0))
    real_set_idle = FakeSession.set_idle

    async def failing_release(self: FakeSession, idle: bool) -> IdleLockHolder | None:
        if not idle:
            await asyncio.sleep(0.1)
            raise ConnectionLostError("the idle flag got no answer")
        return await real_set_idle(self, idle)

    monkeypatch.setattr(FakeSession, "set_idle", failing_release)
    task = asyncio.ensure_future(sub.run())
    await until(listening(sub, db), db=db)
    db.commit("courses", 1)
    await until(lambda: ("handle", 1, 1) in db.calls, db=db)
    await asyncio.sleep(0.08)  # past BUSY_AFTER: the release is under way, and will fail
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert sub.status.reconnects == 0


@in_loop
async def test_a_quick_handler_keeps_the_idle_lock(monkeypatch):
    monkeypatch.setattr(pgsubscriber.subscriber, "BUSY_AFTER", 0.05)
    db = FakeDatabase()
    sub = subscriber_on(db, TracingHandler(db, delay=0.005))

    async with running(sub):
        await until(listening(sub, db), db=db)
        for _ in range(3):
            db.commit("courses")
            await until(lambda: db.calls[-2:] == [("handled", db.last_id, db.last_id), ("wait",)], db=db)

    assert db.trace("set_idle") == [("set_idle", True)]


@in_loop
async def test_a_failing_handler_gets_the_same_batch_again_and_the_lock_is_released_meanwhile(
    monkeypatch, caplog
):
    monkeypatch.setattr(pgsubscriber.subscriber, "BUSY_AFTER", 0.05)
    caplog.set_level(logging.WARNING, logger=LOOP_LOGGER)
    db = FakeDatabase()
    handler = TracingHandler(db, fail_times=6)
    sub = subscriber_on(
        db, handler, fast_settings(handler_retry_initial_delay=0.01, handler_retry_max_delay=0.02)
    )

    async with running(sub):
        await until(listening(sub, db), db=db)
        db.commit("courses", 3)
        await until(lambda: ("handled", 1, 3) in db.calls, db=db)
        assert sub.status.handler_failures == 6
        await until(listening(sub, db), db=db)
        assert sub.status.last_error is None

    assert handler.attempts == [[1, 2, 3]] * 7  # the same batch, never skipped, never split
    assert handler.delivered == [1, 2, 3]
    released = db.calls.index(("set_idle", False))
    assert db.calls.index(("handle", 1, 3)) < released < db.calls.index(("handled", 1, 3))
    assert db.count("fetch") == 4  # the first round's two, the wakeup, the look after re-taking the lock
    failures = [
        r for r in caplog.records if "handler on_notification failed for events 1..3" in r.getMessage()
    ]
    assert len(failures) == 6


# -- 7. a producer transaction holds delivery back -----------------------------------------------------------


@in_loop
async def test_a_blocking_writer_is_reported_only_after_blocked_warning_after_and_once_per_interval(caplog):
    caplog.set_level(logging.WARNING, logger=LOOP_LOGGER)
    db = FakeDatabase()
    db.commit("courses", 5)
    sub = subscriber_on(
        db, TracingHandler(db), fast_settings(blocked_warning_after=0.1, blocked_log_interval=0.15)
    )

    async with running(sub):
        await until(listening(sub, db), db=db)

        # A short transaction (below the writer threshold, so the subscriber stays idle).
        db.writers, db.blocking_pid, db.last_drawn_id = 1, 4242, 6
        db.notify()
        await until(lambda: sub.status.blocked_by_pid == 4242, db=db)
        await asyncio.sleep(0.03)
        db.writers, db.blocking_pid, db.last_drawn_id = 0, None, None
        await asyncio.sleep(0.15)  # its check comes and finds it gone
        assert sub.status.blocked_by_pid is None
        assert warnings_about(caplog, "waits for a producer transaction") == []

        # A long one: idle and never notified, the subscriber looks again when the warning is due.
        fetches = db.count("fetch")
        db.writers, db.blocking_pid, db.last_drawn_id = 1, 4343, 8
        db.notify()
        await until(lambda: sub.status.blocked_by_pid == 4343, db=db)
        seen = time.time()
        await asyncio.sleep(0.5)
        held_for = time.time() - seen
        assert sub.status.mode == "listening"
        assert db.count("fetch") - fetches <= 2 + held_for / 0.1  # woken by the checks only

    reports = warnings_about(caplog, "waits for a producer transaction")
    assert 2 <= len(reports) <= 1 + (held_for - 0.1) / 0.15 + 0.5
    assert reports[0].created - seen >= 0.09  # not before blocked_warning_after
    gaps = [b.created - a.created for a, b in itertools.pairwise(reports)]
    assert all(gap >= 0.14 for gap in gaps), gaps
    message = reports[0].getMessage()
    assert "backend pid 4343" in message and "delivery after id 5" in message
    assert "3 id(s) drawn after it are held back" in message


@in_loop
async def test_when_a_writer_started_is_asked_once_and_only_for_a_writer_that_lasts(monkeypatch):
    monkeypatch.setattr(pgsubscriber.subscriber, "WRITER_START_LOOKUP_AFTER", 0.3)
    db = FakeDatabase()
    db.commit("courses", 2)
    sub = subscriber_on(db, TracingHandler(db), fast_settings(blocked_warning_after=10))

    async with running(sub):
        await until(listening(sub, db), db=db)
        # Brief writers, one after the other: each gone within a fetch or two. None is asked about.
        for pid in range(100, 110):
            db.writers, db.blocking_pid, db.last_drawn_id = 1, pid, 3
            db.notify()
            await until(lambda pid=pid: sub.status.blocked_by_pid == pid, db=db)
            db.writers, db.blocking_pid, db.last_drawn_id = 0, None, None
            db.notify()
            await until(lambda: sub.status.blocked_by_pid is None, db=db)
        assert db.count("writer_since") == 0

        # One that lasts: asked once, after WRITER_START_LOOKUP_AFTER, whatever the fetches meanwhile.
        db.writers, db.blocking_pid, db.last_drawn_id = 1, 77, 3
        db.blocking_since = datetime(2001, 1, 1, tzinfo=UTC)
        db.notify()
        await until(lambda: sub.status.blocked_since == db.blocking_since, db=db)
        for _ in range(5):
            db.notify()
            await asyncio.sleep(0.02)
        assert db.count("writer_since") == 1


@in_loop
async def test_a_writer_open_since_long_ago_by_the_servers_clock_is_reported_at_once(caplog):
    caplog.set_level(logging.WARNING, logger=LOOP_LOGGER)
    db = FakeDatabase()
    db.commit("courses", 2)
    db.writers, db.blocking_pid, db.last_drawn_id = 1, 99, 3
    db.blocking_since = datetime(2000, 1, 1, tzinfo=UTC)
    sub = subscriber_on(
        db, TracingHandler(db), fast_settings(blocked_warning_after=10, blocked_log_interval=10)
    )

    async with running(sub):
        await until(lambda: warnings_about(caplog, "backend pid 99"), db=db)
        assert sub.status.blocked_since == db.blocking_since


# -- 8. events purged before they were received ----------------------------------------------------------


@in_loop
async def test_a_purge_beyond_the_position_ends_run_with_events_purged_error():
    db = FakeDatabase()
    db.commit("courses", 10)
    db.purge(up_to_id=4)
    handler = TracingHandler(db)
    sub = subscriber_on(db, handler)

    with pytest.raises(EventsPurgedError) as raised:
        await sub.run()

    assert (raised.value.first_missing_id, raised.value.last_missing_id) == (1, 4)
    assert handler.attempts == []
    assert db.calls[-1] == ("close",) and not sub.status.running


@in_loop
async def test_a_purge_beyond_the_position_with_on_purged_continue_is_logged_once_and_delivery_goes_on(
    caplog,
):
    caplog.set_level(logging.ERROR, logger=LOOP_LOGGER)
    db = FakeDatabase()
    db.commit("courses", 10)
    db.purge(up_to_id=4)
    handler = TracingHandler(db)
    sub = subscriber_on(db, handler, fast_settings(on_purged="continue"))

    async with running(sub):
        await until(listening(sub, db), db=db)
        db.commit("courses", 2)
        await until(lambda: ("handled", 11, 12) in db.calls, db=db)

    assert handler.delivered == [5, 6, 7, 8, 9, 10, 11, 12]
    assert sub.status.purged_ranges == [(1, 4)]
    lost = [r.getMessage() for r in caplog.records if "EVENTS LOST" in r.getMessage()]
    assert len(lost) == 1 and "ids 1..4" in lost[0]


@in_loop
async def test_a_purge_behind_the_position_is_no_concern():
    db = FakeDatabase()
    db.commit("courses", 10)
    db.purge(up_to_id=4)
    handler = TracingHandler(db, position=6)
    sub = subscriber_on(db, handler)  # on_purged="raise"

    async with running(sub):
        await until(listening(sub, db), db=db)

    assert handler.delivered == [7, 8, 9, 10]


# -- heartbeat ------------------------------------------------------------------------------------


@in_loop
async def test_a_quiet_listener_proves_its_connection_with_heartbeats_not_fetches():
    db = FakeDatabase()
    sub = subscriber_on(db, TracingHandler(db), fast_settings(heartbeat_interval=0.02))

    async with running(sub):
        await until(listening(sub, db), db=db)
        fetches = db.count("fetch")
        await until(lambda: db.count("heartbeat") >= 4, db=db)
        assert db.count("fetch") == fetches


# -- 10. status is an output ----------------------------------------------------------------------


@in_loop
async def test_overwriting_status_fields_changes_nothing_the_loop_does():
    db = FakeDatabase()
    db.commit("courses", 3)
    sub = subscriber_on(db, TracingHandler(db), fast_settings(writer_poll_threshold=2))

    def scribble():
        st = sub.status
        st.writers, st.safe_id, st.position, st.last_drawn_id = 99, 0, 0, 10**9
        st.mode, st.connected, st.notify_queue_usage = "polling", False, 1.0
        st.blocked_by_pid, st.foreign_lock_pid, st.last_error = 1, 2, "scribbled"

    async with running(sub):
        await until(listening(sub, db), db=db)

        # Idle: a status that claims writers, a full queue and position 0 does not make it poll or re-read.
        scribble()
        mark = len(db.calls)
        db.commit("courses", 2)
        await until(lambda: ("handled", 4, 5) in db.calls and db.waiting(), db=db)
        assert db.calls[mark:] == [("fetch", 3, 100), ("handle", 4, 5), ("handled", 4, 5), ("wait",)]

        # Polling: a status that claims no writers does not make it stop.
        db.writers = 2
        db.notify()
        await until(lambda: ("set_idle", False) in db.calls, db=db)
        for _ in range(5):
            sub.status.writers, sub.status.notify_queue_usage, sub.status.mode = 0, 0.0, "listening"
            waits = len(db.wait_timeouts)
            await until(lambda: len(db.wait_timeouts) > waits, db=db)  # noqa: B023
        assert db.trace("set_idle")[-1] == ("set_idle", False)
        assert db.waits_after(("set_idle", False))[:5] == pytest.approx([0.001, 0.002, 0.004, 0.008, 0.008])

        db.writers = 0
        scribble()
        await until(listening(sub, db), db=db)
        assert db.calls[-3:] == [("set_idle", True), ("fetch", 5, 100), ("wait",)]
