"""``nvmet-p2p distance PROVIDER CLIENT [CLIENT...]``: what the kernel's p2pdma would decide.

Prints the map type (bus_addr / thru_host_bridge / not_supported), the kernel's distance
(summed over clients, -1 when any is refused), the reasons in words and, when ACS redirect is
in the way, the exact ``pci=disable_acs_redir=`` parameter the kernel would print.
``--find CLIENT...`` instead lists what ``pci_p2pmem_find_many()`` would consider (auto mode).
"""

from __future__ import annotations

import ipaddress

from nvmet_p2p import exits
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._inventory import add_inventory_option, load_inventory, refuse_root_with_inventory
from nvmet_p2p.errors import InputError
from nvmet_p2p.output import emit
from nvmet_p2p.pci.distance import P2pdma, Verdict
from nvmet_p2p.pci.inventory import block_device_name
from nvmet_p2p.pci.p2pdma_rules import MapType
from nvmet_p2p.pci.topology import human_size

NAME = "distance"
ORDER = 21
HELP = "predict the kernel's p2pdma verdict for a provider and clients, with reasons"
DESCRIPTION = (
    "Predict what the kernel's p2pdma would decide for PROVIDER (a PCI function with p2pmem, "
    "e.g. 0000:03:00.0) and each CLIENT (a BDF, an RDMA device like mlx5_0, a block device "
    "like /dev/nvme1n1, an NVMe controller, a network interface or an IP address), using the "
    "rules of the inventory's kernel release or --kernel X.Y.")

EXAMPLES = (
    Example("nvmet-p2p distance 0000:03:00.0 0000:04:00.0", "would the kernel let the NVMe at "
            "04:00.0 use the CMB of 03:00.0, and why"),
    Example("nvmet-p2p distance 0000:03:00.0 /dev/nvme3n1", "a client the kernel would refuse "
            "(across a host bridge that is not whitelisted): exit status 5", status=exits.NO_P2P),
    Example("nvmet-p2p distance --find /dev/nvme1n1", "the providers the kernel would consider for "
            "a client in auto mode (p2pmem 1)"),
)


def register(parser) -> None:
    parser.usage = ("%(prog)s [options] PROVIDER CLIENT [CLIENT ...]\n"
                    "       %(prog)s [options] --find CLIENT [CLIENT ...]")
    parser.add_argument("devices", nargs="+", metavar="DEVICE",
                        help="PROVIDER (a BDF) followed by one or more CLIENTs "
                             "(with --find: CLIENTs only)")
    parser.add_argument("--find", action="store_true",
                        help="no provider: list the published providers the kernel would "
                             "consider for the clients (pci_p2pmem_find_many), with all ties")
    add_inventory_option(parser)


def run(args) -> int:
    refuse_root_with_inventory(args)
    # interface addresses are needed only to resolve a client given as an IP address
    inv = load_inventory(args, addresses=any(_is_ip(d) for d in args.devices))
    if not getattr(args, "inventory", None):
        args.devices = [_follow_dev_link(args.root, d) for d in args.devices]
    eng = P2pdma(inv, args.kernel)
    if args.find:
        res = eng.find_many(args.devices)
        emit(args.json, res, lambda r: _human_find(r, eng))
        return exits.OK if res.ties else exits.NO_P2P
    if len(args.devices) < 2:
        raise InputError("need a PROVIDER and at least one CLIENT (or --find CLIENT...)",
                         where="arguments")
    v = eng.distance_many(args.devices[0], args.devices[1:])
    emit(args.json, v, lambda v: _human(v, eng))
    return exits.NO_P2P if v.map_type == MapType.NOT_SUPPORTED else exits.OK


def _follow_dev_link(root: str, dev: str) -> str:
    """``/dev/disk/by-id/nvme-...`` (any /dev link) -> ``/dev/nvme1n1`` on the machine read;
    anything else unchanged. The distance rules themselves never touch the filesystem."""
    name = block_device_name(root, dev) if dev.startswith("/dev/") else None
    return f"/dev/{name}" if name else dev


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def _provider_text(eng: P2pdma, bdf: str) -> str:
    f = eng.fn(bdf)
    bits = []
    ctrl = eng.inv.nvme_by_pci(bdf)
    if ctrl is not None:
        bits.append(ctrl.name + (f" sn {ctrl.serial}" if ctrl.serial else ""))
    if f is not None and f.p2pmem is not None:
        bits.append(f"p2pmem {human_size(f.p2pmem.size)}, {human_size(f.p2pmem.available)} free, "
                    + ("published" if f.p2pmem.published else "NOT published"))
    else:
        bits.append("no p2pmem")
    return f"{bdf} ({'; '.join(bits)})"


def _human(v: Verdict, eng: P2pdma) -> str:
    out = [f"provider  {_provider_text(eng, v.provider)}"]
    for p in v.pairs:
        c = p.client
        target = c.bdf or "no PCI device"
        out.append(f"client    {c.name} -> {target} ({c.kind})")
    source = {"--kernel": "from --kernel", "inventory": "from the inventory"}.get(
        v.kernel_source, "default: release unknown")
    out.append(f"kernel    {v.kernel} rules ({source})")
    out.append("")
    head = v.map_type.upper()
    out.append(f"{head}, distance {v.distance}" + (
        "  (through the root complex)" if v.crosses_root_complex and v.map_type != MapType.NOT_SUPPORTED
        else ""))
    for r in v.reasons:
        out.append(f"  - {r}")
    for p in v.pairs:
        if p.path:
            lab = f" ({p.client.name})" if len(v.pairs) > 1 else ""
            out.append(f"path{lab}: " + " -> ".join(p.path))
    if v.kernel_parameter:
        out.append(f"kernel parameter: {v.kernel_parameter}")
    msgs = [m for p in v.pairs for m in p.kernel_messages]
    if msgs:
        out.append("the kernel would log (when nvmet checks this pair):")
        out.extend(f"  {m}" for m in msgs)
    if v.uncertain:
        out.append("uncertain:")
        out.extend(f"  - {u}" for u in v.uncertain)
    return "\n".join(out)


def _human_find(r, eng: P2pdma) -> str:
    out = [f"clients   {', '.join(r.clients)}",
           f"kernel    {r.kernel} rules", ""]
    if r.candidates:
        width = max(len(v.provider) for v in r.candidates)
        for v in r.candidates:
            mark = "*" if v.provider in r.ties else " "
            out.append(f" {mark} {v.provider:<{width}}  {v.map_type:<16}  distance {v.distance}")
    for b in r.unpublished:
        out.append(f"   {b}  skipped: p2pmem not published")
    out.append("")
    out.extend(r.reasons)
    if len(r.ties) > 1:
        out.append("* = at the minimum distance (the kernel picks one of them at random)")
    elif r.ties:
        out.append("* = the provider the kernel would choose")
    if r.uncertain:
        out.append("uncertain:")
        out.extend(f"  - {u}" for u in r.uncertain)
    return "\n".join(out)
