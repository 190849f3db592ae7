"""The suite's PostgreSQL server, a migrated template database, and a fresh copy per test.

They come from the test kit's pytest plugin (``pgsubscriber.testing.plugin``, active because the
package is installed): one throwaway cluster per session (initdb + pg_ctl, as the ``postgres`` OS
user when run as root), or the external server ``PGSUBSCRIBER_TEST_DSN`` names, in which case the
tests that stop the server are skipped. The short names below are the suite's aliases of the
plugin's fixtures, so each server starts once.
"""

from __future__ import annotations

import pytest

from pgsubscriber.testing import EventsDatabase, EventsServer, TemporaryPostgres

# Fixture modules of the applications' tests (one line each).
pytest_plugins: list[str] = [
    "tests.support.purger_fixtures",
    "tests.support.mongo_fixtures",
    "tests.support.pgbouncer_fixtures",
]


def pytest_configure(config: pytest.Config) -> None:
    # An environment installed before the kit existed (or with plugin autoload disabled) has not
    # loaded the plugin through its entry point: load it here, once.
    if not config.pluginmanager.has_plugin("pgsubscriber") and not config.pluginmanager.is_blocked(
        "pgsubscriber"
    ):
        from pgsubscriber.testing import plugin

        config.pluginmanager.register(plugin, "pgsubscriber")


@pytest.fixture(scope="session")
def pg_server(pgsubscriber_server: EventsServer) -> EventsServer:
    return pgsubscriber_server


@pytest.fixture(scope="session")
def template_db(pgsubscriber_template: str) -> str:
    """Migrated once; every test database is a copy of this one."""
    return pgsubscriber_template


@pytest.fixture
def db(pgsubscriber_db: EventsDatabase) -> EventsDatabase:
    return pgsubscriber_db


@pytest.fixture
def cluster(pg_server: EventsServer) -> TemporaryPostgres:
    """The suite's own cluster, for tests that stop and start it."""
    if pg_server.cluster is None:
        pytest.skip("stopping the server needs the suite's own cluster (PGSUBSCRIBER_TEST_DSN is set)")
    return pg_server.cluster
