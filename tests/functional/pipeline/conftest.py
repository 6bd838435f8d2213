"""Moto-backed AWS for pipeline tests: the tables exactly as ``template.yaml`` declares them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from chainwatch.local import create_resources
from chainwatch.settings import Settings
from chainwatch.state.dynamodb import Tables

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        names = create_resources(ROOT / "template.yaml", boto3.session.Session(region_name="us-east-1"), None,
                                 prefix="test")
        yield Settings(tables=Tables(state=names["ChainStateTable"], findings=names["FindingsTable"],
                                     deliveries=names["DeliveriesTable"], region="us-east-1"),
                       quarantine_queue_url=names["QuarantineQueue"],
                       dead_letter_queue_url=names["DispatchDeadLetterQueue"])
