"""Every envelope and file shape the reader opens, built from real records (the shared Elastic Endpoint fixtures
and the bundled samples), each read to the documents inside with nothing dropped silently.

Shapes: Elasticsearch ``_search`` responses, EQL ``_eql/search`` events and sequences responses (as written by the
Elastic macOS attack dataset: ``is_partial``, ``is_running``, ``took``, ``timed_out``, ``hits.total``), Kibana's
inspector ``rawResponse``, async search, ``_msearch``, elasticdump NDJSON of hits, hits with ``fields`` instead of
``_source``, OCSF / Security Lake JSON arrays, ``log show --style json`` arrays, eslogger with a banner line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from chainwatch.app.cli import main
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import (
    Record,
    Rejection,
    document_from_fields,
    read_bytes,
    read_path,
    reason_category,
)

ELASTIC = "elastic_macos_attack_dataset"
EVENTS = Path(__file__).resolve().parents[3] / "events"


def _items(data: bytes) -> list[Record | Rejection]:
    return list(read_bytes(data, "mem"))


def _records(items: list[Record | Rejection]) -> list[Any]:
    return [i.data for i in items if isinstance(i, Record)]


@pytest.fixture
def hits(shared_fixtures: Path) -> list[dict[str, Any]]:
    """The nine real Elastic Endpoint hits of the shared fixtures (``_index``, ``_id``, ``_source``)."""
    out: list[dict[str, Any]] = []
    for path in sorted((shared_fixtures / ELASTIC).glob("*.json")):
        out.extend(_raw_hits(path))
    assert len(out) == 9
    return out


def _raw_hits(path: Path) -> list[dict[str, Any]]:
    # The reader opens the hits; re-wrap each document with its file's real hit metadata.
    text = path.read_text(encoding="utf-8")
    ids = [line.split('"')[-2] for line in text.splitlines() if '"_id"' in line]
    indexes = [line.split('"')[-2] for line in text.splitlines() if '"_index"' in line]
    docs = _records(list(read_path(path)))
    return [{"_index": i, "_id": d, "_source": doc} for i, d, doc in zip(indexes, ids, docs, strict=True)]


def _eql_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"is_partial": False, "is_running": False, "took": 46, "timed_out": False,
            "hits": {"total": {"value": len(events), "relation": "eq"}, "events": events}}


def _eql_sequences(groups: list[list[dict[str, Any]]]) -> dict[str, Any]:
    sequences = [{"join_keys": ["c2d9ce9a-fdef-a405-125c-171a91d0e54a"], "events": group} for group in groups]
    return {"is_partial": False, "is_running": False, "took": 765, "timed_out": False,
            "hits": {"total": {"value": len(groups), "relation": "eq"}, "sequences": sequences}}


def _normalize(path: Path, rejects: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, list[dict[str, Any]]]:
    assert main(["normalize", str(path), "--rejects", str(rejects)]) == 0
    err = capsys.readouterr().err.strip()
    return err, [orjson.loads(line) for line in rejects.read_bytes().splitlines()]


# -- Elasticsearch and EQL ----------------------------------------------------------------------------------------


def test_reader_eql_events_response_yields_each_event_document(hits: list[dict[str, Any]]) -> None:
    items = _items(json.dumps(_eql_events(hits), indent=2).encode())
    assert _records(items) == [h["_source"] for h in hits]


def test_reader_eql_sequences_response_yields_every_event_of_every_sequence(hits: list[dict[str, Any]]) -> None:
    items = _items(orjson.dumps(_eql_sequences([hits[:2], hits[2:5], hits[5:]])) + b"\n")
    assert _records(items) == [h["_source"] for h in hits]


def test_reader_eql_sequence_without_events_is_rejected_and_other_sequences_read(
        hits: list[dict[str, Any]]) -> None:
    response = _eql_sequences([hits[:2], hits[2:3]])
    response["hits"]["sequences"].insert(1, {"join_keys": ["x"]})
    items = _items(orjson.dumps(response))
    assert _records(items) == [h["_source"] for h in hits[:3]]
    [rejection] = [i for i in items if isinstance(i, Rejection)]
    assert rejection.reason == "EQL sequence without an events list: sequence 1"


def test_reader_search_response_without_hits_list_is_rejected() -> None:
    items = _items(b'{"took": 3, "timed_out": false, "hits": {"total": {"value": 0, "relation": "eq"}}}\n')
    assert len(items) == 1 and isinstance(items[0], Rejection)
    assert items[0].reason == "search response without hits.hits, hits.events or hits.sequences"


def test_reader_empty_search_response_yields_nothing_and_rejects_nothing() -> None:
    assert _items(b'{"took": 1, "hits": {"total": {"value": 0}, "max_score": null, "hits": []}}\n') == []


def test_reader_kibana_console_pretty_eql_response_with_crlf_is_read(hits: list[dict[str, Any]]) -> None:
    text = json.dumps(_eql_events(hits[:3]), indent=2).replace('": ', '" : ').replace("\n", "\r\n")
    assert _records(_items(text.encode())) == [h["_source"] for h in hits[:3]]


def test_reader_kibana_inspector_raw_response_and_async_search_are_opened(hits: list[dict[str, Any]]) -> None:
    inspector = {"rawResponse": {"took": 5, "timed_out": False, "hits": {"hits": hits[:2]}}, "isPartial": False}
    async_search = {"id": "FmRldE8zREVEUzA2ZVpUeGs2ejJFUFEaMkZ5QTVrSTZSaVN3WlNFVmtlWHJsdzoxMDc=",
                    "is_partial": False, "is_running": False, "start_time_in_millis": 1583945890986,
                    "expiration_time_in_millis": 1584377890986, "response": {"took": 1, "hits": {"hits": hits[2:4]}}}
    items = _items(orjson.dumps(inspector) + b"\n" + orjson.dumps(async_search) + b"\n")
    assert _records(items) == [h["_source"] for h in hits[:4]]


def test_reader_msearch_error_item_rejected_and_other_responses_read(hits: list[dict[str, Any]]) -> None:
    msearch = {"took": 4, "responses": [
        {"took": 2, "hits": {"hits": hits[:2]}, "status": 200},
        {"error": {"type": "index_not_found_exception", "reason": "no such index [logs-x]"}, "status": 404},
    ]}
    items = _items(orjson.dumps(msearch))
    assert _records(items) == [h["_source"] for h in hits[:2]]
    [rejection] = [i for i in items if isinstance(i, Rejection)]
    assert rejection.category == "search response item is an error"
    assert "index_not_found_exception" in rejection.reason


def test_reader_elasticdump_ndjson_of_hits_yields_each_source_with_its_line(hits: list[dict[str, Any]]) -> None:
    # elasticdump --type=data writes one hit per line (with _type and _score).
    data = b"".join(orjson.dumps({**h, "_type": "_doc", "_score": 1}) + b"\n" for h in hits)
    items = _items(data)
    assert [(i.data, i.ref.line) for i in items if isinstance(i, Record)] == [
        (h["_source"], n) for n, h in enumerate(hits, 1)]


def test_reader_hit_with_fields_instead_of_source_rebuilds_the_nested_document() -> None:
    hit = {"_index": ".ds-logs-endpoint.events.process-default-000003", "_id": "NGlT-3YBimKzADJjmIqF",
           "_score": None, "fields": {
               "@timestamp": ["2021-01-13T10:36:57.267Z"], "event.category": ["process"], "event.type": ["start"],
               "event.action": ["exec"], "process.pid": [15127], "process.name": ["xattr"],
               "process.name.text": ["xattr"], "process.args": ["xattr"],
               "process.command_line": ["xattr -d com.apple.quarantine ./Downloads/bin"],
               "host.ip": ["10.0.2.15"], "ecs.version": ["1.5.0"],
               "user.group": [{"id": ["20"], "name": ["staff"]}]}}
    [record] = _items(orjson.dumps(hit))
    assert isinstance(record, Record)
    assert record.data == {
        "@timestamp": "2021-01-13T10:36:57.267Z",
        "event": {"category": ["process"], "type": ["start"], "action": "exec"},
        "process": {"pid": 15127, "name": "xattr", "args": ["xattr"],
                    "command_line": "xattr -d com.apple.quarantine ./Downloads/bin"},
        "host": {"ip": ["10.0.2.15"]}, "ecs": {"version": "1.5.0"},
        "user": {"group": {"id": "20", "name": "staff"}},  # a nested field of one object, as _source has it
    }


def test_reader_fields_hit_of_real_event_normalizes_like_its_source_hit(hits: list[dict[str, Any]]) -> None:
    def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for key, value in doc.items():
            name = prefix + key
            if isinstance(value, dict):
                out.update(flatten(value, name + "."))
            else:
                out[name] = value if isinstance(value, list) else [value]
        return out

    for hit in hits:
        fields_hit = {"_index": hit["_index"], "_id": hit["_id"], "fields": flatten(hit["_source"])}
        from_source = list(Normalizer().run(_items(orjson.dumps(hit)), "h"))
        from_fields = list(Normalizer().run(_items(orjson.dumps(fields_hit)), "h"))
        assert from_fields == from_source and from_source


def test_reader_document_from_fields_multi_field_never_replaces_its_keyword() -> None:
    assert document_from_fields({"file.path.text": ["a"], "file.path": ["/x"]}) == {"file": {"path": "/x"}}


def test_reader_hit_without_source_or_fields_is_rejected_with_reason() -> None:
    items = _items(b'{"_index": "logs-endpoint", "_id": "abc", "_score": 1.0}\n'
                   b'{"_index": "logs-endpoint", "_id": "abd", "_source": {}}\n')
    assert [i.reason for i in items if isinstance(i, Rejection)] == [
        "Elasticsearch hit without _source or fields (the search left the document out)",
        "Elasticsearch hit with an empty or non-object _source"]


# -- arrays: OCSF / Security Lake, log show --style json ------------------------------------------------------------


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_reader_pretty_printed_json_array_elements_keep_their_own_lines() -> None:
    items = _items(b'[\n  {"a": 1},\n  {\n    "a": 2\n  }\n]\n')
    assert [(i.data["a"], i.ref.line) for i in items if isinstance(i, Record)] == [(1, 2), (2, 3)]


def test_reader_broken_array_element_rejected_and_following_elements_kept() -> None:
    items = _items(b'[{\n  "a" : 1\n},{\n  "a" : 2,,\n},{\n  "a" : 3\n}]\n')
    assert [type(i).__name__ for i in items] == ["Record", "Rejection", "Record"]
    assert _records(items) == [{"a": 1}, {"a": 3}]
    assert items[1].ref.line == 3


def test_reader_truncated_array_keeps_the_elements_before_the_damage() -> None:
    items = _items(b'[{\n  "a" : 1\n},{\n  "a" : 2\n},{\n  "a" : ')
    assert _records(items) == [{"a": 1}, {"a": 2}]
    assert isinstance(items[-1], Rejection) and items[-1].ref.line == 5


def test_normalize_ocsf_security_lake_json_array_reads_every_event(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    events = _lines(EVENTS / "mac-02" / "ocsf.json")
    export = tmp_path / "mac-02" / "security-lake-export.json"
    export.parent.mkdir()
    export.write_text(json.dumps(events, indent=2))
    compact = tmp_path / "mac-02" / "athena-result.json"
    compact.write_bytes(orjson.dumps(events))
    _, baseline = _normalize(EVENTS / "mac-02", tmp_path / "r0.jsonl", capsys)
    expected = Normalizer()
    list(expected.run(read_path(EVENTS / "mac-02" / "ocsf.json"), "mac-02"))
    for path in (export, compact):
        err, rejects = _normalize(path, tmp_path / "r.jsonl", capsys)
        assert rejects == [] == baseline
        assert err == expected.stats.summary()
        assert err.startswith(f"records read: {len(events)};")


def _log_show_json(records: list[dict[str, Any]]) -> bytes:
    """``log show --style json``: one array, ``"key" : value`` objects joined by ``},{``."""
    body = "},{\n".join(json.dumps(r, indent=2, separators=(",", " : "))[2:-2] + "\n" for r in records)
    return ("[{\n" + body + "}]\n").encode()


def test_normalize_unified_log_show_style_json_array_reads_like_ndjson(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ndjson = EVENTS / "mac-01" / "unifiedlog.ndjson"
    records = [r for r in _lines(ndjson) if "eventMessage" in r]  # the json style has no count trailer
    host = tmp_path / "mac-01"
    host.mkdir()
    (host / "log-show.json").write_bytes(_log_show_json(records))
    ndjson_copy = host / "log-show.ndjson"
    ndjson_copy.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    err_json, rejects = _normalize(host / "log-show.json", tmp_path / "r.jsonl", capsys)
    err_ndjson, _ = _normalize(ndjson_copy, tmp_path / "r2.jsonl", capsys)
    assert rejects == []
    assert err_json == err_ndjson and err_json.startswith(f"records read: {len(records)};")


def test_normalize_eslogger_with_banner_line_reads_every_event_and_rejects_the_banner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = (EVENTS / "mac-01" / "eslogger.jsonl").read_bytes()
    host = tmp_path / "mac-01"
    host.mkdir()
    for name, banner in (("plain.jsonl", b"eslogger: subscribing to 9 event types\n"),
                         ("bracketed.jsonl", b"[eslogger] started, writing JSON to stdout\n")):
        (host / name).write_bytes(banner + source)
        err, rejects = _normalize(host / name, tmp_path / "r.jsonl", capsys)
        assert [(r["location"].rsplit(":", 1)[1], r["reason"]) for r in rejects] == [
            ("1", "not a JSON record (text line)")]
        lines = source.count(b"\n")
        assert err.startswith(f"records read: {lines + 1};")
        assert "rejected: 1 (not a JSON record (text line): 1)" in err


# -- nothing unread is silent --------------------------------------------------------------------------------------


def test_normalize_eql_response_counts_the_events_inside_not_the_wrapper(
        hits: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "host" / "eql.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_eql_sequences([hits[:4], hits[4:]]), indent=2))
    err, rejects = _normalize(path, tmp_path / "r.jsonl", capsys)
    assert rejects == []
    assert err.startswith("records read: 9; events: 9 (") and "skipped as unused or unsupported: 0" in err


def test_normalize_unrecognized_record_goes_to_rejects_with_reason_and_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h" / "mixed.jsonl"
    path.parent.mkdir()
    good = (EVENTS / "mac-02" / "ocsf.json").read_bytes().splitlines()[0]
    path.write_bytes(good + b'\n{"message": "hello", "level": "info"}\n{"x": \n{"y": 1}\n')
    err, rejects = _normalize(path, tmp_path / "r.jsonl", capsys)
    assert [(r["location"].rsplit(":", 1)[1], r["reason"].split(": ")[0:2]) for r in rejects] == [
        ("2", ["unrecognized record", "no supported telemetry format matches (top-level keys"]),
        ("3", ["not valid JSON", "unexpected end of data"]),
        ("4", ["unrecognized record", "no supported telemetry format matches (top-level keys"]),
    ]
    assert rejects[0]["reason"].endswith("(top-level keys: level, message)")
    assert "rejected: 3 (unrecognized record: 2, not valid JSON: 1)" in err
    assert err.startswith("records read: 4; events: 1 (")


@pytest.mark.parametrize(("reason", "category"), [
    ("not valid JSON: unexpected character: line 1 column 9 (char 8)", "not valid JSON"),
    ("invalid timestamp '2021-13-01'", "invalid timestamp"),
    ("KeyError: 'pid'", "KeyError"),
    ("expected a JSON object, got int", "expected a JSON object, got int"),
    ("", "no reason given"),
])
def test_reader_reason_category_drops_particulars(reason: str, category: str) -> None:
    assert reason_category(reason) == category
