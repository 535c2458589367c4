"""Lab tier: ``nvmet-p2p topology --json`` lists exactly what the topology file declares.

The CMB NVMe of the topology are the p2pmem providers (no more, no fewer), every declared NVMe
controller is there with its serial at the BDF the kernel gave it, the plain NVMe have no
p2pmem, and the soft-RoCE devices are reported as soft RDMA without a PCI function (the
lab's rxe_p2p devices as PCI RDMA devices at their NIC's BDF, labelled emulated).
"""

from __future__ import annotations

import pytest

import labutil

pytestmark = [pytest.mark.lab, pytest.mark.topology("all")]


@pytest.fixture(scope="module")
def inv():
    """One ``nvmet-p2p topology --json`` run for the module (a CLI process costs seconds
    under TCG; the topology does not change while these tests read it)."""
    doc = labutil.cli_json("topology")
    return doc.get("inventory", doc)


def test_lab_booted_what_was_declared(lab_devices):
    # the lab itself: every declared CMB registered p2pmem, no plain NVMe did
    for serial, n in lab_devices["nvme"].items():
        assert bool(n["p2pmem"]) == n["cmb"], f"{serial}: declared cmb={n['cmb']}, kernel p2pmem={n['p2pmem']}"


def test_providers_are_exactly_the_declared_cmbs(lab_devices, inv):
    reported = sorted(bdf for bdf, f in inv["pci"].items() if f.get("p2pmem"))
    declared = sorted(n["bdf"] for n in lab_devices["nvme"].values() if n["cmb"])
    assert reported == declared


def test_nvme_controllers_by_serial(lab_devices, inv):
    reported = {c["serial"].strip(): c["pci"] for c in inv["nvme"].values() if c["transport"] == "pcie"}
    declared = {s: n["bdf"] for s, n in lab_devices["nvme"].items()}
    assert reported == declared
    for serial, n in lab_devices["nvme"].items():
        if not n["cmb"]:
            assert not inv["pci"][n["bdf"]].get("p2pmem"), f"plain NVMe {serial} reported as a provider"


def test_soft_roce_devices(lab_devices, inv):
    assert set(inv["rdma"]) == set(lab_devices["rdma"])
    for name, r in lab_devices["rdma"].items():
        got = inv["rdma"][name]
        if r["kind"] == "rxe_p2p":      # the lab's NIC: a PCI RDMA device, labelled as emulated
            assert (got["pci"], got["soft"], got["driver"]) == (r["pci"], False, "rdma_rxe_p2p"), got
            assert "emulated" in got["emulated"] and r["pci"] in got["emulated"], got
        else:
            assert got["pci"] is None and got["soft"] is True and not got.get("emulated"), got
        assert r["netdev"] in got["netdevs"], got
