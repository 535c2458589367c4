"""The lab's p2p-capable RDMA NIC (rxe_p2p on a PCI NIC): recognised as a PCI RDMA device and
labelled as the emulation it is, in the inventory, ``topology`` and ``doctor``.

The machines are sysfs trees laid out like the real 7.3 guest of ``tools/lab/run --topology
rdma-p2p`` (tests/sysfsfixture.py ``rdma_p2p_lab``), read through the real readers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import sysfsfixture as sf

from nvmet_p2p.pci.doctor import OK, diagnose
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.pci.topology import render_tree


def _cli(root, *args):
    return subprocess.run([sys.executable, "-m", "nvmet_p2p", *args, "--root", str(root)],
                          capture_output=True, text=True)


def test_inventory_reads_rxe_p2p_as_a_pci_rdma_device_with_the_emulated_label(tmp_path):
    inv = read_inventory(sf.rdma_p2p_lab(tmp_path).root)
    near, far = inv.rdma["rxp0"], inv.rdma["rxp1"]
    assert (near.pci, near.soft, near.driver) == ("0000:06:00.0", False, "rdma_rxe_p2p")
    assert (far.pci, far.soft, far.driver) == ("0000:08:00.0", False, "rdma_rxe_p2p")
    assert near.emulated == ("the lab's emulated RDMA NIC (rxe_p2p on e1000e 0000:06:00.0): "
                             "its DMA is done by CPU copies")
    assert "virtio-pci 0000:08:00.0" in far.emulated
    assert near.netdevs == ["nicnear"] and far.netdevs == ["nicfar"]
    assert inv.to_dict()["rdma"]["rxp0"]["emulated"] == near.emulated


def test_stock_rxe_and_a_real_rnic_carry_no_emulated_label(tmp_path):
    m = sf.rdma_p2p_lab(tmp_path / "m", write=False)
    m.rxe("rxe0", netdev="dummy0", addresses=["10.77.0.1/24"])
    m.nic("0000:09:00.0", parent=None, ibdev="mlx5_0", netdev="ens9")
    inv = read_inventory(m.write().root)
    assert inv.rdma["rxe0"].soft and inv.rdma["rxe0"].emulated is None
    assert inv.rdma["rxe0"].driver == "rdma_rxe"
    assert inv.rdma["mlx5_0"].emulated is None and inv.rdma["mlx5_0"].driver == "mlx5_core"


def test_topology_tree_labels_the_nic_line(tmp_path):
    inv = read_inventory(sf.rdma_p2p_lab(tmp_path).root)
    lines = render_tree(inv).splitlines()
    near = [ln for ln in lines if "RDMA rxp0" in ln]
    assert len(near) == 1 and "06:00.0" in near[0], lines
    assert "[the lab's emulated RDMA NIC (rxe_p2p on e1000e 0000:06:00.0): its DMA is done by " \
           "CPU copies]" in near[0]
    assert not any("soft RDMA" in ln and "rxp" in ln for ln in lines)


def test_doctor_counts_it_as_a_pci_client_and_says_emulated(tmp_path):
    report = diagnose(read_inventory(sf.rdma_p2p_lab(tmp_path).root))
    checks = {c.id: c for c in report.checks}
    rdma = checks["rdma"]
    assert rdma.status == OK and "2 PCI RDMA device(s): rxp0, rxp1" in rdma.detail
    assert "emulated: rxp0, rxp1" in rdma.detail and "CPU copies" in rdma.detail
    assert [i["emulated"] is not None for i in rdma.items] == [True, True]
    assert "only soft RDMA" not in report.summary
    assert report.emulated and report.emulated.startswith("the lab's emulated RDMA NIC")
    # the NIC beside the CMBs reaches them by bus address; the far one is refused
    paths = {(i["provider"], i["client"]): i["map_type"] for i in checks["paths"].items}
    assert paths[("0000:03:00.0", "rxp0")] == "bus_addr"
    assert paths[("0000:03:00.0", "rxp1")] == "not_supported"
    if report.can_offload:
        assert report.summary.endswith(f"[RDMA NIC emulated: {report.emulated}]")


def test_doctor_cli_human_and_json_carry_the_label(tmp_path):
    root = sf.rdma_p2p_lab(tmp_path).root
    human = _cli(root, "doctor")
    assert "CANNOT OFFLOAD: only soft RDMA" not in human.stdout
    assert "emulated: rxp0, rxp1" in human.stdout.replace("\n       ", " ")
    doc = json.loads(_cli(root, "doctor", "--json").stdout)
    assert doc["emulated"].startswith("the lab's emulated RDMA NIC")


def test_a_real_rnic_beside_the_emulated_one_leaves_the_summary_unlabelled(tmp_path):
    m = sf.rdma_p2p_lab(tmp_path / "m", write=False)
    m.nic("0000:09:00.0", parent=None, ibdev="mlx5_0", netdev="ens9", addresses=["10.9.0.1/24"])
    report = diagnose(read_inventory(m.write().root))
    rdma = {c.id: c for c in report.checks}["rdma"]
    assert "emulated: rxp0, rxp1" in rdma.detail
    assert report.emulated is None and "RDMA NIC emulated" not in report.summary
