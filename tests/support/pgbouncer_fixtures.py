"""A transaction-pooling PgBouncer in front of the suite's server, one per test session.

``pgbouncer`` is skipped when the binary is not installed (Debian: ``apt-get install pgbouncer``),
or when it cannot be started in front of an external server (``PGSUBSCRIBER_TEST_DSN``).
``pooled(role)`` is the connection string of the test's database through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest

from pgsubscriber import PgSubscriberError
from pgsubscriber.testing import TemporaryPgBouncer, find_pgbouncer

if TYPE_CHECKING:
    from tests.conftest import Database, PgServer

#: The password the suite gives its roles (conftest's ``template_db``).
ROLE_PASSWORD = "test"
ROLES = ("events_producer", "events_consumer", "events_purger")


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PgServer) -> Iterator[TemporaryPgBouncer]:
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    bouncer = TemporaryPgBouncer(pg_server.host, pg_server.port, users=dict.fromkeys(ROLES, ROLE_PASSWORD))
    try:
        bouncer.start()
    except PgSubscriberError as exc:
        bouncer.cleanup()
        if pg_server.cluster is None:
            pytest.skip(f"pgbouncer cannot be started in front of PGSUBSCRIBER_TEST_DSN's server: {exc}")
        raise
    try:
        yield bouncer
    finally:
        bouncer.cleanup()


@pytest.fixture
def pooled(pgbouncer: TemporaryPgBouncer, db: Database) -> Callable[[str], str]:
    """``pooled(role)``: the test database through the pooler, logged in as ``role``."""
    return lambda role: pgbouncer.dsn_for(db.name, role, ROLE_PASSWORD)


def pool_backends(bouncer: TemporaryPgBouncer, dbname: str, user: str) -> list[int]:
    """Server pids of the pool's connections for ``dbname`` and ``user``."""
    return [
        int(row["remote_pid"])
        for row in bouncer.show("SERVERS")
        if row["database"] == dbname and row["user"] == user
    ]


def terminate_pool_backends(bouncer: TemporaryPgBouncer, db: Database, user: str) -> int:
    """``pg_terminate_backend`` every server connection of the pool of ``db`` and ``user``."""
    pids = pool_backends(bouncer, db.name, user)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    return len(pids)
