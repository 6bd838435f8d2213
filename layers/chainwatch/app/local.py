"""The embedded local run: the real handlers, the real event shapes, AWS emulated by moto on loopback.

``chainwatch local`` starts moto's ThreadedMotoServer on 127.0.0.1, creates the resources ``template.yaml``
declares (table key schemas, TTL and streams read from the template, not written twice), puts the sample telemetry
onto the Kinesis stream (partition key = host), reads it back with GetRecords and hands the correlate handler the
Lambda Kinesis event, then reads the findings outbox's DynamoDB stream and hands the dispatch handler the Lambda
DynamoDB-stream event. Findings are delivered to local sinks and each finding's story is printed. Everything is
stopped before it returns.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import orjson

from chainwatch.app.templating import load_template, table_definitions
from chainwatch.errors import ChainwatchError, ConfigError
from chainwatch.pipeline.dispatch import SinkCounts
from chainwatch.sources.reader import Record, iter_files, read_path

REGION = "us-east-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "chainwatch-local", "aws_secret_access_key": "chainwatch-local"}


class LocalRunError(ChainwatchError):
    """A handler kept failing in the local run (the run still stops everything before this is raised)."""


def create_resources(template_path: Path, session: boto3.session.Session, endpoint: str | None,
                     prefix: str = "chainwatch-local") -> dict[str, str]:
    """Create the template's tables, queues and stream; returns logical id -> physical name, URL or ARN."""
    template = load_template(template_path)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    names: dict[str, str] = {}
    for logical_id, spec in table_definitions(template).items():
        name = f"{prefix}-{logical_id}"
        dynamodb.create_table(TableName=name, **spec["create"])
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        if spec["ttl_attribute"]:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": spec["ttl_attribute"]})
        names[logical_id] = name
    sqs = session.client("sqs", endpoint_url=endpoint)
    kinesis = session.client("kinesis", endpoint_url=endpoint)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue":
            names[logical_id] = sqs.create_queue(QueueName=f"{prefix}-{logical_id}")["QueueUrl"]
        elif resource["Type"] == "AWS::Kinesis::Stream":
            shards = resource.get("Properties", {}).get("ShardCount")
            count = int(shards) if isinstance(shards, int | str) and str(shards).isdigit() else 2
            stream = f"{prefix}-{logical_id}"
            kinesis.create_stream(StreamName=stream, ShardCount=count)
            kinesis.get_waiter("stream_exists").wait(StreamName=stream)
            names[logical_id] = stream
    return names


def load_handler(name: str, root: Path) -> ModuleType:
    """Import ``functions/<name>/app.py`` fresh (its settings are read on first use, from the environment)."""
    path = root / "functions" / name / "app.py"
    if not path.is_file():
        raise ConfigError(f"handler {path} not found")
    spec = importlib.util.spec_from_file_location(f"chainwatch_fn_{name}_{time.monotonic_ns()}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {path}")
    _forget_runtimes()
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _forget_runtimes() -> None:
    """Drop the cached runtimes: they are built once per process from the environment (as in a warm Lambda
    container), and a fresh handler must not reuse one bound to another run's endpoint, tables or sinks."""
    from chainwatch.app.runtime import correlate_runtime, dispatch_runtime

    correlate_runtime.cache_clear()
    dispatch_runtime.cache_clear()


@dataclass
class LambdaContext:
    """The attributes of a Lambda context the handlers and Powertools read."""

    function_name: str
    budget_s: float = 120.0
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "local"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self.budget_s - (time.monotonic() - self.started)) * 1000)


def kinesis_event(records: list[dict[str, Any]], shard_id: str, stream_arn: str) -> dict[str, Any]:
    """GetRecords output as the Lambda Kinesis event Lambda would deliver."""
    return {"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"], "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{r['SequenceNumber']}",
        "eventName": "aws:kinesis:record", "awsRegion": REGION, "eventSourceARN": stream_arn,
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/local"} for r in records]}


def dynamodb_stream_event(records: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """DynamoDB Streams GetRecords output as the Lambda event Lambda would deliver."""
    out = []
    for record in records:
        item = dict(record)
        item["eventSourceARN"] = stream_arn
        dynamodb = dict(item["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if created is not None and hasattr(created, "timestamp"):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        item["dynamodb"] = dynamodb
        out.append(item)
    return {"Records": out}


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's ThreadedMotoServer on a free loopback port; yields its endpoint URL and always stops it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its emulated accounts in process-wide backends that outlive the server (and that in-process
        # mock_aws shares): without a reset, a second run in the same process finds the first run's tables.
        _reset_moto(endpoint)
        try:
            yield endpoint
        finally:
            _reset_moto(endpoint)
    finally:
        server.stop()


def _reset_moto(endpoint: str) -> None:
    import requests

    requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()


@contextmanager
def patched_env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class LocalRunResult:
    records_put: int = 0
    correlate_invocations: int = 0
    dispatch_invocations: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    hops: dict[str, float] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    #: finding id -> sinks that settled it (delivered, or skipped by design such as a canary at a ticketing sink)
    deliveries: dict[str, set[str]] = field(default_factory=dict)
    #: Handler invocations that still reported failures after every re-delivery.
    gave_up: list[str] = field(default_factory=list)
    #: Per sink: delivered, left for a retry, dead-lettered (with the reasons), summed over the dispatch invocations.
    sinks: dict[str, SinkCounts] = field(default_factory=dict)

    @property
    def dead_lettered(self) -> int:
        return sum(counts.dead_lettered for counts in self.sinks.values())

    def sink_lines(self) -> list[str]:
        """One line per sink (delivered / retried / dead-lettered), then one per dead letter with its reason."""
        lines = []
        for name, counts in sorted(self.sinks.items()):
            lines.append(f"  sink {name}: delivered {counts.delivered}, skipped {counts.skipped}, "
                         f"retried {counts.retried}, dead-lettered {counts.dead_lettered}")
            for finding_id, revision, reason in counts.reasons:
                lines.append(f"    {finding_id} r{revision}: {reason}")
        return lines


def telemetry_records(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    """(partition key, data) for every record of the sample files: the raw record, keyed by host."""
    for file in iter_files(paths):
        host = file.resolve().parent.name
        for item in read_path(file):
            if isinstance(item, Record):
                doc = item.data
                own = doc.get("host") if isinstance(doc, dict) else None
                key = own.get("name") if isinstance(own, dict) and own.get("name") else host
                yield str(key), orjson.dumps(doc)


def run_local(
    root: Path,
    events: list[Path],
    *,
    records: list[tuple[str, bytes]] | None = None,
    secrets: Mapping[str, Any] | None = None,
    sinks: list[dict[str, Any]] | None = None,
    batch_size: int = 100,
    out: Callable[[str], None] = print,
    extra_env: Mapping[str, str] | None = None,
) -> LocalRunResult:
    """Run the pipeline end to end on the embedded moto server (see the module docstring)."""
    result = LocalRunResult()
    started = time.monotonic()
    with moto_server() as endpoint:
        session = boto3.session.Session(region_name=REGION,
                                        aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
                                        aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"])
        names = create_resources(root / "template.yaml", session, endpoint)
        if secrets:
            # Sink credentials live in (emulated) Secrets Manager, read by the dispatch function through
            # Powertools Parameters exactly as in AWS.
            secretsmanager = session.client("secretsmanager", endpoint_url=endpoint)
            for name, value in secrets.items():
                secretsmanager.create_secret(Name=name, SecretString=value if isinstance(value, str)
                                             else orjson.dumps(value).decode())
        result.hops["resources"] = time.monotonic() - started
        env = {
            "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
            "STATE_TABLE": names["ChainStateTable"], "FINDINGS_TABLE": names["FindingsTable"],
            "DELIVERIES_TABLE": names["DeliveriesTable"], "QUARANTINE_QUEUE_URL": names["QuarantineQueue"],
            "DEAD_LETTER_QUEUE_URL": names["DispatchDeadLetterQueue"],
            "SINKS_JSON": orjson.dumps(sinks or []).decode(),
            "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "chainwatch", "POWERTOOLS_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        with patched_env(env):
            kinesis: Any = session.client("kinesis", endpoint_url=endpoint)
            stream = names["TelemetryStream"]
            source = records if records is not None else list(telemetry_records(events))
            entries = [{"PartitionKey": key, "Data": data} for key, data in source]
            for start in range(0, len(entries), 500):
                kinesis.put_records(StreamName=stream, Records=entries[start:start + 500])
            result.records_put = len(entries)
            hop = time.monotonic()
            correlate = load_handler("correlate", root)
            summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
            stream_arn = summary["StreamARN"]
            for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
                iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                while iterator:
                    page = kinesis.get_records(ShardIterator=iterator, Limit=batch_size)
                    if not page["Records"]:
                        break
                    if not _invoke_until_done(correlate, kinesis_event(page["Records"], shard["ShardId"],
                                                                       stream_arn), "correlate"):
                        result.gave_up.append(f"correlate on {shard['ShardId']}")
                    result.correlate_invocations += 1
                    iterator = page.get("NextShardIterator")
            result.hops["correlate"] = time.monotonic() - hop

            hop = time.monotonic()
            dispatch = load_handler("dispatch", root)
            dynamodb = session.client("dynamodb", endpoint_url=endpoint)
            streams = session.client("dynamodbstreams", endpoint_url=endpoint)
            outbox_arn = dynamodb.describe_table(TableName=names["FindingsTable"])["Table"]["LatestStreamArn"]
            for shard in streams.describe_stream(StreamArn=outbox_arn)["StreamDescription"]["Shards"]:
                iterator = streams.get_shard_iterator(StreamArn=outbox_arn, ShardId=shard["ShardId"],
                                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                while iterator:
                    page = streams.get_records(ShardIterator=iterator, Limit=50)
                    if not page["Records"]:
                        break
                    if not _invoke_until_done(dispatch, dynamodb_stream_event(page["Records"], outbox_arn),
                                              "dispatch"):
                        result.gave_up.append(f"dispatch on {shard['ShardId']}")
                    result.dispatch_invocations += 1
                    iterator = page.get("NextShardIterator")
            result.hops["dispatch"] = time.monotonic() - hop
            result.sinks = _dispatch_totals()

            table = session.resource("dynamodb", endpoint_url=endpoint).Table(names["FindingsTable"])
            scanned: Any = table.scan()
            for item in scanned["Items"]:
                result.findings.append(orjson.loads(str(item["document"])))
            deliveries: Any = session.resource("dynamodb", endpoint_url=endpoint).Table(
                names["DeliveriesTable"]).scan()
            for item in deliveries["Items"]:
                sort_key = str(item["sk"])
                if not sort_key.startswith("ticket#") and item.get("outcome") in ("delivered", "skipped"):
                    result.deliveries.setdefault(str(item["finding_id"]), set()).add(sort_key.rsplit("#", 1)[0])
    _forget_runtimes()  # bound to the server just stopped
    if result.gave_up:
        raise LocalRunError(f"records still failing after re-delivery: {', '.join(result.gave_up)} (see above)")
    result.findings.sort(key=lambda f: (f["device"]["hostname"], f["finding_info"]["uid"]))
    result.hops["total"] = time.monotonic() - started
    return result


def _dispatch_totals() -> dict[str, SinkCounts]:
    """The per-sink counts the dispatch runtime summed over this run's invocations (none if it never ran)."""
    from chainwatch.app.runtime import dispatch_runtime

    if dispatch_runtime.cache_info().currsize == 0:
        return {}
    return dict(dispatch_runtime().totals)


def _sequence_of(record: Mapping[str, Any]) -> str:
    if "kinesis" in record:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


def _invoke_until_done(module: ModuleType, event: dict[str, Any], name: str, attempts: int = 5) -> bool:
    """Invoke a handler as Lambda would: on partial failure, re-deliver from the lowest failed record on.

    Returns whether the batch finally went through.
    """
    records = event["Records"]
    for _ in range(attempts):
        response = module.lambda_handler({"Records": records}, LambdaContext(function_name=f"chainwatch-{name}"))
        failures = [f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])]
        if not failures:
            return True
        lowest = min(failures, key=lambda s: int(s) if s.isdigit() else 0)
        index = next(i for i, r in enumerate(records) if _sequence_of(r) == lowest)
        records = records[index:]
    print(f"chainwatch local: {name} still failing after {attempts} deliveries", file=sys.stderr)
    return False


@dataclass
class StandIns:
    """Local stand-ins of a SIEM (Splunk HEC) and a ticket system (Jira) and the sink settings that reach them."""

    sinks: list[dict[str, Any]]
    secrets: dict[str, Any]
    splunk: Any
    jira: Any

    def summary(self) -> str:
        issues = sorted(self.jira.issues.values(), key=lambda i: i["key"])
        tickets = ", ".join(f"{i['key']} ({len(i['comments'])} comments)" for i in issues) or "none"
        return f"Splunk HEC stand-in received {len(self.splunk.events)} event(s); Jira stand-in holds {tickets}"


@contextmanager
def standins(root: Path, out_dir: Path) -> Iterator[StandIns]:
    """Start the vendor stand-ins bundled with the tests (``tests/standins``) on loopback; always stop them.

    They speak each vendor's documented contract (paths, auth headers, status codes), so the local run exercises
    the real sink code. The credentials are made up for this run and stored in emulated Secrets Manager.
    """
    folder = root / "tests"
    if not (folder / "standins" / "splunk.py").is_file():
        raise ConfigError(f"{folder / 'standins'} not found: the local stand-ins ship with the repository's tests")
    sys.path.insert(0, str(folder))
    try:
        # Imported by name: the stand-ins are part of the repository's tests, not of the shipped library.
        jira_module: Any = importlib.import_module("standins.jira")
        splunk_module: Any = importlib.import_module("standins.splunk")
    finally:
        sys.path.remove(str(folder))
    splunk, splunk_url = splunk_module.start_splunk_server()
    try:
        jira, jira_url = jira_module.start_jira_server()
    except OSError:
        splunk.stop()
        raise
    try:
        yield StandIns(
            sinks=[
                {"kind": "file", "name": "local-file", "path": str(out_dir / "findings.jsonl")},
                {"kind": "splunk_hec", "name": "splunk", "url": splunk_url, "token_secret": "chainwatch/local/splunk",
                 "index": "main"},
                {"kind": "jira", "name": "jira", "url": jira_url, "project_key": "SEC",
                 "token_secret": "chainwatch/local/jira"},
            ],
            secrets={"chainwatch/local/splunk": {"token": splunk_module.DEFAULT_TOKEN},
                     "chainwatch/local/jira": {"email": jira_module.DEFAULT_EMAIL,
                                               "api_token": jira_module.DEFAULT_API_TOKEN}},
            splunk=splunk, jira=jira)
    finally:
        splunk.stop()
        jira.stop()
