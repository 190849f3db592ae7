"""The compose deployment for real: ``docker compose up --build`` on a Docker engine, the proof of
concept's two scenarios through ``docker compose stop/start``, then every "courses" event in
PostgreSQL must be in MongoDB's ``consumer.receivedEvents`` exactly once.

The test runs its own compose project beside any other: a unique ``-p`` name, free host ports (the
``PGSUBSCRIBER_*_PORT`` variables) and generated passwords in its own env file, so neither the
developer's ``.env`` nor a project already running is touched. ``docker compose down -v`` removes it
at the end. It skips, saying why, when no Docker engine answers (``docker info``), the compose plugin
is missing, or a base image is neither on the engine nor pullable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.compose import CONSUMER_PORT, DB_PORT, MONGO_PORT, DockerDeployment, read_env_file
from chaos.deployment import StopMode
from chaos.local import wait_for_http
from chaos.scenarios import Chaos, format_report
from chaos.verify import verify
from pgsubscriber.testing import free_port

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

#: Seconds of production per phase of a scenario (the chaos runner's ``--duration``).
DURATION = 6.0
#: Upper bounds that only turn a hang into a failure.
BUILD_TIMEOUT, COMMAND_TIMEOUT, HEALTH_TIMEOUT = 600.0, 180.0, 120.0


def _run(
    args: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _line(text: str, last: bool = True) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else "(no output)"


def base_images() -> list[str]:
    """The images ``docker compose up --build`` needs from a registry: the default services'
    images (not those of profiles such as pgAdmin's, nor the one the file builds) and the
    Dockerfile's ``FROM``."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    built = {s["image"] for s in services.values() if "build" in s}
    needed = {s["image"] for s in services.values() if "profiles" not in s and s["image"] not in built}
    dockerfile = (ROOT / "Dockerfile").read_text()
    needed.update(re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE))
    return sorted(needed)


def why_no_engine() -> str | None:
    """Why this machine cannot run the compose project, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    info = _run(["docker", "info"], timeout=60)
    if info.returncode != 0:
        return f"no Docker engine answers (`docker info`: {_line(info.stderr)})"
    version = _run(["docker", "compose", "version"], timeout=60)
    if version.returncode != 0:
        said = _line(version.stderr, last=False)
        return f"the docker compose plugin is missing (`docker compose version`: {said})"
    for image in base_images():
        if _run(["docker", "image", "inspect", image], timeout=60).returncode == 0:
            continue
        pulled = _run(["docker", "pull", image], timeout=300)
        if pulled.returncode != 0:
            return f"base image {image} is not on the engine and cannot be pulled: {_line(pulled.stderr)}"
    return None


class ComposeProject:
    """``docker compose -p <name>`` on the project's file, with its own environment."""

    def __init__(self, name: str, variables: dict[str, str], env_file: Path) -> None:
        self.name, self.variables, self.env_file = name, variables, env_file
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
        self.process_env = {**inherited, **variables}

    def __call__(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        command = ["docker", "compose", "-p", self.name, "-f", str(COMPOSE_FILE)]
        command += ["--project-directory", str(ROOT), "--env-file", str(self.env_file), *args]
        done = _run(command, timeout=timeout, env=self.process_env)
        if done.returncode != 0:
            raise AssertionError(
                f"`docker compose {' '.join(args)}` exited {done.returncode}:\n{done.stderr}"
            )
        return done.stdout

    def port(self, service: str, container_port: int) -> int:
        """The host port, from ``docker compose port`` (``0.0.0.0:49153``)."""
        return int(self("port", service, str(container_port)).strip().rsplit(":", 1)[1])

    def state(self, service: str) -> dict[str, Any]:
        lines = self("ps", "--all", "--format", "json", service).strip().splitlines()
        return json.loads(lines[0]) if lines else {}

    def wait_healthy(self, service: str, timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(service)
            if state.get("State") == "running" and state.get("Health") in ("", "healthy"):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} is not healthy after {timeout:.0f}s: {state}")
            time.sleep(0.5)

    def logs(self) -> str:
        try:
            return self("ps", "--all") + self("logs", "--no-color", "--tail", "40", timeout=60)
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            return f"(no logs: {exc})"


def free_port_range(size: int) -> str:
    """``first-last``: ``size`` consecutive ports free now."""
    for _ in range(50):
        first = free_port()
        probes = []
        try:
            for port in range(first, first + size):
                sock = socket.socket()
                probes.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in probes:
                sock.close()
        return f"{first}-{first + size - 1}"
    raise RuntimeError(f"no {size} consecutive free ports")


@contextmanager
def compose_project(tmp_path: Path) -> Iterator[ComposeProject]:
    """The whole system on free host ports with fresh passwords; removed with its volumes at exit."""
    variables = read_env_file(ROOT / ".env.example")
    for name in variables:
        if name.endswith("_PASSWORD"):
            variables[name] = secrets.token_urlsafe(12)  # letters, digits, '-' and '_'
    for name in ("PGSUBSCRIBER_DB_PORT", "PGSUBSCRIBER_MONGO_PORT"):
        variables[name] = str(free_port())
    variables["PGSUBSCRIBER_WEB_PORT"] = free_port_range(2)  # a range: the group is scaled to two
    variables["PGSUBSCRIBER_PGADMIN_PORT"] = str(free_port())
    variables["PRODUCER_RATE"] = "20"
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in variables.items()))
    project = ComposeProject(f"pgsubscriber-test-{os.getpid()}-{secrets.token_hex(3)}", variables, env_file)
    try:
        yield project
    finally:
        project("down", "-v", "--remove-orphans", "--timeout", "10", timeout=COMMAND_TIMEOUT)


class ComposeCliDeployment(DockerDeployment):
    """The chaos runner's docker backend (addresses from the ports compose published) whose faults
    are ``docker compose stop`` and ``docker compose start``, as an operator would do them."""

    def __init__(self, project: ComposeProject) -> None:
        super().__init__(project=project.name, env=project.variables, start_timeout=HEALTH_TIMEOUT)
        self.compose = project

    def stop_consumer(self) -> None:
        self.compose("stop", "web_consumer")

    def start_consumer(self) -> None:
        self.compose("start", "web_consumer")
        wait_for_http(f"{self.consumer_url}/health", self.start_timeout)

    def stop_producer(self) -> None:
        self.compose("stop", "producer")

    def start_producer(self) -> None:
        self.compose("start", "producer")

    def stop_db(self, mode: StopMode) -> None:
        assert mode == "fast", "docker compose stop is a clean shutdown"
        self.compose("stop", "db")

    def start_db(self) -> None:
        self.compose("start", "db")
        self.compose.wait_healthy("db")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return json.load(response)


def wait_for_courses(url: str, timeout: float = HEALTH_TIMEOUT) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        courses = get_json(url)["courses"]
        if courses or time.monotonic() > deadline:
            return courses
        time.sleep(0.5)


@pytest.fixture(scope="module")
def engine() -> None:
    reason = why_no_engine()
    if reason:
        pytest.skip(reason)


def test_the_compose_deployment_receives_every_event_exactly_once_through_stops_and_starts(
    engine: None, tmp_path: Path
) -> None:
    with compose_project(tmp_path) as project:
        try:
            project("up", "--build", "-d", "--wait", "--wait-timeout", str(int(HEALTH_TIMEOUT)),
                    timeout=BUILD_TIMEOUT)  # fmt: skip
            deployment = ComposeCliDeployment(project)

            # The host ports are those the variables asked for, and the backend finds them.
            for service, container_port, variable in [
                ("db", DB_PORT, "PGSUBSCRIBER_DB_PORT"),
                ("webconsumerdb", MONGO_PORT, "PGSUBSCRIBER_MONGO_PORT"),
                ("web_consumer", CONSUMER_PORT, "PGSUBSCRIBER_WEB_PORT"),
            ]:
                published = project.port(service, container_port)
                assert published == int(project.variables[variable].split("-")[0]), service
                assert deployment.published(service, container_port)[1] == published, service

            # The web consumer answers over HTTP and fills its read model from the producer's events.
            wait_for_http(f"{deployment.consumer_url}/health", HEALTH_TIMEOUT)
            health = get_json(f"{deployment.consumer_url}/health")
            assert health["healthy"] is True, health
            courses = wait_for_courses(f"{deployment.consumer_url}/courses")
            assert courses, "no course after the producer ran"
            assert {"course_id", "title", "last_event_id"} <= set(courses[0])

            # 1: consumer down for a while, then started; 2: producer stopped, database stopped
            # cleanly, database started, producer started. After each, the producer stops, the
            # consumer catches up and the run compares MongoDB with PostgreSQL.
            chaos = Chaos(deployment, duration=DURATION, catch_up_timeout=HEALTH_TIMEOUT)
            results = [chaos.run(1), chaos.run(2)]
            report = format_report(results, "docker compose")
            print(report)
            assert all(r.ok for r in results), report
            assert [len(r.recoveries) for r in results] == [1, 1], report

            # The producer is stopped and the consumer caught up: each event once, none missing.
            final = verify(deployment.events_dsn, deployment.mongo_url, deployment.mongo_database)
            assert final.ok, final.problems()
            assert final.produced == final.received > 0
            assert final.produced > results[0].verification.produced, "scenario 2 produced nothing"

            # Scaled, the web consumers form a consumer group: one active, one standby, each on
            # its own host port of the range.
            project("up", "-d", "--no-recreate", "--scale", "web_consumer=2", "--wait",
                    "--wait-timeout", str(int(HEALTH_TIMEOUT)), timeout=BUILD_TIMEOUT)  # fmt: skip
            first, last = (int(p) for p in project.variables["PGSUBSCRIBER_WEB_PORT"].split("-"))
            ports = {int(project("port", "--index", str(i), "web_consumer", str(CONSUMER_PORT))
                         .strip().rsplit(":", 1)[1]) for i in (1, 2)}  # fmt: skip
            assert ports == {first, last}, ports

            def groups() -> list[dict[str, Any]]:
                return [get_json(f"http://127.0.0.1:{port}/health")["group"] for port in sorted(ports)]

            deadline = time.monotonic() + HEALTH_TIMEOUT
            while sorted(g["role"] for g in groups()) != ["active", "standby"] or any(
                g["members"] != 2 for g in groups()
            ):
                assert time.monotonic() < deadline, groups()
                time.sleep(0.5)
            assert all(g["name"] == "web_consumer" for g in groups()), groups()
        except BaseException:
            print(project.logs())
            raise
