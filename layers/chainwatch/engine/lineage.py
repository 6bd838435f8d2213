"""Process lineage: a per-host table of tracked process images, with parent resolution that survives pid reuse.

A node is one process image. Its parent is resolved, in order of trust, by

1. the parent's entity id (ES audit token ``(pid, pidversion)``, Elastic ``entity_id``);
2. the pre-exec image of the same pid, whose parent is the real parent;
3. the parent pid, choosing the image of that pid that was alive when the child started (never a later image
   that reused the pid);
4. the parent's executable as the record states it (a *synthetic* node: the parent was not seen in the window,
   e.g. an app launched hours ago).
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field

from chainwatch.events import CodeSignature, ProcessExec, ProcessFork, ProcessRef, RawRef, SourceFormat
from chainwatch.policy import Classification

MAX_DEPTH = 24


@dataclass(slots=True)
class ProcNode:
    """One tracked process image."""

    key: str
    pid: int
    start_ns: int
    executable: str | None
    args: tuple[str, ...]
    signature: CodeSignature | None
    role: Classification | None
    parent_key: str | None
    ppid: int | None
    parent_executable: str | None
    predecessor_key: str | None
    responsible_pid: int | None
    cwd: str | None
    uid: int | None
    script_path: str | None
    source: SourceFormat
    raw: RawRef
    via: str  # "exec" or "fork"
    exit_ns: int | None = None
    synthetic: bool = False

    @property
    def name(self) -> str:
        if self.executable:
            return self.executable.rsplit("/", 1)[-1]
        return f"pid {self.pid}"

    @property
    def cmdline(self) -> str:
        return " ".join(self.args) if self.args else (self.executable or "")

    def to_ref(self) -> ProcessRef:
        return ProcessRef(pid=self.pid, entity_id=None if self.synthetic else self.key, ppid=self.ppid,
                          parent_entity_id=self.parent_key, executable=self.executable, args=self.args,
                          cwd=self.cwd, uid=self.uid, signature=self.signature, start_time_ns=self.start_ns,
                          responsible_pid=self.responsible_pid)


def node_key(ref: ProcessRef, time_ns: int) -> str:
    """The identity of a process image: its entity id, else ``pid:<pid>@<start>``."""
    if ref.entity_id:
        return ref.entity_id
    start = ref.start_time_ns if ref.start_time_ns is not None else time_ns
    return f"pid:{ref.pid}@{start}"


def namespace(key: str | None) -> str | None:
    """The id space of a key (``es``, ``ecs``, ``ocsf``, ``pid``): keys from different spaces never compare."""
    if not key:
        return None
    head, sep, _ = key.partition(":")
    return head if sep else None


@dataclass
class ProcessTable:
    """Tracked process images of one host, indexed by key and by pid."""

    nodes: dict[str, ProcNode] = field(default_factory=dict)
    by_pid: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)
    pid_exits: dict[int, list[int]] = field(default_factory=dict)

    def add_exec(self, event: ProcessExec, role: Classification | None) -> ProcNode:
        target = event.target
        pre = event.process
        return self._add(target, event.time_ns, role, event.source, event.raw, "exec",
                         predecessor=pre.entity_id if pre else None, script=event.script_path,
                         parent_executable=target.parent_executable or (pre.executable if pre else None))

    def add_fork(self, event: ProcessFork, role: Classification | None) -> ProcNode:
        child = event.child
        parent = event.process
        return self._add(child, event.time_ns, role, event.source, event.raw, "fork", predecessor=None,
                         script=None, parent_executable=child.parent_executable or (
                             parent.executable if parent else None),
                         parent_key=child.parent_entity_id or (parent.entity_id if parent else None))

    def _add(self, ref: ProcessRef, time_ns: int, role: Classification | None, source: SourceFormat, raw: RawRef,
             via: str, *, predecessor: str | None, script: str | None, parent_executable: str | None,
             parent_key: str | None = None) -> ProcNode:
        key = node_key(ref, time_ns)
        existing = self.nodes.get(key)
        if existing is not None and (existing.via == "exec" or via == "fork"):
            return existing  # re-delivered evidence: the first exec record of an image wins
        node = ProcNode(
            key=key, pid=ref.pid, start_ns=time_ns, executable=ref.executable, args=ref.args,
            signature=ref.signature, role=role, parent_key=parent_key or ref.parent_entity_id, ppid=ref.ppid,
            parent_executable=parent_executable, predecessor_key=predecessor, responsible_pid=ref.responsible_pid,
            cwd=ref.cwd, uid=ref.uid, script_path=script, source=source, raw=raw, via=via,
            exit_ns=self.exits.get(key),
        )
        self.nodes[key] = node
        if existing is None:
            insort(self.by_pid.setdefault(ref.pid, []), (time_ns, key))
        return node

    def add_exit(self, ref: ProcessRef, time_ns: int) -> None:
        if ref.entity_id:
            self.exits[ref.entity_id] = time_ns
            node = self.nodes.get(ref.entity_id)
            if node is not None:
                node.exit_ns = time_ns
        insort(self.pid_exits.setdefault(ref.pid, []), time_ns)

    # -- resolution --------------------------------------------------------------------------------------------
    def alive_at(self, pid: int, time_ns: int) -> ProcNode | None:
        """The image of ``pid`` that was running at ``time_ns``: the latest one started at or before it that had
        not exited by then. ``None`` when that pid's latest earlier image had already exited (pid reuse guard)."""
        entries = self.by_pid.get(pid)
        if not entries:
            return None
        best: ProcNode | None = None
        for start, key in reversed(entries):
            if start <= time_ns:
                best = self.nodes.get(key)
                break
        if best is None:
            return None
        end = self.end_of(best)
        if end is not None and end < time_ns:
            return None
        return best

    def end_of(self, node: ProcNode) -> int | None:
        """When an image stopped being the one behind its pid: its exit, else the next image of the pid."""
        if node.exit_ns is not None:
            return node.exit_ns
        for start, key in self.by_pid.get(node.pid, ()):
            if start > node.start_ns and key != node.key:
                # A later image of the same pid replaces this one: an exec keeps the pid, and a new process
                # can only get the pid after this one is gone.
                return start
        for stamp in self.pid_exits.get(node.pid, ()):
            if stamp >= node.start_ns:
                return stamp
        return None

    def parent_of(self, node: ProcNode) -> ProcNode | None:
        """The parent image, resolved as described in the module docstring (a synthetic node as last resort)."""
        if node.parent_key:
            parent = self.nodes.get(node.parent_key)
            if parent is not None:
                return parent
        if node.predecessor_key:
            pre = self.nodes.get(node.predecessor_key)
            if pre is not None and pre is not node:
                return pre
        if node.ppid is not None and node.ppid > 1:
            parent = self.alive_at(node.ppid, node.start_ns)
            if parent is not None and parent is not node and parent.start_ns <= node.start_ns:
                return parent
        if node.parent_executable and node.ppid is not None:
            return ProcNode(
                key=f"synthetic:{node.ppid}:{node.parent_executable}", pid=node.ppid, start_ns=node.start_ns,
                executable=node.parent_executable, args=(), signature=None, role=None, parent_key=None, ppid=None,
                parent_executable=None, predecessor_key=None, responsible_pid=None, cwd=None, uid=None,
                script_path=None, source=node.source, raw=node.raw, via="lineage", synthetic=True,
            )
        return None

    def ancestry(self, node: ProcNode) -> list[ProcNode]:
        """Parents from nearest to farthest (bounded; cycles cut)."""
        chain: list[ProcNode] = []
        seen = {node.key}
        current = node
        for _ in range(MAX_DEPTH):
            parent = self.parent_of(current)
            if parent is None or parent.key in seen:
                break
            chain.append(parent)
            seen.add(parent.key)
            current = parent
        return chain

    def children_index(self) -> dict[str, list[ProcNode]]:
        """Resolved parent key -> child nodes, for descendant walks."""
        index: dict[str, list[ProcNode]] = {}
        for node in self.nodes.values():
            parent = self.parent_of(node)
            if parent is not None and not parent.synthetic:
                index.setdefault(parent.key, []).append(node)
        return index

    def descendants(self, root: ProcNode, index: dict[str, list[ProcNode]]) -> list[ProcNode]:
        out: list[ProcNode] = []
        stack = [root]
        seen = {root.key}
        while stack:
            current = stack.pop()
            for child in index.get(current.key, ()):
                if child.key not in seen:
                    seen.add(child.key)
                    out.append(child)
                    stack.append(child)
        out.sort(key=lambda n: (n.start_ns, n.key))
        return out

    def evict_before(self, horizon_ns: int) -> None:
        """Drop images that ended (or started, when never seen ending) before ``horizon_ns``."""
        stale = [k for k, n in self.nodes.items() if (n.exit_ns if n.exit_ns is not None else n.start_ns) < horizon_ns]
        for key in stale:
            node = self.nodes.pop(key)
            entries = self.by_pid.get(node.pid)
            if entries is not None:
                entries[:] = [e for e in entries if e[1] != key]
                if not entries:
                    del self.by_pid[node.pid]
        self.exits = {k: t for k, t in self.exits.items() if t >= horizon_ns}
        for pid in list(self.pid_exits):
            kept = [t for t in self.pid_exits[pid] if t >= horizon_ns]
            if kept:
                self.pid_exits[pid] = kept
            else:
                del self.pid_exits[pid]
