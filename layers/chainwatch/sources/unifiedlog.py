"""The macOS unified log as written by ``log show|stream --style ndjson`` (or ``--style json``, an array).

Facts this module relies on (``shared/reference/macos-telemetry.md`` sections 3.1 and 3.2):

- a record has ``eventMessage``, ``eventType``, ``processImagePath``, ``processID``, ``subsystem``,
  ``category``, ``timestamp`` and more, but **no process-name, parent-pid, audit-token or host field**: the
  process name is the basename of ``processImagePath``, the host comes from the caller, and the process is
  known by pid only (``entity_id`` stays ``None``);
- ``timestamp`` is local time with an offset, ``YYYY-MM-DD HH:MM:SS.ffffff+hhmm`` (no ``T``);
- ``traceID`` is an unsigned 64-bit value that can exceed int64; it is not mapped (see :func:`trace_id`);
- the evidence is in unstructured message text, so which records matter and what they mean is data: the
  patterns in ``unifiedlog_patterns.yaml`` (process basename + optional subsystem + message prefix /
  substring / regex), validated and compiled once when this module is imported;
- ``log show --style ndjson`` ends with a ``{"count": N, "finished": 1}`` line, read as a skipped trailer;
- every name and path inside a message is attacker-controlled, so the packaged regexes anchor on the fixed parts
  of Apple's format strings and group values are used exactly as matched (no trimming, no length cap);
- disk-image and mount lines (``mount`` patterns) become :class:`~chainwatch.events.VolumeMount` events. Their
  wording is known from format strings in Apple's binaries and open-source DiskArbitration / Security code, not
  from rendered captures, and their paths are often ``<private>``; a line that yields neither a mount point nor
  an image path is skipped (:data:`SKIP_MOUNT_NO_PATH`). A line naming only the image gives a ``VolumeMount``
  whose ``mount_point`` is ``""`` (the volume is not known yet).

Most records of a real log are not evidence. They are classified before anything else is parsed, and only
against the patterns of their own process (plus the few ``"*"`` patterns), with ``str.startswith`` or ``in``
before any regex, so an unused record costs a dict lookup and a handful of string compares.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from chainwatch.errors import PolicyError, RecordError
from chainwatch.events import (
    AnyEvent,
    AppAction,
    AppActivity,
    EventKind,
    Gatekeeper,
    GatekeeperAction,
    MountAction,
    MountKind,
    ProcessRef,
    RawRef,
    SourceFormat,
    VolumeMount,
)
from chainwatch.policy import Policy
from chainwatch.sources.common import basename, parse_time_ns

FORMAT = SourceFormat.UNIFIED_LOG

#: File name of the packaged pattern file (beside this module).
PATTERNS_FILE = "unifiedlog_patterns.yaml"
#: Longest ``message`` kept on an event; the rest of a long log line is not evidence.
MAX_MESSAGE = 512
#: ``process`` value of a pattern that applies to every process.
ANY_PROCESS = "*"

SKIP_UNCLASSIFIED = "unifiedlog:unclassified"
SKIP_LOSS = "unifiedlog:lossEvent"
SKIP_TRAILER = "unifiedlog:trailer"
SKIP_MOUNT_NO_PATH = "unifiedlog:mount(no path)"
SKIP_UNTRACKED_APP = "unifiedlog:app_activity(untracked)"

#: Regex group names each event kind can use (``url`` is a ``file://`` URL that becomes ``path``).
GROUPS: dict[EventKind, frozenset[str]] = {
    EventKind.APP_ACTIVITY: frozenset({"bundle_id", "pid", "path", "url", "app_name"}),
    EventKind.GATEKEEPER: frozenset({"pid", "path", "url", "result", "team_id", "signing_id"}),
    EventKind.MOUNT: frozenset({"mount_point", "image_path", "mounted_from", "fs_type"}),
}
Action = AppAction | GatekeeperAction | MountAction
_ACTIONS: dict[str, tuple[EventKind, type[AppAction] | type[GatekeeperAction] | type[MountAction]]] = {
    "app_activity": (EventKind.APP_ACTIVITY, AppAction),
    "gatekeeper": (EventKind.GATEKEEPER, GatekeeperAction),
    "mount": (EventKind.MOUNT, MountAction),
}
_KIND_OF_ACTION: dict[type, EventKind] = {AppAction: EventKind.APP_ACTIVITY, GatekeeperAction: EventKind.GATEKEEPER,
                                          MountAction: EventKind.MOUNT}
#: Subsystems whose mount lines are about disk images (DiskImages2 and the older DiskImages framework).
DISK_IMAGE_SUBSYSTEMS = frozenset({"com.apple.DiskImages2", "com.apple.diskimages"})
#: Processes whose mount lines are about disk images (the DiskImages2 daemon and the attach front ends).
DISK_IMAGE_PROCESSES = frozenset({"diskimagesiod", "diskimages-helper", "DiskImageMounter", "hdiutil"})
#: A bare BSD device name ("disk5s1") as DiskImages2 logs it; ES writes the same device as "/dev/disk5s1".
_BSD_NAME = re.compile(r"disk\d+(?:s\d+)*")
_ENTRY_KEYS = frozenset(
    {"id", "event", "action", "process", "subsystem", "prefix", "contains", "regex", "note"}
)
_TOP_KEYS = frozenset({"version", "patterns"})
#: Group values that mean "no value": Apple's "(null)" and redacted private data.
_EMPTY_VALUES = frozenset({"", "(null)", "<private>"})
#: ``userID`` 0xAAAAAAAA is a fill pattern (seen on launchd records), not a uid.
_UID_UNSET = 0xAAAAAAAA
_NO_GROUPS: Mapping[str, str | None] = {}


@dataclass(frozen=True, slots=True)
class Pattern:
    """One classification rule: which records it matches and the event it yields.

    ``prefix`` / ``contains`` are the cheap guard; ``regex`` (searched only after the guard passed) extracts
    the named groups listed in :data:`GROUPS`.
    """

    id: str
    action: Action
    processes: tuple[str, ...]
    subsystems: tuple[str, ...] | None
    prefix: str | None
    contains: str | None
    regex: re.Pattern[str] | None
    line: int

    @property
    def event(self) -> EventKind:
        """The kind of event this pattern yields."""
        return _KIND_OF_ACTION[type(self.action)]

    def match(self, subsystem: str | None, message: str) -> Mapping[str, str | None] | None:
        """The regex groups (empty without a regex) when the record matches, else ``None``."""
        if self.subsystems is not None and subsystem not in self.subsystems:
            return None
        if self.prefix is not None and not message.startswith(self.prefix):
            return None
        if self.contains is not None and self.contains not in message:
            return None
        if self.regex is None:
            return _NO_GROUPS
        found = self.regex.search(message)
        return found.groupdict() if found is not None else None


class PatternSet:
    """Validated patterns indexed by process basename, so each record meets only its own process's patterns.

    Parameters
    ----------
    patterns:
        The patterns in file order (the first match wins).
    origin:
        Where they were read from, for messages.
    """

    def __init__(self, patterns: Iterable[Pattern], origin: str) -> None:
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        self.origin = origin
        self._any = tuple(p for p in self.patterns if ANY_PROCESS in p.processes)
        names = {name for p in self.patterns for name in p.processes if name != ANY_PROCESS}
        # Each name's tuple keeps file order across its own and the "*" patterns.
        self._by_process: dict[str, tuple[Pattern, ...]] = {
            name: tuple(p for p in self.patterns if name in p.processes or ANY_PROCESS in p.processes)
            for name in names
        }

    def candidates(self, process: str) -> tuple[Pattern, ...]:
        """The patterns a record of process basename ``process`` is tested against, in order."""
        return self._by_process.get(process, self._any)

    def classify(
        self, process: str, subsystem: str | None, message: str
    ) -> tuple[Pattern, Mapping[str, str | None]] | None:
        """The first pattern matching a message of process ``process`` (basename), with its groups."""
        for pattern in self._by_process.get(process, self._any):
            groups = pattern.match(subsystem, message)
            if groups is not None:
                return pattern, groups
        return None


# ---- loading and validation --------------------------------------------------------------------------


def load_patterns(path: str | os.PathLike[str] | None = None) -> PatternSet:
    """Load and validate a pattern file: the packaged one by default, or another (for tests and overrides).

    Raises
    ------
    PolicyError
        When the file cannot be read or an entry is invalid; ``line`` is the entry's (or its field's) line.
    """
    if path is None:
        resource = files("chainwatch.sources") / PATTERNS_FILE
        origin = str(resource)
        try:
            text = resource.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read pattern file: {exc}", path=origin) from exc
        return parse_patterns(text, origin)
    origin = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read pattern file: {exc}", path=origin) from exc
    return parse_patterns(text, origin)


def parse_patterns(text: str, origin: str) -> PatternSet:
    """Validate and compile the patterns in YAML ``text``; ``origin`` names the file in errors.

    The YAML is composed to nodes first, which carry the line of every entry and key, and then constructed, so
    every error points at the offending entry, or at the offending field of it.

    Raises
    ------
    PolicyError
        For invalid YAML or an invalid entry.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if not isinstance(root, yaml.MappingNode):
            raise PolicyError("a pattern file is a mapping with a 'patterns' list", path=origin,
                              line=root.start_mark.line + 1 if root is not None else 1)
        # Key lines are read before construction: constructing a mapping with a merge key ("<<") rewrites the
        # node's key list, which would then show merged keys as repeated ones.
        lines = _key_lines(root, origin)
        items_node = next((value for key, value in root.value if key.value == "patterns"), None)
        entries: list[tuple[int, dict[str, int]]] = []
        if isinstance(items_node, yaml.SequenceNode):
            for node in items_node.value:
                keys = _key_lines(node, origin) if isinstance(node, yaml.MappingNode) else {}
                entries.append((node.start_mark.line + 1, keys))
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PolicyError(f"invalid YAML: {exc.problem or exc}", path=origin,
                          line=mark.line + 1 if mark is not None else None) from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"invalid YAML: {exc}", path=origin) from exc
    finally:
        loader.dispose()
    unknown = sorted(str(key) for key in data if key not in _TOP_KEYS)
    if unknown:
        raise PolicyError(f"unknown top-level key {unknown[0]!r}", path=origin, line=lines.get(unknown[0]))
    if data.get("version", 1) != 1:
        raise PolicyError(f"unsupported version {data['version']!r} (expected 1)", path=origin,
                          line=lines.get("version"))
    items = data.get("patterns")
    if not isinstance(items, list) or len(items) != len(entries):
        raise PolicyError("'patterns' must be a list", path=origin, line=lines.get("patterns", 1))
    patterns: list[Pattern] = []
    seen: dict[str, int] = {}
    for item, (line, keys) in zip(items, entries, strict=True):
        pattern = _pattern(item, line, keys, origin)
        if pattern.id in seen:
            raise PolicyError(f"duplicate id {pattern.id!r} (first on line {seen[pattern.id]})", path=origin,
                              line=pattern.line)
        seen[pattern.id] = pattern.line
        patterns.append(pattern)
    return PatternSet(patterns, origin)


def _key_lines(node: yaml.MappingNode, origin: str) -> dict[str, int]:
    """Line of each key of a mapping node; a repeated key is an error (YAML would silently keep the last)."""
    lines: dict[str, int] = {}
    for key, _value in node.value:
        name = str(key.value)
        line = key.start_mark.line + 1
        if name in lines:
            raise PolicyError(f"key {name!r} repeated (first on line {lines[name]})", path=origin, line=line)
        lines[name] = line
    return lines


def _pattern(item: Any, line: int, lines: dict[str, int], origin: str) -> Pattern:
    """Validate one list entry (starting on ``line``, keys on ``lines``) and compile it."""
    if not isinstance(item, dict):
        raise PolicyError("a pattern must be a mapping", path=origin, line=line)

    def fail(reason: str, key: str | None = None) -> PolicyError:
        return PolicyError(reason, path=origin, line=lines.get(key, line) if key else line)

    for key in item:
        if key not in _ENTRY_KEYS:
            raise fail(f"unknown key {key!r} (allowed: {', '.join(sorted(_ENTRY_KEYS))})", str(key))
    ident = item.get("id")
    if not isinstance(ident, str) or not ident:
        raise fail("'id' must be a non-empty string", "id")
    event = item.get("event")
    if event not in _ACTIONS:
        raise fail(f"{ident}: unknown event {event!r} (expected one of {', '.join(_ACTIONS)})", "event")
    kind, action_type = _ACTIONS[event]
    raw_action = item.get("action")
    allowed = {member.value: member for member in action_type}
    action = allowed.get(raw_action) if isinstance(raw_action, str) else None
    if action is None:
        raise fail(f"{ident}: unknown {event} action {raw_action!r} (expected one of {', '.join(allowed)})",
                   "action")
    processes = _processes(item.get("process"))
    if processes is None:
        raise fail(f"{ident}: 'process' must be a process basename, a non-empty list of them, or '*'",
                   "process")
    subsystems = _names(item.get("subsystem")) if "subsystem" in item else None
    if "subsystem" in item and subsystems is None:
        raise fail(f"{ident}: 'subsystem' must be a non-empty string or a non-empty list of them", "subsystem")
    guards = {key: item[key] for key in ("prefix", "contains") if item.get(key) is not None}
    for key, value in guards.items():
        if not isinstance(value, str) or not value:
            raise fail(f"{ident}: '{key}' must be a non-empty string", key)
    if len(guards) > 1:
        raise fail(f"{ident}: use 'prefix' or 'contains', not both", "contains")
    regex = _regex(item.get("regex"), ident, kind, fail)
    if not guards and regex is None:
        raise fail(f"{ident}: needs 'prefix', 'contains' or 'regex'")
    return Pattern(
        id=ident, action=action, processes=processes, subsystems=subsystems, prefix=guards.get("prefix"),
        contains=guards.get("contains"), regex=regex, line=line,
    )


def _names(value: Any) -> tuple[str, ...] | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        return None
    return tuple(names)


def _processes(value: Any) -> tuple[str, ...] | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        return None
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            return None
    return tuple(names)


def _regex(
    value: Any, ident: str, kind: EventKind, fail: Callable[[str, str], PolicyError]
) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise fail(f"{ident}: 'regex' must be a non-empty string", "regex")
    try:
        compiled = re.compile(value)
    except (re.error, OverflowError, RecursionError) as exc:
        raise fail(f"{ident}: invalid regex: {exc}", "regex") from None
    extra = sorted(set(compiled.groupindex) - GROUPS[kind])
    if extra:
        raise fail(f"{ident}: regex group {extra[0]!r} is not a {kind.value} field (allowed: "
                   f"{', '.join(sorted(GROUPS[kind]))})", "regex")
    return compiled


#: The packaged patterns, validated and compiled once at import.
PATTERNS: PatternSet = load_patterns()


# ---- mapping -----------------------------------------------------------------------------------------------


def detect(doc: dict[str, Any]) -> bool:
    """Whether a document is a unified-log record (or the ``{"count", "finished"}`` trailer of log show)."""
    if "eventMessage" in doc:
        return "processImagePath" in doc or ("timestamp" in doc and "eventType" in doc)
    return "finished" in doc and "count" in doc and len(doc) == 2


def trace_id(doc: dict[str, Any]) -> str | None:
    """``traceID`` as decimal text (it is unsigned 64-bit and can exceed int64), or ``None``.

    A float (what some JSON decoders make of very large integers) has lost digits and is not returned.
    """
    value = doc.get("traceID")
    if type(value) is int and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return value
    return None


def file_url_path(url: str) -> str | None:
    """The percent-decoded path of a ``file://`` URL (trailing slash removed), or ``None`` for other URLs.

    >>> file_url_path("file:///Applications/Antigravity%20Tools.app/")
    '/Applications/Antigravity Tools.app'
    """
    if not url.startswith("file://"):
        return None
    rest = url[7:]
    if not rest.startswith("/"):
        # file://localhost/path: drop the host part.
        slash = rest.find("/")
        if slash < 0:
            return None
        rest = rest[slash:]
    return _trim(unquote(rest))


def app_name_from_path(path: str) -> str | None:
    """The app name of a path: the innermost ``*.app`` component without ``.app``, else the basename.

    >>> app_name_from_path("/private/var/folders/x4/T/AppTranslocation/6A1F/d/UpdateHelper.app")
    'UpdateHelper'
    """
    for part in reversed(path.split("/")):
        if len(part) > 4 and part.endswith(".app"):
            return part[:-4]
    return basename(path)


def _mount(
    groups: Mapping[str, str | None], action: MountAction, process: str, subsystem: str | None,
    common: dict[str, Any],
) -> list[AnyEvent] | str:
    """The :class:`VolumeMount` of a ``mount`` pattern's groups, or :data:`SKIP_MOUNT_NO_PATH`.

    ``mount_kind``: ``NULLFS`` for an App Translocation mount point, ``DISK_IMAGE`` when the line names an image
    or comes from a DiskImages subsystem or process, else ``UNKNOWN`` (a DiskArbitration line may be about any disk).
    """
    point = _value(groups, "mount_point")
    image = _value(groups, "image_path")
    if point is None and image is None:
        return SKIP_MOUNT_NO_PATH
    point = _trim(point) if point is not None else ""
    image = _trim(image) if image is not None else None
    source = _value(groups, "mounted_from")
    if source is not None and _BSD_NAME.fullmatch(source):
        source = "/dev/" + source
    if "/AppTranslocation/" in point:
        kind = MountKind.NULLFS
    elif image is not None or subsystem in DISK_IMAGE_SUBSYSTEMS or process in DISK_IMAGE_PROCESSES:
        kind = MountKind.DISK_IMAGE
    else:
        kind = MountKind.UNKNOWN
    return [VolumeMount(**common, action=action, mount_point=point, mounted_from=source, mount_kind=kind,
                        fs_type=_value(groups, "fs_type"), image_path=image)]


def _trim(path: str) -> str:
    return path.rstrip("/") or path


def _value(groups: Mapping[str, str | None], name: str) -> str | None:
    """A group's value exactly as matched (names and paths may begin or end with spaces), or ``None``.

    Only the test for "no value" ignores surrounding white space.
    """
    value = groups.get(name)
    if value is None or value.strip() in _EMPTY_VALUES:
        return None
    return value


def _process(doc: dict[str, Any], image: str | None) -> ProcessRef | None:
    """The logging process, known by pid only; ``None`` when the record has no integer ``processID``."""
    pid = doc.get("processID")
    if type(pid) is not int:
        return None
    uid = doc.get("userID")
    return ProcessRef(
        pid=pid,
        executable=image,
        uid=uid if type(uid) is int and 0 <= uid != _UID_UNSET else None,
    )


def map_record(
    doc: dict[str, Any], ref: RawRef, host: str, *, patterns: PatternSet | None = None,
    policy: Policy | None = None,
) -> list[AnyEvent] | str:
    """Map one unified-log record to at most one canonical event, or return a skip label.

    ``patterns`` replaces the packaged :data:`PATTERNS` (tests, site overrides). The record is classified
    before its timestamp is parsed, so an unused record with a broken timestamp is skipped, not rejected.
    With ``policy`` (tracked-only mapping, what ``detect`` uses), a launch or crash of an app that is not one of
    the policy's apps is labelled :data:`SKIP_UNTRACKED_APP` instead of being mapped (the engine keeps only those
    and clicks).

    Raises
    ------
    RecordError
        When ``eventMessage`` is not a string, or a classified record has an invalid ``timestamp``.
    """
    if doc.get("eventType") == "lossEvent":
        return SKIP_LOSS
    message = doc.get("eventMessage")
    if message is None and "finished" in doc:
        return SKIP_TRAILER
    if not isinstance(message, str):
        raise RecordError("eventMessage is missing or not a string")
    image = doc.get("processImagePath")
    image = image if isinstance(image, str) and image else None
    name = image[image.rfind("/") + 1 :] if image else ""
    subsystem = doc.get("subsystem")
    subsystem = subsystem if isinstance(subsystem, str) else None
    found = (patterns or PATTERNS).classify(name, subsystem, message)
    if found is None:
        return SKIP_UNCLASSIFIED
    pattern, groups = found
    path = _value(groups, "path")
    if path is not None:
        path = _trim(path)
    else:
        url = _value(groups, "url")
        path = file_url_path(url) if url is not None else None
    action = pattern.action
    if policy is not None and isinstance(action, AppAction) and action is not AppAction.CLICK:
        named = _value(groups, "app_name")
        if policy.app_for_activity(_value(groups, "bundle_id"), named if named is not None else (
                app_name_from_path(path) if path else None), path) is None:
            return SKIP_UNTRACKED_APP
    time_ns = parse_time_ns(doc.get("timestamp"))
    process = _process(doc, image)
    text = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE]
    pid_text = _value(groups, "pid")
    # isdecimal is what int() accepts (isdigit also passes "²"); the cap keeps int() cheap and in range.
    pid = int(pid_text) if pid_text is not None and pid_text.isdecimal() and len(pid_text) <= 10 else None
    if isinstance(action, MountAction):
        return _mount(groups, action, name, subsystem, common={
            "time_ns": time_ns, "host": host, "source": FORMAT, "raw": ref, "process": process})
    if isinstance(action, AppAction):
        app_name = _value(groups, "app_name")
        return [AppActivity(
            time_ns=time_ns, host=host, source=FORMAT, raw=ref, process=process, action=action,
            bundle_id=_value(groups, "bundle_id"),
            app_name=app_name if app_name is not None else (app_name_from_path(path) if path else None),
            pid=pid, app_path=path, message=text,
        )]
    return [Gatekeeper(
        time_ns=time_ns, host=host, source=FORMAT, raw=ref, process=process, action=action, path=path,
        pid=pid, result=_value(groups, "result"), team_id=_value(groups, "team_id"),
        signing_id=_value(groups, "signing_id"), message=text,
    )]
