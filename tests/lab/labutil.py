"""Helpers for the lab tier: the device map, raw configfs writes, userspace p2p DMA, the CLI.

Everything here talks to the real kernel directly (configfs, sysfs, O_DIRECT) so the lab
tests check the project's predictions against the kernel, not against the project itself.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from nvmet_p2p import exits

NVMET = "/sys/kernel/config/nvmet"


def devmap() -> dict | None:
    """The device map of the booted topology, or None outside the lab."""
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if os.environ.get("NVMET_P2P_LAB") != "1" or not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


@dataclass(frozen=True)
class Pair:
    provider: str          # serial of the providing NVMe
    provider_bdf: str
    client: str            # serial of the NVMe behind the namespace
    client_bdf: str
    ns: str                # /dev/nvmeXnY

    @property
    def id(self) -> str:
        return f"{self.provider}->{self.client}"


def provider_client_pairs(dm: dict) -> list[Pair]:
    """Every (p2pmem provider, NVMe namespace) pair of the booted topology."""
    nv = dm["nvme"]
    out = []
    for ps, p in sorted(nv.items()):
        if not p.get("p2pmem"):
            continue
        for cs, c in sorted(nv.items()):
            if c["namespaces"]:
                out.append(Pair(ps, p["bdf"], cs, c["bdf"], c["namespaces"][0]))
    return out


def lab_params(build) -> tuple[list, list[str]]:
    """(params, ids) for parametrize: ``build(devmap)`` in the lab, one skipped placeholder elsewhere."""
    dm = devmap()
    if dm is None:
        return [None], ["outside-lab"]
    items = build(dm)
    return items, [getattr(i, "id", str(i)) for i in items]


# -- kernel log ----------------------------------------------------------------------------------

class Dmesg:
    """Kernel log lines printed since construction, ``dmesg``-style (``[   12.345678] text``).

    The mark is a /dev/kmsg position, i.e. a record sequence number (the kernel keeps one per
    open file: ``SEEK_END`` sets it to the next record's number), not a line count: once the
    ring buffer is full the number of lines it holds stops growing (old records are dropped
    as new ones arrive) and a count would see nothing new. Reading from the kept descriptor
    also costs only the new records, however full the (large, runner.py) lab ring is."""

    KMSG = "/dev/kmsg"

    def __init__(self) -> None:
        self._fd: int | None = os.open(self.KMSG, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)
        self._lines: list[str] = []

    def _drain(self) -> None:
        while self._fd is not None:
            try:
                raw = os.read(self._fd, 16384)
            except BlockingIOError:          # EAGAIN: nothing newer
                return
            except BrokenPipeError:          # EPIPE: records overwritten before we read them
                continue
            if not raw:
                return
            head, _, text = raw.decode("utf-8", "replace").split("\n", 1)[0].partition(";")
            usec = int(head.split(",")[2])
            text = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
            if text.strip():
                self._lines.append(f"[{usec // 1000000:5d}.{usec % 1000000:06d}] {text}")

    def since(self) -> list[str]:
        self._drain()
        return list(self._lines)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None


# -- nvmet configfs ------------------------------------------------------------------------------

@dataclass
class EnableResult:
    accepted: bool
    stage: str                       # "p2pmem" (the write was refused) | "enable" | "ok"
    errno: int | None = None
    dmesg: list[str] = field(default_factory=list)

    def describe(self) -> str:
        what = "accepted" if self.accepted else \
            f"refused at {self.stage} ({errno.errorcode.get(self.errno, self.errno)})"
        return what + ("; dmesg: " + " | ".join(self.dmesg) if self.dmesg else "; no dmesg line")


def _write(path: str, value: str) -> None:
    # one write(2): a buffered open(path, "w") repeats a refused write when it closes (the
    # kernel then evaluates, and logs, every refused enable twice)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def ensure_nvmet() -> None:
    if not os.path.isdir(NVMET):
        subprocess.run(["modprobe", "nvmet"], check=True)


def nvmet_try_p2pmem(ns_dev: str, provider_bdf: str) -> EnableResult:
    """Raw configfs: a scratch subsystem + namespace on ``ns_dev`` with ``p2pmem=<provider>``,
    then ``enable=1``. Returns the kernel's answer; removes everything it created."""
    ensure_nvmet()
    nqn = f"nqn.2026-11.io.nvmet-p2p.labtest:{uuid.uuid4().hex[:12]}"
    sub = f"{NVMET}/subsystems/{nqn}"
    ns = f"{sub}/namespaces/1"
    os.mkdir(sub)
    try:
        os.mkdir(ns)
        try:
            _write(f"{ns}/device_path", ns_dev)
            log = Dmesg()
            try:
                _write(f"{ns}/p2pmem", provider_bdf)
            except OSError as e:
                return EnableResult(False, "p2pmem", e.errno, log.since())
            try:
                _write(f"{ns}/enable", "1")
            except OSError as e:
                return EnableResult(False, "enable", e.errno, log.since())
            res = EnableResult(True, "ok", None, log.since())
            _write(f"{ns}/enable", "0")
            return res
        finally:
            os.rmdir(ns)
    finally:
        os.rmdir(sub)


# -- userspace p2p DMA ---------------------------------------------------------------------------

def pattern(tag: str, size: int) -> bytes:
    """Deterministic, block-unique bytes (a misplaced 4 KiB block cannot compare equal)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{tag}:{i}".encode()).digest() * 128   # 4 KiB per block
        i += 1
    return bytes(out[:size])


def write_direct(dev: str, data: bytes, offset: int = 0) -> None:
    """O_DIRECT write from an ordinary page-aligned buffer (host RAM)."""
    buf = mmap.mmap(-1, len(data))
    buf[:] = data
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    try:
        assert os.pwritev(fd, [buf], offset) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)
        buf.close()


@dataclass
class P2pRead:
    ok: bool                     # the read completed
    errno: int | None
    nbytes: int
    matches: bool | None         # byte-for-byte equal (None if the read failed)
    dmesg: list[str]
    available_before: int
    available_during: int


def p2p_read(provider_bdf: str, src_dev: str, expected: bytes) -> P2pRead:
    """mmap ``p2pmem/allocate`` of the provider, O_DIRECT read ``len(expected)`` bytes of
    ``src_dev`` into it (the NVMe DMAs into the provider's BAR), compare from the CPU."""
    base = f"/sys/bus/pci/devices/{provider_bdf}/p2pmem"
    size = len(expected)
    avail0 = int(open(f"{base}/available").read())
    fd = os.open(f"{base}/allocate", os.O_RDWR)
    try:
        buf = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    try:
        avail1 = int(open(f"{base}/available").read())
        buf[:] = b"\xee" * size                       # poison through the CPU
        log = Dmesg()
        dfd = os.open(src_dev, os.O_RDONLY | os.O_DIRECT)
        try:
            n = os.preadv(dfd, [buf], 0)
        except OSError as e:
            return P2pRead(False, e.errno, 0, None, log.since(), avail0, avail1)
        finally:
            os.close(dfd)
        return P2pRead(True, None, n, bytes(buf[:n]) == expected, log.since(), avail0, avail1)
    finally:
        buf.close()


# -- the project's CLI ---------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("nvmet-p2p")
    argv = [exe] if exe else [sys.executable, "-m", "nvmet_p2p"]
    return subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_CHECKED: set[str] = set()


def require_command(name: str, issue: str) -> None:
    """Fail (not skip) when the CLI cannot run ``name``: every subcommand has landed, so a
    broken ``--help`` or an unreadable live inventory is a bug the lab must report. Checked
    once per session (``topology --json`` reads everything ``distance`` reads)."""
    if name in _CHECKED:
        return
    proc = cli(name, "--help")
    assert proc.returncode == 0, (f"`nvmet-p2p {name} --help` failed ({issue}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    probe = cli("topology", "--json")
    assert probe.returncode == 0, f"`nvmet-p2p topology --json` failed: {probe.stderr.strip()[-2000:]}"
    _CHECKED.add(name)


_PREDICTIONS: dict[tuple[str, str], dict] = {}


def predict(provider_bdf: str, ns: str) -> dict:
    """What ``nvmet-p2p distance PROVIDER NS --json`` predicts for one pair: the pair's entry
    (``map_type``, ``distance``, ``reasons``, ``kernel_parameter``, ``provider``).

    One CLI run per provider, for all namespaces of the booted topology at once
    (``distance PROVIDER NS1 NS2 ... --json`` reports every pair on its own), memoized: the
    oracle and the DMA test share it. Python start-up under TCG costs seconds per process."""
    if (provider_bdf, ns) not in _PREDICTIONS:
        dm = devmap()
        clients = sorted({p.ns for p in provider_client_pairs(dm)} | {ns}) if dm else [ns]
        # exit 5 (nvmet_p2p.exits.NO_P2P): some pair is not_supported, the report is the same
        v = cli_json("distance", provider_bdf, *clients, statuses=(0, exits.NO_P2P))
        assert v["provider"] == provider_bdf and len(v["pairs"]) == len(clients), v
        for client, pair in zip(clients, v["pairs"]):
            assert pair["client"]["name"] in (client, os.path.basename(client)), (client, pair["client"])
            _PREDICTIONS[(provider_bdf, client)] = dict(pair, provider=v["provider"])
    return _PREDICTIONS[(provider_bdf, ns)]


def cli_json(*args: str, statuses: tuple[int, ...] = (0,)):
    proc = cli(*args, "--json")
    assert proc.returncode in statuses, \
        f"nvmet-p2p {' '.join(args)} --json exited {proc.returncode}: {proc.stderr.strip()}"
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise AssertionError(f"nvmet-p2p {' '.join(args)} --json printed no JSON ({e}): {proc.stdout[:300]}")


def predicted_supported(verdict: dict) -> bool:
    mt = verdict["map_type"]
    assert mt in ("bus_addr", "thru_host_bridge", "not_supported"), f"unknown map_type {mt!r}"
    return mt != "not_supported"


# -- the lab's p2p-capable RDMA NIC (rxe_p2p on a PCI NIC; tools/lab/README.md) -----------------

HOSTID = "5f0c2a4e-93b1-4c7e-a1d2-6e8b7c9d0a11"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"


def p2p_nics(dm: dict) -> dict[str, dict]:
    """The booted topology's rxe_p2p devices (``rdma`` entries of kind rxe_p2p), by ib name."""
    return {k: v for k, v in dm.get("rdma", {}).items() if v.get("kind") == "rxe_p2p"}


def sh(*cmd: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command in the guest; ``check``: an exit status other than 0 fails the test with
    its output."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")
    return r


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def shares_bridge(a: dict, b: dict) -> bool:
    """Whether two devmap PCI entries (``upstream`` lists) share an upstream bridge: on q35
    (host bridge not whitelisted, no ACS on these ports) that is the kernel's p2pdma rule."""
    return bool(set(a["upstream"]) & set(b["upstream"]))


def p2p_nic_for(dm: dict, provider_serial: str, near: bool = True) -> tuple[str, dict]:
    """An rxe_p2p device whose NIC does (``near``) or does not share a bridge with the
    provider; skips (saying why) when the booted topology has none."""
    prov = dm["nvme"][provider_serial]
    for name, rec in sorted(p2p_nics(dm).items()):
        if shares_bridge(rec, prov) == near:
            return name, rec
    pytest.skip(f"topology {dm['topology']} has no rxe_p2p NIC {'beside' if near else 'away from'} "
                f"{provider_serial}")


def fabric_ctrls() -> dict[str, dict]:
    """Fabrics controllers of the host side: name -> transport, subsysnqn, state, address."""
    out = {}
    base = "/sys/class/nvme"
    for c in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        rec = {}
        for attr in ("transport", "subsysnqn", "state", "address"):
            try:
                with open(f"{base}/{c}/{attr}") as f:
                    rec[attr] = f.read().strip()
            except OSError:
                rec[attr] = ""
        if rec["transport"] in ("tcp", "rdma", "loop"):
            out[c] = rec
    return out


@dataclass
class Connection:
    """One ``nvme connect`` of the lab's host side to the lab's own target."""
    ctrl: str                   # nvmeN
    nqn: str
    traddr: str
    namespaces: dict[int, str]  # nsid -> /dev/nvmeNnM (by the sysfs nsid: names follow no order)

    def disconnect(self) -> None:
        subprocess.run(["nvme", "disconnect", "-d", self.ctrl], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)


def _ctrl_namespaces(ctrl: str) -> dict[int, str]:
    out = {}
    base = f"/sys/class/nvme/{ctrl}"
    for d in sorted(os.listdir(base)):
        m = re.match(r"^nvme(\d+)(?:c\d+)?n(\d+)$", d)
        if m and os.path.exists(f"{base}/{d}/nsid"):
            with open(f"{base}/{d}/nsid") as f:
                nsid = int(f.read().strip())
            # with native multipath the block device is the head nvme<subsys>n<ns>
            out[nsid] = f"/dev/nvme{m.group(1)}n{m.group(2)}"
    return out


def connect_rdma(traddr: str, nqn: str, nsids: int = 1, trsvcid: str = "4420",
                 hostnqn: str = HOSTNQN, hostid: str = HOSTID, timeout: float = 30.0) -> Connection:
    """``nvme connect -t rdma`` to the lab's own target (loopback in the guest), waiting until
    the controller is live and its ``nsids`` namespaces have block devices."""
    before = set(fabric_ctrls())
    proc = subprocess.run(["nvme", "connect", "-t", "rdma", "-a", traddr, "-s", trsvcid, "-n", nqn,
                           "--hostnqn", hostnqn, "--hostid", hostid],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, f"nvme connect -t rdma -a {traddr} -n {nqn}: {proc.stderr.strip()}"
    deadline = time.monotonic() + timeout
    while True:
        new = {c: r for c, r in fabric_ctrls().items() if c not in before and r["subsysnqn"] == nqn}
        for c, r in new.items():
            if r["state"] == "live":
                nss = _ctrl_namespaces(c)
                if len(nss) >= nsids and all(os.path.exists(d) for d in nss.values()):
                    return Connection(c, nqn, traddr, nss)
        if time.monotonic() > deadline:
            raise AssertionError(f"no live rdma controller for {nqn} at {traddr} with {nsids} "
                                 f"namespace(s) after {timeout:.0f} s: {new}")
        time.sleep(0.1)


def disconnect_all() -> None:
    for c in fabric_ctrls():
        subprocess.run(["nvme", "disconnect", "-d", c], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class PoolSampler:
    """``p2pmem/available`` of one provider, sampled every ``interval`` s in a thread."""

    def __init__(self, bdf: str, interval: float = 0.02):
        self.path = f"/sys/bus/pci/devices/{bdf}/p2pmem/available"
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> int:
        with open(self.path) as f:
            return int(f.read().strip())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.read())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PoolSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def low(self) -> int:
        return min(self.samples)


def load_rxe_p2p(dm: dict) -> None:
    """insmod the lab's rdma_rxe_p2p.ko (its path is in the device map) after its dependencies."""
    if os.path.isdir("/sys/module/rdma_rxe_p2p"):
        return
    mod = (dm.get("rxe_p2p") or {}).get("module")
    if not mod:
        pytest.skip(f"topology {dm['topology']} was booted without the rxe_p2p module")
    deps = subprocess.run(["modinfo", "-F", "depends", mod], stdout=subprocess.PIPE, text=True).stdout
    for d in filter(None, deps.strip().split(",")):
        subprocess.run(["modprobe", d], check=True)
    subprocess.run(["insmod", mod], check=True)


def rdma_link(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rdma", "link", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
