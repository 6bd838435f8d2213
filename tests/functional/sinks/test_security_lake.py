"""Security Lake custom-source sink against moto S3 (`mock_aws`), ``format: json`` (gzip'd OCSF JSON lines, one
object per finding revision): layout, determinism, retries, permanent errors. The default Parquet format is tested
in ``test_security_lake_parquet.py``.

S3 failures moto cannot produce (``SlowDown``, 5xx) are injected at the HTTP layer by
:class:`aws_support.FaultInjector` and parsed by botocore; every successful write goes to moto.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aws_support import (
    ACCESS_KEY,
    AWS_ENV,
    LAKE_ACCOUNT,
    LAKE_BUCKET,
    REGION,
    SECRET_KEY,
    ClientFactory,
    FaultInjector,
    Sleeps,
    alert_document,
    delivery,
    documents,
    lake_bucket,
    lake_sink,
    record_params,
    s3_error,
)

from chainwatch.errors import ConfigError
from chainwatch.sinks.base import Outcome
from chainwatch.sinks.security_lake import SecurityLakeSink, object_key, render_record

BUCKET, ACCOUNT = LAKE_BUCKET, LAKE_ACCOUNT
KEY = re.compile(r"ext/chainwatch/region=us-east-1/accountId=111122223333/eventDay=(\d{8})/"
                 r"(cw-[0-9a-f]{32})-r(\d{6})\.ocsf\.jsonl\.gz")


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
    return lake_sink(aws, sleeps, config.pop("format", "json"), max_attempts, **config)


def keys(aws: ClientFactory, bucket: str = BUCKET) -> list[str]:
    return sorted(o["Key"] for o in aws("s3").list_objects_v2(Bucket=bucket).get("Contents", []))


def key_parts(key: str) -> tuple[str, ...]:
    """(eventDay, finding id, revision) of a key in the expected layout (fails the test otherwise)."""
    match = KEY.fullmatch(key)
    assert match is not None, key
    return match.groups()


def read(aws: ClientFactory, key: str, bucket: str = BUCKET) -> list[dict[str, Any]]:
    body = aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return [json.loads(line) for line in gzip.decompress(body).decode().split("\n") if line]


# -- layout -----------------------------------------------------------------------------------------------------


def test_security_lake_write_uses_custom_source_partition_layout(aws: ClientFactory, sleeps: Sleeps) -> None:
    item = delivery()
    [result] = make_sink(aws, sleeps).send([item])

    assert result.outcome is Outcome.DELIVERED
    [key] = keys(aws)
    # eventDay is the finding's own event time (2025-09-18T14:03:12Z), in UTC.
    assert key_parts(key) == ("20250918", item.finding_id, "000001")
    assert result.external_id == f"s3://{BUCKET}/{key}"
    [record] = read(aws, key)
    assert record["class_uid"] == 2004
    assert record["finding_info"]["uid"] == item.finding_id
    assert record["unmapped"]["chainwatch"]["revision"] == 1
    assert record["unmapped"]["chainwatch"]["story"] == item.story
    head = aws("s3").head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "application/gzip"
    assert head["Metadata"] == {"finding-id": item.finding_id, "revision": "1", "ocsf-class-uid": "2004",
                                "format": "ocsf-jsonl-gzip"}


def test_security_lake_location_and_source_version_set_prefix(aws: ClientFactory, sleeps: Sleeps) -> None:
    aws("s3").create_bucket(Bucket="other-lake")
    sink = make_sink(aws, sleeps, bucket=None, location="s3://other-lake/ext/chainwatch/2.0/")
    versioned = make_sink(aws, sleeps, source_version="1.0")
    sink.send([delivery()])
    versioned.send([delivery()])

    [key] = keys(aws, "other-lake")
    assert key.startswith("ext/chainwatch/2.0/region=us-east-1/accountId=111122223333/eventDay=20250918/")
    [key] = keys(aws)
    assert key.startswith("ext/chainwatch/1.0/region=us-east-1/")


def test_security_lake_object_key_same_inputs_same_key() -> None:
    item = delivery()
    first = object_key("ext/chainwatch", REGION, ACCOUNT, item, 1758204192918)
    again = object_key("ext/chainwatch", REGION, ACCOUNT, delivery(), 1758204192918)
    other = object_key("ext/chainwatch", REGION, ACCOUNT, delivery(revision=2), 1758204192918)

    assert first == again
    assert first != other
    assert render_record(item) == render_record(delivery())  # byte-identical body: gzip carries no timestamp


def test_security_lake_unsafe_finding_ids_get_distinct_safe_keys() -> None:
    a = object_key("ext/x", REGION, ACCOUNT, delivery(finding_id="cw/../a b"), 0)
    b = object_key("ext/x", REGION, ACCOUNT, delivery(finding_id="cw/.._a b"), 0)

    assert a != b
    for key in (a, b):
        name = key.rsplit("/", 1)[1]
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name
        assert key.startswith("ext/x/region=us-east-1/accountId=111122223333/eventDay=19700101/")


# -- idempotence ------------------------------------------------------------------------------------------------


def test_security_lake_same_delivery_twice_one_object(aws: ClientFactory, sleeps: Sleeps) -> None:
    sink = make_sink(aws, sleeps)
    first = sink.send([delivery()])
    etag = aws("s3").head_object(Bucket=BUCKET, Key=keys(aws)[0])["ETag"]
    second = sink.send([delivery()])

    assert [r.outcome for r in first + second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert first[0].external_id == second[0].external_id
    assert len(keys(aws)) == 1
    assert aws("s3").head_object(Bucket=BUCKET, Key=keys(aws)[0])["ETag"] == etag


def test_security_lake_revision_two_is_a_second_object_beside_the_first(aws: ClientFactory, sleeps: Sleeps) -> None:
    sink = make_sink(aws, sleeps)
    sink.send([delivery(revision=1)])
    sink.send([delivery(revision=2)])

    found = keys(aws)
    assert [key_parts(k)[2] for k in found] == ["000001", "000002"]
    assert read(aws, found[1])[0]["unmapped"]["chainwatch"]["revision"] == 2


def test_security_lake_slowdown_then_success_single_object(aws: ClientFactory, sleeps: Sleeps) -> None:
    faults = FaultInjector(aws("s3"), "PutObject").fail(
        2, 503, s3_error("SlowDown", "Please reduce your request rate."), {"retry-after": "2"})
    [result] = make_sink(aws, sleeps).send([delivery()])

    assert result.outcome is Outcome.DELIVERED
    assert faults.calls == 3
    assert sleeps.delays == [2.0, 2.0]
    assert len(keys(aws)) == 1


def test_security_lake_5xx_for_a_while_then_recovery_each_finding_once(aws: ClientFactory, sleeps: Sleeps) -> None:
    FaultInjector(aws("s3"), "PutObject").fail(3, 500, s3_error("InternalError", "We encountered an internal error."))
    items = [delivery(finding_id=f"cw-{i:032x}") for i in range(3)]
    results = make_sink(aws, sleeps).send(items)

    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert [key_parts(k)[1] for k in keys(aws)] == [i.finding_id for i in items]
    assert len(sleeps.delays) == 3


def test_security_lake_outage_outlives_retries_rest_not_attempted(aws: ClientFactory, sleeps: Sleeps) -> None:
    faults = FaultInjector(aws("s3"), "PutObject").fail(
        99, 503, s3_error("ServiceUnavailable", "Service is unable to handle request."))
    results = make_sink(aws, sleeps, max_attempts=3).send(
        [delivery(finding_id=f"cw-{i:032x}") for i in range(3)])

    assert [r.outcome for r in results] == [Outcome.FAILED_TRANSIENT] * 3
    assert all(r.retry_after is not None and r.retry_after > 0 for r in results)
    assert "ServiceUnavailable (HTTP 503)" in (results[0].response or "")
    assert results[1].detail.startswith("not attempted")
    assert faults.calls == 3  # three attempts for the first finding, none for the others
    assert keys(aws) == []


# -- permanent errors -------------------------------------------------------------------------------------------


def test_security_lake_missing_bucket_failed_permanent_no_retry(aws: ClientFactory, sleeps: Sleeps) -> None:
    calls = record_params(aws("s3"), "PutObject")
    results = make_sink(aws, sleeps, bucket="no-such-lake-bucket").send(
        [delivery(finding_id=f"cw-{i:032x}") for i in range(2)])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT] * 2
    assert "NoSuchBucket (HTTP 404): The specified bucket does not exist" in (results[0].response or "")
    assert results[1].response == results[0].response and results[1].detail.startswith("not attempted")
    assert len(calls) == 1 and sleeps.delays == []


def test_security_lake_access_denied_failed_permanent_with_body(aws: ClientFactory, sleeps: Sleeps) -> None:
    FaultInjector(aws("s3"), "PutObject").fail(1, 403, s3_error("AccessDenied", "Access Denied"))
    [result] = make_sink(aws, sleeps).send([delivery()])

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert result.response is not None and result.response.startswith("s3:PutObject: AccessDenied (HTTP 403)")
    assert sleeps.delays == []


def test_security_lake_other_ocsf_class_failed_permanent_others_written(aws: ClientFactory, sleeps: Sleeps) -> None:
    other = alert_document()
    other["class_uid"] = 1007
    results = make_sink(aws, sleeps).send([delivery(other, finding_id="cw-" + "1" * 32), delivery()])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT, Outcome.DELIVERED]
    assert "one OCSF class" in (results[0].response or "")
    assert len(keys(aws)) == 1


@pytest.mark.parametrize(("config", "message"), [
    ({"account_id": "1234"}, "12 digits"),
    ({"source_name": "bad name/with slash"}, "source_name"),
    ({"region": "moon-base"}, "not an AWS region"),
    ({"bucket": None}, "needs 'bucket'"),
])
def test_security_lake_bad_config_config_error(aws: ClientFactory, sleeps: Sleeps, config: dict[str, Any],
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_sink(aws, sleeps, **config)


# -- canary, hostile content, credentials -----------------------------------------------------------------------


def test_security_lake_canary_written_and_marked(aws: ClientFactory, sleeps: Sleeps) -> None:
    item = delivery(canary=True)
    [result] = make_sink(aws, sleeps).send([item])

    assert result.outcome is Outcome.DELIVERED
    [record] = read(aws, keys(aws)[0])
    assert record["metadata"]["labels"] == ["canary"]
    assert record["unmapped"]["chainwatch"]["canary"] is True
    assert "labels" not in item.document["metadata"]  # the delivery's document is not changed in place


def test_security_lake_hostile_strings_stay_one_json_line_losslessly(aws: ClientFactory, sleeps: Sleeps) -> None:
    doc = next(d for d in documents() if d["is_alert"])
    hostile = '=cmd|" /C calc"!A0 <script>x</script>\n{"class_uid": 1}\r\n\x00\x1b[2J' + "A" * 1_000_000
    stage3 = next(e for e in doc["evidences"] if e["data"]["stage"] == 3)
    stage3["process"]["cmd_line"] = hostile
    doc["device"]["hostname"] = "host\nname"
    [result] = make_sink(aws, sleeps).send([delivery(doc)])

    assert result.outcome is Outcome.DELIVERED
    [key] = keys(aws)
    body = gzip.decompress(aws("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body.count(b"\n") == 1 and body.endswith(b"\n")  # one record, whatever the strings held
    [record] = [json.loads(body)]
    stored = next(e for e in record["evidences"] if e["data"]["stage"] == 3)
    assert stored["process"]["cmd_line"] == hostile  # the lake keeps evidence verbatim; readers render it
    assert record["device"]["hostname"] == "host\nname"


def test_security_lake_credentials_never_in_results_or_logs(aws: ClientFactory, sleeps: Sleeps,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="chainwatch")
    FaultInjector(aws("s3"), "PutObject").fail(
        1, 403, s3_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."))
    results = make_sink(aws, sleeps).send([delivery()])
    results += make_sink(aws, sleeps, bucket="missing-bucket").send([delivery()])
    results += make_sink(aws, sleeps).send([delivery()])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT, Outcome.FAILED_PERMANENT, Outcome.DELIVERED]
    logged = [record.getMessage() for record in caplog.records if record.name.startswith("chainwatch")]
    assert len(logged) == 2
    texts = [t for r in results for t in (r.detail, r.response or "", r.external_id or "")] + logged
    for secret in (ACCESS_KEY, SECRET_KEY, "FAKEsessionTOKENchainwatch"):
        assert not any(secret in text for text in texts)
