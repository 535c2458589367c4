"""Lab tier: the Prometheus pool gauge follows the real kernel's p2pmem pool while I/O uses it.

``nvmet-p2p exporter`` serves the metrics (prometheus_client's HTTP server); ``nvmet-p2p
p2p-test`` maps a buffer from the provider's ``p2pmem/allocate`` and makes another NVMe DMA
into it (userspace p2p DMA between two NVMe below the lab's switch: the default topology has no
PCI RDMA NIC, so fabric I/O never uses p2pmem here). Every scrape while it runs is parsed with
prometheus_client's parser: ``nvmet_p2p_p2pmem_available_bytes`` of that provider drops by the
buffer's size and comes back when p2p-test exits.

p2p-test's mapping lives only part of its run, so the textfile (a separate process, started
and read at its own time) is checked against a pool dip this test controls: a helper process
mmaps ``p2pmem/allocate`` itself (``MAP_SHARED``; the kernel's ``pci_mmap_p2pmem`` allocates
from the pool at mmap time) and holds it until told to release. While it holds, the textfile
and a second scrape show the dip; after it has unmapped and exited, both show the full pool.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from labutil import devmap

pytestmark = pytest.mark.lab

SIZE = 16 << 20


def available(text: str, provider: str) -> float:
    for fam in text_string_to_metric_families(text):
        if fam.name == "nvmet_p2p_p2pmem_available_bytes":
            for s in fam.samples:
                if s.labels["provider"] == provider:
                    return s.value
    raise AssertionError(f"no pool gauge for {provider}")


def scrape(url: str) -> str:
    return urllib.request.urlopen(url, timeout=120).read().decode()


# mmap SIZE bytes of the provider's p2pmem, say so, hold until stdin says release (or closes)
HOLD = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, int(sys.argv[2]), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:8] = b"p2pmem!!"
print("held", flush=True)
sys.stdin.readline()
m.close()
os.close(fd)
"""


def textfile_available(tmp_path, provider: str) -> float:
    prom = tmp_path / "nvmet_p2p.prom"
    subprocess.run([sys.executable, "-m", "nvmet_p2p", "metrics", "--textfile", str(prom),
                    "--no-doctor", "--state-dir", str(tmp_path / "state")], check=True)
    return available(prom.read_text(), provider)


def held_and_released(url: str, tmp_path, provider: str) -> tuple[tuple, tuple]:
    """(scrape, textfile) pool readings while the helper holds SIZE bytes, and after it exits."""
    hold = subprocess.Popen([sys.executable, "-c", HOLD,
                             f"/sys/bus/pci/devices/{provider}/p2pmem/allocate", str(SIZE)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "held", "the helper could not map p2pmem"
        held = (available(scrape(url), provider), textfile_available(tmp_path, provider))
        hold.communicate("release\n", timeout=60)
        assert hold.returncode == 0
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait()
    return held, (available(scrape(url), provider), textfile_available(tmp_path, provider))


def test_pool_gauge_moves_while_p2p_dma_uses_the_pool(tmp_path):
    dm = devmap()
    if dm is None:
        pytest.skip("needs the lab (tools/lab/run): real p2pmem pools")
    cmbs = sorted((v for v in dm["nvme"].values() if v.get("p2pmem") and v["namespaces"]),
                  key=lambda v: v["bdf"])
    if len(cmbs) < 2:
        pytest.skip(f"topology {dm.get('topology')} has fewer than two CMB NVMe below one switch")
    provider, src = cmbs[0]["bdf"], cmbs[1]["namespaces"][0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    exp = subprocess.Popen([sys.executable, "-m", "nvmet_p2p", "exporter", "--listen",
                            f"127.0.0.1:{port}", "--min-interval", "0", "--no-doctor",
                            "--state-dir", str(tmp_path / "state")],
                           stderr=subprocess.PIPE, text=True)
    io = None
    try:
        assert "serving" in exp.stderr.readline()
        base = available(scrape(url), provider)
        io = subprocess.Popen([sys.executable, "-m", "nvmet_p2p", "p2p-test", provider, src,
                               "--size", "16M", "--offset", "64M", "--repeat", "8",
                               "--read-only-source"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        during = []
        while io.poll() is None:
            during.append(available(scrape(url), provider))
            time.sleep(0.2)
        out = io.stdout.read()
        assert io.returncode == 0, out
        after_io = available(scrape(url), provider)
        held, released = held_and_released(url, tmp_path, provider)
    finally:
        if io is not None and io.poll() is None:
            io.kill()
            io.wait()
        exp.terminate()
        exp.wait(timeout=60)
    assert "verified" in out
    assert during, "p2p-test ended before the first scrape"
    assert min(during) <= base - SIZE, (base, during)
    assert after_io == base
    assert max(held) <= base - SIZE, (base, "scrape, textfile while held:", held)
    assert released == (base, base), (base, "scrape, textfile after release:", released)
