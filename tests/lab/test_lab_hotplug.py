"""What the real kernel does when a p2pmem provider or a backing NVMe is hot-removed and
hot-added while a host is connected and I/O runs, and what `nvmet-p2p watch` and the boot-time
restore make of it (topology `hotplug`: native PCIe hotplug, pciehp acknowledges every unplug,
QEMU reports DEVICE_DELETED; tools/lab/README.md).

The host is the lab guest itself over nvme-tcp loopback (10.77.0.1:4420): nvmet-tcp never
uses p2pmem in its data path, so these tests observe the configuration side of a provider
removal (enable, p2pmem, errnos, log lines) and the I/O side of a backing-drive removal, not
p2p DMA (which needs a PCI RDMA NIC). udevd runs for these tests (the lab runs none), so the
paths are /dev/disk/by-id links and `watch` listens to udev events, as on a real target.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time

import pytest

import hotplugutil as hu
from hotplugutil import hotplug
from labutil import Dmesg, devmap

pytestmark = [pytest.mark.lab, pytest.mark.topology("hotplug")]
SERIALS = ("cmbA", "cmbB", "plainS", "plain")
RESULTS = os.path.join(os.environ.get("NVMET_P2P_LAB_RESULTS", "/tmp"), "hotplug")


@pytest.fixture(scope="module")
def lab():
    dm = devmap()
    if dm is None:
        pytest.skip("lab only")
    os.makedirs(RESULTS, exist_ok=True)
    assert hotplug.start_udev(), "no systemd-udevd in the lab's userspace (bash tools/lab/setup installs udev)"
    for m in ("nvmet", "nvmet-tcp", "nvme-tcp"):
        hu.run("modprobe", m)
    yield dm
    hu.disconnect()
    hu.ensure_present(SERIALS)
    hotplug.stop_udev()


@pytest.fixture
def target(lab, tmp_path):
    """A fresh state directory and config file; afterwards: host disconnected, target cleared,
    every device present again."""
    t = {"sd": str(tmp_path / "state"), "cfg": str(tmp_path / "config.json"), "tmp": tmp_path}
    yield t
    hu.clear_target(t["sd"])
    hu.ensure_present(SERIALS)


def bdf(serial: str) -> str:
    return hotplug.controller(serial)["bdf"]


def ns_dev(serial: str) -> str:
    return hotplug.controller(serial)["namespaces"][0]


def restore(t, namespaces, *extra, check=True):
    with open(t["cfg"], "w") as f:
        json.dump(hu.config(namespaces), f)
    p = hu.run(*hu.nvmet_p2p(), "restore", t["cfg"], "--state-dir", t["sd"], *extra, check=False)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def kernel_lines(d: Dmesg, *words) -> list[str]:
    return [ln for ln in d.since() if any(w in ln for w in words)]


# ---------------------------------------------------------------------------------------------
# what the kernel does
# ---------------------------------------------------------------------------------------------

def test_provider_removed_namespace_stays_enabled_with_the_dead_bdf(target):
    a, b = bdf("cmbA"), bdf("cmbB")
    restore(target, [(1, hu.byid(ns_dev("plainS")), a), (2, hu.byid(ns_dev("cmbB")), b)])
    hu.connect()
    disks = hu.host_disks()
    fio1 = hu.Fio(disks[1], f"{RESULTS}/provider-fio1.json", runtime=600)
    d = Dmesg()
    t0 = time.monotonic()
    r = hotplug.remove("cmbA")
    hotplug.wait_gone("cmbA")
    assert r["ok"] and not os.path.exists(f"/sys/bus/pci/devices/{a}")
    assert any("pciehp" in ln and "Button press: will power off in 5 sec" in ln for ln in d.since())
    # the kernel keeps the namespace enabled, still naming the removed provider, and says nothing
    assert hu.ns_attr(1, "enable") == "1" and hu.ns_attr(1, "p2pmem") == a
    assert kernel_lines(d, "nvmet", "p2pdma", "p2pmem") == []
    time.sleep(2)
    job = fio1.result(interrupt=True)
    assert job["error"] == 0 and job["read"]["io_bytes"] > 0 and job["write"]["io_bytes"] > 0, \
        "I/O through nvmet-tcp kept flowing while the provider went away"
    # with the provider absent, disable -> enable with the stale value is accepted ...
    assert hu.write(f"{hu.NVMET}/subsystems/{hu.NQN}/namespaces/1/enable", "0") is None
    assert hu.write(f"{hu.NVMET}/subsystems/{hu.NQN}/namespaces/1/enable", "1") is None
    # ... but writing the absent BDF is ENODEV
    d = Dmesg()
    ns = f"{hu.NVMET}/subsystems/{hu.NQN}/namespaces/1"
    assert hu.write(f"{ns}/enable", "0") is None
    assert hu.write(f"{ns}/p2pmem", a) == errno.ENODEV
    assert any("No such PCI device" in ln for ln in d.since()), d.since()
    assert hu.write(f"{ns}/enable", "1") is None and hu.ns_attr(1, "p2pmem") == a
    # back: the same BDF, a new pci_dev; p2pmem reads right but cannot be rewritten while enabled
    added = hotplug.add("cmbA")
    assert added["guest"]["bdf"] == a
    assert hu.read(f"/sys/bus/pci/devices/{a}/p2pmem/published") == "1"
    assert hu.ns_attr(1, "p2pmem") == a
    assert hu.write(f"{ns}/p2pmem", a) == errno.EBUSY
    assert [hu.write(f"{ns}/enable", "0"), hu.write(f"{ns}/p2pmem", a), hu.write(f"{ns}/enable", "1")] == \
        [None, None, None]
    print(f"\nprovider removal: DEVICE_DELETED after {r['seconds']} s, guest bound it again "
          f"{added['guest']['seconds']} s after device_add; total {time.monotonic() - t0:.1f} s")


def test_backing_removed_namespace_stays_enabled_and_every_io_fails(target):
    old = ns_dev("plainS")
    link = hu.byid(old)
    restore(target, [(1, link, "0"), (2, hu.byid(ns_dev("cmbB")), "0")])
    hu.connect()
    disks = hu.host_disks()
    fio2 = hu.Fio(disks[2], f"{RESULTS}/backing-fio2.json", runtime=600)
    d = Dmesg()
    hotplug.remove("plainS")
    hotplug.wait_gone("plainS")
    # nvmet is not told: the namespace stays enabled on the block device it holds, no nvmet line
    assert hu.ns_attr(1, "enable") == "1" and hu.ns_attr(1, "device_path") == link
    assert kernel_lines(d, "nvmet") == [], kernel_lines(d, "nvmet")
    d = Dmesg()
    dd = subprocess.run(["dd", f"if={disks[1]}", "of=/dev/null", "bs=4096", "count=1", "skip=4097",
                         "iflag=direct"], capture_output=True, text=True, timeout=120)
    assert dd.returncode != 0 and "Input/output error" in dd.stderr, dd.stderr
    assert any("I/O Error" in ln for ln in d.since()), d.since()       # the host's nvme driver
    assert os.path.exists(disks[1]), "no AEN: the host still lists the namespace"
    hotplug.add("plainS")
    new = ns_dev("plainS")
    assert new != old, "nvmet still holds the old block device: the drive comes back under a new name"
    assert os.path.realpath(link) == new                     # udev moved the by-id link
    ns = f"{hu.NVMET}/subsystems/{hu.NQN}/namespaces/1"
    # the path string did not change (by-id): disable + enable reopens it
    assert [hu.write(f"{ns}/enable", "0"), hu.write(f"{ns}/enable", "1")] == [None, None]
    hu.wait_host_disk(1)
    dd = subprocess.run(["dd", f"if={hu.host_disks()[1]}", "of=/dev/null", "bs=4096", "count=1",
                         "skip=4097", "iflag=direct"], capture_output=True, text=True, timeout=120)
    assert dd.returncode == 0, dd.stderr
    job = fio2.result(interrupt=True)
    assert job["error"] == 0 and job["read"]["io_bytes"] > 0, "the other namespace kept working"


# ---------------------------------------------------------------------------------------------
# watch --policy reconcile: nothing lost
# ---------------------------------------------------------------------------------------------

def _host_ctrl_state():
    c = hu.host_controller()
    return c, hu.read(f"/sys/class/nvme/{c}/cntlid"), hu.read(f"/sys/class/nvme/{c}/state")


def test_watch_reconcile_integrity_passes_and_untouched_namespaces_keep_their_connection(target):
    a, b = bdf("cmbA"), bdf("cmbB")
    restore(target, [(1, hu.byid(ns_dev("plainS")), a), (2, hu.byid(ns_dev("cmbB")), b),
                     (3, hu.byid(ns_dev("plain")), "0")])
    hu.connect()
    disks = hu.host_disks()
    ctrl_before = _host_ctrl_state()
    log = f"{RESULTS}/watch-reconcile.log"
    w = hu.Watch(log, target["cfg"], "--policy", "reconcile", "--state-dir", target["sd"])
    untouched = {n: hu.Fio(disks[n], f"{RESULTS}/untouched-fio{n}.json", runtime=900) for n in (2, 3)}
    d = Dmesg()
    try:
        for serial, lost, back in (("cmbA", "provider-lost", "provider-back"),
                                   ("plainS", "backing-lost", "backing-back")):
            out = f"{RESULTS}/integrity-{serial}"
            cycle = f"{hu.CHECKOUT}/tests/lab/hotplug_cycle.py {serial} {lost} {back} {log} 1"
            p = hu.run(*hu.nvmet_p2p(), "bench", "--device", hu.host_disks()[1], "--matrix", "integrity",
                       "--integrity-size", "16m", "--allow-write", "--no-plots", "--target-status", "none",
                       "--out", out, "--between-phases", f"python3 {cycle}", check=False, timeout=900)
            assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
            res = json.load(open(f"{out}/results.json"))
            assert res["integrity"]["verdict"] == "pass" and "integrity: pass" in p.stdout, p.stdout[-2000:]
            assert "between-phases command ran (exit 0)" in p.stdout, p.stdout[-2000:]
    finally:
        jobs = {n: f.result(interrupt=True) for n, f in untouched.items()}
        rc = w.stop()
    lines = [x for x in hu.log_lines(log) if "decision" in x]
    kinds = [(x["decision"], x["action"]) for x in lines]
    assert kinds == [("provider-lost", "reconciled"), ("provider-back", "reconciled"),
                     ("backing-lost", "reconciled"), ("backing-back", "reconciled")], kinds
    assert all(x["namespaces"] == f"{hu.NQN}/1" for x in lines)          # only nsid 1 was written
    assert b in lines[0]["changes"]                                       # re-placed on cmbB
    assert hu.ns_attr(1, "p2pmem") == a and hu.ns_attr(1, "enable") == "1"
    for n, job in jobs.items():
        assert job["error"] == 0 and job["read"]["io_bytes"] > 0, f"untouched nsid {n}: {job['error']}"
    assert _host_ctrl_state() == ctrl_before                              # same controller, live
    assert not [ln for ln in d.since() if ctrl_before[0] in ln and "creating" in ln], "no reconnect"
    assert rc == 0
    with open(f"{RESULTS}/watch-reconcile-summary.json", "w") as f:
        json.dump({"decisions": lines}, f, indent=1)
    for x in lines:
        print(f"\n{x['decision']}: reaction {x.get('reaction_ms')} ms, configfs {x.get('configfs_ms')} ms, "
              f"{x.get('writes')} writes")


def test_watch_report_only_logs_and_status_shows_the_lost_offload(target):
    a = bdf("cmbA")
    restore(target, [(1, hu.byid(ns_dev("plainS")), a)])
    log = f"{RESULTS}/watch-report.log"
    w = hu.Watch(log, target["cfg"], "--state-dir", target["sd"])
    try:
        hotplug.remove("cmbA")
        line = w.decision("provider-lost")
        assert line["action"] == "reported" and line["namespaces"] == f"{hu.NQN}/1"
        st = json.loads(hu.run(*hu.nvmet_p2p(), "status", "--json", "--state-dir", target["sd"]).stdout)
        ns1 = st["subsystems"][0]["namespaces"][0]
        assert [e["kind"] for e in ns1["degraded"]] == ["offload-lost"] and ns1["degraded"][0]["provider"] == a
        text = hu.run(*hu.nvmet_p2p(), "status", "--state-dir", target["sd"]).stdout
        assert "nsid 1: OFFLOAD LOST since" in text
        hotplug.add("cmbA")
        line = w.decision("provider-back")
        assert line["action"] == "reported"
        assert hu.ns_attr(1, "p2pmem") == a                 # nothing written in report mode
    finally:
        w.stop()


# ---------------------------------------------------------------------------------------------
# boot: the unit's restore before the nvme driver bound the devices
# ---------------------------------------------------------------------------------------------

def _unit_exec(t) -> tuple[list[str], dict]:
    udir = t["tmp"] / "units"
    hu.run(*hu.nvmet_p2p(), "install-units", "--dir", str(udir), "--save-file", t["cfg"],
           "--state-dir", t["sd"])
    text = (udir / "nvmet-p2p.service").read_text()
    env = dict(x.split("=", 1)[1].split("=", 1) for x in text.splitlines() if x.startswith("Environment="))
    cmd = next(x for x in text.splitlines() if x.startswith("ExecStart="))[len("ExecStart="):]
    argv = [env.get(a[2:-1], a) if a.startswith("${") else a for a in cmd.split()]
    return argv, env


def test_boot_restore_waits_for_the_nvme_driver_and_exports_everything(target):
    a, b = bdf("cmbA"), bdf("cmbB")
    nss = [(1, hu.byid(ns_dev("plainS")), a), (2, hu.byid(ns_dev("cmbB")), b), (3, hu.byid(ns_dev("plain")), "0")]
    with open(target["cfg"], "w") as f:
        json.dump(hu.config(nss), f)
    argv, env = _unit_exec(target)
    assert argv[1:4] == ["restore", target["cfg"], "--wait-devices"] and argv[4] == env["NVMET_P2P_WAIT_DEVICES"]
    hu.run("modprobe", "-r", "nvme")
    assert not os.path.exists("/sys/bus/pci/drivers/nvme") and not os.path.exists(nss[0][1])
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    time.sleep(5)
    assert proc.poll() is None, "restore must still be waiting: " + proc.stderr.read()
    hu.run("modprobe", "nvme")
    out, err = proc.communicate(timeout=300)
    took = time.monotonic() - t0
    assert proc.returncode == 0, out + err
    assert "waiting up to" in err and "every namespace exported" in out
    for nsid, _p, p2p in nss:
        assert hu.ns_attr(nsid, "enable") == "1" and hu.ns_attr(nsid, "p2pmem") == p2p
    assert os.path.islink(f"{hu.NVMET}/ports/7/subsystems/{hu.NQN}")
    hu.connect()
    assert sorted(hu.host_disks()) == [1, 2, 3]
    print(f"\nboot restore: started before nvme was loaded, finished {took:.1f} s later")


def test_boot_restore_partial_exits_4_and_watch_completes_it(target):
    a = bdf("cmbA")
    nss = [(1, hu.byid(ns_dev("plainS")), a), (2, hu.byid(ns_dev("cmbB")), "0")]
    hotplug.remove("plainS")
    hotplug.wait_gone("plainS")
    p = restore(target, nss, "--wait-devices", "3", check=False)
    assert p.returncode == 4, p.stdout + p.stderr
    assert f"missing block device {nss[0][1]}" in p.stderr and "PARTIAL RESTORE: 1 of" in p.stderr
    assert hu.ns_attr(1, "enable") == "0" and hu.ns_attr(1, "device_path") == nss[0][1]
    assert hu.ns_attr(2, "enable") == "1"
    st = json.loads(hu.run(*hu.nvmet_p2p(), "status", "--json", "--state-dir", target["sd"]).stdout)
    assert [e["kind"] for e in st["subsystems"][0]["namespaces"][0]["degraded"]] == ["held-back"]
    w = hu.Watch(f"{RESULTS}/watch-partial.log", target["cfg"], "--policy", "reconcile",
                 "--state-dir", target["sd"])
    try:
        hotplug.add("plainS")
        line = w.decision("backing-back")
        assert line["action"] == "reconciled" and line["namespaces"] == f"{hu.NQN}/1"
    finally:
        w.stop()
    assert hu.ns_attr(1, "enable") == "1" and hu.ns_attr(1, "p2pmem") == a
    st = json.loads(hu.run(*hu.nvmet_p2p(), "status", "--json", "--state-dir", target["sd"]).stdout)
    assert st["subsystems"][0]["namespaces"][0]["degraded"] == []
