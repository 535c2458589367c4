"""Which lab topologies ``tools/lab/check`` boots, and which test files each boot collects.

Input: the lab tests' node ids with the topologies each asks for (``tests/conftest.py`` writes
them when ``NVMET_P2P_LAB_LIST_TOPOLOGIES`` is set; ``"all"`` = every shipped topology).
A boot collects only the files holding its tests: a guest collecting the whole suite spends
about a minute on it under TCG. Order: ``default`` (by far the longest) first, then by number
of tests, so two boots at once end at about the same time.
"""

from __future__ import annotations

import json
import sys

from . import topology


def plan(tests: dict[str, list[str]], only: list[str] | None = None,
         shipped: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """``[(topology, [test file, ...]), ...]`` in boot order; ``only`` (``--topology``) keeps
    just those, in that order of preference, each even when no test wants it (no files)."""
    shipped = topology.available() if shipped is None else shipped
    files: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for nodeid, names in tests.items():
        for name in (shipped if "all" in names else names):
            files.setdefault(name, set()).add(nodeid.split("::")[0])
            count[name] = count.get(name, 0) + 1
    names = list(dict.fromkeys(only)) if only else list(files)
    return [(n, sorted(files.get(n, ())))
            for n in sorted(names, key=lambda n: (n != "default", -count.get(n, 0), n))]


def main(argv: list[str]) -> int:
    """``selection.py TESTS.json [TOPOLOGY ...]``: one line per boot, ``name file file ...``."""
    with open(argv[0]) as f:
        tests = json.load(f)
    for name, paths in plan(tests, argv[1:]):
        if not paths:
            print(f"check: no selected lab test runs in topology {name}", file=sys.stderr)
        print(name, *paths)
    return 0
