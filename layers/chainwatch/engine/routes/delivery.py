"""Route "quarantined_app": a downloaded app is opened, and its delivery is traced back to the download.

Its parent is launchd, so lineage cannot link it to the browser; the delivery lineage does, walking back from the
launched bundle with every signal that exists, each hop recorded with its strength:

1. **translocation** -- a ``.../AppTranslocation/<uuid>/d/X.app`` bundle is mapped back to the original path by
   App Translocation's nullfs mount (strong), else by Gatekeeper naming a bundle of that name just before the
   launch (strong when it prompted for it), else by name only (weak);
2. **copy into /Applications** -- a bundle dragged off a volume: a copy whose source is on ``/Volumes`` (strong),
   else a copy seen while a disk image was mounted (weak); an app in ``/Applications`` with no copy and no
   quarantine evidence is never linked (it was installed some other way);
3. **disk image** -- a bundle on ``/Volumes/<name>`` is on the image mounted there (strong by path); the image is
   the file the mount names (strong), the one ``hdiutil attach`` named (strong), else the disk image downloaded
   last before the mount, with a tolerant name comparison (weak either way, and the reason says which);
4. **download folder** -- a bundle in ``~/Downloads`` is the downloaded path (strong), or was extracted by an
   archiver from an archive a policy app downloaded (by name, weak unless the names agree exactly).

The download must have been written by a policy app (a browser, mail or messaging app, directly or through a
helper): that is stage 2, and its writer stage 1. When nothing names a policy app's download but the app was
quarantined, translocated or run from a volume, the candidate is kept without one: the behavioural floor in
:mod:`chainwatch.engine.grading` decides whether it is an alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chainwatch.engine.candidate import (
    ARCHIVE_SUFFIXES,
    Candidate,
    basename,
    bundle_of,
    bundle_root,
    files_between,
    launched,
    names_agree,
    stem,
    under,
    without_partial,
    writer_app,
)
from chainwatch.engine.hoststate import HostState
from chainwatch.engine.lineage import ProcNode
from chainwatch.events import FileWrite, GatekeeperAction, MountAction, MountKind, VolumeMount
from chainwatch.findings.model import DeliveryStep, Strength
from chainwatch.policy import AppSpec, Policy, Role

_IMAGE_SUFFIXES = (".dmg", ".iso", ".sparseimage", ".sparsebundle", ".img", ".cdr")
_GK_NAMING = (GatekeeperAction.PROMPT, GatekeeperAction.USER_OVERRIDE, GatekeeperAction.REJECTION_CLEARED,
              GatekeeperAction.SCAN, GatekeeperAction.REJECTION, GatekeeperAction.BLOCKED_LAUNCH)


@dataclass
class _Hop:
    step: str
    time_ns: int | None
    path: str | None
    text: str
    source: object = None
    raw: str | None = None
    #: The link from this hop to the next (later) one.
    strength: Strength | None = None
    reason: str | None = None


@dataclass
class _Trace:
    """The delivery walked backwards from the launch; :meth:`steps` gives it forwards."""

    hops: list[_Hop] = field(default_factory=list)  # latest first
    #: A link the next prepended hop must take instead of its own (what the later hop knows about it).
    pending: tuple[Strength, str] | None = None

    def prepend(self, hop: _Hop, strength: Strength, reason: str) -> None:
        if self.pending is not None:
            strength, reason = self.pending
            self.pending = None
        hop.strength, hop.reason = strength, reason
        self.hops.append(hop)

    def steps(self) -> list[DeliveryStep]:
        forward = list(reversed(self.hops))
        out = []
        for index, hop in enumerate(forward):
            before = forward[index - 1] if index else None
            out.append(DeliveryStep(hop.step, hop.time_ns, hop.path, hop.text,
                                    before.strength if before else None, before.reason if before else None,
                                    hop.source, hop.raw))  # type: ignore[arg-type]
        return out

    @property
    def strengths(self) -> list[Strength]:
        return [h.strength for h in self.hops if h.strength is not None]


def delivery_candidate(node: ProcNode, state: HostState, policy: Policy) -> Candidate | None:
    """The chain of a launched app bundle, traced back to the policy app that downloaded it."""
    run = launched(node)
    bundle = bundle_of(run)
    if bundle is None or run is None:
        return None
    in_applications = under(bundle, "/Applications") and not policy.is_suspicious_exec_path(run)
    if not in_applications and not policy.is_suspicious_exec_path(run):
        return None
    trace = _Trace()
    trace.hops.append(_Hop("launch", node.start_ns, bundle,
                           f"{basename(bundle)} launched (pid {node.pid}, parent "
                           f"{node.ppid if node.ppid is not None else 'unknown'})", node.source, str(node.raw)))
    location, at_ns = _untranslocate(bundle, node, state, policy, trace)
    if location is not None and under(location, "/Applications"):
        location, at_ns = _uncopy(location, at_ns, state, policy, trace)
        if location is None:
            return None  # installed some other way: nothing says it came from a download
    download: FileWrite | None = None
    extracted: FileWrite | None = None
    if location is not None and location.startswith("/Volumes/"):
        download = _image_of_volume(location, at_ns, state, policy, trace)
    elif location is not None:
        download, extracted = _downloaded_at(location, at_ns, state, policy, trace)
    if download is None and location is None:
        # Nothing maps the launch back to a path: compare names with what policy apps downloaded (weak).
        download = _by_name(bundle, node.start_ns, state, policy, trace)
    app: AppSpec | None = writer_app(download, policy) if download is not None else None
    if download is not None and app is None:
        download = None
    if download is None and not _looks_delivered(bundle, location, state):
        return None
    app_pid: int | None = None
    if download is not None and download.process is not None:
        writer = download.process
        app_pid = writer.pid
        classification = policy.classify(writer.executable, writer.signature)
        if classification is not None and classification.role is Role.HELPER and writer.responsible_pid:
            app_pid = writer.responsible_pid
    steps = trace.steps()
    weakest = Strength.WEAK if Strength.WEAK in trace.strengths else Strength.STRONG
    method = "; ".join(s.reason for s in steps if s.reason) or "download lineage"
    candidate = Candidate("quarantined_app", app, app_pid, None, [node], node, download, method,
                          weakest if download is not None else None)
    candidate.extracted = extracted
    candidate.delivery = steps
    return candidate


# -- translocation -------------------------------------------------------------------------------------------


def _untranslocate(bundle: str, node: ProcNode, state: HostState, policy: Policy,
                   trace: _Trace) -> tuple[str | None, int]:
    """The bundle's original path (and when it was there), walking back through App Translocation."""
    if "/apptranslocation/" not in bundle.lower():
        return bundle, node.start_ns
    name = basename(bundle)
    for mount in sorted(state.mounts, key=lambda m: -m.time_ns):
        if mount.time_ns > node.start_ns or node.start_ns - mount.time_ns > policy.file_to_exec_ns:
            continue
        if mount.action is not MountAction.MOUNT or not mount.mounted_from:
            continue
        point = mount.mount_point.rstrip("/")
        if not (under(bundle, point) or under(point, bundle)):
            continue
        source = mount.mounted_from.rstrip("/")
        original = source if basename(source).lower() == name.lower() else f"{source}/{name}"
        trace.prepend(_Hop("translocate", mount.time_ns, bundle,
                           f"App Translocation mounted {original} at {point}", mount.source, str(mount.raw)),
                      Strength.STRONG, "the launched executable is inside the translocated copy")
        return original, mount.time_ns
    # No nullfs mount: Gatekeeper names the original bundle when it scans, prompts or records the override.
    named = [g for g in state.gatekeeper
             if g.action in _GK_NAMING and g.path and "/apptranslocation/" not in g.path.lower()
             and basename(bundle_root(g.path)).lower() == name.lower()
             and abs(g.time_ns - node.start_ns) <= policy.prompt_to_launch_ns]
    if named:
        best = max(named, key=lambda g: (g.action is not GatekeeperAction.SCAN, g.time_ns))
        original = bundle_root(best.path or "")
        prompted = best.action is not GatekeeperAction.SCAN
        trace.prepend(_Hop("translocate", best.time_ns, bundle,
                           f"Gatekeeper {best.action.value} for {original}; launched from its translocated copy",
                           best.source, str(best.raw)),
                      Strength.STRONG if prompted else Strength.WEAK,
                      f"Gatekeeper {'prompted for' if prompted else 'scanned'} {name} "
                      f"{abs(node.start_ns - best.time_ns) // 1_000_000_000} s from the launch")
        return original, best.time_ns
    return None, node.start_ns


# -- copies into /Applications -------------------------------------------------------------------------------


def _uncopy(location: str, at_ns: int, state: HostState, policy: Policy, trace: _Trace) -> tuple[str | None, int]:
    """Where an app in ``/Applications`` was copied from (a mounted volume), if anything says it was copied."""
    root = bundle_root(location)
    copies = [f for f in state.files_view if under(f.path, root) and f.time_ns <= at_ns
              and at_ns - f.time_ns <= policy.file_to_exec_ns]
    sourced = [f for f in copies if f.source_path and f.source_path.startswith("/Volumes/")]
    if sourced:
        copy = min(sourced, key=lambda f: (f.time_ns, f.path))
        origin = bundle_root(copy.source_path or "")
        who = copy.process.display_name if copy.process else "a process"
        trace.prepend(_Hop("copy", copy.time_ns, root, f"{who} copied {origin} to {root}", copy.source,
                           str(copy.raw)), Strength.STRONG, f"the launched app is the copy in {root}")
        return origin, copy.time_ns
    quarantined = [x for x in state.xattrs if x.quarantine is not None and under(x.path, root)
                   and x.time_ns <= at_ns]
    if not copies and not quarantined:
        return None, at_ns
    first = min(copies, key=lambda f: f.time_ns) if copies else None
    copy_ns = first.time_ns if first is not None else min(x.time_ns for x in quarantined)
    mounted = [m for m in state.mounts if m.action is MountAction.MOUNT and m.mount_point.startswith("/Volumes/")
               and m.mount_kind is not MountKind.NULLFS and m.time_ns <= copy_ns
               and copy_ns - m.time_ns <= policy.file_to_exec_ns]
    who = first.process.display_name if first is not None and first.process else "the user"
    if mounted:
        mount = max(mounted, key=lambda m: (names_agree(m.mount_point, root), m.time_ns))
        origin = f"{mount.mount_point.rstrip('/')}/{basename(root)}"
        agree = names_agree(mount.mount_point, root)
        trace.prepend(_Hop("copy", copy_ns, root, f"{who} copied {basename(root)} into /Applications",
                           first.source if first else None, str(first.raw) if first else None),
                      Strength.STRONG, f"the launched app is the copy in {root}")
        # The volume's link to the copy is weak: the copy names no source, only the time (and the name) agree.
        trace.pending = (Strength.WEAK, f"copied {(copy_ns - mount.time_ns) // 1_000_000_000} s after "
                         f"{mount.mount_point} was mounted" + ("; names agree" if agree else
                                                               "; the copy names no source"))
        return origin, copy_ns
    # Quarantined but no volume seen: the quarantine agent is the only link to a download (checked by the caller).
    trace.prepend(_Hop("copy", copy_ns, root, f"{basename(root)} appeared in /Applications (quarantined)",
                       None, None), Strength.WEAK, "the launched app carries a quarantine attribute")
    return root, copy_ns


# -- disk images ---------------------------------------------------------------------------------------------


def _volume_of(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:3]) if len(parts) >= 3 else path


def _image_of_volume(location: str, at_ns: int, state: HostState, policy: Policy, trace: _Trace) -> FileWrite | None:
    """The downloaded disk image whose volume holds ``location`` (``/Volumes/<name>/X.app``)."""
    volume = _volume_of(location)
    mounts = [m for m in state.mounts if m.action is MountAction.MOUNT and m.mount_kind is not MountKind.NULLFS
              and m.mount_point.rstrip("/").lower() == volume.lower() and m.time_ns <= at_ns
              and at_ns - m.time_ns <= policy.file_to_exec_ns]
    mount: VolumeMount | None = max(mounts, key=lambda m: m.time_ns) if mounts else None
    name = basename(bundle_root(location))
    if mount is not None:
        frm = f" from {mount.mounted_from}" if mount.mounted_from else ""
        trace.prepend(_Hop("mount", mount.time_ns, volume, f"disk image mounted at {volume}{frm}", mount.source,
                           str(mount.raw)), Strength.STRONG, f"{name} is on the volume mounted at {volume}")
        anchor = mount.time_ns
    else:
        trace.prepend(_Hop("mount", None, volume, f"{volume} (no mount event seen)"), Strength.WEAK,
                      f"{name} ran from volume {volume} (its mount was not seen)")
        anchor = at_ns
    images = [f for f in files_between(state, anchor - policy.file_to_exec_ns, anchor)
              if without_partial(f.path).lower().endswith(_IMAGE_SUFFIXES) and writer_app(f, policy) is not None
              and writer_app(f, policy).kind != "archiver"]  # type: ignore[union-attr]
    if not images:
        return None
    named = (mount.image_path if mount is not None else None) or _hdiutil_image(state, anchor, policy)
    if named:
        exact = [f for f in images if without_partial(f.path).lower() == named.lower()]
        if exact:
            image = max(exact, key=lambda f: f.time_ns)
            trace.prepend(_download_hop(image), Strength.STRONG, f"the mount names the image {named}")
            return image
    agreeing = [f for f in images if names_agree(without_partial(f.path), volume) or
                names_agree(without_partial(f.path), name)]
    if agreeing:
        image = max(agreeing, key=lambda f: f.time_ns)
        reason = (f"names agree after normalising ({basename(without_partial(image.path))} ~ "
                  f"{basename(volume)} / {name}); mounted {(anchor - image.time_ns) // 1_000_000_000} s after the "
                  "download")
    else:
        image = max(images, key=lambda f: f.time_ns)
        reason = (f"the disk image downloaded last before {volume} appeared "
                  f"({(anchor - image.time_ns) // 1_000_000_000} s before; names differ)")
    trace.prepend(_download_hop(image), Strength.WEAK, reason)
    return image


def _hdiutil_image(state: HostState, around_ns: int, policy: Policy) -> str | None:
    """The image an ``hdiutil attach|mount PATH`` near the mount named (scripts mount images this way)."""
    for node in state.processes.nodes.values():
        if node.name != "hdiutil" or abs(node.start_ns - around_ns) > policy.prompt_to_launch_ns:
            continue
        if len(node.args) >= 3 and node.args[1] in ("attach", "mount", "imageinfo"):
            return next((a for a in node.args[2:] if a.lower().endswith(_IMAGE_SUFFIXES)), None)
    return None


def _download_hop(landed: FileWrite) -> _Hop:
    who = landed.process.display_name if landed.process else "a process"
    source = landed.source_path
    renamed = "" if not source else (
        f" (renamed from {basename(source)})" if basename(source) != basename(landed.path) else
        f" (renamed from {source})")
    return _Hop("download", landed.time_ns, landed.path, f"{who} wrote {landed.path}{renamed}", landed.source,
                str(landed.raw))


# -- download folders and archives ---------------------------------------------------------------------------


def _downloaded_at(location: str, at_ns: int, state: HostState, policy: Policy,
                   trace: _Trace) -> tuple[FileWrite | None, FileWrite | None]:
    """The download that put ``location`` (a bundle in a download folder) there, and the extraction if any."""
    root = bundle_root(location).lower()
    best: FileWrite | None = None
    for landed in files_between(state, at_ns - policy.file_to_exec_ns, at_ns):
        if writer_app(landed, policy) is None:
            continue
        path = landed.path.lower()
        inside = path == root or path.startswith(root + "/") or root.startswith(path + "/")
        if inside and (best is None or (landed.time_ns, landed.path) < (best.time_ns, best.path)):
            best = landed  # the first write of the bundle is its arrival
    if best is None:
        return None, None
    extractor = writer_app(best, policy)
    if extractor is not None and extractor.kind == "archiver":
        origin, agree = _archive_origin(best, state, policy)
        if origin is None:
            # No policy app's archive to trace it to: the archiver is the app that opened the untrusted content.
            trace.prepend(_download_hop(best), Strength.STRONG, "the launched bundle is the downloaded path")
            return best, None
        trace.prepend(_Hop("extract", best.time_ns, bundle_root(best.path),
                           f"{extractor.name} extracted {bundle_root(best.path)}", best.source, str(best.raw)),
                      Strength.STRONG, f"the launched bundle is the extracted {bundle_root(best.path)}")
        trace.prepend(_download_hop(origin), Strength.STRONG if agree else Strength.WEAK,
                      f"downloaded as {basename(origin.path)}, extracted by {extractor.name} to "
                      f"{bundle_root(best.path)}" + ("" if agree else " (the archive downloaded last; names differ)"))
        return origin, best
    trace.prepend(_download_hop(best), Strength.STRONG, "the launched bundle is the downloaded path")
    return best, None


def _archive_origin(extraction: FileWrite, state: HostState, policy: Policy) -> tuple[FileWrite | None, bool]:
    """The archive a non-archiver policy app downloaded that an archiver's extraction came from, and whether its
    name is the extracted bundle's (else the archive downloaded last before the extraction)."""
    name = stem(basename(bundle_root(extraction.path))).lower()
    exact: FileWrite | None = None
    latest: FileWrite | None = None
    for landed in files_between(state, extraction.time_ns - policy.file_to_exec_ns, extraction.time_ns):
        final = without_partial(landed.path)
        if not final.lower().endswith(ARCHIVE_SUFFIXES):
            continue
        app = writer_app(landed, policy)
        if app is None or app.kind == "archiver":
            continue
        key = (landed.time_ns, landed.path)
        if stem(basename(final)).lower() == name and (exact is None or key > (exact.time_ns, exact.path)):
            exact = landed
        if latest is None or key > (latest.time_ns, latest.path):
            latest = landed
    if exact is not None:
        return exact, True
    return latest, False


# -- name-only fallback --------------------------------------------------------------------------------------


def _by_name(bundle: str, at_ns: int, state: HostState, policy: Policy, trace: _Trace) -> FileWrite | None:
    """A download a policy app wrote whose name matches the launched bundle (no path links them: weak)."""
    name = basename(bundle)
    best: tuple[int, int, FileWrite, str] | None = None
    for landed in files_between(state, at_ns - policy.file_to_exec_ns, at_ns):
        app = writer_app(landed, policy)
        if app is None or app.kind == "archiver":
            continue
        final = without_partial(landed.path)
        file_name = basename(final)
        if file_name.lower() == name.lower() or f"/{name.lower()}/" in final.lower():
            match = (2, f"translocated copy of the downloaded {name}")
        elif final.lower().endswith(ARCHIVE_SUFFIXES) and names_agree(file_name, name):
            match = (1, f"bundle {name} has the name of the downloaded {file_name}")
        else:
            continue
        rank = (match[0], landed.time_ns, landed, match[1])
        if best is None or rank[:2] > best[:2]:
            best = rank
    if best is None:
        return None
    trace.prepend(_download_hop(best[2]), Strength.WEAK, best[3])
    return best[2]


def _looks_delivered(bundle: str, location: str | None, state: HostState) -> bool:
    """Whether the launched app is a delivered download even though no policy app's download names it."""
    if "/apptranslocation/" in bundle.lower() or bundle.startswith("/Volumes/") or (
            location is not None and location.startswith("/Volumes/")):
        return True
    paths = [p for p in (bundle, location) if p]
    return any(x.quarantine is not None and any(under(x.path, bundle_root(p)) or under(p, x.path) for p in paths)
               for x in state.xattrs)
