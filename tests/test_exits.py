"""One meaning per exit status (issue 22.9): the table of nvmet_p2p.exits is what --help and
nvmet-p2p(8) print, and the code returns, raises and assigns exit statuses only through it.

The code is read, not trusted: every ``exit_status`` assignment in the package, every status a
command's ``run`` (and what it hands its result to) returns, every ``sys.exit``/``SystemExit``
and every ``*_EXIT`` table must name a code of nvmet_p2p.exits; a literal number other than 0
there is a second, undocumented meaning."""

from __future__ import annotations

import ast
import pathlib

import pytest

import nvmet_p2p
from nvmet_p2p import cli, exits

PKG = pathlib.Path(nvmet_p2p.__file__).parent
CODES = {n: getattr(exits, n) for n in dir(exits) if n.isupper() and isinstance(getattr(exits, n), int)}
#: functions whose return value is an exit status, besides every command module's run()
STATUS_FUNCTIONS = {("cli.py", "main"), ("shell/app.py", "run_script"), ("shell/app.py", "interact"),
                    ("service/watch.py", "run"), ("commands/_target.py", "failure_report")}


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        yield str(path.relative_to(PKG)), ast.parse(path.read_text())


def _literal_ints(node) -> list[int]:
    """Every integer literal in an expression (a status expression is small: any number in it
    is suspect)."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and type(n.value) is int]


def _status_functions(rel: str, tree) -> list[ast.FunctionDef]:
    """``run`` and what it returns the result of, in a command module; the named others."""
    funcs = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    todo = [name for (r, name) in STATUS_FUNCTIONS if r == rel and name in funcs]
    if rel.startswith("commands/"):
        todo += [n for n in funcs if n == "run" or n.startswith(("run_", "_run"))]
    seen: dict[str, ast.FunctionDef] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = funcs[name]
        for ret in ast.walk(funcs[name]):
            if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Call):
                f = ret.value.func
                callee = f.id if isinstance(f, ast.Name) else None
                if callee in funcs:
                    todo.append(callee)
    return list(seen.values())


def test_every_exit_status_in_the_code_is_a_named_code():
    bad = []
    for rel, tree in _modules():
        if rel == "exits.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "") for t in targets]
                if any(n == "exit_status" or n.endswith("_EXIT") or n.startswith("EXIT_") for n in names):
                    if _literal_ints(node.value):
                        bad.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Call):
                f = ast.unparse(node.func)
                if f in ("sys.exit", "SystemExit", "exit", "os._exit") and \
                        [v for v in _literal_ints(node) if v != 0]:
                    bad.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        for func in _status_functions(rel, tree):
            for ret in ast.walk(func):
                if isinstance(ret, ast.Return) and ret.value is not None:
                    if [v for v in _literal_ints(ret.value) if v != 0]:
                        bad.append(f"{rel}:{ret.lineno} ({func.name}): {ast.unparse(ret)}")
    assert bad == []


def test_the_scan_sees_the_status_paths():
    """(The scan above is not vacuous: it follows every command's run, the shell and main.)"""
    followed = {(rel, f.name) for rel, tree in _modules() for f in _status_functions(rel, tree)}
    commands = {m.__name__.rsplit(".", 1)[1] for m in cli.command_modules()}
    assert {f"commands/{c}.py" for c in commands} <= {rel for rel, _ in followed}
    assert STATUS_FUNCTIONS <= followed
    assert ("commands/p2p_test.py", "_run_fio") in followed


def test_codes_have_one_meaning_each():
    numbers = [c for c, _ in exits.TABLE]
    assert len(numbers) == len(set(numbers))
    assert {str(v) for v in CODES.values() if v < 128} == {c for c in numbers if c.isdigit()}
    assert exits.INTERRUPTED == exits.signalled(2) == 130 and "128+N" in numbers


def test_every_code_is_used_by_the_code():
    """No row of the table that nothing returns (the signals' row is 128 + N)."""
    used = set()
    for _rel, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id == "exits":
                used.add(node.attr)
    assert {n for n in CODES} <= used | {"OK"}, set(CODES) - used


def test_help_prints_the_table(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status:" in out
    for code, meaning in exits.TABLE:
        assert f"{code} {' '.join(meaning.split())}" in out, code
