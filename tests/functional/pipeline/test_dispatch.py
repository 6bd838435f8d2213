"""dispatch under moto (`mock_aws`): the findings outbox's DynamoDB stream to sinks, each revision once per sink.

The outbox is filled by the real correlate step from the bundled samples; its stream records come from moto's
``dynamodbstreams`` ``GetRecords`` and become the Lambda event through
:func:`chainwatch.app.local.dynamodb_stream_event`.
Sinks are real: the ``file`` sink, and :class:`ScriptedSink`, a sink registered here that fails transiently a set
number of times, or for good, and records every delivery it was handed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
import requests
from pipeline_support import (
    ROOT,
    correlate,
    drain_queue,
    one_batch,
    outbox_stream_event,
    put_and_read,
    sample_entries,
    scan,
)

from chainwatch.app.local import LambdaContext, load_handler
from chainwatch.app.settings import Settings
from chainwatch.errors import TransientError
from chainwatch.pipeline.dispatch import (
    DeadLetter,
    DispatchReport,
    OutboxRecord,
    dispatch,
    parse_stream_records,
    sqs_sender,
)
from chainwatch.sinks.base import (
    Delivery,
    DeliveryResult,
    InMemoryTicketMap,
    Outcome,
    RetryPolicy,
    Sink,
    SinkContext,
    build_sinks,
    register,
)
from chainwatch.state.dynamodb import DynamoDeliveryLog, make_models

MISSING_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/chainwatch-no-such-dlq"
#: Every delivery each scripted sink was handed, by sink name: (finding id, revision, outcome it returned).
HANDED: dict[str, list[tuple[str, int, str]]] = {}


@register
class ScriptedSink(Sink):
    """A sink that fails as configured: ``transient_failures`` times per finding revision, or ``permanent``ly;
    ``only_hosts`` limits the failures to findings of those hosts."""

    kind = "test-scripted"

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        log = HANDED.setdefault(self.name, [])
        results = []
        for delivery in deliveries:
            hosts = self.option("only_hosts")
            fails = hosts is None or delivery.host in hosts
            earlier = sum(1 for f, r, _ in log if (f, r) == (delivery.finding_id, delivery.revision))
            if fails and self.option("permanent", False):
                result = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                        "HTTP 400: field 'severity' rejected by schema",
                                        response='{"error": "invalid severity"}')
            elif fails and earlier < int(self.option("transient_failures", 0)):
                result = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_TRANSIENT,
                                        "HTTP 503: try later")
            else:
                result = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED, "ok",
                                        external_id=f"ext-{delivery.finding_id}")
            log.append((delivery.finding_id, delivery.revision, result.outcome.value))
            results.append(result)
        return results


@pytest.fixture(autouse=True)
def _fresh_sink_log() -> None:
    HANDED.clear()


@pytest.fixture
def outbox(aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> dict[str, Any]:
    """The outbox stream's Lambda event after correlating the bundled samples (two findings, revision 1)."""
    for shard in put_and_read(session, aws_names["TelemetryStream"], sample_entries()):
        assert correlate(shard.batch(), aws, session).failed_sequence_numbers == []
    return outbox_stream_event(session, aws.tables.findings)


def _sinks(tmp_path: Path, *scripted: dict[str, Any]) -> list[Sink]:
    context = SinkContext(session=None, secret=lambda name: None, ticket_map=InMemoryTicketMap(),  # type: ignore[arg-type]
                          retry=RetryPolicy(max_attempts=1))
    configs = [{"kind": "file", "name": "local-file", "path": str(tmp_path / "findings.jsonl")}]
    return build_sinks(configs + [{"kind": "test-scripted", **c} for c in scripted], context)


def _dispatch(records: list[OutboxRecord], sinks: list[Sink], aws: Settings, session: boto3.session.Session,
              dead_letter_url: str | None = None) -> DispatchReport:
    return dispatch(records, sinks, DynamoDeliveryLog(make_models(aws.tables)),
                    sqs_sender(session.client("sqs"), dead_letter_url or aws.dead_letter_queue_url))


def _file_lines(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "findings.jsonl"
    if not path.exists():
        return []
    return [(doc["finding_id"], doc["revision"]) for doc in map(orjson.loads, path.read_bytes().splitlines())]


def _deliveries(session: boto3.session.Session, aws: Settings) -> dict[tuple[str, str], str]:
    return {(str(i["finding_id"]), str(i["sk"])): str(i["outcome"]) for i in scan(session, aws.tables.deliveries)}


def _redeliver_from_lowest_failure(records: list[OutboxRecord], report: DispatchReport) -> list[OutboxRecord]:
    """What Lambda re-delivers after a partial failure: the failed record with the lowest sequence number, on."""
    lowest = min(report.failed_sequence_numbers, key=int)
    return records[next(i for i, r in enumerate(records) if r.sequence_number == lowest):]


def _by_host(records: list[OutboxRecord]) -> dict[str, str]:
    return {r.delivery.host: r.delivery.finding_id for r in records}


# -- the outbox stream -----------------------------------------------------------------------------------------


def test_parse_stream_records_outbox_inserts_two_findings_revision_1(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any]) -> None:
    records = parse_stream_records(outbox)

    assert [r["eventName"] for r in outbox["Records"]] == ["INSERT", "INSERT"]
    assert sorted(r.delivery.host for r in records) == ["mac-01", "mac-02"]
    assert [r.delivery.revision for r in records] == [1, 1]
    assert all(r.delivery.is_alert and not r.delivery.canary for r in records)
    outbox_ids = {str(item["finding_id"]) for item in scan(session, aws.tables.findings)}
    assert {r.delivery.finding_id for r in records} == outbox_ids
    assert all(r.sequence_number for r in records)


def test_parse_stream_records_ttl_remove_records_ignored(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path) -> None:
    table = session.client("dynamodb")
    for item in scan(session, aws.tables.findings):
        table.delete_item(TableName=aws.tables.findings, Key={"finding_id": {"S": str(item["finding_id"])}})
    event = outbox_stream_event(session, aws.tables.findings)
    removes = [r for r in event["Records"] if r["eventName"] == "REMOVE"]
    assert len(removes) == 2
    for record in removes:  # what a TTL deletion looks like on the stream
        record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}

    records = parse_stream_records({"Records": removes})
    report = _dispatch(records, _sinks(tmp_path, {"name": "flaky"}), aws, session)

    assert records == []
    assert (report.records, report.deliveries, report.failed_sequence_numbers) == (0, {}, [])
    assert len(parse_stream_records(event)) == 2  # the INSERTs before them still parse
    assert HANDED == {} and _file_lines(tmp_path) == []


# -- delivery and bookkeeping ----------------------------------------------------------------------------------


def test_dispatch_file_sink_delivers_each_finding_once_and_records_it_per_sink(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path) -> None:
    records = parse_stream_records(outbox)

    report = _dispatch(records, _sinks(tmp_path), aws, session)

    assert (report.deliveries, report.failed_sequence_numbers, report.dead_lettered) == ({"local-file": 2}, [], 0)
    assert sorted(_file_lines(tmp_path)) == sorted((r.delivery.finding_id, 1) for r in records)
    assert _deliveries(session, aws) == {(r.delivery.finding_id, "local-file#1"): "delivered" for r in records}


def test_dispatch_same_records_three_times_each_sink_delivers_once(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path) -> None:
    records = parse_stream_records(outbox)
    sinks = _sinks(tmp_path, {"name": "siem"})

    reports = [_dispatch(records, sinks, aws, session) for _ in range(3)]

    assert reports[0].deliveries == {"local-file": 2, "siem": 2}
    assert [r.deliveries for r in reports[1:]] == [{}, {}]
    assert [r.skipped_already_delivered for r in reports[1:]] == [4, 4]
    assert len(_file_lines(tmp_path)) == 2
    assert len(HANDED["siem"]) == 2


def test_dispatch_after_correlate_got_the_same_batch_three_times_one_delivery_per_finding(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, tmp_path: Path) -> None:
    shards = put_and_read(session, aws_names["TelemetryStream"], sample_entries())
    for _ in range(3):
        for shard in shards:
            correlate(shard.batch(), aws, session)
    event = outbox_stream_event(session, aws.tables.findings)
    assert [r["eventName"] for r in event["Records"]] == ["INSERT", "INSERT"]  # nothing rewritten

    report = _dispatch(parse_stream_records(event), _sinks(tmp_path), aws, session)

    assert report.deliveries == {"local-file": 2}
    assert len({finding_id for finding_id, _ in _file_lines(tmp_path)}) == len(_file_lines(tmp_path)) == 2


def test_dispatch_retry_after_partial_failure_sends_each_sink_only_what_it_misses(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path) -> None:
    records = parse_stream_records(outbox)
    ids = _by_host(records)
    sinks = _sinks(tmp_path, {"name": "flaky", "transient_failures": 1, "only_hosts": ["mac-01"]})

    first = _dispatch(records, sinks, aws, session)
    assert first.failed_sequence_numbers == [r.sequence_number for r in records if r.delivery.host == "mac-01"]
    assert first.deliveries == {"local-file": 2, "flaky": 1}
    assert _deliveries(session, aws)[(ids["mac-02"], "flaky#1")] == "delivered"
    assert (ids["mac-01"], "flaky#1") not in _deliveries(session, aws)

    second = _dispatch(_redeliver_from_lowest_failure(records, first), sinks, aws, session)

    assert second.failed_sequence_numbers == []
    assert second.deliveries == {"flaky": 1}
    assert sorted(_file_lines(tmp_path)) == sorted((i, 1) for i in ids.values())  # the file sink was not resent
    flaky = HANDED["flaky"]
    assert [(f, o) for f, _, o in flaky if f == ids["mac-01"]] == [(ids["mac-01"], "failed_transient"),
                                                                    (ids["mac-01"], "delivered")]
    assert [o for f, _, o in flaky if f == ids["mac-02"]] == ["delivered"]
    assert _deliveries(session, aws)[(ids["mac-01"], "flaky#1")] == "delivered"


def test_dispatch_transient_failures_batch_item_failure_redelivered_until_delivered_exactly_once(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path) -> None:
    records = parse_stream_records(outbox)
    sinks = _sinks(tmp_path, {"name": "flaky", "transient_failures": 2})

    batch, invocations = records, 0
    while batch and invocations < 5:
        report = _dispatch(batch, sinks, aws, session)
        invocations += 1
        batch = _redeliver_from_lowest_failure(batch, report) if report.failed_sequence_numbers else []

    assert invocations == 3
    delivered = sorted(f for f, _, outcome in HANDED["flaky"] if outcome == "delivered")
    assert delivered == sorted(r.delivery.finding_id for r in records)
    assert len(_file_lines(tmp_path)) == 2


def test_dispatch_permanent_failure_dead_lettered_with_reason_while_file_sink_delivers(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, outbox: dict[str, Any],
        tmp_path: Path) -> None:
    records = parse_stream_records(outbox)

    report = _dispatch(records, _sinks(tmp_path, {"name": "broken", "permanent": True}), aws, session)

    assert report.failed_sequence_numbers == []  # not retried: it would fail the same way
    assert (report.deliveries, report.dead_lettered) == ({"local-file": 2}, 2)
    letters = drain_queue(session, aws_names["DispatchDeadLetterQueue"])
    assert sorted(letter["finding_id"] for letter in letters) == sorted(r.delivery.finding_id for r in records)
    for letter in letters:
        assert (letter["sink"], letter["revision"]) == ("broken", 1)
        assert "rejected by schema" in letter["detail"]
        assert letter["response"] == '{"error": "invalid severity"}'
    assert len(_file_lines(tmp_path)) == 2
    assert sorted(_deliveries(session, aws).values()) == ["delivered", "delivered", "failed_permanent",
                                                          "failed_permanent"]


def test_dispatch_record_redelivered_for_another_sink_permanent_failure_not_resent_or_dead_lettered_again(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, outbox: dict[str, Any],
        tmp_path: Path) -> None:
    records = parse_stream_records(outbox)
    sinks = _sinks(tmp_path, {"name": "broken", "permanent": True}, {"name": "flaky", "transient_failures": 1})

    first = _dispatch(records, sinks, aws, session)
    assert len(first.failed_sequence_numbers) == 2 and first.dead_lettered == 2
    second = _dispatch(_redeliver_from_lowest_failure(records, first), sinks, aws, session)

    assert second.failed_sequence_numbers == []
    assert second.dead_lettered == 0
    assert len(HANDED["broken"]) == 2  # handed each finding once, never again
    assert len(drain_queue(session, aws_names["DispatchDeadLetterQueue"])) == 2


def test_dispatch_dead_letter_queue_unavailable_record_failed_then_dead_lettered_on_redelivery(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, outbox: dict[str, Any],
        tmp_path: Path) -> None:
    records = parse_stream_records(outbox)
    sinks = _sinks(tmp_path, {"name": "broken", "permanent": True})

    first = _dispatch(records, sinks, aws, session, dead_letter_url=MISSING_QUEUE)
    assert first.failed_sequence_numbers == [r.sequence_number for r in records]  # not lost: retried
    assert first.dead_lettered == 0
    second = _dispatch(records, sinks, aws, session)

    assert (second.failed_sequence_numbers, second.dead_lettered) == ([], 2)
    assert len(drain_queue(session, aws_names["DispatchDeadLetterQueue"])) == 2
    assert len(_file_lines(tmp_path)) == 2  # the file sink delivered on the first attempt, and only then


def test_dispatch_new_revision_from_modify_record_delivered_as_update(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, tmp_path: Path) -> None:
    # mac-02 in two batches: without its network activity (a stages 1-3 finding, revision 1), then with it
    # (the same chain with stage 4: revision 2, a MODIFY of the outbox item).
    shards = put_and_read(session, aws_names["TelemetryStream"], [(k, d) for k, d in sample_entries() if k == "mac-02"])
    records = one_batch(shards)
    network = [r for r in records if b'"class_uid":4001' in r.data]
    correlate([r for r in records if r not in network], aws, session)
    correlate(network, aws, session)
    event = outbox_stream_event(session, aws.tables.findings)
    assert [r["eventName"] for r in event["Records"]] == ["INSERT", "MODIFY"]

    report = _dispatch(parse_stream_records(event), _sinks(tmp_path), aws, session)

    assert report.deliveries == {"local-file": 2}
    lines = _file_lines(tmp_path)
    assert [revision for _, revision in lines] == [1, 2] and lines[0][0] == lines[1][0]
    assert parse_stream_records(event)[1].delivery.is_update


# -- the Lambda handler ----------------------------------------------------------------------------------------


def test_lambda_handler_transient_sink_failure_reported_then_redelivery_completes(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sinks = [{"kind": "file", "name": "local-file", "path": str(tmp_path / "findings.jsonl")},
             {"kind": "test-scripted", "name": "flaky", "transient_failures": 1}]
    for key, value in {
        "STATE_TABLE": aws.tables.state, "FINDINGS_TABLE": aws.tables.findings,
        "DELIVERIES_TABLE": aws.tables.deliveries, "DEAD_LETTER_QUEUE_URL": aws.dead_letter_queue_url or "",
        "SINKS_JSON": orjson.dumps(sinks).decode(), "AWS_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_DISABLED": "1", "POWERTOOLS_METRICS_NAMESPACE": "chainwatch",
        "POWERTOOLS_SERVICE_NAME": "chainwatch-dispatch", "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(key, value)
    handler = load_handler("dispatch", ROOT)
    sequence = [r["dynamodb"]["SequenceNumber"] for r in outbox["Records"]]

    first = handler.lambda_handler(outbox, LambdaContext(function_name="chainwatch-dispatch"))
    second = handler.lambda_handler(outbox, LambdaContext(function_name="chainwatch-dispatch"))

    assert first == {"batchItemFailures": [{"itemIdentifier": s} for s in sequence]}
    assert second == {"batchItemFailures": []}
    assert len(_file_lines(tmp_path)) == 2
    assert [o for _, _, o in HANDED["flaky"]] == ["failed_transient"] * 2 + ["delivered"] * 2


def test_sqs_sender_unknown_queue_raises_transient_error(session: boto3.session.Session) -> None:
    send = sqs_sender(session.client("sqs"), MISSING_QUEUE)
    with pytest.raises(TransientError):
        send([DeadLetter("s", "cw-1", 1, "detail", None)])


def test_dispatch_missing_secret_dead_letters_with_reason_and_ticket_map_errors_are_transient(
        aws: Any, session: boto3.session.Session) -> None:
    """Secrets Manager through Powertools: a missing secret is a configuration error (dead letter, not a crash);
    a ticket map whose table is unreachable raises the transient error the sinks retry."""
    from chainwatch.app.runtime import secret_resolver
    from chainwatch.errors import ConfigError, TransientError
    from chainwatch.state.dynamodb import DynamoTicketMap, Tables, make_models

    with pytest.raises(ConfigError, match="cannot be read"):
        secret_resolver(session.client("secretsmanager"))("chainwatch/test/missing")
    broken = DynamoTicketMap(make_models(Tables(state="x", findings="y", deliveries="no-such-table")))
    with pytest.raises(TransientError):
        broken.get("cw-1", "jira")
    with pytest.raises(TransientError):
        broken.set("cw-1", "jira", "SEC-1")


# -- sinks isolated from each other (real sinks against the vendor stand-ins) ----------------------------------


class _StallSleep:
    """The injected sleep of the stalled sink: records each wait and, instead of sleeping, watches whether the other
    sinks deliver meanwhile (they cannot if the sinks run one after another)."""

    def __init__(self, others_done: Callable[[], bool]) -> None:
        self.others_done = others_done
        self.delays: list[float] = []
        self.others_delivered_during_stall: list[bool] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        done = threading.Event()
        for _ in range(200):  # a bound on a loop that ends as soon as the others are done, not a timed assertion
            if self.others_done():
                done.set()
                break
            done.wait(0.05)
        self.others_delivered_during_stall.append(done.is_set())


def _vendor_sinks(tmp_path: Path, pd_url: str, hec_url: str, sleep: Callable[[float], None]) -> list[Sink]:
    from standins.pagerduty import DEFAULT_ROUTING_KEY
    from standins.splunk import DEFAULT_TOKEN

    secrets = {"pd": DEFAULT_ROUTING_KEY, "hec": DEFAULT_TOKEN}
    context = SinkContext(session=requests.Session(), secret=secrets.__getitem__, ticket_map=InMemoryTicketMap(),
                          retry=RetryPolicy(max_attempts=3, sleep=sleep), timeout=5.0)
    return build_sinks([
        {"kind": "pagerduty", "name": "pagerduty", "url": pd_url, "routing_key_secret": "pd"},  # first: it stalls
        {"kind": "splunk_hec", "name": "splunk", "url": hec_url, "token_secret": "hec"},
        {"kind": "file", "name": "local-file", "path": str(tmp_path / "findings.jsonl")},
    ], context)


@pytest.fixture
def vendors() -> Iterator[tuple[Any, Any]]:
    from standins.pagerduty import start_pagerduty_server
    from standins.splunk import start_splunk_server

    pd, _ = start_pagerduty_server()
    hec, _ = start_splunk_server()
    yield pd, hec
    pd.stop()
    hec.stop()


def test_dispatch_sink_stalled_by_retry_after_others_deliver_meanwhile(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path,
        vendors: tuple[Any, Any]) -> None:
    pd, hec = vendors
    pd.throttle(1, retry_after=6)
    sleep = _StallSleep(lambda: len(hec.events) == 2 and len(_file_lines(tmp_path)) == 2)
    records = parse_stream_records(outbox)

    report = dispatch(records, _vendor_sinks(tmp_path, pd.base_url, hec.base_url, sleep),
                      DynamoDeliveryLog(make_models(aws.tables)), sqs_sender(session.client("sqs"), None),
                      remaining=lambda: 280.0)

    assert sleep.delays == [6.0]  # PagerDuty's Retry-After, as sent
    assert sleep.others_delivered_during_stall == [True]  # Splunk and the file sink did not wait for PagerDuty
    assert report.deliveries == {"pagerduty": 2, "splunk": 2, "local-file": 2}
    assert report.failed_sequence_numbers == [] and report.timed_out == []
    assert len(pd.alerts) == 2


def test_dispatch_retry_after_beyond_budget_left_for_later_and_never_called_earlier(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], tmp_path: Path,
        vendors: tuple[Any, Any]) -> None:
    pd, hec = vendors
    pd.throttle(1, retry_after=200)
    sleeps: list[float] = []
    sinks = _vendor_sinks(tmp_path, pd.base_url, hec.base_url, sleeps.append)
    log = DynamoDeliveryLog(make_models(aws.tables))
    records = parse_stream_records(outbox)
    now = [1_800_000_000.0]

    def run() -> DispatchReport:
        return dispatch(records, sinks, log, sqs_sender(session.client("sqs"), None), remaining=lambda: 60.0,
                        clock=lambda: now[0])

    first = run()
    now[0] += 199  # Lambda redelivers the records well before PagerDuty's 200 s
    early = run()
    now[0] += 2
    due = run()

    assert sleeps == []  # 200 s never fit in the 55 s budget: no sleep, no shortened wait
    assert first.deliveries == {"splunk": 2, "local-file": 2}
    assert first.sinks["pagerduty"].retried == 2 and first.sinks["pagerduty"].delivered == 0
    assert sorted(first.failed_sequence_numbers) == sorted(r.sequence_number for r in records)
    assert early.deliveries == {} and early.sinks["pagerduty"].retried == 2
    assert "Retry-After" in early.sinks["pagerduty"].reasons[0][2]
    assert early.failed_sequence_numbers == first.failed_sequence_numbers
    assert due.deliveries == {"pagerduty": 2} and due.failed_sequence_numbers == []
    # One request before the wait (the 429), none during it, then one per finding.
    assert len(pd.requests) == 3
    assert len(hec.events) == 2 and len(_file_lines(tmp_path)) == 2
    assert due.metrics()["Delivered.pagerduty"] == 2 and first.metrics()["Retried.pagerduty"] == 2
