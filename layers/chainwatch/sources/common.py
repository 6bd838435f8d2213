"""Small, fast helpers shared by the source modules."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from chainwatch.errors import RecordError

_NS = 1_000_000_000


@lru_cache(maxsize=8192)
def _epoch_seconds(stamp: str) -> int:
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def parse_time_ns(text: Any) -> int:
    """Parse an RFC 3339 / ISO 8601 time (``T`` or space, ``Z`` or a ``+hhmm``/``+hh:mm`` offset) to UTC ns.

    Fractions up to nanoseconds are kept exactly. A time without an offset is taken as UTC. The second-resolution
    prefix is cached, since telemetry carries many events per second.

    >>> parse_time_ns("2025-08-07T15:13:09.811587464Z")
    1754579589811587464
    >>> parse_time_ns("2020-12-10 17:00:10.150141+0100")
    1607616010150141000
    """
    if not isinstance(text, str) or len(text) < 19:
        raise RecordError(f"invalid timestamp {text!r}")
    body, offset = text, ""
    if text[-1] in "Zz":
        body, offset = text[:-1], "+00:00"
    else:
        cut = max(text.rfind("+", 19), text.rfind("-", 19))
        if cut > 0:
            body, offset = text[:cut], text[cut:]
    dot = body.find(".", 19)
    fraction = 0
    if dot > 0:
        digits = body[dot + 1 :]
        if not digits.isdigit():
            raise RecordError(f"invalid timestamp {text!r}")
        fraction = int(digits[:9].ljust(9, "0"))
        body = body[:dot]
    try:
        return _epoch_seconds(body + offset) * _NS + fraction
    except (ValueError, OverflowError, OSError) as exc:
        raise RecordError(f"invalid timestamp {text!r}") from exc


@lru_cache(maxsize=65536)
def parse_start_time_ns(text: str) -> int:
    """:func:`parse_time_ns` for process start times, cached: every event of a process repeats its start time."""
    return parse_time_ns(text)


def epoch_ms_to_ns(value: Any) -> int:
    """Milliseconds since the epoch (OCSF ``timestamp_t``) to ns."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"invalid epoch milliseconds {value!r}")
    return int(value * 1_000_000)


def epoch_s_to_ns(value: Any) -> int:
    """Seconds since the epoch (int or float) to ns."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"invalid epoch seconds {value!r}")
    return round(value * 1_000_000) * 1000


_INT64 = 2**63


def as_int(value: Any) -> int | None:
    """A 64-bit int, or ``None`` for anything else (bools, floats, and numbers no field of ours can hold: a
    lenient decode keeps a 5,000-digit number, which no JSON writer downstream could write back)."""
    if type(value) is int:
        return value if -_INT64 <= value < _INT64 else None
    if isinstance(value, str) and value.isdecimal() and len(value) <= 19:
        number = int(value)
        return number if number < _INT64 else None
    return None


def as_str(value: Any) -> str | None:
    """A non-empty string, or ``None``."""
    return value if isinstance(value, str) and value else None


def as_dict(value: Any) -> dict[str, Any]:
    """The value when it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_str_tuple(value: Any) -> tuple[str, ...]:
    """A tuple of strings from a list (non-strings dropped), or ``()``."""
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def basename(path: str | None) -> str | None:
    if not path:
        return None
    return path.rstrip("/").rsplit("/", 1)[-1] or None
