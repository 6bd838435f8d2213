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
  ignored here;
- ``mount`` (22), ``unmount`` (23) and ``remount`` (99) carry a ``statfs`` (``f_mntonname``, ``f_mntfromname``,
  ``f_fstypename``...) and, from message version 8, ``disposition`` (``es_mount_disposition_t``: 0 external,
  1 internal, 2 network, 3 virtual = a disk image or another file, 4 nullfs = App Translocation, 5 unknown);
  ``unmount`` never has one;
- ``clone`` (61: ``source``, ``target_dir``, ``target_name``), ``copyfile`` (110: ``source``, ``target_file`` or
  null, ``target_dir``, ``target_name``, ``mode``, ``flags``) and ``link`` (19: ``source``, ``target_dir``,
  ``target_filename``) put a copy of ``source`` at ``target_dir/target_name``. The key names are those of the
  ``ESMessage.h`` structs, which eslogger follows for every event whose keys are catalogued (Mac Monitor's
  ``eslogger-keys.json`` lists ``link``; ``clone`` and ``copyfile`` are not in it, and no capture was found).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from chainwatch.errors import RecordError
from chainwatch.events import (
    AnyEvent,
    CodeSignature,
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    MountAction,
    MountKind,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    ProcessRef,
    RawRef,
    SourceFormat,
    VolumeMount,
    XattrAction,
    XattrChange,
)
from chainwatch.policy import Policy
from chainwatch.sources.common import as_dict, as_int, as_str, as_str_tuple, parse_start_time_ns, parse_time_ns

FORMAT = SourceFormat.ESLOGGER

#: Event names whose records chainwatch maps; every other name is counted as unused.
MAPPED = frozenset(
    {"exec", "fork", "exit", "create", "rename", "close", "write", "setextattr", "deleteextattr",
     "gatekeeper_user_override", "mount", "unmount", "remount", "clone", "copyfile", "link"}
)
#: Every NOTIFY event name of ``es_event_type_t`` (``ESTypes.h``, macOS 10.15 to 26) as eslogger writes it: the
#: catalogue the relevance gate checks an ``event`` key against before it believes a line is eslogger at all.
EVENT_NAMES = MAPPED | frozenset({
    "open", "exchangedata", "get_task", "kextload", "kextunload", "mmap", "mprotect", "iokit_open",
    "setattrlist", "setflags", "setmode", "setowner", "signal", "unlink", "file_provider_materialize",
    "file_provider_update", "readlink", "truncate", "lookup", "access", "utimes", "chdir", "getattrlist", "stat",
    "chroot", "fcntl", "getextattr", "listextattr", "readdir", "fsgetpath", "dup", "settime", "uipc_bind",
    "uipc_connect", "setacl", "pty_grant", "pty_close", "proc_check", "searchfs", "proc_suspend_resume",
    "cs_invalidated", "get_task_name", "trace", "remote_thread_create", "get_task_read", "get_task_inspect",
    "setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid", "authentication", "xp_malware_detected",
    "xp_malware_remediated", "lw_session_login", "lw_session_logout", "lw_session_lock", "lw_session_unlock",
    "screensharing_attach", "screensharing_detach", "openssh_login", "openssh_logout", "login_login",
    "login_logout", "btm_launch_item_add", "btm_launch_item_remove", "profile_add", "profile_remove", "su",
    "authorization_petition", "authorization_judgement", "sudo", "od_group_add", "od_group_remove",
    "od_group_set", "od_modify_password", "od_disable_user", "od_enable_user", "od_attribute_value_add",
    "od_attribute_value_remove", "od_attribute_set", "od_create_user", "od_create_group", "od_delete_user",
    "od_delete_group", "xpc_connect", "tcc_modify",
})
#: ``es_event_type_t`` numbers of the mapped names, to cross-check ``event_type``.
EVENT_NUMBERS = {
    "exec": 9, "fork": 11, "close": 12, "create": 13, "exit": 15, "link": 19, "mount": 22, "unmount": 23,
    "rename": 25, "setextattr": 27, "write": 33, "clone": 61, "deleteextattr": 70, "remount": 99,
    "copyfile": 110, "gatekeeper_user_override": 146,
}
#: ``es_mount_disposition_t`` (message version >= 8) to :class:`MountKind`.
DISPOSITIONS = {
    0: MountKind.EXTERNAL, 1: MountKind.INTERNAL, 2: MountKind.NETWORK, 3: MountKind.DISK_IMAGE,
    4: MountKind.NULLFS, 5: MountKind.UNKNOWN,
}
#: First message version with ``disposition`` (before it the field was reserved, so a 0 there means nothing).
DISPOSITION_VERSION = 8
_MOUNT_ACTIONS = {"mount": MountAction.MOUNT, "remount": MountAction.MOUNT, "unmount": MountAction.UNMOUNT}
#: The name key of each copy event's new file.
_COPY_NAME_KEYS = {"clone": "target_name", "copyfile": "target_name", "link": "target_filename"}
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


def _token(value: Any) -> tuple[int, int | None, int | None] | None:
    """``(pid, pidversion, euid)`` of an audit token in either shape, without building a mapping (hot path)."""
    if type(value) is dict:
        pid = value.get("pid")
        if type(pid) is not int:
            return None
        version = value.get("pidversion")
        euid = value.get("euid")
        return pid, version if type(version) is int else None, euid if type(euid) is int else None
    if type(value) is list and len(value) == 8:
        pid, version, euid = value[5], value[7], value[1]
        if type(pid) is int and type(version) is int:
            return pid, version, euid if type(euid) is int else None
        return None
    parsed = audit_token(value)
    if parsed is None:
        return None
    return parsed["pid"], parsed.get("pidversion"), parsed.get("euid")


@lru_cache(maxsize=16384, typed=True)
def _signature(signing_id: Any, team_id: Any, platform: Any, category: Any, cdhash: Any) -> CodeSignature:
    # Signatures repeat for every event of the same binary: one shared immutable object each. Typed: 1 == True
    # (and 1.0 == 1), so an untyped cache would hand a record's ``is_platform_binary: 1`` the platform claim of an
    # earlier ``true``, a result that depends on which records were mapped before it.
    return CodeSignature(
        signing_id=signing_id if type(signing_id) is str and signing_id else None,
        team_id=team_id if type(team_id) is str and team_id else None,
        platform_binary=platform if type(platform) is bool else None,
        validation_category=category if type(category) is int else None,
        cdhash=cdhash if type(cdhash) is str and cdhash else None,
    )


def _executable(proc: Any) -> str | None:
    """``executable.path`` of an ``es_process_t`` (``None`` when absent or not a string)."""
    executable = proc.get("executable") if type(proc) is dict else None
    path = executable.get("path") if type(executable) is dict else None
    return path if type(path) is str else None


def _process_signature(proc: dict[str, Any]) -> CodeSignature:
    try:
        return _signature(proc.get("signing_id"), proc.get("team_id"), proc.get("is_platform_binary"),
                          proc.get("cs_validation_category"), proc.get("cdhash"))
    except TypeError:  # an unhashable value where a scalar belongs
        return CodeSignature()


def process_ref(
    proc: Any, *, args: tuple[str, ...] = (), cwd: str | None = None, parent_executable: str | None = None
) -> ProcessRef:
    """Map an ``es_process_t`` object to a :class:`ProcessRef`."""
    if type(proc) is not dict:
        raise RecordError("process object missing or not an object")
    token = _token(proc.get("audit_token"))
    if token is None:
        raise RecordError("process has no readable audit_token")
    pid, version, euid = token
    parent = _token(proc.get("parent_audit_token"))
    responsible = _token(proc.get("responsible_audit_token"))
    start = proc.get("start_time")
    ppid = proc.get("ppid")
    original_ppid = proc.get("original_ppid")
    return ProcessRef(
        pid=pid,
        entity_id=f"es:{pid}:{version}" if version is not None else None,
        ppid=ppid if type(ppid) is int else (parent[0] if parent else None),
        parent_entity_id=f"es:{parent[0]}:{parent[1]}" if parent and parent[1] is not None else None,
        parent_executable=parent_executable,
        original_ppid=original_ppid if type(original_ppid) is int else None,
        responsible_pid=responsible[0] if responsible else None,
        responsible_entity_id=f"es:{responsible[0]}:{responsible[1]}"
        if responsible and responsible[1] is not None else None,
        executable=_executable(proc),
        args=args,
        cwd=cwd,
        uid=euid,
        signature=_process_signature(proc),
        start_time_ns=parse_start_time_ns(start) if type(start) is str else None,
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


def mount_kind(disposition: Any, version: Any, fs_type: str | None, mount_point: str,
               mounted_from: str | None) -> MountKind:
    """What a mount is: ``disposition`` when the message version has it, else inferred from the ``statfs``.

    Without a usable disposition (message version < 8, and every ``unmount``):

    - ``f_fstypename`` ``nullfs`` is App Translocation's read-only copy: ``NULLFS`` (certain: nothing else on
      macOS mounts nullfs);
    - an ``apfs`` or ``hfs`` volume from a ``/dev/disk*`` device mounted under ``/Volumes/`` is taken as a disk
      image: ``DISK_IMAGE``. **This is a guess**: an external USB or Thunderbolt drive looks exactly the same in
      a ``statfs``, so before message version 8 such a drive is reported as a disk image too;
    - anything else is ``UNKNOWN`` (never ``EXTERNAL``: a 0 in the reserved field means nothing).
    """
    if type(disposition) is int and (type(version) is not int or version >= DISPOSITION_VERSION):
        return DISPOSITIONS.get(disposition, MountKind.UNKNOWN)
    if fs_type == "nullfs":
        return MountKind.NULLFS
    if fs_type in ("apfs", "hfs") and mount_point.startswith("/Volumes/") and mounted_from is not None \
            and mounted_from.startswith("/dev/disk"):
        return MountKind.DISK_IMAGE
    return MountKind.UNKNOWN


def _map_mount(name: str, payload: dict[str, Any], doc: dict[str, Any], common: dict[str, Any],
               actor: ProcessRef) -> list[AnyEvent]:
    statfs = payload.get("statfs")
    if type(statfs) is not dict:
        raise RecordError(f"{name} has no statfs object")
    point = statfs.get("f_mntonname")
    if type(point) is not str or not point:
        raise RecordError(f"{name} has no statfs.f_mntonname")
    source = as_str(statfs.get("f_mntfromname"))
    fs_type = as_str(statfs.get("f_fstypename"))
    # unmount has no disposition; a stray one there is ignored like a pre-version-8 one.
    disposition = payload.get("disposition") if name != "unmount" else None
    kind = mount_kind(disposition, doc.get("version"), fs_type, point, source)
    return [VolumeMount(**common, process=actor, action=_MOUNT_ACTIONS[name], mount_point=point,
                        mounted_from=source, mount_kind=kind, fs_type=fs_type)]


def _map_copy(name: str, payload: dict[str, Any], common: dict[str, Any], actor: ProcessRef) -> list[AnyEvent]:
    """``clone`` / ``copyfile`` / ``link``: a new file at ``target_dir/name`` with the content of ``source``.

    A ``copyfile`` over an existing file (``target_file`` set) is a modification of it; every other copy creates.
    """
    folder = _file_path(payload.get("target_dir"))
    leaf = as_str(payload.get(_COPY_NAME_KEYS[name]))
    existing = _file_path(payload.get("target_file")) if name == "copyfile" else None
    if folder and leaf:
        path = f"{folder.rstrip('/')}/{leaf}"
    elif existing:
        path = existing
    else:
        raise RecordError(f"{name} needs target_dir.path and {_COPY_NAME_KEYS[name]}")
    action = FileAction.CLOSE_MODIFIED if existing else FileAction.CREATE
    return [FileWrite(**common, process=actor, action=action, path=path,
                      source_path=_file_path(payload.get("source")))]


def map_record(doc: dict[str, Any], ref: RawRef, host: str, *, policy: Policy | None = None) -> list[AnyEvent] | str:
    """Map one eslogger record to canonical events, or return the label of an unused event type.

    With ``policy`` (tracked-only mapping, what ``detect`` uses), an ``exec`` or ``fork`` of a process the engine
    would not track (:meth:`Policy.tracks_image`, decided on the same fields the full mapping would read) is
    labelled ``eslogger:exec(untracked)`` / ``eslogger:fork(untracked)`` instead of being mapped.

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
    if name == "close" and payload.get("modified") is not True:
        # The highest-volume event: decided before any other work.
        return "eslogger:close(unmodified)"
    proc = doc["process"]
    if policy is not None and name in _UNTRACKED and _untracked(policy, name, payload, proc):
        return _UNTRACKED[name]
    time_ns = parse_time_ns(doc.get("time"))
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
    if name in _COPY_NAME_KEYS:
        return _map_copy(name, payload, common, actor)
    if name in _MOUNT_ACTIONS:
        return _map_mount(name, payload, doc, common, actor)
    # gatekeeper_user_override: file_type 0 = path string, 1 = es_file_t.
    gk_file = payload.get("file")
    gk_path = gk_file if isinstance(gk_file, str) else _file_path(gk_file)
    signing = as_dict(payload.get("signing_info"))
    return [Gatekeeper(
        **common, process=actor, action=GatekeeperAction.USER_OVERRIDE, path=gk_path,
        signing_id=as_str(signing.get("signing_id")), team_id=as_str(signing.get("team_id")),
        sha256=as_str(payload.get("sha256")),
    )]


_UNTRACKED = {"exec": "eslogger:exec(untracked)", "fork": "eslogger:fork(untracked)"}


def _untracked(policy: Policy, name: str, payload: dict[str, Any], proc: Any) -> bool:
    """Whether the engine would drop this exec/fork: the inputs of its admission rule, read without mapping."""
    if name == "exec":
        target = payload.get("target")
        if type(target) is not dict:
            return False  # broken: the full mapping rejects it with its reason
        return not policy.tracks_image(_executable(target), _process_signature(target), _executable(proc))[0]
    child = payload.get("child")
    if type(child) is not dict:
        return False
    return policy.classify(_executable(child), _process_signature(child)) is None


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
