"""The watcher's ANA reaction (nvmet_p2p/service/anawatch.py) on the fake configfs: a target
applied from a multipath: p2p profile, then the machine changes (provider gone, a NIC's address
gone, both back) and only the ANA states follow, through the reconcile path."""

from __future__ import annotations

import copy
import io
import shlex
import time

import pytest

from nvmet_p2p.nvmet.apply import ManagedStore, reconcile
from nvmet_p2p.policy import placement, profile
from nvmet_p2p.service import anawatch, watch
from nvmet_p2p.service import hotplug as hp
from support.fakenvmet import ana_view
from support.machine import multipath_machine
from support.multipath import CMB_A, SUB, TWO, fake, fake_state, prof

OPT, NON = "optimized", "non-optimized"


@pytest.fixture
def target(tmp_path):
    """The fake target (the multipath machine's devices) after apply."""
    inv = multipath_machine()
    pl = placement.place(profile.resolve(prof(TWO), inv), inv)
    cfs = fake(str(tmp_path / "root"))
    sd = str(tmp_path / "sd")
    reconcile(cfs.root, fake_state(pl), sd, cfs=cfs)
    return cfs, sd


def machine(**change) -> object:
    inv = multipath_machine()
    for nic in change.get("nic_gone", []):
        inv.net[nic].addresses = []
    for bdf in change.get("gone", []):
        del inv.pci[bdf]
    return inv


def test_nothing_changed_writes_nothing(target):
    cfs, sd = target
    r = anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(machine())
    assert r.changes == [] and r.writes == 0


def test_provider_gone_then_back(target):
    cfs, sd = target
    managed = copy.deepcopy(ManagedStore(sd).load())
    r = anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(machine(gone=[CMB_A]))
    assert r.changes == ["port 1 group 2: optimized -> non-optimized"] and r.writes == 1
    assert ana_view(cfs)[(SUB, 1)] == {1: NON, 2: NON}
    assert ana_view(cfs)[(SUB, 2)] == {1: NON, 2: OPT}             # untouched
    assert ManagedStore(sd).load() == managed                        # nothing adopted or lost
    back = anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(machine())
    assert back.changes == ["port 1 group 2: non-optimized -> optimized"]
    assert ana_view(cfs)[(SUB, 1)] == {1: OPT, 2: NON}


def test_a_stale_binding_keeps_the_port_non_optimized(target):
    cfs, sd = target
    anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(machine(gone=[CMB_A]))
    r = anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(
        machine(), not_offloading={(SUB, 1): "p2pmem still bound to the removed device"})
    assert r.changes == [] and ana_view(cfs)[(SUB, 1)] == {1: NON, 2: NON}


def test_address_gone_and_report_only(target):
    cfs, sd = target
    dry = anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(machine(nic_gone=["nica"]), write=False)
    assert dry.changes == ["port 1 group 2: optimized -> non-optimized"] and dry.writes == 0
    assert ana_view(cfs)[(SUB, 1)] == {1: OPT, 2: NON}               # report: nothing written
    r = anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(machine(nic_gone=["nica"]))
    assert ana_view(cfs)[(SUB, 1)] == {1: NON, 2: NON}
    path = r.rederived.paths[(SUB, 1)][0]
    assert "no RDMA device serves 10.81.0.1 now" in path.reason


def test_never_inaccessible_whatever_is_lost(target):
    cfs, sd = target
    anawatch.AnaTarget(cfs.root, sd, cfs=cfs).react(
        machine(gone=[CMB_A, "0000:08:00.0"], nic_gone=["nica", "nicb"]))
    for states in ana_view(cfs).values():
        assert set(states.values()) == {NON}


# -- the watcher runs the reaction after a burst ------------------------------------------------

def _watcher(cfs, sd, inv, policy):
    out = io.StringIO()
    w = watch.Watcher(watch.Options(root=cfs.root, state_dir=sd, policy=policy), [],
                      watch.Log(stream=out), cfs=cfs)
    w.inventory = inv
    return w, out


def _lines(out) -> list[dict]:
    return [dict(kv.split("=", 1) for kv in shlex.split(ln)) for ln in out.getvalue().splitlines()]


def test_the_watcher_writes_the_ana_states_after_a_provider_goes(target):
    cfs, sd = target
    w, out = _watcher(cfs, sd, machine(gone=[CMB_A]), "reconcile")
    lost = hp.Decision("provider-lost", CMB_A, namespaces=[f"{SUB}/1"],
                       first_event=time.monotonic() - 1.0, action="reconciled")
    w._ana([lost], time.monotonic())
    (line,) = [x for x in _lines(out) if x.get("decision") == "ana-states"]
    assert line["action"] == "reconciled" and line["subject"] == "port 1", line
    assert line["changes"] == "port 1 group 2: optimized -> non-optimized"
    assert float(line["reaction_ms"]) >= 1000.0          # from the kernel's first uevent
    assert ana_view(cfs)[(SUB, 1)] == {1: NON, 2: NON}
    assert ana_view(cfs)[(SUB, 2)] == {1: NON, 2: OPT}


def test_a_reporting_watcher_says_what_would_change_and_writes_nothing(target):
    cfs, sd = target
    before = ana_view(cfs)
    w, out = _watcher(cfs, sd, machine(gone=[CMB_A]), "report")
    w._ana([hp.Decision("provider-lost", CMB_A, namespaces=[f"{SUB}/1"])], time.monotonic())
    (line,) = [x for x in _lines(out) if x.get("decision") == "ana-states"]
    assert line["action"] == "reported" and "optimized -> non-optimized" in line["changes"]
    assert ana_view(cfs) == before


def test_a_provider_back_without_a_rewrite_keeps_its_port_non_optimized(target):
    """Reported, not reconciled: the namespace stays bound to the removed device."""
    cfs, sd = target
    w, out = _watcher(cfs, sd, machine(gone=[CMB_A]), "reconcile")
    w._ana([hp.Decision("provider-lost", CMB_A, namespaces=[f"{SUB}/1"])], time.monotonic())
    w.inventory = machine()
    w._ana([hp.Decision("provider-back", CMB_A, namespaces=[f"{SUB}/1"], action="reported")],
           time.monotonic())
    assert ana_view(cfs)[(SUB, 1)] == {1: NON, 2: NON}
    w._ana([hp.Decision("provider-back", CMB_A, namespaces=[f"{SUB}/1"], action="reconciled")],
           time.monotonic())
    assert ana_view(cfs)[(SUB, 1)] == {1: OPT, 2: NON}


def test_handle_runs_the_ana_reaction_only_after_device_and_address_events(target, monkeypatch):
    cfs, sd = target
    w, _out = _watcher(cfs, sd, machine(), "report")
    called = []
    monkeypatch.setattr(w, "refresh", lambda: None)
    monkeypatch.setattr(w, "_ana", lambda decisions, t: called.append([d.kind for d in decisions]))
    for kind, runs in (("backing-lost", False), ("provider-lost", True), ("address-back", True)):
        monkeypatch.setattr(hp, "decide", lambda *a, k=kind, **kw: [hp.Decision(k, "x")])
        called.clear()
        w.handle([hp.Event("remove", "pci", "x", {}, 1.0)])
        assert bool(called) == runs, (kind, called)


def test_an_ana_reaction_that_fails_is_logged_and_the_watcher_goes_on(target, monkeypatch):
    cfs, sd = target
    w, out = _watcher(cfs, sd, machine(gone=[CMB_A]), "reconcile")

    def gone(*_a, **_kw):
        raise OSError(19, "No such device")
    monkeypatch.setattr(anawatch, "reconcile", gone)
    w._ana([hp.Decision("provider-lost", CMB_A, namespaces=[f"{SUB}/1"])], time.monotonic())
    (line,) = [x for x in _lines(out) if x.get("decision") == "ana-states"]
    assert line["action"] == "failed" and "No such device" in line["error"], line
