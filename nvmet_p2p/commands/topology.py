"""``nvmet-p2p topology``: the PCIe tree annotated for p2p, and the provider x client matrix."""

from __future__ import annotations

from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._inventory import add_inventory_option, load_inventory, refuse_root_with_inventory
from nvmet_p2p.output import dump_json
from nvmet_p2p.pci.distance import P2pdma
from nvmet_p2p.pci.topology import build_matrix, render_matrix, render_tree, topology_document

NAME = "topology"
ORDER = 20
HELP = "show the PCIe tree with providers, NVMe, RDMA, ACS, NUMA and the p2p matrix"
DESCRIPTION = (
    "Draw the PCIe tree per host bridge (like lspci -tv) annotated with p2pmem providers, NVMe "
    "controllers and their CMB, RDMA devices and their addresses, bridges with their ACS state "
    "and NUMA nodes, then the provider x client matrix of the kernel's map type and distance. "
    "--json prints the inventory plus the matrix.")

EXAMPLES = (
    Example("nvmet-p2p topology", "the PCIe tree with providers, NVMe, RDMA, ACS and NUMA, then "
            "the provider x client matrix"),
    Example("nvmet-p2p topology --json > inventory.json", "keep the inventory to examine it on "
            "another machine"),
    Example("nvmet-p2p topology --inventory inventory.json --no-matrix", "the tree of a kept "
            "inventory"),
)


def register(parser) -> None:
    parser.add_argument("--no-matrix", action="store_true", help="only the tree")
    parser.add_argument("--columns", type=int, default=10, metavar="N",
                        help="clients per matrix block in the human output (default 10)")
    add_inventory_option(parser)


def run(args) -> int:
    refuse_root_with_inventory(args)
    inv = load_inventory(args)
    if args.json:
        dump_json(topology_document(inv, args.kernel))
        return 0
    eng = P2pdma(inv, args.kernel)
    text = render_tree(inv, engine=eng)
    if not args.no_matrix:
        text += "\n\n" + render_matrix(build_matrix(inv, eng), width=max(1, args.columns))
    print(text)
    return 0
