"""The pytest plugin (entry point ``pytest11``: active wherever pgsubscriber and pytest are installed).

Fixtures, all prefixed ``pgsubscriber_`` so they do not collide with an application's own:

- ``pgsubscriber_server`` (session): the server, started on first use: the one
  ``PGSUBSCRIBER_TEST_DSN`` names (a superuser connection string), else a throwaway cluster made
  with the system's ``initdb``/``pg_ctl`` (as the ``postgres`` OS user under root), deleted at the
  end of the session.
- ``pgsubscriber_template`` (session): the name of a database migrated once, copied for each test.
  Migrating creates the roles events_producer, events_consumer and events_purger with the password
  ``test`` (roles belong to the whole server): point ``PGSUBSCRIBER_TEST_DSN`` at a test server.
- ``pgsubscriber_db``: a fresh, migrated events database for one test
  (:class:`~pgsubscriber.testing.EventsDatabase`: ``publish``, ``publish_many``, ``deliver``,
  ``settings``, ``connect``), dropped after it.

Nothing starts until a test asks for one of them, and this module imports pgsubscriber only then:
a project that installs pgsubscriber without using the fixtures pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgsubscriber.testing.database import EventsDatabase, EventsServer


@pytest.fixture(scope="session")
def pgsubscriber_server() -> Iterator[EventsServer]:
    """A PostgreSQL server for the session (``PGSUBSCRIBER_TEST_DSN``, else a throwaway cluster)."""
    from pgsubscriber.testing.database import start_server

    server = start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pgsubscriber_template(pgsubscriber_server: EventsServer) -> Iterator[str]:
    """A database migrated once; every test database is a copy of it."""
    from pgsubscriber.testing.database import create_template, drop_database

    name = create_template(pgsubscriber_server)
    yield name
    drop_database(pgsubscriber_server, name)


@pytest.fixture
def pgsubscriber_db(
    pgsubscriber_server: EventsServer, pgsubscriber_template: str
) -> Iterator[EventsDatabase]:
    """A fresh events database for this test: migrated, empty, dropped afterwards."""
    from pgsubscriber.testing.database import create_database, drop_database

    database = create_database(pgsubscriber_server, pgsubscriber_template)
    yield database
    drop_database(pgsubscriber_server, database.name)
