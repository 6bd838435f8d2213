"""The one error hierarchy of chainwatch. Library code raises; the caller decides what to do."""

from __future__ import annotations


class ChainwatchError(Exception):
    """Base class of every error chainwatch raises on purpose."""


class ConfigError(ChainwatchError):
    """Settings are missing or invalid."""


class RecordError(ChainwatchError):
    """One input record cannot be read or mapped.

    Parameters
    ----------
    reason:
        What is wrong, in words a person understands.
    location:
        ``file:line`` or ``stream#sequence`` of the record, when known.
    format_guess:
        The telemetry format the record looked like, when one could be guessed.
    """

    def __init__(self, reason: str, *, location: str | None = None, format_guess: str | None = None) -> None:
        self.reason = reason
        self.location = location
        self.format_guess = format_guess
        where = f"{location}: " if location else ""
        fmt = f" [{format_guess}]" if format_guess else ""
        super().__init__(f"{where}{reason}{fmt}")


class PolicyError(ChainwatchError):
    """A policy file is invalid; carries the file and line of the offending entry."""

    def __init__(self, reason: str, *, path: str, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line if line is not None else '?'}: {reason}")


class StateConflictError(ChainwatchError):
    """A conditional state write lost a race; the caller re-reads and retries."""


class TransientError(ChainwatchError):
    """A dependency failed in a way that may succeed on retry (throttling, 5xx, timeouts)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(reason)


class PermanentError(ChainwatchError):
    """A dependency rejected the request for good (bad request, auth, schema); retrying will not help."""
