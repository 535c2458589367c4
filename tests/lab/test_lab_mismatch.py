"""Lab tier: a p2p transfer the kernel allowed but the (emulated) IOMMU dropped is explained.

In the ``iommu-acs`` topology the switch below root port 2 has no ACS, so the kernel accepts the
pair (swPlain's NVMe, swCmb's CMB) at bus_addr distance 4 and the block layer hands the NVMe the
CMB's PCI bus address. QEMU's intel-iommu translates every DMA a device makes (it has no model of
a switch routing a peer write below it), finds no mapping for that address and drops the write:
the O_DIRECT read "succeeds" and the buffer holds nothing of the source. The kernel logs
``DMAR: [DMA Write NO_PASID] Request device [0000:05:00.0] fault addr 0xf8020000 [fault reason
0x05] PTE Write access is not set``. ``p2p-test`` must say ``mismatch`` and name the IOMMU fault,
the device and the provider's BAR the address falls in (read from sysfs ``resource``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.topology("iommu-acs")]


def test_dropped_peer_write_names_iommu_device_and_bar(lab_devices):
    nv = lab_devices["nvme"]
    prov, plain = nv["swCmb"], nv["swPlain"]
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "p2p-test", prov["bdf"], plain["namespaces"][0],
                        "--size", "64k", "--repeat", "1", "--allow-write", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    assert d["prediction"][plain["namespaces"][0]]["map_type"] == "bus_addr"     # the kernel allowed it
    assert d["verdict"] == "mismatch"
    ex = d["explanation"]
    iommu = [c for c in ex["causes"] if c["kind"] == "iommu_fault"]
    assert iommu, ex
    c = iommu[0]
    assert c["device"] == plain["bdf"] and c["direction"] == "Write"
    assert c["bar"]["device"] == prov["bdf"]
    with open(f"/sys/bus/pci/devices/{prov['bdf']}/resource") as f:
        start, end, _ = (int(x, 16) for x in f.read().splitlines()[c["bar"]["index"]].split())
    assert start <= int(c["address"], 16) <= end
    s = ex["summary"]
    assert s.startswith("IOMMU fault") and plain["bdf"] in s and prov["bdf"] in s
    assert f"BAR {c['bar']['index']} of p2pmem provider {prov['bdf']}" in s
    assert "emulated" in s.lower() or "qemu" in s.lower()
    human = subprocess.run([sys.executable, "-m", "nvmet_p2p", "p2p-test", prov["bdf"], plain["namespaces"][0],
                            "--size", "64k", "--repeat", "1", "--allow-write"],
                           capture_output=True, text=True, timeout=600)
    assert "likely cause: IOMMU fault" in human.stdout, human.stdout
    print("\n" + human.stdout)
