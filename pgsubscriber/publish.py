"""Write events with the caller's psycopg connection and transaction (a transactional outbox).

Nothing here commits: the events become visible when the caller's transaction commits, together
with the caller's own writes, or never. With ``autocommit=True`` each call is its own transaction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
import psycopg

from pgsubscriber.errors import InvalidPayloadError, InvalidTopicError
from pgsubscriber.events import validate_topic

_INSERT_ONE = "INSERT INTO public.events (topic, payload) VALUES (%s, %s::jsonb) RETURNING id"

# With a key: a second publish of the same key inserts nothing (and we then look its id up).
_INSERT_ONE_KEYED = """
INSERT INTO public.events (topic, payload, key) VALUES (%s, %s::jsonb, %s)
ON CONFLICT (key) DO NOTHING
RETURNING id
"""

# One statement for the whole batch: one writer registration, at most one NOTIFY, ids drawn in
# input order (WITH ORDINALITY ... ORDER BY).
_INSERT_MANY = """
INSERT INTO public.events (topic, payload, key)
SELECT t, p::jsonb, k
FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS input(t, p, k, n)
ORDER BY n
ON CONFLICT (key) DO NOTHING
RETURNING id, key
"""

# Without keys nothing can conflict: a plain insert, ids returned in input order.
_INSERT_MANY_UNKEYED = """
INSERT INTO public.events (topic, payload)
SELECT t, p::jsonb
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS input(t, p, n)
ORDER BY n
RETURNING id
"""

# With partition keys (consumer groups: events of one partition key stay in one partition, in order).
_INSERT_ONE_PARTITIONED = """
INSERT INTO public.events (topic, payload, key, partition_key) VALUES (%s, %s::jsonb, %s, %s)
ON CONFLICT (key) DO NOTHING
RETURNING id
"""

_INSERT_MANY_PARTITIONED = """
INSERT INTO public.events (topic, payload, key, partition_key)
SELECT t, p::jsonb, k, pk
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS input(t, p, k, pk, n)
ORDER BY n
ON CONFLICT (key) DO NOTHING
RETURNING id, key
"""

_IDS_BY_KEY = "SELECT key, id FROM public.events WHERE key = ANY(%s)"


class NewEvent(NamedTuple):
    """An event to publish with :func:`publish_many`."""

    topic: str
    payload: Mapping[str, Any]
    key: str | None = None
    partition_key: str | None = None


# A \u0000 escape in the JSON text (an odd number of backslashes before "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _json_default(value: object) -> object:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))  # exact, as a JSON number
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _big_ints_as_fragments(value: Any) -> Any:
    """A copy of ``value`` whose integers beyond 64 bits are raw JSON numbers (orjson stops there)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))
    if isinstance(value, Mapping):
        return {key: _big_ints_as_fragments(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_fragments(item) for item in value]
    return value


def _has_non_finite_float(payload: object) -> bool:
    """NaN or an infinity anywhere in the payload (iterative: payloads may nest deeply)."""
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return True
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return False


def _serialize(payload: object) -> str:
    """The payload as JSON text that PostgreSQL's jsonb stores exactly, or InvalidPayloadError."""
    if not isinstance(payload, Mapping):
        raise InvalidPayloadError(f"a payload must be a JSON object (a dict), not {type(payload).__name__}")
    try:
        text = orjson.dumps(dict(payload), default=_json_default).decode()
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise InvalidPayloadError(f"the payload cannot be serialized to JSON: {exc}") from None
        try:  # integers beyond 64 bits: written exactly, as raw JSON numbers
            text = orjson.dumps(_big_ints_as_fragments(dict(payload)), default=_json_default).decode()
        except (TypeError, RecursionError) as fallback:
            raise InvalidPayloadError(f"the payload cannot be serialized to JSON: {fallback}") from None
    if "null" in text and _has_non_finite_float(payload):
        raise InvalidPayloadError("the payload holds NaN or an infinity, which JSON cannot represent")
    if _NUL_ESCAPE.search(text):
        raise InvalidPayloadError(
            "the payload holds a NUL character (\\u0000), which PostgreSQL's jsonb cannot store"
        )
    return text


def _check_key(key: object, what: str = "an idempotency key") -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= 512:
        raise InvalidPayloadError(f"{what} is a string of 1 to 512 characters, not {key!r}")
    return key


def publish(
    conn: psycopg.Connection[Any],
    topic: str,
    payload: Mapping[str, Any],
    *,
    key: str | None = None,
    partition_key: str | None = None,
) -> int:
    """Insert one event in ``conn``'s current transaction and return its id. Never commits.

    With ``key``, publishing the same key again stores nothing and returns the stored event's id.
    ``partition_key`` (e.g. a course id) puts the event in the partition of that key in consumer
    groups, so the events of one key are delivered in order by one member at a time.
    Raises :class:`~pgsubscriber.InvalidTopicError` / :class:`~pgsubscriber.InvalidPayloadError`
    (and writes nothing) for bad input.
    """
    validate_topic(topic)
    body = _serialize(payload)
    key = _check_key(key)
    partition_key = _check_key(partition_key, "a partition key")
    if partition_key is not None:
        row = conn.execute(_INSERT_ONE_PARTITIONED, (topic, body, key, partition_key)).fetchone()
    elif key is None:
        row = conn.execute(_INSERT_ONE, (topic, body)).fetchone()
        assert row is not None
        return int(row[0])
    else:
        row = conn.execute(_INSERT_ONE_KEYED, (topic, body, key)).fetchone()
    if row is not None:
        return int(row[0])
    found = conn.execute(_IDS_BY_KEY, ([key],)).fetchone()
    if found is None:
        raise psycopg.errors.UniqueViolation(
            f"an event with key {key!r} exists but is not visible to this transaction; retry"
        )
    return int(found[1])


def publish_many(conn: psycopg.Connection[Any], events: Iterable[NewEvent | tuple[Any, ...]]) -> list[int]:
    """Insert a batch in one statement; return the ids in input order. Never commits.

    Every event is validated first: one bad event raises and nothing is written.
    Events whose key is already stored (or repeated in the batch) get the stored id.
    """
    topics: list[str] = []
    bodies: list[str] = []
    keys: list[str | None] = []
    partition_keys: list[str | None] = []
    for item in events:
        event = item if isinstance(item, NewEvent) else NewEvent(*item)
        if not isinstance(event.topic, str):
            raise InvalidTopicError(f"invalid topic {event.topic!r}")
        topics.append(validate_topic(event.topic))
        bodies.append(_serialize(event.payload))
        keys.append(_check_key(event.key))
        partition_keys.append(_check_key(event.partition_key, "a partition key"))
    if not topics:
        return []
    partitioned = any(pk is not None for pk in partition_keys)
    if not partitioned and all(key is None for key in keys):
        return sorted(int(row[0]) for row in conn.execute(_INSERT_MANY_UNKEYED, (topics, bodies)))
    if partitioned:
        rows = conn.execute(_INSERT_MANY_PARTITIONED, (topics, bodies, keys, partition_keys)).fetchall()
    else:
        rows = conn.execute(_INSERT_MANY, (topics, bodies, keys)).fetchall()
    by_key = {key: int(id_) for id_, key in rows if key is not None}
    keyless = sorted(int(id_) for id_, key in rows if key is None)
    missing = [k for k in keys if k is not None and k not in by_key]
    if missing:
        by_key.update((k, int(i)) for k, i in conn.execute(_IDS_BY_KEY, (missing,)).fetchall())
    keyless_iter = iter(keyless)
    ids = []
    for key in keys:
        if key is None:
            ids.append(next(keyless_iter))
        elif key in by_key:
            ids.append(by_key[key])
        else:
            raise psycopg.errors.UniqueViolation(
                f"an event with key {key!r} exists but is not visible to this transaction; retry"
            )
    return ids
