"""What is applied survives the reboot (issue 22.1): ``apply --save`` (and ``save: true`` in the
Ansible module) writes the live target to the file the boot unit restores; without it the
apply warns when the live target differs from that file, and ``status``, ``doctor`` and the
metric ``nvmet_p2p_saved_config_drift`` show the difference.

The boot is the fake configfs emptied and ``restore FILE`` (what nvmet-p2p.service runs)."""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import re
import stat

import pytest
import yaml

from nvmet_p2p import automation, cli
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.configfs import read_state
from support import sysfs as sf
from support.fakenvmet import FakeNvmet

# the command modules are imported before a test patches nvmet_p2p.nvmet.apply.open_configfs:
# one imported while it is patched would keep the patched function
for _name in ("apply", "doctor", "restore", "save", "status"):
    importlib.import_module(f"nvmet_p2p.commands.{_name}")

H1 = "nqn.2014-08.org.nvmexpress:uuid:host1"
H2 = "nqn.2014-08.org.nvmexpress:uuid:host2"
S1 = "nqn.2026-11.io.lab:s1"
S2 = "nqn.2026-11.io.lab:s2"
DOC = {"hosts": [{"nqn": H1}],
       "subsystems": [{"nqn": S1, "attr": {"allow_any_host": "0", "serial": "s1"}, "allowed_hosts": [H1],
                       "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme0n1"},
                                       "p2pmem": "0000:04:00.0"}]}],
       "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "10.77.0.1",
                                        "trsvcid": "4420"}, "subsystems": [S1]}]}
MORE = {**DOC, "hosts": [{"nqn": H1}, {"nqn": H2}],
        "subsystems": DOC["subsystems"] + [{"nqn": S2, "attr": {"allow_any_host": "1"}, "namespaces": []}]}
COLLECTION = pathlib.Path(__file__).resolve().parent.parent / "ansible_collections/nvmet_p2p/target"


def lab_target(root: pathlib.Path) -> FakeNvmet:
    """The fake configfs on the lab machine (the drives, providers and addresses DOC names: a
    state file's machine checks run against it)."""
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    return FakeNvmet(str(root))


@pytest.fixture
def env(tmp_path, monkeypatch):
    cfs = lab_target(tmp_path / "root")
    monkeypatch.setattr("nvmet_p2p.nvmet.apply.open_configfs", lambda root, load_module=True: cfs)
    files = {}
    for name, doc in (("doc", DOC), ("more", MORE)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(doc))
    return cfs, tmp_path / "state", tmp_path / "etc" / "config.json", files


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_apply_save_writes_what_the_next_boot_restores(env, tmp_path, capsys, monkeypatch):
    cfs, sd, f, files = env
    rc, out, err = run(capsys, "apply", "--state", str(files["doc"]), "--save", "--save-file", str(f),
                       "--root", cfs.root, "--state-dir", str(sd), "--json")
    assert rc == 0, err
    kept = json.loads(out)["saved_config"]
    assert kept["saved"] and kept["changed"] and kept["file"] == str(f) and kept["subsystems"] == 1
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600 and "warning" not in err
    live = read_state(cfs)
    # the reboot: configfs is empty again, the boot unit restores the saved file
    boot = lab_target(tmp_path / "after-reboot")
    monkeypatch.setattr("nvmet_p2p.nvmet.apply.open_configfs", lambda root, load_module=True: boot)
    rc, out, err = run(capsys, "restore", str(f), "--root", boot.root, "--state-dir", str(tmp_path / "sd2"))
    assert rc == 0, err
    assert statefile.dumps(read_state(boot)) == statefile.dumps(live)
    rc, out, err = run(capsys, "apply", "--state", str(files["doc"]), "--save", "--save-file", str(f),
                       "--root", cfs.root, "--state-dir", str(sd))
    assert rc == 0 and f"to {f} (mode 0600)" in out    # (unchanged: the file is left alone)


def test_apply_without_save_warns_when_the_boot_would_restore_something_else(env, capsys):
    cfs, sd, f, files = env
    common = ["--root", cfs.root, "--state-dir", str(sd), "--save-file", str(f)]
    rc, out, err = run(capsys, "apply", "--state", str(files["doc"]), *common)
    assert rc == 0 and "warning: the saved configuration" in err and "does not exist" in err
    rc, out, err = run(capsys, "save", str(f), "--root", cfs.root, "--state-dir", str(sd))
    assert rc == 0
    rc, out, err = run(capsys, "apply", "--state", str(files["doc"]), *common)
    assert rc == 0 and "warning" not in err                         # in sync: nothing to say
    rc, out, err = run(capsys, "apply", "--state", str(files["more"]), *common, "--json")
    assert rc == 0
    assert re.search(rf"warning: the saved configuration {re.escape(str(f))} \(restored at boot\) "
                     r"differs from the live target in 2 objects", err), err
    assert f"- host {H2}: not in the saved file: a reboot loses it" in err
    assert f"- subsystem {S2}: not in the saved file: a reboot loses it" in err
    doc = json.loads(out)["saved_config"]
    assert not doc["in_sync"] and doc["changes"] == 2 and not doc.get("saved")


def test_drift_is_judged_by_what_a_restore_would_change():
    from nvmet_p2p.nvmet import saved
    live = statefile.parse(DOC)
    assert saved.compare(live, statefile.parse(DOC)) == []
    partial = json.loads(json.dumps(DOC))
    del partial["subsystems"][0]["attr"]["serial"]          # not named: left to the kernel
    assert saved.compare(live, statefile.parse(partial)) == []
    other = json.loads(json.dumps(DOC))
    other["ports"][0]["addr"]["traddr"] = "10.77.0.2"
    changes = saved.compare(live, statefile.parse(other))
    assert [(c.action, c.kind, c.key) for c in changes] == [("update", "port", "1")]
    assert {c.kind for c in saved.compare(live, st.TargetState())} >= {"host", "subsystem", "port"}


def test_an_unreadable_saved_file_is_never_in_sync(tmp_path):
    from nvmet_p2p.nvmet import saved
    f = tmp_path / "config.json"
    f.write_text("{nope")
    d = saved.check(st.TargetState(), str(f))
    assert not d.in_sync and "not valid JSON" in d.error and "cannot be read" in d.summary()


@pytest.fixture
def machine(tmp_path):
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    cfs = FakeNvmet(str(root))
    sd = tmp_path / "state"
    automation.apply(automation.desired_from(state_content=DOC, root=str(root)), root=str(root),
                     state_dir=str(sd), cfs=cfs)
    return root, sd, cfs


def test_status_doctor_and_the_metric_show_the_drift(machine, capsys):
    from nvmet_p2p.observe import metrics as M
    root, sd, cfs = machine
    common = ["--root", str(root)]
    f = root / "etc/nvmet/config.json"                # the default, below --root

    def observe():
        rc, out, _ = run(capsys, "status", "--json", "--state-dir", str(sd), *common)
        doc = json.loads(out)["saved_config"]
        rc2, out2, _ = run(capsys, "doctor", "--json", *common)
        check = next(c for c in json.loads(out2)["checks"] if c["id"] == "saved-config")
        text = M.exposition(M.TargetCollector(str(root), state_dir=str(sd), doctor=False))
        value = float(re.search(r"^nvmet_p2p_saved_config_drift (\S+)$", text, re.M).group(1))
        return rc, doc, check, value
    rc, doc, check, value = observe()                 # nothing saved yet: a reboot loses it all
    assert rc == 0 and not doc["in_sync"] and not doc["exists"] and doc["file"] == str(f)
    assert check["status"] == "warn" and "a reboot loses all" in check["detail"]
    assert value == doc["changes"] > 0
    rc, out, err = run(capsys, "status", "--state-dir", str(sd), *common)
    assert "SAVED CONFIGURATION DIFFERS" in out
    assert run(capsys, "save", "--state-dir", str(sd), *common)[0] == 0
    rc, doc, check, value = observe()
    assert doc["in_sync"] and check["status"] == "ok" and value == 0, doc["lines"]
    automation.apply(automation.desired_from(state_content=MORE, root=str(root)), root=str(root),
                     state_dir=str(sd), cfs=cfs)
    rc, doc, check, value = observe()
    assert doc["changes"] == value == 2 and check["status"] == "warn"


def test_ansible_save_true_keeps_the_apply_and_reports_changed_for_the_file(tmp_path):
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    cfs, sd, f = FakeNvmet(str(root)), str(tmp_path / "state"), tmp_path / "config.json"
    d = automation.desired_from(state_content=DOC, root=str(root))
    first = automation.apply(d, root=str(root), state_dir=sd, cfs=cfs, save=True, save_file=str(f))
    assert first["changed"] and first["saved_config"]["saved"] and f.is_file()
    again = automation.apply(d, root=str(root), state_dir=sd, cfs=cfs, save=True, save_file=str(f))
    assert not again["changed"] and again["configfs_writes"] == 0 and not again["saved_config"]["changed"]
    f.unlink()                                       # the target is right, the file is not
    check = automation.apply(d, root=str(root), state_dir=sd, cfs=cfs, save=True, save_file=str(f),
                             check=True)
    assert check["changed"] and not f.exists()
    plain = automation.apply(d, root=str(root), state_dir=sd, cfs=cfs, save_file=str(f))
    assert not plain["changed"] and not plain["saved_config"]["in_sync"]
    assert "a reboot loses all" in plain["saved_config"]["summary"]


def test_the_ansible_module_documents_save_and_the_fleet_playbook_saves():
    src = (COLLECTION / "plugins/modules/apply.py").read_text()
    doc = yaml.safe_load(re.search(r'DOCUMENTATION = r"""(.*?)"""', src, re.S).group(1))
    assert doc["options"]["save"]["type"] == "bool" and doc["options"]["save"]["default"] is False
    assert doc["options"]["save_file"]["type"] == "path"
    assert 'save=dict(type="bool", default=False)' in src and 'save_file=dict(type="path")' in src
    play = yaml.safe_load((COLLECTION / "examples/fleet/playbook.yml").read_text())
    applies = [t for t in play[0]["tasks"] if "nvmet_p2p.target.apply" in t and not t.get("check_mode")]
    assert applies and all(t["nvmet_p2p.target.apply"].get("save") is True for t in applies)
