"""Numbers an attacker spells with thousands of digits never become integers no JSON writer can write back (orjson,
which writes every normalized event and finding, stops at 64 bits): found by the robustness fuzzing."""

from __future__ import annotations

import orjson
import pytest

from chainwatch.events import parse_quarantine
from chainwatch.sources.common import as_int


@pytest.mark.parametrize(("value", "expected"), [
    (501, 501), ("501", 501), (2**63 - 1, 2**63 - 1), (2**63, None), (-(2**63) - 1, None), ("9" * 19, None),
    ("9" * 5000, None), ("²", None), (True, None), (1.0, None),
])
def test_as_int_outside_64_bits_none(value: object, expected: int | None) -> None:
    assert as_int(value) == expected


def test_parse_quarantine_huge_hex_fields_none_and_serializable() -> None:
    quarantine = parse_quarantine("9" * 5000 + ";" + "f" * 40 + ";Safari;X")
    assert quarantine.flags is None and quarantine.timestamp is None and quarantine.agent == "Safari"
    orjson.dumps({"flags": quarantine.flags, "timestamp": quarantine.timestamp})
    assert parse_quarantine("0083;66f0f0f0;Safari;X").flags == 0x83
