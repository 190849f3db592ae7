"""The payload decoder: exact numbers, any nesting depth, and a clear error for what is not an object."""

from __future__ import annotations

import json
import math
import random
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest

from pgsubscriber._decoding import PayloadDecodeError, _may_lose, decode_iteratively, decode_payload


def reference_number(token: str) -> int | float | Decimal:
    """The number rule, written out plainly."""
    exact = Decimal(token)
    if not any(c in token for c in ".eE"):
        return int(exact)
    value = float(token)
    return value if math.isfinite(value) and Decimal(repr(value)) == exact else exact


def reference(text: str) -> Any:
    return json.loads(text, parse_int=reference_number, parse_float=reference_number, parse_constant=_refuse)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (0.1 and Decimal("0.1") differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def both(text: str) -> Any:
    """decode_payload's result, checked against the iterative decoder's."""
    value = decode_payload(text)
    assert same(decode_iteratively(text), value)
    return value


# --- numbers -----------------------------------------------------------------------------------


def test_integers_of_any_size_are_ints():
    thirty = "123456789012345678901234567890"
    five_thousand = "9" * 5000  # past Python's 4300-digit int-from-str limit
    value = both(f'{{"a": {thirty}, "b": -{five_thousand}, "c": 0, "d": -7}}')
    assert same(value, {"a": int(thirty), "b": -(10**5000 - 1), "c": 0, "d": -7})


def test_huge_and_tiny_values_in_plain_notation_are_exact():
    # How PostgreSQL writes 1e400 and 1e-400: plain, never with an exponent.
    value = both('{"big": 1' + "0" * 400 + ', "tiny": 0.' + "0" * 399 + "1}")
    assert same(value["big"], 10**400)
    assert same(value["tiny"], Decimal("1e-400"))


def test_a_400_digit_decimal_is_exact():
    digits = "3." + "1415926535" * 40
    value = both(f'{{"pi": {digits}}}')["pi"]
    assert isinstance(value, Decimal) and value == Decimal(digits) and str(value) == digits


def test_decimals_a_float_holds_exactly_stay_floats():
    value = both('{"a": 0.1, "b": 1.5, "c": 1.50, "d": -12.25, "e": 0.000001, "f": 123456789.123456}')
    assert same(value, {"a": 0.1, "b": 1.5, "c": 1.5, "d": -12.25, "e": 1e-06, "f": 123456789.123456})


def test_decimals_no_float_holds_are_decimals():
    value = both('{"a": 0.10000000000000000001, "b": 0.30000000000000004441, "c": 1.0000000000000001}')
    assert same(
        value,
        {
            "a": Decimal("0.10000000000000000001"),
            "b": Decimal("0.30000000000000004441"),
            "c": Decimal("1.0000000000000001"),
        },
    )


def test_exponents_follow_the_same_rule():
    # jsonb never writes exponents; other JSON may, and gets the same exact result.
    value = both('{"a": 1e400, "b": 1e-400, "c": 1E2, "d": 2.5e-3, "e": -1e-320, "f": 1.2345678901e-320}')
    assert same(
        value,
        {
            "a": Decimal("1e400"),
            "b": Decimal("1e-400"),
            "c": 100.0,
            "d": 0.0025,
            "e": -1e-320,  # a subnormal, but its shortest form is this very decimal
            "f": Decimal("1.2345678901e-320"),  # a subnormal holds only about 4 of these digits
        },
    )


def test_nan_and_infinity_are_not_json():
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(PayloadDecodeError):
            decode_payload(f'{{"a": {constant}}}')
        with pytest.raises(PayloadDecodeError):
            decode_iteratively(f'{{"a": {constant}}}')


# --- nesting -----------------------------------------------------------------------------------


def depth_of(value: Any) -> tuple[int, Any]:
    """How deep the first-child chain goes, and what is at its end (without recursion)."""
    depth = 0
    while isinstance(value, list | dict) and value:
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
        depth += 1
    return depth, value


@pytest.mark.parametrize("depth", [1_100, 200_000])
def test_deep_arrays(depth):
    value = decode_payload('{"a": ' + "[" * depth + "12.5" + "]" * depth + "}")
    assert depth_of(value) == (depth + 1, 12.5)


@pytest.mark.parametrize("depth", [1_100, 200_000])
def test_deep_objects(depth):
    text = '{"k": ' * depth + "{}" + "}" * depth
    value = decode_payload(text)
    assert depth_of(value) == (depth, {})


def test_deep_mixed_nesting_with_exact_numbers():
    depth = 3_000
    big = "1" * 5000
    text = '{"a": [' * depth + f'{big}, 0.1, 0.10000000000000000001, "x", true, null' + "]}" * depth
    value = decode_payload(text)
    for _ in range(depth):
        value = value["a"]
        if len(value) == 1:
            value = value[0]
    assert same(value, [(10**5000 - 1) // 9, 0.1, Decimal("0.10000000000000000001"), "x", True, None])


def test_200000_levels_take_about_the_memory_of_the_result():
    depth = 200_000
    tracemalloc.start()
    try:
        value = decode_payload('{"a": ' + "[" * depth + "]" * depth + "}")
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert depth_of(value)[0] == depth
    assert peak < held * 1.5 + 4_000_000


# --- strings -----------------------------------------------------------------------------------


def test_string_escapes_and_unicode():
    text = (
        r'{"esc": "\"\\\/\b\f\n\r\t", "nul": "a\u0000b", "pair": "\ud83d\ude00", '
        r'"bmp": "\u00e9\u65e5", "raw": "é日本😀", "k\u00e9y": 1}'
    )
    value = both(text)
    assert value == {
        "esc": '"\\/\b\f\n\r\t',
        "nul": "a\x00b",
        "pair": "😀",
        "bmp": "é日",
        "raw": "é日本😀",
        "kéy": 1,
    }


def test_digit_runs_inside_strings_only_change_the_path():
    text = '{"phone": "00441234567890123456", "note": "version-1e-4000", "n": 5}'
    assert _may_lose(text)
    assert same(decode_payload(text), {"phone": "00441234567890123456", "note": "version-1e-4000", "n": 5})


def test_a_lone_surrogate_escape_decodes_as_json_does():
    assert decode_payload(r'{"a": "\ud800"}') == json.loads(r'{"a": "\ud800"}')


def test_empty_object_and_whitespace():
    assert both("{}") == {}
    assert both(' \n\t{ "a" : [ ] , "b" :{ } }\r\n') == {"a": [], "b": {}}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "{",
        '{"a": 1,}',
        "{'a': 1}",
        '{"a": 01}',
        '{"a": .5}',
        '{"a": 1.}',
        '{"a": tru}',
        '{"a" 1}',
        '{"a": 1} x',
        '{"a": "unterminated}',
        '{"a": "\\x"}',
        '{"a": [1 2]}',
        '{"a": [1}',
        "[" * 5000,
        '{"a": ' + "[" * 5000 + "]" * 4999 + "}",
        '{"a": ' + "[" * 5000 + "]" * 5000 + "} x",
    ],
)
def test_invalid_json_is_a_payload_decode_error(text):
    with pytest.raises(PayloadDecodeError, match="not valid JSON"):
        decode_payload(text)
    with pytest.raises(PayloadDecodeError, match="not valid JSON"):
        decode_iteratively(text)


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "12", "null", "[" * 5000 + "]" * 5000])
def test_anything_but_an_object_is_a_payload_decode_error(text):
    with pytest.raises(PayloadDecodeError, match="not an object"):
        decode_payload(text)


def test_a_payload_decode_error_is_a_value_error():
    assert issubclass(PayloadDecodeError, ValueError)


# --- random documents --------------------------------------------------------------------------

_CHARS = 'ab "\\/\b\f\n\r\t\x00\x1fé日😀\u2028'
_SPACES = ["", "", " ", "\n", "\t", "\r\n  "]


def random_number(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return repr(rng.uniform(-1e6, 1e6))  # shortest float form
    if kind == 1:
        return str(rng.randrange(-(10**15), 10**15))
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 40)))
    token = rng.choice(["", "-"]) + (digits.lstrip("0") or "0")
    if kind >= 3:
        token += "." + "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 25)))
    if kind == 4 and rng.random() < 0.5:
        token += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randrange(0, 500))
    return token


def random_value(rng: random.Random, depth: int) -> str:
    kind = rng.randrange(6 if depth else 4)
    if kind == 0:
        return random_number(rng)
    if kind == 1:
        string = "".join(rng.choice(_CHARS) for _ in range(rng.randrange(8)))
        return json.dumps(string, ensure_ascii=rng.random() < 0.5)
    if kind == 2:
        return rng.choice(["true", "false", "null"])
    if kind == 3:
        return random_number(rng)
    if kind == 4:
        return random_object(rng, depth - 1)
    items = [random_value(rng, depth - 1) for _ in range(rng.randrange(5))]
    return "[" + ",".join(rng.choice(_SPACES) + item + rng.choice(_SPACES) for item in items) + "]"


def random_object(rng: random.Random, depth: int) -> str:
    members = [
        json.dumps(f"k{i}{rng.choice(_CHARS)}") + rng.choice(_SPACES) + ":" + random_value(rng, depth)
        for i in range(rng.randrange(5))
    ]
    return "{" + rng.choice(_SPACES) + ", ".join(members) + rng.choice(_SPACES) + "}"


def test_random_documents_decode_as_the_number_rule_says():
    rng = random.Random(20240611)
    fast = 0
    for _ in range(3000):
        text = rng.choice(_SPACES) + random_object(rng, 4) + rng.choice(_SPACES)
        expected = reference(text)
        assert same(decode_payload(text), expected), text
        assert same(decode_iteratively(text), expected), text
        fast += not _may_lose(text)
    assert fast > 300  # the orjson path was exercised too


def test_short_numbers_take_the_fast_path_and_agree_with_the_rule():
    rng = random.Random(7)
    fast = 0
    for _ in range(20000):
        token = rng.choice(
            [
                repr(rng.uniform(-1e3, 1e3))[:16],
                str(rng.randrange(-(10**15) + 1, 10**15)),
                f"{rng.randrange(10**7)}.{rng.randrange(10**7):07d}",
                repr(rng.random() * 10.0 ** rng.randrange(-300, 300)),
            ]
        )
        text = f'{{"n": {token}}}'
        if not _may_lose(text):
            assert same(decode_payload(text), reference(text)), text
            fast += 1
    assert fast > 5000
