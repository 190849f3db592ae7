"""The reconnect policy: backoff, streaks, permanent errors, bounded logging; on its own and as
``Subscriber.run()`` applies it (against a scripted fake session, no server)."""

from __future__ import annotations

import asyncio
import logging
import time
import types

import psycopg
import pytest

from pgsubscriber import ConfigurationError, ConnectionLostError
from pgsubscriber import _reconnect as reconnect
from pgsubscriber._reconnect import ReconnectPolicy, describe, is_permanent
from tests.unit.fake_session import (
    FakeDatabase,
    TracingHandler,
    fast_settings,
    in_loop,
    running,
    subscriber_on,
    until,
)

REFUSED = psycopg.OperationalError(
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused'
)
BAD_PASSWORD = psycopg.OperationalError(
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
    'FATAL:  password authentication failed for user "x"'
)
DROPPED = psycopg.OperationalError("server closed the connection unexpectedly")


class FakeClock:
    """Stands in for the ``time`` module of pgsubscriber._reconnect."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(reconnect, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def reconnect_warnings(caplog):
    return [r for r in caplog.records if r.name == reconnect.__name__ and r.levelno >= logging.WARNING]


# -- the policy on its own ------------------------------------------------------------------------


def test_delays_double_from_the_initial_delay_up_to_the_maximum_plus_a_little_jitter(clock):
    policy = ReconnectPolicy(fast_settings(reconnect_initial_delay=1.0, reconnect_max_delay=8.0))

    delays = [policy.failed(REFUSED) for _ in range(6)]

    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert base <= delay <= base + 1.0  # jitter: up to the initial delay
    assert delays[0] < delays[1] < delays[2] < delays[3]
    assert policy.failures == 6


def test_a_connection_that_fails_soon_after_opening_keeps_the_streak_growing(clock):
    policy = ReconnectPolicy(fast_settings(reconnect_initial_delay=1.0, reconnect_max_delay=8.0))

    delays = []
    for _ in range(4):
        policy.connected()
        clock.now += 7.9  # served, but less than reconnect_max_delay
        delays.append(policy.failed(DROPPED))

    assert policy.failures == 4
    assert delays[3] >= 8  # backed off to the maximum


def test_a_connection_that_served_for_reconnect_max_delay_starts_a_new_streak(clock):
    policy = ReconnectPolicy(fast_settings(reconnect_initial_delay=1.0, reconnect_max_delay=8.0))
    for _ in range(3):
        policy.failed(REFUSED)

    policy.connected()
    clock.now += 8.0
    delay = policy.failed(DROPPED)

    assert policy.failures == 1
    assert 1 <= delay <= 2


def test_reconnect_max_attempts_failures_in_a_row_give_up_with_configuration_error(clock):
    policy = ReconnectPolicy(fast_settings(reconnect_max_attempts=3))
    policy.failed(REFUSED)
    policy.connected()
    policy.failed(DROPPED)  # a short session counts

    with pytest.raises(ConfigurationError, match="gave up after 3 failed connection attempts"):
        policy.failed(REFUSED)


def test_a_permanent_error_is_logged_at_error_and_retried_unless_fail_fast(clock, caplog):
    caplog.set_level(logging.DEBUG, logger=reconnect.__name__)
    policy = ReconnectPolicy(fast_settings())

    assert policy.failed(BAD_PASSWORD) > 0

    [line] = reconnect_warnings(caplog)
    assert line.levelno == logging.ERROR
    assert "password authentication failed" in line.getMessage()
    assert "check the DSN's user, password and database" in line.getMessage()


def test_a_permanent_error_with_fail_fast_gives_up_at_once(clock, caplog):
    caplog.set_level(logging.DEBUG, logger=reconnect.__name__)
    policy = ReconnectPolicy(fast_settings(fail_fast=True))

    with pytest.raises(ConfigurationError, match="password authentication failed"):
        policy.failed(BAD_PASSWORD)

    assert [r.levelno for r in reconnect_warnings(caplog)] == [logging.ERROR]


def test_a_network_fault_with_fail_fast_is_retried(clock):
    policy = ReconnectPolicy(fast_settings(fail_fast=True))
    assert policy.failed(REFUSED) > 0
    assert policy.failed(ConnectionLostError("the fetch got no answer")) > 0


def test_a_long_streak_logs_one_warning_then_one_summary_per_30_seconds(clock, caplog):
    caplog.set_level(logging.DEBUG, logger=reconnect.__name__)
    policy = ReconnectPolicy(fast_settings(reconnect_initial_delay=0.5, reconnect_max_delay=2.0))

    for _ in range(100):  # 100 failures within 29.7 s
        policy.failed(REFUSED)
        clock.now += 0.297
    assert len(reconnect_warnings(caplog)) == 1

    clock.now += 0.5  # 30 s since the first line
    policy.failed(REFUSED)
    first, summary = reconnect_warnings(caplog)
    assert first.levelno == summary.levelno == logging.WARNING
    assert "(attempt 1)" in first.getMessage()
    assert "(attempt 101)" in summary.getMessage()
    assert "(99 more failures since the last line)" in summary.getMessage()


@pytest.mark.parametrize(
    "message",
    [
        'FATAL:  password authentication failed for user "x"',
        'FATAL:  database "events" does not exist',
        'FATAL:  role "nobody" does not exist',
        'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "x", database "events"',
        'FATAL:  role "x" is not permitted to log in',
    ],
)
def test_connect_errors_that_no_retry_fixes_are_permanent(message):
    exc = psycopg.OperationalError(f'connection failed: connection to server at "db" failed: {message}')
    assert is_permanent(exc)
    assert "retrying cannot fix this" in describe(exc)


@pytest.mark.parametrize(
    "exc",
    [
        REFUSED,
        DROPPED,
        psycopg.OperationalError("connection failed: timeout expired"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        ConnectionLostError("the heartbeat got no answer within 5s"),
        OSError("Network is unreachable"),
        # A name that does not resolve yet (a compose database still starting) may resolve later.
        psycopg.OperationalError(
            'connection failed: could not translate host name "db" to address: Temporary failure'
        ),
        # The words alone are not enough: only a failed connection attempt is permanent.
        psycopg.OperationalError('relation "x" does not exist'),
    ],
)
def test_network_faults_and_server_side_errors_are_not_permanent(exc):
    assert not is_permanent(exc)


def test_describe_tells_an_operator_what_kind_of_failure_it_was():
    assert "cancelled the query" in describe(psycopg.errors.QueryCanceled("x"))
    assert "terminated the connection" in describe(psycopg.errors.AdminShutdown("x"))
    assert "went silent" in describe(ConnectionLostError("x"))
    assert "network fault" in describe(REFUSED)


# -- as run() applies it ----------------------------------------------------------------------------


@in_loop
async def test_run_retries_a_refused_connect_and_then_delivers():
    db = FakeDatabase()
    db.commit("courses", 2)
    db.fail_next_open(REFUSED, times=4)
    handler = TracingHandler(db)
    sub = subscriber_on(db, handler)

    async with running(sub):
        await until(lambda: db.count("open") == 4, db=db)
        assert sub.status.last_error.startswith("cannot connect: connection failed")
        assert not sub.status.connected
        await until(lambda: ("handled", 1, 2) in db.calls and db.waiting(), db=db)
        assert sub.status.connected and sub.status.last_error is None

    assert db.count("open") == 5 and handler.delivered == [1, 2]


@in_loop
async def test_three_short_sessions_in_a_row_end_run_with_max_attempts_3():
    db = FakeDatabase()
    db.fail_next_fetch(DROPPED, times=3)  # each session fails at its first fetch
    sub = subscriber_on(db, TracingHandler(db), fast_settings(reconnect_max_attempts=3))

    with pytest.raises(ConfigurationError, match="gave up after 3 failed connection attempts"):
        await sub.run()

    assert db.trace("open", "fetch", "close") == [("open",), ("fetch", 0, 100), ("close",)] * 3
    assert sub.status.reconnects == 3 and not sub.status.running


@in_loop
async def test_a_session_that_served_for_reconnect_max_delay_resets_the_streak():
    db = FakeDatabase()
    db.fail_next_fetch(DROPPED, times=2)
    sub = subscriber_on(
        db, TracingHandler(db), fast_settings(reconnect_max_attempts=3, reconnect_max_delay=0.05)
    )
    run = asyncio.create_task(sub.run())

    await until(lambda: len(db.sessions) == 3 and db.waiting(), db=db)  # two short ones failed
    await asyncio.sleep(0.06)  # the third one serves for longer than reconnect_max_delay...
    db.fail_next_fetch(DROPPED, times=2)
    db.drop_connection(DROPPED)  # ...then is lost: a new streak of 1

    with pytest.raises(ConfigurationError, match="gave up after 3"):  # two more short ones end it
        await run
    assert db.count("open") == 5


@in_loop
async def test_a_permanent_connect_error_with_fail_fast_ends_run_at_once(caplog):
    caplog.set_level(logging.WARNING)
    db = FakeDatabase()
    db.fail_next_open(BAD_PASSWORD, times=100)
    sub = subscriber_on(db, TracingHandler(db), fast_settings(fail_fast=True))

    with pytest.raises(ConfigurationError, match="password authentication failed"):
        await sub.run()

    assert db.count("open") == 1
    [line] = reconnect_warnings(caplog)
    assert line.levelno == logging.ERROR and 'for user "x"' in line.getMessage()


@in_loop
async def test_a_permanent_connect_error_without_fail_fast_is_retried(caplog):
    caplog.set_level(logging.WARNING)
    db = FakeDatabase()
    db.fail_next_open(BAD_PASSWORD, times=3)
    sub = subscriber_on(db, TracingHandler(db))

    async with running(sub):
        await until(lambda: len(db.sessions) == 1 and db.waiting(), db=db)

    assert db.count("open") == 4
    assert [r.levelno for r in reconnect_warnings(caplog)] == [logging.ERROR]


@in_loop
async def test_many_failures_in_a_row_log_a_single_warning(caplog):
    caplog.set_level(logging.DEBUG)
    db = FakeDatabase()
    db.fail_next_open(REFUSED, times=10_000)
    sub = subscriber_on(db, TracingHandler(db), fast_settings(reconnect_max_delay=0.002))

    started = time.monotonic()
    async with running(sub):
        await until(lambda: db.count("open") >= 100, db=db)
    elapsed = time.monotonic() - started

    # The first failure, then one line per 30 s of the streak (a loaded machine may take that long).
    lines = reconnect_warnings(caplog)
    assert 1 <= len(lines) <= 1 + int(elapsed // 30), [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and "(attempt 1)" in lines[0].getMessage()


@in_loop
async def test_a_lost_connection_is_closed_and_reported_before_the_backoff_and_delivery_resumes():
    db = FakeDatabase()
    db.commit("courses", 2)
    handler = TracingHandler(db)
    sub = subscriber_on(db, handler, fast_settings(reconnect_initial_delay=0.3, reconnect_max_delay=1.0))

    async with running(sub):
        await until(lambda: ("handled", 1, 2) in db.calls and db.waiting(), db=db)
        db.drop_connection(DROPPED)
        db.commit("courses", 3)  # committed while the subscriber is away

        await until(lambda: ("close",) in db.calls, timeout=0.1, db=db)
        assert not sub.status.connected and sub.status.mode == "disconnected"
        assert sub.status.reconnects == 1 and "connection lost" in sub.status.last_error
        assert db.count("open") == 1  # still waiting out the backoff

        await until(lambda: ("handled", 3, 5) in db.calls and db.waiting(), db=db)
        assert sub.status.connected and sub.status.mode == "listening"

    assert handler.delivered == [1, 2, 3, 4, 5]
    # The new session starts polling again: fetch, take the lock, look once more.
    second = db.calls[db.calls.index(("open",), 1) :]
    assert second[:7] == [
        ("open",),
        ("fetch", 2, 100),
        ("handle", 3, 5),
        ("handled", 3, 5),
        ("set_idle", True),
        ("fetch", 5, 100),
        ("wait",),
    ]
