"""Reading telemetry files: plain or gzip, JSON lines or concatenated JSON, with a location for every record.

Two modes, chosen per file by its first non-empty line:

- **lines** (the fast path): the first line is a complete JSON value, so each line is decoded on its own with
  orjson. A bad line becomes a :class:`Rejection` carrying ``file:line``; its neighbours are unaffected.
- **documents**: the first line is not a complete value (pretty-printed or concatenated objects, Kibana console
  output with ``\"\"\"triple-quoted\"\"\"`` strings, or objects wrapped in one extra pair of braces). The file is
  decoded object by object with :meth:`json.JSONDecoder.raw_decode`; a span that cannot be decoded is rejected up
  to the next object that starts at the beginning of a line, and decoding resumes there.

Envelopes are opened here as well, so sources only ever see one event document: Elasticsearch hits
(``_source``), search responses (``hits.hits``), JSON arrays and Jamf Protect's ``input`` wrapper.

Names, paths and arguments are attacker-controlled, and not every producer turns the bytes of a file name or an
argv entry into valid Unicode first. orjson accepts only valid UTF-8 and paired surrogate escapes, so a line it
refuses is decoded once more, leniently (:func:`loads_lenient`): invalid UTF-8 bytes and lone ``\\udXXX`` escapes
become U+FFFD, and the record is kept instead of being lost along with the chain it belongs to. Only a line that
is not JSON even then is rejected.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from chainwatch.events import RawRef

#: File name endings read when walking a folder (files named explicitly are always read).
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".log", ".gz", ".ocsf")
_MAX_EXCERPT = 160
_MAX_DEPTH = 64
_TRIPLE_QUOTED = re.compile(r'"""(.*?)"""', re.DOTALL)
_NEXT_OBJECT = re.compile(r"\n[ \t]*[{\[]")
_DECODER = json.JSONDecoder()
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record set aside, with the reason a person needs to fix or explain it."""

    ref: RawRef
    reason: str
    format_guess: str | None = None
    excerpt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": str(self.ref),
            "reason": self.reason,
            "format_guess": self.format_guess,
            "excerpt": self.excerpt,
        }


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded event document and where it came from."""

    data: Any
    ref: RawRef


Item = Record | Rejection


def excerpt(raw: bytes | str) -> str:
    """A short, printable excerpt of a raw record for a rejection message."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return text if len(text) <= _MAX_EXCERPT else text[:_MAX_EXCERPT] + "..."


def _scrub(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys included) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub(_REPLACEMENT, value)
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def loads_lenient(raw: bytes | str) -> Any:
    """Decode one JSON value that orjson refused: invalid UTF-8 and lone surrogate escapes become U+FFFD.

    The text stays valid Unicode, so events built from it serialize like any other. Raises
    :class:`ValueError` when the text is not JSON at all (``NaN`` and ``Infinity`` included), and
    :class:`RecursionError` for absurd nesting.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    data = json.loads(text, parse_constant=_no_constant)
    return _scrub(data) if "\\u" in text else data


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (orjson refuses them); the lenient decoder must not accept more than that.
    raise ValueError(f"{name} is not JSON")


def _loads_line(raw: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` for a JSON line, or ``(None, reason)``; orjson first, the lenient decoder second."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        reason = f"not valid JSON: {exc}"
    try:
        return loads_lenient(raw), None
    except (ValueError, RecursionError):
        return None, reason


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files to read: each file named, and data files found recursively (sorted) under each folder named."""
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and name.lower().endswith(DATA_SUFFIXES):
                        yield Path(root) / name
        else:
            yield path


def read_path(path: Path) -> Iterator[Item]:
    """Read one file (plain or gzip) and yield its records and rejections in file order."""
    origin = str(path)
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
    except OSError as exc:
        yield Rejection(RawRef(origin), f"cannot open file: {exc.strerror or exc}")
        return
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as handle:
            yield from read_stream(handle, origin)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # Records read before the damage were already yielded; the rest of the file is set aside with the reason.
        yield Rejection(RawRef(origin), f"cannot read file: {exc}")


def read_bytes(data: bytes, origin: str) -> Iterator[Item]:
    """Read records from bytes already in memory (plain or gzip)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            yield Rejection(RawRef(origin), f"invalid gzip data: {exc}", excerpt=excerpt(data[:40]))
            return
    yield from read_stream(iter(data.splitlines(keepends=True)), origin)


def read_stream(lines: Iterable[bytes], origin: str) -> Iterator[Item]:
    """Read records from an iterable of raw lines (a binary file object or a list of lines)."""
    iterator = iter(lines)
    line_no = 0
    for raw in iterator:
        line_no += 1
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped[:1] in (b"{", b"["):
            break
        # A text line before the data (``log stream`` prints "Filtering the log data using ..." first): set it
        # aside and keep looking for the first record, so the file stays on the fast JSON-lines path.
        yield Rejection(RawRef(origin, line_no), "not a JSON record (text line)", excerpt=excerpt(raw))
    else:
        return
    first, reason = _loads_line(raw)
    if reason is not None:
        rest = b"".join(iterator)
        yield from _read_documents(raw + rest, origin, line_no)
        return
    yield from _expand(first, RawRef(origin, line_no))
    loads = orjson.loads
    for raw in iterator:
        line_no += 1
        if not raw.strip():
            continue
        try:
            data = loads(raw)
        except orjson.JSONDecodeError:
            data, reason = _loads_line(raw)
            if reason is not None:
                yield Rejection(RawRef(origin, line_no), reason, excerpt=excerpt(raw))
                continue
        if type(data) is dict and "_source" not in data and "input" not in data and "hits" not in data:
            yield Record(data, RawRef(origin, line_no))
        else:
            yield from _expand(data, RawRef(origin, line_no))


def _read_documents(blob: bytes, origin: str, first_line: int) -> Iterator[Item]:
    """Decode concatenated / pretty-printed / Kibana-console / brace-wrapped JSON documents."""
    text = blob.decode("utf-8", "replace")
    if '"""' in text:
        text = _TRIPLE_QUOTED.sub(lambda m: json.dumps(m.group(1)), text)
    # json decodes a lone surrogate escape into a string orjson cannot write back: scrub only when one may occur.
    scrub = "\\u" in text
    pos, end, wrappers = 0, len(text), 0
    while pos < end:
        char = text[pos]
        if char in " \t\r\n,":
            pos += 1
            continue
        line = first_line + text.count("\n", 0, pos)
        if char == "}" and wrappers:
            wrappers -= 1
            pos += 1
            continue
        if char == "{" and _starts_wrapper(text, pos):
            # "{ {...}, {...} }": an extra pair of braces around several objects (seen in public datasets).
            wrappers += 1
            pos += 1
            continue
        try:
            data, stop = _DECODER.raw_decode(text, pos)
            if scrub:
                data = _scrub(data)
        except (json.JSONDecodeError, RecursionError) as exc:
            skip = _NEXT_OBJECT.search(text, pos + 1)
            stop = skip.start() + 1 if skip else end
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
            yield Rejection(RawRef(origin, line), f"not valid JSON: {reason}", excerpt=excerpt(text[pos:stop]))
            pos = stop
            continue
        yield from _expand(data, RawRef(origin, line))
        pos = stop


def _starts_wrapper(text: str, pos: int) -> bool:
    nxt = pos + 1
    while nxt < len(text) and text[nxt] in " \t\r\n":
        nxt += 1
    return nxt < len(text) and text[nxt] == "{"


def _expand(data: Any, ref: RawRef, depth: int = 0) -> Iterator[Item]:
    """Open envelopes until one event document remains."""
    if depth > _MAX_DEPTH:
        yield Rejection(ref, "envelopes nested too deep")
        return
    if isinstance(data, list):
        for element in data:
            yield from _expand(element, ref, depth + 1)
        return
    if not isinstance(data, dict):
        yield Rejection(ref, f"expected a JSON object, got {type(data).__name__}", excerpt=excerpt(str(data)))
        return
    source = data.get("_source")
    if isinstance(source, dict) and ("_index" in data or "_id" in data):
        yield Record(source, ref)
        return
    hits = data.get("hits")
    if isinstance(hits, dict) and isinstance(hits.get("hits"), list):
        yield from _expand(hits["hits"], ref, depth + 1)
        return
    inner = data.get("input")
    if isinstance(inner, dict) and ("caid" in data or "certid" in data):
        yield Record(inner, ref)
        return
    yield Record(data, ref)
