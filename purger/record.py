"""What the purger did, where operators look: the ``events_purger_passes`` row of this host
(``pgsubscriber status``, the dashboard) and, as a service, Prometheus metrics."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from functools import cache
from importlib import resources

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from purger.purge import PurgeReport, connect

logger = logging.getLogger(__name__)


@cache
def _query(name: str) -> bytes:
    return resources.files("purger").joinpath("sql", f"{name}.sql").read_bytes()


class PassRecorder:
    """Writes each pass's outcome to ``events_purger_passes``; a failure to write is logged once
    per streak and never fails the pass."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._failing = False
        self.total_deleted = 0

    def record(
        self, report: PurgeReport | None, error: BaseException | None, next_pass_at: datetime | None
    ) -> None:
        if report is not None:
            self.total_deleted += report.deleted
        params = {
            "host": self._host,
            "pid": self._pid,
            "failed": report is None,
            "seconds": report.seconds if report is not None else None,
            "deleted": report.deleted if report is not None else 0,
            "total_deleted": self.total_deleted,
            "next_pass_at": next_pass_at,
            "error": str(error).splitlines()[0][:2000] if error is not None and str(error) else None,
        }
        try:
            with connect(self._dsn, connect_timeout=5) as conn:
                conn.execute(_query("record_pass"), params)
        except Exception as exc:  # never fails the pass: the database may be what failed
            if not self._failing:
                self._failing = True
                logger.warning("could not record the pass in events_purger_passes: %s", str(exc).strip())
            return
        self._failing = False


class PurgerMetrics:
    """Prometheus metrics of a purger service, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.passes = Counter("purger_passes", "Purge passes completed.", registry=self.registry)
        self.failures = Counter("purger_pass_failures", "Purge passes that failed.", registry=self.registry)
        self.deleted = Counter("purger_events_deleted", "Events deleted.", registry=self.registry)
        self.last_pass = Gauge(
            "purger_last_pass_timestamp_seconds",
            "When the last pass ended (Unix time).",
            registry=self.registry,
        )
        self.last_duration = Gauge(
            "purger_last_pass_duration_seconds", "How long the last pass took.", registry=self.registry
        )
        self.last_deleted = Gauge(
            "purger_last_pass_deleted", "Events deleted by the last pass.", registry=self.registry
        )
        self.next_pass = Gauge(
            "purger_next_pass_timestamp_seconds",
            "When the next pass starts (Unix time).",
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        start_http_server(port, addr=host, registry=self.registry)
        logger.info("purger metrics on http://%s:%d/metrics", host, port)

    def observe(self, report: PurgeReport | None, ended_at: datetime, next_pass_at: datetime | None) -> None:
        if report is None:
            self.failures.inc()
        else:
            self.passes.inc()
            self.deleted.inc(report.deleted)
            self.last_pass.set(ended_at.timestamp())
            self.last_duration.set(report.seconds)
            self.last_deleted.set(report.deleted)
        if next_pass_at is not None:
            self.next_pass.set(next_pass_at.timestamp())
