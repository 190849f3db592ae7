"""``python -m db_migrations``: apply the schema to ``DATABASE_URL``.

Optional: ``EVENTS_PRODUCER_PASSWORD``, ``EVENTS_CONSUMER_PASSWORD``, ``EVENTS_PURGER_PASSWORD``
let those roles log in with that password (what the services in docker-compose.yml use).
"""

from __future__ import annotations

import logging
import os
import sys

from db_migrations.runner import MigrationError, migrate


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        print(
            "DATABASE_URL is not set: give the admin connection string, e.g. "
            "postgresql://postgres@localhost:5432/postgres",
            file=sys.stderr,
        )
        return 2
    passwords = {
        role: os.environ[env]
        for role, env in (
            ("events_producer", "EVENTS_PRODUCER_PASSWORD"),
            ("events_consumer", "EVENTS_CONSUMER_PASSWORD"),
            ("events_purger", "EVENTS_PURGER_PASSWORD"),
        )
        if os.environ.get(env)
    }
    try:
        applied = migrate(dsn, role_passwords=passwords)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("db_migrations").info("schema up to date (%d migration(s) applied now)", len(applied))
    return 0


if __name__ == "__main__":
    sys.exit(main())
