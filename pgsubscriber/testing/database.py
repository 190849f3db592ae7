"""A throwaway events database for tests: one server per session, a migrated template, a copy per test.

:func:`start_server` gives the server: the one ``PGSUBSCRIBER_TEST_DSN`` names (a superuser
connection string), else a :class:`TemporaryPostgres` cluster made with the system's
``initdb``/``pg_ctl``. :func:`create_template` migrates a template database once;
:func:`create_database` copies it (``CREATE DATABASE ... TEMPLATE``, a few milliseconds) so each
test starts from an empty, migrated events table and sees no other test's rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgsubscriber.handler import ApplicationEventHandler
from pgsubscriber.migrate import migrate
from pgsubscriber.publish import NewEvent, publish, publish_many
from pgsubscriber.settings import SubscriberSettings
from pgsubscriber.testing.postgres import TemporaryPostgres

#: A superuser connection string to an external server; unset, the kit starts its own cluster.
DSN_VARIABLE = "PGSUBSCRIBER_TEST_DSN"

#: The password the kit gives the three roles (events_producer, events_consumer, events_purger).
ROLE_PASSWORD = "test"

_copies = itertools.count()


@dataclass
class EventsServer:
    """A PostgreSQL server the tests may create databases on. ``cluster`` is None when external."""

    admin_dsn: str
    host: str
    port: int
    cluster: TemporaryPostgres | None

    def dsn_for(self, dbname: str, user: str = "postgres") -> str:
        """A connection string to ``dbname`` as ``user`` (the roles' password is :data:`ROLE_PASSWORD`)."""
        if user == "postgres":
            return psycopg.conninfo.make_conninfo(self.admin_dsn, dbname=dbname)
        return psycopg.conninfo.make_conninfo(
            self.admin_dsn, dbname=dbname, user=user, password=ROLE_PASSWORD
        )

    def execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement)

    def close(self) -> None:
        """Stop and delete the kit's own cluster; an external server is left alone."""
        if self.cluster is not None:
            self.cluster.cleanup()


def start_server() -> EventsServer:
    """The external server of ``PGSUBSCRIBER_TEST_DSN``, else a new throwaway cluster (started)."""
    external = os.environ.get(DSN_VARIABLE)
    if external:
        info = psycopg.conninfo.conninfo_to_dict(external)
        host, port = info.get("host") or "localhost", info.get("port") or 5432
        return EventsServer(external, str(host), int(port), None)
    cluster = TemporaryPostgres(fsync_off=True)
    try:
        cluster.start()
    except BaseException:
        cluster.cleanup()
        raise
    return EventsServer(cluster.dsn, "127.0.0.1", cluster.port, cluster)


def create_template(server: EventsServer, name: str | None = None) -> str:
    """Create and migrate the template database every test database is copied from; return its name.

    The name carries the process id, so two sessions on one external server do not collide.
    """
    name = name or f"pgsubscriber_template_{os.getpid()}"
    server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(
        server.dsn_for(name),
        role_passwords=dict.fromkeys(("events_producer", "events_consumer", "events_purger"), ROLE_PASSWORD),
    )
    return name


def drop_database(server: EventsServer, name: str) -> None:
    """Drop ``name`` (restarting the kit's own cluster first if a test stopped it)."""
    if server.cluster is not None and not server.cluster.is_running():
        server.cluster.start()
    server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_database(server: EventsServer, template: str) -> EventsDatabase:
    """A fresh copy of ``template``: migrated, no events."""
    name = f"test_{os.getpid()}_{next(_copies)}"
    server.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
    )
    return EventsDatabase(server, name)


@dataclass
class EventsDatabase:
    """One test's events database: connect, publish, deliver to a handler."""

    server: EventsServer
    name: str

    @property
    def dsn(self) -> str:
        """Superuser connection string."""
        return self.server.dsn_for(self.name)

    def role_dsn(self, role: str) -> str:
        """Connection string as ``events_producer``, ``events_consumer`` or ``events_purger``."""
        return self.server.dsn_for(self.name, role)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A superuser connection (the caller closes it; ``with db.connect() as conn``)."""
        return psycopg.connect(self.dsn, **kwargs)

    def scalar(self, query: str, params: tuple[object, ...] = ()) -> object:
        """The first column of the first row of ``query`` (superuser, autocommit), or None."""
        with self.connect(autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None

    def settings(self, **overrides: Any) -> SubscriberSettings:
        """Subscriber settings for this database as ``events_consumer``, tuned to fail fast in tests
        (topic ``courses`` unless ``topics`` is given)."""
        values: dict[str, Any] = {
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

    def publish(self, topic: str, payload: Mapping[str, Any], key: str | None = None) -> int:
        """Publish one event as ``events_producer``, committed; return its id."""
        with psycopg.connect(self.role_dsn("events_producer"), autocommit=True) as conn:
            return publish(conn, topic, payload, key=key)

    def publish_many(self, events: Iterable[NewEvent | tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Publish events in one committed transaction as ``events_producer``; return their ids."""
        batch = [event if isinstance(event, NewEvent) else NewEvent(*event) for event in events]
        if not batch:
            return []
        with psycopg.connect(self.role_dsn("events_producer"), autocommit=True) as conn:
            return publish_many(conn, batch)

    def deliver(
        self,
        handler: ApplicationEventHandler,
        topics: Sequence[str] | None = None,
        *,
        timeout: float = 30.0,
        **settings: Any,
    ) -> int:
        """Run the real :class:`~pgsubscriber.Subscriber` until ``handler`` has every event published
        so far on ``topics`` (default: every topic in the database); return the handler's position.

        Raises :class:`~pgsubscriber.testing.DeliveryTimeout` (an ``AssertionError``) after
        ``timeout`` seconds. ``settings`` override :meth:`settings` (e.g. ``batch_size=1``).
        """
        from pgsubscriber.testing.delivery import deliver

        return deliver(handler, self, topics, timeout=timeout, **settings)

    def topics(self) -> list[str]:
        """Every topic that has an event, in name order."""
        with self.connect(autocommit=True) as conn:
            return [row[0] for row in conn.execute("SELECT DISTINCT topic FROM public.events ORDER BY 1")]
