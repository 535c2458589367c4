"""The inventory: what the machine looks like, as plain data.

This module is the contract between the readers (``nvmet_p2p.pci.inventory`` reads it from a
sysfs/procfs root) and the pure logic (``distance``, ``placement``, ``topology``, ``doctor``),
which take an :class:`Inventory` and never touch the filesystem. Everything here is a
dataclass of plain values and round-trips through ``to_dict()`` / ``Inventory.from_dict()``
(the JSON of ``nvmet-p2p topology --json`` and of test fixtures).

Vocabulary follows the kernel's: a *provider* is a PCI function that registered p2p memory
(``p2pmem/``), *published* when other drivers may allocate from it; a *client* is a device
that would DMA to or from that memory (the RDMA NIC, the NVMe behind a namespace).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

# The nvmet-p2p lab's RDMA NIC (tools/lab/rxe_p2p: soft-RoCE whose DMA device is a PCI NIC)

#: ``node_desc`` of an rdma_rxe_p2p device (stock rxe says ``rxe``). Its ``device`` link is the
#: PCI NIC of the emulated machine, so to the kernel (and to nvmet-p2p) it is a PCI RDMA
#: device and nvmet-rdma makes it a p2p client; its "DMA" is memcpy in the driver.
RXE_P2P_NODE_DESC = "rxe_p2p"
RXE_P2P_DRIVER = "rdma_rxe_p2p"


def rxe_p2p_label(nic_driver: str | None, bdf: str) -> str:
    """The words every output that depends on the lab's RDMA NIC carries."""
    return (f"the lab's emulated RDMA NIC (rxe_p2p on {nic_driver or 'a PCI NIC'} {bdf}): "
            f"its DMA is done by CPU copies")

#: ACS Control bits whose presence makes the kernel treat a device as redirecting p2p
#: traffic upstream (``pci_acs_enabled``-style check in p2pdma.c): RR | CR | EC.
ACS_REQ_REDIR = 0x0004
ACS_CMPLT_REDIR = 0x0008
ACS_EGRESS_CTRL = 0x0020
ACS_REDIR_MASK = ACS_REQ_REDIR | ACS_CMPLT_REDIR | ACS_EGRESS_CTRL

#: PCI Express capability device/port types (Express Cap register bits 7:4).
PCIE_ENDPOINT = 0x0
PCIE_LEGACY_ENDPOINT = 0x1
PCIE_ROOT_PORT = 0x4
PCIE_SWITCH_UPSTREAM = 0x5
PCIE_SWITCH_DOWNSTREAM = 0x6
PCIE_PCIE_TO_PCI_BRIDGE = 0x7
PCIE_RC_INTEGRATED_ENDPOINT = 0x9


def _asdict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


@dataclass
class P2pMem:
    """``/sys/bus/pci/devices/<BDF>/p2pmem/``: the pool a provider registered.

    ``size`` and ``available`` are bytes (``available`` already excludes NVMe SQs placed in the
    CMB and every live allocation); only ``published`` pools are found by the kernel's
    ``pci_p2pmem_find_many()`` and accepted by the nvmet ``p2pmem`` attribute.
    """

    size: int
    available: int
    published: bool
    allocate: bool = False  # the 6.2+ mmap-able ``allocate`` file exists


@dataclass
class PciFunction:
    """One PCI function as the kernel sees it (``/sys/bus/pci/devices/<bdf>``).

    ``upstream`` is the chain of bridge BDFs from the root bus down to this function's parent,
    taken from the realpath of the sysfs directory (the host bridge ``pciDDDD:BB`` itself is
    not a PCI function and is recorded in ``host_bridge``). A function directly on the root
    bus has an empty chain: the kernel's ``pci_upstream_bridge()`` returns NULL for it.
    For a VF, ``physfn`` names its PF; the kernel substitutes the PF before walking up.

    ``acs_ctrl`` is the ACS Control word (extended capability 0x000D, offset +6) or ``None``
    when the function has no ACS capability *or* it could not be read: ``config_readable``
    tells which (non-root reads of ``config`` stop at 64 bytes).
    """

    bdf: str
    host_bridge: str                    # "pci0000:00"
    upstream: list[str] = field(default_factory=list)
    vendor: int = 0
    device: int = 0
    class_code: int = 0                 # 24-bit class/subclass/prog-if, e.g. 0x010802 (NVMe)
    subsystem_vendor: int | None = None
    subsystem_device: int | None = None
    numa_node: int | None = None        # None when sysfs says -1 or has no numa_node
    driver: str | None = None
    physfn: str | None = None
    pcie_type: int | None = None        # PCIE_* above; None if not PCIe or config unreadable
    acs_cap: int | None = None          # ACS Capability word when an ACS capability exists
    acs_ctrl: int | None = None         # ACS Control word when an ACS capability exists
    config_readable: bool = False       # extended config space (>= 0x100) could be read
    p2pmem: P2pMem | None = None

    @property
    def bus(self) -> str:
        """``DDDD:BB`` of this function."""
        return self.bdf.rsplit(":", 1)[0]

    @property
    def devfn(self) -> tuple[int, int]:
        dev, fn = self.bdf.rsplit(":", 1)[1].split(".")
        return int(dev, 16), int(fn)

    @property
    def is_bridge(self) -> bool:
        return (self.class_code >> 8) == 0x0604

    @property
    def has_acs(self) -> bool:
        return self.acs_ctrl is not None

    @property
    def acs_redirects(self) -> bool | None:
        """RR/CR/EC set? ``None`` when unknown (config space not readable)."""
        if self.acs_ctrl is not None:
            return bool(self.acs_ctrl & ACS_REDIR_MASK)
        return None if not self.config_readable else False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PciFunction":
        d = dict(d)
        if d.get("p2pmem") is not None:
            d["p2pmem"] = P2pMem(**d["p2pmem"])
        return cls(**d)


@dataclass
class CmbInfo:
    """An NVMe Controller Memory Buffer, decoded from the CMBSZ/CMBLOC registers.

    Linux publishes the CMB as p2pmem only when both ``wds`` and ``rds`` are set; ``sqs``
    lets the nvme driver put I/O submission queues there (``use_cmb_sqes``), eating the pool.
    """

    cmbsz: int
    cmbloc: int
    size: int          # bytes the controller advertises: SZ * 2**(12 + 4*SZU)
    sqs: bool
    cqs: bool
    lists: bool
    rds: bool
    wds: bool
    bir: int           # BAR holding the CMB
    offset: int        # bytes into that BAR

    @classmethod
    def decode(cls, cmbsz: int, cmbloc: int) -> "CmbInfo":
        unit = 1 << (12 + 4 * ((cmbsz >> 8) & 0xF))
        return cls(cmbsz=cmbsz, cmbloc=cmbloc, size=unit * ((cmbsz >> 12) & 0xFFFFF),
                   sqs=bool(cmbsz & 1), cqs=bool(cmbsz & 2), lists=bool(cmbsz & 4),
                   rds=bool(cmbsz & 8), wds=bool(cmbsz & 16), bir=cmbloc & 7,
                   offset=unit * ((cmbloc >> 12) & 0xFFFFF))


@dataclass
class NvmeNamespace:
    """A namespace block device (``/sys/block/<name>``).

    ``pci`` is the first PCI ancestor of the *disk* device (the kernel's
    ``find_parent_pci_dev`` on the bdev nvmet would open). A native-multipath *head* disk
    lives under ``/sys/devices/virtual/nvme-subsystem`` and has ``pci = None``: the kernel
    refuses it as a p2p client.
    """

    name: str                  # block device name, e.g. "nvme0n1"
    nsid: int
    controller: str | None     # "nvme0" (for a head disk: the first path's controller)
    pci: str | None
    multipath_head: bool = False
    size_bytes: int = 0
    wwid: str | None = None
    nguid: str | None = None
    eui: str | None = None
    uuid: str | None = None
    paths: list[str] = field(default_factory=list)   # hidden per-controller paths (nvme0c0n1)

    @property
    def device_path(self) -> str:
        return f"/dev/{self.name}"


@dataclass
class NvmeController:
    """``/sys/class/nvme/<name>``: a controller (PCIe, or a fabrics connection)."""

    name: str                  # "nvme0"
    transport: str             # "pcie", "rdma", "tcp", "loop", "fc"
    pci: str | None            # BDF of the PCI function for pcie controllers
    serial: str = ""
    model: str = ""
    firmware: str = ""
    subsysnqn: str = ""
    address: str = ""
    cmb: CmbInfo | None = None
    namespaces: list[str] = field(default_factory=list)  # block device names
    subsystem: str = ""        # "nvme-subsys0" (the nvme-subsystem device it belongs to)
    state: str = ""            # "live", "resetting", "connecting", ...

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NvmeController":
        d = dict(d)
        if d.get("cmb") is not None:
            d["cmb"] = CmbInfo(**d["cmb"])
        return cls(**d)


@dataclass
class RdmaPort:
    port: int
    state: str = ""            # "4: ACTIVE"
    phys_state: str = ""
    link_layer: str = ""       # "Ethernet" / "InfiniBand"
    rate: str = ""
    netdevs: list[str] = field(default_factory=list)


@dataclass
class RdmaDevice:
    """``/sys/class/infiniband/<name>``.

    ``pci`` is the PCI function behind the device, or ``None`` for soft RDMA (rxe, siw), whose
    ib_device is virtual (``/sys/devices/virtual/infiniband``): nvmet-rdma never sets a p2p
    client for those (6.0+ ``ib_dma_pci_p2p_dma_supported()`` is false), so no p2p happens.
    """

    name: str
    pci: str | None
    driver: str | None = None  # "rdma_rxe", "siw", "mlx5_core" ...
    soft: bool = False
    #: words saying the device is an emulation (the lab's rxe_p2p NIC), else None
    emulated: str | None = None
    node_type: str = ""
    ports: list[RdmaPort] = field(default_factory=list)
    netdevs: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RdmaDevice":
        d = dict(d)
        d["ports"] = [RdmaPort(**p) for p in d.get("ports", [])]
        return cls(**d)


@dataclass
class NetDevice:
    """A network interface and its addresses (CIDR strings), read from rtnetlink live."""

    name: str
    pci: str | None = None
    operstate: str = ""
    mtu: int | None = None
    mac: str = ""
    addresses: list[str] = field(default_factory=list)


@dataclass
class BlockDevice:
    """``/sys/class/block/<name>``: a disk or a partition, and what this machine does with it.

    ``dev`` is the kernel's ``major:minor``; ``disk`` names the whole disk of a partition
    (``None`` for a disk); ``holders`` are the block devices stacked on it (the kernel's
    ``holders/`` directory: device-mapper -- LVM, dm-crypt, multipath --, md RAID, bcache);
    ``mounts`` the mount points of filesystems on it (``/proc/self/mountinfo``); ``swap`` is
    true when it is an active swap device (``/proc/swaps``).
    """

    name: str
    dev: str = ""
    disk: str | None = None
    partitions: list[str] = field(default_factory=list)
    holders: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    swap: bool = False


#: what a holder's name says it is (the kernel names them dm-N, mdN, bcacheN)
_HOLDER_KINDS = (("dm-", "device-mapper: LVM, dm-crypt or multipath"), ("md", "md RAID"),
                 ("bcache", "bcache"))


def holder_kind(name: str) -> str:
    return next((what for prefix, what in _HOLDER_KINDS if name.startswith(prefix)),
                "a stacked block device")


@dataclass
class SystemInfo:
    """Facts about the running kernel and platform that the p2pdma rules depend on."""

    kernel_release: str = ""            # uname -r
    cmdline: str = ""                   # /proc/cmdline
    cpu_vendor: str = ""                # "GenuineIntel", "AuthenticAMD"
    cpu_family: int | None = None
    cpu_model_name: str = ""
    iommu: bool = False                 # an IOMMU driver is active (/sys/class/iommu non-empty)
    iommu_groups: bool = False          # /sys/kernel/iommu_groups populated
    nvme_use_cmb_sqes: bool | None = None  # /sys/module/nvme/parameters/use_cmb_sqes
    kernel_config: dict[str, str] | None = None  # CONFIG_* -> "y"/"m"/"n"; None if not found
    kernel_config_source: str | None = None      # which file it came from
    modules_loaded: list[str] = field(default_factory=list)   # /proc/modules (names)
    modules_available: list[str] | None = None   # from modules.dep if readable, else None
    configfs_mounted: bool = False
    nvmet_configfs: bool = False        # /sys/kernel/config/nvmet exists
    is_root: bool = False               # the reader could read privileged files
    numa_nodes: list[int] = field(default_factory=list)
    nvme_multipath: bool | None = None  # /sys/module/nvme_core/parameters/multipath (None: unknown)
    #: nvmetcli's nvmet.service: the links that enable it (/etc/systemd/system/<target>.wants/
    #: nvmet.service, also .requires and /run's), None when not read (an older inventory file)
    nvmetcli_unit_links: list[str] | None = None
    nvmetcli_unit_masked: bool = False  # its unit file is a link to /dev/null (systemctl mask)


@dataclass
class Inventory:
    """Everything the pure logic needs about one machine."""

    system: SystemInfo = field(default_factory=SystemInfo)
    pci: dict[str, PciFunction] = field(default_factory=dict)          # by BDF
    nvme: dict[str, NvmeController] = field(default_factory=dict)      # by controller name
    namespaces: dict[str, NvmeNamespace] = field(default_factory=dict) # by block device name
    rdma: dict[str, RdmaDevice] = field(default_factory=dict)          # by ib device name
    net: dict[str, NetDevice] = field(default_factory=dict)            # by ifname
    #: every block device (disks, partitions, dm, md) with what uses it; ``None`` when it was
    #: not read (an inventory file written before nvmet-p2p read block devices)
    blocks: dict[str, BlockDevice] | None = None
    source: str = "/"                   # the root it was read from
    warnings: list[str] = field(default_factory=list)  # things the reader could not read

    # -- convenience lookups (pure) -------------------------------------------------------
    def providers(self, published_only: bool = True) -> list[PciFunction]:
        """PCI functions with a p2pmem pool, in the kernel's enumeration (BDF) order."""
        out = [f for f in self.pci.values()
               if f.p2pmem is not None and (f.p2pmem.published or not published_only)]
        return sorted(out, key=lambda f: bdf_sort_key(f.bdf))

    def nvme_by_pci(self, bdf: str) -> NvmeController | None:
        for c in self.nvme.values():
            if c.pci == bdf:
                return c
        return None

    def rdma_for_address(self, traddr: str) -> list[RdmaDevice]:
        """RDMA devices that can accept connections on ``traddr``: the ones over the netdev
        that has the address (every one for a wildcard 0.0.0.0 / ::)."""
        try:
            ip = ipaddress.ip_address(traddr)
        except ValueError:
            return []
        if ip.is_unspecified:
            return list(self.rdma.values())
        netdevs = set()
        for nd in self.net.values():
            for cidr in nd.addresses:
                try:
                    if ipaddress.ip_interface(cidr).ip == ip:
                        netdevs.add(nd.name)
                except ValueError:
                    continue
        out = []
        for d in self.rdma.values():
            names = set(d.netdevs) | {n for p in d.ports for n in p.netdevs}
            if names & netdevs:
                out.append(d)
        return out

    def block_usage(self, name: str) -> list[str]:
        """Why this machine is using block device ``name``, one sentence per use: it or one of
        its partitions is mounted, an active swap device, or held by a stacked device
        (LVM/dm-crypt/multipath, md RAID, bcache; with what that one is used for). Empty:
        not in use, or unknown (``blocks`` not read, ``name`` not a block device)."""
        return self._usage(name, "it", frozenset())

    def _usage(self, name: str, label: str, seen: frozenset[str]) -> list[str]:
        blocks = self.blocks or {}
        b = blocks.get(name)
        if b is None or name in seen:           # (holders form a DAG; a file may not)
            return []
        seen = seen | {name}
        out: list[str] = []
        for part in [name] + [p for p in b.partitions if p != name]:
            p = blocks.get(part)
            if p is None:
                continue
            owner = "its" if label == "it" else f"{label}'s"
            who = label if part == name else f"{owner} partition {part}"
            if p.mounts:
                more = f" and {len(p.mounts) - 4} more" if len(p.mounts) > 4 else ""
                out.append(f"{who} is mounted at {', '.join(p.mounts[:4])}{more}")
            if p.swap:
                out.append(f"{who} is an active swap device")
            for h in p.holders:
                use = self._usage(h, h, seen | {part})
                out.append(f"{who} is held by {h} ({holder_kind(h)})"
                           + "".join(f"; {u}" for u in use))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "system": _asdict(self.system),
            "pci": {k: v.to_dict() for k, v in sorted(self.pci.items(), key=lambda kv: bdf_sort_key(kv[0]))},
            "nvme": {k: _asdict(v) for k, v in sorted(self.nvme.items())},
            "namespaces": {k: _asdict(v) for k, v in sorted(self.namespaces.items())},
            "rdma": {k: _asdict(v) for k, v in sorted(self.rdma.items())},
            "net": {k: _asdict(v) for k, v in sorted(self.net.items())},
            "blocks": (None if self.blocks is None else
                       {k: _asdict(v) for k, v in sorted(self.blocks.items())}),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Inventory":
        return cls(
            system=SystemInfo(**d.get("system", {})),
            pci={k: PciFunction.from_dict(v) for k, v in d.get("pci", {}).items()},
            nvme={k: NvmeController.from_dict(v) for k, v in d.get("nvme", {}).items()},
            namespaces={k: NvmeNamespace(**v) for k, v in d.get("namespaces", {}).items()},
            rdma={k: RdmaDevice.from_dict(v) for k, v in d.get("rdma", {}).items()},
            net={k: NetDevice(**v) for k, v in d.get("net", {}).items()},
            blocks=(None if d.get("blocks") is None else
                    {k: BlockDevice(**v) for k, v in d["blocks"].items()}),
            source=d.get("source", "/"),
            warnings=list(d.get("warnings", [])),
        )


def bdf_sort_key(bdf: str) -> tuple[int, int, int, int]:
    """Domain/bus/device/function order: the kernel's ``for_each_pci_dev`` order."""
    dom, bus, devfn = bdf.split(":")
    dev, fn = devfn.split(".")
    return int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16)
