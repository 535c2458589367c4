"""State files go through the machine checks a profile gets (issue 22.3): a device that is
not there, a p2pmem provider that is absent or unpublished, a provider the kernel's p2pdma
rules refuse for the drive or for the port's NIC -- errors before any write, in ``plan``,
``apply``, ``restore`` and Ansible's check mode; ``--allow-missing`` (and the boot path
``restore --wait-devices``) hold back what needs a missing item instead; ``plan --state``
previews offline against ``--root`` or ``--inventory`` like ``plan --profile``."""

from __future__ import annotations

import json
import os

import pytest

from nvmet_p2p import automation, cli
from nvmet_p2p.nvmet import lastapply
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.policy.statecheck import StateCheckError
from nvmet_p2p.service import devwait
from support import sysfs as sf
from support.fakenvmet import FakeNvmet, dump

S = "nqn.2026-01.io.example:checked"
CMBA, CMBB, CMBC = "0000:03:00.0", "0000:04:00.0", "0000:05:00.0"


def doc(namespaces, ports=()) -> dict:
    return {"hosts": [], "ports": list(ports), "subsystems": [{
        "nqn": S, "attr": {"allow_any_host": "1"},
        "namespaces": [dict({"nsid": i, "enable": 1}, **n) for i, n in enumerate(namespaces, 1)]}]}


def ns(path, p2pmem="0"):
    return {"device": {"path": path}, "p2pmem": p2pmem}


def rdma_port(pid, addr):
    return {"portid": pid, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": addr,
                                    "trsvcid": "4420"}, "subsystems": [S]}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The lab's default machine (cmbC's pool unpublished) with a fake configfs on it, which
    the commands use (it creates what the kernel creates: namespaces/ in a new subsystem)."""
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True, write=False) \
        .set_p2pmem(CMBC, published=False).write()
    (root / "dev").mkdir()
    for i in range(4):                     # (device nodes, as plain files: what devwait probes)
        (root / f"dev/nvme{i}n1").write_text("")
    cfs = FakeNvmet(str(root))
    monkeypatch.setattr("nvmet_p2p.nvmet.apply.open_configfs", lambda r, load_module=True: cfs)
    monkeypatch.setattr(devwait.Probe, "_read_addresses", lambda self: {"10.77.0.1"})
    return cfs, str(tmp_path / "sd")


def write(tmp_path, d) -> str:
    f = tmp_path / "s.json"
    f.write_text(json.dumps(d))
    return str(f)


REFUSED = doc([ns("/dev/nvme9n1"),                    # no such device
               ns("/dev/nvme0n1", "0000:09:00.0"),    # no such provider
               ns("/dev/nvme2n1", CMBC),              # its pool is not published
               ns("/dev/nvme3n1", CMBA),              # across root ports: EINVAL at enable
               ns("/dev/nvme1n1", CMBB)])             # fine: its own CMB


def test_plan_apply_restore_refuse_before_any_write(lab, tmp_path, capsys):
    cfs, sd = lab
    f = write(tmp_path, REFUSED)
    before = dump(cfs)
    for argv in (["plan", "--state", f], ["apply", "--state", f], ["restore", f]):
        assert cli.main([*argv, "--root", cfs.root, "--state-dir", sd]) == 2, argv
        err = capsys.readouterr().err
        assert "4 problems with the desired state on this machine (nothing was changed)" in err
        assert f"{S}/1: /dev/nvme9n1 does not exist: enabling it fails (ENOENT)" in err
        assert f"{S}/2: p2pmem provider 0000:09:00.0 is not a PCI function of this machine" in err
        assert f"{S}/3: p2pmem provider {CMBC} does not publish its p2p memory" in err
        assert f"{S}/4: the kernel refuses p2pmem provider {CMBA} for its NVMe 0000:06:00.0 " \
               "(enable fails with EINVAL)" in err and "whitelist" in err
        assert f"{S}/5" not in err and "--allow-missing holds it back" in err
    assert dump(cfs) == before
    assert not os.path.exists(sd) and lastapply.load(sd) is None     # not even a failed record


def test_a_provider_the_ports_nic_cannot_reach_is_a_warning(tmp_path, capsys):
    """The kernel takes it (host memory through that port): a failover port, or a multipath
    path in a non-optimized ANA group, as ``save`` writes it and the boot restores it.
    rdma-p2p lab: rxp0's NIC sits behind cmbA's switch, rxp1's behind another root port."""
    root = tmp_path / "m"
    sf.rdma_p2p_lab(root)
    cfs = FakeNvmet(str(root))
    near, far = rdma_port(1, "10.79.0.1"), rdma_port(2, "10.80.0.1")
    ok = write(tmp_path, doc([ns("/dev/nvme0n1", CMBA)], [near]))
    assert cli.main(["plan", "--state", ok, "--root", cfs.root, "--state-dir", str(tmp_path / "sd")]) == 0
    capsys.readouterr()
    for p2pmem, words in ((CMBA, f"refuses p2pmem provider {CMBA} for the RDMA NIC 0000:08:00.0 "
                                 "of port 2: every host connection through that port will use "
                                 "host memory"),
                          ("1", "no published provider serves both its NVMe 0000:03:00.0 and "
                                "the RDMA NIC 0000:08:00.0 of port 2")):
        bad = write(tmp_path, doc([ns("/dev/nvme0n1", p2pmem)], [near, far]))
        assert cli.main(["plan", "--state", bad, "--root", cfs.root,
                         "--state-dir", str(tmp_path / "sd")]) == 0
        err = capsys.readouterr().err
        assert "warning" in err and words in err and "port 1" not in err, err


def test_allow_missing_holds_back_what_needs_it(lab, tmp_path, capsys):
    cfs, sd = lab
    d = doc([ns("/dev/nvme9n1"), ns("/dev/nvme1n1", "0000:09:00.0"), ns("/dev/nvme0n1", CMBA)])
    f = write(tmp_path, d)
    assert cli.main(["plan", "--state", f, "--root", cfs.root, "--state-dir", sd,
                     "--allow-missing", "--json"]) == 0
    held = json.loads(capsys.readouterr().out)["checks"]["held_back"]
    assert [(h["object"], h["kind"]) for h in held] == [
        (f"namespace {S}/1", "held-back"), (f"namespace {S}/2", "offload-lost")]
    assert cli.main(["apply", "--state", f, "--root", cfs.root, "--state-dir", sd,
                     "--allow-missing"]) == devwait.EXIT_PARTIAL
    err = capsys.readouterr().err
    assert f"held back: namespace {S}/1: created disabled: block device /dev/nvme9n1 is missing" in err
    live = read_state(cfs).subsystems[S].namespaces
    assert live[1].enable is False and live[2].attrs["p2pmem"] == "0" and live[3].enable
    # a refusal that is not a missing item stays one
    d["subsystems"][0]["namespaces"].append(dict(ns("/dev/nvme3n1", CMBA), nsid=4, enable=1))
    assert cli.main(["plan", "--state", write(tmp_path, d), "--root", cfs.root, "--state-dir", sd,
                     "--allow-missing"]) == 2
    assert "1 problem with the desired state" in capsys.readouterr().err


def test_restore_wait_devices_keeps_its_partial_restore(lab, tmp_path, capsys):
    cfs, sd = lab
    f = write(tmp_path, doc([ns("/dev/nvme9n1"), ns("/dev/nvme0n1", CMBA)]))
    assert cli.main(["restore", f, "--root", cfs.root, "--state-dir", sd,
                     "--wait-devices", "0"]) == devwait.EXIT_PARTIAL
    assert "PARTIAL RESTORE" in capsys.readouterr().err
    live = read_state(cfs).subsystems[S].namespaces
    assert live[1].enable is False and live[2].enable
    # what the export policy or the kernel's rules refuse is refused at boot too
    f = write(tmp_path, doc([ns("/dev/nvme9n1"), ns("/dev/nvme3n1", CMBA)]))
    assert cli.main(["restore", f, "--root", cfs.root, "--state-dir", sd,
                     "--wait-devices", "0"]) == 2
    assert f"the kernel refuses p2pmem provider {CMBA}" in capsys.readouterr().err


def test_plan_state_previews_offline_against_a_root_or_an_inventory(tmp_path, capsys):
    """A snapshot without an nvmet tree (nvmet not loaded), or an inventory file: planned
    against an empty target, with the machine checks (a by-id name matched by udev's rule)."""
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0")
    inv = read_inventory(root)
    wwid = inv.namespaces["nvme1n1"].wwid
    d = doc([ns(f"/dev/disk/by-id/nvme-{wwid}", CMBB), ns("/dev/nvme0n1", CMBA)],
            [rdma_port(1, "10.77.0.1")])
    f = write(tmp_path, d)
    invf = tmp_path / "inv.json"
    invf.write_text(json.dumps({"inventory": inv.to_dict()}))
    for extra in (["--root", str(root)], ["--inventory", str(invf), "--root", str(tmp_path / "empty")]):
        os.makedirs(tmp_path / "empty", exist_ok=True)
        assert cli.main(["plan", "--state", f, "--state-dir", str(tmp_path / "sd"), *extra]) == 0
        cap = capsys.readouterr()
        assert "note: " in cap.err and "planned against an empty nvmet target" in cap.err
        assert f"+ subsystem {S}" in cap.out
        d2 = doc([ns("/dev/nvme3n1", CMBA)])
        assert cli.main(["plan", "--state", write(tmp_path, d2), "--state-dir",
                         str(tmp_path / "sd"), *extra]) == 2
        assert "the kernel refuses p2pmem provider" in capsys.readouterr().err
        f = write(tmp_path, d)


def test_ansible_check_mode_fails_instead_of_changed(lab):
    """automation.desired_from is what the Ansible apply module calls first, in check mode
    too: a refused state fails the task; a consent is a task warning."""
    cfs, sd = lab
    before = dump(cfs)
    with pytest.raises(StateCheckError) as e:
        automation.desired_from(state_content=REFUSED, root=cfs.root)
    assert len(e.value.problems) == 4 and dump(cfs) == before
    root = cfs.root
    dev = read_inventory(root).blocks["nvme3n1"].dev
    with open(os.path.join(root, "proc/self/mountinfo"), "a") as f:
        f.write(f"40 24 {dev} / /srv rw,relatime shared:40 - ext4 /dev/nvme3n1 rw\n")
    d = automation.desired_from(state_content=doc([dict(ns("/dev/nvme3n1"), allow_in_use=True)]),
                                root=root)
    res = automation.apply(d, root=root, state_dir=sd, check=True, cfs=cfs)
    assert res["changed"] and any("/srv" in w for w in res["check_warnings"])
