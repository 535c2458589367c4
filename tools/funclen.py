#!/usr/bin/env python3
"""Functions longer than a reader can hold: every function (methods and nested ones too) of
the given directories (default: nvmet_p2p) longer than LIMIT lines (default 50), counted from
its first decorator to its last line, docstring included, longest first.

    .venv/bin/python tools/funclen.py [--limit N] [DIR...]
"""

from __future__ import annotations

import argparse
import ast
import pathlib


def long_functions(roots: list[str], limit: int) -> tuple[list[tuple[int, str]], int]:
    rows: list[tuple[int, str]] = []
    for root in roots:
        for path in sorted(pathlib.Path(root).rglob("*.py")):
            _walk(ast.parse(path.read_text()), str(path), "", rows)
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [r for r in rows if r[0] > limit], len(rows)


def _walk(node: ast.AST, path: str, prefix: str, rows: list[tuple[int, str]]) -> None:
    for c in ast.iter_child_nodes(node):
        if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([c.lineno] + [d.lineno for d in c.decorator_list])
            rows.append((c.end_lineno - start + 1, f"{path}:{c.lineno} {prefix}{c.name}"))
            _walk(c, path, f"{prefix}{c.name}.", rows)
        elif isinstance(c, ast.ClassDef):
            _walk(c, path, f"{prefix}{c.name}.", rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("roots", nargs="*", default=["nvmet_p2p"])
    a = ap.parse_args()
    big, total = long_functions(a.roots, a.limit)
    print(f"{len(big)} of {total} functions are longer than {a.limit} lines")
    for n, where in big:
        print(f"{n:5d}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
