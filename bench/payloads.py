"""The events every scenario publishes: one topic, one small payload shape (about 100 bytes)."""

from __future__ import annotations

from typing import Any

TOPIC = "courses"


def payload(seq: int) -> dict[str, Any]:
    """The payload of the ``seq``-th event of a producer (``seq`` lets latency runs match events)."""
    return {
        "type": "course.created",
        "course_id": f"bench-{seq}",
        "title": "Databases 101",
        "seats": 30,
        "seq": seq,
    }
