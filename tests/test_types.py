"""The type checker in the fast tier: mypy, strict, on the modules pyproject.toml [tool.mypy]
lists (the typed part of the core packages nvmet/, pci/, policy/ and the leaves). mypy comes
with the test extra (``pip install -e '.[test]'``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def test_mypy_strict_finds_nothing():
    assert importlib.util.find_spec("mypy") is not None, \
        "mypy is not installed: it is part of the test extra (bash tools/lab/setup installs it)"
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--config-file",
                        str(CHECKOUT / "pyproject.toml")], capture_output=True, text=True, cwd=CHECKOUT)
    assert r.returncode == 0, f"mypy found problems:\n{r.stdout}{r.stderr}"


def test_the_configuration_is_strict(tmp_path):
    """(a check that cannot fail is none: an unannotated function fails under this config)"""
    probe = tmp_path / "probe.py"
    probe.write_text("def f(x):\n    return x\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--config-file",
                        str(CHECKOUT / "pyproject.toml"), str(probe)],
                       capture_output=True, text=True, cwd=CHECKOUT)
    assert r.returncode == 1 and "no-untyped-def" in r.stdout, r.stdout + r.stderr
