"""An in-memory state store (the CLI's, and the reference for the DynamoDB store's behaviour)."""

from __future__ import annotations

from collections.abc import Iterable

from chainwatch.engine.hoststate import HostState


class InMemoryStore:
    """Keeps each host's :class:`HostState` object in a dict."""

    def __init__(self) -> None:
        self._states: dict[str, HostState] = {}

    def load(self, host: str) -> HostState | None:
        return self._states.get(host)

    def save(self, state: HostState) -> None:
        self._states[state.host] = state

    def hosts(self) -> Iterable[str]:
        return list(self._states)

    def delete(self, host: str) -> None:
        self._states.pop(host, None)
