"""Real servers, real faults and a handler check for tests, benchmarks and demos (not needed at run time).

For an application's tests (``pip install "pgsubscriber[testing]"``): the pytest fixtures of
:mod:`pgsubscriber.testing.plugin` (``pgsubscriber_db``: a fresh events database per test, with
``publish`` and ``deliver``), and :func:`check_handler`, which proves a handler idempotent and
crash-safe against the real subscriber.
"""

from pgsubscriber.testing.check import (
    Failure,
    HandlerCheckError,
    HandlerCheckReport,
    HandlerCheckWarning,
    HandlerRun,
    InjectedCrash,
    check_handler,
)
from pgsubscriber.testing.database import (
    EventsDatabase,
    EventsServer,
    create_database,
    create_template,
    drop_database,
    start_server,
)
from pgsubscriber.testing.delivery import DeliveryTimeout, deliver, deliver_async
from pgsubscriber.testing.pgbouncer import TemporaryPgBouncer, find_pgbouncer
from pgsubscriber.testing.postgres import TemporaryPostgres, free_port
from pgsubscriber.testing.processes import terminate
from pgsubscriber.testing.proxy import FaultyProxy

__all__ = [
    "DeliveryTimeout",
    "EventsDatabase",
    "EventsServer",
    "Failure",
    "FaultyProxy",
    "HandlerCheckError",
    "HandlerCheckReport",
    "HandlerCheckWarning",
    "HandlerRun",
    "InjectedCrash",
    "TemporaryPgBouncer",
    "TemporaryPostgres",
    "check_handler",
    "create_database",
    "create_template",
    "deliver",
    "deliver_async",
    "drop_database",
    "find_pgbouncer",
    "free_port",
    "start_server",
    "terminate",
]
