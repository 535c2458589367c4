"""p2pdma decision rules on Inventory objects built in memory (no sysfs).

Every expected value below is the kernel's, derived by hand from drivers/pci/p2pdma.c
(calc_map_type_and_dist(), host_bridge_whitelist(), cpu_supports_p2pdma(); docs/p2pdma.md)
for the topology drawn in the test's docstring.
"""

from __future__ import annotations

import pytest

from nvmet_p2p.errors import InputError
from nvmet_p2p.pci import distance as D
from nvmet_p2p.pci.p2pdma_rules import MapType
from support.machine import ACS_SV_UF, RR_CR, Machine, lab

P = "0000:03:00.0"  # cmbA behind switch port 02:00.0
B = "0000:04:00.0"  # cmbB behind switch port 02:01.0
PLAIN = "0000:06:00.0"  # plain NVMe on root port 00:05.0


# -- distances -----------------------------------------------------------------------------------

def test_same_switch_siblings_bus_addr_4():
    v = D.distance_many(lab().inv, P, [B])
    assert (v.map_type, v.distance) == (MapType.BUS_ADDR, 4)
    pv = v.pairs[0]
    assert pv.common_upstream == "0000:01:00.0"
    assert pv.path == [P, "0000:02:00.0", "0000:01:00.0", "0000:02:01.0", B]
    assert pv.crosses_root_complex is False
    assert v.kernel_parameter is None


def test_device_and_its_own_cmb_distance_0():
    inv = lab().inv
    for client in ("nvme0n1", "/dev/nvme0n1", "nvme0", P):
        v = D.distance_many(inv, P, [client])
        assert (v.map_type, v.distance) == (MapType.BUS_ADDR, 0), client


def test_two_functions_of_one_device_distance_2():
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x29c0)
    rp = t.root_port_at("0000:00:02.0", acs=0)
    t.endpoint("0000:01:00.0", rp, p2pmem=(64 << 20, 64 << 20, True))
    t.endpoint("0000:01:00.1", rp, vendor=0x15b3, class_code=0x020000, driver="mlx5_core")
    v = D.distance_many(t.inv, "0000:01:00.0", ["0000:01:00.1"])
    assert (v.map_type, v.distance) == (MapType.BUS_ADDR, 2)
    assert v.pairs[0].common_upstream == rp


def test_vf_uses_its_pf_to_go_up():
    """VF 0000:01:00.2 of PF 01:00.0 sits (in sysfs) on a virtual bus; the kernel substitutes the
    PF before pci_upstream_bridge(), so VF<->PF and VF<->VF are 2, VF<->sibling is 4."""
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x29c0)
    rp = t.root_port_at("0000:00:02.0", acs=0)
    usp = "0000:01:00.0"
    d1, d2 = t.switch_at(usp, rp, ["0000:02:00.0", "0000:02:01.0"], acs=0)
    t.nvme_at("0000:03:00.0", d1, "nvme0")
    pf = t.rdma_nic_at("0000:04:00.0", d2, "mlx5_0", "ens1f0", ip="10.0.0.1", acs=0)
    # the VF's own sysfs parent is a different (virtual) bus: give it a misleading chain
    t.rdma_nic_at("0000:04:00.2", d2, "mlx5_2", "ens1f0v0", physfn=pf, acs=0)
    t.rdma_nic_at("0000:04:00.3", d2, "mlx5_3", "ens1f0v1", physfn=pf, acs=0)
    t.inv.pci["0000:04:00.2"].upstream = ["0000:00:02.0"]      # would give 3 if used
    assert D.pair(t.inv, "0000:03:00.0", "mlx5_2").distance == 4
    assert D.pair(t.inv, "0000:03:00.0", "mlx5_2").common_upstream == usp
    assert D.pair(t.inv, pf, "0000:04:00.2").distance == 2
    assert D.pair(t.inv, "0000:04:00.3", "0000:04:00.2").distance == 2


def test_nested_switches_add_two_per_level():
    """rp -> sw1 (usp 01:00.0; dsp 02:00.0, 02:01.0); sw2 below 02:00.0 (usp 03:00.0;
    dsp 04:00.0) -> nvme 05:00.0; NIC 06:00.0 below 02:01.0: 3 up + 2 up = 6."""
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x29c0)
    rp = t.root_port_at("0000:00:02.0", acs=0)
    d1a, d1b = t.switch_at("0000:01:00.0", rp, ["0000:02:00.0", "0000:02:01.0"], acs=0)
    (d2a,) = t.switch_at("0000:03:00.0", d1a, ["0000:04:00.0"], acs=0)
    t.nvme_at("0000:05:00.0", d2a, "nvme0")
    t.rdma_nic_at("0000:06:00.0", d1b, "mlx5_0", "eth0")
    pv = D.pair(t.inv, "0000:05:00.0", "mlx5_0")
    assert (pv.map_type, pv.distance, pv.common_upstream) == (MapType.BUS_ADDR, 6, "0000:01:00.0")
    # a device directly below the root port meets it after 5 hops up + 1 hop up
    t.nvme_at("0000:07:00.0", None, "nvme1", host_bridge="pci0000:00")
    t.inv.pci["0000:07:00.0"].upstream = [rp]
    assert D.pair(t.inv, "0000:05:00.0", "nvme1").distance == 5 + 1


# -- host bridge rules -----------------------------------------------------------------------------

def test_q35_separate_root_ports_not_supported():
    v = D.distance_many(lab().inv, P, [PLAIN])
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)
    pv = v.pairs[0]
    assert pv.hops == 4 + 2 and pv.common_upstream is None and pv.crosses_root_complex
    assert any("8086:29c0" in r and "not in kernel 7.3's P2PDMA whitelist" in r for r in v.reasons)
    assert pv.kernel_messages == [
        "nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and provider "
        "(0000:03:00.0) do not share an upstream bridge or whitelisted host bridge"]


def _two_root_ports(root_id=(0x8086, 0x2020), kernel="6.12.0", **kw) -> Machine:
    t = Machine(kernel=kernel, **kw)
    if root_id is not None:
        t.host_device("0000:00:00.0", *root_id)
    rp1 = t.root_port_at("0000:00:01.0", 0x8086, 0x2030, acs=0)
    rp2 = t.root_port_at("0000:00:02.0", 0x8086, 0x2031, acs=0)
    t.nvme_at("0000:01:00.0", rp1, "nvme0")
    t.rdma_nic_at("0000:02:00.0", rp2, "mlx5_0", "eth0")
    return t


def test_skylake_sp_root_ports_thru_host_bridge():
    v = D.distance_many(_two_root_ports().inv, "0000:01:00.0", ["mlx5_0"])
    assert (v.map_type, v.distance) == (MapType.THRU_HOST_BRIDGE, 4)
    assert v.crosses_root_complex is True
    assert v.pairs[0].host_bridge_check["checks"][0]["entry"]["id"] == "8086:2020"


def test_skylake_before_its_whitelist_entry():
    assert D.distance_many(_two_root_ports().inv, "0000:01:00.0", ["mlx5_0"],
                           kernel="5.5").map_type == MapType.NOT_SUPPORTED
    assert D.distance_many(_two_root_ports().inv, "0000:01:00.0", ["mlx5_0"],
                           kernel="5.6").map_type == MapType.THRU_HOST_BRIDGE


def test_skylake_root_port_at_nonzero_devfn_needs_5_19():
    """No device at 00.0: the first device on the root bus is root port B (8086:2031) at 00.1?
    Here 00:01.0 (port A absent); kernels before 5.19 look only at devfn 00.0."""
    t = _two_root_ports(root_id=None)
    del t.inv.pci["0000:00:01.0"]          # port A missing -> first device is 00:02.0 (2031)
    t.root_port_at("0000:00:03.0", 0x8086, 0x2032, acs=0)
    t.nvme_at("0000:03:00.0", "0000:00:03.0", "nvme5")
    assert D.pair(t.inv, "0000:03:00.0", "mlx5_0", kernel="5.18").map_type == MapType.NOT_SUPPORTED
    r = D.pair(t.inv, "0000:03:00.0", "mlx5_0", kernel="5.18").reasons
    assert any("not at devfn 00.0" in x for x in r)
    assert D.pair(t.inv, "0000:03:00.0", "mlx5_0", kernel="5.19").map_type == MapType.THRU_HOST_BRIDGE


def test_first_root_device_neither_00_0_nor_root_port():
    t = _two_root_ports(root_id=None)
    t.endpoint("0000:00:00.3", None, vendor=0x8086, device=0x2020, class_code=0x088000,
               driver=None, host_bridge="pci0000:00")
    # first in bus order is 00:00.3 (devfn 3): not 00.0 and not a root port
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_0")
    assert pv.map_type == MapType.NOT_SUPPORTED
    assert any("neither devfn 00.0 nor a PCIe Root Port" in r for r in pv.reasons)


def _two_host_bridges(root_id, kernel="6.12.0", **kw) -> Machine:
    """Two sockets: pci0000:00 and pci0000:80, each with a root port and one device."""
    t = Machine(kernel=kernel, **kw)
    t.host_device("0000:00:00.0", *root_id)
    t.host_device("0000:80:00.0", *root_id)
    rp0 = t.root_port_at("0000:00:02.0", acs=0)
    rp0b = t.root_port_at("0000:00:03.0", acs=0)
    rp1 = t.root_port_at("0000:80:02.0", acs=0)
    t.nvme_at("0000:01:00.0", rp0, "nvme0", numa=0)
    t.rdma_nic_at("0000:02:00.0", rp0b, "mlx5_0", "eth0", numa=0)
    t.rdma_nic_at("0000:81:00.0", rp1, "mlx5_1", "eth1", numa=1)
    return t


def test_req_same_host_bridge_haswell():
    t = _two_host_bridges((0x8086, 0x2f00))
    same = D.pair(t.inv, "0000:01:00.0", "mlx5_0")
    assert (same.map_type, same.distance, same.same_host_bridge) == (MapType.THRU_HOST_BRIDGE, 4, True)
    cross = D.pair(t.inv, "0000:01:00.0", "mlx5_1")
    assert (cross.map_type, cross.distance, cross.same_host_bridge) == (MapType.NOT_SUPPORTED, -1, False)
    assert any("REQ_SAME_HOST_BRIDGE" in r for r in cross.reasons)


def test_skylake_across_host_bridges_allowed():
    t = _two_host_bridges((0x8086, 0x2020))
    assert D.pair(t.inv, "0000:01:00.0", "mlx5_1").map_type == MapType.THRU_HOST_BRIDGE


def test_amd_zen_cpu_rule_any_host_bridge_5_9_plus():
    t = _two_host_bridges((0x1022, 0x1480), cpu_vendor="AuthenticAMD", cpu_family=0x19)
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_1")
    assert (pv.map_type, pv.distance) == (MapType.THRU_HOST_BRIDGE, 4)
    assert any("family 0x19" in r for r in pv.reasons)
    # 5.8 has no CPU rule and 1022:1480 is not in its table
    assert D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.8").map_type == MapType.NOT_SUPPORTED


def test_amd_zen_table_entry_5_4_to_5_8_and_dropped_in_5_9():
    t = _two_host_bridges((0x1022, 0x1450), cpu_vendor="GenuineIntel", cpu_family=6)
    assert D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.4").map_type == MapType.THRU_HOST_BRIDGE
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.9")
    assert pv.map_type == MapType.NOT_SUPPORTED     # entry dropped; the CPU is not AMD
    assert any("dropped in 5.9" in r for r in pv.reasons)


def test_amd_family_below_zen_gets_no_cpu_rule():
    t = lab(cpu_vendor="AuthenticAMD", cpu_family=15)  # QEMU TCG -cpu max
    assert D.pair(t.inv, P, PLAIN).map_type == MapType.NOT_SUPPORTED
    t = lab(cpu_vendor="AuthenticAMD", cpu_family=0x17)
    assert (D.pair(t.inv, P, PLAIN).map_type, D.pair(t.inv, P, PLAIN).distance) == \
        (MapType.THRU_HOST_BRIDGE, 6)


def test_amd_zen_5_2_root_complex_whitelist_penalty_and_iommu_veto():
    t = _two_host_bridges((0x1022, 0x1450), cpu_vendor="AuthenticAMD", cpu_family=0x17)
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.3")
    assert (pv.map_type, pv.distance) == (MapType.THRU_HOST_BRIDGE, 0x1000 + 4)
    t.inv.system.iommu = True
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.2")
    assert pv.map_type == MapType.NOT_SUPPORTED
    assert any("IOMMU" in r for r in pv.reasons)
    t.inv.system.iommu = False
    assert D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.1").map_type == MapType.NOT_SUPPORTED
    assert D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.1").kernel_messages == [
        "mlx5_core 0000:81:00.0: cannot be used for peer-to-peer DMA as the client and provider "
        "(0000:01:00.0) do not share an upstream bridge"]



@pytest.mark.parametrize("at,ident,ok", [
    ("00.0", (0x1022, 0x1450), True),     # the Zen root complex at devfn 00.0
    ("00.0", (0x1022, 0x1480), False),    # another AMD root complex: the device id counts too
    ("01.0", (0x1022, 0x1450), False),    # the right device but not at devfn 00.0
])
def test_5_2_root_complex_whitelist_is_1022_1450_at_devfn_00_0(at, ident, ok):
    """5.2-5.3 root_complex_whitelist(): pci_get_slot(root bus, PCI_DEVFN(0, 0)) must be
    1022:1450, for the provider's host bridge and the client's."""
    t = Machine(kernel="6.12.0", cpu_vendor="AuthenticAMD", cpu_family=0x17)
    t.host_device(f"0000:00:{at}", *ident)
    t.host_device("0000:80:00.0", 0x1022, 0x1450)
    t.nvme_at("0000:01:00.0", t.root_port_at("0000:00:02.0", acs=0), "nvme0")
    t.rdma_nic_at("0000:81:00.0", t.root_port_at("0000:80:02.0", acs=0), "mlx5_1", "eth1")
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_1", kernel="5.2")
    assert pv.map_type == (MapType.THRU_HOST_BRIDGE if ok else MapType.NOT_SUPPORTED), pv.reasons


def test_ice_lake_entry_from_5_18():
    t = _two_root_ports(root_id=(0x8086, 0x09a2))
    assert D.pair(t.inv, "0000:01:00.0", "mlx5_0", kernel="5.17").map_type == MapType.NOT_SUPPORTED
    assert D.pair(t.inv, "0000:01:00.0", "mlx5_0", kernel="5.18").map_type == MapType.THRU_HOST_BRIDGE


def _mixed_host_bridges(id0, id1) -> Machine:
    """Two host bridges identified by different devices: NVMe under pci0000:00, NIC under
    pci0000:80."""
    t = Machine(kernel="7.3.4+deb13-amd64")
    t.host_device("0000:00:00.0", *id0)
    t.host_device("0000:80:00.0", *id1)
    t.nvme_at("0000:01:00.0", t.root_port_at("0000:00:02.0", acs=0), "nvme0")
    t.rdma_nic_at("0000:81:00.0", t.root_port_at("0000:80:02.0", acs=0), "mlx5_1", "eth1")
    return t


@pytest.mark.parametrize("id0,id1,ok", [
    ((0x8086, 0x09a2), (0x8086, 0x09a2), True),      # both whitelisted
    ((0x8086, 0x09a2), (0x8086, 0x29c0), False),     # only the provider's side
    ((0x8086, 0x29c0), (0x8086, 0x09a2), False),     # only the client's side
    ((0x8086, 0x29c0), (0x8086, 0x29c0), False),
])
def test_host_bridge_whitelist_needs_both_sides(id0, id1, ok):
    """host_bridge_whitelist(): across host bridges, both must be in the table (and, not or)."""
    t = _mixed_host_bridges(id0, id1)
    for provider, client in (("0000:01:00.0", "mlx5_1"), ("0000:81:00.0", "nvme0")):
        pv = D.pair(t.inv, provider, client)
        assert pv.map_type == (MapType.THRU_HOST_BRIDGE if ok else MapType.NOT_SUPPORTED), (provider, pv.reasons)
        if not ok:
            assert any("is not in kernel 7.3's P2PDMA whitelist" in r for r in pv.reasons)


@pytest.mark.parametrize("family,kernel,allowed", [
    (0x16, "7.3", False), (0x17, "7.3", True), (0x1a, "7.3", True),   # family at N-1, N
    (0x17, "5.8", False), (0x17, "5.9", True),                        # release at N-1, N
])
def test_amd_cpu_rule_boundaries(family, kernel, allowed):
    t = lab(cpu_vendor="AuthenticAMD", cpu_family=family)
    pv = D.pair(t.inv, P, PLAIN, kernel=kernel)
    assert pv.map_type == (MapType.THRU_HOST_BRIDGE if allowed else MapType.NOT_SUPPORTED), pv.reasons


def test_cpu_vendor_unknown_is_uncertain():
    t = lab(cpu_vendor="", cpu_family=None)
    pv = D.pair(t.inv, P, PLAIN)
    assert pv.map_type == MapType.NOT_SUPPORTED
    assert any("CPU vendor is unknown" in u for u in pv.uncertain)


# -- ACS ---------------------------------------------------------------------------------------------

def test_acs_rr_on_downstream_ports_exact_parameter():
    t = lab(dsp_acs=RR_CR)
    v = D.distance_many(t.inv, P, [B])
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)   # q35 not whitelisted
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:02:00.0;0000:02:01.0"
    assert v.pairs[0].kernel_messages[:2] == [
        "nvme 0000:04:00.0: ACS redirect is set between the client and provider (0000:03:00.0)",
        "nvme 0000:04:00.0: to disable ACS redirect for this path, add the kernel parameter: "
        "pci=disable_acs_redir=0000:02:00.0;0000:02:01.0"]
    assert "pci 0000:00:00.0: Host bridge not in P2PDMA whitelist: 8086:29c0" in \
        v.pairs[0].kernel_messages


def test_acs_downgrades_to_thru_host_bridge_when_whitelisted():
    t = _two_root_ports()
    # put both devices behind one switch below root port A, with RR on both downstream ports
    d1, d2 = t.switch_at("0000:05:00.0", "0000:00:01.0", ["0000:06:00.0", "0000:06:01.0"], acs=RR_CR)
    t.nvme_at("0000:07:00.0", d1, "nvme7")
    t.rdma_nic_at("0000:08:00.0", d2, "mlx5_8", "eth8")
    v = D.distance_many(t.inv, "0000:07:00.0", ["mlx5_8"])
    assert (v.map_type, v.distance) == (MapType.THRU_HOST_BRIDGE, 4)
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:06:00.0;0000:06:01.0"
    # before 5.4 the same path was rejected outright
    old = D.distance_many(t.inv, "0000:07:00.0", ["mlx5_8"], kernel="5.3")
    assert (old.map_type, old.distance) == (MapType.NOT_SUPPORTED, -1)
    assert old.pairs[0].kernel_messages[0] == (
        "mlx5_core 0000:08:00.0: cannot be used for peer-to-peer DMA as ACS redirect is set "
        "between the client and provider (0000:07:00.0)")


def test_acs_order_provider_side_including_common_then_client_side():
    """The kernel checks the provider chain up to AND including the common upstream port, then
    the client chain below it: here provider DSP, common USP, client DSP."""
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x2020)
    rp = t.root_port_at("0000:00:01.0", acs=RR_CR)                # above the common port: not checked
    d1, d2 = t.switch_at("0000:01:00.0", rp, ["0000:02:00.0", "0000:02:08.0"], acs=RR_CR)
    t.inv.pci["0000:01:00.0"].acs_ctrl = 0x0020                 # EC on the upstream port
    t.nvme_at("0000:03:00.0", d2, "nvme0")                         # provider below 02:08.0
    t.rdma_nic_at("0000:04:00.0", d1, "mlx5_0", "eth0")                 # client below 02:00.0
    v = D.distance_many(t.inv, "0000:03:00.0", ["mlx5_0"])
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:02:08.0;0000:01:00.0;0000:02:00.0"
    assert v.map_type == MapType.THRU_HOST_BRIDGE


def test_acs_ignored_without_common_bridge():
    t = _two_root_ports()
    t.inv.pci["0000:00:01.0"].acs_ctrl = RR_CR
    t.inv.pci["0000:00:02.0"].acs_ctrl = RR_CR
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_0")
    assert pv.map_type == MapType.THRU_HOST_BRIDGE and pv.kernel_parameter is None


def test_acs_bits_that_count():
    t = lab(dsp_acs=ACS_SV_UF | 0x0002)      # SV, TB, UF: no redirect
    assert D.pair(t.inv, P, B).map_type == MapType.BUS_ADDR
    for bit in (0x0004, 0x0008, 0x0020):
        t = lab(dsp_acs=bit)
        assert D.pair(t.inv, P, B).acs_redirect == ["0000:02:00.0", "0000:02:01.0"], hex(bit)


def test_multifunction_endpoint_with_acs():
    """One card with two functions below a root port: an NVMe function with a CMB (01:00.0) and
    an RDMA function (01:00.1), both with ACS RR/CR set (what Linux does with an IOMMU on)."""
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x29c0)
    rp = t.root_port_at("0000:00:02.0", acs=0)
    t.endpoint("0000:01:00.0", rp, vendor=0x1d1d, class_code=0x010802, acs=RR_CR,
               p2pmem=(64 << 20, 64 << 20, True))
    t.rdma_nic_at("0000:01:00.1", rp, "mlx5_0", "eth0", acs=RR_CR)
    v = D.distance_many(t.inv, "0000:01:00.0", ["mlx5_0"])
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:01:00.0;0000:01:00.1"
    assert v.pairs[0].hops == 2 and v.map_type == MapType.NOT_SUPPORTED   # 29c0 not whitelisted
    # clearing them (pci=disable_acs_redir) gives BUS_ADDR 2
    t.inv.pci["0000:01:00.0"].acs_ctrl = 0
    t.inv.pci["0000:01:00.1"].acs_ctrl = 0
    assert (D.pair(t.inv, "0000:01:00.0", "mlx5_0").map_type,
            D.pair(t.inv, "0000:01:00.0", "mlx5_0").distance) == (MapType.BUS_ADDR, 2)


def test_unknown_acs_is_not_silently_clear():
    t = lab(readable=False, iommu=True)
    pv = D.pair(t.inv, P, B)
    assert pv.map_type == MapType.NOT_SUPPORTED                  # assumed set (IOMMU active)
    assert any("unknown" in u and "0000:02:00.0" in u for u in pv.uncertain)
    assert any("clear on all of" in u and "bus_addr (distance 4) instead of not_supported" in u
               for u in pv.uncertain)
    t = lab(readable=False, iommu=False)
    pv = D.pair(t.inv, P, B)
    assert pv.map_type == MapType.BUS_ADDR                       # assumed clear (no IOMMU) ...
    assert any("assumed clear" in u for u in pv.uncertain)  # ... but says so
    assert any("set on all of" in u and "instead of bus_addr" in u for u in pv.uncertain)


def test_unreadable_acs_cleared_by_cmdline():
    cmd = 'BOOT_IMAGE=/vmlinuz pci="disable_acs_redir=0000:02:00.0;0000:02:01.0;0000:01:00.0"'
    t = lab(readable=False, iommu=True)
    t.inv.system.cmdline = cmd
    # the three switch ports are listed; the endpoints are single-function (assumed clear)
    pv = D.pair(t.inv, P, B)
    assert pv.map_type == MapType.BUS_ADDR and pv.distance == 4
    assert any("disable_acs_redir" in r for r in pv.reasons)


def test_unreadable_acs_cleared_by_path_spec_and_ids():
    t = lab(readable=False, iommu=True)
    t.inv.system.cmdline = "pci=disable_acs_redir=00:04.0/00.0/00.0;pci:104c:8233"
    # 00:04.0/00.0/00.0 = root port -> 01:00.0 -> 02:00.0 ; pci:104c:8233 = all downstream ports
    assert D.pair(t.inv, P, B).map_type == MapType.BUS_ADDR


# -- clients without a PCI parent, versions ------------------------------------------------------------

def test_soft_roce_client_7x_silently_no_p2p():
    inv = lab().inv
    for name in ("rxe0", "dummy0", "10.77.0.1"):
        v = D.distance_many(inv, P, [name])
        assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1), name
        assert "soft RDMA" in v.reasons[0] and "system memory" in v.reasons[0]
        assert v.pairs[0].kernel_messages == []


def test_soft_roce_dma_virt_ops_5_x():
    v = D.distance_many(lab().inv, P, ["rxe0"], kernel="5.10")
    assert v.map_type == MapType.NOT_SUPPORTED
    assert v.pairs[0].kernel_messages == [
        "infiniband rxe0: cannot be used for peer-to-peer DMA because the driver makes use of "
        "dma_virt_ops"]


def test_soft_roce_unverified_window_is_uncertain():
    v = D.distance_many(lab().inv, P, ["rxe0"], kernel="5.15")
    assert v.map_type == MapType.NOT_SUPPORTED
    assert any("not verified" in u for u in v.uncertain)
    assert "not a PCI device" in v.pairs[0].kernel_messages[0]


def test_multipath_head_is_not_a_pci_device():
    t = lab()
    t.multipath_head("nvme1n1", "nvme1")
    v = D.distance_many(t.inv, P, ["/dev/nvme1n1"])
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)
    assert v.pairs[0].client.kind == D.KIND_MULTIPATH_HEAD
    assert "multipath head" in v.reasons[0] and "nvme_core.multipath=N" in v.reasons[0]
    assert v.pairs[0].kernel_messages == [
        "block nvme1n1: cannot be used for peer-to-peer DMA as it is not a PCI device"]


def test_no_p2pdma_before_4_20():
    v = D.distance_many(lab().inv, P, [B], kernel="4.19")
    assert v.map_type == MapType.NOT_SUPPORTED and "4.20" in v.reasons[0]


def test_kernel_default_is_inventory_and_override():
    t = _two_root_ports(kernel="5.5.0-1")
    v = D.distance_many(t.inv, "0000:01:00.0", ["mlx5_0"])
    assert (v.kernel, v.kernel_source, v.map_type) == ("5.5", "inventory", MapType.NOT_SUPPORTED)
    v = D.distance_many(t.inv, "0000:01:00.0", ["mlx5_0"], kernel="6.1")
    assert (v.kernel, v.kernel_source, v.map_type) == ("6.1", "--kernel", MapType.THRU_HOST_BRIDGE)
    with pytest.raises(InputError, match="not a kernel version"):
        D.distance_many(t.inv, "0000:01:00.0", ["mlx5_0"], kernel="latest")


def test_unknown_kernel_release_uses_newest_rules_and_says_so():
    t = lab(kernel="")
    v = D.distance_many(t.inv, P, [B])
    assert v.kernel_source == "default" and any("kernel release is unknown" in u
                                                for u in v.uncertain)


def test_kernel_without_config_pci_p2pdma():
    t = lab(kernel="6.12.57+deb13-amd64")
    t.inv.system.kernel_config = {"CONFIG_PCI_P2PDMA": "n"}
    v = D.distance_many(t.inv, P, [B])
    assert any("without CONFIG_PCI_P2PDMA" in r for r in v.reasons)
    assert any("no p2pdma" in u for u in v.uncertain)


# -- distance_many / find_many -----------------------------------------------------------------------

def _lab_with_nic() -> Machine:
    """q35 lab plus a PCI RNIC on a 4th switch port 02:03.0 (bus 07)."""
    t = lab()
    (d4,) = t.switch_at("0000:01:00.0", "0000:00:04.0", ["0000:02:03.0"], acs=0)
    t.rdma_nic_at("0000:07:00.0", d4, "mlx5_0", "ens7", ip="192.168.7.1")
    return t


def test_distance_many_sums_like_the_kernel():
    inv = _lab_with_nic().inv
    v = D.distance_many(inv, P, ["mlx5_0", "/dev/nvme0n1"])
    assert (v.map_type, v.distance) == (MapType.BUS_ADDR, 4 + 0)
    v = D.distance_many(inv, B, ["192.168.7.1", "nvme0n1"])
    assert v.distance == 8 and [p.distance for p in v.pairs] == [4, 4]
    v = D.distance_many(inv, P, ["mlx5_0", "nvme3n1"])
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)



def test_distance_many_one_root_complex_path_makes_the_set_thru_host_bridge():
    """One client below the switch (bus_addr, 4) and one through the host bridge (6, the AMD
    CPU rule): the set is thru_host_bridge, the distances still add up."""
    t = lab(cpu_vendor="AuthenticAMD", cpu_family=0x17)
    v = D.distance_many(t.inv, P, [B, PLAIN])
    assert [p.map_type for p in v.pairs] == [MapType.BUS_ADDR, MapType.THRU_HOST_BRIDGE]
    assert (v.map_type, v.distance) == (MapType.THRU_HOST_BRIDGE, 4 + 6)


def test_find_many_minimum_and_all_ties_in_enumeration_order():
    inv = _lab_with_nic().inv
    r = D.find_many(inv, ["mlx5_0"])
    assert r.best_distance == 4
    assert r.ties == ["0000:03:00.0", "0000:04:00.0", "0000:05:00.0"]
    assert "random" in r.reasons[0]
    r = D.find_many(inv, ["mlx5_0", "nvme1n1"])
    assert (r.best_distance, r.ties) == (4, ["0000:04:00.0"])
    r = D.find_many(inv, ["nvme3n1"])
    assert r.best_distance is None and r.ties == []
    assert "no published provider is compatible" in r.reasons[0]


def test_find_many_skips_unpublished_providers():
    t = _lab_with_nic()
    t.inv.pci["0000:04:00.0"].p2pmem.published = False
    r = D.find_many(t.inv, ["mlx5_0"])
    assert r.unpublished == ["0000:04:00.0"]
    assert r.ties == ["0000:03:00.0", "0000:05:00.0"]
    v = D.distance_many(t.inv, "0000:04:00.0", ["mlx5_0"])
    assert v.provider_published is False and any("not published" in x for x in v.reasons)


def test_find_many_vfs_enumerate_after_boot_devices():
    t = _lab_with_nic()
    t.endpoint("0000:03:00.1", "0000:02:00.0", physfn=P, p2pmem=(1 << 21, 1 << 21, True))
    order = [f.bdf for f in D.P2pdma(t.inv).enumeration_order() if f.p2pmem]
    assert order == ["0000:03:00.0", "0000:04:00.0", "0000:05:00.0", "0000:03:00.1"]


# -- client resolution -----------------------------------------------------------------------------------

def test_resolve_client_forms():
    t = _lab_with_nic()
    inv = t.inv
    assert D.resolve_client(inv, "04:00.0").bdf == B
    assert D.resolve_client(inv, "/dev/nvme1n1").kind == D.KIND_NVME_NS
    assert D.resolve_client(inv, "nvme1n1p2").bdf == B
    assert D.resolve_client(inv, "nvme1").kind == D.KIND_NVME_CTRL
    assert D.resolve_client(inv, "mlx5_0").bdf == "0000:07:00.0"
    assert D.resolve_client(inv, "ens7").bdf == "0000:07:00.0"
    assert D.resolve_client(inv, "192.168.7.1").name == "192.168.7.1"
    assert D.resolve_client(inv, "rxe0").kind == D.KIND_SOFT_RDMA
    with pytest.raises(InputError, match="unknown client 'mlx9'"):
        D.resolve_client(inv, "mlx9")
    with pytest.raises(InputError, match="no PCI function 0000:99:00.0"):
        D.resolve_client(inv, "0000:99:00.0")


def test_unknown_provider_is_a_clear_error():
    with pytest.raises(InputError, match="unknown provider '0000:99:00.0'"):
        D.distance_many(lab().inv, "0000:99:00.0", [B])


def test_path_names_the_host_bridges_it_crosses():
    t = _two_host_bridges((0x8086, 0x2020))
    pv = D.pair(t.inv, "0000:01:00.0", "mlx5_1")
    assert pv.path == ["0000:01:00.0", "0000:00:02.0", "pci0000:00", "pci0000:80",
                       "0000:80:02.0", "0000:81:00.0"]


def test_long_acs_list_full_parameter_truncated_kernel_message():
    """Five nested switches with ACS on every port: 10 bridges on the provider side (up to and
    including the common upstream port) + 1 on the client side = 11 devices (142 characters). The
    kernel (6.x) prints the list from a 128-byte buffer; kernel_parameter keeps all of it."""
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x2020)
    parent = t.root_port_at("0000:00:01.0", acs=RR_CR)
    bus = 1
    for level in range(5):
        dsps = [f"0000:{bus + 1:02x}:00.0"] + ([f"0000:{bus + 1:02x}:01.0"] if level == 0 else [])
        got = t.switch_at(f"0000:{bus:02x}:00.0", parent, dsps, acs=RR_CR)
        t.inv.pci[f"0000:{bus:02x}:00.0"].acs_ctrl = RR_CR
        if level == 0:
            top_second = got[1]
        parent = got[0]
        bus += 2
    t.nvme_at("0000:40:00.0", parent, "nvme0")
    t.rdma_nic_at("0000:41:00.0", top_second, "mlx5_0", "eth0")
    v = D.distance_many(t.inv, "0000:40:00.0", ["mlx5_0"])
    listed = v.kernel_parameter.split("=", 2)[2].split(";")
    assert len(listed) == 11 and listed[-1] == "0000:02:01.0"
    assert listed[:2] == ["0000:0a:00.0", "0000:09:00.0"]          # provider side first
    msg = v.pairs[0].kernel_messages[1]
    printed = msg.split("pci=disable_acs_redir=", 1)[1]
    assert len(printed) == 127 and v.kernel_parameter.endswith(";0000:02:01.0")
    assert any("128-byte buffer" in u for u in v.uncertain)
    old = D.distance_many(t.inv, "0000:40:00.0", ["mlx5_0"], kernel="5.10")
    assert old.pairs[0].kernel_messages[1].endswith(v.kernel_parameter.split("=", 1)[1])


def test_soft_rdma_with_a_pci_parent_on_4_20_follows_the_topology():
    t = _lab_with_nic()
    t.inv.rdma["rxe1"] = type(t.inv.rdma["mlx5_0"])(name="rxe1", pci="0000:07:00.0",
                                                     driver="rdma_rxe", soft=True)
    pv = D.pair(t.inv, P, "rxe1", kernel="4.20")
    assert (pv.map_type, pv.distance) == (MapType.BUS_ADDR, 4)
    assert any("not verified" in u for u in pv.uncertain)
    assert D.pair(t.inv, P, "rxe1", kernel="6.1").map_type == MapType.NOT_SUPPORTED
