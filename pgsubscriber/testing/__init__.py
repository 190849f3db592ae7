"""Real servers and real faults for tests, benchmarks and demos (not needed at run time)."""

from pgsubscriber.testing.postgres import TemporaryPostgres, free_port
from pgsubscriber.testing.processes import terminate
from pgsubscriber.testing.proxy import FaultyProxy

__all__ = ["FaultyProxy", "TemporaryPostgres", "free_port", "terminate"]
