"""The package's floors: every import points down, and no two modules import each other (directly or round a loop).

Floors, lowest first (a module may import its own floor and the ones below):

0. ``errors``, ``events`` -- the error hierarchy and the canonical event model;
1. ``policy``, ``sources`` -- the analytic as data, and the telemetry formats mapped to events;
2. ``findings`` -- the finding model and its renderings (the engine's output type, so it sits under the engine);
3. ``engine`` -- pure correlation;
4. ``state``, ``sinks`` -- where state is kept and findings are delivered;
5. ``readiness`` -- coverage, canary, report;
6. ``pipeline`` -- correlate, dispatch, detect;
7. ``app`` -- the command line, the local run, the Lambda runtimes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "layers" / "chainwatch"
FLOORS = [{"errors", "events"}, {"policy", "sources"}, {"findings"}, {"engine"}, {"state", "sinks"},
          {"readiness"}, {"pipeline"}, {"app"}]
FLOOR_OF = {name: level for level, names in enumerate(FLOORS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chainwatch"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("chainwatch"))
        graph[_module_name(path)] = targets
    return graph


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOOR_OF.get(parts[1]) if len(parts) > 1 else None


def test_layering_every_top_level_module_sits_on_a_floor() -> None:
    loose = sorted(m for m in _imports() if m != "chainwatch" and _floor(m) is None)
    assert loose == [], f"modules outside every floor: {loose}"


@pytest.mark.parametrize("module", sorted(_imports()))
def test_layering_imports_point_down(module: str) -> None:
    mine = _floor(module)
    if mine is None:
        return
    upward = sorted(t for t in _imports()[module] if (_floor(t) or 0) > mine)
    assert upward == [], f"{module} (floor {mine}) imports from higher floors: {upward}"


def test_layering_no_import_cycles() -> None:
    graph = _imports()
    modules = set(graph)
    edges = {m: {t for t in targets if t in modules and t != m} for m, targets in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == [], f"import cycles: {cycles}"
