"""What a re-apply reads from configfs, and that reading less still sees every drift.

``apply`` reads only the attributes the desired state names (plus ``enable``), through
``read_state(cfs, only=desired)``; ``plan`` (whose output may be saved and applied later)
reads the whole tree. These tests pin down that both lead to the same plan, that drift in
any named attribute is still found and repaired, and that the cost of a re-apply grows by
exactly the named attributes per namespace (no per-file ``stat``, nothing read twice).
The real kernel is exercised by tests/lab/test_lab_nvmet.py and tools/bench/bench_apply.py.
"""

import copy
import os

import pytest

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import ManagedStore, apply_saved_plan, reconcile
from nvmet_p2p.nvmet.configfs import capabilities, read_state
from nvmet_p2p.nvmet.plan import build_plan
from support.fakenvmet import FakeNvmet

S1, S2 = "nqn.2026-11.io.lab:s1", "nqn.2026-11.io.lab:s2"
H1 = "nqn.2014-08.org.nvmexpress:uuid:host1"
USER = "nqn.2026-11.io.user:handmade"


def doc(n: int = 3) -> dict:
    nss = [{"nsid": i, "enable": 1, "device": {"path": "/dev/nullb0",
                                                "uuid": f"00000000-0000-4000-8000-{i:012x}"}}
           for i in range(1, n + 1)]
    return {
        "hosts": [{"nqn": H1}],
        "subsystems": [
            {"nqn": S1, "attr": {"allow_any_host": "0", "serial": "t1"}, "allowed_hosts": [H1],
             "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme0n1"},
                             "p2pmem": "0000:04:00.0"}]},
            {"nqn": S2, "attr": {"allow_any_host": "1"}, "namespaces": nss}],
        "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "10.77.0.1",
                                         "trsvcid": "4420"}, "subsystems": [S1, S2]},
                  {"portid": 3, "addr": {"trtype": "loop"}, "subsystems": [S2]}],
    }


@pytest.fixture
def env(tmp_path):
    return FakeNvmet(str(tmp_path / "root")), str(tmp_path / "state")


def go(env, d, **kw):
    cfs, sd = env
    return reconcile(cfs.root, statefile.parse(d), sd, cfs=cfs, **kw)


def plans_agree(cfs, sd, d, prune=False):
    """The plan from the partial read equals the plan from the whole tree."""
    desired = statefile.parse(d)
    managed = ManagedStore(sd).load()
    full = build_plan(read_state(cfs), desired, managed, prune=prune, caps=capabilities(cfs))
    live = read_state(cfs, only=desired)
    part = build_plan(live, desired, managed, prune=prune,
                      caps=capabilities(cfs, live=live), fingerprint=False)
    assert [o.to_dict(True) for o in part.ops] == [o.to_dict(True) for o in full.ops]
    assert [c.to_dict(True) for c in part.changes] == [c.to_dict(True) for c in full.changes]
    assert part.warnings == full.warnings and part.managed_after == full.managed_after
    return part


def test_partial_and_whole_reads_make_the_same_plan(env):
    cfs, sd = env
    assert plans_agree(cfs, sd, doc()).ops                          # empty target: everything
    go(env, doc())
    assert plans_agree(cfs, sd, doc()).ops == []                    # re-apply: nothing
    # a hand-made export outside the managed set, and a namespace added by hand to ours
    cfs.mkdir(f"subsystems/{USER}")
    cfs.mkdir(f"subsystems/{USER}/namespaces/5")
    cfs.write(f"subsystems/{USER}/namespaces/5/device_path", "/dev/nvme3n1")
    cfs.mkdir(f"subsystems/{S2}/namespaces/9")
    cfs.symlink(f"subsystems/{USER}", f"ports/3/subsystems/{USER}")
    d = copy.deepcopy(doc())
    d["subsystems"][1]["namespaces"][1]["device"]["uuid"] = "11111111-0000-4000-8000-000000000002"
    d["subsystems"][0]["namespaces"][0]["p2pmem"] = "0000:05:00.0"
    d["ports"][0]["addr"]["trsvcid"] = "4421"
    for prune in (False, True):
        assert plans_agree(cfs, sd, d, prune=prune).ops
    smaller = copy.deepcopy(d)
    del smaller["subsystems"][0]
    smaller["ports"][0]["subsystems"] = [S2]
    smaller["hosts"] = []
    assert plans_agree(cfs, sd, smaller, prune=True).ops
    # the capabilities picked from the partial read are the ones a full listing finds
    desired = statefile.parse(d)
    assert capabilities(cfs, live=read_state(cfs, only=desired)).to_dict() == \
        capabilities(cfs).to_dict()


@pytest.mark.parametrize("drift,fixed", [
    (lambda c: c._put(f"subsystems/{S2}/namespaces/2/device_uuid", "99999999-0000-4000-8000-000000000002"),
     ["write subsystems/{S2}/namespaces/2/enable 0", "write subsystems/{S2}/namespaces/2/device_uuid",
      "write subsystems/{S2}/namespaces/2/enable 1"]),
    (lambda c: c._put(f"subsystems/{S2}/namespaces/3/enable", "0"),
     ["write subsystems/{S2}/namespaces/3/enable 1"]),
    (lambda c: c._put(f"subsystems/{S2}/namespaces/1/device_path", "/dev/nvme3n1"),
     ["write subsystems/{S2}/namespaces/1/enable 0", "write subsystems/{S2}/namespaces/1/device_path",
      "write subsystems/{S2}/namespaces/1/enable 1"]),
    (lambda c: c._put(f"subsystems/{S1}/namespaces/1/p2pmem", "0"),
     ["write subsystems/{S1}/namespaces/1/enable 0", "write subsystems/{S1}/namespaces/1/p2pmem",
      "write subsystems/{S1}/namespaces/1/enable 1"]),
    (lambda c: c._put(f"subsystems/{S1}/attr_serial", "someone-else"),
     ["write subsystems/{S1}/attr_serial"]),
    (lambda c: c._put(f"subsystems/{S2}/attr_allow_any_host", "0"),
     ["write subsystems/{S2}/attr_allow_any_host"]),
    (lambda c: os.unlink(c.path(f"ports/3/subsystems/{S2}")),
     ["link ports/3/subsystems/{S2}"]),
    (lambda c: os.unlink(c.path(f"subsystems/{S1}/allowed_hosts/{H1}")),
     ["link subsystems/{S1}/allowed_hosts/{H1}"]),
])
def test_drift_in_any_named_attribute_is_seen_and_repaired(env, drift, fixed):
    cfs, sd = env
    go(env, doc())
    drift(cfs)
    out = go(env, doc())
    steps = [" ".join(x for x in (o.action, o.path, o.value if o.attr == "enable" else None) if x)
             for o in out.plan.ops]
    assert steps == [f.format(S1=S1, S2=S2, H1=H1) for f in fixed]
    assert go(env, doc()).plan.ops == []


def count_calls(monkeypatch, names=("open", "stat", "lstat")):
    calls = {n: 0 for n in names}
    for n in names:
        real = getattr(os, n)

        def wrapper(*a, _real=real, _n=n, **k):
            calls[_n] += 1
            return _real(*a, **k)
        monkeypatch.setattr(os, n, wrapper)
    return calls


def test_reapply_cost_grows_by_the_named_attributes_only(env, monkeypatch):
    """Per namespace a re-apply opens exactly enable, device_path and device_uuid (the state
    names path and uuid), stats nothing, and writes nothing (the managed set is not rewritten)."""
    cfs, sd = env
    costs = {}
    for n in (5, 45):
        go(env, doc(n))
        saves = []
        monkeypatch.setattr(ManagedStore, "save", lambda self, m: saves.append(m))
        calls = count_calls(monkeypatch)
        out = go(env, doc(n))
        monkeypatch.undo()
        assert out.plan.ops == [] and out.result.writes == 0 and saves == []
        costs[n] = calls
    assert costs[45]["open"] - costs[5]["open"] == 40 * 3
    assert costs[45]["stat"] == costs[5]["stat"] and costs[45]["lstat"] == costs[5]["lstat"]


def test_managed_set_recorded_when_it_changes(env):
    cfs, sd = env
    go(env, doc(2))
    path = ManagedStore(sd).path
    before = os.stat(path).st_ino
    go(env, doc(2))
    assert os.stat(path).st_ino == before                      # nothing to record
    go(env, doc(3))
    assert (S2, 3) in ManagedStore(sd).load().namespaces       # a new namespace is recorded


def test_a_plan_printed_by_apply_cannot_be_applied_later(env):
    cfs, sd = env
    applied = go(env, doc(2))
    assert applied.plan.live_digest == ""
    with pytest.raises(NvmetP2PError, match="no fingerprint.*plan --out"):
        apply_saved_plan(cfs.root, applied.plan, sd, cfs=cfs)
    shown = go(env, doc(3), dry_run=True)                      # what `plan --out` saves
    assert shown.plan.live_digest and len(shown.plan.ops) == 4
    assert apply_saved_plan(cfs.root, shown.plan, sd, cfs=cfs).result.writes == 4
