"""Per-host chain state and the admission rules that keep it small.

Every admission decision is *local*: it looks only at the event itself and the policy, never at what arrived
before. That is what makes the state, and so the findings, independent of arrival order. What is kept:

- process images whose role matters (policy apps and their helpers, interpreters, intermediates), whose parent is
  a policy app or helper, or that run from a suspicious place (downloads, ``~/Library``, temp, volumes);
- app activity of policy apps, and Finder clicks;
- file writes into watched paths by processes that matter (or by processes a source names only by pid);
- quarantine attribute changes, Gatekeeper evidence;
- disk-image mounts and App Translocation's nullfs mounts (the delivery lineage of an app shipped in a .dmg), and
  copies of app bundles into ``/Applications`` (an app dragged off a mounted image);
- apps started from ``/Applications`` whose signature is not Apple's or a known vendor's (a dragged-in stealer);
- outbound connections that are egress (not loopback) from processes that are not the apps themselves.

Everything is dropped once the window has passed (:meth:`HostState.evict_before`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chainwatch.engine.lineage import ProcessTable
from chainwatch.events import (
    AnyEvent,
    AppAction,
    AppActivity,
    Direction,
    FileWrite,
    Gatekeeper,
    MountKind,
    NetworkConnection,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    ProcessRef,
    VolumeMount,
    XattrChange,
)
from chainwatch.policy import Classification, Policy, Role

QUARANTINE_XATTR = "com.apple.quarantine"
_APP_ROLES = (Role.APP, Role.HELPER)


@dataclass
class HostState:
    """Everything the engine keeps about one host."""

    host: str
    processes: ProcessTable = field(default_factory=ProcessTable)
    apps: list[AppActivity] = field(default_factory=list)
    #: Landed files, at most two per (writer pid, path): the first and the latest write. Apps rewrite the same
    #: files in ~/Library all day; the first write is what a chain's stage 2 needs and the latest keeps the span,
    #: so everything in between is redundant. Keeping min and max by time is independent of arrival order.
    file_slots: dict[str, FileWrite] = field(default_factory=dict)
    #: Time-sorted view of the landed files, rebuilt by each assembly (not persisted).
    files_view: list[FileWrite] = field(default_factory=list, compare=False, repr=False)
    xattrs: list[XattrChange] = field(default_factory=list)
    gatekeeper: list[Gatekeeper] = field(default_factory=list)
    network: list[NetworkConnection] = field(default_factory=list)
    mounts: list[VolumeMount] = field(default_factory=list)
    watermark_ns: int = 0
    seen: set[tuple[str, str]] = field(default_factory=set)
    version: int = 0
    #: Evidence before this time has been evicted (0: nothing evicted yet). Tells the engine whether a chain that
    #: a new assembly no longer produces was superseded by later evidence or merely aged out.
    horizon_ns: int = 0
    #: The findings this host's state has produced: id -> [revision, digest, stages, first seen ns, stage-3 key].
    #: Kept with the state so that a re-assembly anywhere (another Lambda invocation) knows what is new.
    finding_digests: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def files(self) -> list[FileWrite]:
        """The landed files held (each once, unordered)."""
        unique: dict[int, FileWrite] = {id(e): e for e in self.file_slots.values()}
        return list(unique.values())

    def add_file(self, event: FileWrite) -> bool:
        """Hold a landed file if it is the first or the latest write of its (writer, path). Returns if it was."""
        pid = event.process.pid if event.process is not None else -1
        key = f"{pid}|{event.path}"
        first, last = self.file_slots.get(key + "|f"), self.file_slots.get(key + "|l")
        order = (event.time_ns, str(event.raw))
        kept = False
        replaced: list[FileWrite] = []
        if first is None or order < (first.time_ns, str(first.raw)):
            self.file_slots[key + "|f"] = event
            kept = True
            if first is not None and first is not last:
                replaced.append(first)
        if last is None or order > (last.time_ns, str(last.raw)):
            self.file_slots[key + "|l"] = event
            kept = True
            if last is not None and last is not first:
                replaced.append(last)
        for old in replaced:
            # A write that is no longer held needs no redelivery guard: if it comes again it falls between the
            # first and the latest write and is not kept.
            self.seen.discard(event_identity(old))
        return kept

    def __len__(self) -> int:
        return (len(self.processes.nodes) + len(self.apps) + len(self.files) + len(self.xattrs)
                + len(self.gatekeeper) + len(self.network) + len(self.mounts))

    def evict_before(self, horizon_ns: int) -> None:
        self.horizon_ns = max(self.horizon_ns, horizon_ns)
        self.processes.evict_before(horizon_ns)
        self.apps = [e for e in self.apps if e.time_ns >= horizon_ns]
        self.file_slots = {k: e for k, e in self.file_slots.items() if e.time_ns >= horizon_ns}
        self.xattrs = [e for e in self.xattrs if e.time_ns >= horizon_ns]
        self.gatekeeper = [e for e in self.gatekeeper if e.time_ns >= horizon_ns]
        self.network = [e for e in self.network if e.time_ns >= horizon_ns]
        self.mounts = [e for e in self.mounts if e.time_ns >= horizon_ns]
        self.seen = {s for s in self.seen if int(s[1]) >= horizon_ns}
        # A finding record can go once its chain can no longer be assembled at all (its stage-3 process is gone):
        # until then it must stay, or a partial re-assembly would look like a new chain.
        nodes = self.processes.nodes
        self.finding_digests = {k: v for k, v in self.finding_digests.items()
                                if v[3] >= horizon_ns or v[4] in nodes}


def _classify(policy: Policy, ref: ProcessRef | None) -> Classification | None:
    if ref is None:
        return None
    return policy.classify(ref.executable, ref.signature)


def _is_app_copy(event: FileWrite) -> bool:
    """A write that puts an app bundle into ``/Applications`` (its folder or its main executable)."""
    path = event.path
    if not path.startswith("/Applications/"):
        return False
    cut = path.find(".app")
    if cut < 0:
        return False
    rest = path[cut + 4:]
    return rest in ("", "/") or rest.startswith("/Contents/MacOS/") or (
        event.source_path is not None and event.source_path.startswith("/Volumes/"))


def event_identity(event: AnyEvent) -> tuple[str, str]:
    """What makes an event the same on redelivery: its record, its kind and object within the record, its time."""
    return (f"{event.raw}|{event.kind.value}|{getattr(event, 'path', '')}|{getattr(event, 'name', '')}",
            str(event.time_ns))


def admit(state: HostState, policy: Policy, event: AnyEvent) -> bool:
    """Add ``event`` to ``state`` when it can matter to a chain. Returns whether the state changed.

    Only what is kept moves the host's watermark (the event time of the evidence held), so an event that cannot
    matter changes nothing at all: dropping it before it is even decoded (the relevance gate, the tracked-only
    mapping of ``detect``) gives the same state, the same windows and the same findings.
    """
    if not _admit(state, policy, event):
        return False
    state.watermark_ns = max(state.watermark_ns, event.time_ns)
    state.version += 1
    return True


def _fresh(state: HostState, event: AnyEvent) -> tuple[str, str] | None:
    """The event's identity when the state does not hold it yet; ``None`` for a redelivery.

    The same record delivered twice (at-least-once delivery) must not be kept twice. One record can yield several
    events (a download and its quarantine attribute; one xattr event per attribute): the identity names the event
    within its record, not just the record. Computed only for events that would be kept.
    """
    identity = event_identity(event)
    return None if identity in state.seen else identity


def _admit(state: HostState, policy: Policy, event: AnyEvent) -> bool:
    if not relevant(policy, event):
        return False
    identity = _fresh(state, event)
    if identity is None:
        return False
    role: Classification | None = None
    if isinstance(event, ProcessExec):
        role = policy.tracks_process(event.target)[1]
    elif isinstance(event, ProcessFork):
        role = policy.classify(event.child.executable, event.child.signature)
    elif isinstance(event, ProcessExit) and event.process is not None and \
            not policy.tracks_process(event.process)[0] and event.process.entity_id not in state.processes.nodes:
        return False
    if not hold(state, event, role):
        return False
    state.seen.add(identity)
    return True


def hold(state: HostState, event: AnyEvent, role: Classification | None = None) -> bool:
    """Put an event the admission rules keep into the state (also how a stored delta is replayed).

    Returns whether it was held: a landed file between the first and the latest write of its (writer, path) is not,
    nor an exit that names no process, nor an event of a kind the state has no place for.
    """
    if isinstance(event, ProcessExec):
        state.processes.add_exec(event, role)
    elif isinstance(event, ProcessFork):
        state.processes.add_fork(event, role)
    elif isinstance(event, ProcessExit):
        if event.process is None:
            return False
        state.processes.add_exit(event.process, event.time_ns)
    elif isinstance(event, FileWrite):
        return state.add_file(event)
    elif isinstance(event, AppActivity):
        state.apps.append(event)
    elif isinstance(event, XattrChange):
        state.xattrs.append(event)
    elif isinstance(event, Gatekeeper):
        state.gatekeeper.append(event)
    elif isinstance(event, VolumeMount):
        state.mounts.append(event)
    elif isinstance(event, NetworkConnection):
        state.network.append(event)
    else:
        return False
    return True


def relevant(policy: Policy, event: AnyEvent) -> bool:
    """Whether an event can matter to a chain at all, judged on the event and the policy alone.

    The admission rules of the module docstring, except the one that needs state: a process exit is relevant
    whenever it names a process (it is kept only for a process the state tracks).
    """
    if isinstance(event, ProcessExec):
        return policy.tracks_process(event.target)[0]
    if isinstance(event, ProcessFork):
        return policy.classify(event.child.executable, event.child.signature) is not None
    if isinstance(event, ProcessExit):
        return event.process is not None
    if isinstance(event, AppActivity):
        return event.action is AppAction.CLICK or policy.app_for_activity(event.bundle_id, event.app_name,
                                                                          event.app_path) is not None
    if isinstance(event, FileWrite):
        if not policy.is_watched(event.path):
            # Copies into /Applications are delivery evidence (an app dragged off its disk image), not stage 2.
            return _is_app_copy(event)
        writer = event.process
        return writer is None or writer.executable is None or _classify(policy, writer) is not None \
            or policy.is_suspicious_exec_path(writer.executable)
    if isinstance(event, XattrChange):
        return event.name == QUARANTINE_XATTR
    if isinstance(event, Gatekeeper):
        return True
    if isinstance(event, VolumeMount):
        point = event.mount_point
        return event.mount_kind in (MountKind.DISK_IMAGE, MountKind.NULLFS) or point.startswith("/Volumes/") \
            or "/AppTranslocation/" in point or bool(event.image_path)
    if isinstance(event, NetworkConnection):
        if event.direction is Direction.INBOUND:
            return False
        if event.dst_ip is None and not event.hostname:
            return False
        if policy.destination_class(event.dst_ip) == "not_egress":
            return False
        proc = event.process
        if proc is not None and proc.executable is not None:
            matters, role = policy.tracks_process(proc)
            # Not a process a chain can contain, or the app's own traffic (browsing), which is not the child's
            # egress.
            return matters and (role is None or role.role not in _APP_ROLES)
        return True
    return False
