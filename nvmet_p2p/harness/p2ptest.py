"""``nvmet-p2p p2p-test``: move data NVMe -> CMB -> NVMe from userspace and verify it.

What p2pmem-test does with its out-of-tree driver, done with what the kernel has had since
6.2: ``mmap(MAP_SHARED, offset 0)`` of ``/sys/bus/pci/devices/<provider>/p2pmem/allocate``
gives a buffer *in the provider's BAR* (an NVMe CMB); an ``O_DIRECT`` read from a namespace
into that buffer makes the namespace's NVMe DMA straight into the peer's BAR, and an
``O_DIRECT`` write from it makes the destination NVMe DMA out of it. The block layer checks
the pair with the same p2pdma rules nvmet uses (``pci_p2pdma_map_type()``, which caches
``calc_map_type_and_dist()``; docs/p2pdma.md) and refuses with ``EINVAL`` when the devices cannot
reach each other (seen in the lab: ``tests/lab/test_lab_p2p_dma.py``) -- so this validates a
CMB path before it is exported.

The same transfers through an ordinary (anonymous, page-aligned) host buffer run in the same
process, interleaved, so the two throughputs are comparable; inside QEMU both carry the
emulation label (the emulated CMB is trapped MMIO: the p2p path is *slower* there, the
reverse of real hardware).

Data: with ``seed_source`` the source region is first written with a pattern from a seed
(``random.Random(seed)``), so what lands in the CMB is checked against known bytes; without it
(read-only source) the p2p read is checked against a host-buffer read of the same region.
"""

from __future__ import annotations

import errno as _errno
import mmap
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field

from nvmet_p2p.errors import InputError, KernelError, NvmetP2PError
from nvmet_p2p.harness.environment import emulation_label
from nvmet_p2p.harness.hostsys import read_text
from nvmet_p2p.harness.kwatch import KernelWatch, device_names, settle_controllers
from nvmet_p2p.kmsg import KernelLog
from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.observe import explain
from nvmet_p2p.observe import status as st
from nvmet_p2p.output import table
from nvmet_p2p.pci.p2pdma_rules import MapType

PAGE = mmap.PAGESIZE


def _read(path: str) -> str | None:
    return read_text(path, None)


def parse_size(text: str, what: str = "--size", zero_ok: bool = False) -> int:
    """``16M``, ``4k``, ``1g``, ``65536`` -> bytes; a positive multiple of the page size."""
    t = text.strip().lower()
    mult = 1
    for suf, m in (("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("k", 1 << 10), ("m", 1 << 20),
                   ("g", 1 << 30), ("b", 1)):
        if t.endswith(suf):
            t, mult = t[: -len(suf)], m
            break
    try:
        n = int(t, 0) * mult if t.startswith("0x") else int(float(t) * mult)
    except ValueError:
        raise InputError(f"not a size: {text!r} (e.g. 16M)", where=what) from None
    if n < 0 or (n == 0 and not zero_ok) or n % PAGE:
        raise InputError(f"must be a {'' if zero_ok else 'positive '}multiple of {PAGE} bytes, got {text!r}",
                         where=what)
    return n


@dataclass
class Transfer:
    direction: str          # "read" (namespace -> buffer) or "write" (buffer -> namespace)
    path: str               # "p2p" (provider's BAR) or "host" (system memory)
    device: str
    repeat: int
    bytes: int = 0
    seconds: float | None = None
    verified: bool | None = None
    error: str | None = None
    errno: int | None = None

    @property
    def mb_per_s(self) -> float | None:
        return self.bytes / self.seconds / 1e6 if self.seconds else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mb_per_s"] = self.mb_per_s
        return d


@dataclass
class P2pTestResult:
    provider: str
    source: str
    destination: str | None
    size: int
    offset: int
    repeat: int
    seeded: bool
    seed: int | None
    emulated: str | None
    prediction: dict = field(default_factory=dict)      # device -> {pci, map_type, reasons, kernel_parameter}
    pool: dict = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    refusal: dict | None = None
    #: the kernel line the run stopped at (:mod:`nvmet_p2p.harness.kwatch`), and the states
    #: of the namespaces' controllers it waited for afterwards
    stopped: dict | None = None
    controllers: dict = field(default_factory=dict)
    kernel_log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the likely cause of data that did not arrive or a transfer that failed, from the kernel
    #: log of the run (:func:`nvmet_p2p.observe.explain.explain`): {"summary", "causes"}; None if all good
    explanation: dict | None = None

    def medians(self) -> dict:
        out = {}
        for d in ("read", "write"):
            for p in ("p2p", "host"):
                v = [t.mb_per_s for t in self.transfers if t.direction == d and t.path == p and t.mb_per_s
                     and t.error is None]
                out[f"{d}_{p}_mb_per_s"] = statistics.median(v) if v else None
            a, b = out[f"{d}_p2p_mb_per_s"], out[f"{d}_host_mb_per_s"]
            out[f"{d}_ratio_p2p_host"] = a / b if a and b else None
        return out

    @property
    def verified(self) -> bool:
        p2p = [t for t in self.transfers if t.path == "p2p"]
        return bool(p2p) and all(t.verified for t in p2p) and self.refusal is None

    @property
    def verdict(self) -> str:
        if self.refusal:
            return "refused"
        if self.verified:
            return "verified"
        if any(t.verified is False for t in self.transfers):
            return "mismatch"
        return "failed"

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "transfers"}
        d["transfers"] = [t.to_dict() for t in self.transfers]
        d["medians"] = self.medians()
        d["verdict"] = self.verdict
        return d


# --------------------------------------------------------------------------------------


def block_pci(device: str, root: str = "/") -> str | None:
    """The PCI function behind a block device (its first PCI ancestor), like
    ``find_parent_pci_dev`` on the disk: None for a multipath head or a non-PCI disk."""
    name = os.path.basename(os.path.realpath(device) if root == "/" else device)
    d = os.path.realpath(os.path.join(root, "sys/block", name))
    for comp in reversed(d.split("/")):
        if comp.count(":") == 2 and "." in comp and comp[:4].isalnum():
            return comp
    return None


def predict(provider: str, devices: list[str], root: str = "/", kernel: str | None = None,
            inventory=None) -> dict:
    """Per device: its PCI function and the distance module's verdict for (provider, it)."""
    inv = inventory
    out = {}
    for dev in devices:
        pci = block_pci(dev, root)
        entry: dict = {"pci": pci, "map_type": None, "reasons": [], "kernel_parameter": None}
        if pci is None:
            entry["map_type"] = MapType.NOT_SUPPORTED
            entry["reasons"] = [f"{dev} has no PCI parent (a native-multipath head disk or a virtual "
                                f"disk): the kernel cannot use it as a p2p client"]
        else:
            if inv is None:
                inv = st.read_inventory(root)
            f = st.distance_facts(provider, pci, inv, kernel)
            if f is None:
                entry["reasons"] = ["no prediction: the distance module is not available"]
            else:
                entry.update(map_type=f.map_type, reasons=f.reasons, kernel_parameter=f.kernel_parameter)
        out[dev] = entry
    return out


class _Aligned:
    """A page-aligned anonymous buffer (O_DIRECT needs aligned memory)."""

    def __init__(self, size: int):
        self.mm = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE)

    def close(self) -> None:
        self.mm.close()


def _io(fn, fd: int, buf, offset: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = fn(fd, [buf], offset)
    return n, time.perf_counter() - t0


def _first_mismatch(a: bytes, b: bytes, unit: int = 4096) -> int | None:
    if a == b:
        return None
    for i in range(0, min(len(a), len(b)), unit):
        if a[i:i + unit] != b[i:i + unit]:
            return i
    return min(len(a), len(b))


def check_provider(provider: str, root: str = "/") -> dict:
    """The provider's pool as userspace can use it: ``dir``, ``allocate`` (the file to mmap),
    ``size`` and ``available`` bytes; a clear :class:`InputError` when it has none."""
    pdir = os.path.join(root, "sys/bus/pci/devices", provider, "p2pmem")
    if not os.path.isdir(os.path.join(root, "sys/bus/pci/devices", provider)):
        raise InputError(f"no PCI device {provider}", where="--provider")
    if not os.path.isdir(pdir):
        raise InputError(f"{provider} has no p2pmem (no CMB registered as p2p memory, or a kernel "
                         f"without CONFIG_PCI_P2PDMA)", where="--provider")
    alloc = os.path.join(pdir, "allocate")
    if not os.path.exists(alloc):
        raise InputError(f"{pdir}/allocate is missing: userspace p2p mappings need Linux 6.2 or newer",
                         where="--provider")
    return {"dir": pdir, "allocate": alloc, "size": int(_read(os.path.join(pdir, "size")) or 0),
            "available": int(_read(os.path.join(pdir, "available")) or 0)}


def run(provider: str, source: str, destination: str | None = None, *, size: int = 16 << 20,
        offset: int = 0, repeat: int = 3, seed: int | None = 20261125, seed_source: bool = True,
        root: str = "/", kernel: str | None = None, progress=None, inventory=None,
        log=None) -> P2pTestResult:
    """The whole test. Raises :class:`InputError` for bad arguments, returns a result otherwise
    (a kernel refusal is a *result*: ``verdict == "refused"``)."""
    progress = progress or (lambda m: None)
    res = P2pTestResult(provider=provider, source=source, destination=destination, size=size, offset=offset,
                        repeat=repeat, seeded=seed_source, seed=seed if seed_source else None,
                        emulated=None)
    pool = _check_args(res, root)
    pdir, alloc, avail = pool["dir"], pool["allocate"], pool["available"]
    res.emulated = emulation_label(root)
    devices = [source] + ([destination] if destination else [])
    res.prediction = predict(provider, devices, root, kernel, inventory)
    res.pool["size"] = int(_read(os.path.join(pdir, "size")) or 0)
    res.pool["available_before"] = avail
    refused = refused_before_io(res.prediction)
    if refused:
        # the kernel's p2pdma rules refuse a pair: nothing is mapped, seeded or transferred
        res.refusal = before_io_refusal(provider, refused[0], res.prediction)
        res.pool["available_after"] = avail
        return res
    if log is None:
        log = KernelLog(root=root)
    try:
        mark = log.mark()
    except OSError:
        mark = None
    watch = KernelWatch(log, device_names(root, devices, provider,
                                          [p["pci"] for p in res.prediction.values() if p.get("pci")]))
    try:
        _map_and_transfer(res, pdir, alloc, progress, watch)
    finally:
        watch.close()
    if res.stopped:
        progress(f"stopped at the kernel's line: {res.stopped['line']}; waiting for the "
                 "controllers to be live")
        res.controllers = settle_controllers(root, [os.path.basename(d) for d in devices])
    res.pool["available_after"] = int(_read(os.path.join(pdir, "available")) or 0)
    if mark is not None:
        try:
            res.kernel_log = log.lines_since(mark)
        except OSError:
            pass
    if res.refusal:
        _explain(res)
    if any(t.verified is False or t.error for t in res.transfers):
        res.explanation = explain_mismatch(res, root)
    return res


def _check_args(res: P2pTestResult, root: str) -> dict:
    """Every argument (as the not yet started ``res`` holds it) checked before anything is
    mapped or written (:class:`InputError`); the provider's pool (:func:`check_provider`)
    when they are all good."""
    provider, source, destination = res.provider, res.source, res.destination
    size, offset, repeat = res.size, res.offset, res.repeat
    if offset % PAGE:
        raise InputError(f"offset must be a multiple of {PAGE}", where="--offset")
    if repeat < 1:
        raise InputError("repeat must be >= 1", where="--repeat")
    pool = check_provider(provider, root)
    if size > pool["available"]:
        raise InputError(f"{provider} has {pool['available']} bytes of p2pmem available, the test "
                         f"needs {size}; use a smaller --size", where="--size")
    for dev in [source] + ([destination] if destination else []):
        if not os.path.exists(dev):
            raise InputError(f"no such device {dev}")
    return pool


def refused_before_io(prediction: dict) -> list[str]:
    """The devices whose pair with the provider the kernel's p2pdma rules refuse."""
    return [d for d, p in prediction.items() if p.get("map_type") == MapType.NOT_SUPPORTED]


def before_io_refusal(provider: str, dev: str, prediction: dict) -> dict:
    """A refusal made before any I/O, explained (what the kernel would answer: EINVAL)."""
    r = {"direction": None, "device": dev, "errno": _errno.EINVAL, "errname": "EINVAL",
         "before_io": True}
    explain_refusal(provider, r, prediction, [])
    return r


def _map_and_transfer(res: P2pTestResult, pdir: str, alloc: str, progress,
                      watch: KernelWatch | None = None) -> None:
    """Map ``size`` bytes of the pool (``p2pmem/allocate``) and run the transfers; the mapping
    and the host buffer are released whatever happens."""
    size = res.size
    host = _Aligned(size)
    afd = os.open(alloc, os.O_RDWR)
    try:
        try:
            p2p = mmap.mmap(afd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise KernelError(f"mmap of {alloc} ({size} bytes) failed: {exc.strerror}", errno=exc.errno,
                              path=alloc) from None
        res.pool["available_mapped"] = int(_read(os.path.join(pdir, "available")) or 0)
        try:
            _transfers(res, p2p, host, progress, watch)
        finally:
            p2p.close()
    finally:
        os.close(afd)
        host.close()


def explain_mismatch(res: P2pTestResult, root: str = "/") -> dict:
    """Name the likely cause of the failed or mismatching transfers from the kernel log of the
    run (IOMMU fault mapped to the provider's BAR, AER, I/O error, reset)."""
    pcis = [p.get("pci") for p in res.prediction.values() if p.get("pci")]
    e = explain.explain(res.kernel_log, root=root, providers=[res.provider], devices=pcis)
    d = e.to_dict()
    bad = [t for t in res.transfers if t.verified is False or t.error]
    if not e.found:
        d["summary"] = ("no kernel message in the window explains it (no IOMMU fault, AER, I/O error "
                        "or reset was logged): the data was changed or not delivered without a word")
    if bad and bad[0].direction == "read" and any(t.direction == "write" and t.path == "p2p" for t in bad):
        d["summary"] += ("; the p2p writes then sent the buffer's stale content, since the read into "
                         "it had not arrived")
    if res.emulated and any(c.kind == explain.KIND_IOMMU and c.bar for c in e.causes):
        d["summary"] += (f" [{res.emulated}: QEMU's IOMMU translates every DMA, including a peer "
                         f"write a real switch routes below the IOMMU]")
    return d


def _transfers(res: P2pTestResult, p2p: mmap.mmap, host: _Aligned, progress,
               watch: KernelWatch | None = None) -> None:
    """``repeat`` rounds of reads (and, with a destination, writes) through host memory and
    through the p2pmem mapping, alternating which goes first; p2p stops after a refusal, and
    everything stops at the kernel's first refusal, command timeout or reset in the log."""
    src_fd = os.open(res.source, (os.O_RDWR if res.seeded else os.O_RDONLY) | os.O_DIRECT)
    dst_fd = os.open(res.destination, os.O_RDWR | os.O_DIRECT) if res.destination else None
    try:
        io = _Io(res, _reference(res, src_fd, host, progress), host)
        steps = [(r, direction, fd, path) for r in range(1, res.repeat + 1)
                 for direction, fd in [("read", src_fd)] + ([("write", dst_fd)] if dst_fd is not None else [])
                 for path in (("host", "p2p") if r % 2 else ("p2p", "host"))]
        for r, direction, fd, path in steps:
            if path == "p2p" and res.refusal:
                continue
            buf = p2p if path == "p2p" else host.mm
            t = (io.read_once if direction == "read" else io.write_once)(fd, buf, path, r)
            res.transfers.append(t)
            progress(_line(t))
            if _stopped(res, t, watch):
                break
    finally:
        os.close(src_fd)
        if dst_fd is not None:
            os.close(dst_fd)


def _stopped(res: P2pTestResult, t: Transfer, watch: KernelWatch | None) -> bool:
    """The kernel logged a refusal, a command timeout or a controller reset about this run's
    devices: no more I/O (a refused p2p page the engine kept submitting ended in resets)."""
    stop = watch.check() if watch is not None else None
    if stop is None:
        return False
    res.stopped = stop.to_dict()
    if stop.refused and res.refusal is None:
        res.refusal = {"direction": t.direction, "device": t.device, "errno": _errno.EINVAL,
                       "errname": "EINVAL"}
    return True


def _reference(res: P2pTestResult, src_fd: int, host: _Aligned, progress) -> bytes:
    """What every transfer must deliver: a seeded pattern written to the source first, or (a
    read-only source) the source's content read once through host memory."""
    size, off = res.size, res.offset
    if not res.seeded:
        n = os.preadv(src_fd, [host.mm], off)
        progress(f"read the reference copy of {res.source} (read-only source: consistency check)")
        return bytes(host.mm[:n])
    expected = random.Random(res.seed).randbytes(size)
    host.mm[:] = expected
    n = os.pwritev(src_fd, [host.mm], off)
    os.fsync(src_fd)
    if n != size:
        raise NvmetP2PError(f"seeding {res.source} wrote {n} of {size} bytes")
    progress(f"seeded {size} bytes of {res.source} at offset {off} (seed {res.seed})")
    return expected


@dataclass
class _Io:
    """The transfers of one run: its result, what every transfer must deliver, and the host
    buffer (refilled before each host-memory write)."""

    res: P2pTestResult
    expected: bytes
    host: _Aligned

    def read_once(self, fd: int, buf, path: str, r: int) -> Transfer:
        """One O_DIRECT read of the source into ``buf``, checked against ``expected``."""
        res, expected = self.res, self.expected
        t = Transfer("read", path, res.source, r)
        buf[:PAGE] = b"\xee" * PAGE      # poison the head: a no-op transfer cannot pass
        try:
            t.bytes, t.seconds = _io(os.preadv, fd, buf, res.offset)
            _verify(res, t, _first_mismatch(bytes(buf[:t.bytes]), expected), "data mismatch")
        except OSError as exc:
            _failed(res, t, exc, res.source)
        return t


    def write_once(self, fd: int, buf, path: str, r: int) -> Transfer:
        """One O_DIRECT write of ``buf`` (host memory refilled with ``expected`` first) to the
        destination, fsynced and read back through a fresh host buffer."""
        res, expected, host = self.res, self.expected, self.host
        if path == "host":
            host.mm[:] = expected
        t = Transfer("write", path, res.destination, r)
        try:
            t.bytes, t.seconds = _io(os.pwritev, fd, buf, res.offset)
            os.fsync(fd)
            back = _Aligned(res.size)
            try:
                n = os.preadv(fd, [back.mm], res.offset)
                bad = _first_mismatch(bytes(back.mm[:n]), expected)
            finally:
                back.close()
            _verify(res, t, bad, "read-back mismatch")
        except OSError as exc:
            _failed(res, t, exc, res.destination)
        return t


def _verify(res: P2pTestResult, t: Transfer, bad: int | None, what: str) -> None:
    """Verified: every byte arrived and matched; else the first bad byte, as a device offset."""
    t.verified = bad is None and t.bytes == res.size
    if bad is not None:
        t.error = f"{what} at byte {res.offset + bad} of {t.device}"


def _failed(res: P2pTestResult, t: Transfer, exc: OSError, device: str) -> None:
    """A transfer the kernel refused: on the p2p path that is the test's refusal (and p2p is
    not tried again)."""
    t.error, t.errno = exc.strerror, exc.errno
    if t.path == "p2p":
        res.refusal = {"direction": t.direction, "device": device, "errno": exc.errno,
                       "errname": _errno.errorcode.get(exc.errno, str(exc.errno))}


def _line(t: Transfer) -> str:
    arrow = f"{t.device} -> buffer" if t.direction == "read" else f"buffer -> {t.device}"
    if t.error and t.seconds is None:
        return f"{t.direction} {arrow} via {t.path}: {t.error}"
    rate = f"{t.mb_per_s:.1f} MB/s" if t.mb_per_s else "-"
    return f"{t.direction} {arrow} via {t.path}: {rate}, verified {'yes' if t.verified else 'NO'}"


def _explain(res: P2pTestResult) -> None:
    """Why the kernel refused: the prediction, and what the kernel printed."""
    assert res.refusal is not None
    explain_refusal(res.provider, res.refusal, res.prediction, res.kernel_log)


def explain_refusal(provider: str, r: dict, prediction: dict, kernel_log: list[str]) -> None:
    """Fill ``r["explanation"]`` and ``r["kernel_parameter"]`` of a refusal ``r`` (``device``,
    ``errno``, ``errname``) from the distance prediction and the kernel's own lines."""
    dev = r["device"]
    pred = prediction.get(dev, {})
    events = ev.parse_log(kernel_log)
    lines = [e.message for e in events if e.kind in ev.REFUSAL_KINDS or e.kind == ev.KIND_ACS_PARAMETER]
    kp = next((e.kernel_parameter for e in events if e.kernel_parameter), None) or pred.get("kernel_parameter")
    who = f"{dev} ({pred.get('pci') or 'no PCI parent'})"
    if r.get("before_io"):
        r["explanation"] = (
            f"refused before any I/O: the kernel's p2pdma rules refuse p2p DMA between {who} and "
            f"provider {provider}, so the kernel would fail every transfer (EINVAL) -- and keep "
            "failing them until the drive times out and is reset; nothing was mapped, read or "
            "written: " + "; ".join(pred.get("reasons") or ["not supported"]))
        r["kernel_parameter"] = pred.get("kernel_parameter")
        return
    if r["errno"] == _errno.EINVAL:
        if pred.get("map_type") == MapType.NOT_SUPPORTED:
            text = (f"the kernel refused the p2p DMA between {who} and provider {provider} (EINVAL), "
                    f"as predicted: " + "; ".join(pred.get("reasons") or ["not supported"]))
        elif pred.get("map_type") in (MapType.BUS_ADDR, MapType.THRU_HOST_BRIDGE):
            text = (f"UNEXPECTED: predicted {pred['map_type']} for {who} -> {provider}, but the kernel "
                    f"refused with EINVAL")
        else:
            text = (f"the kernel refused the p2p DMA between {who} and provider {provider} (EINVAL): "
                    f"the devices cannot reach each other (no common switch and a host bridge the kernel "
                    f"does not trust, or ACS)")
    elif r["errno"] == _errno.EREMOTEIO:
        text = f"the transfer failed with EREMOTEIO: the DMA to {provider} did not complete"
    else:
        text = f"the transfer failed: {os.strerror(r['errno'])} ({r['errname']})"
    if lines:
        text += ". Kernel: " + " | ".join(lines)
    elif r["errno"] == _errno.EINVAL:
        text += (". (The kernel prints its reason only the first time it evaluates a device pair; "
                 "it caches the answer.)")
    r["explanation"] = text
    r["kernel_parameter"] = kp


def render(res: P2pTestResult) -> str:
    L = []
    if res.emulated:
        L.append(f"[{res.emulated}]")
    L.append(f"provider {res.provider}: p2pmem {res.pool.get('size', 0) / 1048576:.1f} MiB, "
             f"{res.pool.get('available_before', 0) / 1048576:.1f} MiB available; "
             f"{res.size / 1048576:g} MiB per transfer, {res.repeat} repeat(s), interleaved")
    for dev, p in res.prediction.items():
        extra = f" ({'; '.join(p['reasons'])})" if p.get("reasons") else ""
        L.append(f"prediction: {dev} ({p.get('pci') or 'no PCI parent'}) <-> {res.provider}: "
                 f"{p.get('map_type') or 'unknown'}{extra}")
    before_io = bool(res.refusal and res.refusal.get("before_io"))
    if before_io:
        L.append("data: nothing mapped, read or written (refused before any I/O)")
    else:
        L.append("data: " + (f"source seeded with seed {res.seed}" if res.seeded else
                             "read-only source: p2p read compared with a host-buffer read of the same "
                             "region"))
    m = res.medians()
    rows = []
    for d, dev in (("read", res.source), ("write", res.destination)):
        if d == "write" and not dev:
            continue
        for p in ("p2p", "host"):
            ts = [t for t in res.transfers if t.direction == d and t.path == p]
            if not ts:
                rows.append([d, dev, p, "-", "not run (refused)"])
                continue
            v = m[f"{d}_{p}_mb_per_s"]
            ok = "yes" if all(t.verified for t in ts) else ("refused" if any(t.errno for t in ts) else "NO")
            rows.append([d, dev, p, f"{v:.1f}" if v else "-", ok])
    L.append(table(["direction", "device", "buffer", "MB/s (median)", "verified"], rows))
    for d in ("read", "write"):
        r = m[f"{d}_ratio_p2p_host"]
        if r:
            L.append(f"{d}: p2p / host buffer = {r:.3f}")
    if before_io:
        L.append(f"p2pmem available: {res.pool.get('available_before')} (not mapped)")
    else:
        L.append(f"p2pmem available: {res.pool.get('available_before')} before, "
                 f"{res.pool.get('available_mapped')} while mapped, {res.pool.get('available_after')} after")
    if res.explanation:
        L.append(f"likely cause: {res.explanation['summary']}")
        for c in res.explanation.get("causes", [])[:5]:
            L.append(f"  kernel: {c['line']}")
    if res.stopped:
        states = ", ".join(f"{c} {s}" for c, s in res.controllers.items()) or "unknown"
        L.append(f"STOPPED at the kernel's line ({res.stopped['kind']}): {res.stopped['line']} -- no "
                 f"more I/O was issued; controllers now: {states}")
    if res.refusal:
        L.append(f"REFUSED: {res.refusal['explanation']}")
        if res.refusal.get("kernel_parameter"):
            L.append(f"kernel parameter that would change it: {res.refusal['kernel_parameter']}")
    L.append(f"verdict: {res.verdict}" + (f" — data went through the BAR of {res.provider}" if res.verified else ""))
    return "\n".join(L)
