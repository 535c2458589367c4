"""Lab tier: a profile planned and applied against the real lab kernel.

``nvmet-p2p plan/apply --profile`` read the live machine (sysfs through the inventory readers),
place every namespace and write configfs through the reconciler. The kernel is the judge:
every ``enable`` must be accepted (the kernel checks provider <-> NVMe there), every
namespace's ``p2pmem`` must read back the planned BDF, and no p2pdma refusal may appear in the
kernel log. Where the plan says "no provider", the kernel must refuse too.

What the lab cannot show: soft-RoCE (rxe) is virtual DMA, so nvmet-rdma sets no p2p client and
fabric I/O never uses p2pmem here. The plan says so; ``test_soft_rdma_uses_host_memory``
checks that the kernel agrees (no "using p2pmem" line, the CMB's ``available`` unchanged).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from labutil import Dmesg, devmap, nvmet_try_p2pmem
from nvmet_p2p import cli as nvmet_cli

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "lab-default.yaml"
CFG = "/sys/kernel/config/nvmet"
CMB_SUB = "nqn.2026-01.io.nvmet-p2p:lab-cmb"
PLAIN_SUB = "nqn.2026-01.io.nvmet-p2p:lab-plain"
HOSTID = "6e7670ee-7032-4c61-6200-000000000001"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
REFUSALS = ("cannot be used for peer-to-peer DMA", "no peer-to-peer memory",
            "PCI device has no peer-to-peer memory", "No such PCI device")


def sh(*cmd, check=True, timeout=120):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    dm = devmap()
    if dm is None:
        pytest.skip("lab test: needs the QEMU lab (tools/lab/run)")
    for m in ("nvmet", "nvmet-rdma", "nvmet-tcp", "nvme-rdma", "nvme-fabrics"):
        sh("modprobe", m)
    left = {d: os.listdir(f"{CFG}/{d}") for d in ("subsystems", "ports", "hosts")}
    assert not any(left.values()), f"an earlier lab test left nvmet objects behind: {left}"
    state = tmp_path_factory.mktemp("placement-state")

    def cli(*args, check=True):
        """The CLI in this process (a fresh interpreter costs ~10 s under TCG)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = nvmet_cli.main([*args, "--state-dir", str(state)])
        r = subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())
        if check and rc:
            raise AssertionError(f"nvmet-p2p {' '.join(args)} -> {rc}\n{r.stdout}{r.stderr}")
        return r
    yield {"dm": dm, "cli": cli, "work": tmp_path_factory.mktemp("placement")}
    for c in os.listdir("/sys/class/nvme"):
        if read(f"/sys/class/nvme/{c}/transport") in ("rdma", "tcp"):
            sh("nvme", "disconnect", "-d", c, check=False)
    cli("clear", check=False)


def expected(dm, topology: str) -> dict:
    """(subsystem, nsid) -> (device_path, p2pmem) the shipped profile must give this topology."""
    nv = dm["nvme"]
    cmb = sorted(s for s, d in nv.items() if d.get("p2pmem"))     # each: serial order
    out = {(CMB_SUB, i): (nv[s]["namespaces"][0], nv[s]["bdf"]) for i, s in enumerate(cmb, 1)}
    out[(PLAIN_SUB, 1)] = (nv["plain"]["namespaces"][0], "0")
    return out


@pytest.mark.topology("default", "amd-epyc")
def test_plan_predicts_each_namespace_on_its_own_cmb(lab):
    r = lab["cli"]("plan", "--profile", str(PROFILE), "--json")
    doc = json.loads(r.stdout)
    got = {(d["subsystem"], d["nsid"]): (d["device_path"], d["p2pmem"])
           for d in doc["placement"]["decisions"]}
    assert got == expected(lab["dm"], os.environ.get("NVMET_P2P_LAB_TOPOLOGY", "default"))
    for d in doc["placement"]["decisions"]:
        if d["status"] == "placed":
            assert d["map_type"] == "bus_addr" and d["clients"] == [d["nvme"]]
            assert d["demand"] == 0           # rxe/tcp: no p2p client, nothing in flight
            assert d["candidates"][0]["own_cmb"] and d["candidates"][0]["lost"] is None
    notes = " ".join(n for d in doc["placement"]["decisions"] for n in d["notes"])
    assert "rxe0 is soft RDMA" in notes and "nvmet-tcp never uses p2pmem" in notes


@pytest.mark.topology("default", "amd-epyc")
def test_apply_profile_kernel_accepts_every_enable_and_reads_back_the_plan(lab):
    want = expected(lab["dm"], os.environ.get("NVMET_P2P_LAB_TOPOLOGY", "default"))
    log = Dmesg()
    r = lab["cli"]("apply", "--profile", str(PROFILE))
    assert "Applied:" in r.stdout, r.stdout + r.stderr
    for (nqn, nsid), (dev, p2pmem) in want.items():
        ns = f"{CFG}/subsystems/{nqn}/namespaces/{nsid}"
        assert read(f"{ns}/enable") == "1", ns
        assert read(f"{ns}/device_path") == dev
        assert read(f"{ns}/p2pmem") == p2pmem, ns
    assert read(f"{CFG}/subsystems/{CMB_SUB}/attr_allow_any_host") == "0"
    assert os.listdir(f"{CFG}/subsystems/{CMB_SUB}/allowed_hosts") == [HOSTNQN]
    rdma_ip = next(iter(lab["dm"]["rdma"].values()))["ip"]
    assert read(f"{CFG}/ports/1/addr_traddr") == rdma_ip
    assert read(f"{CFG}/ports/1/addr_trtype") == "rdma"
    assert sorted(os.listdir(f"{CFG}/ports/2/subsystems")) == [CMB_SUB, PLAIN_SUB]
    refused = [l for l in log.since() if any(s in l for s in REFUSALS)]
    assert not refused, refused
    # idempotent: planning again finds nothing to do
    again = lab["cli"]("plan", "--profile", str(PROFILE)).stdout
    assert "No changes: configfs already matches the desired state (0 writes)." in again


@pytest.mark.topology("default")
def test_soft_rdma_uses_host_memory_as_the_plan_says(lab):
    nv = lab["dm"]["nvme"]
    rdma_ip = next(iter(lab["dm"]["rdma"].values()))["ip"]
    cmb_a = nv["cmbA"]["bdf"]
    avail = f"/sys/bus/pci/devices/{cmb_a}/p2pmem/available"
    before = int(read(avail))
    log = Dmesg()
    before_ctrls = set(os.listdir("/sys/class/nvme"))
    before_blk = set(os.listdir("/sys/block"))
    sh("nvme", "connect", "-t", "rdma", "-a", rdma_ip, "-s", "4420", "-n", CMB_SUB,
       f"--hostnqn={HOSTNQN}", f"--hostid={HOSTID}")
    try:
        blk = []
        for _ in range(100):
            # the disk itself (with native multipath, nvmeXcYnZ are hidden paths, no /dev node)
            blk = sorted(n for n in set(os.listdir("/sys/block")) - before_blk
                         if re.fullmatch(r"nvme\d+n\d+", n))
            if blk:
                break
            time.sleep(0.1)
        assert blk, "nvme connect made no block device"
        # a few MiB of direct reads through the fabric: the data path nvmet-rdma would use
        sh("dd", f"if=/dev/{blk[0]}", "of=/dev/null", "bs=128k", "count=64", "iflag=direct")
        lines = log.since()
        assert any("Created nvm controller" in l for l in lines), lines
        assert not any("using p2pmem" in l for l in lines), lines
        assert int(read(avail)) == before
    finally:
        for c in sorted(set(os.listdir("/sys/class/nvme")) - before_ctrls):
            sh("nvme", "disconnect", "-d", c, check=False)


@pytest.mark.topology("default")
def test_where_the_plan_finds_no_provider_the_kernel_refuses_too(lab, tmp_path):
    prof = tmp_path / "plain-placed.yaml"
    prof.write_text(PROFILE.read_text().replace("        p2p: off ", "        p2p: placed "))
    r = lab["cli"]("plan", "--profile", str(prof), "--explain", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    plain = lab["dm"]["nvme"]["plain"]
    assert f"no provider is accepted for the NVMe {plain['bdf']} itself" in r.stdout
    # the kernel, asked to find any provider for it (p2pmem=1), refuses the enable
    res = nvmet_try_p2pmem(plain["namespaces"][0], "1")
    assert not res.accepted and res.stage == "enable" and res.errno == 22, res.describe()
    assert any("no peer-to-peer memory is available" in l for l in res.dmesg), res.dmesg


@pytest.mark.topology("amd-epyc")
def test_amd_places_the_plain_nvme_through_the_root_complex_and_the_kernel_agrees(lab, tmp_path):
    # On AMD Zen every host-bridge path is allowed: the plain NVMe gets a provider too.
    prof = tmp_path / "plain-placed.yaml"
    prof.write_text(PROFILE.read_text().replace("        p2p: off ", "        p2p: placed "))
    doc = json.loads(lab["cli"]("plan", "--profile", str(prof), "--json").stdout)
    [d] = [d for d in doc["placement"]["decisions"] if d["subsystem"] == PLAIN_SUB]
    assert d["status"] == "placed" and d["map_type"] == "thru_host_bridge"
    nearest = min(d["candidates"], key=lambda c: c["distance"])
    assert d["p2pmem"] == nearest["provider"]
    log = Dmesg()
    lab["cli"]("apply", "--profile", str(prof))
    ns = f"{CFG}/subsystems/{PLAIN_SUB}/namespaces/1"
    assert read(f"{ns}/p2pmem") == d["p2pmem"] and read(f"{ns}/enable") == "1"
    refused = [l for l in log.since() if any(s in l for s in REFUSALS)]
    assert not refused, refused
