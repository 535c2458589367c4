"""The named workload matrix of ``nvmet-p2p bench``.

Defaults follow how NVMe-oF throughput is usually reported: bandwidth from sequential
128 KiB and 1 MiB I/O at several queue depths,
IOPS and latency from 4 KiB random I/O (QD1 for latency, a deep queue for IOPS), and an
integrity job that every throughput claim stands on.

The integrity job writes blocks of random sizes between the device's logical block size and
1 MiB + 4 KiB (``bsrange``): sizes that are not multiples of the 4 KiB page straddle p2pmem
allocation boundaries (nvmet allocates one page-granular chunk per command) and the largest
exceed nvmet-rdma's 1 MiB MDTS, so the host splits them. Each block carries fio's verify
header (magic, offset, length, seed, CRC32C of the payload): a misdirected or stale block
fails on its header, a flipped bit on its checksum. ``verify_backlog`` reads blocks back
while writing; a separate ``verify_only`` pass then re-reads everything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nvmet_p2p.errors import InputError
from nvmet_p2p.harness.fio import Workload

DEFAULT_QDS = (1, 8, 32)
MATRICES = ("default", "quick", "integrity", "throughput")


@dataclass(frozen=True)
class _Timed:
    """What every timed workload of one matrix shares: its runtime, ramp and size."""

    runtime: float
    ramp: float
    size: str | None

    def seq(self, rw: str, bs: str, qd: int) -> Workload:
        label = "read" if rw == "read" else "write"
        return Workload(name=f"seq-{label}-{bs}-qd{qd}", rw=rw, bs=bs, iodepth=qd, runtime=self.runtime,
                        ramp_time=self.ramp, size=self.size, kind="throughput")

    def rand(self, rw: str, qd: int) -> Workload:
        label = "read" if rw == "randread" else "write"
        return Workload(name=f"rand-{label}-4k-qd{qd}", rw=rw, bs="4k", iodepth=qd, runtime=self.runtime,
                        ramp_time=self.ramp, size=self.size, kind="latency" if qd == 1 else "throughput")


def integrity_workloads(size: str = "1g", lbs: int = 512, iodepth: int = 16,
                        seed: int = 20261125, offset: str | None = None) -> list[Workload]:
    """The integrity job: a write pass (verify while writing) and a verify-only pass."""
    common = dict(rw="randwrite", bsrange=f"{lbs}-1028k", iodepth=iodepth, size=size, offset=offset,
                  verify="crc32c", randseed=seed, kind="integrity", group="integrity")
    return [Workload(name="integrity-write", phase="write", verify_backlog=256, **common),
            Workload(name="integrity-verify", phase="verify", **common)]


def build_matrix(name: str = "default", *, runtime: float = 30.0, ramp: float = 5.0,
                 qds: tuple[int, ...] | None = None, size: str | None = None,
                 integrity_size: str = "1g", lbs: int = 512) -> list[Workload]:
    """The workloads of a named matrix, in the order they run."""
    if name not in MATRICES:
        raise InputError(f"unknown matrix {name!r}; choose one of {', '.join(MATRICES)}", where="--matrix")
    timed = _Timed(runtime, ramp, size)
    if name == "quick":
        qds = qds or (16,)
        out = [timed.seq("read", "128k", q) for q in qds]
        out += [timed.seq("write", "128k", q) for q in qds]
        out += [timed.rand("randread", q) for q in qds]
        return out + integrity_workloads(integrity_size, lbs)
    if name == "integrity":
        return integrity_workloads(integrity_size, lbs)
    qds = qds or DEFAULT_QDS
    out = []
    for bs in ("128k", "1m"):
        for rw in ("read", "write"):
            out += [timed.seq(rw, bs, q) for q in qds]
    rand_qds = sorted({1, max(qds)})
    for rw in ("randread", "randwrite"):
        out += [timed.rand(rw, q) for q in rand_qds]
    if name == "default":
        out += integrity_workloads(integrity_size, lbs)
    return out


def select(workloads: list[Workload], names: list[str] | None) -> list[Workload]:
    """Keep only ``names`` (in matrix order); selecting one integrity phase keeps both."""
    if not names:
        return workloads
    known = [w.name for w in workloads]
    wanted = set(names)
    if "integrity" in wanted:
        wanted |= {"integrity-write", "integrity-verify"}
        wanted.discard("integrity")
    bad = sorted(n for n in wanted if n not in known)
    if bad:
        raise InputError(f"unknown workload(s) {', '.join(bad)}; this matrix has: {', '.join(known)}",
                         where="--workload")
    groups = {w.group for w in workloads if w.name in wanted and w.group}
    return [w for w in workloads if w.name in wanted or (w.group and w.group in groups)]


def with_overrides(w: Workload, **kw) -> Workload:
    return replace(w, **{k: v for k, v in kw.items() if v is not None})
