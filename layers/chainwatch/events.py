"""The canonical event model every source maps to.

Events are frozen, slotted dataclasses: cheap to build on the hot path, hashable, and impossible to mutate by
accident once a source has produced them. Times are integers of nanoseconds since the Unix epoch, UTC, so that
sources with nanosecond precision (eslogger) keep it and comparisons are integer compares.

Process identity survives pid reuse through :attr:`ProcessRef.entity_id`:

- Endpoint Security: ``es:<pid>:<pidversion>`` (pidversion changes on every exec, so it names one image);
- Elastic Defend (ECS): ``ecs:<process.entity_id>``;
- OCSF: ``ocsf:<process.uid>`` when present, else ``pid:<pid>@<start ns>``;
- otherwise ``pid:<pid>@<start ns>`` when the start time is known, and ``None`` when only a pid is known (the
  engine then attributes by pid within a lifetime and says so).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, ClassVar


class SourceFormat(StrEnum):
    """Telemetry formats chainwatch reads."""

    ESLOGGER = "eslogger"
    UNIFIED_LOG = "unifiedlog"
    ECS = "ecs"
    OCSF = "ocsf"
    JAMF = "jamf"


class EventKind(StrEnum):
    """Kinds of canonical event."""

    APP_ACTIVITY = "app_activity"
    PROCESS_FORK = "process_fork"
    PROCESS_EXEC = "process_exec"
    PROCESS_EXIT = "process_exit"
    FILE_WRITE = "file_write"
    XATTR = "xattr"
    GATEKEEPER = "gatekeeper"
    NETWORK = "network"
    MOUNT = "mount"


class AppAction(StrEnum):
    LAUNCH = "launch"
    CLICK = "click"
    CRASH = "crash"


class FileAction(StrEnum):
    CREATE = "create"
    RENAME = "rename"
    CLOSE_MODIFIED = "close_modified"
    WRITE = "write"


class XattrAction(StrEnum):
    SET = "set"
    DELETE = "delete"


class GatekeeperAction(StrEnum):
    SCAN = "scan"
    PROMPT = "prompt"
    USER_OVERRIDE = "user_override"
    REJECTION = "rejection"
    REJECTION_CLEARED = "rejection_cleared"
    BLOCKED_LAUNCH = "blocked_launch"
    TRANSLOCATION = "translocation"


class MountAction(StrEnum):
    MOUNT = "mount"
    UNMOUNT = "unmount"


class MountKind(StrEnum):
    """What was mounted (Endpoint Security's ``es_mount_disposition_t`` where the source has it)."""

    DISK_IMAGE = "disk_image"  # ES_MOUNT_DISPOSITION_VIRTUAL: a .dmg or another file-backed volume
    NULLFS = "nullfs"  # ES_MOUNT_DISPOSITION_NULLFS: App Translocation's read-only copy of a quarantined app
    EXTERNAL = "external"
    INTERNAL = "internal"
    NETWORK = "network"
    UNKNOWN = "unknown"


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RawRef:
    """Where a canonical event came from: a file and line, or a stream and sequence number."""

    origin: str
    line: int | None = None
    sequence: str | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.origin}:{self.line}"
        if self.sequence is not None:
            return f"{self.origin}#{self.sequence}"
        return self.origin


@dataclass(frozen=True, slots=True)
class CodeSignature:
    """Code-signing facts about one executable image."""

    signing_id: str | None = None
    team_id: str | None = None
    platform_binary: bool | None = None
    validation_category: int | None = None
    cdhash: str | None = None
    signed: bool | None = None
    trusted: bool | None = None


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """One process image as a record saw it.

    ``entity_id`` names one image (it changes on exec for ES and ECS). ``parent_entity_id`` and ``ppid`` name
    the real parent process (never the pre-exec image of the same pid: an exec event carries that image as its
    ``process``). ``parent_executable`` is the parent's executable when the record states it.
    """

    pid: int
    entity_id: str | None = None
    ppid: int | None = None
    parent_entity_id: str | None = None
    parent_executable: str | None = None
    original_ppid: int | None = None
    responsible_pid: int | None = None
    responsible_entity_id: str | None = None
    executable: str | None = None
    name: str | None = None
    args: tuple[str, ...] = ()
    cwd: str | None = None
    uid: int | None = None
    user: str | None = None
    signature: CodeSignature | None = None
    start_time_ns: int | None = None

    @property
    def display_name(self) -> str:
        """Process name for humans: the explicit name, else the executable's basename, else ``pid N``."""
        if self.name:
            return self.name
        if self.executable:
            return self.executable.rsplit("/", 1)[-1]
        return f"pid {self.pid}"


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A parsed ``com.apple.quarantine`` value ``FLAGS;TIMESTAMP;AGENT;EVENT_UUID``."""

    raw: str
    flags: int | None
    timestamp: int | None
    agent: str | None
    event_uuid: str | None

    DOWNLOAD = 0x0001
    SANDBOX = 0x0002
    HARD = 0x0004
    USER_APPROVED = 0x0040

    @property
    def user_approved(self) -> bool:
        return self.flags is not None and bool(self.flags & self.USER_APPROVED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every canonical event has."""

    time_ns: int
    host: str
    source: SourceFormat
    raw: RawRef
    process: ProcessRef | None = None
    kind: ClassVar[EventKind] = EventKind.APP_ACTIVITY

    @property
    def time(self) -> datetime:
        """Event time as an aware UTC datetime (microsecond precision; ``time_ns`` keeps the rest)."""
        return datetime.fromtimestamp(self.time_ns / 1e9, tz=UTC)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (see :func:`event_to_dict`)."""
        return event_to_dict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppActivity(Event):
    """A user-facing app was launched, clicked or crashed (unified log, or an exec fallback)."""

    action: AppAction
    bundle_id: str | None = None
    app_name: str | None = None
    pid: int | None = None
    app_path: str | None = None
    message: str | None = None
    kind: ClassVar[EventKind] = EventKind.APP_ACTIVITY


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessFork(Event):
    """``process`` forked ``child``."""

    child: ProcessRef
    kind: ClassVar[EventKind] = EventKind.PROCESS_FORK


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessExec(Event):
    """``process`` (the pre-exec image, when known) became ``target``."""

    target: ProcessRef
    script_path: str | None = None
    kind: ClassVar[EventKind] = EventKind.PROCESS_EXEC


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessExit(Event):
    """``process`` exited; ``signal`` is set when it was killed by one (a crash indicator)."""

    exit_status: int | None = None
    signal: int | None = None
    kind: ClassVar[EventKind] = EventKind.PROCESS_EXIT


@dataclass(frozen=True, slots=True, kw_only=True)
class FileWrite(Event):
    """``process`` created, renamed into place, modified or wrote ``path``."""

    action: FileAction
    path: str
    source_path: str | None = None
    kind: ClassVar[EventKind] = EventKind.FILE_WRITE


@dataclass(frozen=True, slots=True, kw_only=True)
class XattrChange(Event):
    """An extended attribute was set or deleted; ``quarantine`` is parsed when the value is known."""

    action: XattrAction
    path: str
    name: str
    quarantine: Quarantine | None = None
    kind: ClassVar[EventKind] = EventKind.XATTR


@dataclass(frozen=True, slots=True, kw_only=True)
class Gatekeeper(Event):
    """Gatekeeper evidence: a scan, a prompt, a user override, a rejection, a blocked launch, a translocation."""

    action: GatekeeperAction
    path: str | None = None
    pid: int | None = None
    result: str | None = None
    signing_id: str | None = None
    team_id: str | None = None
    sha256: str | None = None
    message: str | None = None
    kind: ClassVar[EventKind] = EventKind.GATEKEEPER


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConnection(Event):
    """A network connection by ``process``."""

    dst_ip: str | None
    dst_port: int | None = None
    hostname: str | None = None
    protocol: str | None = None
    direction: Direction = Direction.OUTBOUND
    src_ip: str | None = None
    src_port: int | None = None
    kind: ClassVar[EventKind] = EventKind.NETWORK


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeMount(Event):
    """A volume was mounted or unmounted: a disk image at ``/Volumes/<name>``, or App Translocation's nullfs copy.

    ``mount_point`` is where it appears (statfs ``f_mntonname``); ``mounted_from`` what it came from
    (``f_mntfromname``: a device such as ``/dev/disk4s1`` for an image, the original folder for a nullfs
    translocation mount); ``image_path`` the image file when a record names it (``hdiutil attach PATH``, a
    DiskImages log line). ``process`` is the mounting process (diskimagesiod, DiskImageMounter, lsd, hdiutil).
    """

    action: MountAction
    mount_point: str
    mounted_from: str | None = None
    mount_kind: MountKind = MountKind.UNKNOWN
    fs_type: str | None = None
    image_path: str | None = None
    kind: ClassVar[EventKind] = EventKind.MOUNT


AnyEvent = AppActivity | ProcessFork | ProcessExec | ProcessExit | FileWrite | XattrChange | Gatekeeper | \
    NetworkConnection | VolumeMount


def parse_quarantine(value: str) -> Quarantine:
    """Parse a ``com.apple.quarantine`` value.

    Fields that do not parse are ``None``; the raw text is always kept.

    >>> q = parse_quarantine("0083;66f0f0f0;Safari;7F3A6E0C-1B2D-4C5E-8F90-A1B2C3D4E5F6")
    >>> (q.flags, q.timestamp, q.agent, q.event_uuid)
    (131, 1727066352, 'Safari', '7F3A6E0C-1B2D-4C5E-8F90-A1B2C3D4E5F6')
    """
    parts = value.strip().rstrip("\x00").split(";")
    flags = _hex_or_none(parts[0]) if parts else None
    timestamp = _hex_or_none(parts[1]) if len(parts) > 1 else None
    agent = parts[2] or None if len(parts) > 2 else None
    event_uuid = parts[3] or None if len(parts) > 3 else None
    return Quarantine(raw=value, flags=flags, timestamp=timestamp, agent=agent, event_uuid=event_uuid)


def _hex_or_none(text: str) -> int | None:
    # Quarantine flags and timestamps are 4 and 8 hex digits; an attacker's 5,000 are not a number any JSON
    # writer downstream could write back (orjson stops at 64 bits).
    if len(text.strip()) > 16:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


# -- JSON-ready renderings (the ``normalize`` output and the evidence in findings) --------------------------------


def iso_ns(time_ns: int) -> str:
    """RFC 3339 UTC text with all nine fractional digits: ``2025-08-07T15:13:09.811587464Z``."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if item is None or item == ():
                continue
            out[f.name] = _plain(item)
        return out
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def event_to_dict(event: Event) -> dict[str, Any]:
    """One canonical event as a flat-ish JSON mapping (``None`` and empty fields left out)."""
    out: dict[str, Any] = {"kind": event.kind.value, "time": iso_ns(event.time_ns)}
    for f in fields(event):
        value = getattr(event, f.name)
        if value is None or value == ():
            continue
        if f.name == "raw":
            out["raw"] = str(value)
        else:
            out[f.name] = _plain(value)
    return out
