"""``nvmet-p2p watch``: react to hotplug of NVMe drives, p2pmem providers and RDMA NICs."""

from __future__ import annotations

import argparse
import os
import signal

from nvmet_p2p import exits, paths
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_state_dir, directory, lock_timeout
from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.output import warn
from nvmet_p2p.policy import profile
from nvmet_p2p.service import hotplug, watch

NAME = "watch"
ORDER = 62
HELP = "watch hotplug (udev) and keep the target's namespaces, providers and ports honest"
DESCRIPTION = (
    "Listen to udev for pci, nvme, block, infiniband and net events (and to address changes), "
    "debounce each burst, and log one structured line per decision: a p2pmem provider removed "
    "(the kernel silently serves its namespaces from host memory), a backing drive removed "
    "(the kernel does not notice), a device back, an RDMA device or address gone. With "
    "--policy reconcile the namespaces concerned -- and only those -- are re-placed, disabled, "
    "re-enabled or have p2pmem rewritten, through the same plan/apply path and lock as "
    "`apply`. What was lost is recorded in the state directory; `status` shows it.")

EXAMPLES = (
    Example("nvmet-p2p watch", "log what hotplug does to the target, change nothing (until "
            "Ctrl-C or SIGTERM)", lab=True, interrupt=True),
    Example("nvmet-p2p watch --policy reconcile", "also re-place, disable or re-enable the "
            "namespaces concerned", lab=True, interrupt=True),
)


def register(p) -> None:
    p.add_argument("file", nargs="?", default=None,
                   help=f"the saved configuration (default ${paths.SAVE_FILE_ENV} or "
                        f"{paths.SAVE_FILE}); namespaces held back at restore are enabled "
                        "from it when their device appears")
    p.add_argument("--policy", choices=hotplug.POLICIES, default="report",
                   help="report (default): log and record only; reconcile: also write configfs")
    p.add_argument("--profile", metavar="PROFILE", default=None,
                   help="re-place namespaces that lost their provider with this profile's "
                        "placement on the machine as it is after the event (default: the nearest "
                        "other provider the kernel accepts)")
    p.add_argument("--rewrite", choices=hotplug.REWRITE_POLICIES, default="now",
                   help="with --policy reconcile, when to rewrite the p2pmem of a namespace that "
                        "serves (re-placing it, or taking a returning provider back): the kernel "
                        "takes p2pmem only while the namespace is disabled, so hosts see it go and "
                        "come back and I/O in flight can fail. now (default): at once; idle: once "
                        "its backing device has had no I/O for --idle-window seconds; operator: "
                        "never by itself (status shows it pending; --rewrite-pending does it)")
    p.add_argument("--idle-window", type=float, default=2.0, metavar="SECONDS",
                   help="--rewrite idle: how long the namespace must have had no I/O (default 2)")
    p.add_argument("--rewrite-pending", action="store_true",
                   help="do the rewrites a watcher held back (status: REWRITE PENDING) now, and exit")
    p.add_argument("--debounce", type=float, default=0.5, metavar="SECONDS",
                   help="a burst ends when the events have been quiet this long (default 0.5)")
    p.add_argument("--source", choices=("auto", "udev", "kernel"), default="auto",
                   help="udev (events after udev rules, with by-id links) or the kernel's raw "
                        "uevents (no udevd needed); auto: udev when udevd runs")
    p.add_argument("--all", dest="all_subsystems", action="store_true",
                   help="watch every subsystem, not only the ones nvmet-p2p manages")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also log every event received (debug priority)")
    p.add_argument("--exit-after", type=int, default=None, metavar="N",
                   help=argparse_suppress())
    add_state_dir(p)


def argparse_suppress():
    return argparse.SUPPRESS


def run(args) -> int:
    if not 0 < args.debounce <= 30:
        raise InputError("--debounce must be between 0 and 30 seconds")
    if not 0 < args.idle_window <= 3600:
        raise InputError("--idle-window must be between 0 and 3600 seconds")
    if args.rewrite != "now" and args.policy != "reconcile":
        raise InputError(f"--rewrite {args.rewrite} needs --policy reconcile (report writes nothing)")
    if args.profile:
        profile.load(args.profile)          # a broken profile is an error now, not at the event
    if os.path.realpath(args.root) != "/":
        raise InputError("watch needs the live system (--root /): udev events come from this kernel")
    opts = watch.Options(root=args.root, state_dir=directory(args), policy=args.policy,
                         debounce=args.debounce, profile=args.profile, kernel=args.kernel,
                         all_subsystems=args.all_subsystems, exit_after=args.exit_after,
                         verbose=args.verbose, lock_timeout=lock_timeout(args),
                         rewrite=args.rewrite, idle_window=args.idle_window)
    if args.rewrite_pending:
        return watch.rewrite_pending(watch.Watcher(opts, [], watch.Log(as_json=args.json)))
    try:
        sources = [watch.UdevSource(args.source)]
        if sources[0].source == "udev":
            # the kernel's own uevents, read first, time each event from when the kernel sent
            # it (udev's rules run before udev passes it on)
            sources.insert(0, watch.KernelStamps())
    except Exception as exc:
        raise NvmetP2PError(f"cannot listen to udev events: {exc} (root needed; libudev.so.1)") from None
    try:
        sources.append(watch.AddressSource())
    except Exception as exc:
        warn("watch", f"address changes not watched: {exc}")
    w = watch.Watcher(opts, sources, watch.Log(as_json=args.json))
    watch.install_signal_handlers(w)
    interrupted = []

    def on_sigint(signum, frame):       # Ctrl-C ends like SIGTERM, but the status says so
        interrupted.append(signum)
        w.stop(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    status = w.run()
    return exits.INTERRUPTED if interrupted and status == exits.OK else status
