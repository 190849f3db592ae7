"""The purger service: one pass (``--once``) or a pass every ``interval`` until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from types import FrameType

import psycopg
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)

from pgsubscriber.errors import ConfigurationError, PgSubscriberError
from purger.policy import format_duration
from purger.purge import PurgeReport, purge_once
from purger.record import PassRecorder, PurgerMetrics
from purger.settings import PurgerSettings

logger = logging.getLogger(__name__)

#: A failed pass (the database unreachable, a lock timeout) is retried after this first delay,
#: doubling up to the interval; after a success the regular interval resumes.
RETRY_INITIAL_DELAY = 1.0

#: Errors that end a pass but not the service: the server unreachable or restarting, a lock timeout.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


class Purger:
    """Runs purge passes with fixed settings; :meth:`stop` (from any thread) ends :meth:`run`."""

    def __init__(self, settings: PurgerSettings, *, once: bool = False) -> None:
        self.settings = settings
        self.policy = settings.policy()
        self.once = once
        self._stop = threading.Event()
        self.recorder = PassRecorder(settings.dsn)
        self.metrics: PurgerMetrics | None = None
        if settings.metrics_port is not None and not once:
            self.metrics = PurgerMetrics()
            self.metrics.serve(settings.metrics_port)

    def stop(self) -> None:
        self._stop.set()

    def _sleep_unless_stopped(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def run_once(self) -> None:
        """One pass. Raises on failure. Its outcome is recorded (and counted) either way."""
        try:
            report = purge_once(self.settings.dsn, self.policy, stop=self._stop)
        except Exception as exc:
            self._after_pass(None, exc)
            raise
        self._after_pass(report, None)

    def _after_pass(self, report: PurgeReport | None, error: BaseException | None) -> None:
        ended = datetime.now(UTC)
        next_pass = None if self.once else ended + self.settings.interval
        if report is not None and report.skipped:
            return  # another purger ran the pass: its record says what it did
        self.recorder.record(report, error, next_pass)
        if self.metrics is not None:
            self.metrics.observe(report, ended, next_pass)

    def run(self) -> None:
        """A pass now, then one every ``interval``, until :meth:`stop`. A failed pass is retried
        with backoff; a configuration error (missing role membership or schema) ends the loop."""
        interval = self.settings.interval.total_seconds()
        retrying = Retrying(
            retry=retry_if_exception_type(OUTAGE_ERRORS),
            wait=wait_exponential(multiplier=RETRY_INITIAL_DELAY, max=max(interval, RETRY_INITIAL_DELAY)),
            stop=stop_never,
            sleep=self._sleep_unless_stopped,
            before_sleep=_log_failed_pass,
            reraise=True,
        )
        while not self._stop.is_set():
            for attempt in retrying:
                with attempt:
                    if not self._stop.is_set():
                        self.run_once()
            self._stop.wait(interval)
        logger.info("purger stopped")


def _log_failed_pass(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.error(
        "purge pass failed (attempt %d), retrying in %.1fs: %s",
        state.attempt_number,
        delay,
        exc,
        extra={"attempt": state.attempt_number, "retry_in_seconds": delay},
    )


def run(settings: PurgerSettings, *, once: bool = False) -> int:
    """Run the service in this (main) thread; return the process exit status."""
    purger = Purger(settings, once=once)
    logger.info(
        "purger starting: retention %s, %s, batches of %d",
        purger.policy.describe(),
        "one pass" if once else f"a pass every {format_duration(settings.interval)}",
        settings.batch_size,
        extra={"once": once, "batch_size": settings.batch_size},
    )

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping after the current batch", signal.Signals(signum).name)
        purger.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    try:
        if once:
            purger.run_once()
        else:
            purger.run()
    except ConfigurationError as exc:
        logger.error("cannot purge: %s", exc)
        return 2
    except (PgSubscriberError, psycopg.Error, OSError) as exc:
        logger.error("purge pass failed: %s", exc)
        return 1
    return 0
