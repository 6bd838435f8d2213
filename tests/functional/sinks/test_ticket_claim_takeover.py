"""Two workers taking over the same stale ticket claim at once: exactly one creates, the other backs off.

A ``pending:`` claim whose worker died, or an ``uncertain:`` create past the search index lag, is taken over with
a compare-and-swap on the value read (``TicketMap.replace``). The Jira stand-in holds both workers' lookups until
both have arrived (``gate``), so both find no ticket and both try the takeover: the interleaving that used to open
two issues. Run on the in-memory map and on the DynamoDB map under moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from standins.jira import DEFAULT_API_TOKEN, DEFAULT_EMAIL, JiraServer, adf_text, start_jira_server
from ticket_support import deliveries, detect_alert, make_context, revised

from chainwatch.app.local import create_resources
from chainwatch.sinks.base import InMemoryTicketMap, Outcome, TicketMap, build_sinks
from chainwatch.sinks.jira import JiraSink
from chainwatch.state.dynamodb import DynamoTicketMap, Tables, make_models

ROOT = Path(__file__).resolve().parents[3]
SECRET_NAME = "chainwatch/jira"
SECRETS = {SECRET_NAME: {"email": DEFAULT_EMAIL, "api_token": DEFAULT_API_TOKEN}}
NOW = 1_700_000_000.0
#: The values a crashed or unlucky worker leaves behind, each already stale at NOW for a Jira sink (pending_timeout
#: 900 s, search_index_lag 60 s).
STALE = {"pending": f"pending:dead-worker:{int(NOW) - 1000}", "uncertain": f"uncertain:{int(NOW) - 120}"}


@pytest.fixture(scope="module")
def alert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return detect_alert(tmp_path_factory.mktemp("takeover"))


@pytest.fixture
def jira() -> Iterator[JiraServer]:
    server, _url = start_jira_server()
    yield server
    server.stop()


@pytest.fixture
def dynamo_map(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoTicketMap]:
    """The ticket map on the Deliveries table as ``template.yaml`` declares it, under ``mock_aws``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        names = create_resources(ROOT / "template.yaml", boto3.session.Session(region_name="us-east-1"), None,
                                 prefix="takeover")
        tables = Tables(state=names["ChainStateTable"], findings=names["FindingsTable"],
                        deliveries=names["DeliveriesTable"], region="us-east-1")
        yield DynamoTicketMap(make_models(tables))


@pytest.fixture(params=["memory", "dynamodb"])
def ticket_map(request: pytest.FixtureRequest) -> TicketMap:
    if request.param == "memory":
        return InMemoryTicketMap()
    result: TicketMap = request.getfixturevalue("dynamo_map")
    return result


def _sink(jira: JiraServer, ticket_map: TicketMap) -> JiraSink:
    context, _ = make_context(SECRETS, ticket_map=ticket_map)
    config = {"kind": "jira", "url": jira.base_url, "project_key": "SEC", "token_secret": SECRET_NAME}
    sink = build_sinks([config], context)[0]
    assert isinstance(sink, JiraSink)
    sink.clock = lambda: NOW
    return sink


@pytest.mark.parametrize("stale", sorted(STALE))
def test_ticket_takeover_two_workers_same_stale_claim_one_creates_other_backs_off_then_comments(
        jira: JiraServer, ticket_map: TicketMap, alert: dict[str, Any], stale: str) -> None:
    [first] = deliveries(alert)
    [second] = deliveries(revised(alert), revision=2)
    ticket_map.claim(first.finding_id, "jira", STALE[stale])
    workers = [_sink(jira, ticket_map), _sink(jira, ticket_map)]
    jira.gate("GET", "/rest/api/3/search/jql", parties=2)  # both look up (and find nothing) before either creates

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda pair: pair[0].send([pair[1]])[0], zip(workers, [first, second],
                                                                               strict=True)))
    [won] = [r for r in results if r.outcome is Outcome.DELIVERED]
    [lost] = [r for r in results if r.outcome is not Outcome.DELIVERED]
    loser = first if lost.revision == 1 else second
    [retried] = workers[0].send([loser])

    assert len(jira.requests_to("GET", "/rest/api/3/search/jql")) == 2  # the gate saw both lookups
    assert won.detail == "created SEC-1" and won.external_id == "SEC-1"
    assert lost.outcome is Outcome.FAILED_TRANSIENT and "another worker took over" in lost.detail
    assert lost.retry_after is not None and 0 < lost.retry_after <= 30
    assert retried.outcome is Outcome.DELIVERED and retried.detail.startswith("commented on SEC-1")
    creates = [r for r in jira.requests_to("POST", "/rest/api/3/issue") if r.path == "/rest/api/3/issue"]
    assert len(jira.issues) == 1 and len(creates) == 1
    [issue] = jira.issues.values()
    [comment] = issue["comments"]
    assert f"revision {loser.revision}" in adf_text(comment["body"])
    assert ticket_map.get(first.finding_id, "jira") == "SEC-1"


def test_ticket_map_replace_compare_and_swap_only_one_of_two_takeovers_wins(ticket_map: TicketMap) -> None:
    ticket_map.set("cw-1", "jira", "pending:old:1")

    first = ticket_map.replace("cw-1", "jira", "pending:old:1", "pending:a:2")
    second = ticket_map.replace("cw-1", "jira", "pending:old:1", "pending:b:2")
    absent = ticket_map.replace("cw-2", "jira", "pending:old:1", "pending:c:2")

    assert (first, second, absent) == (True, False, False)
    assert ticket_map.get("cw-1", "jira") == "pending:a:2"
    assert ticket_map.get("cw-2", "jira") is None  # a replace never creates an entry
