"""The Splunk HEC sink against the local HEC stand-in (real requests code over loopback)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from siem_support import (
    Sleeps,
    alert_with_egress,
    deliveries,
    detect_findings,
    hostile,
    make_context,
    stage_process,
    variant,
)
from standins.splunk import DEFAULT_TOKEN, RecordedRequest, SplunkHecServer, start_splunk_server

from chainwatch.sinks.base import Delivery, Outcome, SinkContext, build_sinks
from chainwatch.sinks.splunk_hec import DEFAULT_SOURCETYPE, SplunkHecSink, derived_channel

SECRET_NAME = "chainwatch/splunk-hec"


@pytest.fixture(scope="module")
def finding(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return alert_with_egress(detect_findings(tmp_path_factory.mktemp("detect")))


@pytest.fixture
def hec() -> Iterator[tuple[SplunkHecServer, str]]:
    server, url = start_splunk_server(indexes=["security", "main"])
    yield server, url
    server.stop()


def make_sink(url: str, *, token: Any = DEFAULT_TOKEN, max_attempts: int = 4, **options: Any,
              ) -> tuple[SplunkHecSink, SinkContext, Sleeps]:
    context, sleeps = make_context({SECRET_NAME: token}, max_attempts=max_attempts)
    config = {"kind": "splunk_hec", "url": url, "token_secret": SECRET_NAME, **options}
    return SplunkHecSink("splunk", config, context), context, sleeps


def bodies(server: SplunkHecServer) -> list[bytes]:
    return [r.body for r in server.event_requests()]


def test_splunk_hec_batch_happy_path_one_request_of_concatenated_events(hec: tuple[SplunkHecServer, str],
                                                                         finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, sleeps = make_sink(url, index="security")
    second = variant(finding, "cw-second")

    results = sink.send(deliveries(finding, second))

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    [request] = server.event_requests()
    assert request.path == "/services/collector/event"
    assert request.headers["authorization"] == f"Splunk {DEFAULT_TOKEN}"
    assert not request.body.lstrip().startswith(b"["), "a HEC batch is stacked objects, not an array"
    events = server.events
    assert [e["event"]["finding_id"] for e in events] == [finding["finding_info"]["uid"], "cw-second"]
    first = events[0]
    assert first["sourcetype"] == DEFAULT_SOURCETYPE
    assert first["index"] == "security"
    assert first["host"] == finding["device"]["hostname"]
    assert first["time"] == finding["time"] / 1000  # epoch seconds, millisecond precision
    assert first["fields"] == {"finding_id": finding["finding_info"]["uid"], "revision": "1",
                               "severity": finding["severity"], "canary": "false"}
    event = first["event"]
    assert event["revision"] == 1 and event["activity"] == "create" and event["canary"] is False
    assert event["title"] == finding["finding_info"]["title"]
    attacks = finding["finding_info"]["attacks"]
    assert event["mitre_technique_id"] == [(a.get("sub_technique") or a["technique"])["uid"] for a in attacks]
    executed = stage_process(finding, 3) or {}
    assert event["process"]["name"] == executed["name"]  # the stage-3 process is the one to pivot on
    assert event["process"]["cmd_line"] == executed["cmd_line"]
    assert event["process"]["parent_pid"] == executed["parent_process"]["pid"]
    egress = finding["unmapped"]["chainwatch"]["egress"][0]
    assert (event["dest_ip"], event["dest_port"]) == (egress["ip"], egress["port"])
    assert "timeline:" in event["story"] and event["truncated"] is False
    assert sleeps == []


def test_splunk_hec_sourcetype_and_source_configured_are_sent(hec: tuple[SplunkHecServer, str],
                                                              finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url + "/services/collector/event", sourcetype="mac:chain", source="cw-prod")

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    [event] = server.events
    assert (event["sourcetype"], event["source"], event["index"]) == ("mac:chain", "cw-prod", "main")
    assert "index" not in json.loads(server.event_requests()[0].body), "no index configured: the token's default"


def test_splunk_hec_same_revision_delivered_twice_one_event(hec: tuple[SplunkHecServer, str],
                                                            finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url)

    first = sink.send(deliveries(finding))
    again = sink.send(deliveries(finding))

    assert first[0].outcome is Outcome.DELIVERED
    assert again[0].outcome is Outcome.DELIVERED and "already delivered" in again[0].detail
    assert len(server.events) == 1
    assert len(server.event_requests()) == 1


def test_splunk_hec_revision_two_adds_one_update_event_and_old_revision_is_skipped(
        hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url)

    sink.send(deliveries(finding, revision=1))
    [update] = sink.send(deliveries(finding, revision=2))
    [late] = sink.send(deliveries(finding, revision=1))
    [update_again] = sink.send(deliveries(finding, revision=2))

    assert update.outcome is Outcome.DELIVERED
    assert late.outcome is Outcome.SKIPPED and "superseded by revision 2" in late.detail
    assert update_again.outcome is Outcome.DELIVERED
    events = server.events
    assert [(e["event"]["revision"], e["event"]["activity"]) for e in events] == [(1, "create"), (2, "update")]
    assert {e["event"]["finding_id"] for e in events} == {finding["finding_info"]["uid"]}


def test_splunk_hec_dedupe_disabled_sends_every_time(hec: tuple[SplunkHecServer, str],
                                                     finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url, dedupe=False)

    sink.send(deliveries(finding))
    sink.send(deliveries(finding))

    assert len(server.events) == 2  # HEC itself has no dedupe; finding_id + revision allow it at search time


def test_splunk_hec_429_with_retry_after_then_success_sleeps_retry_after(hec: tuple[SplunkHecServer, str],
                                                                        finding: dict[str, Any]) -> None:
    server, url = hec
    server.fail_next(429, times=2, retry_after=7)
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    assert sleeps == [7.0, 7.0]
    assert len(server.event_requests()) == 3
    assert len(server.events) == 1


def test_splunk_hec_503_busy_for_a_while_then_recovers_delivered_once(hec: tuple[SplunkHecServer, str],
                                                                     finding: dict[str, Any]) -> None:
    server, url = hec
    server.fail_next(503, times=2)  # code 9, server busy
    server.fail_next(500, times=1)  # code 8, internal error
    sink, _, sleeps = make_sink(url, max_attempts=5)
    docs = [finding, variant(finding, "cw-b"), variant(finding, "cw-c")]

    results = sink.send(deliveries(*docs))

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    assert len(sleeps) == 3 and all(0 <= s <= 20 for s in sleeps)  # backoff with jitter, no Retry-After sent
    assert sorted(e["event"]["finding_id"] for e in server.events) == sorted(d["finding_info"]["uid"] for d in docs)


def test_splunk_hec_busy_outlives_retries_failed_transient_with_retry_after(hec: tuple[SplunkHecServer, str],
                                                                           finding: dict[str, Any]) -> None:
    server, url = hec
    server.fail_next(503, times=10, retry_after=3)
    sink, _, sleeps = make_sink(url, max_attempts=3)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_TRANSIENT
    assert result.retry_after == 3.0
    assert "503" in result.detail and '"code": 9' in (result.response or "")
    assert sleeps == [3.0, 3.0] and len(server.event_requests()) == 3
    assert server.events == []


def test_splunk_hec_retry_not_started_past_time_budget_failed_transient(hec: tuple[SplunkHecServer, str],
                                                                       finding: dict[str, Any]) -> None:
    server, url = hec
    server.fail_next(503, times=1, retry_after=30)
    context, sleeps = make_context({SECRET_NAME: DEFAULT_TOKEN}, remaining=lambda: 10.0)
    sink = SplunkHecSink("splunk", {"url": url, "token_secret": SECRET_NAME}, context)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_TRANSIENT and result.retry_after == 30.0
    assert sleeps == [] and len(server.event_requests()) == 1


def test_splunk_hec_400_invalid_data_failed_permanent_with_body_no_retry(hec: tuple[SplunkHecServer, str],
                                                                        finding: dict[str, Any]) -> None:
    server, url = hec
    server.fail_next(400, body='{"text":"Invalid data format","code":6,"invalid-event-number":0}')
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert result.response is not None and "Invalid data format" in result.response
    assert "HEC code 6" in result.detail
    assert sleeps == [] and len(server.event_requests()) == 1


def test_splunk_hec_incorrect_index_failed_permanent_for_the_batch(hec: tuple[SplunkHecServer, str],
                                                                  finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, sleeps = make_sink(url, index="not_allowed")

    results = sink.send(deliveries(finding, variant(finding, "cw-b")))

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT] * 2
    assert all('"code": 7' in (r.response or "") for r in results)
    assert sleeps == [] and server.events == []


@pytest.mark.parametrize(("token", "status", "code"), [("wrong-token", 403, 4), ("", 401, 2)])
def test_splunk_hec_token_rejected_failed_permanent_no_retry(hec: tuple[SplunkHecServer, str],
                                                             finding: dict[str, Any], token: str, status: int,
                                                             code: int) -> None:
    server, url = hec
    if not token:
        server.fail_next(401)  # a proxy dropped the header: HEC says "Token is required"
        token = DEFAULT_TOKEN
    sink, _, sleeps = make_sink(url, token=token)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert f"HTTP {status}" in result.detail and f'"code": {code}' in (result.response or "")
    assert sleeps == [] and len(server.event_requests()) == 1


def test_splunk_hec_one_invalid_event_in_batch_fails_alone_others_delivered(hec: tuple[SplunkHecServer, str],
                                                                           finding: dict[str, Any]) -> None:
    server, url = hec
    server.reject_events_containing("cw-bad")
    sink, _, sleeps = make_sink(url)
    docs = [variant(finding, "cw-a"), variant(finding, "cw-bad"), variant(finding, "cw-c")]

    results = sink.send(deliveries(*docs))

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.FAILED_PERMANENT, Outcome.DELIVERED]
    assert '"invalid-event-number": 1' in (results[1].response or "")
    stored = [e["event"]["finding_id"] for e in server.events]
    assert "cw-bad" not in stored and stored.count("cw-c") == 1
    # The stand-in kept cw-a (before the bad event) from the first request; the sink sends it again rather than
    # risk losing it, since HEC's documentation does not say whether events before the bad one are kept.
    assert stored.count("cw-a") == 2
    assert sleeps == []


def test_splunk_hec_canary_delivered_marked_canary(hec: tuple[SplunkHecServer, str],
                                                   finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url)

    [result] = sink.send(deliveries(finding, canary=True))

    assert result.outcome is Outcome.DELIVERED
    [event] = server.events
    assert event["event"]["canary"] is True and event["fields"]["canary"] == "true"


def test_splunk_hec_secret_never_in_results_or_logs(hec: tuple[SplunkHecServer, str], finding: dict[str, Any],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    server, url = hec
    token = "5ecret-t0ken-" + "9" * 20
    server.add_token(token)
    # A proxy that echoes the request's Authorization header in its error page (some do).
    server.fail_next(502, times=5, body=f"<html>bad gateway for Authorization: Splunk {token}</html>")
    server.fail_next(400, body=json.dumps({"text": f"rejected Splunk {token}", "code": 6}))
    caplog.set_level(logging.DEBUG)
    sink, _, _ = make_sink(url, token={"token": token}, max_attempts=5)

    [transient] = sink.send(deliveries(finding))
    [permanent] = sink.send(deliveries(finding))
    bad_sink, _, _ = make_sink(url, token="line\nbreak" + token)
    [config] = bad_sink.send(deliveries(finding))

    assert transient.outcome is Outcome.FAILED_TRANSIENT and "[redacted]" in (transient.response or "")
    assert permanent.outcome is Outcome.FAILED_PERMANENT and "[redacted]" in (permanent.response or "")
    assert config.outcome is Outcome.FAILED_PERMANENT and "cannot carry" in config.detail
    for result in (transient, permanent, config):
        assert token not in repr(result)
    assert token not in caplog.text


def test_splunk_hec_hostile_strings_neutralized_and_bounded(hec: tuple[SplunkHecServer, str],
                                                            finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url)

    [result] = sink.send(deliveries(hostile(finding)))

    assert result.outcome is Outcome.DELIVERED
    [request] = server.event_requests()
    assert len(request.body) <= 9000 + 1024  # event under max_event_bytes, envelope a few hundred bytes more
    [stored] = server.events
    event = stored["event"]
    assert event["truncated"] is True
    assert event["title"].startswith("'=HYPERLINK")  # a spreadsheet shows it as text
    assert stored["host"].startswith("'@SUM")
    assert event["process"]["cmd_line"].startswith("'-AAAA") and event["process"]["cmd_line"].endswith("...")

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    for value in strings(stored):
        assert not value.startswith(("=", "+", "-", "@", "|")), value[:40]
        assert "\x1b" not in value and "\x00" not in value and "\u202e" not in value
    assert "\\x1b[31mRED\\x00\\r\\n" in event["process"]["path"]  # control characters shown, not obeyed
    assert event["files"][-1].endswith(" more left out]")
    body = request.body.decode()
    assert body.count("=HYPERLINK") == body.count("'=HYPERLINK") > 0


def test_splunk_hec_connection_refused_failed_transient(finding: dict[str, Any]) -> None:
    server, url = start_splunk_server()
    server.stop()  # nothing listens on that port any more
    sink, _, sleeps = make_sink(url, max_attempts=2)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_TRANSIENT
    assert "ConnectionError" in result.detail and len(sleeps) == 1


def test_splunk_hec_batches_split_by_max_batch_bytes(hec: tuple[SplunkHecServer, str],
                                                     finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url, max_batch_bytes=12_000)
    docs = [variant(finding, f"cw-{i}") for i in range(5)]

    results = sink.send(deliveries(*docs))

    assert all(r.outcome is Outcome.DELIVERED for r in results)
    requests_ = server.event_requests()
    assert len(requests_) >= 2 and all(len(r.body) <= 12_000 for r in requests_)
    assert len(server.events) == 5


def test_splunk_hec_indexer_ack_token_gets_channel_and_ack_id(finding: dict[str, Any]) -> None:
    server, url = start_splunk_server(use_ack=True)
    try:
        missing, _, _ = make_sink(url)
        [no_channel] = missing.send(deliveries(finding))
        sink, _, _ = make_sink(url, channel="0aa3f0b1-7c6e-4d8e-9b1a-1f2e3d4c5b6a")
        [result] = sink.send(deliveries(finding))
    finally:
        server.stop()

    assert no_channel.outcome is Outcome.FAILED_PERMANENT and "Data channel is missing" in (no_channel.response or "")
    assert result.outcome is Outcome.DELIVERED and "ackId 0" in result.detail


def test_splunk_hec_missing_url_or_secret_failed_permanent(finding: dict[str, Any]) -> None:
    context, _ = make_context({})
    no_url = SplunkHecSink("splunk", {"token_secret": SECRET_NAME}, context)
    not_json = SplunkHecSink("splunk", {"url": "http://127.0.0.1:9", "token_secret": SECRET_NAME},
                             make_context({SECRET_NAME: {"user": "x"}})[0])

    [a] = no_url.send(deliveries(finding))
    [b] = not_json.send(deliveries(finding))

    assert a.outcome is Outcome.FAILED_PERMANENT and "needs 'url'" in a.detail
    assert b.outcome is Outcome.FAILED_PERMANENT and "none of the keys" in b.detail


def test_splunk_hec_malformed_finding_fails_alone(hec: tuple[SplunkHecServer, str],
                                                  finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url)
    odd = Delivery("cw-odd", 1, {"finding_info": "not an object", "evidences": [1, None], "time": "soon",
                                 "unmapped": {"chainwatch": {"egress": "x", "process_tree": [None]}}})

    results = sink.send([odd, *deliveries(finding)])

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    odd_event = server.events[0]
    assert odd_event["event"]["finding_id"] == "cw-odd" and "time" not in odd_event


def test_splunk_hec_registered_under_its_kind(tmp_path: Path) -> None:
    context, _ = make_context({})
    [sink] = build_sinks([{"kind": "splunk_hec", "name": "hec", "url": "https://x", "token_secret": "t"}], context)
    assert isinstance(sink, SplunkHecSink)


def test_standin_rejects_array_body_and_bad_scheme(hec: tuple[SplunkHecServer, str]) -> None:
    server, url = hec
    import requests

    array = requests.post(url + "/services/collector/event", data=b'[{"event": "x"}]',
                          headers={"Authorization": f"Splunk {DEFAULT_TOKEN}"}, timeout=5)
    bearer = requests.post(url + "/services/collector/event", data=b'{"event": "x"}',
                           headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=5)
    health = requests.get(url + "/services/collector/health", timeout=5)

    assert (array.status_code, array.json()["code"]) == (400, 6)
    assert (bearer.status_code, bearer.json()) == (401, {"text": "Invalid authorization", "code": 3})
    assert health.json() == {"text": "HEC is healthy", "code": 17}
    assert server.events == []


def test_splunk_hec_time_budget_too_short_failed_transient_without_request(hec: tuple[SplunkHecServer, str],
                                                                           finding: dict[str, Any]) -> None:
    server, url = hec
    context, _ = make_context({SECRET_NAME: DEFAULT_TOKEN}, remaining=lambda: 3.0)  # < timeout 5 s + margin
    sink = SplunkHecSink("splunk", {"url": url, "token_secret": SECRET_NAME}, context)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_TRANSIENT and "time budget" in result.detail
    assert server.event_requests() == []


def test_splunk_hec_same_revision_twice_in_one_batch_one_event(hec: tuple[SplunkHecServer, str],
                                                               finding: dict[str, Any]) -> None:
    server, url = hec
    sink, _, _ = make_sink(url, dedupe=False)

    results = sink.send(deliveries(finding, finding))

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert len(server.events) == 1


def test_splunk_hec_200_that_is_not_hec_failed_permanent(hec: tuple[SplunkHecServer, str],
                                                         finding: dict[str, Any]) -> None:
    server, url = hec
    server.fail_next(200, body="<html>Splunk Web login</html>")
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and "is the url the collector" in result.detail
    assert sleeps == []


def test_splunk_hec_redirect_not_followed_failed_permanent(hec: tuple[SplunkHecServer, str],
                                                           finding: dict[str, Any]) -> None:
    server, url = hec
    server.fail_next(301, body="", headers={"Location": "https://elsewhere.example/services/collector/event"})
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and "redirect to https://elsewhere.example" in result.detail
    assert len(server.requests) == 1 and sleeps == []  # a redirected POST would have become a GET without a body


# -- indexer acknowledgement ---------------------------------------------------------------------------------------

ACK_PATH = "/services/collector/ack"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def ack_hec() -> Iterator[tuple[SplunkHecServer, str]]:
    server, url = start_splunk_server(use_ack=True)
    yield server, url
    server.stop()


def ack_requests(server: SplunkHecServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == ACK_PATH]


def test_splunk_hec_indexer_ack_happy_path_delivered_once_ack_reads_true(ack_hec: tuple[SplunkHecServer, str],
                                                                          finding: dict[str, Any]) -> None:
    server, url = ack_hec
    sink, context, sleeps = make_sink(url, indexer_ack=True)
    second = variant(finding, "cw-second")

    results = sink.send(deliveries(finding, second))

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert all(r.detail == "indexed by HEC (ackId 0 confirmed)" for r in results)
    [request] = server.event_requests()
    channel = request.headers["x-splunk-request-channel"]
    assert GUID.match(channel) and channel == derived_channel("splunk", url + "/services/collector/event")
    polls = ack_requests(server)
    assert [json.loads(p.body) for p in polls] == [{"acks": [0]}, {"acks": [0]}]  # false once, then true
    assert all(p.headers["x-splunk-request-channel"] == channel for p in polls)
    assert sleeps == [1.0]  # ack_poll_interval between the two questions
    assert len(server.events) == 2 and server.pending_acks() == {}
    assert context.ticket_map.get(results[0].finding_id, "splunk") == "delivered:r1"
    assert sink.mode == "indexer-ack"


def test_splunk_hec_indexer_ack_channel_is_stable_per_sink_config_and_configurable(
        ack_hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    server, url = ack_hec
    configured = "0AA3F0B1-7C6E-4D8E-9B1A-1F2E3D4C5B6A"
    for options in ({"indexer_ack": True}, {"indexer_ack": True}, {"indexer_ack": "true", "channel": configured}):
        sink, _, _ = make_sink(url, dedupe=False, **options)
        [result] = sink.send(deliveries(finding))
        assert result.outcome is Outcome.DELIVERED, result
    channels = [r.headers["x-splunk-request-channel"] for r in server.event_requests()]

    assert channels[0] == channels[1] != channels[2] == configured.lower()
    assert derived_channel("other", url) != derived_channel("splunk", url)


def test_splunk_hec_indexer_ack_slow_indexing_left_for_later_then_redelivery_asks_ack_not_resent(
        ack_hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    # The reply to the event request arrived, but the indexer had not confirmed when this attempt's wait ended
    # (a crash or a timeout after the send looks the same to the next attempt: the ackId is on record).
    server, url = ack_hec
    server.hold_indexing()
    sink, context, sleeps = make_sink(url, indexer_ack=True, ack_timeout=10)
    now = [1_700_000_000.0]
    sink.clock = lambda: now[0]
    [delivery] = deliveries(finding)

    [first] = sink.send([delivery])
    recorded = context.ticket_map.get(delivery.finding_id, "splunk")
    server.index_pending()
    now[0] += 60
    [second] = sink.send([delivery])

    assert first.outcome is Outcome.FAILED_TRANSIENT and first.retry_after == 10
    assert "ackId 0" in first.detail and "not confirmed within 10 s" in first.detail
    assert sum(sleeps) <= 10 and sleeps == [1.0, 2.0, 4.0]  # doubling; the next wait (8 s) would pass 10 s
    channel = derived_channel("splunk", url + "/services/collector/event")
    assert recorded == f"acking:r1:0:{channel}:0:1700000000"
    assert second.outcome is Outcome.DELIVERED and "ackId 0 of an earlier send confirmed" in second.detail
    assert len(server.event_requests()) == 1 and len(server.events) == 1  # asked, not sent again
    assert context.ticket_map.get(delivery.finding_id, "splunk") == "delivered:r1"


def test_splunk_hec_indexer_ack_never_true_left_for_later_then_sent_again_at_least_once(
        ack_hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    # The indexer lost the request (the ack never turns true): the delivery is left for a later attempt, which
    # asks once more, then sends again. Both copies carry the dedupe keys, should the first turn up after all.
    server, url = ack_hec
    server.hold_indexing()
    sink, context, sleeps = make_sink(url, indexer_ack=True, ack_timeout=3, ack_poll_interval=1)
    assert sleeps == []
    now = [1_700_000_000.0]
    sink.clock = lambda: now[0]
    [delivery] = deliveries(finding)

    [first] = sink.send([delivery])
    now[0] += 300
    [second] = sink.send([delivery])

    assert first.outcome is Outcome.FAILED_TRANSIENT and second.outcome is Outcome.FAILED_TRANSIENT
    assert "left for a later attempt" in first.detail and "ackId 1" in second.detail
    assert sleeps == [1.0, 2.0, 1.0, 2.0]  # 3 s of waiting in each attempt; the recorded ack was 300 s old
    assert len(server.event_requests()) == 2
    assert [json.loads(p.body) for p in ack_requests(server)][:3] == [{"acks": [0]}] * 3
    assert {(e["fields"]["finding_id"], e["fields"]["revision"]) for e in server.events} == {
        (delivery.finding_id, "1")}  # `| dedup finding_id revision` keeps one
    channel = derived_channel("splunk", url + "/services/collector/event")
    assert context.ticket_map.get(delivery.finding_id, "splunk") == f"acking:r1:1:{channel}:0:1700000300"


def test_splunk_hec_indexer_ack_wait_bounded_by_time_budget(ack_hec: tuple[SplunkHecServer, str],
                                                            finding: dict[str, Any]) -> None:
    server, url = ack_hec
    server.hold_indexing()
    left = [20.0]
    context, sleeps = make_context({SECRET_NAME: DEFAULT_TOKEN}, remaining=lambda: left[0])

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        left[0] -= seconds

    context.retry.sleep = sleep
    sink = SplunkHecSink("splunk", {"kind": "splunk_hec", "url": url, "token_secret": SECRET_NAME,
                                    "indexer_ack": True, "ack_timeout": 600}, context)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_TRANSIENT and "not confirmed" in result.detail
    assert left[0] >= context.timeout + context.retry.safety_margin  # never waited into the margin
    assert sleeps == [1.0, 2.0, 4.0]  # 8 s more would leave less than one request's timeout + the margin


def test_splunk_hec_indexer_ack_429_and_503_on_ack_endpoint_honoured_then_confirmed(
        ack_hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    server, url = ack_hec
    server.index_after_queries = 0
    server.fail_next(429, retry_after=3, path="ack")
    server.fail_next(503, path="ack")
    sink, _, sleeps = make_sink(url, indexer_ack=True)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED and "ackId 0 confirmed" in result.detail
    assert len(ack_requests(server)) == 3 and len(server.event_requests()) == 1
    assert sleeps == [3.0, 2.0]  # Retry-After as sent, then the (doubled) poll interval


def test_splunk_hec_indexer_ack_event_reply_lost_after_indexing_resent_duplicate_keeps_dedupe_keys(
        ack_hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    # HEC took the events, the reply (with the ackId) never arrived: without the ackId nothing can be asked, so
    # the request is sent again. The copy is the rare duplicate the documented search removes.
    server, url = ack_hec
    server.drop_response_after_indexing(path="event")
    sink, context, _ = make_sink(url, indexer_ack=True)
    [delivery] = deliveries(finding)

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.DELIVERED and "ackId 1 confirmed" in result.detail
    assert len(server.event_requests()) == 2 and len(server.events) == 2
    keys = {(e["fields"]["finding_id"], e["fields"]["revision"], e["event"]["finding_id"]) for e in server.events}
    assert keys == {(delivery.finding_id, "1", delivery.finding_id)}
    assert context.ticket_map.get(delivery.finding_id, "splunk") == "delivered:r1"


def test_splunk_hec_channel_missing_on_ack_token_clear_permanent_configuration_error(
        ack_hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    server, url = ack_hec
    sink, _, sleeps = make_sink(url)  # indexer_ack not set

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert "Data channel is missing" in result.detail and "set indexer_ack: true" in result.detail
    assert result.response is not None and '"code": 10' in result.response
    assert sleeps == [] and len(server.event_requests()) == 1 and server.events == []
    assert sink.mode == "search-time-dedupe"


def test_splunk_hec_channel_not_a_guid_failed_permanent_without_request(ack_hec: tuple[SplunkHecServer, str],
                                                                        finding: dict[str, Any]) -> None:
    server, url = ack_hec
    sink, _, _ = make_sink(url, indexer_ack=True, channel="my-channel")
    bad_timeout, _, _ = make_sink(url, indexer_ack=True, ack_timeout="soon")

    [result] = sink.send(deliveries(finding))
    [timeout_result] = bad_timeout.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and "channel must be a GUID" in result.detail
    assert timeout_result.outcome is Outcome.FAILED_PERMANENT and "ack_timeout" in timeout_result.detail
    assert server.requests == []


def test_splunk_hec_indexer_ack_off_token_without_ack_unchanged(hec: tuple[SplunkHecServer, str],
                                                                finding: dict[str, Any]) -> None:
    server, url = hec
    sink, context, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    assert result.detail == "accepted by HEC (search-time dedupe on finding_id + revision)"
    [request] = server.event_requests()
    assert "x-splunk-request-channel" not in request.headers
    assert ack_requests(server) == [] and sleeps == []
    assert context.ticket_map.get(result.finding_id, "splunk") == "delivered:r1"


def test_splunk_hec_indexer_ack_on_but_token_without_ack_delivered_and_says_unconfirmed(
        hec: tuple[SplunkHecServer, str], finding: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    server, url = hec
    sink, _, _ = make_sink(url, indexer_ack=True)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    assert "does not use indexer acknowledgement" in result.detail and "search-time dedupe" in result.detail
    assert ack_requests(server) == []
    assert "has no indexer acknowledgement" in caplog.text


def test_splunk_hec_indexer_ack_reply_to_ack_question_lost_later_attempt_sends_again(
        ack_hec: tuple[SplunkHecServer, str], finding: dict[str, Any]) -> None:
    # HEC answered "true" but the reply was lost, and HEC forgets an ack it reported: every later question reads
    # false, so the delivery is sent again (at-least-once). The copy carries the same dedupe keys.
    server, url = ack_hec
    server.index_after_queries = 0
    server.drop_response_after_indexing(path="ack")
    sink, _, _ = make_sink(url, indexer_ack=True, ack_timeout=2)
    now = [1_700_000_000.0]
    sink.clock = lambda: now[0]
    [delivery] = deliveries(finding)

    [first] = sink.send([delivery])
    now[0] += 60
    [second] = sink.send([delivery])

    assert first.outcome is Outcome.FAILED_TRANSIENT and "not confirmed" in first.detail
    assert second.outcome is Outcome.DELIVERED and "ackId 1 confirmed" in second.detail
    assert len(server.event_requests()) == 2
    assert {(e["fields"]["finding_id"], e["fields"]["revision"]) for e in server.events} == {
        (delivery.finding_id, "1")}


@pytest.mark.parametrize("garbled", ["acking:r1:zero:chan:0:1", "acking:r1", "acking:r1:0:c:0:1:extra"])
def test_splunk_hec_indexer_ack_unreadable_ledger_entry_sent_again(ack_hec: tuple[SplunkHecServer, str],
                                                                   finding: dict[str, Any], garbled: str) -> None:
    server, url = ack_hec
    sink, context, _ = make_sink(url, indexer_ack=True)
    [delivery] = deliveries(finding)
    context.ticket_map.set(delivery.finding_id, "splunk", garbled)

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.DELIVERED and "ackId 0 confirmed" in result.detail
    assert len(server.event_requests()) == 1
