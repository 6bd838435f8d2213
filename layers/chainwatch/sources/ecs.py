"""Elastic Defend / Elastic Endpoint documents in ECS, as stored in ``logs-endpoint.events.*``.

Facts this module relies on (``shared/reference/macos-telemetry.md`` sections 5 and 7, and the
``elastic_macos_attack_dataset`` fixtures):

- the kind of record is ``event.category`` (a keyword or a list of them) plus ``event.action``: process
  ``fork``/``exec``/``end`` (``already_running`` is an inventory snapshot), file ``creation``/``rename``/
  ``modification``/``overwrite``/``extended_attributes_delete``/..., network ``connection_attempted``/
  ``connection_accepted``/``disconnect_received``, configuration ``gatekeeper_override``;
- ``process.entity_id`` (and every ``process.Ext.ancestry`` entry) is base64 of
  ``<agent.id>-<pid>-<start>``, where ``<start>`` is ``<seconds since 1601-01-01>.<nanoseconds>`` with the
  nanoseconds printed as an unpadded integer (``…-1-11644478688.0``, ``…-1957-13254830598.19467000``);
  ``agent.id`` itself contains dashes, so the id splits from the right;
- on macOS every exec gets a new ``entity_id`` and ``process.parent.entity_id`` / ``Ext.ancestry[0]`` name the
  **pre-exec image of the same pid**, while ``process.parent.pid`` / ``.executable`` describe the real parent.
  The real parent's entity is the first ``Ext.ancestry`` entry of another pid (launchd-started apps carry two
  same-pid images, fork and ``xpcproxy``, before the parent);
- 7.10 documents have no ``process.code_signature``; later ones have ``{exists, signing_id, status,
  subject_name, team_id, trusted}``;
- file events carry no ``process.parent`` object beyond ``parent.pid``, only ``Ext.ancestry``;
- a mount is a file event: ``event.action`` ``mount`` / ``unmount`` with the mount point in ``file.path``
  (``custom_documentation/doc/endpoint/file/macos/macos_file_{mount,unmount}.md``; Elastic's own rules read it as
  ``file where event.action == "mount"``). Those documents also list ``file.Ext.original.path`` (and, for mount,
  ``.extension``) without saying what it holds; it is read as the image file when it ends in a disk-image suffix
  and as the mount source otherwise *(inference: verify against a capture)*.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from functools import lru_cache
from typing import Any, NamedTuple

from chainwatch.errors import RecordError
from chainwatch.events import (
    AnyEvent,
    CodeSignature,
    Direction,
    FileAction,
    FileWrite,
    Gatekeeper,
    GatekeeperAction,
    MountAction,
    MountKind,
    NetworkConnection,
    ProcessExec,
    ProcessExit,
    ProcessFork,
    ProcessRef,
    RawRef,
    SourceFormat,
    VolumeMount,
    XattrAction,
    XattrChange,
)
from chainwatch.policy import Policy, Role
from chainwatch.sources.common import as_dict, as_int, as_str, as_str_tuple, parse_time_ns

FORMAT = SourceFormat.ECS

QUARANTINE_XATTR = "com.apple.quarantine"
#: Seconds from 1601-01-01 (the entity-id start-time epoch) to 1970-01-01.
EPOCH_1601_OFFSET_S = 11_644_473_600
_NS = 1_000_000_000

#: File actions that put content at ``file.path``.
FILE_WRITES = {
    "creation": FileAction.CREATE,
    "rename": FileAction.RENAME,
    "modification": FileAction.CLOSE_MODIFIED,
    "overwrite": FileAction.CLOSE_MODIFIED,
}
#: File actions that are mounts.
MOUNT_ACTIONS = {"mount": MountAction.MOUNT, "unmount": MountAction.UNMOUNT}
#: Suffixes of disk-image files (``file.Ext.original.path`` of a mount that names one is the image).
DISK_IMAGE_SUFFIXES = (".dmg", ".sparseimage", ".sparsebundle", ".iso", ".cdr", ".img", ".udif", ".toast")
#: ``network.direction`` values (ECS allows both the ingress/egress and the inbound/outbound vocabularies).
DIRECTIONS = {
    "egress": Direction.OUTBOUND,
    "outbound": Direction.OUTBOUND,
    "ingress": Direction.INBOUND,
    "inbound": Direction.INBOUND,
}
#: Network actions mapped, with the direction assumed when ``network.direction`` says nothing usable.
#: ``disconnect_received`` is left out on purpose: it repeats a connection already counted.
NETWORK_ACTIONS = {
    "connection_attempted": Direction.OUTBOUND,
    "connection_accepted": Direction.INBOUND,
}


class EntityId(NamedTuple):
    """The parts of a decoded Elastic ``entity_id``."""

    agent_id: str
    pid: int
    start_time_ns: int | None


def detect(doc: dict[str, Any]) -> bool:
    """Whether a document is an Elastic Defend / ECS event document."""
    if "event_type" in doc or "class_uid" in doc:
        # eslogger and OCSF discriminators; ECS never uses these top-level keys.
        return False
    event = doc.get("event")
    if not isinstance(event, dict):
        return isinstance(doc.get("ecs"), dict) and "@timestamp" in doc
    if "ecs" in doc:
        return True
    if "@timestamp" in doc and ("category" in event or "action" in event):
        return True
    dataset = event.get("dataset")
    return isinstance(dataset, str) and dataset.startswith("endpoint.")


@lru_cache(maxsize=16384)
def decode_entity_id(entity_id: str) -> EntityId | None:
    """Decode an Elastic Endpoint ``entity_id``; ``None`` when it is not the ``agent-pid-start`` form.

    The start time is ``<seconds since 1601-01-01>.<nanoseconds>``; a start that does not parse (or lies
    before 1970) is ``None`` while the pid is still returned. Cached: the same ids recur in every event of a
    process and in the ancestry of its children.

    >>> raw = "c2d9ce9a-fdef-a405-125c-171a91d0e54a-10161-13254493149.638244000"
    >>> decode_entity_id(base64.b64encode(raw.encode()).decode())
    EntityId(agent_id='c2d9ce9a-fdef-a405-125c-171a91d0e54a', pid=10161, start_time_ns=1610019549638244000)
    """
    try:
        text = base64.b64decode(entity_id, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    parts = text.rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
        return None
    agent_id, pid_text, start_text = parts
    return EntityId(agent_id, int(pid_text), _start_ns(start_text))


def _start_ns(text: str) -> int | None:
    seconds, _, nanos = text.partition(".")
    if not seconds.isdigit() or (nanos and (not nanos.isdigit() or len(nanos) > 9)):
        return None
    # The fraction is an unpadded nanosecond count (".0", ".19467000"), not a decimal fraction.
    unix_s = int(seconds) - EPOCH_1601_OFFSET_S
    if unix_s < 0:
        return None
    return unix_s * _NS + (int(nanos) if nanos else 0)


def _decode(entity_id: str | None) -> EntityId | None:
    return decode_entity_id(entity_id) if entity_id else None


def _ecs_id(entity_id: str | None) -> str | None:
    return f"ecs:{entity_id}" if entity_id else None


def _lineage(pid: int, parent_entity: str | None, ancestry: Any) -> tuple[str | None, str | None]:
    """The (pre-exec image, real parent) raw entity ids of the image with ``pid``.

    ``process.parent.entity_id`` is the real parent when it decodes to another pid. When it decodes to
    ``pid`` (the macOS quirk) it is the pre-exec image, and the real parent is the first ancestry entry of
    another pid. An undecodable parent id is taken as the record states it (the ECS meaning of the field).
    Without a parent id, the ancestry alone is used (file events have no ``process.parent.entity_id``).
    """
    pre_image: str | None = None
    if parent_entity:
        decoded = decode_entity_id(parent_entity)
        if decoded is None or decoded.pid != pid:
            return None, parent_entity
        pre_image = parent_entity
    if not isinstance(ancestry, list):
        return pre_image, None
    for entry in ancestry:
        decoded = decode_entity_id(entry) if isinstance(entry, str) and entry else None
        if decoded is None:
            # An entry we cannot read breaks the chain: the next readable one may be any ancestor.
            return pre_image, None
        if decoded.pid == pid:
            if pre_image is None:
                pre_image = entry
            continue
        return pre_image, entry
    return pre_image, None


def _signature(value: Any) -> CodeSignature | None:
    """``process.code_signature`` (an object; a list of objects is read by its first entry)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, dict) or not value:
        return None
    exists = value.get("exists")
    trusted = value.get("trusted")
    if not isinstance(trusted, bool):
        # ``status`` is only a fallback; its vocabulary beyond "trusted" is not documented for macOS.
        status = value.get("status")
        trusted = True if isinstance(status, str) and status.lower() == "trusted" else None
    return CodeSignature(
        signing_id=as_str(value.get("signing_id")),
        team_id=as_str(value.get("team_id")),
        signed=exists if isinstance(exists, bool) else None,
        trusted=trusted,
    )


def _start_time(proc: dict[str, Any], decoded: EntityId | None) -> int | None:
    start = proc.get("start")
    if isinstance(start, str):
        try:
            return parse_time_ns(start)
        except RecordError:
            pass
    return decoded.start_time_ns if decoded else None


def process_ref(proc: dict[str, Any], user: dict[str, Any]) -> ProcessRef | None:
    """Map an ECS ``process`` object (with the record's ``user``) to a :class:`ProcessRef`.

    ``parent_entity_id``/``ppid`` name the real parent (see :func:`_lineage`); when ``process.parent.pid`` is
    absent, ``ppid`` is the pid decoded from that parent's entity id. ``None`` when the object names no pid.
    """
    image = _image(proc, user)
    return image[0] if image else None


def _image(proc: dict[str, Any], user: dict[str, Any]) -> tuple[ProcessRef, str | None, str | None] | None:
    """The :class:`ProcessRef` of ``proc`` with the raw (pre-exec image, real parent) entity ids."""
    entity = as_str(proc.get("entity_id"))
    decoded = _decode(entity)
    pid = as_int(proc.get("pid"))
    if pid is None:
        if decoded is None:
            return None
        pid = decoded.pid
    parent = as_dict(proc.get("parent"))
    pre_image, real_parent = _lineage(pid, as_str(parent.get("entity_id")),
                                      as_dict(proc.get("Ext")).get("ancestry"))
    ppid = as_int(parent.get("pid"))
    if ppid is None and real_parent is not None:
        parent_decoded = decode_entity_id(real_parent)
        ppid = parent_decoded.pid if parent_decoded else None
    ref = ProcessRef(
        pid=pid,
        entity_id=_ecs_id(entity),
        ppid=ppid,
        parent_entity_id=_ecs_id(real_parent),
        parent_executable=as_str(parent.get("executable")),
        executable=as_str(proc.get("executable")),
        name=as_str(proc.get("name")),
        args=as_str_tuple(proc.get("args")),
        cwd=as_str(proc.get("working_directory")),
        uid=as_int(user.get("id")),
        user=as_str(user.get("name")),
        signature=_signature(proc.get("code_signature")),
        start_time_ns=_start_time(proc, decoded),
    )
    return ref, pre_image, real_parent


def _categories(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _host(doc: dict[str, Any], fallback: str) -> str:
    host = as_dict(doc.get("host"))
    return as_str(host.get("name")) or as_str(host.get("hostname")) or as_str(host.get("id")) or fallback


def map_record(doc: dict[str, Any], ref: RawRef, host: str, *, policy: Policy | None = None) -> list[AnyEvent] | str:
    """Map one ECS document to canonical events, or return the label of an unused event.

    With ``policy`` (tracked-only mapping, what ``detect`` uses), a connection the engine would not keep (inbound,
    to a non-egress address, or by a process it does not track or by the app itself) is labelled
    :data:`UNTRACKED_NETWORK` instead of being mapped.

    Raises
    ------
    RecordError
        When a mapped event lacks what it needs (``@timestamp``, the process pid, ``file.path``, a
        destination).
    """
    event = as_dict(doc.get("event"))
    categories = _categories(event.get("category"))
    action = as_str(event.get("action")) or "none"
    if "process" in categories:
        if action not in ("exec", "fork", "end"):
            return f"ecs:process/{action}"
        return _map_process(doc, ref, host, action)
    if "file" in categories:
        return _map_file(doc, ref, host, action)
    if "network" in categories:
        return _map_network(doc, ref, host, action, policy)
    if "configuration" in categories and action == "gatekeeper_override":
        return _map_gatekeeper(doc, ref, host)
    return f"ecs:{categories[0] if categories else 'none'}/{action}"


def _common(doc: dict[str, Any], ref: RawRef, host: str) -> dict[str, Any]:
    return {"time_ns": parse_time_ns(doc.get("@timestamp")), "host": _host(doc, host), "source": FORMAT,
            "raw": ref}


def _actor(doc: dict[str, Any]) -> ProcessRef | None:
    proc = doc.get("process")
    if not isinstance(proc, dict):
        return None
    return process_ref(proc, as_dict(doc.get("user")))


def _map_process(doc: dict[str, Any], ref: RawRef, host: str, action: str) -> list[AnyEvent]:
    proc = doc.get("process")
    if not isinstance(proc, dict):
        raise RecordError(f"process {action} event has no 'process' object")
    common = _common(doc, ref, host)
    image = _image(proc, as_dict(doc.get("user")))
    if image is None:
        raise RecordError(f"process {action} event has no process.pid or readable process.entity_id")
    target, pre_image, real_parent = image

    if action == "exec":
        instigator = None
        if pre_image is not None:
            decoded = decode_entity_id(pre_image)
            # The pre-exec image is a child of the real parent; what it ran (a fork of the parent, or an
            # earlier exec such as xpcproxy) is not stated, so no executable is claimed for it.
            instigator = ProcessRef(
                pid=target.pid,
                entity_id=_ecs_id(pre_image),
                ppid=target.ppid,
                parent_entity_id=target.parent_entity_id,
                parent_executable=target.parent_executable,
                start_time_ns=decoded.start_time_ns if decoded else None,
            )
        return [ProcessExec(**common, process=instigator, target=target)]
    if action == "fork":
        # process.* is the child; process.parent.* is the process that forked it.
        forker = None
        if target.ppid is not None:
            parent = as_dict(proc.get("parent"))
            decoded = _decode(real_parent)
            forker = ProcessRef(
                pid=target.ppid,
                entity_id=target.parent_entity_id,
                executable=target.parent_executable,
                name=as_str(parent.get("name")),
                signature=_signature(parent.get("code_signature")),
                start_time_ns=decoded.start_time_ns if decoded else None,
            )
        return [ProcessFork(**common, process=forker, child=target)]
    return [ProcessExit(**common, process=target, exit_status=as_int(proc.get("exit_code")))]


def _file_path(doc: dict[str, Any], action: str) -> str:
    path = as_str(as_dict(doc.get("file")).get("path"))
    if path is None:
        raise RecordError(f"file {action} event has no file.path")
    return path


def _map_file(doc: dict[str, Any], ref: RawRef, host: str, action: str) -> list[AnyEvent] | str:
    file_action = FILE_WRITES.get(action)
    if file_action is not None:
        path = _file_path(doc, action)
        source_path = None
        if file_action is FileAction.RENAME:
            original = as_dict(as_dict(as_dict(doc.get("file")).get("Ext")).get("original"))
            source_path = as_str(original.get("path"))
        return [FileWrite(**_common(doc, ref, host), process=_actor(doc), action=file_action, path=path,
                          source_path=source_path)]
    mount_action = MOUNT_ACTIONS.get(action)
    if mount_action is not None:
        return _map_mount(doc, ref, host, action, mount_action)
    if action == "extended_attributes_delete":
        path = _file_path(doc, action)
        return [XattrChange(**_common(doc, ref, host), process=_actor(doc), action=XattrAction.DELETE,
                            path=path, name=_deleted_xattr(doc))]
    # endpoint_unquarantine is Elastic restoring a file from its own malware quarantine, not a
    # com.apple.quarantine change; deletion, launch_daemon... carry nothing chainwatch maps.
    return f"ecs:file/{action}"


def _map_mount(doc: dict[str, Any], ref: RawRef, host: str, action: str, mount_action: MountAction
               ) -> list[AnyEvent]:
    """A ``mount`` / ``unmount`` file event: the mount point is ``file.path``.

    ``mount_kind`` is ``NULLFS`` for a mount point inside an ``AppTranslocation`` folder, ``DISK_IMAGE`` under
    ``/Volumes/`` (or when the document names an image file), else ``UNKNOWN``. ``/Volumes/`` is a guess: an
    external drive mounts there too, and Elastic states no disposition.
    """
    point = _file_path(doc, action)
    file = as_dict(doc.get("file"))
    original = as_str(as_dict(as_dict(file.get("Ext")).get("original")).get("path"))
    image = original if original is not None and original.rstrip("/").lower().endswith(DISK_IMAGE_SUFFIXES) \
        else None
    if "/AppTranslocation/" in point:
        kind = MountKind.NULLFS
    elif image is not None or (point.startswith("/Volumes/") and len(point.rstrip("/")) > len("/Volumes")):
        kind = MountKind.DISK_IMAGE
    else:
        kind = MountKind.UNKNOWN
    return [VolumeMount(**_common(doc, ref, host), process=_actor(doc), action=mount_action, mount_point=point,
                        mounted_from=original if image is None else None, mount_kind=kind, image_path=image)]


def _deleted_xattr(doc: dict[str, Any]) -> str:
    """The name of a deleted extended attribute, as far as the document states it.

    Elastic documents no field for it. A reverse-DNS name in ``file.attributes`` (whose ECS values are
    otherwise plain words such as ``hidden``) is used, then a mention of the quarantine attribute in
    ``message``; otherwise the name is ``unknown`` rather than a guess.
    """
    attributes = as_dict(doc.get("file")).get("attributes")
    if isinstance(attributes, list):
        for item in attributes:
            if isinstance(item, str) and "." in item:
                return item
    message = doc.get("message")
    if isinstance(message, str) and QUARANTINE_XATTR in message:
        return QUARANTINE_XATTR
    return "unknown"


def _map_network(doc: dict[str, Any], ref: RawRef, host: str, action: str,
                 policy: Policy | None = None) -> list[AnyEvent] | str:
    default_direction = NETWORK_ACTIONS.get(action)
    if default_direction is None:
        return f"ecs:network/{action}"
    destination = as_dict(doc.get("destination"))
    dst_ip = as_str(destination.get("ip"))
    hostname = as_str(destination.get("domain"))
    if dst_ip is None:
        address = as_str(destination.get("address"))
        if address is not None:
            if _is_ip(address):
                dst_ip = address
            elif hostname is None:
                hostname = address
    if dst_ip is None and hostname is None:
        raise RecordError(f"network {action} event has no destination.ip, .address or .domain")
    network = as_dict(doc.get("network"))
    direction_text = network.get("direction")
    direction = DIRECTIONS.get(direction_text, default_direction) if isinstance(direction_text, str) \
        else default_direction
    if policy is not None and not _may_be_egress(policy, doc, dst_ip, direction):
        return UNTRACKED_NETWORK
    source = as_dict(doc.get("source"))
    return [NetworkConnection(
        **_common(doc, ref, host),
        process=_actor(doc),
        dst_ip=dst_ip,
        dst_port=as_int(destination.get("port")),
        hostname=hostname,
        protocol=as_str(network.get("transport")),
        direction=direction,
        src_ip=as_str(source.get("ip")),
        src_port=as_int(source.get("port")),
    )]


#: The label of a connection tracked-only mapping leaves unmapped.
UNTRACKED_NETWORK = "ecs:network(untracked)"


def _may_be_egress(policy: Policy, doc: dict[str, Any], dst_ip: str | None, direction: Direction) -> bool:
    """The engine's rule for keeping a connection, on the fields its mapping would read (``_image``)."""
    if direction is Direction.INBOUND or policy.destination_class(dst_ip) == "not_egress":
        return False
    proc = doc.get("process")
    if not isinstance(proc, dict):
        return True
    executable = as_str(proc.get("executable"))
    if executable is None:
        return True
    if as_int(proc.get("pid")) is None and _decode(as_str(proc.get("entity_id"))) is None:
        return True  # no process at all once mapped: kept as an unattributed connection
    matters, role = policy.tracks_image(executable, _signature(proc.get("code_signature")),
                                        as_str(as_dict(proc.get("parent")).get("executable")))
    return matters and (role is None or role.role not in (Role.APP, Role.HELPER))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _map_gatekeeper(doc: dict[str, Any], ref: RawRef, host: str) -> list[AnyEvent]:
    file = as_dict(doc.get("file"))
    signature = file.get("code_signature")
    if isinstance(signature, list):
        signature = signature[0] if signature else None
    signing = as_dict(signature)
    return [Gatekeeper(
        **_common(doc, ref, host), process=_actor(doc), action=GatekeeperAction.USER_OVERRIDE,
        path=as_str(file.get("path")), signing_id=as_str(signing.get("signing_id")),
        team_id=as_str(signing.get("team_id")), sha256=as_str(as_dict(file.get("hash")).get("sha256")),
        message=as_str(doc.get("message")),
    )]
