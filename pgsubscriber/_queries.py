"""The SQL the subscriber runs, loaded by name from ``pgsubscriber/sql/*.sql``."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def query(name: str) -> bytes:
    """The text of ``sql/<name>.sql``, ready for ``cursor.execute``."""
    return resources.files("pgsubscriber").joinpath("sql", f"{name}.sql").read_bytes()
