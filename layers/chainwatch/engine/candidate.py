"""What every route hands to chain assembly: a stage-3 candidate, and the path and time helpers routes share.

A route (``engine/routes/``) finds the stage-3 process of a chain and as much of its delivery as it can prove;
:mod:`chainwatch.engine.chain` then attaches the stages the route did not establish, grades the chain and writes the
finding. Names and paths in telemetry are attacker-controlled: nothing here parses them beyond ``/`` separators and
fixed suffixes.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from chainwatch.engine.hoststate import HostState
from chainwatch.engine.lineage import ProcNode
from chainwatch.events import FileWrite, NetworkConnection
from chainwatch.findings.model import DeliveryStep, Strength
from chainwatch.policy import AppSpec, Policy, Role

APP_ROLES = (Role.APP, Role.HELPER)
ARCHIVE_SUFFIXES = (".zip", ".dmg", ".tar.gz", ".tgz", ".tar", ".7z", ".rar", ".xip", ".pkg", ".mpkg", ".tbz",
                    ".gz", ".iso", ".sparseimage", ".img")
#: Suffixes a browser downloads through before renaming to the real name.
PARTIAL_SUFFIXES = (".crdownload", ".download", ".part", ".partial", ".opdownload")


@dataclass
class Candidate:
    """A stage-3 process and what its route established about the chain before it."""

    route: str  # "interpreter", "quarantined_app" or "package"
    app: AppSpec | None  # None: the download was not seen (the behavioural floor decides whether this alerts)
    app_pid: int | None
    app_node: ProcNode | None  # the app or helper image in the lineage (route "interpreter" only)
    path: list[ProcNode]  # app (or helper) ... stage 3, nearest-to-app first
    stage3: ProcNode
    download: FileWrite | None = None
    download_method: str | None = None
    download_strength: Strength | None = None
    extracted: FileWrite | None = None
    #: The delivery lineage from the download to the launch, each step with the strength of its link.
    delivery: list[DeliveryStep] = field(default_factory=list)


# -- paths ---------------------------------------------------------------------------------------------------


def bundle_of(executable: str | None) -> str | None:
    """The ``X.app`` bundle holding a main executable (``.../X.app/Contents/MacOS/X``), if it is one."""
    if not executable:
        return None
    cut = executable.find(".app/Contents/MacOS/")
    return executable[: cut + 4] if cut > 0 else None


def bundle_root(path: str) -> str:
    """The outermost ``X.app`` folder in a path (the path itself when it holds none)."""
    cut = path.find(".app/")
    if cut > 0:
        return path[: cut + 4]
    return path[:-1] if path.endswith(".app/") else path


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def stem(name: str) -> str:
    """A file name without ``.app`` or an archive suffix."""
    lowered = name.lower()
    for suffix in (".app", *ARCHIVE_SUFFIXES):
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def without_partial(path: str) -> str:
    """A download's final name: ``X.dmg.crdownload`` -> ``X.dmg``, ``X.dmg.download`` -> ``X.dmg``."""
    lowered = path.lower()
    for suffix in PARTIAL_SUFFIXES:
        if lowered.endswith(suffix):
            return path[: -len(suffix)]
    return path


_VERSION = re.compile(r"(?<![a-z\d])v?\d+(?:[._]\d+)*[a-z]?(?![a-z\d])")
_NOISE = re.compile(r"\b(?:setup|installer|install|installation|mac|macos|osx|universal|arm64|x86_64|x64|intel|"
                    r"apple ?silicon|aarch64|amd64|dmg|app|latest|free|full|crack(?:ed)?|update|client|desktop|"
                    r"pro)\b")
_SEPARATORS = re.compile(r"[\s_\-.+()\[\]{}]+")


_ARCH = re.compile(r"\b(?:universal|arm64|x86_64|x64|intel|aarch64|amd64|apple ?silicon)\b")


def _light(name: str) -> str:
    """Case, separators, versions and architecture dropped; words kept (``Installer_v2.4.1_arm64`` -> ``installer``)."""
    text = _SEPARATORS.sub(" ", stem(basename(name)).lower())
    return "".join(_VERSION.sub(" ", _ARCH.sub(" ", text)).split())


def normalized_name(name: str) -> str:
    """A tolerant form of a download, volume or bundle name for comparing them.

    Case, spaces and separators, version numbers (``v2.4.1``, ``-1.2.3``), architecture suffixes and the words
    installers add ("Setup", "Installer", "for Mac") are dropped, so ``CleanMyMac-X-4.15.dmg`` and
    ``/Volumes/CleanMyMac X`` are both ``cleanmymacx`` and ``Arc_1.49.0_arm64.dmg`` is ``arc``. A name that is
    nothing but such words (``Installer_v2.4.1_arm64.dmg``) becomes empty, and :func:`names_agree` then compares
    the plain stems. Only ever evidence for a *weak* link.
    """
    text = stem(basename(name)).lower()
    text = _SEPARATORS.sub(" ", text)
    text = _NOISE.sub(" ", text)
    text = _VERSION.sub(" ", text)
    return "".join(text.split())


def names_agree(first: str, second: str) -> bool:
    """Whether two names are the same brand after :func:`normalized_name` (one may contain the other)."""
    a, b = normalized_name(first), normalized_name(second)
    if _light(first) and _light(first) == _light(second):
        return True
    if not a or not b:
        return False
    return a == b or (min(len(a), len(b)) >= 4 and (a in b or b in a))


def launched(node: ProcNode) -> str | None:
    """The bundle executable a launch ran: the image itself, or the script of a script-bodied app bundle."""
    if bundle_of(node.executable) is not None:
        return node.executable
    if node.role is not None and node.role.role is Role.INTERPRETER and bundle_of(node.script_path) is not None:
        return node.script_path
    return None


def under(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it (case-insensitive, as APFS is by default)."""
    p, f = path.lower().rstrip("/"), folder.lower().rstrip("/")
    return p == f or p.startswith(f + "/")


# -- time-sorted lookups -------------------------------------------------------------------------------------


def file_order(landed: FileWrite) -> tuple[int, str, str]:
    return landed.time_ns, str(landed.raw), landed.path


def _time_of(event: FileWrite | NetworkConnection) -> int:
    return event.time_ns


def files_between(state: HostState, start_ns: int, end_ns: int) -> list[FileWrite]:
    """Landed files with ``start_ns <= time <= end_ns`` (from the time-sorted view assembly builds)."""
    files = state.files_view
    low = bisect_left(files, start_ns, key=_time_of)
    high = bisect_right(files, end_ns, key=_time_of)
    return files[low:high]


def connections_between(state: HostState, start_ns: int, end_ns: int) -> list[NetworkConnection]:
    network = state.network
    low = bisect_left(network, start_ns, key=_time_of)
    high = bisect_right(network, end_ns, key=_time_of)
    return network[low:high]


# -- who wrote what ------------------------------------------------------------------------------------------


def writer_app(landed: FileWrite, policy: Policy) -> AppSpec | None:
    """The policy app (directly or through one of its helpers) that wrote ``landed``."""
    writer = landed.process
    if writer is None:
        return None
    classification = policy.classify(writer.executable, writer.signature)
    if classification is None or classification.role not in APP_ROLES:
        return None
    return policy.app_by_name(classification.name)


def role_of(node: ProcNode, policy: Policy) -> Role | None:
    role = node.role if not node.synthetic else policy.classify(node.executable, node.signature)
    return role.role if role is not None else None
