"""The benchmark's throwaway cluster: default durability, one migrated template, a database per scenario."""

from __future__ import annotations

import itertools
import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from bench._sql import query
from pgsubscriber.migrate import migrate
from pgsubscriber.testing import TemporaryPostgres

logger = logging.getLogger(__name__)

TEMPLATE = "bench_template"


class BenchCluster:
    """A :class:`TemporaryPostgres` with fsync and synchronous_commit on (the server's defaults).

    Every scenario gets a fresh copy of a template database that holds the migrated schema and the
    baselines' ``raw_events`` table, so no scenario sees another one's rows.
    """

    def __init__(self) -> None:
        self.pg = TemporaryPostgres()
        self._counter = itertools.count()

    def start(self) -> BenchCluster:
        self.pg.start()
        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        migrate(self.pg.dsn_for(TEMPLATE))
        with psycopg.connect(self.pg.dsn_for(TEMPLATE), autocommit=True) as conn:
            conn.execute(query("raw_events"))
        logger.info("cluster ready on port %d (data in %s)", self.pg.port, self.pg.datadir)
        return self

    def ensure_running(self) -> None:
        if not self.pg.is_running():
            self.pg.start()

    @contextmanager
    def database(self, purpose: str) -> Iterator[str]:
        """A fresh migrated database for one scenario; yields its superuser DSN, drops it afterwards."""
        name = f"bench_{purpose.replace('-', '_')}_{next(self._counter)}"
        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE)
                )
            )
        try:
            yield self.pg.dsn_for(name)
        finally:
            self.ensure_running()
            with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def server_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            for name in (
                "server_version",
                "fsync",
                "synchronous_commit",
                "shared_buffers",
                "max_connections",
            ):
                row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                info[name] = str(row[0]) if row else None
            row = conn.execute("SELECT version()").fetchone()
            info["postgresql"] = str(row[0]) if row else None
        return info

    def cleanup(self) -> None:
        self.pg.cleanup()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    memory_kb = 0
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory_kb = int(line.split()[1])
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
    }
