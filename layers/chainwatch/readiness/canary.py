"""A harmless, clearly marked synthetic AN1316 chain for proving the pipeline end to end.

The canary is telemetry, not activity: records in the real formats (unified log ndjson, eslogger JSON, Elastic
Defend network) describing Safari -> a downloaded script -> sh -> curl -> a connection to a documentation address
(192.0.2.1, TEST-NET-1, with the reserved ``.invalid`` name). Nothing runs and nothing connects anywhere. Every
record names the host ``chainwatch-canary-<run id>`` and carries ``CHAINWATCH-CANARY`` in its arguments, so the
finding is labelled canary: sinks that page or open tickets skip it unless configured to accept canaries.

Because finding ids are deterministic, the id the pipeline must produce is known before the records are sent: the
canary runs the same engine locally first, then waits for exactly that finding at each hop.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from chainwatch.engine import Engine
from chainwatch.events import AnyEvent
from chainwatch.policy import Policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import read_bytes
from chainwatch.state.memory import InMemoryStore

CANARY_HOST_PREFIX = "chainwatch-canary-"
MARKER = "CHAINWATCH-CANARY"
DESTINATION = ("192.0.2.1", 443, "canary.chainwatch.invalid")


def is_canary_host(host: str) -> bool:
    return host.startswith(CANARY_HOST_PREFIX)


def _iso(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def _local(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{fraction // 1000:06d}+0000"


def _token(pid: int, version: int, uid: int = 501) -> dict[str, int]:
    return {"auid": uid, "euid": uid, "egid": 20, "ruid": uid, "rgid": 20, "pid": pid, "asid": 100_017,
            "pidversion": version}


def _process(pid: int, version: int, path: str, signing_id: str, *, ppid: int, parent_version: int,
             responsible: tuple[int, int] | None = None, team: str | None = None) -> dict[str, Any]:
    return {
        "audit_token": _token(pid, version), "parent_audit_token": _token(ppid, parent_version),
        "responsible_audit_token": _token(*(responsible or (pid, version))), "ppid": ppid, "original_ppid": ppid,
        "group_id": pid, "session_id": 100_017, "codesigning_flags": 570_503_953, "is_platform_binary": team is None,
        "is_es_client": False, "cdhash": "C0FFEE" * 6 + "C0FF", "signing_id": signing_id, "team_id": team,
        "executable": {"path": path, "path_truncated": False}, "tty": None, "start_time": "2000-01-01T00:00:00Z",
    }


def _es(time_ns: int, process: dict[str, Any], name: str, number: int, payload: dict[str, Any],
        seq: int) -> dict[str, Any]:
    return {"schema_version": 1, "version": 9, "time": _iso(time_ns), "mach_time": time_ns // 1000,
            "event_type": number, "action_type": 1, "action": {"result": {"result": {"auth": 0}, "result_type": 0}},
            "seq_num": seq, "global_seq_num": seq, "thread": {"thread_id": 1}, "process": process,
            "event": {name: payload}}


@dataclass(frozen=True)
class CanaryChain:
    """The records to send (partition key, raw bytes) and the finding they must produce."""

    run_id: str
    host: str
    records: tuple[tuple[str, bytes], ...]
    finding_id: str


def build_canary(policy: Policy, *, now_ns: int | None = None, run_id: str | None = None) -> CanaryChain:
    """Canary telemetry for one run, and the id of the finding the engine makes of it."""
    run = run_id or uuid.uuid4().hex[:12]
    host = f"{CANARY_HOST_PREFIX}{run}"
    t0 = now_ns if now_ns is not None else time.time_ns()
    safari, helper, shell, curl = 4101, 4102, 4103, 4104
    script = f"/Users/chainwatch-canary/Downloads/{MARKER.lower()}-{run}.sh"
    safari_proc = _process(safari, 9001, "/Applications/Safari.app/Contents/MacOS/Safari", "com.apple.Safari",
                           ppid=1, parent_version=1)
    helper_proc = _process(helper, 9002, "/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices/"
                           "com.apple.WebKit.Networking.xpc/Contents/MacOS/com.apple.WebKit.Networking",
                           "com.apple.WebKit.Networking", ppid=1, parent_version=1, responsible=(safari, 9001))
    fork_copy = _process(shell, 9003, safari_proc["executable"]["path"], "com.apple.Safari", ppid=safari,
                         parent_version=9001, responsible=(safari, 9001))
    sh_proc = _process(shell, 9004, "/bin/sh", "com.apple.sh", ppid=safari, parent_version=9001,
                       responsible=(safari, 9001))
    curl_fork = _process(curl, 9005, "/bin/sh", "com.apple.sh", ppid=shell, parent_version=9004,
                         responsible=(safari, 9001))
    curl_proc = _process(curl, 9006, "/usr/bin/curl", "com.apple.curl", ppid=shell, parent_version=9004,
                         responsible=(safari, 9001))
    ms = 1_000_000
    eslogger = [
        _es(t0 + 1000 * ms, helper_proc, "create", 13, {"destination_type": 0, "destination": {
            "existing_file": {"path": script, "path_truncated": False}}, "acl": None}, 1),
        _es(t0 + 2000 * ms, safari_proc, "fork", 11, {"child": fork_copy}, 2),
        _es(t0 + 2001 * ms, fork_copy, "exec", 9, {"target": sh_proc, "args": ["/bin/sh", script, MARKER],
                                                   "env": [], "cwd": {"path": "/", "path_truncated": False},
                                                   "script": None, "fds": [], "last_fd": 2}, 3),
        _es(t0 + 2100 * ms, sh_proc, "fork", 11, {"child": curl_fork}, 4),
        _es(t0 + 2101 * ms, curl_fork, "exec", 9, {"target": curl_proc, "args": [
            "curl", "-s", "-H", f"X-Chainwatch: {MARKER}", f"https://{DESTINATION[2]}/canary/{run}"],
            "env": [], "cwd": {"path": "/", "path_truncated": False}, "script": None, "fds": [], "last_fd": 2}, 5),
        _es(t0 + 3000 * ms, curl_proc, "exit", 15, {"stat": 0}, 6),
    ]
    unified = {
        "traceID": 1, "eventMessage": f"Now tracking process: [app<application.com.apple.Safari.1.2(501)>:{safari}]",
        "eventType": "logEvent", "subsystem": "com.apple.runningboard", "category": "process",
        "processImagePath": "/usr/libexec/runningboardd", "processID": 163, "timestamp": _local(t0),
        "messageType": "Default", "senderImagePath": "/usr/libexec/runningboardd", "threadID": 1,
        "timezoneName": "", "machTimestamp": t0 // 1000, "userID": 0,
    }
    network = {
        "@timestamp": _iso(t0 + 2500 * ms), "message": "Endpoint network event",
        "event": {"action": "connection_attempted", "category": ["network"], "type": ["start"],
                  "dataset": "endpoint.events.network", "kind": "event", "module": "endpoint"},
        "host": {"name": host, "hostname": host, "os": {"family": "macos"}},
        "process": {"pid": curl, "name": "curl", "executable": "/usr/bin/curl",
                    "entity_id": base64.b64encode(f"chainwatch-canary-{run}-{curl}-1".encode()).decode()},
        "destination": {"ip": DESTINATION[0], "port": DESTINATION[1], "domain": DESTINATION[2]},
        "source": {"ip": "198.18.0.10", "port": 50000}, "network": {"transport": "tcp", "direction": "egress"},
        "labels": {"chainwatch_canary": run},
    }
    records = [(host, orjson.dumps(unified))] + [(host, orjson.dumps(doc)) for doc in eslogger] + [
        (host, orjson.dumps(network))]
    finding_id = expected_finding_id(policy, host, records)
    return CanaryChain(run, host, tuple(records), finding_id)


def _events(host: str, records: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> list[AnyEvent]:
    normalizer = Normalizer()
    events: list[AnyEvent] = []
    for index, (_, data) in enumerate(records):
        events.extend(normalizer.run(read_bytes(data, f"canary#{index}"), host))
    return events


def expected_finding_id(policy: Policy, host: str, records: list[tuple[str, bytes]]) -> str:
    """The id of the alert the engine makes of these records (the canary's chain must produce one)."""
    engine = Engine(policy, InMemoryStore())
    engine.ingest_all(_events(host, records))
    engine.flush()
    alerts = [f for f in engine.all_findings() if f.is_alert]
    if len(alerts) != 1:
        raise RuntimeError(f"canary telemetry produced {len(alerts)} alerts locally; expected exactly one")
    return alerts[0].finding_id


@dataclass
class CanaryResult:
    ok: bool
    finding_id: str
    hops: dict[str, float] = field(default_factory=dict)
    stopped_at: str | None = None
    message: str = ""


def wait_for(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.5,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> bool:
    """Poll ``check`` until it is true or ``timeout_s`` passes."""
    deadline = clock() + timeout_s
    while True:
        if check():
            return True
        if clock() >= deadline:
            return False
        sleep(interval_s)


def run_canary(
    chain: CanaryChain,
    *,
    put_records: Callable[[list[tuple[str, bytes]]], None],
    finding_revision: Callable[[str], int | None],
    delivered_to: Callable[[str], set[str]],
    expected_sinks: set[str],
    timeout_s: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CanaryResult:
    """Send the canary and wait for it at each hop: stream -> findings outbox -> every expected sink.

    The hops are injected (boto3 in the CLI, the embedded pipeline in tests), so the waiting logic is the same for
    a deployed and a local pipeline. Latencies are measured from the moment the records were accepted.
    """
    result = CanaryResult(ok=False, finding_id=chain.finding_id)
    started = clock()
    put_records(list(chain.records))
    result.hops["stream put"] = clock() - started
    if not wait_for(lambda: finding_revision(chain.finding_id) is not None, timeout_s, sleep=sleep, clock=clock):
        result.stopped_at = "correlate"
        result.message = (f"the canary finding {chain.finding_id} did not reach the findings outbox within "
                          f"{timeout_s:.0f} s: check the correlate function (its logs, the quarantine queue, the "
                          "Kinesis event source mapping) and that the stream is the one it reads")
        return result
    result.hops["correlate -> outbox"] = clock() - started
    pending = set(expected_sinks)
    seen_at: dict[str, float] = {}

    def delivered() -> bool:
        done = delivered_to(chain.finding_id) & pending
        for sink in done:
            seen_at.setdefault(sink, clock() - started)
        return pending <= set(seen_at)

    if not wait_for(delivered, timeout_s, sleep=sleep, clock=clock):
        missing = sorted(pending - set(seen_at))
        for sink, at in seen_at.items():
            result.hops[f"dispatch -> {sink}"] = at
        result.stopped_at = "dispatch"
        result.message = (f"the canary finding reached the outbox but not sink(s) {', '.join(missing)} within "
                          f"{timeout_s:.0f} s: check the dispatch function, the dead-letter queue and those sinks' "
                          "settings (canaries are skipped by ticketing sinks unless accept_canary is set)")
        return result
    for sink, at in sorted(seen_at.items(), key=lambda kv: kv[1]):
        result.hops[f"dispatch -> {sink}"] = at
    result.ok = True
    result.message = f"canary {chain.run_id} delivered to {', '.join(sorted(expected_sinks)) or 'the outbox'}"
    return result


def aws_hops(session: Any, *, stream: str, findings_table: str, deliveries_table: str,
             endpoint_url: str | None = None) -> tuple[Callable[[list[tuple[str, bytes]]], None],
                                                       Callable[[str], int | None], Callable[[str], set[str]]]:
    """The three hops of :func:`run_canary` against a deployed (or emulated) pipeline, with boto3."""
    kinesis = session.client("kinesis", endpoint_url=endpoint_url)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)

    def put(records: list[tuple[str, bytes]]) -> None:
        response = kinesis.put_records(StreamName=stream, Records=[
            {"PartitionKey": key, "Data": data} for key, data in records])
        if response.get("FailedRecordCount"):
            raise RuntimeError(f"{response['FailedRecordCount']} canary record(s) were not accepted by {stream}")

    def revision(finding_id: str) -> int | None:
        item = dynamodb.get_item(TableName=findings_table, Key={"finding_id": {"S": finding_id}},
                                 ConsistentRead=True).get("Item")
        return int(item["revision"]["N"]) if item else None

    def sinks(finding_id: str) -> set[str]:
        response = dynamodb.query(TableName=deliveries_table, ConsistentRead=True,
                                  KeyConditionExpression="finding_id = :f",
                                  ExpressionAttributeValues={":f": {"S": finding_id}})
        done = set()
        for item in response.get("Items", []):
            sort_key = item["sk"]["S"]
            outcome = item.get("outcome", {}).get("S")
            if "#" in sort_key and not sort_key.startswith("ticket#") and outcome in ("delivered", "skipped"):
                done.add(sort_key.rsplit("#", 1)[0])
        return done

    return put, revision, sinks
