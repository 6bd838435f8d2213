"""Golden and negative tests for the Jamf Protect source (legacy AUE_* telemetry and GP* alerts).

The six vendor samples from ``jamf/jamfprotect`` (MIT, licence copied beside them) are kept in
``data/jamf_protect/`` so these tests do not depend on ``../shared``; one test checks the copies are
unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.errors import RecordError
from chainwatch.events import (
    Direction,
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    NetworkConnection,
    ProcessExec,
    RawRef,
    XattrAction,
    XattrChange,
)
from chainwatch.sources import Normalizer, jamf_protect
from chainwatch.sources.reader import Record, read_path

DATA = Path(__file__).parent / "data" / "jamf_protect"
SAMPLES = ("AUE_CONNECT", "AUE_EXECVE", "GPDownloadEvent", "GPGatekeeperEvent", "GPProcessEvent",
           "GPUnifiedLogEvent")
REF = RawRef("test", 1)
HOST = "fallback-host"


def _doc(name: str) -> dict[str, Any]:
    """The one record of a sample file, read through the reader (which opens the ``input`` envelope)."""
    items = list(read_path(DATA / f"{name}.json"))
    assert len(items) == 1 and isinstance(items[0], Record)
    data = items[0].data
    assert isinstance(data, dict)
    return data


def _map(doc: dict[str, Any]) -> list[Any] | str:
    return jamf_protect.map_record(doc, REF, HOST)


def _one(doc: dict[str, Any]) -> Any:
    result = _map(doc)
    assert isinstance(result, list) and len(result) == 1
    return result[0]


# ------------------------------------------------------------------------------------------- golden: fixtures


def test_jamf_execve_fixture_maps_exec_of_od_user_homes() -> None:
    event = _one(_doc("AUE_EXECVE"))
    assert isinstance(event, ProcessExec)
    # 1571164212 s + 223 ms
    assert event.time_ns == 1_571_164_212_223_000_000
    assert event.host == "VMAC-2C23RW4DY"
    assert event.script_path is None
    target = event.target
    assert (target.pid, target.ppid) == (25601, 25113)
    assert target.entity_id is None and target.start_time_ns is None
    assert target.executable == "/usr/libexec/od_user_homes"
    assert target.parent_executable == "/usr/libexec/automountd"
    assert target.args == ("/usr/libexec/od_user_homes", ".Trashes")
    assert (target.uid, target.user) == (0, "root")
    # The identity token is automountd's: it belongs to the image that called execve, not to the new one.
    assert target.signature is None
    assert event.process is not None and event.process.pid == 25601
    signature = event.process.signature
    assert signature is not None
    assert signature.signing_id == "com.apple.automountd"
    assert signature.team_id is None
    assert signature.cdhash == "707d307023c55cc510e33fc000cd2b4e0ac3fa48"


def test_jamf_connect_fixture_maps_outbound_connection_in_progress() -> None:
    event = _one(_doc("AUE_CONNECT"))
    assert isinstance(event, NetworkConnection)
    assert event.time_ns == 1_571_164_481_174_000_000
    assert event.host == "VMAC-2C23RW4DY"
    assert (event.dst_ip, event.dst_port) == ("127.0.0.1", 6468)
    assert event.protocol is None
    assert event.direction is Direction.OUTBOUND
    process = event.process
    assert process is not None
    assert process.pid == 11800 and process.entity_id is None
    # subject.process_name is "" in the sample: attribution is by pid and signature only.
    assert process.name is None and process.executable is None
    assert (process.uid, process.user) == (502, "john_appleseed")
    assert process.signature is not None
    assert process.signature.signing_id == "com.logi.ghub.agent"
    assert process.signature.team_id == "QED4VVPZWA"
    assert process.signature.cdhash == "13bf8bbe9e56bc3a1c81d6cc715777f7b4719283"


def test_jamf_download_fixture_maps_create_and_quarantine_xattr() -> None:
    result = _map(_doc("GPDownloadEvent"))
    assert isinstance(result, list) and len(result) == 2
    write, xattr = result
    path = "/Users/local-admin/Downloads/JamfConnect-2.27.0.dmg"
    assert isinstance(write, FileWrite)
    assert (write.action, write.path, write.process) == (FileAction.CREATE, path, None)
    assert write.time_ns == 1_695_830_406_620_384_000
    assert write.host == "VMAC-2C23RW4DY"
    assert isinstance(xattr, XattrChange)
    assert (xattr.action, xattr.path, xattr.name) == (XattrAction.SET, path, "com.apple.quarantine")
    # Only the xattr names are in the alert, not the quarantine string.
    assert xattr.quarantine is None
    assert xattr.time_ns == write.time_ns


def test_jamf_gatekeeper_fixture_maps_blocked_launch_with_installer_lineage() -> None:
    event = _one(_doc("GPGatekeeperEvent"))
    assert isinstance(event, Gatekeeper)
    assert event.action is GatekeeperAction.BLOCKED_LAUNCH
    assert event.time_ns == 1_668_430_737_238_770_000
    assert event.host == "VMAC-2C23RW4DY"
    assert (event.pid, event.path) == (39357, "/Library/JMTTrader/CrashReporter")
    assert event.message == (
        "ASP: Security policy would not allow process: 39357, /Library/JMTTrader/CrashReporter")
    assert event.result == "GatekeeperBlockedSigned"
    assert event.signing_id == "objc_remote_terminal-55554944d6c1e6211f423c65a8429e9a338a7989"
    assert event.team_id is None
    assert event.sha256 == "e352d6ea4da596abfdf51f617584611fc9321d5a6d1c22aff243aecdef8e7e55"
    process = event.process
    assert process is not None
    lineage = (process.pid, process.ppid, process.original_ppid, process.responsible_pid)
    assert lineage == (39357, 1, 39350, 39341)
    assert process.executable == "/Library/JMTTrader/CrashReporter"
    assert process.name == "CrashReporter"
    assert process.args == ("/Library/JMTTrader/CrashReporter", "Maintain")
    assert process.start_time_ns == 1_668_430_737_000_000_000
    assert process.entity_id == "pid:39357@1668430737000000000"
    assert process.responsible_entity_id == "pid:39341@1668430712000000000"
    # ppid 1 (launchd) is not among the related processes.
    assert process.parent_entity_id is None and process.parent_executable is None
    assert (process.uid, process.user) == (0, "root")
    assert process.signature is not None
    # base64 "W9uN/kJ8qSocOzBX6O0aZFr4gcg=" as hex, comparable with the telemetry's cd_hash.
    assert process.signature.cdhash == "5bdb8dfe427ca92a1c3b3057e8ed1a645af881c8"
    assert process.signature.signed is True


def test_jamf_process_alert_fixture_is_skipped_with_label() -> None:
    assert _map(_doc("GPProcessEvent")) == "jamf:alert/GPProcessEvent"


def test_jamf_unified_log_fixture_is_unwrapped_and_skipped_with_label() -> None:
    doc = _doc("GPUnifiedLogEvent")
    assert "caid" not in doc and doc["eventType"] == "GPUnifiedLogEvent"
    assert jamf_protect.detect(doc)
    assert _map(doc) == "jamf:alert/GPUnifiedLogEvent"


def test_jamf_normalizer_over_all_fixtures_counts_each_kind_once() -> None:
    normalizer = Normalizer()
    items = [item for name in SAMPLES for item in read_path(DATA / f"{name}.json")]
    events = list(normalizer.run(items, HOST))
    stats = normalizer.stats
    assert stats.records == 6 and stats.rejected == 0
    assert dict(stats.events) == {
        ("jamf", "process_exec"): 1,
        ("jamf", "network"): 1,
        ("jamf", "file_write"): 1,
        ("jamf", "xattr"): 1,
        ("jamf", "gatekeeper"): 1,
    }
    assert dict(stats.skipped) == {"jamf:alert/GPProcessEvent": 1, "jamf:alert/GPUnifiedLogEvent": 1}
    assert {event.host for event in events} == {"VMAC-2C23RW4DY"}


def test_jamf_fixture_copies_match_shared_fixtures(shared_fixtures: Path) -> None:
    for name in SAMPLES:
        shared = shared_fixtures / "jamf_protect_samples" / f"{name}.json"
        assert (DATA / f"{name}.json").read_bytes() == shared.read_bytes(), name


# ----------------------------------------------------------------------------------------------------- detect


def test_jamf_detect_all_samples_true() -> None:
    for name in SAMPLES:
        assert jamf_protect.detect(_doc(name)), name


@pytest.mark.parametrize(
    "doc",
    [
        # eslogger
        {"event": {"exec": {}}, "event_type": 9, "process": {}, "time": "2025-01-01T00:00:00Z"},
        # Elastic ECS
        {"@timestamp": "2020-12-10T16:00:10Z", "event": {"category": ["process"]}, "host": {"name": "m"}},
        # OCSF
        {"class_uid": 1007, "time": 1700000000000, "metadata": {"version": "1.8.0"}},
        # unified log ndjson: its eventType values do not start with GP
        {"eventType": "logEvent", "eventMessage": "x", "timestamp": "2025-01-01 00:00:00.000000+0000"},
        # wrong shapes of the Jamf keys
        {"header": {"event_name": "EXECVE"}},
        {"header": "AUE_EXECVE"},
        {"header": {"event_name": 23}},
        {"eventType": "GPDownloadEvent"},
        {"eventType": ["GPDownloadEvent"], "match": {}},
        {"caid": "x", "certid": "y", "input": {"eventType": "GPUnifiedLogEvent", "match": {}}},
    ],
)
def test_jamf_detect_other_formats_false(doc: dict[str, Any]) -> None:
    assert not jamf_protect.detect(doc)


def test_jamf_detect_shared_non_jamf_fixtures_false(shared_fixtures: Path) -> None:
    checked = 0
    for folder in ("eslogger", "elastic_macos_attack_dataset"):
        for path in sorted((shared_fixtures / folder).glob("*.json*")):
            for item in read_path(path):
                if isinstance(item, Record) and isinstance(item.data, dict):
                    assert not jamf_protect.detect(item.data), path.name
                    checked += 1
    assert checked >= 10


# ----------------------------------------------------------------------------------------- legacy: execve


def test_jamf_execve_args_object_orders_keys_numerically() -> None:
    doc = _doc("AUE_EXECVE")
    doc["exec_args"]["args"] = {
        "10": "j", "2": "b", "1": "a", "3": "c", "9": "i", "4": "d", "5": "e", "6": "f", "7": "g", "8": "h",
    }
    target = _one(doc).target
    # A string sort would put "10" before "2".
    assert target.args == ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")


def test_jamf_execve_args_object_drops_unusable_entries() -> None:
    doc = _doc("AUE_EXECVE")
    doc["exec_args"]["args"] = {
        "2": "second", "x": "not a position", "\u00b2": "superscript two", "1": "first", "3": 3,
        "9" * 20: "huge position",
    }
    assert _one(doc).target.args == ("first", "second")


def test_jamf_execve_args_list_kept_in_order() -> None:
    doc = _doc("AUE_EXECVE")
    doc["exec_args"]["args"] = ["/bin/sh", "-c", "id"]
    assert _one(doc).target.args == ("/bin/sh", "-c", "id")


def test_jamf_execve_args_missing_yields_empty_args() -> None:
    doc = _doc("AUE_EXECVE")
    del doc["exec_args"]
    assert _one(doc).target.args == ()


def test_jamf_execve_script_path_tokens_map_interpreter_and_script() -> None:
    doc = _doc("AUE_EXECVE")
    doc["path"] = ["/Users/u/Downloads/run.sh", "/Users/u/Downloads/run.sh", "/bin/bash"]
    event = _one(doc)
    assert event.target.executable == "/bin/bash"
    assert event.script_path == "/Users/u/Downloads/run.sh"


def test_jamf_execve_symlinked_path_uses_kernel_path() -> None:
    doc = _doc("AUE_EXECVE")
    doc["path"] = ["/usr/local/bin/python3", "/opt/homebrew/Cellar/python@3.12/3.12.1/bin/python3.12"]
    event = _one(doc)
    assert event.target.executable == "/opt/homebrew/Cellar/python@3.12/3.12.1/bin/python3.12"
    assert event.script_path is None


def test_jamf_execve_single_path_uses_it() -> None:
    doc = _doc("AUE_EXECVE")
    doc["path"] = ["/usr/bin/curl"]
    assert _one(doc).target.executable == "/usr/bin/curl"


def test_jamf_execve_no_path_falls_back_to_subject_process_name() -> None:
    doc = _doc("AUE_EXECVE")
    del doc["path"]
    doc["subject"]["process_name"] = "/usr/bin/osascript"
    assert _one(doc).target.executable == "/usr/bin/osascript"


def test_jamf_execve_failed_return_is_skipped() -> None:
    doc = _doc("AUE_EXECVE")
    doc["return"] = {
        "description": "failure : No such file or directory", "error": 2, "return_value": 4294967295,
    }
    assert _map(doc) == "jamf:AUE_EXECVE(failed)"


def test_jamf_execve_without_identity_has_no_pre_exec_image() -> None:
    doc = _doc("AUE_EXECVE")
    del doc["identity"]
    event = _one(doc)
    assert event.process is None
    assert event.target.pid == 25601


def test_jamf_execve_uid_falls_back_to_real_user() -> None:
    doc = _doc("AUE_EXECVE")
    del doc["subject"]["effective_user_id"]
    doc["subject"]["user_id"] = 501
    doc["subject"]["user_name"] = "alice"
    target = _one(doc).target
    assert (target.uid, target.user) == (501, "alice")


def test_jamf_execve_without_host_info_uses_host_argument() -> None:
    doc = _doc("AUE_EXECVE")
    del doc["host_info"]
    assert _one(doc).host == HOST


# ----------------------------------------------------------------------------------------- legacy: connect


def test_jamf_connect_refused_still_maps_attempt() -> None:
    doc = _doc("AUE_CONNECT")
    doc["return"] = {"description": "failure : Connection refused", "error": 61, "return_value": 4294967295}
    doc["socket_inet"]["ip_address"] = "203.0.113.7"
    doc["socket_inet"]["port"] = 443
    event = _one(doc)
    assert isinstance(event, NetworkConnection)
    assert (event.dst_ip, event.dst_port) == ("203.0.113.7", 443)


def test_jamf_connect_unix_family_is_skipped() -> None:
    doc = _doc("AUE_CONNECT")
    doc["socket_inet"]["family"] = 1
    assert _map(doc) == "jamf:AUE_CONNECT(unix)"


def test_jamf_connect_without_address_is_skipped() -> None:
    doc = _doc("AUE_CONNECT")
    del doc["socket_inet"]
    doc["socket_unix"] = {"family": 1, "path": "/var/run/mDNSResponder"}
    assert _map(doc) == "jamf:AUE_CONNECT(no address)"


def test_jamf_connect_invalid_port_maps_without_port() -> None:
    doc = _doc("AUE_CONNECT")
    doc["socket_inet"]["port"] = 70000
    assert _one(doc).dst_port is None


def test_jamf_connect_process_name_path_becomes_executable() -> None:
    doc = _doc("AUE_CONNECT")
    doc["subject"]["process_name"] = "/usr/bin/curl"
    process = _one(doc).process
    assert (process.executable, process.name, process.display_name) == ("/usr/bin/curl", None, "curl")


def test_jamf_connect_process_name_plain_becomes_name() -> None:
    doc = _doc("AUE_CONNECT")
    doc["subject"]["process_name"] = "lghub_agent"
    process = _one(doc).process
    assert (process.executable, process.name) == (None, "lghub_agent")


# ------------------------------------------------------------------------------------------- legacy: others


def test_jamf_other_aue_event_is_skipped_with_its_name() -> None:
    doc = _doc("AUE_CONNECT")
    doc["header"]["event_name"] = "AUE_FORK"
    assert _map(doc) == "jamf:AUE_FORK"


def test_jamf_hostile_aue_name_gets_bounded_label() -> None:
    doc = _doc("AUE_CONNECT")
    doc["header"]["event_name"] = "AUE_" + "x" * 500
    assert _map(doc) == "jamf:other"


# ------------------------------------------------------------------------------------ legacy: broken records


@pytest.mark.parametrize("sample", ["AUE_EXECVE", "AUE_CONNECT"])
def test_jamf_missing_header_time_raises_record_error(sample: str) -> None:
    doc = _doc(sample)
    del doc["header"]["time_seconds_epoch"]
    with pytest.raises(RecordError, match="time_seconds_epoch"):
        _map(doc)


@pytest.mark.parametrize("value", ["1571164212", 1571164212.5, True, None, -1, 10**20])
def test_jamf_invalid_header_seconds_raises_record_error(value: Any) -> None:
    doc = _doc("AUE_EXECVE")
    doc["header"]["time_seconds_epoch"] = value
    with pytest.raises(RecordError, match="time_seconds_epoch"):
        _map(doc)


@pytest.mark.parametrize("value", ["223", 1000, -1, 2.5, None])
def test_jamf_invalid_header_millis_raises_record_error(value: Any) -> None:
    doc = _doc("AUE_CONNECT")
    doc["header"]["time_milliseconds_offset"] = value
    with pytest.raises(RecordError, match="time_milliseconds_offset"):
        _map(doc)


def test_jamf_missing_header_millis_counts_as_zero() -> None:
    doc = _doc("AUE_CONNECT")
    del doc["header"]["time_milliseconds_offset"]
    assert _one(doc).time_ns == 1_571_164_481_000_000_000


@pytest.mark.parametrize("value", [None, "abc", -5, [11800], True])
def test_jamf_invalid_subject_pid_raises_record_error(value: Any) -> None:
    doc = _doc("AUE_CONNECT")
    doc["subject"]["process_id"] = value
    with pytest.raises(RecordError, match="process_id"):
        _map(doc)


def test_jamf_subject_not_object_raises_record_error() -> None:
    doc = _doc("AUE_EXECVE")
    doc["subject"] = [1, 2]
    with pytest.raises(RecordError, match="subject"):
        _map(doc)


def test_jamf_non_jamf_doc_raises_record_error() -> None:
    with pytest.raises(RecordError, match="not a Jamf Protect record"):
        _map({"event": {"exec": {}}, "process": {}})


# ------------------------------------------------------------------------------------------------ alerts


def test_jamf_wrapped_alert_passed_directly_is_unwrapped() -> None:
    inner = _doc("GPUnifiedLogEvent")
    assert _map({"caid": "c", "certid": "d", "input": inner}) == "jamf:alert/GPUnifiedLogEvent"


def test_jamf_download_with_matching_related_process_attributes_writer() -> None:
    doc = _doc("GPDownloadEvent")
    gatekeeper = _doc("GPGatekeeperEvent")
    doc["related"]["processes"] = gatekeeper["related"]["processes"]
    doc["match"]["event"]["pid"] = 39341
    result = _map(doc)
    assert isinstance(result, list)
    for event in result:
        assert event.process is not None
        assert (event.process.pid, event.process.name) == (39341, "Installer")
        assert event.process.entity_id == "pid:39341@1668430712000000000"


def test_jamf_download_with_unknown_pid_keeps_pid_only_process() -> None:
    doc = _doc("GPDownloadEvent")
    doc["match"]["event"]["pid"] = 4242
    write = _map(doc)[0]
    assert write.process is not None and write.process.pid == 4242 and write.process.executable is None


def test_jamf_download_without_quarantine_xattr_yields_only_file_write() -> None:
    doc = _doc("GPDownloadEvent")
    doc["related"]["files"][0]["xattrs"] = ["com.apple.macl"]
    result = _map(doc)
    assert isinstance(result, list) and [type(event) for event in result] == [FileWrite]


def test_jamf_download_without_path_raises_record_error() -> None:
    doc = _doc("GPDownloadEvent")
    del doc["match"]["event"]["path"]
    with pytest.raises(RecordError, match="path"):
        _map(doc)


@pytest.mark.parametrize("value", [None, "1695830406.620384", math.nan, math.inf, -1.0, True])
def test_jamf_download_invalid_timestamp_raises_record_error(value: Any) -> None:
    doc = _doc("GPDownloadEvent")
    doc["match"]["event"]["timestamp"] = value
    with pytest.raises(RecordError, match="timestamp"):
        _map(doc)


def test_jamf_download_without_host_uses_host_argument() -> None:
    doc = _doc("GPDownloadEvent")
    del doc["host"]
    assert all(event.host == HOST for event in _map(doc))


def test_jamf_gatekeeper_without_message_falls_back_to_match_event() -> None:
    doc = _doc("GPGatekeeperEvent")
    del doc["match"]["event"]["composedMessage"]
    event = _one(doc)
    assert (event.pid, event.path, event.message) == (39357, "/Library/JMTTrader/CrashReporter", None)
    assert event.process is not None and event.process.original_ppid == 39350


def test_jamf_gatekeeper_without_any_target_is_skipped() -> None:
    doc = _doc("GPGatekeeperEvent")
    event = doc["match"]["event"]
    for key in ("composedMessage", "pid", "path"):
        del event[key]
    assert _map(doc) == "jamf:alert/GPGatekeeperEvent(no target)"


def test_jamf_gatekeeper_blocked_process_not_related_gets_minimal_process() -> None:
    doc = _doc("GPGatekeeperEvent")
    doc["related"]["processes"] = []
    event = _one(doc)
    assert event.process is not None
    assert (event.process.pid, event.process.executable, event.process.entity_id) == (
        39357, "/Library/JMTTrader/CrashReporter", None)
    # The signature still comes from related.binaries.
    assert event.signing_id == "objc_remote_terminal-55554944d6c1e6211f423c65a8429e9a338a7989"


def test_jamf_unified_log_alert_with_asp_denial_maps_blocked_launch() -> None:
    doc = _doc("GPUnifiedLogEvent")
    doc["match"]["event"]["composedMessage"] = (
        "ASP: Security policy would not allow process: 2718, "
        "/Users/u/Downloads/DelightEd.app/Contents/MacOS/DelightEd")
    event = _one(doc)
    assert isinstance(event, Gatekeeper)
    assert event.action is GatekeeperAction.BLOCKED_LAUNCH
    assert (event.pid, event.path) == (2718, "/Users/u/Downloads/DelightEd.app/Contents/MacOS/DelightEd")
    assert event.host == "PCJVW6XJGM"
    assert event.time_ns == 1_699_432_944_315_508_000
    assert event.process is not None and event.process.pid == 2718


def test_jamf_unsigned_signing_info_maps_signed_false() -> None:
    doc = _doc("GPGatekeeperEvent")
    info = doc["related"]["processes"][0]["signingInfo"]
    info.update({"appid": "", "status": -67062, "signerType": 4, "statusMessage": "not signed at all"})
    del info["cdhash"]
    signature = _one(doc).process.signature
    assert (signature.signed, signature.signing_id, signature.cdhash) == (False, None, None)


def test_jamf_other_alert_is_skipped_with_its_type() -> None:
    doc = _doc("GPProcessEvent")
    doc["eventType"] = "GPFSEvent"
    assert _map(doc) == "jamf:alert/GPFSEvent"


# ------------------------------------------------------------------------------ hostile input never crashes


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


_WRONG = (None, True, -1, 2**70, 1.5, math.nan, "", "x", [], {}, ["a"], {"1": 2})


@pytest.mark.parametrize("sample", ["AUE_EXECVE", "AUE_CONNECT", "GPDownloadEvent", "GPGatekeeperEvent"])
def test_jamf_every_field_with_wrong_type_maps_or_raises_record_error(sample: str) -> None:
    original = _doc(sample)
    outcomes = 0
    for path in _paths(original):
        for wrong in _WRONG:
            doc = copy.deepcopy(original)
            parent = doc
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = wrong
            try:
                result = _map(doc)
            except RecordError:
                outcomes += 1
                continue
            assert isinstance(result, (list, str))
            outcomes += 1
    assert outcomes > 100
