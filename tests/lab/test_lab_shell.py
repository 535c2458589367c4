"""Lab tier: ``nvmet-p2p shell`` against the real kernel, driven in a real terminal as a person
would: tmux runs the shell in a pseudo-terminal, the test types, presses Tab and reads the
screen (``capture-pane``). Configfs is checked directly, never through the project.

One session: create a subsystem and a namespace (the device path completed from the
``/dev/disk/by-id`` link, made by hand here the way udev names it: the lab guest runs no
udev), complete ``p2pmem`` (the providers the kernel accepts, ranked, with distance and free
space), ``diff`` (nothing written yet), ``commit`` (configfs has it); then a namespace on the
plain NVMe with a CMB behind the switch: the kernel refuses the enable, the commit is rolled
back with the kernel's own line on the screen, configfs is exactly as before, and the same
shell goes on to fix and commit. Plus the script mode on the real kernel.

(Soft-RoCE carries no p2p traffic: the verdicts here are the enable-time checks, which are
real; see tests/lab/test_lab_placement.py for what the lab cannot show.)
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labutil import devmap

pytestmark = pytest.mark.lab

CFG = "/sys/kernel/config/nvmet"
S = "nqn.2026-12.io.nvmet-p2p:shell-lab"
REPO = Path(__file__).resolve().parents[2]


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def dump() -> dict:
    """Every readable attribute and link under the nvmet tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(CFG):
        for n in dirnames + filenames:
            q = os.path.join(dirpath, n)
            if os.path.islink(q):
                out[q] = "-> " + os.path.basename(os.readlink(q))
            elif os.path.isfile(q) and os.stat(q).st_mode & 0o444:
                out[q] = read(q)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


class Terminal:
    """A tmux session on a private server: type, press keys, read the screen."""

    def __init__(self, sock: str, command: str, env: dict):
        self.sock = sock
        self.base = ["tmux", "-L", sock]
        subprocess.run(self.base + ["new-session", "-d", "-s", "t", "-x", "220", "-y", "50",
                                    command], env=env, check=True)
        subprocess.run(self.base + ["set-option", "-g", "history-limit", "20000"], check=True)
        self.mark = 0

    def type(self, text: str) -> None:
        subprocess.run(self.base + ["send-keys", "-t", "t", "-l", text], check=True)

    def press(self, *keys: str) -> None:
        subprocess.run(self.base + ["send-keys", "-t", "t", *keys], check=True)

    def enter(self, text: str) -> None:
        self.mark = len(self.screen())
        self.type(text)
        self.press("Enter")

    def screen(self) -> str:
        r = subprocess.run(self.base + ["capture-pane", "-p", "-J", "-S", "-", "-t", "t"],
                           capture_output=True, text=True, check=True)
        return r.stdout.rstrip()

    def wait(self, pattern: str, timeout: float = 120.0, since: int | None = None) -> str:
        """The screen text from ``since`` (default: the last ``enter``) once ``pattern``
        (a regex) is in it."""
        start = self.mark if since is None else since
        t0 = time.monotonic()
        while True:
            text = self.screen()[start:]
            if re.search(pattern, text):
                return text
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no {pattern!r} on the screen after {timeout:.0f} s:\n{text[-3000:]}")
            time.sleep(0.3)

    def close(self) -> None:
        subprocess.run(self.base + ["kill-server"], capture_output=True)


@pytest.fixture
def lab(tmp_path):
    dm = devmap()
    if dm is None:
        pytest.skip("lab test: needs the QEMU lab (tools/lab/run)")
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed (tools/lab/setup installs it)")
    subprocess.run(["modprobe", "nvmet"], check=True)
    assert not os.path.exists(f"{CFG}/subsystems/{S}")
    nv = dm["nvme"]
    a_dev = nv["cmbA"]["namespaces"][0]
    wwid = read(f"/sys/block/{os.path.basename(a_dev)}/wwid")
    byid = Path("/dev/disk/by-id")
    byid.mkdir(parents=True, exist_ok=True)
    link = byid / f"nvme-{wwid}"            # udev's persistent name for the namespace
    link.symlink_to(f"../../{os.path.basename(a_dev)}")
    env = {**os.environ, "NVMET_P2P_STATE_DIR": str(tmp_path / "state"),
           "NVMET_P2P_SHELL_DIR": str(tmp_path / "user"), "TERM": "xterm", "PYTHONPATH": str(REPO)}
    yield {"nv": nv, "link": str(link), "env": env, "tmp": tmp_path}
    link.unlink()
    sub = f"{CFG}/subsystems/{S}"                 # clean up with plain rmdir (no port links)
    if os.path.isdir(sub):
        for nsid in os.listdir(f"{sub}/namespaces"):
            os.rmdir(f"{sub}/namespaces/{nsid}")
        os.rmdir(sub)


def test_interactive_session_in_a_real_terminal(lab):
    nv, env = lab["nv"], lab["env"]
    a, b, c = (nv[k]["bdf"] for k in ("cmbA", "cmbB", "cmbC"))
    plain_dev = nv["plain"]["namespaces"][0]
    term = Terminal(f"nvmetp2p-{os.getpid()}",
                    f"{sys.executable} -m nvmet_p2p shell; echo SHELL-EXIT-$?; sleep 600", env)
    try:
        term.wait(r"/>\s*$", timeout=180, since=0)
        term.enter("cd /subsystems")
        term.enter(f"create {S}")
        term.wait("Created subsystem")
        term.enter(f"cd {S}/namespaces")
        # the device path: Tab completes the by-id name
        term.mark = len(term.screen())
        term.type("create 1 path=/dev/disk/by-id/nvme-")
        term.press("Tab")
        term.wait(re.escape(lab["link"]) + " ?$")
        term.press("Enter")
        term.wait("Created namespace 1")
        term.enter("cd 1")
        # p2pmem: the providers the kernel accepts, best first, with distance and free space
        term.mark = len(term.screen())
        term.type("set p2pmem=")
        term.press("Tab")
        shown = term.wait(r"5\. off: data buffers in host memory")
        rows = [ln.split()[0] for ln in shown.splitlines() if re.match(r"\s+\S+\s+\d\. ", ln)]
        assert rows == [a, b, c, "1", "0"], shown
        assert re.search(rf"{a}\s+1\. bus_addr distance 0, own CMB, [\d.]+ MiB free of 64 MiB", shown)
        assert re.search(rf"{b}\s+2\. bus_addr distance 4, [\d.]+ MiB free of 64 MiB", shown)
        term.type(b[:7])
        term.press("Tab")
        term.wait(f"set p2pmem={re.escape(b)} ?$")
        term.press("Enter")
        term.wait(f"Parameter p2pmem is now '{re.escape(b)}'")
        term.enter("enable")
        term.wait("has been enabled")
        term.enter("ls")
        out = term.wait(r"p2p: p2pmem=\S+ bus_addr distance 4")
        assert "(new)" in out
        term.enter("diff")
        out = term.wait(r"Plan: \d+ configfs writes")
        assert f'p2pmem: "{b}"' in out and not os.path.exists(f"{CFG}/subsystems/{S}")
        term.enter("commit")
        term.wait(r"Committed: \d+ configfs writes")
        ns1 = f"{CFG}/subsystems/{S}/namespaces/1"
        assert read(f"{ns1}/enable") == "1" and read(f"{ns1}/p2pmem") == b
        assert read(f"{ns1}/device_path") == lab["link"]

        # a change the kernel refuses: rolled back, its line shown, the shell goes on
        before = dump()
        term.enter("cd ..")
        term.enter(f"create 2 path={plain_dev}")
        term.wait("Created namespace 2")
        term.enter(f"2/ set p2pmem={a}")
        term.wait("warning: the kernel will refuse this")
        term.enter("2/ enable")
        term.wait("has been enabled")
        term.enter("commit")
        out = term.wait(r"staged changes are kept")
        assert "commit failed: step" in out and "(EINVAL)" in out and "configfs is as before" in out
        assert re.search(r"kernel: .*cannot be used for peer-to-peer DMA", out), out
        assert "Traceback" not in term.screen()
        assert dump() == before
        term.enter("2/ set p2pmem=0")
        term.wait("Parameter p2pmem is now '0'")
        term.enter("commit")
        term.wait(r"Committed: \d+ configfs write")
        assert read(f"{CFG}/subsystems/{S}/namespaces/2/enable") == "1"
        term.enter("exit")
        term.wait("SHELL-EXIT-0")
    finally:
        results = os.environ.get("NVMET_P2P_LAB_RESULTS")
        if results:                              # the session as it was on the screen
            Path(results, "shell-session.txt").write_text(term.screen() + "\n")
        term.close()
    user = lab["tmp"] / "user"
    assert stat.S_IMODE(os.stat(user).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(user / "history").st_mode) == 0o600
    assert f"create {S}" in (user / "history").read_text()


def test_script_mode_on_the_real_kernel(lab):
    env = lab["env"]
    dev = lab["nv"]["cmbC"]["namespaces"][0]

    def shell(cmds, stdin=None):
        args = [sys.executable, "-m", "nvmet_p2p", "shell"] + (["-c", cmds] if cmds else [])
        return subprocess.run(args, input=stdin, capture_output=True, text=True, env=env)

    before = dump()
    r = shell(f"/subsystems create {S}; /subsystems/{S} set attr bogus=1; commit")
    assert r.returncode == 1 and "command 2" in r.stderr and "no attribute 'bogus'" in r.stderr
    assert "Traceback" not in r.stderr and dump() == before
    r = shell(None, stdin=f"/subsystems create {S}\n/subsystems/{S}/namespaces create 1 path={dev}\n"
                          f"/subsystems/{S}/namespaces/1 enable\ncommit\n")
    assert r.returncode == 0, r.stderr
    assert read(f"{CFG}/subsystems/{S}/namespaces/1/enable") == "1"
