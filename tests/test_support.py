"""The one in-memory description of the lab machine (support.machine.lab) against what the
real lab guest showed: ``tests/data/lab_default_inventory.json`` is ``read_inventory("/")`` run
as root in ``tools/lab/run --topology default``. Both directions: every device the lab has,
the description has, and nothing more; and the facts the rules use are the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.machine import lab, lab_machine

REAL = json.loads((Path(__file__).parent / "data" / "lab_default_inventory.json").read_text())
GOT = lab_machine().to_dict()

#: per kind, what the description models (everything the distance rules, placement and the
#: renderers read). Not modelled: PCI subsystem ids, firmware/subsysnqn/state of controllers,
#: RDMA port rates, MACs, link-local addresses, kernel config and modules (doctor's tests use
#: the sysfs fixture for those).
FIELDS = {
    "pci": ("bdf", "host_bridge", "upstream", "vendor", "device", "class_code", "numa_node",
            "driver", "physfn", "pcie_type", "acs_cap", "acs_ctrl", "config_readable", "p2pmem"),
    "nvme": ("name", "transport", "pci", "serial", "model", "address", "cmb", "namespaces"),
    "namespaces": ("name", "nsid", "controller", "pci", "multipath_head", "size_bytes", "wwid",
                   "nguid", "eui", "uuid", "paths"),
    "rdma": ("name", "pci", "driver", "soft", "node_type", "netdevs"),
    "net": ("name", "pci", "operstate", "mtu"),
}


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_same_objects_both_ways(kind):
    assert sorted(GOT[kind]) == sorted(REAL[kind])


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_same_facts(kind):
    for name, real in REAL[kind].items():
        got = GOT[kind][name]
        assert {f: got[f] for f in FIELDS[kind]} == {f: real[f] for f in FIELDS[kind]}, name


def test_same_rdma_ports_and_addresses():
    for name, real in REAL["rdma"].items():
        strip = [{k: v for k, v in p.items() if k != "rate"} for p in real["ports"]]
        assert [{k: v for k, v in p.items() if k != "rate"} for p in GOT["rdma"][name]["ports"]] \
            == strip
    for name, real in REAL["net"].items():
        assert GOT["net"][name]["addresses"] == [a for a in real["addresses"]
                                                 if not a.startswith("fe80:")], name


def test_same_system():
    keys = ("kernel_release", "cpu_vendor", "cpu_family", "iommu", "iommu_groups",
            "nvme_use_cmb_sqes", "numa_nodes", "is_root", "configfs_mounted")
    assert {k: GOT["system"][k] for k in keys} == {k: REAL["system"][k] for k in keys}


def test_variants_change_only_what_they_name():
    base = lab_machine()
    acs = lab_machine(dsp_acs=0x000C)
    changed = {b for b in base.pci if base.pci[b] != acs.pci[b]}
    assert changed == {"0000:00:04.0", "0000:00:05.0", "0000:02:00.0", "0000:02:01.0",
                       "0000:02:02.0"}
    unread = lab(readable=False).inv
    assert all(f.acs_ctrl is None and not f.config_readable for f in unread.pci.values())
    ids = lab_machine(ns_ids=True).namespaces["nvme1n1"]
    assert ids.eui and ids.nguid and ids.uuid and ids.wwid == f"uuid.{ids.uuid}"
