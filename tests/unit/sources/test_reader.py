from __future__ import annotations

import gzip
from pathlib import Path

from chainwatch.sources.reader import Record, Rejection, iter_files, read_bytes, read_path


def _items(data: bytes) -> list[Record | Rejection]:
    return list(read_bytes(data, "mem"))


def test_reader_json_lines_bad_line_between_good_ones_rejects_only_it() -> None:
    items = _items(b'{"a": 1}\n{"a": \n{"a": 3}\n')
    assert [type(i).__name__ for i in items] == ["Record", "Rejection", "Record"]
    assert isinstance(items[1], Rejection)
    assert str(items[1].ref) == "mem:2"
    assert isinstance(items[2], Record) and items[2].data == {"a": 3} and items[2].ref.line == 3


def test_reader_concatenated_objects_yields_each_with_its_line() -> None:
    items = _items(b'{\n "a": 1\n}\n{\n "a": 2\n}\n')
    assert [(i.data["a"], i.ref.line) for i in items if isinstance(i, Record)] == [(1, 1), (2, 4)]


def test_reader_kibana_triple_quoted_strings_are_decoded() -> None:
    items = _items(b'{\n  "cmd" : """echo "hi" \\n x""",\n  "n" : 1\n}\n')
    assert len(items) == 1 and isinstance(items[0], Record)
    assert items[0].data["cmd"] == 'echo "hi" \\n x'


def test_reader_brace_wrapped_objects_yields_both() -> None:
    items = _items(b'{\r\n\t{"a": 1},\r\n\t{"a": 2}\r\n}\r\n')
    assert [i.data for i in items if isinstance(i, Record)] == [{"a": 1}, {"a": 2}]


def test_reader_truncated_document_rejected_and_next_document_kept() -> None:
    items = _items(b'{\n "a": [1, 2\n{\n "b": 2\n}\n')
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Rejection", "Record"]
    assert isinstance(items[1], Record) and items[1].data == {"b": 2}


def test_reader_gzip_input_is_read_like_plain() -> None:
    assert [i.data for i in _items(gzip.compress(b'{"a": 1}\n'))] == [{"a": 1}]


def test_reader_elasticsearch_hit_is_unwrapped_to_source() -> None:
    items = _items(b'{"_index": "x", "_id": "1", "_source": {"a": 1}}\n')
    assert [i.data for i in items] == [{"a": 1}]


def test_reader_search_response_and_array_yield_each_document() -> None:
    items = _items(b'{"hits": {"hits": [{"_id": "1", "_source": {"a": 1}}, {"_id": "2", "_source": {"a": 2}}]}}\n'
                   b'[{"a": 3}, {"a": 4}]\n')
    assert [i.data["a"] for i in items if isinstance(i, Record)] == [1, 2, 3, 4]


def test_reader_scalar_line_is_rejected_not_crashed() -> None:
    items = _items(b'{"a": 1}\n42\n')
    assert isinstance(items[1], Rejection) and "expected a JSON object" in items[1].reason


def test_reader_invalid_utf8_outside_strings_is_rejected() -> None:
    items = _items(b'{"a": 1}\n{"a": \xff\xfe}\n{"a": 3}\n')
    assert [type(i).__name__ for i in items] == ["Record", "Rejection", "Record"]
    assert isinstance(items[1], Rejection) and items[1].reason.startswith("not valid JSON")


def test_reader_invalid_utf8_inside_a_string_keeps_the_record_with_replacement_characters() -> None:
    # A file name or argument is attacker-chosen bytes; a producer that writes them raw must not lose the record.
    items = _items(b'{"a": 1}\n{"a": "/Users/u/Downloads/x\xff\xfe.app"}\n{"a": 3}\n')
    assert [type(i).__name__ for i in items] == ["Record", "Record", "Record"]
    assert items[1].data == {"a": "/Users/u/Downloads/x\ufffd\ufffd.app"}


def test_reader_lone_surrogate_escapes_become_replacement_characters() -> None:
    # A Python producer with surrogateescape writes "\udcff" for a byte 0xff; orjson refuses it, json keeps it.
    items = _items(b'{"a": "x\\udcffy", "\\ud800": ["\\ud83d\\ude00"]}\n{"b": "\\udc80"}\n')
    assert [i.data for i in items] == [{"a": "x\ufffdy", "\ufffd": ["\U0001f600"]}, {"b": "\ufffd"}]
    # The same in the documents layout (a pretty-printed first record).
    items = _items(b'{\n  "a": "x\\udcffy"\n}\n')
    assert [i.data for i in items] == [{"a": "x\ufffdy"}]


def test_reader_lenient_decoding_accepts_no_nan_or_infinity() -> None:
    items = _items(b'{"a": 1}\n{"a": NaN, "b": "\xff"}\n{"a": Infinity}\n')
    assert [type(i).__name__ for i in items] == ["Record", "Rejection", "Rejection"]


def test_reader_folder_walk_reads_data_files_only(tmp_path: Path) -> None:
    (tmp_path / "h1").mkdir()
    (tmp_path / "h1" / "a.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "h1" / "LICENSE.txt").write_text("text")
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(b'{"a": 2}\n'))
    files = [p.relative_to(tmp_path).as_posix() for p in iter_files([tmp_path])]
    assert files == ["b.json.gz", "h1/a.jsonl"]
    assert [i.data for i in read_path(tmp_path / "b.json.gz")] == [{"a": 2}]


def test_reader_missing_file_is_a_rejection(tmp_path: Path) -> None:
    items = list(read_path(tmp_path / "nope.json"))
    assert len(items) == 1 and isinstance(items[0], Rejection) and "cannot open" in items[0].reason


def test_reader_leading_text_line_is_rejected_and_json_lines_still_read() -> None:
    items = _items(b"Filtering the log data using \"process == 'syspolicyd'\"\n{\"a\": 1}\n{\"a\": 2}\n")
    assert isinstance(items[0], Rejection) and items[0].ref.line == 1
    assert [i.data for i in items[1:]] == [{"a": 1}, {"a": 2}]
