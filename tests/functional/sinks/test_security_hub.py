"""Security Hub sink against moto (`mock_aws`): ASFF content, upsert by Id, batching, per-finding failures, retries.

Failures moto cannot produce (throttling, 5xx, 401) are injected at the HTTP layer by
:class:`aws_support.FaultInjector` and parsed by botocore; successful imports always go to moto.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from aws_support import (
    ACCESS_KEY,
    AWS_ENV,
    REGION,
    SECRET_KEY,
    ClientFactory,
    FaultInjector,
    Sleeps,
    alert_document,
    all_strings,
    context,
    delivery,
    documents,
    json_error,
    on_params,
    record_params,
)
from moto import mock_aws

from chainwatch.errors import ConfigError
from chainwatch.sinks.base import Outcome
from chainwatch.sinks.security_hub import (
    MAX_FINDING_BYTES,
    SecurityHubSink,
    _chunks,
    classify_failed_findings,
)

ACCOUNT = "111122223333"
PRODUCT_ARN = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientFactory]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield ClientFactory()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_sink(aws: ClientFactory, sleeps: Sleeps, max_attempts: int = 5, **config: Any) -> SecurityHubSink:
    return SecurityHubSink("hub", {"kind": "security_hub", "account_id": ACCOUNT, **config},
                           context(aws, sleeps, max_attempts))


def hub_findings(aws: ClientFactory) -> list[dict[str, Any]]:
    """Every finding in the (moto) hub, all pages."""
    pages = aws("securityhub").get_paginator("get_findings").paginate()
    return [finding for page in pages for finding in page["Findings"]]


def findings_with_id(aws: ClientFactory, finding_id: str) -> list[dict[str, Any]]:
    # moto's GetFindings ignores Filters (its docstring says so); the filter is sent as a real client would and the
    # Id check is repeated here so the assertion holds either way.
    response = aws("securityhub").get_findings(
        Filters={"Id": [{"Value": finding_id, "Comparison": "EQUALS"}]}, MaxResults=100)
    return [f for f in response["Findings"] if f["Id"] == finding_id]


# -- content ----------------------------------------------------------------------------------------------------


def test_security_hub_import_alert_stores_asff_with_every_required_field(aws: ClientFactory, sleeps: Sleeps) -> None:
    item = delivery()
    [result] = make_sink(aws, sleeps).send([item])

    assert result.outcome is Outcome.DELIVERED
    assert result.external_id == item.finding_id
    [stored] = findings_with_id(aws, item.finding_id)
    assert stored["SchemaVersion"] == "2018-10-08"
    assert stored["Id"] == item.finding_id
    assert stored["ProductArn"] == PRODUCT_ARN
    assert stored["GeneratorId"] == "chainwatch/AN1316"
    assert stored["AwsAccountId"] == ACCOUNT
    assert "TTPs/Execution/T1204.002 Malicious File" in stored["Types"]
    assert "TTPs/Command and Control/T1105 Ingress Tool Transfer" in stored["Types"]
    for key in ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"):
        assert ISO.fullmatch(stored[key]), key
    assert datetime.fromisoformat(stored["CreatedAt"]) <= datetime.fromisoformat(stored["UpdatedAt"])
    assert stored["Severity"] == {"Label": "CRITICAL", "Original": "Critical"}
    assert stored["FindingProviderFields"]["Severity"]["Label"] == "CRITICAL"
    assert stored["Confidence"] == 90
    assert stored["Title"] == item.title and len(stored["Title"]) <= 256
    assert "all four stages" in stored["Description"] and len(stored["Description"]) <= 1024
    assert stored["Resources"][0]["Type"] == "Other"
    assert stored["Resources"][0]["Id"] == "mac-02"
    assert stored["Process"] == {"Name": "zsh", "Path": "/bin/zsh", "Pid": 2210, "ParentPid": 1201,
                                 "LaunchedAt": stored["Process"]["LaunchedAt"]}
    assert stored["Network"] == {"Direction": "OUT", "Protocol": "TCP", "DestinationIpV4": "203.0.113.7",
                                 "DestinationPort": 443}
    fields = stored["ProductFields"]
    assert fields["chainwatch/FindingId"] == item.finding_id
    assert fields["chainwatch/Revision"] == "1"
    assert fields["chainwatch/Stages"] == "1+2+3+4"
    assert "curl" in fields["chainwatch/ProcessTree"]
    assert fields["chainwatch/Story"].startswith("[ALERT]")
    assert all(len(v) <= 2048 for v in fields.values()) and len(fields) <= 50
    assert "Isolate mac-02" in stored["Remediation"]["Recommendation"]["Text"]
    assert "block egress to 203.0.113.7:443" in stored["Remediation"]["Recommendation"]["Text"]
    assert stored["Note"]["UpdatedBy"] == "chainwatch" and len(stored["Note"]["Text"]) <= 512


def test_security_hub_quarantined_app_chain_playbook_names_quarantine_record(aws: ClientFactory,
                                                                           sleeps: Sleeps) -> None:
    doc = next(d for d in documents() if not d["is_alert"])
    item = delivery(doc)
    [result] = make_sink(aws, sleeps).send([item])

    assert result.outcome is Outcome.DELIVERED
    [stored] = findings_with_id(aws, item.finding_id)
    playbook = stored["Remediation"]["Recommendation"]["Text"]
    assert "quarantine" in playbook and "UpdateHelper.app" in playbook
    assert "If benign: add an allowlist entry" in playbook
    assert "Network" not in stored  # no stage-4 egress in this chain


# -- idempotence and updates ------------------------------------------------------------------------------------


def test_security_hub_same_finding_delivered_twice_one_finding(aws: ClientFactory, sleeps: Sleeps) -> None:
    sink = make_sink(aws, sleeps)
    item = delivery()
    first = sink.send([item])
    second = sink.send([item])

    assert [r.outcome for r in first + second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert len(findings_with_id(aws, item.finding_id)) == 1
    assert len(hub_findings(aws)) == 1


def test_security_hub_revision_two_updates_the_same_finding(aws: ClientFactory, sleeps: Sleeps) -> None:
    sink = make_sink(aws, sleeps)
    first = delivery()
    sink.send([first])
    [stored] = findings_with_id(aws, first.finding_id)
    created_at = stored["CreatedAt"]

    later = first.document["metadata"]["processed_time"] + 60_000
    update = delivery(revision=2, processed_ms=later)
    [result] = sink.send([update])

    assert result.outcome is Outcome.DELIVERED
    [stored] = findings_with_id(aws, first.finding_id)
    assert stored["ProductFields"]["chainwatch/Revision"] == "2"
    assert stored["CreatedAt"] == created_at  # the chain's first-seen time, stable across revisions
    assert stored["UpdatedAt"] > created_at
    assert len(hub_findings(aws)) == 1


def test_security_hub_two_revisions_in_one_batch_sends_newest_only(aws: ClientFactory, sleeps: Sleeps) -> None:
    calls = record_params(aws("securityhub"), "BatchImportFindings")
    results = make_sink(aws, sleeps).send([delivery(revision=1), delivery(revision=2)])

    assert [r.outcome for r in results] == [Outcome.SKIPPED, Outcome.DELIVERED]
    assert "superseded by revision 2" in results[0].detail
    assert [len(c["Findings"]) for c in calls] == [1]
    assert calls[0]["Findings"][0]["ProductFields"]["chainwatch/Revision"] == "2"


# -- batching ---------------------------------------------------------------------------------------------------


def test_security_hub_150_findings_split_into_two_calls(aws: ClientFactory, sleeps: Sleeps) -> None:
    calls = record_params(aws("securityhub"), "BatchImportFindings")
    items = [delivery(finding_id=f"cw-{i:032x}") for i in range(150)]
    results = make_sink(aws, sleeps).send(items)

    assert [len(c["Findings"]) for c in calls] == [100, 50]
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert [r.finding_id for r in results] == [i.finding_id for i in items]
    assert {f["Id"] for f in hub_findings(aws)} == {i.finding_id for i in items}


def test_security_hub_chunks_respect_the_6mb_call_limit() -> None:
    item = delivery()
    prepared = [(item, {}, 200 * 1024)] * 70  # 70 x 200 KB = 13.7 MB: three calls by size, not one by count
    chunks = list(_chunks(prepared))

    assert [len(chunk) for chunk in chunks] == [30, 30, 10]
    assert all(sum(size for _, _, size in chunk) <= 6 * 1024 * 1024 for chunk in chunks)


# -- per-finding failures ---------------------------------------------------------------------------------------


def test_security_hub_failed_finding_in_response_fails_only_that_finding_permanently(aws: ClientFactory,
                                                                                  sleeps: Sleeps) -> None:
    good, bad = delivery(finding_id="cw-good"), delivery(finding_id="cw-bad")

    def break_one(params: dict[str, Any]) -> None:
        # An empty Resources list passes botocore's validation; moto rejects that one finding with a
        # FailedFindings item (ErrorCode InvalidInput), as Security Hub does, and imports the other.
        for finding in params["Findings"]:
            if finding["Id"] == "cw-bad":
                finding["Resources"] = []

    on_params(aws("securityhub"), "BatchImportFindings", break_one)
    calls = record_params(aws("securityhub"), "BatchImportFindings")
    ok, failed = make_sink(aws, sleeps).send([good, bad])

    assert ok.outcome is Outcome.DELIVERED
    assert failed.outcome is Outcome.FAILED_PERMANENT
    assert failed.response is not None and failed.response.startswith("InvalidInput:")
    assert "at least one resource" in failed.response
    assert len(calls) == 1 and sleeps.delays == []  # permanent: not retried
    assert [f["Id"] for f in hub_findings(aws)] == ["cw-good"]


def test_security_hub_classify_failed_findings_throttling_transient_invalid_input_permanent() -> None:
    # The documented BatchImportFindings response shape (API reference: BatchImportFindingsResponse,
    # ImportFindingsError). AWS does not list ErrorCode values; these are the kinds the sink must tell apart.
    response = {
        "FailedCount": 4, "SuccessCount": 1,
        "FailedFindings": [
            {"Id": "a", "ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"},
            {"Id": "b", "ErrorCode": "InvalidInput", "ErrorMessage": "Finding does not adhere to ASFF"},
            {"Id": "c", "ErrorCode": "LimitExceeded", "ErrorMessage": "Too many requests"},
            {"Id": "d", "ErrorCode": "InternalError", "ErrorMessage": "<script>x</script>\x1b[31m"},
            {"ErrorCode": "InvalidInput", "ErrorMessage": "no id"},
        ],
    }
    mapped = classify_failed_findings(response)

    assert set(mapped) == {"a", "b", "c", "d"}
    assert mapped["a"][0] is True and mapped["c"][0] is True and mapped["d"][0] is True
    assert mapped["b"] == (False, "InvalidInput: Finding does not adhere to ASFF")
    assert "\x1b" not in mapped["d"][1]


def test_security_hub_transient_failed_finding_resends_only_that_finding(aws: ClientFactory,
                                                                        sleeps: Sleeps) -> None:
    client = aws("securityhub")
    calls = record_params(client, "BatchImportFindings")
    throttled = {"done": False}

    def throttle_once(parsed: dict[str, Any], **_: Any) -> None:
        # Fault injection on a real moto response: the first reply also reports cw-b as throttled.
        if not throttled["done"]:
            throttled["done"] = True
            parsed["FailedCount"] = 1
            parsed["FailedFindings"] = [{"Id": "cw-b", "ErrorCode": "ThrottlingException",
                                         "ErrorMessage": "Rate exceeded"}]

    client.meta.events.register("after-call.securityhub.BatchImportFindings", throttle_once)
    results = make_sink(aws, sleeps).send([delivery(finding_id="cw-a"), delivery(finding_id="cw-b")])

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert [[f["Id"] for f in c["Findings"]] for c in calls] == [["cw-a", "cw-b"], ["cw-b"]]
    assert len(sleeps.delays) == 1
    assert sorted(f["Id"] for f in hub_findings(aws)) == ["cw-a", "cw-b"]


# -- whole-call errors and retries ------------------------------------------------------------------------------


def test_security_hub_throttled_with_retry_after_then_success_sleeps_that_long(aws: ClientFactory,
                                                                               sleeps: Sleeps) -> None:
    faults = FaultInjector(aws("securityhub"), "BatchImportFindings").fail(
        2, 429, json_error("ThrottlingException", "Rate exceeded"), {"retry-after": "7"})
    [result] = make_sink(aws, sleeps).send([delivery()])

    assert result.outcome is Outcome.DELIVERED
    assert sleeps.delays == [7.0, 7.0]
    assert faults.calls == 3
    assert len(hub_findings(aws)) == 1


def test_security_hub_limit_exceeded_without_retry_after_backs_off(aws: ClientFactory, sleeps: Sleeps) -> None:
    FaultInjector(aws("securityhub"), "BatchImportFindings").fail(
        1, 429, json_error("LimitExceededException", "Rate exceeded"))
    [result] = make_sink(aws, sleeps).send([delivery()])

    assert result.outcome is Outcome.DELIVERED
    assert len(sleeps.delays) == 1 and 0 <= sleeps.delays[0] <= 0.01


def test_security_hub_5xx_for_a_while_then_recovers_delivered_once(aws: ClientFactory, sleeps: Sleeps) -> None:
    faults = FaultInjector(aws("securityhub"), "BatchImportFindings").fail(
        3, 500, json_error("InternalException", "Internal service error"))
    items = [delivery(finding_id=f"cw-{i}") for i in range(3)]
    results = make_sink(aws, sleeps).send(items)

    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert faults.failed == 3 and faults.calls == 4
    assert sorted(f["Id"] for f in hub_findings(aws)) == ["cw-0", "cw-1", "cw-2"]


def test_security_hub_throttling_outlives_retries_failed_transient_with_retry_after(aws: ClientFactory,
                                                                                   sleeps: Sleeps) -> None:
    FaultInjector(aws("securityhub"), "BatchImportFindings").fail(
        10, 429, json_error("ThrottlingException", "Rate exceeded"), {"retry-after": "3"})
    [result] = make_sink(aws, sleeps, max_attempts=3).send([delivery()])

    assert result.outcome is Outcome.FAILED_TRANSIENT
    assert result.retry_after == 3.0
    assert result.response is not None and "ThrottlingException (HTTP 429): Rate exceeded" in result.response
    assert sleeps.delays == [3.0, 3.0]
    assert hub_findings(aws) == []


@pytest.mark.parametrize(("status", "code"), [(401, "InvalidAccessException"), (400, "InvalidInputException"),
                                              (403, "AccessDeniedException")])
def test_security_hub_rejected_call_failed_permanent_with_body_no_retry(aws: ClientFactory, sleeps: Sleeps,
                                                                      status: int, code: str) -> None:
    message = f"{code}: Account {ACCOUNT} is not subscribed to AWS Security Hub"
    faults = FaultInjector(aws("securityhub"), "BatchImportFindings").fail(1, status, json_error(code, message))
    results = make_sink(aws, sleeps).send([delivery(finding_id="cw-1"), delivery(finding_id="cw-2")])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT] * 2
    assert all(r.response is not None and f"{code} (HTTP {status})" in r.response and "not subscribed" in r.response
               for r in results)
    assert faults.calls == 1 and sleeps.delays == []


# -- configuration, canary, safety ------------------------------------------------------------------------------


def test_security_hub_no_account_configured_uses_sts_caller_account(aws: ClientFactory, sleeps: Sleeps) -> None:
    sink = SecurityHubSink("hub", {"kind": "security_hub"}, context(aws, sleeps))
    [result] = sink.send([delivery()])

    assert result.outcome is Outcome.DELIVERED
    [stored] = hub_findings(aws)
    assert stored["AwsAccountId"] == "123456789012"  # moto's default caller account
    assert stored["ProductArn"] == f"arn:aws:securityhub:{REGION}:123456789012:product/123456789012/default"


def test_security_hub_bad_account_id_config_error(aws: ClientFactory, sleeps: Sleeps) -> None:
    with pytest.raises(ConfigError, match="12 digits"):
        make_sink(aws, sleeps, account_id="12345")


def test_security_hub_canary_delivered_and_marked(aws: ClientFactory, sleeps: Sleeps) -> None:
    [result] = make_sink(aws, sleeps).send([delivery(finding_id="cw-canary", canary=True)])

    assert result.outcome is Outcome.DELIVERED
    [stored] = hub_findings(aws)
    assert stored["Title"].startswith("[CANARY] ")
    assert stored["ProductFields"]["chainwatch/Canary"] == "true"
    assert "canary" in stored["Description"]


def test_security_hub_hostile_strings_rendered_safe_and_bounded(aws: ClientFactory, sleeps: Sleeps) -> None:
    doc = alert_document()
    huge = "A" * 1_000_000
    hostile = '=cmd|" /C calc"!A0 <img src=x onerror=alert(1)> [link](javascript:alert(1)) \x1b[2J\r\n\x00'
    doc["finding_info"]["title"] = hostile + huge
    doc["finding_info"]["desc"] = hostile + huge
    doc["device"]["hostname"] = "=HYPERLINK(\"http://evil\")\n" + huge
    stage3 = next(e for e in doc["evidences"] if e["data"]["stage"] == 3)
    stage3["process"]["name"] = "@SUM(1+1)\x07"
    stage3["process"]["path"] = "/tmp/" + hostile + huge
    stage3["process"]["cmd_line"] = "/bin/sh -c " + huge
    doc["unmapped"]["chainwatch"]["process_tree"][1]["cmd_line"] = "+" + hostile + huge
    doc["unmapped"]["chainwatch"]["files"] = ["-" + hostile + huge]
    doc["unmapped"]["chainwatch"]["story"] = "=" + hostile + huge
    item = delivery(doc)
    calls = record_params(aws("securityhub"), "BatchImportFindings")
    [result] = make_sink(aws, sleeps).send([item])

    assert result.outcome is Outcome.DELIVERED
    [stored] = hub_findings(aws)
    sent = calls[0]["Findings"][0]
    assert len(json.dumps(sent)) < MAX_FINDING_BYTES
    assert len(stored["Title"]) <= 256 and len(stored["Description"]) <= 1024
    assert len(stored["Process"]["Path"]) <= 512 and len(stored["Process"]["Name"]) <= 128
    assert len(stored["Resources"][0]["Id"]) <= 256
    assert all(len(v) <= 2048 for v in stored["ProductFields"].values())
    # No raw control characters anywhere (the story keeps its line breaks, nothing else).
    for text in all_strings(sent):
        assert not any(ch in text for ch in "\x00\x07\x1b\r"), text[:80]
    # Values a spreadsheet would evaluate are neutralized with a leading quote.
    assert stored["Title"].startswith("'=cmd")
    assert stored["Resources"][0]["Id"].startswith("'=HYPERLINK")
    assert stored["Process"]["Name"].startswith("'@SUM")
    assert stored["ProductFields"]["chainwatch/Files"].startswith("'-")
    assert stored["ProductFields"]["chainwatch/Story"].startswith("'=")


def test_security_hub_credentials_never_in_results_or_logs(aws: ClientFactory, sleeps: Sleeps,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="chainwatch")
    FaultInjector(aws("securityhub"), "BatchImportFindings").fail(
        1, 401, json_error("InvalidAccessException", "The security token included in the request is invalid"))
    sink = make_sink(aws, sleeps, max_attempts=2)
    results = sink.send([delivery(finding_id="cw-1")])
    results += sink.send([delivery(finding_id="cw-2")])
    FaultInjector(aws("securityhub"), "BatchImportFindings").fail(
        5, 503, json_error("ServiceUnavailableException", "down"))
    results += sink.send([delivery(finding_id="cw-3")])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT, Outcome.DELIVERED, Outcome.FAILED_TRANSIENT]
    texts = [t for r in results for t in (r.detail, r.response or "", r.external_id or "")]
    logged = [record.getMessage() for record in caplog.records if record.name.startswith("chainwatch")]
    assert logged  # the failures were logged...
    texts += logged  # ...without any credential
    for secret in (ACCESS_KEY, SECRET_KEY, "FAKEsessionTOKENchainwatch"):
        assert not any(secret in text for text in texts)


def test_security_hub_finding_without_time_failed_permanent_others_delivered(aws: ClientFactory,
                                                                             sleeps: Sleeps) -> None:
    broken = copy.deepcopy(alert_document())
    for key in ("first_seen_time", "last_seen_time"):
        broken["finding_info"].pop(key)
    broken["time"] = "yesterday"
    broken["metadata"].pop("processed_time")
    results = make_sink(aws, sleeps).send([delivery(broken, finding_id="cw-broken"), delivery(finding_id="cw-ok")])

    assert [r.outcome for r in results] == [Outcome.FAILED_PERMANENT, Outcome.DELIVERED]
    assert results[0].response is not None and "no usable time" in results[0].response
