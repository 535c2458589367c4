"""``plan --profile`` / ``apply --profile``: profile -> placement -> the reconciler.

The machine comes from an inventory JSON (the lab topology as tests/support/machine.py builds it);
configfs is either absent (offline planning on a snapshot) or the kernel-rule fake of
tests/support/fakenvmet.py, whose devices are the lab's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nvmet_p2p.nvmet.apply as apply_mod
from nvmet_p2p import cli
from nvmet_p2p.nvmet.configfs import read_state
from support.fakenvmet import FakeNvmet
from support.machine import lab_machine

REPO = Path(__file__).resolve().parent.parent
LAB = str(REPO / "profiles" / "lab-default.yaml")
CMB_SUB = "nqn.2026-01.io.nvmet-p2p:lab-cmb"


@pytest.fixture
def inv_file(tmp_path):
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(lab_machine().to_dict()))
    return str(path)


def nvmet(tmp_path, inv_file, *argv):
    return cli.main([*argv, "--inventory", inv_file, "--root", str(tmp_path / "root"),
                     "--state-dir", str(tmp_path / "state")])


def test_plan_profile_offline_on_a_snapshot_without_configfs(tmp_path, inv_file, capsys):
    assert nvmet(tmp_path, inv_file, "plan", "--profile", LAB) == 0
    out, err = capsys.readouterr()
    assert f"{CMB_SUB} nsid 1 <- cmbA/1 (/dev/nvme0n1, 0000:03:00.0)" in out
    assert "p2pmem=0000:03:00.0 [placed]" in out and "p2pmem=0 [off]" in out
    assert "planned against an empty nvmet target" in err          # a note: on stderr
    assert f"+ namespace {CMB_SUB}/1" in out and 'p2pmem: "0000:03:00.0"' in out
    assert "lost:" not in out                       # candidates only with --explain
    assert nvmet(tmp_path, inv_file, "plan", "--profile", LAB, "--explain") == 0
    out = capsys.readouterr().out
    assert "lost: not the namespace's own CMB (0000:03:00.0 is)" in out


def test_plan_profile_json(tmp_path, inv_file, capsys):
    assert nvmet(tmp_path, inv_file, "plan", "--profile", LAB, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    ds = doc["placement"]["decisions"]
    assert [(d["subsystem"], d["nsid"], d["p2pmem"]) for d in ds] == [
        (CMB_SUB, 1, "0000:03:00.0"), (CMB_SUB, 2, "0000:04:00.0"), (CMB_SUB, 3, "0000:05:00.0"),
        ("nqn.2026-01.io.nvmet-p2p:lab-plain", 1, "0")]
    assert ds[0]["candidates"][0]["provider"] == "0000:03:00.0"
    assert doc["applied"] is False and doc["plan"]


def test_plan_profile_reports_every_profile_error_and_changes_nothing(tmp_path, inv_file, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(LAB).read_text().replace("rdma_device: rxe0", "rdma_device: mlx5_0")
                   .replace("select: {serial: plain}", "select: {serial: plian}"))
    assert nvmet(tmp_path, inv_file, "plan", "--profile", str(bad)) == 2
    err = capsys.readouterr().err
    assert "2 errors in profile (nothing was changed)" in err
    assert f"{bad}:39:18: ports[0].rdma_device: RDMA device 'mlx5_0' is not on this machine" in err
    assert "selector {serial: plian} matches no namespace" in err and "plain" in err
    assert not (tmp_path / "root").exists() and not (tmp_path / "state").exists()


def test_placement_error_prints_the_explanation_then_fails(tmp_path, inv_file, capsys):
    prof = tmp_path / "p.yaml"
    prof.write_text(Path(LAB).read_text().replace("        p2p: off ", "        p2p: placed "))
    assert nvmet(tmp_path, inv_file, "plan", "--profile", str(prof), "--explain") == 2
    cap = capsys.readouterr()
    assert "ERROR: no provider is accepted for the NVMe 0000:06:00.0 itself" in cap.out
    assert "not a candidate: the kernel refuses it" in cap.out
    assert "1 namespace(s) cannot be placed (nothing was changed)" in cap.err
    assert f"{prof}:" in cap.err


def test_state_and_profile_are_exclusive(tmp_path, inv_file, capsys):
    with pytest.raises(SystemExit):
        nvmet(tmp_path, inv_file, "plan", "--profile", LAB, "--state", "x.json")
    assert "not allowed with argument" in capsys.readouterr().err


def test_apply_profile_then_replan_is_empty(tmp_path, inv_file, capsys, monkeypatch):
    fake = FakeNvmet(str(tmp_path / "root"))
    monkeypatch.setattr(apply_mod, "open_configfs", lambda root, load_module=True: fake)
    assert nvmet(tmp_path, inv_file, "apply", "--profile", LAB) == 0
    out = capsys.readouterr().out
    assert "p2pmem=0000:04:00.0 [placed]" in out and "Applied:" in out
    live = read_state(fake)
    sub = live.subsystems[CMB_SUB]
    assert {n: (ns.enable, ns.attrs["p2pmem"]) for n, ns in sub.namespaces.items()} == {
        1: (True, "0000:03:00.0"), 2: (True, "0000:04:00.0"), 3: (True, "0000:05:00.0")}
    assert live.ports[1].attrs["addr_traddr"] == "10.77.0.1"
    assert sub.attrs["attr_allow_any_host"] == "0"
    writes = fake.writes
    assert nvmet(tmp_path, inv_file, "plan", "--profile", LAB) == 0
    assert "No changes: configfs already matches the desired state (0 writes)." in \
        capsys.readouterr().out
    assert nvmet(tmp_path, inv_file, "apply", "--profile", LAB) == 0
    assert fake.writes == writes


def test_plan_profile_reads_a_sysfs_tree_through_the_inventory_readers(tmp_path, capsys):
    from support import sysfs as sf
    root = tmp_path / "root"
    sf.q35_lab(str(root), rxe=True)
    assert cli.main(["plan", "--profile", LAB, "--root", str(root), "--json",
                     "--state-dir", str(tmp_path / "state")]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = [(d["nsid"], d["serial"], d["p2pmem"], d["map_type"]) for d in doc["placement"]["decisions"]]
    assert got == [(1, "cmbA", "0000:03:00.0", "bus_addr"), (2, "cmbB", "0000:04:00.0", "bus_addr"),
                   (3, "cmbC", "0000:05:00.0", "bus_addr"), (1, "plain", "0", None)]
    assert doc["applied"] is False and "plan" in doc


def test_dhchap_secrets_never_reach_plan_output(tmp_path, inv_file, capsys):
    key = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"
    (tmp_path / "host.key").write_text(key + "\n")
    (tmp_path / "host.key").chmod(0o600)
    prof = tmp_path / "p.yaml"
    prof.write_text(Path(LAB).read_text().replace(
        "  - nqn: nqn.2014-08.org.nvmexpress:uuid:6e7670ee-7032-4c61-6200-000000000001\n",
        "  - nqn: nqn.2014-08.org.nvmexpress:uuid:6e7670ee-7032-4c61-6200-000000000001\n"
        "    dhchap_key_file: host.key\n", 1))
    for extra in ([], ["--explain"], ["--json"]):
        assert nvmet(tmp_path, inv_file, "plan", "--profile", str(prof), *extra) == 0
        cap = capsys.readouterr()
        assert 'dhchap_key: "(secret)"' in cap.out or '"(secret)"' in cap.out
        assert key not in cap.out and key[10:30] not in cap.out and key not in cap.err
