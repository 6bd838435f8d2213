"""Chain assembly: a pure function from one host's state to that host's findings.

Assembly starts from stage 3, the anchor of every chain:

- route (a): a tracked interpreter whose nearest policy-app ancestor (through any intermediates, helpers
  resolved to their app) is found in its lineage, and which is the interpreter closest to that app (its own
  interpreter descendants belong to the same chain);
- route (b): an app bundle started from a download location (``~/Downloads``, a mounted volume, an
  ``AppTranslocation`` folder) that a policy app downloaded, linked by path, name, quarantine and Gatekeeper
  evidence (its parent is launchd, so lineage cannot link it).

Then stage 2 (the file), stage 1 (the app's activity) and stage 4 (egress of the stage-3 process tree) are
attached within the policy's windows, each with its method and strength. Because the state is independent of
arrival order and this function is pure, findings are too.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from chainwatch.engine.hoststate import HostState
from chainwatch.engine.lineage import ProcessTable, ProcNode, namespace
from chainwatch.events import (
    AppAction,
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
    Severity,
    Stage,
    StageEvidence,
    Strength,
    TimelineEntry,
    TreeNode,
    finding_id,
)
from chainwatch.policy import AllowRule, AppSpec, Policy, Role

_APP_ROLES = (Role.APP, Role.HELPER)
_ARCHIVE_SUFFIXES = (".zip", ".dmg", ".tar.gz", ".tgz", ".tar", ".7z", ".rar", ".xip", ".pkg", ".tbz", ".gz")
_MAX_TREE = 60
_MAX_EGRESS = 25
_MAX_TIMELINE = 80


@dataclass
class _Candidate:
    route: str
    app: AppSpec
    app_pid: int | None
    app_node: ProcNode | None  # the app or helper image in the lineage (None for route b)
    path: list[ProcNode]  # app (or helper) ... stage 3, nearest-to-app first
    stage3: ProcNode
    download: FileWrite | None = None
    download_method: str | None = None
    download_strength: Strength | None = None
    extracted: FileWrite | None = None


def assemble(state: HostState, policy: Policy) -> list[Finding]:
    """All chains visible in ``state``, as findings sorted by id."""
    # Time order lets every window lookup below bisect instead of scanning all landed files per candidate.
    state.files_view = sorted(state.files, key=_file_order)
    state.network.sort(key=_conn_order)
    table = state.processes
    candidates: list[_Candidate] = []
    for node in table.nodes.values():
        role = node.role
        if role is not None and role.role is Role.INTERPRETER:
            found = _interpreter_candidate(node, table, policy)
            if found is None and _launched(node) is not None:
                # An app bundle whose main executable is a script (Shlayer's bash bundles) runs as an interpreter
                # with the bundle's script as its script path: route (b) when no policy app spawned it.
                found = _quarantine_candidate(node, state, policy)
        elif role is None and _bundle_of(node.executable) is not None:
            found = _quarantine_candidate(node, state, policy)
        else:
            found = None
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


# -- stage 3 -------------------------------------------------------------------------------------------------


def _file_order(landed: FileWrite) -> tuple[int, str, str]:
    return landed.time_ns, str(landed.raw), landed.path


def _files_between(state: HostState, start_ns: int, end_ns: int) -> list[FileWrite]:
    """Landed files with ``start_ns <= time <= end_ns`` (from the time-sorted view :func:`assemble` builds)."""
    files = state.files_view
    low = bisect_left(files, start_ns, key=_time_of)
    high = bisect_right(files, end_ns, key=_time_of)
    return files[low:high]


def _time_of(landed: FileWrite) -> int:
    return landed.time_ns


def _conn_order(conn: NetworkConnection) -> tuple[int, str]:
    return conn.time_ns, str(conn.raw)


def _conn_time(conn: NetworkConnection) -> int:
    return conn.time_ns


def _role_of(node: ProcNode, policy: Policy) -> Role | None:
    role = node.role if not node.synthetic else policy.classify(node.executable, node.signature)
    return role.role if role is not None else None


def _interpreter_candidate(node: ProcNode, table: ProcessTable, policy: Policy) -> _Candidate | None:
    ancestors = table.ancestry(node)
    for depth, ancestor in enumerate(ancestors):
        classification = ancestor.role if not ancestor.synthetic else policy.classify(ancestor.executable, None)
        if classification is None or classification.role not in _APP_ROLES:
            continue
        if ancestor.via == "fork" and depth + 1 < len(ancestors) and _same_app(ancestors[depth + 1], ancestor,
                                                                              policy):
            # A forked copy of the app (ES fork before exec) is the app's child, not the app: the app is its
            # parent. Without this, a long-running app whose exec is outside the window gets the fork's pid and
            # its unified-log activity and file writes no longer match.
            continue
        forks = [b for b in ancestors[:depth] if b.via == "fork" and b.executable == ancestor.executable]
        fork_keys = {f.key for f in forks}
        between = [b for b in ancestors[:depth] if b.key not in fork_keys]
        if any(_role_of(b, policy) is Role.INTERPRETER for b in between):
            return None  # an interpreter nearer the app is the chain's stage 3; this one is its descendant
        app = policy.app_by_name(classification.name)
        if app is None:
            return None
        app_pid = ancestor.pid
        if classification.role is Role.HELPER:
            # A helper acts for the app that is responsible for it (or that spawned it). A helper known only
            # from its child's record (synthetic) has no responsible pid, but its fork inherited it.
            responsible = ancestor.responsible_pid or next((f.responsible_pid for f in forks if f.responsible_pid),
                                                           None)
            if responsible and responsible != ancestor.pid:
                app_pid = responsible
            elif depth + 1 < len(ancestors) and _role_of(ancestors[depth + 1], policy) is Role.APP:
                app_pid = ancestors[depth + 1].pid
        path = [ancestor, *reversed(between), node]
        return _Candidate("interpreter", app, app_pid, ancestor, path, node)
    return None


def _same_app(parent: ProcNode, fork: ProcNode, policy: Policy) -> bool:
    """Whether ``parent`` is the process that ``fork`` (a forked image of an app or helper) is a copy of."""
    if parent.pid != fork.ppid:
        return False
    mine = fork.role if not fork.synthetic else policy.classify(fork.executable, None)
    theirs = parent.role if not parent.synthetic else policy.classify(parent.executable, None)
    return mine is not None and theirs is not None and mine.name == theirs.name


def _bundle_of(executable: str | None) -> str | None:
    if not executable:
        return None
    cut = executable.find(".app/Contents/MacOS/")
    return executable[: cut + 4] if cut > 0 else None


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _stem(name: str) -> str:
    lowered = name.lower()
    for suffix in (".app", *_ARCHIVE_SUFFIXES):
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _launched(node: ProcNode) -> str | None:
    """The bundle executable a launch ran: the image itself, or the script of a script-bodied app bundle."""
    if _bundle_of(node.executable) is not None:
        return node.executable
    if node.role is not None and node.role.role is Role.INTERPRETER and _bundle_of(node.script_path) is not None:
        return node.script_path
    return None


def _quarantine_candidate(node: ProcNode, state: HostState, policy: Policy) -> _Candidate | None:
    launched = _launched(node)
    bundle = _bundle_of(launched)
    if bundle is None or not policy.is_suspicious_exec_path(launched):
        return None
    bundle_name = _basename(bundle)
    bundle_lower = bundle.lower()
    volume = bundle.split("/")[2] if bundle.startswith("/Volumes/") and bundle.count("/") >= 3 else None
    best: tuple[int, int, FileWrite, str, Strength] | None = None
    for landed in _files_between(state, node.start_ns - policy.file_to_exec_ns, node.start_ns):
        writer_role = policy.classify(landed.process.executable, landed.process.signature) \
            if landed.process else None
        if writer_role is None or writer_role.role not in _APP_ROLES:
            continue
        path_lower = landed.path.lower()
        name = _basename(landed.path)
        if bundle_lower == path_lower or bundle_lower.startswith(path_lower + "/") \
                or path_lower.startswith(bundle_lower + "/"):
            match = (2, "the launched bundle is the downloaded path", Strength.STRONG)
        elif "/apptranslocation/" in bundle_lower and (name == bundle_name or f"/{bundle_name}/" in landed.path):
            match = (1, f"translocated copy of the downloaded {bundle_name}", Strength.WEAK)
        elif volume and _stem(name).lower() in (volume.lower(), _stem(bundle_name).lower()) \
                and path_lower.endswith(_ARCHIVE_SUFFIXES):
            match = (1, f"launched from volume /Volumes/{volume} of the downloaded {name}", Strength.WEAK)
        elif path_lower.endswith(_ARCHIVE_SUFFIXES) and _stem(name).lower() == _stem(bundle_name).lower():
            match = (1, f"bundle {bundle_name} has the name of the downloaded archive {name}", Strength.WEAK)
        else:
            continue
        rank = (match[0], landed.time_ns, landed, match[1], match[2])
        if best is None or rank[:2] > best[:2]:
            best = rank
    if best is None:
        return None
    landed, method, strength = best[2], best[3], best[4]
    extracted: FileWrite | None = None
    origin = _archive_origin(landed, state, policy)
    if origin is not None:
        # An archiver extracted the bundle from an archive another policy app downloaded: the chain starts at the
        # download (the extraction is the path evidence that joins them).
        extracted = landed
        extractor = _writer_app(landed, policy)
        method = (f"downloaded as {_basename(origin.path)}, extracted by "
                  f"{extractor.name if extractor else 'an archiver'} to {_bundle_root(landed.path)}; {method}")
        landed = origin
    writer = landed.process
    classification = policy.classify(writer.executable, writer.signature) if writer else None
    app = policy.app_by_name(classification.name) if classification else None
    if app is None or writer is None:
        return None
    app_pid = writer.pid
    if classification is not None and classification.role is Role.HELPER and writer.responsible_pid:
        app_pid = writer.responsible_pid
    candidate = _Candidate("quarantined_app", app, app_pid, None, [node], node, landed, method, strength)
    candidate.extracted = extracted
    return candidate


def _app_executable(app: AppSpec, app_path: str | None) -> str | None:
    """The app's executable: the policy's (preferring one inside the bundle the log named), if it lists any."""
    listed = sorted(app.executables)
    if app_path:
        inside = [e for e in listed if e.lower().startswith(app_path.rstrip("/").lower() + "/")]
        if inside:
            return inside[0]
    return listed[0] if listed else None


def _writer_app(landed: FileWrite, policy: Policy) -> AppSpec | None:
    writer = landed.process
    if writer is None:
        return None
    classification = policy.classify(writer.executable, writer.signature)
    return policy.app_by_name(classification.name) if classification else None


def _bundle_root(path: str) -> str:
    cut = path.find(".app/")
    return path[: cut + 4] if cut > 0 else path


def _archive_origin(extraction: FileWrite, state: HostState, policy: Policy) -> FileWrite | None:
    """The archive a non-archiver policy app downloaded that an archiver's extraction came from (by name)."""
    extractor = _writer_app(extraction, policy)
    if extractor is None or extractor.kind != "archiver":
        return None
    stem = _stem(_basename(_bundle_root(extraction.path))).lower()
    best: FileWrite | None = None
    for landed in _files_between(state, extraction.time_ns - policy.file_to_exec_ns, extraction.time_ns):
        if not landed.path.lower().endswith(_ARCHIVE_SUFFIXES) or _stem(_basename(landed.path)).lower() != stem:
            continue
        app = _writer_app(landed, policy)
        if app is None or app.kind == "archiver":
            continue
        if best is None or (landed.time_ns, landed.path) > (best.time_ns, best.path):
            best = landed
    return best


# -- assembly ------------------------------------------------------------------------------------------------


def _references(file_path: str, nodes: list[ProcNode]) -> str | None:
    """How the stage-3 tree uses the landed file, if it does (script path, argument, working folder)."""
    name = _basename(file_path)
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


def _writer_is_app(landed: FileWrite, candidate: _Candidate, policy: Policy) -> bool:
    writer = landed.process
    if writer is None:
        return False
    if candidate.app_pid is not None and (candidate.app_pid in (writer.pid, writer.responsible_pid)):
        return True
    classification = policy.classify(writer.executable, writer.signature)
    return classification is not None and classification.role in _APP_ROLES \
        and classification.name == candidate.app.name and candidate.app_pid is None


def _pick_file(candidate: _Candidate, state: HostState, policy: Policy,
               tree: list[ProcNode]) -> tuple[FileWrite, str, Strength] | None:
    if candidate.download is not None:
        method = candidate.download_method or "download"
        return candidate.download, method, candidate.download_strength or Strength.WEAK
    stage3_time = candidate.stage3.start_ns
    referenced: tuple[FileWrite, str] | None = None
    latest: FileWrite | None = None
    for landed in _files_between(state, stage3_time - policy.file_to_exec_ns, stage3_time):
        if not _writer_is_app(landed, candidate, policy):
            continue
        reason = _references(landed.path, tree)
        if reason is not None and (referenced is None or landed.time_ns > referenced[0].time_ns):
            referenced = (landed, reason)
        if latest is None or (landed.time_ns, landed.path) > (latest.time_ns, latest.path):
            latest = landed
    if referenced is not None:
        return referenced[0], referenced[1], Strength.STRONG
    if latest is not None:
        return latest, "written by the app before the child started; the child does not name it", Strength.WEAK
    return None


def _pick_activity(candidate: _Candidate, state: HostState, policy: Policy, before_ns: int,
                   app_nodes: list[ProcNode]) -> tuple[int, str, str, Strength, AppActivity | ProcNode] | None:
    stage3_time = candidate.stage3.start_ns
    best: tuple[int, str, str, Strength, AppActivity | ProcNode] | None = None
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
        option = (activity.time_ns, text, "unified log", strength, activity)
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


def _egress(candidate: _Candidate, state: HostState, policy: Policy,
            tree: list[ProcNode]) -> tuple[list[Egress], list[tuple[Egress, AllowRule]]]:
    table = state.processes
    keys = {n.key for n in tree}
    spaces = {namespace(k) for k in keys}
    start = candidate.stage3.start_ns
    found: list[Egress] = []
    allowed: list[tuple[Egress, AllowRule]] = []
    network = state.network
    low = bisect_left(network, start, key=_conn_time)
    high = bisect_right(network, start + policy.exec_to_egress_ns, key=_conn_time)
    for conn in network[low:high]:
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


def _suppression(candidate: _Candidate, policy: Policy) -> AllowRule | None:
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


def _is_unsigned(node: ProcNode) -> bool:
    sig = node.signature
    if sig is None:
        return False
    if sig.validation_category in (7, 10):
        return True
    return sig.platform_binary is False and not sig.team_id and sig.signed is not True


def _credential_prompt(node: ProcNode) -> bool:
    text = node.cmdline.lower()
    return "display dialog" in text and ("hidden answer" in text or "password" in text)


def _build(candidate: _Candidate, state: HostState, policy: Policy,
           index: dict[str, list[ProcNode]], app_nodes: list[ProcNode],
           files_by_pid: dict[int, list[FileWrite]]) -> Finding | None:
    table = state.processes
    stage3 = candidate.stage3
    tree_below = table.descendants(stage3, index)[:_MAX_TREE]
    tree = [stage3, *tree_below]
    notes: list[str] = []

    picked_file = _pick_file(candidate, state, policy, tree)
    egress, allowed = _egress(candidate, state, policy, tree)
    before = picked_file[0].time_ns if picked_file else stage3.start_ns
    activity = _pick_activity(candidate, state, policy, before, app_nodes)

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
        time_ns, text, method, strength, origin = activity
        if isinstance(origin, AppActivity):
            # The evidence is about the app, not the daemon that logged it (runningboardd, ReportCrash): name the
            # app's process from what the record says about it.
            app_pid = origin.pid if origin.pid is not None else candidate.app_pid
            app_ref = candidate.app_node.to_ref() if candidate.app_node is not None and (
                app_pid is None or candidate.app_node.pid == app_pid) else ProcessRef(
                pid=app_pid if app_pid is not None else 0, name=candidate.app.name,
                executable=_app_executable(candidate.app, origin.app_path))
            stages.append(StageEvidence(Stage.APP_ACTIVITY, time_ns, text, method, origin.source, str(origin.raw),
                                        process=app_ref))
        else:
            stages.append(StageEvidence(Stage.APP_ACTIVITY, time_ns, text, method, origin.source, str(origin.raw),
                                        process=origin.to_ref()))
    else:
        notes.append(f"no {candidate.app.name} launch, click or crash seen in the window "
                     "(app known from process lineage or the download only)")
    if picked_file is not None:
        landed, method, strength = picked_file
        stages.append(StageEvidence(Stage.FILE_LANDING, landed.time_ns,
                                    f"{landed.process.display_name if landed.process else 'app'} "
                                    f"{landed.action.value} {landed.path}", method, landed.source,
                                    str(landed.raw), process=landed.process, file_path=landed.path))
        if activity is not None:
            same_pid = landed.process is not None and candidate.app_pid is not None and (
                candidate.app_pid in (landed.process.pid, landed.process.responsible_pid))
            links.append(Link(Stage.APP_ACTIVITY, Stage.FILE_LANDING,
                              Strength.STRONG if activity[3] is Strength.STRONG and same_pid else Strength.WEAK,
                              "same app process wrote the file" if same_pid else "same app, by name"))
    parent_ref = candidate.path[-2].to_ref() if len(candidate.path) > 1 else None
    if candidate.route == "interpreter":
        chain_names = " -> ".join(n.name for n in candidate.path)
        stage3_text = f"{stage3.name} spawned under {candidate.app.name}: {chain_names}"
        stage3_method = "process lineage" + (" (app seen only as the parent named by a child record)"
                                             if candidate.path[0].synthetic else "")
    else:
        stage3_text = f"downloaded app {_basename(_bundle_of(_launched(stage3)) or stage3.name)} opened " \
                      f"(parent {stage3.ppid if stage3.ppid is not None else 'unknown'})"
        stage3_method = candidate.download_method or "download lineage"
    stages.append(StageEvidence(Stage.EXECUTION, stage3.start_ns, stage3_text, stage3_method, stage3.source,
                                str(stage3.raw), process=stage3.to_ref(), parent=parent_ref))

    gatekeeper, quarantine, gk_strength = _quarantine_context(candidate, state, policy, picked_file)
    if picked_file is not None:
        landed, method, strength = picked_file
        if candidate.route == "quarantined_app" and gk_strength is Strength.STRONG:
            strength = Strength.STRONG
        links.append(Link(Stage.FILE_LANDING, Stage.EXECUTION, strength, method))
    elif activity is not None:
        links.append(Link(Stage.APP_ACTIVITY, Stage.EXECUTION, Strength.WEAK, "no landed file links them"))

    if egress:
        first = egress[0]
        stages.append(StageEvidence(Stage.EGRESS, first.time_ns,
                                    f"{first.process.display_name} connected to "
                                    f"{first.hostname or first.dst_ip}:{first.dst_port}",
                                    f"attributed by {first.attribution}", first.source, first.raw,
                                    process=first.process, dst_ip=first.dst_ip, dst_port=first.dst_port,
                                    hostname=first.hostname))
        links.append(Link(Stage.EXECUTION, Stage.EGRESS,
                          Strength.STRONG if first.attribution in ("entity", "pid_lifetime") else Strength.WEAK,
                          {"entity": "same process entity",
                           "pid_lifetime": "same pid within the process's lifetime (exec..exit)",
                           "pid_open_lifetime": "same pid after exec; exit not seen"}[first.attribution]))
    for egress_item, allow_rule in allowed:
        notes.append(f"egress to {egress_item.hostname or egress_item.dst_ip} allowed by {allow_rule.id}")

    present = {s.stage for s in stages}
    if len(present) < 3:
        return None
    rule: AllowRule | None = _suppression(candidate, policy)
    suppressed_by = rule.id if rule else None
    if rule is None and allowed and Stage.EGRESS not in present:
        rule, suppressed_by = allowed[0][1], allowed[0][1].id

    reasons: list[str] = []
    weak = [lk for lk in links if lk.strength is Strength.WEAK]
    if len(present) == 4:
        severity = Severity.HIGH if not weak else Severity.MEDIUM
        reasons.append("all four stages" + (" with strong links" if not weak else f" ({len(weak)} weak link(s))"))
        critical = []
        # Intermediates between the app and stage 3 are in the chain too (an ad-hoc "updater" lookalike).
        intermediates = candidate.path[1:-1] if candidate.app_node is not None else []
        unsigned = [n for n in (*intermediates, *tree) if _is_unsigned(n)]
        if unsigned:
            critical.append(f"unsigned or ad-hoc signed process {unsigned[0].name} in the chain")
        if any(e.hostname is None and e.destination_class == "external" for e in egress):
            critical.append("egress to a raw IP address")
        if any(_credential_prompt(n) for n in tree):
            critical.append("osascript credential prompt")
        if critical:
            severity = Severity.CRITICAL
            reasons.extend(critical)
        is_alert = True
    else:
        severity = Severity.LOW
        missing = sorted(int(s) for s in set(Stage) - present)
        reasons.append(f"three stages only (missing stage {', '.join(map(str, missing))})")
        is_alert = False
    if len(weak) == 0 and egress and egress[0].confidence is Confidence.HIGH:
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
    if candidate.route == "quarantined_app" and (
            any(g.action in (GatekeeperAction.USER_OVERRIDE, GatekeeperAction.REJECTION_CLEARED)
                for g in gatekeeper)
            or any(x.action is XattrAction.DELETE for x in state.xattrs if _related_path(x.path, candidate))):
        techniques.append("T1553.001")

    tree_nodes = _tree(candidate, tree, policy)
    files = sorted({f.path for n in tree for f in files_by_pid.get(n.pid, ()) if f.time_ns >= n.start_ns}
                   | ({picked_file[0].path} if picked_file else set())
                   | ({_bundle_root(candidate.extracted.path)} if candidate.extracted else set()))
    app_key = f"{candidate.app.name}/{candidate.app_pid if candidate.app_pid is not None else '?'}"
    stages.sort(key=lambda s: int(s.stage))
    timeline = _timeline(stages, tree, egress, gatekeeper, state, candidate)
    return Finding(
        finding_id=finding_id(state.host, app_key, stage3.key),
        host=state.host, app_name=candidate.app.name, app_key=app_key, stage3_key=stage3.key,
        route=candidate.route, stages=tuple(stages), links=tuple(links), tree=tuple(tree_nodes),
        timeline=tuple(timeline), files=tuple(files), egress=tuple(egress[:_MAX_EGRESS]),
        quarantine=tuple(quarantine), gatekeeper=tuple(_gk_text(g) for g in gatekeeper),
        severity=severity, confidence=confidence, is_alert=is_alert, reasons=tuple(reasons),
        techniques=tuple(techniques), suppressed_by=suppressed_by,
        suppression_reason=rule.description if rule else None, notes=tuple(notes),
    )


def _related_path(path: str, candidate: _Candidate) -> bool:
    bundle = _bundle_of(_launched(candidate.stage3))
    targets = [p for p in (bundle, candidate.download.path if candidate.download else None) if p]
    return any(path == t or path.startswith(t + "/") or t.startswith(path + "/") for t in targets)


def _quarantine_context(candidate: _Candidate, state: HostState, policy: Policy,
                        picked_file: tuple[FileWrite, str, Strength] | None,
                        ) -> tuple[list[Gatekeeper], list[str], Strength | None]:
    paths = {p for p in (picked_file[0].path if picked_file else None, _bundle_of(_launched(candidate.stage3)),
                         _bundle_root(candidate.extracted.path) if candidate.extracted else None) if p}
    names = {_basename(p) for p in paths}
    quarantine: list[str] = []
    agent_matches = False
    for change in sorted(state.xattrs, key=lambda x: (x.time_ns, x.path)):
        if not any(change.path == p or p.startswith(change.path + "/") or change.path.startswith(p + "/")
                   for p in paths):
            continue
        if change.quarantine is not None:
            q = change.quarantine
            agent_matches = agent_matches or (q.agent or "").lower() == candidate.app.name.lower()
            quarantine.append(f"{change.action.value} com.apple.quarantine on {change.path}: agent={q.agent} "
                              f"flags=0x{(q.flags or 0):04x} uuid={q.event_uuid} "
                              f"user_approved={q.user_approved}")
        else:
            quarantine.append(f"{change.action.value} com.apple.quarantine on {change.path} "
                              f"by {change.process.display_name if change.process else 'unknown'}")
    if candidate.route != "quarantined_app":
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


def _tree(candidate: _Candidate, tree: list[ProcNode], policy: Policy) -> list[TreeNode]:
    nodes: list[TreeNode] = []
    depth_of: dict[str, int] = {}
    for depth, node in enumerate(candidate.path):
        role = _role_of(node, policy)
        nodes.append(TreeNode(depth, node.to_ref(), role.value if role else "process", node.via))
        depth_of[node.key] = depth
    for node in tree[1:]:
        parent_depth = max((depth_of.get(k, -1) for k in (node.parent_key, node.predecessor_key) if k), default=-1)
        if parent_depth < 0:
            holder = next((n for n in tree if n.pid == node.ppid and n.start_ns <= node.start_ns), None)
            parent_depth = depth_of.get(holder.key, len(candidate.path) - 1) if holder else len(candidate.path) - 1
        depth = parent_depth + 1
        depth_of[node.key] = depth
        role = _role_of(node, policy)
        nodes.append(TreeNode(depth, node.to_ref(), role.value if role else "process", node.via))
    return nodes


def _timeline(stages: list[StageEvidence], tree: list[ProcNode], egress: list[Egress],
              gatekeeper: list[Gatekeeper], state: HostState, candidate: _Candidate) -> list[TimelineEntry]:
    entries = [TimelineEntry(s.time_ns, s.stage, s.summary, s.source, s.raw) for s in stages]
    stage3_raw = str(candidate.stage3.raw)
    if candidate.extracted is not None:
        extracted = candidate.extracted
        who = extracted.process.display_name if extracted.process else "archiver"
        entries.append(TimelineEntry(extracted.time_ns, None,
                                     f"{who} extracted {_bundle_root(extracted.path)}", extracted.source,
                                     str(extracted.raw)))
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
