"""Golden tests for the eslogger source, built from the real mullvad eslogger lines (macOS 15 and 26)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from chainwatch.errors import RecordError
from chainwatch.events import (
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    RawRef,
    XattrAction,
    XattrChange,
)
from chainwatch.sources import eslogger

DATA = Path(__file__).parent / "data" / "eslogger_mullvad.jsonl"
REF = RawRef("test", 1)


def _lines() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in DATA.read_bytes().splitlines()]


def _with_event(name: str, payload: dict[str, Any], number: int) -> dict[str, Any]:
    """The real exit line (macOS 15, object audit tokens) carrying another event payload."""
    doc = copy.deepcopy(_lines()[0])
    doc["event"] = {name: payload}
    doc["event_type"] = number
    return doc


def _one(doc: dict[str, Any]) -> Any:
    result = eslogger.map_record(doc, REF, "mac-01")
    assert isinstance(result, list) and len(result) == 1
    return result[0]


def test_eslogger_exec_object_tokens_maps_pre_image_and_target() -> None:
    event = _one(_lines()[1])
    assert isinstance(event, ProcessExec)
    assert event.process is not None and event.process.entity_id == "es:97391:149091"
    assert event.process.executable == "/bin/nu"
    target = event.target
    assert (target.pid, target.entity_id, target.ppid) == (97391, "es:97391:149092", 58916)
    assert target.parent_entity_id == "es:58916:87724"
    assert target.parent_executable == "/bin/nu"
    assert target.executable == "/bin/connection-checker"
    assert target.args == ("/bin/connection-checker",)
    assert target.cwd == "/bin/mullvadvpn-app"
    assert target.responsible_pid == 938
    assert target.signature is not None and target.signature.signing_id == "connection_checker-04fde7bdb8bceee3"
    assert event.time_ns == 1754572895880814738  # all nine fractional digits kept


def test_eslogger_fork_array_tokens_maps_child_identity() -> None:
    event = _one(_lines()[2])
    assert isinstance(event, ProcessFork)
    assert event.process is not None and event.process.entity_id == "es:19745:35165"
    assert (event.child.pid, event.child.entity_id) == (21497, "es:21497:38282")
    assert event.child.signature is not None
    assert event.child.signature.team_id == "CKG9MXH72F" and event.child.signature.validation_category == 6
    assert event.child.uid == 501


def test_eslogger_exit_clean_status_has_no_signal() -> None:
    event = _one(_lines()[0])
    assert isinstance(event, ProcessExit)
    assert (event.exit_status, event.signal) == (0, None)


@pytest.mark.parametrize(("stat", "expected"), [(11, (None, 11)), (256, (1, None)), (6 | 0x80, (None, 6))])
def test_eslogger_exit_wait_status_decodes_signal_or_code(stat: int, expected: tuple[Any, Any]) -> None:
    event = _one(_with_event("exit", {"stat": stat}, 15))
    assert (event.exit_status, event.signal) == expected


def test_eslogger_create_existing_file_maps_path() -> None:
    doc = _with_event("create", {"destination_type": 0, "destination": {
        "existing_file": {"path": "/Users/u/Downloads/x.zip", "path_truncated": False}}, "acl": None}, 13)
    event = _one(doc)
    assert isinstance(event, FileWrite) and event.action is FileAction.CREATE
    assert event.path == "/Users/u/Downloads/x.zip"


def test_eslogger_create_new_path_joins_dir_and_filename() -> None:
    doc = _with_event("create", {"destination_type": 1, "destination": {
        "new_path": {"dir": {"path": "/Users/u/Library/LaunchAgents"}, "filename": "a.plist", "mode": 420}}}, 13)
    assert _one(doc).path == "/Users/u/Library/LaunchAgents/a.plist"


def test_eslogger_rename_keeps_both_paths() -> None:
    doc = _with_event("rename", {"source": {"path": "/Users/u/Downloads/x.zip.download/x.zip"},
                                 "destination_type": 1,
                                 "destination": {"new_path": {"dir": {"path": "/Users/u/Downloads"},
                                                              "filename": "x.zip"}}}, 25)
    event = _one(doc)
    assert event.action is FileAction.RENAME
    assert (event.source_path, event.path) == ("/Users/u/Downloads/x.zip.download/x.zip", "/Users/u/Downloads/x.zip")


def test_eslogger_close_modified_is_a_write_and_unmodified_is_skipped() -> None:
    modified = _with_event("close", {"modified": True, "was_mapped_writable": False,
                                     "target": {"path": "/Users/u/Library/LaunchAgents/a.plist"}}, 12)
    assert _one(modified).action is FileAction.CLOSE_MODIFIED
    unmodified = _with_event("close", {"modified": False, "target": {"path": "/etc/hosts"}}, 12)
    assert eslogger.map_record(unmodified, REF, "h") == "eslogger:close(unmodified)"


def test_eslogger_setextattr_quarantine_maps_xattr_change() -> None:
    doc = _with_event("setextattr", {"target": {"path": "/Users/u/Downloads/a.dmg"},
                                     "extattr": "com.apple.quarantine"}, 27)
    event = _one(doc)
    assert isinstance(event, XattrChange) and event.action is XattrAction.SET
    assert (event.path, event.name) == ("/Users/u/Downloads/a.dmg", "com.apple.quarantine")


def test_eslogger_deleteextattr_maps_delete() -> None:
    doc = _with_event("deleteextattr", {"target": {"path": "/Users/u/Downloads/a.app"},
                                        "extattr": "com.apple.quarantine"}, 70)
    assert _one(doc).action is XattrAction.DELETE


def test_eslogger_gatekeeper_user_override_path_string_and_file_forms() -> None:
    as_string = _with_event("gatekeeper_user_override", {"file_type": 0, "file": "/Users/u/Downloads/A.app",
                                                         "sha256": None, "signing_info": None}, 146)
    event = _one(as_string)
    assert isinstance(event, Gatekeeper) and event.action is GatekeeperAction.USER_OVERRIDE
    assert event.path == "/Users/u/Downloads/A.app"
    as_file = _with_event("gatekeeper_user_override", {
        "file_type": 1, "file": {"path": "/Users/u/Downloads/B.app"}, "sha256": "ab" * 32,
        "signing_info": {"cdhash": "00", "signing_id": "com.b", "team_id": "TEAM123456"}}, 146)
    event = _one(as_file)
    assert (event.path, event.signing_id, event.team_id) == ("/Users/u/Downloads/B.app", "com.b", "TEAM123456")


def test_eslogger_unused_event_is_counted_by_name_not_number() -> None:
    # event_type says 12 (close) but the payload is "open": the name inside `event` decides.
    doc = _with_event("open", {"fflag": 1, "file": {"path": "/etc/hosts"}}, 12)
    assert eslogger.map_record(doc, REF, "h") == "eslogger:open"


def test_eslogger_audit_token_shapes_agree() -> None:
    as_object = {"auid": 501, "euid": 501, "egid": 20, "ruid": 501, "rgid": 20, "pid": 21497, "asid": 100013,
                 "pidversion": 38282}
    as_array = [501, 501, 20, 501, 20, 21497, 100013, 38282]
    assert eslogger.audit_token(as_object) == eslogger.audit_token(as_array)
    assert eslogger.audit_token([1, 2, 3]) is None
    assert eslogger.audit_token("501-501-20-501-20-21497-100013-38282") == eslogger.audit_token(as_array)


def test_eslogger_missing_audit_token_raises_record_error() -> None:
    doc = copy.deepcopy(_lines()[0])
    del doc["process"]["audit_token"]
    with pytest.raises(RecordError, match="audit_token"):
        eslogger.map_record(doc, REF, "h")


def test_eslogger_two_event_names_raise_record_error() -> None:
    doc = _with_event("exit", {"stat": 0}, 15)
    doc["event"]["fork"] = {}
    with pytest.raises(RecordError, match="exactly one"):
        eslogger.map_record(doc, REF, "h")


def test_eslogger_detect_accepts_mac_monitor_extras() -> None:
    doc = _lines()[1]
    doc.update({"es_event_type": "ES_EVENT_TYPE_NOTIFY_EXEC", "telemetry_version": "1.0.0", "sensor_id": "x"})
    assert eslogger.detect(doc)
    assert isinstance(_one(doc), ProcessExec)
