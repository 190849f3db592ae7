"""The test kit: fixtures and deliver() on the real subscriber, and check_handler against handlers
with the bugs it exists to catch."""

from __future__ import annotations

import functools

import pytest

from pgsubscriber.testing import (
    DeliveryTimeout,
    HandlerCheckError,
    HandlerCheckWarning,
    HandlerRun,
    check_handler,
)
from tests.support.example_handlers import (
    COURSE_EVENTS,
    AsyncCorrectHandler,
    BatchSkippingHandler,
    CorrectHandler,
    CountingHandler,
    DuplicateRefusingHandler,
    FirstOfBatchHandler,
    PositionFirstHandler,
    SharedStoreHandler,
    Store,
    observe,
)
from tests.support.handlers import RecordingHandler

pytestmark = pytest.mark.integration


def maker(handler_class: type) -> functools.partial:
    stores: dict[str, Store] = {}
    return functools.partial(handler_class, stores)


def check(handler_class: type, db, **options):
    return check_handler(maker(handler_class), COURSE_EVENTS, observe=observe, database=db, **options)


def failures(excinfo: pytest.ExceptionInfo[HandlerCheckError]) -> dict[str, str]:
    return {failure.property: failure.message for failure in excinfo.value.failures}


def test_deliver_runs_the_real_subscriber_until_the_handler_has_every_published_event(pgsubscriber_db):
    first = pgsubscriber_db.publish_many([("courses", {"n": i}) for i in range(5)])
    pgsubscriber_db.publish("enrollments", {"n": 0})
    handler = RecordingHandler()
    assert pgsubscriber_db.deliver(handler, ["courses"], batch_size=2) == first[-1]
    assert handler.ids == first and handler.batches == [first[0:2], first[2:4], first[4:]]

    later = pgsubscriber_db.publish("courses", {"n": 5})
    assert pgsubscriber_db.deliver(handler, ["courses"]) == later
    assert handler.ids == [*first, later]


def test_deliver_fails_a_hang_with_the_handlers_last_error(pgsubscriber_db):
    pgsubscriber_db.publish("courses", {"n": 1})
    handler = RecordingHandler(fail_times=10**6)
    with pytest.raises(DeliveryTimeout, match=r"handler on_notification failed.*handler failure"):
        pgsubscriber_db.deliver(handler, ["courses"], timeout=1.0)


def test_a_correct_handler_passes_every_attack(db):
    report = check(CorrectHandler, db)
    assert report.events == len(COURSE_EVENTS)
    assert report.batches == [(1, 3), (4, 6), (7, 9)]
    assert report.crash_points == ["before commit", "after commit"]
    assert report.attacks == ["redelivery", "batch cuts", "overlap", "crash", "restart"]


def test_an_async_handler_is_checked_the_same_way(db):
    assert check(AsyncCorrectHandler, db).crash_points == ["before commit", "after commit"]


def test_the_position_stored_before_the_effects_fails_crash_safety_naming_the_lost_events(db):
    with pytest.raises(HandlerCheckError) as excinfo:
        check(PositionFirstHandler, db)
    found = failures(excinfo)
    assert list(found) == ["crash safety"]
    assert found["crash safety"] == (
        "after a crash at 'after position' (crash point 1 while handling events 4..6), "
        "get_latest_received_id() is 6, ahead of the stored effects: events 4..6 would never be "
        "applied (store the position with the effects, or after them)"
    )
    assert "- crash safety: after a crash at 'after position'" in str(excinfo.value)


def test_a_counter_incremented_per_event_fails_idempotent_redelivery(db):
    with pytest.raises(HandlerCheckError) as excinfo:
        check(CountingHandler, db)
    found = failures(excinfo)
    assert found["idempotent redelivery"].startswith(
        "delivering the same batch again (events 1..3) changed the handler's state: its effects are "
        "not idempotent"
    )
    assert "'counts': expected {'c1': 2, 'c2': 1}, got {'c1': 4, 'c2': 2}" in found["idempotent redelivery"]
    # A crash between the effects and the position counts the batch twice too.
    assert "crash at 'after effects'" in found["crash safety"]


def test_a_handler_that_raises_on_a_batch_it_already_has_fails_idempotent_redelivery_in_plain_words(db):
    with pytest.raises(HandlerCheckError) as excinfo:
        check(DuplicateRefusingHandler, db)
    found = failures(excinfo)
    assert found["idempotent redelivery"].startswith(
        "delivering the same batch again (events 1..3) raised KeyError: 'duplicate key "
    )
    assert "the subscriber would retry it for ever" in found["idempotent redelivery"]
    assert "raised KeyError" in found["overlapping redelivery"]


def test_a_handler_that_skips_a_batch_starting_below_its_position_fails_overlapping_redelivery(db):
    with pytest.raises(HandlerCheckError) as excinfo:
        check(BatchSkippingHandler, db)
    assert failures(excinfo) == {
        "overlapping redelivery": (
            "a batch that starts before the handler's position (events 2..9, the handler at 3: a retry "
            "of a batch it had stored in part) was skipped: events 4..9 were not applied; "
            "get_latest_received_id() is 9, so they would never be applied"
        )
    }


def test_effects_that_depend_on_the_batch_cuts_fail_independence_of_batch_cuts(db):
    with pytest.raises(HandlerCheckError) as excinfo:
        check(FirstOfBatchHandler, db)
    assert failures(excinfo)["independent of batch cuts"] == (
        "delivered one event per batch, events up to 3 leave another state than delivered in batches "
        "of 3 (up to events 1..3): the effects depend on how the subscriber cuts batches ('titles': "
        "expected {'c1': 'Algebra', 'c2': 'Biology'}, got {'c1': 'Algebra II', 'c2': 'Biology'})"
    )


def test_make_handler_must_give_each_attack_a_fresh_store(db):
    with pytest.raises(HandlerCheckError, match="a fresh store per attack: the handler made for store "):
        check(SharedStoreHandler, db)


def test_a_handler_without_crash_points_passes_with_a_warning(db):
    class NoCrashPoints(CorrectHandler):
        def __init__(self, stores: dict[str, Store], run: HandlerRun) -> None:
            super().__init__(stores, HandlerRun("unused"))
            self.store = stores.setdefault(run.store, Store())

    with pytest.warns(HandlerCheckWarning, match="passes no crash point") as warned:
        report = check(NoCrashPoints, db)
    assert report.crash_points == [] and report.notes
    assert warned[0].filename == __file__  # the line that called check_handler, not asyncio's
