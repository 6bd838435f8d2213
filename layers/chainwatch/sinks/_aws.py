"""Shared rules for sinks that call AWS through boto3 (Security Hub, Security Lake's S3 bucket).

botocore reports failures as :class:`~botocore.exceptions.ClientError` (the service answered with an error code)
or :class:`~botocore.exceptions.BotoCoreError` (no usable answer: connection, timeout, parameter validation).
:func:`aws_error` turns either into the project's :class:`~chainwatch.errors.TransientError` /
:class:`~chainwatch.errors.PermanentError`, so :class:`~chainwatch.sinks.base.RetryPolicy` can retry the first.

Only the error code, HTTP status, message and request id are kept: botocore's error dict can carry more (S3's
``SignatureDoesNotMatch`` echoes the string to sign, ``InvalidAccessKeyId`` the key id), and none of that belongs
in a dead-letter record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from chainwatch.errors import PermanentError, TransientError
from chainwatch.findings.story import safe
from chainwatch.sinks.base import MAX_RESPONSE_TEXT

T = TypeVar("T")

#: Error codes that mean "slow down" or "try again" across the AWS services the sinks call. HTTP 408/429/5xx are
#: transient whatever the code says; these cover services that throttle with a 400 (S3 ``SlowDown`` is a 503, but
#: ``RequestTimeout`` is a 400) or name the condition in the body only.
TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "LimitExceededException", "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "ProvisionedThroughputExceededException", "SlowDown", "BandwidthLimitExceeded",
    "InternalException", "InternalServerException", "InternalError", "InternalFailure",
    "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete",
})


def describe_client_error(exc: ClientError) -> tuple[str, int | None, str]:
    """``(code, HTTP status, bounded one-line description)`` of a ClientError, with nothing but code and message."""
    response: Any = exc.response
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    meta = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
    code = str(error.get("Code") or "Unknown")
    status = meta.get("HTTPStatusCode")
    status = status if isinstance(status, int) else None
    request_id = meta.get("RequestId")
    text = f"{safe(code, 100)} (HTTP {status if status is not None else '?'}): {safe(error.get('Message', ''), 1000)}"
    if request_id:
        text += f" [request id {safe(request_id, 100)}]"
    return code, status, text[:MAX_RESPONSE_TEXT]


def _retry_after(exc: ClientError) -> float | None:
    """``Retry-After`` from the error response's headers, when the service sent one (most AWS APIs do not)."""
    response: Any = exc.response
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) if isinstance(response, dict) else {}
    # botocore lower-cases header names, but a plain dict from elsewhere may not: compare case-insensitively.
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None) \
        if isinstance(headers, dict) else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def is_transient_code(code: str, status: int | None = None) -> bool:
    """Whether an AWS error code (and HTTP status, when known) is worth retrying."""
    return code in TRANSIENT_CODES or (status is not None and (status in (408, 429) or status >= 500))


def aws_error(exc: ClientError | BotoCoreError, what: str) -> TransientError | PermanentError:
    """The project error for a botocore failure of ``what`` (an operation name, for the message)."""
    if isinstance(exc, ClientError):
        code, status, text = describe_client_error(exc)
        if is_transient_code(code, status):
            return TransientError(f"{what}: {text}", retry_after=_retry_after(exc))
        return PermanentError(f"{what}: {text}")
    # No answer from the service (connection refused/reset, timeouts, TLS): the request may work next time.
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return TransientError(f"{what}: {safe(exc, 500)}")
    # ParamValidationError, NoCredentialsError, NoRegionError...: configuration or a request the SDK refuses to
    # send; repeating it cannot help.
    return PermanentError(f"{what}: {type(exc).__name__}: {safe(exc, 500)}")


def aws_code(exc: BaseException) -> str | None:
    """The AWS error code behind an error raised by :func:`call_aws` (its ``__cause__``), if it had one."""
    cause = exc.__cause__
    return describe_client_error(cause)[0] if isinstance(cause, ClientError) else None


def call_aws(func: Callable[[], T], what: str) -> T:
    """Run one boto3 call, raising :func:`aws_error`'s translation of a botocore failure."""
    try:
        return func()
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, what) from exc
