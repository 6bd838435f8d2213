"""The stages a route did not establish: the landed file (stage 2), the app's activity (stage 1), the egress of the
stage-3 process tree (stage 4), and the quarantine and Gatekeeper context of a delivery.

Each is picked within the policy's windows and returned with how it was established and how strongly.
"""

from __future__ import annotations

from chainwatch.engine.candidate import (
    APP_ROLES,
    Candidate,
    basename,
    bundle_of,
    bundle_root,
    connections_between,
    files_between,
    launched,
)
from chainwatch.engine.hoststate import HostState
from chainwatch.engine.lineage import ProcNode, namespace
from chainwatch.events import AppAction, AppActivity, FileWrite, Gatekeeper, GatekeeperAction
from chainwatch.findings.model import Confidence, Egress, Strength
from chainwatch.policy import AllowRule, Policy

PickedFile = tuple[FileWrite, str, Strength]
PickedActivity = tuple[int, str, str, Strength, AppActivity | ProcNode]


def references(file_path: str, nodes: list[ProcNode]) -> str | None:
    """How the stage-3 tree uses the landed file, if it does (script path, argument, working folder)."""
    name = basename(file_path)
    folder = file_path.rsplit("/", 1)[0]
    for node in nodes:
        # Most specific first: a dropped binary's argv[0] is its own name, which must not hide that it *is* the file.
        if node.executable == file_path:
            return f"{node.name} is the landed file"
        if node.script_path == file_path:
            return f"{node.name} runs it as its script"
        for arg in node.args:
            if file_path in arg:
                return f"{node.name} names it in its arguments"
        if len(name) >= 4 and name in node.cmdline:
            return f"{node.name} names {name} in its command line"
        if node.cwd and node.cwd == folder and node is nodes[0]:
            return f"{node.name} runs in the folder it landed in"
    return None


def _writer_is_app(landed: FileWrite, candidate: Candidate, policy: Policy) -> bool:
    writer = landed.process
    if writer is None or candidate.app is None:
        return False
    if candidate.app_pid is not None and (candidate.app_pid in (writer.pid, writer.responsible_pid)):
        return True
    classification = policy.classify(writer.executable, writer.signature)
    return classification is not None and classification.role in APP_ROLES \
        and classification.name == candidate.app.name and candidate.app_pid is None


def _writer_in_tree(landed: FileWrite, tree: list[ProcNode], state: HostState) -> ProcNode | None:
    """The chain process (stage 3 or a descendant) that wrote ``landed``, by entity or by pid within its life."""
    writer = landed.process
    if writer is None:
        return None
    keys = {n.key: n for n in tree}
    if writer.entity_id and writer.entity_id in keys:
        return keys[writer.entity_id]
    holder = state.processes.alive_at(writer.pid, landed.time_ns)
    return keys.get(holder.key) if holder is not None else None


def pick_file(candidate: Candidate, state: HostState, policy: Policy, tree: list[ProcNode]) -> PickedFile | None:
    """Stage 2: the route's download, else a file the app (or one of the chain's own processes) landed.

    A file the app wrote before stage 3 started and the tree then runs or names is a strong link; so is a payload
    a chain process wrote (``curl -o``, ``cp``, ``ditto``) that a later chain process executes or names. A file
    nothing in the tree refers to is a weak link, and says so.
    """
    if candidate.download is not None:
        method = candidate.download_method or "download"
        return candidate.download, method, candidate.download_strength or Strength.WEAK
    if candidate.app is None:
        return None
    stage3_time = candidate.stage3.start_ns
    referenced: tuple[FileWrite, str] | None = None
    latest: FileWrite | None = None
    for landed in files_between(state, stage3_time - policy.file_to_exec_ns, stage3_time):
        if not _writer_is_app(landed, candidate, policy):
            continue
        reason = references(landed.path, tree)
        if reason is not None and (referenced is None or landed.time_ns > referenced[0].time_ns):
            referenced = (landed, reason)
        if latest is None or (landed.time_ns, landed.path) > (latest.time_ns, latest.path):
            latest = landed
    if referenced is not None:
        return referenced[0], referenced[1], Strength.STRONG
    dropped = _descendant_payload(candidate, state, policy, tree)
    if dropped is not None:
        return dropped
    if latest is not None:
        return latest, "written by the app before the child started; the child does not name it", Strength.WEAK
    return None


def _descendant_payload(candidate: Candidate, state: HostState, policy: Policy,
                        tree: list[ProcNode]) -> PickedFile | None:
    """A file a chain process landed in a watched path, preferring one a later chain process runs or names."""
    stage3 = candidate.stage3
    end = stage3.start_ns + policy.exec_to_egress_ns
    best: tuple[tuple[int, int], PickedFile] | None = None
    for landed in files_between(state, stage3.start_ns, end):
        writer = _writer_in_tree(landed, tree, state)
        if writer is None:
            continue
        later = [n for n in tree if n.start_ns >= landed.time_ns and n is not writer]
        reason = references(landed.path, later)
        if reason is not None:
            option: PickedFile = (landed, f"written by {writer.name} in the chain; {reason}", Strength.STRONG)
            rank = (1, -landed.time_ns)
        else:
            option = (landed, f"written by {writer.name} in the chain; nothing later runs it", Strength.WEAK)
            rank = (0, -landed.time_ns)
        if best is None or rank > best[0]:
            best = (rank, option)
    return best[1] if best is not None else None


def pick_activity(candidate: Candidate, state: HostState, policy: Policy, before_ns: int,
                  app_nodes: list[ProcNode]) -> PickedActivity | None:
    """Stage 1: the app's launch, click or crash (unified log), else its exec, before ``before_ns``."""
    if candidate.app is None:
        return None
    stage3_time = candidate.stage3.start_ns
    best: PickedActivity | None = None
    for activity in state.apps:
        if activity.action is AppAction.CLICK:
            continue
        if policy.app_for_activity(activity.bundle_id, activity.app_name, activity.app_path) is not candidate.app:
            continue
        if activity.pid is not None and candidate.app_pid is not None and activity.pid != candidate.app_pid:
            continue
        if activity.action is AppAction.CRASH:
            # A crash (an exploited app) may be logged just after the child it spawned.
            if not (stage3_time - policy.window_ns <= activity.time_ns <= stage3_time + policy.prompt_to_launch_ns):
                continue
        elif activity.time_ns > before_ns or before_ns - activity.time_ns > policy.app_to_file_ns:
            continue
        strength = Strength.STRONG if activity.pid is not None and activity.pid == candidate.app_pid \
            else Strength.WEAK
        text = f"{candidate.app.name} {activity.action.value} (unified log)"
        option: PickedActivity = (activity.time_ns, text, "unified log", strength, activity)
        if best is None or (option[3] is Strength.STRONG, option[0]) > (best[3] is Strength.STRONG, best[0]):
            best = option
    if best is not None:
        return best
    for node in app_nodes:
        if node.role is not None and node.role.name == candidate.app.name \
                and (candidate.app_pid is None or node.pid == candidate.app_pid) and node.start_ns <= before_ns \
                and before_ns - node.start_ns <= policy.app_to_file_ns:
            strength = Strength.STRONG if candidate.app_pid is not None else Strength.WEAK
            return (node.start_ns, f"{candidate.app.name} started (exec)",
                    "process exec (fallback: no unified-log activity)", strength, node)
    return None


def egress_of(candidate: Candidate, state: HostState, policy: Policy,
              tree: list[ProcNode]) -> tuple[list[Egress], list[tuple[Egress, AllowRule]]]:
    """Stage 4: connections of the stage-3 tree, by entity, else by pid within a tree process's lifetime."""
    table = state.processes
    keys = {n.key for n in tree}
    spaces = {namespace(k) for k in keys}
    start = candidate.stage3.start_ns
    found: list[Egress] = []
    allowed: list[tuple[Egress, AllowRule]] = []
    for conn in connections_between(state, start, start + policy.exec_to_egress_ns):
        proc = conn.process
        if proc is None:
            continue
        if proc.entity_id and proc.entity_id in keys:
            method, confidence = "entity", Confidence.HIGH
            holder_ref = table.nodes[proc.entity_id].to_ref()
        else:
            if proc.entity_id and namespace(proc.entity_id) in spaces and proc.entity_id in table.nodes:
                continue  # the source names another known process: pid must not override it
            holder = table.alive_at(proc.pid, conn.time_ns)
            if holder is None or holder.key not in keys:
                continue
            if table.end_of(holder) is not None:
                method, confidence = "pid_lifetime", Confidence.MEDIUM
            else:
                method, confidence = "pid_open_lifetime", Confidence.LOW
            # The record names only a pid: the story shows the image the pid was attributed to.
            holder_ref = holder.to_ref()
        dest_class = policy.destination_class(conn.dst_ip)
        if dest_class == "internal" and confidence > Confidence.LOW:
            confidence = Confidence(confidence - 1)
        egress = Egress(conn.time_ns, holder_ref, conn.dst_ip, conn.dst_port, conn.hostname, conn.protocol,
                        dest_class, method, confidence, conn.source, str(conn.raw))
        rule = next((r for r in policy.allowlist if r.applies_to == "egress"
                     and r.matches_destination(conn.dst_ip, conn.hostname)), None)
        if rule is not None:
            allowed.append((egress, rule))
        else:
            found.append(egress)
    found.sort(key=lambda e: (e.time_ns, e.dst_ip or "", e.dst_port or 0, e.raw))
    allowed.sort(key=lambda e: (e[0].time_ns, e[0].raw))
    return found, allowed


def related_path(path: str, candidate: Candidate) -> bool:
    """Whether ``path`` is (inside, or holds) the launched bundle or the download of a delivery."""
    targets = [p for p in (bundle_of(launched(candidate.stage3)),
                           candidate.download.path if candidate.download else None) if p]
    targets.extend(s.path for s in candidate.delivery if s.path)
    return any(path == t or path.startswith(t + "/") or t.startswith(path + "/") for t in targets)


def quarantine_context(candidate: Candidate, state: HostState, policy: Policy, picked_file: PickedFile | None,
                       ) -> tuple[list[Gatekeeper], list[str], Strength | None]:
    """Quarantine attributes on the chain's files, Gatekeeper events of a delivery, and whether they prove it."""
    paths = {p for p in (picked_file[0].path if picked_file else None, bundle_of(launched(candidate.stage3)),
                         bundle_root(candidate.extracted.path) if candidate.extracted else None) if p}
    paths.update(bundle_root(s.path) for s in candidate.delivery if s.path and s.step in ("copy", "translocate"))
    names = {basename(p) for p in paths}
    quarantine: list[str] = []
    agent_matches = False
    app_name = candidate.app.name.lower() if candidate.app is not None else None
    for change in sorted(state.xattrs, key=lambda x: (x.time_ns, x.path)):
        if not any(change.path == p or p.startswith(change.path + "/") or change.path.startswith(p + "/")
                   for p in paths):
            continue
        if change.quarantine is not None:
            q = change.quarantine
            agent_matches = agent_matches or (app_name is not None and (q.agent or "").lower() == app_name)
            quarantine.append(f"{change.action.value} com.apple.quarantine on {change.path}: agent={q.agent} "
                              f"flags=0x{(q.flags or 0):04x} uuid={q.event_uuid} "
                              f"user_approved={q.user_approved}")
        else:
            quarantine.append(f"{change.action.value} com.apple.quarantine on {change.path} "
                              f"by {change.process.display_name if change.process else 'unknown'}")
    if candidate.route == "interpreter":
        return [], quarantine, None
    start = candidate.stage3.start_ns
    gatekeeper = []
    for event in state.gatekeeper:
        near = start - policy.prompt_to_launch_ns <= event.time_ns <= start + policy.prompt_to_launch_ns
        named = (event.path is not None and any(n in event.path for n in names)) or event.pid == candidate.stage3.pid
        if (named and abs(event.time_ns - start) <= policy.window_ns) or (near and event.path is None):
            gatekeeper.append(event)
    gatekeeper.sort(key=lambda g: (g.time_ns, g.action.value))
    prompted = any(g.action in (GatekeeperAction.PROMPT, GatekeeperAction.USER_OVERRIDE,
                                GatekeeperAction.REJECTION_CLEARED) for g in gatekeeper)
    strength = Strength.STRONG if prompted or agent_matches else None
    return gatekeeper, quarantine, strength
