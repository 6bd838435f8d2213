"""JSON-ready renderings of canonical events (the ``normalize`` output and the evidence in findings)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from chainwatch.events import Event


def iso_ns(time_ns: int) -> str:
    """RFC 3339 UTC text with all nine fractional digits: ``2025-08-07T15:13:09.811587464Z``."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if item is None or item == ():
                continue
            out[f.name] = _plain(item)
        return out
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def event_to_dict(event: Event) -> dict[str, Any]:
    """One canonical event as a flat-ish JSON mapping (``None`` and empty fields left out)."""
    out: dict[str, Any] = {"kind": event.kind.value, "time": iso_ns(event.time_ns)}
    for f in fields(event):
        value = getattr(event, f.name)
        if value is None or value == ():
            continue
        if f.name == "raw":
            out["raw"] = str(value)
        else:
            out[f.name] = _plain(value)
    return out
