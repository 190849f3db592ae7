"""A throwaway MongoDB-protocol server on a free port: ``mongod`` if on PATH, else nx-27017.

For tests and demos, not for production. nx-27017 (a MongoDB wire-protocol server on SQLite, from
PyPI) covers what the web consumer uses: unique indexes, ordered and unordered bulk writes,
conditional updates, ``find`` with sort and limit. Note that it compares ``_id`` values as text,
which is why positions are sorted on ``event_id``, never on ``_id``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from pgsubscriber.testing import free_port, terminate

logger = logging.getLogger(__name__)


class EmbeddedMongoError(RuntimeError):
    """The server could not be found or did not start."""


class EmbeddedMongo:
    """Start with :meth:`start` (or ``with``); :meth:`stop`, :meth:`kill`, :meth:`start` again.

    The data directory survives stop, kill and start, so a restart keeps what was written;
    :meth:`cleanup` stops the server and removes the directory.
    """

    def __init__(self, port: int | None = None, basedir: Path | None = None) -> None:
        self.port = port or free_port()
        self._owns_basedir = basedir is None
        self.basedir = basedir or Path(tempfile.mkdtemp(prefix="webconsumer-mongo-"))
        self.datadir = self.basedir / "data"
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.basedir / "server.log"
        self.command, self.kind = self._command()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Connection string for pymongo."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def _command(self) -> tuple[list[str], str]:
        mongod = shutil.which("mongod")
        if mongod:
            return [
                mongod,
                "--bind_ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dbpath",
                str(self.datadir),
                "--nounixsocket",
            ], "mongod"
        if importlib.util.find_spec("nx_27017") is not None:
            launcher = [sys.executable, "-m", "nx_27017.nx_27017"]
        elif shutil.which("nx-27017"):
            launcher = [str(shutil.which("nx-27017"))]
        else:
            raise EmbeddedMongoError("no MongoDB-protocol server: install mongod, or pip install nx-27017")
        return [
            *launcher,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.datadir),
            # Its defaults are shared paths in /tmp: give every instance its own.
            "--log-file",
            str(self.basedir / "nx-27017.log"),
            "--pid-file",
            str(self.basedir / "nx-27017.pid"),
        ], "nx-27017"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> EmbeddedMongo:
        """Start the server and wait until it answers a ping."""
        if self.is_running():
            return self
        with self.logfile.open("ab") as log:
            # Its own session: a terminal's Ctrl-C goes to the whole foreground process group, and
            # the server must outlive its clients (whoever started it stops it, after them).
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with MongoClient(self.url, serverSelectionTimeoutMS=250, connectTimeoutMS=250) as client:
            while True:
                if not self.is_running():
                    raise EmbeddedMongoError(f"{self.kind} exited at start: {self._log_tail()}")
                try:
                    client.admin.command("ping")
                    break
                except PyMongoError:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise EmbeddedMongoError(
                            f"{self.kind} did not answer within {timeout}s: {self._log_tail()}"
                        ) from None
                    time.sleep(0.05)
        logger.info("%s listening on port %d (pid %d)", self.kind, self.port, self.process.pid)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop with SIGTERM (SIGKILL after ``timeout``)."""
        if self.process is None:
            return
        terminate(self.process, timeout)
        self.process = None

    def kill(self) -> None:
        """Stop with SIGKILL: a crash."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        """Stop the server and remove its files (when this object made the directory)."""
        self.stop()
        if self._owns_basedir:
            shutil.rmtree(self.basedir, ignore_errors=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return os.linesep.join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> EmbeddedMongo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
