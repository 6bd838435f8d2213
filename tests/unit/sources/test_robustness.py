"""Property tests: mutated real records never crash the reader or a source, and never hurt their neighbours.

Every test builds three lines, ``good + mutated + good``, reads them with
:func:`~chainwatch.sources.reader.read_bytes` and runs :meth:`~chainwatch.sources.Normalizer.run` over them. The
base records are real samples of every format (eslogger, ECS, Jamf Protect, unified log, OCSF); the mutations are
the ways real pipelines break records: truncation, a value of the wrong type, deleted keys, huge strings, invalid
UTF-8 and absurd nesting. The properties:

- nothing raises; every event produced can be serialized the way ``chainwatch normalize`` does, and each of its
  fields holds a value of the type the event model declares (ints within 64 bits);
- the two good records produce exactly the events they produce on their own;
- the mutated record is accounted for exactly once: mapped to events, skipped with a label, or rejected with a
  non-empty reason, and the run's counters add up.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch import events as events_module
from chainwatch.events import AnyEvent
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import Record, Rejection, loads_lenient, read_bytes, read_path

REPO = Path(__file__).parents[3]
DATA = Path(__file__).parent / "data"
ELASTIC = REPO.parent / "shared" / "fixtures" / "elastic_macos_attack_dataset"
HOST = "fallback-host"
MEGABYTE = 1 << 20
Doc = dict[str, Any]
Path_ = tuple[str | int, ...]

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the corpus: real records of every format, as the one-line JSON documents a reader meets ----------------


def _json_lines(path: Path) -> list[Doc]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _ecs_docs() -> list[Doc]:
    docs = _json_lines(REPO / "events" / "mac-01" / "elastic-network.ndjson")
    if ELASTIC.is_dir():
        # The shared Elastic files are Elasticsearch hits, some in non-JSON layouts: let the reader open them,
        # then put each document back into a hit so the envelope is mutated as well.
        for path in sorted(ELASTIC.glob("*.json")):
            for index, item in enumerate(read_path(path)):
                if isinstance(item, Record):
                    docs.append({"_index": "logs-endpoint", "_id": f"{path.stem}-{index}", "_source": item.data})
    return docs


CORPUS: dict[str, list[Doc]] = {
    "eslogger": _json_lines(DATA / "eslogger_mullvad.jsonl"),
    "ecs": _ecs_docs(),
    "jamf": [orjson.loads(path.read_bytes()) for path in sorted((DATA / "jamf_protect").glob("*.json"))],
    "unifiedlog": _json_lines(REPO / "events" / "mac-01" / "unifiedlog.ndjson"),
    "ocsf": _json_lines(REPO / "events" / "mac-02" / "ocsf.json"),
}
FORMATS = sorted(CORPUS)


def _dumps(doc: Any) -> bytes:
    """One JSON line; the stdlib encoder, because orjson refuses ints beyond 64 bits (a mutation we want)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _comparable(events: list[AnyEvent]) -> list[dict[str, Any]]:
    """Events as dicts without their location, which differs between a lone record and the same record later."""
    return [{k: v for k, v in event.to_dict().items() if k != "raw"} for event in events]


def _alone(line: bytes) -> list[dict[str, Any]]:
    return _comparable(list(Normalizer().run(read_bytes(line, "alone"), HOST)))


#: Good neighbours: real records (any format) that produce events, with the events they produce on their own.
GOOD: list[tuple[bytes, list[dict[str, Any]]]] = [
    (line, expected)
    for line in (_dumps(doc) for fmt in FORMATS for doc in CORPUS[fmt])
    if (expected := _alone(line))
]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every location below ``node`` (dict keys and list indices), depth first."""
    found: list[Path_] = []
    children: list[tuple[str | int, Any]] = (
        list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
    )
    for key, child in children:
        here = (*prefix, key)
        found.append(here)
        found.extend(_paths(child, here))
    return found


PATHS: dict[str, list[list[Path_]]] = {fmt: [_paths(doc) for doc in CORPUS[fmt]] for fmt in FORMATS}


def _copy(doc: Doc) -> Doc:
    # A JSON round trip is the cheapest deep copy of a JSON document.
    copied: Doc = orjson.loads(orjson.dumps(doc))
    return copied


def _parent(doc: Doc, path: Path_) -> Any:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    return node


def _set(doc: Doc, path: Path_, value: Any) -> None:
    _parent(doc, path)[path[-1]] = value


def _has(node: Any, key: str | int) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and key < len(node)


def _delete(doc: Doc, path: Path_) -> None:
    """Delete ``path`` if it still exists (an earlier deletion may have removed it or shifted a list)."""
    node: Any = doc
    for key in path[:-1]:
        if not _has(node, key):
            return
        node = node[key]
    if _has(node, path[-1]):
        del node[path[-1]]


# --- mutations ------------------------------------------------------------------------------------------------

WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**31), max_value=2**31),
    st.sampled_from([0, -1, 2**63 - 1, 2**64 - 1, -(2**63), 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", " ", "-1", "0x10", "1e999", "²", "9" * 5000, "2025-13-45T99:99:99Z", "/", "\x00"]),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
)


@dataclass
class Mutated:
    """A mutated line and what the reader must make of it."""

    line: bytes
    #: the reader rejects this line before any source sees it (not valid JSON)
    reader_rejects: bool = False


@st.composite
def _base(draw: st.DrawFn, fmt: str) -> tuple[Doc, list[Path_]]:
    index = draw(st.integers(0, len(CORPUS[fmt]) - 1))
    return _copy(CORPUS[fmt][index]), PATHS[fmt][index]


@st.composite
def truncated(draw: st.DrawFn, fmt: str) -> Mutated:
    doc, _ = draw(_base(fmt))
    line = _dumps(doc)
    cut = draw(st.integers(1, len(line) - 1))
    # Every non-empty proper prefix of a JSON object is invalid JSON.
    return Mutated(line[:cut], reader_rejects=True)


@st.composite
def wrong_type(draw: st.DrawFn, fmt: str) -> Mutated:
    doc, paths = draw(_base(fmt))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        try:
            _set(doc, path, draw(WRONG_VALUES))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this location
    return Mutated(_dumps(doc))


@st.composite
def deleted_keys(draw: st.DrawFn, fmt: str) -> Mutated:
    doc, paths = draw(_base(fmt))
    keys = [path for path in paths if isinstance(path[-1], str)]
    # Short paths (top-level and envelope keys) are the ones that matter most: draw them more often.
    short = [path for path in keys if len(path) <= 2]
    chosen = draw(st.lists(st.sampled_from(short) | st.sampled_from(keys), min_size=1, max_size=6))
    for path in sorted(chosen, key=len, reverse=True):
        _delete(doc, path)
    return Mutated(_dumps(doc))


@st.composite
def huge_string(draw: st.DrawFn, fmt: str) -> Mutated:
    doc, paths = draw(_base(fmt))
    path = draw(st.sampled_from(paths))
    char = draw(st.sampled_from(["A", "/", "é", "\u2028", " ", "\\"]))
    old = _parent(doc, path)[path[-1]]
    huge = char * MEGABYTE
    # Either replace the value or grow the real string (so a prefix the source matches on survives).
    _set(doc, path, old + huge if isinstance(old, str) and draw(st.booleans()) else huge)
    return Mutated(_dumps(doc))


def _invalid_utf8(blob: bytes) -> bool:
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _lenient_json(blob: bytes) -> bool:
    try:
        loads_lenient(blob)
    except (ValueError, RecursionError):
        return False
    return True


@st.composite
def invalid_utf8(draw: st.DrawFn, fmt: str) -> Mutated:
    doc, _ = draw(_base(fmt))
    line = _dumps(doc)
    junk = draw(st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=4).map(bytes).filter(_invalid_utf8))
    at = draw(st.integers(0, len(line)))
    spliced = line[:at] + junk + line[at:]
    # orjson accepts only valid UTF-8; the reader then decodes the line leniently (invalid bytes become U+FFFD), so
    # the line is rejected (as "not valid JSON") only when the junk broke the JSON structure, not inside a string.
    return Mutated(spliced, reader_rejects=_invalid_utf8(spliced) and not _lenient_json(spliced))


@st.composite
def deep_nesting(draw: st.DrawFn, fmt: str) -> Mutated:
    doc, paths = draw(_base(fmt))
    path = draw(st.sampled_from(paths))
    depth = draw(st.sampled_from([100, 900, 5000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    marker = "\x01deep\x01"
    _set(doc, path, marker)
    # Built as bytes: the stdlib encoder would itself hit the recursion limit on 5000 levels.
    line = _dumps(doc).replace(_dumps(marker), opener * depth + b"1" + closer * depth, 1)
    # orjson refuses documents nested deeper than 1024 levels.
    return Mutated(line, reader_rejects=depth > 1024)


MUTATIONS: dict[str, Callable[[str], st.SearchStrategy[Mutated]]] = {
    "truncated": truncated,
    "wrong_type": wrong_type,
    "deleted_keys": deleted_keys,
    "huge_string": huge_string,
    "invalid_utf8": invalid_utf8,
    "deep_nesting": deep_nesting,
}


# --- the property ---------------------------------------------------------------------------------------------


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, vars(events_module))
    return _HINTS[cls]


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` matches an event-model annotation (ints must also fit the 64 bits JSON output allows)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(item, typing.get_args(hint)[0]) for item in value)
    if hint is int:
        return type(value) is int and -(2**63) <= value < 2**64
    if hint is float:
        return type(value) is float
    if hint is Any:
        return True
    return isinstance(value, hint)


def _well_typed(obj: Any) -> list[str]:
    """Fields of an event (and the dataclasses inside it) whose values do not match their annotations."""
    wrong: list[str] = []
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _fits(value, hints[f.name]):
            wrong.append(f"{type(obj).__name__}.{f.name}={value!r:.60}")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            wrong.extend(_well_typed(value))
    return wrong


def _check_sandwich(first: tuple[bytes, list[dict[str, Any]]], mutated: Mutated,
                    last: tuple[bytes, list[dict[str, Any]]]) -> None:
    data = first[0] + b"\n" + mutated.line + b"\n" + last[0] + b"\n"
    rejections: list[Rejection] = []
    normalizer = Normalizer(on_reject=rejections.append)
    stats = normalizer.stats
    by_line: dict[int | None, list[AnyEvent]] = {}
    outcomes: list[str] = []
    items = list(read_bytes(data, "mem"))
    for item in items:
        skipped_before, rejected_before = sum(stats.skipped.values()), stats.rejected
        events = list(normalizer.run([item], HOST))
        skipped = sum(stats.skipped.values()) - skipped_before
        rejected = stats.rejected - rejected_before
        state = (bool(events), skipped, rejected)
        assert state in {(True, 0, 0), (False, 1, 0), (False, 0, 1)}, f"record not accounted once: {state}"
        outcomes.append("mapped" if events else "skipped" if skipped else "rejected")
        by_line.setdefault(item.ref.line, []).extend(events)
        for event in events:
            # What the normalize command does with every event; a crash here is a crash of the run.
            orjson.dumps(event.to_dict())
            assert _well_typed(event) == [] and event.host, event

    assert _comparable(by_line.get(1, [])) == first[1]
    assert _comparable(by_line.get(3, [])) == last[1]
    middle = [outcome for item, outcome in zip(items, outcomes, strict=True) if item.ref.line == 2]
    # A mutated line is one JSON object or not JSON at all: exactly one record either way.
    assert len(middle) == 1
    if mutated.reader_rejects:
        assert middle == ["rejected"]
        assert next(r.reason for r in rejections if r.ref.line == 2).startswith("not valid JSON")
    assert all(rejection.reason.strip() for rejection in rejections)
    assert stats.records == len(items)
    assert stats.records == outcomes.count("mapped") + stats.rejected + sum(stats.skipped.values())
    assert stats.event_count == sum(len(events) for events in by_line.values())


GOOD_LINES = st.sampled_from(GOOD)


def _sandwich_of(name: str, fmt: str, data: st.DataObject) -> None:
    first = data.draw(GOOD_LINES, label="first")
    mutated = data.draw(MUTATIONS[name](fmt), label=f"{name}({fmt})")
    _check_sandwich(first, mutated, data.draw(GOOD_LINES, label="last"))


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_robustness_truncated_record_between_good_ones_is_rejected_alone(fmt: str, data: st.DataObject) -> None:
    _sandwich_of("truncated", fmt, data)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_robustness_wrong_type_values_record_is_accounted_and_harmless(fmt: str, data: st.DataObject) -> None:
    _sandwich_of("wrong_type", fmt, data)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_robustness_deleted_keys_record_is_accounted_and_harmless(fmt: str, data: st.DataObject) -> None:
    _sandwich_of("deleted_keys", fmt, data)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_robustness_huge_string_record_is_accounted_and_harmless(fmt: str, data: st.DataObject) -> None:
    _sandwich_of("huge_string", fmt, data)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_robustness_invalid_utf8_record_is_read_leniently_or_rejected_alone(fmt: str, data: st.DataObject) -> None:
    _sandwich_of("invalid_utf8", fmt, data)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_robustness_deep_nesting_record_is_accounted_and_harmless(fmt: str, data: st.DataObject) -> None:
    _sandwich_of("deep_nesting", fmt, data)


def test_robustness_corpus_has_event_producing_records_of_every_format() -> None:
    assert set(FORMATS) == {"eslogger", "ecs", "jamf", "unifiedlog", "ocsf"}
    assert all(len(CORPUS[fmt]) >= 3 for fmt in FORMATS)
    produced = {event["source"] for _, expected in GOOD for event in expected}
    assert produced == set(FORMATS)


def test_robustness_type_check_flags_wrong_field_types() -> None:
    # The property's type check must be able to fail, or "mapped" would prove nothing.
    ref = events_module.ProcessRef(pid="12", args=("a", 1), uid=2**64)  # type: ignore[arg-type]
    assert _well_typed(ref) == [
        "ProcessRef.pid='12'", "ProcessRef.args=('a', 1)", "ProcessRef.uid=18446744073709551616",
    ]
