"""Test support for the AWS sinks: moto-backed clients, realistic findings and wire-level fault injection.

AWS itself is moto (`mock_aws`, in process). Moto cannot throttle or fail on demand, so :class:`FaultInjector`
answers the first N calls of one operation with an HTTP error (status, headers and a body in the service's own
wire format) that botocore's real protocol parser turns into the usual ``ClientError``; every later call goes
through to moto untouched. Nothing here imitates an AWS API's behaviour: successes always come from moto.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.parsers import create_parser
from moto import mock_aws

from chainwatch.sinks.base import Delivery, InMemoryTicketMap, RetryPolicy, SinkContext
from chainwatch.sinks.security_lake import SecurityLakeSink

DATA = Path(__file__).parent / "data" / "aws_sinks_findings.jsonl"
REGION = "us-east-1"
#: Distinctive fake credentials, so tests can assert they never leak into results or logs.
ACCESS_KEY = "AKIAFAKECHAINWATCH01"
SECRET_KEY = "FAKEsecretKEYchainwatch/DoNotLeak0123456"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_SESSION_TOKEN": "FAKEsessionTOKENchainwatch",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def documents() -> list[dict[str, Any]]:
    """The findings ``chainwatch detect events/ --all`` wrote (pinned copy): an alert with all four stages
    (Word -> zsh -> curl egress) and a quarantined-app chain with Gatekeeper and quarantine records."""
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def alert_document() -> dict[str, Any]:
    return copy.deepcopy(next(doc for doc in documents() if doc["is_alert"]))


def delivery(doc: dict[str, Any] | None = None, *, finding_id: str | None = None, revision: int = 1,
             canary: bool = False, processed_ms: int | None = None) -> Delivery:
    """A delivery of a copy of ``doc`` (default: the alert), optionally re-identified as another chain."""
    doc = copy.deepcopy(doc if doc is not None else alert_document())
    if finding_id is not None:
        doc["finding_info"]["uid"] = finding_id
        doc["metadata"]["uid"] = finding_id
        doc["metadata"]["correlation_uid"] = finding_id
    if processed_ms is not None:
        doc["metadata"]["processed_time"] = processed_ms
    return Delivery(doc["finding_info"]["uid"], revision, doc, canary=canary)


class Sleeps:
    """The RetryPolicy's injected sleep: records each requested delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class ClientFactory:
    """``SinkContext.aws_client``: one boto3 client per service, botocore's own retries off (the sink's
    RetryPolicy owns retrying), created lazily inside the test's ``mock_aws``."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=REGION,
                                                 config=Config(retries={"total_max_attempts": 1}))
        return self.clients[service]


def context(factory: ClientFactory, sleeps: Sleeps, max_attempts: int = 5) -> SinkContext:
    def no_secrets(name: str) -> Any:
        raise AssertionError(f"AWS sinks use IAM and must not ask for secret {name!r}")

    return SinkContext(session=requests.Session(), secret=no_secrets, ticket_map=InMemoryTicketMap(),
                       retry=RetryPolicy(max_attempts=max_attempts, base_delay=0.01, sleep=sleeps),
                       aws_client=factory)


class FaultInjector:
    """Fail the next calls of ``operation`` on ``client`` with scripted HTTP errors, then let calls through.

    Each failure is ``(status, headers, body)``: the body is what the service sends on the wire (JSON with
    ``__type`` for rest-json services like Security Hub, an ``<Error>`` XML document for S3), parsed by botocore's
    parser for the client's protocol exactly as a real response would be.
    """

    def __init__(self, client: Any, operation: str) -> None:
        self.client = client
        self.operation = operation
        self.failures: list[tuple[int, dict[str, str], bytes]] = []
        self.calls = 0
        self.failed = 0
        service_id = client.meta.service_model.service_id.hyphenize()
        self._parser = create_parser(client.meta.service_model.metadata["protocol"])
        client.meta.events.register_first(f"before-call.{service_id}.{operation}", self._before_call)

    def fail(self, times: int, status: int, body: bytes, headers: dict[str, str] | None = None) -> FaultInjector:
        self.failures.extend([(status, dict(headers or {}), body)] * times)
        return self

    def _before_call(self, model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        self.calls += 1
        if not self.failures:
            return None
        self.failed += 1
        status, headers, body = self.failures.pop(0)
        http = AWSResponse(f"https://{self.client.meta.endpoint_url}", status, headers, None)
        parsed = self._parser.parse({"status_code": status, "headers": headers, "body": body}, model.output_shape)
        return http, parsed


def json_error(code: str, message: str) -> bytes:
    """A rest-json error body (Security Hub)."""
    return json.dumps({"__type": code, "message": message}).encode()


def s3_error(code: str, message: str) -> bytes:
    """An S3 (rest-xml) error body."""
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>4442587FB7D0A2F9</RequestId></Error>").encode()


def record_params(client: Any, operation: str) -> list[dict[str, Any]]:
    """Record the parameters of every ``operation`` call made with ``client`` (observation only)."""
    seen: list[dict[str, Any]] = []
    service_id = client.meta.service_model.service_id.hyphenize()

    def handler(params: dict[str, Any], **_: Any) -> None:
        seen.append(copy.deepcopy(params))

    client.meta.events.register(f"before-parameter-build.{service_id}.{operation}", handler)
    return seen


def on_params(client: Any, operation: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Let ``change`` edit the parameters of each ``operation`` call before botocore serializes them."""
    service_id = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-parameter-build.{service_id}.{operation}",
                                lambda params, **_: change(params))


def all_strings(value: Any) -> Iterator[str]:
    """Every string inside a nested structure (keys too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from all_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from all_strings(item)
    elif value is not None:
        yield str(value)


# -- Security Lake: one bucket and one sink factory for both formats -------------------------------------------------

LAKE_BUCKET = "aws-security-data-lake-us-east-1-abcdefghij"
LAKE_ACCOUNT = "111122223333"


@contextmanager
def lake_bucket() -> Iterator[ClientFactory]:
    """moto S3 (``mock_aws``) with the Security Lake bucket created; set :data:`AWS_ENV` first."""
    with mock_aws():
        factory = ClientFactory()
        factory("s3").create_bucket(Bucket=LAKE_BUCKET)
        yield factory


def lake_sink(aws: ClientFactory, sleeps: Sleeps, fmt: str, max_attempts: int = 5,
              **config: Any) -> SecurityLakeSink:
    settings = {"kind": "security_lake", "bucket": LAKE_BUCKET, "source_name": "chainwatch",
                "account_id": LAKE_ACCOUNT, "format": fmt, **config}
    return SecurityLakeSink("lake", settings, context(aws, sleeps, max_attempts))
