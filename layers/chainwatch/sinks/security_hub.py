"""AWS Security Hub sink: each finding becomes an ASFF finding imported with ``BatchImportFindings``.

Delivery facts (``shared/reference/sinks.md`` section 4):

* The upsert key is ``Id`` + ``ProductArn``: the ASFF ``Id`` is chainwatch's ``finding_id`` and the product is the
  account's own ``arn:aws:securityhub:<region>:<account>:product/<account>/default``, so a retry or a later
  revision of the same chain updates the one finding instead of adding another.
* At most 100 findings, 240 KB per finding and 6 MB per call; botocore checks none of that, so :meth:`send` splits
  by count and size itself and every text field is bounded.
* Partial failures come back in ``FailedFindings`` (``Id``/``ErrorCode``/``ErrorMessage``), not as exceptions.
  They are mapped per finding: throttling-like codes are retried (only the findings that failed are re-sent),
  anything else (``InvalidInput``...) is permanent. A ClientError for the whole call (``ThrottlingException``,
  ``LimitExceededException``, ``InternalException``, 5xx) is transient; 400/401/403 are permanent.
* After creation a provider changes ``Severity``/``Types``/``Confidence`` only through ``FindingProviderFields``,
  so they are sent both at the top level (what a new finding needs) and there (what updates it). ``Note`` is
  customer-owned once the finding exists (later imports do not change it), so it only carries a one-line summary;
  the triage playbook goes in ``Remediation.Recommendation``, which the provider keeps updating. ``CreatedAt`` is
  the chain's first-seen time, so it stays the same across revisions; ``UpdatedAt`` grows with each revision.

Text shown to analysts (title, description, process and network names, product fields, note, remediation) comes
from attacker-controlled telemetry: it is made printable (control characters escaped), bounded, and values a
spreadsheet would evaluate are neutralized (Security Hub findings are routinely exported to CSV).

Configuration (``kind: security_hub``): ``region`` (default: the client's region), ``account_id`` (default: STS
``GetCallerIdentity``), ``product_arn`` (default: the account's ``default`` product), ``generator_id`` (default:
``chainwatch/<analytic uid>``). Authentication is the function's IAM role (``securityhub:BatchImportFindings``);
there is no secret to configure.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from chainwatch.errors import ConfigError, PermanentError, TransientError
from chainwatch.findings.render import neutralize_formula, safe
from chainwatch.sinks._aws import call_aws, is_transient_code
from chainwatch.sinks.base import (
    MAX_RESPONSE_TEXT,
    Delivery,
    DeliveryResult,
    Outcome,
    Sink,
    SinkContext,
    register,
)

__all__ = ["SecurityHubSink", "classify_failed_findings", "to_asff"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2018-10-08"
MAX_FINDINGS_PER_CALL = 100
#: Security Hub's per-finding limit is 240 KB; a finding built here stays far below it (every field is bounded),
#: and one that does not is refused before the call rather than failing the batch.
MAX_FINDING_BYTES = 240 * 1024
#: The 6 MB per-call limit, less room for the request envelope.
MAX_CALL_BYTES = 6 * 1024 * 1024 - 64 * 1024
#: Suggested wait for the dispatcher when throttling outlives the retries and AWS sent no ``Retry-After``.
DEFAULT_RETRY_AFTER = 30.0

TITLE_MAX = 256
DESCRIPTION_MAX = 1024
NOTE_MAX = 512
RECOMMENDATION_MAX = 512
PRODUCT_FIELD_MAX = 2048
TYPE_MAX = 128

_LABELS = {0: "INFORMATIONAL", 1: "INFORMATIONAL", 2: "LOW", 3: "MEDIUM", 4: "HIGH", 5: "CRITICAL", 6: "CRITICAL"}
_CONFIDENCE = {1: 30, 2: 60, 3: 90}
#: ASFF ``TTPs`` categories (the finding type taxonomy); a tactic outside it goes under "Unusual Behaviors".
_TTP_CATEGORIES = frozenset({
    "Data Exfiltration", "Data Destruction", "Initial Access", "Execution", "Persistence", "Privilege Escalation",
    "Defense Evasion", "Credential Access", "Discovery", "Lateral Movement", "Collection", "Command and Control",
})
#: Dates Python can render; anything else in a finding is treated as missing.
_MS_MIN, _MS_MAX = 0, 253_402_300_799_999


def _text(value: object, limit: int) -> str:
    """Printable, bounded, formula-neutralized text for an ASFF string field."""
    return neutralize_formula(safe(value, limit - 1))[:limit]


def _lines(value: str, limit: int) -> str:
    """Like :func:`_text` but keeps line breaks (the story is laid out in lines); each line made printable."""
    text = "\n".join(neutralize_formula(safe(line, limit)) for line in value.splitlines()[:200])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list (anything else in it is ignored)."""
    return [item for item in _list(value) if isinstance(item, dict)]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chainwatch(doc: Mapping[str, Any]) -> dict[str, Any]:
    """chainwatch's own part of the finding (story, egress, process tree...)."""
    return _dict(_dict(doc.get("unmapped")).get("chainwatch"))


def _ms(value: Any) -> int | None:
    ms = _int(value)
    return ms if ms is not None and _MS_MIN <= ms <= _MS_MAX else None


def iso8601(ms: int) -> str:
    """Epoch milliseconds as the ISO 8601 UTC form ASFF dates use (``2025-09-18T13:52:40.518Z``)."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class Target:
    """Where findings go: the account and region of the hub and the product the findings belong to."""

    account_id: str
    region: str
    product_arn: str

    @property
    def partition(self) -> str:
        return _partition(self.region)


# -- ASFF rendering -------------------------------------------------------------------------------------------


def _types(doc: Mapping[str, Any]) -> list[str]:
    """ASFF ``Types`` (``namespace/category/classifier``) from the ATT&CK mapping."""
    info = _dict(doc.get("finding_info"))
    types: list[str] = []
    for attack in _dicts(info.get("attacks")):
        technique = _dict(attack.get("sub_technique")) or _dict(attack.get("technique"))
        uid, name = technique.get("uid"), technique.get("name")
        if not uid:
            continue
        tactic = str(_dict(attack.get("tactic")).get("name", ""))
        prefix = f"TTPs/{tactic}" if tactic in _TTP_CATEGORIES else "Unusual Behaviors/Process"
        # The classifier is free text, but "/" separates the taxonomy levels, so it must not appear inside it.
        classifier = safe(f"{uid} {name}" if name else uid, TYPE_MAX).replace("/", "-")
        types.append(f"{prefix}/{classifier}"[:TYPE_MAX])
    analytic = _dict(info.get("analytic")).get("uid")
    if analytic:
        types.append(f"Unusual Behaviors/Process/{safe(analytic, 64).replace('/', '-')}"[:TYPE_MAX])
    unique = list(dict.fromkeys(types))[:50]
    return unique or ["Unusual Behaviors/Process"]


def _stage_evidence(doc: Mapping[str, Any], stage: int, key: str) -> dict[str, Any]:
    """The ``key`` object of the last evidence of ``stage`` that has one."""
    found: dict[str, Any] = {}
    for evidence in _dicts(doc.get("evidences")):
        if _dict(evidence.get("data")).get("stage") == stage and isinstance(evidence.get(key), dict):
            found = evidence[key]
    return found


def _process(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """ASFF ``Process``: the stage-3 child (the script or quarantined app the chain is about)."""
    proc = _stage_evidence(doc, 3, "process")
    if not proc:
        return None
    out: dict[str, Any] = {}
    if proc.get("name"):
        out["Name"] = _text(proc["name"], 128)
    if proc.get("path"):
        out["Path"] = _text(proc["path"], 512)
    pid = _int(proc.get("pid"))
    if pid is not None and 0 <= pid <= 2**31 - 1:
        out["Pid"] = pid
    ppid = _int(_dict(proc.get("parent_process")).get("pid"))
    if ppid is not None and 0 <= ppid <= 2**31 - 1:
        out["ParentPid"] = ppid
    launched = _ms(proc.get("created_time"))
    if launched is not None:
        out["LaunchedAt"] = iso8601(launched)
    return out or None


def _network(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """ASFF ``Network``: the stage-4 egress of the child (destination only: the source is the host itself)."""
    endpoint = _stage_evidence(doc, 4, "dst_endpoint")
    if not endpoint:
        return None
    out: dict[str, Any] = {"Direction": "OUT"}
    egress = _dicts(_chainwatch(doc).get("egress"))
    protocol = next((e.get("protocol") for e in egress if e.get("protocol")), None)
    if isinstance(protocol, str) and protocol.isalnum() and len(protocol) <= 16:
        out["Protocol"] = protocol.upper()
    # Only a well-formed address goes in the IP fields (consumers parse them); anything else is left out.
    try:
        address = ipaddress.ip_address(str(endpoint.get("ip", "")))
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv4Address):
        out["DestinationIpV4"] = str(address)
    elif isinstance(address, ipaddress.IPv6Address):
        out["DestinationIpV6"] = str(address)
    port = _int(endpoint.get("port"))
    if port is not None and 0 <= port <= 65535:
        out["DestinationPort"] = port
    if endpoint.get("hostname"):
        out["DestinationDomain"] = _text(endpoint["hostname"], 253)
    return out


def triage_playbook(doc: Mapping[str, Any]) -> str:
    """A short triage playbook: what to check, what to isolate, what to allowlist if benign (bounded)."""
    cw = _chainwatch(doc)
    host = safe(_dict(doc.get("device")).get("hostname", "unknown"), 80)
    steps: list[str] = []
    origin = [safe(q, 120) for q in (*_list(cw.get("quarantine")), *_list(cw.get("gatekeeper")))][:2]
    files = [safe(f, 120) for f in _list(cw.get("files"))][:2]
    if origin:
        steps.append("Check the origin/quarantine record: " + "; ".join(origin) + ".")
    if files:
        steps.append("Collect and check the landed file: " + "; ".join(files) + ".")
    child = _stage_evidence(doc, 3, "process")
    egress = _dicts(cw.get("egress"))
    isolate = f"Isolate {host}"
    if child:
        isolate += f", stop {safe(child.get('name', '?'), 60)} (pid {_int(child.get('pid'))})"
    if egress:
        dest = egress[0].get("hostname") or egress[0].get("ip") or "?"
        isolate += f", block egress to {safe(dest, 80)}:{_int(egress[0].get('port'))}"
    steps.append(isolate + ".")
    if child.get("path"):
        steps.append(f"If benign: add an allowlist entry (applies_to: child) for {safe(child['path'], 120)}"
                     " with its team id/signing id.")
    return _text(" ".join(steps), RECOMMENDATION_MAX)


def _product_fields(delivery: Delivery) -> dict[str, str]:
    """``ProductFields`` (string to string, at most 50, values bounded): chainwatch's own context."""
    doc = delivery.document
    cw = _chainwatch(doc)
    info = _dict(doc.get("finding_info"))
    techniques = [str((_dict(a.get("sub_technique")) or _dict(a.get("technique"))).get("uid", ""))
                  for a in _dicts(info.get("attacks"))]
    links = [f"{_int(lk.get('from'))}->{_int(lk.get('to'))} {lk.get('strength')}: {lk.get('reason')}"
             for lk in _dicts(cw.get("links"))]
    tree = [f"{'  ' * (_int(n.get('depth')) or 0)}{n.get('role')} pid {_int(n.get('pid'))}: "
            f"{safe(n.get('cmd_line') or n.get('path') or '', 300)}" for n in _dicts(cw.get("process_tree"))]
    egress = [f"{safe(e.get('hostname') or e.get('ip') or '?', 120)}:{_int(e.get('port'))} {e.get('protocol')} "
              f"by {safe(e.get('process', '?'), 60)}" for e in _dicts(cw.get("egress"))]
    raw: dict[str, object] = {
        "chainwatch/FindingId": delivery.finding_id,
        "chainwatch/Revision": delivery.revision,
        "chainwatch/Canary": "true" if delivery.canary else "false",
        "chainwatch/IsAlert": "true" if delivery.is_alert else "false",
        "chainwatch/Status": doc.get("status", ""),
        "chainwatch/Analytic": _dict(info.get("analytic")).get("uid", ""),
        "chainwatch/Route": cw.get("route", ""),
        "chainwatch/Stages": "+".join(str(s) for s in _list(cw.get("stages_present"))),
        "chainwatch/Techniques": ", ".join(t for t in techniques if t),
        "chainwatch/Confidence": doc.get("confidence", ""),
        "chainwatch/Links": "; ".join(links),
        "chainwatch/ProcessTree": " | ".join(tree),
        "chainwatch/Files": "; ".join(safe(f, 300) for f in _list(cw.get("files"))),
        "chainwatch/Egress": "; ".join(egress),
        "chainwatch/Quarantine": "; ".join(safe(q, 300) for q in _list(cw.get("quarantine"))),
        "chainwatch/Gatekeeper": "; ".join(safe(g, 300) for g in _list(cw.get("gatekeeper"))),
        "chainwatch/SuppressedBy": cw.get("suppressed_by") or "",
    }
    fields = {key: _text(value, PRODUCT_FIELD_MAX) for key, value in raw.items()
              if value not in ("", None) and str(value).strip()}
    if delivery.story.strip():
        fields["chainwatch/Story"] = _lines(delivery.story, PRODUCT_FIELD_MAX)
    return fields


def to_asff(delivery: Delivery, target: Target, generator_id: str | None = None) -> dict[str, Any]:
    """The ASFF finding for one delivery (every required attribute, every string bounded).

    Raises
    ------
    PermanentError
        The finding has no usable time (ASFF needs ``CreatedAt``/``UpdatedAt``).
    """
    doc = delivery.document
    info = _dict(doc.get("finding_info"))
    metadata = _dict(doc.get("metadata"))
    last_seen = _ms(info.get("last_seen_time")) or _ms(doc.get("time"))
    first_seen = _ms(info.get("first_seen_time")) or last_seen
    processed = _ms(metadata.get("processed_time"))
    updated = max((t for t in (processed, last_seen) if t is not None), default=None)
    if updated is None or first_seen is None:
        raise PermanentError("finding has no usable time (time, finding_info.first/last_seen_time)")
    created = min(first_seen, updated)
    severity_id = delivery.severity_id
    label = _LABELS.get(severity_id, "INFORMATIONAL")
    original = _text(doc.get("severity") or str(severity_id), 64)
    types = _types(doc)
    title = ("[CANARY] " if delivery.canary else "") + safe(delivery.title, TITLE_MAX)
    desc_parts = [safe(info.get("desc", ""), 600)]
    stages = _list(_chainwatch(doc).get("stages_present"))
    if stages:
        desc_parts.append(f"stages {'+'.join(str(s) for s in stages)}")
    desc_parts.append(f"host {safe(delivery.host, 120)}")
    if delivery.canary:
        desc_parts.append("synthetic canary finding (chainwatch canary), not an incident")
    description = "; ".join(p for p in desc_parts if p.strip())
    host = _text(delivery.host, 256)
    analytic = _dict(info.get("analytic")).get("uid") or "AN1316"
    confidence = _CONFIDENCE.get(_int(doc.get("confidence_id")) or 0)
    updated_at = iso8601(updated)
    asff: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": delivery.finding_id,
        "ProductArn": target.product_arn,
        "GeneratorId": generator_id or f"chainwatch/{safe(analytic, 64)}",
        "AwsAccountId": target.account_id,
        "Types": types,
        "FirstObservedAt": iso8601(first_seen),
        "LastObservedAt": iso8601(last_seen or updated),
        "CreatedAt": iso8601(created),
        "UpdatedAt": updated_at,
        "Severity": {"Label": label, "Original": original},
        "Title": _text(title, TITLE_MAX) if title.strip() else delivery.finding_id[:TITLE_MAX],
        "Description": _text(description, DESCRIPTION_MAX),
        "ProductName": "chainwatch",
        "CompanyName": "chainwatch",
        "Resources": [{
            "Type": "Other",
            "Id": host if host.strip() else "unknown",
            "Partition": target.partition,
            "Region": target.region,
            "Details": {"Other": {"hostname": host or "unknown", "os": "macOS",
                                  "device_type": _text(_dict(doc.get("device")).get("type", "Desktop"), 64)}},
        }],
        "ProductFields": _product_fields(delivery),
        "FindingProviderFields": {"Severity": {"Label": label, "Original": original}, "Types": types},
        "Remediation": {"Recommendation": {"Text": triage_playbook(doc)}},
        "Note": {"Text": _text(f"chainwatch revision {delivery.revision}: {safe(info.get('desc', ''), 400)}",
                               NOTE_MAX),
                 "UpdatedBy": "chainwatch", "UpdatedAt": updated_at},
        "RecordState": "ACTIVE",
    }
    if confidence is not None:
        asff["Confidence"] = confidence
        asff["FindingProviderFields"]["Confidence"] = confidence
    process = _process(doc)
    if process:
        asff["Process"] = process
    network = _network(doc)
    if network:
        asff["Network"] = network
    return asff


# -- response mapping -----------------------------------------------------------------------------------------


def classify_failed_findings(response: Mapping[str, Any]) -> dict[str, tuple[bool, str]]:
    """Map a ``BatchImportFindings`` response's ``FailedFindings`` to ``{Id: (transient, reason)}``.

    The response shape is the API's (``{"FailedCount": n, "SuccessCount": n, "FailedFindings": [{"Id",
    "ErrorCode", "ErrorMessage"}]}``). AWS does not document the list of ``ErrorCode`` values, so throttling,
    limit and internal-error codes are transient and every other code (``InvalidInput``, access errors, size) is
    permanent: a permanent failure goes to the dead letter with its reason, where a person sees it.
    """
    out: dict[str, tuple[bool, str]] = {}
    for item in _dicts(response.get("FailedFindings")):
        finding_id = item.get("Id")
        if not isinstance(finding_id, str):
            continue
        code = str(item.get("ErrorCode") or "Unknown")
        transient = is_transient_code(code) or any(
            word in code.lower() for word in ("throttl", "limitexceeded", "toomanyrequests", "internal"))
        reason = f"{safe(code, 100)}: {safe(item.get('ErrorMessage', ''), 1000)}"
        out[finding_id] = (transient, reason[:MAX_RESPONSE_TEXT])
    return out


Prepared = tuple[Delivery, dict[str, Any], int]


def _chunks(items: Sequence[Prepared]) -> Iterator[list[Prepared]]:
    """Split into calls of at most 100 findings and at most ~6 MB (each item carries its encoded size)."""
    chunk: list[Prepared] = []
    size = 0
    for item in items:
        if chunk and (len(chunk) >= MAX_FINDINGS_PER_CALL or size + item[2] > MAX_CALL_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item[2]
    if chunk:
        yield chunk


@register
class SecurityHubSink(Sink):
    """Imports findings into AWS Security Hub as ASFF (upsert by ``Id``; see the module docstring)."""

    kind = "security_hub"
    #: The API's own cap; :meth:`send` still splits a longer list (and a list over 6 MB) into several calls.
    max_batch = MAX_FINDINGS_PER_CALL

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        if context.aws_client is None:
            raise ConfigError(f"sink {name!r} (security_hub) needs an AWS client factory in its context")
        self._aws: Callable[[str], Any] = context.aws_client
        self._target: Target | None = None
        # Region and account format are checked here so a bad configuration fails when the sinks are built.
        self.region = str(self.option("region") or self._client().meta.region_name or "")
        if not self.region:
            raise ConfigError(f"sink {name!r} (security_hub) needs 'region'")
        account = self.option("account_id")
        if account is not None and not (len(str(account)) == 12 and str(account).isdigit()):
            raise ConfigError(f"sink {name!r} (security_hub): account_id must be 12 digits")

    def _client(self) -> Any:
        return self._aws("securityhub")

    def target(self) -> Target:
        """Account, region and product ARN (the STS look-up runs once, only when ``account_id`` is not set)."""
        if self._target is None:
            region = self.region
            account = self.option("account_id")
            if not account:
                sts = self._aws("sts")
                account = call_aws(lambda: sts.get_caller_identity()["Account"], "sts:GetCallerIdentity")
            account = str(account)
            product = self.option("product_arn") or (
                f"arn:{_partition(region)}:securityhub:{region}:{account}:product/{account}/default")
            self._target = Target(account, region, str(product))
        return self._target

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        results: dict[int, DeliveryResult] = {}
        try:
            target = self.target()
        except TransientError as exc:
            return [self._failed(d, exc, Outcome.FAILED_TRANSIENT, "account look-up failed") for d in deliveries]
        except PermanentError as exc:
            return [self._failed(d, exc, Outcome.FAILED_PERMANENT, "account look-up failed") for d in deliveries]

        # Two revisions of one chain in one call would be two findings with one Id in a batch; only the newest
        # is sent, and the older one is reported as superseded (the hub ends with the newest either way).
        newest: dict[str, int] = {}
        for index, delivery in enumerate(deliveries):
            best = newest.get(delivery.finding_id)
            if best is None or deliveries[best].revision <= delivery.revision:
                newest[delivery.finding_id] = index
        prepared: list[Prepared] = []
        for index, delivery in enumerate(deliveries):
            if newest[delivery.finding_id] != index:
                newer = deliveries[newest[delivery.finding_id]].revision
                results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.SKIPPED,
                                                f"superseded by revision {newer} in the same batch")
                continue
            try:
                asff = to_asff(delivery, target, self.option("generator_id"))
            except PermanentError as exc:
                results[index] = self._failed(delivery, exc, Outcome.FAILED_PERMANENT, "cannot render ASFF")
                continue
            size = len(orjson.dumps(asff))
            if size > MAX_FINDING_BYTES:
                results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                                f"ASFF finding is {size} bytes, over Security Hub's 240 KB")
                continue
            prepared.append((delivery, asff, size))

        by_id = {delivery.finding_id: index for index, delivery in enumerate(deliveries)
                 if newest[delivery.finding_id] == index}
        for chunk in _chunks(prepared):
            for finding_id, result in self._import(chunk).items():
                results[by_id[finding_id]] = result
        return [results[index] for index in range(len(deliveries))]

    def _import(self, chunk: list[Prepared]) -> dict[str, DeliveryResult]:
        """One ``BatchImportFindings`` call (with retries of what is transient); a result per finding id."""
        client = self._client()
        pending = {delivery.finding_id: (delivery, asff) for delivery, asff, _ in chunk}
        done: dict[str, DeliveryResult] = {}
        last_reason: dict[str, str] = {}

        def attempt() -> None:
            findings = [asff for _, asff in pending.values()]
            response = call_aws(lambda: client.batch_import_findings(Findings=findings), "BatchImportFindings")
            failed = classify_failed_findings(response)
            for finding_id, (delivery, _) in list(pending.items()):
                if finding_id not in failed:
                    done[finding_id] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED,
                                                      "imported into Security Hub (upsert by Id)",
                                                      external_id=finding_id)
                    del pending[finding_id]
                    continue
                transient, reason = failed[finding_id]
                last_reason[finding_id] = reason
                if not transient:
                    done[finding_id] = DeliveryResult(delivery.finding_id, delivery.revision,
                                                      Outcome.FAILED_PERMANENT, "Security Hub rejected the finding",
                                                      response=reason)
                    del pending[finding_id]
            if pending:
                # Only the findings still pending are re-sent on the next attempt.
                sample = next(iter(last_reason[f] for f in pending))
                raise TransientError(f"BatchImportFindings: {len(pending)} finding(s) failed transiently: {sample}")

        try:
            self.context.retry.call(attempt)
        except TransientError as exc:
            log.warning("sink %s: %d finding(s) not imported (transient): %s", self.name, len(pending),
                        safe(exc, 300))
            for finding_id, (delivery, _) in pending.items():
                done[finding_id] = DeliveryResult(
                    delivery.finding_id, delivery.revision, Outcome.FAILED_TRANSIENT,
                    "Security Hub still failing after retries",
                    response=last_reason.get(finding_id, safe(exc, MAX_RESPONSE_TEXT)),
                    retry_after=exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER)
        except PermanentError as exc:
            log.warning("sink %s: %d finding(s) rejected: %s", self.name, len(pending), safe(exc, 300))
            for finding_id, (delivery, _) in pending.items():
                done[finding_id] = self._failed(delivery, exc, Outcome.FAILED_PERMANENT,
                                                "Security Hub refused the call")
        return done

    @staticmethod
    def _failed(delivery: Delivery, exc: Exception, outcome: Outcome, detail: str) -> DeliveryResult:
        retry_after = None
        if outcome is Outcome.FAILED_TRANSIENT:
            hinted = exc.retry_after if isinstance(exc, TransientError) else None
            retry_after = hinted if hinted is not None else DEFAULT_RETRY_AFTER
        return DeliveryResult(delivery.finding_id, delivery.revision, outcome, detail,
                              response=safe(exc, MAX_RESPONSE_TEXT), retry_after=retry_after)
