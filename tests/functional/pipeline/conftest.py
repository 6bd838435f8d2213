"""Moto-backed AWS for pipeline tests: the tables, queues and stream exactly as ``template.yaml`` declares them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pipeline_support import DynamoCalls

from chainwatch.app.local import create_resources
from chainwatch.app.settings import Settings
from chainwatch.state.dynamodb import Tables

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def aws_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Logical id -> physical name / URL of every table, queue and stream of the template, under ``mock_aws``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield create_resources(ROOT / "template.yaml", boto3.session.Session(region_name="us-east-1"), None,
                               prefix="test")


@pytest.fixture
def aws(aws_names: dict[str, str]) -> Settings:
    return Settings(tables=Tables(state=aws_names["ChainStateTable"], findings=aws_names["FindingsTable"],
                                  deliveries=aws_names["DeliveriesTable"], region="us-east-1"),
                    quarantine_queue_url=aws_names["QuarantineQueue"],
                    dead_letter_queue_url=aws_names["DispatchDeadLetterQueue"])


@pytest.fixture
def session(aws_names: dict[str, str]) -> boto3.session.Session:
    return boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def dynamo_calls(monkeypatch: pytest.MonkeyPatch) -> DynamoCalls:
    """Every DynamoDB API call pynamodb makes from now on (operation and parameters), seen by a botocore hook."""
    calls = DynamoCalls()
    calls.install(monkeypatch)
    return calls
