"""``python -m db_migrations``: ``pgsubscriber migrate`` with ``DATABASE_URL`` (the compose service).

Optional: ``EVENTS_PRODUCER_PASSWORD``, ``EVENTS_CONSUMER_PASSWORD``, ``EVENTS_PURGER_PASSWORD``
let those roles log in with that password (what the services in docker-compose.yml use).
"""

from __future__ import annotations

import sys

from pgsubscriber.cli import main

if __name__ == "__main__":
    sys.exit(main(["migrate", *sys.argv[1:]]))
