"""Decoding of what PostgreSQL delivers, exactly and without ever refusing a value it accepted.

* :func:`decode_payload` turns the text of a ``jsonb`` object into Python values with no loss:
  integers of any size, decimals that no float holds, and nesting deeper than any recursive
  decoder goes.
* :func:`register_tolerant_timestamps` makes ``timestamptz`` values that Python's ``datetime``
  cannot hold (``infinity``, ``-infinity``, after year 9999, BC) load as clamped values instead
  of raising.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg.types.datetime import TimestamptzBinaryLoader, TimestamptzLoader

__all__ = [
    "EARLIEST",
    "LATEST",
    "PayloadDecodeError",
    "TolerantTimestamptzBinaryLoader",
    "TolerantTimestamptzLoader",
    "decode_iteratively",
    "decode_payload",
    "register_tolerant_timestamps",
]


class PayloadDecodeError(ValueError):
    """The text is not valid JSON, or not a JSON object."""


# ---------------------------------------------------------------------------------------------
# Numbers

#: ``int(str)`` refuses more digits than this (Python's int-from-str limit is 4300 by default).
_INT_DIGITS_SAFE = 4000


def _integer(token: str) -> int:
    """An integer token (no fraction, no exponent) as an ``int`` of any size."""
    return int(token) if len(token) <= _INT_DIGITS_SAFE else int(Decimal(token))


def _real(token: str) -> float | Decimal:
    """A token with a fraction or an exponent: a ``float`` if it is exactly that, else a Decimal."""
    if len(token) <= 16 and "e" not in token and "E" not in token:
        return float(token)  # at most 15 significant digits, not subnormal: a double holds them
    value = float(token)
    exact = Decimal(token)
    if math.isfinite(value) and Decimal(repr(value)) == exact:
        return value
    return exact


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# ---------------------------------------------------------------------------------------------
# The payload decoder


def _byte_classes() -> bytes:
    """A bytes.translate table: digits and dot to ``0``, ``e``/``E`` to ``e``, ``-`` kept, others to space."""
    table = bytearray(b" " * 256)
    for chars, mark in ((b"0123456789.", b"0"), (b"eE", b"e"), (b"-", b"-")):
        for byte in chars:
            table[byte] = mark[0]
    return bytes(table)


_CLASSES = _byte_classes()


def _may_lose(text: str) -> bool:
    """Whether orjson might decode a number of ``text`` with a loss (a match in a string only costs speed).

    A number with at most 15 significant digits survives a double, so it takes a run of 16 digits
    or dots (integers past 64 bits, long decimals, subnormals written out), or a negative exponent
    of three digits (``1e-400`` would become 0.0; jsonb never writes exponents, other JSON may;
    exponents that overflow make orjson raise). bytes.translate and find run at C speed, several
    times faster than a regex search.
    """
    try:
        marks = text.encode().translate(_CLASSES)
    except UnicodeEncodeError:  # a lone surrogate, which orjson refuses
        return True
    return marks.find(b"0000000000000000") >= 0 or marks.find(b"e-000") >= 0  # find: faster than ``in``


def decode_payload(text: str) -> dict[str, Any]:
    """Decode the JSON text of a jsonb object, exactly.

    Numbers: an integer token (no fraction, no exponent) becomes an ``int`` of any size; jsonb
    writes every number without an exponent, so 1e400 arrives as such a token. Any other number
    becomes a ``float`` when that float's shortest form is the same decimal value (``0.1``,
    ``1.50``), else a :class:`~decimal.Decimal` holding the exact value
    (``0.10000000000000000001``, 1e-400 written out as ``0.000...1``).

    Texts with no number a double could mangle go through orjson; others through the stdlib
    decoder with the number rule; nesting too deep for either through :func:`decode_iteratively`.
    Raises :class:`PayloadDecodeError` if the text is not JSON or not an object.
    """
    try:
        value: Any
        if not _may_lose(text):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:  # too deep, lone surrogate, invalid: the exact path decides
                value = _decode_exactly(text)
        else:
            value = _decode_exactly(text)
    except RecursionError:
        value = decode_iteratively(text)
    except ValueError as exc:  # json.JSONDecodeError, or a NaN/Infinity constant
        raise PayloadDecodeError(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PayloadDecodeError(f"payload is a JSON {type(value).__name__}, not an object")
    return value


def _decode_exactly(text: str) -> Any:
    return json.loads(text, parse_int=_integer, parse_float=_real, parse_constant=_no_constant)


# ---------------------------------------------------------------------------------------------
# The iterative decoder.
#
# PostgreSQL accepts jsonb nested as deep as its max_stack_depth allows (about 10,000 levels by
# default, more when raised), while orjson stops at 1024 levels and the stdlib decoder at the
# recursion limit. This decoder keeps the open arrays and objects on an explicit stack, so its
# depth is bounded by memory only. It is used only for such documents; it reuses the stdlib's
# string scanner and applies the same number rule.

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS: dict[str, tuple[str, bool | None]] = {
    "t": ("true", True),
    "f": ("false", False),
    "n": ("null", None),
}
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def decode_iteratively(text: str) -> Any:
    """Decode any JSON text with the number rule of :func:`decode_payload`, without recursion."""
    stack: list[list[Any] | dict[str, Any]] = []  # the open containers, innermost last
    keys: list[str] = []  # for each open object, the key whose value comes next
    value: Any
    pos = _skip(text, 0)
    try:
        while True:
            # Read one value at ``pos``; an opening bracket pushes a container and goes on inside it.
            char = text[pos : pos + 1]
            if char == "{" or char == "[":
                pos = _skip(text, pos + 1)
                if text[pos : pos + 1] == ("}" if char == "{" else "]"):
                    value = {} if char == "{" else []
                    pos += 1
                elif char == "{":
                    stack.append({})
                    pos = _read_key(text, pos, keys)
                    continue
                else:
                    stack.append([])
                    continue
            elif char == '"':
                value, pos = _scanstring(text, pos + 1)
            elif number := _NUMBER.match(text, pos):
                token = number.group()
                value = _integer(token) if number.lastindex is None else _real(token)
                pos = number.end()
            elif (literal := _LITERALS.get(char)) and text.startswith(literal[0], pos):
                value = literal[1]
                pos += len(literal[0])
            else:
                raise _error("expecting a value", pos)
            # Store the value in its container; a closing bracket makes the container the next value.
            while True:
                pos = _skip(text, pos)
                if not stack:
                    if pos != len(text):
                        raise _error("extra data", pos)
                    return value
                top = stack[-1]
                if isinstance(top, list):
                    top.append(value)
                else:
                    top[keys.pop()] = value
                char = text[pos : pos + 1]
                if char == ",":
                    pos = _skip(text, pos + 1)
                    if isinstance(top, dict):
                        pos = _read_key(text, pos, keys)
                    break
                if char != ("]" if isinstance(top, list) else "}"):
                    raise _error("expecting ',' or a closing bracket", pos)
                value = stack.pop()
                pos += 1
    except json.JSONDecodeError as exc:  # from scanstring
        raise PayloadDecodeError(f"payload is not valid JSON: {exc}") from exc


def _skip(text: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not whitespace."""
    return _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]  # ``*`` always matches


def _read_key(text: str, pos: int, keys: list[str]) -> int:
    """Read ``"key":`` at ``pos`` onto ``keys``; return where its value starts."""
    if text[pos : pos + 1] != '"':
        raise _error("expecting a property name in double quotes", pos)
    key, pos = _scanstring(text, pos + 1)
    pos = _skip(text, pos)
    if text[pos : pos + 1] != ":":
        raise _error("expecting ':'", pos)
    keys.append(key)
    return _skip(text, pos + 1)


def _error(problem: str, pos: int) -> PayloadDecodeError:
    return PayloadDecodeError(f"payload is not valid JSON: {problem} at char {pos}")


# ---------------------------------------------------------------------------------------------
# timestamptz

#: What a timestamptz beyond ``datetime``'s range loads as (``infinity`` and after year 9999).
LATEST = datetime.max.replace(tzinfo=UTC)
#: What a timestamptz before ``datetime``'s range loads as (``-infinity`` and BC dates).
EARLIEST = datetime.min.replace(tzinfo=UTC)


def _c_build(base: type[Loader], oid: int, context: AdaptContext | None) -> Callable[[Buffer], Any] | None:
    """The load of psycopg's C build of ``base``, if installed.

    psycopg swaps in its C build only for its own classes, never for a subclass; the tolerant
    loaders call it explicitly (it is several times faster than the Python parent).
    """
    built = psycopg.adapters.get_loader(oid, base.format)
    if built is None or built is base or built.__name__ != base.__name__:
        return None
    return built(oid, context).load


class TolerantTimestamptzLoader(TimestamptzLoader):
    """psycopg's text timestamptz loader, clamping what ``datetime`` cannot hold.

    ``infinity`` and dates after 9999 load as :data:`LATEST`, ``-infinity`` and BC dates as
    :data:`EARLIEST`: the clamped value says only "beyond this end". In a session time zone other
    than UTC, a moment within that offset of either end may also be clamped (its local text is
    already out of range). Needs DateStyle ISO (the default), like psycopg itself.
    """

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._strict = _c_build(TimestamptzLoader, oid, context) or super().load

    def load(self, data: Buffer) -> datetime:
        try:
            return self._strict(data)
        except psycopg.DataError:
            text = bytes(data)
            if text == b"-infinity" or text.endswith(b"BC"):
                return EARLIEST
            year = text.split(b"-", 1)[0]
            if text == b"infinity" or (year.isdigit() and len(year) > 4):
                return LATEST
            raise


class TolerantTimestamptzBinaryLoader(TimestamptzBinaryLoader):
    """psycopg's binary timestamptz loader, clamping like :class:`TolerantTimestamptzLoader`."""

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._strict = _c_build(TimestamptzBinaryLoader, oid, context) or super().load

    def load(self, data: Buffer) -> datetime:
        try:
            return self._strict(data)
        except psycopg.DataError:
            # Microseconds since 2000-01-01: only out-of-range values fail.
            return LATEST if int.from_bytes(data, "big", signed=True) > 0 else EARLIEST


def register_tolerant_timestamps(context: AdaptContext) -> None:
    """Load ``timestamptz`` on ``context`` (a connection or cursor) with the tolerant loaders."""
    context.adapters.register_loader("timestamptz", TolerantTimestamptzLoader)
    context.adapters.register_loader("timestamptz", TolerantTimestamptzBinaryLoader)
