"""The Elasticsearch/OpenSearch ``_bulk`` sink against the local Elasticsearch stand-in (real requests code)."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Iterator
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
from standins.elastic import DEFAULT_API_KEY, DEFAULT_API_KEY_ID, ElasticServer, start_elastic_server

from chainwatch.sinks.base import Delivery, Outcome, SinkContext, build_sinks
from chainwatch.sinks.elasticsearch import DEFAULT_INDEX, ElasticsearchSink, document_id, index_template

KEY_SECRET = "chainwatch/es-api-key"
USER_SECRET = "chainwatch/es-user"
ENCODED = base64.b64encode(f"{DEFAULT_API_KEY_ID}:{DEFAULT_API_KEY}".encode()).decode()


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return detect_findings(tmp_path_factory.mktemp("detect"))


@pytest.fixture(scope="module")
def finding(findings: list[dict[str, Any]]) -> dict[str, Any]:
    return alert_with_egress(findings)


@pytest.fixture
def es() -> Iterator[tuple[ElasticServer, str]]:
    server, url = start_elastic_server(basic=("chainwatch_writer", "s3cret-passw0rd"))
    yield server, url
    server.stop()


def make_sink(url: str, *, secrets: dict[str, Any] | None = None, max_attempts: int = 4, **options: Any,
              ) -> tuple[ElasticsearchSink, SinkContext, Sleeps]:
    context, sleeps = make_context(secrets if secrets is not None else {KEY_SECRET: ENCODED},
                                   max_attempts=max_attempts)
    config: dict[str, Any] = {"kind": "elasticsearch", "url": url, **options}
    if "basic_auth_secret" not in options and "api_key_secret" not in options:
        config["api_key_secret"] = KEY_SECRET
    return ElasticsearchSink("es", config, context), context, sleeps


def ids_sent(request: Any) -> list[str]:
    return [line["create"]["_id"] for line in request.ndjson() if "create" in line]


def test_elasticsearch_bulk_happy_path_indexes_ecs_documents(es: tuple[ElasticServer, str],
                                                             finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, sleeps = make_sink(url)
    second = variant(finding, "cw-second")

    results = sink.send(deliveries(finding, second))

    fid = finding["finding_info"]["uid"]
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert results[0].external_id == f"{fid}-r1"
    [request] = server.bulk_requests()
    assert request.path == f"/{DEFAULT_INDEX}/_bulk"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.headers["authorization"] == f"ApiKey {ENCODED}"
    assert request.body.endswith(b"\n") and request.body.count(b"\n") == 4  # action + source per finding
    assert request.ndjson()[0] == {"create": {"_id": f"{fid}-r1"}}
    doc = server.documents(DEFAULT_INDEX)[f"{fid}-r1"]
    assert doc["@timestamp"].endswith("Z") and doc["@timestamp"].startswith("20")
    assert doc["event"]["kind"] == "alert" and doc["event"]["action"] == "chain-detected"
    assert {"intrusion_detection", "process", "network"} <= set(doc["event"]["category"])
    assert doc["event"]["severity"] == finding["severity_id"]
    assert doc["rule"]["id"] == finding["finding_info"]["analytic"]["uid"]
    assert doc["host"]["name"] == finding["device"]["hostname"] and doc["host"]["os"]["type"] == "macos"
    executed = stage_process(finding, 3) or {}
    assert doc["process"]["name"] == executed["name"]
    assert doc["process"]["command_line"] == executed["cmd_line"]
    assert doc["process"]["parent"]["pid"] == executed["parent_process"]["pid"]
    egress = finding["unmapped"]["chainwatch"]["egress"][0]
    assert doc["destination"]["ip"] == egress["ip"] and doc["destination"]["port"] == egress["port"]
    attacks = finding["finding_info"]["attacks"]
    assert doc["threat"]["framework"] == "MITRE ATT&CK"
    assert doc["threat"]["technique"]["id"] == list(dict.fromkeys(a["technique"]["uid"] for a in attacks))
    assert doc["threat"]["technique"]["reference"][0].startswith("https://attack.mitre.org/techniques/T")
    cw = doc["chainwatch"]
    assert (cw["finding_id"], cw["revision"], cw["canary"]) == (fid, 1, False)
    assert cw["story"] == finding["unmapped"]["chainwatch"]["story"]
    assert cw["timeline"] == finding["unmapped"]["chainwatch"]["timeline"]
    assert sleeps == []


def test_elasticsearch_same_revision_delivered_twice_one_document(es: tuple[ElasticServer, str],
                                                                  finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, _ = make_sink(url)

    [first] = sink.send(deliveries(finding))
    [again] = sink.send(deliveries(finding))

    assert first.outcome is Outcome.DELIVERED
    assert again.outcome is Outcome.DELIVERED and "409" in again.detail
    assert again.external_id == first.external_id
    assert len(server.documents(DEFAULT_INDEX)) == 1
    assert len(server.bulk_requests()) == 2  # ES dedupes, not the sink: a retry cannot duplicate


def test_elasticsearch_two_runs_fresh_state_one_document_per_revision(es: tuple[ElasticServer, str],
                                                                     finding: dict[str, Any]) -> None:
    server, url = es
    results = [make_sink(url)[0].send(deliveries(finding))[0] for _ in range(2)]  # a new context each run

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert "409" in results[1].detail  # _id + create: Elasticsearch refused the duplicate
    assert list(server.documents(DEFAULT_INDEX)) == [f"{finding['finding_info']['uid']}-r1"]


def test_elasticsearch_revision_two_adds_one_update_document(es: tuple[ElasticServer, str],
                                                             finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, _ = make_sink(url)

    sink.send(deliveries(finding, revision=1))
    [update] = sink.send(deliveries(finding, revision=2))
    [update_again] = sink.send(deliveries(finding, revision=2))

    fid = finding["finding_info"]["uid"]
    docs = server.documents(DEFAULT_INDEX)
    assert sorted(docs) == [f"{fid}-r1", f"{fid}-r2"]
    assert docs[f"{fid}-r2"]["event"]["action"] == "chain-updated"
    assert docs[f"{fid}-r2"]["chainwatch"]["activity"] == "update"
    assert update.outcome is update_again.outcome is Outcome.DELIVERED


def test_elasticsearch_429_with_retry_after_then_success_sleeps_retry_after(es: tuple[ElasticServer, str],
                                                                           finding: dict[str, Any]) -> None:
    server, url = es
    server.fail_next(429, times=2, retry_after=11)
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    assert sleeps == [11.0, 11.0]
    assert len(server.bulk_requests()) == 3 and len(server.documents(DEFAULT_INDEX)) == 1


def test_elasticsearch_rejected_items_only_those_resent_then_delivered_once(es: tuple[ElasticServer, str],
                                                                           finding: dict[str, Any]) -> None:
    server, url = es
    server.fail_items(429, match="cw-b")  # es_rejected_execution_exception for one item, twice
    server.fail_items(429, match="cw-b")
    server.fail_items(503, match="cw-c")
    sink, _, sleeps = make_sink(url)
    docs = [variant(finding, "cw-a"), variant(finding, "cw-b"), variant(finding, "cw-c")]

    results = sink.send(deliveries(*docs))

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    sent = [ids_sent(r) for r in server.bulk_requests()]
    assert sent == [["cw-a-r1", "cw-b-r1", "cw-c-r1"], ["cw-b-r1", "cw-c-r1"], ["cw-b-r1"]]
    assert len(sleeps) == 2
    assert sorted(server.documents(DEFAULT_INDEX)) == ["cw-a-r1", "cw-b-r1", "cw-c-r1"]


def test_elasticsearch_5xx_for_a_while_then_recovers_delivered_once(es: tuple[ElasticServer, str],
                                                                   finding: dict[str, Any]) -> None:
    server, url = es
    server.fail_next(503, times=2)
    server.fail_next(502)
    sink, _, sleeps = make_sink(url, max_attempts=5)
    docs = [variant(finding, f"cw-{i}") for i in range(4)]

    results = sink.send(deliveries(*docs))

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 4
    assert len(sleeps) == 3 and all(0 <= s <= 20 for s in sleeps)
    assert sorted(server.documents(DEFAULT_INDEX)) == [f"cw-{i}-r1" for i in range(4)]


def test_elasticsearch_throttled_item_outlives_retries_failed_transient(es: tuple[ElasticServer, str],
                                                                        finding: dict[str, Any]) -> None:
    server, url = es
    server.fail_items(429, times=10, match="cw-b")
    sink, _, sleeps = make_sink(url, max_attempts=3)

    results = sink.send(deliveries(variant(finding, "cw-a"), variant(finding, "cw-b")))

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.FAILED_TRANSIENT]
    assert "es_rejected_execution_exception" in results[1].detail
    assert "es_rejected_execution_exception" in (results[1].response or "")
    assert len(sleeps) == 2 and list(server.documents(DEFAULT_INDEX)) == ["cw-a-r1"]


def test_elasticsearch_mapper_parsing_item_failed_permanent_others_delivered_no_retry(
        es: tuple[ElasticServer, str], finding: dict[str, Any]) -> None:
    server, url = es
    server.fail_items(400, match="cw-bad")  # mapper_parsing_exception
    sink, _, sleeps = make_sink(url)

    results = sink.send(deliveries(variant(finding, "cw-ok"), variant(finding, "cw-bad")))

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.FAILED_PERMANENT]
    assert "mapper_parsing_exception" in results[1].detail
    assert "failed to parse" in (results[1].response or "")
    assert sleeps == [] and len(server.bulk_requests()) == 1


def test_elasticsearch_400_request_failed_permanent_with_body_no_retry(es: tuple[ElasticServer, str],
                                                                       finding: dict[str, Any]) -> None:
    server, url = es
    server.fail_next(400, body='{"error":{"type":"illegal_argument_exception","reason":"no"},"status":400}')
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert "HTTP 400" in result.detail and "illegal_argument_exception" in (result.response or "")
    assert sleeps == [] and len(server.bulk_requests()) == 1


@pytest.mark.parametrize("secret", ["wrong-id:wrong-key", base64.b64encode(b"x:y").decode()])
def test_elasticsearch_bad_api_key_401_failed_permanent_no_retry(es: tuple[ElasticServer, str],
                                                                 finding: dict[str, Any], secret: str) -> None:
    server, url = es
    sink, _, sleeps = make_sink(url, secrets={KEY_SECRET: secret})

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT
    assert "HTTP 401" in result.detail and "unable to authenticate" in (result.response or "")
    assert sleeps == [] and len(server.bulk_requests()) == 1 and server.documents(DEFAULT_INDEX) == {}


def test_elasticsearch_read_only_key_item_403_failed_permanent(es: tuple[ElasticServer, str],
                                                               finding: dict[str, Any]) -> None:
    server, url = es
    server.add_api_key("reader", "read-only-key-123", write=False)
    sink, _, sleeps = make_sink(url, secrets={KEY_SECRET: {"id": "reader", "api_key": "read-only-key-123"}})

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and "security_exception" in result.detail
    assert sleeps == []


@pytest.mark.parametrize("secret", [{"username": "chainwatch_writer", "password": "s3cret-passw0rd"},
                                    "chainwatch_writer:s3cret-passw0rd"])
def test_elasticsearch_basic_auth_delivers(es: tuple[ElasticServer, str], finding: dict[str, Any],
                                           secret: Any) -> None:
    server, url = es
    sink, _, _ = make_sink(url, secrets={USER_SECRET: secret}, basic_auth_secret=USER_SECRET)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    assert server.bulk_requests()[0].headers["authorization"].startswith("Basic ")


def test_elasticsearch_api_key_id_and_key_secret_delivers(es: tuple[ElasticServer, str],
                                                          finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, _ = make_sink(url, secrets={KEY_SECRET: {"id": DEFAULT_API_KEY_ID, "api_key": DEFAULT_API_KEY}})

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    assert server.bulk_requests()[0].headers["authorization"] == f"ApiKey {ENCODED}"


def test_elasticsearch_secret_never_in_results_or_logs(es: tuple[ElasticServer, str], finding: dict[str, Any],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    server, url = es
    password = "Pa55-w0rd-that-must-not-leak"
    server.add_user("leaky", password)
    basic = base64.b64encode(f"leaky:{password}".encode()).decode()
    # A proxy that echoes credentials in its error pages, and an item error quoting them.
    server.fail_next(503, times=3, body=f"upstream refused Authorization: Basic {basic} ({password})")
    server.fail_next(400, body=json.dumps({"error": {"type": "x", "reason": f"bad {password}"}, "status": 400}))
    server.fail_items(400, reason=f"failed to parse {basic}")
    caplog.set_level(logging.DEBUG)
    sink, _, _ = make_sink(url, secrets={USER_SECRET: {"username": "leaky", "password": password}},
                           basic_auth_secret=USER_SECRET, max_attempts=3)

    [transient] = sink.send(deliveries(finding))
    [permanent] = sink.send(deliveries(finding))
    [item] = sink.send(deliveries(finding))
    bad_sink, _, _ = make_sink(url, secrets={KEY_SECRET: "id:" + password + "\n"})
    [unknown_key] = bad_sink.send(deliveries(variant(finding, "cw-x")))

    assert transient.outcome is Outcome.FAILED_TRANSIENT and "[redacted]" in (transient.response or "")
    assert permanent.outcome is Outcome.FAILED_PERMANENT and "[redacted]" in (permanent.response or "")
    assert item.outcome is Outcome.FAILED_PERMANENT and "[redacted]" in (item.response or "")
    assert unknown_key.outcome is Outcome.FAILED_PERMANENT  # unknown key: 401
    for result in (transient, permanent, item, unknown_key):
        assert password not in repr(result) and basic not in repr(result)
    assert password not in caplog.text and basic not in caplog.text


def test_elasticsearch_hostile_strings_bounded_and_invalid_ip_not_in_ip_field(es: tuple[ElasticServer, str],
                                                                              finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, _ = make_sink(url)

    [result] = sink.send(deliveries(hostile(finding)))

    assert result.outcome is Outcome.DELIVERED
    [request] = server.bulk_requests()
    assert len(request.body) < 200_000  # a 1 MB command line does not make a 1 MB (or 5 MB) document
    doc = next(iter(server.documents(DEFAULT_INDEX).values()))
    assert len(doc["process"]["command_line"]) <= 4096 and doc["process"]["command_line"].endswith("...")
    assert "ip" not in doc["destination"] and doc["destination"]["address"].startswith("<script>")
    assert "\\x1b[31mRED" in doc["process"]["executable"] and "\x1b" not in request.body.decode()
    assert "\u202e" not in request.body.decode("utf-8")
    assert len(doc["chainwatch"]["story"]) <= 32_768
    files = doc["chainwatch"]["files"]
    assert len(files) == 101 and files[-1].endswith("more left out]")


def test_elasticsearch_documents_of_different_shapes_share_one_mapping(es: tuple[ElasticServer, str],
                                                                       findings: list[dict[str, Any]],
                                                                       finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, _ = make_sink(url)
    no_egress = variant(finding, "cw-no-egress")
    no_egress["unmapped"]["chainwatch"]["egress"] = []
    no_egress["evidences"] = [e for e in no_egress["evidences"] if e["data"]["stage"] != 4]
    docs = [*findings, no_egress, variant(hostile(finding), "cw-hostile")]
    bare = Delivery("cw-bare", 1, {"finding_info": {"uid": "cw-bare"}})

    results = sink.send([*deliveries(*docs), bare])

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * (len(docs) + 1), [r.detail for r in results]
    types = server.field_types(DEFAULT_INDEX)
    assert types["@timestamp"] == "date" and types["chainwatch.timeline.time"] == "date"
    assert types["chainwatch.revision"] == types["destination.port"] == types["process.pid"] == "long"


def test_elasticsearch_canary_tagged(es: tuple[ElasticServer, str], finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, _ = make_sink(url)

    [result] = sink.send(deliveries(finding, canary=True))

    assert result.outcome is Outcome.DELIVERED
    doc = next(iter(server.documents(DEFAULT_INDEX).values()))
    assert "canary" in doc["tags"] and doc["chainwatch"]["canary"] is True and doc["labels"]["canary"] == "true"


def test_elasticsearch_index_pipeline_and_refresh_in_url(es: tuple[ElasticServer, str],
                                                         finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, _ = make_sink(url, index="logs-chainwatch.finding-default", pipeline="cw-enrich", refresh="wait_for")

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED
    [request] = server.bulk_requests()
    assert request.path == "/logs-chainwatch.finding-default/_bulk"
    assert request.query == {"pipeline": ["cw-enrich"], "refresh": ["wait_for"]}


def test_elasticsearch_explicit_index_disallowed_cluster_still_accepts(finding: dict[str, Any]) -> None:
    server, url = start_elastic_server(allow_explicit_index=False)
    try:
        sink, _, _ = make_sink(url)
        [result] = sink.send(deliveries(finding))
    finally:
        server.stop()
    assert result.outcome is Outcome.DELIVERED


def test_elasticsearch_items_not_matching_actions_retried_and_create_keeps_it_single(
        es: tuple[ElasticServer, str], finding: dict[str, Any]) -> None:
    server, url = es
    sink, _, sleeps = make_sink(url)
    sink.send(deliveries(finding))  # in the index already, as if a previous answer had been lost
    server.fail_next(200, body='{"took": 1, "errors": false, "items": []}')

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.DELIVERED and "409" in result.detail and len(sleeps) == 1
    assert len(server.documents(DEFAULT_INDEX)) == 1


def test_elasticsearch_200_that_is_not_bulk_failed_permanent_no_retry(es: tuple[ElasticServer, str],
                                                                      finding: dict[str, Any]) -> None:
    server, url = es
    server.fail_next(200, body="<html>Kibana</html>")
    sink, _, sleeps = make_sink(url)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and "is the url Elasticsearch" in result.detail
    assert result.response == "<html>Kibana</html>" and sleeps == []


@pytest.mark.parametrize(("options", "message"), [
    ({"index": "Bad Index"}, "not a valid index"),
    ({"api_key_secret": None}, "exactly one of"),
    ({"basic_auth_secret": USER_SECRET}, "exactly one of"),
    ({"url": "es.example.com:9200"}, "must start with"),
])
def test_elasticsearch_bad_configuration_failed_permanent(finding: dict[str, Any], options: dict[str, Any],
                                                          message: str) -> None:
    context, _ = make_context({KEY_SECRET: ENCODED, USER_SECRET: "u:p"})
    config = {"url": "http://127.0.0.1:9", "api_key_secret": KEY_SECRET, **options}
    sink = ElasticsearchSink("es", config, context)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_PERMANENT and message in result.detail


def test_elasticsearch_document_id_long_finding_id_hashed() -> None:
    long = Delivery("cw-" + "x" * 600, 3, {})
    assert document_id(long).startswith("cwh-") and document_id(long).endswith("-r3")
    assert len(document_id(long)) <= 512
    assert document_id(Delivery("cw-1", 2, {})) == "cw-1-r2"


def test_elasticsearch_index_template_turns_off_date_detection() -> None:
    template = index_template()
    mappings = template["template"]["mappings"]
    assert mappings["date_detection"] is False and template["index_patterns"] == [f"{DEFAULT_INDEX}*"]
    assert mappings["properties"]["destination"]["properties"]["ip"] == {"type": "ip"}


def test_elasticsearch_registered_under_its_kind() -> None:
    context, _ = make_context({})
    [sink] = build_sinks([{"kind": "elasticsearch", "url": "https://x", "api_key_secret": "k"}], context)
    assert isinstance(sink, ElasticsearchSink)


def test_standin_rejects_unterminated_body_and_wrong_content_type(es: tuple[ElasticServer, str]) -> None:
    server, url = es
    import requests

    auth = {"Authorization": f"ApiKey {ENCODED}"}
    body = json.dumps({"create": {"_id": "1"}}) + "\n" + json.dumps({"a": 1})
    unterminated = requests.post(f"{url}/x/_bulk", data=body,
                                 headers={**auth, "Content-Type": "application/x-ndjson"}, timeout=5)
    wrong_type = requests.post(f"{url}/x/_bulk", data=body + "\n", headers={**auth, "Content-Type": "text/plain"},
                               timeout=5)
    anonymous = requests.post(f"{url}/x/_bulk", data=body + "\n",
                              headers={"Content-Type": "application/x-ndjson"}, timeout=5)

    assert unterminated.status_code == 400
    assert "must be terminated by a newline" in unterminated.json()["error"]["reason"]
    assert wrong_type.status_code == 406
    assert anonymous.status_code == 401 and "missing authentication credentials" in anonymous.text
    assert "ApiKey" in anonymous.headers["WWW-Authenticate"]
    assert server.documents("x") == {}


def test_standin_mapping_conflict_is_mapper_parsing_item(es: tuple[ElasticServer, str]) -> None:
    server, url = es
    import requests

    headers = {"Authorization": f"ApiKey {ENCODED}", "Content-Type": "application/x-ndjson"}
    lines = [{"create": {"_id": "1"}}, {"f": {"when": "2025-01-01"}},
             {"create": {"_id": "2"}}, {"f": {"when": "not a date"}},
             {"create": {"_id": "3"}}, {"f": "flat"}]
    reply = requests.post(f"{url}/m/_bulk", data="".join(json.dumps(x) + "\n" for x in lines), headers=headers,
                          timeout=5).json()

    assert reply["errors"] is True
    assert [i["create"]["status"] for i in reply["items"]] == [201, 400, 400]
    assert {i["create"]["error"]["type"] for i in reply["items"][1:]} == {"mapper_parsing_exception"}
    assert copy.deepcopy(server.documents("m")) == {"1": {"f": {"when": "2025-01-01"}}}


def test_elasticsearch_time_budget_too_short_failed_transient_without_request(es: tuple[ElasticServer, str],
                                                                              finding: dict[str, Any]) -> None:
    server, url = es
    context, _ = make_context({KEY_SECRET: ENCODED}, remaining=lambda: 3.0)  # < timeout 5 s + margin
    sink = ElasticsearchSink("es", {"url": url, "api_key_secret": KEY_SECRET}, context)

    [result] = sink.send(deliveries(finding))

    assert result.outcome is Outcome.FAILED_TRANSIENT and "time budget" in result.detail
    assert server.bulk_requests() == []
