"""Hotplug with a host whose data really goes to p2p memory (topology ``hotplug-p2p``: native
PCIe hotplug, the lab's emulated RDMA NIC rxe_p2p as the p2p client; tools/lab/README.md).

What `status` and `watch` say when a p2pmem provider is hot-removed and added while a host is
connected over RDMA, checked against the kernel: the ``using p2pmem`` lines, the pools'
``available``, and -- for the rewrite policies -- what the host sees while fio runs *during*
the hotplug (its errors, its I/O per half second, its block device going and coming back).

Everything measured here runs under QEMU TCG with the emulated NIC (its DMA is CPU copies):
times and I/O rates are emulation numbers. Results: $NVMET_P2P_LAB_RESULTS/hotplug-p2p/.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
import time

import pytest

import hotplugutil as hu
from hotplugutil import hotplug
from labutil import Dmesg, connect_rdma, devmap, disconnect_all, fabric_ctrls

pytestmark = [pytest.mark.lab, pytest.mark.topology("hotplug-p2p")]
NQN = "nqn.2026-12.io.nvmet-p2p:hp2p"
NEAR, FAR = "10.79.0.1", "10.80.0.1"
H1 = "nqn.2014-08.org.nvmexpress:uuid:11111111-1111-4111-8111-111111111111"
H2 = "nqn.2014-08.org.nvmexpress:uuid:22222222-2222-4222-8222-222222222222"
SERIALS = ("cmbA", "cmbB", "plainS")
RESULTS = os.path.join(os.environ.get("NVMET_P2P_LAB_RESULTS", "/tmp"), "hotplug-p2p")
EMULATED = "QEMU TCG, the lab's emulated RDMA NIC (rxe_p2p: CPU copies): emulation numbers"


@pytest.fixture(scope="module")
def lab():
    dm = devmap()
    if dm is None:
        pytest.skip("lab only (tools/lab/run --topology hotplug-p2p)")
    if not dm.get("rxe_p2p"):
        pytest.skip(f"topology {dm['topology']} has no rxe_p2p NIC")
    os.makedirs(RESULTS, exist_ok=True)
    assert hotplug.start_udev(), "no systemd-udevd in the lab's userspace (bash tools/lab/setup installs udev)"
    for m in ("nvmet", "nvmet-rdma", "nvme-rdma"):
        hu.run("modprobe", m)
    yield dm
    disconnect_all()
    hu.ensure_present(SERIALS)
    hotplug.stop_udev()


@pytest.fixture
def target(lab, tmp_path):
    t = {"sd": str(tmp_path / "state"), "cfg": str(tmp_path / "config.json"), "tmp": tmp_path,
         "A": bdf("cmbA"), "B": bdf("cmbB")}
    yield t
    disconnect_all()
    hu.run(*hu.nvmet_p2p(), "clear", "--state-dir", t["sd"], check=False)
    hu.ensure_present(SERIALS)


def bdf(serial: str) -> str:
    return hotplug.controller(serial)["bdf"]


def ns_dev(serial: str) -> str:
    return hotplug.controller(serial)["namespaces"][0]


def restore(t, namespaces) -> None:
    """nvmetcli-format state: namespaces (nsid, device, p2pmem), RDMA ports 1 (nicnear) and 2
    (nicfar), in-capsule data 0 (every write goes through p2pmem too)."""
    doc = {"hosts": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": [
        {"nsid": i, "enable": 1, "device": {"path": p}, "p2pmem": m} for i, p, m in namespaces]}],
        "ports": [{"portid": pid, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": ip, "trsvcid": "4420"},
                   "param": {"inline_data_size": "0"}, "subsystems": [NQN]}
                  for pid, ip in ((1, NEAR), (2, FAR))]}
    with open(t["cfg"], "w") as f:
        json.dump(doc, f)
    hu.run(*hu.nvmet_p2p(), "restore", t["cfg"], "--state-dir", t["sd"])


def connect(traddr=NEAR, hostnqn=H1, nsids=1):
    return connect_rdma(traddr, NQN, nsids=nsids, hostnqn=hostnqn, hostid=hostnqn.rsplit(":", 1)[1])


def status(t, *extra) -> dict:
    p = hu.run(*hu.nvmet_p2p(), "status", "--json", "--state-dir", t["sd"], *extra, timeout=600)
    return json.loads(p.stdout)


def status_text(t) -> str:
    return hu.run(*hu.nvmet_p2p(), "status", "--state-dir", t["sd"], timeout=600).stdout


def status_watch_json_io(t) -> dict:
    """The first document of ``status --watch 1 --json --io`` (then Ctrl-C)."""
    p = subprocess.Popen(hu.nvmet_p2p() + ["status", "--watch", "1", "--json", "--io", "--state-dir", t["sd"]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=120)
    return json.loads(line)


def ns_row(doc: dict, nsid: int) -> dict:
    (sub,) = [s for s in doc["subsystems"] if s["nqn"] == NQN]
    return next(n for n in sub["namespaces"] if n["nsid"] == nsid)


def verdicts(doc: dict, nsid: int) -> dict[int, dict]:
    return {v["cntlid"]: v for v in ns_row(doc, nsid)["verdicts"]}


def pool_moves(provider: str, dev: str, seconds: int = 4) -> tuple[int, int]:
    """(min, max) of the provider's p2pmem/available while fio reads 128k from ``dev``."""
    vals: list[int] = []
    fio = subprocess.Popen(["fio", "--name=pool", f"--filename={dev}", "--ioengine=libaio", "--direct=1",
                            "--rw=randread", "--bs=128k", "--iodepth=8", "--size=16m", "--time_based",
                            f"--runtime={seconds}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while fio.poll() is None:
        v = hu.read(f"/sys/bus/pci/devices/{provider}/p2pmem/available")
        if v.isdigit():
            vals.append(int(v))
        time.sleep(0.02)
    assert vals, f"no reading of {provider}'s pool"
    return min(vals), max(vals)


def save(name: str, doc) -> None:
    with open(os.path.join(RESULTS, name), "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc, indent=1))


def agree(doc: dict, nsid: int) -> None:
    """A namespace with an OFFLOAD LOST line has no active verdict."""
    n = ns_row(doc, nsid)
    if any(e["kind"] == "offload-lost" for e in n["degraded"]):
        assert not [v for v in n["verdicts"] if v["verdict"] == "offload active"], n


# ---------------------------------------------------------------------------------------------
# status across a removal and a return, no watcher (issue 20, item 1)
# ---------------------------------------------------------------------------------------------

def test_status_never_calls_a_removed_or_replaced_provider_active(target):
    a = target["A"]
    restore(target, [(1, hu.byid(ns_dev("plainS")), a)])
    c = connect()
    st = status(target)
    (v,) = verdicts(st, 1).values()
    assert v["verdict"] == "offload active" and v["port"] == 1 and v["nic"] == "rxp0", v
    lo, hi = pool_moves(a, c.namespaces[1])
    assert lo < hi, "the pool moves while the host reads: the data path uses p2pmem"
    d = Dmesg()
    hotplug.remove("cmbA")
    hotplug.wait_gone("cmbA")
    for name, doc in (("removed", status(target)), ("removed-watch-io", status_watch_json_io(target))):
        save(f"status-{name}.json", doc)
        assert {x["reason"] for x in verdicts(doc, 1).values()} == {"provider_removed"}, name
        assert [e["reason"] for e in ns_row(doc, 1)["degraded"]] == ["provider_removed"], name
        agree(doc, 1)
    text = status_text(target)
    save("status-removed.txt", text)
    assert "nsid 1: OFFLOAD LOST" in text and "offload active" not in text
    # a host connecting now: the kernel maps the removed device (the namespace holds it)
    c.disconnect()
    c = connect()
    assert any(f"using p2pmem on {a} for nsid 1" in ln for ln in d.since()), d.since()
    doc = status(target)
    assert verdicts(doc, 1)[max(verdicts(doc, 1))]["reason"] == "provider_removed"
    # back, no rewrite: a new connection logs the mapping again, after the new device's line
    d = Dmesg()
    hotplug.add("cmbA")
    c.disconnect()
    c = connect()
    lines = d.since()
    i_added = max(i for i, ln in enumerate(lines) if f"{a}: added peer-to-peer DMA memory" in ln)
    assert any(f"using p2pmem on {a} for nsid 1" in ln for ln in lines[i_added:]), lines
    lo, hi = pool_moves(a, c.namespaces[1])
    save("pool-after-return.json", {"min": lo, "max": hi, "label": EMULATED})
    assert lo == hi, "the namespace holds the removed device: the new pool never moves"
    doc = status(target)
    save("status-returned.json", doc)
    newest = verdicts(doc, 1)[max(verdicts(doc, 1))]
    assert newest["reason"] == "provider_replaced", newest            # was: offload active
    assert [e["reason"] for e in ns_row(doc, 1)["degraded"]] == ["provider_replaced"]
    agree(doc, 1)
    print(f"\nstatus across the cycle: removed -> provider_removed; back without a rewrite -> "
          f"provider_replaced (new pool {lo}..{hi}: never moved); {EMULATED}")


def test_the_controller_the_kernel_refused_gets_its_port_and_reason(target):
    """A namespace exported through both ports, a host through each: without nvmet debugfs
    the far controller's port comes from the kernel's own refusal line."""
    restore(target, [(1, hu.byid(ns_dev("plainS")), target["A"])])
    connect(NEAR, H1)
    connect(FAR, H2)
    doc = status(target)
    save("status-two-ports.json", doc)
    by_host = {v["hostnqn"]: v for v in ns_row(doc, 1)["verdicts"]}
    near, far = by_host[H1], by_host[H2]
    assert near["verdict"] == "offload active" and near["port"] == 1
    assert far["reason"] == "provider_unreachable_from_nic", far    # was no_mapping_logged
    assert far["port"] == 2 and far["nic"] == "rxp1" and "refusal" in far["port_source"]


# ---------------------------------------------------------------------------------------------
# watch keeps it true (items 1 and 2)
# ---------------------------------------------------------------------------------------------

def test_watch_reconcile_keeps_status_true_through_the_cycle(target):
    a, b = target["A"], target["B"]
    restore(target, [(1, hu.byid(ns_dev("plainS")), a)])
    c = connect()
    w = hu.Watch(f"{RESULTS}/watch-cycle.log", target["cfg"], "--policy", "reconcile", "--state-dir", target["sd"])
    try:
        hotplug.remove("cmbA")
        lost = w.decision("provider-lost", timeout=120)
        assert lost["action"] == "reconciled" and b in lost["changes"]
        hu.wait_host_disk(1, True, 60, nqn=NQN)
        doc = status(target)
        v = verdicts(doc, 1)[c_cntlid(c)]
        assert v["verdict"] == "offload active" and v["provider"] == b, v    # the late mapping
        lo, hi = pool_moves(b, c.namespaces[1])
        assert lo < hi, "re-placed: cmbB's pool moves"
        hotplug.add("cmbA")
        back = w.decision("provider-back", timeout=120)
        assert back["action"] == "reconciled"
        hu.wait_host_disk(1, True, 60, nqn=NQN)
        doc = status(target)
        save("status-after-cycle.json", doc)
        v = verdicts(doc, 1)[c_cntlid(c)]
        assert v["verdict"] == "offload active" and v["provider"] == a, v
        assert ns_row(doc, 1)["degraded"] == []
        lo, hi = pool_moves(a, c.namespaces[1])
        assert lo < hi, "rewritten: the new cmbA's pool moves"
    finally:
        w.stop()
    for x in (lost, back):
        print(f"\n{x['decision']}: reaction {x.get('reaction_ms')} ms (first uevent seq {x.get('first_seq')}; "
              f"udev {x.get('uevent_ms')} ms, burst {x.get('burst_ms')} ms, debounce {x.get('debounce_ms')} ms, "
              f"configfs {x.get('configfs_ms')} ms); {EMULATED}")


def c_cntlid(c) -> int:
    return int(hu.read(f"/sys/class/nvme/{c.ctrl}/cntlid"))


PROFILE = """version: 1
ports:
  - {{id: 1, transport: rdma, rdma_device: rxp0, inline_data_size: 0}}
subsystems:
  - nqn: {nqn}
    allow_any_host: true
    ports: [1]
    namespaces:
      - {{nsid: 1, select: {{serial: plainS}}}}
"""


def test_watch_profile_replaces_on_the_machine_after_the_burst(target):
    a, b = target["A"], target["B"]
    prof = target["tmp"] / "profile.yaml"
    prof.write_text(PROFILE.format(nqn=NQN))
    hu.run(*hu.nvmet_p2p(), "apply", "--profile", str(prof), "--state-dir", target["sd"])
    assert hu.read(f"{hu.NVMET}/subsystems/{NQN}/namespaces/1/p2pmem") == a    # the lower BDF of the tie
    w = hu.Watch(f"{RESULTS}/watch-profile.log", "--profile", str(prof), "--policy", "reconcile",
                 "--state-dir", target["sd"])
    try:
        hotplug.remove("cmbA")
        line = w.decision("provider-lost", timeout=180)
    finally:
        w.stop()
    save("watch-profile-line.json", line)
    assert line["action"] == "reconciled" and f"p2pmem {b}" in line["changes"], line   # was: p2pmem <cmbA>
    assert hu.read(f"{hu.NVMET}/subsystems/{NQN}/namespaces/1/p2pmem") == b
    doc = status(target)
    assert [e["kind"] for e in ns_row(doc, 1)["degraded"]] == ["re-placed"]


# ---------------------------------------------------------------------------------------------
# the rewrite policies, with fio running during the hotplug (item 3)
# ---------------------------------------------------------------------------------------------

class HostView(threading.Thread):
    """What the host sees of one namespace every 50 ms: its block device (name, dev number)
    or none; keeps the changes with their time."""

    def __init__(self, nsid: int):
        super().__init__(daemon=True)
        self.nsid = nsid
        self.changes: list[tuple[float, str | None, str | None]] = []
        self.halt = False

    def run(self):
        last = ("?", "?")
        while not self.halt:
            d = hu.host_disks(NQN).get(self.nsid)
            name = os.path.basename(d) if d else None
            cur = (name, hu.read(f"/sys/block/{name}/dev") if name else None)
            if cur != last:
                self.changes.append((round(time.monotonic(), 3), *cur))
                last = cur
            time.sleep(0.05)

    def gone_intervals(self) -> list[tuple[float, float | None]]:
        out, since = [], None
        for t, name, _dev in self.changes:
            if name is None and since is None:
                since = t
            elif name is not None and since is not None:
                out.append((since, t))
                since = None
        if since is not None:
            out.append((since, None))
        return out


class FioDuring:
    """fio reading and writing the host's disk in the background, with its I/O per half second
    logged; stopped with SIGINT (fio reports), killed if its I/O never completes."""

    def __init__(self, dev: str, name: str):
        self.prefix = os.path.join(RESULTS, name)
        self.json = self.prefix + ".json"
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["fio", f"--name={name}", f"--filename={dev}", "--ioengine=libaio", "--direct=1", "--rw=randrw",
             "--bs=16k", "--iodepth=4", "--size=32m", "--time_based", "--runtime=3600",
             "--continue_on_error=all", "--log_avg_msec=500", f"--write_iops_log={self.prefix}",
             "--output-format=json", f"--output={self.json}"],
            stdout=subprocess.DEVNULL, stderr=open(self.prefix + ".err", "w"))

    def stop(self) -> dict:
        out = {"killed": False}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                out["killed"] = True          # its I/O never completed: a handle that stayed dead
        try:
            with open(self.json) as f:
                text = f.read()
            j = json.loads(text[text.index("{"):])["jobs"][0]
            out.update(error=j["error"], total_err=j.get("total_err"), read_ios=j["read"]["total_ios"],
                       write_ios=j["write"]["total_ios"])
        except (OSError, ValueError, KeyError) as exc:
            out["unparsed"] = str(exc)
        out["stalls"] = self.stalls()
        with open(self.prefix + ".err") as f:
            out["stderr"] = f.read()[-600:]
        return out

    def stalls(self) -> list[tuple[float, float]]:
        """Half-second periods with no I/O completed (from fio's own iops log), as
        (seconds after fio started, length)."""
        per: dict[int, int] = {}
        for path in (self.prefix + "_iops.1.log",):
            if not os.path.exists(path):
                continue
            with open(path) as f:
                for ln in f:
                    parts = [x.strip() for x in ln.split(",")]
                    if len(parts) >= 2 and parts[0].isdigit():
                        per[int(parts[0]) // 500] = per.get(int(parts[0]) // 500, 0) + int(parts[1])
        if not per:
            return []
        out, start = [], None
        for slot in range(min(per), max(per) + 1):
            if per.get(slot, 0) == 0 and start is None:
                start = slot
            elif per.get(slot, 0) and start is not None:
                out.append((start / 2, (slot - start) / 2))
                start = None
        if start is not None:
            out.append((start / 2, None))
        return out


@pytest.mark.parametrize("policy", ["now", "idle", "operator"])
def test_rewrite_policy_with_io_in_flight_during_the_hotplug(target, policy):
    """fio runs on nsid 1 *while* its provider is removed and comes back; the watcher rewrites
    p2pmem at once (now), once the namespace is idle (idle: only after fio stops), or when the
    operator says so (operator). Recorded per policy: the host's errors, its I/O stalls, its
    block device going and coming back."""
    a = target["A"]
    restore(target, [(1, hu.byid(ns_dev("plainS")), a)])
    c = connect()
    view = HostView(1)
    view.start()
    w = hu.Watch(f"{RESULTS}/watch-{policy}.log", target["cfg"], "--policy", "reconcile", "--rewrite", policy,
                 "--idle-window", "2", "--state-dir", target["sd"])
    t0 = time.monotonic()
    fio = FioDuring(c.namespaces[1], f"fio-{policy}")
    res = {"policy": policy, "label": EMULATED}
    try:
        time.sleep(5)
        hotplug.remove("cmbA")
        res["lost"] = w.decision("provider-lost", timeout=120)
        time.sleep(8)
        if policy != "now":
            text = status_text(target)
            res["status_pending"] = [ln for ln in text.splitlines() if "REWRITE PENDING" in ln or "OFFLOAD LOST" in ln]
            assert any("nsid 1: REWRITE PENDING" in ln for ln in res["status_pending"]), text
        hotplug.add("cmbA")
        res["back"] = w.decision("provider-back", timeout=120)
        time.sleep(8)
        res["fio_running_during_hotplug"] = fio.proc.poll() is None
        t_stop = time.monotonic()
        res["fio"] = fio.stop()
        res["fio_stopped_at_s"] = round(t_stop - t0, 1)
        if policy == "idle":
            res["rewrite"] = w.decision("rewrite", timeout=120)
        elif policy == "operator":
            p = hu.run(*hu.nvmet_p2p(), "watch", "--rewrite-pending", "--state-dir", target["sd"], timeout=600)
            res["rewrite"] = [dict(kv.split("=", 1) for kv in shlex.split(ln))
                              for ln in p.stdout.splitlines() if "decision=rewrite" in ln]
            assert [x["action"] for x in res["rewrite"]] == ["reconciled"], p.stdout
        time.sleep(5)
    finally:
        w.stop()
        view.halt = True
        if fio.proc.poll() is None:
            fio.stop()
    res["host_disk_changes"] = [(round(t - t0, 2), n, d) for t, n, d in view.changes]
    res["host_disk_gone"] = [(round(s - t0, 2), round(e - t0, 2) if e else None) for s, e in view.gone_intervals()]
    save(f"rewrite-{policy}.json", res)
    gone_while_fio = [g for g in res["host_disk_gone"] if g[0] < res["fio_stopped_at_s"]]
    print(f"\n--rewrite {policy}: fio errors {res['fio'].get('total_err')} (error {res['fio'].get('error')}, "
          f"killed {res['fio']['killed']}), reads {res['fio'].get('read_ios')}, writes {res['fio'].get('write_ios')}, "
          f"I/O stalls (s after start, length) {res['fio']['stalls']}; host disk gone (s) {res['host_disk_gone']}; "
          f"fio stopped at {res['fio_stopped_at_s']} s; {EMULATED}")
    assert hu.read(f"{hu.NVMET}/subsystems/{NQN}/namespaces/1/p2pmem") == a
    assert hu.read(f"{hu.NVMET}/subsystems/{NQN}/namespaces/1/enable") == "1"
    if policy == "now":
        assert res["lost"]["action"] == "reconciled" and res["back"]["action"] == "reconciled"
        assert res["lost"]["rewrite"].startswith("now: hosts see")
        assert gone_while_fio, "each rewrite deletes the host's block device while fio runs"
    else:
        assert res["lost"]["action"] == "pending" and res["back"]["action"] == "pending"
        assert gone_while_fio == [], "held back: the host's device stays while its I/O runs"
        assert res["fio"].get("total_err") == 0 and not res["fio"]["killed"]
        # once done, the rewrite disables the namespace: whether the host deletes and re-creates
        # its device depends on when its rescan runs, before or after the enable (lab: idle did,
        # operator did not); res["host_disk_gone"] records which
    doc = status(target)
    save(f"status-after-{policy}.json", doc)
    assert {e["kind"] for e in ns_row(doc, 1)["degraded"]} == set(), ns_row(doc, 1)["degraded"]
    assert c.ctrl in fabric_ctrls(), "the host's controller stayed connected through every rewrite"
    assert verdicts(doc, 1)[c_cntlid(c)]["verdict"] == "offload active"
