"""Security Lake sink, ``format: parquet`` (the default), against moto S3 (`mock_aws`): every object is read back
with ``pyarrow.parquet`` and checked against OCSF class 2004 (schema, values, layout, idempotence).

The expected column types below are written out from the OCSF 1.8 dictionary (integer_t -> int32, long_t and
timestamp_t -> int64 epoch ms, the datetime profile's ``*_dt`` -> UTC timestamps), not read from the code under test.
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aws_support import (
    AWS_ENV,
    LAKE_ACCOUNT,
    LAKE_BUCKET,
    ClientFactory,
    FaultInjector,
    Sleeps,
    alert_document,
    delivery,
    documents,
    lake_bucket,
    lake_sink,
    s3_error,
)

from chainwatch.errors import ConfigError
from chainwatch.findings.ocsf import validate_detection_finding
from chainwatch.sinks._ocsf_parquet import arrow_schema
from chainwatch.sinks.base import Outcome
from chainwatch.sinks.security_lake import SecurityLakeSink, marked_document

BUCKET, ACCOUNT = LAKE_BUCKET, LAKE_ACCOUNT
KEY = re.compile(r"ext/chainwatch/region=us-east-1/accountId=111122223333/eventDay=(\d{8})/cw-[0-9a-f]{32}\.parquet")
DAY_MS = 86_400_000


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientFactory]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    with lake_bucket() as factory:
        yield factory


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_sink(aws: ClientFactory, sleeps: Sleeps, max_attempts: int = 5, **config: Any) -> SecurityLakeSink:
    return lake_sink(aws, sleeps, config.pop("format", "parquet"), max_attempts, **config)


def keys(aws: ClientFactory, bucket: str = BUCKET) -> list[str]:
    return sorted(o["Key"] for o in aws("s3").list_objects_v2(Bucket=bucket).get("Contents", []))


def parquet(aws: ClientFactory, key: str) -> pq.ParquetFile:
    return pq.ParquetFile(io.BytesIO(aws("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def rows(aws: ClientFactory, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = parquet(aws, key).read().to_pylist()
    return rows


def as_document(value: Any, field: str = "") -> Any:
    """A Parquet row back as the OCSF JSON document: nulls and the datetime profile's ``*_dt`` columns dropped,
    JSON-text columns (``unmapped``, ``evidences[].data``) parsed, the added ``datetime`` profile removed."""
    if isinstance(value, dict):
        out = {k: as_document(v, k) for k, v in value.items() if v is not None and not k.endswith("_dt")}
        profiles = out.get("profiles")
        if isinstance(profiles, list) and "datetime" in profiles:
            profiles.remove("datetime")
            if not profiles:
                del out["profiles"]
        return out
    if isinstance(value, list):
        return [as_document(v) for v in value]
    if field in ("unmapped", "data") and isinstance(value, str):
        return json.loads(value)
    return value


def day_later(doc: dict[str, Any], days: int) -> dict[str, Any]:
    moved = copy.deepcopy(doc)
    moved["time"] += days * DAY_MS
    moved["finding_info"]["last_seen_time"] += days * DAY_MS
    return moved


# -- layout and schema ------------------------------------------------------------------------------------------


def test_security_lake_parquet_one_object_per_event_day_in_custom_source_layout(aws: ClientFactory,
                                                                                sleeps: Sleeps) -> None:
    alert = alert_document()
    batch = [delivery(alert), delivery(alert, finding_id="cw-" + "b" * 32),
             delivery(day_later(alert, 1), finding_id="cw-" + "a" * 32)]
    results = make_sink(aws, sleeps).send(batch)

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    found = keys(aws)
    assert len(found) == 2
    days = {}
    for key in found:
        match = KEY.fullmatch(key)
        assert match is not None, key
        days[match.group(1)] = sorted(row["finding_info"]["uid"] for row in rows(aws, key))
    # eventDay is each finding's own event time (2025-09-18T14:03:12Z, and a day later), in UTC.
    assert days == {"20250918": sorted([alert["finding_info"]["uid"], "cw-" + "b" * 32]),
                    "20250919": ["cw-" + "a" * 32]}
    assert results[0].external_id == results[1].external_id == f"s3://{BUCKET}/{found[0]}"
    assert results[2].external_id == f"s3://{BUCKET}/{found[1]}"
    head = aws("s3").head_object(Bucket=BUCKET, Key=found[0])
    assert head["ContentType"] == "application/vnd.apache.parquet"
    assert head["Metadata"] == {"ocsf-class-uid": "2004", "format": "ocsf-parquet", "records": "2",
                                "compression": "zstd"}


def test_security_lake_parquet_schema_matches_ocsf_class_2004(aws: ClientFactory, sleeps: Sleeps) -> None:
    make_sink(aws, sleeps).send([delivery()])
    file = parquet(aws, keys(aws)[0])
    schema = file.schema_arrow

    assert file.metadata.metadata[b"ocsf_class_uid"] == b"2004"
    assert file.metadata.metadata[b"ocsf_version"] == b"1.8.0"
    assert schema.equals(arrow_schema(), check_metadata=False)
    int32, int64, string = pa.int32(), pa.int64(), pa.string()
    expected_top = {"class_uid": int32, "category_uid": int32, "activity_id": int32, "type_uid": int64,
                    "severity_id": int32, "confidence_id": int32, "status_id": int32, "risk_score": int32,
                    "is_alert": pa.bool_(), "time": int64, "time_dt": pa.timestamp("ms", tz="UTC"),
                    "message": string, "unmapped": string}
    for name, kind in expected_top.items():
        assert schema.field(name).type == kind, name
    info = schema.field("finding_info").type
    assert info.field("uid").type == string
    assert info.field("first_seen_time").type == int64
    assert info.field("last_seen_time_dt").type == pa.timestamp("ms", tz="UTC")
    assert info.field("analytic").type.field("type_id").type == int32
    attack = info.field("attacks").type.value_type
    assert attack.field("technique").type.field("uid").type == string
    assert attack.field("sub_technique").type.field("name").type == string
    metadata = schema.field("metadata").type
    assert metadata.field("product").type.field("vendor_name").type == string
    assert metadata.field("labels").type == pa.list_(string)
    evidence = schema.field("evidences").type.value_type
    assert evidence.field("data").type == string  # OCSF json_t
    process = evidence.field("process").type
    assert process.field("pid").type == int32
    assert process.field("created_time").type == int64
    assert process.field("file").type.field("signature").type.field("developer_uid").type == string
    grandparent = process.field("parent_process").type.field("parent_process").type
    assert grandparent.field("cmd_line").type == string
    assert evidence.field("file").type.field("name").type == string
    assert evidence.field("dst_endpoint").type.field("port").type == int32


def test_security_lake_parquet_values_round_trip_and_validate_as_class_2004(aws: ClientFactory,
                                                                            sleeps: Sleeps) -> None:
    alert, other = documents()
    earlier = copy.deepcopy(alert)
    earlier["time"] -= 60_000
    items = [delivery(alert), delivery(other), delivery(earlier, finding_id="cw-" + "e" * 32)]
    make_sink(aws, sleeps).send(items)
    tables = [parquet(aws, key).read() for key in keys(aws)]
    by_uid = {row["finding_info"]["uid"]: row for table in tables for row in table.to_pylist()}

    assert len(by_uid) == 3
    assert [t.column("class_uid").to_pylist() for t in tables] == [[2004, 2004], [2004]]
    assert tables[0].column("time").to_pylist() == [alert["time"] - 60_000, alert["time"]]  # sorted by time
    for item in items:
        row = by_uid[item.finding_id]
        expected = marked_document(item)
        assert as_document(row) == expected  # lossless: every attribute of the finding is in a typed column
        assert validate_detection_finding(as_document(row)) == []
        assert row["severity_id"] == item.document["severity_id"]
        assert row["time_dt"] == datetime.fromtimestamp(item.document["time"] / 1000, UTC)
        assert row["finding_info"]["first_seen_time_dt"] == datetime.fromtimestamp(
            item.document["finding_info"]["first_seen_time"] / 1000, UTC)
        assert row["metadata"]["profiles"] == ["datetime"]
        assert json.loads(row["unmapped"])["chainwatch"]["revision"] == 1
    alert = by_uid[alert_document()["finding_info"]["uid"]]
    stage3 = next(e for e in alert["evidences"] if json.loads(e["data"])["stage"] == 3)
    assert stage3["process"]["name"] == "zsh"
    assert stage3["process"]["parent_process"]["name"] == "Microsoft Word"
    assert stage3["process"]["parent_process"]["parent_process"]["pid"] == 1
    stage2 = next(e for e in alert["evidences"] if json.loads(e["data"])["stage"] == 2)
    assert stage2["file"]["name"] == "x.sh"


def test_security_lake_parquet_hostile_strings_round_trip_verbatim(aws: ClientFactory, sleeps: Sleeps) -> None:
    doc = alert_document()
    hostile = '=cmd|" /C calc"!A0 <script>x</script>\n{"class_uid": 1}\r\n\x00\x1b[2J' + "A" * 1_000_000
    stage3 = next(e for e in doc["evidences"] if e["data"]["stage"] == 3)
    stage3["process"]["cmd_line"] = hostile
    stage3["process"]["name"] = "zsh\u202e\U0001f4a5'; DROP TABLE findings;--"
    stage2 = next(e for e in doc["evidences"] if e["data"]["stage"] == 2)
    stage2["file"]["name"] = "x\x00.sh\n"
    doc["device"]["hostname"] = "host\nname"
    doc["unmapped"]["chainwatch"]["story"] = '"}, "class_uid": 1, {"'
    [result] = make_sink(aws, sleeps).send([delivery(doc)])

    assert result.outcome is Outcome.DELIVERED
    [row] = rows(aws, keys(aws)[0])
    stored = next(e for e in row["evidences"] if json.loads(e["data"])["stage"] == 3)
    assert stored["process"]["cmd_line"] == hostile
    assert stored["process"]["name"] == "zsh\u202e\U0001f4a5'; DROP TABLE findings;--"
    assert next(e for e in row["evidences"] if json.loads(e["data"])["stage"] == 2)["file"]["name"] == "x\x00.sh\n"
    assert row["device"]["hostname"] == "host\nname"
    assert row["class_uid"] == 2004
    assert json.loads(row["unmapped"])["chainwatch"]["story"] == '"}, "class_uid": 1, {"'


def test_security_lake_parquet_row_groups_bounded_by_rows_and_bytes(aws: ClientFactory, sleeps: Sleeps) -> None:
    batch = [delivery(finding_id=f"cw-{i:032x}") for i in range(5)]
    make_sink(aws, sleeps, max_row_group_rows=2).send(batch)
    by_rows = parquet(aws, keys(aws)[0])

    assert [by_rows.metadata.row_group(i).num_rows for i in range(by_rows.num_row_groups)] == [2, 2, 1]

    big = alert_document()
    big["message"] = "B" * 300_000
    aws("s3").create_bucket(Bucket="lake-two")
    make_sink(aws, sleeps, bucket="lake-two", max_row_group_bytes=400_000).send(
        [delivery(big, finding_id=f"cw-{i:032x}") for i in range(3)])
    [key] = keys(aws, "lake-two")
    body = aws("s3").get_object(Bucket="lake-two", Key=key)["Body"].read()
    by_bytes = pq.ParquetFile(io.BytesIO(body))

    assert by_bytes.num_row_groups == 3  # each ~310 KB row alone: two would pass 400 KB
    assert by_bytes.read().column("message").to_pylist() == ["B" * 300_000] * 3


def test_security_lake_parquet_snappy_compression_when_configured(aws: ClientFactory, sleeps: Sleeps) -> None:
    make_sink(aws, sleeps, compression="snappy").send([delivery()])
    file = parquet(aws, keys(aws)[0])

    assert file.metadata.row_group(0).column(0).compression == "SNAPPY"
    assert file.read().column("class_uid").to_pylist() == [2004]


# -- idempotence ------------------------------------------------------------------------------------------------


def test_security_lake_parquet_redelivered_batch_overwrites_same_object(aws: ClientFactory, sleeps: Sleeps) -> None:
    alert = alert_document()
    other = copy.deepcopy(alert)
    other["finding_info"]["uid"] = "cw-" + "c" * 32
    sink = make_sink(aws, sleeps)
    first = sink.send([delivery(alert), delivery(other)])
    etag = aws("s3").head_object(Bucket=BUCKET, Key=keys(aws)[0])["ETag"]
    # At-least-once: the same batch again, in another order, with a repeat inside it.
    again = make_sink(aws, sleeps).send([delivery(other), delivery(alert), delivery(other)])

    assert [r.outcome for r in first + again] == [Outcome.DELIVERED] * 5
    assert len(keys(aws)) == 1
    assert {r.external_id for r in first + again} == {f"s3://{BUCKET}/{keys(aws)[0]}"}
    assert aws("s3").head_object(Bucket=BUCKET, Key=keys(aws)[0])["ETag"] == etag  # byte-identical rewrite
    assert len(rows(aws, keys(aws)[0])) == 2


def test_security_lake_parquet_new_revision_is_a_new_object(aws: ClientFactory, sleeps: Sleeps) -> None:
    sink = make_sink(aws, sleeps)
    sink.send([delivery(revision=1)])
    sink.send([delivery(revision=2)])

    found = keys(aws)
    assert len(found) == 2
    revisions = sorted(json.loads(rows(aws, k)[0]["unmapped"])["chainwatch"]["revision"] for k in found)
    assert revisions == [1, 2]


def test_security_lake_parquet_canary_written_and_marked(aws: ClientFactory, sleeps: Sleeps) -> None:
    item = delivery(canary=True)
    make_sink(aws, sleeps).send([item])

    [row] = rows(aws, keys(aws)[0])
    assert row["metadata"]["labels"] == ["canary"]
    assert json.loads(row["unmapped"])["chainwatch"]["canary"] is True
    assert "labels" not in item.document["metadata"]


# -- failures ---------------------------------------------------------------------------------------------------


def test_security_lake_parquet_other_class_failed_permanent_rest_in_object(aws: ClientFactory,
                                                                           sleeps: Sleeps) -> None:
    other = alert_document()
    other["class_uid"] = 1007
    results = make_sink(aws, sleeps).send([delivery(other, finding_id="cw-" + "1" * 32), delivery()])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT, Outcome.DELIVERED]
    assert [row["finding_info"]["uid"] for row in rows(aws, keys(aws)[0])] == [results[1].finding_id]


def test_security_lake_parquet_slowdown_then_success_one_object(aws: ClientFactory, sleeps: Sleeps) -> None:
    faults = FaultInjector(aws("s3"), "PutObject").fail(
        2, 503, s3_error("SlowDown", "Please reduce your request rate."), {"retry-after": "2"})
    results = make_sink(aws, sleeps).send([delivery(), delivery(finding_id="cw-" + "d" * 32)])

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    assert faults.calls == 3 and sleeps.delays == [2.0, 2.0]
    assert len(keys(aws)) == 1


def test_security_lake_parquet_outage_fails_every_partition_transiently(aws: ClientFactory, sleeps: Sleeps) -> None:
    faults = FaultInjector(aws("s3"), "PutObject").fail(
        99, 503, s3_error("ServiceUnavailable", "Service is unable to handle request."))
    alert = alert_document()
    results = make_sink(aws, sleeps, max_attempts=3).send(
        [delivery(alert), delivery(day_later(alert, 1), finding_id="cw-" + "2" * 32)])

    assert [r.outcome for r in results] == [Outcome.FAILED_TRANSIENT] * 2
    assert results[1].detail.startswith("not attempted")
    assert all(r.retry_after is not None and r.retry_after > 0 for r in results)
    assert faults.calls == 3 and keys(aws) == []


def test_security_lake_parquet_missing_bucket_failed_permanent(aws: ClientFactory, sleeps: Sleeps) -> None:
    results = make_sink(aws, sleeps, bucket="no-such-lake-bucket").send([delivery(doc) for doc in documents()])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT] * 2
    assert "NoSuchBucket (HTTP 404)" in (results[0].response or "")
    assert sleeps.delays == []


@pytest.mark.parametrize(("config", "message"), [
    ({"format": "orc"}, "format must be one of parquet, json"),
    ({"compression": "lz77"}, "compression must be one of"),
    ({"max_row_group_rows": 0}, "max_row_group_rows must be a positive integer"),
    ({"max_row_group_bytes": "big"}, "max_row_group_bytes must be a positive integer"),
])
def test_security_lake_parquet_bad_config_config_error(aws: ClientFactory, sleeps: Sleeps, config: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_sink(aws, sleeps, **config)


def test_security_lake_json_format_still_one_gzip_line_per_finding(aws: ClientFactory, sleeps: Sleeps) -> None:
    results = make_sink(aws, sleeps, format="json").send([delivery(doc) for doc in documents()])

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    found = keys(aws)
    assert len(found) == 2 and all(k.endswith(".ocsf.jsonl.gz") for k in found)
    assert {r.external_id for r in results} == {f"s3://{BUCKET}/{k}" for k in found}
