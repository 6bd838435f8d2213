"""Wiring for the Lambda functions: settings read once, AWS clients created lazily, everything injected.

The handlers in ``functions/*/app.py`` stay thin: Powertools decorators and one call into a runtime built here on
first use (so tests and the local run can set the environment before it is read).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import boto3
import requests
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, KinesisStreamEvent
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chainwatch.app.settings import Settings, from_env
from chainwatch.errors import ConfigError, TransientError
from chainwatch.pipeline.correlate import BatchReport, KinesisRecord, process_batch
from chainwatch.pipeline.dispatch import DispatchReport, SinkCounts, dispatch, parse_stream_records, sqs_sender
from chainwatch.policy import Policy, load_policy
from chainwatch.readiness.coverage import CoverageBuffer
from chainwatch.sinks.base import RetryPolicy, Sink, SinkContext, build_sinks
from chainwatch.state.dynamodb import DynamoDeliveryLog, DynamoStateStore, DynamoTicketMap, make_models

#: botocore must not retry inside our own retry loop (that would blow the time budget): one attempt, short timeouts.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20)


@dataclass
class Clients:
    """boto3 clients, created on first use with the configured endpoint."""

    settings: Settings
    _made: dict[str, Any] = field(default_factory=dict)

    def get(self, service: str) -> Any:
        if service not in self._made:
            factory: Any = boto3.client  # service names are data here, not the literals the stubs overload on
            self._made[service] = factory(service, region_name=self.settings.region,
                                               endpoint_url=self.settings.endpoint_url, config=CLIENT_CONFIG)
        return self._made[service]


@dataclass
class CorrelateRuntime:
    settings: Settings
    policy: Policy
    store: DynamoStateStore
    clients: Clients
    coverage: CoverageBuffer

    def write_coverage(self, request: dict[str, Any]) -> None:
        try:
            self.clients.get("dynamodb").update_item(TableName=self.settings.tables.state, **request)
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"coverage flush failed: {type(exc).__name__}") from exc

    def handle(self, event: Mapping[str, Any]) -> BatchReport:
        records = [KinesisRecord(r.kinesis.sequence_number, r.kinesis.partition_key, r.kinesis.data_as_bytes(),
                                 (r.event_id or "shard").split(":", 1)[0])
                   for r in KinesisStreamEvent(dict(event)).records]
        return process_batch(records, policy=self.policy, store=self.store,
                             quarantine=sqs_sender(self.clients.get("sqs"), self.settings.quarantine_queue_url),
                             max_conflict_retries=self.settings.max_conflict_retries, now_ns=time.time_ns,
                             coverage=self.coverage, coverage_writer=self.write_coverage)


@lru_cache(maxsize=1)
def correlate_runtime() -> CorrelateRuntime:
    settings = from_env()
    policy = load_policy(settings.policy_path, window=settings.window)
    store = DynamoStateStore(make_models(settings.tables))
    return CorrelateRuntime(settings, policy, store, Clients(settings), CoverageBuffer(policy))


@dataclass
class DispatchRuntime:
    settings: Settings
    sinks: list[Sink]
    log: DynamoDeliveryLog
    clients: Clients
    budget: list[Callable[[], float]]
    #: Every sink's counts summed over this runtime's invocations (``chainwatch local`` prints them).
    totals: dict[str, SinkCounts] = field(default_factory=dict)

    def handle(self, event: Mapping[str, Any], remaining: Callable[[], float]) -> DispatchReport:
        self.budget[0] = remaining
        DynamoDBStreamEvent(dict(event))  # validates the event shape the way Powertools reads it
        records = parse_stream_records(event)
        report = dispatch(records, self.sinks, self.log,
                          sqs_sender(self.clients.get("sqs"), self.settings.dead_letter_queue_url),
                          remaining=remaining)
        for name, counts in report.sinks.items():
            self.totals.setdefault(name, SinkCounts()).add(counts)
        return report


def secret_resolver(client: Any) -> Callable[[str], Any]:
    """Sink credentials from Secrets Manager through Powertools Parameters (cached 5 min), errors in our hierarchy.

    The provider is bound to the runtime's own client (and so its endpoint), not Powertools' process-wide default,
    which would keep pointing at whatever endpoint was current when it was first used.
    """
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    provider = SecretsProvider(boto3_client=client)

    def resolve(name: str) -> Any:
        try:
            return provider.get(name, transform="auto", max_age=300)
        except TransformParameterError as exc:
            raise ConfigError(f"secret {name!r} is not in the expected format") from exc
        except GetParameterError as exc:
            # The message names the AWS error code, never the secret's value.
            if "ResourceNotFoundException" in str(exc) or "AccessDenied" in str(exc):
                raise ConfigError(f"secret {name!r} cannot be read: {str(exc)[:200]}") from exc
            raise TransientError(f"secret {name!r} is unavailable: {str(exc)[:200]}") from exc

    return resolve


def parameter_resolver(client: Any) -> Callable[[str], str]:
    """SSM parameters through Powertools Parameters (cached 5 min), bound to the runtime's client."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    provider = SSMProvider(boto3_client=client)

    def resolve(name: str) -> str:
        return str(provider.get(name, max_age=300))

    return resolve


@lru_cache(maxsize=1)
def dispatch_runtime() -> DispatchRuntime:
    settings = from_env()
    models = make_models(settings.tables)
    clients = Clients(settings)
    budget: list[Callable[[], float]] = [lambda: float("inf")]
    context = SinkContext(session=requests.Session(), secret=secret_resolver(clients.get("secretsmanager")),
                          ticket_map=DynamoTicketMap(models),
                          retry=RetryPolicy(remaining=lambda: budget[0]()),  # noqa: PLW0108 - late-bound budget
                          aws_client=clients.get)
    sinks = build_sinks(settings.sink_configs(parameter_resolver(clients.get("ssm"))), context)
    return DispatchRuntime(settings, sinks, DynamoDeliveryLog(models), clients, budget)
