"""dispatch under moto with Splunk HEC indexer acknowledgement: the pending ackId lives in the delivery bookkeeping
(the Deliveries table, through the DynamoDB ticket map), so Lambda's redelivery asks HEC about it instead of
sending the events again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from pipeline_support import correlate, outbox_stream_event, put_and_read, sample_entries
from standins.splunk import DEFAULT_TOKEN, SplunkHecServer, start_splunk_server

from chainwatch.app.settings import Settings
from chainwatch.pipeline.dispatch import dispatch, parse_stream_records, sqs_sender
from chainwatch.sinks.base import RetryPolicy, SinkContext, build_sinks
from chainwatch.state.dynamodb import DynamoDeliveryLog, DynamoTicketMap, make_models


@pytest.fixture
def hec() -> Iterator[SplunkHecServer]:
    server, _ = start_splunk_server(use_ack=True)
    yield server
    server.stop()


@pytest.fixture
def outbox(aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> dict[str, Any]:
    for shard in put_and_read(session, aws_names["TelemetryStream"], sample_entries()):
        assert correlate(shard.batch(), aws, session).failed_sequence_numbers == []
    return outbox_stream_event(session, aws.tables.findings)


def test_dispatch_splunk_ack_not_confirmed_redelivery_asks_recorded_ack_and_sends_nothing_again(
        aws: Settings, session: boto3.session.Session, outbox: dict[str, Any], hec: SplunkHecServer) -> None:
    hec.hold_indexing()
    sleeps: list[float] = []
    models = make_models(aws.tables)
    context = SinkContext(session=requests.Session(), secret={"hec": DEFAULT_TOKEN}.__getitem__,
                          ticket_map=DynamoTicketMap(models), retry=RetryPolicy(max_attempts=3, sleep=sleeps.append),
                          timeout=5.0)
    [sink] = build_sinks([{"kind": "splunk_hec", "name": "splunk", "url": hec.base_url, "token_secret": "hec",
                           "indexer_ack": True, "ack_timeout": 5}], context)
    log = DynamoDeliveryLog(models)
    records = parse_stream_records(outbox)
    now = [1_800_000_000.0]

    def run() -> Any:
        return dispatch(records, [sink], log, sqs_sender(session.client("sqs"), None), remaining=lambda: 120.0,
                        clock=lambda: now[0])

    first = run()
    pending = {r.delivery.finding_id: DynamoTicketMap(models).get(r.delivery.finding_id, "splunk") for r in records}
    hec.index_pending()
    now[0] += 6  # after the Retry-After the unconfirmed deliveries asked for (ack_timeout)
    second = run()

    assert first.deliveries == {} and first.sinks["splunk"].retried == 2
    assert sorted(first.failed_sequence_numbers) == sorted(r.sequence_number for r in records)
    assert all(value is not None and value.startswith("acking:r1:0:") for value in pending.values())
    assert second.deliveries == {"splunk": 2} and second.failed_sequence_numbers == []
    assert len(hec.event_requests()) == 1 and len(hec.events) == 2  # one request, never sent again
    assert all(DynamoTicketMap(models).get(r.delivery.finding_id, "splunk") == "delivered:r1" for r in records)
