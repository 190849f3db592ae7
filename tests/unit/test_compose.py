"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine.

The service graph (healthcheck, start order, commands, one image built once, host ports from
variables, profiles), that every variable given to a service is one its settings class reads and
that the settings validate with the .env.example values, that no password is written in the file,
and that the local deployment (which the chaos and demo tests run) starts the same commands with the
same variable names. Where the compose plugin is installed, ``docker compose config`` checks the file
too (no engine needed); tests/compose runs it on a real engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.compose import read_env_file
from chaos.services import SERVICE_COMMANDS, Tuning, service_environments
from pgsubscriber import SubscriberSettings
from producer.settings import ProducerSettings
from purger.settings import PurgerSettings
from webconsumer.settings import WebConsumerSettings, subscriber_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PYTHON_SERVICES = ["db_migrations", "producer", "web_consumer", "purger"]
LONG_RUNNING = ["producer", "web_consumer", "purger"]

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name} is required: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), env) for key, value in service.get("environment", {}).items()}


def test_every_service_of_the_system_is_there(services):
    assert set(services) == {
        "db",
        "db_migrations",
        "producer",
        "web_consumer",
        "webconsumerdb",
        "purger",
        "pgadmin",
    }


def test_the_database_has_a_healthcheck_and_everything_waits_for_the_migrations(services):
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["db_migrations"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["db_migrations"]["restart"] == "no"
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["db"] == {"condition": "service_healthy"}, name
        assert depends["db_migrations"] == {"condition": "service_completed_successfully"}, name
    assert services["web_consumer"]["depends_on"]["webconsumerdb"] == {"condition": "service_healthy"}
    assert "healthcheck" in services["webconsumerdb"]


def test_each_python_service_runs_its_own_entry_point_from_the_one_image(services):
    for name in PYTHON_SERVICES:
        assert tuple(services[name]["command"]) == SERVICE_COMMANDS[name], name
    assert len({services[name]["image"] for name in PYTHON_SERVICES}) == 1
    # One build: db_migrations, which every other Python service waits for; they never pull it.
    assert [name for name, s in services.items() if "build" in s] == ["db_migrations"]
    assert services["db_migrations"]["build"] == "."
    for name in LONG_RUNNING:
        assert services[name]["pull_policy"] == "never", name


#: Service -> (host port variable, its default: the proof of concept's port, the container port).
PUBLISHED = {
    "db": ("PGSUBSCRIBER_DB_PORT", 5432, 5432),
    "web_consumer": ("PGSUBSCRIBER_WEB_PORT", "1337-1339", 1337),  # a range: one port per replica
    "webconsumerdb": ("PGSUBSCRIBER_MONGO_PORT", 27017, 27017),
    "pgadmin": ("PGSUBSCRIBER_PGADMIN_PORT", 5050, 80),
}


def test_host_ports_default_to_those_of_the_proof_of_concept_and_variables_move_them(services, example_env):
    ports = {name: [str(p) for p in s.get("ports", [])] for name, s in services.items() if "ports" in s}
    assert set(ports) == set(PUBLISHED)
    for name, (variable, default, container_port) in PUBLISHED.items():
        assert ports[name] == [f"${{{variable}:-{default}}}:{container_port}"], name
        assert interpolate(ports[name][0], {}) == f"{default}:{container_port}"
        assert interpolate(ports[name][0], {variable: "15432"}) == f"15432:{container_port}"
        assert example_env[variable] == str(default), f".env.example lists {variable}"
    assert services["pgadmin"]["profiles"] == ["tools"]
    assert all("profiles" not in s for name, s in services.items() if name != "pgadmin")


def test_mongodb_has_credentials_and_the_consumer_its_own_user(services, example_env):
    mongo = services["webconsumerdb"]["environment"]
    assert {"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"} <= set(mongo)
    url = environment(services["web_consumer"], example_env)["MONGO_URL"]
    assert url.startswith(f"mongodb://webconsumer:{example_env['MONGO_WEBCONSUMER_PASSWORD']}@webconsumerdb")
    assert "MONGO_WEBCONSUMER_PASSWORD" in (ROOT / "deploy" / "mongo-init.js").read_text()


def test_no_password_is_written_in_the_compose_file(services):
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            text = str(value)
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{\w+(:[-?][^}]*)?\}", text), f"{name}.{key} = {text!r}"
            for secret in re.findall(r"://[^:/@]+:([^@]*)@", text):
                assert secret.startswith("${"), f"{name}.{key} has a literal password"


def test_services_connect_with_their_own_least_privilege_roles(services, example_env):
    def user(url: str) -> str:
        return re.match(r"postgresql://([^:]+):", url)[1]

    assert user(environment(services["producer"], example_env)["PRODUCER_DSN"]) == "events_producer"
    assert user(environment(services["web_consumer"], example_env)["PGSUBSCRIBER_DSN"]) == "events_consumer"
    assert user(environment(services["purger"], example_env)["PURGER_DSN"]) == "events_purger"


def _reads(prefix: str, settings_class: type) -> set[str]:
    return {prefix + name.upper() for name in settings_class.model_fields}


def test_every_variable_given_to_a_service_is_read_by_its_settings(services):
    read_by = {
        "producer": _reads("PRODUCER_", ProducerSettings),
        "web_consumer": _reads("WEBCONSUMER_", WebConsumerSettings)
        | _reads("PGSUBSCRIBER_", SubscriberSettings)
        | {"MONGO_URL"},
        "purger": _reads("PURGER_", PurgerSettings),
    }
    for name, names in read_by.items():
        given = set(services[name]["environment"])
        assert given <= names, f"{name}: not read: {sorted(given - names)}"
    migrations_source = (ROOT / "pgsubscriber" / "cli.py").read_text()  # db_migrations runs it
    for variable in services["db_migrations"]["environment"]:
        assert f'"{variable}"' in migrations_source, variable


def test_the_settings_validate_with_the_example_env(services, example_env, monkeypatch):
    for key in list(os.environ):
        if key.startswith(("PRODUCER_", "PGSUBSCRIBER_", "WEBCONSUMER_", "PURGER_")) or key == "MONGO_URL":
            monkeypatch.delenv(key)
    for name in LONG_RUNNING:
        for key, value in environment(services[name], example_env).items():
            monkeypatch.setenv(key, value)
    producer = ProducerSettings()
    assert producer.rate == float(example_env["PRODUCER_RATE"])
    assert WebConsumerSettings().port == 1337
    assert subscriber_settings().topics == ["courses"]
    assert PurgerSettings().retention.days == 7


def test_the_local_deployment_runs_the_same_services_with_the_same_variables(services):
    local = service_environments(
        pg_host="127.0.0.1",
        pg_port=5432,
        admin_user="postgres",
        admin_password="x",
        role_passwords={"events_producer": "x", "events_consumer": "x", "events_purger": "x"},
        mongo_url="mongodb://127.0.0.1",
        http_host="127.0.0.1",
        http_port=1337,
        tuning=Tuning(),
    )
    assert set(local) == set(PYTHON_SERVICES)
    for name in PYTHON_SERVICES:
        assert set(local[name]) == set(services[name]["environment"]), name


def test_the_example_env_gives_every_variable_the_compose_file_requires(example_env):
    required = {m["name"] for m in _VARIABLE.finditer(COMPOSE.read_text()) if m["op"] == ":?"}
    assert required <= set(example_env), sorted(required - set(example_env))
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_dockerfile_runs_as_a_user_that_is_not_root_and_installs_from_pyproject():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(maxsplit=1) for line in dockerfile.splitlines() if line and line[0] != "#"]
    base = next(args for op, *args in instructions if op == "FROM")
    assert "slim" in base[0]
    users = [args[0].strip() for op, *args in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert any(op == "COPY" and "pyproject.toml" in args[0] for op, *args in instructions)
    assert re.search(r"pip install \"?\.\[web\]", dockerfile)
    assert "PASSWORD" not in dockerfile.replace("No password", "")
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
        )
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_accepts_the_file_and_the_port_variables(tmp_path):
    env = tmp_path / ".env"
    env.write_text(ENV_EXAMPLE.read_text())
    done = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env),
            "--profile",
            "tools",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "PGSUBSCRIBER_"))},
            "PGSUBSCRIBER_DB_PORT": "15432",  # the environment wins over the env file, as in compose
        },
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)

    def host_ports(service: str) -> list[str]:
        return [p["published"] for p in config["services"][service]["ports"]]

    assert host_ports("db") == ["15432"]
    assert host_ports("web_consumer") == ["1337-1339"]
    assert host_ports("webconsumerdb") == ["27017"]
    assert host_ports("pgadmin") == ["5050"]
    assert {s.get("image") for name, s in config["services"].items() if name in PYTHON_SERVICES} == {
        "pgsubscriber-app:local"
    }
