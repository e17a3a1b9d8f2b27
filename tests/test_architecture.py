"""The import graph keeps the layering docs/architecture.md draws (checked on the source, not at run time).

Lowest first: sandbox; the foundation modules; backends and tools (side by side, neither knows the
other); the planner; the loop and the session; evals; the front doors (agent/app and every
subcommand's cli.py, which agent/app/cli.py registers). An import may only point down.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION = {
    "agent",
    "agent.config",
    "agent.errors",
    "agent.exit_codes",
    "agent.json_limits",
    "agent.secrets",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path for top in ("agent", "sandbox", "evals") for path in (ROOT / top).rglob("*.py")
}


def is_front_door(module: str) -> bool:
    return module.startswith("agent.app") or module.rsplit(".", 1)[-1] in ("cli", "__main__")


def imports_of(module: str) -> set[str]:
    """Our modules that `module` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(name for name in names if name in MODULES and name != module)
    return found


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer(module: str) -> str:
    if is_front_door(module):
        return "app"
    if within(module, "sandbox"):
        return "sandbox"
    if module in FOUNDATION:
        return "foundation"
    for package in ("agent.backends", "agent.tools", "agent.planner", "evals"):
        if within(module, package):
            return package
    return "agent"  # the loop, the session and its events, permissions, transcripts


# What each layer may import, besides itself.
ALLOWED = {
    "sandbox": set(),
    "foundation": {"sandbox"},
    "agent.backends": {"foundation"},
    "agent.tools": {"foundation", "sandbox"},
    "agent.planner": {"foundation", "sandbox", "agent.backends", "agent.tools", "agent"},
    "agent": {"foundation", "sandbox", "agent.backends", "agent.tools", "agent.planner"},
    "evals": {"foundation", "sandbox", "agent.backends", "agent.tools", "agent.planner", "agent"},
    "app": {"foundation", "sandbox", "agent.backends", "agent.tools", "agent.planner", "agent", "evals"},
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    own = layer(module)
    wrong = sorted(
        f"{name} ({layer(name)})"
        for name in imports_of(module)
        if layer(name) != own and layer(name) not in ALLOWED[own]
    )
    assert not wrong, f"{module} ({own}) imports upward: {wrong}"


def test_the_run_events_are_the_only_agent_module_the_planner_uses():
    """The planner steers the loop; it must not reach into the loop or the session that own it."""
    used = {
        name
        for m in MODULES
        if within(m, "agent.planner")
        for name in imports_of(m)
        if layer(name) == "agent"
    }
    assert used <= {"agent.events"}, used


def test_agent_and_evals_have_no_cycle():
    agent_to_evals = [
        (m, n)
        for m in MODULES
        if within(m, "agent") and not is_front_door(m)
        for n in imports_of(m)
        if within(n, "evals")
    ]
    assert agent_to_evals == []
