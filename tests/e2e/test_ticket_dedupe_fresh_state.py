"""Two full runs of the local pipeline on fresh state (a re-created stack: new tables, an empty ticket map) against
the same Jira and ServiceNow stand-ins: the vendors are the system of record, so each chain keeps exactly one ticket
and each later revision exactly one comment / work note."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standins import jira as jira_standin
from standins import servicenow as snow_standin
from standins.jira import JiraServer, adf_text
from standins.servicenow import ServiceNowServer

from chainwatch.app.local import LocalRunResult, run_local

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
#: Small Kinesis batches: the chains grow over several correlate invocations, so the outbox holds later revisions.
BATCH = 10


@pytest.fixture
def vendors() -> Iterator[tuple[JiraServer, ServiceNowServer]]:
    jira, _ = jira_standin.start_jira_server()
    snow, _ = snow_standin.start_servicenow_server()
    yield jira, snow
    jira.stop()
    snow.stop()


def _run(jira: JiraServer, snow: ServiceNowServer) -> LocalRunResult:
    sinks: list[dict[str, Any]] = [
        {"kind": "jira", "name": "jira", "url": jira.base_url, "project_key": "SEC", "token_secret": "jira",
         "alerts_only": False},
        {"kind": "servicenow", "name": "servicenow", "url": snow.base_url, "credentials_secret": "snow",
         "alerts_only": False},
    ]
    secrets = {"jira": {"email": jira_standin.DEFAULT_EMAIL, "api_token": jira_standin.DEFAULT_API_TOKEN},
               "snow": {"username": snow_standin.DEFAULT_USERNAME, "password": snow_standin.DEFAULT_PASSWORD}}
    return run_local(ROOT, [ROOT / "events"], sinks=sinks, secrets=secrets, batch_size=BATCH, out=lambda _: None)


def _comment_revisions(jira: JiraServer) -> dict[str, list[str]]:
    return {key: [adf_text(c["body"]).split(" (")[0] for c in issue["comments"]] for key, issue in jira.issues.items()}


def _note_revisions(snow: ServiceNowServer) -> dict[str, list[str]]:
    return {r["number"]: [n.split(" (")[0] for n in r["work_notes"]] for r in snow.records.values()}


def test_local_two_runs_fresh_state_one_ticket_per_chain_one_comment_per_revision(
        vendors: tuple[JiraServer, ServiceNowServer]) -> None:
    jira, snow = vendors

    first = _run(jira, snow)
    after_first = (_comment_revisions(jira), _note_revisions(snow))
    second = _run(jira, snow)

    chains = {f["finding_info"]["uid"] for f in first.findings}
    assert chains == {f["finding_info"]["uid"] for f in second.findings} and len(chains) == 2
    # One ticket per chain at each vendor, opened by the first run only.
    labels = Counter(label for issue in jira.issues.values() for label in issue["fields"]["labels"]
                     if label.startswith("finding-"))
    assert labels == Counter({f"finding-{chain}": 1 for chain in chains})
    assert Counter(r["correlation_id"] for r in snow.records.values()) == Counter({chain: 1 for chain in chains})
    assert len(jira.requests_to("POST", "/rest/api/3/issue")) - sum(
        len(i["comments"]) for i in jira.issues.values()) == 2  # creates, all in the first run
    # Later revisions became comments / work notes in the first run; the second run added none.
    assert sum(len(c) for c in after_first[0].values()) >= 1
    assert (_comment_revisions(jira), _note_revisions(snow)) == after_first
    for revisions in [*after_first[0].values(), *after_first[1].values()]:
        assert len(revisions) == len(set(revisions))  # never the same revision twice
    # The second run delivered everything (found at the vendors), nothing dead-lettered or left behind.
    for run in (first, second):
        assert run.dead_lettered == 0 and all(c.retried == 0 for c in run.sinks.values())
    assert second.sinks["jira"].delivered == first.sinks["jira"].delivered
