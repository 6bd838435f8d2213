"""Disk images, volume mounts and copies off them, in every source that carries them.

- eslogger ``mount`` / ``unmount`` / ``remount`` with the ``statfs`` keys eslogger writes (Mac Monitor's
  ``MountDispositionTests`` record: ``apfs``, ``/Volumes/Example``, ``/dev/disk5s1``), with and without
  ``disposition`` (message version 8+ / before), and App Translocation's nullfs mount by ``lsd``;
- eslogger ``clone`` / ``copyfile`` / ``link`` (``ESMessage.h`` field names) copying an app off a volume;
- Elastic Defend ``event.action: mount`` / ``unmount`` file events (fields of ``macos_file_mount.md``);
- unified-log disk-image lines (diskimagesiod format strings, the permissive DiskImages / DiskArbitration
  patterns) and Security's translocation-point removal.

Every base record is a real one (the mullvad eslogger exit line, the mac-01 Elastic and unified-log records) with
only the event part replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from chainwatch.errors import PolicyError, RecordError
from chainwatch.events import (
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    MountAction,
    MountKind,
    RawRef,
    VolumeMount,
)
from chainwatch.sources import Normalizer, ecs, eslogger, unifiedlog
from chainwatch.sources.reader import read_bytes

HERE = Path(__file__).parent
REPO = Path(__file__).parents[3]
REF = RawRef("test", 1)
TRANSLOCATION = "/private/var/folders/x4/abcd1234/T/AppTranslocation/6A1F3C2E-0D4B-4F1A-9C3E-2B7D8E9F0A11"

#: A mounted disk image's file system as eslogger writes it (Mac Monitor MountDispositionTests.swift).
STATFS: dict[str, Any] = {
    "f_bsize": 4096, "f_iosize": 1048576, "f_blocks": 2048, "f_bfree": 1024, "f_bavail": 1024, "f_files": 4096,
    "f_ffree": 4000, "f_fsid": [16777240, 26], "f_owner": 501, "f_type": 26, "f_flags": 276828185,
    "f_fssubtype": 0, "f_flags_ext": 0, "f_fstypename": "apfs", "f_mntonname": "/Volumes/Example",
    "f_mntfromname": "/dev/disk5s1",
}


def _stat() -> dict[str, Any]:
    return {"st_dev": 16777234, "st_ino": 31442918, "st_mode": 16877, "st_nlink": 3, "st_uid": 501, "st_gid": 20,
            "st_rdev": 0, "st_size": 96, "st_blocks": 0, "st_blksize": 4096, "st_flags": 0, "st_gen": 0,
            "st_atimespec": "2026-03-02T09:16:10.118702330Z", "st_mtimespec": "2026-03-02T09:16:10.118702330Z",
            "st_ctimespec": "2026-03-02T09:16:10.118702330Z",
            "st_birthtimespec": "2026-03-02T09:16:10.118702330Z"}


def _file(path: str) -> dict[str, Any]:
    return {"path": path, "path_truncated": False, "stat": _stat()}


def _es(name: str, payload: dict[str, Any], number: int, *, version: int = 9) -> dict[str, Any]:
    """The real mullvad exit line (macOS 15, object audit tokens) carrying another event."""
    line = (HERE / "data" / "eslogger_mullvad.jsonl").read_bytes().splitlines()[0]
    doc = orjson.loads(line)
    doc["event"] = {name: payload}
    doc["event_type"] = number
    doc["version"] = version
    return doc


def _es_one(doc: dict[str, Any]) -> Any:
    result = eslogger.map_record(doc, REF, "mac-01")
    assert isinstance(result, list) and len(result) == 1, result
    return result[0]


# ---- eslogger: mount, unmount, remount -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disposition", "kind"),
    [(0, MountKind.EXTERNAL), (1, MountKind.INTERNAL), (2, MountKind.NETWORK), (3, MountKind.DISK_IMAGE),
     (4, MountKind.NULLFS), (5, MountKind.UNKNOWN), (77, MountKind.UNKNOWN)],
)
def test_eslogger_mount_disposition_from_version_8_is_the_mount_kind(disposition: int, kind: MountKind) -> None:
    doc = _es("mount", {"statfs": copy.deepcopy(STATFS), "disposition": disposition}, 22, version=8)
    event = _es_one(doc)
    assert isinstance(event, VolumeMount)
    assert (event.action, event.mount_kind) == (MountAction.MOUNT, kind)
    assert (event.mount_point, event.mounted_from, event.fs_type) == ("/Volumes/Example", "/dev/disk5s1", "apfs")
    assert event.image_path is None
    # The mounting process is the record's process.
    assert event.process is not None and event.process.pid == doc["process"]["audit_token"]["pid"]


def test_eslogger_mount_before_version_8_infers_disk_image_for_apfs_under_volumes() -> None:
    event = _es_one(_es("mount", {"statfs": copy.deepcopy(STATFS)}, 22, version=7))
    assert event.mount_kind is MountKind.DISK_IMAGE


def test_eslogger_mount_before_version_8_ignores_a_reserved_zero_disposition() -> None:
    statfs = dict(STATFS, f_fstypename="msdos")
    event = _es_one(_es("mount", {"statfs": statfs, "disposition": 0}, 22, version=7))
    # 0 would read as EXTERNAL, but before version 8 the field is reserved; msdos is not guessed at.
    assert event.mount_kind is MountKind.UNKNOWN


@pytest.mark.parametrize(
    ("changes", "kind"),
    [({"f_mntonname": "/System/Volumes/Data", "f_mntfromname": "/dev/disk3s5"}, MountKind.UNKNOWN),
     ({"f_fstypename": "smbfs", "f_mntfromname": "//alice@nas/share"}, MountKind.UNKNOWN),
     ({"f_fstypename": "hfs"}, MountKind.DISK_IMAGE),
     ({"f_fstypename": "nullfs", "f_mntonname": TRANSLOCATION, "f_mntfromname": "/Users/alice/Downloads"},
      MountKind.NULLFS)],
    ids=["data-volume", "network-share", "hfs-image", "translocation"],
)
def test_eslogger_mount_without_disposition_inference(changes: dict[str, str], kind: MountKind) -> None:
    event = _es_one(_es("mount", {"statfs": dict(STATFS, **changes)}, 22, version=7))
    assert event.mount_kind is kind


def test_eslogger_translocation_nullfs_mount_names_the_original_folder() -> None:
    statfs = dict(STATFS, f_fstypename="nullfs", f_mntonname=TRANSLOCATION, f_mntfromname="/Users/alice/Downloads")
    event = _es_one(_es("mount", {"statfs": statfs, "disposition": 4}, 22, version=9))
    assert (event.mount_kind, event.mount_point, event.mounted_from) == (
        MountKind.NULLFS, TRANSLOCATION, "/Users/alice/Downloads")


def test_eslogger_unmount_maps_and_infers_kind_even_with_a_disposition_key() -> None:
    event = _es_one(_es("unmount", {"statfs": copy.deepcopy(STATFS), "disposition": 0}, 23))
    assert (event.action, event.mount_point, event.mount_kind) == (
        MountAction.UNMOUNT, "/Volumes/Example", MountKind.DISK_IMAGE)


def test_eslogger_remount_is_a_mount_with_its_disposition() -> None:
    payload = {"statfs": copy.deepcopy(STATFS), "remount_flags": 1, "disposition": 3}
    event = _es_one(_es("remount", payload, 99))
    assert (event.action, event.mount_kind) == (MountAction.MOUNT, MountKind.DISK_IMAGE)


@pytest.mark.parametrize(
    "payload",
    [{}, {"statfs": None}, {"statfs": dict(STATFS, f_mntonname="")}, {"statfs": dict(STATFS, f_mntonname=5)}],
    ids=["no-statfs", "null-statfs", "empty-mount-point", "mount-point-not-string"],
)
def test_eslogger_mount_without_mount_point_raises_record_error(payload: dict[str, Any]) -> None:
    with pytest.raises(RecordError, match="statfs"):
        eslogger.map_record(_es("mount", payload, 22), REF, "mac-01")


def test_eslogger_mount_event_numbers_are_cross_checked() -> None:
    assert {eslogger.EVENT_NUMBERS[n] for n in ("mount", "unmount", "remount")} == {22, 23, 99}
    assert {eslogger.EVENT_NUMBERS[n] for n in ("link", "clone", "copyfile")} == {19, 61, 110}
    assert set(eslogger.EVENT_NUMBERS) == eslogger.MAPPED


# ---- eslogger: clone, copyfile, link ---------------------------------------------------------------------------


def test_eslogger_clone_of_an_app_off_a_volume_is_a_create_with_its_source() -> None:
    payload = {"source": _file("/Volumes/Example/Example.app"), "target_dir": _file("/Applications"),
               "target_name": "Example.app"}
    event = _es_one(_es("clone", payload, 61))
    assert isinstance(event, FileWrite)
    assert (event.action, event.path, event.source_path) == (
        FileAction.CREATE, "/Applications/Example.app", "/Volumes/Example/Example.app")


def test_eslogger_copyfile_new_file_creates_and_over_existing_modifies() -> None:
    payload = {"source": _file("/Volumes/Example/Example.app/Contents/MacOS/Example"), "target_file": None,
               "target_dir": _file("/Applications/Example.app/Contents/MacOS/"), "target_name": "Example",
               "mode": 33261, "flags": 0}
    event = _es_one(_es("copyfile", payload, 110))
    assert (event.action, event.path) == (FileAction.CREATE, "/Applications/Example.app/Contents/MacOS/Example")
    assert event.source_path == "/Volumes/Example/Example.app/Contents/MacOS/Example"
    payload["target_file"] = _file("/Applications/Example.app/Contents/MacOS/Example")
    assert _es_one(_es("copyfile", payload, 110)).action is FileAction.CLOSE_MODIFIED
    # Without target_dir/target_name, the overwritten file still names the path.
    del payload["target_dir"]
    assert _es_one(_es("copyfile", payload, 110)).path == "/Applications/Example.app/Contents/MacOS/Example"


def test_eslogger_link_is_a_create_at_target_filename() -> None:
    payload = {"source": _file("/private/tmp/.p"), "target_dir": _file("/"), "target_filename": "Users/x"}
    event = _es_one(_es("link", payload, 19))
    assert (event.action, event.path, event.source_path) == (FileAction.CREATE, "/Users/x", "/private/tmp/.p")


@pytest.mark.parametrize(("name", "number"), [("clone", 61), ("copyfile", 110), ("link", 19)])
def test_eslogger_copy_without_target_raises_record_error(name: str, number: int) -> None:
    with pytest.raises(RecordError, match="target_dir"):
        eslogger.map_record(_es(name, {"source": _file("/Volumes/X/a")}, number), REF, "mac-01")


def test_eslogger_copy_name_is_kept_verbatim_whatever_it_holds() -> None:
    name = 'Up"d[a]te"}]\n\u202eppa.exe.app'
    payload = {"source": _file(f"/Volumes/X/{name}"), "target_dir": _file("/Applications"), "target_name": name}
    data = orjson.dumps(_es("clone", payload, 61)) + b"\n"
    events = list(Normalizer().run(read_bytes(data, "mem"), "h"))
    assert [(e.path, e.source_path) for e in events] == [(f"/Applications/{name}", f"/Volumes/X/{name}")]


# ---- Elastic Defend: mount / unmount file events ---------------------------------------------------------------


def _ecs_mount(action: str, path: str, original: str | None = None) -> dict[str, Any]:
    """The mac-01 Elastic network document turned into a file mount event (fields of macos_file_mount.md)."""
    line = (REPO / "events" / "mac-01" / "elastic-network.ndjson").read_bytes().splitlines()[0]
    doc = orjson.loads(line)
    for key in ("destination", "source", "network"):
        doc.pop(key)
    doc["event"].update(action=action, category=["file"], type=["change"], dataset="endpoint.events.file")
    doc["data_stream"]["dataset"] = "endpoint.events.file"
    doc["message"] = "Endpoint file event"
    doc["file"] = {"path": path, "inode": 2}
    if original is not None:
        doc["file"]["Ext"] = {"original": {"path": original}}
    doc["process"] = {"pid": 612, "name": "diskimagesiod", "executable": "/usr/libexec/diskimagesiod",
                      "entity_id": doc["process"]["entity_id"], "parent": {"pid": 1}}
    return doc


@pytest.mark.parametrize(
    ("path", "original", "kind", "image", "source"),
    [("/Volumes/Example", None, MountKind.DISK_IMAGE, None, None),
     ("/Volumes/Example", "/Users/alice/Downloads/Example.dmg", MountKind.DISK_IMAGE,
      "/Users/alice/Downloads/Example.dmg", None),
     ("/Volumes/Example", "/dev/disk5s1", MountKind.DISK_IMAGE, None, "/dev/disk5s1"),
     (TRANSLOCATION, "/Users/alice/Downloads", MountKind.NULLFS, None, "/Users/alice/Downloads"),
     ("/System/Volumes/Data/home", None, MountKind.UNKNOWN, None, None),
     ("/Volumes/", None, MountKind.UNKNOWN, None, None)],
    ids=["volume", "volume-with-image", "volume-with-device", "translocation", "other", "volumes-root"],
)
def test_ecs_mount_maps_file_path_to_mount_point(
    path: str, original: str | None, kind: MountKind, image: str | None, source: str | None
) -> None:
    result = ecs.map_record(_ecs_mount("mount", path, original), REF, "fallback")
    assert isinstance(result, list) and len(result) == 1
    event = result[0]
    assert isinstance(event, VolumeMount)
    assert (event.action, event.mount_point, event.mount_kind, event.image_path, event.mounted_from) == (
        MountAction.MOUNT, path, kind, image, source)
    assert event.host == "mac-01" and event.process is not None and event.process.name == "diskimagesiod"


def test_ecs_unmount_maps_to_unmount() -> None:
    result = ecs.map_record(_ecs_mount("unmount", "/Volumes/Example"), REF, "fallback")
    assert isinstance(result, list)
    assert (result[0].action, result[0].mount_kind) == (MountAction.UNMOUNT, MountKind.DISK_IMAGE)


def test_ecs_mount_without_file_path_raises_record_error() -> None:
    doc = _ecs_mount("mount", "/Volumes/Example")
    del doc["file"]["path"]
    with pytest.raises(RecordError, match=r"file\.path"):
        ecs.map_record(doc, REF, "fallback")


def test_ecs_other_file_actions_still_skipped() -> None:
    assert ecs.map_record(_ecs_mount("launch_daemon", "/Library/LaunchDaemons/x.plist"), REF, "h") == \
        "ecs:file/launch_daemon"


# ---- unified log -------------------------------------------------------------------------------------------


def _log(process_path: str, message: str, subsystem: str = "com.apple.DiskImages2") -> dict[str, Any]:
    """The mac-01 translocation record (real ndjson shape) carrying another process and message."""
    line = (REPO / "events" / "mac-01" / "unifiedlog.ndjson").read_bytes().splitlines()[7]
    doc = orjson.loads(line)
    doc.update(processImagePath=process_path, eventMessage=message, subsystem=subsystem, processID=612,
               category="default", formatString="%.*s: %{private}@ unmounted successfully")
    return doc


DIIOD = "/usr/libexec/diskimagesiod"

UNIFIED = [
    pytest.param(DIIOD, "-[DIDiskArb unmountWithMountPoint:error:]: /Volumes/Example unmounted successfully",
                 "com.apple.DiskImages2",
                 {"action": MountAction.UNMOUNT, "mount_point": "/Volumes/Example",
                  "mount_kind": MountKind.DISK_IMAGE}, id="di-unmounted"),
    pytest.param(DIIOD, "[DIDiskArb unmountWithMountPoint:error:]: /Volumes/Up \"d\" (x), y unmounted successfully",
                 "", {"action": MountAction.UNMOUNT, "mount_point": '/Volumes/Up "d" (x), y',
                      "mount_kind": MountKind.DISK_IMAGE}, id="di-unmounted-no-dash-hostile-name"),
    pytest.param(DIIOD, "-[DIDiskArb onDiskDisappearedWithDisk:]: Mount point /Volumes/Example disappeared",
                 "com.apple.DiskImages2", {"action": MountAction.UNMOUNT, "mount_point": "/Volumes/Example"},
                 id="di-disappeared"),
    pytest.param("/usr/bin/hdiutil",
                 "-[DIAPFSPartition newMountVolumeWithDiskArb:error:]: Mounting disk6s1 on /Volumes/Installer",
                 "com.apple.DiskImages2",
                 {"action": MountAction.MOUNT, "mount_point": "/Volumes/Installer",
                  "mounted_from": "/dev/disk6s1", "mount_kind": MountKind.DISK_IMAGE}, id="di-mounting-on"),
    pytest.param(DIIOD, "-[DIUserFS mountWithError:]: disk5s1: mounted on /Volumes/A, 4096 bytes block size, "
                        "apfs, 4096 bytes block size, barriers supported", "com.apple.DiskImages2",
                 {"action": MountAction.MOUNT, "mount_point": "/Volumes/A, 4096 bytes block size, apfs",
                  "mounted_from": "/dev/disk5s1"}, id="di-mounted-on-hostile-tail"),
    pytest.param("/System/Library/CoreServices/DiskImageMounter.app/Contents/MacOS/DiskImageMounter",
                 "Attaching /Users/alice/Downloads/Example Setup.dmg", "com.apple.DiskImages2",
                 {"action": MountAction.MOUNT, "mount_point": "", "image_path":
                  "/Users/alice/Downloads/Example Setup.dmg", "mount_kind": MountKind.DISK_IMAGE},
                 id="generic-attach-image-only"),
    pytest.param("/usr/libexec/diskarbitrationd", "mounted /Volumes/Example Setup from /Users/a/x.dmg",
                 "com.apple.DiskArbitration.diskarbitrationd",
                 {"action": MountAction.MOUNT, "mount_point": "/Volumes/Example Setup",
                  "image_path": "/Users/a/x.dmg"}, id="generic-mount-volume-and-image"),
    pytest.param("/usr/libexec/diskarbitrationd", "ejecting /Volumes/Example", "com.apple.DiskArbitration",
                 {"action": MountAction.UNMOUNT, "mount_point": "/Volumes/Example",
                  "mount_kind": MountKind.UNKNOWN}, id="generic-eject"),
    pytest.param("/usr/libexec/lsd", f"SecTranslocate: removed mountpoint: {TRANSLOCATION}", "com.apple.securityd",
                 {"action": MountAction.UNMOUNT, "mount_point": TRANSLOCATION, "mount_kind": MountKind.NULLFS},
                 id="translocation-removed"),
]


@pytest.mark.parametrize(("image", "message", "subsystem", "expected"), UNIFIED)
def test_unifiedlog_mount_line_maps_to_volume_mount(
    image: str, message: str, subsystem: str, expected: dict[str, Any]
) -> None:
    result = unifiedlog.map_record(_log(image, message, subsystem), REF, "mac-01")
    assert isinstance(result, list) and len(result) == 1, result
    event = result[0]
    assert isinstance(event, VolumeMount)
    for name, value in expected.items():
        assert getattr(event, name) == value, name
    assert event.process is not None and (event.process.pid, event.process.executable) == (612, image)


UNIFIED_MISSES = [
    pytest.param(DIIOD, "-[DIDiskArb unmountWithMountPoint:error:]: <private> unmounted successfully",
                 "com.apple.DiskImages2", id="private-mount-point"),
    pytest.param(DIIOD, "-[DIDiskArb mountWithDeviceName:args:filesystem:mountURL:error:]: disk5s1 mounted "
                        "successfully", "com.apple.DiskImages2", id="device-only"),
    pytest.param("/usr/libexec/diskarbitrationd", "mounted disk, id = /dev/disk4s1, success.",
                 "com.apple.DiskArbitration.diskarbitrationd", id="diskarbitration-device-only"),
    pytest.param("/usr/libexec/diskarbitrationd", "unable to mount /Volumes/Example (status code 0x00000010).",
                 "com.apple.DiskArbitration.diskarbitrationd", id="failure"),
    pytest.param(DIIOD, "-[DIDiskArb mountWithDeviceName:args:filesystem:mountURL:error:]: Mount error: "
                        "/Volumes/Example", "com.apple.DiskImages2", id="mount-error"),
    pytest.param("/usr/sbin/bluetoothd", "attaching /Users/alice/Downloads/Example.dmg", "com.apple.bluetooth",
                 id="other-subsystem"),
    pytest.param("/usr/libexec/diskarbitrationd", "verifying /Users/alice/Downloads/Example.dmg",
                 "com.apple.DiskArbitration", id="no-mount-word"),
    pytest.param("/usr/bin/hdiutil", "[DIAPFSPartition newMountVolumeWithDiskArb:error:]: Mounting disk6s1 on "
                                     "<private>", "", id="mounting-private"),
]


@pytest.mark.parametrize(("image", "message", "subsystem"), UNIFIED_MISSES)
def test_unifiedlog_mount_near_miss_is_not_an_event(image: str, message: str, subsystem: str) -> None:
    assert unifiedlog.map_record(_log(image, message, subsystem), REF, "mac-01") == "unifiedlog:unclassified"


def test_unifiedlog_mount_pattern_without_path_is_skipped_with_its_own_label() -> None:
    patterns = unifiedlog.parse_patterns(
        "patterns:\n  - {id: m, event: mount, action: mount, process: '*', subsystem: [a, b],\n"
        "     regex: '^m (?P<mount_point>\\S+)$'}\n", "inline.yaml")
    assert unifiedlog.map_record(_log(DIIOD, "m <private>", "b"), REF, "h", patterns=patterns) == \
        unifiedlog.SKIP_MOUNT_NO_PATH
    assert unifiedlog.map_record(_log(DIIOD, "m /Volumes/X", "c"), REF, "h", patterns=patterns) == \
        "unifiedlog:unclassified"
    event = unifiedlog.map_record(_log(DIIOD, "m /Volumes/X/", "a"), REF, "h", patterns=patterns)
    assert isinstance(event, list) and event[0].mount_point == "/Volumes/X"


MOUNT_ENTRY = "patterns:\n  - id: m\n    event: mount\n    action: mount\n    process: '*'\n    prefix: 'x'\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [(MOUNT_ENTRY + "    regex: '(?P<path>.+)'\n", "not a mount field"),
     (MOUNT_ENTRY + "    subsystem: []\n", "'subsystem'"),
     (MOUNT_ENTRY + "    subsystem: [a, '']\n", "'subsystem'"),
     (MOUNT_ENTRY.replace("action: mount", "action: launch"), "unknown mount action")],
    ids=["gatekeeper-group", "empty-subsystem-list", "empty-subsystem-in-list", "app-action"],
)
def test_unifiedlog_mount_pattern_validation(text: str, reason: str) -> None:
    with pytest.raises(PolicyError, match=reason):
        unifiedlog.parse_patterns(text, "inline.yaml")


def test_unifiedlog_translocation_created_is_still_a_gatekeeper_translocation() -> None:
    message = f"SecTranslocateCreateSecureDirectoryForURL: created {TRANSLOCATION}/d/Up\"d[a]te\"}}]\n\u202eX.app"
    result = unifiedlog.map_record(_log("/usr/libexec/lsd", message, "com.apple.securityd"), REF, "h")
    assert isinstance(result, list) and isinstance(result[0], Gatekeeper)
    assert result[0].action is GatekeeperAction.TRANSLOCATION
    assert result[0].path == f"{TRANSLOCATION}/d/Up\"d[a]te\"}}]\n\u202eX.app"
