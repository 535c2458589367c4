"""Lint in the fast tier: ruff with the project's configuration (pyproject.toml [tool.ruff]:
pyflakes rules, import order, the 120-column limit) over the whole checkout, so code landed by
anyone is linted. ruff comes with the test extra (``pip install -e '.[test]'``)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import nvmet_p2p

CHECKOUT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    assert importlib.util.find_spec("ruff") is not None, \
        "ruff is not installed: it is part of the test extra (bash tools/lab/setup installs it)"
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format",
                        "concise", str(CHECKOUT)], capture_output=True, text=True, cwd=CHECKOUT)
    assert r.returncode == 0, f"ruff found problems (fix them, `ruff check --fix` sorts imports):\n" \
                              f"{r.stdout}{r.stderr}"



# ----------------------------------------------------------------------------------------------
# Imports that name something the module does not have (pyflakes cannot see them: the shell's
# `set p2pmem=on` once ended in "ImportError: cannot import name 'kstrtobool'", a function-level
# import of a name that had moved)
# ----------------------------------------------------------------------------------------------

def _from_imports(path: Path):
    """Every ``from nvmet_p2p... import name`` of a file, at any depth: (line, module, name)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 \
                and (node.module or "").split(".")[0] == "nvmet_p2p":
            for a in node.names:
                yield node.lineno, node.module, a.name


def missing_names(paths: list[Path]) -> list[str]:
    """``file:line: what is wrong`` for every such import that would fail."""
    bad = []
    for path in paths:
        for line, module, name in _from_imports(path):
            try:
                mod = importlib.import_module(module)
            except ImportError as exc:
                bad.append(f"{path.name}:{line}: {module}: {exc}")
                continue
            if name != "*" and not hasattr(mod, name) and not (
                    hasattr(mod, "__path__") and importlib.util.find_spec(f"{module}.{name}")):
                bad.append(f"{path.name}:{line}: {module} has no {name!r}")
    return bad


def test_the_import_check_finds_a_name_a_module_does_not_have(tmp_path):
    f = tmp_path / "probe.py"
    f.write_text("def f():\n    from nvmet_p2p.nvmet.configfs import kstrtobool\n"
                 "from nvmet_p2p.kernel import kstrtobool\nfrom nvmet_p2p.nvmet import spec\n")
    assert missing_names([f]) == ["probe.py:2: nvmet_p2p.nvmet.configfs has no 'kstrtobool'"]


def test_every_imported_name_exists():
    files = [p for d in ("nvmet_p2p", "tests", "tools", "ansible_collections")
             for p in sorted((CHECKOUT / d).rglob("*.py"))]
    assert missing_names(files) == []


def test_every_module_imports_by_itself():
    """Each module of the package imports first, alone (the package's other modules dropped
    from ``sys.modules`` before each), in a fresh interpreter: a broken top-level import, or a
    cycle only one import order shows."""
    pkg = Path(nvmet_p2p.__file__).parent
    mods = [".".join(p.relative_to(pkg.parent).with_suffix("").parts).removesuffix(".__init__")
            for p in sorted(pkg.rglob("*.py")) if p.stem != "__main__"]
    code = ("import importlib, sys\n"
            "for m in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k.split('.')[0] == 'nvmet_p2p']:\n"
            "        del sys.modules[k]\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception as exc:\n        print(f'{m}: {type(exc).__name__}: {exc}')\n")
    r = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True, cwd=CHECKOUT)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
