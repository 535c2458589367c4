"""Lint in the fast tier: ruff with the project's configuration (pyproject.toml [tool.ruff]:
pyflakes rules, import order, the 120-column limit) over the whole checkout, so code landed by
anyone is linted. ruff comes with the test extra (``pip install -e '.[test]'``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    assert importlib.util.find_spec("ruff") is not None, \
        "ruff is not installed: it is part of the test extra (bash tools/lab/setup installs it)"
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format",
                        "concise", str(CHECKOUT)], capture_output=True, text=True, cwd=CHECKOUT)
    assert r.returncode == 0, f"ruff found problems (fix them, `ruff check --fix` sorts imports):\n" \
                              f"{r.stdout}{r.stderr}"
