"""Placeholder: replaced by the exact decoder."""

from __future__ import annotations

from typing import Any

import orjson


class PayloadDecodeError(ValueError):
    pass


def decode_payload(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PayloadDecodeError(str(exc)) from None
    if not isinstance(value, dict):
        raise PayloadDecodeError("not an object")
    return value


def register_tolerant_timestamps(context: Any) -> None:
    return None
