"""Placement on synthetic topologies: every ranking rule, every tie-break, capacity, fallbacks."""

from __future__ import annotations

import random
import textwrap

import pytest

from nvmet_p2p.policy import placement, profile
from nvmet_p2p.policy.placement import PlacementError
from support.machine import GiB, Machine, MiB, amd_machine, jbof_machine, lab_machine

SUB = "nqn.2026-01.io.nvmet-p2p:t"
HOST = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"


def make_profile(namespaces: str, ports: str = "  - {id: 1, transport: rdma, rdma_device: mlx5_0}",
                 top: str = "", sub_ports: str = "[1]") -> profile.Profile:
    text = (f"version: 1\n{top}ports:\n{ports}\nsubsystems:\n  - nqn: {SUB}\n"
            f"    hosts: [{HOST}]\n    ports: {sub_ports}\n    namespaces:\n"
            + textwrap.indent(textwrap.dedent(namespaces).strip("\n"), "      ") + "\n")
    rep = profile.Report("t.yaml")
    data = profile.parse(text, "t.yaml", rep)
    assert not rep.errors, [str(e) for e in rep.errors]
    return profile.Profile(file="t.yaml", data=data)


def run(inv, namespaces, explain=True, **kw):
    res = profile.resolve(make_profile(namespaces, **kw), inv)
    return placement.place(res, inv, explain=explain)


def chosen(p) -> list[str]:
    return [d.p2pmem for d in p.decisions]


def decision(p, serial):
    return next(d for d in p.decisions if d.namespace.controller.serial == serial)


# -- machines ---------------------------------------------------------------------------------

def skx_nested() -> Machine:
    """Whitelisted Skylake-SP stacks. Stack 0x17: switch S1 with NVMe X (no CMB), NIC mlx5_0,
    and, two switch levels further down, provider DEEP. Stack 0x3a: provider RP on a root
    port. DEEP is bus_addr but farther (8+8); RP is closer (6+6) but crosses the root complex."""
    m = Machine()
    m.host_bridge(bus=0, vendor=0x8086, device=0x2020)
    s17 = m.host_bridge(bus=0x17, first_function=False)
    d1 = m.switch(m.root_port(s17, vendor=0x8086, device=0x2030), ports=3)
    m.nvme(d1[0], "X")
    m.rdma_nic(d1[1], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    d2 = m.switch(d1[2], ports=1)
    d3 = m.switch(d2[0], ports=1)
    m.nvme(d3[0], "DEEP", cmb=256 * MiB)
    s3a = m.host_bridge(bus=0x3a, first_function=False)
    m.nvme(m.root_port(s3a, vendor=0x8086, device=0x2030), "RP", cmb=256 * MiB)
    return m


def one_switch(providers: list[tuple[str, int | None]], nic: bool = True, x_cmb=None,
               nested_first: str | None = None) -> Machine:
    """A non-whitelisted q35 host with one switch: NVMe X (CMB ``x_cmb``), an RDMA NIC, and
    ``providers`` (serial, CMB bytes). ``nested_first`` puts that provider first, one switch
    level deeper (so it gets the lowest BDF)."""
    m = Machine()
    hb = m.host_bridge()
    n = len(providers) + 2 + (1 if nested_first else 0)
    d = m.switch(m.root_port(hb), ports=n)
    i = 0
    if nested_first:
        inner = m.switch(d[i], ports=1)
        m.nvme(inner[0], nested_first, cmb=256 * MiB)
        i += 1
    m.nvme(d[i], "X", cmb=x_cmb)
    i += 1
    if nic:
        m.rdma_nic(d[i], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    i += 1
    for serial, cmb in providers:
        m.nvme(d[i], serial, cmb=cmb)
        i += 1
    return m


def pci_of(inv, serial):
    return next(c.pci for c in inv.nvme.values() if c.serial == serial)


# -- rule 1: bus_addr before thru_host_bridge -------------------------------------------------

def test_bus_addr_beats_a_closer_path_through_the_root_complex():
    inv = skx_nested().build()
    p = run(inv, "- select: {serial: X}")
    d = p.decisions[0]
    deep, rp = pci_of(inv, "DEEP"), pci_of(inv, "RP")
    assert d.p2pmem == deep and d.map_type == "bus_addr"
    c_deep, c_rp = d.candidates
    assert c_rp.provider == rp                   # the closer candidate is the one through the root port
    assert c_deep.distance > c_rp.distance       # the kernel would take RP: it only sees distance
    assert c_rp.map_type == "thru_host_bridge"
    assert c_rp.lost.startswith("its path crosses the root complex (thru_host_bridge)")


def test_require_bus_addr_refuses_root_complex_paths():
    m = skx_nested()
    inv = m.build()
    inv.pci[pci_of(inv, "DEEP")].p2pmem.published = False
    p = run(inv, "- select: {serial: X}\n  p2p: {require: bus_addr}")
    d = p.decisions[0]
    assert d.status == "error" and "with require: bus_addr" in d.error
    assert "or relax require: bus_addr" in d.error
    assert p.errors and p.errors[0].startswith("t.yaml:")
    lost = {c.provider: c.lost for c in d.rejected}
    assert "require: bus_addr" in lost[pci_of(inv, "RP")]
    assert "not published" in lost[pci_of(inv, "DEEP")]
    # without the requirement the root-complex path is taken
    p = run(inv, "- select: {serial: X}")
    assert p.decisions[0].p2pmem == pci_of(inv, "RP")
    assert p.decisions[0].map_type == "thru_host_bridge"


# -- rule 2: the namespace's own CMB ----------------------------------------------------------

def test_own_cmb_first_and_explained():
    inv = one_switch([("P1", 256 * MiB)], x_cmb=256 * MiB).build()
    d = run(inv, "- select: {serial: X}").decisions[0]
    assert d.p2pmem == pci_of(inv, "X")
    assert d.candidates[0].own_cmb and d.candidates[0].lost is None
    assert d.candidates[1].lost == f"not the namespace's own CMB ({pci_of(inv, 'X')} is)"


def test_own_cmb_without_any_p2p_client_in_the_lab():
    inv = lab_machine()
    p = run(inv, "- select: {cmb: true}\n  each: true",
            ports="  - {id: 1, transport: rdma, rdma_device: rxe0}\n"
                  "  - {id: 2, transport: tcp, netdev: lo}", sub_ports="[1, 2]")
    assert chosen(p) == ["0000:03:00.0", "0000:04:00.0", "0000:05:00.0"]
    for d in p.decisions:
        assert d.clients == [d.namespace.nvme_pci] and d.demand == 0
        assert any("no port of this namespace has a p2p client" in n for n in d.notes)
    text = placement.render(p, explain=True)
    assert "rxe0 is soft RDMA" in text and "nvmet-tcp never uses p2pmem" in text
    assert text.count("rxe0 is soft RDMA") == 1          # said once, not per namespace


# -- rule 3: smaller summed distance ----------------------------------------------------------

def test_smaller_distance_beats_lower_bdf():
    inv = one_switch([("NEAR", 256 * MiB)], nested_first="FAR").build()
    near, far = pci_of(inv, "NEAR"), pci_of(inv, "FAR")
    assert far < near                                 # FAR has the lower BDF
    d = run(inv, "- select: {serial: X}").decisions[0]
    assert d.p2pmem == near
    c_far = d.candidates[1]
    assert c_far.provider == far and c_far.lost == f"distance {c_far.distance} > {d.candidates[0].distance}"


# -- rule 4: same NUMA node -------------------------------------------------------------------

def test_same_numa_node_beats_lower_bdf_on_amd():
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    hb1 = m.host_bridge(bus=0x00, vendor=0x1022, device=0x1480, numa=1)
    m.nvme(m.root_port(hb1), "REMOTE", cmb=256 * MiB)
    hb0 = m.host_bridge(bus=0x80, vendor=0x1022, device=0x1480, numa=0)
    m.nvme(m.root_port(hb0), "X")
    m.rdma_nic(m.root_port(hb0), "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.nvme(m.root_port(hb0), "LOCAL", cmb=256 * MiB)
    inv = m.build()
    d = run(inv, "- select: {serial: X}").decisions[0]
    local, remote = pci_of(inv, "LOCAL"), pci_of(inv, "REMOTE")
    assert remote < local and d.p2pmem == local
    c = d.candidates[1]
    assert c.provider == remote and c.distance == d.candidates[0].distance
    assert c.lost == f"2 client(s) on another NUMA node ({local}: 0)"


# -- rule 5: free capacity after what is already assigned -------------------------------------

def test_more_free_capacity_beats_lower_bdf():
    inv = one_switch([("P1", 256 * MiB), ("P2", 256 * MiB), ("PIN", None)]).build()
    p1, p2 = pci_of(inv, "P1"), pci_of(inv, "P2")
    # nothing assigned yet: a pure tie -> lower BDF
    d = run(inv, "- select: {serial: X}").decisions[0]
    assert d.p2pmem == p1
    assert d.candidates[1].lost == f"tie on every rule; lower BDF wins ({p1})"
    # a namespace pinned to P1 takes 64 MiB of it first: X goes to P2
    p = run(inv, f"- select: {{serial: PIN}}\n  p2p: {{pinned: '{p1}'}}\n- select: {{serial: X}}")
    assert chosen(p) == [p1, p2]
    c = p.decisions[1].candidates[1]
    assert c.provider == p1 and c.lost.startswith("less free after this plan's assignments")
    assert p.usage[p1]["assigned"] == 64 * MiB and p.usage[p2]["assigned"] == 64 * MiB


# -- rule 6: BDF, determinism -----------------------------------------------------------------

def test_same_input_same_plan_whatever_the_inventory_order():
    inv = jbof_machine()
    prof = "- select: {model: JBOF-SW0}\n  each: true"
    ref = chosen(run(inv, prof, explain=False))
    for seed in range(5):
        shuffled = jbof_machine()
        items = list(shuffled.pci.items())
        random.Random(seed).shuffle(items)
        shuffled.pci = dict(items)
        nss = list(shuffled.namespaces.items())
        random.Random(seed).shuffle(nss)
        shuffled.namespaces = dict(nss)
        assert chosen(run(shuffled, prof, explain=False)) == ref
    assert chosen(run(inv, prof, explain=True)) == ref    # explaining does not change the choice


# -- capacity: room first, spreading, when_full, knobs ----------------------------------------

def test_a_full_own_cmb_loses_to_a_sibling_with_room():
    inv = one_switch([("BIG", 1 * GiB)], x_cmb=16 * MiB).build()
    d = run(inv, "- select: {serial: X}").decisions[0]          # budget 64 MiB
    assert d.p2pmem == pci_of(inv, "BIG")
    own = next(c for c in d.candidates if c.own_cmb)
    assert own.lost.startswith("full: ") and "the budget needs 64 MiB" in own.lost


def test_spread_then_share_with_knobs():
    inv = one_switch([("P1", 100 * MiB), ("P2", 100 * MiB), ("A", None), ("B", None)]).build()
    p1, p2 = pci_of(inv, "P1"), pci_of(inv, "P2")
    nss = "- select: {serial: X}\n- select: {serial: A}\n- select: {serial: B}"
    p = run(inv, nss)
    x, a, b = p.decisions
    assert sorted([x.p2pmem, a.p2pmem]) == [p1, p2]           # spread: one each
    assert x.status == a.status == "placed"
    assert b.status == "shared" and b.p2pmem in (p1, p2)
    assert any("no candidate has room for the budget of 64 MiB" in n for n in b.notes)
    assert any("would fall back to host memory" in n for n in b.notes)
    knobs = "\n".join(b.knobs)
    assert "port 1: param_max_queue_size=" in knobs
    assert f"subsystem {SUB}: attr_qid_max=" in knobs
    assert "param_mdts=" in knobs
    assert max(u["assigned"] / u["available"] for u in p.usage.values()) > 1
    # the knob really fits: depth 128 -> 64 leaves 32 MiB per namespace
    q = int(knobs.split("param_max_queue_size=")[1].split()[0])
    assert 4 * q * 128 * 1024 <= 100 * MiB - 64 * MiB


@pytest.mark.parametrize("when,status,p2pmem", [("off", "fallback", "0"), ("error", "error", "0")])
def test_when_full(when, status, p2pmem):
    inv = one_switch([("P1", 32 * MiB)]).build()
    p = run(inv, f"- select: {{serial: X}}\n  p2p: {{when_full: {when}}}")
    d = p.decisions[0]
    assert (d.status, d.p2pmem) == (status, p2pmem)
    assert d.knobs
    if when == "error":
        assert "when_full: error" in d.error
        with pytest.raises(PlacementError) as ei:
            placement.place_or_raise(profile.resolve(make_profile(
                f"- select: {{serial: X}}\n  p2p: {{when_full: {when}}}"), inv), inv)
        assert "t.yaml:" in str(ei.value) and "cannot be placed" in str(ei.value)


def test_constrained_namespaces_are_placed_first():
    # FLEX (no CMB) is listed first and ties between OWNER's CMB and P2 (lower BDF is OWNER's);
    # each provider has room for one budget. OWNER must still get its own CMB.
    m = Machine()
    hb = m.host_bridge()
    d = m.switch(m.root_port(hb), ports=4)
    m.nvme(d[0], "OWNER", cmb=100 * MiB)
    m.nvme(d[1], "FLEX")
    m.rdma_nic(d[2], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.nvme(d[3], "P2", cmb=100 * MiB)
    inv = m.build()
    p = run(inv, "- select: {serial: FLEX}\n- select: {serial: OWNER}")
    assert chosen(p) == [pci_of(inv, "P2"), pci_of(inv, "OWNER")]
    assert all(d.status == "placed" for d in p.decisions)


# -- several ports: one provider for every NIC ------------------------------------------------

TWO_PORTS = ("  - {id: 1, transport: rdma, rdma_device: mlx5_0}\n"
             "  - {id: 2, transport: rdma, rdma_device: mlx5_1}")


def test_two_ports_whose_nics_share_no_provider():
    inv = jbof_machine()                       # q35-like host bridge: no root-complex paths
    x = "- select: {serial: J001}"
    p = run(inv, x, ports=TWO_PORTS, sub_ports="[1, 2]")
    d = p.decisions[0]
    assert d.status == "error"
    nic0, nic1 = inv.rdma["mlx5_0"].pci, inv.rdma["mlx5_1"].pci
    assert "no single provider serves the NVMe and every port's NIC" in d.error
    assert f"+{nic1}: none" in d.error and f"+{nic0}: 0000:" in d.error
    # best effort: the NVMe and NIC 0 get a provider; NIC 1's connections use host memory
    p = run(inv, x + "\n  p2p: {when_none: best_effort}", ports=TWO_PORTS, sub_ports="[1, 2]")
    d = p.decisions[0]
    assert d.status == "best_effort" and d.p2pmem.startswith("0000:")
    assert f"connections through {nic1} use host memory" in d.summary
    p = run(inv, x + "\n  p2p: {when_none: 'off'}", ports=TWO_PORTS, sub_ports="[1, 2]")
    assert (p.decisions[0].status, p.decisions[0].p2pmem) == ("fallback", "0")


def test_two_ports_get_the_best_common_provider():
    inv = amd_machine()                        # Zen: every root-complex path is allowed
    p = run(inv, "- select: {serial: A001}", ports=TWO_PORTS, sub_ports="[1, 2]")
    d = p.decisions[0]
    assert d.status == "placed" and len(d.clients) == 3
    assert d.map_type == "thru_host_bridge"
    # the chosen provider is the closest for the sum over both NICs, on the NVMe's socket
    best = d.candidates[0]
    assert all(best.distance <= c.distance for c in d.candidates)
    assert inv.pci[best.provider].numa_node == inv.pci[d.clients[0]].numa_node


# -- nothing serves the NVMe: the lab's plain NVMe --------------------------------------------

def test_no_provider_for_the_nvme_is_an_error_that_says_why():
    inv = lab_machine()
    p = run(inv, "- select: {serial: plain}", ports="  - {id: 1, transport: rdma, rdma_device: rxe0}")
    d = p.decisions[0]
    assert d.status == "error"
    assert "no provider is accepted for the NVMe 0000:06:00.0 itself" in d.error
    assert "whitelist" in d.error or "upstream bridge" in d.error
    assert p.errors[0].startswith("t.yaml:9:")
    p = run(inv, "- select: {serial: plain}\n  p2p: {when_none: 'off'}",
            ports="  - {id: 1, transport: rdma, rdma_device: rxe0}")
    assert (p.decisions[0].status, p.decisions[0].p2pmem) == ("fallback", "0")
    assert not p.errors


# -- fixed policies ---------------------------------------------------------------------------

def test_kernel_mode_writes_1_and_describes_the_random_choice():
    inv = jbof_machine()
    p = run(inv, "- select: {serial: J001}\n  p2p: kernel")
    d = p.decisions[0]
    assert (d.p2pmem, d.status) == ("1", "kernel")
    assert any("the kernel picks at random among 4 providers" in n for n in d.notes)
    p = run(lab_machine(), "- select: {serial: plain}\n  p2p: kernel",
            ports="  - {id: 1, transport: rdma, rdma_device: rxe0}")
    assert "the kernel would refuse enable" in p.decisions[0].error


def test_pinned_uses_the_pin_and_reports_a_nic_it_cannot_serve():
    inv = jbof_machine()
    far = pci_of(inv, "J100")                 # a CMB behind the other switch
    near_nic = inv.rdma["mlx5_0"].pci
    p = run(inv, f"- select: {{serial: J000}}\n  p2p: {{pinned: '{pci_of(inv, 'J000')}'}}")
    assert p.decisions[0].p2pmem == pci_of(inv, "J000") and p.decisions[0].status == "pinned"
    with pytest.raises(profile.ProfileError) as ei:
        run(inv, f"- select: {{serial: J000}}\n  p2p: {{pinned: '{far}'}}")
    assert f"pinned provider {far} cannot serve" in str(ei.value)
    assert "EINVAL" in str(ei.value)
    # pinned to its own CMB, exported through the other switch's NIC: allowed, with a warning
    res = profile.resolve(make_profile(f"- select: {{serial: J100}}\n  p2p: {{pinned: '{far}'}}"),
                          inv)
    assert any(f"cannot serve the NIC {near_nic}" in str(w) for w in res.warnings)
    d = placement.place(res, inv).decisions[0]
    assert any("connections through it use host memory" in n for n in d.notes)


def test_off_writes_0():
    p = run(lab_machine(), "- select: {serial: plain}\n  p2p: 'off'",
            ports="  - {id: 1, transport: rdma, rdma_device: rxe0}")
    assert (p.decisions[0].p2pmem, p.decisions[0].status) == ("0", "off")


# -- the desired state ------------------------------------------------------------------------

def test_target_state_written_for_the_lab():
    inv = lab_machine()
    p = run(inv, "- select: {cmb: true}\n  each: true\n- select: {serial: plain}\n  p2p: 'off'",
            ports="  - {id: 1, transport: rdma, rdma_device: rxe0, inline_data_size: 0}\n"
                  "  - {id: 2, transport: tcp, netdev: lo, trsvcid: 4421}", sub_ports="[1, 2]")
    st = p.state
    assert set(st.hosts) == {HOST} and st.hosts[HOST].attrs == {}
    assert st.ports[1].attrs == {"addr_trtype": "rdma", "addr_adrfam": "ipv4",
                                 "addr_traddr": "10.77.0.1", "addr_trsvcid": "4420",
                                 "param_inline_data_size": "0"}
    assert st.ports[2].attrs["addr_traddr"] == "127.0.0.1"
    assert st.ports[1].subsystems == [SUB] and st.ports[2].subsystems == [SUB]
    sub = st.subsystems[SUB]
    assert sub.attrs == {"attr_allow_any_host": "0"} and sub.allowed_hosts == [HOST]
    assert {n: (ns.enable, ns.attrs) for n, ns in sub.namespaces.items()} == {
        1: (True, {"device_path": "/dev/nvme0n1", "p2pmem": "0000:03:00.0"}),
        2: (True, {"device_path": "/dev/nvme1n1", "p2pmem": "0000:04:00.0"}),
        3: (True, {"device_path": "/dev/nvme2n1", "p2pmem": "0000:05:00.0"}),
        4: (True, {"device_path": "/dev/nvme3n1", "p2pmem": "0"}),
    }


def test_placement_json_is_plain_data():
    import json
    p = run(jbof_machine(), "- select: {model: JBOF-SW0}\n  each: true")
    doc = json.loads(json.dumps(p.to_dict()))
    assert len(doc["decisions"]) == 12
    d = doc["decisions"][1]
    assert set(d) >= {"subsystem", "nsid", "p2pmem", "provider", "status", "candidates",
                      "rejected", "clients", "demand", "summary"}
    assert d["candidates"][0]["rank"] == 1 and d["candidates"][0]["lost"] is None


# -- NUMA strictness and spreading the excess -------------------------------------------------

def _numa_machine(local_cmb):
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    hb1 = m.host_bridge(bus=0x00, vendor=0x1022, device=0x1480, numa=1)
    m.nvme(m.root_port(hb1), "REMOTE", cmb=256 * MiB)
    hb0 = m.host_bridge(bus=0x80, vendor=0x1022, device=0x1480, numa=0)
    m.nvme(m.root_port(hb0), "X")
    m.rdma_nic(m.root_port(hb0), "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.nvme(m.root_port(hb0), "LOCAL", cmb=local_cmb)
    return m.build()


def test_numa_prefer_takes_room_elsewhere_strict_stays_local():
    inv = _numa_machine(16 * MiB)                 # the local CMB cannot hold 64 MiB
    d = run(inv, "- select: {serial: X}").decisions[0]
    assert d.p2pmem == pci_of(inv, "REMOTE") and d.status == "placed"
    d = run(inv, "- select: {serial: X}\n  p2p: {numa: strict}").decisions[0]
    assert d.p2pmem == pci_of(inv, "LOCAL") and d.status == "shared"
    lost = {c.provider: c.lost for c in d.rejected}
    assert "numa: strict" in lost[pci_of(inv, "REMOTE")]
    # nothing local at all: strict has no candidate, and says so
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    hb1 = m.host_bridge(bus=0x00, vendor=0x1022, device=0x1480, numa=1)
    m.nvme(m.root_port(hb1), "REMOTE", cmb=256 * MiB)
    hb0 = m.host_bridge(bus=0x80, vendor=0x1022, device=0x1480, numa=0)
    m.nvme(m.root_port(hb0), "X")
    m.rdma_nic(m.root_port(hb0), "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    d = run(m.build(), "- select: {serial: X}\n  p2p: {numa: strict}").decisions[0]
    assert d.status == "error" and "with numa: strict" in d.error


def test_share_spreads_the_excess_evenly():
    inv = one_switch([("P1", 128 * MiB), ("P2", 128 * MiB)] + [(f"N{i}", None) for i in range(5)]).build()
    nss = "\n".join(f"- select: {{serial: N{i}}}" for i in range(5)) + "\n- select: {serial: X}"
    p = run(inv, nss)
    loads = sorted(u["assigned"] for u in p.usage.values())
    assert sum(loads) == 6 * 64 * MiB
    assert loads[1] - loads[0] <= 64 * MiB         # 3 + 3, never 5 + 1
    shared = [d for d in p.decisions if d.status == "shared"]
    assert len(shared) == 4


def test_a_second_choice_never_takes_another_namespaces_first():
    # two sockets, one 100 MiB CMB and two CMB-less namespaces each (64 MiB budgets). Placed
    # one by one, socket 0's second namespace would grab socket 1's CMB before socket 1's own
    # namespaces were looked at; in phases, each socket keeps its own.
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    for s in range(2):
        hb = m.host_bridge(bus=s * 0x80, vendor=0x1022, device=0x1480, numa=s)
        m.nvme(m.root_port(hb), f"P{s}", cmb=100 * MiB)
        m.rdma_nic(m.root_port(hb), f"mlx5_{s}", netdev=f"ens{s}", ip=f"10.0.{s}.1/24")
        for x in "ab":
            m.nvme(m.root_port(hb), f"X{s}{x}")
    inv = m.build()
    ports = ("  - {id: 1, transport: rdma, rdma_device: mlx5_0}\n"
             "  - {id: 2, transport: rdma, rdma_device: mlx5_1}")
    text = (f"version: 1\nports:\n{ports}\nsubsystems:\n"
            f"  - nqn: {SUB}0\n    allow_any_host: true\n    ports: [1]\n    namespaces:\n"
            "      - {select: {serial: X0a}}\n      - {select: {serial: X0b}}\n"
            f"  - nqn: {SUB}1\n    allow_any_host: true\n    ports: [2]\n    namespaces:\n"
            "      - {select: {serial: X1a}}\n      - {select: {serial: X1b}}\n")
    data = profile.parse(text, "t.yaml")
    res = profile.resolve(profile.Profile(file="t.yaml", data=data), inv)
    p = placement.place(res, inv)
    got = [(d.namespace.controller.serial, d.p2pmem, d.status) for d in p.decisions]
    assert got == [("X0a", pci_of(inv, "P0"), "placed"), ("X0b", pci_of(inv, "P0"), "shared"),
                   ("X1a", pci_of(inv, "P1"), "placed"), ("X1b", pci_of(inv, "P1"), "shared")]


def test_acs_redirect_refusals_name_the_kernel_parameter():
    # q35-like host (not whitelisted); the switch's downstream ports redirect (ACS RR|CR, as an
    # IOMMU sets them): siblings are refused and the kernel would print the parameter to fix it
    m = Machine()
    hb = m.host_bridge()
    d = m.switch(m.root_port(hb), ports=3, acs_ctrl=0x001d)
    m.nvme(d[0], "X")
    m.rdma_nic(d[1], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.nvme(d[2], "P", cmb=256 * MiB)
    inv = m.build()
    p = run(inv, "- select: {serial: X}")
    d0 = p.decisions[0]
    assert d0.status == "error" and "pci=disable_acs_redir=" in d0.error
    with pytest.raises(profile.ProfileError) as ei:
        run(inv, f"- select: {{serial: X}}\n  p2p: {{pinned: '{pci_of(inv, 'P')}'}}")
    assert "fix: boot with pci=disable_acs_redir=" in str(ei.value)


# -- every rank key against the next one (a key in the wrong order fails one of these) -------

def test_smaller_distance_beats_same_numa_node():
    """Rule 3 before rule 4: REMOTE (other node, on a root port) is closer than LOCAL (same
    node, two switch levels down); the kernel's own number wins over the node."""
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    hb1 = m.host_bridge(bus=0x00, vendor=0x1022, device=0x1480, numa=1)
    m.nvme(m.root_port(hb1), "REMOTE", cmb=256 * MiB)
    hb0 = m.host_bridge(bus=0x80, vendor=0x1022, device=0x1480, numa=0)
    m.nvme(m.root_port(hb0), "X")
    m.rdma_nic(m.root_port(hb0), "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    deep = m.switch(m.switch(m.root_port(hb0), ports=1)[0], ports=1)
    m.nvme(deep[0], "LOCAL", cmb=256 * MiB)
    inv = m.build()
    d = run(inv, "- select: {serial: X}").decisions[0]
    local, remote = pci_of(inv, "LOCAL"), pci_of(inv, "REMOTE")
    assert d.p2pmem == remote
    c_local = d.candidates[1]
    assert c_local.provider == local and c_local.distance > d.candidates[0].distance
    assert c_local.lost == f"distance {c_local.distance} > {d.candidates[0].distance}"


def test_same_numa_node_beats_more_free_capacity():
    """Rule 4 before rule 5: LOCAL has room but less free than REMOTE."""
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    hb1 = m.host_bridge(bus=0x00, vendor=0x1022, device=0x1480, numa=1)
    m.nvme(m.root_port(hb1), "REMOTE", cmb=1 * GiB)
    hb0 = m.host_bridge(bus=0x80, vendor=0x1022, device=0x1480, numa=0)
    m.nvme(m.root_port(hb0), "X")
    m.rdma_nic(m.root_port(hb0), "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.nvme(m.root_port(hb0), "LOCAL", cmb=128 * MiB)
    inv = m.build()
    d = run(inv, "- select: {serial: X}").decisions[0]
    local, remote = pci_of(inv, "LOCAL"), pci_of(inv, "REMOTE")
    assert d.p2pmem == local
    c = d.candidates[1]
    assert c.provider == remote and c.distance == d.candidates[0].distance
    assert c.lost == f"2 client(s) on another NUMA node ({local}: 0)"


def test_smaller_distance_beats_more_free_capacity():
    """Rule 3 before rule 5: FAR (one switch level deeper) has four times the room."""
    inv = one_switch([("NEAR", 256 * MiB)], nested_first="FAR").build()
    far_cmb = inv.pci[pci_of(inv, "FAR")].p2pmem
    far_cmb.size = far_cmb.available = 1 * GiB
    d = run(inv, "- select: {serial: X}").decisions[0]
    assert d.p2pmem == pci_of(inv, "NEAR")
    assert d.candidates[1].lost.startswith("distance ")


def _own_cmb_far_from_two_nics(zen: bool) -> Machine:
    """NVMe X with its own CMB alone under one branch; providers NEAR and NEAR2 (smaller) and
    two RDMA NICs together under another. Without ``zen`` both branches hang below one switch (every path bus_addr,
    X two switch levels deeper);
    with it each branch is its own root port of an AMD Zen host (the CPU rule allows the
    root-complex paths)."""
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19) if zen else Machine()
    hb = m.host_bridge(vendor=0x1022, device=0x1480) if zen else m.host_bridge()
    if zen:
        x_at, near = m.root_port(hb), m.switch(m.root_port(hb), ports=4)
    else:
        top = m.switch(m.root_port(hb), ports=2)
        x_at = m.switch(m.switch(top[0], ports=1)[0], ports=1)[0]     # two levels deeper
        near = m.switch(top[1], ports=4)
    m.nvme(x_at, "X", cmb=256 * MiB)
    m.nvme(near[0], "NEAR", cmb=256 * MiB)
    m.rdma_nic(near[1], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.rdma_nic(near[2], "mlx5_1", netdev="ens2", ip="10.0.1.1/24")
    m.nvme(near[3], "NEAR2", cmb=128 * MiB)                       # as NEAR, less room
    return m


def test_fewer_root_complex_paths_beat_the_own_cmb():
    """Rule 1 before rule 2: X's own CMB reaches both NICs through the root complex (2 such
    paths), NEAR and NEAR2 only the NVMe (1); the own CMB loses, and is listed after NEAR2."""
    inv = _own_cmb_far_from_two_nics(zen=True).build()
    d = run(inv, "- select: {serial: X}", ports=TWO_PORTS, sub_ports="[1, 2]").decisions[0]
    near, x = pci_of(inv, "NEAR"), pci_of(inv, "X")
    assert d.status == "placed" and d.p2pmem == near, [(c.provider, c.lost) for c in d.candidates]
    assert [c.host_bridge_paths for c in d.candidates] == [1, 1, 2]
    assert d.candidates[1].provider == pci_of(inv, "NEAR2")
    assert d.candidates[2].provider == x and d.candidates[2].own_cmb
    assert d.candidates[2].lost.startswith("2 of its client paths cross the root complex")


def test_own_cmb_beats_a_smaller_summed_distance():
    """Rule 2 before rule 3: every path is bus_addr and NEAR's summed distance over the NVMe
    and both NICs is smaller than X's own CMB's; the own CMB still wins."""
    inv = _own_cmb_far_from_two_nics(zen=False).build()
    d = run(inv, "- select: {serial: X}", ports=TWO_PORTS, sub_ports="[1, 2]").decisions[0]
    near, x = pci_of(inv, "NEAR"), pci_of(inv, "X")
    assert d.status == "placed" and d.p2pmem == x and d.map_type == "bus_addr"
    c_near = d.candidates[1]
    assert c_near.provider == near and c_near.distance < d.candidates[0].distance
    assert c_near.lost == f"not the namespace's own CMB ({x} is)"


def test_candidates_are_listed_in_rank_order():
    """The explanation ranks the candidates that lost by the same rules: distance before NUMA
    node before free capacity (three losers, each pair disagreeing on the next rule)."""
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    hb0 = m.host_bridge(bus=0x00, vendor=0x1022, device=0x1480, numa=0)
    hb1 = m.host_bridge(bus=0x80, vendor=0x1022, device=0x1480, numa=1)
    m.nvme(m.root_port(hb0), "X")
    m.rdma_nic(m.root_port(hb0), "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.nvme(m.root_port(hb0), "BEST", cmb=1 * GiB)
    m.nvme(m.root_port(hb1), "REMOTE_BIG", cmb=1 * GiB)           # same distance, other node
    m.nvme(m.root_port(hb0), "LOCAL_SMALL", cmb=128 * MiB)        # same distance, less free
    deep = m.switch(m.switch(m.root_port(hb0), ports=1)[0], ports=1)
    m.nvme(deep[0], "LOCAL_FAR", cmb=2 * GiB)                     # local, most free, farther
    inv = m.build()
    d = run(inv, "- select: {serial: X}").decisions[0]
    order = [next(c.serial for c in inv.nvme.values() if c.pci == k.provider) for k in d.candidates]
    assert order == ["BEST", "LOCAL_SMALL", "REMOTE_BIG", "LOCAL_FAR"], \
        [(o, k.distance, k.numa_mismatch, k.free) for o, k in zip(order, d.candidates)]
    assert [c.rank for c in d.candidates] == [1, 2, 3, 4]


# -- budgets are charged only to providers a path can use (issue 20) --------------------------

ONLY_FAR_NIC = "  - {id: 1, transport: rdma, rdma_device: mlx5_1}"


def test_best_effort_charges_nothing_to_a_provider_its_only_nic_cannot_use():
    """J000 sits under switch 0, its port's only NIC (mlx5_1) under switch 1 of a host bridge
    the kernel does not whitelist: best effort gives the NVMe a provider of its own switch,
    which no connection can use, so none of the budget is charged to it."""
    inv = jbof_machine()
    p = run(inv, "- select: {serial: J000}\n  p2p: {when_none: best_effort}", ports=ONLY_FAR_NIC)
    d = p.decisions[0]
    assert d.status == "best_effort" and "serves the NVMe and 0 of 1 NIC(s)" in d.summary
    assert d.demand > 0
    assert p.usage[d.provider]["assigned"] == 0, p.usage[d.provider]    # was: the whole budget
    assert any("nothing of its budget" in n for n in d.notes)


def test_a_budget_no_path_can_use_does_not_push_another_namespace_off_its_provider():
    """One switch (non-whitelisted host bridge) with provider P (48 MiB CMB), two NVMe without
    CMB and NIC mlx5_0; NIC mlx5_1 alone on another root port. FAR (exported only through
    mlx5_1) gets P by best effort, which no connection of it can use; NEAR (through mlx5_0)
    needs P's room for its 32 MiB budget: it must be placed, not shared."""
    m = Machine()
    hb = m.host_bridge()
    d = m.switch(m.root_port(hb), ports=4)
    m.nvme(d[0], "P", cmb=48 * MiB)
    m.nvme(d[1], "FAR")
    m.nvme(d[2], "NEAR")
    m.rdma_nic(d[3], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.rdma_nic(m.root_port(hb), "mlx5_1", netdev="ens2", ip="10.0.1.1/24")
    inv = m.build()
    top = "budget: {hosts: 1, queues: 4, queue_depth: 64, io_size: 128KiB}\n"   # 32 MiB each
    ports = ("  - {id: 1, transport: rdma, rdma_device: mlx5_1}\n"
             "  - {id: 2, transport: rdma, rdma_device: mlx5_0}")
    text = (f"version: 1\n{top}ports:\n{ports}\nsubsystems:\n"
            f"  - nqn: {SUB}:far\n    hosts: [{HOST}]\n    ports: [1]\n    namespaces:\n"
            f"      - {{select: {{serial: FAR}}, p2p: {{when_none: best_effort}}}}\n"
            f"  - nqn: {SUB}:near\n    hosts: [{HOST}]\n    ports: [2]\n    namespaces:\n"
            f"      - {{select: {{serial: NEAR}}}}\n")
    rep = profile.Report("t.yaml")
    data = profile.parse(text, "t.yaml", rep)
    assert not rep.errors, [str(e) for e in rep.errors]
    p = placement.place(profile.resolve(profile.Profile(file="t.yaml", data=data), inv), inv)
    far, near = decision(p, "FAR"), decision(p, "NEAR")
    prov = pci_of(inv, "P")
    assert (far.status, far.p2pmem) == ("best_effort", prov)
    assert (near.status, near.p2pmem) == ("placed", prov), near.notes    # was: shared
    assert p.usage[prov]["assigned"] == near.demand == 32 * MiB


def test_pinned_on_a_provider_the_only_nic_cannot_reach_charges_nothing():
    inv = jbof_machine()
    own = pci_of(inv, "J000")
    p = run(inv, f"- select: {{serial: J003}}\n  p2p: {{pinned: '{own}'}}", ports=ONLY_FAR_NIC)
    d = p.decisions[0]
    assert d.status == "pinned" and d.p2pmem == own
    assert p.usage[own]["assigned"] == 0
    assert any("nothing of its budget is charged" in n for n in d.notes)
