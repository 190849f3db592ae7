"""A throwaway PostgreSQL cluster on a free port, made with the system's initdb / pg_ctl.

PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` OS user
and every server command runs through ``runuser -u postgres``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from pgsubscriber.errors import PgSubscriberError

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindir() -> Path:
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return Path(configured)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if candidates:
        return Path(candidates[-1]).parent
    raise PgSubscriberError(
        "no PostgreSQL server binaries (pg_ctl, initdb) found: install them "
        "(Debian: apt-get install postgresql) or set PG_BINDIR"
    )


class TemporaryPostgres:
    """Start with :meth:`start` (or ``with``); :meth:`stop` with ``mode="immediate"`` for a crash.

    ``fsync_off=True`` trades durability across OS crashes for speed (tests); a crash of the server
    process (``stop("immediate")``) still loses no committed transaction, because
    synchronous_commit stays on. Benchmarks keep the defaults (fsync and synchronous_commit on).
    """

    def __init__(
        self, *, fsync_off: bool = False, port: int | None = None, settings: dict[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.bindir = _bindir()
        self._run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.basedir = Path(tempfile.mkdtemp(prefix="pgsubscriber-pg-"))
        self.datadir = self.basedir / "data"
        self.logfile = self.basedir / "server.log"
        self._settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.basedir),
            "max_connections": "200",
            "shared_buffers": "128MB",
        }
        if fsync_off:
            self._settings.update(fsync="off", full_page_writes="off")
        self._settings.update(settings or {})
        self._initialized = False

    @property
    def dsn(self) -> str:
        """Superuser connection string to the ``postgres`` database."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._run_as, *args], check=check, capture_output=True, text=True)

    def init(self) -> None:
        if self._run_as:
            shutil.chown(self.basedir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        with (self.datadir / "postgresql.conf").open("a") as conf:
            for name, value in self._settings.items():
                conf.write(f"{name} = '{value}'\n")
        self._initialized = True

    def start(self, timeout: float = 60.0) -> TemporaryPostgres:
        if not self._initialized:
            self.init()
        pg_ctl = str(self.bindir / "pg_ctl")
        done = self._run(
            pg_ctl,
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            check=False,
        )
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise PgSubscriberError(f"PostgreSQL did not start on port {self.port}: {done.stderr}\n{log}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode="immediate"`` is a crash (no checkpoint, clients cut off)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def is_running(self) -> bool:
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status", check=False)
        return done.returncode == 0

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Block until the server accepts connections; return the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            )
            if done.returncode == 0:
                return time.monotonic() - started
            time.sleep(0.02)
        raise PgSubscriberError(f"PostgreSQL on port {self.port} not ready after {timeout}s")

    def cleanup(self) -> None:
        """Stop the server (if running) and delete the cluster's files."""
        if self._initialized:
            self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.rmtree(self.basedir)

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
