"""An apply whose rollback itself fails (issue 19): the kernel refuses a step, and then refuses
one of the undo steps too (EBUSY, ENODEV while undoing). Every failure test elsewhere asserts a
clean rollback; here the journal must be kept, the error must say so, and the next command must
retry the rollback and converge to the tree before the apply -- or, while the cause persists,
refuse with the same clear error and change nothing else. On the fake configfs."""

from __future__ import annotations

import errno
import os

import fakenvmet
import pytest
from fakenvmet import FakeNvmet, dump
from test_journal import OLD, S1, go, lab_inventory, new_doc

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import journal as jr
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import ApplyFailed, ManagedStore, reconcile, settle
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.nvmet.plan import build_plan


class Faults:
    """Refuse chosen mutations of the fake, ``times`` times each (what a busy or vanished
    kernel object answers), then behave again."""

    def __init__(self, cfs: FakeNvmet):
        self.table: dict[tuple[str, str], list[int]] = {}
        real = cfs._mut

        def mut(op, rel, fn, *extra):
            left = self.table.get((op, rel))
            if left:
                e = left.pop(0)
                cfs.writes += 1
                from nvmet_p2p.nvmet.configfs import ConfigfsError
                raise ConfigfsError(op, rel, OSError(e, os.strerror(e)))
            return real(op, rel, fn, *extra)
        cfs._mut = mut

    def add(self, op: str, rel: str, err: int, times: int = 1) -> None:
        self.table[(op, rel)] = [err] * times


@pytest.fixture
def env(tmp_path):
    cfs = FakeNvmet(str(tmp_path / "root"))
    return cfs, str(tmp_path / "state"), Faults(cfs)


def the_plan(cfs, sd):
    return build_plan(read_state(cfs), statefile.parse(new_doc()), ManagedStore(sd).load(), prune=True)


#: the step the kernel refuses: the port's new service id, written while the port is detached
#: (its links removed); the undo of that detach is a re-link
REFUSED = ("write", "ports/1/addr_trsvcid")
RELINK = ("link", f"ports/1/subsystems/{S1}")


def failing_apply(env, undo_faults: int, undo_errno: int = errno.EBUSY):
    """OLD, then the change to the new state: the port's address write is refused (EINVAL),
    and the undo of the port's detach (re-linking S1) answers ``undo_errno`` ``undo_faults``
    times."""
    cfs, sd, faults = env
    go((cfs, sd), OLD)
    before, m_before = dump(cfs), ManagedStore(sd).load()
    ops = [(o.action, o.path) for o in the_plan(cfs, sd).ops]
    assert ops.index(("unlink", RELINK[1])) < ops.index(REFUSED) < ops.index(RELINK)
    faults.add(*REFUSED, errno.EINVAL)
    faults.add(*RELINK, undo_errno, times=undo_faults)
    with pytest.raises(ApplyFailed) as e:
        go((cfs, sd), new_doc(), prune=True)
    return before, m_before, e.value


def test_a_rollback_that_fails_keeps_the_journal_and_the_next_command_converges(env):
    cfs, sd, _faults = env
    before, m_before, exc = failing_apply(env, undo_faults=1)
    assert exc.errno == errno.EINVAL and "ports/1/addr_trsvcid" in str(exc)
    assert "ROLLBACK INCOMPLETE" in str(exc) and "The journal is kept" in str(exc)
    kept = [(o.action, o.path) for o in jr.load(sd).ops]      # the journal kept: its steps
    detach_step = 1 + kept.index(("unlink", RELINK[1]))
    assert exc.rollback_errors == [f"undo of step {detach_step}: link {RELINK[1]}: "
                                   f"Device or resource busy"]
    assert jr.pending(sd)                                    # the next command retries
    assert f"ports/1/subsystems/{S1}" not in dump(cfs)       # the tree is not as before yet
    assert dump(cfs) != before
    out = go((cfs, sd), OLD)                                 # the next command, any command
    assert out.recovery is not None and out.recovery.action == "rolled back"
    assert out.recovery.writes >= 1 and out.plan.ops == []   # back to OLD before it planned
    assert dump(cfs) == before and ManagedStore(sd).load() == m_before
    assert not jr.pending(sd)


@pytest.mark.parametrize("undo_errno", [errno.EBUSY, errno.ENODEV])
def test_while_the_cause_persists_every_command_refuses_and_changes_nothing(env, undo_errno):
    cfs, sd, _faults = env
    # the undo fails, and so do the next two settles' re-links; the third converges
    before, m_before, _exc = failing_apply(env, undo_faults=3, undo_errno=undo_errno)
    assert jr.pending(sd)
    for _ in range(2):
        half = dump(cfs)
        with pytest.raises(NvmetP2PError, match="rolling it back failed.*journal .* is kept") as e:
            settle(cfs, sd, cfs.root)
        assert os.strerror(undo_errno) in str(e.value)
        assert dump(cfs) == half and jr.pending(sd)          # its own undo put back what it did
    out = reconcile(cfs.root, statefile.parse(OLD), sd, cfs=cfs)
    assert out.recovery.action == "rolled back" and out.plan.ops == []
    assert dump(cfs) == before and not jr.pending(sd)
    assert ManagedStore(sd).load() == m_before


def test_the_cli_says_the_journal_is_kept(env, tmp_path, capsys, monkeypatch):
    import json

    from nvmet_p2p import cli
    cfs, sd, faults = env
    go((cfs, sd), OLD)
    faults.add(*REFUSED, errno.EINVAL)
    faults.add(*RELINK, errno.ENODEV)
    fakenvmet.use(monkeypatch, cfs)
    f = tmp_path / "new.json"
    f.write_text(json.dumps(new_doc()))
    rc = cli.main(["apply", "--state", str(f), "--prune", "--root", cfs.root, "--state-dir", sd,
                   "--inventory", lab_inventory(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "ROLLBACK INCOMPLETE" in err and "No such device" in err
    assert "the next nvmet-p2p command tries the rollback again" in err
    g = tmp_path / "old.json"
    g.write_text(json.dumps(OLD))
    assert cli.main(["apply", "--state", str(g), "--root", cfs.root, "--state-dir", sd,
                     "--inventory", lab_inventory(tmp_path)]) == 0
    assert "did not finish; rolled it back" in capsys.readouterr().err
