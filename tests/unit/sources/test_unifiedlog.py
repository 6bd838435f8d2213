"""Golden tests for the unified-log source: real record shape (macos-telemetry.md 3.1), real message strings
(3.2), near misses, the pattern-file validation and the events/mac-01/unifiedlog.ndjson sample."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from chainwatch.errors import PolicyError, RecordError
from chainwatch.events import (
    AppAction,
    AppActivity,
    Gatekeeper,
    GatekeeperAction,
    RawRef,
    SourceFormat,
)
from chainwatch.sources import Normalizer, detect_format, unifiedlog
from chainwatch.sources.reader import read_bytes, read_path

REPO = Path(__file__).parents[3]
SAMPLE = REPO / "events" / "mac-01" / "unifiedlog.ndjson"
FIXTURES = REPO / ".." / "shared" / "fixtures"
REF = RawRef("test", 1)

#: The real record of macos-telemetry.md section 3.1 (fluentd macOS-log input test, macOS 11 era), verbatim.
REAL = {
    "traceID": 762098997530628,
    "eventMessage": "(Sandbox) Sandbox: bluetoothd(171) deny(1) mach-lookup com.apple.server.bluetooth",
    "eventType": "logEvent", "source": None, "formatString": "Sandbox: %s(%d) %s%s", "activityIdentifier": 0,
    "subsystem": "", "category": "", "threadID": 7070658,
    "senderImageUUID": "EFCEFC07-848B-3EA7-87A0-E967111ABE77",
    "backtrace": {"frames": [{"imageOffset": 104220, "imageUUID": "EFCEFC07-848B-3EA7-87A0-E967111ABE77"}]},
    "bootUUID": "4044A0BF-330C-4FB9-8D90-D5BF55C7B63C", "processImagePath": "/kernel",
    "senderImagePath": "/System/Library/Extensions/Sandbox.kext/Contents/MacOS/Sandbox",
    "machTimestamp": 356419412323030, "messageType": "Error",
    "processImageUUID": "9B5A7191-5B84-3990-8710-D9BD9273A8E5", "processID": 0,
    "senderProgramCounter": 104220,
    "parentActivityIdentifier": 0, "timezoneName": "", "timestamp": "2020-12-10 17:00:10.150141+0100",
}
#: 2020-12-10 16:00:10.150141 UTC, the documented value of the real record's timestamp.
REAL_NS = 1607616010150141000

IMAGES = {
    "runningboardd": "/usr/libexec/runningboardd",
    "CoreServicesUIAgent":
        "/System/Library/CoreServices/CoreServicesUIAgent.app/Contents/MacOS/CoreServicesUIAgent",
    "loginwindow": "/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow",
    "Finder": "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder",
    "ReportCrash": "/System/Library/CoreServices/ReportCrash",
    "syspolicyd": "/usr/libexec/syspolicyd",
    "kernel": "/kernel",
    "lsd": "/usr/libexec/lsd",
    "bluetoothd": "/usr/sbin/bluetoothd",
}
SYSPOLICY = "com.apple.syspolicy.exec"


def _record(
    process: str, message: str, *, pid: int = 4242, subsystem: str = "", **extra: Any
) -> dict[str, Any]:
    """The real 3.1 record carrying another process and message."""
    doc = copy.deepcopy(REAL)
    doc.update(processImagePath=IMAGES[process], processID=pid, eventMessage=message, subsystem=subsystem)
    doc.update(extra)
    return doc


def _one(doc: dict[str, Any], **kwargs: Any) -> Any:
    result = unifiedlog.map_record(doc, REF, "mac-01", **kwargs)
    assert isinstance(result, list) and len(result) == 1, result
    return result[0]


# ---- detection ---------------------------------------------------------------------------------------------


def test_unifiedlog_detect_real_record_true() -> None:
    assert unifiedlog.detect(REAL)
    assert detect_format(REAL) is unifiedlog


def test_unifiedlog_detect_without_image_path_needs_timestamp_and_event_type() -> None:
    doc = {"eventMessage": "x", "timestamp": REAL["timestamp"], "eventType": "logEvent"}
    assert unifiedlog.detect(doc)
    assert not unifiedlog.detect({"eventMessage": "x", "timestamp": REAL["timestamp"]})


def test_unifiedlog_detect_log_show_trailer_true() -> None:
    assert unifiedlog.detect({"count": 19, "finished": 1})
    assert unifiedlog.map_record({"count": 19, "finished": 1}, REF, "mac-01") == "unifiedlog:trailer"


@pytest.mark.parametrize(
    "doc",
    [
        {"event": {"exec": {}}, "event_type": 9, "process": {}},
        {"@timestamp": "2021-01-13T10:36:57.26707Z", "event": {"category": ["process"]},
         "process": {"pid": 1}},
        {"message": "x", "processImagePath": "/kernel"},
        {"count": 3, "finished": 1, "extra": True},
    ],
    ids=["eslogger", "ecs", "no-eventMessage", "trailer-lookalike"],
)
def test_unifiedlog_detect_other_formats_false(doc: dict[str, Any]) -> None:
    assert not unifiedlog.detect(doc)


# ---- timestamps, process, host -----------------------------------------------------------------------------


def test_unifiedlog_timestamp_plus_offset_converts_to_utc_ns() -> None:
    event = _one(_record("syspolicyd", "GK performScan", timestamp=REAL["timestamp"]))
    assert event.time_ns == REAL_NS
    assert event.time.isoformat() == "2020-12-10T16:00:10.150141+00:00"


def test_unifiedlog_timestamp_minus_offset_converts_to_utc_ns() -> None:
    event = _one(_record("syspolicyd", "GK performScan", timestamp="2026-10-04 01:35:56.304283-0400"))
    assert event.time.isoformat() == "2026-10-04T05:35:56.304283+00:00"


def test_unifiedlog_process_is_logging_process_by_pid_and_host_is_argument() -> None:
    event = _one(_record("syspolicyd", "GK performScan", pid=355, userID=0))
    assert event.host == "mac-01"
    assert event.source is SourceFormat.UNIFIED_LOG
    assert event.raw == REF
    assert (event.process.pid, event.process.executable, event.process.entity_id) == (
        355, "/usr/libexec/syspolicyd", None)
    assert event.process.display_name == "syspolicyd"
    assert event.process.uid == 0
    assert event.process.ppid is None


def test_unifiedlog_uid_fill_pattern_is_not_a_uid() -> None:
    event = _one(_record("syspolicyd", "GK performScan", userID=2863311530))
    assert event.process.uid is None


def test_unifiedlog_missing_process_id_keeps_event_without_process() -> None:
    doc = _record("syspolicyd", "GK performScan")
    del doc["processID"]
    event = _one(doc)
    assert event.process is None and event.action is GatekeeperAction.SCAN


@pytest.mark.parametrize(
    "trace", [2**63 + 5, 2**64 - 1, 2**70, 1.8446744073709552e19, "18446744073709551615"]
)
def test_unifiedlog_huge_trace_id_maps_without_error(trace: Any) -> None:
    event = _one(_record("syspolicyd", "GK performScan", traceID=trace))
    assert event.action is GatekeeperAction.SCAN


def test_unifiedlog_trace_id_is_kept_as_text() -> None:
    assert unifiedlog.trace_id({"traceID": 2**64 - 1}) == "18446744073709551615"
    assert unifiedlog.trace_id({"traceID": "10376293541461622788"}) == "10376293541461622788"
    assert unifiedlog.trace_id({"traceID": 1.8446744073709552e19}) is None
    assert unifiedlog.trace_id({"traceID": True}) is None


def test_unifiedlog_huge_trace_id_line_reads_through_normalizer() -> None:
    doc = _record("syspolicyd", "GK performScan")
    line = json.dumps(doc).replace('"traceID": 762098997530628', '"traceID": 18446744073709551615')
    assert "18446744073709551615" in line
    normalizer = Normalizer()
    events = list(normalizer.run(read_bytes(line.encode(), "mem"), "mac-01"))
    assert [e.kind.value for e in events] == ["gatekeeper"]
    assert normalizer.stats.rejected == 0


def test_unifiedlog_long_message_truncated_to_512() -> None:
    message = "GK performScan " + "x" * 2000
    event = _one(_record("syspolicyd", message))
    assert event.message == message[:512]
    assert len(event.message) == unifiedlog.MAX_MESSAGE


# ---- one golden test per message class (real strings, macos-telemetry.md 3.2) ------------------------------

GOLDEN = [
    pytest.param(
        "runningboardd", "",
        "Now tracking process: [app<application.com.nexy.assistant.20753384.20753390(501)>:23856]",
        AppActivity, {"action": AppAction.LAUNCH, "bundle_id": "com.nexy.assistant", "pid": 23856,
                      "app_name": None, "app_path": None},
        id="runningboard-now-tracking"),
    pytest.param(
        "CoreServicesUIAgent", "", "LAUNCH: 0x0-0x1874873 com.nexy.assistant starting stopped process.",
        AppActivity, {"action": AppAction.LAUNCH, "bundle_id": "com.nexy.assistant", "pid": None},
        id="uiagent-launch"),
    pytest.param(
        "loginwindow", "", "-[Application updateInformation] | Got App URL: file:///Applications/Nexy.app/",
        AppActivity, {"action": AppAction.LAUNCH, "app_path": "/Applications/Nexy.app", "app_name": "Nexy",
                      "bundle_id": None},
        id="loginwindow-app-url"),
    pytest.param(
        "loginwindow", "",
        "-[Application updateInformation] | Got App URL: file:///Applications/Antigravity%20Tools.app/",
        AppActivity, {"action": AppAction.LAUNCH, "app_path": "/Applications/Antigravity Tools.app",
                      "app_name": "Antigravity Tools"},
        id="loginwindow-app-url-percent-decoded"),
    pytest.param(
        "Finder", "", "sendAction:", AppActivity, {"action": AppAction.CLICK, "bundle_id": None, "pid": None},
        id="finder-send-action"),
    pytest.param(
        "ReportCrash", "", "Formulating fatal 309 report for corpse[19035] Nexy",
        AppActivity, {"action": AppAction.CRASH, "pid": 19035, "app_name": "Nexy"},
        id="reportcrash-fatal-report"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "GK performScan",
        Gatekeeper, {"action": GatekeeperAction.SCAN, "path": None},
        id="gk-perform-scan"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "GK Xprotect results: PST: (path: a2cffff67b96be6e), XPScan: 0,"
        "file:///Applications/Antigravity%20Tools.app/",
        Gatekeeper, {"action": GatekeeperAction.SCAN, "path": "/Applications/Antigravity Tools.app"},
        id="gk-xprotect-results"),
    pytest.param(
        "syspolicyd", SYSPOLICY,
        "GK evaluateScanResult: 3, PST: (path: a2cffff67b96be6e), (team: 5NKLL2CLB9), "
        "(id: com.nexy.assistant), (bundle_id: (null)), 0, 0, 1, 0, 9, 4, 1",
        Gatekeeper, {"action": GatekeeperAction.SCAN, "result": "3", "team_id": "5NKLL2CLB9",
                     "signing_id": "com.nexy.assistant", "path": None},
        id="gk-evaluate-scan-result"),
    pytest.param(
        "syspolicyd", SYSPOLICY,
        "GK evaluateScanResult: 0, PST: (path: 3b7c5e9a1d2f4c68), (team: (null)), "
        "(id: com.papermachine.desktop), (bundle_id: com.papermachine.desktop), 0, 0, 1, 0, 9, 4, 1",
        Gatekeeper, {"action": GatekeeperAction.SCAN, "result": "0", "team_id": None,
                     "signing_id": "com.papermachine.desktop"},
        id="gk-evaluate-scan-result-null-team"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "GK evaluateScanResult: 2, PST: (team: TEAMID), (id: au.ronny.ReoView)",
        Gatekeeper, {"action": GatekeeperAction.SCAN, "result": "2", "team_id": "TEAMID",
                     "signing_id": "au.ronny.ReoView"},
        id="gk-evaluate-scan-result-short"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "Prompt shown (6, 0), waiting for response",
        Gatekeeper, {"action": GatekeeperAction.PROMPT, "result": "6, 0"},
        id="gk-prompt-shown"),
    pytest.param(
        "CoreServicesUIAgent", "", "present code-evaluation prompt",
        Gatekeeper, {"action": GatekeeperAction.PROMPT, "result": None},
        id="uiagent-code-evaluation-prompt"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "Cleared Gatekeeper rejection record sucessfully",
        Gatekeeper, {"action": GatekeeperAction.REJECTION_CLEARED}, id="gk-cleared-rejection-record"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "Clearing Gatekeeper denial breadcrumb",
        Gatekeeper, {"action": GatekeeperAction.REJECTION_CLEARED}, id="gk-clearing-denial-breadcrumb"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "Terminating process due to Gatekeeper rejection",
        Gatekeeper, {"action": GatekeeperAction.REJECTION}, id="gk-terminating-rejection"),
    pytest.param(
        "syspolicyd", SYSPOLICY, "Attempting to move malware to trash",
        Gatekeeper, {"action": GatekeeperAction.REJECTION}, id="gk-move-malware-to-trash"),
    pytest.param(
        "kernel", "",
        "ASP: Security policy would not allow process: 2718, "
        "/Users/alice/Downloads/DelightEd.app/Contents/MacOS/DelightEd",
        Gatekeeper, {"action": GatekeeperAction.BLOCKED_LAUNCH, "pid": 2718,
                     "path": "/Users/alice/Downloads/DelightEd.app/Contents/MacOS/DelightEd"},
        id="kernel-asp-blocked"),
    pytest.param(
        "kernel", "", "(AppleSystemPolicy) ASP: Security policy would not allow process: 2718, /tmp/x",
        Gatekeeper, {"action": GatekeeperAction.BLOCKED_LAUNCH, "pid": 2718, "path": "/tmp/x"},
        id="kernel-asp-blocked-sender-prefix"),
    pytest.param(
        "lsd", "com.apple.securityd",
        "SecTranslocateCreateSecureDirectoryForURL: created "
        "/private/var/folders/x4/abcd1234/T/AppTranslocation/B9651238-AAAA/d/DelightEd.app",
        Gatekeeper, {"action": GatekeeperAction.TRANSLOCATION,
                     "path": "/private/var/folders/x4/abcd1234/T/AppTranslocation/B9651238-AAAA/d/"
                             "DelightEd.app"},
        id="sectranslocate-created"),
    pytest.param(
        "Finder", "",
        "SecTranslocateCreateSecureDirectoryForURL: created "
        "/private/var/folders/dc/p5l3/T/AppTranslocation/CD6A/d/",
        Gatekeeper, {"action": GatekeeperAction.TRANSLOCATION,
                     "path": "/private/var/folders/dc/p5l3/T/AppTranslocation/CD6A/d"},
        id="sectranslocate-created-any-process-trailing-slash"),
]


@pytest.mark.parametrize(("process", "subsystem", "message", "kind", "expected"), GOLDEN)
def test_unifiedlog_catalog_message_maps_to_expected_event(
    process: str, subsystem: str, message: str, kind: type, expected: dict[str, Any]
) -> None:
    event = _one(_record(process, message, pid=4242, subsystem=subsystem))
    assert type(event) is kind
    for name, value in expected.items():
        assert getattr(event, name) == value, name
    assert event.message == message
    # The event's process is the one that logged the line, not the app the line is about.
    assert event.process.pid == 4242 and event.process.executable == IMAGES[process]


def test_unifiedlog_finder_send_action_activity_event_is_click() -> None:
    doc = _record("Finder", "sendAction:", eventType="activityCreateEvent", activityIdentifier=3121477)
    event = _one(doc)
    assert isinstance(event, AppActivity) and event.action is AppAction.CLICK


def test_unifiedlog_jamf_gatekeeper_fixture_message_is_blocked_launch() -> None:
    alert = json.loads((FIXTURES / "jamf_protect_samples" / "GPGatekeeperEvent.json").read_text())
    logged = alert["match"]["event"]
    doc = _record("kernel", logged["composedMessage"])
    doc["processImagePath"] = logged["processImagePath"]
    event = _one(doc)
    assert (event.action, event.pid, event.path) == (
        GatekeeperAction.BLOCKED_LAUNCH, 39357, "/Library/JMTTrader/CrashReporter")


# ---- near misses -------------------------------------------------------------------------------------------

NEAR_MISSES = [
    pytest.param("bluetoothd", "",
                 "Now tracking process: [app<application.com.nexy.assistant.1.2(501)>:23856]",
                 id="now-tracking-other-process"),
    pytest.param("runningboardd", "",
                 "Now tracking process: [osservice<com.apple.coreservices.uiagent(501)>:534]",
                 id="now-tracking-daemon-not-app"),
    pytest.param("runningboardd", "",
                 "Launch request for app<application.com.nexy.assistant.20753384.20753390(501)>[0] is using "
                 "uid 501", id="runningboard-launch-request"),
    pytest.param("CoreServicesUIAgent", "", "LAUNCH: com.nexy.assistant starting stopped process.",
                 id="uiagent-launch-without-psn"),
    pytest.param("Finder", "", "-[Application updateInformation] | Got App URL: file:///Applications/Nexy.app/",
                 id="app-url-other-process"),
    pytest.param("loginwindow", "", "ApplicationManager: Checked in app : Nexy", id="loginwindow-checked-in"),
    pytest.param("Finder", "", "AppKit sendAction:", id="send-action-wrong-prefix"),
    pytest.param("bluetoothd", "", "Formulating fatal 309 report for corpse[19035] Nexy",
                 id="crash-other-process"),
    pytest.param("ReportCrash", "", "Enabling urgent submission for process Nexy",
                 id="reportcrash-other-line"),
    pytest.param("lsd", SYSPOLICY, "GK performScan", id="gk-other-process"),
    pytest.param("syspolicyd", SYSPOLICY, "GK scan complete", id="gk-scan-complete"),
    pytest.param("syspolicyd", SYSPOLICY, "Prompt was shown earlier", id="prompt-wrong-prefix"),
    pytest.param("syspolicyd", "com.apple.syspolicy", "Clearing Gatekeeper denial breadcrumb",
                 id="breadcrumb-wrong-subsystem"),
    pytest.param("syspolicyd", "com.apple.syspolicy", "Terminating process due to Gatekeeper rejection",
                 id="terminating-wrong-subsystem"),
    pytest.param("syspolicyd", SYSPOLICY, "Cleared Gatekeeper rejection record successfully",
                 id="cleared-corrected-spelling"),
    pytest.param("syspolicyd", SYSPOLICY, "ASP: Security policy would not allow process: 2718, /tmp/x",
                 id="asp-not-kernel"),
    pytest.param("kernel", "", "AMFI: code signature validation failed.", id="kernel-amfi"),
    pytest.param("lsd", "", "SecTranslocateCreateSecureDirectoryForURL: failed", id="translocate-failed"),
]


@pytest.mark.parametrize(("process", "subsystem", "message"), NEAR_MISSES)
def test_unifiedlog_near_miss_is_unclassified(process: str, subsystem: str, message: str) -> None:
    doc = _record(process, message, subsystem=subsystem)
    assert unifiedlog.map_record(doc, REF, "h") == "unifiedlog:unclassified"


def test_unifiedlog_real_sandbox_record_is_unclassified() -> None:
    assert unifiedlog.map_record(REAL, REF, "mac-01") == "unifiedlog:unclassified"


def test_unifiedlog_loss_event_is_skipped() -> None:
    doc = _record("syspolicyd", "GK performScan", eventType="lossEvent")
    assert unifiedlog.map_record(doc, REF, "mac-01") == "unifiedlog:lossEvent"


def test_unifiedlog_other_event_type_still_classified() -> None:
    event = _one(_record("syspolicyd", "GK performScan", eventType="signpostEvent"))
    assert event.action is GatekeeperAction.SCAN


# ---- broken records ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("message", [None, 42, ["GK performScan"]])
def test_unifiedlog_message_not_string_raises_record_error(message: Any) -> None:
    with pytest.raises(RecordError, match="eventMessage"):
        unifiedlog.map_record(_record("syspolicyd", "x", eventMessage=message), REF, "mac-01")


@pytest.mark.parametrize("stamp", ["yesterday", None, 1668430737.23877, "2020-12-10 17:00:10.15x+0100"])
def test_unifiedlog_classified_record_bad_timestamp_raises_record_error(stamp: Any) -> None:
    with pytest.raises(RecordError, match="timestamp"):
        unifiedlog.map_record(_record("syspolicyd", "GK performScan", timestamp=stamp), REF, "mac-01")


def test_unifiedlog_unclassified_record_bad_timestamp_is_skipped_unparsed() -> None:
    doc = _record("bluetoothd", "Stopping LE scan", timestamp="yesterday")
    assert unifiedlog.map_record(doc, REF, "mac-01") == "unifiedlog:unclassified"


@pytest.mark.parametrize("image", [None, 7, ""])
def test_unifiedlog_bad_image_path_only_tries_any_process_patterns(image: Any) -> None:
    doc = _record("syspolicyd", "GK performScan", processImagePath=image)
    assert unifiedlog.map_record(doc, REF, "mac-01") == "unifiedlog:unclassified"
    doc["eventMessage"] = "Cleared Gatekeeper rejection record sucessfully"
    event = _one(doc)
    assert event.action is GatekeeperAction.REJECTION_CLEARED and event.process.executable is None


def test_unifiedlog_private_values_become_none() -> None:
    event = _one(_record("syspolicyd", "GK evaluateScanResult: 3, PST: (path: <private>), (team: <private>), "
                                       "(id: <private>), (bundle_id: (null)), 0"))
    assert (event.result, event.team_id, event.signing_id) == ("3", None, None)


# ---- the pattern file --------------------------------------------------------------------------------------


def test_unifiedlog_packaged_patterns_are_indexed_by_process() -> None:
    patterns = unifiedlog.PATTERNS
    ids = [p.id for p in patterns.patterns]
    assert len(ids) == len(set(ids)) and len(ids) >= 16
    # A process without patterns of its own meets only the few "*" patterns: the cheap path for most records.
    assert {p.id for p in patterns.candidates("bluetoothd")} == {
        "gk-cleared-rejection-record", "sectranslocate-created", "sectranslocate-removed-mountpoint",
        "diskimages-generic-unmount", "diskimages-generic-mount"}
    # The permissive "*" disk-image patterns are fenced by subsystem, checked before any text.
    assert all(p.subsystems or p.prefix for p in patterns.candidates("bluetoothd"))
    assert "runningboard-now-tracking" not in {p.id for p in patterns.candidates("syspolicyd")}
    assert all(p.line > 1 for p in patterns.patterns)


VALID = """\
version: 1
patterns:
  - id: a
    event: gatekeeper
    action: scan
    process: syspolicyd
    prefix: "GK performScan"
  - id: b
    event: app_activity
    action: launch
    process: [Dock, Finder]
    regex: '^open (?P<bundle_id>\\S+) pid (?P<pid>\\d+)'
"""


def test_unifiedlog_alternate_pattern_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "patterns.yaml"
    path.write_text(VALID)
    patterns = unifiedlog.load_patterns(path)
    assert [(p.id, p.line) for p in patterns.patterns] == [("a", 3), ("b", 8)]
    doc = _record("Finder", "open com.example.App pid 77")
    event = _one(doc, patterns=patterns)
    assert (event.action, event.bundle_id, event.pid) == (AppAction.LAUNCH, "com.example.App", 77)
    # The packaged set does not know this line; the alternate set does not know the packaged ones.
    assert unifiedlog.map_record(doc, REF, "h") == "unifiedlog:unclassified"
    assert unifiedlog.map_record(_record("Finder", "sendAction:"), REF, "h", patterns=patterns) == \
        "unifiedlog:unclassified"


INVALID = [
    pytest.param(VALID.replace("event: gatekeeper", "event: gatekeepr"), 4, "unknown event",
                 id="unknown-event"),
    pytest.param(VALID.replace("action: scan", "action: launch"), 5, "unknown gatekeeper action",
                 id="action-of-other-event"),
    pytest.param(VALID.replace("action: launch", "action: doubleclick"), 10, "unknown app_activity action",
                 id="unknown-action"),
    pytest.param(VALID.replace("(?P<pid>\\d+)'", "(?P<pid>\\d+'"), 12, "invalid regex", id="bad-regex"),
    pytest.param(VALID.replace("(?P<pid>", "(?P<team_id>"), 12, "not a app_activity field", id="wrong-group"),
    pytest.param(VALID.replace("  - id: b", "  - id: a"), 8, "duplicate id", id="duplicate-id"),
    pytest.param(VALID.replace('    prefix: "GK performScan"\n', ""), 3, "needs 'prefix'", id="no-matcher"),
    pytest.param(VALID.replace('    prefix: "GK performScan"', '    prefix: "GK"\n    contains: "scan"'), 8,
                 "not both", id="prefix-and-contains"),
    pytest.param(VALID.replace("process: syspolicyd", "process: /usr/libexec/syspolicyd"), 6, "'process'",
                 id="process-path-not-basename"),
    pytest.param(VALID.replace("process: [Dock, Finder]", "process: []"), 11, "'process'",
                 id="empty-process"),
    pytest.param(VALID.replace("    action: scan\n", "    action: scan\n    severity: high\n"), 6,
                 "unknown key", id="unknown-key"),
    pytest.param(VALID.replace("    action: scan\n", "    action: scan\n    action: prompt\n"), 6, "repeated",
                 id="repeated-key"),
    pytest.param(VALID.replace("  - id: b\n", "  - id: b\n    id: c\n"), 9, "repeated", id="repeated-id-key"),
    pytest.param(VALID.replace("process: [Dock, Finder]", "process: [Dock, Finder"), 12, "invalid YAML",
                 id="yaml-syntax"),
    pytest.param(VALID.replace("patterns:", "pattern:"), 2, "unknown top-level key", id="unknown-top-key"),
    pytest.param(VALID.replace("version: 1", "version: 2"), 1, "unsupported version", id="version"),
    pytest.param(VALID + "  - just a string\n", 13, "must be a mapping", id="entry-not-mapping"),
    pytest.param("- id: a\n", 1, "a pattern file is a mapping", id="top-level-list"),
    pytest.param(VALID.replace('prefix: "GK performScan"', "prefix: 42"), 7, "'prefix'",
                 id="prefix-not-string"),
    pytest.param(VALID.replace("process: syspolicyd", "process: syspolicyd\n    subsystem: ''"), 7,
                 "'subsystem'", id="empty-subsystem"),
]


@pytest.mark.parametrize(("text", "line", "reason"), INVALID)
def test_unifiedlog_invalid_pattern_file_raises_policy_error_with_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        unifiedlog.load_patterns(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line, caught.value
    assert reason in caught.value.reason
    assert f"{path}:{line}:" in str(caught.value)


def test_unifiedlog_merge_key_is_not_a_repeated_key() -> None:
    text = """\
patterns:
  - &gk
    id: a
    event: gatekeeper
    action: scan
    process: syspolicyd
    prefix: "GK performScan"
  - <<: *gk
    id: b
    prefix: "GK Xprotect results: "
"""
    patterns = unifiedlog.parse_patterns(text, "merge.yaml")
    assert [(p.id, p.prefix, p.line) for p in patterns.patterns] == [
        ("a", "GK performScan", 2), ("b", "GK Xprotect results: ", 8)]


@pytest.mark.parametrize("pid", ["²", "9" * 5000, "-1", "12a"])
def test_unifiedlog_unreadable_pid_group_becomes_none(pid: str) -> None:
    patterns = unifiedlog.parse_patterns(
        "patterns:\n  - {id: p, event: gatekeeper, action: blocked_launch, process: kernel,\n"
        "     regex: '^blocked (?P<pid>\\S+)$'}\n", "inline.yaml")
    event = _one(_record("kernel", f"blocked {pid}"), patterns=patterns)
    assert event.action is GatekeeperAction.BLOCKED_LAUNCH and event.pid is None


def test_unifiedlog_missing_pattern_file_raises_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        unifiedlog.load_patterns(tmp_path / "absent.yaml")


# ---- the sample file ---------------------------------------------------------------------------------------


def test_unifiedlog_sample_file_records_all_detected() -> None:
    docs = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines()]
    assert docs[-1] == {"count": len(docs) - 1, "finished": 1}
    assert all(detect_format(doc) is unifiedlog for doc in docs)
    assert all(doc["timestamp"].endswith("+0100") for doc in docs[:-1])
    # At least one traceID beyond int64, as real logs have.
    assert any(doc["traceID"] > 2**63 for doc in docs[:-1])


def test_unifiedlog_sample_file_yields_launch_and_gatekeeper_sequence() -> None:
    normalizer = Normalizer()
    events = list(normalizer.run(read_path(SAMPLE), "mac-01"))
    assert normalizer.stats.rejected == 0
    assert dict(normalizer.stats.skipped) == {"unifiedlog:unclassified": 5, "unifiedlog:trailer": 1}
    assert [(e.kind.value, e.action.value) for e in events] == [
        ("app_activity", "launch"), ("app_activity", "launch"), ("app_activity", "launch"),
        ("app_activity", "click"), ("gatekeeper", "translocation"), ("gatekeeper", "scan"),
        ("gatekeeper", "scan"), ("gatekeeper", "scan"), ("gatekeeper", "prompt"), ("gatekeeper", "prompt"),
        ("gatekeeper", "rejection_cleared"), ("app_activity", "launch"), ("app_activity", "launch"),
        ("app_activity", "launch"),
    ]
    assert all(e.host == "mac-01" for e in events)
    assert [e.time_ns for e in events] == sorted(e.time_ns for e in events)
    safari = events[0]
    assert (safari.bundle_id, safari.pid) == ("com.apple.Safari", 812)
    assert safari.process.display_name == "runningboardd"
    assert safari.time.isoformat() == "2026-03-02T09:15:02.118734+00:00"
    translocated = ("/private/var/folders/x4/abcd1234/T/AppTranslocation/"
                    "6A1F3C2E-0D4B-4F1A-9C3E-2B7D8E9F0A11/d/UpdateHelper.app")
    assert events[4].path == translocated
    assert events[6].path == "/Users/alice/Downloads/UpdateHelper.app"
    verdict = events[7]
    assert (verdict.result, verdict.team_id, verdict.signing_id) == ("0", None, "com.example.UpdateHelper")
    assert events[8].result == "6, 0"
    assert (events[11].bundle_id, events[11].pid) == ("com.example.UpdateHelper", 1377)
    assert (events[13].app_path, events[13].app_name) == (translocated, "UpdateHelper")


# ---- attacker-chosen text inside messages -----------------------------------------------------------------------
# Names and paths are whatever the attacker chose: the regexes anchor on Apple's fixed text, never on the name.
HOSTILE = 'Up"d[a]te"}]\n\u202e(x), y '

HOSTILE_GOLDEN = [
    pytest.param("lsd", f"SecTranslocateCreateSecureDirectoryForURL: created /private/var/folders/x4/T/"
                        f"AppTranslocation/B965/d/{HOSTILE}.app",
                 {"path": f"/private/var/folders/x4/T/AppTranslocation/B965/d/{HOSTILE}.app"},
                 id="translocation-newline"),
    pytest.param("kernel", f"ASP: Security policy would not allow process: 2718, /Users/u/{HOSTILE}.app/Contents/"
                           f"MacOS/{HOSTILE}",
                 {"pid": 2718, "path": f"/Users/u/{HOSTILE}.app/Contents/MacOS/{HOSTILE}"}, id="asp-newline"),
    pytest.param("syspolicyd", "GK Xprotect results: PST: (path: 3b7c), (team: (null)), (id: a,file:///fake.app/), "
                               "(bundle_id: x), XPScan: 0,-7676,2026-03-02 09:16:49 +0000,(null),"
                               "file:///Users/u/Up%22d%5Ba%5Dte%22%7D%5D%0A%E2%80%AE(x),%20y%20.app/",
                 {"path": f"/Users/u/{HOSTILE}.app"}, id="xprotect-last-url-with-comma"),
    pytest.param("syspolicyd", "GK evaluateScanResult: 0, PST: (path: 3b7c), (team: (null)), "
                               "(id: com.x), (id: y)), (bundle_id: com.x), 0, 0, 1, 0, 9, 4, 1",
                 {"result": "0", "signing_id": "com.x), (id: y)"}, id="signing-id-with-parentheses"),
    pytest.param("CoreServicesUIAgent", f"LAUNCH: 0x0-0x9b09b com.example.{HOSTILE} starting stopped process.",
                 {"bundle_id": f"com.example.{HOSTILE}"}, id="launch-bundle-id-with-spaces"),
    pytest.param("runningboardd", f"Now tracking process: [app<application.com.example.{HOSTILE}.1.2(3)>:9"
                                  ".2051882.2051890(501)>:1377]",
                 {"bundle_id": f"com.example.{HOSTILE}.1.2(3)>:9", "pid": 1377}, id="tracking-last-tail"),
    pytest.param("loginwindow", "-[Application updateInformation] | Got App URL: file:///Applications/"
                                "a,%20b%20(1).app/", {"app_path": "/Applications/a, b (1).app",
                                                      "app_name": "a, b (1)"}, id="app-url-comma"),
    pytest.param("ReportCrash", f"Formulating fatal 309 report for corpse[19035] {HOSTILE}",
                 {"pid": 19035, "app_name": HOSTILE}, id="crash-name-kept-with-trailing-space"),
]


@pytest.mark.parametrize(("process", "message", "expected"), HOSTILE_GOLDEN)
def test_unifiedlog_hostile_text_in_message_is_carried_whole(
    process: str, message: str, expected: dict[str, Any]
) -> None:
    event = _one(_record(process, message))
    for name, value in expected.items():
        assert getattr(event, name) == value, name


def test_unifiedlog_group_values_are_not_trimmed() -> None:
    event = _one(_record("lsd", "SecTranslocateCreateSecureDirectoryForURL: created /tmp/AppTranslocation/A/d/ x.app "))
    assert event.path == "/tmp/AppTranslocation/A/d/ x.app "


def test_unifiedlog_hostile_regexes_stay_linear_on_long_messages() -> None:
    import time

    messages = [
        "GK evaluateScanResult: 0, PST: (path: x), (team: (null)), (id: " + "), (bundle_id: " * 5000 + "x",
        "GK Xprotect results: " + "file://" * 15000,
        "Now tracking process: [app<application." + ".1.2(3)>:" * 10000,
        "SecTranslocateCreateSecureDirectoryForURL: created /" + "\n" * 100000,
    ]
    for message in messages:
        for pattern in unifiedlog.PATTERNS.patterns:
            if pattern.regex is not None:
                start = time.perf_counter()
                pattern.regex.search(message)
                assert time.perf_counter() - start < 0.5, pattern.id
