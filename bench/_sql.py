"""The benchmark's own SQL (the raw baselines), loaded by name from ``bench/sql/*.sql``."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def query(name: str) -> str:
    """The text of ``bench/sql/<name>.sql``."""
    return resources.files("bench").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
