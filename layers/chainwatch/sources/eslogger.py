"""Apple Endpoint Security as written by ``eslogger`` (JSON lines), and Mac Monitor 2.x exports.

Facts this module relies on (``shared/reference/macos-telemetry.md`` section 1):

- the event is discriminated by the single key inside ``event`` (``exec``, ``fork``, ...), not by the number in
  ``event_type`` alone (public tables get numbers wrong);
- ``audit_token`` is an object (macOS 15, message version 9) or an 8-integer array
  ``[auid, euid, egid, ruid, rgid, pid, asid, pidversion]`` (macOS 26, message version 10);
- ``(pid, pidversion)`` names one process image; on ``exec`` the envelope's ``process`` is the pre-exec image of
  the same pid and ``event.exec.target`` the new one;
- ``exit.stat`` is a wait(2) status, so a signal number there is a crash indicator;
- Mac Monitor 2.x keeps every eslogger key and adds its own (``es_event_type``, ``is_quarantined``...), which are
  ignored here.
"""

from __future__ import annotations

from typing import Any

from chainwatch.errors import RecordError
from chainwatch.events import (
    AnyEvent,
    CodeSignature,
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    ProcessRef,
    RawRef,
    SourceFormat,
    XattrAction,
    XattrChange,
)
from chainwatch.sources.common import as_dict, as_int, as_str, as_str_tuple, parse_time_ns

FORMAT = SourceFormat.ESLOGGER

#: Event names whose records chainwatch maps; every other name is counted as unused.
MAPPED = frozenset(
    {"exec", "fork", "exit", "create", "rename", "close", "write", "setextattr", "deleteextattr",
     "gatekeeper_user_override"}
)
#: ``es_event_type_t`` numbers of the mapped names, to cross-check ``event_type``.
EVENT_NUMBERS = {
    "exec": 9, "fork": 11, "close": 12, "create": 13, "exit": 15, "rename": 25, "setextattr": 27, "write": 33,
    "deleteextattr": 70, "gatekeeper_user_override": 146,
}
QUARANTINE_XATTR = "com.apple.quarantine"
_TOKEN_FIELDS = ("auid", "euid", "egid", "ruid", "rgid", "pid", "asid", "pidversion")


def detect(doc: dict[str, Any]) -> bool:
    """Whether a document is an eslogger / Mac Monitor 2.x record."""
    return isinstance(doc.get("event"), dict) and ("event_type" in doc or "es_event_type" in doc) and \
        "process" in doc


def audit_token(value: Any) -> dict[str, int] | None:
    """Normalize an audit token (object or 8-integer array) to a mapping; ``None`` when absent or malformed."""
    if isinstance(value, dict):
        pid = value.get("pid")
        if type(pid) is not int:
            return None
        return value
    if isinstance(value, list) and len(value) == 8 and all(type(v) is int for v in value):
        return dict(zip(_TOKEN_FIELDS, value, strict=True))
    if isinstance(value, str):
        # Mac Monitor 1.x style "501-501-20-501-20-12327-100019-1883731".
        parts = value.split("-")
        if len(parts) == 8 and all(p.isdigit() for p in parts):
            return dict(zip(_TOKEN_FIELDS, map(int, parts), strict=True))
    return None


def _entity(token: dict[str, int] | None) -> str | None:
    if token is None:
        return None
    version = token.get("pidversion")
    return f"es:{token['pid']}:{version}" if type(version) is int else None


def process_ref(
    proc: Any, *, args: tuple[str, ...] = (), cwd: str | None = None, parent_executable: str | None = None
) -> ProcessRef:
    """Map an ``es_process_t`` object to a :class:`ProcessRef`."""
    if not isinstance(proc, dict):
        raise RecordError("process object missing or not an object")
    token = audit_token(proc.get("audit_token"))
    if token is None:
        raise RecordError("process has no readable audit_token")
    parent = audit_token(proc.get("parent_audit_token"))
    responsible = audit_token(proc.get("responsible_audit_token"))
    executable = as_dict(proc.get("executable")).get("path")
    start = proc.get("start_time")
    cdhash = proc.get("cdhash")
    platform = proc.get("is_platform_binary")
    category = proc.get("cs_validation_category")
    signature = CodeSignature(
        signing_id=as_str(proc.get("signing_id")),
        team_id=as_str(proc.get("team_id")),
        platform_binary=platform if isinstance(platform, bool) else None,
        validation_category=category if type(category) is int else None,
        cdhash=cdhash if isinstance(cdhash, str) and cdhash else None,
    )
    ppid = as_int(proc.get("ppid"))
    return ProcessRef(
        pid=token["pid"],
        entity_id=_entity(token),
        ppid=ppid if ppid is not None else (parent["pid"] if parent else None),
        parent_entity_id=_entity(parent),
        parent_executable=parent_executable,
        original_ppid=as_int(proc.get("original_ppid")),
        responsible_pid=responsible["pid"] if responsible else None,
        responsible_entity_id=_entity(responsible),
        executable=executable if isinstance(executable, str) else None,
        args=args,
        cwd=cwd,
        uid=token.get("euid") if type(token.get("euid")) is int else None,
        signature=signature,
        start_time_ns=parse_time_ns(start) if isinstance(start, str) else None,
    )


def _file_path(value: Any) -> str | None:
    path = as_dict(value).get("path")
    return path if isinstance(path, str) and path else None


def _destination(payload: dict[str, Any]) -> str | None:
    """``create``/``rename`` destination: ``existing_file.path`` or ``new_path.dir.path + '/' + filename``."""
    dest = as_dict(payload.get("destination"))
    existing = _file_path(dest.get("existing_file"))
    if existing:
        return existing
    new_path = as_dict(dest.get("new_path"))
    folder = _file_path(new_path.get("dir"))
    name = as_str(new_path.get("filename"))
    if folder and name:
        return f"{folder.rstrip('/')}/{name}"
    return None


def map_record(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    """Map one eslogger record to canonical events, or return the label of an unused event type.

    Raises
    ------
    RecordError
        When the record claims to be eslogger but misses what its event needs.
    """
    event = doc["event"]
    if len(event) != 1:
        raise RecordError(f"'event' must hold exactly one event name, found {sorted(event)[:5]}")
    name, payload = next(iter(event.items()))
    if name not in MAPPED:
        return f"eslogger:{name}"
    if not isinstance(payload, dict):
        raise RecordError(f"event.{name} is not an object")
    time_ns = parse_time_ns(doc.get("time"))
    proc = doc["process"]
    common: dict[str, Any] = {"time_ns": time_ns, "host": host, "source": FORMAT, "raw": ref}

    if name == "exec":
        instigator = process_ref(proc)
        cwd = _file_path(payload.get("cwd"))
        target = process_ref(
            payload.get("target"),
            args=as_str_tuple(payload.get("args")),
            cwd=cwd,
            # The pre-exec image is a fork of the parent, so its executable is the parent's.
            parent_executable=instigator.executable,
        )
        return [ProcessExec(**common, process=instigator, target=target,
                            script_path=_file_path(payload.get("script")))]
    actor = process_ref(proc)
    if name == "fork":
        child = process_ref(payload.get("child"), parent_executable=actor.executable)
        return [ProcessFork(**common, process=actor, child=child)]
    if name == "exit":
        stat = as_int(payload.get("stat"))
        status, signal = _wait_status(stat)
        return [ProcessExit(**common, process=actor, exit_status=status, signal=signal)]
    if name == "create":
        path = _destination(payload)
        if path is None:
            raise RecordError("create has no destination path")
        return [FileWrite(**common, process=actor, action=FileAction.CREATE, path=path)]
    if name == "rename":
        path = _destination(payload)
        source_path = _file_path(payload.get("source"))
        if path is None:
            raise RecordError("rename has no destination path")
        return [FileWrite(**common, process=actor, action=FileAction.RENAME, path=path, source_path=source_path)]
    if name == "close":
        if payload.get("modified") is not True:
            return "eslogger:close(unmodified)"
        path = _file_path(payload.get("target"))
        if path is None:
            raise RecordError("close has no target path")
        return [FileWrite(**common, process=actor, action=FileAction.CLOSE_MODIFIED, path=path)]
    if name == "write":
        path = _file_path(payload.get("target"))
        if path is None:
            raise RecordError("write has no target path")
        return [FileWrite(**common, process=actor, action=FileAction.WRITE, path=path)]
    if name in ("setextattr", "deleteextattr"):
        path = _file_path(payload.get("target"))
        attr = as_str(payload.get("extattr"))
        if path is None or attr is None:
            raise RecordError(f"{name} needs target.path and extattr")
        action = XattrAction.SET if name == "setextattr" else XattrAction.DELETE
        return [XattrChange(**common, process=actor, action=action, path=path, name=attr)]
    # gatekeeper_user_override: file_type 0 = path string, 1 = es_file_t.
    gk_file = payload.get("file")
    gk_path = gk_file if isinstance(gk_file, str) else _file_path(gk_file)
    signing = as_dict(payload.get("signing_info"))
    return [Gatekeeper(
        **common, process=actor, action=GatekeeperAction.USER_OVERRIDE, path=gk_path,
        signing_id=as_str(signing.get("signing_id")), team_id=as_str(signing.get("team_id")),
        sha256=as_str(payload.get("sha256")),
    )]


def _wait_status(stat: int | None) -> tuple[int | None, int | None]:
    """Decode a wait(2) status into (exit status, terminating signal)."""
    if stat is None:
        return None, None
    low = stat & 0x7F
    if low == 0:
        return (stat >> 8) & 0xFF, None
    if low != 0x7F:
        return None, low
    return None, None
