"""Settling an interrupted apply acts on the journal's own paths only, from a journal checked at
every level (issue 19.4, 19.5): an object the journal never touched never blocks the next
apply, clear or save, whatever its name; a journal that is not one nvmet-p2p writes settles
nothing; a hostile ``before`` never removes, writes or creates anything the steps did not
change; a huge journal is not read. On the fake configfs (tests/fakenvmet.py); the real kernel:
tests/lab/test_lab_crash.py."""

from __future__ import annotations

import copy
import json
import os
import signal

import fakenvmet
import pytest
from fakenvmet import FakeNvmet, dump
from test_journal import KEY, OLD, S1, S2, go, killed_apply, new_doc

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import apply, statefile
from nvmet_p2p.nvmet import journal as jr
from nvmet_p2p.nvmet.apply import ManagedStore, reconcile, settle
from nvmet_p2p.nvmet.configfs import read_state

ODD = "not a well-formed NQN"          # the kernel takes it; nvmet-p2p never manages it
BYSTANDER = "nqn.2026-11.io.lab:bystander"


@pytest.fixture
def env(tmp_path):
    return FakeNvmet(str(tmp_path / "root")), str(tmp_path / "state")


def hand_made(cfs, name, enabled_ns=True):
    """A subsystem made by hand (nvmetcli, echo): never in the managed set."""
    cfs.mkdir(f"subsystems/{name}")
    if enabled_ns:
        cfs.mkdir(f"subsystems/{name}/namespaces/7")
        cfs.write(f"subsystems/{name}/namespaces/7/device_path", "/dev/nvme3n1")
        cfs.write(f"subsystems/{name}/namespaces/7/enable", "1")


def journal(sd) -> dict:
    with open(jr.journal_path(sd)) as f:
        return json.load(f)


def rewrite(sd, rec) -> None:
    with open(jr.journal_path(sd), "w") as f:
        json.dump(rec, f)


# ----------------------------------------------------------------------------------------------
# 19.4: an unrelated, ill-named object never blocks recovery
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["apply", "clear", "save"])
def test_an_ill_named_hand_made_object_never_blocks_the_next_command(env, tmp_path, command,
                                                                     monkeypatch):
    cfs, sd = env
    go(env, OLD)
    before = dump(cfs)
    assert killed_apply(env, new_doc(), 9, prune=True) == signal.SIGKILL
    hand_made(cfs, ODD)
    before_odd = {k: v for k, v in dump(cfs).items() if ODD in k}
    if command == "apply":
        out = go(env, OLD)
        assert out.recovery.action == "rolled back" and out.plan.ops == []
    elif command == "clear":
        out = apply.clear(cfs.root, sd, cfs=cfs)
        assert out.recovery.action == "rolled back"
        assert set(read_state(cfs).subsystems) == {ODD}              # only what it manages went
    else:
        from nvmet_p2p.cli import main
        fakenvmet.use(monkeypatch, cfs)
        assert main(["save", str(tmp_path / "saved.json"), "--root", cfs.root,
                     "--state-dir", sd]) == 0
        saved = json.loads((tmp_path / "saved.json").read_text())
        assert ODD in [s["nqn"] for s in saved["subsystems"]]
    assert not jr.pending(sd)
    assert {k: v for k, v in dump(cfs).items() if ODD in k} == before_odd    # untouched
    if command != "clear":
        assert {k: v for k, v in dump(cfs).items() if ODD not in k} == before


def test_a_rollback_recreates_an_ill_named_object_the_apply_removed(env):
    """clear --all removes hand-made objects too; killed half-way, the rollback puts one back
    under the name it had (as configfs holds it: not as a desired state would name it)."""
    cfs, sd = env
    go(env, OLD)
    hand_made(cfs, ODD)
    before = dump(cfs)
    pid = os.fork()
    if pid == 0:
        try:
            os.environ[apply.TEST_KILL_ENV] = "12"
            apply.clear(cfs.root, sd, everything=True, cfs=cfs)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert ODD not in read_state(cfs).subsystems           # the kill came after it was removed
    rec = settle(cfs, sd, cfs.root)
    assert rec.action == "rolled back" and dump(cfs) == before


# ----------------------------------------------------------------------------------------------
# 19.5: the journal is checked at every level
# ----------------------------------------------------------------------------------------------

def killed(env, k=9):
    """OLD applied, then the OLD -> new apply killed after step ``k``: (tree before, journal)."""
    cfs, sd = env
    go(env, OLD)
    before = dump(cfs)
    assert killed_apply(env, new_doc(), k, prune=True) == signal.SIGKILL
    return before, journal(sd)


def first(rec, action, contains=""):
    return next(i for i, o in enumerate(rec["ops"]) if o[0] == action and contains in o[1])


def fact_index(rec, path):
    return next(i for i, f in enumerate(rec["before"]) if f["path"] == path)


DAMAGES = {
    "ops of numbers": lambda r: r.update(ops=[[1, 2, 3]], steps=1),
    "an op that is not a list": lambda r: r["ops"].__setitem__(0, "mkdir hosts/x"),
    "an unknown action": lambda r: r["ops"][0].__setitem__(0, "chmod"),
    "a write without its value": lambda r: r["ops"].__setitem__(first(r, "write"),
                                                                r["ops"][first(r, "write")][:2]),
    "a path out of the tree": lambda r: r["ops"][first(r, "rmdir")].__setitem__(1, "../../etc"),
    "a port id int() takes": lambda r: r["ops"][first(r, "write", "ports/1/")].__setitem__(
        1, r["ops"][first(r, "write", "ports/1/")][1].replace("ports/1/", "ports/+1/")),
    "an attribute nvmet-p2p never writes": lambda r: r["ops"][first(r, "write")].__setitem__(
        1, r["ops"][first(r, "write")][1].rsplit("/", 1)[0] + "/uevent"),
    "a value a desired state refuses": lambda r: r["ops"][first(r, "write", "p2pmem")].__setitem__(
        2, "auto"),
    "a secret in clear": lambda r: r["ops"][first(r, "write", "dhchap_key")].__setitem__(2, KEY),
    "a link to another target": lambda r: r["ops"][first(r, "link", "allowed_hosts")].__setitem__(
        2, "subsystems/" + S1),
    "ANA group 1 removed": lambda r: r["ops"].append(["rmdir", "ports/1/ana_groups/1"]),
    "steps that do not add up": lambda r: r.update(steps=r["steps"] + 1),
    "a fact for an untouched path": lambda r: r["before"].append(
        {"path": "subsystems/" + BYSTANDER, "dir": False}),
    "a fact of the wrong kind": lambda r: r["before"].__setitem__(
        fact_index(r, r["ops"][first(r, "write")][1]),
        {"path": r["ops"][first(r, "write")][1], "dir": True, "attrs": {}}),
    "a fact missing": lambda r: r["before"].pop(fact_index(r, r["ops"][first(r, "write")][1])),
    "a fact twice": lambda r: r["before"].append(r["before"][0]),
    "a fact with a bad value": lambda r: r["before"][fact_index(
        r, r["ops"][first(r, "write", "p2pmem")][1])].update(value="0000:zz"),
    "a managed set of the wrong shape": lambda r: r.update(managed_after={"hosts": [[1]]}),
    "a creation outside the managed set after": lambda r: r["managed_after"].update(
        namespaces=[], hosts=[]),
    "no format": lambda r: r.pop("format"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_journal_settles_nothing_and_is_kept(env, damage):
    cfs, sd = env
    _before, rec = killed(env)
    DAMAGES[damage](rec)
    rewrite(sd, rec)
    half = dump(cfs)
    w0 = cfs.writes
    with pytest.raises(NvmetP2PError, match="the apply journal is damaged") as e:
        settle(cfs, sd, cfs.root)
    assert "move the journal away" in str(e.value) and KEY not in str(e.value)
    assert cfs.writes == w0 and dump(cfs) == half and jr.pending(sd)
    with pytest.raises(NvmetP2PError, match="damaged"):
        go(env, OLD)                                        # every command refuses, the same way
    assert dump(cfs) == half


def test_ops_of_numbers_never_complete(env):
    """The reproduction: ``ops: [[1, 2, 3]]`` made settle report "completed" and record the
    desired managed set over a half-applied tree."""
    cfs, sd = env
    _before, rec = killed(env)
    m_before = ManagedStore(sd)._load_file()
    rec.update(ops=[[1, 2, 3]], steps=1)
    rewrite(sd, rec)
    with pytest.raises(NvmetP2PError, match=r"\$\.ops\[0\]"):
        settle(cfs, sd, cfs.root)
    assert ManagedStore(sd)._load_file() == m_before and jr.pending(sd)


HOSTILE_FACTS = {
    # (the reproductions of issue 19.5) none of these paths is touched by the journal's steps
    "remove an unmanaged subsystem": lambda r: r["before"].append(
        {"path": f"subsystems/{BYSTANDER}", "dir": False}),
    "write an attribute": lambda r: r["before"].append(
        {"path": f"subsystems/{BYSTANDER}/attr_model", "value": "pwned"}),
    "create an enabled namespace": lambda r: r["before"].append(
        {"path": f"subsystems/{S1}/namespaces/77", "dir": True,
         "attrs": {"enable": "1", "device_path": "/dev/nvme0n1"}}),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE_FACTS))
def test_hostile_before_facts_change_nothing(env, hostile):
    cfs, sd = env
    go(env, OLD)
    hand_made(cfs, BYSTANDER)
    assert killed_apply(env, new_doc(), 9, prune=True) == signal.SIGKILL
    rec = journal(sd)
    HOSTILE_FACTS[hostile](rec)
    rewrite(sd, rec)
    half = dump(cfs)
    with pytest.raises(NvmetP2PError, match="is not a path its steps touch"):
        settle(cfs, sd, cfs.root)
    assert dump(cfs) == half


def test_a_before_value_is_written_only_where_its_step_ran(env):
    """A fact of a step that never ran (the kill came first) says nothing true about configfs:
    even a plausible value there is not written back."""
    cfs, sd = env
    before, rec = killed(env, k=2)
    i = first(rec, "write", "addr_trsvcid")                  # a later step: not done at k=2
    assert i >= 2
    rec["before"][fact_index(rec, rec["ops"][i][1])]["value"] = "4999"
    rewrite(sd, rec)
    r = settle(cfs, sd, cfs.root)
    assert r.action == "rolled back" and dump(cfs) == before
    assert read_state(cfs).ports[1].attrs["addr_trsvcid"] == "4420"


def test_settle_plans_only_the_touched_objects(env, monkeypatch):
    """The rollback's desired state names nothing but what the journal's steps touched (and
    their parents): a bystander is not in it, so the planner neither checks nor changes it."""
    cfs, sd = env
    go(env, OLD)
    hand_made(cfs, BYSTANDER)
    before = dump(cfs)
    assert killed_apply(env, new_doc(), 9, prune=True) == signal.SIGKILL
    plans = []
    real_build = apply.build_plan
    monkeypatch.setattr(apply, "build_plan",
                        lambda *a, **k: plans.append((a[1], a[2])) or real_build(*a, **k))
    settle(cfs, sd, cfs.root)
    assert dump(cfs) == before
    desired, removable = plans[0]
    assert set(desired.subsystems) == {S1, S2} and BYSTANDER not in removable.subsystems
    # what the planner may remove: what the steps create, nothing else
    assert removable.subsystems == set() and removable.namespaces == {(S1, i) for i in range(4, 9)}


# ----------------------------------------------------------------------------------------------
# Size
# ----------------------------------------------------------------------------------------------

def test_a_huge_journal_is_refused_unread(env, monkeypatch):
    cfs, sd = env
    os.makedirs(sd)
    with open(jr.journal_path(sd), "wb") as f:
        f.truncate(200 << 20)                              # 200 MB (sparse)
    read = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: read.append(n) or real(fd, n))
    with pytest.raises(NvmetP2PError, match=f"limit for this kind of file is {64 << 20}"):
        settle(cfs, sd, cfs.root)
    assert read == [] and cfs.writes == 0


def test_an_apply_whose_journal_would_be_too_large_is_refused_before_any_write(env, monkeypatch):
    cfs, sd = env
    monkeypatch.setattr(jr, "MAX_BYTES", 2000)
    with pytest.raises(NvmetP2PError, match="more than the 2000 an interrupted apply's journal"):
        go(env, OLD)
    assert cfs.writes == 0 and not jr.pending(sd)


def test_an_apply_whose_before_state_would_not_settle_is_refused(env):
    """begin() checks the journal it writes as load() will: a before value a desired state
    refuses (here a hand-written model with a tab) stops the apply before its first write."""
    cfs, sd = env
    go(env, OLD)
    with open(cfs.path(f"subsystems/{S2}/attr_model"), "w") as f:
        f.write("bad\tmodel\n")                             # (the fake takes anything)
    doc = copy.deepcopy(OLD)
    doc["subsystems"][1]["attr"]["model"] = "good"
    w0 = cfs.writes
    with pytest.raises(NvmetP2PError, match="cannot be journaled .*attr_model.*nothing was changed"):
        reconcile(cfs.root, statefile.parse(doc), sd, cfs=cfs)
    assert cfs.writes == w0 and not jr.pending(sd)
