"""OCSF 1.8 Detection Finding (class 2004) as Apache Parquet: an explicit Arrow schema, row conforming, writing.

``pyarrow`` is imported inside the functions that need it, never at module import, so the rest of chainwatch
(the correlator, the other sinks, the CLI) does not load its ~170 MB of native code.

**Schema.** :data:`CLASS_2004` names each column with its OCSF type, for the attributes of class 2004 (base event,
Finding, host profile) and of the objects a chainwatch finding fills (``metadata``, ``finding_info`` with
``analytic``/``attacks``/``related_events``, ``device``, ``evidences`` with ``process``/``file``/endpoints), plus
the common optional attributes of those objects so another producer's fields have a typed home. OCSF types map to
Arrow as ``integer_t``/``port_t`` -> int32, ``long_t`` -> int64, ``timestamp_t`` -> int64 (epoch milliseconds, as
OCSF defines it), ``boolean_t`` -> bool, ``float_t`` -> float64, every string type -> string, objects -> structs,
arrays -> lists. Each field carries its OCSF type in the field metadata (``ocsf_type``), the schema the OCSF
version and class (``ocsf_version``, ``ocsf_class_uid``). The OCSF *datetime* profile is applied: every
``timestamp_t`` column gets a ``<name>_dt`` sibling of Arrow type ``timestamp[ms, UTC]`` (Parquet TIMESTAMP,
adjusted to UTC), so Athena and Spark see real timestamps without losing the OCSF integer, and ``metadata.profiles``
lists ``datetime``.

**Free-form attributes are JSON text.** ``unmapped`` (OCSF ``object``: whatever the producer could not map; here
chainwatch's story, process tree, timeline, ...) and ``evidences[].data`` (OCSF ``json_t``) are string columns
holding JSON. A struct would freeze chainwatch's internal shape into the lake table: each change of it would be a
schema change for the Glue crawler (and a type change an incompatible one for older partitions), and its lists mix
nulls, numbers and objects a struct cannot hold losslessly. Athena reads them with ``json_extract``.

**Bounded nesting.** OCSF's ``process.parent_process`` is recursive; a Parquet schema cannot be. The schema keeps
two ancestors (``process.parent_process.parent_process``), which holds every chain chainwatch reports (the full
lineage is also in ``unmapped.chainwatch.process_tree``). Anything deeper, any attribute the schema does not name,
and any value of the wrong type is not dropped: it goes, keyed by its path, into ``unmapped.parquet_overflow``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from chainwatch import __version__

__all__ = ["CLASS_2004", "OVERFLOW_KEY", "arrow_schema", "conform", "write_parquet"]

OCSF_VERSION = "1.8.0"
OVERFLOW_KEY = "parquet_overflow"
_DT_SUFFIX = "_dt"
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
#: Arrow's timestamp[ms] range that Python's datetime (what readers turn it into) can also hold: years 1-9999.
_DT_MS = (-62_135_596_800_000, 253_402_300_799_999)

# -- the class, declared -----------------------------------------------------------------------------------------
# A field is an OCSF type name (a scalar), a dict (an OCSF object: a struct) or a one-element list (an array).

Spec = str | dict[str, Any] | list[Any]

_PRODUCT: dict[str, Spec] = {"name": "string_t", "vendor_name": "string_t", "version": "string_t",
                             "uid": "string_t", "lang": "string_t", "url_string": "url_t"}
_FINGERPRINT: dict[str, Spec] = {"algorithm_id": "integer_t", "algorithm": "string_t", "value": "string_t"}
_USER: dict[str, Spec] = {"uid": "string_t", "name": "string_t", "full_name": "string_t", "domain": "string_t",
                          "type_id": "integer_t", "type": "string_t"}
_FILE: dict[str, Spec] = {
    "path": "file_path_t", "name": "file_name_t", "type_id": "integer_t", "type": "string_t", "size": "long_t",
    "uid": "string_t", "parent_folder": "string_t", "mime_type": "string_t",
    "created_time": "timestamp_t", "modified_time": "timestamp_t", "accessed_time": "timestamp_t",
    "hashes": [_FINGERPRINT],
    "signature": {
        "algorithm_id": "integer_t", "algorithm": "string_t", "developer_uid": "string_t",
        "digest": _FINGERPRINT,
        "certificate": {"subject": "string_t", "issuer": "string_t", "serial_number": "string_t",
                        "created_time": "timestamp_t", "expiration_time": "timestamp_t"},
    },
}
_ENDPOINT: dict[str, Spec] = {"ip": "ip_t", "port": "port_t", "hostname": "hostname_t", "name": "string_t",
                              "uid": "string_t", "domain": "string_t"}
_OS: dict[str, Spec] = {"name": "string_t", "type_id": "integer_t", "type": "string_t", "version": "string_t",
                        "build": "string_t"}
#: How many ``parent_process`` levels the schema holds below an evidence's process.
PROCESS_ANCESTORS = 2


def _process(ancestors: int) -> dict[str, Spec]:
    spec: dict[str, Spec] = {
        "pid": "integer_t", "name": "process_name_t", "uid": "string_t", "path": "file_path_t",
        "cmd_line": "string_t", "working_directory": "string_t", "created_time": "timestamp_t",
        "terminated_time": "timestamp_t", "file": _FILE, "user": _USER,
    }
    if ancestors > 0:
        spec["parent_process"] = _process(ancestors - 1)
    return spec


CLASS_2004: dict[str, Spec] = {
    # Classification (base event).
    "class_uid": "integer_t", "class_name": "string_t", "category_uid": "integer_t", "category_name": "string_t",
    "activity_id": "integer_t", "activity_name": "string_t", "type_uid": "long_t", "type_name": "string_t",
    # Occurrence.
    "time": "timestamp_t", "start_time": "timestamp_t", "end_time": "timestamp_t", "duration": "long_t",
    "count": "integer_t", "timezone_offset": "integer_t",
    # Base event context.
    "severity_id": "integer_t", "severity": "string_t", "status_id": "integer_t", "status": "string_t",
    "status_code": "string_t", "status_detail": "string_t", "message": "string_t", "raw_data": "string_t",
    # Finding.
    "confidence_id": "integer_t", "confidence": "string_t", "confidence_score": "integer_t",
    "is_alert": "boolean_t", "risk_score": "integer_t", "risk_level_id": "integer_t", "risk_level": "string_t",
    "risk_details": "string_t", "impact_id": "integer_t", "impact": "string_t", "impact_score": "integer_t",
    "comment": "string_t",
    "metadata": {
        "version": "string_t", "product": _PRODUCT, "uid": "string_t", "correlation_uid": "string_t",
        "processed_time": "timestamp_t", "logged_time": "timestamp_t", "modified_time": "timestamp_t",
        "original_time": "string_t", "log_name": "string_t", "log_provider": "string_t", "event_code": "string_t",
        "tenant_uid": "string_t", "labels": ["string_t"], "profiles": ["string_t"],
    },
    "finding_info": {
        "uid": "string_t", "title": "string_t", "desc": "string_t", "src_url": "url_t",
        "analytic": {"uid": "string_t", "name": "string_t", "type_id": "integer_t", "type": "string_t",
                     "category": "string_t", "desc": "string_t", "version": "string_t"},
        "attacks": [{
            "technique": {"uid": "string_t", "name": "string_t", "src_url": "url_t"},
            "sub_technique": {"uid": "string_t", "name": "string_t", "src_url": "url_t"},
            "tactic": {"uid": "string_t", "name": "string_t", "src_url": "url_t"},
            "version": "string_t",
        }],
        "first_seen_time": "timestamp_t", "last_seen_time": "timestamp_t", "created_time": "timestamp_t",
        "modified_time": "timestamp_t", "types": ["string_t"], "data_sources": ["string_t"],
        "product": _PRODUCT,
        "related_events": [{"uid": "string_t", "time": "timestamp_t", "product": _PRODUCT, "type_uid": "long_t",
                            "type_name": "string_t", "title": "string_t", "desc": "string_t"}],
    },
    # Host profile.
    "device": {"hostname": "hostname_t", "name": "string_t", "uid": "string_t", "ip": "ip_t", "mac": "mac_t",
               "domain": "string_t", "type_id": "integer_t", "type": "string_t", "os": _OS},
    "evidences": [{
        "name": "string_t", "uid": "string_t", "data": "json_t", "process": _process(PROCESS_ANCESTORS),
        "file": _FILE, "dst_endpoint": _ENDPOINT, "src_endpoint": _ENDPOINT, "user": _USER,
    }],
    "unmapped": "json_t",
}

_INTEGERS = {"integer_t": _INT32, "port_t": _INT32, "long_t": _INT64, "timestamp_t": _INT64}
_STRINGS = {"string_t", "file_path_t", "file_name_t", "process_name_t", "hostname_t", "ip_t", "mac_t", "url_t"}


def _arrow_type(spec: Spec) -> Any:
    import pyarrow as pa

    if isinstance(spec, dict):
        return pa.struct(_fields(spec))
    if isinstance(spec, list):
        return pa.list_(_arrow_type(spec[0]))
    if spec in ("integer_t", "port_t"):
        return pa.int32()
    if spec in ("long_t", "timestamp_t"):
        return pa.int64()
    if spec == "boolean_t":
        return pa.bool_()
    if spec == "float_t":
        return pa.float64()
    if spec == "datetime_t":
        return pa.timestamp("ms", tz="UTC")
    if spec in _STRINGS or spec == "json_t":
        return pa.string()
    raise ValueError(f"no Arrow type for OCSF type {spec!r}")


def _fields(spec: Mapping[str, Spec]) -> list[Any]:
    import pyarrow as pa

    fields = []
    for name, sub in spec.items():
        ocsf = sub if isinstance(sub, str) else ("object_t" if isinstance(sub, dict) else "array")
        fields.append(pa.field(name, _arrow_type(sub), metadata={"ocsf_type": ocsf}))
        if sub == "timestamp_t":
            fields.append(pa.field(name + _DT_SUFFIX, _arrow_type("datetime_t"), metadata={"ocsf_type": "datetime_t"}))
    return fields


def arrow_schema() -> Any:
    """The ``pyarrow.Schema`` of class 2004 as chainwatch writes it (see the module docstring)."""
    import pyarrow as pa

    return pa.schema(_fields(CLASS_2004), metadata={
        "ocsf_version": OCSF_VERSION, "ocsf_class_uid": "2004", "ocsf_class_name": "Detection Finding",
        "ocsf_profiles": "host,datetime", "producer": f"chainwatch {__version__}"})


# -- rows --------------------------------------------------------------------------------------------------------


def json_text(value: Any) -> str:
    """``value`` as compact JSON text; strings that are not valid UTF-8 (lone surrogates) are escaped, not lost."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=True, default=str, separators=(",", ":"))


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be stored in a Parquet string; keep it visible as an escape.
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _scalar(spec: str, value: Any) -> tuple[bool, Any]:
    """(fits, stored value) of one scalar against its OCSF type."""
    if spec in _INTEGERS:
        low, high = _INTEGERS[spec]
        return (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high), value
    if spec == "boolean_t":
        return isinstance(value, bool), value
    if spec == "float_t":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)), value
    if spec == "json_t":
        return True, json_text(value)
    if spec in _STRINGS:
        return isinstance(value, str), _string(value) if isinstance(value, str) else value
    return False, value


def _conform_object(spec: Mapping[str, Spec], value: Mapping[str, Any], path: str,
                    overflow: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        sub = spec.get(key) if isinstance(key, str) and not key.endswith(_DT_SUFFIX) else None
        if sub is None:
            if item is not None:
                overflow[where] = item
            continue
        if item is None:
            continue
        fits, stored = _conform(sub, item, where, overflow)
        if fits:
            row[key] = stored
            if sub == "timestamp_t" and _DT_MS[0] <= item <= _DT_MS[1]:
                row[key + _DT_SUFFIX] = item
        else:
            overflow[where] = item
    return row


def _conform(spec: Spec, value: Any, path: str, overflow: dict[str, Any]) -> tuple[bool, Any]:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return False, value
        return True, _conform_object(spec, value, path, overflow)
    if isinstance(spec, list):
        if not isinstance(value, list):
            return False, value
        items = []
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            fits, stored = (False, item) if item is None else _conform(spec[0], item, where, overflow)
            if fits:
                items.append(stored)
            else:
                # Keep the list's positions: a null in the column, the value itself in the overflow.
                items.append(None)
                if item is not None:
                    overflow[where] = item
        return True, items
    return _scalar(spec, value)


def conform(document: Mapping[str, Any]) -> dict[str, Any]:
    """One Parquet row of :func:`arrow_schema` from an OCSF class 2004 document.

    Every value lands somewhere: in its column when the schema names it with a matching type, otherwise under
    ``unmapped.parquet_overflow`` keyed by its path (``evidences[2].process.parent_process...``). ``unmapped``
    and ``evidences[].data`` become JSON text; each timestamp also fills its ``_dt`` column.
    """
    overflow: dict[str, Any] = {}
    body = {k: v for k, v in document.items() if k != "unmapped"}
    row = _conform_object(CLASS_2004, body, "", overflow)
    metadata = row.get("metadata")
    if isinstance(metadata, dict):
        profiles = [p for p in metadata.get("profiles") or [] if p is not None]
        metadata["profiles"] = profiles if "datetime" in profiles else [*profiles, "datetime"]
    unmapped = document.get("unmapped")
    if overflow:
        unmapped = dict(unmapped) if isinstance(unmapped, dict) else (
            {} if unmapped is None else {"value": unmapped})
        unmapped[OVERFLOW_KEY] = overflow
    if unmapped is not None:
        row["unmapped"] = json_text(unmapped)
    return row


# -- writing -----------------------------------------------------------------------------------------------------


def _row_groups(sizes: Sequence[int], max_rows: int, max_bytes: int) -> Iterable[tuple[int, int]]:
    """(start, stop) of consecutive row groups of at most ``max_rows`` rows and about ``max_bytes`` (never 0 rows)."""
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= max_rows or total + size > max_bytes):
            yield start, index
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)


#: Columns given min/max statistics: the ones lake queries filter on. Statistics on all ~300 leaf columns would add
#: ~25 KB to every object's footer for columns nobody prunes by.
STATISTICS_COLUMNS = ("class_uid", "time", "time_dt", "severity_id", "status_id", "is_alert", "finding_info.uid",
                      "finding_info.first_seen_time", "finding_info.last_seen_time", "metadata.processed_time",
                      "device.hostname")


def write_parquet(rows: Sequence[Mapping[str, Any]], sizes: Sequence[int], *, compression: str = "zstd",
                  max_row_group_rows: int = 10_000, max_row_group_bytes: int = 64 * 1024 * 1024) -> bytes:
    """The Parquet file of ``rows`` (from :func:`conform`, in the order given) as bytes.

    ``sizes`` estimates each row's size (its JSON length): row groups close at ``max_row_group_rows`` rows or
    when the next row would pass ``max_row_group_bytes``, so one huge command line cannot make a reader hold a
    gigantic row group. The same rows give the same bytes (no timestamps in the file), so a rewrite is identical.

    Raises
    ------
    pyarrow.ArrowException
        A row does not fit the schema (:func:`conform` prevents this for any JSON document).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    sink = io.BytesIO()
    # The serialized Arrow schema (store_schema) would add ~50 KB of footer to every object, mostly the per-field
    # OCSF type metadata; Parquet's own schema already carries every type, UTC timestamps included, and the OCSF
    # version and class go in the file's key-value metadata.
    with pq.ParquetWriter(sink, schema, compression=compression, use_dictionary=True,
                          write_statistics=list(STATISTICS_COLUMNS), version="2.6", store_schema=False) as writer:
        for start, stop in _row_groups(sizes, max_row_group_rows, max_row_group_bytes):
            table = pa.Table.from_pylist(list(rows[start:stop]), schema=schema)
            writer.write_table(table, row_group_size=stop - start)
        writer.add_key_value_metadata(schema.metadata)
    return sink.getvalue()
