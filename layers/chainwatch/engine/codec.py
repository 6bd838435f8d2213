"""Host state to compact bytes and back (for the DynamoDB store), with a size guard under the 400 KB item limit.

The encoding is JSON (orjson) compressed with zlib. Events are encoded field by field with a type tag, so decoding
rebuilds the same frozen values the engine produced; nothing but these known types is ever instantiated. A state
decodes to exactly the state that was encoded. A *delta* (what one batch changed, see :class:`StateDelta`) is encoded
the same way and replays onto the state its batch started from.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

import orjson

from chainwatch.engine.hoststate import HostState, event_identity, hold
from chainwatch.engine.lineage import ProcessTable, ProcNode, node_key
from chainwatch.errors import ChainwatchError
from chainwatch.events import (
    AppAction,
    AppActivity,
    CodeSignature,
    Direction,
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    MountAction,
    MountKind,
    NetworkConnection,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    ProcessRef,
    Quarantine,
    RawRef,
    SourceFormat,
    VolumeMount,
    XattrAction,
    XattrChange,
)
from chainwatch.policy import Classification, Role

FORMAT_VERSION = 1
#: Compressed state above this many bytes is trimmed (DynamoDB items are limited to 400 KB with attributes).
MAX_STATE_BYTES = 300_000

_EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    AppActivity, ProcessFork, ProcessExec, ProcessExit, FileWrite, XattrChange, Gatekeeper, NetworkConnection,
    VolumeMount)}
_NESTED: dict[str, type] = {"process": ProcessRef, "target": ProcessRef, "child": ProcessRef,
                            "signature": CodeSignature, "quarantine": Quarantine, "raw": RawRef}
_ACTIONS: dict[type, type[Enum]] = {AppActivity: AppAction, FileWrite: FileAction, XattrChange: XattrAction,
                                    Gatekeeper: GatekeeperAction, VolumeMount: MountAction}


#: The kinds of event a host state holds (what a delta may carry).
_HELD_TYPES = (ProcessExec, ProcessFork, ProcessExit, FileWrite, AppActivity, XattrChange, Gatekeeper, VolumeMount,
               NetworkConnection)


class StateDecodeError(ChainwatchError):
    """Stored state could not be decoded (written by an incompatible version, or corrupted)."""


class StateTooLargeError(ChainwatchError):
    """State cannot be trimmed under the size limit (only possible with a limit smaller than an empty state)."""


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)
                if getattr(value, f.name) is not None and getattr(value, f.name) != ()}
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data or not f.init:
            continue
        value = data[f.name]
        nested = _NESTED.get(f.name)
        if nested is not None and isinstance(value, dict):
            value = _build(nested, value)
        elif f.name == "args" and isinstance(value, list):
            value = tuple(value)
        elif f.name == "source":
            value = SourceFormat(value)
        elif f.name == "direction":
            value = Direction(value)
        elif f.name == "mount_kind":
            value = MountKind(value)
        elif f.name == "action":
            value = _ACTIONS[cls](value)
        kwargs[f.name] = value
    return cls(**kwargs)


def encode_event(event: Any) -> dict[str, Any]:
    out = _plain(event)
    out["_t"] = type(event).__name__
    return out  # type: ignore[no-any-return]


def decode_event(data: dict[str, Any]) -> Any:
    cls = _EVENT_TYPES.get(data.get("_t", ""))
    if cls is None:
        raise StateDecodeError(f"unknown event type {data.get('_t')!r} in stored state")
    return _build(cls, data)


def _encode_node(node: ProcNode) -> dict[str, Any]:
    out = {f: _plain(getattr(node, f)) for f in ProcNode.__dataclass_fields__ if getattr(node, f) is not None}
    if node.role is not None:
        out["role"] = [node.role.role.value, node.role.name, node.role.technique]
    return out


def _decode_node(data: dict[str, Any]) -> ProcNode:
    role = data.get("role")
    values: dict[str, Any] = {}
    for name in ProcNode.__dataclass_fields__:
        values[name] = data.get(name)
    values["args"] = tuple(values["args"] or ())
    values["signature"] = _build(CodeSignature, data["signature"]) if data.get("signature") else None
    values["raw"] = _build(RawRef, data["raw"])
    values["source"] = SourceFormat(data["source"])
    values["role"] = Classification(Role(role[0]), role[1], role[2]) if role else None
    values["synthetic"] = bool(data.get("synthetic", False))
    return ProcNode(**values)


def encode_state(state: HostState) -> dict[str, Any]:
    table = state.processes
    files = state.files
    index = {id(e): i for i, e in enumerate(files)}
    return {
        "v": FORMAT_VERSION,
        "host": state.host,
        "nodes": [_encode_node(n) for n in table.nodes.values()],
        "exits": table.exits,
        "pid_exits": {str(pid): stamps for pid, stamps in table.pid_exits.items()},
        "apps": [encode_event(e) for e in state.apps],
        "files": [encode_event(e) for e in files],
        # Which held file fills which slot: decoding by re-adding the files would refill a first-write slot that
        # eviction emptied while its latest-write slot stayed, and the state would not come back as it was.
        "slots": {key: index[id(e)] for key, e in state.file_slots.items()},
        "xattrs": [encode_event(e) for e in state.xattrs],
        "gatekeeper": [encode_event(e) for e in state.gatekeeper],
        "network": [encode_event(e) for e in state.network],
        "mounts": [encode_event(e) for e in state.mounts],
        "watermark": state.watermark_ns,
        "seen": [list(s) for s in state.seen],
        "version": state.version,
        "findings": state.finding_digests,
        "horizon": state.horizon_ns,
    }


def decode_state(data: dict[str, Any]) -> HostState:
    if data.get("v") != FORMAT_VERSION:
        raise StateDecodeError(f"stored state format {data.get('v')!r} is not {FORMAT_VERSION}")
    table = ProcessTable()
    for raw_node in data.get("nodes", []):
        node = _decode_node(raw_node)
        table.nodes[node.key] = node
        table.by_pid.setdefault(node.pid, []).append((node.start_ns, node.key))
    for entries in table.by_pid.values():
        entries.sort()
    table.exits = {str(k): int(v) for k, v in data.get("exits", {}).items()}
    table.pid_exits = {int(k): sorted(v) for k, v in data.get("pid_exits", {}).items()}
    state = HostState(host=data["host"], processes=table)
    state.apps = [decode_event(e) for e in data.get("apps", [])]
    files = [decode_event(e) for e in data.get("files", [])]
    slots = data.get("slots")
    if isinstance(slots, dict):
        state.file_slots = {str(key): files[int(i)] for key, i in slots.items()}
    else:  # written before the slots were stored
        for event in files:
            state.add_file(event)
    state.xattrs = [decode_event(e) for e in data.get("xattrs", [])]
    state.gatekeeper = [decode_event(e) for e in data.get("gatekeeper", [])]
    state.network = [decode_event(e) for e in data.get("network", [])]
    state.mounts = [decode_event(e) for e in data.get("mounts", [])]
    state.watermark_ns = int(data.get("watermark", 0))
    state.seen = {(str(a), str(b)) for a, b in data.get("seen", [])}
    state.version = int(data.get("version", 0))
    state.finding_digests = {str(k): list(v) for k, v in data.get("findings", {}).items()}
    state.horizon_ns = int(data.get("horizon", 0))
    return state


def dumps_state(state: HostState, max_bytes: int = MAX_STATE_BYTES) -> tuple[bytes, int]:
    """Compressed state bytes, trimmed to ``max_bytes``; also returns how many entries were trimmed.

    Trimming drops the oldest evidence first (it is the closest to leaving the window anyway) and is counted so
    the caller can report it; a host that needs trimming is producing far more relevant events than a window of
    AN1316 evidence should hold.
    """
    trimmed = 0
    while True:
        blob = zlib.compress(orjson.dumps(encode_state(state)), 6)
        if len(blob) <= max_bytes:
            return blob, trimmed
        trimmed += _trim_oldest(state)


def loads_state(blob: bytes) -> HostState:
    try:
        data = orjson.loads(zlib.decompress(blob))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise StateDecodeError(f"stored state is not readable: {exc}") from exc
    if not isinstance(data, dict):
        raise StateDecodeError("stored state is not an object")
    try:
        return decode_state(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise StateDecodeError(f"stored state does not decode: {exc}") from exc


def _trim_oldest(state: HostState) -> int:
    """Evict everything older than the oldest quarter of the largest kind of evidence. Returns how many entries went.

    The horizon is taken from the same times :meth:`HostState.evict_before` compares (a process image counts by its
    exit when it has one), so each call removes at least one entry; and evicting the whole state at that horizon
    (not just one list) also drops the record identities of that time, which would otherwise outgrow the evidence.
    """
    lists: list[list[Any]] = [state.network, state.files, state.gatekeeper, state.apps, state.xattrs]
    items = max(lists, key=len)
    nodes = state.processes.nodes
    if len(nodes) > len(items):
        times = sorted(n.exit_ns if n.exit_ns is not None else n.start_ns for n in nodes.values())
    else:
        times = sorted(e.time_ns for e in items)
    if not times:
        # No evidence left: only bookkeeping remains. Drop the oldest half of it, so every call makes progress.
        if state.seen:
            drop = max(1, len(state.seen) // 2)
            state.seen = set(sorted(state.seen, key=lambda s: int(s[1]))[drop:])
            return drop
        if state.finding_digests:
            oldest = sorted(state.finding_digests, key=lambda k: int(state.finding_digests[k][3]))
            for key in oldest[: max(1, len(oldest) // 2)]:
                del state.finding_digests[key]
            return max(1, len(oldest) // 2)
        raise StateTooLargeError(f"state of {state.host} does not fit the size limit even when emptied")
    horizon = times[max(1, len(times) // 4) - 1] + 1
    before = len(state) + len(state.seen)
    state.evict_before(horizon)
    return before - len(state) - len(state.seen)


# -- deltas ---------------------------------------------------------------------------------------------------------
#
# A delta is what one batch did to one host's state, small enough to write instead of the whole state: the events the
# batch admitted (in admission order, each with the role its process image was given), the scalars the batch moved
# (watermark, version), the finding records it changed or dropped, and the horizon it evicted at. Replaying it on
# the state the batch started from rebuilds exactly the state the batch ended with: the same mutations admit made,
# in the same order, then the same eviction.

DELTA_VERSION = 1


@dataclass
class StateDelta:
    """One batch's change to one host's state (see the section comment above)."""

    admitted: list[tuple[Any, Classification | None]] = field(default_factory=list)
    watermark_ns: int = 0
    version: int = 0
    digests_set: dict[str, list[Any]] = field(default_factory=dict)
    digests_deleted: list[str] = field(default_factory=list)
    #: The horizon :meth:`HostState.evict_before` was called with at the end of the batch (``None``: not called).
    evicted_at: int | None = None

    def finish(self, state: HostState, digests_before: dict[str, list[Any]], evicted_at: int | None) -> None:
        """Record the batch's scalars and finding-record changes from the state it ended with."""
        after = state.finding_digests
        self.watermark_ns = state.watermark_ns
        self.version = state.version
        self.digests_set = {k: v for k, v in after.items() if digests_before.get(k) != v}
        self.digests_deleted = sorted(k for k in digests_before if k not in after)
        self.evicted_at = evicted_at


def role_of(state: HostState, event: Any) -> Classification | None:
    """The role the process image an admitted exec or fork created (or kept) carries; ``None`` for other events."""
    if isinstance(event, ProcessExec):
        node = state.processes.nodes.get(node_key(event.target, event.time_ns))
    elif isinstance(event, ProcessFork):
        node = state.processes.nodes.get(node_key(event.child, event.time_ns))
    else:
        return None
    return node.role if node is not None else None


def dumps_delta(delta: StateDelta) -> bytes:
    events = []
    for event, role in delta.admitted:
        encoded = encode_event(event)
        if role is not None:
            encoded["_r"] = [role.role.value, role.name, role.technique]
        events.append(encoded)
    return zlib.compress(orjson.dumps({
        "v": DELTA_VERSION, "ev": events, "wm": delta.watermark_ns, "ver": delta.version,
        "fset": delta.digests_set, "fdel": delta.digests_deleted, "evict": delta.evicted_at}), 6)


def loads_delta(blob: bytes) -> StateDelta:
    try:
        data = orjson.loads(zlib.decompress(blob))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise StateDecodeError(f"stored state delta is not readable: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != DELTA_VERSION:
        raise StateDecodeError(f"stored state delta format is not {DELTA_VERSION}")
    try:
        admitted: list[tuple[Any, Classification | None]] = []
        for encoded in data["ev"]:
            role = encoded.pop("_r", None)
            admitted.append((decode_event(encoded),
                             Classification(Role(role[0]), role[1], role[2]) if role else None))
        evicted = data.get("evict")
        return StateDelta(admitted, int(data["wm"]), int(data["ver"]),
                          {str(k): list(v) for k, v in data["fset"].items()}, [str(k) for k in data["fdel"]],
                          None if evicted is None else int(evicted))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise StateDecodeError(f"stored state delta does not decode: {exc}") from exc


def apply_delta(state: HostState, delta: StateDelta) -> None:
    """Replay ``delta`` on the state its batch started from (mutates ``state``).

    The mutations are :func:`~chainwatch.engine.hoststate.hold`, the ones ``admit`` makes for an event it keeps,
    with the admission decision (and the process role) taken from the delta rather than the policy: a policy
    deployed in between must not change what an earlier batch already kept.
    """
    for event, role in delta.admitted:
        if isinstance(event, ProcessExit) and event.process is None:
            raise StateDecodeError("stored state delta holds a process exit without its process")
        if not isinstance(event, _HELD_TYPES):
            raise StateDecodeError(f"stored state delta holds an event of type {type(event).__name__}")
        # A landed file may not be held again (the same first/latest rule that kept it decides); nothing else fails.
        hold(state, event, role)
        state.seen.add(event_identity(event))
    # The batch's assembly sorted the connections in place (chain.assemble, to bisect them by time); stable, so
    # the same sort of the same list leaves them in the same order.
    state.network.sort(key=lambda conn: (conn.time_ns, str(conn.raw)))
    state.watermark_ns = delta.watermark_ns
    state.version = delta.version
    digests = state.finding_digests
    for key in delta.digests_deleted:
        digests.pop(key, None)
    digests.update((k, list(v)) for k, v in delta.digests_set.items())
    if delta.evicted_at is not None:
        state.evict_before(delta.evicted_at)
