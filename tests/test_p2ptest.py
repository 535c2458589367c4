"""``p2p-test`` logic on a file tree: seeding, verification, interleaving, medians, refusal text.

The real thing (a CMB's p2pmem/allocate and NVMe DMA into it) only exists in the lab:
tests/lab/test_lab_harness.py runs it against the kernel. Here the "allocate" file is an
ordinary file, so everything but the DMA itself runs for real (mmap MAP_SHARED, O_DIRECT
preadv/pwritev, byte comparison)."""

from __future__ import annotations

import errno
import json
import os

import pytest

from nvmet_p2p import cli
from nvmet_p2p.errors import InputError
from nvmet_p2p.harness import p2ptest
from support import sysfs as sf

BDF = "0000:03:00.0"


def tree(tmp_path, available=66977792):
    """The lab's sysfs layout (tests/support/sysfs.py): 03:00.0 provides, nvme1n1/nvme2n1 sit on
    04:00.0/05:00.0 behind the same switch; "allocate" is an ordinary 64 MiB file here."""
    m = sf.q35_lab(tmp_path, write=False)
    m.set_p2pmem(BDF, available=available)
    m.write()
    with open(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate", "wb") as f:
        f.truncate(64 << 20)
    devs = []
    for name in ("nvme1n1", "nvme2n1"):
        img = tmp_path / name
        with open(img, "wb") as f:
            f.truncate(32 << 20)
        devs.append(str(img))
    return devs


def o_direct_works(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    return True


def test_seeded_transfer_verified_and_interleaved(tmp_path):
    src, dst = tree(tmp_path)
    if not o_direct_works(src):
        pytest.skip("the test filesystem refuses O_DIRECT")
    res = p2ptest.run(BDF, src, dst, size=1 << 20, repeat=3, root=str(tmp_path))
    assert res.verdict == "verified" and res.refusal is None and res.seeded
    kinds = [(t.direction, t.path, t.repeat) for t in res.transfers]
    # interleaved: repeat 1 host first, repeat 2 p2p first, ...
    assert kinds[:4] == [("read", "host", 1), ("read", "p2p", 1), ("write", "host", 1), ("write", "p2p", 1)]
    assert kinds[4:8] == [("read", "p2p", 2), ("read", "host", 2), ("write", "p2p", 2), ("write", "host", 2)]
    assert all(t.verified for t in res.transfers) and len(res.transfers) == 12
    m = res.medians()
    assert m["read_p2p_mb_per_s"] > 0 and m["read_ratio_p2p_host"] > 0
    # the data really went to the "CMB" (the allocate file): its first MiB is the seed pattern
    import random
    with open(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate", "rb") as f:
        assert f.read(1 << 20) == random.Random(20261125).randbytes(1 << 20)
    # the distance rules on the lab's layout: both NVMe sit behind the provider's switch
    assert {d: (p["pci"], p["map_type"]) for d, p in res.prediction.items()} == {
        src: ("0000:04:00.0", "bus_addr"), dst: ("0000:05:00.0", "bus_addr")}
    text = p2ptest.render(res)
    assert "verdict: verified" in text and "<-> 0000:03:00.0: bus_addr" in text


def test_read_only_source_compares_with_a_host_read(tmp_path):
    src, _ = tree(tmp_path)
    if not o_direct_works(src):
        pytest.skip("the test filesystem refuses O_DIRECT")
    with open(src, "r+b") as f:
        f.write(os.urandom(1 << 20))
    res = p2ptest.run(BDF, src, size=1 << 20, repeat=1, seed_source=False, root=str(tmp_path))
    assert res.verdict == "verified" and not res.seeded and res.seed is None


def test_refusal_explanation_uses_prediction_and_kernel_lines():
    res = p2ptest.P2pTestResult(provider=BDF, source="/dev/nvme3n1", destination=None, size=4096, offset=0,
                                repeat=1, seeded=True, seed=1, emulated=None)
    res.prediction = {"/dev/nvme3n1": {"pci": "0000:06:00.0", "map_type": "not_supported",
                                       "reasons": ["no common upstream bridge; host bridge 8086:29c0 not whitelisted"],
                                       "kernel_parameter": None}}
    res.refusal = {"direction": "read", "device": "/dev/nvme3n1", "errno": errno.EINVAL, "errname": "EINVAL"}
    res.kernel_log = ["nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and provider "
                      "(0000:03:00.0) do not share an upstream bridge or whitelisted host bridge"]
    p2ptest._explain(res)
    t = res.refusal["explanation"]
    assert "as predicted" in t and "8086:29c0" in t and "do not share an upstream bridge" in t
    res.kernel_log = []
    res.prediction["/dev/nvme3n1"]["map_type"] = "bus_addr"
    p2ptest._explain(res)
    assert res.refusal["explanation"].startswith("UNEXPECTED") and "caches the answer" in res.refusal["explanation"]
    assert res.verdict == "refused"


def test_input_errors(tmp_path, capsys):
    src, dst = tree(tmp_path, available=1 << 20)
    with pytest.raises(InputError, match="available"):
        p2ptest.run(BDF, src, size=2 << 20, root=str(tmp_path))
    with pytest.raises(InputError, match="no PCI device"):
        p2ptest.run("0000:99:00.0", src, root=str(tmp_path))
    with pytest.raises(InputError, match="multiple of"):
        p2ptest.parse_size("1000")
    assert p2ptest.parse_size("16M") == 16 << 20
    assert p2ptest.parse_size("0", "--offset", zero_ok=True) == 0
    assert p2ptest.parse_size(str(128 << 20), "--offset", zero_ok=True) == 128 << 20
    with pytest.raises(InputError, match="--offset"):
        p2ptest.parse_size("-4096", "--offset", zero_ok=True)
    assert cli.main(["p2p-test", "--root", str(tmp_path), BDF, src, dst]) == 2
    assert "--allow-write" in capsys.readouterr().err


def test_command_json(tmp_path, capsys):
    src, dst = tree(tmp_path)
    if not o_direct_works(src):
        pytest.skip("the test filesystem refuses O_DIRECT")
    rc = cli.main(["p2p-test", "--root", str(tmp_path), "--json", "--size", "256k", "--repeat", "1",
                   "--allow-write", BDF, src, dst])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["verdict"] == "verified" and d["medians"]["write_p2p_mb_per_s"] > 0
    assert d["prediction"][src]["pci"] == "0000:04:00.0"


# -- the kernel's refusal: before any I/O, and at its first line during I/O (issue 19.12) ----

def plain_tree(tmp_path):
    """The lab's tree with the plain NVMe (nvme3n1, 06:00.0 on the other root port) as an
    image file: the pair cmbA (03:00.0) <-> 06:00.0 crosses the q35 host bridge, which is not
    on the kernel's whitelist."""
    tree(tmp_path)
    img = tmp_path / "nvme3n1"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    return str(img)


def digest(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_copy_engine_refuses_a_pair_the_kernel_would_refuse_before_any_io(tmp_path, capsys):
    plain = plain_tree(tmp_path)
    alloc = tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate"
    before = (digest(plain), digest(alloc))
    rc = cli.main(["p2p-test", "--root", str(tmp_path), "--json", "--size", "256k", "--repeat", "1",
                   "--allow-write", BDF, plain])
    d = json.loads(capsys.readouterr().out)
    assert rc == 5 and d["verdict"] == "refused" and d["transfers"] == []     # 5: no p2p
    r = d["refusal"]
    assert r["before_io"] and r["errname"] == "EINVAL" and r["device"] == plain
    assert "refused before any I/O" in r["explanation"] and "whitelist" in r["explanation"]
    assert "0000:06:00.0" in r["explanation"] and "nothing was mapped, read or written" in r["explanation"]
    assert (digest(plain), digest(alloc)) == before            # the source was not even seeded
    assert cli.main(["p2p-test", "--root", str(tmp_path), "--size", "256k", "--repeat", "1",
                     "--allow-write", BDF, plain]) == 5
    out = capsys.readouterr().out
    assert "REFUSED: refused before any I/O" in out and "verdict: refused" in out
    assert "data: nothing mapped, read or written" in out and "seeded" not in out


class GrowingLog:
    """A kernel log whose follower sees ``lines`` appear after the ``after``-th drain."""

    def __init__(self, lines, after=0):
        self.lines, self.after, self.drains = lines, after, 0

    def mark(self):
        return 0

    def lines_since(self, mark):
        return list(self.lines) if self.drains > self.after else []

    def follow(self):
        log = self

        class F:
            def drain(self):
                log.drains += 1
                if log.drains == log.after + 1:
                    from nvmet_p2p.kmsg import KmsgRecord
                    return [KmsgRecord(seq=i, time=0.0, level=3, facility=0, text=t)
                            for i, t in enumerate(log.lines)]
                return []

            def close(self):
                pass
        return F()


def test_copy_engine_stops_at_the_kernels_first_refusal_line(tmp_path):
    """The prediction allowed it (or could not tell), but the kernel refuses: after the first
    'invalid error' line no more I/O is issued -- not the other buffer, not the next round."""
    src, dst = tree(tmp_path)
    if not o_direct_works(src):
        pytest.skip("the test filesystem refuses O_DIRECT")
    line = "invalid error, dev nvme1n1, sector 0 op 0x0:(READ) flags 0x4000 phys_seg 128 prio class 2"
    res = p2ptest.run(BDF, src, dst, size=1 << 20, repeat=3, root=str(tmp_path),
                      log=GrowingLog([line], after=1))
    assert res.stopped == {"kind": "invalid_request", "line": line}
    assert len(res.transfers) == 2 and res.verdict == "refused"          # stopped after the 2nd
    assert res.refusal["device"] == src and res.controllers == {"nvme1": "live", "nvme2": "live"}
    assert "STOPPED at the kernel's line (invalid_request)" in p2ptest.render(res)
    unrelated = "invalid error, dev nvme7n1, sector 0 op 0x0:(READ)"     # not this run's disk
    res = p2ptest.run(BDF, src, dst, size=1 << 20, repeat=1, root=str(tmp_path),
                      log=GrowingLog([unrelated], after=0))
    assert res.stopped is None and len(res.transfers) == 4 and res.verdict == "verified"
