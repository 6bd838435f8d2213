"""The bundled samples in ``events/`` through the command line, as the README's demo runs them.

``events/`` holds one story per host: on ``mac-01`` (unified log, eslogger and Elastic Defend network documents)
Safari downloads ``UpdateHelper.zip``, Archive Utility extracts ``UpdateHelper.app``, the user overrides Gatekeeper,
the translocated ad-hoc signed app runs ``sh -c "curl ... && osascript ..."`` and both children connect out; on
``mac-02`` (OCSF) Word writes a script that zsh runs and whose curl connects out. ``scripts/make_samples.py``
writes the eslogger and ECS files of mac-01.

The unified-log and eslogger records carry no host, and the CLI names such records after the folder that holds the
file, so the samples live in one folder per host (``events/mac-01/``, ``events/mac-02/``); the ECS and OCSF records
name their own hosts.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from chainwatch.app.cli import main
from chainwatch.findings.ocsf import validate_detection_finding

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
ESLOGGER_SAMPLE = EVENTS / "mac-01" / "eslogger.jsonl"
REAL_ESLOGGER = ROOT / "tests" / "unit" / "sources" / "data" / "eslogger_mullvad.jsonl"
TRANSLOCATED_APP = ("/private/var/folders/x4/abcd1234/T/AppTranslocation/6A1F3C2E-0D4B-4F1A-9C3E-2B7D8E9F0A11/d/"
                    "UpdateHelper.app")


@dataclass(frozen=True)
class Run:
    """One in-process CLI run: exit code, the findings written to ``--out``, and stderr."""

    code: int
    findings: list[dict[str, Any]]
    stderr: str


def _detect(out: Path, *extra: str) -> Run:
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        code = main(["detect", str(EVENTS), "--all", "--story", "--no-progress", "--out", str(out), *extra])
    findings = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    return Run(code, findings, stderr.getvalue())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _detect(tmp_path_factory.mktemp("detect") / "findings.jsonl")


def _on(run: Run, host: str) -> list[dict[str, Any]]:
    return [f for f in run.findings if f["device"]["hostname"] == host]


def _chainwatch(finding: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = finding["unmapped"]["chainwatch"]
    return result


def _evidence(finding: dict[str, Any], stage: int) -> dict[str, Any]:
    return next(e for e in finding["evidences"] if e["data"]["stage"] == stage)


# -- the findings --------------------------------------------------------------------------------------------


def test_detect_bundled_samples_one_finding_per_host_both_alerts(run: Run) -> None:
    assert run.code == 0
    assert sorted(f["device"]["hostname"] for f in run.findings) == ["mac-01", "mac-02"]
    assert all(f["is_alert"] for f in run.findings)
    assert run.stderr.rstrip().splitlines()[-1].endswith("findings: 2; alerts: 2; suppressed: 0; rejected: 0; "
                                                         "records: 101")


def test_detect_bundled_samples_every_line_valid_ocsf_detection_finding(run: Run) -> None:
    assert run.findings
    for finding in run.findings:
        assert validate_detection_finding(finding) == []
        assert finding["finding_info"]["analytic"]["uid"] == "AN1316"


def test_detect_bundled_mac01_quarantined_app_critical_four_stages(run: Run) -> None:
    (finding,) = _on(run, "mac-01")
    chain = _chainwatch(finding)
    assert chain["route"] == "quarantined_app"
    assert chain["stages_present"] == [1, 2, 3, 4]
    assert (finding["is_alert"], finding["severity"], finding["severity_id"]) == (True, "Critical", 5)
    assert [link["strength"] for link in chain["links"]] == ["strong", "strong", "strong"]
    reasons = chain["reasons"]
    assert "unsigned or ad-hoc signed process UpdateHelper in the chain" in reasons
    assert "egress to a raw IP address" in reasons
    assert any(r.startswith("credential prompt by osascript") for r in reasons)
    assert any(r.startswith("behavioural floor") for r in reasons)
    techniques = [a.get("sub_technique", a["technique"])["uid"] for a in finding["finding_info"]["attacks"]]
    assert {"T1204.002", "T1059.002", "T1059.004", "T1105", "T1553.001"} <= set(techniques)


def test_detect_bundled_mac01_stage3_is_translocated_updatehelper_launched_by_launchd(run: Run) -> None:
    (finding,) = _on(run, "mac-01")
    stage3 = _evidence(finding, 3)
    process = stage3["process"]
    assert (process["pid"], process["uid"]) == (1377, "es:1377:42390")
    assert process["path"] == f"{TRANSLOCATED_APP}/Contents/MacOS/UpdateHelper"
    assert process["parent_process"]["pid"] == 1
    assert stage3["data"]["source"] == "eslogger"
    stage2 = _evidence(finding, 2)
    # Safari downloaded the zip; Archive Utility's extraction of the bundle is the path evidence that joins them.
    assert stage2["file"]["path"] == "/Users/alice/Downloads/UpdateHelper.zip"
    assert "extracted by Archive Utility to /Users/alice/Downloads/UpdateHelper.app" in stage2["data"]["method"]
    tree = [(n["depth"], n["pid"], (n["path"] or "").rsplit("/", 1)[-1]) for n in _chainwatch(finding)["process_tree"]]
    assert tree == [(0, 1377, "UpdateHelper"), (1, 1380, "sh"), (2, 1380, "bash"), (3, 1381, "bash"),
                    (4, 1381, "curl"), (3, 1382, "bash"), (4, 1382, "osascript")]


def test_detect_bundled_mac01_egress_attributed_by_pid_lifetime_to_curl_and_osascript(run: Run) -> None:
    (finding,) = _on(run, "mac-01")
    egress = [(e["process"], e["pid"], e["ip"], e["hostname"], e["attribution"], e["uid"])
              for e in _chainwatch(finding)["egress"]]
    # ECS entity ids are another id space than Endpoint Security's: the join is the pid within exec..exit, and
    # the egress names the Endpoint Security image it was attributed to.
    assert egress == [
        ("curl", 1381, "198.51.100.77", "cdn.update-check.example", "pid_lifetime", "es:1381:42402"),
        ("osascript", 1382, "185.199.108.133", None, "pid_lifetime", "es:1382:42405"),
    ]
    stage4 = _evidence(finding, 4)
    assert (stage4["process"]["pid"], stage4["dst_endpoint"]) == (
        1381, {"ip": "198.51.100.77", "port": 443, "hostname": "cdn.update-check.example"})
    assert stage4["data"]["source"] == "ecs"


def test_detect_bundled_mac01_story_shows_gatekeeper_prompt_and_override(run: Run) -> None:
    (finding,) = _on(run, "mac-01")
    gatekeeper = _chainwatch(finding)["gatekeeper"]
    assert any(" Gatekeeper prompt " in line for line in gatekeeper)
    assert any(" Gatekeeper user_override path=/Users/alice/Downloads/UpdateHelper.app" in line for line in gatekeeper)
    assert any(f" Gatekeeper translocation path={TRANSLOCATED_APP}" in line for line in gatekeeper)
    story = run.stderr
    assert "[ALERT] AN1316 chain on mac-01:" in story
    for text in ("Gatekeeper prompt result=6, 0",
                 "Gatekeeper user_override path=/Users/alice/Downloads/UpdateHelper.app",
                 "Gatekeeper rejection_cleared",
                 "osascript pid 1382 -> 185.199.108.133:443 external via pid_lifetime",
                 "set com.apple.quarantine on /Users/alice/Downloads/UpdateHelper.app/Contents/MacOS/UpdateHelper"):
        assert text in story


def test_detect_bundled_mac01_terminal_curl_and_noise_in_no_finding(run: Run) -> None:
    # The developer's Terminal curl (pid 2140, api.github.com), the WebContent helper (818) and mdworker (1391)
    # belong to no chain.
    for finding in run.findings:
        chain = _chainwatch(finding)
        assert not {2140, 818, 1391} & {n["pid"] for n in chain["process_tree"]}
        assert all(e["hostname"] != "api.github.com" for e in chain["egress"])


def test_detect_bundled_mac02_interpreter_chain_word_zsh_curl(run: Run) -> None:
    (finding,) = _on(run, "mac-02")
    chain = _chainwatch(finding)
    assert (chain["route"], chain["stages_present"]) == ("interpreter", [1, 2, 3, 4])
    assert finding["message"] == "AN1316 chain on mac-02: Microsoft Word spawned zsh which connected to 203.0.113.7"
    assert [(n["depth"], n["role"], n["pid"]) for n in chain["process_tree"]] == [
        (0, "app", 1201), (1, "interpreter", 2210), (2, "interpreter", 2215)]
    assert [(e["process"], e["attribution"]) for e in chain["egress"]] == [("curl", "entity")]
    assert (finding["severity"], finding["is_alert"]) == ("Critical", True)


# -- normalize and the samples themselves --------------------------------------------------------------------


def _normalize(rejects: Path) -> tuple[int, list[dict[str, Any]], str]:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["normalize", str(EVENTS), "--rejects", str(rejects)])
    stdout.flush()
    raw = stdout.buffer.getvalue()  # type: ignore[attr-defined]
    return code, [orjson.loads(line) for line in raw.splitlines()], stderr.getvalue()


def test_normalize_bundled_samples_zero_rejections(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    code, events, summary = _normalize(rejects)
    assert code == 0
    assert rejects.read_bytes() == b""
    assert "rejected: 0;" in summary
    assert "records read: 101;" in summary
    by_source: dict[str, int] = {}
    for event in events:
        by_source[event["source"]] = by_source.get(event["source"], 0) + 1
    assert by_source == {"ecs": 3, "eslogger": 63, "ocsf": 9, "unifiedlog": 14}


def test_normalize_bundled_eslogger_sample_maps_download_extraction_override_and_children(tmp_path: Path) -> None:
    _, events, _ = _normalize(tmp_path / "rejects.jsonl")
    es = [e for e in events if e["source"] == "eslogger"]
    renamed = [e for e in es if e["kind"] == "file_write" and e["action"] == "rename"]
    assert [(e["path"], e["source_path"], e["process"]["pid"], e["process"]["responsible_pid"]) for e in renamed] == [
        ("/Users/alice/Downloads/UpdateHelper.zip",
         "/Users/alice/Downloads/UpdateHelper.zip.download/UpdateHelper.zip", 815, 812)]
    quarantined = sorted(e["path"] for e in es if e["kind"] == "xattr" and e["name"] == "com.apple.quarantine")
    assert quarantined[0] == "/Users/alice/Downloads/UpdateHelper.app"
    assert "/Users/alice/Downloads/UpdateHelper.zip" in quarantined
    (override,) = [e for e in es if e["kind"] == "gatekeeper"]
    assert (override["action"], override["path"], override["process"]["pid"]) == (
        "user_override", "/Users/alice/Downloads/UpdateHelper.app", 355)
    execs = {(e["target"]["pid"], e["target"]["executable"]) for e in es if e["kind"] == "process_exec"}
    assert {(1377, f"{TRANSLOCATED_APP}/Contents/MacOS/UpdateHelper"), (1380, "/bin/sh"), (1380, "/bin/bash"),
            (1381, "/usr/bin/curl"), (1382, "/usr/bin/osascript")} <= execs
    osascript = next(e["target"] for e in es if e["kind"] == "process_exec" and e["target"]["pid"] == 1382)
    assert any("display dialog" in arg and "with hidden answer" in arg for arg in osascript["args"])
    updater = next(e["target"] for e in es if e["kind"] == "process_exec"
                   and e["target"]["executable"].endswith("/UpdateHelper"))
    signature = updater["signature"]
    assert (signature["signing_id"], signature.get("team_id"), signature["platform_binary"]) == (
        "com.example.UpdateHelper", None, False)
    assert updater["responsible_pid"] == 1377 and updater["ppid"] == 1


def _lines(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    for line in path.read_bytes().splitlines():
        yield line, orjson.loads(line)


def _key_tree(value: Any) -> Any:
    """The keys of every nested object (sorted), with lists reduced to the shape of their first item."""
    if isinstance(value, dict):
        return {k: _key_tree(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_key_tree(value[0])] if value else []
    return None


def test_eslogger_sample_shape_same_keys_as_real_macos15_lines() -> None:
    real = [doc for _, doc in _lines(REAL_ESLOGGER) if doc["version"] == 9]
    real_exec = next(doc for doc in real if "exec" in doc["event"])
    real_exit = next(doc for doc in real if "exit" in doc["event"])
    sample = list(_lines(ESLOGGER_SAMPLE))
    assert sample
    envelope = set(real_exec)
    process_shape = _key_tree({k: v for k, v in real_exec["process"].items() if k != "tty"})
    for raw, doc in sample:
        assert set(doc) == envelope
        assert (doc["version"], doc["schema_version"], doc["action_type"]) == (9, 1, 1)
        assert len(doc["time"]) == len("2025-08-07T15:13:09.811587464Z")  # nanoseconds
        assert b'"/' not in raw and b"\\/" in raw  # eslogger escapes every slash
        process = {k: v for k, v in doc["process"].items() if k != "tty"}
        # Message version 9 (macOS 15): audit tokens are objects, and there is no cs_validation_category.
        assert _key_tree(process) == process_shape
        assert "cs_validation_category" not in raw.decode()
    execs = [doc for _, doc in sample if "exec" in doc["event"]]
    assert all(set(doc["event"]["exec"]) == set(real_exec["event"]["exec"]) for doc in execs)
    assert all(_key_tree(doc["event"]["exec"]["target"]["audit_token"])
               == _key_tree(real_exec["event"]["exec"]["target"]["audit_token"]) for doc in execs)
    exits = [doc for _, doc in sample if "exit" in doc["event"]]
    assert exits and all(set(doc["event"]["exit"]) == set(real_exit["event"]["exit"]) for doc in exits)
    # Like eslogger's output, key order changes between lines.
    assert len({tuple(doc) for _, doc in sample}) > len(sample) // 2


def _make_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts" / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules, so the module must be registered first.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_make_samples_bundled_files_up_to_date() -> None:
    module = _make_samples()
    outputs: dict[Path, bytes] = module.outputs()
    assert ESLOGGER_SAMPLE in outputs
    for path, data in outputs.items():
        assert path.read_bytes() == data, f"{path} is stale: run scripts/make_samples.py"
    assert module.outputs() == outputs  # deterministic


# -- known gaps (strict: these fail loudly once fixed, so the marker gets removed) ------------------------------


def test_detect_bundled_samples_without_host_option_mac01_chain_alert(tmp_path: Path) -> None:
    run = _detect(tmp_path / "findings.jsonl")
    assert sorted(f["device"]["hostname"] for f in run.findings) == ["mac-01", "mac-02"]
    (finding,) = _on(run, "mac-01")
    assert finding["is_alert"] and _chainwatch(finding)["stages_present"] == [1, 2, 3, 4]


def test_detect_bundled_mac01_chain_app_is_safari_that_downloaded_the_zip(run: Run) -> None:
    (finding,) = _on(run, "mac-01")
    assert finding["message"].startswith("AN1316 chain on mac-01: Safari download")
    assert "/Users/alice/Downloads/UpdateHelper.zip" in _chainwatch(finding)["files"]
