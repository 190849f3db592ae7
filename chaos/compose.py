"""The docker compose deployment, driven through the Docker SDK (``pip install -e '.[chaos]'``).

Start it first with ``docker compose up -d --build``; containers are found by the labels compose
puts on them (``com.docker.compose.project`` and ``com.docker.compose.service``). The database,
MongoDB and the web consumer are reached on the host ports compose published for them (what
``docker compose port db 5432`` prints), read from the running containers: whatever the
``PGSUBSCRIBER_*_PORT`` variables moved them to. Passwords are read from the environment, else from
the ``.env`` file next to docker-compose.yml.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chaos.deployment import DeploymentError, StopMode
from chaos.local import wait_for_http
from chaos.services import DATABASE, MONGO_DATABASE, postgres_url

logger = logging.getLogger(__name__)

PROJECT = "pgsubscriber"
"""The ``name:`` of docker-compose.yml."""

ENV_FILE = Path(__file__).resolve().parents[1] / ".env"
COMPOSE_FILE = ENV_FILE.with_name("docker-compose.yml")
LONG_RUNNING = ("db", "webconsumerdb", "web_consumer", "producer", "purger")

#: The ports the services listen on inside their containers (docker-compose.yml publishes them).
DB_PORT, MONGO_PORT, CONSUMER_PORT = 5432, 27017, 1337

_ANY_ADDRESS = ("", "0.0.0.0", "::")


def _replica_number(container: Any) -> int:
    """Compose numbers the replicas of a scaled service from 1."""
    labels = getattr(container, "labels", None) or {}
    return int(labels.get("com.docker.compose.container-number", "0"))


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose ``.env`` file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


class DockerDeployment:
    """The compose project's containers; faults are ``stop``/``start``/``kill`` through the SDK."""

    name = "docker"

    def __init__(
        self,
        *,
        project: str = PROJECT,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
        client: Any = None,
    ) -> None:
        if client is None:
            try:
                import docker
            except ImportError as exc:
                raise DeploymentError(
                    "the docker backend needs the Docker SDK: pip install -e '.[chaos]'"
                ) from exc
            try:
                client = docker.from_env()
                client.ping()
            except docker.errors.DockerException as exc:
                raise DeploymentError(f"cannot reach the Docker engine: {exc}") from exc
        self.client = client
        self.project, self.host, self.start_timeout = project, host, start_timeout
        self.env = {**read_env_file(ENV_FILE), **os.environ, **(env or {})}
        self._published: dict[tuple[str, int], tuple[str, int]] = {}

    def _value(self, name: str, default: str | None = None) -> str:
        value = self.env.get(name, default)
        if value is None:
            raise DeploymentError(f"{name} is not set: export it or put it in {ENV_FILE}")
        return value

    # Addresses -----------------------------------------------------------------------------
    def published(self, service: str, container_port: int) -> tuple[str, int]:
        """The host address compose published ``container_port`` of ``service`` on, as
        ``docker compose port service container_port`` prints it; a wildcard binding (0.0.0.0, ::)
        is reached on ``host``. A stopped container publishes nothing: its last address is used."""
        container = self.container(service)
        container.reload()
        ports = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
        bindings = ports.get(f"{container_port}/tcp") or []
        if bindings:
            ipv4 = [b for b in bindings if ":" not in (b.get("HostIp") or "")]
            binding = (ipv4 or bindings)[0]
            ip = binding.get("HostIp") or ""
            address = (self.host if ip in _ANY_ADDRESS else ip, int(binding["HostPort"]))
            self._published[(service, container_port)] = address
            return address
        if (service, container_port) in self._published:
            return self._published[(service, container_port)]
        raise DeploymentError(
            f"service {service!r} of project {self.project!r} publishes no host port for "
            f"{container_port} (status {container.status}): start it with `docker compose up -d`"
        )

    def _url_address(self, service: str, container_port: int) -> tuple[str, int]:
        host, port = self.published(service, container_port)
        return (f"[{host}]" if ":" in host else host), port

    @property
    def events_dsn(self) -> str:
        password = self._value("EVENTS_CONSUMER_PASSWORD")
        host, port = self._url_address("db", DB_PORT)
        return postgres_url("events_consumer", password, host, port, self._value("POSTGRES_DB", DATABASE))

    @property
    def mongo_url(self) -> str:
        user, password = self._value("MONGO_ROOT_USER"), self._value("MONGO_ROOT_PASSWORD")
        host, port = self._url_address("webconsumerdb", MONGO_PORT)
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"mongodb://{auth}@{host}:{port}/?authSource=admin&directConnection=true"

    @property
    def mongo_database(self) -> str:
        return MONGO_DATABASE

    @property
    def consumer_url(self) -> str:
        host, port = self._url_address("web_consumer", CONSUMER_PORT)
        return f"http://{host}:{port}"

    # Containers ----------------------------------------------------------------------------
    def container(self, service: str) -> Any:
        labels = [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]
        found = self.client.containers.list(all=True, filters={"label": labels})
        # A scaled service (the web consumer as a group): its first replica.
        found.sort(key=_replica_number)
        if not found:
            raise DeploymentError(
                f"no container for service {service!r} of project {self.project!r}: "
                "run `docker compose up -d --build` first"
            )
        return found[0]

    def _status(self, service: str) -> tuple[str, str | None]:
        container = self.container(service)
        container.reload()
        health = container.attrs.get("State", {}).get("Health", {}).get("Status")
        return container.status, health

    def _wait(self, service: str, healthy: bool) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            status, health = self._status(service)
            if status == "running" and (not healthy or health in (None, "healthy")):
                return
            if time.monotonic() > deadline:
                raise DeploymentError(f"{service} is {status} ({health}) after {self.start_timeout:.0f}s")
            time.sleep(0.5)

    def _start(self, service: str) -> None:
        container = self.container(service)
        container.reload()
        if container.status == "paused":
            container.unpause()
            logger.info("resumed %s", service)
        elif container.status != "running":
            container.start()
            logger.info("started %s", service)

    # Lifecycle -----------------------------------------------------------------------------
    def up(self) -> None:
        """Check that the project runs (start any stopped service), then wait for the consumer."""
        self.start_db()
        for service in LONG_RUNNING:
            self._start(service)
        wait_for_http(f"{self.consumer_url}/health", self.start_timeout)

    def down(self) -> None:
        """Leave every service running, as the chaos run found them."""
        for service in LONG_RUNNING:
            try:
                self._start(service)
            except DeploymentError as exc:
                logger.warning("%s", exc)

    # Faults --------------------------------------------------------------------------------
    def stop_consumer(self) -> None:
        self.container("web_consumer").stop(timeout=15)

    def start_consumer(self) -> None:
        self._start("web_consumer")
        wait_for_http(f"{self.consumer_url}/health", self.start_timeout)

    def kill_consumer(self, sig: signal.Signals = signal.SIGKILL) -> None:
        container = self.container("web_consumer")
        container.kill(signal=sig.name)
        container.wait(timeout=30)

    def stop_producer(self) -> None:
        """Freeze the producer. A restarted container would have the same hostname and pid (1), so
        the same default producer id: its idempotency keys would collide with those already stored
        and its new events would be dropped as duplicates. Freezing keeps its sequence."""
        container = self.container("producer")
        container.reload()
        if container.status == "running":
            container.pause()

    def start_producer(self) -> None:
        self._start("producer")

    def stop_db(self, mode: StopMode) -> None:
        container = self.container("db")
        if mode == "immediate":
            container.kill(signal="SIGKILL")  # every process of the server at once: a crash
            container.wait(timeout=30)
        else:
            container.stop(timeout=30)  # the image's stop signal: a fast shutdown

    def start_db(self) -> None:
        self._start("db")
        self._wait("db", healthy=True)

    # Consumer groups: the web consumer scaled with `docker compose up --scale` (the compose CLI,
    # on this repository's compose file, with this deployment's variables); members are its
    # replicas in container-number order.
    def _compose(self, *args: str, extra: Mapping[str, str] | None = None) -> None:
        command = ["docker", "compose", "-p", self.project, "-f", str(COMPOSE_FILE)]
        command += ["--project-directory", str(COMPOSE_FILE.parent), *args]
        env = {k: v for k, v in {**self.env, **(extra or {})}.items() if not k.startswith("COMPOSE_")}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise DeploymentError(f"`docker compose {' '.join(args)}` failed: {done.stderr.strip()[-800:]}")

    def _members(self) -> list[Any]:
        labels = [f"com.docker.compose.project={self.project}", "com.docker.compose.service=web_consumer"]
        found = self.client.containers.list(all=True, filters={"label": labels})
        return sorted(found, key=_replica_number)

    def _scale(self, members: int, partitions: int) -> None:
        self._compose(
            "up", "-d", "--no-deps", "--no-build", "--scale", f"web_consumer={members}", "--wait",
            "--wait-timeout", str(int(self.start_timeout)), "web_consumer",
            extra={"WEB_CONSUMER_PARTITIONS": str(partitions)},
        )  # fmt: skip
        self._published.clear()

    def start_group(self, members: int, partitions: int) -> None:
        self._scale(members, partitions)
        for index in range(members):
            self.start_member(index)

    def end_group(self) -> None:
        self._scale(1, int(self.env.get("WEB_CONSUMER_PARTITIONS", "1") or "1"))
        wait_for_http(f"{self.consumer_url}/health", self.start_timeout)

    def _member_url(self, index: int) -> str:
        container = self._members()[index]
        container.reload()
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{CONSUMER_PORT}/tcp")
        if not bindings:
            raise DeploymentError(f"web consumer replica {index + 1} publishes no port ({container.status})")
        return f"http://{self.host}:{int(bindings[0]['HostPort'])}"

    def member_health(self, index: int) -> dict[str, object] | None:
        try:
            url = self._member_url(index)
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                body: dict[str, object] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        except (OSError, DeploymentError):
            return None
        return body

    def kill_member(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        container = self._members()[index]
        container.kill(signal=sig.name)
        container.wait(timeout=30)

    def start_member(self, index: int) -> None:
        container = self._members()[index]
        container.reload()
        if container.status != "running":
            container.start()
        deadline = time.monotonic() + self.start_timeout
        while self.member_health(index) is None:
            if time.monotonic() > deadline:
                raise DeploymentError(f"web consumer replica {index + 1} does not answer HTTP")
            time.sleep(0.5)
