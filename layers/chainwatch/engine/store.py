"""The state-store port the engine talks to. Implementations live in :mod:`chainwatch.state`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from chainwatch.engine.hoststate import HostState


class StateStore(Protocol):
    """Where per-host chain state lives between calls.

    ``load`` returns ``None`` for a host with no live state; ``save`` persists the state the engine changed
    (a store may keep the object itself, as the in-memory store does, or serialize it).
    """

    def load(self, host: str) -> HostState | None: ...

    def save(self, state: HostState) -> None: ...

    def hosts(self) -> Iterable[str]: ...

    def delete(self, host: str) -> None: ...
