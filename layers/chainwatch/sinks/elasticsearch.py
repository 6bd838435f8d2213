"""Elasticsearch / OpenSearch ``_bulk`` sink: each finding revision becomes one ECS-shaped alert document.

Request (``../shared/reference/sinks.md`` section 3): ``POST <url>/<index>/_bulk`` with
``Content-Type: application/x-ndjson`` and an NDJSON body, an action line and a source line per finding, ending with
a newline::

    {"create":{"_id":"cw-...-r2"}}
    {"@timestamp":"2025-09-18T14:03:12.918Z","event":{"kind":"alert",...},"rule":{...},"chainwatch":{...}}

**Exactly once.** The action is ``create`` with ``_id`` = finding id + revision, so sending the same revision twice
(a retry after a timeout, a redelivered batch) answers 409 ``version_conflict_engine_exception`` for that item,
which counts as delivered. A new revision of the chain is a new document (``event.action: chain-updated``), the
way a SIEM keeps an alert's history; ``create`` also works on data streams, which accept nothing else.

**Errors.** ``_bulk`` answers 200 even when items fail: the top-level ``errors`` flag and each item's ``status``
say what happened. Items with 429 (``es_rejected_execution_exception``) or 5xx are sent again, alone, with
backoff; other item errors (400 ``mapper_parsing_exception``/``document_parsing_exception``, 404...) fail that
finding permanently with the item's error as the response. A whole-request 429/5xx (or a 200 whose items do not match
the actions, since ``create`` makes a resend harmless) is retried; 400/401/403/413, and a 200 that is not a
``_bulk`` answer at all, fail the batch permanently.

Auth: ``Authorization: ApiKey <base64(id:api_key)>`` (Elasticsearch) or basic auth (Elasticsearch, OpenSearch).
AWS OpenSearch Service with IAM (SigV4) is not supported here; use its fine-grained access control basic auth.

Configuration::

    kind: elasticsearch
    url: https://es.example.com:9200
    index: chainwatch-findings             # an index, alias or data stream name (default chainwatch-findings)
    api_key_secret: chainwatch/es-api-key  # secret NAME: "<encoded>", "<id>:<key>" or {"id","api_key"}/{"encoded"}
    basic_auth_secret: chainwatch/es-user  # or: {"username","password"} or "user:password"
    pipeline: chainwatch                   # optional ingest pipeline
    refresh: wait_for                      # optional (demo/tests): make documents searchable before answering
    verify: true                           # TLS verification, or a CA bundle path
    max_batch_bytes: 5000000

:func:`index_template` gives an index template to install once (types for the ECS fields and ``chainwatch.*``,
no date detection), so an attacker-chosen string cannot fix a field's type through dynamic mapping.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from chainwatch.errors import ConfigError, TransientError
from chainwatch.sinks._siem import (
    FindingView,
    HttpPermanentError,
    HttpTransientError,
    Scrubber,
    as_dict,
    as_int,
    bounded,
    bounded_body,
    error_response,
    header_safe,
    http_error,
    json_body,
    ms_to_iso,
    multiline,
    out_of_time,
    post,
    scrub_result,
    secret_field,
    text,
    valid_ip,
    valid_port,
)
from chainwatch.sinks.base import MAX_RESPONSE_TEXT, Delivery, DeliveryResult, Outcome, Sink, register, results_for

log = logging.getLogger(__name__)

DEFAULT_INDEX = "chainwatch-findings"
DEFAULT_MAX_BATCH_BYTES = 5_000_000
ECS_VERSION = "8.11.0"
TEXT_LIMIT = 4096
STORY_LIMIT = 32_768
LIST_LIMIT = 100
_MAX_ID_BYTES = 512
_SEVERITY_NAMES = {1: "informational", 2: "low", 3: "medium", 4: "high", 5: "critical", 6: "fatal"}
#: Elastic Security's risk scores per severity (low 21, medium 47, high 73, critical 99).
_RISK_SCORES = {1: 0, 2: 21, 3: 47, 4: 73, 5: 99, 6: 99}
_TECHNIQUE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_TACTIC = re.compile(r"^TA\d{4}$")
# Elasticsearch index name rules: lower case, none of \ / * ? " < > | space , #, not starting with - _ +.
_INDEX = re.compile(r"^[^-_+.A-Z\\/*?\"<>| ,#:][^A-Z\\/*?\"<>| ,#:]{0,254}$")
_VALID_PIPELINE = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
_CONFLICT = "version_conflict_engine_exception"


def document_id(delivery: Delivery) -> str:
    """``_id`` for one revision: ``<finding_id>-r<revision>`` (hashed when the id would pass ES's 512 bytes)."""
    doc_id = f"{delivery.finding_id}-r{delivery.revision}"
    if len(doc_id.encode()) <= _MAX_ID_BYTES:
        return doc_id
    return f"cwh-{hashlib.sha256(delivery.finding_id.encode()).hexdigest()}-r{delivery.revision}"


@dataclass
class _Item:
    """One delivery on its way: where its result goes, its ``_id`` and its two NDJSON lines."""

    index: int
    delivery: Delivery
    doc_id: str
    lines: bytes


@register
class ElasticsearchSink(Sink):
    """Indexes findings into Elasticsearch or OpenSearch with the ``_bulk`` API, one ``create`` per revision.

    See the module docstring for the configuration, the document shape and the error handling.
    """

    kind = "elasticsearch"
    max_batch = 500

    # -- configuration -----------------------------------------------------------------------------------------

    def _bulk_url(self) -> str:
        base = self.base_url()
        index = str(self.option("index", DEFAULT_INDEX))
        if not _INDEX.match(index):
            raise ConfigError(f"sink {self.name!r}: {index!r} is not a valid index, alias or data stream name")
        params: dict[str, str] = {}
        pipeline = self.option("pipeline")
        if pipeline:
            if not _VALID_PIPELINE.match(str(pipeline)):
                raise ConfigError(f"sink {self.name!r}: invalid pipeline name")
            params["pipeline"] = str(pipeline)
        refresh = self.option("refresh")
        if refresh is not None:
            value = str(refresh).lower()
            if value not in ("true", "false", "wait_for"):
                raise ConfigError(f"sink {self.name!r}: refresh must be true, false or wait_for")
            params["refresh"] = value
        url = f"{base}/{quote(index, safe='')}/_bulk"
        return f"{url}?{urlencode(params)}" if params else url

    def _authorization(self) -> tuple[str, list[str]]:
        """The ``Authorization`` header value and the secret strings to scrub from anything we report."""
        api_key_name = self.option("api_key_secret")
        basic_name = self.option("basic_auth_secret")
        if bool(api_key_name) == bool(basic_name):
            raise ConfigError(f"sink {self.name!r} ({self.kind}) needs exactly one of 'api_key_secret' and "
                              "'basic_auth_secret'")
        if api_key_name:
            what = f"sink {self.name!r}: secret {str(api_key_name)!r}"
            raw = self.context.secret(str(api_key_name))
            if isinstance(raw, dict) and "encoded" not in raw and "id" in raw:
                key_id = secret_field(raw, ("id",), what)
                key = secret_field(raw, ("api_key",), what)
                encoded = base64.b64encode(f"{key_id}:{key}".encode()).decode()
                secrets = [key, encoded]
            else:
                value = secret_field(raw, ("encoded", "api_key"), what)
                # "<id>:<key>" is what the create-API-key answer's id and api_key make; ES wants it base64'd.
                encoded = base64.b64encode(value.encode()).decode() if ":" in value else value
                secrets = [value, encoded, *value.split(":", 1)[1:]]
            return f"ApiKey {header_safe(encoded, what)}", secrets
        what = f"sink {self.name!r}: secret {str(basic_name)!r}"
        raw = self.context.secret(str(basic_name))
        if isinstance(raw, str) and ":" in raw and not raw.strip().startswith("{"):
            username, _, password = raw.strip().partition(":")
        else:
            username = secret_field(raw, ("username", "user"), what)
            password = secret_field(raw, ("password",), what)
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
        return f"Basic {encoded}", [password, encoded]  # base64 output is always header-safe

    def _max_batch_bytes(self) -> int:
        value = self.option("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES)
        if not isinstance(value, int) or isinstance(value, bool) or value < 4096:
            raise ConfigError(f"sink {self.name!r}: max_batch_bytes must be an integer >= 4096")
        return value

    # -- rendering ---------------------------------------------------------------------------------------------

    def document(self, delivery: Delivery) -> dict[str, Any]:
        """The ECS document for one delivery (ECS fields, plus the chainwatch finding under ``chainwatch``)."""
        view = FindingView(delivery.document)

        def clean(value: Any, limit: int = TEXT_LIMIT) -> Any:
            # No formula neutralization here: values stay searchable as they were seen, and Kibana's CSV export
            # escapes formulas itself (csv.escapeFormulaValues). Control characters and sizes are still handled.
            return bounded(value, text_limit=limit, list_limit=LIST_LIMIT)

        time_ms = view.time_ms()
        first_seen, last_seen, processed = view.first_seen_ms(), view.last_seen_ms(), view.processed_ms()
        severity_id = delivery.severity_id
        analytic = view.analytic
        egress = view.egress()
        files = view.files()
        categories = ["intrusion_detection", "process"]
        if files:
            categories.append("file")
        if egress:
            categories.append("network")
        event: dict[str, Any] = {
            "kind": "alert",
            "category": categories,
            "type": ["info"],  # the one type ECS allows with each of those categories
            "action": "chain-updated" if delivery.is_update else "chain-detected",
            "id": document_id(delivery),
            "severity": severity_id,
            "risk_score": _RISK_SCORES.get(severity_id, 0),
            "module": "chainwatch",
            "dataset": "chainwatch.finding",
            "provider": "chainwatch",
            "reason": clean(view.info.get("desc"), 1024),
        }
        if first_seen is not None:
            event["start"] = ms_to_iso(first_seen)
        if last_seen is not None:
            event["end"] = ms_to_iso(last_seen)
        if processed is not None:
            event["created"] = ms_to_iso(processed)
        host_name = text(view.host(), 255)
        doc: dict[str, Any] = {
            # @timestamp is required by data streams; a finding without a usable time is stamped "now".
            "@timestamp": ms_to_iso(time_ms if time_ms is not None else int(time.time() * 1000)),
            "ecs": {"version": ECS_VERSION},
            "message": clean(view.title(delivery.finding_id), 1024),
            "event": event,
            "rule": _drop_none({
                "id": clean(analytic.get("uid"), 256),
                "name": clean(analytic.get("name"), 1024),
                "category": clean(analytic.get("type"), 256),
                "ruleset": clean(view.route(), 256),
                "description": clean(view.info.get("desc"), 1024),
                "version": clean(view.product_version, 64),
                "author": ["chainwatch"],
            }),
            "host": {"name": host_name, "hostname": host_name,
                     "os": {"type": "macos", "family": "macos", "name": "macOS"}},
            "observer": {"vendor": "chainwatch", "product": "chainwatch", "type": "detection"},
            "tags": ["chainwatch", *([clean(analytic["uid"], 64)] if isinstance(analytic.get("uid"), str) else []),
                     *(["canary"] if delivery.canary else [])],
            "labels": {"canary": "true" if delivery.canary else "false"},
        }
        process = _process(view.key_process(), clean)
        if process:
            doc["process"] = process
            user_id = as_dict(view.key_process().get("user")).get("uid")
            if isinstance(user_id, str):
                doc["user"] = {"id": clean(user_id, 64)}
        if egress:
            destination, network = _destination(egress[0], clean)
            if destination:
                doc["destination"] = destination
            if network:
                doc["network"] = network
        if files:
            doc["file"] = {"path": clean(files[0]), "name": clean(files[0].rsplit("/", 1)[-1])}
        threat = _threat(view, clean)
        if threat:
            doc["threat"] = threat
        doc["chainwatch"] = self._finding(delivery, view, clean)
        return doc

    @staticmethod
    def _finding(delivery: Delivery, view: FindingView, clean: Callable[..., Any]) -> dict[str, Any]:
        """The chainwatch finding under ``chainwatch``: identity, verdict and ``unmapped.chainwatch`` (bounded)."""
        info = view.info
        out: dict[str, Any] = {
            "finding_id": clean(delivery.finding_id, 512),
            "revision": delivery.revision,
            "canary": delivery.canary,
            "activity": "update" if delivery.is_update else "create",
            "title": clean(view.title(delivery.finding_id), 1024),
            "severity": clean(view.get_str("severity"), 32),
            "severity_id": delivery.severity_id,
            "confidence": clean(view.get_str("confidence"), 32),
            "confidence_id": view.get_int("confidence_id"),
            "status": clean(view.get_str("status"), 32),
            "is_alert": delivery.is_alert,
            "types": clean([t for t in info.get("types", []) if isinstance(t, str)]
                           if isinstance(info.get("types"), list) else []),
            "ocsf": {"class_uid": view.get_int("class_uid"), "type_uid": view.get_int("type_uid"),
                     "version": clean(as_dict(view.doc.get("metadata")).get("version"), 32)},
        }
        for key, value in view.chainwatch.items():
            if key == "story":
                out["story"] = multiline(value, STORY_LIMIT)
            elif key not in out:
                out[key] = clean(value)
        return _drop_none(out)

    # -- delivery ----------------------------------------------------------------------------------------------

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        """Index the deliveries with as few ``_bulk`` requests as ``max_batch_bytes`` allows."""
        if not deliveries:
            return []
        try:
            url = self._bulk_url()
            max_bytes = self._max_batch_bytes()
            authorization, secrets = self._authorization()
        except ConfigError as exc:
            return results_for(deliveries, Outcome.FAILED_PERMANENT, str(exc))
        except TransientError as exc:  # the secret store is throttled or down
            return results_for(deliveries, Outcome.FAILED_TRANSIENT, str(exc), retry_after=exc.retry_after)
        scrub = Scrubber(secrets)
        headers = {"Authorization": authorization, "Content-Type": "application/x-ndjson",
                   "Accept": "application/json"}
        results: dict[int, DeliveryResult] = {}
        items: list[_Item] = []
        for index, delivery in enumerate(deliveries):
            doc_id = document_id(delivery)
            try:
                source = orjson.dumps(self.document(delivery))
            except (TypeError, ValueError, AttributeError) as exc:  # one odd finding fails alone
                results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                                f"cannot render the finding as a document: {text(exc, 300)}")
                continue
            # The index is in the URL, not the action: clusters with rest.action.multi.allow_explicit_index=false
            # refuse an _index in the body.
            action = orjson.dumps({"create": {"_id": doc_id}})
            items.append(_Item(index, delivery, doc_id, action + b"\n" + source + b"\n"))
        for chunk in _chunks(items, max_bytes):
            self._deliver(chunk, url, headers, scrub, results)
        # Last line of defence: whatever a message quoted, no result leaves with a secret in it.
        return [scrub_result(results[i], scrub) for i in range(len(deliveries))]

    def _deliver(self, chunk: list[_Item], url: str, headers: dict[str, str], scrub: Scrubber,
                 results: dict[int, DeliveryResult]) -> None:
        pending = list(chunk)  # shrinks as items settle; each retry sends only what is left
        if out_of_time(self.context):
            for item in pending:
                results[item.index] = _result(item, Outcome.FAILED_TRANSIENT,
                                              "time budget too short to send another request")
            return
        attempt: Callable[[], None] = partial(self._attempt, pending, url, headers, scrub, results)
        try:
            self.context.retry.call(attempt)
        except TransientError as exc:
            log.warning("elasticsearch %s: %d documents not indexed (transient): %s", self.name, len(pending), exc)
            for item in pending:
                results[item.index] = _result(item, Outcome.FAILED_TRANSIENT, str(exc),
                                              response=error_response(exc), retry_after=exc.retry_after)
        except HttpPermanentError as exc:
            log.warning("elasticsearch %s: %d documents rejected: %s", self.name, len(pending), exc)
            for item in pending:
                results[item.index] = _result(item, Outcome.FAILED_PERMANENT, str(exc), response=exc.response)

    def _attempt(self, pending: list[_Item], url: str, headers: dict[str, str], scrub: Scrubber,
                 results: dict[int, DeliveryResult]) -> None:
        what = f"elasticsearch {self.name}"
        body = b"".join(item.lines for item in pending)
        response = post(self.context.session, url, data=body, headers=headers, timeout=self.context.timeout,
                        verify=self.option("verify", True), what=what, scrub=scrub)
        if response.status_code != 200:
            raise http_error(response, what, scrub)
        reply = json_body(response)
        answers = reply.get("items") if isinstance(reply, dict) else None
        if not isinstance(answers, list):
            # A whole 200 that is not a _bulk answer comes from something else at that URL (a proxy, Kibana):
            # retrying cannot help and counting it delivered would drop every finding silently.
            raise HttpPermanentError(f"{what}: HTTP 200 without a _bulk answer; is the url Elasticsearch?",
                                     status=200, response=bounded_body(response, scrub))
        if len(answers) != len(pending):
            # Some documents may be in. Resending is harmless: create answers 409 for those.
            raise HttpTransientError(f"{what}: _bulk answered {len(answers)} items for {len(pending)} actions",
                                     status=200, response=bounded_body(response, scrub))
        retry: list[_Item] = []
        retry_reasons: list[str] = []
        for item, answer in zip(pending, answers, strict=True):
            outcome, detail, error = _item_outcome(answer, scrub)
            if outcome is None:
                retry.append(item)
                retry_reasons.append(detail)
                continue
            results[item.index] = _result(item, outcome, detail, response=error,
                                          external_id=item.doc_id if outcome is Outcome.DELIVERED else None)
        pending[:] = retry
        if retry:
            raise HttpTransientError(f"{what}: {len(retry)} of {len(answers)} items to retry: {retry_reasons[0]}",
                                     status=200, response=retry_reasons[0])


def _item_outcome(answer: Any, scrub: Scrubber) -> tuple[Outcome | None, str, str | None]:
    """(outcome or ``None`` to retry, detail, bounded error) for one ``_bulk`` item answer."""
    result = as_dict(as_dict(answer).get("create"))
    status = as_int(result.get("status"))
    error = result.get("error")
    error_text = scrub(text(orjson.dumps(error).decode() if error is not None else "", MAX_RESPONSE_TEXT)) or None
    error_type = as_dict(error).get("type")
    if status is None:
        return None, "item answer without a status", error_text
    if status in (200, 201):
        return Outcome.DELIVERED, f"indexed ({text(result.get('result', 'created'), 40)})", None
    if status == 409 and error_type == _CONFLICT:
        return Outcome.DELIVERED, "already indexed (409 version conflict on create)", None
    if status == 429 or status >= 500:
        return None, f"item HTTP {status}: {text(error_type or 'error', 100)}: {error_text or ''}"[:500], error_text
    return (Outcome.FAILED_PERMANENT, f"item HTTP {status}: {text(error_type or 'error', 100)}",
            error_text)


def _result(item: _Item, outcome: Outcome, detail: str, *, response: str | None = None,
            retry_after: float | None = None, external_id: str | None = None) -> DeliveryResult:
    return DeliveryResult(item.delivery.finding_id, item.delivery.revision, outcome, detail,
                          external_id=external_id, response=response, retry_after=retry_after)


def _chunks(items: list[_Item], max_bytes: int) -> list[list[_Item]]:
    """Split into requests of at most ``max_bytes`` (a document larger than that goes alone)."""
    chunks: list[list[_Item]] = []
    current: list[_Item] = []
    size = 0
    for item in items:
        if current and size + len(item.lines) > max_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item.lines)
    if current:
        chunks.append(current)
    return chunks


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _process(process: dict[str, Any], clean: Callable[..., Any]) -> dict[str, Any]:
    """ECS ``process`` (with ``parent`` and ``code_signature``) from an OCSF process object."""
    if not process:
        return {}
    out = _drop_none({
        "pid": as_int(process.get("pid")),
        "name": clean(process.get("name"), 1024),
        "executable": clean(process.get("path")),
        "command_line": clean(process.get("cmd_line")),
        "working_directory": clean(process.get("working_directory")),
        "entity_id": clean(process.get("uid"), 256),
        "start": ms_to_iso(created) if (created := as_int(process.get("created_time"))) is not None else None,
    })
    signature = as_dict(as_dict(process.get("file")).get("signature"))
    code_signature = _drop_none({
        "team_id": clean(signature.get("developer_uid"), 64),
        "signing_id": clean(as_dict(signature.get("certificate")).get("subject"), 256),
    })
    if code_signature:
        out["code_signature"] = code_signature
    parent = as_dict(process.get("parent_process"))
    if parent:
        out["parent"] = _drop_none({
            "pid": as_int(parent.get("pid")),
            "name": clean(parent.get("name"), 1024),
            "executable": clean(parent.get("path")),
            "command_line": clean(parent.get("cmd_line")),
            "entity_id": clean(parent.get("uid"), 256),
        })
    return out


def _destination(egress: dict[str, Any], clean: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """ECS ``destination`` and ``network`` from chainwatch's first egress entry.

    ``destination.ip`` is an ``ip`` field in ECS mappings: a value that is not an address would fail the whole
    document (mapper_parsing_exception), so it goes to ``destination.address`` only.
    """
    raw_ip, hostname = egress.get("ip"), egress.get("hostname")
    ip = valid_ip(raw_ip)
    destination = _drop_none({
        "ip": ip,
        "port": valid_port(egress.get("port")),
        "domain": clean(hostname, 255) if isinstance(hostname, str) and hostname else None,
        "address": clean(hostname if isinstance(hostname, str) and hostname else raw_ip, 255),
    })
    protocol = egress.get("protocol")
    network = {"direction": "egress"}
    if isinstance(protocol, str) and protocol.lower() in ("tcp", "udp", "icmp", "ipv6-icmp"):
        network["transport"] = protocol.lower()
    return destination, network


def _threat(view: FindingView, clean: Callable[..., Any]) -> dict[str, Any]:
    """ECS ``threat.*`` for the finding's ATT&CK techniques (parallel arrays, as ECS defines them)."""
    techniques: dict[str, str] = {}
    subtechniques: dict[str, str] = {}
    tactics: dict[str, str] = {}
    for attack in view.attacks():
        technique_id, sub_id, tactic_id = attack["technique_id"], attack["sub_id"], attack["tactic_id"]
        if technique_id and _TECHNIQUE.match(technique_id):
            techniques.setdefault(technique_id, attack["technique_name"] or technique_id)
        if sub_id and _TECHNIQUE.match(sub_id):
            subtechniques.setdefault(sub_id, attack["sub_name"] or sub_id)
        if tactic_id and _TACTIC.match(tactic_id):
            tactics.setdefault(tactic_id, attack["tactic_name"] or tactic_id)
    if not techniques:
        return {}
    technique: dict[str, Any] = {
        "id": list(techniques),
        "name": [clean(n, 256) for n in techniques.values()],
        "reference": [f"https://attack.mitre.org/techniques/{t}/" for t in techniques],
    }
    if subtechniques:
        technique["subtechnique"] = {
            "id": list(subtechniques),
            "name": [clean(n, 256) for n in subtechniques.values()],
            "reference": [f"https://attack.mitre.org/techniques/{s.replace('.', '/')}/" for s in subtechniques],
        }
    out: dict[str, Any] = {"framework": "MITRE ATT&CK", "technique": technique}
    if tactics:
        out["tactic"] = {"id": list(tactics), "name": [clean(n, 256) for n in tactics.values()],
                         "reference": [f"https://attack.mitre.org/tactics/{t}/" for t in tactics]}
    return out


def index_template(index_patterns: Sequence[str] = (f"{DEFAULT_INDEX}*",)) -> dict[str, Any]:
    """A composable index template (``PUT _index_template/chainwatch``) for the documents this sink writes.

    Dynamic date and numeric detection are off, so a string an attacker chose (a path that looks like a date)
    cannot fix a field's type for every later document; the fields a SIEM query or a rule uses get their ECS type.
    """
    # Only types Elasticsearch and OpenSearch both have (no wildcard, no match_only_text).
    keyword = {"type": "keyword", "ignore_above": 1024}
    long_keyword = {"type": "keyword", "ignore_above": 8191, "fields": {"text": {"type": "text"}}}
    date = {"type": "date"}
    number = {"type": "long"}
    return {
        "index_patterns": list(index_patterns),
        "priority": 200,
        "template": {
            "mappings": {
                "date_detection": False,
                "numeric_detection": False,
                "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": keyword}}],
                "properties": {
                    "@timestamp": date,
                    "message": {"type": "text"},
                    "event": {"properties": {"start": date, "end": date, "created": date, "severity": number,
                                             "risk_score": {"type": "float"}}},
                    "process": {"properties": {"pid": number, "command_line": long_keyword, "start": date,
                                               "parent": {"properties": {"pid": number,
                                                                         "command_line": long_keyword}}}},
                    "destination": {"properties": {"ip": {"type": "ip"}, "port": number}},
                    "chainwatch": {"properties": {
                        "revision": number, "severity_id": number, "story": {"type": "text"},
                        "timeline": {"properties": {"time": date, "text": {"type": "text"}}},
                        "process_tree": {"properties": {"cmd_line": long_keyword}},
                        "egress": {"properties": {"time": date, "port": number}},
                    }},
                },
            },
        },
    }
