"""The files nvmet-p2p writes as root (issue 19.1, 19.2, 19.7, 19.8's lock, 22.4, 22.5):
the state directory is used only when it is safe, nothing in it or at the saved file is ever
followed, blocked on, truncated by a waiter or read unbounded, records that cannot be read
never fail a reader, and the journal, the managed set and a saved file are fsynced before
their rename and their directory after it.

Every test works on plain directories and the fake configfs (tests/support/fakenvmet.py);
the ownership tests chown to another uid and need root (skipped, and why, otherwise)."""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc

import pytest

from nvmet_p2p import cli
from nvmet_p2p.errors import Busy, NvmetP2PError
from nvmet_p2p.nvmet import journal as jr
from nvmet_p2p.nvmet import lastapply, statefile
from nvmet_p2p.nvmet.apply import ManagedStore, apply_lock, reconcile
from nvmet_p2p.nvmet.configfs import ConfigfsError, read_state
from nvmet_p2p.nvmet.degraded import DegradedStore
from support.fakenvmet import FakeNvmet

# the command modules are imported before a test patches nvmet_p2p.nvmet.apply.open_configfs:
# one imported while it is patched would keep the patched function
for _name in ("apply", "plan", "restore", "save", "status"):
    importlib.import_module(f"nvmet_p2p.commands.{_name}")

H1 = "nqn.2014-08.org.nvmexpress:uuid:host1"
H2 = "nqn.2014-08.org.nvmexpress:uuid:host2"
S1 = "nqn.2026-11.io.lab:s1"
ONE = {"hosts": [{"nqn": H1}]}
TWO = {"hosts": [{"nqn": H1}, {"nqn": H2}]}
ROOT = os.geteuid() == 0
NEEDS_ROOT = pytest.mark.skipif(not ROOT, reason="chown to another uid (or mknod, setpriv) "
                                                 "needs root; this run is not root")


@pytest.fixture
def env(tmp_path):
    return FakeNvmet(str(tmp_path / "root")), tmp_path / "state"


def go(env, doc, **kw):
    cfs, sd = env
    return reconcile(cfs.root, statefile.parse(doc), str(sd), cfs=cfs, lock_timeout=0, **kw)


def victim(tmp_path, text="precious\n", mode=0o644):
    v = tmp_path / "victim"
    v.write_text(text)
    os.chmod(v, mode)
    return v


def untouched(v, text="precious\n", mode=0o644) -> bool:
    return v.read_text() == text and stat.S_IMODE(os.stat(v).st_mode) == mode


@contextlib.contextmanager
def no_block(seconds=10):
    """Fail (TimeoutError) instead of hanging when the block blocks."""
    def late(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, late)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------------------------
# 19.1: the state directory is used only when it is safe
# ----------------------------------------------------------------------------------------------

@NEEDS_ROOT
def test_a_state_directory_of_another_user_is_refused_with_the_fix(env):
    cfs, sd = env
    sd.mkdir(mode=0o700)
    os.chown(sd, 1000, 1000)
    with pytest.raises(NvmetP2PError, match="belongs to uid 1000, not to root") as e:
        go(env, ONE)
    assert "chown root:root" in str(e.value) and "--state-dir DIR" in str(e.value)
    assert cfs.writes == 0 and os.listdir(sd) == []


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o720])
def test_a_state_directory_others_can_write_is_refused_with_the_fix(env, mode):
    cfs, sd = env
    sd.mkdir()
    os.chmod(sd, mode)
    with pytest.raises(NvmetP2PError, match=f"writable by .*mode {mode:04o}.*chmod 0700"):
        go(env, ONE)
    assert cfs.writes == 0 and os.listdir(sd) == []


def test_a_readable_state_directory_is_used_and_a_new_one_is_private(env, tmp_path):
    cfs, sd = env
    go(env, ONE)
    assert stat.S_IMODE(os.stat(sd).st_mode) == 0o700
    os.chmod(sd, 0o755)
    go(env, TWO)
    assert ManagedStore(str(sd)).load().hosts == {H1, H2}


def test_a_symlinked_state_directory_is_refused(env, tmp_path):
    cfs, sd = env
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.symlink(real, sd)
    with pytest.raises(NvmetP2PError, match="is a symbolic link, not a directory"):
        go(env, ONE)
    assert cfs.writes == 0 and os.listdir(real) == []


def test_the_lock_is_never_followed_nor_truncated(env, tmp_path):
    """A symlink (or a second hard link) as ``lock`` made any apply truncate its target."""
    cfs, sd = env
    sd.mkdir(mode=0o700)
    v = victim(tmp_path)
    os.symlink(v, sd / "lock")
    with pytest.raises(NvmetP2PError, match="lock: is a symbolic link"):
        go(env, {})                                 # an apply that changes nothing
    os.unlink(sd / "lock")
    os.link(v, sd / "lock")
    with pytest.raises(NvmetP2PError, match="2 hard links"):
        go(env, {})
    assert untouched(v)


def test_backup_rotation_never_follows_or_chmods_a_symlink(env, tmp_path):
    cfs, sd = env
    go(env, ONE)
    v = victim(tmp_path)
    os.symlink(v, sd / "managed.json.1")
    go(env, TWO)                                    # the managed set changes: a backup is made
    assert untouched(v)
    assert not os.path.islink(sd / "managed.json.1")
    assert json.loads((sd / "managed.json.1").read_text())["hosts"] == [H1]


def test_a_symlinked_managed_set_is_refused_and_its_target_untouched(env, tmp_path):
    cfs, sd = env
    sd.mkdir(mode=0o700)
    v = victim(tmp_path, "{}\n")
    os.symlink(v, sd / "managed.json")
    with pytest.raises(NvmetP2PError, match="managed.json: is a symbolic link"):
        go(env, ONE)
    assert untouched(v, "{}\n") and cfs.writes == 0


# ----------------------------------------------------------------------------------------------
# 19.2: the saved file; FIFOs and devices; parent directories
# ----------------------------------------------------------------------------------------------

def test_save_onto_a_symlink_is_refused_and_its_target_untouched(env, tmp_path):
    cfs, _ = env
    go(env, ONE)
    v = victim(tmp_path)
    link = tmp_path / "config.json"
    os.symlink(v, link)
    with pytest.raises(NvmetP2PError, match="config.json: is a symbolic link"):
        statefile.save(read_state(cfs), str(link))
    assert untouched(v) and os.path.islink(link) and not os.path.lexists(f"{link}.1")
    os.unlink(link)
    os.symlink("/dev/zero", link)                   # once read whole: memory exhausted
    with no_block(), pytest.raises(NvmetP2PError, match="is a symbolic link"):
        statefile.save(read_state(cfs), str(link))


def test_saved_file_backups_never_follow_a_planted_link(env, tmp_path):
    cfs, _ = env
    f = tmp_path / "etc" / "config.json"
    statefile.save(read_state(cfs), str(f))
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for v in (v1, v2):
        v.write_text("precious\n")
        os.chmod(v, 0o644)
    os.symlink(v1, f"{f}.1")
    os.symlink(v2, f"{f}.2")
    for doc in (ONE, TWO):
        go(env, doc)
        statefile.save(read_state(cfs), str(f))
    assert untouched(v1) and untouched(v2)
    assert not os.path.islink(f"{f}.1") and not os.path.islink(f)
    assert stat.S_IMODE(os.stat(f"{f}.1").st_mode) == 0o600


def _special(path, kind):
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))     # /dev/zero's numbers


@pytest.mark.parametrize("kind", ["fifo", pytest.param("device", marks=NEEDS_ROOT)])
@pytest.mark.parametrize("name", ["managed.json", "lock", "journal.json"])
def test_a_fifo_or_device_in_the_state_directory_is_refused_without_blocking(env, name, kind):
    """A FIFO as managed.json made apply block forever holding the lock."""
    cfs, sd = env
    sd.mkdir(mode=0o700)
    _special(sd / name, kind)
    with no_block(), pytest.raises(NvmetP2PError, match=f"{name}: is a (FIFO|character device)"):
        go(env, ONE)
    assert cfs.writes == 0


@pytest.mark.parametrize("kind", ["fifo", pytest.param("device", marks=NEEDS_ROOT)])
def test_a_fifo_or_device_as_the_saved_file_is_refused_without_blocking(env, tmp_path, kind):
    cfs, _ = env
    f = tmp_path / "config.json"
    _special(f, kind)
    with no_block(), pytest.raises(NvmetP2PError, match="config.json: is a (FIFO|character device)"):
        statefile.save(read_state(cfs), str(f))


def test_missing_parents_are_created_0755_whatever_the_umask(env, tmp_path):
    cfs, _ = env
    old = os.umask(0)
    try:
        statefile.save(read_state(cfs), str(tmp_path / "a/b/c/config.json"))
        go((cfs, tmp_path / "x/y/state"), ONE)
    finally:
        os.umask(old)
    modes = {d: stat.S_IMODE(os.stat(tmp_path / d).st_mode) for d in ("a", "a/b", "a/b/c", "x", "x/y")}
    assert modes == dict.fromkeys(modes, 0o755)
    assert stat.S_IMODE(os.stat(tmp_path / "x/y/state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a/b/c/config.json").st_mode) == 0o600


# ----------------------------------------------------------------------------------------------
# 19.7: bounded reads; records that cannot be read never fail a reader
# ----------------------------------------------------------------------------------------------

def test_reads_of_the_state_directory_are_bounded(env, tmp_path):
    cfs, sd = env
    sd.mkdir(mode=0o700)
    (sd / "managed.json").write_text(" " * (17 << 20) + "{}")      # valid JSON, 17 MiB
    with pytest.raises(NvmetP2PError, match="unreadable managed-set file.*limit"):
        ManagedStore(str(sd)).load()
    os.unlink(sd / "managed.json")
    with open(sd / "journal.json", "wb") as f:                      # 1 GiB, sparse
        f.truncate(1 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(NvmetP2PError, match="journal is damaged"):
            jr.load(str(sd))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20), f"{peak} bytes allocated to refuse a 1 GiB journal"


DAMAGED = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "type": "[1, 2, 3]",
    "values": json.dumps({"time": "soon", "result": {}, "source": [], "entries": [{"since": "x"}],
                          "hosts": 5}),
    "big": " " * (17 << 20) + "{}",
    "bytes": "\udcff",
}


@pytest.fixture
def machine(tmp_path):
    from nvmet_p2p import automation
    from support import sysfs as sf
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    cfs = FakeNvmet(str(root))
    sd = tmp_path / "state"
    automation.apply(automation.desired_from(state_content={"hosts": [{"nqn": H1}], "subsystems": [
        {"nqn": S1, "attr": {"allow_any_host": "1"}, "namespaces": []}]}), root=str(root),
        state_dir=str(sd), cfs=cfs)
    return root, sd


@pytest.mark.parametrize("damage", sorted(DAMAGED))
@pytest.mark.parametrize("record", ["degraded.json", "last-apply.json", "managed.json"])
def test_a_damaged_record_never_fails_status_or_metrics(machine, record, damage, capsys):
    """A deeply nested degraded.json or last-apply.json made status and metrics exit 70 and the
    exporter answer 500 on every scrape."""
    from nvmet_p2p.observe import metrics as M
    root, sd = machine
    (sd / record).write_bytes(DAMAGED[damage].encode("utf-8", "surrogateescape"))
    for argv in (["status", "--json"], ["metrics", "--no-doctor"]):
        rc = cli.main([*argv, "--root", str(root), "--state-dir", str(sd)])
        out, err = capsys.readouterr()
        assert rc in (0, 1) and "internal error" not in err, (argv, err)
        if argv[0] == "status":
            doc = json.loads(out)
            assert [s["nqn"] for s in doc["subsystems"]] == [S1]
            if record != "last-apply.json":
                assert any("unreadable" in n for n in doc["notes"]), doc["notes"]
        else:
            assert "nvmet_p2p_subsystems" in out
    # the exporter's path: the registry every scrape collects
    col = M.TargetCollector(str(root), state_dir=str(sd), doctor=False)
    text = M.exposition(col)
    assert "nvmet_p2p_build_info" in text
    if record == "last-apply.json":
        assert 'nvmet_p2p_collector_success{collector="last_apply"} 0.0' in text
        assert "unreadable last-apply record" in col.errors["last_apply"]


def test_the_state_file_limit_is_16_mib(tmp_path):
    """A state file just under the old 64 MiB limit (180,000 namespaces) took 39 s and 0.6 GB
    to plan on the development host (docs/dev/state-file-limit.md); 16 MiB is the bound."""
    from nvmet_p2p.errors import InputError
    f = tmp_path / "s.json"
    body = json.dumps(ONE)
    f.write_text(body + " " * ((16 << 20) - len(body)))
    assert statefile.load(str(f)).hosts.keys() == {H1}
    f.write_text(body + " " * ((16 << 20) - len(body) + 1))
    with pytest.raises(InputError, match="is 16777217 bytes; the limit for this kind of file is 16777216"):
        statefile.load(str(f))


# ----------------------------------------------------------------------------------------------
# 19.8: the lock holder's record is kept
# ----------------------------------------------------------------------------------------------

def test_a_refused_waiter_keeps_the_holders_record(tmp_path):
    sd = str(tmp_path / "state")
    with apply_lock(sd, 0) as lock:
        record = open(lock).read()
        assert record.startswith(f"pid {os.getpid()} (nvmet-p2p") and " since " in record
        for _ in range(3):
            with pytest.raises(Busy, match=rf"running \(pid {os.getpid()} \(nvmet-p2p.* since "):
                apply_lock(sd, 0).__enter__()
            assert open(lock).read() == record
    assert open(lock).read() == ""                  # released: nobody holds it


# ----------------------------------------------------------------------------------------------
# 19 (missing tests): fsync before the rename, the directory after it
# ----------------------------------------------------------------------------------------------

def _fd_path(fd):
    return os.readlink(f"/proc/self/fd/{fd}")


def _at(path, dir_fd):
    return os.path.join(_fd_path(dir_fd), path) if dir_fd is not None else os.path.abspath(path)


@pytest.fixture
def syscalls(monkeypatch):
    """Every fsync (by the path of its descriptor), rename and unlink, in order, on the real
    code path (the calls go through)."""
    calls = []
    real_fsync, real_replace, real_rename, real_unlink = os.fsync, os.replace, os.rename, os.unlink

    def fsync(fd):
        calls.append(("fsync", _fd_path(fd)))
        return real_fsync(fd)

    def replace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        calls.append(("rename", _at(src, src_dir_fd), _at(dst, dst_dir_fd)))
        return real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        calls.append(("rename", _at(src, src_dir_fd), _at(dst, dst_dir_fd)))
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def unlink(path, *, dir_fd=None):
        calls.append(("unlink", _at(path, dir_fd)))
        return real_unlink(path, dir_fd=dir_fd)
    for name, fn in (("fsync", fsync), ("replace", replace), ("rename", rename), ("unlink", unlink)):
        monkeypatch.setattr(os, name, fn)
    return calls


def assert_durable(calls, final):
    """The last rename onto ``final``: its source fsynced before, ``final``'s directory after."""
    final = os.path.realpath(final)
    i = max(n for n, c in enumerate(calls) if c[0] == "rename" and os.path.realpath(c[2]) == final)
    src = calls[i][1]
    assert ("fsync", os.path.realpath(src)) in [(c[0], os.path.realpath(c[1])) for c in calls[:i]], \
        f"{src} renamed onto {final} without an fsync first: {calls[:i + 1]}"
    assert ("fsync", os.path.dirname(final)) in calls[i + 1:], \
        f"{os.path.dirname(final)} not fsynced after the rename onto {final}: {calls[i:]}"


def test_journal_managed_set_and_saved_file_are_fsynced_around_their_rename(env, tmp_path, syscalls):
    cfs, sd = env
    seen = {}
    real_finish = jr.finish

    def finish(directory):                  # the journal's rename is done before its removal
        seen["journal"] = list(syscalls)
        return real_finish(directory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jr, "finish", finish)
        mp.setattr("nvmet_p2p.nvmet.apply.jr.finish", finish)
        go(env, ONE)
    assert_durable(seen["journal"], sd / "journal.json")
    assert_durable(syscalls, sd / "managed.json")
    removed = max(n for n, c in enumerate(syscalls) if c == ("unlink", str(sd / "journal.json")))
    assert ("fsync", str(sd)) in syscalls[removed + 1:], "journal removed without an fsync of the directory"
    f = tmp_path / "etc" / "config.json"
    statefile.save(read_state(cfs), str(f))
    assert_durable(syscalls, f)


# ----------------------------------------------------------------------------------------------
# 22.4: nothing that fails before the first write creates the state directory or a record
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def cli_env(env, monkeypatch):
    cfs, sd = env
    monkeypatch.setattr("nvmet_p2p.nvmet.apply.open_configfs", lambda root, load_module=True: cfs)
    return cfs, sd


def run(*argv):
    return cli.main(list(argv))


def test_a_failure_before_the_first_write_creates_and_replaces_nothing(cli_env, tmp_path, capsys):
    cfs, sd = cli_env
    assert run("restore", str(tmp_path / "nonexist.json"), "--root", cfs.root, "--state-dir", str(sd)) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"hosts": [{"nqn": 5}]}')
    assert run("apply", "--state", str(bad), "--root", cfs.root, "--state-dir", str(sd)) == 2
    assert not sd.exists()                          # a typo on a fresh host: nothing created
    good = tmp_path / "good.json"
    good.write_text(json.dumps(ONE))
    assert run("apply", "--state", str(good), "--root", cfs.root, "--state-dir", str(sd)) == 0
    record = (sd / "last-apply.json").read_bytes()
    assert run("restore", str(tmp_path / "nonexist.json"), "--root", cfs.root, "--state-dir", str(sd)) == 2
    assert run("apply", "--state", str(bad), "--root", cfs.root, "--state-dir", str(sd)) == 2
    with apply_lock(str(sd), 0):
        assert run("apply", "--state", str(good), "--root", cfs.root, "--state-dir", str(sd),
                   "--lock-timeout", "0") == 3
    assert (sd / "last-apply.json").read_bytes() == record   # the real last apply is kept
    capsys.readouterr()
    refused = tmp_path / "refused.json"             # a kernel refusal reached configfs: recorded
    refused.write_text(json.dumps(TWO))
    real_mut = cfs._mut

    def mut(op, rel, fn, *extra):                   # (a missing device is refused before any
        if (op, rel) == ("mkdir", f"hosts/{H2}"):  # write by the machine checks: the kernel
            raise ConfigfsError(op, rel, OSError(errno.ENOMEM, os.strerror(errno.ENOMEM)))
        return real_mut(op, rel, fn, *extra)        # refuses the host here instead)
    cfs._mut = mut
    assert run("apply", "--state", str(refused), "--root", cfs.root, "--state-dir", str(sd)) == 1
    rec = lastapply.load(str(sd))
    assert rec.result == "failed" and rec.error_kind == "kernel"


# ----------------------------------------------------------------------------------------------
# 22.5: the host's refusals are user errors with the fix, never "a bug"
# ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(not ROOT or not os.path.exists("/usr/bin/setpriv"),
                    reason="runs nvmet-p2p as uid 65534 with setpriv: needs root and setpriv")
def test_not_root_is_a_user_error_with_the_fix():
    base = tempfile.mkdtemp(prefix="nvmet-p2p-notroot-")
    try:
        os.chmod(base, 0o755)
        root = os.path.join(base, "root")
        for d in ("subsystems", "ports", "hosts"):
            os.makedirs(os.path.join(root, "sys/kernel/config/nvmet", d))
        sd = os.path.join(base, "state")
        os.mkdir(sd, 0o700)
        state = os.path.join(base, "s.json")
        with open(state, "w") as f:
            json.dump(ONE, f)
        os.chmod(state, 0o644)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NVMET_P2P_")}
        env["HOME"] = base
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
        for argv in (["apply", "--state", state], ["save", os.path.join(base, "c.json")],
                     ["plan", "--state", state]):
            r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                sys.executable, "-m", "nvmet_p2p", *argv, "--root", root,
                                "--state-dir", sd], capture_output=True, text=True, env=env, cwd=base)
            assert r.returncode == 1, (argv, r.stderr)
            assert "run nvmet-p2p as root" in r.stderr and "--state-dir DIR" in r.stderr, r.stderr
            assert "internal error" not in r.stderr and "unreadable managed-set" not in r.stderr
        assert os.listdir(sd) == []
    finally:
        subprocess.run(["rm", "-rf", base], check=True)


@pytest.mark.parametrize("err,words", [(28, "filesystem is full"), (30, "mounted read-only"),
                                       (13, "run nvmet-p2p as root")])
def test_a_full_or_read_only_filesystem_is_a_user_error(cli_env, tmp_path, capsys, monkeypatch, err, words):
    from nvmet_p2p import safefs
    cfs, sd = cli_env

    def refuse(fd, data):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(safefs, "_write_all", refuse)
    rc = run("save", str(tmp_path / "c.json"), "--root", cfs.root, "--state-dir", str(sd))
    out = capsys.readouterr().err
    assert rc == 1 and words in out and "give another FILE" in out and "internal error" not in out
    rc = run("apply", "--state", str(tmp_path / "x.json"), "--root", cfs.root, "--state-dir", str(sd))
    assert rc == 2                                   # (no such file: an input error, before)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(ONE))
    rc = run("apply", "--state", str(good), "--root", cfs.root, "--state-dir", str(sd))
    out = capsys.readouterr().err
    assert rc == 1 and words in out and "--state-dir DIR" in out and "internal error" not in out
    assert cfs.writes == 0                           # the journal could not be written: no step


def test_a_refusal_anywhere_else_is_still_not_called_a_bug(cli_env, capsys, monkeypatch):
    from nvmet_p2p.commands import save

    def refused(*a, **k):
        raise PermissionError(13, "Permission denied", "/sys/kernel/config/nvmet/hosts/x/dhchap_key")
    monkeypatch.setattr(save, "read_state", refused)
    cfs, sd = cli_env
    rc = run("save", "--root", cfs.root, "--state-dir", str(sd))
    err = capsys.readouterr().err
    assert rc == 1 and "dhchap_key" in err and "run nvmet-p2p as root" in err
    assert "this is a bug" not in err


# ----------------------------------------------------------------------------------------------
# 21's paths leaf: one place for every default path and variable, one lock timeout
# ----------------------------------------------------------------------------------------------

def test_one_module_spells_every_default_path_and_variable():
    """``/var/lib/nvmet-p2p`` and ``/etc/nvmet/config.json`` were spelled four times each, the
    variables in every module that read one: now only nvmet_p2p/paths.py does (docstrings and
    comments may name them)."""
    import ast
    import pathlib
    import re

    import nvmet_p2p
    pkg = pathlib.Path(nvmet_p2p.__file__).parent
    spelled = re.compile(r"NVMET_P2P_[A-Z_]+|/var/lib/nvmet-p2p|/etc/nvmet\b|/etc/systemd/system")
    hits = []
    for path in sorted(pkg.rglob("*.py")):
        if path.name == "paths.py" and path.parent == pkg:
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and n.body and isinstance(n.body[0], ast.Expr)
                and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                for m in spelled.finditer(node.value):
                    hits.append(f"{path.relative_to(pkg)}:{node.lineno}: {m.group(0)}")
    assert hits == []


def test_one_lock_timeout_for_the_command_line_and_the_library(env, monkeypatch):
    """The engine waited 0 s by default and the CLI 30 s: an Ansible apply racing the watcher
    failed at once. Now both wait (30 s), and say so."""
    from nvmet_p2p.commands._target import lock_timeout
    monkeypatch.delenv("NVMET_P2P_LOCK_TIMEOUT", raising=False)

    class Args:
        lock_timeout = None
    assert lock_timeout(Args()) == 30
    cfs, sd = env
    said = []
    held = threading.Event()

    def hold():
        with apply_lock(str(sd), 0):
            held.set()
            time.sleep(0.5)
    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    out = reconcile(cfs.root, statefile.parse(ONE), str(sd), cfs=cfs, progress=said.append)
    t.join()
    assert out.applied and any("waiting up to 30 s for the lock held by pid" in s for s in said), said


# ----------------------------------------------------------------------------------------------
# the shell's own directory: the same checks
# ----------------------------------------------------------------------------------------------

@NEEDS_ROOT
def test_the_shell_history_directory_has_the_state_directory_checks(tmp_path):
    from nvmet_p2p.shell.app import secure_dir
    d = tmp_path / "hist"
    d.mkdir(mode=0o700)
    os.chown(d, 1000, 1000)
    ok, note = secure_dir(str(d))
    assert not ok and "belongs to uid 1000" in note
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with no_block():
        ok, note = secure_dir(str(fifo))
    assert not ok and "is a FIFO, not a directory" in note
    own = tmp_path / "own"
    ok, note = secure_dir(str(own))
    assert ok and note is None
    with no_block():
        os.mkfifo(own / "prefs.json")
        from nvmet_p2p.shell.app import JsonPrefs
        p = JsonPrefs()
        p.load_json(str(own / "prefs.json"))        # a FIFO: ignored, not waited on
    assert isinstance(DegradedStore(str(own)).load(), dict)
