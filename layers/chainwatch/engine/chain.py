"""Chain assembly: a pure function from one host's state to that host's findings.

Assembly starts from stage 3, the anchor of every chain, found by one of the routes in ``engine/routes/``:

- ``interpreter`` -- a tracked interpreter whose nearest policy-app ancestor (through intermediates, helpers
  resolved to their app) is in its lineage (:mod:`chainwatch.engine.routes.interpreter`);
- ``quarantined_app`` -- an app bundle opened from a download, a mounted disk image, ``/Applications`` after a copy
  off a volume, or App Translocation, traced back to the policy app that downloaded it
  (:mod:`chainwatch.engine.routes.delivery`);
- ``package`` -- a ``.pkg`` script's interpreter, linked to the download of the package
  (:mod:`chainwatch.engine.routes.package`).

Then stage 2 (the file), stage 1 (the app's activity) and stage 4 (egress of the stage-3 process tree) are attached
within the policy's windows (:mod:`chainwatch.engine.evidence`), each with its method and strength, and the chain is
graded (:mod:`chainwatch.engine.grading`). Because the state is independent of arrival order and this function is
pure, findings are too.
"""

from __future__ import annotations

from chainwatch.engine.candidate import (
    Candidate,
    basename,
    bundle_of,
    bundle_root,
    file_order,
    launched,
    role_of,
)
from chainwatch.engine.evidence import (
    PickedActivity,
    PickedFile,
    egress_of,
    pick_activity,
    pick_file,
    quarantine_context,
    related_path,
)
from chainwatch.engine.grading import ChainFacts, behaviour_hits, file_hits, grade
from chainwatch.engine.hoststate import HostState
from chainwatch.engine.lineage import ProcNode
from chainwatch.engine.routes.delivery import delivery_candidate
from chainwatch.engine.routes.interpreter import interpreter_candidate
from chainwatch.engine.routes.package import package_candidate
from chainwatch.events import (
    AppActivity,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    NetworkConnection,
    ProcessRef,
    XattrAction,
    iso_ns,
)
from chainwatch.findings.model import (
    Confidence,
    Egress,
    Finding,
    Link,
    Stage,
    StageEvidence,
    Strength,
    TimelineEntry,
    TreeNode,
    finding_id,
)
from chainwatch.policy import AllowRule, AppSpec, GlobSet, Policy, Role

_MAX_TREE = 60
_MAX_EGRESS = 25
_MAX_TIMELINE = 80
#: The app of a chain whose download was not seen (the behavioural floor): named in the finding, never in policy.
UNSEEN_APP = AppSpec(name="an unseen downloader", kind="unknown", bundle_ids=frozenset(), signing_ids=frozenset(),
                     team_ids=frozenset(), executables=frozenset(), helper_signing_ids=frozenset(),
                     helper_paths=GlobSet(()))


def _conn_order(conn: NetworkConnection) -> tuple[int, str]:
    return conn.time_ns, str(conn.raw)


def assemble(state: HostState, policy: Policy) -> list[Finding]:
    """All chains visible in ``state``, as findings sorted by id."""
    # Time order lets every window lookup bisect instead of scanning all landed files per candidate.
    state.files_view = sorted(state.files, key=file_order)
    state.network.sort(key=_conn_order)
    table = state.processes
    candidates: list[Candidate] = []
    for node in table.nodes.values():
        role = node.role
        found: Candidate | None = None
        if role is not None and role.role is Role.INTERPRETER:
            found = interpreter_candidate(node, table, policy) or package_candidate(node, state, policy)
            if found is None and launched(node) is not None:
                # An app bundle whose main executable is a script (Shlayer's bash bundles) runs as an interpreter
                # with the bundle's script as its script path: a delivery when no policy app spawned it.
                found = delivery_candidate(node, state, policy)
        elif role is None and bundle_of(node.executable) is not None and not node.synthetic:
            found = delivery_candidate(node, state, policy)
        if found is not None:
            candidates.append(found)
    if not candidates:
        return []
    index = table.children_index()
    # The apps' own images (the stage-1 exec fallback), found once per assembly rather than once per candidate.
    app_nodes = [n for n in table.nodes.values() if n.role is not None and n.role.role is Role.APP]
    files_by_pid: dict[int, list[FileWrite]] = {}
    for landed in state.files_view:
        if landed.process is not None:
            files_by_pid.setdefault(landed.process.pid, []).append(landed)
    findings = {}
    for candidate in candidates:
        finding = _build(candidate, state, policy, index, app_nodes, files_by_pid)
        if finding is not None:
            findings[finding.finding_id] = finding
    return [findings[k] for k in sorted(findings)]


# -- assembly ------------------------------------------------------------------------------------------------


def _app_executable(app: AppSpec, app_path: str | None) -> str | None:
    """The app's executable: the policy's (preferring one inside the bundle the log named), if it lists any."""
    listed = sorted(app.executables)
    if app_path:
        inside = [e for e in listed if e.lower().startswith(app_path.rstrip("/").lower() + "/")]
        if inside:
            return inside[0]
    return listed[0] if listed else None


def _suppression(candidate: Candidate, policy: Policy) -> AllowRule | None:
    # "child" rules are tested on stage 3 and on every process between the app and stage 3: an approved updater
    # (Keystone, Microsoft AutoUpdate) is an intermediate whose own child is an Apple-signed shell or curl, so a
    # rule on the stage-3 signature alone could never match it. Descendants of stage 3 are not tested: a chain
    # must not be able to allowlist itself by spawning an approved binary.
    path = candidate.path
    first = 1 if candidate.app_node is not None else 0
    for rule in policy.allowlist:
        if rule.applies_to == "child":
            for index in range(first, len(path)):
                node = path[index]
                parent = path[index - 1] if index > 0 else None
                parent_signing = parent.signature.signing_id if parent and parent.signature else None
                if rule.matches_process(node.executable, node.signature, node.cmdline, parent_signing):
                    return rule
        if rule.applies_to == "app" and candidate.app_node is not None and rule.matches_process(
                candidate.app_node.executable, candidate.app_node.signature, candidate.app_node.cmdline, None):
            return rule
    return None


def _stage1(candidate: Candidate, app: AppSpec, activity: PickedActivity) -> StageEvidence:
    time_ns, text, method, _strength, origin = activity
    if isinstance(origin, AppActivity):
        # The evidence is about the app, not the daemon that logged it (runningboardd, ReportCrash): name the app's
        # process from what the record says about it.
        app_pid = origin.pid if origin.pid is not None else candidate.app_pid
        app_ref = candidate.app_node.to_ref() if candidate.app_node is not None and (
            app_pid is None or candidate.app_node.pid == app_pid) else ProcessRef(
            pid=app_pid if app_pid is not None else 0, name=app.name,
            executable=_app_executable(app, origin.app_path))
        return StageEvidence(Stage.APP_ACTIVITY, time_ns, text, method, origin.source, str(origin.raw),
                             process=app_ref)
    return StageEvidence(Stage.APP_ACTIVITY, time_ns, text, method, origin.source, str(origin.raw),
                         process=origin.to_ref())


def _stage3(candidate: Candidate, app: AppSpec) -> StageEvidence:
    stage3 = candidate.stage3
    parent_ref = candidate.path[-2].to_ref() if len(candidate.path) > 1 else None
    if candidate.route == "interpreter":
        chain_names = " -> ".join(n.name for n in candidate.path)
        text = f"{stage3.name} spawned under {app.name}: {chain_names}"
        method = "process lineage" + (" (app seen only as the parent named by a child record)"
                                      if candidate.path[0].synthetic else "")
    elif candidate.route == "package":
        text = f"{stage3.name} ran by the installer: {' -> '.join(n.name for n in candidate.path)}"
        method = candidate.download_method or "package lineage"
    else:
        text = (f"downloaded app {basename(bundle_of(launched(stage3)) or stage3.name)} opened "
                f"(parent {stage3.ppid if stage3.ppid is not None else 'unknown'})")
        method = candidate.download_method or "download lineage"
    return StageEvidence(Stage.EXECUTION, stage3.start_ns, text, method, stage3.source, str(stage3.raw),
                         process=stage3.to_ref(), parent=parent_ref)


def _stage4(egress: list[Egress]) -> tuple[StageEvidence, Link]:
    first = egress[0]
    evidence = StageEvidence(Stage.EGRESS, first.time_ns,
                             f"{first.process.display_name} connected to "
                             f"{first.hostname or first.dst_ip}:{first.dst_port}",
                             f"attributed by {first.attribution}", first.source, first.raw,
                             process=first.process, dst_ip=first.dst_ip, dst_port=first.dst_port,
                             hostname=first.hostname)
    link = Link(Stage.EXECUTION, Stage.EGRESS,
                Strength.STRONG if first.attribution in ("entity", "pid_lifetime") else Strength.WEAK,
                {"entity": "same process entity",
                 "pid_lifetime": "same pid within the process's lifetime (exec..exit)",
                 "pid_open_lifetime": "same pid after exec; exit not seen"}[first.attribution])
    return evidence, link


def _build(candidate: Candidate, state: HostState, policy: Policy,
           index: dict[str, list[ProcNode]], app_nodes: list[ProcNode],
           files_by_pid: dict[int, list[FileWrite]]) -> Finding | None:
    table = state.processes
    stage3 = candidate.stage3
    tree = [stage3, *table.descendants(stage3, index)[:_MAX_TREE]]
    app = candidate.app or UNSEEN_APP
    notes: list[str] = []

    picked_file: PickedFile | None = pick_file(candidate, state, policy, tree)
    egress, allowed = egress_of(candidate, state, policy, tree)
    before = min(picked_file[0].time_ns, stage3.start_ns) if picked_file else stage3.start_ns
    activity = pick_activity(candidate, state, policy, before, app_nodes)

    end_ns = egress[0].time_ns if egress else stage3.start_ns
    if activity is not None and end_ns - activity[0] > policy.window_ns:
        notes.append(f"app activity at {iso_ns(activity[0])} is outside the {policy.window_ns // 60_000_000_000} "
                     "minute window")
        activity = None
    if picked_file is not None and end_ns - picked_file[0].time_ns > policy.window_ns:
        notes.append("the landed file is outside the window")
        picked_file = None

    stages: list[StageEvidence] = []
    links: list[Link] = []
    if activity is not None:
        stages.append(_stage1(candidate, app, activity))
    elif candidate.app is None:
        notes.append("no policy app's download of this app was seen (it may have come by AirDrop, a USB disk, or a "
                     "download the telemetry missed)")
    else:
        notes.append(f"no {app.name} launch, click or crash seen in the window "
                     "(app known from process lineage or the download only)")
    if picked_file is not None:
        landed, _method, _strength = picked_file
        stages.append(StageEvidence(Stage.FILE_LANDING, landed.time_ns,
                                    f"{landed.process.display_name if landed.process else 'app'} "
                                    f"{landed.action.value} {landed.path}", _method, landed.source,
                                    str(landed.raw), process=landed.process, file_path=landed.path))
        if activity is not None:
            same_pid = landed.process is not None and candidate.app_pid is not None and (
                candidate.app_pid in (landed.process.pid, landed.process.responsible_pid))
            in_tree = landed.process is not None and any(n.pid == landed.process.pid for n in tree)
            links.append(Link(Stage.APP_ACTIVITY, Stage.FILE_LANDING,
                              Strength.STRONG if activity[3] is Strength.STRONG and (same_pid or in_tree)
                              else Strength.WEAK,
                              "same app process wrote the file" if same_pid else
                              "written by a process the app started" if in_tree else "same app, by name"))
    stages.append(_stage3(candidate, app))

    gatekeeper, quarantine, gk_strength = quarantine_context(candidate, state, policy, picked_file)
    if picked_file is not None:
        landed, method, strength = picked_file
        if candidate.route != "interpreter" and gk_strength is Strength.STRONG and strength is Strength.WEAK:
            # Gatekeeper prompting for this launch, or the quarantine attribute naming the downloading app, joins
            # the download to the launch where the path evidence alone was only a name or a time.
            strength = Strength.STRONG
            method += "; Gatekeeper or the quarantine attribute confirms it"
        links.append(Link(Stage.FILE_LANDING, Stage.EXECUTION, strength, method))
    elif activity is not None:
        links.append(Link(Stage.APP_ACTIVITY, Stage.EXECUTION, Strength.WEAK, "no landed file links them"))

    if egress:
        stage4, link4 = _stage4(egress)
        stages.append(stage4)
        links.append(link4)
    for egress_item, allow_rule in allowed:
        notes.append(f"egress to {egress_item.hostname or egress_item.dst_ip} allowed by {allow_rule.id}")

    present = {s.stage for s in stages}
    intermediates = candidate.path[1:-1] if candidate.app_node is not None else candidate.path[:-1]
    chain_landed = [f for n in tree for f in files_by_pid.get(n.pid, ()) if f.time_ns >= n.start_ns]
    if picked_file is not None:
        chain_landed.append(picked_file[0])
    hits = behaviour_hits([*intermediates, *tree], policy)
    shown = {b.id for b, _ in hits}
    hits += [h for h in file_hits(chain_landed, tree, policy) if h[0].id not in shown]
    facts = ChainFacts(candidate, list(intermediates), tree, egress, gatekeeper, bool(quarantine), chain_landed,
                       present, links, hits)
    graded = grade(facts, policy)
    if len(present) < 3 and not graded.floor:
        return None
    if candidate.app is None and not graded.floor:
        return None
    rule: AllowRule | None = _suppression(candidate, policy)
    suppressed_by = rule.id if rule else None
    if rule is None and allowed and Stage.EGRESS not in present:
        rule, suppressed_by = allowed[0][1], allowed[0][1].id
    reasons = list(graded.reasons)
    is_alert = graded.is_alert
    weak = [lk for lk in links if lk.strength is Strength.WEAK]
    if len(weak) == 0 and egress and egress[0].confidence is Confidence.HIGH and len(present) == 4:
        confidence = Confidence.HIGH
    elif len(weak) <= 1:
        confidence = Confidence.MEDIUM
    else:
        confidence = Confidence.LOW
    if rule is not None:
        is_alert = False
        reasons.append(f"suppressed by allowlist rule {rule.id}: {rule.description}")

    techniques = ["T1204.002"]
    for node in tree:
        if node.role is not None and node.role.technique and node.role.technique not in techniques:
            techniques.append(node.role.technique)
    if egress and "T1105" not in techniques:
        techniques.append("T1105")
    if candidate.route != "interpreter" and (
            any(g.action in (GatekeeperAction.USER_OVERRIDE, GatekeeperAction.REJECTION_CLEARED)
                for g in gatekeeper)
            or any(x.action is XattrAction.DELETE for x in state.xattrs if related_path(x.path, candidate))):
        techniques.append("T1553.001")
    for behaviour, _node in facts.hits:
        if behaviour.technique and behaviour.technique not in techniques:
            techniques.append(behaviour.technique)

    tree_nodes = _tree(candidate, tree, policy)
    files = sorted({f.path for f in chain_landed}
                   | ({bundle_root(candidate.extracted.path)} if candidate.extracted else set()))
    app_key = f"{app.name if candidate.app else '?'}/{candidate.app_pid if candidate.app_pid is not None else '?'}"
    stages.sort(key=lambda s: int(s.stage))
    timeline = _timeline(stages, tree, egress, gatekeeper, candidate)
    return Finding(
        finding_id=finding_id(state.host, app_key, stage3.key),
        host=state.host, app_name=app.name, app_key=app_key, stage3_key=stage3.key,
        route=candidate.route, stages=tuple(stages), links=tuple(links), tree=tuple(tree_nodes),
        timeline=tuple(timeline), files=tuple(files), egress=tuple(egress[:_MAX_EGRESS]),
        quarantine=tuple(quarantine), gatekeeper=tuple(_gk_text(g) for g in gatekeeper),
        severity=graded.severity, confidence=confidence, is_alert=is_alert, reasons=tuple(reasons),
        techniques=tuple(techniques), suppressed_by=suppressed_by,
        suppression_reason=rule.description if rule else None, notes=tuple(notes),
        delivery=tuple(candidate.delivery), score=graded.score, severity_rules=graded.rules,
    )


def _gk_text(event: Gatekeeper, with_time: bool = True) -> str:
    parts = [f"{iso_ns(event.time_ns)} Gatekeeper {event.action.value}" if with_time
             else f"Gatekeeper {event.action.value}"]
    if event.path:
        parts.append(f"path={event.path}")
    if event.result:
        parts.append(f"result={event.result}")
    if event.signing_id:
        parts.append(f"signing_id={event.signing_id}")
    if event.team_id:
        parts.append(f"team_id={event.team_id}")
    return " ".join(parts)


def _tree(candidate: Candidate, tree: list[ProcNode], policy: Policy) -> list[TreeNode]:
    nodes: list[TreeNode] = []
    depth_of: dict[str, int] = {}
    for depth, node in enumerate(candidate.path):
        role = role_of(node, policy)
        nodes.append(TreeNode(depth, node.to_ref(), role.value if role else "process", node.via))
        depth_of[node.key] = depth
    for node in tree[1:]:
        parent_depth = max((depth_of.get(k, -1) for k in (node.parent_key, node.predecessor_key) if k), default=-1)
        if parent_depth < 0:
            holder = next((n for n in tree if n.pid == node.ppid and n.start_ns <= node.start_ns), None)
            parent_depth = depth_of.get(holder.key, len(candidate.path) - 1) if holder else len(candidate.path) - 1
        depth = parent_depth + 1
        depth_of[node.key] = depth
        role = role_of(node, policy)
        nodes.append(TreeNode(depth, node.to_ref(), role.value if role else "process", node.via))
    return nodes


def _timeline(stages: list[StageEvidence], tree: list[ProcNode], egress: list[Egress],
              gatekeeper: list[Gatekeeper], candidate: Candidate) -> list[TimelineEntry]:
    entries = [TimelineEntry(s.time_ns, s.stage, s.summary, s.source, s.raw) for s in stages]
    stage_raws = {s.raw for s in stages} | {str(g.raw) for g in gatekeeper}
    stage3_raw = str(candidate.stage3.raw)
    if candidate.extracted is not None:
        extracted = candidate.extracted
        who = extracted.process.display_name if extracted.process else "archiver"
        entries.append(TimelineEntry(extracted.time_ns, None,
                                     f"{who} extracted {bundle_root(extracted.path)}", extracted.source,
                                     str(extracted.raw)))
    for step in candidate.delivery:
        if step.time_ns is None or step.source is None or step.raw is None or step.raw in stage_raws:
            continue
        if step.step in ("mount", "copy", "translocate", "install"):
            entries.append(TimelineEntry(step.time_ns, None, step.text, step.source, step.raw))
    for node in tree:
        if str(node.raw) != stage3_raw:
            entries.append(TimelineEntry(node.start_ns, None, f"{node.via} {node.name}: {node.cmdline[:200]}",
                                         node.source, str(node.raw)))
    stage4_raw = next((s.raw for s in stages if s.stage is Stage.EGRESS), None)
    for item in egress:
        if item.raw != stage4_raw:
            entries.append(TimelineEntry(item.time_ns, None, f"{item.process.display_name} connected to "
                                         f"{item.hostname or item.dst_ip}:{item.dst_port} ({item.attribution})",
                                         item.source, item.raw))
    for event in gatekeeper:
        entries.append(TimelineEntry(event.time_ns, None, _gk_text(event, with_time=False), event.source,
                                     str(event.raw)))
    entries.sort(key=lambda e: (e.time_ns, int(e.stage) if e.stage else 9, e.raw))
    return entries[:_MAX_TIMELINE]


__all__ = ["ProcessRef", "assemble"]
