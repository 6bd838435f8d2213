"""Builders of canonical events for engine tests, shaped like the sources produce them.

Process images follow Endpoint Security: an image is named ``es:<pid>:<pidversion>``; a fork copies the parent's
image into a new pid, and an exec replaces the image of the same pid (a new pidversion) whose pre-exec image is
the fork. Unified-log records name processes by pid only. Times are nanoseconds since the epoch.

:class:`Scenario` records events in the order a test writes them and gives each one its own raw reference, so the
same scenario built twice yields equal events (the engine deduplicates by raw reference and time).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from chainwatch.engine import Engine
from chainwatch.events import (
    AnyEvent,
    AppAction,
    AppActivity,
    CodeSignature,
    Direction,
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    NetworkConnection,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    ProcessRef,
    RawRef,
    SourceFormat,
    XattrAction,
    XattrChange,
    parse_quarantine,
)
from chainwatch.findings.model import Finding, Link, StageEvidence
from chainwatch.policy import Policy, load_policy
from chainwatch.state.memory import InMemoryStore

HOST = "mac-01"
#: 2025-08-07T13:20:00Z
T0 = 1_754_572_800_000_000_000
NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 60 * MINUTE
USER = "/Users/alice"


def at(seconds: float) -> int:
    """``T0`` plus ``seconds``, in nanoseconds."""
    return T0 + int(seconds * NS)


# -- code signatures ---------------------------------------------------------------------------------------------


def apple(signing_id: str) -> CodeSignature:
    """An Apple platform binary (``cs_validation_category`` 1: platform)."""
    return CodeSignature(signing_id=signing_id, platform_binary=True, validation_category=1, signed=True)


def developer(signing_id: str, team_id: str) -> CodeSignature:
    """A Developer ID signed binary (category 6)."""
    return CodeSignature(signing_id=signing_id, team_id=team_id, platform_binary=False, validation_category=6,
                         signed=True)


def adhoc(signing_id: str) -> CodeSignature:
    """An ad-hoc signed binary (category 10): no team, not a platform binary (typical of stealer payloads)."""
    return CodeSignature(signing_id=signing_id, platform_binary=False, validation_category=10, signed=False)


@dataclass(frozen=True)
class Binary:
    """An executable on disk with its signature."""

    path: str
    signature: CodeSignature | None

    def at_path(self, path: str) -> Binary:
        """The same signed file copied or renamed to ``path`` (the signature travels with it)."""
        return Binary(path, self.signature)


LAUNCHD = Binary("/sbin/launchd", apple("com.apple.xpc.launchd"))
SAFARI = Binary("/Applications/Safari.app/Contents/MacOS/Safari", apple("com.apple.Safari"))
WEBKIT_NETWORKING = Binary(
    "/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices/com.apple.WebKit.Networking.xpc/Contents/"
    "MacOS/com.apple.WebKit.Networking", apple("com.apple.WebKit.Networking"))
WEBKIT_WEBCONTENT = Binary(
    "/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices/com.apple.WebKit.WebContent.xpc/Contents/"
    "MacOS/com.apple.WebKit.WebContent", apple("com.apple.WebKit.WebContent"))
CHROME = Binary("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
                developer("com.google.Chrome", "EQHXZ8M8AV"))
CHROME_HELPER = Binary(
    "/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Versions/139.0.7258.67/"
    "Helpers/Google Chrome Helper.app/Contents/MacOS/Google Chrome Helper",
    developer("com.google.Chrome.helper", "EQHXZ8M8AV"))
WORD = Binary("/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word",
              developer("com.microsoft.Word", "UBF8T346G9"))
PREVIEW = Binary("/System/Applications/Preview.app/Contents/MacOS/Preview", apple("com.apple.Preview"))
ARCHIVE_UTILITY = Binary(
    "/System/Library/CoreServices/Applications/Archive Utility.app/Contents/MacOS/Archive Utility",
    apple("com.apple.archiveutility"))
THE_UNARCHIVER = Binary("/Applications/The Unarchiver.app/Contents/MacOS/The Unarchiver",
                        developer("cx.c3.theunarchiver", "S8JLSG5ES7"))
KEKA = Binary("/Applications/Keka.app/Contents/MacOS/Keka", developer("com.aone.keka", "4X2TZL3YMZ"))
TERMINAL = Binary("/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal", apple("com.apple.Terminal"))
FINDER = Binary("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", apple("com.apple.finder"))
SHARINGD = Binary("/usr/libexec/sharingd", apple("com.apple.sharingd"))
SH = Binary("/bin/sh", apple("com.apple.sh"))
BASH = Binary("/bin/bash", apple("com.apple.bash"))
ZSH = Binary("/bin/zsh", apple("com.apple.zsh"))
ENV = Binary("/usr/bin/env", apple("com.apple.env"))
CURL = Binary("/usr/bin/curl", apple("com.apple.curl"))
OSASCRIPT = Binary("/usr/bin/osascript", apple("com.apple.osascript"))
PYTHON3 = Binary("/usr/bin/python3", apple("com.apple.python3"))
KEYSTONE_AGENT = Binary(
    f"{USER}/Library/Google/GoogleSoftwareUpdate/GoogleSoftwareUpdate.bundle/Contents/Helpers/"
    "GoogleSoftwareUpdateAgent.app/Contents/MacOS/GoogleSoftwareUpdateAgent",
    developer("com.google.Keystone.Agent", "EQHXZ8M8AV"))
MS_AUTOUPDATE = Binary(
    "/Library/Application Support/Microsoft/MAU2.0/Microsoft AutoUpdate.app/Contents/MacOS/Microsoft AutoUpdate",
    developer("com.microsoft.autoupdate2", "UBF8T346G9"))

#: Unified-log processes (known by pid and path only).
RUNNINGBOARDD = ProcessRef(pid=163, executable="/usr/libexec/runningboardd")
REPORTCRASH = ProcessRef(pid=1821, executable="/System/Library/CoreServices/ReportCrash")
SYSPOLICYD = ProcessRef(pid=412, executable="/usr/libexec/syspolicyd")
UIAGENT = ProcessRef(pid=655, executable="/System/Library/CoreServices/CoreServicesUIAgent.app/Contents/MacOS/"
                                        "CoreServicesUIAgent")


# -- process images ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One process image (ES: one ``(pid, pidversion)``)."""

    pid: int
    pidversion: int
    binary: Binary
    start_ns: int
    args: tuple[str, ...] = ()
    ppid: int | None = None
    parent_entity_id: str | None = None
    parent_executable: str | None = None
    responsible_pid: int | None = None
    cwd: str | None = None

    @property
    def entity_id(self) -> str:
        return f"es:{self.pid}:{self.pidversion}"

    @property
    def executable(self) -> str:
        return self.binary.path

    def ref(self) -> ProcessRef:
        """The ES-style reference: entity id, parent token, signature, start time."""
        return ProcessRef(
            pid=self.pid, entity_id=self.entity_id, ppid=self.ppid, parent_entity_id=self.parent_entity_id,
            parent_executable=self.parent_executable, responsible_pid=self.responsible_pid,
            executable=self.binary.path, args=self.args, cwd=self.cwd, uid=501, signature=self.binary.signature,
            start_time_ns=self.start_ns,
        )

    def pid_only(self) -> ProcessRef:
        """How a pid-only source (unified log, some network telemetry) names this process."""
        return ProcessRef(pid=self.pid)


def long_running(binary: Binary, pid: int, start_ns: int, *, pidversion: int | None = None, ppid: int = 1,
                 responsible_pid: int | None = None) -> Image:
    """An image started before the scenario (no exec record), e.g. an app the user opened in the morning."""
    return Image(pid, pidversion if pidversion is not None else pid * 10, binary, start_ns, (binary.path,), ppid,
                 "es:1:1" if ppid == 1 else None, LAUNCHD.path if ppid == 1 else None, responsible_pid or pid)


# -- the recorder ------------------------------------------------------------------------------------------------


class Scenario:
    """Builds a scenario's events, in writing order, each with its own raw reference."""

    def __init__(self, host: str = HOST, *, origin: str = "scenario") -> None:
        self.host = host
        self.origin = origin
        self.events: list[AnyEvent] = []
        self._line = itertools.count(1)
        # pidversions are unique per boot in ES; scenarios combined into one stream must not share any, so each
        # origin gets its own deterministic block.
        self._pidversion = itertools.count(1_000_000 + (zlib.crc32(origin.encode()) % 100_000) * 10_000)

    def _raw(self, source: SourceFormat) -> RawRef:
        return RawRef(f"{self.origin}.{source.value}.jsonl", next(self._line))

    def add(self, event: AnyEvent) -> AnyEvent:
        self.events.append(event)
        return event

    # -- processes ---------------------------------------------------------------------------------------------
    def fork(self, time_ns: int, parent: Image, pid: int) -> Image:
        """``parent`` forks: the child is a copy of the parent's image under a new pid."""
        child = Image(pid, next(self._pidversion), parent.binary, time_ns, parent.args, parent.pid,
                      parent.entity_id, parent.executable, parent.responsible_pid or parent.pid, parent.cwd)
        self.add(ProcessFork(time_ns=time_ns, host=self.host, source=SourceFormat.ESLOGGER,
                             raw=self._raw(SourceFormat.ESLOGGER), process=parent.ref(), child=child.ref()))
        return child

    def exec(self, time_ns: int, pre: Image, binary: Binary, args: Iterable[str] = (), *,
             script_path: str | None = None, cwd: str | None = None) -> Image:
        """``pre`` (a pid's current image) execs ``binary``: a new image of the same pid."""
        target = Image(pre.pid, next(self._pidversion), binary, time_ns, tuple(args) or (binary.path,), pre.ppid,
                       # eslogger states the pre-exec image's executable as the parent's (a fork copies it).
                       pre.parent_entity_id, pre.executable, pre.responsible_pid, cwd or pre.cwd)
        self.add(ProcessExec(time_ns=time_ns, host=self.host, source=SourceFormat.ESLOGGER,
                             raw=self._raw(SourceFormat.ESLOGGER), process=pre.ref(), target=target.ref(),
                             script_path=script_path))
        return target

    def spawn(self, time_ns: int, parent: Image, pid: int, binary: Binary, args: Iterable[str] = (), *,
              script_path: str | None = None, cwd: str | None = None) -> Image:
        """fork + exec (1 microsecond apart), as ``posix_spawn``/``popen`` look in ES."""
        child = self.fork(time_ns, parent, pid)
        return self.exec(time_ns + 1_000, child, binary, args, script_path=script_path, cwd=cwd)

    def launch(self, time_ns: int, pid: int, binary: Binary, args: Iterable[str] = (), *,
               responsible_pid: int | None = None, script_path: str | None = None) -> Image:
        """launchd starts an app (LaunchServices): parent pid 1, the pre-exec image is ``xpcproxy``.

        ``script_path`` is set when the bundle's main executable is a script (ES reports the interpreter as the
        executable and the script separately)."""
        xpcproxy = Image(pid, next(self._pidversion), Binary("/usr/libexec/xpcproxy", apple("com.apple.xpc.proxy")),
                         time_ns, ("xpcproxy",), 1, "es:1:1", LAUNCHD.path, responsible_pid or pid)
        return self.exec(time_ns, xpcproxy, binary, args, script_path=script_path)

    def exit(self, time_ns: int, image: Image, *, signal: int | None = None) -> ProcessExit:
        event = ProcessExit(time_ns=time_ns, host=self.host, source=SourceFormat.ESLOGGER,
                            raw=self._raw(SourceFormat.ESLOGGER), process=image.ref(),
                            exit_status=None if signal else 0, signal=signal)
        self.add(event)
        return event

    # -- files -------------------------------------------------------------------------------------------------
    def write(self, time_ns: int, writer: Image, path: str, action: FileAction = FileAction.CREATE, *,
              source_path: str | None = None) -> FileWrite:
        event = FileWrite(time_ns=time_ns, host=self.host, source=SourceFormat.ESLOGGER,
                          raw=self._raw(SourceFormat.ESLOGGER), process=writer.ref(), action=action, path=path,
                          source_path=source_path)
        self.add(event)
        return event

    def quarantine(self, time_ns: int, writer: Image, path: str, value: str,
                   action: XattrAction = XattrAction.SET) -> XattrChange:
        """``com.apple.quarantine`` set (or deleted) on ``path``; ``value`` is ``FLAGS;HEXTIME;AGENT;UUID``."""
        event = XattrChange(time_ns=time_ns, host=self.host, source=SourceFormat.ESLOGGER,
                            raw=self._raw(SourceFormat.ESLOGGER), process=writer.ref(), action=action, path=path,
                            name="com.apple.quarantine",
                            quarantine=parse_quarantine(value) if action is XattrAction.SET else None)
        self.add(event)
        return event

    # -- unified log -------------------------------------------------------------------------------------------
    def app(self, time_ns: int, action: AppAction, *, bundle_id: str | None = None, app_name: str | None = None,
            pid: int | None = None, app_path: str | None = None) -> AppActivity:
        """A unified-log app launch (runningboardd), click (Finder) or crash (ReportCrash)."""
        logger = {AppAction.LAUNCH: RUNNINGBOARDD, AppAction.CRASH: REPORTCRASH}.get(
            action, ProcessRef(pid=402, executable=FINDER.path))
        event = AppActivity(time_ns=time_ns, host=self.host, source=SourceFormat.UNIFIED_LOG,
                            raw=self._raw(SourceFormat.UNIFIED_LOG), process=logger, action=action,
                            bundle_id=bundle_id, app_name=app_name, pid=pid, app_path=app_path)
        self.add(event)
        return event

    def gatekeeper(self, time_ns: int, action: GatekeeperAction, *, path: str | None = None,
                   pid: int | None = None, result: str | None = None, signing_id: str | None = None,
                   team_id: str | None = None) -> Gatekeeper:
        logger = UIAGENT if action is GatekeeperAction.PROMPT and path is None else SYSPOLICYD
        event = Gatekeeper(time_ns=time_ns, host=self.host, source=SourceFormat.UNIFIED_LOG,
                           raw=self._raw(SourceFormat.UNIFIED_LOG), process=logger, action=action, path=path,
                           pid=pid, result=result, signing_id=signing_id, team_id=team_id)
        self.add(event)
        return event

    # -- network -----------------------------------------------------------------------------------------------
    def connect(self, time_ns: int, image: Image, dst_ip: str | None, dst_port: int = 443, *,
                hostname: str | None = None, by: str = "entity",
                direction: Direction = Direction.OUTBOUND) -> NetworkConnection:
        """An outbound connection named by entity id (``by="entity"``, ES-style) or by pid only (``"pid"``)."""
        process = image.ref() if by == "entity" else image.pid_only()
        event = NetworkConnection(time_ns=time_ns, host=self.host, source=SourceFormat.ESLOGGER,
                                  raw=self._raw(SourceFormat.ESLOGGER), process=process, dst_ip=dst_ip,
                                  dst_port=dst_port, hostname=hostname, protocol="tcp", direction=direction,
                                  src_ip="192.168.1.23", src_port=52114)
        self.add(event)
        return event


# -- running the engine ------------------------------------------------------------------------------------------


def run(events: Iterable[AnyEvent], policy: Policy | None = None, *, engine: Engine | None = None) -> list[Finding]:
    """Every finding the engine makes from ``events`` (ingest all, flush)."""
    engine = engine or Engine(policy or load_policy(), InMemoryStore(), clock=lambda: T0)
    engine.ingest_all(events)
    engine.flush()
    return engine.all_findings()


def only(findings: list[Finding]) -> Finding:
    """The single finding of a scenario (fails the test when there are none or several)."""
    assert len(findings) == 1, [f.title for f in findings]
    return findings[0]


def stage(finding: Finding, number: int) -> StageEvidence:
    """The evidence of stage ``number`` (fails the test when the stage is missing)."""
    found = [s for s in finding.stages if int(s.stage) == number]
    assert found, f"stage {number} missing from {finding.stage_numbers}"
    return found[0]


def link(finding: Finding, from_stage: int, to_stage: int) -> Link:
    """The link between two stages (fails the test when there is none)."""
    found = [lk for lk in finding.links if (int(lk.from_stage), int(lk.to_stage)) == (from_stage, to_stage)]
    assert found, f"no link {from_stage}->{to_stage} in {[(lk.from_stage, lk.to_stage) for lk in finding.links]}"
    return found[0]


def shifted(event: AnyEvent, delta_ns: int) -> AnyEvent:
    """``event`` moved in time by ``delta_ns`` (same raw reference)."""
    return replace(event, time_ns=event.time_ns + delta_ns)
