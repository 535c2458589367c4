"""Names that come from the kernel or from files reach the terminal escaped (issue 19.10).

configfs takes any directory name root gives it: a hand-made subsystem or host whose name
holds ESC (a terminal escape sequence: clear the screen, set the window title, recolour) or a
newline (a forged line of output) must not reach a terminal raw through ``status --all``,
``clear --all --dry-run``, ``plan``, the shell's ``ls`` or an error message. ``--json`` keeps
the exact name (JSON escapes control characters itself)."""

from __future__ import annotations

import io
import json

import pytest

from nvmet_p2p import cli
from nvmet_p2p.output import safe, safe_lines, table
from nvmet_p2p.shell.app import ShellApp
from nvmet_p2p.shell.p2p import P2pContext
from nvmet_p2p.shell.session import Session
from support.fakenvmet import FakeNvmet
from support.machine import lab_machine

#: clears the screen, sets the window title, and starts a forged line
EVIL = "nqn.2026-01.io.evil:a\x1b[2J\x1b]0;owned\x07\nnvmet-p2p: all good"
EVIL_HOST = "host\x1b[31mred\u202egnp.exe"
SHOWN = "nqn.2026-01.io.evil:a\\x1b[2J\\x1b]0;owned\\x07\\nnvmet-p2p: all good"


def raw(text: str) -> list[str]:
    """What must never reach the terminal: ESC, BEL, the bidi override, a forged line."""
    bad = [c for c in ("\x1b", "\x07", "\u202e") if c in text]
    bad += [ln for ln in text.split("\n") if ln.startswith("nvmet-p2p: all good")]
    return bad


def test_safe_escapes_what_is_not_printable_and_nothing_else():
    assert safe("nqn.2014-08.org.nvmexpress:uuid:1 × é") == "nqn.2014-08.org.nvmexpress:uuid:1 × é"
    assert safe(EVIL) == SHOWN
    assert safe("a\tb\rc\x7fd\x9be\u2028f\U000e0001") == "a\\tb\\rc\\x7fd\\x9be\\u2028f\\U000e0001"
    assert safe(safe(EVIL)) == safe(EVIL)                   # escaping twice changes nothing
    assert safe_lines(["one", "two\nthree"]) == "one\ntwo\\nthree"
    t = table(["name"], [[EVIL]])
    assert t.split("\n")[2] == SHOWN and len(t.split("\n")) == 3


@pytest.fixture
def evil_tree(tmp_path):
    cfs = FakeNvmet(str(tmp_path / "root"))
    cfs.mkdir(f"subsystems/{EVIL}")
    cfs.mkdir(f"hosts/{EVIL_HOST}")
    cfs.mkdir("ports/7")
    return cfs, str(tmp_path / "state")


def test_status_all_escapes_hand_made_names_and_json_keeps_them(evil_tree, capsys):
    cfs, sd = evil_tree
    assert cli.main(["status", "--root", cfs.root, "--state-dir", sd, "--all"]) == 0
    out = capsys.readouterr().out
    assert raw(out) == [] and f"subsystem {SHOWN} " in out
    assert cli.main(["status", "--root", cfs.root, "--state-dir", sd, "--all", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["nqn"] for s in doc["subsystems"]] == [EVIL]


def test_clear_all_dry_run_escapes_hand_made_names(evil_tree, capsys):
    cfs, sd = evil_tree
    assert cli.main(["clear", "--root", cfs.root, "--state-dir", sd, "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert raw(out) == [], out
    assert f"- subsystem {SHOWN}" in out and "- host host\\x1b[31mred\\u202egnp.exe" in out
    assert cli.main(["clear", "--root", cfs.root, "--state-dir", sd, "--all", "--dry-run",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["key"] for c in doc["plan"]["changes"]} >= {EVIL, EVIL_HOST}


def test_error_messages_escape_names(tmp_path, capsys):
    missing = str(tmp_path / "state\x1b[2J\nnvmet-p2p: all good.json")
    assert cli.main(["plan", "--state", missing, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert raw(err) == [] and "state\\x1b[2J\\nnvmet-p2p: all good.json" in err, err


def test_shell_ls_escapes_names(evil_tree):
    cfs, sd = evil_tree
    out, err = io.StringIO(), io.StringIO()
    app = ShellApp(Session(cfs.root, sd, cfs=cfs), P2pContext(cfs.root, inventory=lab_machine()),
                   out=out, err=err)
    rc = app.run_script([("command 1", "ls /"), ("command 2", "ls /hosts"),
                         ("command 3", "cd /subsystems"), ("command 4", "ls")], finish=False)
    text = out.getvalue() + err.getvalue()
    assert raw(text) == [], text
    assert SHOWN in text and "host\\x1b[31mred\\u202egnp.exe" in text
    assert rc == 0, err.getvalue()
