"""Lab tier: the initiator harness, status and p2p-test against the real kernel.

A target is exported through the reconciler (two subsystems: one on the soft-RoCE port only,
one on a TCP port only, each with a namespace whose p2pmem is pinned to a CMB), then
``nvmet-p2p bench`` connects as a host with nvme-cli and runs fio:

* over RDMA: a short throughput job and the integrity job, with one 4 KiB block of the
  *backing* device overwritten behind the target's back between the write and verify passes
  — the harness must fail and name that block; the offload verdict must be ``inactive``
  for the soft-RDMA reason (rxe is virtual DMA: nvmet never maps p2pmem for it);
* over TCP: the same jobs, clean: integrity passes, the verdict names the transport;
* A/B over TCP: p2pmem toggled through the reconciler between interleaved rounds;
* ``status`` on its own (no initiator hints) reaches the same verdicts;
* ``p2p-test``: a verified NVMe -> CMB -> NVMe transfer behind the switch, and the pair
  across root ports refused before any I/O (the kernel would answer EINVAL).

Every bench run must leave no fabric controller behind. The commands run in this process
(``cli.main``): under TCG a fresh Python with the whole package costs 10-20 s per command.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from nvmet_p2p import cli
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import clear, reconcile

pytestmark = pytest.mark.lab

S_RDMA = "nqn.2026-11.io.lab:harness-rdma"
S_TCP = "nqn.2026-11.io.lab:harness-tcp"
HOSTID = "5d0c1e2a-8f3b-4c6d-9e7f-a1b2c3d4e5f6"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
CORRUPT_BLOCK = 777            # 4 KiB block of the backing device overwritten between the passes


def sh(*cmd, check=True, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")
    return r


def nvmet_p2p(capsys, *args):
    """``nvmet-p2p ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def fabric_ctrls() -> list[str]:
    base = "/sys/class/nvme"
    out = []
    for c in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        with open(f"{base}/{c}/transport") as f:
            if f.read().strip() in ("rdma", "tcp", "loop"):
                out.append(c)
    return out


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if os.environ.get("NVMET_P2P_LAB") != "1" or not path:
        pytest.skip("lab test: needs the QEMU lab (tools/lab/run)")
    with open(path) as f:
        dm = json.load(f)
    for m in ("nvmet", "nvmet-rdma", "nvmet-tcp", "nvme-rdma", "nvme-tcp", "nvme-fabrics"):
        sh("modprobe", m)
    nv = dm["nvme"]
    rdma = next(iter(dm["rdma"].values()))
    work = tmp_path_factory.mktemp("harness")
    old_env = os.environ.get("NVMET_P2P_STATE_DIR")
    os.environ["NVMET_P2P_STATE_DIR"] = str(work / "state")
    doc = {
        "hosts": [{"nqn": HOSTNQN}],
        "subsystems": [
            {"nqn": S_RDMA, "attr": {"allow_any_host": "0"}, "allowed_hosts": [HOSTNQN],
             "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": nv["cmbB"]["namespaces"][0]},
                             "p2pmem": nv["cmbA"]["bdf"]}]},
            {"nqn": S_TCP, "attr": {"allow_any_host": "0"}, "allowed_hosts": [HOSTNQN],
             "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": nv["cmbC"]["namespaces"][0]},
                             "p2pmem": nv["cmbA"]["bdf"]}]}],
        "ports": [
            {"portid": 11, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": rdma["ip"], "trsvcid": "4420"},
             "subsystems": [S_RDMA]},
            {"portid": 12, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1", "trsvcid": "4421"},
             "subsystems": [S_TCP]}],
    }
    out = reconcile("/", statefile.parse(doc), str(work / "state"))
    assert out.applied and out.result.writes > 10
    env = {"dev": nv, "ip": rdma["ip"], "ibdev": next(iter(dm["rdma"])), "work": work,
           "results": os.environ.get("NVMET_P2P_LAB_RESULTS") or str(work)}
    yield env
    for c in fabric_ctrls():
        sh("nvme", "disconnect", "-d", c, check=False)
    clear("/", str(work / "state"))
    if old_env is None:
        os.environ.pop("NVMET_P2P_STATE_DIR", None)
    else:
        os.environ["NVMET_P2P_STATE_DIR"] = old_env


def bench(capsys, target, name, *args):
    out = os.path.join(target["results"], "harness", name)
    r = nvmet_p2p(capsys, "bench", "--hostnqn", HOSTNQN, "--hostid", HOSTID, "--runtime", "2", "--ramp", "0",
                  "--integrity-size", "8m", "--allow-write", "--no-plots", "--out", out, *args)
    with open(os.path.join(out, "results.json")) as f:
        return r, json.load(f)


def verdicts(results, nqn):
    return [v for s in results["evidence"]["subsystems"] if s["nqn"] == nqn
            for n in s["namespaces"] for v in n["verdicts"]]


def test_rdma_bench_catches_a_block_overwritten_behind_the_target(target, capsys):
    backing = target["dev"]["cmbB"]["namespaces"][0]
    corrupt = (f"dd if=/dev/urandom of={backing} bs=4096 seek={CORRUPT_BLOCK} count=1 "
               f"oflag=direct conv=notrunc status=none")
    (rc, stdout, stderr), res = bench(capsys, target, "rdma", "-t", "rdma", "-a", target["ip"], "-s", "4420",
                                      "-n", S_RDMA,
                   "--matrix", "quick", "--workload", "seq-read-128k-qd16", "--workload", "integrity",
                   "--between-phases", corrupt)
    assert rc == 1, stdout + stderr
    assert res["emulated"] == "QEMU, emulated; not a performance claim"
    (conn,) = res["connections"]
    assert conn["transport"] == "rdma" and conn["connected_by_us"] and conn["disconnected"]
    runs = {x["workload"]["name"]: x for x in res["runs"]}
    assert runs["seq-read-128k-qd16"]["fio"]["ok"] and runs["seq-read-128k-qd16"]["summary"]["gb_per_s"] > 0
    assert runs["integrity-write"]["fio"]["ok"]                 # written and read back fine...
    assert not runs["integrity-verify"]["fio"]["ok"]            # ...then the block was overwritten
    assert res["integrity"]["verdict"] == "fail"
    (f,) = res["integrity"]["failures"]
    assert f["offset"] == CORRUPT_BLOCK * 4096, f
    assert f["file"] == conn["namespaces"][0]["device"] and f["job"].startswith("integrity-verify@")
    assert f"offset {CORRUPT_BLOCK * 4096}" in stdout
    (v,) = verdicts(res, S_RDMA)
    assert v["verdict"] == "inactive" and v["reason"] == "soft_rdma", v
    assert target["ibdev"] in v["detail"] and v["cntlid"] == conn["cntlid"]
    # the pools were sampled while fio ran, and (no p2p client) never moved
    cmba = target["dev"]["cmbA"]["bdf"]
    for x in res["runs"]:
        sampled = x["evidence"]["providers"][cmba]["sampled"]
        assert sampled["samples"] >= 2 and sampled["errors"] == 0 and sampled["moved"] is False, sampled
        assert x["evidence"]["sampling"]["io_running"] is True
    assert fabric_ctrls() == []


def test_tcp_bench_clean_run_passes(target, capsys):
    (rc, stdout, stderr), res = bench(capsys, target, "tcp", "-t", "tcp", "-a", "127.0.0.1", "-s", "4421", "-n", S_TCP,
                   "--matrix", "quick", "--workload", "seq-read-128k-qd16", "--workload", "integrity")
    assert rc == 0, stdout + stderr
    assert res["ok"] and res["integrity"] == {"verdict": "pass", "failures": []}
    s = {x["workload"]["name"]: x["summary"] for x in res["runs"]}
    assert s["seq-read-128k-qd16"]["gb_per_s"] > 0 and s["seq-read-128k-qd16"]["p99_ns"] > 0
    (v,) = verdicts(res, S_TCP)
    assert v["verdict"] == "inactive" and v["reason"] == "transport_without_p2p_client", v
    assert fabric_ctrls() == []


def test_status_alone_reaches_the_verdicts(target, capsys):
    """No initiator hints: each subsystem has one port, so status can tell by itself."""
    rc, stdout, stderr = nvmet_p2p(capsys, "status", "--json")
    assert rc == 0, stderr
    d = json.loads(stdout)
    assert {s["nqn"] for s in d["subsystems"]} == {S_RDMA, S_TCP}     # the managed ones
    rd = next(s for s in d["subsystems"] if s["nqn"] == S_RDMA)
    assert rd["ports"][0]["rdma_device"] == target["ibdev"] and rd["ports"][0]["rdma_soft"] is True
    assert rd["namespaces"][0]["p2pmem"] == target["dev"]["cmbA"]["bdf"]
    vs = [v for n in rd["namespaces"] for v in n["verdicts"]]
    assert vs and all(v["reason"] == "soft_rdma" for v in vs), vs
    tc = next(s for s in d["subsystems"] if s["nqn"] == S_TCP)
    assert all(v["reason"] == "transport_without_p2p_client" for n in tc["namespaces"] for v in n["verdicts"])
    rc, text, _ = nvmet_p2p(capsys, "status")
    assert rc == 0 and "(soft RDMA)" in text and "inactive: soft RDMA" in text


def test_ab_toggles_p2pmem_through_the_reconciler(target, capsys):
    cmba = target["dev"]["cmbA"]["bdf"]
    (rc, stdout, stderr), res = bench(capsys, target, "ab", "-t", "tcp", "-a", "127.0.0.1", "-s", "4421",
                                      "-n", S_TCP, "--matrix", "quick", "--workload", "seq-read-128k-qd16",
                                      "--ab-rounds", "2", "--runtime", "1")
    assert rc == 0, stdout + stderr
    ab = res["ab"]
    assert ab["order"] == ["p2p-on", "p2p-off", "p2p-on", "p2p-off"]
    t = ab["workloads"]["seq-read-128k-qd16"]
    assert len(t["p2p-on"]) == len(t["p2p-off"]) == 2 and t["ratio_on_off"] > 0
    writes = [c["writes"] for c in ab["target_changes"]]
    assert writes[0] == 0 and writes[1:4] == [3, 3, 3]   # on (already), off, on, off: enable/p2pmem/enable
    with open(f"/sys/kernel/config/nvmet/subsystems/{S_TCP}/namespaces/1/p2pmem") as f:
        assert f.read().strip() == cmba                   # restored after the run
    assert fabric_ctrls() == []


def test_p2p_test_verified_through_a_cmb_behind_the_switch(target, capsys):
    nv = target["dev"]
    rc, stdout, stderr = nvmet_p2p(capsys, "p2p-test", nv["cmbA"]["bdf"], nv["cmbB"]["namespaces"][0],
                                   nv["cmbC"]["namespaces"][0], "--size", "4M", "--offset", str(128 << 20),
                                   "--repeat", "1", "--allow-write", "--json")
    assert rc == 0, stdout + stderr
    d = json.loads(stdout)
    assert d["verdict"] == "verified" and d["emulated"] == "QEMU, emulated; not a performance claim"
    assert {(t["direction"], t["path"]) for t in d["transfers"]} == {
        ("read", "p2p"), ("read", "host"), ("write", "p2p"), ("write", "host")}
    assert all(t["verified"] for t in d["transfers"])
    assert d["pool"]["available_mapped"] == d["pool"]["available_before"] - (4 << 20)
    assert d["medians"]["read_p2p_mb_per_s"] > 0 and d["medians"]["read_host_mb_per_s"] > 0
    pred = d["prediction"][nv["cmbB"]["namespaces"][0]]
    assert (pred["pci"], pred["map_type"]) == (nv["cmbB"]["bdf"], "bus_addr")


def test_p2p_test_refused_across_root_ports(target, capsys):
    nv = target["dev"]
    rc, stdout, stderr = nvmet_p2p(capsys, "p2p-test", nv["cmbA"]["bdf"], nv["plain"]["namespaces"][0],
                                   "--size", "1M", "--offset", str(128 << 20), "--repeat", "1",
                                   "--allow-write", "--json")
    assert rc == 5, stdout + stderr           # exit status 5: no p2p (nvmet_p2p.exits)
    d = json.loads(stdout)
    assert d["verdict"] == "refused" and d["refusal"]["errname"] == "EINVAL"
    assert d["refusal"]["device"] == nv["plain"]["namespaces"][0]
    # refused from the distance rules before any I/O (issue 19.12: I/O the kernel refuses
    # ended in controller resets): nothing mapped, seeded or transferred
    assert d["refusal"]["before_io"] and d["transfers"] == []
    expl = d["refusal"]["explanation"]
    assert nv["plain"]["bdf"] in expl and nv["cmbA"]["bdf"] in expl
    assert d["prediction"][nv["plain"]["namespaces"][0]]["map_type"] == "not_supported"
    assert "refused before any I/O" in expl and "whitelist" in expl


def test_pool_sampler_sees_a_real_allocation(target):
    """The runtime signal itself, on the real kernel: a userspace p2pmem mapping takes pages
    from the pool and the sampler sees ``available`` drop by exactly that much, then recover."""
    import mmap
    import time

    from nvmet_p2p.observe.evidence import PoolSampler
    bdf = target["dev"]["cmbA"]["bdf"]
    s = PoolSampler([bdf], interval=0.05).start()
    time.sleep(0.2)
    fd = os.open(f"/sys/bus/pci/devices/{bdf}/p2pmem/allocate", os.O_RDWR)
    try:
        m = mmap.mmap(fd, 2 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        time.sleep(0.3)
        m.close()
    finally:
        os.close(fd)
    time.sleep(0.2)
    st = s.stop()[bdf]
    assert st.moved and st.max_in_use == 2 << 20 and st.last == st.first == st.maximum, st.to_dict()
