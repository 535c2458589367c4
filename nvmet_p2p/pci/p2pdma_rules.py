"""Which p2pdma rules a given kernel release applies: the version timeline and the host-bridge
whitelist of ``drivers/pci/p2pdma.c``.

Pure data and tiny predicates; ``nvmet_p2p.pci.distance`` applies them. Every version below was
checked against kernel sources or merge requests (docs/p2pdma.md#release-history and the
notes on each entry); entries marked ``approx`` are dated from patch order only and make a verdict
that depends on them *uncertain* near the boundary.

Timeline (mainline, "X.Y" = first release with the behaviour):

* 4.20  p2pdma appears. Every device must share an upstream bridge below the root complex;
        an ACS redirect bit on the path rejects the pair (the walk returns -2).
* 5.0   (approx) clients that use ``dma_virt_ops`` (rxe, siw, rdmavt) are rejected.
* 5.2   ``root_complex_whitelist()``: AMD Zen 1022:1450 at devfn 00.0 of *both* root buses
        allows the host-bridge route, with 0x1000 added to the distance, unless an IOMMU is
        present. ACS still rejects.
* 5.4   Logan Gunthorpe's "transactions that hit the host bridge" series (pci-v5.4-changes):
        map types, ``pci_p2pdma_whitelist[]`` with REQ_SAME_HOST_BRIDGE, ACS redirect downgrades
        the pair to THRU_HOST_BRIDGE instead of rejecting it, no penalty, no IOMMU veto
        (the 5.4 pull request and the 5.4.y sources have it; some accounts say 5.5).
* 5.6   Skylake-SP 8086:2030 (root port A) and 8086:2020 (DMI at 00.0).
* 5.7   (approx) Skylake-SP root ports B, C, D (8086:2031..2033).
* 5.8   AMD Raven 1022:15d0 and Renoir 1022:1630.
* 5.9   ``cpu_supports_p2pdma()``: any x86 AMD CPU with family >= 0x17 allows every host-bridge
        path; the AMD table entries are dropped.
* 5.11  ``dma_virt_ops`` gone; the p2pdma core no longer rejects virtual-DMA clients itself.
* 5.18  Ice Lake-SP 8086:09a2.
* 5.19  the whitelisted device may be a PCIe Root Port at any devfn (not only devfn 00.0).
* 6.0   nvmet-rdma sets a p2p client only when ``ib_dma_pci_p2p_dma_supported()``: soft RDMA is
        never a client (silently no p2p). The ACS list is printed from a 128-byte buffer.
* 7.1   (approx) Google SoCs (1ae0:any).
* 7.2   (approx) Intel DSA/IAX/IAA and QAT entries; NVIDIA CPUs; Zhaoxin.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MapType(enum.StrEnum):
    """``enum pci_p2pdma_map_type`` as ``calc_map_type_and_dist()`` decides it (the
    ``UNKNOWN`` value is the kernel's cache state, never an answer). A ``str``: JSON output and
    comparisons with the plain names keep working."""

    BUS_ADDR = "bus_addr"                   # below a common bridge: PCI bus addresses
    THRU_HOST_BRIDGE = "thru_host_bridge"   # through the root complex (whitelist / CPU rule)
    NOT_SUPPORTED = "not_supported"         # refused

Version = tuple[int, int]

#: The newest rules this module knows; used when a kernel release is unknown.
NEWEST: Version = (7, 3)

P2PDMA_FIRST: Version = (4, 20)
DMA_VIRT_OPS_REJECT: tuple[Version, Version] = ((5, 0), (5, 11))   # [from, until)
ROOT_COMPLEX_WHITELIST: tuple[Version, Version] = ((5, 2), (5, 4))  # AMD Zen 00.0, +0x1000
HOST_BRIDGE_PENALTY = 0x1000
MAP_TYPES: Version = (5, 4)            # whitelist table, ACS downgrades instead of rejecting
AMD_CPU_RULE: Version = (5, 9)
ROOT_PORT_ANY_DEVFN: Version = (5, 19)
SOFT_RDMA_NEVER_CLIENT: Version = (6, 0)
ACS_LIST_BUFFER_128: Version = (6, 0)  # (approx) calc_map_type_and_dist()'s char buf[128]
SOFT_RDMA_UNVERIFIED: tuple[Version, Version] = ((5, 11), (6, 0))
CONFIG_ACS_MULTI_BUG: tuple[Version, Version] = ((6, 11), (6, 14))  # multi-device parsing broken

AMD_ZEN_ROOT = (0x1022, 0x1450)
AMD_ZEN_FAMILY = 0x17

REQ_SAME_HOST_BRIDGE = 1


@dataclass(frozen=True)
class WhitelistEntry:
    """One row of ``pci_p2pdma_whitelist[]``: a host-bridge identity (the first device on the
    root bus) whose root complex forwards peer-to-peer TLPs between its root ports."""

    vendor: int
    device: int | None          # None = PCI_ANY_ID
    flags: int
    since: Version
    until: Version | None = None  # first release without the entry
    name: str = ""
    approx: bool = False          # introduction release inferred, not read from a tag

    @property
    def same_host_bridge_only(self) -> bool:
        return bool(self.flags & REQ_SAME_HOST_BRIDGE)

    def applies(self, kernel: Version) -> bool:
        return kernel >= self.since and (self.until is None or kernel < self.until)

    def matches(self, vendor: int, device: int) -> bool:
        return vendor == self.vendor and (self.device is None or device == self.device)

    @property
    def id_text(self) -> str:
        dev = "*" if self.device is None else f"{self.device:04x}"
        return f"{self.vendor:04x}:{dev}"


_I, _A = 0x8086, 0x1022
# In the kernel's table order (the first matching entry decides).
WHITELIST: tuple[WhitelistEntry, ...] = (
    WhitelistEntry(_A, 0x1450, 0, (5, 4), (5, 9), "AMD Zen (family 17h) root complex"),
    WhitelistEntry(_A, 0x15d0, 0, (5, 8), (5, 9), "AMD Zen Raven root complex"),
    WhitelistEntry(_A, 0x1630, 0, (5, 8), (5, 9), "AMD Zen Renoir root complex"),
    WhitelistEntry(_I, 0x3c00, REQ_SAME_HOST_BRIDGE, (5, 4), None, "Intel Xeon E5/Core i7 (Sandy Bridge-EP)"),
    WhitelistEntry(_I, 0x3c01, REQ_SAME_HOST_BRIDGE, (5, 4), None, "Intel Xeon E5/Core i7 (Sandy Bridge-EP)"),
    WhitelistEntry(_I, 0x2f00, REQ_SAME_HOST_BRIDGE, (5, 4), None, "Intel Xeon E5/E7 v3 (Haswell-EP)"),
    WhitelistEntry(_I, 0x2f01, REQ_SAME_HOST_BRIDGE, (5, 4), None, "Intel Xeon E5/E7 v3 (Haswell-EP)"),
    WhitelistEntry(_I, 0x2030, 0, (5, 6), None, "Intel Skylake-SP root port A"),
    WhitelistEntry(_I, 0x2031, 0, (5, 7), None, "Intel Skylake-SP root port B", approx=True),
    WhitelistEntry(_I, 0x2032, 0, (5, 7), None, "Intel Skylake-SP root port C", approx=True),
    WhitelistEntry(_I, 0x2033, 0, (5, 7), None, "Intel Skylake-SP root port D", approx=True),
    WhitelistEntry(_I, 0x2020, 0, (5, 6), None, "Intel Skylake-SP DMI host bridge"),
    WhitelistEntry(_I, 0x09a2, 0, (5, 18), None, "Intel Ice Lake-SP memory map/VT-d"),
    WhitelistEntry(_I, 0x0b25, 0, (7, 2), None, "Intel DSA (Sapphire Rapids)", approx=True),
    WhitelistEntry(_I, 0x0cfe, 0, (7, 2), None, "Intel IAX (Sapphire Rapids)", approx=True),
    WhitelistEntry(_I, 0x11fb, 0, (7, 2), None, "Intel DSA (Granite Rapids-D)", approx=True),
    WhitelistEntry(_I, 0x1212, 0, (7, 2), None, "Intel DSA (Diamond Rapids)", approx=True),
    WhitelistEntry(_I, 0x1216, 0, (7, 2), None, "Intel IAA (Diamond Rapids)", approx=True),
    WhitelistEntry(_I, 0x4940, 0, (7, 2), None, "Intel QAT 4xxx", approx=True),
    WhitelistEntry(_I, 0x4942, 0, (7, 2), None, "Intel QAT 401xx", approx=True),
    WhitelistEntry(_I, 0x4944, 0, (7, 2), None, "Intel QAT 402xx", approx=True),
    WhitelistEntry(_I, 0x4946, 0, (7, 2), None, "Intel QAT 420xx", approx=True),
    WhitelistEntry(_I, 0x4948, 0, (7, 2), None, "Intel QAT 6xxx", approx=True),
    WhitelistEntry(0x1ae0, None, 0, (7, 1), None, "Google SoC", approx=True),
    WhitelistEntry(0x10de, 0x2f95, 0, (7, 2), None, "NVIDIA CPU", approx=True),
    WhitelistEntry(0x10de, 0x2f96, 0, (7, 2), None, "NVIDIA CPU", approx=True),
    WhitelistEntry(0x10de, 0x2f97, 0, (7, 2), None, "NVIDIA CPU", approx=True),
    WhitelistEntry(0x10de, 0x2f98, 0, (7, 2), None, "NVIDIA CPU", approx=True),
    WhitelistEntry(0x1d17, 0x1003, REQ_SAME_HOST_BRIDGE, (7, 2), None, "Zhaoxin", approx=True),
    WhitelistEntry(0x1d17, 0x1005, REQ_SAME_HOST_BRIDGE, (7, 2), None, "Zhaoxin", approx=True),
    WhitelistEntry(0x1d17, 0x1006, REQ_SAME_HOST_BRIDGE, (7, 2), None, "Zhaoxin", approx=True),
    WhitelistEntry(0x1d17, 0x1007, REQ_SAME_HOST_BRIDGE, (7, 2), None, "Zhaoxin", approx=True),
    WhitelistEntry(0x1d17, 0x1008, 0, (7, 2), None, "Zhaoxin", approx=True),
)


def whitelist_for(kernel: Version) -> list[WhitelistEntry]:
    """The table as compiled into ``kernel`` (empty before 5.4)."""
    if kernel < MAP_TYPES:
        return []
    return [e for e in WHITELIST if e.applies(kernel)]


def lookup(kernel: Version, vendor: int, device: int) -> WhitelistEntry | None:
    """The first entry of ``kernel``'s table matching ``vendor:device`` (the kernel's loop)."""
    for entry in whitelist_for(kernel):
        if entry.matches(vendor, device):
            return entry
    return None


def entry_any_version(vendor: int, device: int) -> WhitelistEntry | None:
    """The entry for ``vendor:device`` in any release (to say "added in X.Y" / "removed in X.Y")."""
    for entry in WHITELIST:
        if entry.matches(vendor, device):
            return entry
    return None


def in_range(kernel: Version, span: tuple[Version, Version]) -> bool:
    return span[0] <= kernel < span[1]


def fmt(version: Version) -> str:
    return f"{version[0]}.{version[1]}"
