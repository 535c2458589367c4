"""``nvmet-p2p status``: configured provider, ports, host controllers, and whether p2p is used."""

from __future__ import annotations

import json
import os
import sys
import time

from nvmet_p2p import exits
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_save_file, add_state_dir, settle_first
from nvmet_p2p.errors import InputError, UsageError
from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.observe import status as st
from nvmet_p2p.output import emit
from nvmet_p2p.policy.schema import parse_size

NAME = "status"
ORDER = 60
HELP = "running target: providers, ports, host controllers, and an offload verdict per namespace x controller"
DESCRIPTION = (
    "Show each subsystem and namespace the way the kernel runs it: the p2pmem provider read back, "
    "enable state, ports (and the RDMA device behind each RDMA port), host controllers from the "
    "kernel log, and per namespace x controller whether the NIC's DMA really goes to p2p memory "
    "('offload active') or why not. --sample/--watch also sample p2pmem/available, the only "
    "runtime signal of p2p use.")

EXAMPLES = (
    Example("nvmet-p2p status", "each namespace x host controller: is the offload active, and "
            "if not, why"),
    Example("nvmet-p2p status --sample 2 --io", "while the hosts run I/O: a pool that never moves "
            "means the kernel used host memory"),
    Example("nvmet-p2p status --watch", "refresh every 2 s until Ctrl-C", interrupt=True),
)


def register(p):
    add_state_dir(p)
    add_save_file(p, "the saved configuration the live target is compared with (what the boot "
                     "unit restores)")
    p.add_argument("--all", action="store_true",
                   help="show every subsystem, not only the ones nvmet-p2p manages")
    p.add_argument("--sample", type=float, metavar="SECONDS", default=None,
                   help="sample p2pmem/available for SECONDS before reporting (run it while I/O runs)")
    p.add_argument("--io", action="store_true",
                   help="I/O is running while sampling: a pool that never moves then means fallback")
    p.add_argument("--io-size", metavar="SIZE",
                   help="largest I/O the hosts send (e.g. 128k): with --sample, the pool counts as exhausted "
                        "while p2pmem/available is below it (default: below 1/64 of the pool)")
    p.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                   help="sampling interval (default 0.1)")
    p.add_argument("--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS",
                   help="refresh every SECONDS (default 2) until Ctrl-C; pools are sampled continuously "
                        "and min/max are since the start (with --json: one JSON document per line)")


def _io_size(text: str | None) -> int | None:
    if text is None:
        return None
    n = parse_size(text)
    if not n:
        raise InputError(f"--io-size: expected a size such as 4096, 128k or 1MiB, got {text!r}",
                         where="--io-size")
    return n


def _refuse_ignored(args) -> None:
    """The sampling options mean something only while sampling (--sample or --watch)."""
    if args.sample is not None and args.watch is not None:
        raise UsageError("--watch samples the pools all along; --sample would be ignored")
    sampling = bool(args.sample) or args.watch is not None
    ignored = [o for o, on in (("--io", args.io), ("--io-size", args.io_size is not None),
                               ("--interval", args.interval is not None)) if on]
    if ignored and not sampling:
        raise UsageError(f"{', '.join(ignored)} describe{'s' if len(ignored) == 1 else ''} the "
                         "sampling of the pools: give --sample SECONDS (or --watch)")


def _uevent_seqnum(root: str) -> str | None:
    """The kernel's uevent counter (``/sys/kernel/uevent_seqnum``): it moves with every device
    added or removed, so ``--watch`` re-reads the inventory only when something happened."""
    try:
        with open(os.path.join(root, "sys/kernel/uevent_seqnum")) as f:
            return f.read().strip()
    except OSError:
        return None


def run(args) -> int:
    _refuse_ignored(args)
    args.sample = 0.0 if args.sample is None else args.sample
    args.interval = 0.1 if args.interval is None else args.interval
    if args.sample < 0 or args.interval <= 0 or (args.watch is not None and args.watch <= 0):
        raise InputError("--sample must be >= 0, --interval and --watch > 0")
    io_size = _io_size(args.io_size)
    settle_first(args, must=False)    # an interrupted apply is settled before anything is shown
    if args.watch is None:
        rep = st.collect(args.root, sample_seconds=args.sample, interval=args.interval,
                         io_during_sampling=args.io, io_size=io_size, all_subsystems=args.all,
                         kernel=args.kernel, state_dir=args.state_dir,
                         save_file=args.save_file)
        emit(args.json, rep.to_dict(), lambda _d: st.render(rep))
        return 0
    inv = st.read_inventory(args.root)
    seq = _uevent_seqnum(args.root)
    sampler = ev.PoolSampler([f.bdf for f in inv.providers(published_only=False)], root=args.root,
                             interval=args.interval, io_size=io_size).start()
    try:
        while True:
            time.sleep(args.watch)
            now = _uevent_seqnum(args.root)
            if now != seq:
                # a device came or went (every uevent counts): read the machine again
                inv, seq = st.read_inventory(args.root), now
                sampler.track(f.bdf for f in inv.providers(published_only=False))
            rep = st.collect(args.root, sampler=sampler, io_during_sampling=args.io,
                             all_subsystems=args.all, kernel=args.kernel,
                             inventory=inv, state_dir=args.state_dir, save_file=args.save_file)
            if args.json:
                sys.stdout.write(json.dumps(rep.to_dict(), default=str) + "\n")
            else:
                sys.stdout.write(f"\n=== {time.strftime('%H:%M:%S')} ===\n{st.render(rep)}\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    finally:
        sampler.stop()


