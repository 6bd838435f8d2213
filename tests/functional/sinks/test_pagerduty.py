"""The PagerDuty Events v2 sink against the local Events API stand-in (real requests code over loopback)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from standins.pagerduty import DEFAULT_ROUTING_KEY, PagerDutyServer, start_pagerduty_server
from ticket_support import (
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

from chainwatch.errors import ConfigError
from chainwatch.sinks.base import Outcome, SinkContext, build_sinks
from chainwatch.sinks.pagerduty import PagerDutySink, dedup_key

SECRET_NAME = "chainwatch/pagerduty"
SECRETS = {SECRET_NAME: DEFAULT_ROUTING_KEY}


@pytest.fixture(scope="module")
def alert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return detect_alert(tmp_path_factory.mktemp("pagerduty"))


@pytest.fixture
def pd() -> Iterator[PagerDutyServer]:
    server, _url = start_pagerduty_server()
    yield server
    server.stop()


def make_sink(server: PagerDutyServer, context: SinkContext, **options: Any) -> PagerDutySink:
    config = {"kind": "pagerduty", "url": server.base_url, "routing_key_secret": SECRET_NAME, **options}
    sink = build_sinks([config], context)[0]
    assert isinstance(sink, PagerDutySink)
    return sink


def test_pagerduty_trigger_happy_path_one_alert_with_details(pd: PagerDutyServer, alert: dict[str, Any],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    context, sleeps = make_context(SECRETS)
    sink = make_sink(pd, context)
    [delivery] = deliveries(alert)

    [result] = sink.send([delivery])

    assert result.outcome is Outcome.DELIVERED, result
    assert result.external_id == delivery.finding_id
    [request] = pd.requests
    assert (request.method, request.path, request.status) == ("POST", "/v2/enqueue", 202)
    assert "authorization" not in request.headers  # the routing key travels in the body only
    event = request.json
    assert event["event_action"] == "trigger" and event["dedup_key"] == delivery.finding_id
    payload = event["payload"]
    assert payload["summary"] == alert["finding_info"]["title"]
    assert payload["source"] == "mac-02" and payload["severity"] == "critical"
    assert payload["timestamp"].endswith("Z")
    details = payload["custom_details"]
    assert details["finding_id"] == delivery.finding_id and details["revision"] == 1
    assert any("isolate mac-02" in step for step in details["triage_playbook"])
    assert "PROCESS TREE" in details["story"] and "zsh pid 2210" in details["story"]
    [open_alert] = pd.alerts_for(delivery.finding_id)
    assert open_alert["status"] == "triggered"
    assert sleeps == []
    assert_secret_absent([DEFAULT_ROUTING_KEY], [result], caplog.text)


def test_pagerduty_delivered_twice_one_alert_one_event(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(pd, context)

    first = sink.send(deliveries(alert))
    second = sink.send(deliveries(alert))

    assert [r.outcome for r in first + second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert "already" in second[0].detail
    assert len(pd.requests) == 1
    assert len(pd.alerts) == 1


def test_pagerduty_repeat_after_resolve_does_not_repage(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(pd, context)
    [delivery] = deliveries(alert)
    sink.send([delivery])
    pd.resolve(delivery.finding_id)

    [repeat] = sink.send([delivery])

    assert repeat.outcome is Outcome.DELIVERED
    assert [a["status"] for a in pd.alerts_for(delivery.finding_id)] == ["resolved"]


def test_pagerduty_revision_two_same_dedup_key_same_open_alert(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(pd, context)
    sink.send(deliveries(alert))

    [update] = sink.send(deliveries(revised(alert), revision=2))

    assert update.outcome is Outcome.DELIVERED
    [open_alert] = pd.alerts
    assert len(open_alert["events"]) == 2
    assert open_alert["events"][1]["payload"]["custom_details"]["revision"] == 2


def test_pagerduty_non_alert_and_canary_skipped(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(pd, context)

    [quiet] = sink.send(deliveries(non_alert(alert)))
    [canary] = sink.send(deliveries(alert, canary=True))

    assert quiet.outcome is Outcome.SKIPPED and "alerts only" in quiet.detail
    assert canary.outcome is Outcome.SKIPPED
    assert pd.requests == []

    context, _ = make_context(SECRETS)
    [paged] = make_sink(pd, context, accept_canary=True).send(deliveries(alert, canary=True))
    assert paged.outcome is Outcome.DELIVERED
    assert pd.alerts[0]["summary"].startswith("[CANARY] ")


def test_pagerduty_429_with_retry_after_then_success_sleeps_retry_after(pd: PagerDutyServer,
                                                                         alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS)
    sink = make_sink(pd, context)
    pd.throttle(2, retry_after=9)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.DELIVERED
    assert sleeps == [9.0, 9.0]
    assert len(pd.alerts) == 1


def test_pagerduty_429_without_retry_after_uses_throttle_backoff(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS, remaining=lambda: 20.0)
    sink = make_sink(pd, context, throttle_retry_after=45)
    pd.throttle(1, retry_after=None)

    [result] = sink.send(deliveries(alert))

    # 45 s does not fit in the 20 s left: the dispatcher gets the wait instead of a sleep past the budget.
    assert result.outcome is Outcome.FAILED_TRANSIENT and result.retry_after == 45.0
    assert sleeps == []
    assert context.ticket_map.get(alert["finding_info"]["uid"], "pagerduty#r1") is None


def test_pagerduty_retry_after_200_within_budget_waits_200_never_less(pd: PagerDutyServer,
                                                                       alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS, remaining=lambda: 280.0)
    sink = make_sink(pd, context)
    pd.throttle(1, retry_after=200)

    [result] = sink.send(deliveries(alert))

    # The old cap (3 x max_delay = 60 s) called PagerDuty again after 60 s.
    assert result.outcome is Outcome.DELIVERED
    assert sleeps == [200.0]
    assert len(pd.requests) == 2


def test_pagerduty_retry_after_200_beyond_budget_left_for_later_with_retry_after(pd: PagerDutyServer,
                                                                                 alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS, remaining=lambda: 100.0)
    sink = make_sink(pd, context)
    pd.throttle(1, retry_after=200)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_TRANSIENT and result.retry_after == 200.0
    assert sleeps == [] and len(pd.requests) == 1


def test_pagerduty_same_finding_with_fresh_ticket_map_one_alert_by_dedup_key(pd: PagerDutyServer,
                                                                             alert: dict[str, Any]) -> None:
    first, _ = make_context(SECRETS)
    second, _ = make_context(SECRETS)  # a re-created stack: nothing remembered

    results = [make_sink(pd, ctx).send(deliveries(alert))[0] for ctx in (first, second)]

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert len(pd.requests) == 2
    [open_alert] = pd.alerts
    assert open_alert["dedup_key"] == alert["finding_info"]["uid"] and len(open_alert["events"]) == 2


def test_pagerduty_5xx_for_a_while_then_recovery_delivers_once(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS, max_attempts=2)
    sink = make_sink(pd, context)
    docs = [alert, variant(alert, "cw-second000000000000000000000000")]
    pd.fail_next(500, count=3, body="Internal Server Error")

    first = sink.send(deliveries(*docs))
    second = sink.send(deliveries(*docs))

    assert [r.outcome for r in first] == [Outcome.FAILED_TRANSIENT, Outcome.DELIVERED]
    assert [r.outcome for r in second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert sorted(a["dedup_key"] for a in pd.alerts) == sorted(d["finding_info"]["uid"] for d in docs)
    assert all(len(a["events"]) == 1 for a in pd.alerts)
    assert len(sleeps) == 2


def test_pagerduty_400_invalid_event_failed_permanent_with_body_no_retry(pd: PagerDutyServer,
                                                                          alert: dict[str, Any]) -> None:
    context, sleeps = make_context({SECRET_NAME: "WRONGKEY0123456789abcdefABCDEF00"})
    sink = make_sink(pd, context)

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert result.response is not None and "invalid event" in result.response
    assert "routing_key" in result.response
    assert sleeps == [] and len(pd.requests) == 1
    assert_secret_absent(["WRONGKEY0123456789abcdefABCDEF00"], [result])


def test_pagerduty_401_from_a_proxy_failed_permanent(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, sleeps = make_context(SECRETS)
    sink = make_sink(pd, context)
    pd.fail_next(401, body={"error": "Unauthorized", "echo": DEFAULT_ROUTING_KEY})

    [result] = sink.send(deliveries(alert))

    assert result.outcome is Outcome.FAILED_PERMANENT and "HTTP 401" in result.detail
    assert result.response is not None and "Unauthorized" in result.response
    assert sleeps == []
    assert_secret_absent([DEFAULT_ROUTING_KEY], [result])


def test_pagerduty_json_secret_and_missing_secret(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, _ = make_context({SECRET_NAME: json.dumps({"routing_key": DEFAULT_ROUTING_KEY})})
    [ok] = make_sink(pd, context).send(deliveries(alert))
    context, _ = make_context({})
    [missing] = make_sink(pd, context).send(deliveries(alert))

    assert ok.outcome is Outcome.DELIVERED
    assert missing.outcome is Outcome.FAILED_PERMANENT and SECRET_NAME in missing.detail


def test_pagerduty_hostile_strings_bounded_event(pd: PagerDutyServer, alert: dict[str, Any]) -> None:
    context, _ = make_context(SECRETS)
    sink = make_sink(pd, context)

    [result] = sink.send(deliveries(hostile(alert)))

    assert result.outcome is Outcome.DELIVERED, result
    [request] = pd.requests
    assert len(request.body) < 256 * 1024
    payload = request.json["payload"]
    assert payload["summary"].startswith("'=HYPERLINK(") and len(payload["summary"]) <= 1024
    assert len(payload["source"]) <= 255
    text = json.dumps(payload, ensure_ascii=False)
    assert HUGE[:1000] not in text
    assert not any(ch in text for ch in "\x1b\x00\u202e")
    for step in payload["custom_details"]["triage_playbook"]:
        assert len(step) < 2000


def test_pagerduty_long_finding_id_dedup_key_bounded() -> None:
    assert dedup_key("cw-abc") == "cw-abc"
    long_key = dedup_key("x" * 400)
    assert len(long_key) <= 255 and long_key == dedup_key("x" * 400)


def test_pagerduty_config_checked() -> None:
    context, _ = make_context(SECRETS)
    with pytest.raises(ConfigError, match="routing_key_secret"):
        build_sinks([{"kind": "pagerduty"}], context)
    with pytest.raises(ConfigError, match="severity_map"):
        build_sinks([{"kind": "pagerduty", "routing_key_secret": "s", "severity_map": {"critical": "p1"}}], context)
