"""Elastic Defend / ECS source: golden tests on the real 7.10.1 macOS documents, crafted network documents.

The five ``elastic_macos_attack_dataset`` files are real Elastic Endpoint 7.10.1 documents (see
``shared/fixtures/README.md`` section 3). They hold no network, configuration or code-signature data, so
``events/mac-01/elastic-network.ndjson`` holds crafted documents built from the field inventory of
``elastic/endpoint-package`` ``custom_documentation/doc/endpoint/network/macos/*.md`` (host ``mac-01``:
osascript and curl ``connection_attempted``, and a curl ``disconnect_received``); their entity ids follow the
real ``<agent.id>-<pid>-<seconds since 1601>.<ns>`` encoding, and ``process.parent.entity_id`` follows the
macOS pre-exec-image quirk seen in the real exec documents.
"""

from __future__ import annotations

import base64
import copy
import json
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
    ProcessExit,
    ProcessFork,
    RawRef,
    SourceFormat,
    XattrAction,
    XattrChange,
)
from chainwatch.sources import Normalizer, detect_format, ecs
from chainwatch.sources.reader import Record, Rejection, read_path

REPO = Path(__file__).parents[3]
FIXTURES = REPO / ".." / "shared" / "fixtures"
DATASET = FIXTURES / "elastic_macos_attack_dataset"
NETWORK_FILE = REPO / "events" / "mac-01" / "elastic-network.ndjson"
REF = RawRef("test", line=1)

AGENT = "c2d9ce9a-fdef-a405-125c-171a91d0e54a"
HOST = "Sisis-MacBook-Pro.local"
# Entity ids of the real fixtures (as stored, base64), named so a failure shows which process is wrong.
SLACK_EXEC = "ecs:YzJkOWNlOWEtZmRlZi1hNDA1LTEyNWMtMTcxYTkxZDBlNTRhLTEwMTYwLTEzMjU0NDkzMTQ5LjU2MTY2OTAwMA=="
SLACK_PRE_IMAGE = ("ecs:YzJkOWNlOWEtZmRlZi1hNDA1LTEyNWMtMTcxYTkxZDBlNTRhLTEwMTYwLTEzMjU0NDkzMTQ5"
                   "LjU2MTE4MDAwMA==")
LAUNCHD_2021_01_07 = "ecs:YzJkOWNlOWEtZmRlZi1hNDA1LTEyNWMtMTcxYTkxZDBlNTRhLTEtMTE2NDQ0Nzg2ODguMA=="
OSASCRIPT_EXEC = ("ecs:YzJkOWNlOWEtZmRlZi1hNDA1LTEyNWMtMTcxYTkxZDBlNTRhLTEwMTYxLTEzMjU0NDkzMTQ5"
                  "LjY0MTAxMzAwMA==")
OSASCRIPT_PRE_IMAGE = ("ecs:YzJkOWNlOWEtZmRlZi1hNDA1LTEyNWMtMTcxYTkxZDBlNTRhLTEwMTYxLTEzMjU0NDkzMTQ5"
                       "LjYzODI0NDAwMA==")


def _entity(pid: int, start_1601: str, agent: str = AGENT) -> str:
    return base64.b64encode(f"{agent}-{pid}-{start_1601}".encode()).decode()


def _docs(path: Path) -> list[dict[str, Any]]:
    items = list(read_path(path))
    assert not [item for item in items if isinstance(item, Rejection)], items
    return [item.data for item in items if isinstance(item, Record)]


def _map_file(name: str) -> list[Any]:
    normalizer = Normalizer()
    events = list(normalizer.run(read_path(DATASET / name), "fallback-host"))
    assert normalizer.stats.rejected == 0
    return events


def _map(doc: dict[str, Any], host: str = "fallback-host") -> list[Any] | str:
    return ecs.map_record(doc, REF, host)


def _network_docs() -> list[dict[str, Any]]:
    return _docs(NETWORK_FILE)


def _jxa_doc() -> dict[str, Any]:
    return _docs(DATASET / "execution_scripting_jxa_osascript_apfell_dwnld.json")[0]


# --- detection ----------------------------------------------------------------------------------------------


def test_detect_all_fixture_and_crafted_documents_true() -> None:
    docs = [doc for path in sorted(DATASET.glob("*.json")) for doc in _docs(path)] + _network_docs()
    assert len(docs) == 12
    assert all(ecs.detect(doc) for doc in docs)
    assert all(detect_format(doc) is ecs for doc in docs)


def test_detect_eslogger_jamf_unifiedlog_ocsf_documents_false() -> None:
    others = _docs(FIXTURES / "eslogger" / "mullvad_eslogger_samples.jsonl")
    for path in sorted((FIXTURES / "jamf_protect_samples").glob("*.json")):
        others += _docs(path)
    others.append({"timestamp": "2020-12-10 17:00:10.150141+0100", "eventMessage": "x",
                   "eventType": "logEvent", "subsystem": "com.apple.syspolicy", "processID": 0})
    others.append({"class_uid": 1007, "activity_id": 1, "time": 1700000000000,
                   "metadata": {"version": "1.3.0"}, "process": {"pid": 4},
                   "@timestamp": "2024-01-01T00:00:00Z", "event": {"action": "x"}})
    assert len(others) == 11
    assert not any(ecs.detect(doc) for doc in others)


def test_detect_endpoint_dataset_without_timestamp_true() -> None:
    assert ecs.detect({"event": {"dataset": "endpoint.events.process", "action": "exec"}})
    assert not ecs.detect({"event": {"dataset": "winlogbeat"}})


# --- entity ids ---------------------------------------------------------------------------------------------


def test_decode_entity_id_fixture_id_splits_dashed_agent_pid_and_start() -> None:
    decoded = ecs.decode_entity_id(OSASCRIPT_PRE_IMAGE[4:])
    assert decoded == ecs.EntityId(AGENT, 10161, 1_610_019_549_638_244_000)


def test_decode_entity_id_unpadded_nanoseconds_read_as_integer() -> None:
    # "...-1957-13254830598.19467000" (real ancestry entry): 19 467 000 ns, not 0.19467 s.
    decoded = ecs.decode_entity_id(_entity(1957, "13254830598.19467000"))
    assert decoded is not None
    assert decoded.start_time_ns == (13254830598 - 11644473600) * 10**9 + 19_467_000
    launchd = ecs.decode_entity_id(LAUNCHD_2021_01_07[4:])
    assert launchd == ecs.EntityId(AGENT, 1, 5088 * 10**9)


@pytest.mark.parametrize("value", [
    "not base64 !",
    base64.b64encode(b"no-dashes").decode(),
    base64.b64encode(b"agent-12x-13254830598.1").decode(),
    base64.b64encode(b"\xff\xfe-1-2").decode(),
    "",
])
def test_decode_entity_id_garbage_none(value: str) -> None:
    assert ecs.decode_entity_id(value) is None


def test_decode_entity_id_bad_start_keeps_pid() -> None:
    decoded = ecs.decode_entity_id(_entity(42, "soon"))
    assert decoded == ecs.EntityId(AGENT, 42, None)
    assert ecs.decode_entity_id(_entity(42, "100.5")) == ecs.EntityId(AGENT, 42, None)  # before 1970


# --- golden: the five real files ----------------------------------------------------------------------------


def test_map_xattr_fixture_exec_without_parent_leaves_parent_none() -> None:
    events = _map_file("evasion_deletion_quarantine_xattr.json")
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ProcessExec)
    assert event.source is SourceFormat.ECS
    assert event.host == HOST
    assert event.time_ns == 1_610_534_217_267_070_000
    assert event.process is None
    target = event.target
    assert (target.pid, target.ppid) == (15127, None)
    assert (target.parent_entity_id, target.parent_executable) == (None, None)
    assert target.executable == "/usr/bin/xattr"
    assert target.args == ("xattr", "-d", "com.apple.quarantine", "./Downloads/bin")
    assert (target.uid, target.user) == (501, "sisi")
    assert target.signature is None
    assert target.start_time_ns == 1_610_534_217_267_070_000


def test_map_electron_fixture_kibana_triple_quoted_args_and_launchd_parent() -> None:
    events = _map_file("evasion_execution_electron_tcc_bypass_nodejs_childproc_osascript_apfell.json")
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ProcessExec)
    target = event.target
    assert (target.pid, target.entity_id, target.name) == (10160, SLACK_EXEC, "Slack")
    # The """triple-quoted""" Kibana string arrives intact, embedded quotes included.
    assert target.args[0] == "/Applications/Slack.app/Contents/MacOS/Slack"
    assert target.args[2].startswith('const { spawn } = require("child_process"); spawn("osascript"')
    assert "http://stagingserver/apfell.js" in target.args[2]
    # Two same-pid images (launchd fork, xpcproxy exec) precede Slack: the parent is launchd, not one of them.
    assert (target.ppid, target.parent_entity_id, target.parent_executable) == (1, LAUNCHD_2021_01_07,
                                                                                "/sbin/launchd")
    assert event.process is not None
    assert (event.process.pid, event.process.entity_id) == (10160, SLACK_PRE_IMAGE)
    assert event.process.parent_entity_id == LAUNCHD_2021_01_07


def test_map_jxa_fixture_exec_quirk_pre_image_and_slack_parent() -> None:
    events = _map_file("execution_scripting_jxa_osascript_apfell_dwnld.json")
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ProcessExec)
    assert event.time_ns == 1_610_019_549_641_013_000
    target = event.target
    assert (target.pid, target.entity_id, target.executable) == (10161, OSASCRIPT_EXEC, "/usr/bin/osascript")
    assert target.ppid == 10160
    assert target.parent_entity_id == SLACK_EXEC  # Ext.ancestry[1]
    assert target.parent_executable == "/Applications/Slack.app/Contents/MacOS/Slack"
    assert target.args[:4] == ("osascript", "-l", "JavaScript", "-e")
    assert target.start_time_ns == 1_610_019_549_641_013_000
    pre = event.process
    assert pre is not None
    assert (pre.pid, pre.entity_id) == (10161, OSASCRIPT_PRE_IMAGE)
    pre_decoded = ecs.decode_entity_id(pre.entity_id[4:])
    assert pre_decoded is not None and pre_decoded.pid == 10161
    assert pre.start_time_ns == 1_610_019_549_638_244_000  # 3 ms before the exec
    assert pre.executable is None  # what the pre-exec image ran is not stated


def test_map_jxa_and_electron_fixtures_link_osascript_to_slack_exec() -> None:
    slack = _map_file("evasion_execution_electron_tcc_bypass_nodejs_childproc_osascript_apfell.json")[0]
    osascript = _map_file("execution_scripting_jxa_osascript_apfell_dwnld.json")[0]
    assert osascript.target.parent_entity_id == slack.target.entity_id
    assert osascript.target.ppid == slack.target.pid


def test_map_zip_fixture_two_modifications_with_ancestry_parent() -> None:
    events = _map_file("evasion_susp_zip_file_launchagent_for_office_sandbox_evasion.json")
    assert [type(e) for e in events] == [FileWrite, FileWrite]
    assert [(e.action, e.path) for e in events] == [
        (FileAction.CLOSE_MODIFIED, "/Users/sisi/Library/~$p.zip"),
        (FileAction.CLOSE_MODIFIED, "/Users/sisi/Library/~$payload1.zip"),
    ]
    assert [e.time_ns for e in events] == [1_610_380_036_190_748_000, 1_610_380_163_717_421_000]
    actors = [e.process for e in events]
    assert [(a.pid, a.executable) for a in actors] == [(5996, "/bin/cp"), (6343, "/bin/cp")]
    # No process.parent in file events: the parent comes from the first ancestry entry of another pid.
    parent = "ecs:" + _entity(1959, "13254830598.227283000")
    assert [(a.ppid, a.parent_entity_id) for a in actors] == [(1959, parent), (1959, parent)]
    assert all(e.source_path is None for e in events)


def test_map_pkg_fixture_four_records_in_file_order() -> None:
    events = _map_file("execution_pkg_preinstall_shell_script_file_proc.json")
    assert [type(e) for e in events] == [ProcessExec, FileWrite, ProcessExec, ProcessExec]
    installer, rename, bash, osascript = events
    assert (installer.target.pid, installer.target.name, installer.target.ppid) == (6442, "Installer", 1)
    assert installer.process is not None and installer.process.pid == 6442
    assert rename.action is FileAction.RENAME
    assert rename.path == ("/private/var/folders/dl/sl_040js36q6tmyb7n9trrh80000gn/T/"
                           "com.apple.install.iTdFHZcB/preinstall")
    assert rename.source_path == ("/private/var/folders/dl/sl_040js36q6tmyb7n9trrh80000gn/T/"
                                  "com.apple.install.iTdFHZcB/.BC.T_f7oEB6")
    assert rename.process.entity_id == installer.target.entity_id
    assert bash.process is None
    assert (bash.target.pid, bash.target.ppid, bash.target.parent_entity_id) == (6411, None, None)
    assert bash.target.args == ("/bin/sh", "/var/folders/dl/sl_040js36q6tmyb7n9trrh80000gn/T/"
                                "com.apple.install.nwZMugGI/preinstall")
    assert (osascript.target.pid, osascript.target.ppid) == (6412, 6411)
    assert osascript.target.parent_entity_id == bash.target.entity_id
    assert osascript.process is not None and osascript.process.pid == 6412
    assert osascript.process.entity_id != osascript.target.entity_id


# --- network (crafted, real-shaped) -------------------------------------------------------------------------


def test_map_network_file_two_connections_and_disconnect_skipped() -> None:
    normalizer = Normalizer()
    events = list(normalizer.run(read_path(NETWORK_FILE), "fallback-host"))
    assert normalizer.stats.rejected == 0
    assert normalizer.stats.skipped == {"ecs:network/disconnect_received": 1}
    assert [type(e) for e in events] == [NetworkConnection, NetworkConnection]
    osa, curl = events
    assert osa.host == curl.host == "mac-01"
    assert osa.time_ns == 1_772_443_038_207_311_416  # nanoseconds kept
    assert (osa.dst_ip, osa.dst_port, osa.protocol, osa.hostname) == ("185.199.108.133", 443, "tcp", None)
    assert osa.direction is Direction.OUTBOUND  # no network.direction: connection_attempted is outbound
    assert (osa.src_ip, osa.src_port) == ("192.168.1.23", 51544)
    assert (curl.dst_ip, curl.hostname, curl.direction) == ("198.51.100.77", "cdn.update-check.example",
                                                            Direction.OUTBOUND)


def test_map_network_actor_parent_resolved_past_pre_exec_image() -> None:
    osa_doc, curl_doc, _ = _network_docs()
    osa = _map(osa_doc)[0]
    curl = _map(curl_doc)[0]
    assert osa.process.pid == 1382
    assert osa.process.entity_id == "ecs:" + osa_doc["process"]["entity_id"]
    bash = osa_doc["process"]["Ext"]["ancestry"][1]
    assert (osa.process.ppid, osa.process.parent_entity_id) == (1380, "ecs:" + bash)
    sh = curl_doc["process"]["Ext"]["ancestry"][1]
    assert (curl.process.pid, curl.process.ppid, curl.process.parent_entity_id) == (1381, 1380, "ecs:" + sh)
    signature = curl.process.signature
    assert signature is not None
    assert (signature.signing_id, signature.team_id, signature.signed, signature.trusted) == (
        "com.apple.curl", None, True, True)
    assert (curl.process.uid, curl.process.user) == (501, "alice")


@pytest.mark.parametrize(("action", "direction", "expected"), [
    ("connection_accepted", None, Direction.INBOUND),
    ("connection_attempted", "ingress", Direction.INBOUND),
    ("connection_attempted", "inbound", Direction.INBOUND),
    ("connection_attempted", "outbound", Direction.OUTBOUND),
    ("connection_attempted", "internal", Direction.OUTBOUND),
    ("connection_accepted", "egress", Direction.OUTBOUND),
])
def test_map_network_direction_from_action_and_field(action: str, direction: str | None,
                                                     expected: Direction) -> None:
    doc = copy.deepcopy(_network_docs()[0])
    doc["event"]["action"] = action
    if direction is None:
        doc["network"].pop("direction", None)
    else:
        doc["network"]["direction"] = direction
    event = _map(doc)[0]
    assert event.direction is expected


def test_map_network_address_only_used_as_ip_or_hostname() -> None:
    doc = copy.deepcopy(_network_docs()[0])
    doc["destination"] = {"address": "2001:db8::7", "port": "8443"}
    event = _map(doc)[0]
    assert (event.dst_ip, event.dst_port, event.hostname) == ("2001:db8::7", 8443, None)
    doc["destination"] = {"address": "c2.example.net", "port": 443}
    event = _map(doc)[0]
    assert (event.dst_ip, event.hostname) == (None, "c2.example.net")


def test_map_network_without_destination_record_error() -> None:
    doc = copy.deepcopy(_network_docs()[0])
    del doc["destination"]
    with pytest.raises(RecordError, match="destination"):
        _map(doc)


@pytest.mark.parametrize("action", ["disconnect_received", "lookup_requested", "lookup_result"])
def test_map_network_other_actions_skip_label(action: str) -> None:
    doc = copy.deepcopy(_network_docs()[0])
    doc["event"]["action"] = action
    assert _map(doc) == f"ecs:network/{action}"


# --- process fork / end / others ----------------------------------------------------------------------------


def _process_doc(action: str) -> dict[str, Any]:
    doc = copy.deepcopy(_jxa_doc())
    doc["event"]["action"] = action
    return doc


def test_map_fork_child_and_forker() -> None:
    doc = _process_doc("fork")
    slack = SLACK_EXEC[4:]
    child = _entity(10161, "13254493149.638244000")
    doc["process"].update({"entity_id": child, "executable": "/Applications/Slack.app/Contents/MacOS/Slack",
                           "name": "Slack"})
    doc["process"]["parent"]["entity_id"] = slack
    doc["process"]["Ext"]["ancestry"] = doc["process"]["Ext"]["ancestry"][1:]
    event = _map(doc)[0]
    assert isinstance(event, ProcessFork)
    assert (event.child.pid, event.child.entity_id) == (10161, "ecs:" + child)
    assert (event.child.ppid, event.child.parent_entity_id) == (10160, SLACK_EXEC)
    assert event.process is not None
    assert (event.process.pid, event.process.entity_id, event.process.name) == (10160, SLACK_EXEC, "Slack")
    assert event.process.start_time_ns == 1_610_019_549_561_669_000


def test_map_end_exit_code() -> None:
    doc = _process_doc("end")
    doc["process"]["exit_code"] = 137
    doc["event"]["type"] = ["end"]
    event = _map(doc)[0]
    assert isinstance(event, ProcessExit)
    assert (event.process.pid, event.process.entity_id, event.exit_status) == (10161, OSASCRIPT_EXEC, 137)
    assert event.signal is None


@pytest.mark.parametrize(("category", "action", "label"), [
    (["process"], "already_running", "ecs:process/already_running"),
    (["process"], None, "ecs:process/none"),
    (["file"], "deletion", "ecs:file/deletion"),
    (["file"], "endpoint_unquarantine", "ecs:file/endpoint_unquarantine"),
    (["file"], "launch_daemon", "ecs:file/launch_daemon"),
    (["configuration"], "tcc_modification", "ecs:configuration/tcc_modification"),
    (["api"], "task_for_pid", "ecs:api/task_for_pid"),
    (None, "exec", "ecs:none/exec"),
    ("intrusion_detection", "rule_detection", "ecs:intrusion_detection/rule_detection"),
])
def test_map_unused_events_skip_label(category: Any, action: str | None, label: str) -> None:
    doc = copy.deepcopy(_jxa_doc())
    doc["event"]["category"] = category
    doc["event"]["action"] = action
    assert _map(doc) == label


def test_map_exec_parent_of_other_pid_is_real_parent_without_pre_image() -> None:
    doc = copy.deepcopy(_jxa_doc())
    doc["process"]["parent"]["entity_id"] = SLACK_EXEC[4:]
    event = _map(doc)[0]
    assert event.process is None
    assert (event.target.ppid, event.target.parent_entity_id) == (10160, SLACK_EXEC)


def test_map_exec_undecodable_parent_id_taken_as_stated() -> None:
    doc = copy.deepcopy(_jxa_doc())
    doc["process"]["parent"]["entity_id"] = "opaque-parent-id"
    doc["process"]["entity_id"] = "opaque-child-id"
    event = _map(doc)[0]
    assert event.process is None
    assert event.target.parent_entity_id == "ecs:opaque-parent-id"
    assert event.target.entity_id == "ecs:opaque-child-id"
    assert event.target.start_time_ns is None


def test_map_exec_process_start_preferred_signature_and_cwd_mapped() -> None:
    doc = copy.deepcopy(_jxa_doc())
    doc["process"]["start"] = "2021-01-07T11:39:09.640000Z"
    doc["process"]["working_directory"] = "/Users/sisi"
    doc["process"]["code_signature"] = {"exists": True, "signing_id": "com.apple.osascript",
                                        "status": "trusted", "subject_name": "Software Signing"}
    doc["user"]["id"] = "501"
    target = _map(doc)[0].target
    assert target.start_time_ns == 1_610_019_549_640_000_000
    assert target.cwd == "/Users/sisi"
    assert target.uid == 501
    assert target.signature is not None
    assert (target.signature.signing_id, target.signature.signed, target.signature.trusted) == (
        "com.apple.osascript", True, True)


@pytest.mark.parametrize(("host_field", "expected"), [
    ({"name": "n1", "hostname": "h1", "id": "i1"}, "n1"),
    ({"hostname": "h1", "id": "i1"}, "h1"),
    ({"id": "i1"}, "i1"),
    ({}, "fallback-host"),
    ("not-an-object", "fallback-host"),
])
def test_map_host_field_precedence(host_field: Any, expected: str) -> None:
    doc = copy.deepcopy(_jxa_doc())
    doc["host"] = host_field
    assert _map(doc)[0].host == expected


# --- file xattr and configuration ---------------------------------------------------------------------------


def _file_doc(action: str, path: str = "/Users/alice/Downloads/Invoice.app") -> dict[str, Any]:
    doc = copy.deepcopy(_network_docs()[1])
    for key in ("destination", "source", "network"):
        del doc[key]
    doc["event"].update({"action": action, "category": ["file"], "dataset": "endpoint.events.file",
                         "type": ["change"]})
    doc["message"] = "Endpoint file event"
    doc["file"] = {"path": path, "name": path.rsplit("/", 1)[-1]}
    doc["process"]["parent"] = {"pid": 1380}
    return doc


def test_map_extended_attributes_delete_unknown_name_without_evidence() -> None:
    event = _map(_file_doc("extended_attributes_delete"))[0]
    assert isinstance(event, XattrChange)
    assert (event.action, event.name) == (XattrAction.DELETE, "unknown")
    assert event.path == "/Users/alice/Downloads/Invoice.app"
    assert event.quarantine is None
    assert (event.process.pid, event.process.ppid) == (1381, 1380)


def test_map_extended_attributes_delete_name_from_attributes_or_message() -> None:
    doc = _file_doc("extended_attributes_delete")
    doc["file"]["attributes"] = ["hidden", "com.apple.quarantine"]
    assert _map(doc)[0].name == "com.apple.quarantine"
    doc = _file_doc("extended_attributes_delete")
    doc["message"] = "Endpoint file event: com.apple.quarantine removed"
    assert _map(doc)[0].name == "com.apple.quarantine"


@pytest.mark.parametrize(("action", "expected"), [
    ("creation", FileAction.CREATE),
    ("modification", FileAction.CLOSE_MODIFIED),
    ("overwrite", FileAction.CLOSE_MODIFIED),
])
def test_map_file_write_actions(action: str, expected: FileAction) -> None:
    event = _map(_file_doc(action, "/Users/alice/Library/LaunchAgents/com.x.plist"))[0]
    assert isinstance(event, FileWrite)
    assert (event.action, event.path, event.source_path) == (expected, "/Users/alice/Library/LaunchAgents/"
                                                             "com.x.plist", None)


def test_map_file_without_path_record_error() -> None:
    doc = _file_doc("creation")
    doc["file"] = {"name": "x"}
    with pytest.raises(RecordError, match=r"file\.path"):
        _map(doc)


def test_map_gatekeeper_override_configuration_event() -> None:
    doc = _file_doc("gatekeeper_override", "/Users/alice/Downloads/Invoice.app")
    doc["event"].update({"category": ["configuration"], "dataset": "endpoint.events.configuration"})
    doc["file"]["hash"] = {"sha256": "ab" * 32}
    doc["file"]["code_signature"] = {"exists": True, "signing_id": "com.invoice.viewer",
                                     "team_id": "Q7ABCD1234", "trusted": False}
    event = _map(doc)[0]
    assert isinstance(event, Gatekeeper)
    assert event.action is GatekeeperAction.USER_OVERRIDE
    assert (event.path, event.sha256) == ("/Users/alice/Downloads/Invoice.app", "ab" * 32)
    assert (event.signing_id, event.team_id) == ("com.invoice.viewer", "Q7ABCD1234")
    assert event.host == "mac-01"
    assert event.process is not None and event.process.pid == 1381


# --- broken and hostile input -------------------------------------------------------------------------------


def test_normalizer_missing_timestamp_rejected_with_reason() -> None:
    doc = copy.deepcopy(_jxa_doc())
    del doc["@timestamp"]
    rejections: list[Rejection] = []
    normalizer = Normalizer(on_reject=rejections.append)
    assert normalizer.normalize(Record(doc, REF), "h") == []
    assert normalizer.stats.rejected == 1
    assert rejections[0].format_guess == "ecs"
    assert "timestamp" in rejections[0].reason
    with pytest.raises(RecordError):
        _map(doc)


def test_map_process_event_without_pid_record_error() -> None:
    doc = copy.deepcopy(_jxa_doc())
    doc["process"] = {"name": "osascript", "entity_id": "opaque"}
    with pytest.raises(RecordError, match="pid"):
        _map(doc)
    doc["process"] = "osascript"
    with pytest.raises(RecordError, match="process"):
        _map(doc)


_MUTATIONS: list[tuple[str, Any]] = [
    ("process.pid", "10161"),
    ("process.pid", True),
    ("process.pid", [1]),
    ("process.args", {"0": "osascript"}),
    ("process.args", "osascript -e x"),
    ("process.parent", ["Slack"]),
    ("process.parent.entity_id", 12345),
    ("process.parent.pid", "Slack"),
    ("process.Ext", "ancestry"),
    ("process.Ext.ancestry", "YzJk"),
    ("process.Ext.ancestry", [None, 5, {"a": 1}]),
    ("process.code_signature", ["x"]),
    ("process.code_signature", [{"signing_id": 5, "exists": "yes"}]),
    ("process.entity_id", ["x"]),
    ("process.start", 1610019549),
    ("process.start", "yesterday at noon"),
    ("process.exit_code", "zero"),
    ("user", "sisi"),
    ("user.id", -1.5),
    ("event", "exec"),
    ("event.category", 7),
    ("event.action", {"exec": True}),
    ("host", None),
    ("@timestamp", 1610019549),
    ("@timestamp", "2021-13-45T99:99:99Z"),
    ("file", "x"),
    ("destination", ["1.2.3.4"]),
]


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value


@pytest.mark.parametrize(("field", "value"), _MUTATIONS)
@pytest.mark.parametrize("base", ["exec", "end", "fork", "network", "file"])
def test_map_wrong_types_never_crash(base: str, field: str, value: Any) -> None:
    if base == "network":
        doc = copy.deepcopy(_network_docs()[0])
    elif base == "file":
        doc = _file_doc("rename")
    else:
        doc = _process_doc(base)
    try:
        _set(doc, field, value)
    except (KeyError, TypeError):
        pytest.skip(f"{field} does not exist in the {base} document")
    try:
        result = _map(doc)
    except RecordError as exc:
        assert exc.reason
        return
    assert isinstance(result, str | list)
    if isinstance(result, list):
        json.dumps([event.to_dict() for event in result], default=str)
