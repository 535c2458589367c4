"""Every configfs change plans from the live tree and the managed set as read *after* the apply
lock was taken (issue 19.3): a revocation another apply made while a writer waited for the lock
is never undone, and nothing it recorded is lost.

The race is made deterministic with a hook, not with sleeps: the revoking ``apply --prune``
runs to completion at the moment the other writer asks for the lock -- what happens when it
held the lock first and the other writer waited. Whatever a writer read before that moment is
stale; what it reads after is not."""

from __future__ import annotations

import copy
import io
import json

import fakenvmet
import pytest
from fakenvmet import FakeNvmet
from sysfsfixture import q35_lab
from test_watch import NQN, A, removal, unplug

from nvmet_p2p.nvmet import apply, statefile
from nvmet_p2p.nvmet.apply import ManagedStore, reconcile
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.nvmet.plan import Plan
from nvmet_p2p.service import watch

H = "nqn.2014-08.org.nvmexpress:uuid:revoked-host"
OTHER = "nqn.2026-12.io.lab:other"
HANDMADE = "nqn.2026-12.io.lab:handmade"
GRANTED = {
    "hosts": [{"nqn": H}],
    "subsystems": [
        {"nqn": NQN, "attr": {"allow_any_host": "0"}, "allowed_hosts": [H], "namespaces": [
            {"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme2n1"}, "p2pmem": A},
            {"nsid": 2, "enable": 1, "device": {"path": "/dev/nvme3n1"}, "p2pmem": "0"}]},
        # the host stays allowed elsewhere: revoking it on NQN removes a link, not the host
        {"nqn": OTHER, "attr": {"allow_any_host": "0"}, "allowed_hosts": [H]}],
    "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "10.77.0.1",
                                     "trsvcid": "4420"}, "subsystems": [NQN]}],
}


def link_revoked():
    """GRANTED with the host no longer allowed on NQN."""
    d = copy.deepcopy(GRANTED)
    d["subsystems"][0]["allowed_hosts"] = []
    return d


def subsystem_removed():
    """GRANTED without NQN (its port link goes with it)."""
    d = copy.deepcopy(GRANTED)
    del d["subsystems"][0]
    d["ports"][0]["subsystems"] = []
    return d


@pytest.fixture
def target(tmp_path, monkeypatch):
    root = tmp_path / "root"
    m = q35_lab(root, rxe=True, rxe_name="rxe0")
    (root / "dev").mkdir()
    for i in range(4):
        (root / f"dev/nvme{i}n1").write_text("")
    cfs = FakeNvmet(str(tmp_path / "cfs"))
    sd = str(tmp_path / "state")
    monkeypatch.setattr(fakenvmet, "P2P_PROVIDERS", set(fakenvmet.P2P_PROVIDERS))
    monkeypatch.setattr(fakenvmet, "DEVICES", dict(fakenvmet.DEVICES))
    reconcile(str(root), statefile.parse(GRANTED), sd, cfs=cfs)
    return m, str(root), cfs, sd


def before_the_next_lock(monkeypatch, other):
    """The next ``apply_lock`` request first lets ``other()`` (a whole apply, taking the lock
    itself) run: the interleaving "the other apply held the lock, this writer waited for it".
    Returns a dict whose ``ran`` says the hook fired."""
    real = apply.apply_lock
    state = {"armed": True, "ran": False}

    def hooked(*a, **k):
        if state["armed"]:
            state["armed"] = False
            other()
            state["ran"] = True
        return real(*a, **k)
    monkeypatch.setattr(apply, "apply_lock", hooked)
    return state


def revoke_with(root, cfs, sd, doc):
    def run():
        out = reconcile(root, statefile.parse(doc), sd, cfs=cfs, prune=True)
        assert out.result is not None and out.result.writes > 0
    return run


@pytest.mark.parametrize("revocation", [link_revoked, subsystem_removed])
def test_the_watcher_never_undoes_a_revocation_made_while_it_waited(target, monkeypatch,
                                                                     revocation):
    m, root, cfs, sd = target
    w = watch.Watcher(watch.Options(root=root, state_dir=sd, policy="reconcile"), [],
                      watch.Log(stream=io.StringIO()), cfs=cfs)
    w.refresh()
    unplug(m, A, "nvme0")                  # provider A goes: namespace 1 is to be re-placed
    seen = {}

    def revoke_and_remember():
        revoke_with(root, cfs, sd, revocation())()
        seen.update(live=read_state(cfs), managed=ManagedStore(sd).load())
    hook = before_the_next_lock(monkeypatch, revoke_and_remember)
    decisions = w.handle(removal(A, "nvme0n1"))
    assert hook["ran"]
    live, managed = read_state(cfs), ManagedStore(sd).load()
    if revocation is link_revoked:
        assert H not in live.subsystems[NQN].allowed_hosts            # not re-linked
        assert (NQN, H) not in managed.allowed_hosts                  # not recorded as managed
        assert live.subsystems[OTHER].allowed_hosts == [H]
        ns1 = live.subsystems[NQN].namespaces[1]                      # its own job still done
        assert ns1.enable and ns1.attrs["p2pmem"] not in (A, "")
        assert decisions[0].action == "reconciled"
    else:
        assert NQN not in live.subsystems                             # not re-created
        assert (live, managed) == (seen["live"], seen["managed"])     # nothing written at all


def test_the_ab_toggle_never_undoes_a_revocation(target, monkeypatch):
    from nvmet_p2p.harness.ab import LocalToggle
    _m, root, cfs, sd = target
    toggle = LocalToggle(root, [NQN], nsids=[1], state_dir=sd, cfs=cfs)
    hook = before_the_next_lock(monkeypatch, revoke_with(root, cfs, sd, link_revoked()))
    toggle.set("p2p-off")
    assert hook["ran"]
    live = read_state(cfs)
    assert live.subsystems[NQN].namespaces[1].attrs["p2pmem"] == "0"
    assert H not in live.subsystems[NQN].allowed_hosts
    assert (NQN, H) not in ManagedStore(sd).load().allowed_hosts


def adopt_handmade(root, cfs, sd):
    """An apply that only adopts a subsystem made by hand: no configfs write, the managed set
    changes (the tree's fingerprint does not)."""
    def run():
        doc = copy.deepcopy(GRANTED)
        doc["subsystems"].append({"nqn": HANDMADE})
        out = reconcile(root, statefile.parse(doc), sd, cfs=cfs)
        assert out.result.writes == 0 and HANDMADE in out.plan.managed_after.subsystems
    return run


def test_a_shell_commit_keeps_what_was_adopted_while_it_waited(target, monkeypatch):
    from nvmet_p2p.shell.edits import set_attrs
    from nvmet_p2p.shell.session import Session
    _m, root, cfs, sd = target
    cfs.mkdir(f"subsystems/{HANDMADE}")
    s = Session(root, sd, cfs=cfs)
    s.stage(set_attrs(("subsystem", OTHER), {"attr_serial": "changed"}, "set serial"))
    hook = before_the_next_lock(monkeypatch, adopt_handmade(root, cfs, sd))
    s.commit()
    assert hook["ran"]
    assert read_state(cfs).subsystems[OTHER].attrs["attr_serial"].strip() == "changed"
    assert HANDMADE in ManagedStore(sd).load().subsystems


def test_a_saved_plan_is_refused_when_the_managed_set_changed_since(target, monkeypatch):
    _m, root, cfs, sd = target
    cfs.mkdir(f"subsystems/{HANDMADE}")
    doc = copy.deepcopy(GRANTED)
    doc["subsystems"][1]["attr"]["serial"] = "saved"
    shown = reconcile(root, statefile.parse(doc), sd, cfs=cfs, dry_run=True)
    saved = Plan.from_dict(shown.plan.to_dict(secrets=True))
    hook = before_the_next_lock(monkeypatch, adopt_handmade(root, cfs, sd))
    with pytest.raises(apply.NvmetP2PError, match="managed set changed since this plan was made"):
        apply.apply_saved_plan(root, saved, sd, cfs=cfs)
    assert hook["ran"]
    assert HANDMADE in ManagedStore(sd).load().subsystems
    assert read_state(cfs).subsystems[OTHER].attrs["attr_serial"].strip() != "saved"


def test_an_automation_diff_shows_the_tree_the_plan_was_made_from(target, monkeypatch):
    from nvmet_p2p import automation
    _m, root, cfs, sd = target
    want = copy.deepcopy(link_revoked())
    want["subsystems"][1]["attr"]["serial"] = "x2"
    hook = before_the_next_lock(monkeypatch, revoke_with(root, cfs, sd, link_revoked()))
    res = automation.apply(automation.Desired(statefile.parse(want), "t"), root=root,
                           state_dir=sd, diff=True, cfs=cfs)
    assert hook["ran"]
    # "before" is the tree the plan was made from: the link was already revoked
    before = {s["nqn"]: s for s in json.loads(res["diff"]["before"])["subsystems"]}
    assert before[NQN]["allowed_hosts"] == [] and before[OTHER]["allowed_hosts"] == [H]
    assert res["configfs_writes"] == 1


# ----------------------------------------------------------------------------------------------
# The rule, held for the code as written
# ----------------------------------------------------------------------------------------------

WRITERS = {"reconcile", "apply_saved_plan", "clear", "locked"}
READS = {"read_state", "ManagedStore"}


def _calls(node):
    import ast
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name:
                yield name, n.lineno


def test_no_writer_reads_the_target_before_it_takes_the_lock():
    """In every module that changes configfs, a function that hands something to the apply
    engine (reconcile, apply_saved_plan, clear, locked) reads neither the live tree nor the
    managed set before that call: what depends on them is computed by a desire under the lock
    (Outcome.live / Locked.live afterwards). Reads after the apply (a report of the result)
    are fine."""
    import ast
    from pathlib import Path
    pkg = Path(apply.__file__).parent.parent
    offenders = []
    for path in sorted(pkg.rglob("*.py")):
        if path.parent.name == "nvmet":
            continue        # the engine itself: the locked section lives there
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            calls = list(_calls(fn))
            first_write = min((ln for name, ln in calls if name in WRITERS), default=None)
            if first_write is None:
                continue
            offenders += [f"{path.relative_to(pkg)}:{ln} {fn.name}() calls {name} before the lock"
                          for name, ln in calls if name in READS and ln < first_write]
    assert offenders == []
