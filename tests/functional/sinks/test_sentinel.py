"""The Microsoft Sentinel sink against the local Entra ID + Logs Ingestion stand-in (real requests code, loopback)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from siem_support import (
    FORMULA,
    Sleeps,
    alert_with_egress,
    deliveries,
    detect_findings,
    hostile,
    make_context,
    stage_process,
    variant,
)
from standins.sentinel import (
    API_VERSION,
    CLIENT_ID,
    CLIENT_SECRET,
    DCR_ID,
    STREAM,
    TENANT,
    SentinelServer,
    start_sentinel_server,
)

from chainwatch.sinks.base import Outcome, SinkContext, build_sinks
from chainwatch.sinks.sentinel import SentinelSink

SECRET_NAME = "chainwatch/sentinel"


@pytest.fixture(scope="module")
def finding(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return alert_with_egress(detect_findings(tmp_path_factory.mktemp("detect")))


@pytest.fixture
def azure() -> Iterator[tuple[SentinelServer, str]]:
    SentinelSink._tokens.clear()  # each test starts without a cached token (the cache is process-wide)
    server, url = start_sentinel_server()
    yield server, url
    server.stop()


def make_sink(url: str, *, secret: Any = CLIENT_SECRET, max_attempts: int = 4, **options: Any,
              ) -> tuple[SentinelSink, SinkContext, Sleeps]:
    context, sleeps = make_context({SECRET_NAME: secret}, max_attempts=max_attempts)
    config = {"kind": "sentinel", "endpoint": url, "authority": url, "dcr_immutable_id": DCR_ID, "stream": STREAM,
              "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret_secret": SECRET_NAME, **options}
    [sink] = build_sinks([config], context)
    assert isinstance(sink, SentinelSink)
    return sink, context, sleeps


def test_sentinel_batch_happy_path_one_token_and_one_array_request(azure: tuple[SentinelServer, str],
                                                                   finding: dict[str, Any]) -> None:
    server, url = azure
    sink, _, sleeps = make_sink(url)

    results = sink.send(deliveries(finding, variant(finding, "cw-second")))

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    [token_request] = server.token_requests()
    assert token_request.path == f"/{TENANT}/oauth2/v2.0/token"
    form = {k: v[0] for k, v in parse_qs(token_request.body.decode()).items()}
    assert form == {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                    "scope": "https://monitor.azure.com//.default"}
    [request] = server.ingestion_requests()
    assert request.path == f"/dataCollectionRules/{DCR_ID}/streams/{STREAM}"
    assert request.query == {"api-version": [API_VERSION]}
    assert request.headers["authorization"].startswith("Bearer eyJ")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body)[0]["FindingId"] == finding["finding_info"]["uid"]
    assert server.dropped == []
    rows = server.rows
    assert [r["FindingId"] for r in rows] == [finding["finding_info"]["uid"], "cw-second"]
    row = rows[0]
    assert row["Revision"] == 1 and row["Activity"] == "create" and row["IsAlert"] is True
    assert row["Title"] == finding["finding_info"]["title"] and row["Host"] == finding["device"]["hostname"]
    assert row["TimeGenerated"].endswith("Z") and row["Truncated"] is False
    executed = stage_process(finding, 3) or {}
    assert (row["ProcessName"], row["CommandLine"]) == (executed["name"], executed["cmd_line"])
    egress = finding["unmapped"]["chainwatch"]["egress"][0]
    assert (row["DestinationIp"], row["DestinationPort"]) == (egress["ip"], egress["port"])
    assert "timeline:" in row["Story"]
    assert sleeps == []


def test_sentinel_token_cached_until_expiry_one_token_request_for_two_sends(azure: tuple[SentinelServer, str],
                                                                            finding: dict[str, Any]) -> None:
    server, url = azure
    sink, _, _ = make_sink(url)

    sink.send(deliveries(finding))
    sink.send(deliveries(variant(finding, "cw-2")))

    assert len(server.token_requests()) == 1
    assert len(server.ingestion_requests()) == 2


def test_sentinel_token_about_to_expire_is_renewed_on_next_send(finding: dict[str, Any]) -> None:
    SentinelSink._tokens.clear()
    server, url = start_sentinel_server(expires_in=120)  # inside the renewal margin: never reused
    try:
        sink, _, _ = make_sink(url)
        sink.send(deliveries(finding))
        sink.send(deliveries(variant(finding, "cw-2")))
        assert len(server.token_requests()) == 2
        assert len(server.rows) == 2
    finally:
        server.stop()


def test_sentinel_revoked_token_401_gets_new_token_and_delivers(azure: tuple[SentinelServer, str],
                                                                finding: dict[str, Any]) -> None:
    server, url = azure
    sink, _, _ = make_sink(url)
    sink.send(deliveries(finding))
    server.revoke()

    [result] = sink.send(deliveries(variant(finding, "cw-2")))

    assert result.outcome is Outcome.DELIVERED
    assert len(server.token_requests()) == 2
    assert [r["FindingId"] for r in server.rows] == [finding["finding_info"]["uid"], "cw-2"]


def test_sentinel_429_with_retry_after_then_success_sleeps_retry_after(azure: tuple[SentinelServer, str],
                                                                      finding: dict[str, Any]) -> None:
    server, url = azure
    server.fail_next(429, times=2, retry_after=7)
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    assert sleeps == [7.0, 7.0]
    assert len(server.ingestion_requests()) == 3 and len(server.rows) == 1


def test_sentinel_429_every_time_is_transient_with_retry_after(azure: tuple[SentinelServer, str],
                                                               finding: dict[str, Any]) -> None:
    server, url = azure
    server.fail_next(429, times=10, retry_after=3)
    sink, _, sleeps = make_sink(url, max_attempts=3)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_TRANSIENT and result.retry_after == 3.0
    assert "HTTP 429" in result.detail and sleeps == [3.0, 3.0]
    assert server.rows == []


def test_sentinel_503_then_success_is_retried_with_backoff(azure: tuple[SentinelServer, str],
                                                           finding: dict[str, Any]) -> None:
    server, url = azure
    server.fail_next(503, code="ServiceUnavailable")
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED and len(sleeps) == 1


def test_sentinel_batches_stay_under_max_batch_bytes_as_arrays(azure: tuple[SentinelServer, str],
                                                               finding: dict[str, Any]) -> None:
    server, url = azure
    sink, _, _ = make_sink(url, max_batch_bytes=20_000)
    docs = [variant(finding, f"cw-{n}") for n in range(12)]

    results = sink.send(deliveries(*docs))

    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    requests = server.ingestion_requests()
    assert len(requests) > 1
    assert all(len(r.body) <= 20_000 and r.body.startswith(b"[") for r in requests)
    assert sorted(r["FindingId"] for r in server.rows) == sorted(f"cw-{n}" for n in range(12))


def test_sentinel_413_from_service_splits_the_batch_and_delivers_all(finding: dict[str, Any]) -> None:
    SentinelSink._tokens.clear()
    server, url = start_sentinel_server(max_bytes=25_000)  # a service limit lower than the sink's batch size
    try:
        sink, _, _ = make_sink(url)
        docs = [variant(finding, f"cw-{n}") for n in range(10)]
        results = sink.send(deliveries(*docs))
        assert {r.outcome for r in results} == {Outcome.DELIVERED}
        statuses = [len(r.body) > 25_000 for r in server.ingestion_requests()]
        assert statuses[0] is True and statuses[-1] is False  # the first was answered 413, then halves went
        assert sorted(r["FindingId"] for r in server.rows) == sorted(f"cw-{n}" for n in range(10))
    finally:
        server.stop()


def test_sentinel_single_row_over_service_limit_fails_permanently(finding: dict[str, Any]) -> None:
    SentinelSink._tokens.clear()
    server, url = start_sentinel_server(max_bytes=2_000)
    try:
        sink, _, _ = make_sink(url)
        [result] = sink.send(deliveries(finding))
        assert result.outcome is Outcome.FAILED_PERMANENT and "HTTP 413" in result.detail
        assert "ContentLengthLimitExceeded" in (result.response or "")
    finally:
        server.stop()


def test_sentinel_wrong_client_secret_fails_permanently_without_leaking_it(
        azure: tuple[SentinelServer, str], finding: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    server, url = azure
    wrong = "Zz9~wrong.secret_value-1234567890abcd"
    sink, _, sleeps = make_sink(url, secret=wrong)

    with caplog.at_level(logging.DEBUG):
        [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert "invalid_client" in result.detail and "AADSTS7000215" in result.detail
    assert wrong not in result.detail + (result.response or "") + caplog.text
    assert server.ingestion_requests() == [] and sleeps == []


def test_sentinel_secret_as_json_with_client_id_is_used(azure: tuple[SentinelServer, str],
                                                        finding: dict[str, Any]) -> None:
    server, url = azure
    secret = json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    sink, _, _ = make_sink(url, secret=secret, client_id=None)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED and len(server.rows) == 1


def test_sentinel_token_and_secret_never_in_logs_or_results_on_failures(
        azure: tuple[SentinelServer, str], finding: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    server, url = azure
    sink, _, _ = make_sink(url, max_attempts=1)
    server.fail_next(500, code="InternalServerError")
    with caplog.at_level(logging.DEBUG):
        [failed] = sink.send(deliveries(finding))
        server.fail_next(400, code="InvalidContent")
        [rejected] = sink.send(deliveries(variant(finding, "cw-2")))
    token = server.ingestion_requests()[0].headers["authorization"].split(" ", 1)[1]
    assert failed.outcome is Outcome.FAILED_TRANSIENT and rejected.outcome is Outcome.FAILED_PERMANENT
    everything = caplog.text + "".join(r.detail + (r.response or "") for r in (failed, rejected))
    assert token not in everything and CLIENT_SECRET not in everything


def test_sentinel_forbidden_403_is_permanent(azure: tuple[SentinelServer, str], finding: dict[str, Any]) -> None:
    server, url = azure
    server.fail_next(403, code="OperationFailed")
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and "HTTP 403" in result.detail and sleeps == []


def test_sentinel_unknown_stream_is_permanent_with_the_service_error(azure: tuple[SentinelServer, str],
                                                                     finding: dict[str, Any]) -> None:
    _, url = azure
    sink, _, _ = make_sink(url, stream="Custom-Other_CL")

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and "InvalidStream" in result.detail


def test_sentinel_same_revision_twice_is_one_row(azure: tuple[SentinelServer, str], finding: dict[str, Any]) -> None:
    server, url = azure
    sink, _, _ = make_sink(url)

    sink.send(deliveries(finding))
    [again] = sink.send(deliveries(finding))
    [older] = sink.send(deliveries(finding, revision=0))

    assert again.outcome is Outcome.DELIVERED and "already delivered" in again.detail
    assert older.outcome is Outcome.SKIPPED
    assert len(server.rows) == 1


def test_sentinel_hostile_finding_row_is_bounded_and_neutralized(azure: tuple[SentinelServer, str],
                                                                 finding: dict[str, Any]) -> None:
    server, url = azure
    sink, _, _ = make_sink(url, max_row_bytes=10_000)

    [result] = sink.send(deliveries(hostile(finding)))

    assert result.outcome is Outcome.DELIVERED
    [request] = server.ingestion_requests()
    assert len(request.body) <= 10_002
    [row] = server.rows
    assert row["Truncated"] is True
    assert not row["Title"].startswith("=") and FORMULA[1:] in row["Title"]
    assert "\x1b" not in request.body.decode()


@pytest.mark.parametrize(("options", "needle"), [
    ({"endpoint": None}, "needs 'endpoint'"),
    ({"authority": "ftp://login"}, "authority must start with https://"),
    ({"stream": "a/b"}, "stream 'a/b' is not a valid name"),
    ({"max_batch_bytes": 2_000_000}, "max_batch_bytes must be an integer >= 1024 and <= 1048576"),
    ({"client_id": None}, "needs 'client_id'"),
])
def test_sentinel_bad_configuration_fails_permanently_with_the_option_named(
        azure: tuple[SentinelServer, str], finding: dict[str, Any], options: dict[str, Any], needle: str) -> None:
    server, url = azure
    sink, _, _ = make_sink(url, **options)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and needle in result.detail
    assert server.ingestion_requests() == []
