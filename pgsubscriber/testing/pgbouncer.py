"""A throwaway PgBouncer (the system's ``pgbouncer`` binary) on a free port, in front of a server.

It pools like a production deployment: ``pool_mode = transaction`` by default, a small pool per
database and user (so clients really share server connections), and clients authenticate with a
password (SCRAM) against its own user list, while it logs in to the server as the same user.
PgBouncer refuses to run as root, so under root it runs as the ``postgres`` OS user through
``runuser -u postgres``, as :class:`~pgsubscriber.testing.TemporaryPostgres` does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsubscriber.errors import PgSubscriberError
from pgsubscriber.testing.postgres import free_port
from pgsubscriber.testing.processes import terminate

#: The login of PgBouncer's admin console (the virtual ``pgbouncer`` database); not a server role.
ADMIN_USER = "pgbouncer_admin"


def find_pgbouncer() -> Path | None:
    """The ``pgbouncer`` binary on PATH, else Debian's ``/usr/sbin/pgbouncer``; None if neither."""
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    debian = Path("/usr/sbin/pgbouncer")
    return debian if os.access(debian, os.X_OK) else None


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class TemporaryPgBouncer:
    """Start with :meth:`start` (or ``with``); :meth:`dsn_for` gives a client connection string.

    ``users`` maps each login to its password: clients must give it (``auth_type =
    scram-sha-256``), and PgBouncer uses it to log in to the server. ``settings`` override or add
    ``[pgbouncer]`` options. The admin console is reachable as :data:`ADMIN_USER` through
    :attr:`admin_dsn`; :meth:`show` runs one of its ``SHOW`` commands.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        pool_mode: str = "transaction",
        users: Mapping[str, str] | None = None,
        port: int | None = None,
        default_pool_size: int = 5,
        max_client_conn: int = 200,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        binary = find_pgbouncer()
        if binary is None:
            raise PgSubscriberError(
                "no pgbouncer binary found (neither on PATH nor /usr/sbin/pgbouncer): install it "
                "(Debian: apt-get install pgbouncer)"
            )
        self.binary = binary
        self.target_host = target_host
        self.target_port = target_port
        self.port = port or free_port()
        self.admin_password = os.urandom(12).hex()
        self._users = {**(users or {}), ADMIN_USER: self.admin_password}
        self._run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.basedir = Path(tempfile.mkdtemp(prefix="pgsubscriber-pgbouncer-"))
        self.ini = self.basedir / "pgbouncer.ini"
        self.auth_file = self.basedir / "userlist.txt"
        self.logfile = self.basedir / "pgbouncer.log"
        self.pidfile = self.basedir / "pgbouncer.pid"
        self._settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "scram-sha-256",
            "auth_file": str(self.auth_file),
            "admin_users": ADMIN_USER,
            "pool_mode": pool_mode,
            "max_client_conn": str(max_client_conn),
            "default_pool_size": str(default_pool_size),
            # Sent by some drivers at startup; PgBouncer refuses unknown startup parameters.
            "ignore_startup_parameters": "extra_float_digits,options",
            "pidfile": str(self.pidfile),
        }
        self._settings.update(settings or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._written = False

    @property
    def pool_mode(self) -> str:
        return self._settings["pool_mode"]

    def dsn_for(self, dbname: str, user: str, password: str) -> str:
        """Connection string of a client of the pool for ``dbname`` (a database on the server)."""
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, dbname=dbname, user=user, password=password
        )

    @property
    def admin_dsn(self) -> str:
        """The admin console (``SHOW POOLS``, ``RECONNECT``...); it speaks the simple query protocol."""
        return self.dsn_for("pgbouncer", ADMIN_USER, self.admin_password)

    def _write_config(self) -> None:
        lines = ["[databases]", f"* = host={self.target_host} port={self.target_port}", "", "[pgbouncer]"]
        lines += [f"{name} = {value}" for name, value in self._settings.items()]
        self.ini.write_text("\n".join(lines) + "\n")
        self.auth_file.write_text(
            "".join(f"{_quote(user)} {_quote(password)}\n" for user, password in self._users.items())
        )
        self.auth_file.chmod(0o600)
        if self._run_as:
            for path in (self.basedir, self.ini, self.auth_file):
                shutil.chown(path, "postgres", "postgres")
        self._written = True

    def start(self, timeout: float = 30.0) -> TemporaryPgBouncer:
        """Start in the foreground of a child process; return once it accepts connections."""
        if self.is_running():
            return self
        if not self._written:
            self._write_config()
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        with self.logfile.open("ab") as output:  # in the foreground it logs to stderr
            self._process = subprocess.Popen(
                [*self._run_as, str(self.binary), str(self.ini)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self._accepts_connections():
                return self
            time.sleep(0.02)
        self.stop()
        log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
        raise PgSubscriberError(
            f"pgbouncer did not start on port {self.port} (in front of "
            f"{self.target_host}:{self.target_port}) within {timeout:g}s:\n{log}"
        )

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _pid(self) -> int | None:
        """PgBouncer's own pid (under root the child process is ``runuser``, its parent)."""
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Immediate shutdown (SIGTERM): every client and server connection is closed at once."""
        process, self._process = self._process, None
        if process is None:
            return
        pid = self._pid()
        if process.poll() is None and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        if process.poll() is None:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            terminate(process, timeout)

    def show(self, what: str) -> list[dict[str, Any]]:
        """Rows of the admin console's ``SHOW <what>`` (e.g. ``"SERVERS"``, ``"POOLS"``)."""
        if not what.replace("_", "").isalpha():
            raise ValueError(f"not a SHOW command: {what!r}")
        with (
            psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5) as conn,
            psycopg.ClientCursor(conn, row_factory=dict_row) as cur,
        ):
            cur.execute(f"SHOW {what}")
            return cur.fetchall()

    def cleanup(self) -> None:
        """Stop (if running) and delete the configuration, user list and logs."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.basedir)

    def __enter__(self) -> TemporaryPgBouncer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
