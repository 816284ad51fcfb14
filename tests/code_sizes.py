"""The largest classes and functions of the packages, in lines (not a test; `make sizes`).

Run: `.venv/bin/python -m tests.code_sizes [--top 10]`. A unit's size is its source lines from
its `def` or `class` line (decorators included) to its last line, docstring and comments
included: what a reader has to hold at once.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "optimizer", "adapters")


@dataclass(frozen=True, slots=True)
class Unit:
    kind: str  # "class" or "function"
    name: str  # qualified: Class.method
    path: str
    lines: int


def units(root: Path = ROOT) -> list[Unit]:
    """Every class and function (methods and nested ones included) of the packages."""
    found: list[Unit] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += _walk(tree, (), str(path.relative_to(root)))
    return found


def _walk(node: ast.AST, scope: tuple[str, ...], path: str) -> list[Unit]:
    found: list[Unit] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
            assert child.end_lineno is not None
            kind = "class" if isinstance(child, ast.ClassDef) else "function"
            name = ".".join((*scope, child.name))
            found.append(Unit(kind, name, path, child.end_lineno - first + 1))
            found += _walk(child, (*scope, child.name), path)
        else:
            found += _walk(child, scope, path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    everything = units()
    for kind in ("class", "function"):
        ranked = sorted((u for u in everything if u.kind == kind), key=lambda u: -u.lines)
        print(f"largest {kind}es" if kind == "class" else f"largest {kind}s")
        for unit in ranked[: args.top]:
            print(f"  {unit.lines:5d}  {unit.name}  ({unit.path})")


if __name__ == "__main__":
    main()
