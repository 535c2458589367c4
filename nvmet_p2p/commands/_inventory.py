"""Shared by ``topology`` and ``distance``: get the Inventory the command works on.

Either the sysfs/procfs readers on ``--root`` (live ``/``, a snapshot directory or a test
tree), or ``--inventory FILE``: the JSON of ``nvmet-p2p topology --json`` (its ``inventory``
member) or a bare ``Inventory.to_dict()`` document, so a machine's topology can be examined
anywhere.
"""

from __future__ import annotations

import re

from nvmet_p2p import safeload
from nvmet_p2p.errors import InputError, UsageError
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.pci.model import Inventory
from nvmet_p2p.safeload import DocumentError


def add_inventory_option(parser) -> None:
    parser.add_argument("--inventory", metavar="FILE", default=None,
                        help="read the inventory from a JSON file (topology --json output) "
                             "instead of --root")


def refuse_root_with_inventory(args) -> None:
    """A command that reads only the machine takes it from --root or from --inventory, not
    both (the other would be ignored)."""
    if getattr(args, "inventory", None) and "root" in getattr(args, "_given", ()):
        raise UsageError("--inventory and --root both name the machine to read; give one")


def load_inventory(args, *, addresses: bool = True) -> Inventory:
    """``addresses=False`` skips the interface addresses (an rtnetlink dump) when the command
    does not need them."""
    path = getattr(args, "inventory", None)
    if path:
        return inventory_from_file(path)
    if addresses:
        return read_inventory(args.root)
    return read_inventory(args.root, netlink=dict)


def inventory_from_file(path: str) -> Inventory:
    doc = safeload.load_json(path)
    if isinstance(doc, dict) and isinstance(doc.get("inventory"), dict):
        doc, where = doc["inventory"], f"{path}: $.inventory"
    else:
        where = path
    if not isinstance(doc, dict) or "pci" not in doc:
        raise InputError("not an inventory document (no 'pci' member)", where=where)
    safeload.check_dataclass(doc, Inventory, where)
    _check_bdfs(doc, where)
    try:
        inv = Inventory.from_dict(doc)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise InputError(f"malformed inventory: {exc}", where=where) from None
    # what was read is this file (the root it was taken from, often "/", is another machine's)
    inv.source = path
    return inv


_BDF = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")


def _check_bdfs(doc: dict, where: str) -> None:
    """Every PCI address the pure logic splits and sorts must be a BDF."""
    for key, f in doc.get("pci", {}).items():
        for what, v in [("key", key), ("bdf", f.get("bdf")), ("physfn", f.get("physfn"))] + \
                [("upstream", u) for u in f.get("upstream", [])]:
            if v is not None and not _BDF.fullmatch(v):
                raise DocumentError(f"$.pci[{key!r}].{what}: {v!r} is not a PCI address DDDD:BB:DD.F",
                                    where=where)
        if f.get("bdf") != key:
            raise DocumentError(f"$.pci[{key!r}].bdf: {f.get('bdf')!r} differs from its key", where=where)
    for sec in ("nvme", "namespaces", "rdma", "net"):
        for key, item in doc.get(sec, {}).items():
            pci = item.get("pci")
            if pci is not None and not _BDF.fullmatch(pci):
                raise DocumentError(f"$.{sec}[{key!r}].pci: {pci!r} is not a PCI address", where=where)
