"""``multipath: p2p``: placement across ports, ANA states from p2p reachability, and the
plan/apply path that writes them (fast tier; the real kernel: tests/lab/test_lab_multipath.py).

The machine is the lab's ``multipath`` topology (tests/support/machine.py
``multipath_machine``): two switches on two root ports of a q35 host bridge, each with a CMB
NVMe, a plain NVMe and an RDMA NIC; every pair across the switches is refused."""

from __future__ import annotations

import pytest

from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.apply import reconcile
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.nvmet.plan import Managed, build_plan
from nvmet_p2p.policy import multipath, placement, profile
from nvmet_p2p.policy.ana import NON_OPTIMIZED, OPTIMIZED
from support.fakenvmet import FakeNvmet, ana_view
from support.machine import multipath_machine
from support.multipath import (
    CMB_A,
    CMB_B,
    DRIVE_A,
    DRIVE_B,
    FAKE_MACHINE,
    NIC_A,
    NIC_B,
    SUB,
    TWO,
    fake,
    fake_state,
    place,
    prof,
)


def by_serial(pl, serial):
    return next(d for d in pl.decisions if d.namespace.controller.serial == serial)


def test_without_multipath_a_subsystem_on_both_nics_cannot_be_placed():
    """Today's rule stays the default: one provider must serve the NVMe and every port's NIC."""
    pl = place(prof(TWO, multipath=None))
    assert pl.errors and "no single provider serves the NVMe and every port's NIC" in pl.errors[0]
    assert f"{DRIVE_A}+{NIC_A}: {CMB_A}" in pl.errors[0] and f"{DRIVE_A}+{NIC_B}: none" in pl.errors[0]
    assert pl.ana is None


def test_multipath_places_each_namespace_on_the_provider_its_own_side_serves():
    pl = place(prof(TWO))
    assert not pl.errors
    a, b = by_serial(pl, "driveA"), by_serial(pl, "driveB")
    assert (a.p2pmem, b.p2pmem) == (CMB_A, CMB_B)
    assert [(p.portid, p.offloads, p.providers) for p in a.paths] == [(1, True, [CMB_A]), (2, False, [])]
    assert [(p.portid, p.offloads, p.providers) for p in b.paths] == [(1, False, []), (2, True, [CMB_B])]
    assert "the kernel refuses 0000:03:00.0 for 0000:0a:00.0 at connect" in a.paths[1].reason


def test_multipath_ana_states_in_the_desired_state():
    pl = place(prof(TWO))
    ns = pl.state.subsystems[SUB].namespaces
    ga, gb = int(ns[1].attrs["ana_grpid"]), int(ns[2].attrs["ana_grpid"])
    assert ga != gb and {ga, gb} <= set(range(2, 128))
    assert pl.state.ports[1].ana_groups == {ga: OPTIMIZED, gb: NON_OPTIMIZED}
    assert pl.state.ports[2].ana_groups == {ga: NON_OPTIMIZED, gb: OPTIMIZED}
    assert [p.ana_state for p in by_serial(pl, "driveA").paths] == [OPTIMIZED, NON_OPTIMIZED]


def test_explain_shows_per_port_providers_and_the_groups():
    text = placement.render(place(prof(TWO)), explain=True)
    assert "paths: 1 of 2 port(s) offload (1)" in text
    assert "port 2: host memory [ANA non-optimized]" in text
    assert f"the kernel accepts for this NIC and the NVMe: {CMB_A}; p2pmem=1 would pick among: {CMB_A}" in text
    assert "the kernel accepts for this NIC and the NVMe: none" in text
    assert "ANA group 2: port 1 optimized, port 2 non-optimized" in text
    assert "ANA group 3: port 1 non-optimized, port 2 optimized" in text


def test_pinned_and_auto_and_off_give_their_own_ana_states():
    ns = ("      - select: {serial: driveA}\n        p2p: {pinned: '0000:03:00.0'}\n"
          "      - select: {serial: driveB}\n        p2p: kernel\n"
          "      - select: {serial: cmbA}\n        p2p: off\n")
    pl = place(prof(ns))
    a, b, c = (by_serial(pl, s) for s in ("driveA", "driveB", "cmbA"))
    assert [p.offloads for p in a.paths] == [True, False]
    assert b.p2pmem == "1" and [p.offloads for p in b.paths] == [False, True]
    assert b.paths[1].kernel_picks == [CMB_B] and "no provider serves this NIC" in b.paths[0].reason
    assert [p.ana_state for p in c.paths] == [NON_OPTIMIZED, NON_OPTIMIZED]


def test_a_tcp_port_of_a_multipath_subsystem_is_non_optimized():
    tcp = "  - {id: 3, transport: tcp, netdev: nica, trsvcid: 4421}\n"
    pl = place(prof(TWO, extra_ports=tcp, sub_ports="[1, 2, 3]"))
    a = by_serial(pl, "driveA")
    assert [(p.portid, p.ana_state) for p in a.paths] == [(1, OPTIMIZED), (2, NON_OPTIMIZED),
                                                           (3, NON_OPTIMIZED)]
    assert "nvmet-tcp never uses p2pmem" in a.paths[2].reason


def test_a_namespace_no_port_can_serve_follows_when_none():
    inv = multipath_machine()
    for f in inv.pci.values():            # no provider at all
        f.p2pmem = None
    pl = place(prof(TWO), inv)
    assert pl.errors and "has no published p2pmem provider" in pl.errors[0]
    pl = place(prof(TWO, p2p="p2p: {when_none: off}\n"), inv)
    assert not pl.errors
    assert {p.ana_state for d in pl.decisions for p in d.paths} == {NON_OPTIMIZED}


def test_ids_are_kept_from_the_live_tree():
    live = st.TargetState()
    sub = live.subsystems[SUB] = st.Subsystem(nqn=SUB)
    sub.namespaces[1] = st.Namespace(nsid=1, attrs={"ana_grpid": "9"})
    sub.namespaces[2] = st.Namespace(nsid=2, attrs={"ana_grpid": "4"})
    pl = place(prof(TWO), live=lambda: live)
    assert pl.ana.members == {(SUB, 1): 9, (SUB, 2): 4}


class _Placer(placement._Placer):
    """multipath_clients with the per-port verdicts given (the kernel's rules make p2p
    reachability transitive, so no machine model lets auto mode serve more ports than the
    best single provider: docs/multipath.md#placement-across-ports)."""

    def __init__(self, per_port: dict[tuple[str, ...], list[str]], auto: set[str]):
        self.per_port, self.auto = per_port, auto

    def ranked(self, ns, clients):
        return [placement._Static(key=(0,), provider=p, verdict=None, own=False, numa=0, thb=0,
                                  order=((0,), p)) for p in self.per_port.get(clients, [])]

    def _auto_serves(self, ns, nvme, nics):
        return nics[0] in self.auto

    def _auto(self, ns, clients, served, n_best):
        return ("auto", served, n_best)


@pytest.mark.parametrize("auto,expect", [({"nA", "nB"}, ("auto", [1, 2], 1)),
                                         ({"nA"}, None)])
def test_auto_mode_only_when_it_serves_more_ports_than_any_single_provider(auto, expect):
    ns = profile.resolve(prof(TWO), multipath_machine()).namespaces[0]
    ns.ports[0].clients, ns.ports[1].clients = ["nA"], ["nB"]
    per_port = {("D",): ["P1", "P2"], ("D", "nA"): ["P1"], ("D", "nB"): ["P2"]}
    clients, auto_d = _Placer(per_port, auto).multipath_clients(ns, ("D", "nA", "nB"))
    assert auto_d == expect
    if expect is None:          # a tie on ports: a pinned provider, placed for its own NIC
        assert clients == ("D", "nA")


# -- the plan and the apply ------------------------------------------------------------------

class Watched(FakeNvmet):
    """Records the hosts' view (:func:`ana_view`) after every configfs change."""

    def __init__(self, root):
        super().__init__(root, machine=FAKE_MACHINE)
        self.views = []

    def _mut(self, op, rel, fn, *extra):
        super()._mut(op, rel, fn, *extra)
        self.views.append((op, rel, ana_view(self)))


def test_apply_writes_the_groups_and_a_reapply_writes_nothing(tmp_path):
    cfs = fake(str(tmp_path / "root"))
    desired = fake_state(place(prof(TWO)))
    out = reconcile(cfs.root, desired, str(tmp_path / "sd"), cfs=cfs)
    assert out.result.writes > 0
    view = ana_view(cfs)
    assert view[(SUB, 1)] == {1: OPTIMIZED, 2: NON_OPTIMIZED}
    assert view[(SUB, 2)] == {1: NON_OPTIMIZED, 2: OPTIMIZED}
    again = reconcile(cfs.root, fake_state(place(prof(TWO))), str(tmp_path / "sd"), cfs=cfs)
    assert again.plan.ops == []


def test_a_change_of_reachability_restates_the_groups_and_never_hides_a_namespace(tmp_path):
    """cmbA gone: driveA offloads nowhere (when_none: off: p2pmem 0). Applied to a live,
    exported target, the plan re-states driveA's group in place (no namespace moves); after
    every single configfs write each enabled namespace stays reachable through some port."""
    cfs = Watched(str(tmp_path / "root"))
    sd = str(tmp_path / "sd")
    reconcile(cfs.root, fake_state(place(prof(TWO))), sd, cfs=cfs)
    inv = multipath_machine()
    inv.pci[CMB_A].p2pmem = None
    lost = place(prof(TWO, p2p="p2p: {when_none: off}\n"), inv,
                 live=lambda: read_state(cfs))
    cfs.views.clear()
    out = reconcile(cfs.root, fake_state(lost), sd, cfs=cfs)
    ana_ops = [(o.action, o.path) for o in out.plan.ops if "ana" in o.path]
    assert ana_ops == [("write", "ports/1/ana_groups/2/ana_state")]      # no namespace moves
    for op, rel, view in cfs.views:
        for key, states in view.items():
            assert set(states.values()) - {"inaccessible"}, (op, rel, key, states)
    assert ana_view(cfs)[(SUB, 1)] == {1: NON_OPTIMIZED, 2: NON_OPTIMIZED}


def test_groups_exist_and_are_stated_before_a_namespace_moves_into_them(tmp_path):
    """An exported target without ANA gets multipath: groups are made and stated on the live
    ports (phase ana_groups) before any ana_grpid write, so no host ever sees its namespace
    in a group a port reports inaccessible."""
    cfs = Watched(str(tmp_path / "root"))
    sd = str(tmp_path / "sd")
    plain = fake_state(place(prof(TWO)))
    for p in plain.ports.values():
        p.ana_groups = {}
    for ns in plain.subsystems[SUB].namespaces.values():
        del ns.attrs["ana_grpid"]
    reconcile(cfs.root, plain, sd, cfs=cfs)
    cfs.views.clear()
    out = reconcile(cfs.root, fake_state(place(prof(TWO))), sd, cfs=cfs)
    paths = [o.path for o in out.plan.ops]
    first_move = min(i for i, p in enumerate(paths) if p.endswith("/ana_grpid"))
    assert all(i < first_move for i, p in enumerate(paths) if "/ana_groups/" in p)
    for op, rel, view in cfs.views:
        for key, states in view.items():
            assert "inaccessible" not in states.values(), (op, rel, key, states)


def test_prune_keeps_a_group_a_namespace_still_uses():
    live = st.TargetState()
    live.subsystems[SUB] = st.Subsystem(nqn=SUB, namespaces={1: st.Namespace(nsid=1, attrs={"ana_grpid": "5"})})
    live.ports[1] = st.Port(portid=1, subsystems=[SUB], ana_groups={1: OPTIMIZED, 5: OPTIMIZED})
    desired = st.TargetState()
    desired.subsystems[SUB] = st.Subsystem(nqn=SUB, namespaces={1: st.Namespace(nsid=1, attrs={})})
    desired.ports[1] = st.Port(portid=1, subsystems=[SUB])
    managed = Managed.of_state(live)
    plan = build_plan(live, desired, managed, prune=True)
    assert not [o for o in plan.ops if o.action == "rmdir"]
    assert any("ANA group 5" in w and "inaccessible" in w for w in plan.warnings)
    desired.subsystems[SUB].namespaces[1].attrs["ana_grpid"] = "1"
    plan = build_plan(live, desired, managed, prune=True)
    assert [(o.action, o.path) for o in plan.ops] == [("write", f"subsystems/{SUB}/namespaces/1/ana_grpid"),
                                                  ("rmdir", "ports/1/ana_groups/5")]


def test_a_namespace_in_a_group_its_port_lacks_is_a_warning():
    desired = st.TargetState()
    desired.subsystems[SUB] = st.Subsystem(nqn=SUB, namespaces={1: st.Namespace(nsid=1, attrs={"ana_grpid": "7"})})
    desired.ports[1] = st.Port(portid=1, subsystems=[SUB], ana_groups={7: OPTIMIZED})
    desired.ports[2] = st.Port(portid=2, subsystems=[SUB])
    plan = build_plan(st.TargetState(), desired, Managed())
    assert any("port(s) 2 have no directory" in w for w in plan.warnings)
    desired.ports[1].ana_groups = {7: "inaccessible"}
    plan = build_plan(st.TargetState(), desired, Managed())
    assert any("inaccessible through every port" in w for w in plan.warnings)


# -- re-deriving the states of a live target (the watcher) -----------------------------------

def _live_after_apply():
    """The live tree as the placement left it (groups 2: port 1 optimized, 3: port 2)."""
    pl = place(prof(TWO))
    return pl.state, {g for p in pl.state.ports.values() for g in p.ana_groups}


def _rederive(live, groups, inv=None, nics=None, notes_of=None, **kw):
    inv = inv or multipath_machine()
    nvme = {(SUB, 1): DRIVE_A, (SUB, 2): DRIVE_B}
    nics = nics if nics is not None else {1: [NIC_A], 2: [NIC_B]}
    machine = multipath.MachineNow(nvme, nics, notes_of or {})
    return multipath.rederive(live, groups, machine, placement.Oracle(inv), **kw)


def test_rederive_on_an_unchanged_machine_changes_nothing():
    live, groups = _live_after_apply()
    r = _rederive(live, groups)
    assert r.changes == [] and r.plan.members == {(SUB, 1): 2, (SUB, 2): 3}


def test_rederive_provider_gone_restates_its_group_only():
    live, groups = _live_after_apply()
    inv = multipath_machine()
    del inv.pci[CMB_A]                          # hot-removed: no longer on the bus
    r = _rederive(live, groups, inv)
    assert r.changes == ["port 1 group 2: optimized -> non-optimized"]
    assert "is not a published provider on the PCI bus" in r.paths[(SUB, 1)][0].reason


def test_rederive_nic_address_gone_and_back():
    live, groups = _live_after_apply()
    gone = _rederive(live, groups, nics={1: [], 2: [NIC_B]},
                     notes_of={1: "10.81.0.1 is on no netdev now"})
    assert gone.changes == ["port 1 group 2: optimized -> non-optimized"]
    assert gone.paths[(SUB, 1)][0].reason == "10.81.0.1 is on no netdev now"
    live.ports[1].ana_groups[2] = "non-optimized"
    back = _rederive(live, groups)
    assert back.changes == ["port 1 group 2: non-optimized -> optimized"]


def test_rederive_a_stale_binding_does_not_offload():
    """The provider is back at its BDF, but the namespace still holds the removed device until
    p2pmem is written again: not optimized until then."""
    live, groups = _live_after_apply()
    r = _rederive(live, groups, not_offloading={(SUB, 1): "bound to the removed device"})
    assert r.changes == ["port 1 group 2: optimized -> non-optimized"]


def test_rederive_leaves_namespaces_of_other_groups_alone():
    live, groups = _live_after_apply()
    live.subsystems[SUB].namespaces[2].attrs["ana_grpid"] = "1"
    r = _rederive(live, {2})
    assert list(r.paths) == [(SUB, 1)] and (SUB, 2) not in r.plan.members


def test_the_nvmetcli_save_carries_the_groups_and_restores_them(tmp_path):
    """``save`` writes nvmetcli's shape (ports[].ana_groups[] {grpid, ana.state}, namespaces[]
    ana.grpid / ana_grpid); restoring it on an empty target gives the hosts the same view."""
    from nvmet_p2p.nvmet import statefile
    cfs = fake(str(tmp_path / "root"))
    reconcile(cfs.root, fake_state(place(prof(TWO))), str(tmp_path / "sd"), cfs=cfs)
    doc = statefile.to_doc(read_state(cfs))
    port1 = next(p for p in doc["ports"] if p["portid"] == 1)
    assert {"grpid": 2, "ana": {"state": "optimized"}} in port1["ana_groups"]
    assert {"grpid": 3, "ana": {"state": "non-optimized"}} in port1["ana_groups"]
    ns1 = next(n for n in next(s for s in doc["subsystems"] if s["nqn"] == SUB)["namespaces"]
               if n["nsid"] == 1)
    assert ns1["ana_grpid"] == 2
    other = fake(str(tmp_path / "other"))
    reconcile(other.root, statefile.parse(doc), str(tmp_path / "sd2"), cfs=other)
    assert ana_view(other) == ana_view(cfs)
