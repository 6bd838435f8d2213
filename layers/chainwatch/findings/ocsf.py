"""Render a :class:`~chainwatch.findings.model.Finding` as an OCSF 1.8 Detection Finding (class 2004).

:func:`validate_detection_finding` checks a rendered document for the fields OCSF marks required for class 2004
and the base event, with the value types the schema gives; the CLI's output is checked with it in tests.
"""

from __future__ import annotations

from typing import Any

from chainwatch import __version__
from chainwatch.events import ProcessRef, iso_ns
from chainwatch.findings.model import Finding, Stage
from chainwatch.findings.story import story_text
from chainwatch.policy import Policy

OCSF_VERSION = "1.8.0"
CLASS_UID = 2004
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
ACTIVITY_UPDATE = 2
_NS_PER_MS = 1_000_000

_TECHNIQUES = {
    "T1204.002": ("T1204", "User Execution", "T1204.002", "Malicious File", "TA0002", "Execution"),
    "T1059.002": ("T1059", "Command and Scripting Interpreter", "T1059.002", "AppleScript", "TA0002", "Execution"),
    "T1059.004": ("T1059", "Command and Scripting Interpreter", "T1059.004", "Unix Shell", "TA0002", "Execution"),
    "T1059.006": ("T1059", "Command and Scripting Interpreter", "T1059.006", "Python", "TA0002", "Execution"),
    "T1105": ("T1105", "Ingress Tool Transfer", None, None, "TA0011", "Command and Control"),
    "T1553.001": ("T1553", "Subvert Trust Controls", "T1553.001", "Gatekeeper Bypass", "TA0005",
                  "Defense Evasion"),
}
_SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_CONFIDENCE_NAMES = {1: "Low", 2: "Medium", 3: "High"}


def _ms(time_ns: int) -> int:
    return time_ns // _NS_PER_MS


def ocsf_process(ref: ProcessRef | None, parent: ProcessRef | None = None) -> dict[str, Any] | None:
    """An OCSF ``process`` object (``uid`` is chainwatch's entity id for the image)."""
    if ref is None:
        return None
    out: dict[str, Any] = {"pid": ref.pid, "name": ref.display_name}
    if ref.entity_id:
        out["uid"] = ref.entity_id
    if ref.executable:
        out["path"] = ref.executable
        file: dict[str, Any] = {"path": ref.executable, "name": ref.display_name, "type_id": 1}
        sig = ref.signature
        if sig is not None:
            signature: dict[str, Any] = {"algorithm_id": 99, "algorithm": "Apple code signature"}
            if sig.team_id:
                signature["developer_uid"] = sig.team_id
            if sig.cdhash:
                signature["digest"] = {"algorithm_id": 99, "algorithm": "cdhash", "value": sig.cdhash}
            if sig.signing_id:
                signature["certificate"] = {"subject": sig.signing_id, "serial_number": sig.signing_id,
                                            "issuer": "Apple" if sig.platform_binary else (sig.team_id or "unknown")}
            file["signature"] = signature
        out["file"] = file
    if ref.args:
        out["cmd_line"] = " ".join(ref.args)
    if ref.cwd:
        out["working_directory"] = ref.cwd
    if ref.start_time_ns is not None:
        out["created_time"] = _ms(ref.start_time_ns)
    if ref.uid is not None:
        out["user"] = {"uid": str(ref.uid)}
    parent_out = ocsf_process(parent) if parent is not None else None
    if parent_out is None and ref.ppid is not None:
        parent_out = {"pid": ref.ppid}
        if ref.parent_entity_id:
            parent_out["uid"] = ref.parent_entity_id
        if ref.parent_executable:
            parent_out["path"] = ref.parent_executable
            parent_out["name"] = ref.parent_executable.rsplit("/", 1)[-1]
    if parent_out is not None:
        out["parent_process"] = parent_out
    return out


def _attack(uid: str) -> dict[str, Any]:
    technique, tname, sub, sname, tactic, tactic_name = _TECHNIQUES.get(
        uid, (uid, uid, None, None, "TA0002", "Execution"))
    out: dict[str, Any] = {"technique": {"uid": technique, "name": tname},
                           "tactic": {"uid": tactic, "name": tactic_name}, "version": "17"}
    if sub:
        out["sub_technique"] = {"uid": sub, "name": sname}
    return out


def to_ocsf(finding: Finding, policy: Policy, *, processed_ns: int | None = None,
            activity_id: int = ACTIVITY_CREATE) -> dict[str, Any]:
    """The OCSF 1.8 Detection Finding for ``finding``, with chainwatch's story under ``unmapped``."""
    evidences = []
    for stage in finding.stages:
        evidence: dict[str, Any] = {
            "name": f"stage {int(stage.stage)}: {stage.summary}"[:512],
            "data": {"stage": int(stage.stage), "method": stage.method, "time": iso_ns(stage.time_ns),
                     "source": stage.source.value, "raw_ref": stage.raw},
        }
        process = ocsf_process(stage.process, stage.parent)
        if process is not None:
            evidence["process"] = process
        if stage.file_path:
            evidence["file"] = {"path": stage.file_path, "name": stage.file_path.rsplit("/", 1)[-1], "type_id": 1}
        if stage.stage is Stage.EGRESS:
            endpoint: dict[str, Any] = {}
            if stage.dst_ip:
                endpoint["ip"] = stage.dst_ip
            if stage.dst_port is not None:
                endpoint["port"] = stage.dst_port
            if stage.hostname:
                endpoint["hostname"] = stage.hostname
            evidence["dst_endpoint"] = endpoint
        evidences.append(evidence)
    processed = processed_ns if processed_ns is not None else finding.last_seen_ns
    status = "Suppressed" if finding.suppressed_by else "New"
    doc: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": "Create" if activity_id == ACTIVITY_CREATE else "Update",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": "Detection Finding: " + ("Create" if activity_id == ACTIVITY_CREATE else "Update"),
        "time": _ms(finding.last_seen_ns),
        "severity_id": int(finding.severity),
        "severity": _SEVERITY_NAMES[int(finding.severity)],
        "confidence_id": int(finding.confidence),
        "confidence": _CONFIDENCE_NAMES[int(finding.confidence)],
        "is_alert": finding.is_alert,
        # Ranks findings within a severity: the sum of the policy's severity rules that matched.
        "risk_score": finding.score,
        "status_id": 1 if not finding.suppressed_by else 99,
        "status": status,
        "message": finding.title,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "chainwatch", "vendor_name": "chainwatch", "version": __version__},
            "uid": finding.finding_id,
            "correlation_uid": finding.finding_id,
            "processed_time": _ms(processed),
            "log_name": "chainwatch.findings",
        },
        "finding_info": {
            "uid": finding.finding_id,
            "title": finding.title,
            "desc": "; ".join(finding.reasons),
            "analytic": {"uid": policy.analytic_uid, "name": policy.analytic_name, "type_id": 2,
                         "type": "Behavioral"},
            "attacks": [_attack(t) for t in finding.techniques],
            "first_seen_time": _ms(finding.first_seen_ns),
            "last_seen_time": _ms(finding.last_seen_ns),
            "types": ["AN1316", finding.route],
            "related_events": [{"uid": s.raw, "time": _ms(s.time_ns), "product": {"name": s.source.value}}
                               for s in finding.stages],
        },
        "device": {"hostname": finding.host, "type_id": 2, "type": "Desktop",
                   "os": {"name": "macOS", "type_id": 300, "type": "macOS"}},
        "evidences": evidences,
        "unmapped": {
            "chainwatch": {
                "route": finding.route,
                "stages_present": list(finding.stage_numbers),
                "links": [{"from": int(lk.from_stage), "to": int(lk.to_stage), "strength": lk.strength.value,
                           "reason": lk.reason} for lk in finding.links],
                "process_tree": [{"depth": n.depth, "role": n.role, "seen": n.seen, "pid": n.process.pid,
                                  "uid": n.process.entity_id, "path": n.process.executable,
                                  "cmd_line": " ".join(n.process.args) if n.process.args else None}
                                 for n in finding.tree],
                "timeline": [{"time": iso_ns(e.time_ns), "stage": int(e.stage) if e.stage else None,
                              "text": e.text, "source": e.source.value, "raw_ref": e.raw} for e in finding.timeline],
                "files": list(finding.files),
                "egress": [{"time": iso_ns(e.time_ns), "pid": e.process.pid, "uid": e.process.entity_id,
                            "process": e.process.display_name, "ip": e.dst_ip, "port": e.dst_port,
                            "hostname": e.hostname, "protocol": e.protocol, "destination": e.destination_class,
                            "attribution": e.attribution, "confidence": int(e.confidence)}
                           for e in finding.egress],
                "delivery": [{"step": d.step, "time": iso_ns(d.time_ns) if d.time_ns is not None else None,
                              "path": d.path, "text": d.text,
                              "link": {"strength": d.strength.value, "reason": d.reason} if d.strength else None,
                              "source": d.source.value if d.source else None, "raw_ref": d.raw}
                             for d in finding.delivery],
                "quarantine": list(finding.quarantine),
                "gatekeeper": list(finding.gatekeeper),
                "reasons": list(finding.reasons),
                "severity_rules": list(finding.severity_rules),
                "notes": list(finding.notes),
                "suppressed_by": finding.suppressed_by,
                "story": story_text(finding),
            }
        },
    }
    return doc


# -- validation ------------------------------------------------------------------------------------------------

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "class_uid": int, "category_uid": int, "activity_id": int, "type_uid": int, "severity_id": int,
    "time": int, "metadata": dict, "finding_info": dict,
}
_RECOMMENDED: dict[str, type | tuple[type, ...]] = {
    "is_alert": bool, "confidence_id": int, "evidences": list, "status_id": int, "device": dict,
}


def validate_detection_finding(doc: Any) -> list[str]:
    """Problems with ``doc`` as an OCSF 1.8 Detection Finding (an empty list means valid)."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["finding is not a JSON object"]
    for key, kind in {**_REQUIRED, **_RECOMMENDED}.items():
        value = doc.get(key)
        if value is None:
            if key in _REQUIRED:
                problems.append(f"missing required {key}")
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{key} has type {type(value).__name__}")
    if problems:
        return problems
    if doc["class_uid"] != CLASS_UID:
        problems.append(f"class_uid is {doc['class_uid']}, expected {CLASS_UID}")
    if doc["category_uid"] != CATEGORY_UID:
        problems.append("category_uid must be 2 (Findings)")
    if doc["activity_id"] not in (0, 1, 2, 3, 99):
        problems.append("activity_id must be 0, 1, 2, 3 or 99")
    if doc["type_uid"] != doc["class_uid"] * 100 + doc["activity_id"]:
        problems.append("type_uid must be class_uid * 100 + activity_id")
    if doc["severity_id"] not in (0, 1, 2, 3, 4, 5, 6, 99):
        problems.append("severity_id out of range")
    if "confidence_id" in doc and doc["confidence_id"] not in (0, 1, 2, 3, 99):
        problems.append("confidence_id out of range")
    metadata = doc["metadata"]
    product = metadata.get("product")
    if not isinstance(product, dict) or not isinstance(product.get("vendor_name"), str) \
            or not isinstance(product.get("name"), str):
        problems.append("metadata.product needs name and vendor_name")
    if not isinstance(metadata.get("version"), str):
        problems.append("metadata.version (the OCSF schema version) is required")
    info = doc["finding_info"]
    if not isinstance(info.get("uid"), str) or not info.get("uid"):
        problems.append("finding_info.uid is required")
    analytic = info.get("analytic")
    if analytic is not None and (not isinstance(analytic, dict) or "type_id" not in analytic):
        problems.append("finding_info.analytic needs type_id")
    for key in ("first_seen_time", "last_seen_time"):
        if key in info and not isinstance(info[key], int):
            problems.append(f"finding_info.{key} must be a timestamp (int ms)")
    for attack in info.get("attacks", []):
        if not isinstance(attack, dict) or not isinstance(attack.get("technique", {}).get("uid"), str):
            problems.append("finding_info.attacks[] entries need technique.uid")
    device = doc.get("device")
    if isinstance(device, dict) and "type_id" not in device:
        problems.append("device.type_id is required")
    for i, evidence in enumerate(doc.get("evidences", [])):
        if not isinstance(evidence, dict) or not evidence:
            problems.append(f"evidences[{i}] must be a non-empty object")
            continue
        proc = evidence.get("process")
        if proc is not None and not isinstance(proc.get("pid"), int):
            problems.append(f"evidences[{i}].process.pid must be an int")
    return problems
