"""The SAM template translates offline and its CloudFormation output lints clean.

cfn-lint 1.54+ no longer expands SAM itself, so the template is first translated with aws-sam-translator (as
``sam deploy`` would), then the plain CloudFormation is linted: a typo in an event source or a bad reference fails.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform

from chainwatch.app.templating import load_template, table_definitions

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"


class _NoManagedPolicies:
    """Offline stand-in for the IAM managed-policy lookup the translator does (no AWS call)."""

    def load(self) -> dict[str, str]:
        return {"AWSLambdaKinesisExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole",
                "AWSLambdaDynamoDBExecutionRole":
                    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
                "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
                "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}


def _translate(template: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(template)
    for resource in doc["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://chainwatch-artifacts/{props[key].strip('/')}.zip"
    return transform(doc, {}, _NoManagedPolicies())  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _lint(translated: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "translated.json"
    out.write_text(json.dumps(translated))
    cfn_lint = str(Path(sys.executable).with_name("cfn-lint"))
    return subprocess.run([cfn_lint, "--format", "parseable", "-i", "W1020", "W3005",
                           "--", str(out)], capture_output=True, text=True, check=False)


def test_template_translates_and_lints_clean(tmp_path: Path) -> None:
    translated = _translate(load_template(TEMPLATE))
    types = {r["Type"] for r in translated["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::LayerVersion",
            "AWS::DynamoDB::Table", "AWS::SQS::Queue"} <= types
    result = _lint(translated, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_kinesis_mapping_reports_partial_batch_failures() -> None:
    translated = _translate(load_template(TEMPLATE))
    mappings = [r["Properties"] for r in translated["Resources"].values()
                if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    kinesis = [m for m in mappings if "BisectBatchOnFunctionError" in m and "ParallelizationFactor" in m]
    assert kinesis, mappings
    assert kinesis[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert kinesis[0]["BisectBatchOnFunctionError"] is True


def test_template_typo_in_event_source_fails_translation() -> None:
    template = load_template(TEMPLATE)
    events = template["Resources"]["CorrelateFunction"]["Properties"]["Events"]["Telemetry"]["Properties"]
    events["DestinationConfig"] = {"OnFailur": events["DestinationConfig"]["OnFailure"]}
    with pytest.raises(InvalidDocumentException):
        _translate(template)


def test_template_bad_reference_fails_lint(tmp_path: Path) -> None:
    template = load_template(TEMPLATE)
    template["Resources"]["CorrelateFunction"]["Properties"]["Environment"]["Variables"]["QUARANTINE_QUEUE_URL"] = {
        "Ref": "QuarantineQueu"}
    result = _lint(_translate(template), tmp_path)
    assert result.returncode != 0 and "QuarantineQueu" in result.stdout


def test_template_policies_have_no_wildcard_actions() -> None:
    template = load_template(TEMPLATE)
    for name, resource in template["Resources"].items():
        for policy in resource.get("Properties", {}).get("Policies", []):
            for statement in policy.get("Statement", []):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all("*" not in action for action in actions), name
                assert statement.get("Resource") != "*", name


def test_template_tables_declare_ttl_and_keys() -> None:
    tables = table_definitions(load_template(TEMPLATE))
    assert tables["ChainStateTable"]["ttl_attribute"] == "expires_at"
    assert [k["AttributeName"] for k in tables["ChainStateTable"]["create"]["KeySchema"]] == ["pk", "sk"]
    assert tables["FindingsTable"]["create"]["StreamSpecification"]["StreamViewType"] == "NEW_IMAGE"
