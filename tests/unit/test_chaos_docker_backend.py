"""The docker backend's mapping of faults to Docker SDK calls, with a stand-in client.

It finds the compose project's containers by their labels, stops the database cleanly or kills it
with SIGKILL, SIGKILLs the consumer, freezes and resumes the producer, reaches each service on the
host port compose published for it, and reads the passwords from the environment or ``.env``.
tests/compose runs it against a real engine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.compose import DockerDeployment, read_env_file
from chaos.deployment import DeploymentError

ROOT = Path(__file__).resolve().parents[2]


#: What compose published in the stand-in project (not the default ports: they must be read).
PUBLISHED = {
    "db": {"5432/tcp": 15432},
    "webconsumerdb": {"27017/tcp": 27018},
    "web_consumer": {"1337/tcp": 1338},
}


class FakeContainer:
    def __init__(self, service: str) -> None:
        self.service = service
        self.status = "running"
        self.bindings = {
            port: [{"HostIp": "0.0.0.0", "HostPort": str(host)}, {"HostIp": "::", "HostPort": str(host)}]
            for port, host in PUBLISHED.get(service, {}).items()
        }
        self.attrs: dict = {}
        self.calls: list[tuple[str, object]] = []
        self.reload()

    def reload(self) -> None:
        running = self.status == "running"
        self.attrs = {
            "State": {"Health": {"Status": "healthy"}},
            "NetworkSettings": {"Ports": self.bindings if running else {}},
        }

    def stop(self, timeout: int) -> None:
        self.calls.append(("stop", timeout))
        self.status = "exited"

    def start(self) -> None:
        self.calls.append(("start", None))
        self.status = "running"

    def kill(self, signal: str) -> None:
        self.calls.append(("kill", signal))
        self.status = "exited"

    def pause(self) -> None:
        self.calls.append(("pause", None))
        self.status = "paused"

    def unpause(self) -> None:
        self.calls.append(("unpause", None))
        self.status = "running"

    def wait(self, timeout: int) -> dict[str, int]:
        return {"StatusCode": 137}


class FakeContainers:
    def __init__(self, project: str, services: list[str]) -> None:
        self.project = project
        self.by_service = {s: FakeContainer(s) for s in services}
        self.filters: list[dict[str, list[str]]] = []

    def list(self, all: bool, filters: dict[str, list[str]]) -> list[FakeContainer]:
        self.filters.append(filters)
        labels = dict(label.split("=", 1) for label in filters["label"])
        if labels["com.docker.compose.project"] != self.project:
            return []
        found = self.by_service.get(labels["com.docker.compose.service"])
        return [found] if found else []


class FakeClient:
    def __init__(self, project: str = "pgsubscriber") -> None:
        self.containers = FakeContainers(
            project, ["db", "webconsumerdb", "web_consumer", "producer", "purger"]
        )


ENV = {
    "EVENTS_CONSUMER_PASSWORD": "c-pass",
    "MONGO_ROOT_USER": "root",
    "MONGO_ROOT_PASSWORD": "m-pass",
    "POSTGRES_DB": "app",
}


def test_faults_are_stop_start_and_kill_of_the_project_containers():
    client = FakeClient()
    deployment = DockerDeployment(client=client, env=ENV)
    containers = client.containers.by_service

    deployment.stop_db("fast")
    deployment.start_db()
    deployment.stop_db("immediate")
    deployment.start_db()
    assert containers["db"].calls == [("stop", 30), ("start", None), ("kill", "SIGKILL"), ("start", None)]

    deployment.kill_consumer(signal.SIGKILL)
    assert containers["web_consumer"].calls == [("kill", "SIGKILL")]
    deployment.stop_producer()
    deployment.start_producer()
    deployment.start_producer()  # already running: nothing happens
    assert containers["producer"].calls == [("pause", None), ("unpause", None)]
    containers["purger"].status = "exited"
    deployment.down()  # leaves every service running
    assert containers["purger"].calls == [("start", None)]
    assert {"label": ["com.docker.compose.project=pgsubscriber", "com.docker.compose.service=db"]} in (
        client.containers.filters
    )


def test_addresses_use_the_published_ports_and_the_least_privilege_reader():
    deployment = DockerDeployment(client=FakeClient(), env=ENV, host="127.0.0.1")
    assert deployment.events_dsn == "postgresql://events_consumer:c-pass@127.0.0.1:15432/app"
    assert deployment.mongo_url.startswith("mongodb://root:m-pass@127.0.0.1:27018/")
    assert deployment.consumer_url == "http://127.0.0.1:1338"


def test_a_stopped_service_keeps_its_last_address_and_a_specific_binding_is_used_as_is():
    client = FakeClient()
    deployment = DockerDeployment(client=client, env=ENV)
    assert deployment.published("db", 5432) == ("127.0.0.1", 15432)
    deployment.stop_db("fast")  # a stopped container publishes nothing
    assert deployment.events_dsn.endswith("@127.0.0.1:15432/app")
    deployment.start_db()

    consumer = client.containers.by_service["web_consumer"]
    consumer.bindings = {"1337/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}
    assert deployment.consumer_url == "http://[::1]:8080"
    consumer.bindings = {"1337/tcp": [{"HostIp": "192.0.2.7", "HostPort": "8081"}]}
    assert deployment.consumer_url == "http://192.0.2.7:8081"


def test_a_service_that_never_published_its_port_says_so():
    client = FakeClient()
    client.containers.by_service["db"].bindings = {}
    deployment = DockerDeployment(client=client, env=ENV)
    with pytest.raises(DeploymentError, match="publishes no host port for 5432"):
        _ = deployment.events_dsn


def test_a_missing_project_or_password_says_what_to_do(monkeypatch):
    monkeypatch.delenv("EVENTS_CONSUMER_PASSWORD", raising=False)
    deployment = DockerDeployment(client=FakeClient(project="other"), env={})
    with pytest.raises(DeploymentError, match="docker compose up"):
        deployment.stop_consumer()
    if "EVENTS_CONSUMER_PASSWORD" not in deployment.env:
        with pytest.raises(DeploymentError, match="EVENTS_CONSUMER_PASSWORD is not set"):
            _ = deployment.events_dsn


def test_env_files_are_read_like_compose_reads_them(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\n\nA=1\nB = 'two'\nC=\n")
    assert read_env_file(env) == {"A": "1", "B": "two", "C": ""}
    assert read_env_file(tmp_path / "missing") == {}


def test_without_an_engine_the_command_exits_2_with_the_reason():
    done = subprocess.run(
        [sys.executable, "-m", "chaos", "--backend", "docker", "--scenario", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
            "PYTHONPATH": str(ROOT),
        },
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Docker engine" in done.stderr
