"""Lab tier (issue 19.12): ``p2p-test`` across root ports, against the real kernel.

In the default topology cmbA's CMB sits behind the switch on root port 00:04.0 and the plain
NVMe on root port 00:05.0; the q35 host bridge is not on the kernel's P2PDMA whitelist, so the
kernel refuses every p2p DMA between them. Given such I/O, ``--engine fio`` once kept the
plain NVMe timing out and resetting for ten minutes. Now:

* both engines refuse the pair from the distance rules before any I/O: exit 5 (no p2p), explained, the
  namespace's data untouched, and the kernel logs nothing about the drive (no refused request,
  no timeout, no reset) -- with fio's default matrix too, which no longer runs at all;
* the kernel-log watcher (``nvmet_p2p.harness.kwatch``) recognises the kernel's own refusal of
  a p2p request on this pair (``invalid error, dev nvme3n1``, read from ``/dev/kmsg``) the
  moment it is printed -- what stops an engine whose prediction did not foresee a refusal --
  and the controller is live afterwards.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import subprocess
import sys
import time

import pytest

from nvmet_p2p.harness.kwatch import INVALID, REFUSAL, KernelWatch, settle_controllers
from nvmet_p2p.kmsg import KernelLog

pytestmark = [pytest.mark.lab, pytest.mark.topology("default")]
OFFSET = 224 << 20            # clear of the ranges the other p2p-test lab tests use
BAD = ("invalid error", "timeout", "resetting controller", "controller is down",
       "cannot be used for peer-to-peer DMA")


def region(dev: str, size: int = 4 << 20) -> str:
    with open(dev, "rb") as f:
        f.seek(OFFSET)
        return hashlib.sha256(f.read(size)).hexdigest()


def p2p_test(*args: str) -> tuple[int, dict, str, float, list[str]]:
    """``nvmet-p2p p2p-test ARGS --json`` as a process: (rc, document, stderr, seconds,
    kernel log lines printed meanwhile)."""
    log = KernelLog()
    mark = log.mark()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "p2p-test", *args, "--json"],
                       capture_output=True, text=True, timeout=600)
    took = time.monotonic() - t0
    return r.returncode, json.loads(r.stdout or "{}"), r.stderr, took, log.lines_since(mark)


def ctrl_state(dev: str) -> str:
    ctrl = os.path.basename(os.path.realpath(f"/sys/block/{os.path.basename(dev)}/device"))
    with open(f"/sys/class/nvme/{ctrl}/state") as f:
        return f.read().strip()


@pytest.mark.parametrize("engine", ["copy", "fio"])
def test_a_pair_across_root_ports_is_refused_before_any_io(engine, lab_devices):
    nv = lab_devices["nvme"]
    cmba, plain = nv["cmbA"]["bdf"], nv["plain"]["namespaces"][0]
    before = region(plain)
    # fio: the default matrix (4k,128k,1m x qd 1,4,16,32), what reset the drive for ten minutes
    # (2 MiB regions: the lab's namespaces have 256 MiB, the default region size)
    extra = ["--engine", "fio", "--size", "2M", "--out",
             os.path.join(os.environ.get("NVMET_P2P_LAB_RESULTS", "/tmp"), "p2ptest-refused")
             ] if engine == "fio" else []
    rc, d, err, took, klog = p2p_test(cmba, plain, "--offset", str(OFFSET), "--allow-write", *extra)
    print(f"{engine}: exit {rc} after {took:.1f} s; kernel lines meanwhile: {len(klog)}")
    assert rc == 5, err
    refusal = d["refusal"] if engine == "copy" else d["devices"][plain]["refusal"]
    print(f"{engine}: {refusal['explanation']}")
    assert refusal["before_io"] and refusal["errname"] == "EINVAL"
    assert "refused before any I/O" in refusal["explanation"] and "whitelist" in refusal["explanation"]
    assert nv["plain"]["bdf"] in refusal["explanation"] and cmba in refusal["explanation"]
    assert d["emulated"] == "QEMU, emulated; not a performance claim"
    assert region(plain) == before                                   # not even seeded
    assert [ln for ln in klog if any(b in ln for b in BAD)] == []    # the kernel saw no such I/O
    assert ctrl_state(plain) == "live"
    if engine == "fio":
        assert d["cells"] == [] and not os.path.exists(extra[-1])    # fio never started


def test_the_watcher_sees_the_kernels_refusal_of_a_p2p_request(lab_devices):
    """One O_DIRECT read of the plain NVMe into cmbA's CMB (what an engine whose prediction
    did not foresee the refusal would submit): the kernel fails it (EINVAL) and logs it; the
    watcher's first check after it returns that line, about this disk."""
    nv = lab_devices["nvme"]
    cmba, plain = nv["cmbA"]["bdf"], nv["plain"]["namespaces"][0]
    disk = os.path.basename(plain)
    watch = KernelWatch(KernelLog(), {cmba, nv["plain"]["bdf"], disk})
    assert watch.check() is None
    fd = os.open(f"/sys/bus/pci/devices/{cmba}/p2pmem/allocate", os.O_RDWR)
    buf = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    dfd = os.open(plain, os.O_RDONLY | os.O_DIRECT)
    try:
        with pytest.raises(OSError) as e:
            os.preadv(dfd, [buf], OFFSET)
    finally:
        os.close(dfd)
        buf.close()
    assert e.value.errno == 22
    t0 = time.monotonic()
    stop = None
    while stop is None and time.monotonic() - t0 < 5:
        stop = watch.check()
        time.sleep(0.05)
    watch.close()
    print(f"watcher: {stop} after {time.monotonic() - t0:.2f} s")
    # the first line about it: the p2pdma refusal (printed the first time the pair is
    # evaluated; the answer is cached) or the failed request itself
    assert stop is not None and stop.refused and stop.kind in (REFUSAL, INVALID), stop
    assert (f"dev {disk}" in stop.line) or (nv["plain"]["bdf"] in stop.line and cmba in stop.line)
    states = settle_controllers("/", [disk], timeout=30)
    print(f"controllers after one refused request: {states}")
    assert set(states.values()) == {"live"}
