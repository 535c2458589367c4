"""``nvmet-p2p snapshot DIR``: capture what the readers need into a directory."""

from __future__ import annotations

from nvmet_p2p import exits
from nvmet_p2p.commands._common import Example
from nvmet_p2p.output import Progress, emit, warn
from nvmet_p2p.pci.snapshot import take_snapshot

NAME = "snapshot"
ORDER = 5
HELP = "capture this machine's sysfs/procfs view into DIR (read it back with --root DIR)"
KERNEL_OPTION = False      # applies no kernel rules: no --kernel
DESCRIPTION = (
    "Copy every sysfs/procfs file, symlink and directory the inventory readers use (PCI config "
    "space included, symlink chains preserved) into DIR, plus the interface addresses read "
    "through netlink, so that `nvmet-p2p <command> --root DIR` sees the same machine elsewhere. "
    "The snapshot is read back and compared before it is kept. Run as root: without it PCI "
    "config space stops at 64 bytes and ACS settings are not captured.")

EXAMPLES = (
    Example("nvmet-p2p snapshot snap-host1", "capture this machine into the new directory "
            "snap-host1 (as root: PCI config space and ACS are only readable by root)"),
    Example("nvmet-p2p snapshot --force snap && nvmet-p2p doctor --root snap", "replace an older "
            "snapshot, then read it back as any command that reads the machine can",
            status=exits.FAILED),
)


def register(parser) -> None:
    parser.add_argument("dir", metavar="DIR", help="new (or empty) directory to write")
    parser.add_argument("--force", action="store_true", help="replace DIR if it is not empty")


def _human(s: dict) -> str:
    kib = s["bytes"] / 1024
    lines = [f"snapshot of {s['source']} written to {s['path']}: {s['entries']} entries "
             f"({s['files']} files, {s['links']} symlinks, {kib:.0f} KiB)",
             f"  kernel {s['kernel_release'] or 'unknown'}; {s['pci_functions']} PCI functions, "
             f"{s['providers']} p2pmem providers, {s['nvme_controllers']} NVMe controllers, "
             f"{s['namespaces']} namespaces, {s['rdma_devices']} RDMA devices, "
             f"{s['netdevs']} network interfaces",
             "  PCI config space: " + ("full (ACS and port types captured)" if s["config_readable"]
                                       else "only 64 bytes (not root): ACS settings NOT captured"),
             f"  verified: reading {s['path']} gives the same inventory as {s['source']}"]
    lines.append(f"use it with: nvmet-p2p doctor --root {s['path']}")
    return "\n".join(lines)


def run(args) -> int:

    summary = take_snapshot(args.dir, root=args.root, force=args.force,
                            progress=Progress(quiet=args.json or args.quiet))
    emit(args.json, summary, _human)
    if not args.json:
        for w in summary["warnings"]:
            warn("snapshot", w)
    return 0
