"""OCSF 1.x events (Amazon Security Lake custom sources, EDR exports) as JSON lines.

Facts this module relies on (``shared/reference/macos-telemetry.md`` section 6 and the OCSF schema):

- ``class_uid = category_uid * 1000 + class``, ``type_uid = class_uid * 100 + activity_id``; ``time`` is a
  ``timestamp_t``, **milliseconds** since the epoch (``created_time`` too);
- the classes chainwatch maps are Process Activity (1007: 1 Launch, 2 Terminate), File System Activity (1001:
  1 Create, 3 Update, 5 Rename, 6 Set Attributes) and Network Activity (4001: 1 Open, 4 Fail, 5 Refuse,
  6 Traffic); every other class or activity is counted as unused;
- on 1007 ``process`` is the process launched or terminated and ``actor.process`` the one that did it; on 1001
  and 4001 ``actor.process`` is the process acting. ``launch_type_id`` (1 Spawn, 2 Fork, 3 Exec) says whether
  ``actor.process`` is the parent (spawn, fork) or the pre-exec image of the same pid (exec);
- a process object carries ``pid``, ``uid`` (producer-assigned, unique per process), ``created_time``,
  ``cmd_line`` (one string), ``file{path, signature{developer_uid = Apple team id, state_id}}``, ``user{uid}``
  and ``parent_process``; ``connection_info.direction_id`` is 0 Unknown, 1 Inbound, 2 Outbound, 3 Lateral,
  99 Other; in Network Activity ``src_endpoint`` is the initiator and ``dst_endpoint`` the responder.

Decisions where the format is silent:

- Network Fail (4) and Refuse (5) map like Open and Traffic: an attempted egress is evidence even when it did
  not connect. Close (2), Reset (3) and Listen (7) are skipped: Close and Reset repeat a flow already reported
  as Open, and a listening socket is not egress.
- Direction Lateral (3) and Other (99) become :attr:`Direction.UNKNOWN`: "lateral" names a network boundary,
  not which side initiated, so it cannot be called outbound.
- File Update (3) maps to ``CLOSE_MODIFIED`` (the file's content changed), like eslogger's ``close`` with
  ``modified``.
- OCSF has no signing-identifier field; ``signing_id`` stays ``None`` rather than being guessed from a
  certificate subject.
"""

from __future__ import annotations

import math
import shlex
from functools import lru_cache
from typing import Any

from chainwatch.errors import RecordError
from chainwatch.events import (
    AnyEvent,
    CodeSignature,
    Direction,
    FileAction,
    FileWrite,
    NetworkConnection,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    ProcessRef,
    RawRef,
    SourceFormat,
    XattrAction,
    XattrChange,
    parse_quarantine,
)
from chainwatch.sources.common import as_dict, as_int, as_str, as_str_tuple, parse_time_ns

FORMAT = SourceFormat.OCSF

PROCESS_ACTIVITY = 1007
FILE_SYSTEM_ACTIVITY = 1001
NETWORK_ACTIVITY = 4001
QUARANTINE_XATTR = "com.apple.quarantine"

#: File System Activity ``activity_id`` -> file action (6 Set Attributes is handled as xattr changes).
FILE_ACTIONS = {1: FileAction.CREATE, 3: FileAction.CLOSE_MODIFIED}
FILE_RENAME = 5
FILE_SET_ATTRIBUTES = 6
#: Network Activity ``activity_id`` values mapped to a connection: Open, Fail, Refuse, Traffic.
NETWORK_MAPPED = frozenset({1, 4, 5, 6})
#: ``connection_info.direction_id`` -> direction; every other value is unknown (see module docstring).
DIRECTIONS = {1: Direction.INBOUND, 2: Direction.OUTBOUND}
_DIRECTION_NAMES = {"inbound": Direction.INBOUND, "outbound": Direction.OUTBOUND}
#: IANA protocol numbers, for records that carry ``protocol_num`` without ``protocol_name``.
_PROTOCOL_NUMBERS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}
_LAUNCH_SPAWN, _LAUNCH_FORK, _LAUNCH_EXEC = 1, 2, 3
_HOST_KEYS = ("hostname", "name", "uid")
# Times past this are not int64 nanoseconds; downstream datetime conversions would overflow.
_MAX_NS = 2**63 - 1
# Characters that make shlex differ from plain whitespace splitting (quotes and escapes).
_SHLEX_SPECIAL = frozenset("\"'\\")


def detect(doc: dict[str, Any]) -> bool:
    """Whether a document is an OCSF event: an integer ``class_uid`` plus ``metadata`` or ``category_uid``."""
    return type(doc.get("class_uid")) is int and ("metadata" in doc or "category_uid" in doc)


def epoch_ms_ns(value: Any) -> int | None:
    """An OCSF ``timestamp_t`` (epoch milliseconds, int or float) as ns; ``None`` when it is not one."""
    if type(value) is int:
        ns = value * 1_000_000
    elif type(value) is float:
        # Round to whole microseconds first: a float of epoch ms holds about that much precision, and scaling
        # straight to ns would add binary noise in the last digits.
        scaled = value * 1000
        if not math.isfinite(scaled):
            return None
        ns = round(scaled) * 1000
    else:
        return None
    return ns if 0 <= ns <= _MAX_NS else None


# Cached: the same process's command line comes back on every file and network event it acts in, and shlex is
# the costliest step of mapping.
@lru_cache(maxsize=4096)
def split_cmd_line(cmd_line: str) -> tuple[str, ...]:
    """Split a command line into arguments the way a POSIX shell would.

    Quotes and backslashes go through :func:`shlex.split`; text without them is split on whitespace directly,
    which gives the same result (for spaces, tabs and newlines) far faster. Unbalanced quotes fall back to
    whitespace splitting. A command line built by joining argv without quoting (an executable path with a
    space) cannot be split back exactly; the result is then an approximation.

    >>> split_cmd_line("curl -o '/tmp/a b' https://x")
    ('curl', '-o', '/tmp/a b', 'https://x')
    >>> split_cmd_line("sh -c 'echo")
    ('sh', '-c', "'echo")
    """
    if _SHLEX_SPECIAL.isdisjoint(cmd_line):
        return tuple(cmd_line.split())
    try:
        return tuple(shlex.split(cmd_line))
    except ValueError:
        return tuple(cmd_line.split())


def _args(proc: dict[str, Any], executable: str | None, unmapped: Any) -> tuple[str, ...]:
    """Arguments: an explicit ``args`` list (on the object or in the event's ``unmapped``), else ``cmd_line``.

    ``unmapped`` is only passed for the event's primary ``process``: that is the object it describes. A
    ``cmd_line`` that starts with the executable path keeps that path whole, since macOS producers join argv
    without quoting and app executables often contain spaces (``.../Microsoft Word.app/.../Microsoft Word``).
    """
    explicit = proc.get("args")
    if isinstance(explicit, list):
        return as_str_tuple(explicit)
    if isinstance(unmapped, dict):
        # Producers put extra fields in the event-level ``unmapped`` either flat or nested.
        listed = unmapped.get("process.args")
        if not isinstance(listed, list):
            listed = as_dict(unmapped.get("process")).get("args")
        if isinstance(listed, list):
            return as_str_tuple(listed)
    cmd_line = proc.get("cmd_line")
    if not isinstance(cmd_line, str) or not cmd_line:
        return ()
    if executable and " " in executable and cmd_line.startswith(executable):
        rest = cmd_line[len(executable):]
        if not rest or rest[0] in " \t":
            return (executable, *split_cmd_line(rest))
    return split_cmd_line(cmd_line)


def _start_ns(proc: dict[str, Any]) -> int | None:
    start = epoch_ms_ns(proc.get("created_time"))
    if start is None:
        # The OCSF ``datetime`` profile adds an RFC 3339 twin of every timestamp.
        stamp = proc.get("created_time_dt")
        if isinstance(stamp, str):
            try:
                start = parse_time_ns(stamp)
            except RecordError:
                return None
    return start


def _entity_id(proc: dict[str, Any], pid: int | None, start_ns: int | None) -> str | None:
    """``ocsf:<uid>`` when the producer gives a uid, else ``pid:<pid>@<start ns>`` when the start is known."""
    uid = proc.get("uid")
    if isinstance(uid, str) and uid:
        return "ocsf:" + uid
    if type(uid) is int:
        return f"ocsf:{uid}"
    if pid is not None and start_ns is not None:
        return f"pid:{pid}@{start_ns}"
    return None


def _executable(proc: dict[str, Any]) -> str | None:
    return as_str(as_dict(proc.get("file")).get("path")) or as_str(proc.get("path"))


def _signature(proc: dict[str, Any]) -> CodeSignature | None:
    """Team id and trust from ``file.signature``; ``None`` when the record has no signature object."""
    sig = as_dict(as_dict(proc.get("file")).get("signature"))
    if not sig:
        return None
    state = sig.get("state_id")
    trusted: bool | None = None
    if type(state) is int and 1 <= state <= 10:
        # 1 Valid; 2..10 are the invalid states (expired, revoked, untrusted, bad, broken...).
        trusted = state == 1
    return CodeSignature(team_id=as_str(sig.get("developer_uid")), signed=True, trusted=trusted)


def process_ref(proc: Any, *, parent: Any = None, unmapped: Any = None) -> ProcessRef | None:
    """Map an OCSF process object to a :class:`ProcessRef`; ``None`` when it is absent or has no pid.

    Parameters
    ----------
    proc:
        The process object.
    parent:
        The process object to take ``ppid`` / ``parent_entity_id`` / ``parent_executable`` from; by default
        ``proc["parent_process"]``.
    unmapped:
        The event's ``unmapped`` object, consulted for an explicit argument list (primary process only).
    """
    if not isinstance(proc, dict):
        return None
    pid = as_int(proc.get("pid"))
    if pid is None:
        return None
    if parent is None:
        parent = proc.get("parent_process")
    parent_pid: int | None = None
    parent_entity: str | None = None
    parent_exe: str | None = None
    if isinstance(parent, dict) and parent:
        parent_pid = as_int(parent.get("pid"))
        parent_entity = _entity_id(parent, parent_pid, _start_ns(parent))
        parent_exe = _executable(parent)
    start = _start_ns(proc)
    user = as_dict(proc.get("user"))
    executable = _executable(proc)
    return ProcessRef(
        pid=pid,
        entity_id=_entity_id(proc, pid, start),
        ppid=parent_pid,
        parent_entity_id=parent_entity,
        parent_executable=parent_exe,
        executable=executable,
        name=as_str(proc.get("name")),
        args=_args(proc, executable, unmapped),
        cwd=as_str(proc.get("working_directory")),
        uid=as_int(user.get("uid")),
        user=as_str(user.get("name")),
        signature=_signature(proc),
        start_time_ns=start,
    )


def _host(doc: dict[str, Any], fallback: str) -> str:
    device = doc.get("device")
    if isinstance(device, dict):
        for key in _HOST_KEYS:
            value = device.get(key)
            if isinstance(value, str) and value:
                return value
    return fallback


def _time_ns(doc: dict[str, Any]) -> int:
    value = doc.get("time")
    if value is None:
        stamp = doc.get("time_dt")
        if isinstance(stamp, str):
            return parse_time_ns(stamp)
        raise RecordError("OCSF record has no 'time'")
    ns = epoch_ms_ns(value)
    if ns is None:
        raise RecordError(f"invalid OCSF time (epoch milliseconds expected): {repr(value)[:80]}")
    return ns


def _activity(doc: dict[str, Any], class_uid: int) -> int:
    activity = doc.get("activity_id")
    if type(activity) is int:
        return activity
    type_uid = doc.get("type_uid")
    if type(type_uid) is int and type_uid // 100 == class_uid:
        return type_uid - class_uid * 100
    raise RecordError(f"OCSF {class_uid} record has no integer activity_id or type_uid")


def _file_path(file_obj: dict[str, Any]) -> str | None:
    """``path``, else ``parent_folder + '/' + name``."""
    path = as_str(file_obj.get("path"))
    if path:
        return path
    folder = as_str(file_obj.get("parent_folder"))
    name = as_str(file_obj.get("name"))
    if folder and name:
        return f"{folder.rstrip('/')}/{name}"
    return None


def _actor_process(doc: dict[str, Any]) -> dict[str, Any]:
    return as_dict(as_dict(doc.get("actor")).get("process"))


def map_record(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    """Map one OCSF event to canonical events, or return the label of an unused class or activity.

    Raises
    ------
    RecordError
        When the record has no usable ``time``, ``class_uid`` or ``activity_id``, or misses what its class
        needs (the launched process, the file path, a destination).
    """
    if not isinstance(doc, dict):
        raise RecordError("OCSF record is not an object")
    class_uid = doc.get("class_uid")
    if type(class_uid) is not int:
        raise RecordError("OCSF record has no integer class_uid")
    if class_uid == PROCESS_ACTIVITY:
        return _process_activity(doc, ref, host)
    if class_uid == FILE_SYSTEM_ACTIVITY:
        return _file_activity(doc, ref, host)
    if class_uid == NETWORK_ACTIVITY:
        return _network_activity(doc, ref, host)
    return f"ocsf:{class_uid}"


def _common(doc: dict[str, Any], ref: RawRef, host: str) -> dict[str, Any]:
    return {"time_ns": _time_ns(doc), "host": _host(doc, host), "source": FORMAT, "raw": ref}


def _process_activity(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    activity = _activity(doc, PROCESS_ACTIVITY)
    if activity not in (1, 2):
        return f"ocsf:1007/{activity}"
    common = _common(doc, ref, host)
    proc = doc.get("process")
    if not isinstance(proc, dict):
        raise RecordError("process activity has no 'process' object")
    unmapped = doc.get("unmapped")
    if activity == 2:
        exiting = process_ref(proc, unmapped=unmapped)
        if exiting is None:
            raise RecordError("terminated process has no pid")
        return [ProcessExit(**common, process=exiting, exit_status=as_int(doc.get("exit_code")))]

    actor = _actor_process(doc)
    launch_type = doc.get("launch_type_id")
    if type(launch_type) is not int:
        launch_type = 0
    target_pid = as_int(proc.get("pid"))
    actor_pid = as_int(actor.get("pid"))
    parent = as_dict(proc.get("parent_process"))
    # Same pid on both sides can only be an exec, whatever launch_type_id says: the actor is then the pre-exec
    # image, never the parent.
    if launch_type == _LAUNCH_EXEC or (actor_pid is not None and actor_pid == target_pid):
        target = process_ref(proc, parent=parent or as_dict(actor.get("parent_process")), unmapped=unmapped)
        if target is None:
            raise RecordError("launched process has no pid")
        return [ProcessExec(**common, process=process_ref(actor), target=target)]
    target = process_ref(proc, parent=parent or actor, unmapped=unmapped)
    if target is None:
        raise RecordError("launched process has no pid")
    if launch_type == _LAUNCH_FORK:
        return [ProcessFork(**common, process=process_ref(actor), child=target)]
    return [ProcessExec(**common, process=None, target=target)]


def _file_activity(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    activity = _activity(doc, FILE_SYSTEM_ACTIVITY)
    action = FILE_ACTIONS.get(activity)
    if action is None and activity not in (FILE_RENAME, FILE_SET_ATTRIBUTES):
        return f"ocsf:1001/{activity}"
    file_obj = doc.get("file")
    if not isinstance(file_obj, dict):
        raise RecordError("file system activity has no 'file' object")
    path = _file_path(file_obj)
    if activity == FILE_SET_ATTRIBUTES:
        xattrs = file_obj.get("xattributes")
        if not isinstance(xattrs, dict) or not xattrs:
            return "ocsf:1001/6(no xattributes)"
        if path is None:
            raise RecordError("set-attributes record has no file path")
        common = _common(doc, ref, host)
        actor = process_ref(_actor_process(doc))
        events: list[AnyEvent] = []
        for name, value in xattrs.items():
            if not name:
                continue
            quarantine = None
            if name == QUARANTINE_XATTR and isinstance(value, str) and value:
                quarantine = parse_quarantine(value)
            events.append(XattrChange(**common, process=actor, action=XattrAction.SET, path=path, name=name,
                                      quarantine=quarantine))
        return events or "ocsf:1001/6(no xattributes)"
    common = _common(doc, ref, host)
    actor = process_ref(_actor_process(doc))
    if activity == FILE_RENAME:
        destination = _file_path(as_dict(doc.get("file_result")))
        if destination is None:
            raise RecordError("rename record has no file_result path")
        return [FileWrite(**common, process=actor, action=FileAction.RENAME, path=destination,
                          source_path=path)]
    if path is None or action is None:
        raise RecordError(f"file system activity {activity} has no file path")
    return [FileWrite(**common, process=actor, action=action, path=path)]


def _direction(conn: dict[str, Any]) -> Direction:
    direction_id = conn.get("direction_id")
    if type(direction_id) is int:
        return DIRECTIONS.get(direction_id, Direction.UNKNOWN)
    caption = conn.get("direction")
    if isinstance(caption, str):
        return _DIRECTION_NAMES.get(caption.lower(), Direction.UNKNOWN)
    return Direction.UNKNOWN


def _protocol(conn: dict[str, Any]) -> str | None:
    name = as_str(conn.get("protocol_name"))
    if name:
        return name.lower()
    number = conn.get("protocol_num")
    return _PROTOCOL_NUMBERS.get(number) if type(number) is int else None


def _network_activity(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    activity = _activity(doc, NETWORK_ACTIVITY)
    if activity not in NETWORK_MAPPED:
        return f"ocsf:4001/{activity}"
    dst = as_dict(doc.get("dst_endpoint"))
    dst_ip = as_str(dst.get("ip"))
    hostname = as_str(dst.get("hostname")) or as_str(dst.get("domain"))
    if dst_ip is None and hostname is None:
        raise RecordError("network activity has no dst_endpoint ip or hostname")
    common = _common(doc, ref, host)
    src = as_dict(doc.get("src_endpoint"))
    conn = as_dict(doc.get("connection_info"))
    return [NetworkConnection(
        **common,
        process=process_ref(_actor_process(doc)),
        dst_ip=dst_ip,
        dst_port=as_int(dst.get("port")),
        hostname=hostname,
        protocol=_protocol(conn),
        direction=_direction(conn),
        src_ip=as_str(src.get("ip")),
        src_port=as_int(src.get("port")),
    )]
