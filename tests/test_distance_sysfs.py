"""End to end: synthetic sysfs trees (tests/support/sysfs.py, real file layout and binary config
space) -> the inventory readers -> distance / topology, including the CLI on ``--root``.

The expected values are the kernel's for each fixture's topology (see the fixture docstrings
and docs/p2pdma.md: the walk, ACS redirect, the host bridge, clients).
"""

from __future__ import annotations

import json

from nvmet_p2p import cli, exits
from nvmet_p2p.pci import distance as D
from nvmet_p2p.pci import inventory
from nvmet_p2p.pci.p2pdma_rules import MapType
from support import sysfs as sf


def read(m: sf.Machine):
    return inventory.read_inventory(m.root)


def dm(m, provider_role: str, *clients: str, kernel=None) -> D.Verdict:
    inv = read(m)
    return D.distance_many(inv, m.bdf(provider_role), list(clients), kernel=kernel)


def test_q35_same_switch_siblings_own_cmb_and_other_root_port(tmp_path):
    m = sf.q35_lab(tmp_path)
    v = dm(m, "cmbA", "/dev/nvme1n1")
    assert (v.map_type, v.distance) == (MapType.BUS_ADDR, 4)
    assert v.pairs[0].common_upstream == m.bdf("usp")
    assert (dm(m, "cmbA", "nvme0n1").distance, dm(m, "cmbA", "nvme0n1").map_type) == (0, MapType.BUS_ADDR)
    v = dm(m, "cmbA", "nvme3n1")
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)
    assert any("8086:29c0" in r for r in v.reasons)
    assert v.pairs[0].kernel_messages[-1] == (
        "nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and provider "
        "(0000:03:00.0) do not share an upstream bridge or whitelisted host bridge")


def test_functions_of_one_device_and_vfs(tmp_path):
    m = sf.vf_pf(tmp_path)
    inv = read(m)
    pf, vf0, vf1 = m.bdf("pf"), m.bdf("vf0"), m.bdf("vf1")
    assert D.pair(inv, pf, vf0).distance == 2
    assert D.pair(inv, vf0, vf1).distance == 2
    pv = D.pair(inv, m.bdf("cmb"), "mlx5_1")          # mlx5_1 is VF 0
    assert (pv.map_type, pv.distance, pv.common_upstream) == (MapType.BUS_ADDR, 4, m.bdf("usp"))
    assert pv.client.bdf == vf0


def test_nested_switches(tmp_path):
    m = sf.nested_switches(tmp_path)
    assert dm(m, "cmbA", "nvme1").distance == 4
    v = dm(m, "cmbA", "mlx5_0")
    assert (v.map_type, v.distance, v.pairs[0].common_upstream) == \
        (MapType.BUS_ADDR, 6, m.bdf("outer_usp"))


def test_skylake_sp_whitelisted_root_ports(tmp_path):
    m = sf.skylake_sp(tmp_path)
    v = dm(m, "cmb", "mlx5_0")
    assert (v.map_type, v.distance, v.crosses_root_complex) == (MapType.THRU_HOST_BRIDGE, 4, True)
    assert dm(m, "cmb", "mlx5_0", kernel="5.5").map_type == MapType.NOT_SUPPORTED   # before 8086:2030


def test_req_same_host_bridge_across_two_host_bridges(tmp_path):
    m = sf.two_host_bridges(tmp_path)
    assert (dm(m, "cmb0", "mlx5_0").map_type, dm(m, "cmb0", "mlx5_0").distance) == \
        (MapType.THRU_HOST_BRIDGE, 4)
    v = dm(m, "cmb0", "mlx5_1")
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)
    assert any("REQ_SAME_HOST_BRIDGE" in r for r in v.reasons)
    r = D.find_many(read(m), ["mlx5_1"])
    assert r.ties == [m.bdf("cmb1")]


def test_amd_zen(tmp_path):
    m = sf.amd_zen(tmp_path)
    v = dm(m, "cmb", "mlx5_0")
    assert (v.map_type, v.distance) == (MapType.THRU_HOST_BRIDGE, 4)
    assert any("family 0x17" in r for r in v.reasons)
    assert dm(m, "cmb", "mlx5_0", kernel="5.8").map_type == MapType.THRU_HOST_BRIDGE  # 1022:1450 entry
    m2 = sf.amd_zen(tmp_path / "pre", cpu_family=0x15)
    assert dm(m2, "cmb", "mlx5_0").map_type == MapType.NOT_SUPPORTED                  # entry dropped 5.9


def test_acs_rr_on_downstream_ports_exact_parameter(tmp_path):
    m = sf.acs_switch(tmp_path)
    v = dm(m, "cmbA", "mlx5_0")
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:02:00.0;0000:02:02.0"
    assert v.pairs[0].kernel_messages[1] == (
        "mlx5_core 0000:05:00.0: to disable ACS redirect for this path, add the kernel parameter: "
        "pci=disable_acs_redir=0000:02:00.0;0000:02:02.0")
    m.set_acs(m.bdf("dsp1"), 0x11).set_acs(m.bdf("dsp3"), 0x11).write()   # SV|UF only
    assert (dm(m, "cmbA", "mlx5_0").map_type, dm(m, "cmbA", "mlx5_0").distance) == \
        (MapType.BUS_ADDR, 4)


def test_multifunction_endpoint_with_acs(tmp_path):
    m = sf.multifunction_acs(tmp_path)
    v = dm(m, "cmb", "mlx5_0")
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:04:00.0"
    assert v.pairs[0].hops == 4 and v.map_type == MapType.NOT_SUPPORTED
    inv = read(m)
    pv = D.pair(inv, m.bdf("nic0"), "mlx5_1")
    assert (pv.hops, pv.kernel_parameter) == (2, "pci=disable_acs_redir=0000:04:00.0;0000:04:00.1")


def test_soft_roce_and_siw_clients(tmp_path):
    m = sf.soft_roce(tmp_path, siw=True)
    for client in ("rxe0", "10.77.0.1", "siw0"):
        v = dm(m, "cmbA", client)
        assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1), client
        assert "soft RDMA" in v.reasons[0]
    assert "dma_virt_ops" in dm(m, "cmbA", "rxe0", kernel="5.4").pairs[0].kernel_messages[0]


def test_multipath_head_client(tmp_path):
    m = sf.multipath(tmp_path)
    v = dm(m, "cmbA", "/dev/" + m.head)
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)
    assert v.pairs[0].client.kind == D.KIND_MULTIPATH_HEAD
    assert v.pairs[0].kernel_messages == [
        f"block {m.head}: cannot be used for peer-to-peer DMA as it is not a PCI device"]


def test_unpublished_provider(tmp_path):
    m = sf.q35_lab(tmp_path, write=False)
    m.set_p2pmem("0000:04:00.0", published=False)
    m.write()
    inv = read(m)
    r = D.find_many(inv, ["nvme0n1", "nvme2n1"])
    assert r.unpublished == ["0000:04:00.0"]
    assert r.ties == ["0000:03:00.0", "0000:05:00.0"] and r.best_distance == 4
    assert D.distance_many(inv, "0000:04:00.0", ["nvme0n1"]).provider_published is False


def test_non_root_config_reads_make_acs_uncertain(tmp_path):
    m = sf.acs_switch(tmp_path, write=False)
    m.config_read_limit(None, 64)
    m.write()
    v = dm(m, "cmbA", "mlx5_0")
    # IOMMU active -> downstream ports assumed to redirect, and said so
    assert v.map_type == MapType.NOT_SUPPORTED
    assert any("unknown" in u and "0000:02:00.0" in u for u in v.uncertain)
    assert any("clear on all of" in u and "bus_addr" in u for u in v.uncertain)


def test_cli_on_root(tmp_path, capsys):
    m = sf.acs_switch(tmp_path)
    # ACS redirect between them, and the q35 host bridge is not whitelisted: the kernel refuses
    # (exit status 5, like a `test` that is false)
    assert cli.main(["distance", "--root", str(m.root), "--json", m.bdf("cmbA"), "mlx5_0"]) == exits.NO_P2P
    out = json.loads(capsys.readouterr().out)
    assert out["map_type"] == "not_supported"
    assert out["kernel_parameter"] == "pci=disable_acs_redir=0000:02:00.0;0000:02:02.0"
    assert cli.main(["topology", "--root", str(m.root)]) == 0
    text = capsys.readouterr().out
    assert "ACS 0x001d redirect RR+CR" in text
    assert cli.main(["topology", "--root", str(m.root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["matrix"]["summary"]["providers"] == 2


def test_cli_resolves_an_ip_client_on_a_snapshot_root(tmp_path, capsys):
    m = sf.soft_roce(tmp_path)
    # addresses come from the snapshot's recorded netlink data (or live netlink on /)
    assert (m.root / "nvmet-p2p-snapshot.json").exists()
    rc = cli.main(["distance", "--root", str(m.root), "--json", m.bdf("cmbA"), "10.77.0.1"])
    out = json.loads(capsys.readouterr().out)
    assert rc == (exits.NO_P2P if out["map_type"] == "not_supported" else exits.OK)
    assert out["pairs"][0]["client"]["kind"] == D.KIND_SOFT_RDMA


def test_intel_vmd_domain_is_its_own_host_bridge(tmp_path):
    """NVMe behind an Intel VMD endpoint sit in a synthetic domain whose host bridge directory is
    a child of the VMD function (.../0000:3a:05.5/pci10000:00/10000:00:02.0/10000:01:00.0).
    The kernel's chain starts at that innermost host bridge; its root ports here (8086:a0bc)
    are not whitelisted, so two NVMe on different VMD root ports cannot do p2p."""
    m = sf.skylake_sp(tmp_path, write=False)
    hb = m.vmd("0000:3a:05.5", parent=None, domain="10000", role="vmd")
    m.root_port("10000:00:02.0", secondary=1, vendor=0x8086, device=0xA0BC, role="vrp1")
    m.root_port("10000:00:03.0", secondary=2, vendor=0x8086, device=0xA0BC, role="vrp2")
    m.nvme("10000:01:00.0", parent="10000:00:02.0", ctrl="nvme2", serial="VMDCMB", cmb_mb=64,
           role="vcmb")
    m.nvme("10000:02:00.0", parent="10000:00:03.0", ctrl="nvme3", serial="VMDPLAIN", role="vssd")
    m.write()
    inv = read(m)
    f = inv.pci[m.bdf("vcmb")]
    assert (hb, f.host_bridge, f.upstream) == ("pci10000:00", "pci10000:00", ["10000:00:02.0"])
    assert inv.pci[m.bdf("vmd")].host_bridge == "pci0000:3a"
    v = D.distance_many(inv, m.bdf("vcmb"), ["nvme3n1"])
    assert (v.map_type, v.distance) == (MapType.NOT_SUPPORTED, -1)
    assert any("a0bc" in r for r in v.reasons)
    # the same CMB for its own namespace is distance 0 (BUS_ADDR) inside the VMD domain
    assert (D.pair(inv, m.bdf("vcmb"), "nvme2n1").map_type,
            D.pair(inv, m.bdf("vcmb"), "nvme2n1").distance) == (MapType.BUS_ADDR, 0)


def test_cli_client_given_as_a_by_id_link(tmp_path, capsys):
    """nvmetcli configs usually name /dev/disk/by-id paths: the command follows the link on
    the machine it reads (the rules themselves stay pure)."""
    import os
    m = sf.q35_lab(tmp_path)
    (m.root / "dev/disk/by-id").mkdir(parents=True)
    (m.root / "dev/nvme3n1").write_text("")
    os.symlink("../../nvme3n1", m.root / "dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_plain")
    assert cli.main(["distance", "--root", str(m.root), "--json", m.bdf("cmbA"),
                     "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_plain"]) == exits.NO_P2P
    out = json.loads(capsys.readouterr().out)
    assert (out["map_type"], out["distance"]) == ("not_supported", -1)
    assert out["pairs"][0]["client"]["bdf"] == "0000:06:00.0"
