"""``nvmet-p2p p2p-test``: NVMe -> CMB -> NVMe through p2pmem/allocate, verified and timed."""

from __future__ import annotations

from nvmet_p2p import p2ptest
from nvmet_p2p.errors import InputError
from nvmet_p2p.output import Progress, emit

NAME = "p2p-test"
ORDER = 80
HELP = "validate a CMB path from userspace: O_DIRECT namespace -> provider's p2pmem -> namespace, verified"
DESCRIPTION = (
    "Map a provider's p2pmem (/sys/bus/pci/devices/<BDF>/p2pmem/allocate, Linux 6.2+), read a namespace "
    "into it with O_DIRECT (the NVMe DMAs into the peer's BAR), optionally write it out to another "
    "namespace, verify every byte, and time the same transfers through an ordinary host buffer. "
    "Predicts the outcome with the distance rules and explains a refusal (EINVAL).")


def register(p):
    p.add_argument("provider", metavar="PROVIDER", help="PCI BDF of the p2pmem provider (e.g. an NVMe with a CMB)")
    p.add_argument("source", metavar="SRC", help="namespace block device to read from (/dev/nvmeXnY)")
    p.add_argument("destination", metavar="DST", nargs="?", help="namespace to write the buffer to (optional)")
    p.add_argument("--size", default="16M", help="bytes per transfer, a multiple of the page size (default 16M)")
    p.add_argument("--offset", default="0", help="byte offset on the namespaces, e.g. 128M (default 0)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--seed", type=int, default=20261125, help="seed of the pattern written to SRC")
    p.add_argument("--read-only-source", action="store_true",
                   help="do not seed SRC: compare the p2p read with a host-buffer read instead")
    p.add_argument("--allow-write", action="store_true",
                   help="permit writing SRC (the seed) and DST: their data in that range is destroyed")


def run(args) -> int:
    size = p2ptest.parse_size(args.size)
    offset = p2ptest.parse_size(args.offset, "--offset", zero_ok=True)
    writes = [d for d in ([] if args.read_only_source else [args.source]) + [args.destination] if d]
    if writes and not args.allow_write:
        raise InputError(f"this overwrites {size} bytes at offset {offset} of {', '.join(writes)}; pass "
                         f"--allow-write (or --read-only-source and no DST)", where="--allow-write")
    res = p2ptest.run(args.provider, args.source, args.destination, size=size, offset=offset,
                      repeat=args.repeat, seed=args.seed, seed_source=not args.read_only_source,
                      root=args.root, kernel=args.kernel, progress=Progress(quiet=False))
    emit(args.json, res.to_dict(), lambda _d: p2ptest.render(res))
    return {"verified": 0, "refused": 3}.get(res.verdict, 1)
