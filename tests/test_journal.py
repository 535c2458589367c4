"""Crash-consistent apply on the fake configfs (tests/fakenvmet.py): an apply killed after any
step k (SIGKILL in a forked child, through the test-only hook) is settled by the next call --
rolled back to exactly the tree before it, or completed when every step was done -- SIGTERM
and SIGINT roll back in-process, the lock waits or refuses, and an apply that changes nothing
writes no journal and calls no fsync. The real kernel: tests/lab/test_lab_crash.py."""

import copy
import json
import os
import signal
import threading
import time

import pytest
from fakenvmet import FakeNvmet, dump

from nvmet_p2p.errors import Busy
from nvmet_p2p.nvmet import journal as jr
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import (
    TEST_KILL_ENV,
    TEST_SIGNAL_ENV,
    ApplyInterrupted,
    ManagedStore,
    apply_lock,
    reconcile,
    settle,
)
from nvmet_p2p.nvmet.plan import Managed
from support.machine import lab_machine

S1, S2 = "nqn.2026-11.io.lab:s1", "nqn.2026-11.io.lab:s2"
H1 = "nqn.2014-08.org.nvmexpress:uuid:host1"
H2 = "nqn.2014-08.org.nvmexpress:uuid:host2"
KEY = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"
KEY2 = "DHHC-1:00:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xt:"


def ns(i, dev, p2p="0"):
    return {"nsid": i, "enable": 1, "p2pmem": p2p,
            "device": {"path": dev, "uuid": f"00000000-0000-4000-8000-{i:012x}"}}


OLD = {
    "hosts": [{"nqn": H1, "dhchap": {"key": KEY}}],
    "subsystems": [
        {"nqn": S1, "attr": {"allow_any_host": "0", "serial": "s1"}, "allowed_hosts": [H1],
         "namespaces": [ns(1, "/dev/nvme0n1", "0000:04:00.0"), ns(2, "/dev/nvme2n1"),
                        ns(3, "/dev/nvme1n1")]},
        {"nqn": S2, "attr": {"allow_any_host": "1", "serial": "s2"},
         "namespaces": [ns(1, "/dev/nvme3n1")]}],
    "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "10.77.0.1",
                                     "trsvcid": "4420"}, "subsystems": [S1, S2]}],
}


def lab_inventory(tmp_path) -> str:
    """The machine a state file's checks run against: the lab machine and new_doc's null_blk."""
    doc = lab_machine().to_dict()
    doc["blocks"]["nullb0"] = {"name": "nullb0", "dev": "251:0", "disk": None, "partitions": [],
                               "holders": [], "mounts": [], "swap": False}
    inv = tmp_path / "inventory.json"
    inv.write_text(json.dumps(doc))
    return str(inv)


def new_doc():
    """OLD changed in every way a plan can change it: a cycled namespace, a removed one (prune),
    a removed subsystem, a changed port address (detach/relink), a new host with a key, a key
    changed, new namespaces and a new port."""
    d = copy.deepcopy(OLD)
    d["hosts"][0]["dhchap"]["key"] = KEY2
    d["hosts"].append({"nqn": H2})
    s1 = d["subsystems"][0]
    s1["allowed_hosts"].append(H2)
    s1["namespaces"][0]["p2pmem"] = "0000:05:00.0"
    del s1["namespaces"][2]
    s1["namespaces"] += [ns(i, "/dev/nullb0") for i in range(4, 9)]
    del d["subsystems"][1]
    d["ports"][0]["subsystems"] = [S1]
    d["ports"][0]["addr"]["trsvcid"] = "4421"
    d["ports"].append({"portid": 2, "addr": {"trtype": "loop"}, "subsystems": [S1]})
    return d


@pytest.fixture
def env(tmp_path):
    return FakeNvmet(str(tmp_path / "root")), str(tmp_path / "state")


def go(env, doc, **kw):
    cfs, sd = env
    return reconcile(cfs.root, statefile.parse(doc), sd, cfs=cfs, **kw)


def killed_apply(env, doc, k, **kw) -> int:
    """Run the apply in a forked child that SIGKILLs itself after step ``k``; its exit signal."""
    pid = os.fork()
    if pid == 0:   # child
        try:
            os.environ[TEST_KILL_ENV] = str(k)
            go(env, doc, **kw)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0


def expected_states(env, tmp_path):
    """Dumps of the tree before and after the OLD -> NEW apply (and the managed sets)."""
    cfs, sd = env
    go(env, OLD)
    before, m_before = dump(cfs), ManagedStore(sd).load()
    out = go(env, new_doc(), prune=True)
    after, m_after = dump(cfs), ManagedStore(sd).load()
    go(env, OLD, prune=True)
    assert dump(cfs) == before            # (the fake gives the same tree back)
    return before, after, m_before, m_after, len(out.plan.ops)


def test_kill_after_every_step_settles_to_before_or_after(env, tmp_path):
    cfs, sd = env
    before, after, m_before, m_after, n = expected_states(env, tmp_path)
    assert n > 30
    seen = set()
    for k in list(range(0, n + 1)) + ["record"]:
        assert killed_apply(env, new_doc(), k, prune=True) == signal.SIGKILL, k
        assert jr.pending(sd), k
        # the managed set never misses what the dead apply created
        assert ManagedStore(sd).load().namespaces >= m_after.namespaces
        rec = settle(cfs, sd, cfs.root)
        assert not jr.pending(sd)
        got = dump(cfs)
        if k in (n, "record"):
            assert rec.action == "completed" and got == after, k
            assert ManagedStore(sd).load() == m_after
            go(env, OLD, prune=True)
        else:
            assert rec.action == "rolled back", k
            assert got == before, (k, sorted(set(got.items()) ^ set(before.items()))[:6])
            assert ManagedStore(sd).load() == m_before
        seen.add(rec.action)
        assert dump(cfs) == before
    assert seen == {"completed", "rolled back"}


def test_kill_during_a_first_apply_from_empty(env):
    cfs, sd = env
    empty = dump(cfs)
    for k in (1, 7, 20):
        assert killed_apply(env, OLD, k) == signal.SIGKILL
        rec = settle(cfs, sd, cfs.root)
        assert rec.action == "rolled back" and rec.writes > 0
        assert dump(cfs) == empty and ManagedStore(sd).load() == Managed()
    assert "rolled it back" in rec.message() and "as it was before" in rec.message()


def test_next_reconcile_settles_first_and_reports(env):
    cfs, sd = env
    go(env, OLD)
    assert killed_apply(env, new_doc(), 5, prune=True) == signal.SIGKILL
    out = go(env, OLD)
    assert out.recovery is not None and out.recovery.action == "rolled back"
    assert out.plan.ops == []                          # the tree was back to OLD before planning
    assert out.to_dict()["recovery"]["action"] == "rolled back"
    # a dry run (plan) settles too
    assert killed_apply(env, new_doc(), 9, prune=True) == signal.SIGKILL
    shown = go(env, OLD, dry_run=True)
    assert shown.recovery.action == "rolled back" and shown.plan.ops == []


def test_kill_after_the_journal_before_any_step(env):
    cfs, sd = env
    go(env, OLD)
    before = dump(cfs)
    assert killed_apply(env, new_doc(), 0, prune=True) == signal.SIGKILL
    rec = settle(cfs, sd, cfs.root)
    assert rec.action == "rolled back" and rec.writes == 0 and dump(cfs) == before


def test_journal_keeps_secrets_only_as_needed_and_is_0600(env):
    cfs, sd = env
    go(env, OLD)
    assert killed_apply(env, new_doc(), 3, prune=True) == signal.SIGKILL
    path = jr.journal_path(sd)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    text = open(path).read()
    assert KEY2 not in text                  # the new key: only its digest
    assert KEY in text                       # the old one: needed to put it back
    settle(cfs, sd, cfs.root)


@pytest.mark.parametrize("sig,status", [("TERM", 143), ("INT", 130)])
def test_sigterm_and_sigint_roll_back_in_process(env, monkeypatch, sig, status):
    cfs, sd = env
    go(env, OLD)
    before, m_before = dump(cfs), ManagedStore(sd).load()
    monkeypatch.setenv(TEST_SIGNAL_ENV, f"6:{sig}")
    with pytest.raises(ApplyInterrupted) as e:
        go(env, new_doc(), prune=True)
    assert e.value.exit_status == status and e.value.step == 6 and not e.value.completed
    assert e.value.rolled_back == 6 and "configfs is as before" in str(e.value)
    assert dump(cfs) == before and ManagedStore(sd).load() == m_before
    assert not jr.pending(sd)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL      # handlers restored


def test_signal_after_the_last_step_keeps_the_complete_apply(env, monkeypatch):
    cfs, sd = env
    monkeypatch.setenv(TEST_SIGNAL_ENV, "record:TERM")
    with pytest.raises(ApplyInterrupted) as e:
        go(env, OLD)
    assert e.value.completed and e.value.exit_status == 143
    assert ManagedStore(sd).load().subsystems == {S1, S2} and not jr.pending(sd)


def test_unchanged_apply_writes_no_journal_and_no_fsync(env, monkeypatch):
    cfs, sd = env
    go(env, OLD)
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    real_open = os.open
    opened = []

    def spy(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and os.path.basename(str(path)) != "lock":
            opened.append(path)
        return real_open(path, flags, *a, **k)
    monkeypatch.setattr(os, "open", spy)
    files = sorted(os.listdir(sd))
    out = go(env, OLD)
    assert out.plan.ops == [] and calls == [] and opened == []
    assert sorted(os.listdir(sd)) == files


def test_changing_apply_journals_and_cleans_up(env, monkeypatch):
    cfs, sd = env
    seen = {}
    real_begin = jr.begin

    def spy(directory, c, plan, managed_before, **kw):
        rec = real_begin(directory, c, plan, managed_before, **kw)
        seen["on_disk"] = json.load(open(jr.journal_path(directory)))
        seen["writes_so_far"] = c.writes
        return rec
    monkeypatch.setattr(jr, "begin", spy)
    out = go(env, OLD)
    assert seen["writes_so_far"] == 0                        # before the first configfs write
    assert seen["on_disk"]["steps"] == len(out.plan.ops)
    assert all(f["dir"] is False for f in seen["on_disk"]["before"] if "dir" in f)
    assert not jr.pending(sd)


def test_lock_waits_then_proceeds_or_refuses(env):
    cfs, sd = env
    release = threading.Event()

    def holder():
        with apply_lock(sd):
            release.wait(5)
    t = threading.Thread(target=holder)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    with pytest.raises(Busy, match="waited 0.3 s"):
        go(env, OLD, lock_timeout=0.3)
    assert 0.25 < time.monotonic() - t0 < 3 and cfs.writes == 0
    threading.Timer(0.3, release.set).start()
    out = go(env, OLD, lock_timeout=5)
    t.join()
    assert out.result.writes > 0


def test_concurrent_applies_end_in_one_desired_state(env):
    """Two writers racing (threads, each its own reconcile): serialized by the lock; the tree is
    exactly one of the two desired states, the managed set matches it."""
    cfs, sd = env
    go(env, OLD)
    a_doc, b_doc = OLD, new_doc()
    go(env, b_doc, prune=True)
    b_dump = dump(cfs)
    go(env, a_doc, prune=True)
    a_dump = dump(cfs)
    errors = []

    def run(doc):
        try:
            go(env, doc, prune=True, lock_timeout=10)
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)
    ts = [threading.Thread(target=run, args=(d,)) for d in (b_doc, a_doc, b_doc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert dump(cfs) in (a_dump, b_dump)


def test_journal_from_another_boot_is_discarded_with_the_union(env):
    cfs, sd = env
    bid = os.path.join(cfs.root, "proc/sys/kernel/random")
    os.makedirs(bid)
    with open(os.path.join(bid, "boot_id"), "w") as f:
        f.write("boot-1\n")
    go(env, OLD)
    assert killed_apply(env, new_doc(), 10, prune=True) == signal.SIGKILL
    with open(os.path.join(bid, "boot_id"), "w") as f:
        f.write("boot-2\n")
    rec = settle(cfs, sd, cfs.root)
    assert rec.action == "discarded" and "earlier boot" in rec.reason
    m = ManagedStore(sd).load()
    assert {(S1, 4), (S1, 3), (S2, 1)} <= m.namespaces


def test_damaged_journal_is_a_clear_error(env):
    cfs, sd = env
    os.makedirs(sd)
    with open(jr.journal_path(sd), "w") as f:
        f.write("{not json")
    with pytest.raises(Exception, match="apply journal is damaged"):
        go(env, OLD)
    assert cfs.writes == 0


def test_cli_status_and_apply_report_the_recovery(env, tmp_path, capsys, monkeypatch):
    from nvmet_p2p.cli import main
    from nvmet_p2p.commands import _target
    from nvmet_p2p.nvmet import apply
    cfs, sd = env
    monkeypatch.setattr(apply, "open_configfs", lambda root, load_module=True: cfs)
    monkeypatch.setattr(_target, "open_configfs", lambda root, load_module=True: cfs)
    go(env, OLD)
    assert killed_apply(env, new_doc(), 4, prune=True) == signal.SIGKILL
    f = tmp_path / "old.json"
    f.write_text(json.dumps(OLD))
    inv = lab_inventory(tmp_path)
    rc = main(["apply", "--root", cfs.root, "--state-dir", sd, "--state", str(f), "--json",
               "--inventory", str(inv)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "did not finish; rolled it back" in cap.err
    assert json.loads(cap.out)["recovery"]["action"] == "rolled back"
    # status settles too, and says so
    assert killed_apply(env, new_doc(), 4, prune=True) == signal.SIGKILL
    from nvmet_p2p.commands._target import settle_first

    class Args:
        root, state_dir, command, kernel, lock_timeout = cfs.root, sd, "status", None, 0
    rec = settle_first(Args())
    assert rec.action == "rolled back" and not jr.pending(sd)
    assert "rolled it back" in capsys.readouterr().err
