"""Helpers for the multipath lab test and tools/bench/bench_multipath.py: the host side of
the guest (native NVMe multipath over RDMA to the guest's own addresses), read from sysfs, and
fio. Stdlib + the lab helpers only."""

from __future__ import annotations

import errno
import glob
import json
import os
import subprocess
import sys
import textwrap
import time

from labutil import HOSTID, HOSTNQN, Dmesg, PoolSampler, _write, read, sh

NQN = "nqn.2026-12.io.nvmet-p2p.lab:mp"
FIO_SIZE = "8M"




def attempt(fn, *args) -> str:
    """``fn(*args)`` (a mkdir, rmdir or :func:`_write` on configfs/sysfs): "ok", or the name
    of the errno the kernel answered."""
    try:
        fn(*args)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


def write(path: str, value: str) -> str:
    """One write(2) (a buffered write would repeat a refused one): "ok" or the errno name."""
    return attempt(_write, path, value)


def write_attr(path: str, value: str) -> bool:
    return write(path, value) == "ok"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", "nvmet_p2p", *args, check=check)


def profile_text(multipath: bool) -> str:
    """The lab's profile: driveA and driveB (nsid 1, 2) exported through both NICs; without
    ``multipath: p2p`` each is placed beside its own NIC (``when_none: best_effort``)."""
    return textwrap.dedent(f"""\
        version: 1
        hosts: [{{nqn: {HOSTNQN}}}]
        p2p: {{when_none: best_effort}}
        ports:
          - {{id: 1, transport: rdma, rdma_device: rxpa, inline_data_size: 0}}
          - {{id: 2, transport: rdma, rdma_device: rxpb, inline_data_size: 0}}
        subsystems:
          - nqn: {NQN}
            multipath: {"p2p" if multipath else "off"}
            hosts: [{HOSTNQN}]
            ports: [1, 2]
            namespaces:
              - {{select: {{serial: driveA}}, nsid: 1}}
              - {{select: {{serial: driveB}}, nsid: 2}}
        """)


def apply_profile(work: str, multipath: bool) -> dict:
    """``nvmet-p2p apply --profile`` of :func:`profile_text` (written into ``work``); its JSON."""
    path = os.path.join(str(work), f"mp-{multipath}.yaml")
    with open(path, "w") as f:
        f.write(profile_text(multipath))
    return json.loads(cli("apply", "--profile", path, "--json").stdout)


def host_paths() -> dict[str, dict]:
    """Every path of our subsystem on the host: ``nvme<subsys>c<ctrl>n<head>`` -> its
    controller, its cntlid (the target's controller id), the controller's address, nsid,
    ana_state, and read+written sectors."""
    out = {}
    for c in sorted(glob.glob("/sys/class/nvme/nvme*")):
        if read(f"{c}/transport") != "rdma" or read(f"{c}/subsysnqn") != NQN:
            continue
        addr = dict(kv.split("=", 1) for kv in read(f"{c}/address").split(","))
        for p in sorted(glob.glob(f"{c}/nvme*c*n*")):
            name = os.path.basename(p)
            stat = read(f"/sys/block/{name}/stat").split()
            out[name] = {"ctrl": os.path.basename(c), "traddr": addr["traddr"],
                         "cntlid": int(read(f"{c}/cntlid")),
                         "state": read(f"{c}/state"), "nsid": int(read(f"{p}/nsid")),
                         "ana_state": read(f"{p}/ana_state"), "ana_grpid": int(read(f"{p}/ana_grpid")),
                         "sectors": int(stat[2]) + int(stat[6])}
    return out


def heads() -> dict[int, str]:
    """nsid -> the multipath head's block device (its number follows no nsid order)."""
    out = {}
    for s in glob.glob("/sys/class/nvme-subsystem/nvme-subsys*"):
        if read(f"{s}/subsysnqn") != NQN:
            continue
        for h in glob.glob(f"{s}/nvme*n*"):
            out[int(read(f"{h}/nsid"))] = f"/dev/{os.path.basename(h)}"
    return out


def subsys_dir() -> str:
    return next(s for s in glob.glob("/sys/class/nvme-subsystem/nvme-subsys*")
                if read(f"{s}/subsysnqn") == NQN)


def connect(traddr: str) -> list[str]:
    """``nvme connect -t rdma`` to one of the guest's own addresses; the kernel lines of it."""
    log = Dmesg()
    before = {p["ctrl"] for p in host_paths().values()}
    sh("nvme", "connect", "-t", "rdma", "-a", traddr, "-s", "4420", "-n", NQN,
       "--hostnqn", HOSTNQN, "--hostid", HOSTID)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = [p for p in host_paths().values() if p["ctrl"] not in before and p["traddr"] == traddr]
        if len(new) >= 2 and all(p["state"] == "live" for p in new):
            return log.since()
        time.sleep(0.1)
    raise AssertionError(f"no live controller with 2 paths through {traddr}: {host_paths()}")


def fio_verify(dev: str, size: str = FIO_SIZE) -> dict:
    """fio writes ``size`` with crc32c checksums and reads it back verifying (JSON job)."""
    r = sh("fio", "--name=mp", f"--filename={dev}", "--direct=1", "--ioengine=libaio", "--rw=write",
           "--bs=128k", "--iodepth=8", f"--size={size}", "--verify=crc32c", "--do_verify=1",
           "--verify_fatal=1", "--output-format=json", check=False)
    assert r.returncode == 0, f"fio on {dev} failed ({r.returncode}): {r.stderr.strip()[-1500:]}"
    job = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]
    assert job["error"] == 0, job
    return job


def io_split(nsid: int, providers: dict[str, str], size: str = FIO_SIZE
             ) -> tuple[dict[str, int], dict[str, int]]:
    """fio write+verify on the namespace's multipath device: sectors per path address, and
    the lowest ``p2pmem/available`` each provider showed while it ran."""
    before = {n: p["sectors"] for n, p in host_paths().items() if p["nsid"] == nsid}
    pools = {k: PoolSampler(b) for k, b in providers.items()}
    for s in pools.values():
        s.__enter__()
    try:
        fio_verify(heads()[nsid], size)
    finally:
        for s in pools.values():
            s.__exit__(None, None, None)
    after = host_paths()
    split = {after[n]["traddr"]: after[n]["sectors"] - before[n] for n in before}
    return split, {k: s.low for k, s in pools.items()}
