"""Route "interpreter": a shell, osascript, curl or python whose nearest policy-app ancestor is in its lineage.

The app (or a helper acting for it: a browser's content process, resolved to the app through the responsible pid)
may reach the interpreter through intermediates (``env``, ``nohup``, ``open``) and forks. The interpreter closest to
the app is stage 3; interpreters below it belong to the same chain.
"""

from __future__ import annotations

from chainwatch.engine.candidate import APP_ROLES, Candidate, role_of
from chainwatch.engine.lineage import ProcessTable, ProcNode
from chainwatch.policy import Policy, Role


def interpreter_candidate(node: ProcNode, table: ProcessTable, policy: Policy) -> Candidate | None:
    """The chain ``node`` is stage 3 of, when a policy app or helper is its nearest classified ancestor."""
    ancestors = table.ancestry(node)
    for depth, ancestor in enumerate(ancestors):
        classification = ancestor.role if not ancestor.synthetic else policy.classify(ancestor.executable, None)
        if classification is None or classification.role not in APP_ROLES:
            if classification is not None and classification.role is Role.INSTALLER:
                return None  # a package script: the package route owns it
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
        if any(role_of(b, policy) is Role.INTERPRETER for b in between):
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
            elif depth + 1 < len(ancestors) and role_of(ancestors[depth + 1], policy) is Role.APP:
                app_pid = ancestors[depth + 1].pid
        path = [ancestor, *reversed(between), node]
        return Candidate("interpreter", app, app_pid, ancestor, path, node)
    return None


def _same_app(parent: ProcNode, fork: ProcNode, policy: Policy) -> bool:
    """Whether ``parent`` is the process that ``fork`` (a forked image of an app or helper) is a copy of."""
    if parent.pid != fork.ppid:
        return False
    mine = fork.role if not fork.synthetic else policy.classify(fork.executable, None)
    theirs = parent.role if not parent.synthetic else policy.classify(parent.executable, None)
    return mine is not None and theirs is not None and mine.name == theirs.name
