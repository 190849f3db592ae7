"""What a chaos scenario needs from a running system, whatever runs it (local processes, Docker).

The scenarios and the verification are written once against :class:`Deployment`;
:class:`chaos.local.LocalDeployment` and :class:`chaos.compose.DockerDeployment` implement it.
"""

from __future__ import annotations

import signal
from typing import Literal, Protocol

StopMode = Literal["fast", "immediate"]
"""``fast``: a clean shutdown; ``immediate``: a crash (no checkpoint, every client cut off)."""


class DeploymentError(RuntimeError):
    """The system could not be started, found or controlled."""


class Deployment(Protocol):
    """The whole system (PostgreSQL, migrations, producer, web consumer, MongoDB, purger)."""

    name: str

    @property
    def events_dsn(self) -> str:
        """A connection string that may read ``events`` (for the verification)."""
        ...

    @property
    def mongo_url(self) -> str:
        """The consumer's MongoDB, reachable from here."""
        ...

    @property
    def mongo_database(self) -> str: ...

    @property
    def consumer_url(self) -> str:
        """Base URL of the web consumer's HTTP API."""
        ...

    def up(self) -> None:
        """Start everything (or check that it runs); return when the consumer answers HTTP."""

    def down(self) -> None:
        """Leave the system as found: local processes and files removed, containers running."""

    def stop_consumer(self) -> None: ...

    def start_consumer(self) -> None:
        """Start the consumer; return when it answers HTTP."""

    def kill_consumer(self, sig: signal.Signals = signal.SIGKILL) -> None: ...

    def stop_producer(self) -> None: ...

    def start_producer(self) -> None:
        """Start the producer (nothing happens when it runs already)."""

    def stop_db(self, mode: StopMode) -> None: ...

    def start_db(self) -> None:
        """Start PostgreSQL; return when it accepts connections."""

    # Consumer groups: several web consumers in one group (scenarios 6 and 7).
    def start_group(self, members: int, partitions: int) -> None:
        """Replace the web consumer by ``members`` members of one group of ``partitions``; return
        when each answers HTTP."""

    def end_group(self) -> None:
        """Stop the members; run the one web consumer again, as before :meth:`start_group`."""

    def member_health(self, index: int) -> dict[str, object] | None:
        """Member ``index``'s ``/health`` body, or None when it does not answer."""
        ...

    def kill_member(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None: ...

    def start_member(self, index: int) -> None:
        """Start member ``index`` again; return when it answers HTTP."""
