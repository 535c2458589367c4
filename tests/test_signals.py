"""Signals during an apply (issue 19.8): every catchable signal whose default action ends the
process ends an apply with a rollback, as SIGTERM does -- SIGHUP (an SSH session dropping),
SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM -- and exits 128 + the signal's number; a signal the apply
inherited as ignored (a background job's SIGINT and SIGQUIT, ``nohup``'s SIGHUP) stays ignored.
SIGPIPE is not among them: Python ignores it, a closed pipe is an EPIPE on the write, and a
progress line that cannot be shown does not stop an apply. On the fake configfs
(tests/fakenvmet.py), each apply in a forked child so that a signal that is not handled kills
the child, not the test."""

from __future__ import annotations

import os
import signal

import fakenvmet
import pytest
from fakenvmet import FakeNvmet, dump
from test_journal import OLD, go, lab_inventory, new_doc

from nvmet_p2p.nvmet import journal as jr
from nvmet_p2p.nvmet.apply import TEST_SIGNAL_ENV, ApplyInterrupted, ManagedStore

ROLLED_BACK = ("HUP", "QUIT", "USR1", "USR2", "ALRM", "TERM", "INT")


@pytest.fixture
def env(tmp_path):
    return FakeNvmet(str(tmp_path / "root")), str(tmp_path / "state")


def in_child(env, doc, *, hook: str, ignore: tuple[str, ...] = (), **kw) -> tuple[str, int]:
    """Run the apply in a forked child with the test-only signal hook; ("exit", status) or
    ("signal", number) of the child."""
    pid = os.fork()
    if pid == 0:   # child
        status = 0
        try:
            # as started from a terminal: a test run started under nohup, or as a background
            # job of a non-interactive shell (SIGINT, SIGQUIT ignored), must not change it
            for name in ROLLED_BACK:
                signal.signal(getattr(signal, "SIG" + name),
                              signal.SIG_IGN if name in ignore else signal.SIG_DFL)
            os.environ[TEST_SIGNAL_ENV] = hook
            go(env, doc, **kw)
        except ApplyInterrupted as exc:
            status = exc.exit_status if not exc.rollback_errors else 99
        except BaseException:
            status = 98
        finally:
            os._exit(status)
    _, st = os.waitpid(pid, 0)
    return ("signal", os.WTERMSIG(st)) if os.WIFSIGNALED(st) else ("exit", os.WEXITSTATUS(st))


@pytest.mark.parametrize("name", ROLLED_BACK)
def test_a_fatal_signal_rolls_the_apply_back(env, name):
    cfs, sd = env
    go(env, OLD)
    before, m_before = dump(cfs), ManagedStore(sd).load()
    got = in_child(env, new_doc(), hook=f"6:{name}", prune=True)
    signum = getattr(signal, "SIG" + name)
    assert got == ("exit", 128 + signum)          # not killed: rolled back, then 128+N
    assert dump(cfs) == before and ManagedStore(sd).load() == m_before
    assert not jr.pending(sd)


@pytest.mark.parametrize("name", ["INT", "QUIT", "HUP"])
def test_an_inherited_ignored_signal_stays_ignored(env, name):
    """A background job (``apply &`` from a script: SIGINT and SIGQUIT ignored) or ``nohup``
    (SIGHUP ignored): the signal does not stop the apply, which completes."""
    cfs, sd = env
    go(env, OLD)
    go(env, new_doc(), prune=True)
    after = dump(cfs)
    go(env, OLD, prune=True)
    got = in_child(env, new_doc(), hook=f"6:{name}", ignore=(name,), prune=True)
    assert got == ("exit", 0)
    assert dump(cfs) == after and not jr.pending(sd)


def test_handlers_are_given_back_after_the_apply(env):
    cfs, sd = env
    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGINT)}
    go(env, OLD)
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_progress_line_that_cannot_be_written_does_not_stop_the_apply(env, tmp_path):
    """SIGHUP after an SSH session dropped: the terminal is gone and stderr answers EIO (a
    closed pipe: EPIPE). The rollback still runs; the progress line is just not shown."""
    cfs, sd = env
    go(env, OLD)
    before = dump(cfs)

    def broken(message):
        raise OSError(5, "Input/output error")
    assert in_child(env, new_doc(), hook="6:HUP", prune=True, progress=broken) == ("exit", 129)
    assert dump(cfs) == before and not jr.pending(sd)


def test_sighup_from_the_cli_exits_129_even_without_a_terminal(env, tmp_path, monkeypatch):
    """The whole command after an SSH session dropped: SIGHUP mid-apply, stderr answers EIO;
    the tree is as before and the status says which signal (129)."""
    import io
    import json
    import sys

    from nvmet_p2p import cli
    cfs, sd = env
    go(env, OLD)
    before = dump(cfs)
    f = tmp_path / "new.json"
    f.write_text(json.dumps(new_doc()))
    fakenvmet.use(monkeypatch, cfs)
    inv = lab_inventory(tmp_path)

    class HungUp(io.TextIOBase):
        def write(self, s):
            raise OSError(5, "Input/output error")
    pid = os.fork()
    if pid == 0:
        status = 97
        try:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)      # not inherited ignored (nohup)
            os.environ[TEST_SIGNAL_ENV] = "6:HUP"
            sys.stderr = HungUp()
            status = cli.main(["apply", "--state", str(f), "--prune", "--root", cfs.root,
                               "--state-dir", sd, "--inventory", inv])
        finally:
            os._exit(status)
    _, st = os.waitpid(pid, 0)
    assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 129
    assert dump(cfs) == before and not jr.pending(sd)
