"""The largest functions of a package by line count (issue 14's closing note: the five
largest functions before and after the restructuring).

A function's lines run from its ``def`` (decorators excluded) to its last line; its code
lines are those less blank lines, comment lines and its docstring. A nested function counts
within its enclosing one and on its own. ``python bench/function_sizes.py [ROOT [N]]``
(default: ``orchestrator``, 10) prints the N largest as ``lines  code  path:line  qualified
name``, largest first.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

Functions = ast.FunctionDef | ast.AsyncFunctionDef


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, Functions]]:
    """Every function in ``tree`` with its qualified name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{node.name}", node
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def code_lines(node: Functions, lines: list[str]) -> int:
    """The lines of ``node`` that are neither blank, nor only a comment, nor its docstring."""
    body = lines[node.lineno - 1:node.end_lineno]
    code = sum(1 for line in body if line.strip() and not line.strip().startswith("#"))
    first = node.body[0]
    if ast.get_docstring(node) is not None:
        code -= (first.end_lineno or first.lineno) - first.lineno + 1
    return code


def sizes(root: Path) -> list[tuple[int, int, str, int, str]]:
    """(lines, code lines, file, first line, qualified name) of every function under
    ``root``, largest first."""
    out: list[tuple[int, int, str, int, str]] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for name, node in functions(ast.parse(text, filename=str(path))):
            end = node.end_lineno or node.lineno
            out.append((end - node.lineno + 1, code_lines(node, lines), str(path),
                        node.lineno, name))
    return sorted(out, key=lambda row: (-row[0], row[2], row[3]))


def main(root: str = "orchestrator", count: int = 10) -> None:
    print("lines  code  where")
    for lines, code, path, line, name in sizes(Path(root))[:count]:
        print(f"{lines:5d} {code:5d}  {path}:{line}  {name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "orchestrator",
         int(sys.argv[2]) if len(sys.argv) > 2 else 10)
