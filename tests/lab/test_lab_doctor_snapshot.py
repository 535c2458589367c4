"""Lab tier: the inventory readers, ``snapshot`` and ``doctor`` on the real 7.3 kernel.

Oracles independent of nvmet-p2p: the lab's device map (what the topology declared and the
runner read at boot) and pciutils' ``lspci -vvv`` for the ACS Control word of every function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import labutil
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.pci.snapshot import take_snapshot

pytestmark = [pytest.mark.lab]


_ACS_BITS = {"SrcValid": 0x01, "TransBlk": 0x02, "ReqRedir": 0x04, "CmpltRedir": 0x08,
             "UpstreamFwd": 0x10, "EgressCtrl": 0x20, "DirectTrans": 0x40}


def _lspci_acs_ctrl() -> dict[str, int]:
    """ACS Control of every function that has the capability, decoded from ``lspci -vvv -D``
    (one pciutils call; its ``ACSCtl:`` line lists each bit as Name+ / Name-)."""
    out: dict[str, int] = {}
    r = subprocess.run(["lspci", "-vvv", "-D"], capture_output=True, text=True, check=True)
    bdf = None
    for line in r.stdout.splitlines():
        if line and not line[0].isspace():
            bdf = line.split()[0]
        elif "ACSCtl:" in line and bdf:
            ctrl = 0
            for tok in line.split("ACSCtl:", 1)[1].split():
                if tok.endswith("+") and tok[:-1] in _ACS_BITS:
                    ctrl |= _ACS_BITS[tok[:-1]]
            out[bdf] = ctrl
    return out


@pytest.mark.topology("all")
def test_reader_matches_device_map_and_lspci(lab_devices):
    inv = read_inventory("/")
    assert inv.system.kernel_release == lab_devices["kernel"] == os.uname().release
    assert inv.system.is_root and not inv.warnings, inv.warnings
    assert sorted(p.bdf for p in inv.providers()) == sorted(lab_devices["providers"])
    for serial, n in lab_devices["nvme"].items():
        f = inv.pci[n["bdf"]]
        assert f.upstream == n["upstream"], serial
        assert f.host_bridge == n["host_bridge"], serial
        c = inv.nvme[n["ctrl"]]
        assert (c.serial, c.pci) == (serial, n["bdf"])
        assert [f"/dev/{x}" for x in c.namespaces] == n["namespaces"], serial
        assert (c.cmb is not None) == n["cmb"], serial
        if n["p2pmem"]:
            pm = f.p2pmem
            assert (pm.size, pm.published, pm.allocate) == (
                n["p2pmem"]["size"], n["p2pmem"]["published"], n["p2pmem"]["allocate"])
        else:
            assert f.p2pmem is None, serial
    for name, b in lab_devices["bridges"].items():
        f = inv.pci[b["bdf"]]
        want = b["acs"]
        got = None if f.acs_ctrl is None else {"cap": f.acs_cap, "ctrl": f.acs_ctrl}
        assert got == (None if want is None else {"cap": want["cap"], "ctrl": want["ctrl"]}), name
    lspci = _lspci_acs_ctrl()
    assert {b: f.acs_ctrl for b, f in inv.pci.items() if f.acs_ctrl is not None} == lspci
    for name, r in lab_devices["rdma"].items():
        got = inv.rdma[name]
        if r["kind"] == "rxe_p2p":      # the lab's NIC: a PCI RDMA device, labelled as emulated
            assert (got.soft, got.pci, got.driver) == (False, r["pci"], "rdma_rxe_p2p"), name
            assert got.emulated and r["pci"] in got.emulated, got.emulated
            assert inv.pci[r["pci"]].upstream == r["upstream"], name
        else:
            assert got.soft and got.pci is None and got.driver == "rdma_rxe" and not got.emulated
        assert r["netdev"] in got.netdevs
        assert r["cidr"] in inv.net[r["netdev"]].addresses


def test_non_root_read_of_the_real_sysfs(lab_devices):
    code = ("import json; from nvmet_p2p.pci.inventory import read_inventory as r; i = r('/'); "
            "print(json.dumps({'root': i.system.is_root, "
            "'readable': sorted(b for b, f in i.pci.items() if f.config_readable), "
            "'ids': {b: [f.vendor, f.device, f.upstream] for b, f in i.pci.items()}, "
            "'providers': [p.bdf for p in i.providers()]}))")
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, HOME="/tmp"))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["root"] is False and doc["readable"] == []
    inv = read_inventory("/")
    assert doc["ids"] == {b: [f.vendor, f.device, f.upstream] for b, f in inv.pci.items()}
    assert doc["providers"] == sorted(lab_devices["providers"])


def test_snapshot_of_the_live_lab_reads_back_identically(tmp_path):
    summary = take_snapshot(tmp_path / "snap")
    assert summary["verified"] and summary["config_readable"]
    live, copy = read_inventory("/").to_dict(), read_inventory(tmp_path / "snap").to_dict()
    live.pop("source"), copy.pop("source")
    assert live == copy
    # doctor gives the same verdict on the snapshot as on the machine
    from nvmet_p2p.pci.doctor import diagnose

    da = diagnose(read_inventory("/")).to_dict()
    db = diagnose(read_inventory(tmp_path / "snap")).to_dict()
    da.pop("source"), db.pop("source")
    assert da == db


@pytest.mark.topology("all")
def test_doctor_on_the_real_kernel(lab_devices):
    from nvmet_p2p.pci.doctor import diagnose

    report = diagnose(read_inventory("/"))
    doc = report.to_dict()
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["p2pdma"]["status"] == "ok"            # trixie-backports 7.x has it
    assert checks["configfs"]["status"] == "ok"
    assert checks["nvmet"]["status"] == "ok" and checks["nvmet_rdma"]["status"] == "ok"
    assert checks["providers"]["status"] == "ok"
    assert sorted(i["bdf"] for i in checks["providers"]["items"]) == sorted(lab_devices["providers"])
    assert checks["config-space"]["status"] == "ok"
    assert ("IOMMU is active" in checks["iommu"]["detail"]) == lab_devices["iommu"]["active"]
    # QEMU's CMBs advertise SQS and the lab keeps use_cmb_sqes=Y: the SQs sit in the CMB
    if lab_devices["providers"]:
        assert checks["cmb-sqes"]["status"] == "warn"
        assert all(i["used"] > 0 for i in checks["cmb-sqes"]["items"])
    p2p = sorted(n for n, r in lab_devices["rdma"].items() if r["kind"] == "rxe_p2p")
    if p2p:
        # the lab's rxe_p2p NIC is a PCI client: no soft-RDMA verdict, the label instead
        assert checks["rdma"]["status"] == "ok", checks["rdma"]
        assert f"emulated: {', '.join(p2p)}" in checks["rdma"]["detail"]
        assert "only soft RDMA" not in doc["summary"] and doc["emulated"]
        if doc["can_offload"]:
            assert doc["summary"].endswith(f"[RDMA NIC emulated: {doc['emulated']}]")
        return
    # otherwise no PCI RDMA device exists in QEMU: the honest verdict is "cannot offload"
    assert doc["can_offload"] is False and doc["emulated"] is None
    if lab_devices["rdma"]:
        assert doc["summary"].startswith("CANNOT OFFLOAD: only soft RDMA present")


def test_doctor_cli_first_line_and_exit_status(lab_devices):
    p = labutil.cli("doctor")
    assert p.returncode == 1, p.stderr
    assert p.stdout.splitlines()[0].startswith("CANNOT OFFLOAD: ")
    assert not p.stderr.strip()
