"""The suite's own PostgreSQL server, a migrated template database, and a fresh copy per test.

By default the suite starts a throwaway cluster (initdb + pg_ctl, as the ``postgres`` OS user
when run as root). Set ``PGSUBSCRIBER_TEST_DSN`` to a superuser connection string to run against
an external server instead; the tests that stop the server are then skipped.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from pgsubscriber import SubscriberSettings
from pgsubscriber.migrate import migrate
from pgsubscriber.testing import TemporaryPostgres

# Fixture modules of the applications' tests (one line each).
pytest_plugins: list[str] = [
    "tests.support.purger_fixtures",
    "tests.support.mongo_fixtures",
    "tests.support.pgbouncer_fixtures",
]

TEMPLATE = "events_template"
_counter = itertools.count()


@dataclass
class PgServer:
    admin_dsn: str
    host: str
    port: int
    cluster: TemporaryPostgres | None

    def dsn_for(self, dbname: str, user: str = "postgres") -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.admin_dsn)
        info.update(dbname=dbname, user=user)
        if user != "postgres":
            info["password"] = "test"
        return psycopg.conninfo.make_conninfo(**info)


@dataclass
class Database:
    server: PgServer
    name: str

    @property
    def dsn(self) -> str:
        """Superuser DSN."""
        return self.server.dsn_for(self.name)

    def role_dsn(self, role: str) -> str:
        return self.server.dsn_for(self.name, role)

    def connect(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.dsn, **kwargs)

    def settings(self, **overrides: object) -> SubscriberSettings:
        values: dict[str, object] = {
            "dsn": self.role_dsn("events_consumer"),
            "topics": ["courses"],
            "heartbeat_interval": 2.0,
            "heartbeat_timeout": 2.0,
            "reconnect_max_delay": 1.0,
            "handler_retry_initial_delay": 0.05,
            "handler_retry_max_delay": 0.2,
        }
        values.update(overrides)
        return SubscriberSettings(**values)

    def scalar(self, query: str, params: tuple[object, ...] = ()) -> object:
        with self.connect(autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("PGSUBSCRIBER_TEST_DSN")
    if external:
        info = psycopg.conninfo.conninfo_to_dict(external)
        yield PgServer(external, str(info.get("host", "localhost")), int(info.get("port", 5432)), None)
        return
    cluster = TemporaryPostgres(fsync_off=True)
    cluster.start()
    try:
        yield PgServer(cluster.dsn, "127.0.0.1", cluster.port, cluster)
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    """Migrate once; every test database is a copy of this one."""
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    migrate(
        pg_server.dsn_for(TEMPLATE),
        role_passwords={"events_producer": "test", "events_consumer": "test", "events_purger": "test"},
    )
    return TEMPLATE


@pytest.fixture
def db(pg_server: PgServer, template_db: str) -> Iterator[Database]:
    name = f"test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield Database(pg_server, name)
    if pg_server.cluster is not None and not pg_server.cluster.is_running():
        pg_server.cluster.start()
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def cluster(pg_server: PgServer) -> TemporaryPostgres:
    """The suite's own cluster, for tests that stop and start it."""
    if pg_server.cluster is None:
        pytest.skip("stopping the server needs the suite's own cluster (PGSUBSCRIBER_TEST_DSN is set)")
    return pg_server.cluster
