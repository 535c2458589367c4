"""Shared by ``topology`` and ``distance``: get the Inventory the command works on.

Either the sysfs/procfs readers on ``--root`` (live ``/``, a snapshot directory or a test
tree), or ``--inventory FILE``: the JSON of ``nvmet-p2p topology --json`` (its ``inventory``
member) or a bare ``Inventory.to_dict()`` document, so a machine's topology can be examined
anywhere.
"""

from __future__ import annotations

import json

from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.model import Inventory


def add_inventory_option(parser) -> None:
    parser.add_argument("--inventory", metavar="FILE", default=None,
                        help="read the inventory from a JSON file (topology --json output) "
                             "instead of --root")


def load_inventory(args, *, addresses: bool = True) -> Inventory:
    """``addresses=False`` skips the interface addresses (netlink through pyroute2, whose import
    alone takes seconds under the lab's TCG) when the command does not need them."""
    path = getattr(args, "inventory", None)
    if path:
        return inventory_from_file(path)
    try:
        from nvmet_p2p.inventory import read_inventory
    except ImportError as exc:   # the readers live in nvmet_p2p/inventory.py
        raise NvmetP2PError(f"cannot read {args.root}: the sysfs readers are not available "
                            f"({exc}); use --inventory FILE") from None
    if addresses:
        return read_inventory(args.root)
    return read_inventory(args.root, netlink=dict)


def inventory_from_file(path: str) -> Inventory:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         where=path) from None
    if isinstance(doc, dict) and isinstance(doc.get("inventory"), dict):
        doc, where = doc["inventory"], f"{path}: $.inventory"
    else:
        where = path
    if not isinstance(doc, dict) or "pci" not in doc:
        raise InputError("not an inventory document (no 'pci' member)", where=where)
    try:
        return Inventory.from_dict(doc)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise InputError(f"malformed inventory: {exc}", where=where) from None
