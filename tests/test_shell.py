"""``nvmet-p2p shell`` on the fake configfs (tests/fakenvmet.py) and the lab's machine as an
inventory (tests/machines.py): the tree, staging (nothing written before ``commit``), the one
write path (plan + apply + lock, rollback on a refusal), completion, errors and scripts.
The real kernel and a real terminal: tests/lab/test_lab_shell.py."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys

import pytest

from nvmet_p2p.nvmet import lastapply
from nvmet_p2p.nvmet.apply import ManagedStore, apply_lock
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.shell.app import ShellApp, scrub, secure_dir
from nvmet_p2p.shell.p2p import P2pContext
from nvmet_p2p.shell.session import Session
from support.fakenvmet import FakeNvmet, dump
from support.machine import lab_machine

S = "nqn.2026-12.io.lab:s1"
H = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000a1"
KEY = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"


class Shell:
    """A shell on a fake configfs; ``run`` gives (status, stdout, stderr)."""

    def __init__(self, tmp_path, write_through=False, prepare=None):
        self.cfs = FakeNvmet(str(tmp_path / "root"))
        self.state = str(tmp_path / "state")
        os.makedirs(os.path.join(self.cfs.root, "dev"), exist_ok=True)
        for n in ("nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"):
            open(os.path.join(self.cfs.root, "dev", n), "w").close()
        if prepare:
            prepare(self.cfs)
        self.session = Session(self.cfs.root, self.state, cfs=self.cfs, write_through=write_through)
        self.out, self.err = io.StringIO(), io.StringIO()
        self.app = ShellApp(self.session, P2pContext(self.cfs.root, inventory=lab_machine()),
                            out=self.out, err=self.err)

    def run(self, *cmds, finish=False):
        self.out.seek(0), self.out.truncate()
        self.err.seek(0), self.err.truncate()
        rc = self.app.run_script(((f"command {i}", c) for i, c in enumerate(cmds, 1)),
                                 finish=finish)
        return rc, self.out.getvalue(), self.err.getvalue()

    def ok(self, *cmds):
        rc, out, err = self.run(*cmds)
        assert rc == 0, err
        return out

    def complete(self, line, cwd=None):
        if cwd:
            self.app.shell._current_node = self.app.root.get_node(cwd)
        return self.app.shell.complete_line(line)


NS1 = f"/subsystems/{S}/namespaces/1"
BUILD = [f"/subsystems create {S}", f"/subsystems/{S}/namespaces create 1 path=/dev/nvme0n1",
         f"{NS1} set p2pmem=0000:04:00.0", f"{NS1} enable"]


@pytest.fixture
def sh(tmp_path):
    return Shell(tmp_path)


# -- the tree ---------------------------------------------------------------------------------

def test_tree_like_nvmetcli_with_a_read_only_machine_view(sh):
    out = sh.ok("ls /")
    for node in ("hosts", "ports", "subsystems", "machine", "providers", "0000:03:00.0", "rdma", "rxe0"):
        assert f"o- {node} " in out
    assert "pool 64 MiB, 63.9 MiB free, published" in out
    assert "soft RDMA (rdma_rxe): no p2p client" in out
    rc, _, err = sh.run("/machine/providers/0000:03:00.0 set p2pmem=1")
    assert rc == 1 and "read-only" in err


def test_every_kernel_attribute_including_p2pmem_and_buffered_io(sh):
    sh.ok(*BUILD[:2], "commit")
    out = sh.ok(f"{NS1} get")
    for name in ("device path", "device uuid", "device nguid", "ana grpid", "resv enable",
                 "p2pmem", "buffered_io", "enable"):
        assert name in out
    assert "device path   /dev/nvme0n1" in out
    out = sh.ok(f"{NS1} set buffered_io=1", f"{NS1} get buffered_io", "abort")
    assert "buffered_io  1" in out
    rc, _, err = sh.run(f"{NS1} set device bogus=1")
    assert rc == 1 and "no attribute 'bogus'" in err and "device path" in err


def test_ls_marks_pending_changes(sh):
    sh.ok(*BUILD, "commit")
    sh.ok(f"/subsystems create {S}-2", f"{NS1} set p2pmem=0000:05:00.0",
          f"/subsystems/{S}/namespaces create 2 path=/dev/nvme1n1")
    out = sh.ok("ls /subsystems")
    assert f"{S}-2 " in out and "[(new)" in out
    assert "(changed: p2pmem)" in out
    sh.ok(f"/subsystems/{S}/namespaces delete 1")
    out = sh.ok("ls /subsystems")
    assert "(to delete: 1)" in out


def test_namespace_ls_shows_the_verdict(sh):
    sh.ok(*BUILD, "commit")
    out = sh.ok(f"cd {NS1}", "ls")
    assert "p2pmem=0000:04:00.0 bus_addr distance 4, enabled" in out
    assert "share the upstream bridge 0000:01:00.0 (switch upstream port): 4 hops" in out


# -- staging and the one write path -------------------------------------------------------------

def test_nothing_is_written_before_commit_and_commit_goes_through_the_reconciler(sh):
    before = dump(sh.cfs)
    out = sh.ok(*BUILD, "diff")
    assert sh.cfs.writes == 0 and dump(sh.cfs) == before
    assert f"+ subsystem {S}" in out and 'p2pmem: "0000:04:00.0"' in out
    assert "Plan: 5 configfs writes" in out
    out = sh.ok("commit")
    assert "Committed: 5 configfs writes" in out and sh.cfs.writes == 5
    ns = read_state(sh.cfs).subsystems[S].namespaces[1]
    assert ns.enable and ns.attrs["p2pmem"] == "0000:04:00.0"
    assert ManagedStore(sh.state).load().namespaces == {(S, 1)}     # the reconciler's record
    out = sh.ok("diff")
    assert "No changes" in out


def test_commit_takes_the_apply_lock(sh):
    sh.ok(BUILD[0])
    with apply_lock(sh.state):
        rc, _, err = sh.run("commit")
    assert rc == 1 and "another nvmet-p2p apply is running" in err
    assert sh.cfs.writes == 0 and sh.session.edits          # still staged
    sh.ok("commit")


def test_commit_is_recorded_as_the_last_apply(sh):
    """What the exporter publishes as nvmet_p2p_last_apply_*: a commit, and a refused one."""
    assert lastapply.load(sh.state) is None
    sh.ok(*BUILD, "commit")
    rec = lastapply.load(sh.state)
    assert (rec.source, rec.result, rec.configfs_writes) == ("shell", "applied", 5)
    sh.ok("commit")                                   # nothing staged: not an apply
    assert lastapply.load(sh.state) == rec
    rc, _, _ = sh.run(f"/subsystems/{S}/namespaces create 2 path=/dev/nvme3n1",
                      f"/subsystems/{S}/namespaces/2 set p2pmem=0000:03:00.0",
                      f"/subsystems/{S}/namespaces/2 enable", "commit")
    rec = lastapply.load(sh.state)
    assert rc == 1 and (rec.source, rec.result, rec.error_kind) == ("shell", "failed", "kernel")
    assert "(EINVAL)" in rec.error


def test_undo_and_abort(sh):
    sh.ok(*BUILD)
    out = sh.ok("undo")
    assert "Undone: enable namespace 1" in out
    assert not sh.session.view.subsystems[S].namespaces[1].enable
    out = sh.ok("pending")
    assert "3. set p2pmem=0000:04:00.0" in out
    assert "Dropped 3 staged changes" in sh.ok("abort")
    assert S not in sh.session.view.subsystems and sh.cfs.writes == 0
    rc, _, err = sh.run("undo")
    assert rc == 1 and "nothing to undo" in err


def test_a_refused_commit_rolls_back_and_the_shell_stays_usable(sh):
    sh.ok(*BUILD, "commit")
    before = dump(sh.cfs)
    # nvme3n1 (plain, own root port) cannot use a CMB behind the switch: the fake refuses enable
    rc, out, err = sh.run(f"/subsystems/{S}/namespaces create 2 path=/dev/nvme3n1",
                          f"/subsystems/{S}/namespaces/2 set p2pmem=0000:03:00.0",
                          f"/subsystems/{S}/namespaces/2 enable", "commit")
    assert rc == 1
    assert "warning: the kernel will refuse this" in err        # predicted before any write
    assert "commit failed: step" in err and "(EINVAL)" in err
    assert "configfs is as before" in err and "Traceback" not in err
    assert dump(sh.cfs) == before
    assert len(sh.session.edits) == 3                            # kept for fixing
    sh.ok(f"/subsystems/{S}/namespaces/2 set p2pmem=0", "commit")
    assert read_state(sh.cfs).subsystems[S].namespaces[2].enable


def test_delete_removes_a_hand_made_object_without_adopting_the_rest(tmp_path):
    def handmade(cfs):
        cfs.mkdir("subsystems/nqn.user:mine")
        cfs.mkdir("subsystems/nqn.user:keep")
    sh = Shell(tmp_path, prepare=handmade)
    sh.ok("/subsystems delete nqn.user:mine", f"/subsystems create {S}", "commit")
    live = read_state(sh.cfs)
    assert set(live.subsystems) == {"nqn.user:keep", S}
    assert ManagedStore(sh.state).load().subsystems == {S}       # keep stays unmanaged
    w = sh.cfs.writes
    rc, _, err = sh.run("/subsystems/nqn.user:keep set attr allow_any_host=1", "commit")
    assert rc == 1 and "subsystem NQN 'nqn.user:keep': malformed" in err and sh.cfs.writes == w


def test_edits_replay_on_configfs_as_it_is_now(sh):
    sh.ok(f"/subsystems create {S}")
    sh.cfs.mkdir("subsystems/nqn.other:meanwhile")                 # someone else writes
    sh.ok("commit")
    assert {S, "nqn.other:meanwhile"} <= set(read_state(sh.cfs).subsystems)
    sh.ok(f"/subsystems create {S}-b")
    sh.cfs.mkdir(f"subsystems/{S}-b")                               # a conflict
    rc, _, err = sh.run("commit")
    assert rc == 1 and f"`create subsystem {S}-b` no longer applies" in err


def test_write_through_applies_each_command_and_drops_a_refused_one(tmp_path):
    sh = Shell(tmp_path, write_through=True)
    out = sh.ok(*BUILD[:2])
    assert "Committed: 1 configfs write" in out and sh.cfs.writes == 3
    rc, _, err = sh.run(f"/subsystems/{S}/namespaces create 2 path=/dev/gone",
                        f"/subsystems/{S}/namespaces/2 enable")
    assert rc == 1 and "commit failed" in err and "The change was dropped." in err
    assert not sh.session.edits and not read_state(sh.cfs).subsystems[S].namespaces[2].enable
    sh.ok(f"/subsystems/{S}/namespaces delete 2")
    assert 2 not in read_state(sh.cfs).subsystems[S].namespaces


def test_write_through_is_an_explicit_setting(sh):
    out = sh.ok("set global write_through=true", f"/subsystems create {S}")
    assert "Parameter write_through is now 'true'" in out and S in read_state(sh.cfs).subsystems
    sh.ok("set global write_through=false", f"/subsystems create {S}-2")
    rc, _, err = sh.run("set global write_through=true")
    assert rc == 1 and "commit" in err and f"{S}-2" not in read_state(sh.cfs).subsystems


def test_ports_hosts_and_secrets(sh):
    out = sh.ok(f"/hosts create {H}", f"/hosts/{H} set dhchap key={KEY}",
                f"/subsystems create {S}", f"/subsystems/{S}/allowed_hosts create {H}",
                "/ports create 1", "/ports/1 set addr trtype=rdma adrfam=ipv4 traddr=10.77.0.1 trsvcid=4420",
                f"/ports/1/subsystems create {S}", "pending", "diff", "commit")
    assert KEY not in out and "(secret)" in out
    live = read_state(sh.cfs)
    assert live.hosts[H].attrs["dhchap_key"] == KEY
    assert live.ports[1].subsystems == [S] and live.subsystems[S].allowed_hosts == [H]
    out = sh.ok(f"/hosts/{H} get")
    assert KEY not in out and "dhchap key" in out
    out = sh.ok("ls /ports")
    assert "trtype=rdma, traddr=10.77.0.1, trsvcid=4420, rxe0 is soft RDMA" in out
    assert scrub(f"set dhchap key={KEY} ctrl_key={KEY}") == "set dhchap key=(secret) ctrl_key=(secret)"


def test_saveconfig_and_restoreconfig_stage(sh, tmp_path):
    sh.ok(*BUILD, "commit")
    f = str(tmp_path / "cfg.json")
    assert "Saved 1 subsystem(s), 1 namespace(s)" in sh.ok(f"saveconfig {f}")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert json.load(open(f))["subsystems"][0]["namespaces"][0]["p2pmem"] == "0000:04:00.0"
    sh.ok("clearconfig confirm=true", "commit")
    assert not read_state(sh.cfs).subsystems
    w = sh.cfs.writes
    out = sh.ok(f"restoreconfig {f}")
    assert sh.cfs.writes == w and "Staged" in out
    sh.ok("commit")
    assert read_state(sh.cfs).subsystems[S].namespaces[1].attrs["p2pmem"] == "0000:04:00.0"


# -- completion ---------------------------------------------------------------------------------

def test_p2pmem_completion_offers_what_the_kernel_accepts_ranked_like_placement(sh):
    sh.ok(*BUILD[:2])
    got = sh.complete("set p2pmem=", NS1)
    assert got == ["p2pmem=0000:03:00.0", "p2pmem=0000:04:00.0", "p2pmem=0000:05:00.0",
                   "p2pmem=1", "p2pmem=0"]
    header, notes = sh.app.shell._notes
    assert notes["0000:03:00.0"] == "1. bus_addr distance 0, own CMB, 63.9 MiB free of 64 MiB"
    assert notes["0000:04:00.0"].startswith("2. bus_addr distance 4")
    assert sh.complete("set p2pmem=0000:05", NS1) == ["p2pmem=0000:05:00.0"]


def test_p2pmem_completion_leaves_out_providers_the_kernel_refuses(sh):
    sh.ok(f"/subsystems create {S}", f"/subsystems/{S}/namespaces create 1 path=/dev/nvme3n1")
    got = sh.complete("set p2pmem=", NS1)
    assert got == ["p2pmem=0"]                                  # across the q35 root complex
    header, _ = sh.app.shell._notes
    assert any("not offered" in h and "0000:03:00.0" in h for h in header)
    out = sh.ok(f"{NS1} explain")
    assert "not a candidate: the kernel refuses it" in out and "not in kernel 7.3's P2PDMA whitelist" in out


def test_device_paths_complete_to_by_id_names(tmp_path):
    def udev(cfs):
        d = os.path.join(cfs.root, "dev/disk/by-id")
        os.makedirs(d)
        os.symlink("../../nvme1n1", os.path.join(d, "nvme-eui.00000000000000000000000000000001"))
        os.symlink("../../nvme1n1", os.path.join(d, "nvme-QEMU_NVMe_Ctrl_cmbB"))
    sh = Shell(tmp_path, prepare=udev)
    sh.ok(f"/subsystems create {S}")
    got = sh.complete("create path=/dev/disk/by-id/", f"/subsystems/{S}/namespaces")
    assert got == ["path=/dev/disk/by-id/nvme-eui.00000000000000000000000000000001"]
    _, notes = sh.app.shell._notes
    assert "cmbB/1" in notes["/dev/disk/by-id/nvme-eui.00000000000000000000000000000001"]
    out = sh.ok(f"/subsystems/{S}/namespaces create 1 path=/dev/nvme1n1")
    assert "/dev/disk/by-id/nvme-eui.00000000000000000000000000000001 names the same device" in out


def test_other_completions(sh):
    sh.ok(*BUILD, f"/hosts create {H}", "/ports create 1", "commit")
    assert sh.complete("set addr traddr=", "/ports/1") == ["traddr=10.77.0.1"]
    assert sh.complete("set addr trtype=r", "/ports/1") == ["trtype=rdma"]
    assert sh.complete("create ", f"/subsystems/{S}/allowed_hosts") == [H, "nqn="]
    assert sh.complete("create ", "/ports/1/subsystems") == [S, "nqn="]
    assert "device" in sh.complete("set ", NS1) and "p2pmem=" in sh.complete("set ", NS1)


def test_completion_reads_no_configfs(sh):
    sh.ok(*BUILD, "commit")
    sh.complete("set p2pmem=", NS1)                 # warm (inventory, verdicts)
    calls = []
    for name in ("read", "read_many", "listdir", "files", "attr_names"):
        orig = getattr(sh.cfs, name)
        setattr(sh.cfs, name, lambda *a, _o=orig, _n=name, **k: calls.append(_n) or _o(*a, **k))
    for line in ("set p2pmem=", "set p2pmem=0000:0", "set device path=", "set "):
        assert sh.complete(line, NS1)
    assert calls == []


# -- errors and scripts -------------------------------------------------------------------------

def test_bad_input_is_refused_before_staging(sh):
    for cmd, words in (("/subsystems create bad/name", "must not contain '/'"),
                       (f"{NS1} set p2pmem=1", "No such path"),
                       ("cd /nowhere", "No such path"),
                       ("frobnicate", "Command not found"),
                       ("/ports create 70000", "out of range")):
        rc, _, err = sh.run(cmd)
        assert rc == 1 and words in err and "Traceback" not in err, (cmd, err)
    sh.ok(*BUILD[:2])
    for val, words in (("auto", "refused by the kernel"), ("03:00.0", "lacks the PCI domain"),
                       ("0000:09:00.0", "not a PCI device of this machine")):
        rc, _, err = sh.run(f"{NS1} set p2pmem={val}")
        assert rc == 1 and words in err and "nothing was changed" in err, (val, err)
    assert len(sh.session.edits) == 2


#: every spelling of a boolean the kernel's kstrtobool() takes for p2pmem (its first character
#: decides, plus on/off), and what the namespace's verdict then says
P2PMEM_TRUE = ("1", "y", "Y", "yes", "t", "T", "true", "on", "ON", "On")
P2PMEM_FALSE = ("0", "n", "N", "no", "f", "F", "false", "off", "OFF")


@pytest.mark.parametrize("value", P2PMEM_TRUE + P2PMEM_FALSE + ("0000:03:00.0", "0000:04:00.0"))
def test_set_p2pmem_takes_every_value_the_kernel_takes(sh, value):
    """`set p2pmem=on` once ended in 'internal error: ImportError' (the verdict imported
    kstrtobool from where it no longer was): every accepted value is staged and judged."""
    sh.ok(*BUILD[:2], "commit")
    rc, out, err = sh.run(f"{NS1} set p2pmem={value}", f"cd {NS1}", "ls")
    assert rc == 0 and "internal error" not in err + out, err
    assert sh.session.view.subsystems[S].namespaces[1].attrs["p2pmem"] == value
    if value in P2PMEM_FALSE:
        assert "p2p off" in out
    elif value in P2PMEM_TRUE:
        assert "p2pmem=1 kernel picks" in out
    else:
        assert f"p2pmem={value} bus_addr distance" in out


@pytest.mark.parametrize("value,words", [
    ("auto", "refused by the kernel"), ("03:00.0", "lacks the PCI domain"),
    ("0000:09:00.0", "not a PCI device of this machine"),
    ("0000:01:00.0", "has no p2p memory"),
    ("0000:0A:00.0", "write the full PCI name 0000:0a:00.0"),
    ("10", "neither 0, 1 nor a full PCI BDF"), ("01", "neither 0, 1 nor a full PCI BDF"),
    ("2", "neither 0, 1 nor a full PCI BDF"), ("maybe", "neither 0, 1 nor a full PCI BDF"),
    ("o", "neither 0, 1 nor a full PCI BDF"),
])
def test_set_p2pmem_refuses_what_the_kernel_refuses(sh, value, words):
    sh.ok(*BUILD[:2])
    rc, out, err = sh.run(f"{NS1} set p2pmem={value}")
    assert rc == 1 and words in err and "internal error" not in err, err
    assert len(sh.session.edits) == 2


def test_script_stops_at_the_first_error(sh):
    rc, out, err = sh.run(f"/subsystems create {S}", "set attr bogus=1", f"/subsystems create {S}-2")
    assert rc == 1
    assert "nvmet-p2p shell: error: command 2: `set attr bogus=1`" in err
    assert f"{S}-2" not in sh.session.view.subsystems and sh.cfs.writes == 0


def test_script_ending_with_staged_changes_fails_and_writes_nothing(sh):
    rc, _, err = sh.run(f"/subsystems create {S}", finish=True)
    assert rc == 1 and "not committed: nothing of it was written" in err and sh.cfs.writes == 0
    rc, _, err = sh.run("exit")
    assert rc == 1 and "before `exit`" in err


def test_current_node_survives_deleting_it(sh):
    sh.ok(*BUILD, "commit")
    sh.ok(f"cd {NS1}", f"/subsystems delete {S}", "pwd")
    assert sh.app.shell._current_node.path == "/subsystems"
    sh.ok("abort")


def test_cli_runs_commands_with_clean_errors(tmp_path):
    root = tmp_path / "root"
    FakeNvmet(str(root))
    env = {**os.environ, "NVMET_P2P_STATE_DIR": str(tmp_path / "st"), "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "nvmet_p2p", "shell", "--root", str(root)]
    r = subprocess.run(cmd + ["-c", f"/subsystems create {S}; commit; ls /subsystems"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert S in r.stdout and os.path.isdir(root / f"sys/kernel/config/nvmet/subsystems/{S}")
    r = subprocess.run(cmd, input="cd /ports\ncreate x\n", capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "line 2: `create x`: port id 'x' is not a number" in r.stderr
    assert "Traceback" not in r.stderr


# -- the user's state directory -----------------------------------------------------------------

def test_state_dir_is_private(tmp_path):
    d = tmp_path / "s"
    assert secure_dir(str(d)) == (True, None)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    os.chmod(d, 0o777)
    ok, note = secure_dir(str(d))
    assert ok and "made it 0700" in note and stat.S_IMODE(os.stat(d).st_mode) == 0o700
    os.symlink(d, tmp_path / "link")
    ok, note = secure_dir(str(tmp_path / "link"))
    assert not ok and "not a directory" in note


def test_bookmarks_persist_as_json_not_pickle(tmp_path):
    sd = tmp_path / "st"
    secure_dir(str(sd))
    sh = Shell(tmp_path)
    sh.app = ShellApp(sh.session, sh.app.p2p, out=sh.out, err=sh.err, state_path=str(sd))
    sh.ok("cd /ports", "bookmarks add p")
    assert json.load(open(sd / "prefs.json"))["bookmarks"] == {"p": "/ports"}
    assert stat.S_IMODE(os.stat(sd / "prefs.json").st_mode) == 0o600
    assert not (sd / "prefs.bin").exists()
    again = ShellApp(sh.session, sh.app.p2p, out=sh.out, err=sh.err, state_path=str(sd))
    again.run_script([("c1", "cd @p")])
    assert again.shell._current_node.path == "/ports"


def test_ctrl_c_during_commit_rolls_back_and_keeps_the_changes(sh, monkeypatch):
    import signal

    from nvmet_p2p.nvmet import apply as apply_mod
    real = apply_mod.Applier._run
    presses = []

    def run(self, op):
        if op.action == "write" and op.attr == "p2pmem" and not presses:
            presses.append(1)
            os.kill(os.getpid(), signal.SIGINT)          # the user presses Ctrl-C mid-apply
        return real(self, op)
    monkeypatch.setattr(apply_mod.Applier, "_run", run)
    before = dump(sh.cfs)
    rc, _, err = sh.run(*BUILD, "commit")
    assert rc == 1 and "SIGINT after step" in err and "configfs is as before" in err
    assert dump(sh.cfs) == before and len(sh.session.edits) == 4     # undone, still staged
    assert "Committed: 5 configfs writes" in sh.ok("commit")          # and the shell goes on


def test_port_children_and_passthru(sh):
    out = sh.ok("/ports create 2", "/ports/2 set addr trtype=tcp adrfam=ipv4 traddr=10.77.0.1 trsvcid=4421",
                "/ports/2/ana_groups create", "/ports/2/ana_groups/2 set ana state=non-optimized",
                "/ports/2/referrals create r1",
                "/ports/2/referrals/r1 set addr trtype=tcp adrfam=ipv4 traddr=10.77.0.9 trsvcid=4420 portid=7",
                "/ports/2/referrals/r1 enable", f"/subsystems create {S}",
                f"/subsystems/{S}/passthru set device path=/dev/nvme0", "ls /ports", "commit")
    assert "Created ANA group 2." in out and "tcp" in out
    live = read_state(sh.cfs)
    assert live.ports[2].ana_groups[2] == "non-optimized"
    assert live.ports[2].referrals["r1"].enable and live.ports[2].referrals["r1"].attrs["addr_portid"] == "7"
    assert live.subsystems[S].passthru["device_path"] == "/dev/nvme0"
    rc, _, err = sh.run("/ports/2/ana_groups delete 1")
    assert rc == 1 and "belongs to the kernel" in err
    sh.ok("/ports delete 2", "commit")
    assert 2 not in read_state(sh.cfs).ports
