"""``<state dir>/p2pmem-bindings.json``: every apply that writes a namespace's ``p2pmem``
records which provider device it bound (the kernel keeps that device until the next write,
and shows neither the write nor the device: tests/test_status_hotplug.py uses the record)."""

from __future__ import annotations

import json

from fakenvmet import FakeNvmet

from nvmet_p2p.nvmet import bindings, lastapply, statefile
from nvmet_p2p.nvmet.apply import reconcile
from nvmet_p2p.nvmet.journal import boot_id
from support import sysfs as sf

NQN = "nqn.2026-12.io.lab:b"
A, B = "0000:03:00.0", "0000:04:00.0"


def doc(p2pmem_1: str, p2pmem_2: str = "0") -> dict:
    return {"hosts": [], "ports": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": [
        {"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme2n1"}, "p2pmem": p2pmem_1},
        {"nsid": 2, "enable": 1, "device": {"path": "/dev/nvme1n1"}, "p2pmem": p2pmem_2}]}]}


def apply(root, cfs, sd, d, source="apply"):
    with lastapply.recorded(sd, source, root=str(root)) as rec:
        rec.outcome = reconcile(str(root), statefile.parse(d), sd, cfs=cfs)
    return rec.outcome


def tree(tmp_path, age_ms=5000, uptime=100.0):
    m = sf.q35_lab(tmp_path / "root")
    for bdf in (A, B):
        d = m.path(m.sysfs_dir(bdf))
        (d / "power").mkdir(exist_ok=True)
        (d / "power/runtime_active_time").write_text(f"{age_ms}\n")
        (d / "power/runtime_suspended_time").write_text("0\n")
    (m.root / "proc").mkdir(exist_ok=True)
    (m.root / "proc/uptime").write_text(f"{uptime} 1.0\n")
    (m.root / "proc/sys/kernel/random").mkdir(parents=True)
    (m.root / "proc/sys/kernel/random/boot_id").write_text("boot-1\n")
    return m


def test_an_apply_that_writes_p2pmem_records_the_device_it_bound(tmp_path):
    m = tree(tmp_path)
    cfs, sd = FakeNvmet(str(tmp_path / "cfs")), str(tmp_path / "state")
    apply(m.root, cfs, sd, doc(A))
    got = bindings.load(sd, boot_id(str(m.root)))
    assert list(got) == [f"{NQN}/1"]                       # nsid 2 has p2pmem 0: nothing bound
    b = got[f"{NQN}/1"]
    assert (b.p2pmem, b.serial, b.appeared, b.boot_id) == (A, "cmbA", 95.0, "boot-1")
    assert b.written == 100.0                              # the tree's clock (proc/uptime)
    assert bindings.load(sd, "another-boot") == {}


def test_an_unchanged_apply_keeps_the_binding_and_p2pmem_0_drops_it(tmp_path):
    m = tree(tmp_path)
    cfs, sd = FakeNvmet(str(tmp_path / "cfs")), str(tmp_path / "state")
    apply(m.root, cfs, sd, doc(A, B))
    (m.root / "proc/uptime").write_text("200.0 1.0\n")
    apply(m.root, cfs, sd, doc(A, B))                      # nothing written: same record
    assert {k: b.written for k, b in bindings.load(sd).items()} == {f"{NQN}/1": 100.0, f"{NQN}/2": 100.0}
    apply(m.root, cfs, sd, doc("0", B))
    assert list(bindings.load(sd)) == [f"{NQN}/2"]
    with open(bindings.path(sd)) as f:
        assert json.load(f)["format"] == 1


def test_a_dry_run_or_a_failed_apply_records_no_binding(tmp_path):
    m = tree(tmp_path)
    cfs, sd = FakeNvmet(str(tmp_path / "cfs")), str(tmp_path / "state")
    with lastapply.recorded(sd, "apply", enabled=False, root=str(m.root)) as rec:
        rec.outcome = reconcile(str(m.root), statefile.parse(doc(A)), sd, cfs=cfs, dry_run=True)
    assert bindings.load(sd) == {}
