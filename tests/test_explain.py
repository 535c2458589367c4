"""Every mismatch explained: kernel log lines of a transfer's window -> the likely cause, with an
IOMMU fault's address mapped to the BAR it falls in (sysfs ``resource``). The lines are the ones
the lab kernel printed (7.3.4, QEMU intel-iommu; tests/lab/test_lab_mismatch.py checks them live)
and the documented forms of older kernels and AMD."""

from __future__ import annotations

import os

from nvmet_p2p.harness.p2ptest import P2pTestResult, Transfer, explain_mismatch, render
from nvmet_p2p.observe import explain

LAB_DMAR = ["DMAR: DRHD: handling fault status reg 2",
            "DMAR: [DMA Write NO_PASID] Request device [0000:05:00.0] fault addr 0xf8020000 "
            "[fault reason 0x05] PTE Write access is not set"]
RESOURCE = ("0x00000000fe600000 0x00000000fe603fff 0x0000000000140204\n"
            "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
            "0x00000000f8000000 0x00000000f9ffffff 0x000000000014220c\n"
            + "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" * 10)


def sysfs(tmp_path):
    root = tmp_path / "root"
    other = "0x00000000fe400000 0x00000000fe403fff 0x0000000000140204\n"
    for bdf, res in (("0000:04:00.0", RESOURCE), ("0000:05:00.0", other)):
        d = root / "sys/devices/pci0000:00/0000:00:05.0" / bdf
        d.mkdir(parents=True)
        (d / "resource").write_text(res)
        (root / "sys/bus/pci/devices").mkdir(parents=True, exist_ok=True)
        os.symlink(d, root / "sys/bus/pci/devices" / bdf)
    for name, bdf in (("nvme2", "0000:04:00.0"), ("nvme3", "0000:05:00.0")):
        (root / "sys/class/nvme").mkdir(parents=True, exist_ok=True)
        os.symlink(root / "sys/devices/pci0000:00/0000:00:05.0" / bdf, root / "sys/class/nvme" / name)
    return str(root)


def test_lab_dmar_fault_names_device_address_and_bar(tmp_path):
    e = explain.explain(LAB_DMAR, root=sysfs(tmp_path), providers=["0000:04:00.0"])
    c = [c for c in e.causes if c.kind == explain.KIND_IOMMU]
    assert len(c) == 1 and c[0].device == "0000:05:00.0" and c[0].address == 0xf8020000
    assert c[0].bar.device == "0000:04:00.0" and c[0].bar.index == 2
    assert e.summary.startswith("IOMMU fault: the IOMMU blocked the DMA write of 0000:05:00.0 (nvme3) to "
                                "0xf8020000, inside BAR 2 of p2pmem provider 0000:04:00.0 (nvme2) "
                                "(0xf8000000-0xf9ffffff): the page table entry has no write permission")
    assert "never reached the peer" in e.summary


def test_read_bars_takes_memory_bars_only(tmp_path):
    root = sysfs(tmp_path)
    bars = explain.read_bars("0000:04:00.0", root)
    assert [(b.index, hex(b.start), hex(b.end)) for b in bars] == [
        (0, "0xfe600000", "0xfe603fff"), (2, "0xf8000000", "0xf9ffffff")]
    assert explain.read_bars("0000:09:00.0", root) == []


def test_older_and_amd_forms_aer_io_errors_resets():
    lines = [
        "[  1.0] DMAR: [DMA Write] Request device [04:00.0] PASID ffffffff fault addr fe800000 "
        "[fault reason 05] PTE Write access is not set",
        "nvme 0000:04:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x000e address=0xf8001000 flags=0x0020]",
        "AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x0000 address=0xf8002000 flags=0x0000]",
        "pcieport 0000:00:04.0: AER: Uncorrected (Non-Fatal) error received: 0000:04:00.0",
        "nvme 0000:04:00.0: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction Layer, (Requester ID)",
        "I/O error, dev nvme1n1, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 0",
        "nvme1n1: Read(0x2) @ LBA 0, 8 blocks, Data Transfer Error (sct 0x0 / sc 0x4) DNR",
        "nvme nvme1: I/O tag 12 (100c) opcode 0x2 (Read) QID 1 timeout, aborting",
        "nvme nvme1: resetting controller",
        "pcieport 0000:00:05.0: DPC: containment event, status:0x1f01",
        "nvme nvme0: using p2pmem ... unrelated",
    ]
    e = explain.explain_window(lines, bars=[explain.Bar("0000:04:00.0", 2, 0xf8000000, 0xf9ffffff)],
                               providers=["0000:04:00.0"], devices={"nvme1": "0000:01:00.0"})
    kinds = [c.kind for c in e.causes]
    assert kinds == ["iommu_fault"] * 3 + ["aer"] * 2 + ["io_error"] * 2 + ["timeout", "device_reset", "device_reset"]
    old, amd, amd_old = e.causes[:3]
    assert old.device == "0000:04:00.0" and old.address == 0xfe800000 and old.bar is None
    assert amd.device == "0000:04:00.0" and amd.bar.index == 2
    assert amd_old.device == "0000:05:00.0" and amd_old.address == 0xf8002000
    assert e.causes[5].disk == "nvme1n1" and e.causes[5].device == "0000:01:00.0"
    assert e.causes[6].detail == "Data Transfer Error"
    # with no IOMMU line the AER one is named first
    e2 = explain.explain_window(lines[3:])
    assert e2.summary.startswith("PCIe AER error reported for 0000:04:00.0: Uncorrected (Non-Fatal)")


def test_nothing_in_the_log_is_said_too():
    assert not explain.explain_window(["nvme nvme0: 2/0/0 default/read/poll queues"]).found


def test_p2p_test_mismatch_gets_an_explanation(tmp_path):
    root = sysfs(tmp_path)
    res = P2pTestResult(provider="0000:04:00.0", source="/dev/nvme3n1", destination="/dev/nvme2n1",
                        size=65536, offset=0, repeat=1, seeded=True, seed=1, emulated="emulated: QEMU TCG",
                        prediction={"/dev/nvme3n1": {"pci": "0000:05:00.0", "map_type": "bus_addr"}},
                        kernel_log=LAB_DMAR)
    res.transfers = [Transfer("read", "host", "/dev/nvme3n1", 1, 65536, 0.1, True),
                     Transfer("read", "p2p", "/dev/nvme3n1", 1, 65536, 0.1, False, "data mismatch at byte 0"),
                     Transfer("write", "p2p", "/dev/nvme2n1", 1, 65536, 0.1, False, "read-back mismatch")]
    res.explanation = explain_mismatch(res, root)
    s = res.explanation["summary"]
    assert "IOMMU fault" in s and "BAR 2 of p2pmem provider 0000:04:00.0" in s
    assert "stale content" in s and "emulated: QEMU TCG" in s
    out = render(res)
    assert "verdict: mismatch" in out and "likely cause: IOMMU fault" in out
    assert "kernel: DMAR: [DMA Write NO_PASID] Request device [0000:05:00.0]" in out
