"""Lab tier: P2P-aware multipath on the real kernel (topology ``multipath``).

Two switches on two root ports, each with a CMB NVMe, a plain NVMe and an e1000e carrying the
lab's rxe_p2p device (emulated DMA: CPU copies in the driver). The guest is the target and, over
RDMA to its own two addresses, the host (native NVMe multipath, one controller per port). The
tests check, against the kernel itself:

1. what nvmet's ANA configfs accepts (docs/multipath.md#what-nvmet-offers);
2. without ``multipath: p2p`` how the host's I/O splits across the two paths (iopolicy
   round-robin and numa), and that only the path beside the namespace's CMB offloads;
3. ``apply --profile`` with ``multipath: p2p`` on that live, connected target: the host sees
   the ANA states nvmet-p2p set, the kernel maps p2p memory exactly on the controllers the
   placement said, and fio's I/O on the multipath device goes down the optimized path only
   (per-path block statistics), with the pool of that path's provider in use and crc32c
   verify passing;
4. ``watch --policy reconcile`` across a failover: a NIC's address removed while fio runs, the
   states follow, the host's I/O goes on through the other path, verify passes.

Every number that depends on the emulated NIC or TCG timing is an emulation number.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time

import pytest
from mputil import NQN, attempt, cli, connect, heads, host_paths, io_split, read, sh, subsys_dir, write
from mputil import apply_profile as mp_apply_profile

from labutil import NVMET, Dmesg, PoolSampler, devmap, disconnect_all

pytestmark = [pytest.mark.lab, pytest.mark.topology("multipath")]

def mkdir(path: str) -> str:
    return attempt(os.mkdir, path)


def rmdir(path: str) -> str:
    return attempt(os.rmdir, path)


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    dm = devmap()
    if dm is None:
        pytest.skip("lab test: needs the QEMU lab (tools/lab/run)")
    nv, rd = dm["nvme"], dm["rdma"]
    for m in ("nvmet", "nvmet-rdma", "nvme-rdma", "nvme-fabrics"):
        sh("modprobe", m)
    work = tmp_path_factory.mktemp("multipath")
    os.environ["NVMET_P2P_STATE_DIR"] = str(work / "state")
    env = {"dm": dm, "work": work,
           "cmb": {"A": nv["cmbA"]["bdf"], "B": nv["cmbB"]["bdf"]},
           "nic": {"A": rd["rxpa"], "B": rd["rxpb"]},
           "ip": {"A": rd["rxpa"]["ip"], "B": rd["rxpb"]["ip"]}}
    yield env
    disconnect_all()
    cli("clear", "--all", "--yes", check=False)


def apply_profile(lab, multipath: bool) -> dict:
    return mp_apply_profile(lab["work"], multipath)


# -- 1. the kernel's ANA configfs -------------------------------------------------------------------

def test_01_what_nvmets_ana_configfs_accepts(lab):
    """docs/multipath.md#what-nvmet-offers, fact by fact, on a scratch port and subsystem."""
    port = f"{NVMET}/ports/9"
    sub = f"{NVMET}/subsystems/nqn.2026-12.io.nvmet-p2p.lab:anascratch"
    ns = f"{sub}/namespaces/1"
    assert mkdir(port) == "ok"
    try:
        g = f"{port}/ana_groups"
        assert sorted(os.listdir(g)) == ["1"] and read(f"{g}/1/ana_state") == "optimized"
        assert rmdir(f"{g}/1") == "EPERM"
        assert {n: mkdir(f"{g}/{n}") for n in ("0", "1", "129", "abc")} == \
            {"0": "EINVAL", "1": "EEXIST", "129": "EINVAL", "abc": "EINVAL"}
        assert mkdir(f"{g}/2") == "ok" and read(f"{g}/2/ana_state") == "inaccessible"
        for s in ("optimized", "non-optimized", "inaccessible", "persistent-loss", "change"):
            assert write(f"{g}/2/ana_state", s) == "ok" and read(f"{g}/2/ana_state") == s
        log = Dmesg()
        assert write(f"{g}/2/ana_state", "Optimized") == "EINVAL"
        assert any("nvmet: Invalid value 'Optimized' for ana_state" in ln for ln in log.since())
        assert mkdir(sub) == "ok" and mkdir(ns) == "ok"
        assert read(f"{ns}/ana_grpid") == "1"
        assert {v: write(f"{ns}/ana_grpid", v) for v in ("0", "129", "abc")} == \
            {"0": "EINVAL", "129": "EINVAL", "abc": "EINVAL"}
        # any id is accepted, with or without a directory on any port
        assert write(f"{ns}/ana_grpid", "7") == "ok" and read(f"{ns}/ana_grpid") == "7"
        # 128 passes the range check, then array_index_nospec(128, NVMET_MAX_ANAGRPS) is 0
        assert write(f"{ns}/ana_grpid", "128") == "ok"
        lab["grpid_128_reads"] = read(f"{ns}/ana_grpid")
        assert lab["grpid_128_reads"] == "0", "7.3 clamps 128 to 0 (ana.py avoids 128)"
        assert write(f"{ns}/device_path", lab["dm"]["nvme"]["driveA"]["namespaces"][0]) == "ok"
        assert write(f"{ns}/enable", "1") == "ok"
        assert write(f"{ns}/ana_grpid", "2") == "ok"           # writable while enabled
        assert rmdir(f"{g}/2") == "ok"                          # even with a namespace in it
        assert read(f"{ns}/ana_grpid") == "2"
        assert mkdir(f"{g}/2") == "ok"
        assert rmdir(port) == "ENOTEMPTY"
        assert rmdir(f"{g}/2") == "ok"
    finally:
        if os.path.isdir(ns):
            write(f"{ns}/enable", "0")
            rmdir(ns)
        if os.path.isdir(sub):
            rmdir(sub)
        for d in glob.glob(f"{port}/ana_groups/*"):
            if not d.endswith("/1"):
                rmdir(d)
        if os.path.isdir(port):
            rmdir(port)


# -- 2. without multipath: p2p ----------------------------------------------------------------------

def test_02_without_multipath_each_namespace_offloads_on_one_path_only(lab):
    """``multipath: off`` with ``when_none: best_effort``: each namespace is placed on the CMB
    beside its drive; the host connects through both NICs. The kernel checks the provider
    per controller: the line ``using p2pmem`` appears only for the controller through the NIC
    beside that CMB, and the other controller's refusal names its own NIC's PCI function."""
    out = apply_profile(lab, multipath=False)
    assert out["applied"]
    decisions = {d["nsid"]: d for d in out["placement"]["decisions"]}
    assert decisions[1]["p2pmem"] == lab["cmb"]["A"] and decisions[2]["p2pmem"] == lab["cmb"]["B"]
    assert out["placement"]["ana"] is None
    lab["predicted"] = {nsid: {p["port"]: p["offloads"] for p in d["paths"]}
                        for nsid, d in decisions.items()}
    assert lab["predicted"] == {1: {1: True, 2: False}, 2: {1: False, 2: True}}
    lines_a = connect(lab["ip"]["A"])
    lines_b = connect(lab["ip"]["B"])
    nic_a, nic_b = lab["nic"]["A"]["pci"], lab["nic"]["B"]["pci"]
    cmb_a, cmb_b = lab["cmb"]["A"], lab["cmb"]["B"]
    assert any(f"nvmet: using p2pmem on {cmb_a} for nsid 1" in ln for ln in lines_a), lines_a
    assert not any("using p2pmem" in ln and "nsid 2" in ln for ln in lines_a), lines_a
    assert any(f"{nic_a}: cannot be used for peer-to-peer DMA as the client and provider ({cmb_b})"
               in ln for ln in lines_a), lines_a
    assert any(f"nvmet: using p2pmem on {cmb_b} for nsid 2" in ln for ln in lines_b), lines_b
    assert any(f"{nic_b}: cannot be used for peer-to-peer DMA as the client and provider ({cmb_a})"
               in ln for ln in lines_b), lines_b
    # the lines of a controller come before its own "Created nvm controller" line
    created = [i for i, ln in enumerate(lines_a) if "nvmet: Created nvm controller" in ln]
    mapped = [i for i, ln in enumerate(lines_a) if "using p2pmem" in ln]
    assert created and mapped and max(mapped) < created[0]
    paths = host_paths()
    assert len(paths) == 4 and {p["ana_state"] for p in paths.values()} == {"optimized"}
    for name in paths:                         # hidden per-path disks: sysfs, no device node
        assert os.path.exists(f"/sys/block/{name}/stat") and not os.path.exists(f"/dev/{name}")
        assert read(f"/sys/block/{name}/hidden") == "1"


def test_03_without_multipath_the_hosts_io_splits_by_its_iopolicy(lab):
    sd = subsys_dir()
    assert read(f"{sd}/iopolicy") == "numa"          # the kernel's default (nvme_core.iopolicy)
    numa, _ = io_split(1, {})
    assert sum(numa.values()) > 0 and min(numa.values()) == 0, numa     # one path takes all
    assert write(f"{sd}/iopolicy", "round-robin") == "ok"
    rr, low = io_split(1, {"A": lab["cmb"]["A"]})
    share_a = rr[lab["ip"]["A"]] / sum(rr.values())
    assert 0.3 < share_a < 0.7, rr                    # both paths, about half each
    lab["split_without"] = {"numa": numa, "round-robin": rr}
    print(f"without multipath: p2p, nsid 1: numa {numa}, round-robin {rr} "
          f"(share through {lab['ip']['A']}: {share_a:.2f}; emulated NIC, TCG)")


# -- 3. with multipath: p2p -------------------------------------------------------------------------

def test_04_apply_multipath_on_the_connected_target_sets_the_ana_states(lab):
    log = Dmesg()
    out = apply_profile(lab, multipath=True)
    assert out["applied"]
    ana = out["placement"]["ana"]
    want = {}
    for g in ana["groups"]:
        for ref in g["namespaces"]:
            want[int(ref.rsplit("/", 1)[1])] = (g["grpid"], {int(p): s for p, s in g["ports"].items()})
    assert {n: w[1] for n, w in want.items()} == {1: {1: "optimized", 2: "non-optimized"},
                                                  2: {1: "non-optimized", 2: "optimized"}}
    # configfs holds what the plan said
    for nsid, (grpid, states) in want.items():
        assert read(f"{NVMET}/subsystems/{NQN}/namespaces/{nsid}/ana_grpid") == str(grpid)
        for pid, s in states.items():
            assert read(f"{NVMET}/ports/{pid}/ana_groups/{grpid}/ana_state") == s
    # no namespace was disabled or re-created: the change is ANA only
    assert not any("adding nsid" in ln or "disabl" in ln for ln in log.since())
    # the host sees the states (the ANA change notice made it re-read the log)
    port_ip = {1: lab["ip"]["A"], 2: lab["ip"]["B"]}
    deadline = time.monotonic() + 20
    while True:
        seen = {(p["nsid"], p["traddr"]): (p["ana_grpid"], p["ana_state"]) for p in host_paths().values()}
        expect = {(n, port_ip[pid]): (g, s) for n, (g, st) in want.items() for pid, s in st.items()}
        if seen == expect or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seen == expect


def test_05_io_goes_down_the_optimized_path_and_uses_its_providers_pool(lab):
    """round-robin, the policy that split the I/O in half without ANA states: now every byte
    of each namespace goes through the controller whose NIC has the p2p mapping."""
    assert read(f"{subsys_dir()}/iopolicy") == "round-robin"
    avail = {k: PoolSampler(b).read() for k, b in lab["cmb"].items()}
    for nsid, side, other in ((1, "A", "B"), (2, "B", "A")):
        split, low = io_split(nsid, lab["cmb"])
        assert split[lab["ip"][side]] > 0 and split[lab["ip"][other]] == 0, split
        assert low[side] < avail[side], f"{lab['cmb'][side]}'s pool never moved during fio"
        assert low[other] == avail[other], f"{lab['cmb'][other]}'s pool moved: {low}"
        print(f"with multipath: p2p, nsid {nsid}: sectors per path {split}; pool of "
              f"{lab['cmb'][side]} down to {low[side]} of {avail[side]} (emulated NIC, TCG)")


def _host_state(nsid: int, traddr: str) -> str | None:
    for p in host_paths().values():
        if p["nsid"] == nsid and p["traddr"] == traddr:
            return p["ana_state"]
    return None


def test_06_the_watcher_moves_the_hosts_io_when_a_nics_address_goes(lab):
    """``watch --policy reconcile`` while fio writes and verifies nsid 1 (optimized through
    nica): nica's address is removed, the watcher makes port 1's group non-optimized (never
    inaccessible), the host's I/O goes on through nicb with verify passing; the address back
    makes port 1 optimized again. Times from ``ip addr del`` (emulated NIC, TCG)."""
    from hotplugutil import Watch
    ip_a, dev_a = lab["ip"]["A"], lab["nic"]["A"]["netdev"]
    cidr_a = lab["nic"]["A"]["cidr"]
    grpid = read(f"{NVMET}/subsystems/{NQN}/namespaces/1/ana_grpid")
    assert read(f"{NVMET}/ports/1/ana_groups/{grpid}/ana_state") == "optimized"
    w = Watch(str(lab["work"] / "watch-ana.log"), "--policy", "reconcile",
              "--state-dir", os.environ["NVMET_P2P_STATE_DIR"])
    fio = subprocess.Popen(["fio", "--name=failover", f"--filename={heads()[1]}", "--direct=1",
                            "--ioengine=libaio", "--rw=write", "--bs=128k", "--iodepth=8",
                            "--size=128M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
                            "--output-format=json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    res = {"label": "emulated NIC (rxe_p2p), QEMU TCG"}
    try:
        time.sleep(2)
        assert fio.poll() is None, "fio ended before the failover: it must run across it"
        t0 = time.monotonic()
        sh("ip", "addr", "del", cidr_a, "dev", dev_a)
        line = w.decision("ana-states", timeout=120)
        res["watcher_line_s"] = round(time.monotonic() - t0, 2)
        assert line["action"] == "reconciled", line
        assert f"port 1 group {grpid}: optimized -> non-optimized" in line["changes"], line
        assert read(f"{NVMET}/ports/1/ana_groups/{grpid}/ana_state") == "non-optimized"
        assert "inaccessible" not in line["changes"]
        res["reaction_ms"], res["ana_ms"] = line.get("reaction_ms"), line.get("ana_ms")
        res["read_ms"] = line.get("read_ms")
        res["fio_running_at_line"] = fio.poll() is None
        out, err = fio.communicate(timeout=600)
        assert fio.returncode == 0, f"fio failed across the failover: {err[-1500:]}"
        job = json.loads(out[out.index("{"):])["jobs"][0]
        assert job["error"] == 0, job
        res["fio_errors"] = job["error"]
        res["fio_written_mib"] = round(job["write"]["io_bytes"] / 2**20, 1)
        t1 = time.monotonic()
        sh("ip", "addr", "add", cidr_a, "dev", dev_a)
        n = len(w.lines())
        back = w.wait_for(lambda d: d.get("decision") == "ana-states", 120, "ana-states after the "
                          "address came back", start=n)
        res["back_line_s"] = round(time.monotonic() - t1, 2)
        assert back["action"] == "reconciled", back
        assert f"port 1 group {grpid}: non-optimized -> optimized" in back["changes"], back
        assert read(f"{NVMET}/ports/1/ana_groups/{grpid}/ana_state") == "optimized"
    finally:
        if fio.poll() is None:
            fio.kill()
            fio.wait()
        if ip_a not in sh("ip", "-o", "addr", "show", "dev", dev_a).stdout:
            sh("ip", "addr", "add", cidr_a, "dev", dev_a, check=False)
        w.stop()
    # the host reconnects through nica (its reconnect timer) and sees the state again
    deadline = time.monotonic() + 90
    while _host_state(1, ip_a) != "optimized" and time.monotonic() < deadline:
        time.sleep(1)
    res["host_optimized_again_s"] = round(time.monotonic() - t1, 1)
    assert _host_state(1, ip_a) == "optimized", host_paths()
    results = os.path.join(os.environ.get("NVMET_P2P_LAB_RESULTS", str(lab["work"])), "multipath")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "failover.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(f"failover (nica's address removed with fio running): watcher line after "
          f"{res['watcher_line_s']} s (reaction_ms {res['reaction_ms']}, ana_ms {res['ana_ms']}), "
          f"fio errors {res['fio_errors']}, {res['fio_written_mib']} MiB written and verified "
          f"(still running when the states changed: {res['fio_running_at_line']}); "
          f"address back: line after {res['back_line_s']} s, host optimized again after "
          f"{res['host_optimized_again_s']} s ({res['label']})")


def test_99_group_128_leaves_a_phantom_in_the_ana_log(lab):
    """Why nvmet-p2p never uses group 128 (docs/multipath.md#what-nvmet-offers): creating
    and removing ``ana_groups/128`` counts group 0 up and group 128 down
    (``array_index_nospec(128, NVMET_MAX_ANAGRPS)`` is 0 in make_group, not in release), so
    the host's ANA log lists a group 128 that nothing holds. Run last: the phantom stays until
    nvmet is reloaded."""
    port = f"{NVMET}/ports/9"
    assert mkdir(port) == "ok"
    try:
        assert mkdir(f"{port}/ana_groups/128") == "ok"
        assert rmdir(f"{port}/ana_groups/128") == "ok"
    finally:
        rmdir(port)
    head = heads()[1]
    r = sh("nvme", "ana-log", head, "-o", "json")
    log = json.loads(r.stdout)
    groups = {int(d["grpid"]): d for d in log["ANA DESC LIST "] if "grpid" in d} \
        if "ANA DESC LIST " in log else {int(d["grpid"]): d for d in log.get("ANA DESC LIST", [])}
    assert 128 in groups, f"no phantom group 128 in {head}'s ANA log: {r.stdout[:1500]}"
    assert int(groups[128]["NSID Count"] if "NSID Count" in groups[128] else groups[128]["nnsids"]) == 0
