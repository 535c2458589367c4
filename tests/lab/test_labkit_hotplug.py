"""Fast tier: the lab's hotplug channel (tools/lab/labkit/hotplug.py) against a fake QMP
server on a unix socket: the guest's request file, the broker's QMP conversation, the
answer file. The real QEMU and guest: tests/lab/test_lab_hotplug.py."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "lab"))

from labkit import hotplug, runner, topology  # noqa: E402


class FakeQmp(threading.Thread):
    """Speaks QMP like QEMU 7.2: greeting, qmp_capabilities, device_del (the event follows
    after ``delay`` s, or never when ``ack`` is False), device_add."""

    def __init__(self, path: str, delay: float = 0.05, ack: bool = True):
        super().__init__(daemon=True)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.delay, self.ack = delay, ack
        self.commands: list[dict] = []

    def run(self):
        conn, _ = self.srv.accept()
        f = conn.makefile("rwb", buffering=0)
        f.write(b'{"QMP": {"version": {"qemu": {"major": 7, "minor": 2}}, "capabilities": []}}\n')
        for line in f:
            msg = json.loads(line)
            self.commands.append(msg)
            cmd = msg["execute"]
            if cmd == "device_del" and msg["arguments"]["id"] == "nvme-nope":
                f.write(b'{"error": {"class": "DeviceNotFound", "desc": "Device \'nvme-nope\' not found"}}\n')
                continue
            f.write(b'{"return": {}}\n')
            if cmd == "device_del" and self.ack:
                time.sleep(self.delay)
                dev = msg["arguments"]["id"]
                f.write(json.dumps({"event": "DEVICE_DELETED", "data": {"device": dev,
                                    "path": f"/machine/peripheral/{dev}"}}).encode() + b"\n")


@pytest.fixture
def broker(tmp_path, monkeypatch):
    made = []

    def make(ack=True, devices=None):
        qmp = str(tmp_path / "qmp.sock")
        fake = FakeQmp(qmp, ack=ack)
        fake.start()
        t = topology.load("hotplug")
        b = hotplug.Broker(tmp_path / "hp", qmp, devices or t.hotplug_devices(), tmp_path / "log.jsonl")
        b.start()
        made.append(b)
        monkeypatch.setenv(hotplug.ENV, str(tmp_path / "hp"))
        return b, fake
    yield make
    for b in made:
        b.stop()


def test_remove_waits_for_device_deleted_and_add_reuses_the_boot_properties(broker, tmp_path):
    b, fake = broker()
    a = hotplug.request({"op": "remove", "device": "cmbA", "timeout": 5})
    assert a["ok"] and a["qemu_id"] == "nvme-cmbA" and a["attempts"] == 1
    a = hotplug.request({"op": "add", "device": "cmbA"})
    assert a["ok"]
    cmds = [c for c in fake.commands if c["execute"] != "qmp_capabilities"]
    assert cmds[0] == {"execute": "device_del", "arguments": {"id": "nvme-cmbA"}}
    assert cmds[1] == {"execute": "device_add", "arguments": {
        "driver": "nvme", "id": "nvme-cmbA", "serial": "cmbA", "drive": "drv-cmbA", "bus": "sw1-dp0",
        "cmb_size_mb": 64}}
    assert hotplug.request({"op": "list"})["devices"]["cmbA"] is True
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["op"] for x in log] == ["remove", "add", "list"]


def test_unknown_device_and_refused_commands_are_answers_not_hangs(broker):
    b, fake = broker(devices={"nope": {"driver": "nvme", "id": "nvme-nope"}})
    a = hotplug.request({"op": "remove", "device": "cmbA"})
    assert not a["ok"] and "not a hot-pluggable NVMe" in a["error"]
    a = hotplug.request({"op": "remove", "device": "nope"})
    assert not a["ok"] and "not found" in a["error"]
    assert not hotplug.request({"op": "explode"})["ok"]


def test_no_device_deleted_means_the_guest_did_not_acknowledge(broker):
    b, fake = broker(ack=False)
    with pytest.raises(hotplug.HotplugError, match="did not acknowledge the unplug"):
        hotplug.remove("cmbB", timeout=0.5)


def test_guest_client_outside_the_lab_is_one_clear_error(monkeypatch):
    monkeypatch.delenv(hotplug.ENV, raising=False)
    with pytest.raises(hotplug.HotplugError, match="run inside tools/lab/run"):
        hotplug.remove("cmbA")


def test_hotplug_topology_is_native_pciehp_and_others_unchanged():
    t = topology.load("hotplug")
    argv = t.qemu_devices({n.serial: "/x" for n in t.nvme})
    assert argv[:2] == ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
    assert sorted(t.hotplug_devices()) == ["cmbA", "cmbB", "plain", "plainS"]
    d = topology.load("default")
    assert d.hotplug == "acpi" and "-global" not in d.qemu_devices({n.serial: "/x" for n in d.nvme})
    mf = topology.load("iommu-acs")
    functions = {n.serial for n in mf.nvme if n.function is not None}
    assert functions == {"mf0", "mf1"} and not functions & set(mf.hotplug_devices())


def test_bad_hotplug_value_names_the_key():
    with pytest.raises(topology.TopologyError, match="hotplug: 'pcie': must be 'acpi'"):
        topology.from_dict({"hotplug": "pcie", "root_ports": [{"name": "rp1", "nvme": {"serial": "a"}}]}, "x")


def test_runner_gives_qemu_a_qmp_socket_and_the_guest_the_channel(tmp_path):
    from labkit import kernel
    t = topology.load("default")
    k = kernel.Kernel(release="7.3.4+deb13-amd64", version="7.3.4-1", suite="s", tree="/t",
                      vmlinuz="/t/vmlinuz", moddir="/t/mod", config="/t/config")
    argv = runner.qemu_argv(t, k, Path("/c/initrd"), Path("/c/run/ctl"), [],
                            {n.serial: f"/img/{n.serial}" for n in t.nvme}, "multi", Path("/c/run/qmp.sock"))
    assert argv[argv.index("-qmp") + 1] == "unix:/c/run/qmp.sock,server=on,wait=off"
    assert runner.GUEST_CTL == "/run/nvmet-p2p-lab/ctl"
