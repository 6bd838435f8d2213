"""The Jira Cloud sink against the local Jira stand-in (real requests code over loopback)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from standins.jira import DEFAULT_API_TOKEN, DEFAULT_EMAIL, JiraServer, adf_text, start_jira_server
from ticket_support import (
    ADF_JSON,
    HUGE,
    assert_secret_absent,
    deliveries,
    detect_alert,
    hostile,
    make_context,
    non_alert,
    revised,
    variant,
)

from chainwatch.sinks.base import Delivery, InMemoryTicketMap, Outcome, SinkContext, build_sinks
from chainwatch.sinks.jira import JiraSink

SECRET_NAME = "chainwatch/jira"
SECRETS = {SECRET_NAME: {"email": DEFAULT_EMAIL, "api_token": DEFAULT_API_TOKEN}}
SECRET_VALUES = [DEFAULT_API_TOKEN, f"{DEFAULT_EMAIL}:{DEFAULT_API_TOKEN}"]


@pytest.fixture(scope="module")
def alert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return detect_alert(tmp_path_factory.mktemp("jira"))


@pytest.fixture
def jira() -> Iterator[JiraServer]:
    server, _url = start_jira_server()
    yield server
    server.stop()


def make_sink(server: JiraServer, context: SinkContext, **options: Any) -> JiraSink:
    config = {"kind": "jira", "url": server.base_url, "project_key": "SEC", "token_secret": SECRET_NAME, **options}
    sink = build_sinks([config], context)[0]
    assert isinstance(sink, JiraSink)
    return sink


def only_issue(server: JiraServer) -> dict[str, Any]:
    assert len(server.issues) == 1, list(server.issues)
    return next(iter(server.issues.values()))


def test_jira_create_happy_path_opens_issue_with_story(jira: JiraServer, alert: dict[str, Any],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    context, sleeps = make_context(SECRETS)
    sink = make_sink(jira, context)
    [delivery] = deliveries(alert)

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.DELIVERED, result
    assert result.external_id == "SEC-1"
    assert context.ticket_map.get(delivery.finding_id, "jira") == "SEC-1"
    issue = only_issue(jira)
    fields = issue["fields"]
    assert fields["project"] == {"key": "SEC"}
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == alert["finding_info"]["title"]
    assert fields["labels"] == ["chainwatch", "an1316", "mac-02", f"finding-{delivery.finding_id}"]
    assert fields["priority"] == {"name": "Highest"}  # critical
    description = fields["description"]
    kinds = [node["type"] for node in description["content"]]
    assert "table" in kinds and "codeBlock" in kinds and "orderedList" in kinds
    headings = [adf_text(n) for n in description["content"] if n["type"] == "heading"]
    assert headings == ["Timeline", "Process tree", "Files", "Quarantine and Gatekeeper",
                        "Egress (attributed to the child process)", "Links between stages", "Triage playbook"]
    text = adf_text(description)
    assert "zsh pid 2210" in text and "203.0.113.7:443" in text
    assert "https://203.0.113.7/stage2?id=mac-02" in text  # origin URL in the playbook
    assert "isolate mac-02" in text and "allowlist" in text
    [request] = jira.requests_to("POST", "/rest/api/3/issue")
    assert request.headers["authorization"].startswith("Basic ")
    assert sleeps == []
    assert_secret_absent(SECRET_VALUES, [result], caplog.text)


def test_jira_delivered_twice_one_issue(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(jira, context)

    first = sink.send(deliveries(alert))
    second = sink.send(deliveries(alert))

    assert [r.outcome for r in first + second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert second[0].external_id == "SEC-1"
    assert "already" in second[0].detail
    assert len(jira.issues) == 1
    assert only_issue(jira)["comments"] == []
    assert len(jira.requests_to("POST", "/rest/api/3/issue")) == 1


def test_jira_revision_two_comments_on_existing_issue_never_second_issue(jira: JiraServer,
                                                                          alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(jira, context)
    sink.send(deliveries(alert))

    [update] = sink.send(deliveries(revised(alert), revision=2))
    [again] = sink.send(deliveries(revised(alert), revision=2))

    assert update.outcome is Outcome.DELIVERED and update.external_id == "SEC-1"
    assert "commented on SEC-1" in update.detail
    assert again.outcome is Outcome.DELIVERED and "already" in again.detail
    issue = only_issue(jira)
    [comment] = issue["comments"]
    text = adf_text(comment["body"])
    assert "revision 2" in text and "198.51.100.23:8443" in text


def test_jira_two_workers_same_chain_one_issue(jira: JiraServer, alert: dict[str, Any]) -> None:
    ticket_map = InMemoryTicketMap()  # its claim is atomic, like DynamoDB's conditional put
    sinks = []
    for _ in range(6):
        context, _ = make_context(SECRETS, ticket_map=ticket_map)
        sinks.append(make_sink(jira, context))
    [delivery] = deliveries(alert)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = [r for batch in pool.map(lambda s: s.send([delivery]), sinks) for r in batch]
    retried = [sinks[0].send([delivery])[0] for r in results if r.outcome is Outcome.FAILED_TRANSIENT]

    assert len(jira.issues) == 1
    assert {r.outcome for r in results} <= {Outcome.DELIVERED, Outcome.FAILED_TRANSIENT}
    assert all(r.outcome is Outcome.DELIVERED and r.external_id == "SEC-1" for r in retried)
    busy = [r for r in results if r.outcome is Outcome.FAILED_TRANSIENT]
    assert all(r.retry_after is not None and 0 < r.retry_after <= 30 for r in busy)


def test_jira_pending_claim_of_other_worker_transient_without_request(jira: JiraServer,
                                                                      alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(jira, context)
    [delivery] = deliveries(alert)
    context.ticket_map.claim(delivery.finding_id, "jira", f"pending:other-worker:{int(sink.clock())}")

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.FAILED_TRANSIENT
    assert result.retry_after is not None and result.retry_after <= 30
    assert jira.requests == []


def test_jira_429_with_retry_after_then_success_sleeps_retry_after(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS)
    sink = make_sink(jira, context)
    jira.throttle(2, retry_after=7)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.DELIVERED
    assert sleeps == [7.0, 7.0]
    assert len(jira.issues) == 1


def test_jira_429_with_ratelimit_reset_only_waits_until_reset(jira: JiraServer, alert: dict[str, Any]) -> None:
    from datetime import UTC, datetime, timedelta

    context, sleeps = make_context(SECRETS)
    sink = make_sink(jira, context)
    reset = (datetime.now(UTC) + timedelta(seconds=12)).isoformat()
    jira.fail_next(429, headers={"X-RateLimit-Reset": reset}, body={"errorMessages": ["Rate limit exceeded"]})

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.DELIVERED
    assert len(sleeps) == 1 and 9 <= sleeps[0] <= 12


def test_jira_5xx_for_a_while_then_recovery_delivers_once(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS, max_attempts=3)
    sink = make_sink(jira, context)
    docs = [alert, variant(alert, "cw-second000000000000000000000000")]
    jira.fail_next(503, count=5, body={"errorMessages": ["Service Unavailable"]})

    first = sink.send(deliveries(*docs))
    assert [r.outcome for r in first] == [Outcome.FAILED_TRANSIENT, Outcome.DELIVERED]
    assert context.ticket_map.get(docs[0]["finding_info"]["uid"], "jira") is None  # claim released: 503 is clean
    # The dispatcher retries only what is missing, and a repeat of what was delivered is harmless.
    second = sink.send(deliveries(*docs))

    assert [r.outcome for r in second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert len(jira.issues) == 2
    assert sorted(i["fields"]["labels"][-1] for i in jira.issues.values()) == sorted(
        f"finding-{d['finding_info']['uid']}" for d in docs)
    assert len(sleeps) == 4


def test_jira_502_after_create_no_index_lag_configured_lookup_before_retry_no_duplicate(
        jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(jira, context, search_index_lag=0)  # a Jira whose search is consistent (the stand-in's is)
    jira.fail_after_processing(502, path="/rest/api/3/issue", body="Bad Gateway")

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.DELIVERED and result.external_id == "SEC-1"
    assert len(jira.issues) == 1
    assert len(jira.requests_to("GET", "/rest/api/3/search/jql")) == 2  # before creating, and after the 502


def test_jira_reply_lost_claim_kept_until_stale_then_recovered_by_label(jira: JiraServer,
                                                                         alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS, max_attempts=1)
    sink = make_sink(jira, context, pending_timeout=900)
    now = [1_000_000.0]
    sink.clock = lambda: now[0]
    jira.fail_after_processing(None, path="/rest/api/3/issue")  # created, then the connection drops
    [delivery] = deliveries(alert)

    [lost] = sink.send([delivery])
    [waiting] = sink.send([delivery])
    now[0] += 901
    [recovered] = sink.send([delivery])

    assert lost.outcome is Outcome.FAILED_TRANSIENT and "create may have succeeded" in lost.detail
    assert waiting.outcome is Outcome.FAILED_TRANSIENT
    assert recovered.outcome is Outcome.DELIVERED and recovered.external_id == "SEC-1"
    assert len(jira.issues) == 1
    assert context.ticket_map.get(delivery.finding_id, "jira") == "SEC-1"


def test_jira_400_failed_permanent_with_body_no_retry(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS)
    sink = make_sink(jira, context, project_key="NOPE")
    [delivery] = deliveries(alert)

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert result.response is not None and "Specify a valid project ID or key" in result.response
    assert "HTTP 400" in result.detail
    assert sleeps == [] and len(jira.requests_to("POST", "/rest/api/3/issue")) == 1
    assert context.ticket_map.get(delivery.finding_id, "jira") is None  # claim released


def test_jira_401_failed_permanent_secret_never_in_results_or_logs(jira: JiraServer, alert: dict[str, Any],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "ATATT3xWRONG-token-0000000000"
    context, sleeps = make_context({SECRET_NAME: json.dumps({"email": DEFAULT_EMAIL, "api_token": wrong})})
    sink = make_sink(jira, context)
    jira.fail_next(503, body=f"upstream echoed Authorization: {wrong}")  # a proxy that echoes secrets

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert result.response is not None and "Client must be authenticated" in result.response
    assert len(sleeps) == 1
    assert_secret_absent([wrong, f"{DEFAULT_EMAIL}:{wrong}"], [result], caplog.text)


def test_jira_transient_failure_with_echoed_secret_scrubbed(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS, max_attempts=2)
    sink = make_sink(jira, context)
    jira.fail_next(500, count=2, body=f"error for token {DEFAULT_API_TOKEN}", path="/rest/api/3/issue")

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_TRANSIENT
    assert result.response is not None and "[redacted]" in result.response
    assert_secret_absent(SECRET_VALUES, [result])


def test_jira_missing_secret_failed_permanent_without_request(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context({})
    sink = make_sink(jira, context)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_PERMANENT and SECRET_NAME in result.detail
    assert jira.requests == []


def test_jira_token_only_secret_uses_configured_email(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context({SECRET_NAME: DEFAULT_API_TOKEN})
    sink = make_sink(jira, context, email=DEFAULT_EMAIL)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.DELIVERED


def test_jira_canary_skipped_unless_accepted(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    [skipped] = make_sink(jira, context).send(deliveries(alert, canary=True))
    assert skipped.outcome is Outcome.SKIPPED and jira.requests == []

    context, _ = make_context(SECRETS)
    [accepted] = make_sink(jira, context, accept_canary=True).send(deliveries(alert, canary=True))

    assert accepted.outcome is Outcome.DELIVERED
    fields = only_issue(jira)["fields"]
    assert fields["summary"].startswith("[CANARY] ") and "canary" in fields["labels"]


def test_jira_non_alert_skipped_without_issue_but_added_to_existing(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(jira, context)
    quiet = non_alert(alert)

    [skipped] = sink.send(deliveries(quiet))
    assert skipped.outcome is Outcome.SKIPPED and jira.issues == {}

    sink.send(deliveries(alert))
    downgraded = dict(alert, is_alert=False)
    [update] = sink.send([Delivery(alert["finding_info"]["uid"], 2, downgraded)])

    assert update.outcome is Outcome.DELIVERED
    assert "non-alert" in adf_text(only_issue(jira)["comments"][0]["body"])


def test_jira_priority_map_configurable_or_off(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    make_sink(jira, context, priority_map={"critical": "High"}).send(deliveries(alert))
    context, _ = make_context(SECRETS)
    make_sink(jira, context, priority_map={}).send(deliveries(variant(alert, "cw-nopriority00000000000000000000")))

    first, second = jira.issues["SEC-1"]["fields"], jira.issues["SEC-2"]["fields"]
    assert first["priority"] == {"name": "High"}
    assert "priority" not in second


def test_jira_hostile_strings_rendered_as_bounded_data(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(jira, context)
    doc = hostile(alert)

    [result] = sink.send(deliveries(doc))

    assert result.outcome is Outcome.DELIVERED, result  # the stand-in validated the ADF and its size
    fields = only_issue(jira)["fields"]
    assert fields["summary"].startswith("'=HYPERLINK(")  # formula neutralized
    assert len(fields["summary"]) <= 255 and "\n" not in fields["summary"]
    assert all(not any(ch.isspace() for ch in label) for label in fields["labels"])
    description = fields["description"]
    encoded = json.dumps(description, ensure_ascii=False)
    assert len(encoded) <= 32_000
    assert HUGE[:5000] not in encoded

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            yield node
            for child in node.get("content", []) or []:
                yield from walk(child)

    nodes = list(walk(description))
    assert {n["type"] for n in nodes} <= {"doc", "paragraph", "heading", "text", "table", "tableRow", "tableHeader",
                                          "tableCell", "codeBlock", "bulletList", "orderedList", "listItem"}
    texts = [n["text"] for n in nodes if n["type"] == "text"]
    assert all(texts) and max(len(t) for t in texts) < 16_000
    assert all(mark["type"] in ("strong", "em", "code") for n in nodes for mark in n.get("marks", []))
    joined = "".join(texts)
    assert not any(ch in joined for ch in "\x1b\x00\r\u202e")
    assert ADF_JSON[:30] in joined  # JSON that looks like an ADF node stays text
    assert "more rows not shown" in joined  # 2 000 timeline rows were cut, and the reader is told


def test_jira_update_of_deleted_issue_failed_permanent_revision_not_marked(jira: JiraServer,
                                                                            alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(jira, context)
    sink.send(deliveries(alert))
    jira.issues.clear()

    [result] = sink.send(deliveries(revised(alert), revision=2))

    assert result.outcome is Outcome.FAILED_PERMANENT and "HTTP 404" in result.detail
    assert context.ticket_map.get(alert["finding_info"]["uid"], "jira#r2") is None


def test_jira_sink_registered_and_config_checked(tmp_path: Path) -> None:
    context, _ = make_context(SECRETS)
    from chainwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="project_key"):
        build_sinks([{"kind": "jira", "url": "https://example.atlassian.net", "token_secret": "x"}], context)
    with pytest.raises(ConfigError, match="url"):
        build_sinks([{"kind": "jira", "url": "ftp://x", "project_key": "SEC", "token_secret": "x"}], context)


class FlakyTicketMap(InMemoryTicketMap):
    """A ticket map whose conditional write fails for one finding (DynamoDB throttling)."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def claim(self, finding_id: str, sink: str, value: str) -> bool:
        from chainwatch.errors import TransientError

        if finding_id == self.failing:
            raise TransientError("ticket map write failed: ProvisionedThroughputExceededException")
        return super().claim(finding_id, sink, value)


def test_jira_ticket_map_failure_fails_that_delivery_only(jira: JiraServer, alert: dict[str, Any]) -> None:
    other = variant(alert, "cw-other0000000000000000000000000")
    context, _ = make_context(SECRETS, ticket_map=FlakyTicketMap(alert["finding_info"]["uid"]))
    sink = make_sink(jira, context)

    results = sink.send(deliveries(alert, other))

    assert [r.outcome for r in results] == [Outcome.FAILED_TRANSIENT, Outcome.DELIVERED]
    assert "ticket map" in results[0].detail
    assert len(jira.issues) == 1


def test_jira_time_budget_spent_not_started(jira: JiraServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS, remaining=lambda: 3.0)
    sink = make_sink(jira, context)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_TRANSIENT and "time budget" in result.detail
    assert jira.requests == []
    assert context.ticket_map.get(alert["finding_info"]["uid"], "jira") is None


def test_jira_lost_create_with_30s_search_lag_deferred_until_index_caught_up_one_issue(
        alert: dict[str, Any]) -> None:
    now = [1_000_000.0]
    server, _ = start_jira_server(search_lag=30, clock=lambda: now[0])  # Jira's search shows issues 30 s late
    try:
        context, sleeps = make_context(SECRETS)
        sink = make_sink(server, context, search_index_lag=35)
        sink.clock = lambda: now[0]
        server.fail_after_processing(None, path="/rest/api/3/issue", method="POST")  # created, reply lost
        [delivery] = deliveries(alert)

        [lost] = sink.send([delivery])
        now[0] += 5  # the redelivery comes soon: a label search now would find nothing
        [early] = sink.send([delivery])
        searches_before_lag = len(server.requests_to("GET", "/rest/api/3/search/jql"))
        now[0] += 31
        [found] = sink.send([delivery])
    finally:
        server.stop()

    assert lost.outcome is Outcome.FAILED_TRANSIENT and lost.retry_after == 35.0
    assert early.outcome is Outcome.FAILED_TRANSIENT and early.retry_after == 30.0
    assert searches_before_lag == 1  # only the lookup before the first create, none while the index lags
    assert found.outcome is Outcome.DELIVERED and found.external_id == "SEC-1"
    assert len(server.issues) == 1 and len(server.requests_to("POST", "/rest/api/3/issue")) == 1
    assert context.ticket_map.get(delivery.finding_id, "jira") == "SEC-1"
    assert sleeps == []  # simulated time only


def test_jira_lookup_rate_limited_429_retry_after_honoured_then_one_issue(alert: dict[str, Any]) -> None:
    now = [2_000_000.0]
    server, _ = start_jira_server(clock=lambda: now[0], search_rate_limit=(1, 7.0))
    try:
        context, sleeps = make_context(SECRETS)

        def advance(seconds: float) -> None:
            sleeps.append(seconds)
            now[0] += seconds

        context.retry.sleep = advance
        first, second = deliveries(alert, variant(alert, "cw-second000000000000000000000000"))
        results = make_sink(server, context).send([first, second])
    finally:
        server.stop()

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    searches = server.requests_to("GET", "/rest/api/3/search/jql")
    assert [r.status for r in searches] == [200, 429, 200]  # the second lookup was throttled, then retried
    assert sleeps == [7.0]  # exactly the Retry-After the search endpoint sent
    assert len(server.issues) == 2


def test_jira_fresh_ticket_map_issue_found_by_label_revision_two_comments_no_second_issue(
        jira: JiraServer, alert: dict[str, Any]) -> None:
    first_run, _ = make_context(SECRETS)
    make_sink(jira, first_run).send(deliveries(alert))
    make_sink(jira, first_run).send(deliveries(revised(alert), revision=2))
    fresh, _ = make_context(SECRETS)  # the table was restored empty: the map knows nothing
    sink = make_sink(jira, fresh)

    [again] = sink.send(deliveries(alert))
    [again2] = sink.send(deliveries(revised(alert), revision=2))
    [third] = sink.send(deliveries(revised(alert), revision=3))

    assert again.outcome is Outcome.DELIVERED and "found SEC-1 at the vendor" in again.detail
    assert again2.outcome is Outcome.DELIVERED and "already on SEC-1" in again2.detail
    assert third.outcome is Outcome.DELIVERED and "commented on SEC-1" in third.detail
    issue = only_issue(jira)
    texts = [adf_text(c["body"]) for c in issue["comments"]]
    assert len(texts) == 2 and "revision 2 of" in texts[0] and "revision 3 of" in texts[1]
    assert len(jira.requests_to("POST", "/rest/api/3/issue")) == 1 + 2  # one create, two comments
