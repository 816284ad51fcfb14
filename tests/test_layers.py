"""The import rules between the packages and rooms, read from the source (design.md, "Dependency
rule"; README, "Layout"):

- `adapters` may import `optimizer`, never `agent`;
- `agent`'s shared modules (everything at its top but the command line) import none of its
  rooms;
- `agent.daemon` imports neither `agent.replay` nor `agent.study`, and those never import
  `agent.daemon`;
- nothing but the command line imports `agent.bench`.

`optimizer`'s own purity (no I/O, no clock, nothing of ours) is tests/optimizer/test_purity.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("daemon", "replay", "study", "bench")


def _module(path: Path) -> str:
    """`agent/daemon/ledger.py` -> `gridpilot.agent.daemon.ledger`."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("gridpilot", *parts))


def imports(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in `source`, relative ones resolved against
    `module` (the importing module's own name)."""
    package = module.split(".")
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, target))
            # `from gridpilot.agent import daemon` imports the room itself.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def _place(module: str) -> str:
    """Where a module of ours lives: `optimizer`, `adapters`, `agent` (shared), `agent.<room>`,
    or `` for anything not ours."""
    parts = module.split(".")
    if parts[0] != "gridpilot" or len(parts) < 2:
        return ""
    if parts[1] == "agent" and len(parts) > 2 and parts[2] in ROOMS:
        return f"agent.{parts[2]}"
    return parts[1]


def breaches(source: str, module: str) -> list[str]:
    """What in one module breaks the rules above, in words."""
    here = _place(module)
    forbidden: set[str] = set()
    if here == "adapters":
        forbidden = {"agent", *(f"agent.{room}" for room in ROOMS)}
    elif here == "agent" and module != "gridpilot.agent.cli":
        forbidden = {f"agent.{room}" for room in ROOMS}
    elif here == "agent.daemon":
        forbidden = {"agent.replay", "agent.study", "agent.bench"}
    elif here in ("agent.replay", "agent.study"):
        forbidden = {"agent.daemon", "agent.bench"}
    return sorted(
        {
            f"line {line}: imports {target}"
            for line, target in imports(source, module)
            if _place(target) in forbidden
        }
    )


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("gridpilot.adapters.plant", "from gridpilot.agent.settings import Settings"),
        ("gridpilot.adapters.plant", "import gridpilot.agent.daemon.ledger"),
        ("gridpilot.agent.planner", "from gridpilot.agent.daemon import ledger"),
        ("gridpilot.agent.planner", "from .replay.simulation import replay"),
        ("gridpilot.agent.daemon.daemon", "from gridpilot.agent.replay.simulation import replay"),
        ("gridpilot.agent.daemon.daemon", "from ..replay import report"),
        ("gridpilot.agent.replay.simulation", "from gridpilot.agent.daemon.state import Signal"),
        ("gridpilot.agent.replay.simulation", "from gridpilot.agent import daemon"),
        ("gridpilot.agent.study.sweep", "import gridpilot.agent.daemon.metrics"),
        ("gridpilot.agent.replay.report", "from gridpilot.agent.bench import plan"),
    ],
)
def test_the_rules_catch(module: str, source: str) -> None:
    """Each rule flags the import it exists for, absolute or relative."""
    assert breaches(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("gridpilot.adapters.plant", "from gridpilot.optimizer.problem import Problem"),
        ("gridpilot.agent.daemon.daemon", "from gridpilot.agent.planner import Planner"),
        ("gridpilot.agent.daemon.daemon", "from .ledger import Ledger"),
        ("gridpilot.agent.replay.simulation", "from gridpilot.agent.guard import shed"),
        ("gridpilot.agent.cli", "from gridpilot.agent.daemon import service"),
        ("gridpilot.agent.bench.guard", "from gridpilot.agent.daemon.ledger import Ledger"),
    ],
)
def test_the_rules_allow(module: str, source: str) -> None:
    """What the layering allows passes: the shared ground, one's own room, the command line
    and the benchmarks composing rooms."""
    assert breaches(source, module) == []


def test_every_module_keeps_to_the_rules() -> None:
    """No module of agent/, adapters/ or optimizer/ breaks an import rule."""
    modules = sorted(
        path
        for package in ("agent", "adapters", "optimizer")
        for path in (ROOT / package).rglob("*.py")
    )
    assert any("daemon" in path.parts for path in modules)
    assert any("replay" in path.parts for path in modules)
    found = {
        str(path.relative_to(ROOT)): problems
        for path in modules
        if (problems := breaches(path.read_text(encoding="utf-8"), _module(path)))
    }
    assert found == {}


def test_the_daemon_never_loads_matplotlib() -> None:
    """Building and importing the daemon (what `gridpilot run` loads) leaves matplotlib out:
    only reports need it."""
    code = (
        "import sys\n"
        "import gridpilot.agent.cli, gridpilot.agent.daemon.daemon\n"
        "import gridpilot.agent.daemon.service\n"
        "print('matplotlib' in sys.modules)\n"
    )
    result = subprocess.run(  # noqa: S603  # this interpreter, our own modules
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
