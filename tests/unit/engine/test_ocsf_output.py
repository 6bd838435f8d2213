"""Every scenario finding renders as a valid OCSF 1.8 Detection Finding, and the validator rejects broken ones."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from builders import run
from test_scenarios import SCENARIOS

from chainwatch.findings.model import Finding
from chainwatch.findings.ocsf import to_ocsf, validate_detection_finding
from chainwatch.policy import load_policy

POLICY = load_policy()
FINDINGS: dict[str, list[Finding]] = {name: run(build().events) for name, build in sorted(SCENARIOS.items())}
WITH_FINDINGS = [name for name, found in FINDINGS.items() if found]


def _doc(name: str = "amos") -> dict[str, Any]:
    return to_ocsf(FINDINGS[name][0], POLICY, processed_ns=0)


def test_ocsf_scenarios_produce_findings_to_validate() -> None:
    # Guard: the parametrized test below must not pass vacuously.
    assert len(WITH_FINDINGS) >= 12
    assert "word-loopback" not in WITH_FINDINGS or all(not f.is_alert for f in FINDINGS["word-loopback"])


@pytest.mark.parametrize("name", WITH_FINDINGS)
def test_ocsf_every_scenario_finding_validates(name: str) -> None:
    for finding in FINDINGS[name]:
        doc = orjson.loads(orjson.dumps(to_ocsf(finding, POLICY)))  # survives JSON as the CLI writes it
        assert validate_detection_finding(doc) == []
        assert doc["class_uid"] == 2004 and doc["type_uid"] == 200401
        assert doc["finding_info"]["uid"] == finding.finding_id
        assert doc["finding_info"]["analytic"]["uid"] == "AN1316"
        assert doc["device"]["hostname"] == finding.host
        assert doc["is_alert"] is finding.is_alert
        assert [e["data"]["stage"] for e in doc["evidences"]] == list(finding.stage_numbers)
        assert {a["technique"]["uid"] for a in doc["finding_info"]["attacks"]} >= {"T1204"}
        assert doc["unmapped"]["chainwatch"]["suppressed_by"] == finding.suppressed_by


@pytest.mark.parametrize(("name", "status"), [("keystone", "Suppressed"), ("amos", "New")])
def test_ocsf_status_says_suppressed(name: str, status: str) -> None:
    doc = _doc(name)
    assert doc["status"] == status
    assert validate_detection_finding(doc) == []


def test_ocsf_egress_evidence_has_destination_and_process() -> None:
    egress = _doc()["evidences"][-1]
    assert egress["dst_endpoint"] == {"ip": "185.106.93.154", "port": 80}
    assert egress["process"]["path"] == "/usr/bin/curl" and egress["process"]["uid"].startswith("es:")


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda d: d.pop("class_uid"), "missing required class_uid"),
    (lambda d: d.update(type_uid=200499), "type_uid must be class_uid * 100 + activity_id"),
    (lambda d: d.update(class_uid=2003, type_uid=200301), "class_uid is 2003, expected 2004"),
    (lambda d: d.update(is_alert="yes"), "is_alert has type str"),
    (lambda d: d.update(severity_id=True), "severity_id has type bool"),
    (lambda d: d.update(severity_id=7), "severity_id out of range"),
    (lambda d: d["finding_info"].pop("uid"), "finding_info.uid is required"),
    (lambda d: d["metadata"].pop("product"), "metadata.product needs name and vendor_name"),
    (lambda d: d["evidences"][0]["process"].update(pid="42"), "evidences[0].process.pid must be an int"),
    (lambda d: d["device"].pop("type_id"), "device.type_id is required"),
])
def test_ocsf_validator_broken_doc_has_problem(mutate: Any, problem: str) -> None:
    doc = copy.deepcopy(_doc())
    mutate(doc)
    assert problem in validate_detection_finding(doc)


def test_ocsf_validator_not_an_object_fails() -> None:
    assert validate_detection_finding([_doc()]) == ["finding is not a JSON object"]
