"""The export policy (issue 19.9): only block devices (or an explicit file-backed namespace)
are exported, never a system file, a relative path or -- unless the profile or state says
``allow_in_use`` -- a disk this machine uses (mounted, a mounted partition, swap, LVM/md
member). Facts read through the inventory's injectable root (tests/support/sysfs.py writes
``/sys/class/block``, ``/proc/self/mountinfo``, ``/proc/swaps`` as the kernel does)."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from nvmet_p2p import cli
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.pci.doctor import diagnose
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.pci.model import BlockDevice, Inventory
from nvmet_p2p.policy import exportpolicy as xp
from nvmet_p2p.policy import profile
from nvmet_p2p.policy.profile import ProfileError
from support import sysfs as sf
from support.fakenvmet import FakeNvmet, dump

S = "nqn.2026-01.io.example:s1"
H = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001"


def booted_from_nvme(root, **kw) -> sf.Machine:
    """The lab's machine, but booted from its plain NVMe (nvme3n1): /boot on partition 1,
    / on LVM (dm-0) on partition 2, swap on partition 3; cmbC (nvme2n1) holds /srv."""
    m = sf.q35_lab(root, rxe=True, rxe_name="rxe0", write=False, **kw)
    m.partition("nvme3n1", 1, mount="/boot")
    m.hold(m.partition("nvme3n1", 2), "dm-0", dm_name="vg-root", mount="/")
    m.partition("nvme3n1", 3, swap=True)
    m.mount("nvme2n1", "/srv/my data")
    return m.write()


# -- what the machine uses ---------------------------------------------------------------------

def test_block_devices_and_what_uses_them_are_read_from_sysfs_and_procfs(tmp_path):
    booted_from_nvme(tmp_path)
    inv = read_inventory(tmp_path)
    b = inv.blocks
    assert b["nvme3n1"].partitions == ["nvme3n1p1", "nvme3n1p2", "nvme3n1p3"]
    assert b["nvme3n1p1"].disk == "nvme3n1" and b["nvme3n1p1"].mounts == ["/boot"]
    assert b["nvme3n1p2"].holders == ["dm-0"] and b["dm-0"].mounts == ["/"]   # by major:minor
    assert b["nvme3n1p3"].swap and b["nvme2n1"].mounts == ["/srv/my data"]    # \040 decoded
    assert inv.block_usage("nvme3n1") == [
        "its partition nvme3n1p1 is mounted at /boot",
        "its partition nvme3n1p2 is held by dm-0 (device-mapper: LVM, dm-crypt or multipath); "
        "dm-0 is mounted at /",
        "its partition nvme3n1p3 is an active swap device"]
    assert inv.block_usage("nvme0n1") == [] and inv.block_usage("nvme2n1") == [
        "it is mounted at /srv/my data"]
    again = Inventory.from_dict(json.loads(json.dumps(inv.to_dict())))     # topology --json
    assert again.blocks == inv.blocks


def test_mounts_fall_back_to_proc_mounts_and_a_dm_alias(tmp_path):
    booted_from_nvme(tmp_path)
    os.unlink(tmp_path / "proc/self/mountinfo")
    inv = read_inventory(tmp_path)
    assert inv.blocks["dm-0"].mounts == ["/"]          # /dev/mapper/vg-root -> dm-0 (dm/name)
    assert inv.blocks["nvme3n1p1"].mounts == ["/boot"]


def test_a_holder_cycle_in_an_inventory_file_does_not_loop():
    inv = Inventory(blocks={"a": BlockDevice("a", holders=["b"]),
                            "b": BlockDevice("b", holders=["a"], mounts=["/x"])})
    assert inv.block_usage("a") == ["it is held by b (a stacked block device); b is mounted at "
                                    "/x; b is held by a (a stacked block device)"]


# -- the policy on one path ---------------------------------------------------------------------

def test_system_files_relative_paths_and_character_devices_are_refused_on_this_host():
    inv = Inventory(blocks={})
    for path, kind, words in [
            ("/etc/shadow", xp.SYSTEM_FILE, "system file (under /etc)"),
            ("/proc/kcore", xp.SYSTEM_FILE, "system file (under /proc)"),
            ("nvme0n1", xp.RELATIVE, "relative path"),
            ("/dev/null", xp.NOT_BLOCK, "a character device, not a block device"),
            ("/dev/../etc/shadow", xp.SYSTEM_FILE, "(-> /etc/shadow)")]:
        f = xp.check(xp.probe("/", path, inv), inv)
        assert [(x.kind, x.error) for x in f] == [(kind, True)], (path, f)
        assert words in f[0].message, f[0].message
    # backing: file does not make a system file exportable
    f = xp.check(xp.probe("/", "/etc/shadow", inv), inv, backing="file")
    assert f[0].kind == xp.SYSTEM_FILE and f[0].error


def test_a_regular_file_needs_backing_file(tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)
    inv = Inventory(blocks={})
    facts = xp.probe("/", str(img), inv)
    assert facts.kind == "file"
    (f,) = xp.check(facts, inv)
    assert f.kind == xp.NOT_BLOCK and "say backing: file" in f.message
    assert xp.check(facts, inv, backing="file") == []


def test_a_disk_in_use_is_refused_unless_allowed(tmp_path):
    booted_from_nvme(tmp_path)
    inv = read_inventory(tmp_path)
    facts = xp.probe(str(tmp_path), "/dev/nvme3n1", inv)
    assert (facts.kind, facts.block) == ("block", "nvme3n1")
    (f,) = xp.check(facts, inv)
    assert f.error and f.kind == xp.IN_USE and "/boot" in f.message and "allow_in_use" in f.message
    (w,) = xp.check(facts, inv, allow_in_use=True)
    assert not w.error and "exported although this machine uses it" in w.message
    assert xp.check(xp.probe(str(tmp_path), "/dev/nvme0n1", inv), inv) == []


# -- profiles ---------------------------------------------------------------------------------

PROFILE = f"""
version: 1
hosts: [{{nqn: '{H}'}}]
ports: [{{id: 1, transport: rdma, rdma_device: rxe0}}]
subsystems:
  - nqn: {S}
    hosts: ['{H}']
    ports: [1]
    p2p: {{policy: placed, when_none: off}}
    namespaces:
      - SELECT
"""


def resolve(tmp_path, select: str):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(PROFILE).replace("SELECT", select))
    return profile.resolve(profile.load(str(path), strict=False), read_inventory(tmp_path / "m"))


def test_every_nvme_leaves_out_the_disks_holding_root_and_boot(tmp_path):
    booted_from_nvme(tmp_path / "m")
    r = resolve(tmp_path, "select: {model: '*'}\n        each: true")
    assert [ns.ns.name for ns in r.namespaces] == ["nvme0n1", "nvme1n1"]   # cmbA, cmbB
    warns = [str(w) for w in r.warnings]
    assert any("plain/1 (/dev/nvme3n1) is left out" in w and "mounted at /boot" in w
               and "dm-0 is mounted at /" in w and "swap" in w for w in warns), warns
    assert any("cmbC/1 (/dev/nvme2n1) is left out" in w for w in warns), warns


def test_one_selected_disk_in_use_is_an_error_and_allow_in_use_exports_it(tmp_path):
    booted_from_nvme(tmp_path / "m")
    with pytest.raises(ProfileError) as e:
        resolve(tmp_path, "select: {serial: plain}")
    assert "plain/1 (/dev/nvme3n1) is in use on this machine" in str(e.value)
    assert "Set allow_in_use: true" in str(e.value)
    r = resolve(tmp_path, "select: {serial: plain}\n        allow_in_use: true")
    assert [ns.ns.name for ns in r.namespaces] == ["nvme3n1"]
    assert any("exported although this machine uses it (allow_in_use)" in str(w)
               for w in r.warnings)


def test_each_matching_only_disks_in_use_is_an_error(tmp_path):
    booted_from_nvme(tmp_path / "m")
    with pytest.raises(ProfileError, match="every namespace selector .* is in use"):
        resolve(tmp_path, "select: {serial: plain}\n        each: true")


def test_plan_names_what_the_policy_refuses(tmp_path, capsys):
    booted_from_nvme(tmp_path / "m")
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent(PROFILE).replace("SELECT", "select: {model: '*'}\n        each: true"))
    assert cli.main(["plan", "--profile", str(p), "--root", str(tmp_path / "m"),
                     "--state-dir", str(tmp_path / "sd")]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "plain/1 (/dev/nvme3n1) is left out" in out
    assert "nvme3n1" not in out.split("warning:")[0]       # not placed, not planned


# -- state files --------------------------------------------------------------------------------

def state(*namespaces) -> dict:
    return {"hosts": [], "ports": [], "subsystems": [{
        "nqn": S, "attr": {"allow_any_host": "1"},
        "namespaces": [dict({"nsid": i}, **n) for i, n in enumerate(namespaces, 1)]}]}


def test_state_file_keys_round_trip_and_nvmetcli_ignores_them():
    doc = state({"device": {"path": "/dev/nvme3n1"}, "allow_in_use": True},
                {"device": {"path": "/srv/disk.img"}, "backing": "file", "enable": 1})
    st = statefile.parse(doc)
    ns1, ns2 = (st.subsystems[S].namespaces[i] for i in (1, 2))
    assert (ns1.allow_in_use, ns1.backing, ns2.allow_in_use, ns2.backing) == (True, "block", False, "file")
    again = json.loads(statefile.dumps(st))["subsystems"][0]["namespaces"]
    assert again[0]["allow_in_use"] is True and "backing" not in again[0]
    assert again[1]["backing"] == "file" and "allow_in_use" not in again[1]
    assert statefile.nvmetcli_problems(doc) == []
    with pytest.raises(statefile.StateFileError) as e:
        statefile.parse(state({"device": {"path": "/dev/x"}, "allow_in_use": "yes",
                               "backing": "nfs"}))
    assert [p for p, _ in e.value.problems] == ["$.subsystems[0].namespaces[0].allow_in_use",
                                                "$.subsystems[0].namespaces[0].backing"]


def test_plan_state_refuses_each_kind_and_writes_nothing(tmp_path, capsys):
    booted_from_nvme(tmp_path / "m")
    cfs = FakeNvmet(str(tmp_path / "m"))
    before = dump(cfs)
    f = tmp_path / "s.json"
    f.write_text(json.dumps(state({"device": {"path": "/etc/shadow"}},
                                  {"device": {"path": "/proc/kcore"}, "backing": "file"},
                                  {"device": {"path": "nvme0n1"}},
                                  {"device": {"path": "/dev/nvme3n1"}},
                                  {"device": {"path": "/dev/nvme0n1"}})))
    for cmd in ("plan", "apply"):
        assert cli.main([cmd, "--state", str(f), "--root", cfs.root,
                         "--state-dir", str(tmp_path / "sd")]) == 2
        err = capsys.readouterr().err
        assert "4 problems with the desired state on this machine (nothing was changed)" in err
        assert f"namespace {S}/1: /etc/shadow is a system file (under /etc)" in err
        assert f"namespace {S}/2: /proc/kcore is a system file" in err
        assert f"namespace {S}/3: 'nvme0n1' is a relative path" in err
        assert f"namespace {S}/4: /dev/nvme3n1 is in use on this machine" in err
        assert f"{S}/5" not in err
    assert dump(cfs) == before and not os.path.exists(tmp_path / "sd")


def test_allow_in_use_in_a_state_is_a_warning(tmp_path, capsys):
    booted_from_nvme(tmp_path / "m")
    cfs = FakeNvmet(str(tmp_path / "m"))
    f = tmp_path / "s.json"
    f.write_text(json.dumps(state({"device": {"path": "/dev/nvme3n1"}, "allow_in_use": True})))
    assert cli.main(["plan", "--state", str(f), "--root", cfs.root,
                     "--state-dir", str(tmp_path / "sd")]) == 0
    out = capsys.readouterr()
    assert "+ namespace" in out.out and "exported although this machine uses it" in out.err


def test_save_records_the_consents_a_live_target_needs_to_come_back(tmp_path, capsys):
    """What runs is what the boot restores: a live export of a disk in use (made by hand, or
    with allow_in_use) is saved with allow_in_use, and the save says so."""
    booted_from_nvme(tmp_path / "m")
    cfs = FakeNvmet(str(tmp_path / "m"))
    for op in (("mkdir", f"subsystems/{S}"), ("mkdir", f"subsystems/{S}/namespaces/1"),
               ("write", f"subsystems/{S}/namespaces/1/device_path", "/dev/nvme3n1"),
               ("mkdir", f"subsystems/{S}/namespaces/2"),
               ("write", f"subsystems/{S}/namespaces/2/device_path", "/dev/nvme0n1")):
        getattr(cfs, op[0])(*op[1:])
    out = tmp_path / "saved.json"
    assert cli.main(["save", str(out), "--root", cfs.root, "--state-dir", str(tmp_path / "sd")]) == 0
    text = capsys.readouterr().out
    assert f"note: namespace {S}/1: /dev/nvme3n1 is in use on this machine" in text
    nss = json.loads(out.read_text())["subsystems"][0]["namespaces"]
    assert nss[0]["allow_in_use"] is True and "allow_in_use" not in nss[1]


def test_doctor_names_the_namespaces_the_policy_refuses(tmp_path):
    booted_from_nvme(tmp_path)
    c = next(c for c in diagnose(read_inventory(tmp_path)).checks if c.id == "in-use")
    assert c.status == "ok" and "2 of 4 NVMe namespace(s) would be refused" in c.detail
    assert [i["name"] for i in c.items] == ["nvme2n1", "nvme3n1"] and "/boot" in c.detail
