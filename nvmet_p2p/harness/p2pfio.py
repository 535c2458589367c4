"""``p2p-test --engine fio``: fio with its I/O buffers in a provider's p2pmem — the plan and the judgement.

fio maps a job's buffers from ``iomem=mmapshared:/sys/bus/pci/devices/<BDF>/p2pmem/allocate``
(``MAP_SHARED`` at offset 0, no ``ftruncate``: what the kernel's ``p2pmem_alloc_mmap`` accepts),
so an ``O_DIRECT`` read makes the namespace's NVMe DMA into the provider's BAR and an
``O_DIRECT`` write makes it DMA out of it, at fio's queue depths. This module is pure: the
plan (block size x queue depth x engine cells, regions, what the pool must hold), the fio
workloads, and the verdict from fio's results. The runner is :mod:`nvmet_p2p.harness.p2pfio_run`.

What fio 3.33 (Debian bookworm) does with the sysfs file, measured in the lab (kernel 7.3):

* one job maps ``bs x iodepth + 8 KiB``: fio adds a page for O_DIRECT alignment in
  ``init_io_u_buffers()`` and another in ``allocate_io_mem()``, and ``mmap(2)`` rounds the
  length up to pages (4 KiB x 1 -> 12288 bytes, 128 KiB x 4 -> 532480 bytes taken from
  ``p2pmem/available``). The kernel hands out one *contiguous* range per mapping
  (``gen_pool_alloc_owner``), page aligned; fio's buffers start at its base, ``bs`` apart.
* every job (and every ``numjobs`` clone, and every namespace's job) maps its own range.
* when the pool cannot hold a mapping the kernel refuses the mmap (ENOMEM, nothing logged);
  fio 3.33 ignores that failure (``init_io_u()`` drops ``init_io_u_buffers()``'s status), sets
  the job's error to 12 and issues an I/O from a NULL buffer ("Bad address"). So the plan
  checks the pool before anything starts, and a job error 12 on a p2p job is reported as that.
* ``thread=1`` with ``iomem=mmapshared`` and ``numjobs`` > 1 aborts fio ("double free or
  corruption": every thread frees the shared file name): jobs always run as processes.
* a fresh mapping is *not* cleared: it holds whatever the pool's pages held before (an earlier
  fio job's blocks, headers included). A read whose DMA never arrives would then be checked
  against stale, well-formed blocks; the runner therefore writes a poison byte pattern at the
  head of every 4 KiB of the ranges fio will get just before each verified p2p read, so a
  lost DMA shows as "bad magic header eeee".
* a refused pair (no common upstream bridge, ACS) fails every I/O with EINVAL ("Invalid
  argument"), the kernel printing its reason the first time it evaluates the pair.
* behind QEMU's emulated intel-iommu a peer DMA the kernel allowed (bus_addr) faults in the
  IOMMU ("DMAR: [DMA Write NO_PASID] Request device [...] fault addr <in the provider's
  BAR>") and the NVMe still completes the command without error: a p2p read leaves the buffer
  as it was (the poison), a p2p write stores zeros. Only verification sees it: lost data.

Data checks (fio's ``verify=crc32c`` with ``verify_interval=4096``: every 4 KiB carries a
header with magic, length, its own byte offset and a CRC32C of the block, so a block from
the wrong place fails on the offset and a stale or empty one on the magic). Each namespace
has two regions of ``size`` bytes: the p2p region at ``offset`` and the host region right
after it, so the p2p and host jobs never read each other's data and both read written blocks
(an SSD answers never-written blocks without touching its media). In order:

1. ``prep-zero`` (host buffer) zeroes the p2p region and ``prep-host`` writes the host region
   with headers;
2. ``verify-p2p-write``: one pass of writes *from the CMB* over the p2p region, then
   ``verify-host-read`` reads it back through host memory: the CMB -> NVMe direction (a lost
   write leaves the zeros of step 1);
3. ``verify-p2p-read``: reads *into the CMB* (poisoned first) with verification: the
   NVMe -> CMB direction (the region is refilled through host memory first if step 2 failed,
   so the two directions are judged apart);
4. the matrix, timed and interleaved: per cell and round, p2p then host (host then p2p in the
   next round), each a write (blocks with headers) then a read; reads are not verified by
   default, because verifying a p2p read means the CPU reads the CMB (uncached MMIO: that
   would time the CPU, not the DMA); ``--verify-reads`` turns it on;
5. ``final-host-read`` checks the p2p region again (every block the matrix wrote from the CMB)
   and ``final-host-control`` the host region (the namespace itself is sound).
"""

from __future__ import annotations

import mmap
from dataclasses import asdict, dataclass, field

from nvmet_p2p.errors import InputError
from nvmet_p2p.harness.fio import Workload

PAGE = mmap.PAGESIZE
VERIFY = "crc32c"
VERIFY_INTERVAL = 4096
POISON = 0xEE                # written at the head of every 4 KiB of the pool before a verified p2p read
POISON_HEAD = 16             # bytes of each 4 KiB poisoned: fio's header magic, length and seed
POISON_MAGIC = "eeee"        # how fio prints the poison when it finds it instead of a header
DEFAULT_BS = (4 << 10, 128 << 10, 1 << 20)
DEFAULT_QDS = (1, 4, 16, 32)
ENGINES = ("libaio", "io_uring")
DEFAULT_SIZE = 256 << 20     # bytes of each region (p2p and host) of every namespace
KINDS = ("p2p", "host")
FIO_EXTRA_PAGES = 2          # pages fio 3.33 adds to bs x iodepth for an O_DIRECT job


def fio_buffer_bytes(bs: int, iodepth: int) -> int:
    """Bytes one fio 3.33 O_DIRECT job maps from the pool: ``bs x iodepth`` plus the two
    pages of alignment slack fio adds, rounded up to pages as ``mmap(2)`` does."""
    raw = bs * iodepth + FIO_EXTRA_PAGES * (PAGE - 1)
    return -(-raw // PAGE) * PAGE


def size_label(n: int) -> str:
    """A byte count the way fio and people write it: 4096 -> ``4k``, 1048576 -> ``1m``."""
    for unit, suffix in ((1 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def parse_int_list(text: str, what: str, lo: int, hi: int) -> tuple[int, ...]:
    """``"1,4,16"`` -> (1, 4, 16), each within lo..hi."""
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"expected integers separated by commas, got {text!r}", where=what) from None
    if not vals or any(v < lo or v > hi for v in vals):
        raise InputError(f"values must be {lo}..{hi}, got {text!r}", where=what)
    return tuple(sorted(set(vals)))


def parse_engines(text: str) -> tuple[str, ...]:
    vals = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    bad = [v for v in vals if v not in ENGINES]
    if not vals or bad:
        raise InputError(f"unknown fio engine(s) {', '.join(bad) or text!r}; choose from {', '.join(ENGINES)}",
                         where="--ioengine")
    return vals


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One point of the matrix: a sequential read or write at one block size, queue depth and
    fio engine."""

    rw: str          # "read" (NVMe -> buffer) or "write" (buffer -> NVMe)
    bs: int
    iodepth: int
    engine: str

    @property
    def name(self) -> str:
        return f"seq-{self.rw}-{size_label(self.bs)}-qd{self.iodepth}-{self.engine}"

    def to_dict(self) -> dict:
        return {"name": self.name, "rw": self.rw, "bs": self.bs, "iodepth": self.iodepth, "engine": self.engine}


@dataclass
class Plan:
    """Everything a run does, decided before the first write (``make_plan``)."""

    provider: str
    devices: list[str]
    iomem: str                  # fio's iomem= value
    size: int                   # bytes of each region actually used (numjobs slices of ``job_size``)
    job_size: int               # bytes each fio job covers (its slice of a region)
    offset: int
    numjobs: int
    cells: list[Cell]
    repeat: int
    runtime: float
    ramp: float
    engines: tuple[str, ...]
    available: int              # p2pmem/available when planned
    pool_size: int
    verify_bs: int
    verify_qd: int
    verify_reads: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def p2p_offset(self) -> int:
        return self.offset

    @property
    def host_offset(self) -> int:
        return self.offset + self.size

    def mappings(self, bs: int, iodepth: int, devices: int | None = None) -> list[int]:
        """The pool mappings fio makes for one job section per namespace (x numjobs)."""
        n = len(self.devices) if devices is None else devices
        return [fio_buffer_bytes(bs, iodepth)] * (n * self.numjobs)

    def need(self, bs: int, iodepth: int, devices: int | None = None) -> int:
        return sum(self.mappings(bs, iodepth, devices))

    @property
    def largest(self) -> tuple[int, int]:
        """(bs, iodepth) of the cell that needs the most pool (the verify passes use it too)."""
        c = max(self.cells, key=lambda c: (c.bs * c.iodepth, c.bs))
        return c.bs, c.iodepth

    def runs_planned(self) -> int:
        return len(VERIFY_STEPS) + len(self.cells) * self.repeat * len(KINDS)

    def seconds_planned(self) -> float:
        return len(self.cells) * self.repeat * len(KINDS) * (self.runtime + self.ramp)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cells"] = [c.to_dict() for c in self.cells]
        d.update(p2p_offset=self.p2p_offset, host_offset=self.host_offset,
                 largest_need=self.need(*self.largest), runs_planned=self.runs_planned(),
                 fio_buffer_per_job=fio_buffer_bytes(*self.largest))
        return d


def _cells(bss, qds, engines) -> list[Cell]:
    return [Cell(rw, bs, qd, eng) for eng in engines for bs in bss for qd in qds for rw in ("write", "read")]


def _numjobs(numjobs: int | str, ndev: int, bs: int, qd: int, available: int) -> int:
    """``numjobs`` as asked, or "max": as many as the pool holds for the largest cell."""
    if numjobs == "max":
        n = available // (ndev * fio_buffer_bytes(bs, qd))
        if n < 1:
            raise InputError(f"even one job per namespace needs {ndev * fio_buffer_bytes(bs, qd)} bytes of "
                             f"p2pmem at bs {size_label(bs)} x iodepth {qd}, {available} are available",
                             where="--numjobs")
        return min(n, 64)
    if not isinstance(numjobs, int) or numjobs < 1 or numjobs > 64:
        raise InputError(f"numjobs must be 1..64 or 'max', got {numjobs!r}", where="--numjobs")
    return numjobs


@dataclass(frozen=True)
class _Pool:
    """The provider's pool the matrix must fit in: ``available`` bytes, shared by ``ndev``
    namespaces' jobs."""

    provider: str
    ndev: int
    available: int

    def fit_message(self, numjobs: int, bs: int, qd: int) -> str:
        provider, ndev, available = self.provider, self.ndev, self.available
        per = fio_buffer_bytes(bs, qd)
        need = ndev * numjobs * per
        best = max((q for q in range(1, qd + 1) if ndev * numjobs * fio_buffer_bytes(bs, q) <= available),
                   default=0)
        hint = (f"at bs {size_label(bs)} the pool holds iodepth {best} with these jobs" if best
                else f"bs {size_label(bs)} does not fit even at iodepth 1 with these jobs")
        return (f"bs {size_label(bs)} x iodepth {qd}: {ndev} namespace(s) x {numjobs} job(s) x {per} bytes "
                f"(bs x iodepth + {FIO_EXTRA_PAGES * PAGE // 1024} KiB fio adds) = {need} bytes of p2pmem, but "
                f"{provider} has {available} available; {hint} (lower --qd, --bs or --numjobs)")

    def select_cells(self, numjobs: int | str, bss, qds, engines,
                     explicit: bool) -> tuple[int, list[Cell], list[str]]:
        """(numjobs, the cells that fit, notes on those left out)."""
        ndev, available = self.ndev, self.available
        fits = [(bs, qd) for bs in bss for qd in qds if ndev * fio_buffer_bytes(bs, qd) <= available]
        if not fits:
            raise InputError(self.fit_message(1, min(bss), min(qds)), where="--qd")
        top = max(fits if not explicit else [(b, q) for b in bss for q in qds], key=lambda t: t[0] * t[1])
        nj = _numjobs(numjobs, ndev, *top, available)
        notes, cells = [], []
        for cell in _cells(bss, qds, engines):
            if ndev * nj * fio_buffer_bytes(cell.bs, cell.iodepth) <= available:
                cells.append(cell)
            elif explicit:
                raise InputError(self.fit_message(nj, cell.bs, cell.iodepth), where="--qd")
            elif cell.rw == "write" and cell.engine == engines[0]:
                notes.append(f"left out bs {size_label(cell.bs)} x iodepth {cell.iodepth}: "
                             + self.fit_message(nj, cell.bs, cell.iodepth))
        if not cells:
            raise InputError(f"no cell of the matrix fits with {nj} job(s): " + notes[0], where="--numjobs")
        return nj, cells, notes


def _check_args(devices: list[str], bss: tuple[int, ...], repeat: int, runtime: float, ramp: float) -> None:
    if not devices:
        raise InputError("give at least one namespace")
    if len(set(devices)) != len(devices):
        raise InputError(f"a namespace is given twice: {' '.join(devices)}")
    if repeat < 1:
        raise InputError("repeat must be >= 1", where="--repeat")
    if runtime <= 0 or ramp < 0:
        raise InputError("--runtime must be > 0 and --ramp >= 0")
    for bs in bss:
        if bs <= 0 or bs % PAGE:
            raise InputError(f"block sizes must be multiples of {PAGE} bytes (p2pmem is page granular), "
                             f"got {bs}", where="--bs")


def _regions(device_sizes: dict[str, int | None], size: int, offset: int, nj: int,
             maxbs: int) -> tuple[int, list[str]]:
    """Bytes each job covers: its share of a region, in whole blocks of the largest size (and
    a note when that is not ``size``). ``device_sizes``: every namespace, its size when known."""
    notes = []
    job_size = (size // nj) // maxbs * maxbs
    if job_size <= 0:
        raise InputError(f"--size {size} is too small for {nj} job(s) of {size_label(maxbs)} blocks: each job needs "
                         f"at least one block", where="--size")
    used = job_size * nj
    if used != size:
        notes.append(f"each region is {used} bytes ({nj} job(s) x {job_size}, whole {size_label(maxbs)} blocks), "
                     f"not the {size} asked for")
    for dev, have in device_sizes.items():
        if have is not None and offset + 2 * used > have:
            raise InputError(f"{dev} has {have} bytes; the test writes 2 x {used} bytes (a p2p and a host "
                             f"region) at offset {offset}: lower --size or --offset", where="--size")
    return job_size, notes


def make_plan(provider: str, devices: list[str], *, available: int, pool_size: int, device_sizes: dict[str, int],
              iomem: str, size: int = DEFAULT_SIZE, offset: int = 0, numjobs: int | str = 1,
              bss: tuple[int, ...] | None = None, qds: tuple[int, ...] | None = None,
              engines: tuple[str, ...] = ("libaio",), repeat: int = 3, runtime: float = 5.0,
              ramp: float = 0.0, verify_reads: bool = False) -> Plan:
    """The whole run, or an :class:`InputError` naming what does not fit. With the default
    matrix, cells the pool cannot hold are left out (each with a note); cells asked for
    explicitly must all fit."""
    explicit = bss is not None or qds is not None
    bss, qds = tuple(bss or DEFAULT_BS), tuple(qds or DEFAULT_QDS)
    _check_args(devices, bss, repeat, runtime, ramp)
    nj, cells, notes = _Pool(provider, len(devices), available).select_cells(numjobs, bss, qds, engines, explicit)
    job_size, more = _regions({d: device_sizes.get(d) for d in devices}, size, offset, nj, max(c.bs for c in cells))
    notes += more
    plan = Plan(provider=provider, devices=list(devices), iomem=iomem, size=job_size * nj, job_size=job_size,
                offset=offset, numjobs=nj, cells=cells, repeat=repeat, runtime=runtime, ramp=ramp,
                engines=tuple(engines), available=available, pool_size=pool_size, verify_bs=0, verify_qd=0,
                verify_reads=verify_reads, notes=notes)
    plan.verify_bs, plan.verify_qd = plan.largest
    return plan


# --------------------------------------------------------------------------------------
# Workloads (fio job sections through nvmet_p2p.harness.fio)
# --------------------------------------------------------------------------------------

#: The verification passes in the order they run: (name, buffer kind, region, rw, data).
#: data: "zero" zero-filled blocks, "headers" blocks with verify headers, "verify" check them.
VERIFY_STEPS = (
    ("prep-zero", "host", "p2p", "write", "zero"),
    ("prep-host", "host", "host", "write", "headers"),
    ("verify-p2p-write", "p2p", "p2p", "write", "headers"),
    ("verify-host-read", "host", "p2p", "read", "verify"),
    ("verify-p2p-read", "p2p", "p2p", "read", "verify"),
    ("final-host-read", "host", "p2p", "read", "verify"),
    ("final-host-control", "host", "host", "read", "verify"),
)
#: What each verifying pass proves (the check a failure is reported under).
CHECKS = {"verify-host-read": "cmb_to_nvme", "verify-p2p-read": "nvme_to_cmb",
          "final-host-read": "matrix_writes", "final-host-control": "host_control"}
CHECK_TEXT = {"cmb_to_nvme": "CMB -> NVMe (p2p write, read back through host memory)",
              "nvme_to_cmb": "NVMe -> CMB (p2p read, checked in the CMB)",
              "matrix_writes": "every matrix write from the CMB (read back through host memory)",
              "host_control": "host-memory control (the namespace itself)"}
REFILL = ("refill-host", "host", "p2p", "write", "headers")
#: The checks whose failure means data was lost on a p2p path.
P2P_CHECKS = ("cmb_to_nvme", "nvme_to_cmb", "matrix_writes")


def check_words(s: dict) -> list[str]:
    """A namespace's four checks in words (a refused pair's p2p checks say "refused")."""
    word = {"verified": "yes", "lost": "LOST", "error": "error", None: "-"}
    out = []
    for k in ("cmb_to_nvme", "nvme_to_cmb", "matrix_writes", "host_control"):
        st = s["checks"].get(k, {}).get("status")
        out.append("refused" if s.get("refusal") and k in P2P_CHECKS and st != "lost" else word.get(st, st))
    return out


@dataclass(frozen=True)
class _Pass:
    """One fio pass of a run: its name, the buffer ``kind`` (p2p or host), the ``region`` of
    the namespace it covers, the I/O (rw, bs, qd, engine), what it writes or checks
    (``data``, see VERIFY_STEPS) and whether it is a timed matrix cell or a verify pass."""

    name: str
    kind: str
    region: str
    rw: str
    bs: int
    qd: int
    engine: str
    data: str | None
    timed: bool


def _workload(plan: Plan, p: _Pass) -> Workload:
    name, kind, region, rw, bs, qd, data, timed = p.name, p.kind, p.region, p.rw, p.bs, p.qd, p.data, p.timed
    group = "matrix" if timed else "verify"
    extra = {"ioengine": p.engine}
    if kind == "p2p":
        extra["iomem"] = plan.iomem
    if plan.numjobs > 1:
        extra["offset_increment"] = str(plan.job_size)
    verify = None
    if data == "zero":
        extra["zero_buffers"] = "1"
    elif data in ("headers", "verify"):
        verify = VERIFY
        extra["verify_interval"] = str(VERIFY_INTERVAL)
        if data == "headers":
            extra["do_verify"] = "0"       # write the headers; the check is a separate read pass
    off = plan.p2p_offset if region == "p2p" else plan.host_offset
    return Workload(name=name, rw=rw, bs=size_label(bs), iodepth=qd, numjobs=plan.numjobs,
                    size=str(plan.job_size), offset=str(off), verify=verify,
                    runtime=plan.runtime if timed else None, ramp_time=plan.ramp if timed and plan.ramp else None,
                    kind="throughput" if timed else "integrity", group=group, extra=extra)


def verify_workload(plan: Plan, step: tuple) -> Workload:
    name, kind, region, rw, data = step
    return _workload(plan, _Pass(name, kind, region, rw, plan.verify_bs, plan.verify_qd, plan.engines[0],
                                 data=data, timed=False))


def matrix_workload(plan: Plan, cell: Cell, kind: str) -> Workload:
    """A timed cell for one buffer kind: writes carry verify headers (the final pass checks
    them), reads are verified only with ``verify_reads``."""
    data = "headers" if cell.rw == "write" else ("verify" if plan.verify_reads else None)
    return _workload(plan, _Pass(cell.name, kind, kind, cell.rw, cell.bs, cell.iodepth, cell.engine,
                                 data=data, timed=True))


def matrix_order(plan: Plan) -> list[tuple[Cell, str, int]]:
    """(cell, kind, round) in run order: per (bs, qd, engine) and round, p2p then host (host
    then p2p in even rounds), each a write then a read — so drift hits both kinds alike."""
    out = []
    keys = list(dict.fromkeys((c.engine, c.bs, c.iodepth) for c in plan.cells))
    for eng, bs, qd in keys:
        pair = [c for c in plan.cells if (c.engine, c.bs, c.iodepth) == (eng, bs, qd)]
        pair.sort(key=lambda c: c.rw != "write")
        for rnd in range(1, plan.repeat + 1):
            for kind in (KINDS if rnd % 2 else KINDS[::-1]):
                out += [(c, kind, rnd) for c in pair]
    return out
