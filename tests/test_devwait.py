"""restore --wait-devices: what a saved configuration needs, waiting for it, and the partial
restore (nvmet_p2p.service.devwait, nvmet_p2p.commands.restore). The boot path against the real
kernel (nvme driver loaded after the restore started) is tests/lab/test_lab_hotplug.py."""

import json
import os

import fakenvmet
import pytest
from fakenvmet import FakeNvmet
from sysfsfixture import q35_lab

from nvmet_p2p import cli
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.nvmet.degraded import DegradedStore
from nvmet_p2p.service import devwait

NQN = "nqn.2026-12.io.lab:boot"
A, B = "0000:03:00.0", "0000:04:00.0"
BYID = "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_cmbB"


def doc(port_addr="10.77.0.1"):
    return {"hosts": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": [
        {"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme0n1"}, "p2pmem": A},
        {"nsid": 2, "enable": 1, "device": {"path": BYID}, "p2pmem": B},
        {"nsid": 3, "enable": 1, "device": {"path": "/dev/nvme2n1"}, "p2pmem": "0"},
        {"nsid": 4, "enable": 0, "device": {"path": "/dev/gone"}}]}],
        "ports": [{"portid": 1, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": port_addr,
                                          "trsvcid": "4420"}, "subsystems": [NQN]},
                  {"portid": 2, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "0.0.0.0",
                                          "trsvcid": "4421"}, "subsystems": [NQN]}]}


def test_needs_lists_devices_providers_and_addresses_of_enabled_objects():
    items = devwait.needs(statefile.parse(doc()))
    got = [(n.kind, n.what) for n in items]
    assert got == [("device", BYID), ("device", "/dev/nvme0n1"), ("device", "/dev/nvme2n1"),
                   ("provider", A), ("provider", B), ("address", "10.77.0.1")]   # no /dev/gone, no 0.0.0.0
    assert items[3].users == (f"namespace {NQN}/1",)
    assert items[5].users == ("port 1",)


def test_degrade_holds_back_exactly_what_is_missing():
    desired = statefile.parse(doc())
    missing = [n for n in devwait.needs(desired) if n.what in ("/dev/nvme0n1", B, "10.77.0.1")]
    d = devwait.degrade(desired, missing)
    ns = d.state.subsystems[NQN].namespaces
    assert ns[1].enable is False and "p2pmem" in ns[1].attrs          # provider A is there
    assert ns[2].enable is True and ns[2].attrs["p2pmem"] == "0"        # host memory, named
    assert ns[3].enable is True
    assert d.state.ports[1].subsystems == [] and d.state.ports[2].subsystems == [NQN]
    kinds = sorted((o, k) for o, k, _w, _f in d.held)
    assert kinds == [(f"namespace {NQN}/1", "held-back"), (f"namespace {NQN}/2", "offload-lost"),
                     ("port 1", "port-lost")]
    assert desired.subsystems[NQN].namespaces[1].enable is True         # the input is not changed
    held = devwait.degrade(desired, missing, without_provider="hold").state.subsystems[NQN].namespaces[2]
    assert held.enable is False and "p2pmem" not in held.attrs


def test_degrade_keeps_a_port_link_that_is_already_live():
    desired = statefile.parse(doc())
    missing = [n for n in devwait.needs(desired) if n.kind == "address"]
    live = statefile.parse(doc())
    assert devwait.degrade(desired, missing, live).state.ports[1].subsystems == [NQN]


class FakeProbe:
    def __init__(self, appear_at):
        self.appear_at, self.now = appear_at, 0.0

    def missing(self, items):
        return [n for n in items if self.appear_at.get(n.what, 0.0) > self.now]

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_wait_returns_when_everything_appeared_and_records_when():
    items = devwait.needs(statefile.parse(doc()))
    probe = FakeProbe({"/dev/nvme0n1": 3.0, A: 4.0})
    res = devwait.wait(items, 30, probe)
    assert res.missing == [] and 4.0 <= res.seconds < 4.5
    assert res.appeared["device /dev/nvme0n1"] >= 3.0 and res.appeared["device /dev/nvme2n1"] == 0.0


def test_wait_gives_up_at_the_deadline():
    items = devwait.needs(statefile.parse(doc()))
    probe = FakeProbe({"/dev/nvme0n1": 99.0})
    res = devwait.wait(items, 2, probe)
    assert [n.what for n in res.missing] == ["/dev/nvme0n1"] and 2.0 <= res.seconds < 2.5


@pytest.fixture
def machine(tmp_path):
    root = tmp_path / "root"
    m = q35_lab(root, rxe=True, rxe_name="rxe0")
    (root / "dev/disk/by-id").mkdir(parents=True)
    for i in range(4):
        (root / f"dev/nvme{i}n1").write_text("")
    os.symlink("../../nvme1n1", root / BYID.lstrip("/"))
    return m, root


def test_probe_reads_sysfs_links_and_p2pmem(machine):
    m, root = machine
    p = devwait.Probe(str(root), addresses=lambda: {"10.77.0.1"})
    assert p.block_device(BYID) == "nvme1n1" and p.block_device("/dev/nvme9n1") is None
    items = devwait.needs(statefile.parse(doc()))
    assert p.missing(items) == []
    m.set_p2pmem(B, published=False).write()
    os.unlink(root / "dev/nvme0n1")
    assert [n.what for n in p.missing(items)] == ["/dev/nvme0n1", B]
    assert [n.what for n in devwait.Probe(str(root), addresses=lambda: set()).missing(items)][-1] == "10.77.0.1"


def test_bindable_is_the_kernels_own_answer():
    assert devwait.Probe.bindable("127.0.0.1") and not devwait.Probe.bindable("192.0.2.77")
    assert not devwait.Probe.bindable("not-an-ip")


def _restore(tmp_path, root, cfs, monkeypatch, *extra):
    monkeypatch.setattr("nvmet_p2p.nvmet.apply.open_configfs", lambda r, load_module=True: cfs)
    monkeypatch.setattr("nvmet_p2p.nvmet.configfs.Configfs", lambda r: cfs)
    monkeypatch.setattr(devwait.Probe, "_read_addresses", lambda self: {"10.77.0.1"})
    monkeypatch.setattr(fakenvmet, "LISTEN", fakenvmet.LISTEN | {"0.0.0.0"})
    f = tmp_path / "config.json"
    f.write_text(json.dumps(doc()))
    return cli.main(["restore", str(f), "--root", str(root), "--state-dir", str(tmp_path / "state"), *extra])


def test_restore_wait_devices_partial_exports_the_rest_and_exits_4(machine, tmp_path, monkeypatch, capsys):
    m, root = machine
    os.unlink(root / "dev/nvme0n1")                     # cmbA's namespace not there yet
    cfs = FakeNvmet(str(tmp_path / "cfs"))
    monkeypatch.setitem(fakenvmet.DEVICES, BYID, B)
    rc = _restore(tmp_path, root, cfs, monkeypatch, "--wait-devices", "0.5")
    out, err = capsys.readouterr()
    assert rc == devwait.EXIT_PARTIAL == 4, err
    assert "PARTIAL RESTORE: 1 of 6 still missing" in err and "block device /dev/nvme0n1" in err
    live = read_state(cfs)
    ns = live.subsystems[NQN].namespaces
    assert ns[1].enable is False and ns[1].attrs["device_path"] == "/dev/nvme0n1"
    assert ns[2].enable and ns[3].enable and live.ports[1].subsystems == [NQN]
    rec = DegradedStore(str(tmp_path / "state")).load()
    assert list(rec) == [(f"namespace {NQN}/1", "held-back")]
    # the device appears: a second restore completes it and clears restore's record
    (root / "dev/nvme0n1").write_text("")
    assert _restore(tmp_path, root, cfs, monkeypatch, "--wait-devices", "0") == 0
    assert read_state(cfs).subsystems[NQN].namespaces[1].enable is True
    assert DegradedStore(str(tmp_path / "state")).load() == {}


def test_restore_wait_devices_json_names_the_missing(machine, tmp_path, monkeypatch, capsys):
    m, root = machine
    m.set_p2pmem(A, published=False).write()
    cfs = FakeNvmet(str(tmp_path / "cfs"))
    monkeypatch.setitem(fakenvmet.DEVICES, BYID, B)
    rc = _restore(tmp_path, root, cfs, monkeypatch, "--wait-devices", "0", "--json")
    d = json.loads(capsys.readouterr().out)
    assert rc == 4 and d["complete"] is False
    assert d["devices"]["missing"] == [{"kind": "provider", "what": A, "users": [f"namespace {NQN}/1"]}]
    assert read_state(cfs).subsystems[NQN].namespaces[1].attrs["p2pmem"] == "0"


def test_restore_without_wait_stays_all_or_nothing(machine, tmp_path, monkeypatch, capsys):
    m, root = machine
    cfs = FakeNvmet(str(tmp_path / "cfs"))                # BYID unknown to the fake: ENOENT
    rc = _restore(tmp_path, root, cfs, monkeypatch)
    err = capsys.readouterr().err
    assert rc == 1 and "namespaces/2/enable" in err and "(ENOENT). Rolled back" in err
    assert NQN not in read_state(cfs).subsystems


def test_restore_wait_devices_bad_value_changes_nothing(tmp_path, capsys):
    rc = cli.main(["restore", str(tmp_path / "x.json"), "--wait-devices", "-1"])
    assert rc == 2 and "--wait-devices must be" in capsys.readouterr().err


def test_a_partial_restore_keeps_only_links_live_under_the_lock(machine, tmp_path, monkeypatch, capsys):
    """Address 10.77.0.1 is missing, so port 1's link is kept only if it is live -- live when
    the restore holds the apply lock: an ``apply --prune`` that unlinked it while the restore
    waited for the lock is not undone (issue 19.3)."""
    from nvmet_p2p.nvmet import apply
    from nvmet_p2p.nvmet.apply import ManagedStore, reconcile
    _m, root = machine
    cfs = FakeNvmet(str(tmp_path / "cfs"))
    sd = str(tmp_path / "state")
    monkeypatch.setitem(fakenvmet.DEVICES, BYID, B)
    monkeypatch.setattr(fakenvmet, "LISTEN", fakenvmet.LISTEN | {"0.0.0.0"})
    reconcile(str(root), statefile.parse(doc()), sd, cfs=cfs)
    assert read_state(cfs).ports[1].subsystems == [NQN]
    unlinked = doc()
    unlinked["ports"][0]["subsystems"] = []
    real, state = apply.apply_lock, {"armed": True}

    def hooked(*a, **k):        # the revoking apply held the lock first; the restore waited
        if state.pop("armed", False):
            reconcile(str(root), statefile.parse(unlinked), sd, cfs=cfs, prune=True)
        return real(*a, **k)
    monkeypatch.setattr(apply, "apply_lock", hooked)
    monkeypatch.setattr("nvmet_p2p.nvmet.apply.open_configfs", lambda r, load_module=True: cfs)
    monkeypatch.setattr("nvmet_p2p.nvmet.configfs.Configfs", lambda r: cfs)
    monkeypatch.setattr(devwait.Probe, "_read_addresses", lambda self: set())    # address gone
    f = tmp_path / "config.json"
    f.write_text(json.dumps(doc()))
    rc = cli.main(["restore", str(f), "--root", str(root), "--state-dir", sd, "--wait-devices", "0"])
    assert "armed" not in state and rc == devwait.EXIT_PARTIAL, capsys.readouterr().err
    assert read_state(cfs).ports[1].subsystems == []
    assert (1, NQN) not in ManagedStore(sd).load().port_links
    assert ("port 1", "port-lost") in DegradedStore(sd).load()
