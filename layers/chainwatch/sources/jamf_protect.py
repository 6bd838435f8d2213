"""Jamf Protect: legacy OpenBSM-style telemetry (``AUE_*``) and alerts (``GP*Event``).

Facts this module relies on (``shared/fixtures/README.md`` section 4, ``shared/reference/macos-telemetry.md``
section 5, and the XNU audit sources for the token order):

- Legacy telemetry is one JSON object per OpenBSM record: ``header.event_name`` (``AUE_EXECVE``...), time as
  ``header.time_seconds_epoch`` plus ``header.time_milliseconds_offset``, the acting process in ``subject``
  (pid only: no pidversion and no start time, so attribution is by pid), its code-signing ``identity``,
  and the host in ``host_info.host_name``.
- ``path`` is an array of the record's path tokens in kernel order. For ``execve`` XNU writes the path the
  caller passed (made absolute), then the kernel's path of the vnode actually opened, and, for a ``#!`` script
  only, the interpreter's path (``UPATH1_VNODE1_TOKENS`` then ``VNODE2_PATH_TOKENS`` in ``audit_bsm.c``). The
  executable is therefore the last of the first two entries, and with three entries the third is the
  interpreter (the executable, as Endpoint Security reports it) and the second the script.
- ``exec_args.args`` is an object keyed by position strings (``"1"``, ``"2"``...), ordered numerically here;
  the comma-joined ``args_compiled`` is ambiguous (arguments may contain commas) and is not used.
- The ``identity`` token is the signing identity of the process that made the system call, taken when the call
  started: in the published ``AUE_EXECVE`` sample, the exec of ``/usr/libexec/od_user_homes`` carries signer
  ``com.apple.automountd``, the image it replaced. It is therefore attached to the pre-exec image (the
  :class:`ProcessExec` ``process``), never to the new image. ``subject.process_name`` is Jamf's own lookup of
  the pid after the call (the new image's path on an exec; empty in the ``AUE_CONNECT`` sample).
- ``return.error`` is a BSM error number (``150`` = ``EINPROGRESS``): a non-blocking ``connect`` in progress
  is reported as ``failure : Operation now in progress``.
- Alerts are analytic matches: ``eventType``, ``host``, ``match`` (``match.event`` is the triggering event,
  with a float epoch-seconds ``timestamp``) and ``related`` (snapshots of processes, binaries, files, users at
  alert time). ``signingInfo.cdhash`` there is base64 and is converted to lowercase hex like the telemetry's.
  Processes there carry ``startTimestamp`` (epoch seconds), which names the image: ``pid:<pid>@<start ns>``.
"""

from __future__ import annotations

import binascii
import math
from base64 import b64decode
from typing import Any

from chainwatch.errors import RecordError
from chainwatch.events import (
    AnyEvent,
    CodeSignature,
    Direction,
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    NetworkConnection,
    ProcessExec,
    ProcessRef,
    RawRef,
    SourceFormat,
    XattrAction,
    XattrChange,
)
from chainwatch.sources.common import as_dict, as_int, as_str, as_str_tuple, epoch_s_to_ns

FORMAT = SourceFormat.JAMF

QUARANTINE_XATTR = "com.apple.quarantine"
#: The kernel's Gatekeeper (AppleSystemPolicy) denial, ``... process: <pid>, <path>``.
ASP_DENIAL = "ASP: Security policy would not allow process: "
#: ``errSecCSUnsigned``: the ``signingInfo.status`` of code that is not signed at all.
ERR_SEC_CS_UNSIGNED = -67062
AF_UNIX = 1
_NS = 1_000_000_000
_MS = 1_000_000
#: 9999-12-31T23:59:59Z: later "epoch seconds" are garbage and would overflow datetime downstream.
_MAX_EPOCH_S = 253_402_300_799
_MAX_LABEL = 64


def detect(doc: dict[str, Any]) -> bool:
    """Whether a document is Jamf Protect legacy telemetry or a Jamf Protect alert.

    Legacy telemetry has a ``header`` object whose ``event_name`` starts with ``AUE_``; an alert has an
    ``eventType`` starting with ``GP`` beside ``match`` or ``host``. No other format chainwatch reads has
    either shape (the unified log's ``eventType`` values are ``logEvent``, ``activityCreateEvent``...).
    """
    header = doc.get("header")
    if type(header) is dict:
        name = header.get("event_name")
        if type(name) is str and name.startswith("AUE_"):
            return True
    event_type = doc.get("eventType")
    return type(event_type) is str and event_type.startswith("GP") and ("match" in doc or "host" in doc)


def map_record(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    """Map one Jamf Protect record to canonical events, or return the label of a record it does not use.

    Raises
    ------
    RecordError
        When the record is not Jamf Protect, or misses what its event needs (time, pid, path).
    """
    header = doc.get("header")
    if type(header) is dict:
        name = header.get("event_name")
        if type(name) is str and name.startswith("AUE_"):
            return _map_legacy(doc, header, name, ref, host)
    if "eventType" not in doc and type(doc.get("input")) is dict:
        # An alert still in its {"caid", "certid", "input"} envelope (the reader normally opens it).
        doc = doc["input"]
    event_type = doc.get("eventType")
    if type(event_type) is str and event_type.startswith("GP"):
        return _map_alert(doc, event_type, ref, host)
    raise RecordError("not a Jamf Protect record: no AUE_ header.event_name and no GP eventType")


# ------------------------------------------------------------------------------------------- legacy telemetry


def _map_legacy(
    doc: dict[str, Any], header: dict[str, Any], name: str, ref: RawRef, host: str
) -> list[AnyEvent] | str:
    if name == "AUE_EXECVE":
        return _map_exec(doc, header, ref, host)
    if name == "AUE_CONNECT":
        return _map_connect(doc, header, ref, host)
    return f"jamf:{_label(name)}"


def _header_time_ns(header: dict[str, Any]) -> int:
    """``time_seconds_epoch`` + ``time_milliseconds_offset`` / 1000, in ns; a missing offset counts as 0."""
    seconds = header.get("time_seconds_epoch")
    if type(seconds) is not int or not 0 <= seconds <= _MAX_EPOCH_S:
        raise RecordError(f"header.time_seconds_epoch missing or invalid: {_short(seconds)}")
    millis = header.get("time_milliseconds_offset", 0)
    if type(millis) is not int or not 0 <= millis < 1000:
        raise RecordError(f"header.time_milliseconds_offset invalid: {_short(millis)}")
    return seconds * _NS + millis * _MS


def _legacy_host(doc: dict[str, Any], host: str) -> str:
    name = as_dict(doc.get("host_info")).get("host_name")
    return name if type(name) is str and name else host


def _subject(doc: dict[str, Any]) -> tuple[dict[str, Any], int]:
    subject = doc.get("subject")
    if type(subject) is not dict:
        raise RecordError("subject missing or not an object")
    pid = as_int(subject.get("process_id"))
    if pid is None or pid < 0:
        raise RecordError(f"subject.process_id missing or invalid: {_short(subject.get('process_id'))}")
    return subject, pid


def _identity_signature(doc: dict[str, Any]) -> CodeSignature | None:
    """The ``identity`` token as a signature; ``None`` when it names nothing."""
    identity = doc.get("identity")
    if type(identity) is not dict:
        return None
    signing_id = as_str(identity.get("signer_id"))
    team_id = as_str(identity.get("team_id"))
    cdhash = as_str(identity.get("cd_hash"))
    if signing_id is None and team_id is None and cdhash is None:
        return None
    return CodeSignature(signing_id=signing_id, team_id=team_id, cdhash=cdhash.lower() if cdhash else None)


def _subject_user(subject: dict[str, Any]) -> tuple[int | None, str | None]:
    """Effective uid and user name, else the real ones."""
    uid = as_int(subject.get("effective_user_id"))
    if uid is not None:
        return uid, as_str(subject.get("effective_user_name"))
    return as_int(subject.get("user_id")), as_str(subject.get("user_name"))


def _name_or_executable(value: Any) -> tuple[str | None, str | None]:
    """``subject.process_name`` as (name, executable): Jamf fills it with a path when it knows one."""
    text = as_str(value)
    if text is None:
        return None, None
    if text.startswith("/"):
        return None, text
    return text, None


def _ordered_args(value: Any) -> tuple[str, ...]:
    """``exec_args.args`` (an object keyed ``"1"``, ``"2"``... ) in numeric key order; a plain list as is."""
    if type(value) is list:
        return as_str_tuple(value)
    if type(value) is not dict:
        return ()
    keyed: list[tuple[int, str]] = []
    for key, item in value.items():
        # isascii() keeps out digits like "²" that int() refuses; the length cap keeps int() cheap and legal.
        if type(item) is str and key.isascii() and key.isdigit() and len(key) <= 9:
            keyed.append((int(key), item))
    keyed.sort()
    return tuple(item for _, item in keyed)


def _exec_paths(value: Any) -> tuple[str | None, str | None]:
    """(executable, script) from the ``path`` token array of an execve record (see the module docstring)."""
    if type(value) is str:
        return (value or None), None
    if type(value) is not list or not value:
        return None, None
    entries = [item if type(item) is str and item else None for item in value[:3]]
    if len(entries) == 3 and entries[2] is not None:
        return entries[2], entries[1]
    if len(entries) >= 2 and entries[1] is not None:
        return entries[1], None
    return entries[0], None


def _failed(doc: dict[str, Any]) -> bool:
    ret = doc.get("return")
    if type(ret) is not dict:
        return False
    error = ret.get("error")
    if type(error) is int:
        return error != 0
    description = ret.get("description")
    return type(description) is str and description.startswith("failure")


def _map_exec(doc: dict[str, Any], header: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    # A failed execve left the old image running: there is no new image to report.
    if _failed(doc):
        return "jamf:AUE_EXECVE(failed)"
    time_ns = _header_time_ns(header)
    subject, pid = _subject(doc)
    chain = as_dict(doc.get("exec_chain_child"))
    ppid = as_int(chain.get("parent_pid"))
    if ppid is None:
        ppid = as_int(subject.get("parent_pid"))
    parent_executable = as_str(chain.get("parent_path")) or as_str(subject.get("parent_path"))
    executable, script = _exec_paths(doc.get("path"))
    name, subject_path = _name_or_executable(subject.get("process_name"))
    uid, user = _subject_user(subject)
    target = ProcessRef(
        pid=pid,
        ppid=ppid,
        parent_executable=parent_executable,
        responsible_pid=as_int(subject.get("responsible_process_id")),
        executable=executable or subject_path,
        name=name,
        args=_ordered_args(as_dict(doc.get("exec_args")).get("args")),
        uid=uid,
        user=user,
    )
    signature = _identity_signature(doc)
    # The identity token describes the image that called execve (see the module docstring).
    before = ProcessRef(pid=pid, ppid=ppid, parent_executable=parent_executable, signature=signature) \
        if signature is not None else None
    return [ProcessExec(time_ns=time_ns, host=_legacy_host(doc, host), source=FORMAT, raw=ref, process=before,
                        target=target, script_path=script)]


def _map_connect(doc: dict[str, Any], header: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent] | str:
    socket = as_dict(doc.get("socket_inet"))
    if socket.get("family") == AF_UNIX:
        return "jamf:AUE_CONNECT(unix)"
    ip = as_str(socket.get("ip_address"))
    if ip is None:
        return "jamf:AUE_CONNECT(no address)"
    time_ns = _header_time_ns(header)
    subject, pid = _subject(doc)
    port = as_int(socket.get("port"))
    name, executable = _name_or_executable(subject.get("process_name"))
    uid, user = _subject_user(subject)
    process = ProcessRef(
        pid=pid,
        ppid=as_int(subject.get("parent_pid")),
        responsible_pid=as_int(subject.get("responsible_process_id")),
        executable=executable,
        name=name,
        uid=uid,
        user=user,
        signature=_identity_signature(doc),
    )
    # Every connect attempt is kept whatever return.* says: "Operation now in progress" is a normal
    # non-blocking connect, and a refused or filtered attempt is still evidence that the process tried egress.
    return [NetworkConnection(
        time_ns=time_ns, host=_legacy_host(doc, host), source=FORMAT, raw=ref, process=process, dst_ip=ip,
        dst_port=port if port is not None and 0 <= port <= 65535 else None, protocol=None,
        direction=Direction.OUTBOUND,
    )]


# ----------------------------------------------------------------------------------------------------- alerts


def _map_alert(doc: dict[str, Any], event_type: str, ref: RawRef, host: str) -> list[AnyEvent] | str:
    if event_type == "GPDownloadEvent":
        return _map_download(doc, ref, host)
    if event_type == "GPGatekeeperEvent":
        events = _map_gatekeeper(doc, ref, host, fallback_to_event=True)
        return events or "jamf:alert/GPGatekeeperEvent(no target)"
    if event_type == "GPUnifiedLogEvent":
        # Only the kernel's Gatekeeper denial has a canonical meaning; other log alerts (XProtect Remediator
        # scans, custom filters) are detections without an event chainwatch correlates.
        message = as_dict(as_dict(doc.get("match")).get("event")).get("composedMessage")
        if type(message) is str and ASP_DENIAL in message:
            return _map_gatekeeper(doc, ref, host, fallback_to_event=False) or "jamf:alert/GPUnifiedLogEvent"
        return "jamf:alert/GPUnifiedLogEvent"
    # GPProcessEvent, GPFSEvent, GPClickEvent...: analytic detections whose match.event codes are undocumented
    # and whose related.* blocks are snapshots at alert time, not events with their own times.
    return f"jamf:alert/{_label(event_type)}"


def _alert_host(doc: dict[str, Any], host: str) -> str:
    name = as_dict(doc.get("host")).get("hostname")
    return name if type(name) is str and name else host


def _alert_time_ns(event: dict[str, Any]) -> int:
    value = _epoch_seconds(event.get("timestamp"))
    if value is None:
        raise RecordError(f"match.event.timestamp missing or invalid: {_short(event.get('timestamp'))}")
    return epoch_s_to_ns(value)


def _epoch_seconds(value: Any) -> int | float | None:
    """Epoch seconds (int or float) within years 1970..9999, else ``None`` (bools, NaN, inf, strings...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH_S:
        return None
    return value


def _b64_cdhash_hex(value: Any) -> str | None:
    """``signingInfo.cdhash`` (base64) as lowercase hex; a value already in hex is kept (lowercased)."""
    text = as_str(value)
    if text is None:
        return None
    if len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        raw = b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() or None


def _signing_info(value: Any) -> CodeSignature | None:
    if type(value) is not dict:
        return None
    status = value.get("status")
    signed = False if status == ERR_SEC_CS_UNSIGNED else (True if status == 0 else None)
    return CodeSignature(
        signing_id=as_str(value.get("appid")),
        team_id=as_str(value.get("teamid")),
        cdhash=_b64_cdhash_hex(value.get("cdhash")),
        signed=signed,
    )


class _Related:
    """Index of an alert's ``related`` block: processes by pid, binaries and files by path, users by uid."""

    __slots__ = ("binaries", "files", "processes", "users")

    def __init__(self, doc: dict[str, Any]) -> None:
        related = as_dict(doc.get("related"))
        self.processes: dict[int, dict[str, Any]] = {}
        for entry in _dicts(related.get("processes")):
            pid = as_int(entry.get("pid"))
            if pid is not None:
                self.processes.setdefault(pid, entry)
        self.binaries = {p: e for e in _dicts(related.get("binaries")) if (p := as_str(e.get("path")))}
        self.files = [e for e in _dicts(related.get("files")) if as_str(e.get("path"))]
        self.users = {u: n for e in _dicts(related.get("users"))
                      if (u := as_int(e.get("uid"))) is not None and (n := as_str(e.get("name")))}

    def entity(self, pid: int | None) -> str | None:
        """``pid:<pid>@<start ns>`` of a related process, when its start time is known."""
        if pid is None:
            return None
        entry = self.processes.get(pid)
        start = _start_ns(entry.get("startTimestamp")) if entry is not None else None
        return f"pid:{pid}@{start}" if start is not None else None

    def process(self, pid: int) -> ProcessRef | None:
        """A :class:`ProcessRef` for the related process with this pid, or ``None``."""
        entry = self.processes.get(pid)
        if entry is None:
            return None
        start = _start_ns(entry.get("startTimestamp"))
        ppid = as_int(entry.get("ppid"))
        parent = self.processes.get(ppid) if ppid is not None else None
        responsible = as_int(entry.get("responsiblePID"))
        uid = as_int(entry.get("uid"))
        return ProcessRef(
            pid=pid,
            entity_id=f"pid:{pid}@{start}" if start is not None else None,
            ppid=ppid,
            parent_entity_id=self.entity(ppid),
            parent_executable=as_str(parent.get("path")) if parent is not None else None,
            original_ppid=as_int(entry.get("originalParentPID")),
            responsible_pid=responsible,
            responsible_entity_id=self.entity(responsible),
            executable=as_str(entry.get("path")),
            name=as_str(entry.get("name")),
            args=as_str_tuple(entry.get("args")),
            uid=uid,
            user=self.users.get(uid) if uid is not None else None,
            signature=_signing_info(entry.get("signingInfo")),
            start_time_ns=start,
        )


def _dicts(value: Any) -> list[dict[str, Any]]:
    if type(value) is not list:
        return []
    return [item for item in value if type(item) is dict]


def _start_ns(value: Any) -> int | None:
    seconds = _epoch_seconds(value)
    return epoch_s_to_ns(seconds) if seconds else None


def _map_download(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent]:
    event = as_dict(as_dict(doc.get("match")).get("event"))
    path = as_str(event.get("path"))
    if path is None:
        raise RecordError("GPDownloadEvent without match.event.path")
    time_ns = _alert_time_ns(event)
    related = _Related(doc)
    pid = as_int(event.get("pid"))
    process = (related.process(pid) or ProcessRef(pid=pid)) if pid is not None else None
    common: dict[str, Any] = {
        "time_ns": time_ns, "host": _alert_host(doc, host), "source": FORMAT, "raw": ref, "process": process,
    }
    events: list[AnyEvent] = [FileWrite(**common, action=FileAction.CREATE, path=path)]
    # The alert lists xattr *names* only: the quarantine string (flags, agent, event UUID) is not in the
    # record, so the change is reported with quarantine=None. Its presence on the file at alert time is the
    # evidence; when it was set is unknown (at or before the download alert).
    seen: set[str] = set()
    for entry in related.files:
        file_path: str = entry["path"]
        xattrs = entry.get("xattrs")
        if file_path in seen or type(xattrs) is not list or QUARANTINE_XATTR not in xattrs:
            continue
        seen.add(file_path)
        events.append(XattrChange(**common, action=XattrAction.SET, path=file_path, name=QUARANTINE_XATTR,
                                  quarantine=None))
    return events


def _parse_asp(message: str | None) -> tuple[int | None, str | None]:
    """(pid, path) from ``ASP: Security policy would not allow process: <pid>, <path>``."""
    if message is None:
        return None, None
    at = message.find(ASP_DENIAL)
    if at < 0:
        return None, None
    pid_text, _, path = message[at + len(ASP_DENIAL):].partition(",")
    pid_text = pid_text.strip()
    pid = int(pid_text) if pid_text.isascii() and pid_text.isdigit() and len(pid_text) <= 10 else None
    # Only the separator's space goes: the path is attacker-chosen and may itself begin or end with white space.
    path = path.removeprefix(" ")
    return pid, path or None


def _map_gatekeeper(
    doc: dict[str, Any], ref: RawRef, host: str, *, fallback_to_event: bool
) -> list[AnyEvent]:
    """A Gatekeeper ``BLOCKED_LAUNCH`` from the kernel's ASP denial; empty when no pid or path is known."""
    match = as_dict(doc.get("match"))
    event = as_dict(match.get("event"))
    message = as_str(event.get("composedMessage"))
    pid, path = _parse_asp(message)
    if fallback_to_event:
        # GPGatekeeperEvent also states the blocked process as match.event.{pid,path}; GPUnifiedLogEvent's
        # match.event describes the logging process (the kernel), so it has no such fallback.
        if pid is None:
            pid = as_int(event.get("pid"))
        if path is None:
            path = as_str(event.get("path"))
    if pid is None and path is None:
        return []
    time_ns = _alert_time_ns(event)
    related = _Related(doc)
    process = related.process(pid) if pid is not None else None
    if process is None and pid is not None:
        process = ProcessRef(pid=pid, executable=path)
    binary = related.binaries.get(path) if path is not None else None
    signature = _signing_info(binary.get("signingInfo")) if binary is not None else None
    if signature is None and process is not None:
        signature = process.signature
    facts = _dicts(match.get("facts"))
    return [Gatekeeper(
        time_ns=time_ns, host=_alert_host(doc, host), source=FORMAT, raw=ref, process=process,
        action=GatekeeperAction.BLOCKED_LAUNCH, path=path, pid=pid,
        # The analytic's name says why (e.g. "GatekeeperBlockedSigned"); Jamf gives no result code.
        result=as_str(facts[0].get("name")) if facts else None,
        signing_id=signature.signing_id if signature is not None else None,
        team_id=signature.team_id if signature is not None else None,
        sha256=as_str(binary.get("sha256hex")) if binary is not None else None,
        message=message,
    )]


# ---------------------------------------------------------------------------------------------------- helpers


def _label(name: str) -> str:
    """An event name fit for a skip label: hostile names must not grow the skip counter without bound."""
    return name if len(name) <= _MAX_LABEL and name.isidentifier() else "other"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
