"""The whole system as local processes: no Docker, nothing to install but this package.

PostgreSQL is a throwaway cluster (the system's ``initdb``/``pg_ctl``, else the binaries of the
``pgserver`` wheel), MongoDB is ``MONGO_URL`` or an embedded MongoDB-protocol server, and the
services are the same ``python -m ...`` commands, with the same variables, as in docker-compose.yml.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from chaos.deployment import DeploymentError, StopMode
from chaos.services import (
    DATABASE,
    MONGO_DATABASE,
    PASSWORD_VARIABLES,
    SERVICE_COMMANDS,
    Tuning,
    postgres_url,
    service_environments,
)
from pgsubscriber.errors import PgSubscriberError
from pgsubscriber.testing import TemporaryPostgres, terminate
from webconsumer.embedded_mongo import EmbeddedMongo, EmbeddedMongoError, free_port

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]

#: Variables of the parent that must not leak into a service (each service gets its own).
_SERVICE_PREFIXES = ("PRODUCER_", "PGSUBSCRIBER_", "WEBCONSUMER_", "PURGER_", "EVENTS_")
_SERVICE_VARIABLES = ("MONGO_URL", "DATABASE_URL")


def packaged_postgres_bindir() -> Path | None:
    """The server binaries shipped by the ``pgserver`` wheel (the ``demo`` extra), if installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if (bindir / "pg_ctl").exists():
            return bindir
    return None


def make_postgres(*, port: int | None = None, fsync_off: bool = False) -> TemporaryPostgres:
    """A cluster on the system's binaries, else on the ``pgserver`` wheel's; a clear error otherwise."""
    configured = os.environ.get("PG_BINDIR")
    if configured and not all((Path(configured) / name).exists() for name in ("initdb", "pg_ctl")):
        raise DeploymentError(f"PG_BINDIR={configured} holds no initdb and pg_ctl")
    try:
        return TemporaryPostgres(port=port, fsync_off=fsync_off)
    except PgSubscriberError as no_system_binaries:
        bindir = packaged_postgres_bindir()
        if bindir is None:
            raise DeploymentError(
                "no PostgreSQL server binaries: install them (Debian: apt-get install postgresql), "
                "set PG_BINDIR, or pip install -e '.[demo]' for the pgserver wheel"
            ) from no_system_binaries
    logger.info("no system PostgreSQL: using the binaries of the pgserver package in %s", bindir)
    previous = os.environ.get("PG_BINDIR")
    os.environ["PG_BINDIR"] = str(bindir)
    try:
        return TemporaryPostgres(port=port, fsync_off=fsync_off)
    finally:
        if previous is None:
            del os.environ["PG_BINDIR"]
        else:
            os.environ["PG_BINDIR"] = previous


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def postgres_start_failure(exc: BaseException, postgres: TemporaryPostgres | None) -> DeploymentError:
    """Why the cluster did not start, in one line (the server log's last complaint)."""
    if isinstance(exc, subprocess.CalledProcessError):
        names = [Path(str(arg)).name for arg in ([exc.cmd] if isinstance(exc.cmd, str) else exc.cmd)]
        program = next((name for name in names if name in ("initdb", "pg_ctl")), names[0])
        reason = _last_line(exc.stderr or "") or f"exit status {exc.returncode}"
        return DeploymentError(f"PostgreSQL did not start: {program} failed: {reason}")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if postgres is not None and postgres.logfile.exists():
        log = postgres.logfile.read_text(errors="replace").splitlines()
        complaints = [line for line in log if "FATAL" in line or "ERROR" in line]
        if complaints:
            reason = complaints[-1].split("FATAL:", 1)[-1].split("ERROR:", 1)[-1].strip()
    return DeploymentError(f"PostgreSQL did not start: {reason}")


def _forward(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to our stderr, each line prefixed with the service name."""
    for raw in iter(stream.readline, b""):
        sys.stderr.write(f"[{name}] {raw.decode(errors='replace')}")
        sys.stderr.flush()
    stream.close()


class ServiceProcess:
    """One ``python -m ...`` service in its own session (a terminal's Ctrl-C reaches only us)."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path | None) -> None:
        self.name, self.argv, self.env, self.log = name, argv, dict(env), log
        self.process: subprocess.Popen[bytes] | None = None
        self._forwarder: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_status(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def ended(self, what: str) -> str:
        """``"<name> <what> (exit status N)"``, then the end of its log (when it writes one)."""
        line = f"{self.name} {what} (exit status {self.exit_status()})"
        tail = self.log_tail()
        return f"{line}:\n{tail}" if tail else f"{line}; its output is above"

    def start(self) -> None:
        if self.is_running():
            return
        if self.log is None:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            assert self.process.stdout is not None
            self._forwarder = threading.Thread(
                target=_forward,
                args=(self.name, self.process.stdout),
                name=f"{self.name}-output",
                daemon=True,
            )
            self._forwarder.start()
        else:
            with self.log.open("ab") as out:
                self.process = subprocess.Popen(
                    self.argv,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        logger.info("started %s (pid %d)", self.name, self.process.pid)

    def wait(self, timeout: float) -> int:
        """Wait for a one-shot service to end; return its exit status."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DeploymentError(f"{self.name} did not finish within {timeout:.0f}s") from None
        finally:
            self._join_forwarder()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL when it has not exited after ``timeout`` seconds."""
        if self.process is None:
            return
        if terminate(self.process, timeout):
            logger.warning("%s did not stop within %.0fs: killed it", self.name, timeout)
        logger.info("stopped %s (exit status %s)", self.name, self.process.returncode)
        self._join_forwarder()
        self.process = None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` (a crash with SIGKILL) and wait for the process to end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        logger.info("%s ended by %s", self.name, sig.name)
        self._join_forwarder()
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def _join_forwarder(self) -> None:
        if self._forwarder is not None:
            self._forwarder.join(5)
            self._forwarder = None


def wait_for_http(url: str, timeout: float, alive: ServiceProcess | None = None) -> None:
    """Block until ``url`` answers (any HTTP status); fail early when ``alive`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive.is_running():
            raise DeploymentError(alive.ended("exited at start"))
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers, e.g. 503 while the subscriber connects
        except OSError:
            if time.monotonic() > deadline:
                raise DeploymentError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)


class LocalDeployment:
    """Every service as a local process; :meth:`up` starts them, :meth:`down` removes everything.

    ``log_dir=None`` with ``forward_output=True`` copies the services' output to stderr, prefixed;
    otherwise each writes ``<service>.log`` in ``log_dir`` (a temporary directory when not given).
    """

    name = "local"

    def __init__(
        self,
        *,
        http_port: int | None = None,
        http_host: str = "127.0.0.1",
        tuning: Tuning | None = None,
        mongo_url: str | None = None,
        log_dir: Path | None = None,
        forward_output: bool = False,
        fsync_off: bool = False,
        start_timeout: float = 60.0,
    ) -> None:
        self.http_port = http_port or free_port()
        self.http_host = http_host
        self.tuning = tuning or Tuning()
        self.start_timeout = start_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="pgsubscriber-local-"))
        self.log_dir = None if forward_output and log_dir is None else (log_dir or self.workdir)
        self._external_mongo_url = mongo_url
        self._fsync_off = fsync_off
        self.postgres: TemporaryPostgres | None = None
        self._member_ports: dict[int, int] = {}  # group members (index 0 is the web consumer)
        self.mongo: EmbeddedMongo | None = None
        self.services: dict[str, ServiceProcess] = {}
        self._passwords = {role: secrets.token_urlsafe(18) for role in PASSWORD_VARIABLES}

    # Addresses -----------------------------------------------------------------------------
    @property
    def events_dsn(self) -> str:
        return self._pg_url("events_consumer", self._passwords["events_consumer"])

    @property
    def producer_dsn(self) -> str:
        return self._pg_url("events_producer", self._passwords["events_producer"])

    @property
    def admin_dsn(self) -> str:
        return self._pg_url("postgres", None)

    @property
    def mongo_url(self) -> str:
        if self._external_mongo_url:
            return self._external_mongo_url
        if self.mongo is None:
            raise DeploymentError("MongoDB is not started")
        return self.mongo.url

    @property
    def mongo_database(self) -> str:
        return MONGO_DATABASE

    @property
    def consumer_url(self) -> str:
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "") else self.http_host
        return f"http://{host}:{self.http_port}"

    def _pg_url(self, user: str, password: str | None) -> str:
        if self.postgres is None:
            raise DeploymentError("PostgreSQL is not started")
        return postgres_url(user, password, "127.0.0.1", self.postgres.port)

    def pids(self) -> dict[str, int]:
        """Process ids of everything running now (PostgreSQL's postmaster included)."""
        found = {name: s.pid for name, s in self.services.items() if s.is_running() and s.pid}
        if self.mongo is not None and self.mongo.process is not None:
            found["mongo"] = self.mongo.process.pid
        if self.postgres is not None:
            pidfile = self.postgres.datadir / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                found["postgres"] = int(pidfile.read_text().splitlines()[0])
        return found

    def stopped_services(self) -> list[str]:
        """Long-running services that have exited (the one-shot db_migrations is not one)."""
        return [name for name, s in self.services.items() if name != "db_migrations" and not s.is_running()]

    # Lifecycle -----------------------------------------------------------------------------
    def up(self) -> None:
        try:
            self._up()
        except BaseException:
            self.down()
            raise

    def _up(self) -> None:
        started = time.monotonic()
        self.postgres = make_postgres(fsync_off=self._fsync_off)
        try:
            self.postgres.start()
        except (PgSubscriberError, subprocess.CalledProcessError, OSError) as exc:
            raise postgres_start_failure(exc, self.postgres) from exc
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        logger.info("PostgreSQL ready on port %d (%.1fs)", self.postgres.port, time.monotonic() - started)
        if not self._external_mongo_url:
            try:
                self.mongo = EmbeddedMongo(basedir=self.workdir / "mongo").start()
            except EmbeddedMongoError as exc:
                raise DeploymentError(
                    f"MONGO_URL is not set and no embedded MongoDB could start: {exc}"
                ) from exc
        self.services = {name: self._service(name) for name in SERVICE_COMMANDS}
        migrations = self.services["db_migrations"]
        migrations.start()
        status = migrations.wait(self.start_timeout)
        if status != 0:
            raise DeploymentError(migrations.ended("failed"))
        self.start_consumer()
        self.start_producer()
        self.services["purger"].start()
        logger.info("everything runs (%.1fs)", time.monotonic() - started)

    def _service(self, name: str) -> ServiceProcess:
        assert self.postgres is not None
        environments = service_environments(
            pg_host="127.0.0.1",
            pg_port=self.postgres.port,
            admin_user="postgres",
            admin_password=None,
            role_passwords=self._passwords,
            mongo_url=self.mongo_url,
            http_host=self.http_host,
            http_port=self.http_port,
            tuning=self.tuning,
        )
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_SERVICE_PREFIXES) and key not in _SERVICE_VARIABLES
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(environments[name])
        argv = [sys.executable, *SERVICE_COMMANDS[name][1:]]
        log = self.log_dir / f"{name}.log" if self.log_dir is not None else None
        return ServiceProcess(name, argv, env, log)

    def down(self) -> None:
        """Stop the services (producer first), MongoDB, PostgreSQL; delete every temporary file.

        Each step runs whatever the others did: a failure is logged, never raised.
        """
        for name in ("producer", "purger", "web_consumer", "db_migrations"):
            service = self.services.get(name)
            if service is not None:
                try:
                    service.stop()
                except Exception as exc:
                    logger.warning("could not stop %s: %s", name, exc)
        if self.mongo is not None:
            try:
                self.mongo.stop()
            except Exception as exc:
                logger.warning("could not stop MongoDB: %s", exc)
            self.mongo = None
        if self.postgres is not None:
            try:
                self.postgres.stop("fast")
                self.postgres.cleanup()
            except Exception as exc:
                logger.warning("could not stop PostgreSQL: %s", exc)
                shutil.rmtree(self.postgres.basedir, ignore_errors=True)
            self.postgres = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # Faults --------------------------------------------------------------------------------
    def stop_consumer(self) -> None:
        self.services["web_consumer"].stop()

    def start_consumer(self) -> None:
        consumer = self.services["web_consumer"]
        consumer.start()
        wait_for_http(f"{self.consumer_url}/health", self.start_timeout, alive=consumer)

    def kill_consumer(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self.services["web_consumer"].kill(sig)

    def stop_producer(self) -> None:
        self.services["producer"].stop()

    def start_producer(self) -> None:
        self.services["producer"].start()

    # Consumer groups -------------------------------------------------------------------------
    def _member_name(self, index: int) -> str:
        return "web_consumer" if index == 0 else f"web_consumer_{index}"

    def start_group(self, members: int, partitions: int) -> None:
        self.end_group()
        self.services["web_consumer"].stop()
        self._member_ports = {0: self.http_port}
        for index in range(members):
            name = self._member_name(index)
            port = self._member_ports.setdefault(index, free_port())
            service = self._service("web_consumer")
            service.name = name
            service.env = {
                **service.env,
                "WEBCONSUMER_PORT": str(port),
                "PGSUBSCRIBER_PARTITIONS": str(partitions),
            }
            if service.log is not None:
                service.log = service.log.with_name(f"{name}.log")
            self.services[name] = service
            self.start_member(index)

    def end_group(self) -> None:
        for index in sorted(self._member_ports, reverse=True):
            self.services[self._member_name(index)].stop()
            if index:
                del self.services[self._member_name(index)]
        if self._member_ports:
            self._member_ports = {}
            self.services["web_consumer"] = self._service("web_consumer")
            self.start_consumer()

    def member_health(self, index: int) -> dict[str, object] | None:
        url = f"http://{self.http_host}:{self._member_ports[index]}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: dict[str, object] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        except OSError:
            return None
        return body

    def kill_member(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        self.services[self._member_name(index)].kill(sig)

    def start_member(self, index: int) -> None:
        service = self.services[self._member_name(index)]
        service.start()
        wait_for_http(
            f"http://{self.http_host}:{self._member_ports[index]}/health", self.start_timeout, alive=service
        )

    def stop_db(self, mode: StopMode) -> None:
        assert self.postgres is not None
        self.postgres.stop(mode)
        logger.info("PostgreSQL stopped (%s)", mode)

    def start_db(self) -> None:
        assert self.postgres is not None
        self.postgres.start()
        self.postgres.wait_ready()
        logger.info("PostgreSQL started")
