"""``nvmet-p2p p2p-test``: NVMe -> CMB -> NVMe through p2pmem/allocate, verified and timed.

Two engines: ``copy`` (the default: one synchronous transfer at a time, every byte compared)
and ``fio`` (fio with its buffers in the provider's p2pmem, a block size x queue depth
matrix, fio's verification, host buffers interleaved; :mod:`nvmet_p2p.harness.p2pfio`).
"""

from __future__ import annotations

import os
import sys

from nvmet_p2p import exits, paths
from nvmet_p2p.commands._common import Example
from nvmet_p2p.errors import InputError
from nvmet_p2p.harness import p2pfio as pf
from nvmet_p2p.harness import p2pfio_report as rep
from nvmet_p2p.harness import p2ptest
from nvmet_p2p.harness.environment import emulation_label
from nvmet_p2p.harness.fio import fio_version
from nvmet_p2p.harness.hostsys import read_text
from nvmet_p2p.harness.p2pfio_run import FioP2pRun, alloc_path, probe_pool
from nvmet_p2p.output import Progress, emit

NAME = "p2p-test"
ORDER = 80
HELP = "validate a CMB path from userspace: O_DIRECT namespace -> provider's p2pmem -> namespace, verified"
DESCRIPTION = (
    "Map a provider's p2pmem (/sys/bus/pci/devices/<BDF>/p2pmem/allocate, Linux 6.2+), read a namespace "
    "into it with O_DIRECT (the NVMe DMAs into the peer's BAR), optionally write it out to another "
    "namespace, verify every byte, and time the same transfers through an ordinary host buffer. "
    "Predicts the outcome with the distance rules and explains a refusal (EINVAL). --engine fio runs "
    "fio instead (iomem=mmapshared on the pool, libaio/io_uring, a block size x queue depth matrix of "
    "reads into and writes from the CMB on every namespace given, fio's crc32c verification, host "
    "buffers interleaved, results like bench's).")

#: Options only the fio engine takes (dest -> flag), None when not given.
FIO_ONLY = {"bs": "--bs", "qd": "--qd", "ioengine": "--ioengine", "numjobs": "--numjobs", "runtime": "--runtime",
            "ramp": "--ramp", "out": "--out", "sample_interval": "--sample-interval"}

EXAMPLES = (
    Example("nvmet-p2p p2p-test 0000:03:00.0 /dev/nvme1n1 --read-only-source", "read a namespace "
            "into the CMB of 03:00.0 and compare with a read through host memory (nothing "
            "written)", lab=True),
    Example("nvmet-p2p p2p-test 0000:03:00.0 /dev/nvme3n1 --read-only-source", "a pair the kernel "
            "refuses: exit status 5, with the reason", status=exits.NO_P2P, lab=True),
)


def register(p):
    p.add_argument("provider", metavar="PROVIDER", help="PCI BDF of the p2pmem provider (e.g. an NVMe with a CMB)")
    p.add_argument("source", metavar="SRC", help="namespace block device to read from (/dev/nvmeXnY)")
    p.add_argument("destination", metavar="DST", nargs="*",
                   help="namespace to write the buffer to (copy: at most one; fio: more namespaces to test)")
    p.add_argument("--engine", choices=("copy", "fio"), default="copy",
                   help="copy: one synchronous transfer at a time (default); fio: fio at queue depth")
    p.add_argument("--size", default=None,
                   help="copy: bytes per transfer (default 16M); fio: bytes of each of the two regions (p2p, "
                        "host) per namespace (default 256M); a multiple of the page size")
    p.add_argument("--offset", default="0", help="byte offset on the namespaces, e.g. 128M (default 0)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--seed", type=int, default=20261125, help="copy: seed of the pattern written to SRC")
    p.add_argument("--read-only-source", action="store_true",
                   help="copy: do not seed SRC: compare the p2p read with a host-buffer read instead")
    p.add_argument("--allow-write", action="store_true",
                   help="permit writing the namespaces: their data in the tested range is destroyed")
    g = p.add_argument_group("fio engine")
    g.add_argument("--bs", metavar="SIZE,...", help="block sizes (default 4k,128k,1m; cells the pool cannot hold "
                                                    "are left out of the default matrix)")
    g.add_argument("--qd", metavar="Q,...", help="queue depths (default 1,4,16,32)")
    g.add_argument("--ioengine", metavar="ENGINE,...", help="libaio, io_uring or both (default libaio)")
    g.add_argument("--numjobs", metavar="N|max", help="fio jobs per namespace (default 1; max: as many as the "
                                                     "pool holds at the largest cell)")
    g.add_argument("--runtime", type=float, metavar="SECONDS", help="per timed run (default 5)")
    g.add_argument("--ramp", type=float, metavar="SECONDS", help="ramp time of each timed run (default 0)")
    g.add_argument("--verify-reads", action="store_true",
                   help="verify every matrix read too (the CPU then reads the CMB: slower, times the CPU)")
    g.add_argument("--sample-interval", type=float, metavar="SECONDS",
                   help="how often p2pmem/available is read while fio runs (default 0.25)")
    g.add_argument("--out", metavar="DIR",
                   help="results directory (default results/p2p-test-<time>; below --root when it "
                        "is not /)")
    g.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    g.add_argument("--fio", default="fio", help="fio binary (default fio)")


def run(args) -> int:
    if args.engine == "fio":
        return _run_fio(args)
    given = [flag for dest, flag in FIO_ONLY.items() if getattr(args, dest) is not None]
    given += [f for f, on in (("--verify-reads", args.verify_reads), ("--no-plots", args.no_plots)) if on]
    if given:
        raise InputError(f"{', '.join(given)} only apply to --engine fio")
    if len(args.destination) > 1:
        raise InputError("the copy engine writes to one DST; --engine fio tests several namespaces",
                         where="DST")
    dst = args.destination[0] if args.destination else None
    size = p2ptest.parse_size(args.size or "16M")
    offset = p2ptest.parse_size(args.offset, "--offset", zero_ok=True)
    writes = [d for d in ([] if args.read_only_source else [args.source]) + [dst] if d]
    if writes and not args.allow_write:
        raise InputError(f"this overwrites {size} bytes at offset {offset} of {', '.join(writes)}; pass "
                         f"--allow-write (or --read-only-source and no DST)", where="--allow-write")
    res = p2ptest.run(args.provider, args.source, dst, size=size, offset=offset,
                      repeat=args.repeat, seed=args.seed, seed_source=not args.read_only_source,
                      root=args.root, kernel=args.kernel, progress=Progress(quiet=args.quiet))
    emit(args.json, res.to_dict(), lambda _d: p2ptest.render(res))
    return {"verified": exits.OK, "refused": exits.NO_P2P}.get(res.verdict, exits.FAILED)


# --------------------------------------------------------------------------------------
# --engine fio
# --------------------------------------------------------------------------------------

def _device_size(dev: str, root: str) -> int | None:
    """Bytes of a block device (sysfs, 512-byte sectors) or of a plain file; None unknown."""
    name = os.path.basename(os.path.realpath(dev) if root == "/" else dev)
    sectors = read_text(os.path.join(root, "sys/block", name, "size"))
    if sectors.isdigit():
        return int(sectors) * 512
    try:
        return os.path.getsize(dev) if os.path.isfile(dev) else None
    except OSError:
        return None


def _numjobs(text: str | None) -> int | str:
    if text is None:
        return 1
    if text == "max":
        return "max"
    try:
        return int(text)
    except ValueError:
        raise InputError(f"expected a number or 'max', got {text!r}", where="--numjobs") from None


def _plan(args, devices: list[str], pool: dict):
    bss = tuple(sorted({p2ptest.parse_size(x, "--bs") for x in args.bs.split(",") if x.strip()})) if args.bs else None
    if args.bs and not bss:
        raise InputError(f"no block size in {args.bs!r}", where="--bs")
    return pf.make_plan(
        args.provider, devices, available=pool["available"], pool_size=pool["size"],
        device_sizes={d: s for d in devices if (s := _device_size(d, args.root)) is not None},
        iomem=f"mmapshared:{alloc_path(args.root, args.provider)}",
        size=p2ptest.parse_size(args.size) if args.size else pf.DEFAULT_SIZE,
        offset=p2ptest.parse_size(args.offset, "--offset", zero_ok=True),
        numjobs=_numjobs(args.numjobs), bss=bss,
        qds=pf.parse_int_list(args.qd, "--qd", 1, 65535) if args.qd else None,
        engines=pf.parse_engines(args.ioengine) if args.ioengine else ("libaio",),
        repeat=args.repeat, runtime=5.0 if args.runtime is None else args.runtime,
        ramp=0.0 if args.ramp is None else args.ramp, verify_reads=args.verify_reads)


def _run_fio(args) -> int:
    if args.read_only_source:
        raise InputError("--engine fio verifies with the headers fio writes, so it writes every namespace it "
                         "tests; for a read-only source use --engine copy", where="--read-only-source")
    devices = [args.source] + list(args.destination)
    interval = 0.25 if args.sample_interval is None else args.sample_interval
    if interval <= 0:
        raise InputError("--sample-interval must be > 0", where="--sample-interval")
    for dev in devices:
        if not os.path.exists(dev):
            raise InputError(f"no such device {dev}")
    pool = p2ptest.check_provider(args.provider, args.root)
    plan = _plan(args, devices, pool)
    prediction = p2ptest.predict(args.provider, devices, args.root, args.kernel)
    if set(p2ptest.refused_before_io(prediction)) == set(devices):
        return _refused_before_io(args, devices, prediction)
    if not args.allow_write:
        raise InputError(f"this writes 2 x {plan.size} bytes at offset {plan.offset} of {', '.join(devices)} "
                         f"(a p2p and a host region each); pass --allow-write", where="--allow-write")
    fio_version(args.fio)                       # fio installed: a clear error before anything else
    probe_pool(args.root, args.provider, plan.mappings(*plan.largest), pool["available"])
    progress = Progress(quiet=args.quiet)
    progress(f"plan: {len(plan.cells)} cells x {plan.repeat} round(s) x p2p/host buffer + "
             f"{plan.runs_planned() - len(plan.cells) * plan.repeat * 2} verification passes on "
             f"{len(devices)} namespace(s); about {plan.seconds_planned():.0f} s of timed I/O")
    out = paths.results_dir(args.root, "p2p-test", args.out)
    runner = FioP2pRun(plan, out, root=args.root, fio=args.fio, prediction=prediction,
                       progress=progress, sample_interval=interval, argv=list(sys.argv), plots=not args.no_plots)
    results = runner.run()
    emit(args.json, rep.summary_json(results), lambda _d: rep.render(results))
    if results["interrupted"]:
        return exits.INTERRUPTED
    return rep.VERDICT_EXIT.get(results["p2p_test"]["verdict"], exits.FAILED)


def _refused_before_io(args, devices: list[str], prediction: dict) -> int:
    """Every pair refused by the kernel's p2pdma rules: no fio, no write, exit 5 (no p2p), explained."""
    refusals = {d: p2ptest.before_io_refusal(args.provider, d, prediction) for d in devices}
    doc = {"engine": "fio", "verdict": "refused", "emulated": emulation_label(args.root),
           "provider": args.provider, "prediction": prediction, "refused_before_io": devices,
           "devices": {d: {"device": d, "verdict": "refused", "refusal": r, "checks": {}}
                       for d, r in refusals.items()}, "cells": [], "out": None}

    def human(d: dict) -> str:
        lines = [f"[{d['emulated']}]"] if d["emulated"] else []
        lines += [f"REFUSED: {r['refusal']['explanation']}" for r in d["devices"].values()]
        kp = {r["refusal"]["kernel_parameter"] for r in d["devices"].values()} - {None}
        lines += [f"kernel parameter that would change it: {k}" for k in sorted(kp)]
        return "\n".join(lines + ["verdict: refused (fio was not started)"])
    emit(args.json, doc, human)
    return rep.VERDICT_EXIT["refused"]
