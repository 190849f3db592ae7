"""The parts of the handler check that need no server: the crash hook and the failure report."""

from __future__ import annotations

import pytest

from pgsubscriber.testing import Failure, HandlerCheckError, HandlerRun, InjectedCrash
from pgsubscriber.testing.check import _difference


def test_a_crash_point_does_nothing_until_the_check_arms_it():
    run = HandlerRun("clean")
    run.crash_point("after effects")
    run.crash_point("after position")
    assert run.passed == ["after effects", "after position"] and run.crashed_at is None


def test_an_armed_crash_point_kills_the_handler_there_and_it_stays_dead():
    run = HandlerRun("crash-2")
    run._arm(2)
    run.crash_point("after effects")
    with pytest.raises(InjectedCrash, match="after position"):
        run.crash_point("after position")
    assert run.crashed_at == "after position"
    with pytest.raises(InjectedCrash, match="already died"):
        run.crash_point("after effects")


def test_a_store_that_catches_exception_does_not_swallow_the_crash():
    run = HandlerRun("crash-1")
    run._arm(1)
    with pytest.raises(InjectedCrash):
        try:
            run.crash_point("after effects")
        except Exception:  # what a store's error handling catches
            pytest.fail("InjectedCrash was caught as an Exception")


def test_the_error_names_each_failed_property_in_plain_words():
    error = HandlerCheckError(
        [Failure("crash safety", "events 4..6 would never be applied"), Failure("restart", "...")]
    )
    assert isinstance(error, AssertionError)
    assert str(error) == (
        "the handler failed 2 properties:\n- crash safety: events 4..6 would never be applied\n- restart: ..."
    )


def test_a_difference_of_mappings_shows_only_the_keys_that_differ():
    assert _difference({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == (
        "'b': expected 2, got 3; 'c': expected '(absent)', got 4"
    )
    assert _difference([1], [2]) == "expected [1], got [2]"
