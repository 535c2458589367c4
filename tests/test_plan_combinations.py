"""Plans combining changes on one port (issue 19): an address change together with dropping a
managed link that is not pruned, adding a link, pruning a linked subsystem, a foreign link that
must come back, a referral change, a transport change. Each combination on the fake configfs
(its kernel rules: EACCES for an address write on a linked port, the first link enables the
port): applied, it reaches exactly the desired state and a re-plan is empty; interrupted after
every step k (SIGTERM in-process, and SIGKILL + settle for the issue's combination), it ends in
exactly the state before or the state after."""

from __future__ import annotations

import copy
import os
import signal

import pytest
from fakenvmet import FakeNvmet, dump

from nvmet_p2p.nvmet import journal as jr
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import (
    TEST_KILL_ENV,
    TEST_SIGNAL_ENV,
    ApplyInterrupted,
    ManagedStore,
    reconcile,
    settle,
)
from nvmet_p2p.nvmet.configfs import read_state

S1, S2, S4 = "nqn.2026-11.io.lab:c1", "nqn.2026-11.io.lab:c2", "nqn.2026-11.io.lab:c4"
FOREIGN = "nqn.2026-11.io.lab:foreign"        # linked to the port by hand: never managed


def ns(i, dev="/dev/nullb0"):
    return {"nsid": i, "enable": 1, "device": {"path": dev}}


BASE = {
    "hosts": [],
    "subsystems": [{"nqn": S1, "attr": {"allow_any_host": "1"}, "namespaces": [ns(1)]},
                   {"nqn": S2, "attr": {"allow_any_host": "1"}, "namespaces": [ns(1)]}],
    "ports": [{"portid": 1, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                                     "trsvcid": "4420"},
               "referrals": [{"name": "r1", "enable": 1,
                              "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "10.77.0.9",
                                       "trsvcid": "4420", "portid": "2"}}],
               "subsystems": [S1, S2]}],
}


def change(f):
    d = copy.deepcopy(BASE)
    f(d)
    return d


def _new_svc(d):
    d["ports"][0]["addr"]["trsvcid"] = "4421"


def _drop_s2_link(d):
    d["ports"][0]["subsystems"] = [S1]


COMBOS = {
    # the issue's: the address changes and a managed link is dropped (S2 stays, unpruned)
    "address + drop a managed link": (lambda d: (_new_svc(d), _drop_s2_link(d)), False),
    "address + drop one link + add another": (lambda d: (
        _new_svc(d), _drop_s2_link(d),
        d["subsystems"].append({"nqn": S4, "attr": {"allow_any_host": "1"}, "namespaces": [ns(1)]}),
        d["ports"][0]["subsystems"].append(S4)), False),
    "address + prune a linked subsystem": (lambda d: (
        _new_svc(d), _drop_s2_link(d), d["subsystems"].pop(1)), True),
    "address + referral address": (lambda d: (
        _new_svc(d), d["ports"][0]["referrals"][0]["addr"].update(traddr="10.77.0.10")), False),
    "transport change + drop a link": (lambda d: (
        d["ports"][0].update(addr={"trtype": "loop"}), _drop_s2_link(d)), False),
    "drop a managed link, the foreign one stays": (lambda d: _drop_s2_link(d), False),
}


@pytest.fixture
def env(tmp_path):
    cfs = FakeNvmet(str(tmp_path / "root"))
    sd = str(tmp_path / "state")
    reconcile(cfs.root, statefile.parse(BASE), sd, cfs=cfs)
    # a link nvmet-p2p did not make: a detached port gets it back
    cfs.mkdir(f"subsystems/{FOREIGN}")
    cfs.write(f"subsystems/{FOREIGN}/attr_allow_any_host", "1")
    cfs.symlink(f"subsystems/{FOREIGN}", f"ports/1/subsystems/{FOREIGN}")
    return cfs, sd


def apply_doc(env, doc, **kw):
    cfs, sd = env
    return reconcile(cfs.root, statefile.parse(doc), sd, cfs=cfs, **kw)


def expected(env, name):
    """(tree before, tree after, managed before, managed after, steps) of the combination."""
    cfs, sd = env
    make, prune = COMBOS[name]
    first = dump(cfs)
    out = apply_doc(env, change(make), prune=prune)
    after, m_after = dump(cfs), ManagedStore(sd).load()
    # back to BASE (a pruned S2 comes back re-created: a new serial and UUIDs, so "before" is
    # the tree from here on)
    apply_doc(env, BASE, prune=True)
    before, m_before = dump(cfs), ManagedStore(sd).load()
    assert before.keys() == first.keys()
    return before, after, m_before, m_after, out


@pytest.mark.parametrize("name", sorted(COMBOS))
def test_a_combination_reaches_exactly_the_desired_state(env, name):
    cfs, sd = env
    make, prune = COMBOS[name]
    want = change(make)
    out = apply_doc(env, want, prune=prune)
    live = read_state(cfs)
    port = live.ports[1]
    wanted_links = set(want["ports"][0]["subsystems"])
    assert set(port.subsystems) == wanted_links | {FOREIGN}          # the foreign link is back
    for k, v in want["ports"][0]["addr"].items():
        assert port.attrs[f"addr_{k}"] == v
    m = ManagedStore(sd).load()
    assert {s for p, s in m.port_links if p == 1} == wanted_links   # dropped: no longer managed
    assert (1, FOREIGN) not in m.port_links and FOREIGN not in m.subsystems
    assert (S2 in live.subsystems) == (not prune)                   # dropped, not pruned: stays
    if port.attrs["addr_trsvcid"] != "4420" or port.attrs["addr_trtype"] != "tcp":
        # the kernel refuses address writes on a linked port: every link went first
        ops = [(o.action, o.path) for o in out.plan.ops]
        first_write = min(i for i, (a, p) in enumerate(ops) if a == "write" and p.startswith("ports/1/addr_"))
        assert all(i < first_write for i, (a, p) in enumerate(ops)
                   if a == "unlink" and p.startswith("ports/1/subsystems/"))
    assert apply_doc(env, want, prune=prune).plan.ops == []          # a re-plan is empty


@pytest.mark.parametrize("name", sorted(COMBOS))
def test_sigterm_after_every_step_of_a_combination_ends_before(env, name, monkeypatch):
    cfs, sd = env
    make, prune = COMBOS[name]
    before, _after, m_before, _m_after, out = expected(env, name)
    n = len(out.plan.ops)
    assert n > 0
    for k in range(0, n):          # 0: right after the journal, before the first step
        monkeypatch.setenv(TEST_SIGNAL_ENV, f"{k}:TERM")
        with pytest.raises(ApplyInterrupted) as e:
            apply_doc(env, change(make), prune=prune)
        assert not e.value.rollback_errors, (k, e.value.rollback_errors)
        assert dump(cfs) == before, (name, k)
        assert ManagedStore(sd).load() == m_before and not jr.pending(sd)
    monkeypatch.delenv(TEST_SIGNAL_ENV, raising=False)


def test_kill_after_every_step_of_the_issues_combination_settles_before_or_after(env):
    cfs, sd = env
    name = "address + drop a managed link"
    make, prune = COMBOS[name]
    before, after, m_before, m_after, out = expected(env, name)
    n = len(out.plan.ops)
    seen = set()
    for k in range(0, n + 1):
        pid = os.fork()
        if pid == 0:
            try:
                os.environ[TEST_KILL_ENV] = str(k)
                apply_doc(env, change(make), prune=prune)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, k
        rec = settle(cfs, sd, cfs.root)
        if rec.action == "completed":
            assert dump(cfs) == after and ManagedStore(sd).load() == m_after, k
            apply_doc(env, BASE, prune=True)
        else:
            assert dump(cfs) == before and ManagedStore(sd).load() == m_before, k
        seen.add(rec.action)
        assert dump(cfs) == before
    assert seen == {"completed", "rolled back"}
