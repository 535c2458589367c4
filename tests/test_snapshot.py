"""``nvmet-p2p snapshot``: a snapshot re-read gives the same inventory as the original."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.pci import snapshot as snapmod
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.pci.snapshot import RecordingRoot, take_snapshot
from support import sysfs as sf

MACHINES = [sf.q35_lab, sf.skylake_sp, sf.two_host_bridges, sf.amd_zen, sf.nested_switches,
            sf.acs_switch, sf.vf_pf, sf.multifunction_acs, sf.soft_roce, sf.multipath]


def same(a, b) -> bool:
    da, db = a.to_dict(), b.to_dict()
    da.pop("source")
    db.pop("source")
    return da == db


@pytest.mark.parametrize("make", MACHINES, ids=lambda f: f.__name__)
def test_snapshot_of_fixture_reads_back_identically(tmp_path, make):
    m = make(tmp_path / "machine")
    summary = take_snapshot(tmp_path / "snap", root=m.root)
    assert summary["verified"] is True
    original = read_inventory(m.root)
    copy = read_inventory(tmp_path / "snap")
    assert same(original, copy)
    assert copy.source == str(tmp_path / "snap")
    assert summary["pci_functions"] == len(original.pci)


def test_snapshot_keeps_symlinks_and_binary_config(tmp_path):
    m = sf.acs_switch(tmp_path / "machine")
    take_snapshot(tmp_path / "snap", root=m.root)
    snap = tmp_path / "snap"
    for bdf in m.pcis:
        link = f"sys/bus/pci/devices/{bdf}"
        assert os.readlink(snap / link) == os.readlink(m.root / link)
        real = m.sysfs_dir(bdf).lstrip("/")
        assert (snap / real / "config").read_bytes() == (m.root / real / "config").read_bytes()
    # a realpath chain through /sys/block -> controller -> PCI device survives
    assert os.path.realpath(snap / "sys/block/nvme0n1").endswith(
        m.sysfs_dir("0000:03:00.0") + "/nvme/nvme0/nvme0n1")


def test_snapshot_holds_only_what_the_readers_read(tmp_path):
    m = sf.q35_lab(tmp_path / "machine")
    take_snapshot(tmp_path / "snap", root=m.root)
    d = tmp_path / "snap" / m.sysfs_dir("0000:03:00.0").lstrip("/")
    assert (d / "vendor").is_file() and (d / "p2pmem" / "size").is_file()
    assert not (d / "modalias").exists() and not (d / "local_cpulist").exists()
    assert (d / "p2pmem" / "allocate").exists()   # existence is recorded, content is not read
    assert (d / "p2pmem" / "allocate").read_bytes() == b""


def test_non_root_snapshot(tmp_path):
    m = sf.q35_lab(tmp_path / "machine", privileged=False)
    s = take_snapshot(tmp_path / "snap", root=m.root)
    assert s["config_readable"] is False
    inv = read_inventory(tmp_path / "snap")
    assert not inv.system.is_root
    assert all(len((tmp_path / "snap" / m.sysfs_dir(b).lstrip("/") / "config").read_bytes()) == 64
               for b in m.pcis)


def test_snapshot_records_netlink_addresses(tmp_path):
    m = sf.q35_lab(tmp_path / "machine")
    fake = {"eth9": {"addresses": ["10.1.2.3/24"]}}
    m.netdev("eth9", bdf="0000:06:00.0")
    m.write()
    take_snapshot(tmp_path / "snap", root=m.root, netlink=lambda: fake)
    meta = json.loads((tmp_path / "snap" / "nvmet-p2p-snapshot.json").read_text())
    assert meta["netlink"] == fake and meta["format"] == 1 and meta["kind"] == "snapshot"
    assert read_inventory(tmp_path / "snap").net["eth9"].addresses == ["10.1.2.3/24"]


def test_snapshot_of_a_snapshot(tmp_path):
    m = sf.soft_roce(tmp_path / "machine")
    take_snapshot(tmp_path / "s1", root=m.root)
    take_snapshot(tmp_path / "s2", root=tmp_path / "s1")
    assert same(read_inventory(tmp_path / "s1"), read_inventory(tmp_path / "s2"))
    assert read_inventory(tmp_path / "s2").net["dummy0"].addresses == ["10.77.0.1/24", "fd00::1/64"]


def test_live_snapshot_of_this_machine(tmp_path):
    """Snapshot the real / of the test machine and compare: the live path, pyroute2 included."""
    s = take_snapshot(tmp_path / "live")
    assert s["source"] == "/" and s["verified"]
    live = read_inventory("/")
    copy = read_inventory(tmp_path / "live")
    assert copy.system.kernel_release == live.system.kernel_release == os.uname().release
    assert sorted(copy.pci) == sorted(live.pci)
    assert copy.net["lo"].addresses == live.net["lo"].addresses


def test_refuses_non_empty_dir_and_force_replaces(tmp_path):
    m = sf.q35_lab(tmp_path / "machine")
    dest = tmp_path / "snap"
    dest.mkdir()
    (dest / "keep").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        take_snapshot(dest, root=m.root)
    assert (dest / "keep").exists()
    take_snapshot(dest, root=m.root, force=True)
    assert not (dest / "keep").exists() and (dest / "sys").is_dir()


def test_refuses_writing_inside_the_source(tmp_path):
    m = sf.q35_lab(tmp_path / "machine")
    with pytest.raises(InputError, match="inside the tree it reads"):
        take_snapshot(m.root / "snap", root=m.root)


def test_self_check_failure_keeps_nothing_in_place(tmp_path, monkeypatch):
    m = sf.q35_lab(tmp_path / "machine")
    real = snapmod.read_inventory
    calls = []

    def flaky(root, **kw):
        inv = real(root, **kw)
        calls.append(root)
        if len(calls) == 2:
            inv.pci.pop("0000:03:00.0")
        return inv

    monkeypatch.setattr(snapmod, "read_inventory", flaky)
    with pytest.raises(NvmetP2PError, match="self-check failed.*pci"):
        take_snapshot(tmp_path / "snap", root=m.root)
    assert not (tmp_path / "snap").exists()


def test_recording_root_records_links_traversed(tmp_path):
    m = sf.q35_lab(tmp_path / "machine")
    rec = RecordingRoot(m.root)
    rec.read_text("/sys/block/nvme2n1/nsid")
    assert "/sys/block/nvme2n1" in rec.links
    real = m.sysfs_dir("0000:05:00.0") + "/nvme/nvme2/nvme2n1/nsid"
    assert rec.files[real] == b"1\n"


def test_cli_snapshot_json(tmp_path):
    m = sf.vf_pf(tmp_path / "machine")
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "snapshot", "--root", str(m.root),
                        "--json", str(tmp_path / "snap")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verified"] and doc["rdma_devices"] == 3 and doc["path"] == str(tmp_path / "snap")
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "snapshot", "--root", str(m.root),
                        str(tmp_path / "snap")], capture_output=True, text=True)
    assert r.returncode == 2 and "not empty" in r.stderr and "Traceback" not in r.stderr
