"""Amazon Security Lake custom-source sink: OCSF findings written to the lake's S3 bucket in its layout.

A Security Lake custom source gets a prefix in the lake's bucket (``ext/<custom source name>/``, shown as the
source's ``provider.location`` by ``CreateCustomLogSource``; newer lakes add the source version after the name)
and expects Apache Parquet objects, one OCSF event class per source, partitioned as::

    <prefix>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/<file>

chainwatch writes class 2004 (Detection Finding) only.

**Format ``parquet`` (the default).** Each call writes **one Parquet object per eventDay partition** holding that
batch's findings, rows sorted by ``time``, with the explicit class-2004 schema of
:mod:`chainwatch.sinks._ocsf_parquet` (nested structs for the OCSF objects, ``unmapped`` and ``evidences[].data``
as JSON text, OCSF ``timestamp_t`` as int64 epoch ms plus ``*_dt`` UTC timestamp columns), zstd-compressed
(``compression``: ``zstd``, ``snappy``, ``gzip`` or ``none``) in row groups bounded by rows and bytes
(``max_row_group_rows``, default 10,000; ``max_row_group_bytes``, default 64 MiB). The key is
``<partition>/cw-<digest>.parquet`` where the digest is of the sorted (finding id, revision) pairs in the object,
and the file has no timestamps in it: a redelivered batch writes the same bytes to the same key, overwriting, never
duplicating. A batch retried with other members (Lambda bisecting, say) makes another object; a revision can then
be in two objects, so readers deduplicate on ``finding_info.uid`` plus ``unmapped.chainwatch.revision`` (which they
need anyway to take the latest revision of a chain). ``pyarrow`` is imported only when the first object is written;
without it, a ``parquet`` sink is a configuration error naming the ``lake`` extra.

**Format ``json``.** One gzip'd OCSF JSON line per finding revision (``<id>-r<revision>.ocsf.jsonl.gz``, the key a
function of the finding id and revision only, the gzip header without a timestamp, so a retry overwrites with
identical bytes), under the same partitioning: for lakes fed through a Glue job or Firehose record-format
conversion, or for reading without Parquet tools. Security Lake itself wants Parquet.

A later revision is a new row/object (the lake keeps the history of the chain); readers take the highest revision
per ``finding_info.uid``. ``eventDay`` is the finding's own event time (``time``, the chain's last-seen time), so it
is the same on every retry too.

Canary findings are delivered, marked: ``metadata.labels`` gets ``"canary"`` and
``unmapped.chainwatch.canary`` is ``true``; every record also carries ``unmapped.chainwatch.revision``.

Configuration (``kind: security_lake``): ``bucket`` and ``source_name`` (required), ``account_id`` (the
``accountId`` partition: the account the custom source was registered for) and ``region`` (default: the S3
client's region), optional ``source_version`` (appended to the prefix), ``prefix`` (the whole source prefix,
overriding ``ext/<source_name>[/<source_version>]``), or ``location`` (``s3://bucket/ext/name/version/`` as
Security Lake prints it, giving bucket and prefix at once), ``expected_bucket_owner``, ``format`` (``parquet`` or
``json``) and the Parquet settings above. Authentication is the IAM role Security Lake created for the source (the
function assumes it); there is no secret to configure.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from chainwatch.errors import ConfigError, PermanentError, TransientError
from chainwatch.findings.story import safe
from chainwatch.sinks._aws import aws_code, call_aws
from chainwatch.sinks.base import MAX_RESPONSE_TEXT, Delivery, DeliveryResult, Outcome, Sink, SinkContext, register

__all__ = ["SecurityLakeSink", "batch_object_key", "marked_document", "object_key", "partition_prefix",
           "render_parquet", "render_record"]

log = logging.getLogger(__name__)

OCSF_CLASS_UID = 2004
DEFAULT_RETRY_AFTER = 30.0
FORMATS = ("parquet", "json")
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
#: Parquet codecs accepted for ``compression`` (pyarrow's names); zstd compresses OCSF text best.
_COMPRESSIONS = ("zstd", "snappy", "gzip", "none")
DEFAULT_ROW_GROUP_ROWS = 10_000
DEFAULT_ROW_GROUP_BYTES = 64 * 1024 * 1024
#: Errors that make every write to the bucket fail the same way: once seen, the rest of the batch is not tried.
_BUCKET_ERRORS = frozenset({"NoSuchBucket", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId",
                            "SignatureDoesNotMatch", "InvalidBucketName", "PermanentRedirect"})
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_ID_IN_KEY = 200


def partition_prefix(prefix: str, region: str, account_id: str, event_ms: int) -> str:
    """``<prefix>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>`` for an event time in epoch ms."""
    day = datetime.fromtimestamp(event_ms // 1000, UTC).strftime("%Y%m%d")
    return f"{prefix.strip('/')}/region={region}/accountId={account_id}/eventDay={day}"


def _key_id(finding_id: str) -> str:
    """The finding id as a key segment: S3-safe characters only, and a digest when anything had to change."""
    cleaned = _KEY_UNSAFE.sub("_", finding_id)[:_MAX_ID_IN_KEY]
    if cleaned != finding_id or not cleaned:
        # Two ids that clean to the same text must still get different keys.
        cleaned = f"{cleaned}-{hashlib.sha256(finding_id.encode()).hexdigest()[:16]}"
    return cleaned


def object_key(prefix: str, region: str, account_id: str, delivery: Delivery, event_ms: int) -> str:
    """The ``json`` object key of one finding revision: a function of the finding id and revision (and its day)."""
    name = f"{_key_id(delivery.finding_id)}-r{delivery.revision:06d}.ocsf.jsonl.gz"
    return f"{partition_prefix(prefix, region, account_id, event_ms)}/{name}"


def batch_object_key(partition: str, deliveries: Sequence[Delivery]) -> str:
    """The ``parquet`` object key of a batch's findings in one partition: a digest of its (id, revision) set.

    Order and repeats in the batch do not matter, so a redelivered batch lands on the same key.
    """
    members = sorted({(d.finding_id, d.revision) for d in deliveries})
    digest = hashlib.sha256()
    for finding_id, revision in members:
        # Length-prefixed, so no two different sets can serialize to the same text.
        digest.update(f"{len(finding_id)}:{finding_id}:{revision};".encode())
    return f"{partition}/cw-{digest.hexdigest()[:32]}.parquet"


def event_time_ms(document: Mapping[str, Any]) -> int | None:
    """The finding's event time (OCSF ``time``, else ``finding_info.last_seen_time``) in epoch ms, if usable."""
    info = document.get("finding_info")
    for value in (document.get("time"), info.get("last_seen_time") if isinstance(info, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 253_402_300_799_999:
            return value
    return None


def marked_document(delivery: Delivery) -> dict[str, Any]:
    """A copy of the delivery's OCSF document with the revision and, for canaries, the canary marks.

    The delivery's document is never changed in place.
    """
    doc = dict(delivery.document)
    metadata = dict(doc.get("metadata") or {})
    unmapped = dict(doc.get("unmapped") or {})
    chainwatch = dict(unmapped.get("chainwatch") or {})
    chainwatch["revision"] = delivery.revision
    if delivery.canary:
        chainwatch["canary"] = True
        labels = metadata.get("labels")
        labels = [label for label in labels if label != "canary"] if isinstance(labels, list) else []
        metadata["labels"] = [*labels, "canary"]
    unmapped["chainwatch"] = chainwatch
    doc["metadata"] = metadata
    doc["unmapped"] = unmapped
    return doc


def render_record(delivery: Delivery) -> bytes:
    """The ``json`` object body: the marked OCSF document as one JSON line, gzip'd with a fixed header (same
    input, same bytes)."""
    # orjson escapes control characters (a newline inside a command line stays inside its string), so the object
    # is exactly one line whatever the telemetry held.
    line = orjson.dumps(marked_document(delivery)) + b"\n"
    return gzip.compress(line, compresslevel=6, mtime=0)


def _sort_key(doc: Mapping[str, Any]) -> tuple[int, str, int]:
    info = doc.get("finding_info")
    uid = info.get("uid") if isinstance(info, dict) else None
    chainwatch = (doc.get("unmapped") or {}).get("chainwatch") or {}
    return event_time_ms(doc) or 0, str(uid), int(chainwatch.get("revision") or 0)


def render_parquet(deliveries: Sequence[Delivery], *, compression: str = "zstd",
                   max_row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
                   max_row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES) -> bytes:
    """The ``parquet`` object body: the marked documents as class-2004 rows sorted by event time (then finding
    id and revision, so the same set gives the same bytes in any order); imports pyarrow."""
    from chainwatch.sinks._ocsf_parquet import conform, write_parquet

    docs = sorted((marked_document(d) for d in deliveries), key=_sort_key)
    sizes = [len(orjson.dumps(doc, default=str)) for doc in docs]
    return write_parquet([conform(doc) for doc in docs], sizes, compression=compression,
                         max_row_group_rows=max_row_group_rows, max_row_group_bytes=max_row_group_bytes)


@dataclass(frozen=True)
class _Failure:
    """How one object write failed (the same for every delivery in the object)."""

    outcome: Outcome
    detail: str
    response: str
    retry_after: float | None
    bucket_wide: bool = False


def _positive_int(sink: Sink, key: str, default: int) -> int:
    value = sink.option(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"sink {sink.name!r} (security_lake): {key} must be a positive integer")
    return value


@register
class SecurityLakeSink(Sink):
    """Writes OCSF findings to a Security Lake custom source's S3 prefix (see the module docstring)."""

    kind = "security_lake"
    max_batch = 100

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        if context.aws_client is None:
            raise ConfigError(f"sink {name!r} (security_lake) needs an AWS client factory in its context")
        self._aws: Callable[[str], Any] = context.aws_client
        location = self.option("location")
        bucket, prefix = self.option("bucket"), self.option("prefix")
        if location:
            match = re.fullmatch(r"s3a?://([^/]+)/(.+?)/?", str(location))
            if match is None:
                raise ConfigError(f"sink {name!r} (security_lake): location must look like s3://bucket/ext/name/")
            bucket, prefix = bucket or match.group(1), prefix or match.group(2)
        if not bucket:
            raise ConfigError(f"sink {name!r} (security_lake) needs 'bucket' (or 'location')")
        source = str(self.option("source_name", required=True))
        if not _SOURCE_NAME.fullmatch(source):
            raise ConfigError(f"sink {name!r} (security_lake): source_name must be 1-64 of [A-Za-z0-9_.:-]")
        if not prefix:
            version = self.option("source_version")
            prefix = f"ext/{source}" + (f"/{version}" if version else "")
        account = str(self.option("account_id", required=True))
        if not _ACCOUNT.fullmatch(account):
            raise ConfigError(f"sink {name!r} (security_lake): account_id must be 12 digits")
        region = str(self.option("region") or self._client().meta.region_name or "")
        if not _REGION.fullmatch(region):
            raise ConfigError(f"sink {name!r} (security_lake): region {region!r} is not an AWS region")
        self.format = str(self.option("format", "parquet")).lower()
        if self.format not in FORMATS:
            raise ConfigError(f"sink {name!r} (security_lake): format must be one of {', '.join(FORMATS)}")
        self.compression = str(self.option("compression", "zstd")).lower()
        if self.compression not in _COMPRESSIONS:
            raise ConfigError(f"sink {name!r} (security_lake): compression must be one of "
                              f"{', '.join(_COMPRESSIONS)}")
        self.max_row_group_rows = _positive_int(self, "max_row_group_rows", DEFAULT_ROW_GROUP_ROWS)
        self.max_row_group_bytes = _positive_int(self, "max_row_group_bytes", DEFAULT_ROW_GROUP_BYTES)
        # Checked without importing it: pyarrow is loaded only when the first object is written.
        if self.format == "parquet" and importlib.util.find_spec("pyarrow") is None:
            raise ConfigError(f"sink {name!r} (security_lake): format parquet needs pyarrow (install chainwatch's "
                              "'lake' extra, or the layer's requirements), or set format: json")
        self.bucket = str(bucket)
        self.prefix = str(prefix).strip("/")
        self.account_id = account
        self.region = region
        self.class_uid = int(self.option("class_uid", OCSF_CLASS_UID))

    def _client(self) -> Any:
        return self._aws("s3")

    def _event_ms(self, delivery: Delivery) -> int:
        """The delivery's event time (ms), after checking it is a finding this source holds.

        Raises
        ------
        PermanentError
            The finding is not of the source's OCSF class, or has no usable event time.
        """
        class_uid = delivery.document.get("class_uid")
        if class_uid != self.class_uid:
            raise PermanentError(f"OCSF class_uid {safe(class_uid, 20)} is not this custom source's "
                                 f"{self.class_uid} (a Security Lake custom source holds one OCSF class)")
        event_ms = event_time_ms(delivery.document)
        if event_ms is None:
            raise PermanentError("finding has no usable event time for the eventDay partition")
        return event_ms

    def key_for(self, delivery: Delivery) -> str:
        """The ``json`` object key a delivery is written to (raises :class:`PermanentError` like ``_event_ms``)."""
        return object_key(self.prefix, self.region, self.account_id, delivery, self._event_ms(delivery))

    def partition_for(self, delivery: Delivery) -> str:
        """The eventDay partition prefix a delivery belongs to (raises :class:`PermanentError` like ``_event_ms``)."""
        return partition_prefix(self.prefix, self.region, self.account_id, self._event_ms(delivery))

    def _put(self, client: Any, key: str, body: bytes, content_type: str,
             metadata: dict[str, str]) -> _Failure | None:
        """Write one object with retries; ``None`` when written, else how it failed."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": body, "ContentType": content_type,
                                  "Metadata": metadata}
        if self.option("expected_bucket_owner"):
            params["ExpectedBucketOwner"] = str(self.option("expected_bucket_owner"))

        def put() -> None:
            call_aws(lambda: client.put_object(**params), "s3:PutObject")

        try:
            self.context.retry.call(put)
        except TransientError as exc:
            retry_after = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
            log.warning("sink %s: S3 write still failing after retries: %s", self.name, safe(exc, 300))
            return _Failure(Outcome.FAILED_TRANSIENT, "S3 still failing after retries",
                            safe(exc, MAX_RESPONSE_TEXT), retry_after)
        except PermanentError as exc:
            log.warning("sink %s: S3 rejected a write: %s", self.name, safe(exc, 300))
            return _Failure(Outcome.FAILED_PERMANENT, "S3 rejected the write", safe(exc, MAX_RESPONSE_TEXT), None,
                            bucket_wide=aws_code(exc) in _BUCKET_ERRORS)
        return None

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        """One result per delivery, in order; ``parquet`` writes one object per eventDay, ``json`` one per finding."""
        client = self._client()
        results: dict[int, DeliveryResult] = {}
        # (index, delivery) per object key, in first-seen order; a key failing makes its deliveries fail alike.
        objects: dict[str, list[tuple[int, Delivery]]] = {}
        for index, delivery in enumerate(deliveries):
            try:
                key = self.key_for(delivery) if self.format == "json" else self.partition_for(delivery)
            except PermanentError as exc:
                results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                                "not a finding this source can hold",
                                                response=safe(exc, MAX_RESPONSE_TEXT))
                continue
            objects.setdefault(key, []).append((index, delivery))
        blocked: tuple[Outcome, str, float | None] | None = None
        for key_or_partition, members in objects.items():
            if blocked is not None:
                # The bucket already failed in a way every write shares; report it without another call.
                outcome, reason, retry_after = blocked
                for index, delivery in members:
                    results[index] = DeliveryResult(delivery.finding_id, delivery.revision, outcome,
                                                    "not attempted: an earlier write failed the same way",
                                                    response=reason, retry_after=retry_after)
                continue
            batch = [delivery for _, delivery in members]
            if self.format == "json":
                key, body, content_type = key_or_partition, render_record(batch[0]), "application/gzip"
                metadata = {"finding-id": _key_id(batch[0].finding_id), "revision": str(batch[0].revision),
                            "ocsf-class-uid": str(self.class_uid), "format": "ocsf-jsonl-gzip"}
            else:
                unique = list({(d.finding_id, d.revision): d for d in batch}.values())
                key = batch_object_key(key_or_partition, unique)
                body = render_parquet(unique, compression=self.compression,
                                      max_row_group_rows=self.max_row_group_rows,
                                      max_row_group_bytes=self.max_row_group_bytes)
                content_type = PARQUET_CONTENT_TYPE
                metadata = {"ocsf-class-uid": str(self.class_uid), "format": "ocsf-parquet",
                            "records": str(len(unique)), "compression": self.compression}
            failure = self._put(client, key, body, content_type, metadata)
            for index, delivery in members:
                if failure is None:
                    results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED,
                                                    f"written to s3://{self.bucket}/{key}",
                                                    external_id=f"s3://{self.bucket}/{key}")
                else:
                    results[index] = DeliveryResult(delivery.finding_id, delivery.revision, failure.outcome,
                                                    failure.detail, response=failure.response,
                                                    retry_after=failure.retry_after)
            # A transient failure that outlived the retries: retrying the rest now would spend the time budget on
            # the same outage. A bucket-wide rejection: every other write would get the same answer.
            if failure is not None and (failure.outcome is Outcome.FAILED_TRANSIENT or failure.bucket_wide):
                blocked = (failure.outcome, failure.response, failure.retry_after)
        return [results[index] for index in range(len(deliveries))]
