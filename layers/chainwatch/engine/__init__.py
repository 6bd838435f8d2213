"""Pure correlation: lineage, chain assembly and windows. No I/O; time comes from events and an injected clock."""

from chainwatch.engine.engine import Engine, EngineStats

__all__ = ["Engine", "EngineStats"]
