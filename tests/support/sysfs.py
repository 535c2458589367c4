"""Synthetic sysfs/procfs trees with the real kernel's file layout, for tests.

A :class:`Machine` writes, below a temporary directory, the files the inventory readers look
at on a live system: real ``/sys/devices/pciDDDD:BB/...`` directory chains with the
``/sys/bus/pci/devices/<bdf>`` symlinks, binary PCI config space, ``p2pmem/``, NVMe
controllers and namespaces, RDMA devices, netdevs and the procfs files. The layout mirrors
what a 7.3 kernel shows in the QEMU lab (captured from the real guest; see
``docs``-style notes in each method), so the readers run unchanged on a fixture root, a
snapshot directory or ``/``.

Quick start::

    from support import sysfs as sf         # tests/ is on sys.path under pytest

    m = sf.q35_lab(tmp_path)                # the lab's default topology
    m.bdf("cmbA")                           # -> "0000:03:00.0"
    inv = read_inventory(m.root)            # nvmet_p2p.pci.inventory

    m = sf.Machine(tmp_path)                # or build your own
    m.system(cpu_vendor="GenuineIntel", cpu_family=6)
    m.pci("0000:00:00.0", vendor=0x8086, device=0x2020, class_code=0x060000, role="host")
    m.root_port("0000:00:01.0", secondary=1, acs_ctrl=0x001d)
    m.nvme("0000:01:00.0", parent="0000:00:01.0", ctrl="nvme0", cmb_mb=64, role="ssd")
    m.write()                               # only needed once, at the end (idempotent)

Everything is plain files, directories and *relative* symlinks (as sysfs has them), so a tree
can be copied, inspected with ``ls -l`` or ``find``, and ``os.path.realpath`` works on it.

Conventions
-----------
* BDFs are full names with domain: ``"0000:03:00.0"``. ``parent=None`` puts a function on the
  root bus of its own ``pciDDDD:BB`` host bridge (created on demand).
* ``role=`` names a device for tests (``m.bdf(role)``); ready-made machines document theirs.
* ``acs_ctrl=None`` means "no ACS capability"; an int adds the ACS extended capability
  (``acs_cap`` defaults to what QEMU's root port advertises, 0x005f) with that Control word.
* ``Machine(root, privileged=False)`` writes config files the way a non-root read sees them
  (64 bytes); ``m.config_read_limit(bdf, 64)`` does it for one function.
* ``m.write()`` (re)writes the whole tree; builder methods only record the description, so
  they can be called in any order (children before parents is fine) and attributes can be
  changed afterwards (``m.set_acs(bdf, 0x1d)``, ``m.set_p2pmem(bdf, published=False)``).
  Every ready-made machine function has already called ``write()``; call it again after
  changing something.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Machine", "Pci", "q35_lab", "skylake_sp", "two_host_bridges", "amd_zen", "nested_switches",
    "acs_switch", "vf_pf", "multifunction_acs", "soft_roce", "multipath", "big_machine",
    "config_space", "ACS_SV", "ACS_TB", "ACS_RR", "ACS_CR", "ACS_UF", "ACS_EC", "ACS_DT",
    "ACS_IOMMU_DEFAULT", "LAB_KERNEL", "LAB_CMBSZ", "LAB_CMBLOC",
]

# ACS Control bits (PCIe ACS extended capability, Control register at +6).
ACS_SV, ACS_TB, ACS_RR, ACS_CR, ACS_UF, ACS_EC, ACS_DT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
#: What ``pci_std_enable_acs()`` sets when an IOMMU driver asked for ACS: SV|RR|CR|UF.
ACS_IOMMU_DEFAULT = ACS_SV | ACS_RR | ACS_CR | ACS_UF
#: ACS Capability word of QEMU's pcie-root-port (read from the lab): SV TB RR CR UF DT.
QEMU_ACS_CAP = 0x005F

#: What the lab boots (trixie-backports; CONFIG_PCI_P2PDMA=y).
LAB_KERNEL = "7.3.4+deb13-amd64"
#: QEMU ``cmb_size_mb=64``: SQS LISTS RDS WDS, SZU=1 MiB, SZ=64 (read from the lab).
LAB_CMBSZ = 0x0004021D
LAB_CMBLOC = 0x00000062      # BIR 2, offset 0 (plus QEMU's CQMMS/CQPDS bits 5/6)

PCIE_ENDPOINT, PCIE_ROOT_PORT, PCIE_UPSTREAM, PCIE_DOWNSTREAM = 0x0, 0x4, 0x5, 0x6
PCIE_RC_ENDPOINT = 0x9

CLASS_NVME = 0x010802
CLASS_BRIDGE_PCI = 0x060400
CLASS_HOST_BRIDGE = 0x060000
CLASS_ETHERNET = 0x020000
CLASS_INFINIBAND = 0x020700

#: Kernel config options a p2pdma-capable Debian backports kernel has (subset that matters).
P2P_KERNEL_CONFIG = {
    "CONFIG_PCI_P2PDMA": "y", "CONFIG_ZONE_DEVICE": "y", "CONFIG_CONFIGFS_FS": "m",
    "CONFIG_BLK_DEV_NVME": "m", "CONFIG_NVME_CORE": "m", "CONFIG_NVME_MULTIPATH": "y",
    "CONFIG_NVME_TARGET": "m", "CONFIG_NVME_TARGET_RDMA": "m", "CONFIG_NVME_TARGET_TCP": "m",
    "CONFIG_NVME_TARGET_LOOP": "m", "CONFIG_INFINIBAND": "m", "CONFIG_RDMA_RXE": "m",
    "CONFIG_RDMA_SIW": None, "CONFIG_PCI_IOV": "y", "CONFIG_IOMMU_SUPPORT": "y",
    "CONFIG_INTEL_IOMMU": "y", "CONFIG_AMD_IOMMU": "y", "CONFIG_INTEL_IOMMU_DEFAULT_ON": None,
}
#: The same for Debian's stable 6.1/6.12 kernels: everything but p2pdma.
NO_P2P_KERNEL_CONFIG = dict(P2P_KERNEL_CONFIG, CONFIG_PCI_P2PDMA=None)

#: Module files the lab's modules.dep lists for what nvmet-p2p cares about (the reader keeps
#: only these names; the list is the one the 7.3 lab kernel gives).
LAB_MODULES = {
    "nvme": "kernel/drivers/nvme/host/nvme.ko.xz",
    "nvme_core": "kernel/drivers/nvme/host/nvme-core.ko.xz",
    "nvme_auth": "kernel/drivers/nvme/common/nvme-auth.ko.xz",
    "nvme_keyring": "kernel/drivers/nvme/common/nvme-keyring.ko.xz",
    "nvme_rdma": "kernel/drivers/nvme/host/nvme-rdma.ko.xz",
    "nvme_tcp": "kernel/drivers/nvme/host/nvme-tcp.ko.xz",
    "nvme_fc": "kernel/drivers/nvme/host/nvme-fc.ko.xz",
    "nvme_fabrics": "kernel/drivers/nvme/host/nvme-fabrics.ko.xz",
    "nvmet": "kernel/drivers/nvme/target/nvmet.ko.xz",
    "nvmet_rdma": "kernel/drivers/nvme/target/nvmet-rdma.ko.xz",
    "nvmet_tcp": "kernel/drivers/nvme/target/nvmet-tcp.ko.xz",
    "nvmet_fc": "kernel/drivers/nvme/target/nvmet-fc.ko.xz",
    "nvme_fcloop": "kernel/drivers/nvme/target/nvme-fcloop.ko.xz",
    "nvme_loop": "kernel/drivers/nvme/target/nvme-loop.ko.xz",
    "rdma_rxe": "kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko.xz",
    "ib_core": "kernel/drivers/infiniband/core/ib_core.ko.xz",
    "ib_cm": "kernel/drivers/infiniband/core/ib_cm.ko.xz",
    "iw_cm": "kernel/drivers/infiniband/core/iw_cm.ko.xz",
    "rdma_cm": "kernel/drivers/infiniband/core/rdma_cm.ko.xz",
    "rdma_ucm": "kernel/drivers/infiniband/core/rdma_ucm.ko.xz",
    "ib_umad": "kernel/drivers/infiniband/core/ib_umad.ko.xz",
    "ib_uverbs": "kernel/drivers/infiniband/core/ib_uverbs.ko.xz",
    "ib_uverbs_support": "kernel/drivers/infiniband/core/ib_uverbs_support.ko.xz",
    "ib_ipoib": "kernel/drivers/infiniband/ulp/ipoib/ib_ipoib.ko.xz",
    "ib_iser": "kernel/drivers/infiniband/ulp/iser/ib_iser.ko.xz",
    "ib_isert": "kernel/drivers/infiniband/ulp/isert/ib_isert.ko.xz",
    "ib_srp": "kernel/drivers/infiniband/ulp/srp/ib_srp.ko.xz",
    "ib_srpt": "kernel/drivers/infiniband/ulp/srpt/ib_srpt.ko.xz",
    "ib_mthca": "kernel/drivers/infiniband/hw/mthca/ib_mthca.ko.xz",
    "bnxt_re": "kernel/drivers/infiniband/hw/bnxt_re/bnxt_re.ko.xz",
    "irdma": "kernel/drivers/infiniband/hw/irdma/irdma.ko.xz",
    "qedr": "kernel/drivers/infiniband/hw/qedr/qedr.ko.xz",
    "mlx4_core": "kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko.xz",
    "mlx4_en": "kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_en.ko.xz",
    "mlx4_ib": "kernel/drivers/infiniband/hw/mlx4/mlx4_ib.ko.xz",
    "mlx5_core": "kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko.xz",
    "mlx5_ib": "kernel/drivers/infiniband/hw/mlx5/mlx5_ib.ko.xz",
    "configfs": "kernel/fs/configfs/configfs.ko.xz",
    "dummy": "kernel/drivers/net/dummy.ko.xz",
}


# ------------------------------------------------------------------------------------------
# PCI config space
# ------------------------------------------------------------------------------------------

def config_space(*, vendor: int, device: int, class_code: int, revision: int = 0,
                 header_type: int = 0, multifunction: bool = False,
                 subsystem_vendor: int = 0, subsystem_device: int = 0,
                 pcie_type: int | None = None, acs_cap: int | None = None,
                 acs_ctrl: int | None = None, secondary: int | None = None,
                 subordinate: int | None = None, primary: int = 0,
                 aer: bool = True) -> bytes:
    """Bytes of a function's configuration space, as root reads ``<bdf>/config``.

    Conventional functions (``pcie_type=None``) get 256 bytes; PCI Express ones 4096 with a
    Power Management capability at 0x40, the PCI Express capability at 0x80 (port type in
    bits 7:4 of its capabilities register) and an extended capability chain from 0x100:
    AER (when ``aer``) followed by ACS at 0x148 when ``acs_ctrl`` is given -- the same
    offsets as QEMU's root ports, so a reader must really walk the ``next`` pointers.
    """
    size = 256 if pcie_type is None else 4096
    b = bytearray(size)
    struct.pack_into("<HH", b, 0x00, vendor, device)
    struct.pack_into("<H", b, 0x04, 0x0007)                     # command: io|mem|master
    b[0x08] = revision & 0xFF
    b[0x09] = class_code & 0xFF
    b[0x0A] = (class_code >> 8) & 0xFF
    b[0x0B] = (class_code >> 16) & 0xFF
    b[0x0E] = (header_type & 0x7F) | (0x80 if multifunction else 0)
    if header_type == 1:
        b[0x18] = primary & 0xFF
        b[0x19] = (secondary or 0) & 0xFF
        b[0x1A] = (subordinate if subordinate is not None else (secondary or 0)) & 0xFF
    else:
        struct.pack_into("<HH", b, 0x2C, subsystem_vendor, subsystem_device)
    if pcie_type is not None:
        struct.pack_into("<H", b, 0x06, 0x0010)                 # status: capabilities list
        b[0x34] = 0x40
        b[0x40], b[0x41] = 0x01, 0x80                           # PM -> PCIe
        struct.pack_into("<H", b, 0x42, 0x0003)
        b[0x80], b[0x81] = 0x10, 0x00                           # PCIe, end of list
        flags = 0x2 | ((pcie_type & 0xF) << 4)
        if pcie_type in (PCIE_ROOT_PORT, PCIE_DOWNSTREAM):
            flags |= 0x100                                      # slot implemented
        struct.pack_into("<H", b, 0x82, flags)
        ext = []
        if aer:
            ext.append((0x100, 0x0001, 2, b""))
        if acs_ctrl is not None:
            cap = QEMU_ACS_CAP if acs_cap is None else acs_cap
            ext.append((0x148 if aer else 0x100, 0x000D, 1, struct.pack("<HH", cap, acs_ctrl)))
        for i, (off, cid, ver, payload) in enumerate(ext):
            nxt = ext[i + 1][0] if i + 1 < len(ext) else 0
            struct.pack_into("<I", b, off, cid | (ver << 16) | (nxt << 20))
            b[off + 4: off + 4 + len(payload)] = payload
    return bytes(b)


# ------------------------------------------------------------------------------------------
# Device descriptions
# ------------------------------------------------------------------------------------------

@dataclass
class Pci:
    """One PCI function to be written (see :meth:`Machine.pci` for the fields)."""

    bdf: str
    parent: str | None
    vendor: int
    device: int
    class_code: int
    revision: int = 0
    subsystem_vendor: int = 0
    subsystem_device: int = 0
    pcie_type: int | None = None
    multifunction: bool = False
    acs_ctrl: int | None = None
    acs_cap: int | None = None
    secondary: int | None = None
    subordinate: int | None = None
    numa_node: int = -1
    driver: str | None = None
    physfn: str | None = None
    config_limit: int | None = None       # bytes a read returns (64 = non-root)
    config_override: bytes | None = None  # raw bytes instead of the generated ones
    p2pmem: dict | None = None            # {"size", "available", "published", "allocate"}
    extra_files: dict[str, str] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return (self.class_code >> 8) == 0x0604


@dataclass
class _Nvme:
    ctrl: str
    bdf: str | None
    serial: str
    model: str
    firmware: str
    subsysnqn: str
    transport: str = "pcie"
    address: str = ""
    cmbsz: int = 0
    cmbloc: int = 0
    namespaces: list[dict] = field(default_factory=list)   # {"name", "nsid", "size_bytes", ...}
    subsys: str = ""
    cntlid: int = 0
    state: str = "live"


@dataclass
class _Rdma:
    name: str
    bdf: str | None            # None: soft device under /sys/devices/virtual/infiniband
    kind: str                  # "pci", "rxe", "siw"
    netdev: str | None
    node_type: str = "1: CA"
    node_desc: str = ""
    link_layer: str = "Ethernet"
    state: str = "4: ACTIVE"
    phys_state: str = "5: LinkUp"
    rate: str = "100 Gb/sec (4X EDR)"
    ports: int = 1
    gid_slots: int = 4         # ndevs entries written (the lab's rxe has 1024, most EINVAL)


@dataclass
class _Net:
    name: str
    bdf: str | None
    mac: str
    mtu: int = 1500
    operstate: str = "up"
    addresses: list[str] = field(default_factory=list)
    ifindex: int = 0


class Machine:
    """Builder of one synthetic machine below ``root``.

    ``root`` is the directory that stands for ``/``; ``m.root`` is a :class:`~pathlib.Path`.
    """

    def __init__(self, root: str | os.PathLike, *, privileged: bool = True, loopback: bool = True):
        self.root = Path(root)
        self.privileged = privileged
        self.loopback = loopback
        self.pcis: dict[str, Pci] = {}
        self.nvmes: dict[str, _Nvme] = {}
        self.rdmas: dict[str, _Rdma] = {}
        self.nets: dict[str, _Net] = {}
        self.heads: list[dict] = []
        self.roles: dict[str, str] = {}
        self.sys: dict[str, Any] = {}
        self.host_parents: dict[str, str] = {}   # "pci10000:00" -> BDF of the VMD endpoint
        # what the machine does with its block devices (the export policy's facts)
        self.parts: dict[str, list[str]] = {}     # disk -> partition names
        self.holders: dict[str, list[str]] = {}   # block device -> dm-N / mdN stacked on it
        self.mounted: list[tuple[str, str, str]] = []   # (block device, source, mount point)
        self.swaps: list[str] = []
        self.devs: dict[str, str] = {}            # block device -> major:minor, as written
        self.system()

    # -- lookups -----------------------------------------------------------------------------
    def bdf(self, role: str) -> str:
        """The BDF registered under ``role`` (``KeyError`` lists the known roles)."""
        try:
            return self.roles[role]
        except KeyError:
            raise KeyError(f"no role {role!r}; known: {sorted(self.roles)}") from None

    def sysfs_dir(self, bdf: str) -> str:
        """The function's real sysfs directory, e.g. ``/sys/devices/pci0000:00/0000:00:04.0/...``."""
        chain = []
        cur: str | None = bdf
        seen = set()
        while cur is not None:
            if cur in seen:
                raise ValueError(f"parent loop at {cur}")
            seen.add(cur)
            p = self.pcis.get(cur)
            if p is None:
                raise KeyError(f"{bdf}: parent {cur} was never added")
            chain.append(cur)
            cur = p.parent
        top = self.pcis[chain[-1]]
        return self._hb_dir(top.bdf) + "/" + "/".join(reversed(chain))

    def _hb_dir(self, top_bdf: str) -> str:
        """The host bridge directory above a root-bus function: ``/sys/devices/pciDDDD:BB``, or,
        for a bus behind an Intel VMD endpoint, ``<VMD function dir>/pciDDDD:BB``."""
        hb = _host_bridge_of(top_bdf)
        vmd = self.host_parents.get(hb)
        return (self.sysfs_dir(vmd) if vmd else "/sys/devices") + "/" + hb

    def path(self, sys_path: str) -> Path:
        """Host path of an absolute path inside the machine (``m.path("/proc/cmdline")``)."""
        return self.root / sys_path.lstrip("/")

    # -- system ------------------------------------------------------------------------------
    def system(self, *, kernel_release: str = LAB_KERNEL, cpu_vendor: str = "GenuineIntel",
               cpu_family: int = 6, cpu_model: int = 85,
               cpu_model_name: str = "Intel(R) Xeon(R) Gold 6140 CPU @ 2.30GHz", cpus: int = 2,
               cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet",
               iommu: bool | str = False, iommu_groups: int | None = None,
               numa_nodes: tuple[int, ...] = (0,), use_cmb_sqes: str | None = "Y",
               kernel_config: dict[str, str | None] | None = None,
               kernel_config_at: str | None = "lib", modules_loaded: list[str] | None = None,
               modules_available: dict[str, str] | None = None,
               modules_builtin: list[str] | None = None, configfs: bool = True,
               nvmet_configfs: bool = True, nvme_core_multipath: str = "Y") -> "Machine":
        """Describe kernel and platform facts (every argument has a lab-like default).

        ``iommu``: False, True (an Intel ``dmar0``) or a name (``"ivhd0"``).
        ``kernel_config_at``: ``"boot"`` (``/boot/config-R``), ``"lib"``
        (``/lib/modules/R/config``, where Debian 7.x puts it), ``"proc"`` (``/proc/config.gz``)
        or ``None`` (no config file anywhere). Values ``None`` in ``kernel_config`` are written
        as ``# CONFIG_X is not set``.
        ``use_cmb_sqes``: the text of ``/sys/module/nvme/parameters/use_cmb_sqes`` (``None``:
        nvme module not loaded).
        ``modules_available``: ``{name: path in modules.dep}``; ``None`` writes no modules.dep.
        """
        self.sys = dict(
            kernel_release=kernel_release, cpu_vendor=cpu_vendor, cpu_family=cpu_family,
            cpu_model=cpu_model, cpu_model_name=cpu_model_name, cpus=cpus, cmdline=cmdline,
            iommu=iommu, iommu_groups=iommu_groups, numa_nodes=tuple(numa_nodes),
            use_cmb_sqes=use_cmb_sqes,
            kernel_config=dict(P2P_KERNEL_CONFIG if kernel_config is None else kernel_config),
            kernel_config_at=kernel_config_at,
            modules_loaded=list(modules_loaded if modules_loaded is not None else
                                ["nvme", "nvme_core", "configfs", "nvmet", "nvmet_rdma", "ib_core",
                                 "rdma_cm"]),
            modules_available=dict(LAB_MODULES if modules_available is None else modules_available),
            modules_builtin=list(modules_builtin or []), configfs=configfs,
            nvmet_configfs=nvmet_configfs, nvme_core_multipath=nvme_core_multipath)
        return self

    def update_system(self, **changes: Any) -> "Machine":
        """Change some :meth:`system` facts, keeping the others."""
        unknown = set(changes) - set(self.sys)
        if unknown:
            raise TypeError(f"unknown system fields: {sorted(unknown)}")
        self.sys.update(changes)
        return self

    # -- PCI ---------------------------------------------------------------------------------
    def pci(self, bdf: str, *, parent: str | None = None, vendor: int, device: int,
            class_code: int, role: str | None = None, **kw: Any) -> Pci:
        """Add a PCI function.

        Keyword fields (see :class:`Pci`): ``revision``, ``subsystem_vendor``,
        ``subsystem_device``, ``pcie_type`` (``None`` = conventional PCI, 256-byte config),
        ``multifunction``, ``acs_ctrl``/``acs_cap``, ``secondary``/``subordinate`` (bridges),
        ``numa_node`` (-1 = none), ``driver``, ``physfn`` (the PF's BDF, for a VF),
        ``config_limit`` (bytes a read returns), ``config_override`` (raw bytes), ``p2pmem``.
        """
        if bdf in self.pcis:
            raise ValueError(f"{bdf} added twice")
        p = Pci(bdf=bdf, parent=parent, vendor=vendor, device=device, class_code=class_code, **kw)
        self.pcis[bdf] = p
        if role:
            self.roles[role] = bdf
        return p

    def host_bridge_device(self, bdf: str, vendor: int, device: int, *, role: str | None = None,
                           pcie: bool = False, **kw: Any) -> Pci:
        """The device at the top of a root bus that the kernel's whitelist looks at."""
        return self.pci(bdf, vendor=vendor, device=device, class_code=CLASS_HOST_BRIDGE,
                        pcie_type=PCIE_RC_ENDPOINT if pcie else None, role=role, **kw)

    def vmd(self, bdf: str, *, parent: str | None = None, domain: str = "10000",
            role: str | None = None) -> str:
        """An Intel VMD endpoint (8086:201d) that hosts its own PCI domain: functions added
        with BDFs in ``domain`` and ``parent=None`` sit on the root bus of the host bridge
        ``pci<domain>:00``, whose sysfs directory is a child of the VMD function's
        (``.../0000:00:0e.0/pci10000:00/10000:00:02.0/...``). Returns the host bridge name."""
        self.pci(bdf, parent=parent, vendor=0x8086, device=0x201D, class_code=0x010400,
                 pcie_type=PCIE_RC_ENDPOINT, driver="vmd", role=role)
        hb = f"pci{domain}:00"
        self.host_parents[hb] = bdf
        return hb

    def root_port(self, bdf: str, *, secondary: int, subordinate: int | None = None,
                  vendor: int = 0x1B36, device: int = 0x000C, acs_ctrl: int | None = 0,
                  role: str | None = None, **kw: Any) -> Pci:
        """A PCIe root port (default: QEMU's pcie-root-port 1b36:000c with ACS, ctrl 0)."""
        kw.setdefault("driver", "pcieport")
        kw.setdefault("subsystem_vendor", vendor)
        return self.pci(bdf, vendor=vendor, device=device, class_code=CLASS_BRIDGE_PCI,
                        pcie_type=PCIE_ROOT_PORT, secondary=secondary,
                        subordinate=subordinate if subordinate is not None else secondary,
                        acs_ctrl=acs_ctrl, role=role, **kw)

    def switch(self, upstream: str, *, parent: str, downstream: list[str],
               secondary: int | None = None, vendor: int = 0x104C, usp_device: int = 0x8232,
               dsp_device: int = 0x8233, dsp_acs_ctrl: int | None = None,
               usp_acs_ctrl: int | None = None, role: str | None = None) -> list[Pci]:
        """A PCIe switch: an upstream port and its downstream ports.

        Default IDs are QEMU's x3130-upstream (104c:8232) and xio3130-downstream (104c:8233),
        which have no ACS capability; give ``dsp_acs_ctrl`` to model a switch with ACS
        (Broadcom/PLX and Microchip switches have it on their downstream ports). Downstream
        port ``i`` gets secondary bus ``int(downstream[i].bus) + 1`` unless the BDF of its
        child says otherwise: the bus numbers are bookkeeping only.
        """
        usp_bus = int(upstream.split(":")[1], 16)
        dsp_bus = int(downstream[0].split(":")[1], 16) if downstream else usp_bus + 1
        out = [self.pci(upstream, parent=parent, vendor=vendor, device=usp_device,
                        class_code=CLASS_BRIDGE_PCI, pcie_type=PCIE_UPSTREAM, revision=2,
                        secondary=secondary if secondary is not None else dsp_bus,
                        subordinate=dsp_bus + len(downstream), acs_ctrl=usp_acs_ctrl,
                        driver="pcieport", role=role)]
        for i, d in enumerate(downstream):
            out.append(self.pci(d, parent=upstream, vendor=vendor, device=dsp_device,
                                class_code=CLASS_BRIDGE_PCI, pcie_type=PCIE_DOWNSTREAM, revision=1,
                                secondary=dsp_bus + 1 + i, acs_ctrl=dsp_acs_ctrl,
                                driver="pcieport"))
        return out

    def set_acs(self, bdf: str, ctrl: int | None, cap: int | None = None) -> "Machine":
        """Give ``bdf`` an ACS capability with Control ``ctrl`` (``None`` removes it)."""
        p = self.pcis[bdf]
        if p.pcie_type is None and ctrl is not None:
            raise ValueError(f"{bdf} is conventional PCI: no extended capabilities")
        p.acs_ctrl, p.acs_cap = ctrl, cap if cap is not None else p.acs_cap
        return self

    def config_read_limit(self, bdf: str | None, limit: int | None) -> "Machine":
        """Make reads of ``config`` return ``limit`` bytes (64 = what non-root gets)."""
        for p in ([self.pcis[bdf]] if bdf else self.pcis.values()):
            p.config_limit = limit
        return self

    def set_p2pmem(self, bdf: str, **fields: Any) -> "Machine":
        """Change ``p2pmem`` fields of a provider (``size``, ``available``, ``published``,
        ``allocate``); ``set_p2pmem(bdf, remove=True)`` deletes the directory."""
        p = self.pcis[bdf]
        if fields.pop("remove", False):
            p.p2pmem = None
            return self
        p.p2pmem = dict(p.p2pmem or {"size": 0, "available": 0, "published": True,
                                     "allocate": True}, **fields)
        return self

    # -- NVMe --------------------------------------------------------------------------------
    def nvme(self, bdf: str, *, parent: str | None, ctrl: str, serial: str | None = None,
             model: str = "QEMU NVMe Ctrl", firmware: str = "7.2.22",
             cmb_mb: int | None = None, cmbsz: int | None = None, cmbloc: int | None = None,
             p2pmem: bool | dict | None = None, sq_bytes: int = 131072,
             namespaces: list[int] | int = 1, ns_size_bytes: int = 268435456,
             vendor: int = 0x1B36, device: int = 0x0010, subsys: str | None = None,
             subsysnqn: str | None = None, role: str | None = None, numa_node: int = -1,
             acs_ctrl: int | None = None, multifunction: bool = False) -> Pci:
        """A PCIe NVMe controller with its PCI function, namespaces and nvme-subsystem.

        ``cmb_mb=N`` is QEMU's ``cmb_size_mb``: CMBSZ/CMBLOC as the lab shows them and, unless
        ``p2pmem=False``, a published ``p2pmem/`` of N MiB whose ``available`` already lacks
        ``sq_bytes`` (the lab: 2 I/O SQs x 64 KiB placed in the CMB with use_cmb_sqes=Y).
        ``cmbsz``/``cmbloc`` give raw registers instead. ``p2pmem`` may be a dict of fields.
        ``namespaces``: a count or a list of nsids; block devices are ``<ctrl>n<nsid>``.
        """
        serial = serial if serial is not None else f"SN{ctrl}"
        if cmb_mb is not None and cmbsz is None:
            cmbsz = (cmb_mb << 12) | 0x21D
            cmbloc = LAB_CMBLOC if cmbloc is None else cmbloc
        cmbsz = cmbsz or 0
        cmbloc = cmbloc or 0
        pmem = None
        if p2pmem is not False and cmbsz:
            from_regs = _cmb_size(cmbsz)
            publish = bool(cmbsz & 0x08) and bool(cmbsz & 0x10)
            pmem = {"size": from_regs, "available": max(0, from_regs - sq_bytes),
                    "published": publish, "allocate": True}
            if isinstance(p2pmem, dict):
                pmem.update(p2pmem)
        elif isinstance(p2pmem, dict):
            pmem = dict({"published": True, "allocate": True}, **p2pmem)
        p = self.pci(bdf, parent=parent, vendor=vendor, device=device, class_code=CLASS_NVME,
                     pcie_type=PCIE_ENDPOINT, revision=2, subsystem_vendor=0x1AF4,
                     subsystem_device=0x1100, driver="nvme", p2pmem=pmem, role=role,
                     numa_node=numa_node, acs_ctrl=acs_ctrl, multifunction=multifunction)
        nsids = list(range(1, namespaces + 1)) if isinstance(namespaces, int) else list(namespaces)
        inst = ctrl[len("nvme"):]
        self.nvmes[ctrl] = _Nvme(
            ctrl=ctrl, bdf=bdf, serial=serial, model=model, firmware=firmware,
            subsysnqn=subsysnqn or f"nqn.2019-08.org.qemu:{serial}", address=bdf,
            cmbsz=cmbsz, cmbloc=cmbloc, subsys=subsys or f"nvme-subsys{inst}",
            namespaces=[{"name": f"{ctrl}n{n}", "nsid": n, "size_bytes": ns_size_bytes,
                         "wwid": f"nvme.1b36-{serial.encode().hex()}-51454d55204e564d65204374726c-{n:08x}"}
                        for n in nsids])
        return p

    def partition(self, disk: str, n: int, *, mount: str | None = None, swap: bool = False
                  ) -> str:
        """Partition ``n`` of ``disk`` (``nvme0n1p2``), optionally mounted or a swap device."""
        name = f"{disk}p{n}" if disk[-1].isdigit() else f"{disk}{n}"
        self.parts.setdefault(disk, []).append(name)
        if mount:
            self.mount(name, mount)
        if swap:
            self.swaps.append(f"/dev/{name}")
        return name

    def mount(self, dev: str, where: str, *, source: str | None = None) -> "Machine":
        """A filesystem on block device ``dev`` mounted at ``where`` (``/proc/self/mountinfo``
        gives its major:minor; ``source`` as the mount table shows it, default /dev/<dev>)."""
        self.mounted.append((dev, source or f"/dev/{dev}", where))
        return self

    def hold(self, dev: str, holder: str, *, dm_name: str | None = None,
             mount: str | None = None) -> str:
        """``holder`` (``dm-0``, ``md0``) stacked on ``dev`` (LVM/crypt/md member)."""
        self.holders.setdefault(dev, []).append(holder)
        if holder.startswith("dm-"):
            self.holders.setdefault(f"dm-name:{holder}", []).append(dm_name or "vg-root")
        if mount:
            self.mount(holder, mount, source=f"/dev/mapper/{dm_name}" if dm_name else None)
        return holder

    def multipath_head(self, *, subsys: str, ctrls: list[str], nsid: int = 1,
                       head: str | None = None, size_bytes: int = 67108864) -> str:
        """A native-multipath namespace shared by ``ctrls`` (all in ``subsys``).

        Like the 7.3 kernel with a CMIC multi-controller subsystem: the head disk
        ``nvmeSnN`` lives in ``/sys/devices/virtual/nvme-subsystem/<subsys>/`` (no PCI parent),
        each controller gets a hidden path disk ``nvmeScCnN`` (``hidden`` = 1), and
        ``<head>/multipath/`` links to the paths. Returns the head disk name.
        """
        s_inst = subsys[len("nvme-subsys"):]
        head = head or f"nvme{s_inst}n{nsid}"
        for c in ctrls:
            self.nvmes[c].subsys = subsys
        self.heads.append({"name": head, "subsys": subsys, "ctrls": list(ctrls), "nsid": nsid,
                           "size_bytes": size_bytes, "s_inst": s_inst})
        return head

    # -- RDMA and net ------------------------------------------------------------------------
    def nic(self, bdf: str, *, parent: str | None, ibdev: str | None = "mlx5_0",
            netdev: str | None = "ens1f0np0", vendor: int = 0x15B3, device: int = 0x1017,
            driver: str = "mlx5_core", link_layer: str = "Ethernet", addresses: list[str] = (),
            multifunction: bool = False, acs_ctrl: int | None = None, role: str | None = None,
            physfn: str | None = None, numa_node: int = -1, mac: str | None = None,
            state: str = "4: ACTIVE") -> Pci:
        """A PCI RDMA NIC function (default: ConnectX-5 15b3:1017) with its ib device and netdev."""
        cls = CLASS_INFINIBAND if link_layer == "InfiniBand" else CLASS_ETHERNET
        p = self.pci(bdf, parent=parent, vendor=vendor, device=device, class_code=cls,
                     pcie_type=PCIE_ENDPOINT, driver=driver, multifunction=multifunction,
                     acs_ctrl=acs_ctrl, role=role, physfn=physfn, numa_node=numa_node,
                     subsystem_vendor=vendor, subsystem_device=0x0007)
        if netdev:
            self.netdev(netdev, bdf=bdf, addresses=list(addresses), mac=mac)
        if ibdev:
            self.rdmas[ibdev] = _Rdma(name=ibdev, bdf=bdf, kind="pci", netdev=netdev,
                                      link_layer=link_layer, node_desc=f"host {ibdev}",
                                      state=state)
        return p

    def netdev(self, name: str, *, bdf: str | None = None, addresses: list[str] = (),
               mac: str | None = None, mtu: int = 1500, operstate: str = "up") -> "_Net":
        """A network interface, on a PCI function or virtual (``bdf=None``: dummy, veth).

        ``addresses`` (CIDR strings) are what pyroute2 would report on a live system; they
        go into the snapshot metadata file, where a snapshot records them too.
        """
        idx = len(self.nets) + 2
        n = _Net(name=name, bdf=bdf, mac=mac or f"52:54:00:00:{idx // 256:02x}:{idx % 256:02x}",
                 mtu=mtu, operstate=operstate, addresses=list(addresses), ifindex=idx)
        self.nets[name] = n
        return n

    def rxe(self, name: str = "rxe0", *, netdev: str = "dummy0", addresses: list[str] = (),
            create_netdev: bool = True, state: str = "4: ACTIVE") -> "_Rdma":
        """A soft-RoCE device on ``netdev`` (``rdma link add NAME type rxe netdev NETDEV``).

        Real layout (lab, 7.3): ``/sys/class/infiniband/rxe0 -> ../../devices/virtual/infiniband/rxe0``,
        no ``device`` link, a ``parent`` file naming the netdev, ``node_desc`` "rxe".
        """
        if create_netdev and netdev not in self.nets:
            self.netdev(netdev, addresses=list(addresses), operstate="unknown")
        r = _Rdma(name=name, bdf=None, kind="rxe", netdev=netdev, node_desc="rxe",
                  rate="2.5 Gb/sec (1X SDR)", state=state)
        self.rdmas[name] = r
        return r

    def rxe_p2p(self, name: str, *, bdf: str, parent: str, netdev: str, addresses: list[str] = (),
                model: str = "e1000e", role: str | None = None, state: str = "4: ACTIVE") -> "_Rdma":
        """The lab's p2p-capable soft-RoCE (tools/lab/rxe_p2p) on a PCI NIC at ``bdf``:
        ``rdma link add NAME type rxe_p2p netdev NETDEV``.

        Real layout (lab, 7.3, topology rdma-p2p): the NIC function (e1000e 8086:10d3 or
        virtio-net 1af4:1041), its netdev, ``/sys/class/infiniband/rxp0 ->
        ../../devices/pci0000:00/.../0000:06:00.0/infiniband/rxp0`` with a ``device`` link to
        the NIC, a ``parent`` file naming the netdev and ``node_desc`` "rxe_p2p".
        """
        vendor, device, driver = {"e1000e": (0x8086, 0x10D3, "e1000e"),
                                  "virtio-net-pci": (0x1AF4, 0x1041, "virtio-pci")}[model]
        self.pci(bdf, parent=parent, vendor=vendor, device=device, class_code=CLASS_ETHERNET,
                 pcie_type=PCIE_ENDPOINT, driver=driver, role=role, subsystem_vendor=vendor,
                 subsystem_device=0x1100)
        self.netdev(netdev, bdf=bdf, addresses=list(addresses))
        r = _Rdma(name=name, bdf=bdf, kind="rxe_p2p", netdev=netdev, node_desc="rxe_p2p",
                  rate="2.5 Gb/sec (1X SDR)", state=state)
        self.rdmas[name] = r
        return r

    def siw(self, name: str = "siw0", *, netdev: str = "dummy0", addresses: list[str] = (),
            create_netdev: bool = True) -> "_Rdma":
        """A soft-iWARP device (``rdma link add NAME type siw netdev NETDEV``): virtual, iWARP."""
        if create_netdev and netdev not in self.nets:
            self.netdev(netdev, addresses=list(addresses), operstate="unknown")
        r = _Rdma(name=name, bdf=None, kind="siw", netdev=netdev, node_type="4: RNIC",
                  node_desc="Software iWARP stack", rate="2.5 Gb/sec (1X SDR)")
        self.rdmas[name] = r
        return r

    # -- writing -----------------------------------------------------------------------------
    def write(self) -> "Machine":
        """Write (or rewrite) the whole tree below ``root``; returns ``self``."""
        self.devs = {}
        for top in ("sys", "proc", "boot", "lib", "nvmet-p2p-snapshot.json"):
            t = self.root / top
            if t.is_symlink() or t.is_file():
                t.unlink()
            elif t.exists():
                shutil.rmtree(t)
        self.root.mkdir(parents=True, exist_ok=True)
        for d in ("sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/class/pci_bus", "sys/class/nvme",
                  "sys/class/nvme-subsystem", "sys/class/block", "sys/block",
                  "sys/class/infiniband", "sys/class/net", "sys/class/iommu",
                  "sys/kernel/iommu_groups", "sys/devices/virtual/nvme-subsystem",
                  "sys/devices/virtual/net", "sys/devices/system/node", "sys/module", "proc/sys/kernel"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for p in self.pcis.values():
            self._write_pci(p)
        for c in self.nvmes.values():
            self._write_nvme(c)
        for h in self.heads:
            self._write_head(h)
        nets = list(self.nets.values())
        if self.loopback and "lo" not in self.nets:
            nets.append(_Net(name="lo", bdf=None, mac="00:00:00:00:00:00", mtu=65536,
                             operstate="unknown", addresses=["127.0.0.1/8", "::1/128"], ifindex=1))
        for n in nets:
            self._write_net(n)
        for r in self.rdmas.values():
            self._write_rdma(r)
        self._write_system()
        self._write_meta()
        return self

    # helpers ---------------------------------------------------------------------------------
    def _file(self, sys_path: str, content: str | bytes, mode: int = 0o444) -> None:
        p = self.path(sys_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        p.write_bytes(content)
        try:
            os.chmod(p, mode | 0o200)   # keep the owner able to rewrite the tree
        except OSError:
            pass

    def _link(self, sys_path: str, target_sys_path: str) -> None:
        """A *relative* symlink, as sysfs makes them."""
        p = self.path(sys_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        rel = _kernfs_relative(sys_path, target_sys_path)
        if p.is_symlink() or p.exists():
            p.unlink()
        os.symlink(rel, p)

    def _mkdir(self, sys_path: str) -> None:
        self.path(sys_path).mkdir(parents=True, exist_ok=True)

    def _write_pci(self, p: Pci) -> None:
        d = self.sysfs_dir(p.bdf)
        hb = self._hb_dir(self._top(p.bdf))
        self._mkdir(hb)
        self._file(hb + "/uevent", "", 0o644)
        hb_bus = f"{hb}/pci_bus/{_host_bridge_of(self._top(p.bdf))[3:]}"
        self._link(f"{hb_bus}/device", hb)
        self._link(f"{hb_bus}/subsystem", "/sys/class/pci_bus")
        self._file(f"{d}/vendor", f"0x{p.vendor:04x}\n")
        self._file(f"{d}/device", f"0x{p.device:04x}\n")
        self._file(f"{d}/class", f"0x{p.class_code:06x}\n")
        self._file(f"{d}/revision", f"0x{p.revision:02x}\n")
        self._file(f"{d}/subsystem_vendor", f"0x{p.subsystem_vendor:04x}\n")
        self._file(f"{d}/subsystem_device", f"0x{p.subsystem_device:04x}\n")
        self._file(f"{d}/numa_node", f"{p.numa_node}\n", 0o644)
        self._file(f"{d}/local_cpulist", "0-1\n")
        self._file(f"{d}/enable", "1\n", 0o644)
        self._file(f"{d}/modalias",
                   f"pci:v{p.vendor:08X}d{p.device:08X}sv{p.subsystem_vendor:08X}"
                   f"sd{p.subsystem_device:08X}bc{p.class_code >> 16:02X}"
                   f"sc{(p.class_code >> 8) & 0xFF:02X}i{p.class_code & 0xFF:02X}\n")
        uevent = ""
        if p.driver:
            uevent += f"DRIVER={p.driver}\n"
        uevent += (f"PCI_CLASS={p.class_code:X}\nPCI_ID={p.vendor:04X}:{p.device:04X}\n"
                   f"PCI_SUBSYS_ID={p.subsystem_vendor:04X}:{p.subsystem_device:04X}\n"
                   f"PCI_SLOT_NAME={p.bdf}\n")
        self._file(f"{d}/uevent", uevent, 0o644)
        if p.is_bridge:
            bus_dir = f"{d}/pci_bus/{p.bdf.split(':')[0]}:{(p.secondary or 0):02x}"
            self._link(f"{bus_dir}/device", d)
            self._link(f"{bus_dir}/subsystem", "/sys/class/pci_bus")
            self._file(f"{d}/secondary_bus_number", f"{p.secondary or 0}\n")
            self._file(f"{d}/subordinate_bus_number",
                       f"{p.subordinate if p.subordinate is not None else p.secondary or 0}\n")
        cfg = p.config_override if p.config_override is not None else config_space(
            vendor=p.vendor, device=p.device, class_code=p.class_code, revision=p.revision,
            header_type=1 if p.is_bridge else 0, multifunction=p.multifunction,
            subsystem_vendor=p.subsystem_vendor, subsystem_device=p.subsystem_device,
            pcie_type=p.pcie_type, acs_cap=p.acs_cap, acs_ctrl=p.acs_ctrl,
            secondary=p.secondary, subordinate=p.subordinate,
            primary=int(p.bdf.split(":")[1], 16))
        limit = p.config_limit if p.config_limit is not None else (None if self.privileged else 64)
        self._file(f"{d}/config", cfg if limit is None else cfg[:limit], 0o644)
        self._link(f"{d}/subsystem", "/sys/bus/pci")
        self._link(f"/sys/bus/pci/devices/{p.bdf}", d)
        if p.driver:
            drv = f"/sys/bus/pci/drivers/{p.driver}"
            self._mkdir(drv)
            self._link(f"{d}/driver", drv)
            self._link(f"{drv}/{p.bdf}", d)
        if p.physfn:
            pf_dir = self.sysfs_dir(p.physfn)
            self._link(f"{d}/physfn", pf_dir)
            vfs = sorted(b for b, q in self.pcis.items() if q.physfn == p.physfn)
            self._link(f"{pf_dir}/virtfn{vfs.index(p.bdf)}", d)
            self._file(f"{pf_dir}/sriov_numvfs", f"{len(vfs)}\n", 0o644)
            self._file(f"{pf_dir}/sriov_totalvfs", f"{max(8, len(vfs))}\n")
        if p.p2pmem is not None:
            pm = p.p2pmem
            self._file(f"{d}/p2pmem/size", f"{int(pm.get('size', 0))}\n")
            self._file(f"{d}/p2pmem/available", f"{int(pm.get('available', 0))}\n")
            self._file(f"{d}/p2pmem/published", f"{1 if pm.get('published', True) else 0}\n")
            if pm.get("allocate", True):
                self._file(f"{d}/p2pmem/allocate", b"", 0o660)
        for name, text in p.extra_files.items():
            self._file(f"{d}/{name}", text)

    def _top(self, bdf: str) -> str:
        cur = bdf
        while self.pcis[cur].parent is not None:
            cur = self.pcis[cur].parent
        return cur

    def _ctrl_dir(self, c: _Nvme) -> str:
        if c.bdf is None:
            return f"/sys/devices/virtual/nvme-fabrics/ctl/{c.ctrl}"
        return f"{self.sysfs_dir(c.bdf)}/nvme/{c.ctrl}"

    def _write_nvme(self, c: _Nvme) -> None:
        d = self._ctrl_dir(c)
        self._link(f"/sys/class/nvme/{c.ctrl}", d)
        if c.bdf:
            self._link(f"{d}/device", self.sysfs_dir(c.bdf))
        self._link(f"{d}/subsystem", "/sys/class/nvme")
        self._file(f"{d}/serial", f"{c.serial:<20}\n")
        self._file(f"{d}/model", f"{c.model:<40}\n")
        self._file(f"{d}/firmware_rev", f"{c.firmware:<8}\n")
        self._file(f"{d}/transport", f"{c.transport}\n")
        self._file(f"{d}/address", f"{c.address}\n")
        self._file(f"{d}/subsysnqn", f"{c.subsysnqn}\n")
        self._file(f"{d}/state", f"{c.state}\n")
        self._file(f"{d}/cntlid", f"{c.cntlid}\n")
        self._file(f"{d}/numa_node", "-1\n")
        inst = c.ctrl[len("nvme"):]
        self._file(f"{d}/dev", f"244:{inst}\n")
        self._file(f"{d}/uevent", f"MAJOR=244\nMINOR={inst}\nDEVNAME={c.ctrl}\nNVME_TRTYPE={c.transport}\n", 0o644)
        if c.cmbsz:
            # visible only when CMBSZ != 0 (nvme_pci_attrs_are_visible)
            self._file(f"{d}/cmb", f"cmbloc : 0x{c.cmbloc:08x}\ncmbsz  : 0x{c.cmbsz:08x}\n")
            self._file(f"{d}/cmbloc", f"{c.cmbloc}\n")
            self._file(f"{d}/cmbsz", f"{c.cmbsz}\n")
        sd = f"/sys/devices/virtual/nvme-subsystem/{c.subsys}"
        self._link(f"/sys/class/nvme-subsystem/{c.subsys}", sd)
        self._link(f"{sd}/{c.ctrl}", d)
        self._link(f"{sd}/subsystem", "/sys/class/nvme-subsystem")
        self._file(f"{sd}/serial", f"{c.serial:<20}\n")
        self._file(f"{sd}/model", f"{c.model:<40}\n")
        self._file(f"{sd}/subsysnqn", f"{c.subsysnqn}\n")
        self._file(f"{sd}/subsystype", "nvm\n")
        self._file(f"{sd}/iopolicy", "numa\n", 0o644)
        in_head = {h["subsys"] for h in self.heads}
        for ns in c.namespaces:
            if c.subsys in in_head:
                continue  # namespaces of a multipath subsystem are written by _write_head
            self._write_disk(f"{d}/{ns['name']}", ns["name"], ns["nsid"], ns["size_bytes"],
                             ns["wwid"], parent=d, hidden=False)

    def _write_disk(self, dd: str, name: str, nsid: int, size_bytes: int, wwid: str, *,
                    parent: str, hidden: bool) -> None:
        self._file(f"{dd}/nsid", f"{nsid}\n")
        self._file(f"{dd}/size", f"{size_bytes // 512}\n")
        self._file(f"{dd}/wwid", f"{wwid}\n")
        self._file(f"{dd}/hidden", f"{1 if hidden else 0}\n")
        self._file(f"{dd}/ro", "0\n")
        self._file(f"{dd}/uevent", ("DEVTYPE=disk\n" if hidden else
                                    f"MAJOR=259\nMINOR=0\nDEVNAME={name}\nDEVTYPE=disk\n"), 0o644)
        self._link(f"{dd}/device", parent)
        self._link(f"{dd}/subsystem", "/sys/class/block")
        self._link(f"/sys/class/block/{name}", dd)
        self._link(f"/sys/block/{name}", dd)
        self._block_use(dd, name, 259)
        for part in self.parts.get(name, []):
            pd = f"{dd}/{part}"
            self._file(f"{pd}/partition", f"{part[len(name):].lstrip('p')}\n")
            self._link(f"{pd}/subsystem", "/sys/class/block")
            self._link(f"/sys/class/block/{part}", pd)
            self._block_use(pd, part, 259)

    def _block_use(self, d: str, name: str, major: int) -> None:
        """``dev`` and ``holders/`` of a block device; a holder is written as a virtual block
        device (``/sys/devices/virtual/block/dm-0``, ``dm/name``)."""
        self.devs[name] = f"{major}:{len(self.devs)}"
        self._file(f"{d}/dev", f"{self.devs[name]}\n")
        self._mkdir(f"{d}/holders")
        for h in self.holders.get(name, []):
            hd = f"/sys/devices/virtual/block/{h}"
            if h not in self.devs:
                self._link(f"/sys/class/block/{h}", hd)
                self._block_use(hd, h, 253 if h.startswith("dm-") else 9)
                for alias in self.holders.get(f"dm-name:{h}", [])[:1]:
                    self._file(f"{hd}/dm/name", f"{alias}\n")
            self._link(f"{d}/holders/{h}", hd)

    def _write_head(self, h: dict) -> None:
        sd = f"/sys/devices/virtual/nvme-subsystem/{h['subsys']}"
        hd = f"{sd}/{h['name']}"
        first = self.nvmes[h["ctrls"][0]]
        wwid = f"nvme.1b36-{first.serial.encode().hex()}-51454d55204e564d65204374726c-{h['nsid']:08x}"
        self._write_disk(hd, h["name"], h["nsid"], h["size_bytes"], wwid, parent=sd, hidden=False)
        for c in h["ctrls"]:
            ctrl = self.nvmes[c]
            cinst = c[len("nvme"):]
            pname = f"nvme{h['s_inst']}c{cinst}n{h['nsid']}"
            pd = f"{self._ctrl_dir(ctrl)}/{pname}"
            self._write_disk(pd, pname, h["nsid"], h["size_bytes"], wwid,
                             parent=self._ctrl_dir(ctrl), hidden=True)
            self._link(f"{hd}/multipath/{pname}", pd)

    def _net_dir(self, n: _Net) -> str:
        if n.bdf:
            return f"{self.sysfs_dir(n.bdf)}/net/{n.name}"
        return f"/sys/devices/virtual/net/{n.name}"

    def _write_net(self, n: _Net) -> None:
        d = self._net_dir(n)
        self._link(f"/sys/class/net/{n.name}", d)
        self._link(f"{d}/subsystem", "/sys/class/net")
        if n.bdf:
            self._link(f"{d}/device", self.sysfs_dir(n.bdf))
        self._file(f"{d}/address", f"{n.mac}\n")
        self._file(f"{d}/mtu", f"{n.mtu}\n", 0o644)
        self._file(f"{d}/operstate", f"{n.operstate}\n")
        self._file(f"{d}/ifindex", f"{n.ifindex}\n")
        self._file(f"{d}/type", "1\n")
        self._file(f"{d}/uevent", f"INTERFACE={n.name}\nIFINDEX={n.ifindex}\n", 0o644)

    def _write_rdma(self, r: _Rdma) -> None:
        if r.bdf:
            d = f"{self.sysfs_dir(r.bdf)}/infiniband/{r.name}"
            self._link(f"{d}/device", self.sysfs_dir(r.bdf))
        else:
            d = f"/sys/devices/virtual/infiniband/{r.name}"
        self._link(f"/sys/class/infiniband/{r.name}", d)
        self._link(f"{d}/subsystem", "/sys/class/infiniband")
        self._file(f"{d}/node_type", f"{r.node_type}\n")
        self._file(f"{d}/node_desc", f"{r.node_desc}\n", 0o644)
        self._file(f"{d}/node_guid", "682c:d4ff:fe10:427c\n")
        self._file(f"{d}/fw_ver", "16.35.2000\n" if r.bdf else "\n")
        self._file(f"{d}/sys_image_guid", "682c:d4ff:fe10:427c\n")
        self._file(f"{d}/uevent", f"NAME={r.name}\n", 0o644)
        if r.kind in ("rxe", "rxe_p2p"):
            self._file(f"{d}/parent", f"{r.netdev}\n")
        for port in range(1, r.ports + 1):
            pd = f"{d}/ports/{port}"
            self._file(f"{pd}/state", f"{r.state}\n")
            self._file(f"{pd}/phys_state", f"{r.phys_state}\n")
            self._file(f"{pd}/link_layer", f"{r.link_layer}\n")
            self._file(f"{pd}/rate", f"{r.rate}\n")
            self._file(f"{pd}/lid", "0x0\n")
            if r.link_layer == "Ethernet" and r.netdev:
                # slots 0/1 hold the netdev's link-local GIDs (v1, v2); the rest are empty.
                # Empty slots return EINVAL on a real kernel; here they are absent files
                # except one written unreadable-looking ("") to keep readers tolerant.
                self._file(f"{pd}/gid_attrs/ndevs/0", f"{r.netdev}\n")
                self._file(f"{pd}/gid_attrs/ndevs/1", f"{r.netdev}\n")
                self._file(f"{pd}/gid_attrs/types/0", "IB/RoCE v1\n")
                self._file(f"{pd}/gid_attrs/types/1", "RoCE v2\n")
                for slot in range(2, r.gid_slots):
                    self._file(f"{pd}/gid_attrs/ndevs/{slot}", "")
            else:
                self._mkdir(f"{pd}/gid_attrs/ndevs")

    def _write_system(self) -> None:
        s = self.sys
        rel = s["kernel_release"]
        self._file("/proc/sys/kernel/osrelease", f"{rel}\n")
        self._file("/proc/cmdline", f"{s['cmdline']}\n")
        cpu = []
        for i in range(s["cpus"]):
            cpu.append(f"processor\t: {i}\nvendor_id\t: {s['cpu_vendor']}\n"
                       f"cpu family\t: {s['cpu_family']}\nmodel\t\t: {s['cpu_model']}\n"
                       f"model name\t: {s['cpu_model_name']}\nstepping\t: 1\n"
                       f"physical id\t: 0\nsiblings\t: {s['cpus']}\ncore id\t\t: {i}\n"
                       f"flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic\n")
        self._file("/proc/cpuinfo", "\n".join(cpu) + "\n")
        mods = "".join(f"{m} 16384 0 - Live 0xffffffffc0000000\n" for m in s["modules_loaded"])
        self._file("/proc/modules", mods)
        mounts = ["sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0",
                  "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0",
                  "/dev/vda1 / ext4 rw,relatime 0 0"]
        if s["configfs"]:
            mounts.append("configfs /sys/kernel/config configfs rw,relatime 0 0")
            self._mkdir("/sys/kernel/config")
            if s["nvmet_configfs"]:
                for sub in ("hosts", "ports", "subsystems"):
                    self._mkdir(f"/sys/kernel/config/nvmet/{sub}")
                self._file("/sys/kernel/config/nvmet/discovery_nqn",
                           "nqn.2014-08.org.nvmexpress.discovery\n", 0o644)
        for dev, source, where in self.mounted:
            mounts.append(f"{source} {where.replace(' ', chr(92) + '040')} ext4 rw,relatime 0 0")
        self._file("/proc/mounts", "\n".join(mounts) + "\n")
        info = ["22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
                "23 1 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw",
                "24 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw"]
        for i, (dev, source, where) in enumerate(self.mounted):
            info.append(f"{30 + i} 24 {self.devs.get(dev, '0:99')} / "
                        f"{where.replace(' ', chr(92) + '040')} rw,relatime shared:{30 + i} - "
                        f"ext4 {source} rw")
        self._file("/proc/self/mountinfo", "\n".join(info) + "\n")
        swaps = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"]
        swaps += [f"{s}\t\tpartition\t1048572\t\t0\t\t-2" for s in self.swaps]
        self._file("/proc/swaps", "\n".join(swaps) + "\n")
        iommu = s["iommu"]
        if iommu:
            name = iommu if isinstance(iommu, str) else "dmar0"
            self._mkdir(f"/sys/devices/virtual/iommu/{name}")
            self._link(f"/sys/class/iommu/{name}", f"/sys/devices/virtual/iommu/{name}")
            groups = s["iommu_groups"] if s["iommu_groups"] is not None else len(self.pcis)
        else:
            groups = s["iommu_groups"] or 0
        for g in range(groups):
            self._mkdir(f"/sys/kernel/iommu_groups/{g}/devices")
        nodes = s["numa_nodes"]
        self._file("/sys/devices/system/node/online", _cpulist(nodes) + "\n")
        for n in nodes:
            self._mkdir(f"/sys/devices/system/node/node{n}")
        self._file("/sys/module/nvme_core/parameters/multipath", f"{s['nvme_core_multipath']}\n")
        if s["use_cmb_sqes"] is not None:
            self._file("/sys/module/nvme/parameters/use_cmb_sqes", f"{s['use_cmb_sqes']}\n")
        cfg = s["kernel_config"]
        text = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 Kernel Configuration\n#\n"
        for k, v in cfg.items():
            text += f"# {k} is not set\n" if v in (None, "n") else f"{k}={v}\n"
        where = s["kernel_config_at"]
        if where == "boot":
            self._file(f"/boot/config-{rel}", text)
        elif where == "lib":
            self._file(f"/lib/modules/{rel}/config", text)
        elif where == "proc":
            self._file("/proc/config.gz", gzip.compress(text.encode()))
        elif where is not None:
            raise ValueError(f"kernel_config_at={where!r}")
        if s["modules_available"] is not None:
            dep = "".join(f"{p}:\n" for p in s["modules_available"].values())
            self._file(f"/lib/modules/{rel}/modules.dep", dep)
            builtin = "".join(f"kernel/{m}.ko\n" for m in s["modules_builtin"])
            self._file(f"/lib/modules/{rel}/modules.builtin", builtin)

    def _write_meta(self) -> None:
        """The file a snapshot carries for what sysfs cannot hold (netlink addresses)."""
        meta = {"format": 1, "kind": "fixture",
                "netlink": {n.name: {"addresses": list(n.addresses), "operstate": n.operstate,
                                     "mtu": n.mtu, "mac": n.mac}
                            for n in self.nets.values()}}
        if self.loopback and "lo" not in self.nets:
            meta["netlink"]["lo"] = {"addresses": ["127.0.0.1/8", "::1/128"]}
        (self.root / "nvmet-p2p-snapshot.json").write_text(json.dumps(meta, indent=2) + "\n")


def _kernfs_relative(link: str, target: str) -> str:
    """The relative target sysfs writes for a link (``kernfs_get_target_path``).

    It climbs from the link's directory to the first ancestor that contains the target's
    *parent*, then descends: a link to an ancestor therefore reads ``../../../0000:07:00.0``
    rather than ``../..`` (as the 7.3 kernel shows for ``nvme/nvme4/device``).
    """
    base = os.path.dirname(link)
    tparent = os.path.dirname(target)
    ups = 0
    while not (tparent == base or tparent.startswith(base.rstrip("/") + "/")):
        base = os.path.dirname(base)
        ups += 1
    return "../" * ups + target[len(base.rstrip("/")) + 1:]


def _host_bridge_of(bdf: str) -> str:
    dom, bus, _ = bdf.split(":")
    return f"pci{dom}:{bus}"


def _cmb_size(cmbsz: int) -> int:
    return (1 << (12 + 4 * ((cmbsz >> 8) & 0xF))) * ((cmbsz >> 12) & 0xFFFFF)


def _cpulist(nums: tuple[int, ...]) -> str:
    nums = sorted(nums)
    if not nums:
        return ""
    if nums == list(range(nums[0], nums[-1] + 1)) and len(nums) > 1:
        return f"{nums[0]}-{nums[-1]}"
    return ",".join(str(n) for n in nums)


# ------------------------------------------------------------------------------------------
# Ready-made machines. Each returns a written Machine; roles are listed in the docstring.
# ------------------------------------------------------------------------------------------

#: Slots of the virtio-9p devices: the project's lab (tools/lab) puts four at 00:18.0-00:1b.0;
#: the boot captured in tests/data/lab_q35_7.3.json had two at 00:01.0/00:02.0.
LAB_VIRTIO_SLOTS = (0x18, 0x19, 0x1A, 0x1B)
REFERENCE_VIRTIO_SLOTS = (0x01, 0x02)


def _q35_base(m: Machine, virtio_slots=LAB_VIRTIO_SLOTS) -> None:
    """q35 chipset devices as the lab shows them (host bridge at 00.0, 9p virtio, ICH9)."""
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x29C0, role="host",
                         subsystem_vendor=0x1AF4, subsystem_device=0x1100)
    for slot in virtio_slots:
        m.pci(f"0000:00:{slot:02x}.0", vendor=0x1AF4, device=0x1009, class_code=0x000200,
              driver="virtio-pci", subsystem_vendor=0x1AF4, subsystem_device=0x0009)
    m.pci("0000:00:1f.0", vendor=0x8086, device=0x2918, class_code=0x060100, revision=2,
          multifunction=True, subsystem_vendor=0x1AF4, subsystem_device=0x1100)
    m.pci("0000:00:1f.2", vendor=0x8086, device=0x2922, class_code=0x010601, revision=2,
          multifunction=True, subsystem_vendor=0x1AF4, subsystem_device=0x1100)
    m.pci("0000:00:1f.3", vendor=0x8086, device=0x2930, class_code=0x0C0500, revision=2,
          multifunction=True, subsystem_vendor=0x1AF4, subsystem_device=0x1100)


def q35_lab(root, *, rxe: bool = False, privileged: bool = True, cmb_mb: int = 64,
            rxe_name: str = "rxe0", virtio_slots=LAB_VIRTIO_SLOTS, nvmet_loaded: bool = False,
            write: bool = True) -> Machine:
    """The lab's default topology, as the real 7.3 guest shows it::

        00:00.0 8086:29c0 (q35 host bridge: NOT whitelisted)
        00:04.0 root port 1b36:000c (ACS cap 0x5f, ctrl 0)      role "rp1"
          01:00.0 switch upstream 104c:8232                      role "usp"
            02:00.0 / 02:01.0 / 02:02.0 downstream 104c:8233     roles "dsp1".."dsp3"
              03:00.0 / 04:00.0 / 05:00.0 NVMe 1b36:0010, 64 MiB CMB, p2pmem published
                                                                 roles "cmbA" "cmbB" "cmbC"
                                                                 ctrl nvme0..2, disks nvme0n1..
        00:05.0 root port                                        role "rp2"
          06:00.0 NVMe without CMB, nvme3 / nvme3n1              role "plain"

    plus the virtio-9p devices at ``virtio_slots`` and the ICH9 functions at 00:1f.*.

    CPU as QEMU TCG ``-cpu max`` reports it: AuthenticAMD family 15 (so *not* the AMD
    Zen rule). No IOMMU, use_cmb_sqes=Y, kernel 7.3.4 with CONFIG_PCI_P2PDMA=y, configfs
    mounted; nvmet is available but not loaded (``nvmet_loaded=True`` loads nvmet and
    nvmet-rdma and creates /sys/kernel/config/nvmet), as in a fresh ``tools/lab/run`` guest.
    ``rxe=True`` adds ``rxe_name`` on ``dummy0`` with 10.77.0.1/24 and fd00::1/64 (default name
    ``rxe0``, as tools/lab calls it; the capture in ``tests/data/lab_q35_7.3.json`` was taken
    with ``rxe_dummy``). ``virtio_slots=REFERENCE_VIRTIO_SLOTS`` reproduces the slots of the
    boot that capture comes from.
    """
    m = Machine(root, privileged=privileged)
    loaded = ["9p", "9pnet", "9pnet_virtio", "configfs", "netfs", "nvme", "nvme_auth",
              "nvme_core", "nvme_keyring", "overlay"]
    if nvmet_loaded:
        loaded += ["nvmet", "nvmet_rdma", "rdma_cm", "iw_cm", "ib_cm", "ib_core"]
    m.system(cpu_vendor="AuthenticAMD", cpu_family=15, cpu_model=107,
             cpu_model_name="QEMU TCG CPU version 2.5+",
             cmdline="console=ttyS0,115200 loglevel=4 panic=-1 oops=panic printk.devkmsg=on",
             modules_loaded=sorted(loaded), nvmet_configfs=nvmet_loaded)
    _q35_base(m, virtio_slots)
    m.root_port("0000:00:04.0", secondary=1, subordinate=5, role="rp1")
    m.switch("0000:01:00.0", parent="0000:00:04.0",
             downstream=["0000:02:00.0", "0000:02:01.0", "0000:02:02.0"], secondary=2, role="usp")
    for i, name in enumerate(("cmbA", "cmbB", "cmbC")):
        m.roles[f"dsp{i + 1}"] = f"0000:02:0{i}.0"
        m.nvme(f"0000:0{3 + i}:00.0", parent=f"0000:02:0{i}.0", ctrl=f"nvme{i}", serial=name,
               cmb_mb=cmb_mb, role=name)
    m.root_port("0000:00:05.0", secondary=6, role="rp2")
    m.nvme("0000:06:00.0", parent="0000:00:05.0", ctrl="nvme3", serial="plain", role="plain")
    if rxe:
        m.rxe(rxe_name, netdev="dummy0", addresses=["10.77.0.1/24", "fd00::1/64"])
        m.update_system(modules_loaded=sorted(set(m.sys["modules_loaded"]) | {
            "rdma_rxe", "dummy", "ib_core", "ip6_udp_tunnel", "udp_tunnel"}))
    return m.write() if write else m


def skylake_sp(root, *, write: bool = True) -> Machine:
    """A Skylake-SP server: whitelisted root ports (8086:2030-2033), several root buses.

    ::

        pci0000:00  00:00.0 8086:2020 (DMI, whitelisted)                 role "host0"
        pci0000:17  17:00.0 root port 8086:2030                          role "rp_a"
                      18:00.0 NVMe 64 MiB CMB (nvme0)                    role "cmb"
        pci0000:3a  3a:00.0 root port 8086:2030                          role "rp_b"
                      3b:00.0 ConnectX-5 mlx5_0 / ens2f0np0 192.168.10.1 role "nic"
                    3a:02.0 root port 8086:2032                          role "rp_c"
                      3c:00.0 NVMe without CMB (nvme1)                   role "ssd"

    Intel family 6 model 85, no IOMMU. Every pair goes through the root complex
    (THRU_HOST_BRIDGE): the first device of each root bus is a whitelisted 8086:20xx.
    """
    m = Machine(root)
    m.system(cpu_vendor="GenuineIntel", cpu_family=6, cpu_model=85,
             cpu_model_name="Intel(R) Xeon(R) Gold 6140 CPU @ 2.30GHz", numa_nodes=(0,))
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x2020, role="host0", pcie=True)
    m.root_port("0000:17:00.0", secondary=0x18, vendor=0x8086, device=0x2030, role="rp_a",
                numa_node=0)
    m.nvme("0000:18:00.0", parent="0000:17:00.0", ctrl="nvme0", serial="SKXCMB", cmb_mb=64,
           vendor=0x8086, device=0x0A54, role="cmb", numa_node=0)
    m.root_port("0000:3a:00.0", secondary=0x3B, vendor=0x8086, device=0x2030, role="rp_b",
                numa_node=0)
    m.nic("0000:3b:00.0", parent="0000:3a:00.0", ibdev="mlx5_0", netdev="ens2f0np0",
          addresses=["192.168.10.1/24"], role="nic", numa_node=0)
    m.root_port("0000:3a:02.0", secondary=0x3C, vendor=0x8086, device=0x2032, role="rp_c",
                numa_node=0)
    m.nvme("0000:3c:00.0", parent="0000:3a:02.0", ctrl="nvme1", serial="SKXPLAIN",
           vendor=0x8086, device=0x0A54, role="ssd", numa_node=0)
    return m.write() if write else m


def two_host_bridges(root, *, vendor: int = 0x8086, device: int = 0x2F00,
                     write: bool = True) -> Machine:
    """Two sockets, one host bridge each (default Haswell-EP 8086:2f00, REQ_SAME_HOST_BRIDGE).

    ::

        pci0000:00  00:00.0 <vendor:device>                      role "host0"
                    00:02.0 root port 8086:2f04                  role "rp0a"
                      02:00.0 NVMe 64 MiB CMB (nvme0), node 0    role "cmb0"
                    00:03.0 root port 8086:2f08                  role "rp0b"
                      03:00.0 ConnectX-5 mlx5_0 (node 0)         role "nic0"
        pci0000:80  80:00.0 <vendor:device>                      role "host1"
                    80:02.0 root port 8086:2f04                  role "rp1a"
                      81:00.0 NVMe 64 MiB CMB (nvme1), node 1    role "cmb1"
                    80:03.0 root port                            role "rp1b"
                      82:00.0 ConnectX-5 mlx5_1 (node 1)         role "nic1"

    With 2f00 (REQ_SAME_HOST_BRIDGE): same socket -> THRU_HOST_BRIDGE, across sockets ->
    NOT_SUPPORTED. Pass another ``device`` (e.g. 0x2020) to model a whitelist entry
    without the flag.
    """
    m = Machine(root)
    m.system(cpu_vendor="GenuineIntel", cpu_family=6, cpu_model=63,
             cpu_model_name="Intel(R) Xeon(R) CPU E5-2690 v3 @ 2.60GHz", numa_nodes=(0, 1), cpus=4)
    for sock, (bus, node) in enumerate(((0x00, 0), (0x80, 1))):
        b = f"0000:{bus:02x}"
        m.host_bridge_device(f"{b}:00.0", vendor, device, role=f"host{sock}", numa_node=node)
        m.root_port(f"{b}:02.0", secondary=bus + 2 if bus == 0 else bus + 1, vendor=0x8086,
                    device=0x2F04, role=f"rp{sock}a", numa_node=node)
        m.root_port(f"{b}:03.0", secondary=bus + 3 if bus == 0 else bus + 2, vendor=0x8086,
                    device=0x2F08, role=f"rp{sock}b", numa_node=node)
        ssd_bus = bus + 2 if bus == 0 else bus + 1
        nic_bus = bus + 3 if bus == 0 else bus + 2
        m.nvme(f"0000:{ssd_bus:02x}:00.0", parent=f"{b}:02.0", ctrl=f"nvme{sock}",
               serial=f"HSW{sock}", cmb_mb=64, role=f"cmb{sock}", numa_node=node)
        m.nic(f"0000:{nic_bus:02x}:00.0", parent=f"{b}:03.0", ibdev=f"mlx5_{sock}",
              netdev=f"ens{sock + 1}f0np0", addresses=[f"192.168.{10 + sock}.1/24"],
              role=f"nic{sock}", numa_node=node)
    return m.write() if write else m


def amd_zen(root, *, cpu_family: int = 0x17, write: bool = True) -> Machine:
    """An AMD EPYC (Zen, family 0x17 by default) with two root complexes.

    ::

        pci0000:00  00:00.0 1022:1450 (Zen root complex)         role "host0"
                    00:01.1 root port 1022:1453                  role "rp0"
                      01:00.0 NVMe 64 MiB CMB (nvme0)            role "cmb"
        pci0000:40  40:00.0 1022:1450                            role "host1"
                    40:03.1 root port 1022:1453                  role "rp1"
                      41:00.0 ConnectX-5 mlx5_0 / ens3f0np0      role "nic"

    With family >= 0x17 the kernel (5.9+) allows every host-bridge path; pass
    ``cpu_family=0x15`` for a pre-Zen AMD to see the difference.
    """
    m = Machine(root)
    m.system(cpu_vendor="AuthenticAMD", cpu_family=cpu_family, cpu_model=1,
             cpu_model_name="AMD EPYC 7601 32-Core Processor", numa_nodes=(0, 1), cpus=4,
             iommu="ivhd0", cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro iommu=pt")
    m.host_bridge_device("0000:00:00.0", 0x1022, 0x1450, role="host0", numa_node=0)
    m.root_port("0000:00:01.1", secondary=1, vendor=0x1022, device=0x1453, role="rp0",
                acs_ctrl=ACS_IOMMU_DEFAULT, numa_node=0)
    m.nvme("0000:01:00.0", parent="0000:00:01.1", ctrl="nvme0", serial="ZENCMB", cmb_mb=64,
           role="cmb", numa_node=0)
    m.host_bridge_device("0000:40:00.0", 0x1022, 0x1450, role="host1", numa_node=1)
    m.root_port("0000:40:03.1", secondary=0x41, vendor=0x1022, device=0x1453, role="rp1",
                acs_ctrl=ACS_IOMMU_DEFAULT, numa_node=1)
    m.nic("0000:41:00.0", parent="0000:40:03.1", ibdev="mlx5_0", netdev="ens3f0np0",
          addresses=["192.168.20.1/24"], role="nic", numa_node=1)
    return m.write() if write else m


def nested_switches(root, *, write: bool = True) -> Machine:
    """Two levels of switches below one root port (q35 host bridge, Broadcom PEX IDs).

    ::

        00:00.0 8086:29c0                                        role "host"
        00:01.0 root port                                        role "rp"
          01:00.0 outer switch USP 10b5:8747                     role "outer_usp"
            02:00.0 DSP ------------------------------------     role "outer_dsp1"
              03:00.0 inner switch USP 10b5:8747                 role "inner_usp"
                04:00.0 DSP -> 05:00.0 NVMe CMB (nvme0)          roles "inner_dsp1", "cmbA"
                04:01.0 DSP -> 06:00.0 NVMe CMB (nvme1)          roles "inner_dsp2", "cmbB"
            02:01.0 DSP -> 07:00.0 ConnectX-5 mlx5_0             roles "outer_dsp2", "nic"

    The switch downstream ports have ACS capabilities with Control 0.
    Distances: cmbA<->cmbB 4, cmbA<->nic 6 (one extra switch level on one side).
    """
    m = Machine(root)
    m.system()
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x29C0, role="host")
    m.root_port("0000:00:01.0", secondary=1, subordinate=7, role="rp")
    m.switch("0000:01:00.0", parent="0000:00:01.0", downstream=["0000:02:00.0", "0000:02:01.0"],
             vendor=0x10B5, usp_device=0x8747, dsp_device=0x8747, dsp_acs_ctrl=0,
             role="outer_usp")
    m.roles.update(outer_dsp1="0000:02:00.0", outer_dsp2="0000:02:01.0")
    m.switch("0000:03:00.0", parent="0000:02:00.0", downstream=["0000:04:00.0", "0000:04:01.0"],
             vendor=0x10B5, usp_device=0x8747, dsp_device=0x8747, dsp_acs_ctrl=0,
             role="inner_usp")
    m.roles.update(inner_dsp1="0000:04:00.0", inner_dsp2="0000:04:01.0")
    m.pcis["0000:04:00.0"].secondary = 5
    m.pcis["0000:04:01.0"].secondary = 6
    m.pcis["0000:02:01.0"].secondary = 7
    m.nvme("0000:05:00.0", parent="0000:04:00.0", ctrl="nvme0", serial="nestA", cmb_mb=64,
           role="cmbA")
    m.nvme("0000:06:00.0", parent="0000:04:01.0", ctrl="nvme1", serial="nestB", cmb_mb=64,
           role="cmbB")
    m.nic("0000:07:00.0", parent="0000:02:01.0", ibdev="mlx5_0", netdev="ens1f0np0",
          addresses=["192.168.30.1/24"], role="nic")
    return m.write() if write else m


def acs_switch(root, *, dsp_acs_ctrl: int = ACS_IOMMU_DEFAULT, iommu: bool = True,
               write: bool = True) -> Machine:
    """The lab topology plus a NIC, on a switch whose downstream ports have ACS set.

    Like ``q35_lab`` but the switch is a Broadcom PEX 8747 (10b5:8747) with ACS on its
    downstream ports, Control ``dsp_acs_ctrl`` (default SV|RR|CR|UF = 0x1d, what Linux sets
    with an IOMMU), an Intel IOMMU is active (``intel_iommu=on`` on the command line) and a
    ConnectX-5 sits on the third downstream port::

        00:04.0 root port (ACS ctrl 0x1d too)      role "rp1"
          01:00.0 USP                              role "usp"
            02:00.0 DSP -> 03:00.0 NVMe CMB        roles "dsp1", "cmbA"
            02:01.0 DSP -> 04:00.0 NVMe CMB        roles "dsp2", "cmbB"
            02:02.0 DSP -> 05:00.0 mlx5_0          roles "dsp3", "nic"
        00:05.0 root port -> 06:00.0 NVMe          roles "rp2", "plain"

    cmbA<->nic: ACS redirect on 02:00.0 and 02:02.0, so the kernel prints
    ``pci=disable_acs_redir=0000:02:00.0;0000:02:02.0``.
    """
    m = Machine(root)
    m.system(iommu=iommu, cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro intel_iommu=on")
    _q35_base(m)
    rp_acs = ACS_IOMMU_DEFAULT if iommu else 0
    m.root_port("0000:00:04.0", secondary=1, subordinate=5, role="rp1", acs_ctrl=rp_acs)
    m.switch("0000:01:00.0", parent="0000:00:04.0",
             downstream=["0000:02:00.0", "0000:02:01.0", "0000:02:02.0"], vendor=0x10B5,
             usp_device=0x8747, dsp_device=0x8747, dsp_acs_ctrl=dsp_acs_ctrl, role="usp")
    m.roles.update(dsp1="0000:02:00.0", dsp2="0000:02:01.0", dsp3="0000:02:02.0")
    m.nvme("0000:03:00.0", parent="0000:02:00.0", ctrl="nvme0", serial="cmbA", cmb_mb=64,
           role="cmbA")
    m.nvme("0000:04:00.0", parent="0000:02:01.0", ctrl="nvme1", serial="cmbB", cmb_mb=64,
           role="cmbB")
    m.nic("0000:05:00.0", parent="0000:02:02.0", ibdev="mlx5_0", netdev="ens1f0np0",
          addresses=["192.168.40.1/24"], role="nic")
    m.root_port("0000:00:05.0", secondary=6, role="rp2", acs_ctrl=rp_acs)
    m.nvme("0000:06:00.0", parent="0000:00:05.0", ctrl="nvme2", serial="plain", role="plain")
    return m.write() if write else m


def vf_pf(root, *, vfs: int = 2, write: bool = True) -> Machine:
    """A ConnectX-5 PF with SR-IOV VFs next to a CMB NVMe on one switch.

    ::

        00:04.0 root port -> 01:00.0 USP                          roles "rp1", "usp"
          02:00.0 DSP -> 03:00.0 NVMe CMB (nvme0)                 roles "dsp1", "cmb"
          02:01.0 DSP -> 04:00.0 PF 15b3:1017 mlx5_0 / ens1f0np0  roles "dsp2", "pf"
                         04:00.2, 04:00.3 ... VFs 15b3:1018       roles "vf0", "vf1", ...
                         (mlx5_1.. / ens1f0v0..; ``physfn`` -> PF, PF has ``virtfnN``)

    The kernel substitutes the PF for a VF before walking up, so a VF's distances equal its
    PF's.
    """
    m = Machine(root)
    m.system()
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x29C0, role="host")
    m.root_port("0000:00:04.0", secondary=1, subordinate=4, role="rp1")
    m.switch("0000:01:00.0", parent="0000:00:04.0", downstream=["0000:02:00.0", "0000:02:01.0"],
             role="usp")
    m.roles.update(dsp1="0000:02:00.0", dsp2="0000:02:01.0")
    m.nvme("0000:03:00.0", parent="0000:02:00.0", ctrl="nvme0", serial="vfcmb", cmb_mb=64,
           role="cmb")
    m.nic("0000:04:00.0", parent="0000:02:01.0", ibdev="mlx5_0", netdev="ens1f0np0",
          addresses=["192.168.50.1/24"], role="pf", multifunction=True)
    for i in range(vfs):
        bdf = f"0000:04:00.{2 + i}"
        m.nic(bdf, parent="0000:02:01.0", ibdev=f"mlx5_{i + 1}", netdev=f"ens1f0v{i}",
              device=0x1018, physfn="0000:04:00.0", role=f"vf{i}",
              addresses=[f"192.168.51.{i + 1}/24"])
    return m.write() if write else m


def multifunction_acs(root, *, endpoint_acs_ctrl: int = ACS_SV | ACS_RR | ACS_CR,
                      write: bool = True) -> Machine:
    """A dual-port NIC (multifunction, both functions with ACS) and a CMB NVMe on one switch.

    ::

        00:04.0 root port -> 01:00.0 USP                       roles "rp1", "usp"
          02:00.0 DSP -> 03:00.0 NVMe CMB (nvme0)              roles "dsp1", "cmb"
          02:01.0 DSP -> 04:00.0 mlx5_0 port 0 (ACS)           roles "dsp2", "nic0"
                         04:00.1 mlx5_1 port 1 (ACS)           role  "nic1"

    Switch ports have ACS with Control 0; the NIC functions have Control
    ``endpoint_acs_ctrl`` (default SV|RR|CR, what Linux sets with an IOMMU). The kernel checks
    ACS on endpoints too, so cmb<->nic0 is redirected at 0000:04:00.0 only.
    """
    m = Machine(root)
    m.system(iommu=True, cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro intel_iommu=on iommu=pt")
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x29C0, role="host")
    m.root_port("0000:00:04.0", secondary=1, subordinate=4, role="rp1")
    m.switch("0000:01:00.0", parent="0000:00:04.0", downstream=["0000:02:00.0", "0000:02:01.0"],
             vendor=0x10B5, usp_device=0x8747, dsp_device=0x8747, dsp_acs_ctrl=0, role="usp")
    m.roles.update(dsp1="0000:02:00.0", dsp2="0000:02:01.0")
    m.nvme("0000:03:00.0", parent="0000:02:00.0", ctrl="nvme0", serial="mfcmb", cmb_mb=64,
           role="cmb")
    m.nic("0000:04:00.0", parent="0000:02:01.0", ibdev="mlx5_0", netdev="ens1f0np0",
          multifunction=True, acs_ctrl=endpoint_acs_ctrl, role="nic0",
          addresses=["192.168.60.1/24"])
    m.nic("0000:04:00.1", parent="0000:02:01.0", ibdev="mlx5_1", netdev="ens1f1np1",
          multifunction=True, acs_ctrl=endpoint_acs_ctrl, role="nic1",
          addresses=["192.168.61.1/24"])
    return m.write() if write else m


def soft_roce(root, *, siw: bool = False, write: bool = True, **lab_kw) -> Machine:
    """The lab topology with soft RDMA only: ``rxe0`` on ``dummy0`` (10.77.0.1/24), exactly
    what ``tools/lab/run --topology default`` boots (``lab_kw`` go to :func:`q35_lab`).

    ``siw=True`` adds ``siw0`` on a second dummy (``dummy1``, 10.78.0.1/24). Neither has a
    PCI parent: nvmet-rdma never uses p2pmem with them.
    """
    m = q35_lab(root, rxe=True, write=False, **lab_kw)
    if siw:
        m.siw("siw0", netdev="dummy1", addresses=["10.78.0.1/24"])
    return m.write() if write else m


def _rxe_p2p_lab(root, switch_nvme: list[tuple[str, int | None]], rp2_nvme: tuple[str, int | None],
                 nvmet: bool = False) -> Machine:
    """The layout of the lab topologies with the lab's p2p NIC: switch sw1 on rp1 with three
    NVMe (``switch_nvme``: serial, CMB MiB) and the e1000e nicnear (rxp0, 10.79.0.1) on its
    fourth port, one NVMe on rp2, the virtio-net nicfar (rxp1, 10.80.0.1) on rp3."""
    m = Machine(root)
    mods = ["9p", "9pnet", "9pnet_virtio", "configfs", "nvme", "nvme_core", "overlay", "e1000e",
            "virtio_net", "rdma_rxe_p2p", "ib_core", "ip6_udp_tunnel", "udp_tunnel"]
    m.system(cpu_vendor="AuthenticAMD", cpu_family=15, cpu_model=107,
             cpu_model_name="QEMU TCG CPU version 2.5+",
             cmdline="console=ttyS0,115200 loglevel=4 panic=-1 oops=panic printk.devkmsg=on",
             modules_loaded=sorted(mods + (["nvmet", "nvmet_rdma"] if nvmet else [])),
             nvmet_configfs=nvmet)
    _q35_base(m)
    m.root_port("0000:00:04.0", secondary=1, subordinate=6, role="rp1")
    dsps = [f"0000:02:0{i}.0" for i in range(4)]
    m.switch("0000:01:00.0", parent="0000:00:04.0", downstream=dsps, secondary=2, role="usp")
    for i, (serial, cmb) in enumerate(switch_nvme):
        m.roles[f"dsp{i + 1}"] = dsps[i]
        m.nvme(f"0000:0{3 + i}:00.0", parent=dsps[i], ctrl=f"nvme{i}", serial=serial,
               cmb_mb=cmb or None, role=serial)
    m.roles["dsp4"] = dsps[3]
    m.rxe_p2p("rxp0", bdf="0000:06:00.0", parent=dsps[3], netdev="nicnear",
              addresses=["10.79.0.1/24"], role="nicnear")
    m.root_port("0000:00:05.0", secondary=7, role="rp2")
    serial, cmb = rp2_nvme
    m.nvme("0000:07:00.0", parent="0000:00:05.0", ctrl="nvme3", serial=serial, cmb_mb=cmb,
           role=serial)
    m.root_port("0000:00:06.0", secondary=8, role="rp3")
    m.rxe_p2p("rxp1", bdf="0000:08:00.0", parent="0000:00:06.0", netdev="nicfar",
              addresses=["10.80.0.1/24"], model="virtio-net-pci", role="nicfar")
    return m


def rdma_p2p_lab(root, *, write: bool = True) -> Machine:
    """``tools/lab/run --topology rdma-p2p`` as the real 7.3 guest shows it::

        00:04.0 root port                                        role "rp1"
          01:00.0 switch upstream                                role "usp"
            02:00.0 .. 02:03.0 downstream                        roles "dsp1".."dsp4"
              03:00.0 NVMe cmbA, 32 MiB CMB                      role "cmbA"
              04:00.0 NVMe cmbSmall, 2 MiB CMB                   role "cmbSmall"
              05:00.0 NVMe plain                                 role "plain"
              06:00.0 e1000e nicnear 10.79.0.1/24, rxe_p2p rxp0  role "nicnear"
        00:05.0 root port                                        role "rp2"
          07:00.0 NVMe cmbFar, 32 MiB CMB                        role "cmbFar"
        00:06.0 root port                                        role "rp3"
          08:00.0 virtio-net nicfar 10.80.0.1/24, rxe_p2p rxp1   role "nicfar"
    """
    m = _rxe_p2p_lab(root, [("cmbA", 32), ("cmbSmall", 2), ("plain", None)], ("cmbFar", 32))
    return m.write() if write else m


def hotplug_p2p_lab(root, *, write: bool = True) -> Machine:
    """``tools/lab/run --topology hotplug-p2p`` as the real 7.3 guest shows it (the capture in
    ``tests/fixtures/lab/hotplug-p2p1``), with nvmet loaded::

        00:04.0 root port                                        role "rp1"
          01:00.0 switch upstream                                role "usp"
            02:00.0 .. 02:03.0 downstream (pciehp slots)         roles "dsp1".."dsp4"
              03:00.0 NVMe cmbA, 32 MiB CMB (nvme0)              role "cmbA"
              04:00.0 NVMe cmbB, 32 MiB CMB (nvme1)              role "cmbB"
              05:00.0 NVMe plainS (nvme2)                        role "plainS"
              06:00.0 e1000e nicnear 10.79.0.1/24, rxe_p2p rxp0  role "nicnear"
        00:05.0 root port                                        role "rp2"
          07:00.0 NVMe plain (nvme3)                             role "plain"
        00:06.0 root port                                        role "rp3"
          08:00.0 virtio-net nicfar 10.80.0.1/24, rxe_p2p rxp1   role "nicfar"
    """
    m = _rxe_p2p_lab(root, [("cmbA", 32), ("cmbB", 32), ("plainS", None)], ("plain", None), nvmet=True)
    return m.write() if write else m


def small_target(root, *, write: bool = True) -> Machine:
    """The machine the guides in docs/guides/ run their examples on: a small Skylake-SP
    target, what a first p2p export is made on::

        00:00.0 8086:2020 host bridge (whitelisted)
        17:00.0 root port                                            role "rp1"
          18:00.0 PEX 8747 switch upstream (no ACS: no IOMMU)        role "usp"
            19:00.0 -> 1a:00.0 NVMe S5XYNA0R123456, 64 MiB CMB       role "cmbA"
            19:01.0 -> 1b:00.0 NVMe S5XYNA0R123457, 64 MiB CMB       role "cmbB"
            19:02.0 -> 1c:00.0 ConnectX-5 mlx5_0, ens1f0np0 192.168.40.1/24   role "nic"
        3a:00.0 root port -> 3b:00.0 NVMe S5XYNA0R123458, no CMB      role "plain"

    Intel family 6 model 85 on one NUMA node, no IOMMU, kernel 7.3.4 with p2pdma, nvmet and
    nvmet-rdma loaded, an empty nvmet configfs tree.
    """
    m = Machine(root)
    m.system(cpu_vendor="GenuineIntel", cpu_family=6, cpu_model=85,
             cpu_model_name="Intel(R) Xeon(R) Gold 6140 CPU @ 2.30GHz", numa_nodes=(0,),
             modules_loaded=["configfs", "ib_core", "mlx5_core", "mlx5_ib", "nvme", "nvme_core",
                             "nvmet", "nvmet_rdma", "rdma_cm"])
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x2020, role="host0", pcie=True)
    m.root_port("0000:17:00.0", secondary=0x18, subordinate=0x1C, vendor=0x8086, device=0x2030,
                role="rp1", numa_node=0)
    dsps = ["0000:19:00.0", "0000:19:01.0", "0000:19:02.0"]
    m.switch("0000:18:00.0", parent="0000:17:00.0", downstream=dsps, vendor=0x10B5,
             usp_device=0x8747, dsp_device=0x8747, dsp_acs_ctrl=0, role="usp")
    for i, (bdf, serial) in enumerate((("0000:1a:00.0", "S5XYNA0R123456"),
                                       ("0000:1b:00.0", "S5XYNA0R123457"))):
        m.nvme(bdf, parent=dsps[i], ctrl=f"nvme{i}", serial=serial, cmb_mb=64,
               role="cmbA" if i == 0 else "cmbB", numa_node=0)
    m.nic("0000:1c:00.0", parent=dsps[2], ibdev="mlx5_0", netdev="ens1f0np0",
          addresses=["192.168.40.1/24"], role="nic", numa_node=0)
    m.root_port("0000:3a:00.0", secondary=0x3B, vendor=0x8086, device=0x2030, role="rp2",
                numa_node=0)
    m.nvme("0000:3b:00.0", parent="0000:3a:00.0", ctrl="nvme2", serial="S5XYNA0R123458",
           role="plain", numa_node=0)
    return m.write() if write else m


def multipath(root, *, write: bool = True) -> Machine:
    """The lab topology plus a dual-controller subsystem with a native-multipath namespace.

    As the 7.3 kernel showed it with QEMU ``nvme-subsys`` (two controllers, one shared
    namespace): controllers nvme4 (07:00.0, role "mpA") and nvme5 (08:00.0, role "mpB")
    on root ports 00:06.0/00:07.0, subsystem ``nvme-subsys4``, head disk ``nvme4n1``
    under ``/sys/devices/virtual/nvme-subsystem/nvme-subsys4`` (no PCI parent) and hidden
    paths ``nvme4c4n1``/``nvme4c5n1``. ``m.head`` holds the head disk name.
    """
    m = q35_lab(root, write=False)
    m.root_port("0000:00:06.0", secondary=7, role="rp3")
    m.root_port("0000:00:07.0", secondary=8, role="rp4")
    nqn = "nqn.2019-08.org.qemu:nqn.2026-11.io.lab:mp"
    m.nvme("0000:07:00.0", parent="0000:00:06.0", ctrl="nvme4", serial="mp1", subsysnqn=nqn,
           subsys="nvme-subsys4", role="mpA", namespaces=[])
    m.nvme("0000:08:00.0", parent="0000:00:07.0", ctrl="nvme5", serial="mp1", subsysnqn=nqn,
           subsys="nvme-subsys4", role="mpB", namespaces=[])
    m.nvmes["nvme5"].cntlid = 1
    m.head = m.multipath_head(subsys="nvme-subsys4", ctrls=["nvme4", "nvme5"], nsid=1)
    return m.write() if write else m


def big_machine(root, *, sockets: int = 2, switches: int = 8, nvme_per_switch: int = 8,
                nics: int = 8, write: bool = True) -> Machine:
    """A large synthetic server for benchmarks: ``sockets`` Skylake-SP host bridges, each
    with ``switches/sockets`` root ports leading to a PEX switch with ``nvme_per_switch``
    CMB NVMe; ``nics`` ConnectX-5 spread over the switches (one more downstream port each).

    Roles: ``nvme<i>`` (controller ``nvme<i>``), ``nic<j>`` (``mlx5_<j>``), ``sw<k>`` (USP).
    Bus numbers are allocated sequentially from each socket's root bus.
    """
    m = Machine(root)
    m.system(numa_nodes=tuple(range(sockets)), cpus=2 * sockets)
    per_socket = max(1, switches // sockets)
    ctrl = 0
    nic = 0
    sw = 0
    for s in range(sockets):
        root_bus = s * 0x80
        dom = "0000"
        m.host_bridge_device(f"{dom}:{root_bus:02x}:00.0", 0x8086, 0x2020, role=f"host{s}",
                             numa_node=s)
        bus = root_bus + 1
        for k in range(per_socket):
            if sw >= switches:
                break
            rp = f"{dom}:{root_bus:02x}:{k + 1:02x}.0"
            m.root_port(rp, secondary=bus, vendor=0x8086, device=0x2030 + (k % 4), numa_node=s)
            usp = f"{dom}:{bus:02x}:00.0"
            dsp_bus = bus + 1
            has_nic = nic < nics and sw < nics
            n_dsp = nvme_per_switch + (1 if has_nic else 0)
            dsps = [f"{dom}:{dsp_bus:02x}:{i:02x}.0" for i in range(n_dsp)]
            m.switch(usp, parent=rp, downstream=dsps, vendor=0x10B5, usp_device=0x8796,
                     dsp_device=0x8796, dsp_acs_ctrl=0, role=f"sw{sw}")
            leaf = dsp_bus + 1
            for i in range(nvme_per_switch):
                m.nvme(f"{dom}:{leaf + i:02x}:00.0", parent=dsps[i], ctrl=f"nvme{ctrl}",
                       serial=f"BIG{ctrl:03d}", cmb_mb=64, role=f"nvme{ctrl}", numa_node=s)
                m.pcis[dsps[i]].secondary = leaf + i
                ctrl += 1
            if has_nic:
                nb = leaf + nvme_per_switch
                m.nic(f"{dom}:{nb:02x}:00.0", parent=dsps[-1], ibdev=f"mlx5_{nic}",
                      netdev=f"ens{nic}f0np0", addresses=[f"192.168.{100 + nic}.1/24"],
                      role=f"nic{nic}", numa_node=s)
                m.pcis[dsps[-1]].secondary = nb
                nic += 1
            bus = leaf + n_dsp + 1
            sw += 1
    return m.write() if write else m
