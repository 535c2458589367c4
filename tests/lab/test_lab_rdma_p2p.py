"""Lab tier: the kernel's own p2pmem data path, end to end, over the lab's p2p-capable NIC.

Topology ``rdma-p2p``: an e1000e beside CMB NVMe on switch sw1 carries ``rxp0``, an rxe_p2p
device (the lab's soft-RoCE variant whose DMA device is that PCI NIC: tools/lab/rxe_p2p/), and
a virtio-net NIC behind another root port carries ``rxp1``. The target is built with the
product's ``apply`` from a state file (namespace on the plain NVMe, ``p2pmem`` pinned on cmbA,
in-capsule data off so that writes go through p2pmem too), the host side connects with
nvme-cli over RDMA to the guest's own addresses, and the kernel shows what it did:

- through rxp0: ``nvmet: using p2pmem on <cmbA> for nsid 1`` at connect, cmbA's
  ``p2pmem/available`` dips while fio runs and comes back, fio's crc32c verify passes and the
  bytes are on the backing device;
- through rxp1 (no bridge shared with cmbA): the kernel's refusal line at connect, connect
  still succeeds, I/O is correct and the pool never moves (host memory);
- negative control: stock rdma_rxe on the same NIC gives no ``using p2pmem`` (virtual DMA);
- with intel-iommu (topology ``iommu-acs``) the rxe_p2p module refuses the link.

The NICs' "DMA" is CPU copies in the driver (emulated); everything else is the real kernel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from labutil import (
    HOSTNQN,
    Dmesg,
    PoolSampler,
    connect_rdma,
    devmap,
    disconnect_all,
    load_rxe_p2p,
    p2p_nic_for,
    pattern,
    rdma_link,
    sh,
    write_direct,
)

pytestmark = [pytest.mark.lab]
RDMA_P2P = pytest.mark.topology("rdma-p2p")

NQN = "nqn.2026-12.io.nvmet-p2p.lab:p2p"
FIO_SIZE = "8M"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", "nvmet_p2p", *args, check=check)


def fio_verify(dev: str, rw: str = "write", bs: str = "128k") -> dict:
    """fio writes ``FIO_SIZE`` with crc32c checksums, reads it back and verifies (JSON result)."""
    r = sh("fio", "--name=p2p", f"--filename={dev}", "--direct=1", "--ioengine=libaio",
           f"--rw={rw}", f"--bs={bs}" if "-" not in bs else f"--bsrange={bs}", "--iodepth=16",
           f"--size={FIO_SIZE}", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
           "--output-format=json", check=False)
    assert r.returncode == 0, f"fio {rw} {bs} on {dev} failed ({r.returncode}): {r.stderr.strip()[-1500:]}"
    job = json.loads(r.stdout)["jobs"][0]
    assert job["error"] == 0, job
    return job


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """The state file of the p2p target, the devices it names; torn down after the module."""
    dm = devmap()
    if dm is None:
        pytest.skip("lab test: needs the QEMU lab (tools/lab/run)")
    nv = dm["nvme"]
    for need in ("cmbA", "plain"):
        if need not in nv:
            pytest.skip(f"topology {dm['topology']} has no NVMe {need!r}")
    near_name, near = p2p_nic_for(dm, "cmbA", near=True)
    far_name, far = p2p_nic_for(dm, "cmbA", near=False)
    for m in ("nvmet", "nvmet-rdma", "nvme-rdma", "nvme-fabrics"):
        sh("modprobe", m)
    work = tmp_path_factory.mktemp("rdma-p2p")
    os.environ["NVMET_P2P_STATE_DIR"] = str(work / "state")
    doc = {
        "hosts": [{"nqn": HOSTNQN}],
        "subsystems": [{
            "nqn": NQN, "attr": {"allow_any_host": "0", "serial": "nvmetp2p-p2p"},
            "allowed_hosts": [HOSTNQN],
            "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": nv["plain"]["namespaces"][0]},
                            "p2pmem": nv["cmbA"]["bdf"]}]}],
        "ports": [
            {"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": near["ip"], "trsvcid": "4420"},
             "param": {"inline_data_size": "0"}, "subsystems": [NQN]},
            {"portid": 2, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": far["ip"], "trsvcid": "4420"},
             "param": {"inline_data_size": "0"}, "subsystems": [NQN]}],
    }
    state = work / "target.json"
    state.write_text(json.dumps(doc, indent=2))
    env = {"dm": dm, "state": state, "doc": doc, "cmbA": nv["cmbA"]["bdf"], "plain": nv["plain"]["namespaces"][0],
           "near": (near_name, near), "far": (far_name, far)}
    yield env
    disconnect_all()
    cli("clear", "--all", "--yes", check=False)


@RDMA_P2P
def test_01_apply_pins_p2pmem_on_the_cmb(target):
    r = cli("apply", "--state", str(target["state"]), "--json")
    assert json.loads(r.stdout)["applied"]
    ns = f"/sys/kernel/config/nvmet/subsystems/{NQN}/namespaces/1"
    assert open(f"{ns}/p2pmem").read().strip() == target["cmbA"]
    assert open(f"{ns}/enable").read().strip() == "1"


@RDMA_P2P
def test_02_connect_over_the_nic_beside_the_cmb_uses_p2pmem(target):
    name, nic = target["near"]
    pool = PoolSampler(target["cmbA"])
    before = pool.read()
    log = Dmesg()
    conn = connect_rdma(nic["ip"], NQN)
    lines = log.since()
    want = f"nvmet: using p2pmem on {target['cmbA']} for nsid 1"
    assert any(want in ln for ln in lines), f"no {want!r} after connecting through {name}: {lines}"
    assert pool.read() == before          # connecting maps the pool, it allocates nothing
    target["conn_near"] = conn


@RDMA_P2P
def test_03_fio_verify_through_p2pmem_moves_the_pool_and_it_comes_back(target):
    conn = target.get("conn_near") or pytest.fail("test_02 did not connect")
    pool = PoolSampler(target["cmbA"])
    base = pool.read()
    with pool:
        seq = fio_verify(conn.namespaces[1], "write", "128k")
        rnd = fio_verify(conn.namespaces[1], "randwrite", "4k-256k")
    for _ in range(50):                   # the last requests' SGLs are freed at completion
        if pool.read() == base:
            break
        time.sleep(0.1)
    assert pool.read() == base, f"cmbA available {pool.read()} after fio, {base} before"
    assert pool.low < base, (f"cmbA's pool never moved during fio through {target['near'][0]} "
                             f"({len(pool.samples)} samples, all {base}): nvmet did not use p2pmem")
    print(f"cmbA p2pmem/available {base} -> low {pool.low} ({(base - pool.low) >> 10} KiB in use) "
          f"over {len(pool.samples)} samples; fio verify read {seq['read']['io_bytes'] + rnd['read']['io_bytes']} B")


@RDMA_P2P
def test_04_bytes_written_through_the_fabric_are_on_the_backing_device(target):
    conn = target.get("conn_near") or pytest.fail("test_02 did not connect")
    data = pattern("rdma-p2p", 1 << 20)
    write_direct(conn.namespaces[1], data, offset=16 << 20)
    fd = os.open(target["plain"], os.O_RDONLY | os.O_DIRECT)
    try:
        import mmap
        buf = mmap.mmap(-1, len(data))
        assert os.preadv(fd, [buf], 16 << 20) == len(data)
        assert bytes(buf) == data, "the backing NVMe holds other bytes than were written over RDMA"
    finally:
        os.close(fd)
    conn.disconnect()


@RDMA_P2P
def test_05_nic_behind_another_root_port_is_refused_and_connect_still_works(target):
    name, nic = target["far"]
    pool = PoolSampler(target["cmbA"])
    base = pool.read()
    log = Dmesg()
    conn = connect_rdma(nic["ip"], NQN)
    lines = log.since()
    refusal = re.compile(rf"{re.escape(nic['pci'])}: cannot be used for peer-to-peer DMA as the client "
                         rf"and provider \({re.escape(target['cmbA'])}\) do not share an upstream bridge")
    assert any(refusal.search(ln) for ln in lines), f"no refusal for {name} ({nic['pci']}): {lines}"
    assert not any("using p2pmem" in ln for ln in lines), lines
    with pool:
        fio_verify(conn.namespaces[1], "write", "128k")
    assert set(pool.samples) == {base}, "the pool moved although the kernel refused the provider"
    conn.disconnect()


@RDMA_P2P
def test_06_stock_rxe_on_the_same_nic_gives_no_p2pmem(target):
    """Negative control: the same target and NIC with stock soft-RoCE (virtual DMA)."""
    dm = target["dm"]
    name, nic = target["near"]
    disconnect_all()
    cli("clear", "--all", "--yes")
    links = {k: v for k, v in dm["rdma"].items() if v.get("kind") == "rxe_p2p"}
    for ib in links:
        rdma_link("delete", ib)
    sh("rmmod", "rdma_rxe_p2p")
    try:
        sh("modprobe", "rdma_rxe")
        sh("rdma", "link", "add", "rxs0", "type", "rxe", "netdev", nic["netdev"])
        assert not os.path.exists("/sys/class/infiniband/rxs0/device"), "stock rxe has a parent device?"
        # the same target without the far NIC's port (its rxe_p2p device is gone too)
        doc = dict(target["doc"], ports=[p for p in target["doc"]["ports"] if p["portid"] == 1])
        state = target["state"].with_name("target-stock-rxe.json")
        state.write_text(json.dumps(doc, indent=2))
        cli("apply", "--state", str(state))
        log = Dmesg()
        conn = connect_rdma(nic["ip"], NQN)
        fio_verify(conn.namespaces[1], "write", "128k")
        lines = log.since()
        assert not any("using p2pmem" in ln for ln in lines), lines
        conn.disconnect()
    finally:
        disconnect_all()
        cli("clear", "--all", "--yes", check=False)
        rdma_link("delete", "rxs0")
        sh("rmmod", "rdma_rxe", check=False)
        load_rxe_p2p(dm)
        for ib, rec in links.items():       # leave the boot as it was for later lab tests
            sh("rdma", "link", "add", ib, "type", "rxe_p2p", "netdev", rec["netdev"])


@pytest.mark.topology("iommu-acs")
def test_rxe_p2p_refuses_a_nic_behind_a_translating_iommu(lab_devices):
    dm = lab_devices
    nics = [n for n, rec in dm.get("net", {}).items() if rec.get("pci")]
    if not nics:
        pytest.skip(f"topology {dm['topology']} has no PCI NIC")
    assert dm["iommu"]["active"], "iommu-acs boots with intel-iommu"
    load_rxe_p2p(dm)
    log = Dmesg()
    r = rdma_link("add", "rxq0", "type", "rxe_p2p", "netdev", nics[0])
    assert r.returncode != 0 and "Operation not supported" in r.stderr, (r.returncode, r.stderr)
    bdf = dm["net"][nics[0]]["pci"]
    lines = log.since()
    assert any(f"{nics[0]}: an IOMMU translates DMA of {bdf}" in ln for ln in lines), lines
    assert not os.path.exists("/sys/class/infiniband/rxq0")
