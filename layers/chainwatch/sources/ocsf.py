"""PLACEHOLDER: being written; replaced by the real module."""

from __future__ import annotations

from typing import Any

from chainwatch.errors import RecordError
from chainwatch.events import AnyEvent, RawRef, SourceFormat

FORMAT = SourceFormat.OCSF


def detect(doc: dict[str, Any]) -> bool:
    return False


def map_record(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    raise RecordError("not implemented")
