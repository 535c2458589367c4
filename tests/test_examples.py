"""Every example of every command (its --help EXAMPLES and its man page) runs: against the test
machine here, or -- marked ``lab`` -- in the lab (tests/lab/test_lab_examples.py)."""

from __future__ import annotations

import shlex

import pytest
from examples import all_examples, build_sandbox, run_line, run_until_interrupted


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    base = tmp_path_factory.mktemp("examples")
    return base, build_sandbox(base)


EXAMPLES = [(name, ex) for name, ex in all_examples() if not ex.lab]


def test_every_command_has_examples():
    names = {name for name, _ in all_examples()}
    from nvmet_p2p import cli
    assert names == {m.NAME for m in cli.command_modules()}
    assert EXAMPLES, "no example runs in the fast tier"


def test_examples_name_their_command():
    for name, ex in all_examples():
        words = shlex.split(ex.command)
        assert any(a == "nvmet-p2p" and b == name for a, b in zip(words, words[1:])) or \
            f"<(nvmet-p2p {name} " in ex.command, ex.command


@pytest.mark.parametrize("name,ex", EXAMPLES, ids=[ex.command for _, ex in EXAMPLES])
def test_example_runs_on_the_test_machine(sandbox, name, ex):
    base, env = sandbox
    if ex.interrupt:
        rc, out, err = run_until_interrupted(ex.command, base, env)
        assert rc == 130, f"{ex.command}: status {rc} after Ctrl-C\n{err}"
    else:
        r = run_line(ex.command, base, env)
        rc, out, err = r.returncode, r.stdout, r.stderr
        assert rc == ex.status, f"{ex.command}: status {rc}, expected {ex.status}\n{out}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
