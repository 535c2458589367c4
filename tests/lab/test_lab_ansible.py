"""Lab tier: the Ansible collection nvmet_p2p.target against the real nvmet configfs, with the
real ``ansible-playbook -c local`` (ansible-core from the checkout's .venv).

Check mode makes no configfs write (an inotify watch on every directory of the nvmet tree sees
no modify, create or delete while the check-mode play runs, and it does see the writes of the
real apply that follows), the apply creates the exports the profile describes, a second run
reports ``changed=false`` and writes nothing, and a step the kernel refuses fails the task with
the kernel's own line and leaves configfs as it was. All in one play of four tasks: under TCG
ansible-playbook's start-up and every task cost tens of seconds.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
import time

import pytest

from labutil import devmap

pytestmark = pytest.mark.lab

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROFILE = os.path.join(CHECKOUT, "profiles", "lab-default.yaml")
CFG = "/sys/kernel/config/nvmet"
CMB = "nqn.2026-01.io.nvmet-p2p:lab-cmb"
BIN = os.path.dirname(sys.executable)


# ----------------------------------------------------------------------------------------------
# inotify on configfs: vfs_write() calls fsnotify_modify() for every file system, configfs too
# ----------------------------------------------------------------------------------------------

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE = 0x100, 0x200
IN_NONBLOCK = 0o4000
WRITES = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE


class Watch:
    """Every directory of the nvmet tree watched for writes, creations and deletions."""

    def __init__(self, top: str = CFG):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.dirs = {}
        for dirpath, dirnames, _ in os.walk(top):
            wd = self.libc.inotify_add_watch(self.fd, dirpath.encode(), WRITES)
            assert wd >= 0, (dirpath, os.strerror(ctypes.get_errno()))
            self.dirs[wd] = dirpath
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]

    def events(self) -> list[str]:
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode()
                out.append(f"{mask:#x} {self.dirs.get(wd, '?')}/{name}")
                i += 16 + n

    def close(self):
        os.close(self.fd)


# ----------------------------------------------------------------------------------------------
# Running playbooks
# ----------------------------------------------------------------------------------------------

def env(**extra) -> dict:
    """ansible-playbook's environment: the checkout's collection, and pipelining (the module
    goes to the interpreter's stdin: no temporary directory, copy, chmod and rm per task, each
    a shell under TCG)."""
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=CHECKOUT, ANSIBLE_NOCOLOR="1",
                ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
                PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
                **{"ANSIBLE_PIPELINING": "1", **extra})


def dump() -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(CFG):
        for n in dirnames + filenames:
            q = os.path.join(dirpath, n)
            if os.path.islink(q):
                out[q] = "-> " + os.readlink(q)
            elif os.path.isfile(q) and os.stat(q).st_mode & 0o444:
                try:
                    with open(q) as f:
                        out[q] = f.read()
                except OSError as exc:
                    out[q] = f"<{exc.errno}>"
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


def refused_state() -> dict:
    """A namespace on the plain NVMe with p2pmem pinned to a CMB: the kernel refuses it at
    enable (the path goes through the q35 host bridge, which is not whitelisted)."""
    dm = devmap()
    cmbs = sorted(v["bdf"] for v in dm["nvme"].values() if v.get("p2pmem"))
    plain = next(v for v in dm["nvme"].values() if not v.get("p2pmem") and v["namespaces"])
    return {"hosts": [], "ports": [],
            "subsystems": [{"nqn": "nqn.2026-11.io.lab:ansible-refused",
                            "attr": {"allow_any_host": "1"},
                            "namespaces": [{"nsid": 1, "enable": 1,
                                            "device": {"path": plain["namespaces"][0]},
                                            "p2pmem": cmbs[0]}]}]}


#: one play, the four apply tasks and nothing else: under TCG every task costs ansible-core
#: tens of seconds (a worker fork, the module packaged and started in a fresh Python), so the
#: results and each task's start time come from the callback below, not from extra tasks
PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: "{python}"
    apply_args: &apply {{profile: "{profile}", state_dir: "{sd}"}}
  tasks:
    - name: check
      nvmet_p2p.target.apply: *apply
      check_mode: true
      diff: true
    - name: apply
      nvmet_p2p.target.apply: *apply
    - name: again
      nvmet_p2p.target.apply: *apply
    - name: refused
      nvmet_p2p.target.apply:
        desired_state_content: {refused}
        state_dir: "{sd}"
      ignore_errors: true
"""

#: an aggregate callback (ansible-core's plugin API, runs in ansible-playbook itself): when
#: each task starts (the controller's clock, the same as the inotify thread's) and its result
RECORD = """
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "nvmet_p2p_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record = {"start": {}, "results": {}}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.record["start"][task.get_name()] = time.time()

    def v2_runner_on_ok(self, result, **kwargs):
        self.record["results"][result._task.get_name()] = dict(result._result, failed=False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self.record["results"][result._task.get_name()] = dict(result._result, failed=True)

    def v2_playbook_on_stats(self, stats):
        self.record["end"] = time.time()
        with open(os.environ["NVMET_P2P_TEST_RECORD"], "w") as f:
            json.dump(self.record, f, default=str)
"""

TASKS = ("check", "apply", "again", "refused")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if devmap() is None:
        pytest.skip("needs the lab (tools/lab/run): the real nvmet configfs")
    for m in ("nvmet", "nvmet-rdma", "nvmet-tcp", "nvme-rdma"):
        subprocess.run(["modprobe", m], check=False)
    assert os.path.isdir(CFG)
    tmp = tmp_path_factory.mktemp("ansible")
    yield tmp
    subprocess.run([sys.executable, "-m", "nvmet_p2p", "clear", "--state-dir", str(tmp / "state")],
                   capture_output=True)


def playbook(lab) -> subprocess.CompletedProcess:
    play = lab / "play.yml"
    play.write_text(PLAY.format(python=sys.executable, profile=PROFILE, sd=lab / "state",
                                refused=json.dumps(refused_state())))
    (lab / "callbacks").mkdir()
    (lab / "callbacks" / "nvmet_p2p_record.py").write_text(RECORD)
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c",
                           "local", str(play), "--diff"], capture_output=True, text=True,
                          timeout=1200, env=env(ANSIBLE_CALLBACK_PLUGINS=str(lab / "callbacks"),
                                                ANSIBLE_CALLBACKS_ENABLED="nvmet_p2p_record",
                                                NVMET_P2P_TEST_RECORD=str(lab / "record.json")))


@pytest.fixture(scope="module")
def played(lab):
    """The play above, run once, with an inotify watch on the whole nvmet tree (the events
    timestamped as they arrive, by a thread) and each task's events told apart by its start."""
    import threading
    w = Watch()
    seen: list[tuple[float, str]] = []
    stop = threading.Event()

    def follow():
        while not stop.is_set():
            seen.extend((time.time(), e) for e in w.events())
            time.sleep(0.02)
    t = threading.Thread(target=follow)
    t.start()
    try:
        r = playbook(lab)
    finally:
        stop.set()
        t.join()
        seen.extend((time.time(), e) for e in w.events())
        w.close()
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    rec = json.loads((lab / "record.json").read_text())
    res = {name: rec["results"][name] for name in TASKS}
    bounds = [rec["start"][name] for name in TASKS] + [rec["end"]]
    res["events"] = {name: [e for ts, e in seen if lo <= ts < hi]
                     for name, lo, hi in zip(TASKS, bounds, bounds[1:])}
    res["stdout"] = r.stdout
    res["dump_after"] = dump()
    return res


def test_check_mode_makes_no_configfs_write(played):
    res = played["check"]
    assert res["changed"] and res["configfs_writes"] == 0 and res["summary"]["create"] >= 4
    assert played["events"]["check"] == [], played["events"]["check"]
    assert f'"nqn": "{CMB}"' in res["diff"]["after"] and f'"nqn": "{CMB}"' not in res["diff"]["before"]
    assert "TASK [check]" in played["stdout"] and f'+      "nqn": "{CMB}"' in played["stdout"]


def test_apply_creates_the_exports(played):
    res = played["apply"]
    assert res["changed"] and res["configfs_writes"] == len(res["plan"]["ops"]) > 0
    created = [e for e in played["events"]["apply"] if int(e.split()[0], 16) & IN_CREATE]
    assert len(created) >= 5, played["events"]["apply"]       # hosts, subsystems, ports: mkdir seen
    placed = {d["nsid"]: d["p2pmem"] for d in res["placement"]["decisions"]
              if d["subsystem"] == CMB}
    assert len(placed) == 3
    for nsid, p2pmem in placed.items():
        ns = f"{CFG}/subsystems/{CMB}/namespaces/{nsid}"
        with open(f"{ns}/enable") as f:
            assert f.read().strip() == "1"
        with open(f"{ns}/p2pmem") as f:
            assert f.read().strip() == p2pmem, nsid
    assert os.path.islink(f"{CFG}/ports/1/subsystems/{CMB}")
    assert played["check"]["diff"]["after"] == res["diff"]["after"]   # on paper == read back


def test_a_second_run_changes_nothing(played):
    res = played["again"]
    assert not res["changed"] and res["configfs_writes"] == 0
    assert played["events"]["again"] == [], played["events"]["again"]


def test_the_watch_sees_an_attribute_write():
    """The positive control of the two "no event" assertions above: one write of an attribute
    (its own value again) is an IN_MODIFY on configfs."""
    path = f"{CFG}/subsystems/{CMB}/attr_allow_any_host"
    if not os.path.exists(path):
        pytest.skip("the play did not create the subsystem (see the failures above)")
    with open(path) as f:
        value = f.read().strip()
    w = Watch()
    try:
        with open(path, "w") as f:
            f.write(value)
        events = w.events()
    finally:
        w.close()
    assert any(int(e.split()[0], 16) & IN_MODIFY and e.endswith("/attr_allow_any_host")
               for e in events), events


def test_a_state_the_kernel_would_refuse_fails_before_any_write(played):
    """The refused desired state pins a CMB the kernel refuses for the drive (EINVAL at enable):
    the module's machine checks (the state-file checks of docs/export-policy.md) refuse it
    before the first configfs write, with the kernel's rule in the message; inotify sees no
    write at all. (A refusal only the kernel can make -- rolled back, its log line in the
    result -- is covered on the fake configfs by tests/test_automation.py.)"""
    res = played["refused"]
    assert res["failed"] and not res["changed"], res
    assert "the kernel refuses p2pmem provider" in res["msg"], res
    assert "enable fails with EINVAL" in res["msg"] and "nothing was changed" in res["msg"], res
    assert "Traceback" not in json.dumps(res)
    refused = refused_state()["subsystems"][0]["nqn"]
    assert played["events"]["refused"] == [], played["events"]["refused"]
    assert not any(refused in path for path in played["dump_after"])
