"""Amazon Security Lake custom-source sink: OCSF findings written to the lake's S3 bucket in its layout.

A Security Lake custom source gets a prefix in the lake's bucket (``ext/<custom source name>/``, shown as the
source's ``provider.location`` by ``CreateCustomLogSource``; newer lakes add the source version after the name)
and expects objects partitioned as::

    <prefix>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/<file>

with one OCSF event class per source (chainwatch writes class 2004, Detection Finding, only).

**Format: gzip'd OCSF JSON lines, not Parquet.** Security Lake wants Apache Parquet, but ``pyarrow`` is not a
dependency of chainwatch (nor installed in the project's environment), so this sink writes each finding as one
gzip-compressed JSON line (``.ocsf.jsonl.gz``) under the same partitioning. Converting to Parquet (and compacting
the small objects into the 5-minute-to-1-day files Security Lake prefers) is left to a downstream AWS Glue job or a
Kinesis Data Firehose record-format conversion, or to a follow-up that adds ``pyarrow`` and writes Parquet here.

**Idempotence.** The object key is derived from the finding id and revision only (``<id>-r<revision>``), and the
gzip header carries no timestamp, so a retry writes the same bytes to the same key: it overwrites, never adds a
second copy. A later revision is a new object (the lake keeps the history of the chain); readers take the highest
revision per ``finding_info.uid``. ``eventDay`` is the finding's own event time (``time``, the chain's last-seen
time), so it is the same on every retry too.

Canary findings are delivered, marked: ``metadata.labels`` gets ``"canary"`` and
``unmapped.chainwatch.readiness.canary`` is ``true``; every record also carries ``unmapped.chainwatch.revision``.

Configuration (``kind: security_lake``): ``bucket`` and ``source_name`` (required), ``account_id`` (the
``accountId`` partition: the account the custom source was registered for) and ``region`` (default: the S3
client's region), optional ``source_version`` (appended to the prefix), ``prefix`` (the whole source prefix,
overriding ``ext/<source_name>[/<source_version>]``), or ``location`` (``s3://bucket/ext/name/version/`` as
Security Lake prints it, giving bucket and prefix at once), ``expected_bucket_owner``. Authentication is the IAM
role Security Lake created for the source (the function assumes it); there is no secret to configure.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from chainwatch.errors import ConfigError, PermanentError, TransientError
from chainwatch.findings.story import safe
from chainwatch.sinks._aws import aws_code, call_aws
from chainwatch.sinks.base import MAX_RESPONSE_TEXT, Delivery, DeliveryResult, Outcome, Sink, SinkContext, register

__all__ = ["SecurityLakeSink", "object_key", "partition_prefix", "render_record"]

log = logging.getLogger(__name__)

OCSF_CLASS_UID = 2004
DEFAULT_RETRY_AFTER = 30.0
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
    """The object key of one finding revision: a function of the finding id and revision (and its event day)."""
    name = f"{_key_id(delivery.finding_id)}-r{delivery.revision:06d}.ocsf.jsonl.gz"
    return f"{partition_prefix(prefix, region, account_id, event_ms)}/{name}"


def event_time_ms(document: Mapping[str, Any]) -> int | None:
    """The finding's event time (OCSF ``time``, else ``finding_info.last_seen_time``) in epoch ms, if usable."""
    info = document.get("finding_info")
    for value in (document.get("time"), info.get("last_seen_time") if isinstance(info, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 253_402_300_799_999:
            return value
    return None


def render_record(delivery: Delivery) -> bytes:
    """The object body: the OCSF document as one JSON line, gzip'd with a fixed header (same input, same bytes).

    The document is copied, never changed in place; the copy gains the revision and, for canaries, the marks.
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
    # orjson escapes control characters (a newline inside a command line stays inside its string), so the object
    # is exactly one line whatever the telemetry held.
    line = orjson.dumps(doc) + b"\n"
    return gzip.compress(line, compresslevel=6, mtime=0)


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
        self.bucket = str(bucket)
        self.prefix = str(prefix).strip("/")
        self.account_id = account
        self.region = region
        self.class_uid = int(self.option("class_uid", OCSF_CLASS_UID))

    def _client(self) -> Any:
        return self._aws("s3")

    def key_for(self, delivery: Delivery) -> str:
        """The object key a delivery is written to.

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
        return object_key(self.prefix, self.region, self.account_id, delivery, event_ms)

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        client = self._client()
        results: list[DeliveryResult] = []
        blocked: tuple[Outcome, str, float | None] | None = None
        for delivery in deliveries:
            if blocked is not None:
                # The bucket already failed in a way every write shares; report it without another call.
                outcome, reason, retry_after = blocked
                results.append(DeliveryResult(delivery.finding_id, delivery.revision, outcome,
                                              "not attempted: an earlier write failed the same way",
                                              response=reason, retry_after=retry_after))
                continue
            try:
                key = self.key_for(delivery)
            except PermanentError as exc:
                results.append(DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                              "not a finding this source can hold",
                                              response=safe(exc, MAX_RESPONSE_TEXT)))
                continue
            body = render_record(delivery)
            params: dict[str, Any] = {
                "Bucket": self.bucket, "Key": key, "Body": body, "ContentType": "application/gzip",
                "Metadata": {"finding-id": _key_id(delivery.finding_id), "revision": str(delivery.revision),
                             "ocsf-class-uid": str(self.class_uid), "format": "ocsf-jsonl-gzip"},
            }
            if self.option("expected_bucket_owner"):
                params["ExpectedBucketOwner"] = str(self.option("expected_bucket_owner"))

            def put(params: dict[str, Any] = params) -> None:
                call_aws(lambda: client.put_object(**params), "s3:PutObject")

            try:
                self.context.retry.call(put)
            except TransientError as exc:
                retry_after = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
                reason = safe(exc, MAX_RESPONSE_TEXT)
                log.warning("sink %s: S3 write still failing after retries: %s", self.name, safe(exc, 300))
                results.append(DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_TRANSIENT,
                                              "S3 still failing after retries", response=reason,
                                              retry_after=retry_after))
                # Retrying the rest now would spend the time budget on the same outage.
                blocked = (Outcome.FAILED_TRANSIENT, reason, retry_after)
                continue
            except PermanentError as exc:
                reason = safe(exc, MAX_RESPONSE_TEXT)
                log.warning("sink %s: S3 rejected a write: %s", self.name, safe(exc, 300))
                results.append(DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                              "S3 rejected the write", response=reason))
                if aws_code(exc) in _BUCKET_ERRORS:
                    blocked = (Outcome.FAILED_PERMANENT, reason, None)
                continue
            results.append(DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED,
                                          f"written to s3://{self.bucket}/{key}",
                                          external_id=f"s3://{self.bucket}/{key}"))
        return results
