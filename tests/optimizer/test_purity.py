"""The optimizer's purity, read from the source: it imports nothing of ours and no I/O, calls no
I/O builtin and reads no clock (the other packages' rules are in tests/test_layers.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Standard-library modules that compute and do no I/O, and the numeric libraries the model uses.
OPTIMIZER_MAY_IMPORT = frozenset(
    {
        "__future__",
        "bisect",
        "collections",
        "dataclasses",
        "datetime",
        "enum",
        "functools",
        "itertools",
        "math",
        "time",  # only `perf_counter`, for the durations a plan reports
        "typing",
        "numpy",
        "scipy",
        "ortools",
    }
)
# Builtins that read or write the world: a file, a terminal, or code from a string.
IO_BUILTINS = frozenset(
    {"open", "print", "input", "breakpoint", "exec", "eval", "compile", "__import__"}
)
TIME_ALLOWED = frozenset({"perf_counter"})


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module) of every import; relative imports count as the package's own."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." if node.level else node.module or ""))
    return found


def _ours(module: str) -> str | None:
    """The package of ours (`agent`, `optimizer`, `adapters`) a module belongs to, if any."""
    parts = module.split(".")
    return parts[1] if parts[0] == "gridpilot" and len(parts) > 1 else None


def optimizer_breaches(source: str) -> list[str]:
    """What in one module of `optimizer` breaks its purity, in words."""
    tree = ast.parse(source)
    breaches = [
        f"line {line}: imports {module}"
        for line, module in _imported(tree)
        if module != "."
        and _ours(module) != "optimizer"
        and module.split(".")[0] not in OPTIMIZER_MAY_IMPORT
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            breaches += [
                f"line {node.lineno}: imports time.{alias.name}"
                for alias in node.names
                if alias.name not in TIME_ALLOWED
            ]
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
            and node.attr not in TIME_ALLOWED
        ):
            breaches.append(f"line {node.lineno}: uses time.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in IO_BUILTINS
        ):
            breaches.append(f"line {node.lineno}: calls {node.func.id}()")
    return breaches


@pytest.mark.parametrize(
    "source",
    [
        "import gridpilot.agent.daemon.ledger",
        "from gridpilot.agent import settings",
        "from gridpilot.adapters.mqtt import Client",
        "import gridpilot",
        "import os",
        "import io",
        "import socket",
        "from pathlib import Path",
        "import logging",
        "import structlog",
        "import asyncio",
        "import subprocess",
        "data = open('prices.csv').read()",
        "print('planned')",
        "import time\nnow = time.time()",
        "import time\ntime.sleep(1)",
        "from time import monotonic",
    ],
)
def test_the_purity_check_catches(source: str) -> None:
    """The check flags every kind of breach it exists for: our other packages, I/O and logging
    libraries, I/O builtins and wall-clock reads."""
    assert optimizer_breaches(source)


def test_the_purity_check_allows_what_the_optimizer_needs() -> None:
    """Numerics, stdlib data types, our own modules and a perf_counter duration pass."""
    source = (
        "from __future__ import annotations\nimport time\nimport numpy as np\n"
        "import scipy.sparse as sp\nfrom ortools.linear_solver.python import model_builder_helper\n"
        "from gridpilot.optimizer.problem import Problem\nfrom . import plan\n"
        "from dataclasses import dataclass\nstarted = time.perf_counter()\n"
    )
    assert optimizer_breaches(source) == []


def test_the_optimizer_is_pure() -> None:
    """No module of `optimizer` imports our other packages or anything that does I/O, calls an
    I/O builtin, or reads the wall clock."""
    modules = _modules("optimizer")
    assert modules
    breaches = {
        str(path.relative_to(ROOT)): found
        for path in modules
        if (found := optimizer_breaches(path.read_text(encoding="utf-8")))
    }
    assert breaches == {}
