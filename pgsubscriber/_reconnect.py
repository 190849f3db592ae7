"""The one reconnect policy: how long to wait after a failure, when to give up, and what to log.

Exponential backoff with jitter (tenacity's wait strategies). A connection that fails soon after it
opened (an administrator terminating backends in a loop, a statement timeout on the role, a server
that accepts and then drops) counts as a failure like a refused connect, so the backoff keeps
growing; only a connection that served for ``reconnect_max_delay`` resets it. Errors that retrying
cannot fix are told apart from network faults, and the log is bounded: the first failure of a
streak at WARNING, then one summary line at most every ``_LOG_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import time

import psycopg
from tenacity import RetryCallState, wait_exponential, wait_random
from tenacity.wait import wait_base

from pgsubscriber.errors import ConfigurationError, ConnectionLostError
from pgsubscriber.settings import SubscriberSettings

logger = logging.getLogger(__name__)

_LOG_EVERY = 30.0

#: Words of libpq/server messages at connect that no retry can fix (psycopg gives no SQLSTATE
#: for a failed connection attempt).
_PERMANENT_AT_CONNECT = (
    "password authentication failed",
    "authentication failed",
    "does not exist",  # database or role
    "no pg_hba.conf entry",
    "is not permitted to log in",
    "permission denied for database",
    "invalid connection option",
    "invalid integer value",
)


def backoff(initial: float, maximum: float) -> wait_base:
    """Exponential backoff from ``initial`` to ``maximum``, plus up to ``initial`` of jitter."""
    return wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial)


def describe(exc: BaseException) -> str:
    """What kind of failure ``exc`` is, in words an operator can act on."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "the server cancelled the query (statement timeout or pg_cancel_backend), not a network fault"
    if isinstance(exc, psycopg.errors.AdminShutdown):
        return "the server terminated the connection (shutdown or pg_terminate_backend)"
    if isinstance(exc, ConnectionLostError):
        return "the connection went silent"
    if is_permanent(exc):
        return "retrying cannot fix this: check the DSN's user, password and database"
    return "network fault or server unavailable"


def is_permanent(exc: BaseException) -> bool:
    """True for connect errors that no retry fixes (authentication, missing database or role)."""
    if not isinstance(exc, psycopg.OperationalError) or getattr(exc, "sqlstate", None):
        return False
    message = str(exc)
    return "connection failed" in message and any(words in message for words in _PERMANENT_AT_CONNECT)


class ReconnectPolicy:
    """Tracks one streak of failures. Call :meth:`connected` after each successful connect and
    :meth:`failed` after each failure; ``failed`` returns the delay before the next attempt."""

    def __init__(self, settings: SubscriberSettings) -> None:
        self._settings = settings
        self._wait = backoff(settings.reconnect_initial_delay, settings.reconnect_max_delay)
        self.failures = 0
        self._connected_at: float | None = None
        self._last_log = float("-inf")
        self._unlogged = 0

    def connected(self) -> None:
        self._connected_at = time.monotonic()

    def failed(self, exc: BaseException) -> float:
        """Count a failure (a refused connect or a lost connection); return how long to wait.

        Raises :class:`ConfigurationError` when ``reconnect_max_attempts`` failures came in a
        row, or at once for a permanent connect error when ``fail_fast`` is set.
        """
        s = self._settings
        now = time.monotonic()
        if self._connected_at is not None and now - self._connected_at >= s.reconnect_max_delay:
            self.failures = 0  # that connection was healthy: a new streak starts
        self._connected_at = None
        self.failures += 1
        permanent = is_permanent(exc)
        if permanent and s.fail_fast:
            logger.error("cannot connect, giving up (fail_fast): %s", exc)
            raise ConfigurationError(f"cannot connect: {exc} ({describe(exc)})") from exc
        if s.reconnect_max_attempts is not None and self.failures >= s.reconnect_max_attempts:
            logger.error("giving up after %d failed attempts in a row: %s", self.failures, exc)
            raise ConfigurationError(
                f"gave up after {self.failures} failed connection attempts in a row "
                f"(reconnect_max_attempts): {exc}"
            ) from exc
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = self.failures
        delay = float(self._wait(state))
        self._log(exc, delay, permanent, now)
        return delay

    def _log(self, exc: BaseException, delay: float, permanent: bool, now: float) -> None:
        level = logging.ERROR if permanent else logging.WARNING
        if self.failures == 1 or now - self._last_log >= _LOG_EVERY:
            more = f" ({self._unlogged} more failures since the last line)" if self._unlogged else ""
            logger.log(
                level,
                "connection failed (attempt %d), retrying in %.1fs: %s; %s%s",
                self.failures,
                delay,
                str(exc).strip(),
                describe(exc),
                more,
                extra={"attempt": self.failures, "retry_in": delay},
            )
            self._last_log, self._unlogged = now, 0
        else:
            self._unlogged += 1
            logger.debug("connection failed (attempt %d), retrying in %.1fs: %s", self.failures, delay, exc)
