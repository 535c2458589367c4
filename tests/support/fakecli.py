"""``nvmet-p2p`` on a test machine whose nvmet configfs is the fake one (fakenvmet.py).

The guides' examples (tests/test_guides.py) run the real command line against a synthetic
machine (``$NVMET_P2P_ROOT``, built by support/sysfs.py). Reading needs no help; writing
configfs does: a plain directory does not grow attribute files on ``mkdir`` or refuse what the
kernel refuses. This entry point swaps the configfs accessor for :class:`FakeNvmet` before any
command module is imported, and gives the fake this machine's facts instead of the lab's: the
published p2pmem providers, which block device belongs to which PCI function, the addresses
the ports can bind. Nothing else changes: same parser, same planner, same engine.

Run as ``python -m support.fakecli ARGS`` (tests/ on ``sys.path``), or through the
``nvmet-p2p`` wrapper the guide sandbox puts first on ``$PATH``.
"""

from __future__ import annotations

import ipaddress
import os
import sys

from nvmet_p2p.nvmet import configfs
from nvmet_p2p.pci.inventory import read_inventory
from support import fakenvmet


def machine_facts(root: str) -> None:
    """Point the fake's kernel facts at the machine under ``root``."""
    inv = read_inventory(root)
    providers = {bdf for bdf, f in inv.pci.items() if f.p2pmem and f.p2pmem.published}
    devices = {f"/dev/{ns.name}": ns.pci for ns in inv.namespaces.values()}
    addresses = {str(ipaddress.ip_interface(a).ip) for n in inv.net.values()
                 for a in n.addresses}
    fakenvmet.P2P_PROVIDERS = providers
    fakenvmet.DEVICES = devices
    fakenvmet.SWITCH = set(devices.values()) | providers   # the fake refuses no pair by topology
    fakenvmet.LISTEN = addresses | {"127.0.0.1", ""}


def main() -> int:
    machine_facts(os.environ.get("NVMET_P2P_ROOT", "/"))
    configfs.Configfs = fakenvmet.FakeNvmet       # before cli imports the command modules
    from nvmet_p2p import cli
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
