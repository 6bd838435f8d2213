"""OCSF class 2004 -> Parquet rows (``chainwatch.sinks._ocsf_parquet``): nothing is lost when a document does not
fit the schema, the file is deterministic, and pyarrow stays out of processes that do not write Parquet."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from chainwatch.sinks._ocsf_parquet import OVERFLOW_KEY, _row_groups, arrow_schema, conform, write_parquet

ROOT = Path(__file__).resolve().parents[3]
FINDINGS = ROOT / "tests" / "functional" / "sinks" / "data" / "aws_sinks_findings.jsonl"


def finding() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FINDINGS.read_text().splitlines()[0])
    return doc


def overflow(row: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(row["unmapped"]).get(OVERFLOW_KEY, {})
    return found


def read_back(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = write_parquet(rows, [1] * len(rows))
    table: list[dict[str, Any]] = pq.read_table(io.BytesIO(body)).to_pylist()
    return table


def test_conform_chainwatch_finding_nothing_overflows() -> None:
    row = conform(finding())

    assert overflow(row) == {}
    assert row["class_uid"] == 2004 and row["time_dt"] == row["time"]


def test_conform_unknown_attribute_and_wrong_types_go_to_overflow_by_path() -> None:
    doc = finding()
    doc["vendor_thing"] = {"a": 1}
    doc["severity_id"] = "5"  # a string where OCSF says integer_t
    doc["is_alert"] = 1  # an int where OCSF says boolean_t
    doc["metadata"]["product"]["version"] = 3
    doc["evidences"][0]["process"]["pid"] = 2**40  # past int32
    doc["evidences"][0]["process"]["made_up"] = True
    doc["finding_info"]["types"] = ["AN1316", 7, None]
    row = conform(doc)
    [stored] = read_back([row])

    assert overflow(row) == {
        "vendor_thing": {"a": 1}, "severity_id": "5", "is_alert": 1, "metadata.product.version": 3,
        "evidences[0].process.pid": 2**40, "evidences[0].process.made_up": True, "finding_info.types[1]": 7}
    assert stored["severity_id"] is None and stored["is_alert"] is None
    assert stored["finding_info"]["types"] == ["AN1316", None, None]  # positions kept
    assert json.loads(stored["unmapped"])["chainwatch"]["route"] == doc["unmapped"]["chainwatch"]["route"]


def test_conform_process_ancestors_past_two_levels_overflow() -> None:
    doc = finding()
    zsh = next(e for e in doc["evidences"] if e["data"]["stage"] == 3)["process"]
    great = {"pid": 0, "name": "kernel_task"}
    zsh["parent_process"]["parent_process"]["parent_process"] = great
    index = doc["evidences"].index(next(e for e in doc["evidences"] if e["data"]["stage"] == 3))
    row = conform(doc)
    [stored] = read_back([row])

    assert overflow(row) == {f"evidences[{index}].process.parent_process.parent_process.parent_process": great}
    assert stored["evidences"][index]["process"]["parent_process"]["parent_process"]["pid"] == 1


def test_conform_lone_surrogate_kept_visible_not_an_error() -> None:
    doc = finding()
    doc["message"] = "bad \ud800 text"
    doc["unmapped"]["chainwatch"]["story"] = "also \udfff here"
    [stored] = read_back([conform(doc)])

    assert stored["message"] == "bad \\ud800 text"
    assert json.loads(stored["unmapped"])["chainwatch"]["story"] == "also \udfff here"


def test_conform_out_of_range_timestamp_keeps_integer_without_datetime() -> None:
    doc = finding()
    doc["finding_info"]["first_seen_time"] = 2**62
    [stored] = read_back([conform(doc)])

    assert stored["finding_info"]["first_seen_time"] == 2**62
    assert stored["finding_info"]["first_seen_time_dt"] is None


def test_write_parquet_same_rows_same_bytes() -> None:
    rows = [conform(finding()), conform(finding())]

    assert write_parquet(rows, [10, 10]) == write_parquet(rows, [10, 10])


def test_row_groups_split_by_rows_and_bytes_never_empty() -> None:
    assert list(_row_groups([1] * 5, 2, 100)) == [(0, 2), (2, 4), (4, 5)]
    assert list(_row_groups([60, 60, 10, 500], 10, 100)) == [(0, 1), (1, 3), (3, 4)]
    assert list(_row_groups([], 10, 100)) == []


def test_arrow_schema_names_each_field_with_its_ocsf_type() -> None:
    schema = arrow_schema()

    assert schema.field("time").metadata == {b"ocsf_type": b"timestamp_t"}
    assert schema.field("time_dt").metadata == {b"ocsf_type": b"datetime_t"}
    assert schema.field("unmapped").metadata == {b"ocsf_type": b"json_t"}
    assert schema.metadata[b"ocsf_class_uid"] == b"2004"


def test_sinks_import_does_not_load_pyarrow() -> None:
    code = ("import sys, chainwatch.sinks, chainwatch.sinks.security_lake, chainwatch.pipeline.dispatch; "
            "print('pyarrow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)

    assert result.stdout.strip() == "False"


def test_write_parquet_statistics_on_query_columns_only() -> None:
    doc = finding()
    body = write_parquet([conform(doc)], [1])
    group = pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}

    time = columns["time"].statistics
    assert time is not None and time.has_min_max and time.min == time.max == doc["time"]
    assert columns["finding_info.uid"].statistics.min == doc["finding_info"]["uid"]
    assert columns["message"].statistics is None
