"""Reading telemetry files: plain or gzip, JSON lines or concatenated JSON, with a location for every record.

Two modes, chosen per file by its first non-empty line:

- **lines** (the fast path): the first line is a complete JSON value, so each line is decoded on its own with
  orjson. A bad line becomes a :class:`Rejection` carrying ``file:line``; its neighbours are unaffected.
- **documents**: the first line is not a complete value (pretty-printed or concatenated objects, Kibana console
  output with ``\"\"\"triple-quoted\"\"\"`` strings, or objects wrapped in one extra pair of braces). The file is
  decoded object by object with :meth:`json.JSONDecoder.raw_decode`; a span that cannot be decoded is rejected up
  to the next object that starts at the beginning of a line, and decoding resumes there.

Envelopes are opened here as well, so sources only ever see one event document, and a record inside an envelope
counts as one record (the envelope itself is not one):

- JSON arrays (plain exports, OCSF / Security Lake exports, ``log show --style json``), opened element by element
  in documents mode so each element keeps its own line and one broken element never takes its neighbours along;
- Elasticsearch hits (``_index``/``_id`` with ``_source``; elasticdump writes them as NDJSON), and hits that carry
  ``fields`` instead of ``_source`` (Kibana 8 Discover, ``"_source": false`` searches): the flattened
  ``fields`` map is rebuilt into the nested document (see :func:`document_from_fields`);
- ``_search`` / scroll / point-in-time responses (``hits.hits``), ``_msearch`` responses (``responses[]``), async
  search responses (``response``), Kibana's inspector export (``rawResponse``);
- EQL responses (``_eql/search``): ``hits.events`` and every event of every ``hits.sequences[].events``;
- Jamf Protect's ``input`` wrapper.

What cannot be opened is a :class:`Rejection` with its reason (a hit without ``_source`` or ``fields``, a response
without hits, an ``_msearch`` item that is an error, an EQL sequence without events): nothing is dropped silently.

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from chainwatch.events import RawRef
from chainwatch.sources.relevance import Gated

#: File name endings read when walking a folder (files named explicitly are always read).
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".log", ".gz", ".ocsf")
_MAX_EXCERPT = 160
_MAX_DEPTH = 64
_TRIPLE_QUOTED = re.compile(r'"""(.*?)"""', re.DOTALL)
_NEXT_OBJECT = re.compile(r"\n[ \t]*[{\[]")
#: Inside an opened array: the start of the next element after ``},{`` (``log show --style json`` writes that).
_NEXT_ELEMENT = re.compile(r"[}\]][ \t\r\n]*,[ \t\r\n]*(?=[{\[])")
_DECODER = json.JSONDecoder()
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
#: ``[INFO] ...``, ``[eslogger] ...``: a bracketed word opens a text line, not a JSON array.
_BRACKETED_WORD = re.compile(rb"\[[A-Za-z_][\w.-]*\]")
#: Top-level keys that mark an envelope (the JSON-lines fast path hands every other object straight on).
_ENVELOPE_KEYS = frozenset({"_source", "_id", "_index", "hits", "input", "rawResponse", "responses", "is_running"})
#: Keys an Elasticsearch hit carries besides its document; a hit made only of these holds no event.
_HIT_METADATA = frozenset({"_index", "_id", "_type", "_score", "_version", "_seq_no", "_primary_term", "_routing",
                           "_ignored", "_shard", "_node", "_explanation", "sort", "highlight", "matched_queries",
                           "inner_hits", "_nested", "join_keys"})
#: ECS fields that are arrays by definition: a ``fields`` value of one element stays a one-element list for them.
ECS_LIST_FIELDS = frozenset({
    "event.category", "event.type", "process.args", "process.parent.args", "process.Ext.ancestry",
    "process.parent.Ext.ancestry", "process.env_vars", "tags", "host.ip", "host.mac", "observer.ip",
    "observer.mac", "dns.resolved_ip", "dns.answers", "file.Ext.header_bytes", "threat.enrichments",
    "process.code_signature.Ext", "process.Ext.code_signature", "process.parent.Ext.code_signature",
    "file.Ext.code_signature", "dll.Ext.code_signature",
})
_LIST_PREFIXES = ("related.",)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record set aside, with the reason a person needs to fix or explain it."""

    ref: RawRef
    reason: str
    format_guess: str | None = None
    excerpt: str = ""

    @property
    def category(self) -> str:
        """The reason without its particulars (positions, values, quoted text), for counts per reason.

        >>> Rejection(RawRef("f", 3), "not valid JSON: unexpected character: line 1 column 9 (char 8)").category
        'not valid JSON'
        >>> Rejection(RawRef("f"), "invalid timestamp '2021-13-01'").category
        'invalid timestamp'
        """
        return reason_category(self.reason)

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


Item = Record | Rejection | Gated
#: Asked about a raw line before it is decoded: a label for a line that cannot matter, else ``None``.
LineGate = Callable[[bytes], Gated | None]

_QUOTED = re.compile(r"""\s*('[^']*'|"[^"]*"|`[^`]*`)""")


def reason_category(reason: str) -> str:
    """A rejection reason without its particulars: the text before the first ``": "``, quoted parts removed."""
    head = reason.split(": ", 1)[0]
    head = _QUOTED.sub("", head).strip(" ,;")
    return head or reason.strip() or "no reason given"


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


#: A folder holding a file of this name is not telemetry and is skipped by folder walks (``events/lambda/`` holds
#: the ``sam local`` event files); its files are still read when named explicitly.
IGNORE_MARKER = ".chainwatch-ignore"


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files to read: each file named, and data files found recursively (sorted) under each folder named, except
    hidden ones and folders holding an :data:`IGNORE_MARKER` file."""
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                if IGNORE_MARKER in files:
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and name.lower().endswith(DATA_SUFFIXES):
                        yield Path(root) / name
        else:
            yield path


def read_path(path: Path, gate: LineGate | None = None) -> Iterator[Item]:
    """Read one file (plain or gzip) and yield its records and rejections in file order.

    ``gate`` is asked about every JSON line after the first before it is decoded (see :func:`read_stream`).
    """
    origin = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        yield Rejection(RawRef(origin), f"cannot open file: {exc.strerror or exc}")
        return
    try:
        with handle:
            magic = handle.peek(2)[:2]
            if magic == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                    yield from read_stream(unzipped, origin, gate)
            else:
                yield from read_stream(handle, origin, gate)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # Records read before the damage were already yielded; the rest of the file is set aside with the reason.
        yield Rejection(RawRef(origin), f"cannot read file: {exc}")


def read_bytes(data: bytes, origin: str, gate: LineGate | None = None) -> Iterator[Item]:
    """Read records from bytes already in memory (plain or gzip)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            yield Rejection(RawRef(origin), f"invalid gzip data: {exc}", excerpt=excerpt(data[:40]))
            return
    yield from read_stream(iter(data.splitlines(keepends=True)), origin, gate)


def read_stream(lines: Iterable[bytes], origin: str, gate: LineGate | None = None) -> Iterator[Item]:
    """Read records from an iterable of raw lines (a binary file object or a list of lines).

    On the JSON-lines path, ``gate`` (a :class:`~chainwatch.sources.relevance.RelevanceGate`) sees each line
    before it is decoded; a line it labels is never decoded, only counted: the counts per label come as
    :class:`~chainwatch.sources.relevance.Gated` items at the end of the stream.
    """
    iterator = iter(lines)
    line_no = 0
    for raw in iterator:
        line_no += 1
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped[:1] == b"{" or (stripped[:1] == b"[" and not _BRACKETED_WORD.match(stripped)):
            break
        # A text line before the data (``log stream`` prints "Filtering the log data using ..." first): set it
        # aside and keep looking for the first record, so the file stays on the fast JSON-lines path.
        yield Rejection(RawRef(origin, line_no), "not a JSON record (text line)", excerpt=excerpt(raw))
    else:
        return
    counts: dict[Gated, int] = {}
    # The first line decides the reading mode: objects concatenated on one line (what some shippers put in one
    # Kinesis record) are read one by one in documents mode, so such a line is never gated whole.
    gated = gate(raw) if gate is not None and b"}{" not in raw and b"} {" not in raw and b"}\t{" not in raw else None
    if gated is not None:
        # A line the gate recognises is one whole record, so the file is JSON lines like any whose first line
        # decodes (the gate passes anything that does not look like one complete object).
        counts[gated] = 1
    else:
        first, reason = _loads_line(raw)
        if reason is not None:
            rest = b"".join(iterator)
            yield from _read_documents(raw + rest, origin, line_no)
            return
        yield from _expand(first, RawRef(origin, line_no))
    loads = orjson.loads
    try:
        for raw in iterator:
            line_no += 1
            if not raw or raw.isspace():
                continue
            if gate is not None:
                gated = gate(raw)
                if gated is not None:
                    counts[gated] = counts.get(gated, 0) + 1
                    continue
            try:
                data = loads(raw)
            except orjson.JSONDecodeError:
                data, reason = _loads_line(raw)
                if reason is not None:
                    yield Rejection(RawRef(origin, line_no), reason, excerpt=excerpt(raw))
                    continue
            if type(data) is dict and _ENVELOPE_KEYS.isdisjoint(data):
                yield Record(data, RawRef(origin, line_no))
            else:
                yield from _expand(data, RawRef(origin, line_no))
    except (OSError, EOFError, zlib.error):
        # The file broke part way (truncated gzip, I/O error): what was gated before the damage was still read.
        yield from _gated_counts(counts)
        raise
    yield from _gated_counts(counts)


def _gated_counts(counts: dict[Gated, int]) -> Iterator[Gated]:
    for gated, count in counts.items():
        yield Gated(gated.source, gated.label, count)


def _read_documents(blob: bytes, origin: str, first_line: int) -> Iterator[Item]:
    """Decode concatenated / pretty-printed / Kibana-console / brace-wrapped JSON documents and JSON arrays.

    An array (``[`` followed by ``{``, ``[`` or ``]``) or an extra pair of braces (``{`` followed by ``{``) is
    opened, and its elements are decoded one at a time: each keeps its own line, and a broken element is rejected
    up to the start of the next one (``},{`` or an object at the start of a line) without losing the others.
    """
    text = blob.decode("utf-8", "replace")
    if '"""' in text:
        text = _TRIPLE_QUOTED.sub(lambda m: json.dumps(m.group(1)), text)
    # json decodes a lone surrogate escape into a string orjson cannot write back: scrub only when one may occur.
    scrub = "\\u" in text
    pos, end = 0, len(text)
    closers: list[str] = []
    lines = _LineCounter(text, first_line)
    while pos < end:
        char = text[pos]
        if char in " \t\r\n,":
            pos += 1
            continue
        if closers and char == closers[-1]:
            closers.pop()
            pos += 1
            continue
        following = _next_char(text, pos)
        if (char == "{" and following == "{") or (char == "[" and following in ("{", "[", "]")):
            # "{ {...}, {...} }" (an extra pair of braces, seen in public datasets) or "[ {...}, {...} ]".
            closers.append("}" if char == "{" else "]")
            pos += 1
            continue
        line = lines.at(pos)
        try:
            data, stop = _DECODER.raw_decode(text, pos)
            if scrub:
                data = _scrub(data)
        except (json.JSONDecodeError, RecursionError) as exc:
            stop = _resync(text, pos, inside=bool(closers))
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
            yield Rejection(RawRef(origin, line), f"not valid JSON: {reason}", excerpt=excerpt(text[pos:stop]))
            pos = stop
            continue
        yield from _expand(data, RawRef(origin, line))
        pos = stop


class _LineCounter:
    """Line numbers of increasing positions in a text, counted incrementally (linear, not quadratic)."""

    def __init__(self, text: str, first_line: int) -> None:
        self._text, self._pos, self._line = text, 0, first_line

    def at(self, pos: int) -> int:
        self._line += self._text.count("\n", self._pos, pos)
        self._pos = pos
        return self._line


def _next_char(text: str, pos: int) -> str:
    nxt = pos + 1
    while nxt < len(text) and text[nxt] in " \t\r\n":
        nxt += 1
    return text[nxt] if nxt < len(text) else ""


def _resync(text: str, pos: int, *, inside: bool) -> int:
    """Where decoding resumes after a span that cannot be decoded: the next object at the start of a line, or
    (inside an opened array) the next ``},{`` element boundary, whichever comes first."""
    candidates = []
    at_line = _NEXT_OBJECT.search(text, pos + 1)
    if at_line:
        candidates.append(at_line.start() + 1)
    if inside:
        element = _NEXT_ELEMENT.search(text, pos + 1)
        if element:
            candidates.append(element.end())
    return min(candidates) if candidates else len(text)


def document_from_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The nested document of an Elasticsearch hit's ``fields`` map.

    ``fields`` holds every value as an array under its dotted name (``{"process.pid": [1377]}``). Single values
    are unwrapped, except for fields ECS defines as arrays (:data:`ECS_LIST_FIELDS`, ``related.*``), and dotted
    names become nested objects. A multi-field (``process.name.text`` beside ``process.name``) repeats its parent's
    value and is dropped; ``nested`` fields (arrays of objects) are rebuilt the same way, element by element.

    >>> document_from_fields({"process.pid": [7], "process.name": ["sh"], "process.name.text": ["sh"],
    ...                       "event.category": ["process"], "process.args": ["sh", "-c"]})
    {'process': {'pid': 7, 'name': 'sh', 'args': ['sh', '-c']}, 'event': {'category': ['process']}}
    """
    out: dict[str, Any] = {}
    # Shorter names first, so a keyword is placed before its multi-fields and wins over them.
    for key in sorted(fields, key=lambda k: k.count(".")):
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break  # a multi-field of a value already placed
            node = child
        else:
            if parts[-1] not in node:
                node[parts[-1]] = _field_value(key, fields[key])
    return out


def _field_value(key: str, value: Any) -> Any:
    if not isinstance(value, list):
        return value
    items = [document_from_fields(v) if isinstance(v, dict) else v for v in value]
    if len(items) == 1 and key not in ECS_LIST_FIELDS and not key.startswith(_LIST_PREFIXES):
        return items[0]
    return items


def _expand(data: Any, ref: RawRef, depth: int = 0) -> Iterator[Item]:
    """Open envelopes until one event document remains (see the module docstring for the shapes)."""
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
    if "_index" in data or "_id" in data:
        hit = _open_hit(data, ref)
        if hit is not None:
            yield hit
            return
    hits = data.get("hits")
    if isinstance(hits, dict):
        yield from _open_hits(hits, data, ref, depth)
        return
    for key in ("rawResponse", "response"):
        inner = data.get(key)
        # Kibana's inspector ({"rawResponse": {...}}) and async search ({"id", "is_running", "response": {...}}).
        if isinstance(inner, dict) and isinstance(inner.get("hits"), dict) and (key == "rawResponse"
                                                                                 or "is_running" in data):
            yield from _expand(inner, ref, depth + 1)
            return
    responses = data.get("responses")
    if isinstance(responses, list) and all(isinstance(r, dict) and ("hits" in r or "error" in r)
                                           for r in responses):
        for response in responses:  # _msearch
            if "hits" in response:
                yield from _expand(response, ref, depth + 1)
            else:
                yield Rejection(ref, f"search response item is an error: {_error_text(response.get('error'))}",
                                excerpt=excerpt(_compact(response)))
        return
    inner = data.get("input")
    if isinstance(inner, dict) and ("caid" in data or "certid" in data):
        yield Record(inner, ref)
        return
    yield Record(data, ref)


def _open_hit(data: dict[str, Any], ref: RawRef) -> Item | None:
    """The document of an Elasticsearch hit, a rejection for a hit without one, or ``None`` if ``data`` is not
    a hit (an event document that merely has an ``_id`` key)."""
    source = data.get("_source")
    if isinstance(source, dict) and source:
        return Record(source, ref)
    fields = data.get("fields")
    if isinstance(fields, dict) and fields:
        try:
            return Record(document_from_fields(fields), ref)
        except RecursionError:
            return Rejection(ref, "Elasticsearch hit: fields nested too deep", excerpt=excerpt(_compact(data)))
    if "_source" in data:
        reason = "Elasticsearch hit with an empty or non-object _source"
    elif "fields" in data:
        reason = "Elasticsearch hit with an empty or non-object fields map"
    elif _HIT_METADATA.issuperset(data):
        reason = "Elasticsearch hit without _source or fields (the search left the document out)"
    else:
        return None
    return Rejection(ref, reason, excerpt=excerpt(_compact(data)))


def _open_hits(hits: dict[str, Any], response: dict[str, Any], ref: RawRef, depth: int) -> Iterator[Item]:
    """The events of a search response's ``hits``: ``hits.hits`` (_search), ``hits.events`` and
    ``hits.sequences[].events`` (EQL)."""
    found = False
    for key in ("hits", "events"):
        if isinstance(hits.get(key), list):
            found = True
            yield from _expand(hits[key], ref, depth + 1)
    sequences = hits.get("sequences")
    if isinstance(sequences, list):
        found = True
        for number, sequence in enumerate(sequences):
            events = sequence.get("events") if isinstance(sequence, dict) else None
            if isinstance(events, list):
                yield from _expand(events, ref, depth + 1)
            else:
                yield Rejection(ref, f"EQL sequence without an events list: sequence {number}",
                                excerpt=excerpt(_compact(sequence)))
    if not found:
        yield Rejection(ref, "search response without hits.hits, hits.events or hits.sequences",
                        excerpt=excerpt(_compact(response)))


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip(": ")
    return str(error)[:200]


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)[:400]
    except (TypeError, ValueError, RecursionError):
        return "<unprintable>"
