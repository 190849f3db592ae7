"""The services of a deployment: the command each runs and the environment it reads.

``docker-compose.yml`` runs the same commands with the same variable names (a test compares them),
so a local run exercises exactly what the containers run.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

#: Compose service name -> command (the image's ``python``).
SERVICE_COMMANDS: dict[str, tuple[str, ...]] = {
    "db_migrations": ("python", "-m", "db_migrations"),
    "producer": ("python", "-m", "producer"),
    "web_consumer": ("python", "-m", "webconsumer"),
    "purger": ("python", "-m", "purger"),
}

#: The least-privilege login of each service (db_migrations uses the administrator).
SERVICE_ROLES = {"producer": "events_producer", "web_consumer": "events_consumer", "purger": "events_purger"}

#: Password variable of each role, read by ``python -m db_migrations``.
PASSWORD_VARIABLES = {
    "events_producer": "EVENTS_PRODUCER_PASSWORD",
    "events_consumer": "EVENTS_CONSUMER_PASSWORD",
    "events_purger": "EVENTS_PURGER_PASSWORD",
}

DATABASE = "app"
MONGO_DATABASE = "consumer"
TOPICS = "courses"


@dataclass(frozen=True)
class Tuning:
    """What a deployment may change between runs: rates, retention, reconnect delays."""

    producer_rate: float = 5.0
    producer_batch_size: int = 1
    producer_retry_max_delay: float = 2.0
    consumer_reconnect_max_delay: float = 2.0
    purger_retention: str = "7d"
    purger_interval: str = "15m"
    purger_topic_retention: str = ""
    consumer_group: str = "web_consumer"
    consumer_partitions: int = 1


def postgres_url(user: str, password: str | None, host: str, port: int, database: str = DATABASE) -> str:
    """A libpq URL; the password is percent-encoded."""
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"postgresql://{auth}@{host}:{port}/{quote(database, safe='')}"


def service_environments(
    *,
    pg_host: str,
    pg_port: int,
    admin_user: str,
    admin_password: str | None,
    role_passwords: dict[str, str],
    mongo_url: str,
    http_host: str,
    http_port: int,
    tuning: Tuning,
) -> dict[str, dict[str, str]]:
    """Compose service name -> the variables it gets (the names ``docker-compose.yml`` sets)."""

    def role_url(service: str) -> str:
        role = SERVICE_ROLES[service]
        return postgres_url(role, role_passwords[role], pg_host, pg_port)

    return {
        "db_migrations": {
            "DATABASE_URL": postgres_url(admin_user, admin_password, pg_host, pg_port),
            **{PASSWORD_VARIABLES[role]: password for role, password in role_passwords.items()},
        },
        "producer": {
            "PRODUCER_DSN": role_url("producer"),
            "PRODUCER_RATE": str(tuning.producer_rate),
            "PRODUCER_BATCH_SIZE": str(tuning.producer_batch_size),
            "PRODUCER_RETRY_MAX_DELAY": str(tuning.producer_retry_max_delay),
        },
        "web_consumer": {
            "MONGO_URL": mongo_url,
            "WEBCONSUMER_HOST": http_host,
            "WEBCONSUMER_PORT": str(http_port),
            "PGSUBSCRIBER_DSN": role_url("web_consumer"),
            "PGSUBSCRIBER_TOPICS": TOPICS,
            "PGSUBSCRIBER_RECONNECT_MAX_DELAY": str(tuning.consumer_reconnect_max_delay),
            "PGSUBSCRIBER_GROUP": tuning.consumer_group,
            "PGSUBSCRIBER_PARTITIONS": str(tuning.consumer_partitions),
        },
        "purger": {
            "PURGER_DSN": role_url("purger"),
            "PURGER_RETENTION": tuning.purger_retention,
            "PURGER_INTERVAL": tuning.purger_interval,
            "PURGER_TOPIC_RETENTION": tuning.purger_topic_retention,
        },
    }
