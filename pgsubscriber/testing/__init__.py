"""Real servers and real faults for tests, benchmarks and demos (not needed at run time)."""

from pgsubscriber.testing.pgbouncer import TemporaryPgBouncer, find_pgbouncer
from pgsubscriber.testing.postgres import TemporaryPostgres, free_port
from pgsubscriber.testing.processes import terminate
from pgsubscriber.testing.proxy import FaultyProxy

__all__ = [
    "FaultyProxy",
    "TemporaryPgBouncer",
    "TemporaryPostgres",
    "find_pgbouncer",
    "free_port",
    "terminate",
]
