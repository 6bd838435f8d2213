"""The ServiceNow sink against the local Table API stand-in (real requests code over loopback)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from standins.servicenow import DEFAULT_PASSWORD, DEFAULT_USERNAME, ServiceNowServer, start_servicenow_server
from ticket_support import (
    HUGE,
    SNOW_CODE,
    assert_secret_absent,
    deliveries,
    detect_alert,
    hostile,
    make_context,
    non_alert,
    revised,
    variant,
)

from chainwatch.errors import ConfigError
from chainwatch.sinks.base import Outcome, SinkContext, build_sinks
from chainwatch.sinks.servicenow import ServiceNowSink, no_code_tags

SECRET_NAME = "chainwatch/servicenow"
SECRETS = {SECRET_NAME: {"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}}
SECRET_VALUES = [DEFAULT_PASSWORD, f"{DEFAULT_USERNAME}:{DEFAULT_PASSWORD}"]


@pytest.fixture(scope="module")
def alert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return detect_alert(tmp_path_factory.mktemp("servicenow"))


@pytest.fixture
def snow() -> Iterator[ServiceNowServer]:
    server, _url = start_servicenow_server()
    yield server
    server.stop()


def make_sink(server: ServiceNowServer, context: SinkContext, **options: Any) -> ServiceNowSink:
    config = {"kind": "servicenow", "url": server.base_url, "credentials_secret": SECRET_NAME, **options}
    sink = build_sinks([config], context)[0]
    assert isinstance(sink, ServiceNowSink)
    return sink


def only_record(server: ServiceNowServer) -> dict[str, Any]:
    assert len(server.records) == 1, list(server.records)
    return next(iter(server.records.values()))


def test_servicenow_create_happy_path_opens_incident_with_story(snow: ServiceNowServer, alert: dict[str, Any],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    context, sleeps = make_context(SECRETS)
    sink = make_sink(snow, context, fields={"assignment_group": "SOC", "category": "security"})
    [delivery] = deliveries(alert)

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.DELIVERED, result
    assert result.external_id == "INC0010001"
    record = only_record(snow)
    assert context.ticket_map.get(delivery.finding_id, "servicenow") == f"{record['sys_id']}|INC0010001"
    assert record["correlation_id"] == delivery.finding_id
    assert record["correlation_display"] == "chainwatch"
    assert record["short_description"] == alert["finding_info"]["title"]
    assert (record["urgency"], record["impact"], record["priority"]) == ("1", "1", "1")  # critical
    assert record["assignment_group"] == "SOC" and record["category"] == "security"
    description = record["description"]
    assert len(description) <= 4000
    for part in ("TIMELINE", "PROCESS TREE", "EGRESS", "LINKS BETWEEN STAGES", "TRIAGE PLAYBOOK", "zsh pid 2210"):
        assert part in description
    [request] = snow.requests_to("POST", "/api/now/table/incident")
    assert request.query["sysparm_fields"] == ["sys_id,number"]
    assert sleeps == []
    assert_secret_absent(SECRET_VALUES, [result], caplog.text)


def test_servicenow_delivered_twice_one_incident(snow: ServiceNowServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(snow, context)

    first = sink.send(deliveries(alert))
    second = sink.send(deliveries(alert))

    assert [r.outcome for r in first + second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert second[0].external_id == "INC0010001" and "already" in second[0].detail
    assert only_record(snow)["work_notes"] == []
    assert len(snow.requests_to("POST", "/api/now/table/incident")) == 1


def test_servicenow_revision_two_adds_work_notes_never_second_incident(snow: ServiceNowServer,
                                                                        alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(snow, context)
    sink.send(deliveries(alert))

    [update] = sink.send(deliveries(revised(alert), revision=2))
    [again] = sink.send(deliveries(revised(alert), revision=2))

    assert update.outcome is Outcome.DELIVERED and update.external_id == "INC0010001"
    assert again.outcome is Outcome.DELIVERED and "already" in again.detail
    record = only_record(snow)
    [note] = record["work_notes"]
    assert "revision 2" in note and "198.51.100.23:8443" in note
    [patch] = snow.requests_to("PATCH", "/api/now/table/incident/")
    assert patch.path == f"/api/now/table/incident/{record['sys_id']}"
    assert set(patch.json) == {"work_notes"}


def test_servicenow_429_with_retry_after_then_success_sleeps_retry_after(snow: ServiceNowServer,
                                                                          alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS)
    sink = make_sink(snow, context)
    snow.throttle(1, retry_after=11, body={"error": {"message": "Too many requests"}, "status": "failure"})

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.DELIVERED
    assert sleeps == [11.0]
    assert len(snow.records) == 1


def test_servicenow_5xx_for_a_while_then_recovery_delivers_once(snow: ServiceNowServer,
                                                                alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS, max_attempts=2)
    sink = make_sink(snow, context)
    docs = [alert, variant(alert, "cw-second000000000000000000000000")]
    snow.fail_next(503, count=3)

    first = sink.send(deliveries(*docs))
    second = sink.send(deliveries(*docs))

    assert [r.outcome for r in first] == [Outcome.FAILED_TRANSIENT, Outcome.DELIVERED]
    assert [r.outcome for r in second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert sorted(r["correlation_id"] for r in snow.records.values()) == sorted(d["finding_info"]["uid"]
                                                                                for d in docs)
    assert len(sleeps) == 2


def test_servicenow_504_after_create_lookup_by_correlation_id_no_duplicate(snow: ServiceNowServer,
                                                                           alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(snow, context)
    snow.fail_after_processing(504, path="/api/now/table/incident", method="POST")

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.DELIVERED and result.external_id == "INC0010001"
    assert len(snow.records) == 1
    lookups = snow.requests_to("GET", "/api/now/table/incident")
    assert len(lookups) == 2  # before creating, and after the 504 (the table query is consistent: no lag)
    assert all(r.query["sysparm_query"][0].startswith(f"correlation_id={alert['finding_info']['uid']}")
               for r in lookups)


def test_servicenow_reply_lost_then_stale_claim_recovered_update_goes_to_same_incident(
        snow: ServiceNowServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS, max_attempts=1)
    sink = make_sink(snow, context, pending_timeout=60)
    now = [5_000.0]
    sink.clock = lambda: now[0]
    snow.fail_after_processing(None, path="/api/now/table/incident", method="POST")

    [lost] = sink.send(deliveries(alert))
    now[0] += 61
    [update] = sink.send(deliveries(revised(alert), revision=2))

    assert lost.outcome is Outcome.FAILED_TRANSIENT
    assert update.outcome is Outcome.DELIVERED and update.external_id == "INC0010001"
    assert len(only_record(snow)["work_notes"]) == 1


def test_servicenow_400_failed_permanent_with_body_no_retry(snow: ServiceNowServer, alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS)
    sink = make_sink(snow, context, severity_map={"critical": {"urgency": 9, "impact": 1}})
    [delivery] = deliveries(alert)

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert result.response is not None and "urgency must be 1, 2 or 3" in result.response
    assert sleeps == [] and len(snow.requests_to("POST", "/api/now/table/incident")) == 1
    assert context.ticket_map.get(delivery.finding_id, "servicenow") is None


def test_servicenow_401_failed_permanent_secret_never_in_results_or_logs(snow: ServiceNowServer,
                                                                         alert: dict[str, Any],
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-Pa55word-0000"
    context, sleeps = make_context({SECRET_NAME: wrong})
    sink = make_sink(snow, context, username=DEFAULT_USERNAME)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert result.response is not None and "User Not Authenticated" in result.response
    assert sleeps == []
    assert_secret_absent([wrong, f"{DEFAULT_USERNAME}:{wrong}"], [result], caplog.text)


def test_servicenow_secret_without_username_failed_permanent(snow: ServiceNowServer, alert: dict[str, Any]) -> None:
    context, _ = make_context({SECRET_NAME: "only-a-password"})
    [result] = make_sink(snow, context).send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_PERMANENT and "username" in result.detail
    assert "only-a-password" not in result.detail
    assert snow.requests == []


def test_servicenow_canary_and_non_alert_skipped(snow: ServiceNowServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(snow, context)

    [canary] = sink.send(deliveries(alert, canary=True))
    [quiet] = sink.send(deliveries(non_alert(alert)))

    assert canary.outcome is Outcome.SKIPPED and quiet.outcome is Outcome.SKIPPED
    assert snow.requests == []


def test_servicenow_hostile_strings_plain_bounded_code_tags_neutralized(snow: ServiceNowServer,
                                                                        alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(snow, context)
    doc = hostile(alert)
    sink.send(deliveries(doc))

    [result] = sink.send(deliveries(revised(doc), revision=2))

    assert result.outcome is Outcome.DELIVERED
    [request] = snow.requests_to("POST", "/api/now/table/incident")
    sent = request.json
    assert sent["short_description"].startswith("'=HYPERLINK(") and len(sent["short_description"]) <= 160
    assert len(sent["description"]) <= 4000
    note = only_record(snow)["work_notes"][0]
    assert len(note) <= 16_000
    for text in (sent["description"], note):
        assert "[code]" not in text.lower() and "[/code]" not in text.lower()
        assert not any(ch in text for ch in "\x1b\x00\r\u202e")
        assert HUGE[:1000] not in text
    assert SNOW_CODE not in note and "(code)" in note


def test_servicenow_no_code_tags_case_insensitive() -> None:
    assert no_code_tags("a [CODE]<b>x</b>[/Code] b") == "a (CODE)<b>x</b>(/Code) b"


def test_servicenow_config_checked() -> None:
    context, _ = make_context(SECRETS)
    with pytest.raises(ConfigError, match="credentials_secret"):
        build_sinks([{"kind": "servicenow", "url": "https://x.service-now.com"}], context)
    with pytest.raises(ConfigError, match="table"):
        build_sinks([{"kind": "servicenow", "url": "https://x.service-now.com", "credentials_secret": "s",
                      "table": "incident^x"}], context)


def test_servicenow_fresh_ticket_map_incident_found_by_correlation_id_work_note_not_repeated(
        snow: ServiceNowServer, alert: dict[str, Any]) -> None:
    first_run, _ = make_context(SECRETS)
    make_sink(snow, first_run).send(deliveries(alert))
    make_sink(snow, first_run).send(deliveries(revised(alert), revision=2))
    fresh, _ = make_context(SECRETS)  # a re-created stack: the map is empty
    sink = make_sink(snow, fresh)

    [again] = sink.send(deliveries(alert))
    [again2] = sink.send(deliveries(revised(alert), revision=2))

    assert again.outcome is Outcome.DELIVERED and "found INC0010001 at the vendor" in again.detail
    assert again2.outcome is Outcome.DELIVERED and "already on INC0010001" in again2.detail
    [record] = snow.records.values()
    assert len(record["work_notes"]) == 1 and "revision 2 of" in record["work_notes"][0]
    assert len(snow.requests_to("POST", "/api/now/table/incident")) == 1
    journal = snow.requests_to("GET", "/api/now/table/sys_journal_field")
    assert journal and journal[-1].query["sysparm_query"][0].startswith(f"element_id={record['sys_id']}^")
