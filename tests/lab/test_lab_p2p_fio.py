"""Lab tier: ``p2p-test --engine fio`` — fio with its buffers in a CMB, against the real kernel.

* default topology, one run on three namespaces (libaio and io_uring): behind the switch,
  reads into and writes from cmbA's CMB verified in both directions on two namespaces at once, the pool taking
  exactly what fio 3.33 maps (``bs x iodepth + 8 KiB`` per job) while the p2p jobs run and
  nothing while the host jobs do; across root ports, refused from the distance rules before
  any p2p I/O (the kernel would answer EINVAL), explained, the host-memory control still
  passing (tests/lab/test_lab_p2ptest_refusal.py: the pair alone, and the kernel's refusal);
* a matrix cell the pool cannot hold: refused before anything is written;
* iommu-acs topology: QEMU's emulated intel-iommu drops the peer DMA the kernel allowed
  (bus_addr behind the switch) and the NVMe completes anyway: reported as lost data in both
  directions with the DMAR fault lines, never as a pass.

Sizes are small (2 MiB regions, one 128 KiB x QD4 cell, one round, 1 s runs): these check the
kernel's and fio's behaviour, not speed (TCG numbers are not a claim).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from nvmet_p2p import cli

pytestmark = pytest.mark.lab
OFFSET = 192 << 20          # clear of the ranges test_lab_harness and test_lab_p2p_dma use
SMALL = ["--size", "2M", "--offset", str(OFFSET), "--bs", "128k", "--qd", "4", "--runtime", "1",
         "--repeat", "1", "--allow-write", "--no-plots"]
LABEL = "QEMU, emulated; not a performance claim"


def out_dir(tmp_path, name: str) -> str:
    base = os.environ.get("NVMET_P2P_LAB_RESULTS") or str(tmp_path)
    return os.path.join(base, "p2p-fio", name)


def p2p_fio(capsys, out: str, provider: str, *devices: str, extra=()):
    """``nvmet-p2p p2p-test --engine fio ... --json`` in this process: (rc, document, stderr)."""
    capsys.readouterr()
    rc = cli.main(["p2p-test", "--engine", "fio", provider, *devices, *SMALL, "--json", "--out", out, *extra])
    o = capsys.readouterr()
    return rc, (json.loads(o.out) if o.out.strip() else None), o.err


def region_hash(dev: str, offset: int, size: int) -> str:
    with open(dev, "rb") as f:
        f.seek(offset)
        return hashlib.sha256(f.read(size)).hexdigest()


@pytest.mark.topology("default")
def test_fio_verified_behind_the_switch_and_refused_across_root_ports(lab_devices, capsys, tmp_path):
    """One run, three namespaces: cmbB and cmbC share cmbA's switch, plain sits on another root port."""
    nv = lab_devices["nvme"]
    cmba = nv["cmbA"]["bdf"]
    devs, plain = [nv["cmbB"]["namespaces"][0], nv["cmbC"]["namespaces"][0]], nv["plain"]["namespaces"][0]
    out = out_dir(tmp_path, "switch")
    rc, d, err = p2p_fio(capsys, out, cmba, *devs, plain, extra=["--ioengine", "libaio,io_uring"])
    assert rc == 5, err                                   # one namespace refused: no p2p
    assert d["verdict"] == "refused" and d["emulated"] == LABEL and d["fio"] == "fio-3.33"
    for dev in devs:
        assert d["devices"][dev]["verdict"] == "verified"
        assert d["devices"][dev]["checks"] == {c: {"status": "verified"} for c in
                                               ("cmb_to_nvme", "nvme_to_cmb", "matrix_writes", "host_control")}
        assert d["prediction"][dev]["map_type"] == "bus_addr"
    # behind the switch: every matrix run ok, the pool giving exactly what fio maps (bs x iodepth
    # + 8 KiB per job) to both namespaces' jobs at once, and nothing to the host-buffer jobs
    with open(os.path.join(out, "results.json")) as f:
        full = json.load(f)
    matrix = [r for r in full["runs"] if r["workload"]["group"] == "matrix"]
    assert len(matrix) == 8 and all(r["fio"]["ok"] for r in matrix)
    assert {r["workload"]["extra"]["ioengine"] for r in matrix} == {"libaio", "io_uring"}
    for r in matrix:
        pool, want = r["pool"][cmba], (2 * 532480 if r["variant"] == "p2p" else 0)
        assert r["p2pmem_expected"] == want and pool["peak_in_use"] == want, (r["workload"]["name"], pool)
        assert pool["samples"] >= 2 and not pool["exhausted"]
        assert {j["filename"] for j in r["fio"]["jobs"]} == set(devs)    # host runs too: like with like
    for read in (c for c in d["cells"] if c["rw"] == "read"):
        assert read["median_p2p_gb_per_s"] > 0 and read["median_host_gb_per_s"] > 0 and read["ratio_p2p_host"] > 0
    assert d["pool"]["available_after"] == d["pool"]["available_before"]
    jf = open(os.path.join(out, "fio", "seq-read-128k-qd4-io_uring-p2p-r1.fio")).read()
    assert f"iomem=mmapshared:/sys/bus/pci/devices/{cmba}/p2pmem/allocate" in jf and "ioengine=io_uring" in jf
    assert "[1/15] prep-zero" in err
    # across root ports: refused from the distance rules before any p2p I/O (issue 19.12),
    # explained, and the namespace itself fine (its host-memory control ran)
    s = d["devices"][plain]
    assert s["verdict"] == "refused" and s["refusal"]["errname"] == "EINVAL" and s["refusal"]["before_io"]
    assert d["refused_before_io"] == [plain] and d["stopped"] is None
    assert s["checks"]["host_control"] == {"status": "verified"}
    assert all(plain not in {j["filename"] for j in r["fio"]["jobs"]}
               for r in full["runs"] if r["variant"] == "p2p")       # no p2p job ever on it
    expl = s["refusal"]["explanation"]
    assert "refused before any I/O" in expl and "whitelist" in expl and nv["plain"]["bdf"] in expl
    assert nv["cmbB"]["bdf"] not in expl


@pytest.mark.topology("default")
def test_fio_cell_the_pool_cannot_hold_changes_nothing(lab_devices, capsys, tmp_path):
    nv = lab_devices["nvme"]
    dev = nv["cmbB"]["namespaces"][0]
    before = region_hash(dev, OFFSET, 4 << 20)
    out = out_dir(tmp_path, "too-big")
    rc, d, err = p2p_fio(capsys, out, nv["cmbA"]["bdf"], dev, extra=["--bs", "1m", "--qd", "64"])
    assert rc == 2 and d is None
    assert "1m x iodepth 64" in err and "the pool holds iodepth 63" in err and "Traceback" not in err
    assert region_hash(dev, OFFSET, 4 << 20) == before and not os.path.exists(out)


@pytest.mark.topology("iommu-acs")
def test_fio_lost_data_behind_the_emulated_iommu(lab_devices, capsys, tmp_path):
    nv = lab_devices["nvme"]
    dev = nv["swPlain"]["namespaces"][0]
    rc, d, err = p2p_fio(capsys, out_dir(tmp_path, "iommu"), nv["swCmb"]["bdf"], dev)
    assert rc == 1, err
    s = d["devices"][dev]
    assert d["prediction"][dev]["map_type"] == "bus_addr"            # the kernel allows it...
    assert d["verdict"] == s["verdict"] == "mismatch" and not s["refusal"]   # ...and the data is lost
    c = s["checks"]
    assert c["cmb_to_nvme"]["status"] == c["nvme_to_cmb"]["status"] == c["matrix_writes"]["status"] == "lost"
    assert c["host_control"] == {"status": "verified"}
    lost = " ".join(s["lost"])
    assert "found the poison" in lost and "holds zeros where fio wrote from the CMB" in lost
    assert "IOMMU dropped it" in d["lost_explanation"] and "DMAR: [DMA" in d["lost_explanation"]
    assert nv["swPlain"]["bdf"] in d["lost_explanation"]
