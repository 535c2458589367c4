"""Helpers for the hotplug lab tests and tools/bench/bench_hotplug.py: a target made by the
project's own restore, a host connected to it over nvme-tcp loopback, the host-side block
devices per nsid, fio jobs in the background, and the watcher as a subprocess."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time

CHECKOUT = os.environ.get("NVMET_P2P_LAB_CHECKOUT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(CHECKOUT, "tools", "lab"))

from labkit import hotplug  # noqa: E402,F401

NVMET = "/sys/kernel/config/nvmet"
NQN = "nqn.2026-12.io.nvmet-p2p:hotplug"
ADDR, SVC = "10.77.0.1", "4420"


def nvmet_p2p() -> list[str]:
    exe = shutil.which("nvmet-p2p")
    return [exe] if exe else [sys.executable, "-m", "nvmet_p2p"]


def run(*argv, check=True, timeout=300, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as exc:
        return f"<{exc.strerror}>"


def write(path: str, value: str) -> int | None:
    """One write(2); returns the errno the kernel answered, or None."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        return exc.errno
    try:
        os.write(fd, value.encode())
        return None
    except OSError as exc:
        return exc.errno
    finally:
        os.close(fd)


def byid(devname: str) -> str:
    """The /dev/disk/by-id link udev made for a namespace (the wwid-based nvme-nvme.* one)."""
    base = "/dev/disk/by-id"
    links = sorted(x for x in os.listdir(base) if os.path.realpath(f"{base}/{x}") == devname)
    pick = [x for x in links if x.startswith("nvme-nvme.")] or links
    assert pick, f"udev made no by-id link for {devname}: {os.listdir(base)}"
    return f"{base}/{pick[0]}"


def config(namespaces: list[tuple[int, str, str]]) -> dict:
    """nvmetcli-format state: one subsystem, namespaces (nsid, device_path, p2pmem), a tcp port."""
    return {"hosts": [], "ports": [{"portid": 7, "addr": {"trtype": "tcp", "adrfam": "ipv4",
                                                          "traddr": ADDR, "trsvcid": SVC},
                                    "subsystems": [NQN]}],
            "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": [
                {"nsid": i, "enable": 1, "device": {"path": p}, "p2pmem": m} for i, p, m in namespaces]}]}


def ns_attr(nsid: int, attr: str) -> str:
    return read(f"{NVMET}/subsystems/{NQN}/namespaces/{nsid}/{attr}")


def connect() -> str:
    run("nvme", "connect", "-t", "tcp", "-a", ADDR, "-s", SVC, "-n", NQN)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        c = host_controller()
        if c:
            return c
        time.sleep(0.2)
    raise AssertionError("nvme connect: no controller appeared")


def disconnect() -> None:
    run("nvme", "disconnect", "-n", NQN, check=False)


def host_controller() -> str | None:
    for c in sorted(os.listdir("/sys/class/nvme")):
        if read(f"/sys/class/nvme/{c}/subsysnqn") == NQN and read(f"/sys/class/nvme/{c}/transport") == "tcp":
            return c
    return None


def host_disks(nqn: str = NQN) -> dict[int, str]:
    """nsid -> the host's block device of that namespace of subsystem ``nqn`` (the multipath
    head, /dev/nvmeXnY)."""
    out = {}
    for s in os.listdir("/sys/class/nvme-subsystem"):
        d = f"/sys/class/nvme-subsystem/{s}"
        if read(f"{d}/subsysnqn") != nqn:
            continue
        for n in os.listdir(d):
            if re.match(r"^nvme\d+n\d+$", n):
                out[int(read(f"{d}/{n}/nsid"))] = f"/dev/{n}"
    if not out and nqn == NQN:
        c = host_controller()
        for n in os.listdir(f"/sys/class/nvme/{c}") if c else []:
            if re.match(r"^nvme\d+n\d+$", n):
                out[int(read(f"/sys/class/nvme/{c}/{n}/nsid"))] = f"/dev/{n}"
    return out


def wait_host_disk(nsid: int, present: bool = True, timeout: float = 30.0,
                   nqn: str = NQN) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = host_disks(nqn).get(nsid)
        if bool(d and os.path.exists(d)) == present:
            return d
        time.sleep(0.1)
    raise AssertionError(f"host disk of nsid {nsid} {'did not appear' if present else 'still there'}"
                         f" after {timeout:.0f} s: {host_disks(nqn)}")


class Fio:
    """A time-based fio job in the background with its JSON output (for I/O during an event)."""

    def __init__(self, dev: str, out: str, runtime: int = 30, rw: str = "randrw", extra=()):
        self.out = out
        self.proc = subprocess.Popen(
            ["fio", "--name=bg", f"--filename={dev}", "--ioengine=libaio", "--direct=1", f"--rw={rw}",
             "--bs=16k", "--iodepth=4", "--size=32m", "--time_based", f"--runtime={runtime}",
             "--continue_on_error=all", "--output-format=json", f"--output={out}", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def result(self, timeout: float = 300, interrupt: bool = False) -> dict:
        """fio's JSON for the job; ``interrupt``: end it now (SIGINT: fio stops and reports)."""
        if interrupt and self.proc.poll() is None:
            import signal
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)
        with open(self.out) as f:
            text = f.read()
        return json.loads(text[text.index("{"):])["jobs"][0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def log_lines(path: str) -> list[dict]:
    """The watcher's logfmt lines as dicts."""
    import shlex
    out = []
    for attempt in range(20):
        try:
            with open(path) as f:
                text = f.read()
            break
        except OSError as exc:
            # the results directory is a 9p share: a read racing the watcher's write can fail
            # with ENODATA; read it again
            if exc.errno != errno.ENODATA or attempt == 19:
                raise
            time.sleep(0.05)
    for ln in text.splitlines():
        try:
            out.append(dict(kv.split("=", 1) for kv in shlex.split(ln)))
        except ValueError:
            out.append({"raw": ln.strip()})
    return out


def wait_line(path: str, pred, timeout: float, what: str, start: int = 0, proc=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in log_lines(path)[start:]:
            if pred(d):
                return d
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"watch exited {proc.returncode}: {open(path).read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no watch line {what} within {timeout:.0f} s: {open(path).read()[-3000:]}")


class Watch:
    """``nvmet-p2p watch`` as a subprocess; lines parsed as they come (logfmt)."""

    def __init__(self, log_path: str, *args: str, env: dict | None = None):
        self.log_path = log_path
        self.f = open(log_path, "w")
        self.proc = subprocess.Popen(nvmet_p2p() + ["watch", *args], stdout=self.f,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.wait_for(lambda d: d.get("msg") == "watching", 180, "watching")

    def lines(self) -> list[dict]:
        return log_lines(self.log_path)

    def wait_for(self, pred, timeout: float, what: str, start: int = 0) -> dict:
        return wait_line(self.log_path, pred, timeout, what, start, self.proc)

    def decision(self, kind: str, timeout: float = 60, start: int = 0) -> dict:
        return self.wait_for(lambda d: d.get("decision") == kind, timeout, f"decision={kind}", start)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.f.close()
        return self.proc.returncode


def ensure_present(serials) -> None:
    """Put back every device a failed test left removed (the next test needs them)."""
    for s in serials:
        if hotplug.controller(s) is None:
            try:
                hotplug.add(s)
            except hotplug.HotplugError:
                pass


def clear_target(state_dir: str) -> None:
    disconnect()
    run(*nvmet_p2p(), "clear", "--state-dir", state_dir, check=False)
