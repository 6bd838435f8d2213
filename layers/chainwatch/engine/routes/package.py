"""Route "package": a downloaded ``.pkg`` whose pre/postinstall script runs an interpreter.

Package scripts run under Apple's installer (``package_script_service``, ``installer``), which launchd starts, so
lineage stops there. The script's interpreter is stage 3; the package is linked to a policy app's download by the
installer's own arguments or Gatekeeper naming the ``.pkg`` (strong), else by a tolerant comparison of the package
identifier in the script's sandbox path with the file name, else as the package downloaded last before the
installer ran (weak, and said so). Vendor packages do this every day: grading, not the route, tells them apart
(a known vendor's team, no behaviour, only its own domains).
"""

from __future__ import annotations

from chainwatch.engine.candidate import (
    Candidate,
    basename,
    files_between,
    names_agree,
    role_of,
    without_partial,
    writer_app,
)
from chainwatch.engine.hoststate import HostState
from chainwatch.engine.lineage import ProcNode
from chainwatch.events import FileWrite
from chainwatch.findings.model import DeliveryStep, Strength
from chainwatch.policy import Policy, Role

_PACKAGE_SUFFIXES = (".pkg", ".mpkg")
#: Where Installer unpacks a package's scripts (``/tmp/PKInstallSandbox.XXXXXX/Scripts/<package id>.<rand>/``).
_SANDBOX_MARKERS = ("/pkinstallsandbox.",)


def package_candidate(node: ProcNode, state: HostState, policy: Policy) -> Candidate | None:
    """The chain of a package script's interpreter, linked to the download of its ``.pkg``."""
    table = state.processes
    ancestors = table.ancestry(node)
    installer: ProcNode | None = None
    between: list[ProcNode] = []
    for ancestor in ancestors:
        role = role_of(ancestor, policy)
        if role is Role.INSTALLER:
            installer = ancestor
            break
        if role in (Role.APP, Role.HELPER):
            return None  # the interpreter route owns chains under an app
        if role is Role.INTERPRETER:
            return None  # an interpreter nearer the installer is this chain's stage 3
        between.append(ancestor)
    script = node.script_path or next((a for a in node.args[1:] if "/" in a), "")
    sandboxed = any(m in script.lower() for m in _SANDBOX_MARKERS)
    if installer is None and not sandboxed:
        return None
    started = installer.start_ns if installer is not None and not installer.synthetic else node.start_ns
    packages = [f for f in files_between(state, started - policy.file_to_exec_ns, node.start_ns)
                if without_partial(f.path).lower().endswith(_PACKAGE_SUFFIXES) and writer_app(f, policy) is not None]
    if not packages:
        return None
    download, strength, reason = _which_package(packages, script, installer, state, node, policy)
    app = writer_app(download, policy)
    if app is None or download.process is None:
        return None
    writer = download.process
    app_pid = writer.pid
    classification = policy.classify(writer.executable, writer.signature)
    if classification is not None and classification.role is Role.HELPER and writer.responsible_pid:
        app_pid = writer.responsible_pid
    steps = [DeliveryStep("download", download.time_ns, download.path,
                          f"{writer.display_name} wrote {download.path}", None, None, download.source,
                          str(download.raw))]
    if installer is not None:
        steps.append(DeliveryStep("install", installer.start_ns if not installer.synthetic else None,
                                  installer.executable, f"{installer.name} ran the package", strength, reason,
                                  installer.source, str(installer.raw)))
        steps.append(DeliveryStep("script", node.start_ns, script or node.executable,
                                  f"{node.name} ran {basename(script) if script else 'a package script'}",
                                  Strength.STRONG, f"{node.name} is a child of {installer.name}", node.source,
                                  str(node.raw)))
    else:
        steps.append(DeliveryStep("script", node.start_ns, script, f"{node.name} ran the package script {script}",
                                  strength, reason, node.source, str(node.raw)))
    path = [*([installer] if installer is not None else []), *reversed(between), node]
    candidate = Candidate("package", app, app_pid, None, path, node, download, reason, strength)
    candidate.delivery = steps
    return candidate


def _which_package(packages: list[FileWrite], script: str, installer: ProcNode | None, state: HostState,
                   node: ProcNode, policy: Policy) -> tuple[FileWrite, Strength, str]:
    named = _named_package(installer, state, node, policy)
    if named:
        exact = [f for f in packages if without_partial(f.path).lower() == named.lower()]
        if exact:
            return max(exact, key=lambda f: f.time_ns), Strength.STRONG, f"the installer was given {named}"
    identifier = _package_identifier(script)
    if identifier:
        agreeing = [f for f in packages if names_agree(basename(without_partial(f.path)), identifier)]
        if agreeing:
            chosen = max(agreeing, key=lambda f: f.time_ns)
            return chosen, Strength.WEAK, (f"the script's package id {identifier} agrees with "
                                           f"{basename(chosen.path)} (by name only)")
    chosen = max(packages, key=lambda f: f.time_ns)
    return chosen, Strength.WEAK, f"{basename(chosen.path)} is the package downloaded last before the installer ran"


def _named_package(installer: ProcNode | None, state: HostState, node: ProcNode, policy: Policy) -> str | None:
    """A ``.pkg`` path named by the installer's arguments or by Gatekeeper just before the scripts ran."""
    if installer is not None:
        for arg in installer.args[1:]:
            if arg.lower().endswith(_PACKAGE_SUFFIXES):
                return arg
    scans = [g for g in state.gatekeeper if g.path and g.path.lower().endswith(_PACKAGE_SUFFIXES)
             and 0 <= node.start_ns - g.time_ns <= policy.file_to_exec_ns]
    if scans:
        return max(scans, key=lambda g: g.time_ns).path
    return None


def _package_identifier(script: str) -> str | None:
    """The package id in a script's sandbox path.

    ``us.zoom.pkg.videomeeting`` from ``.../PKInstallSandbox.x/Scripts/us.zoom.pkg.videomeeting.AbC/postinstall``.
    """
    parts = script.split("/")
    if "Scripts" in parts:
        index = parts.index("Scripts")
        if index + 1 < len(parts) - 1:
            ident = parts[index + 1]
            return ident.rsplit(".", 1)[0] if ident.count(".") >= 2 else ident
    return None
