"""The one in-memory machine builder: synthetic :class:`nvmet_p2p.pci.model.Inventory` objects.

The readers build an Inventory from sysfs; tests of the pure logic (distance, placement,
profiles, topology) and the benchmarks in ``tools/bench`` build one directly with
:class:`Machine`, which lays the PCI tree out the way the kernel would see it (bus numbers,
upstream chains, host bridges, NUMA nodes, p2pmem pools of CMB NVMe, RDMA NICs and their
netdevs). Two ways to place devices, one machine model:

* by parent, numbers allocated as the kernel's depth-first scan would (``build()``)::

    m = Machine()                                  # q35-like Intel VM, kernel 7.3
    hb = m.host_bridge()                           # pci0000:00 with 8086:29c0 at 00.0
    rp = m.root_port(hb)
    dsps = m.switch(rp, ports=3)
    a = m.nvme(dsps[0], "cmbA", cmb=64 << 20)
    m.rdma_nic(dsps[1], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    inv = m.build()

* at given BDFs (the ``*_at`` methods, for tests that name exact kernel paths)::

    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x17)
    m.host_device("0000:00:00.0", 0x8086, 0x29c0)
    rp = m.root_port_at("0000:00:02.0", acs=0)
    m.nvme_at("0000:01:00.0", rp, "nvme0")
    inv = m.inv

The lab's machine is described once, by :func:`lab` (checked against the capture of the real
lab guest in ``tests/data/lab_default_inventory.json`` by ``tests/test_support.py``). The other
reference machines used by tests and the placement benchmark are the ``*_machine()`` functions
at the bottom.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p.pci.model import (
    PCIE_ENDPOINT,
    PCIE_ROOT_PORT,
    PCIE_SWITCH_DOWNSTREAM,
    PCIE_SWITCH_UPSTREAM,
    BlockDevice,
    CmbInfo,
    Inventory,
    NetDevice,
    NvmeController,
    NvmeNamespace,
    P2pMem,
    PciFunction,
    RdmaDevice,
    RdmaPort,
    SystemInfo,
)

MiB = 1 << 20
GiB = 1 << 30

#: What the lab boots (trixie-backports; CONFIG_PCI_P2PDMA=y).
LAB_KERNEL = "7.3.4+deb13-amd64"
#: ACS Control RR|CR: what Linux sets on ports when an IOMMU asked (plus SV/UF, irrelevant).
RR_CR = 0x000C
#: ACS source validation + upstream forwarding: no redirect.
ACS_SV_UF = 0x0011
#: ACS Capability word of QEMU's pcie-root-port (read from the lab): SV TB RR CR UF DT.
QEMU_ACS_CAP = 0x005F
#: QEMU ``cmb_size_mb=64``: SQS LISTS RDS WDS, SZU=1 MiB (read from the lab); CMBLOC BIR 2.
CMB_BITS = 0x1D
LAB_CMBLOC = 0x62

CLASS_HOST_BRIDGE = 0x060000
CLASS_PCI_BRIDGE = 0x060400
CLASS_NVME = 0x010802
CLASS_ETHERNET = 0x020000


@dataclass
class _Bus:
    """A PCI bus being populated: its number, the bridge above it, its host bridge."""

    number: int
    domain: int
    host_bridge: str
    upstream: list[str]           # chain of bridges from the root bus down to the bridge above
    numa: int | None
    next_dev: int = 0


@dataclass
class HostBridge:
    name: str                     # "pci0000:00"
    bus: _Bus


@dataclass
class Machine:
    """A machine being described. ``readable=False`` models a non-root read: config space
    stops at 64 bytes, so ACS words and port types are unknown."""

    cpu_vendor: str = "GenuineIntel"
    cpu_family: int | None = 6
    kernel: str = LAB_KERNEL
    iommu: bool = False
    cmdline: str = ""
    readable: bool = True
    inv: Inventory = field(default_factory=Inventory)
    _buses: dict[str, _Bus] = field(default_factory=dict)       # bridge BDF -> secondary bus
    _next_bus: dict[int, int] = field(default_factory=dict)     # domain -> next free bus number
    _nvme_count: int = 0
    _explicit: bool = False                                     # placed by the *_at methods

    def __post_init__(self):
        self.inv.system = SystemInfo(kernel_release=self.kernel, cpu_vendor=self.cpu_vendor,
                                     cpu_family=self.cpu_family, iommu=self.iommu,
                                     cmdline=self.cmdline, is_root=self.readable,
                                     configfs_mounted=True, nvmet_configfs=True,
                                     nvme_use_cmb_sqes=True)
        self.inv.source = "synthetic"

    # -- PCI tree ------------------------------------------------------------------------
    def host_bridge(self, domain: int = 0, bus: int | None = None, *, vendor: int = 0x8086,
                    device: int = 0x29c0, numa: int | None = None,
                    first_function: bool = True) -> HostBridge:
        """A host bridge ``pciDDDD:BB``. With ``first_function`` a host-bridge function
        (``vendor:device``) sits at ``BB:00.0``: that is what the kernel's whitelist looks at.
        Without it, the first root port created becomes the identity (Skylake-SP style)."""
        if self._explicit:
            raise ValueError("this machine places devices at given BDFs (*_at methods); "
                             "allocated placement cannot be mixed in")
        if bus is None:
            bus = self._alloc_bus(domain)
        else:
            self._next_bus[domain] = max(self._next_bus.get(domain, 0), bus + 1)
        name = f"pci{domain:04x}:{bus:02x}"
        b = _Bus(number=bus, domain=domain, host_bridge=name, upstream=[], numa=numa)
        hb = HostBridge(name=name, bus=b)
        if first_function:
            self._add(b, vendor=vendor, device=device, class_code=CLASS_HOST_BRIDGE, pcie_type=None)
        if numa is not None and numa not in self.inv.system.numa_nodes:
            self.inv.system.numa_nodes.append(numa)
        return hb

    def root_port(self, hb: HostBridge, *, vendor: int = 0x1b36, device: int = 0x000c,
                  acs_ctrl: int | None = None, slot: int | None = None) -> str:
        """A root port on the host bridge's root bus (at device ``slot`` if given)."""
        if slot is not None:
            hb.bus.next_dev = max(hb.bus.next_dev, slot)
        return self._bridge(hb.bus, vendor, device, PCIE_ROOT_PORT, acs_ctrl)

    def switch(self, parent: str, ports: int = 3, *, vendor: int = 0x104c, usp: int = 0x8232,
               dsp: int = 0x8233, acs_ctrl: int | None = None) -> list[str]:
        """A PCIe switch below bridge ``parent``: returns its downstream ports' BDFs."""
        up = self._bridge(self._buses[parent], vendor, usp, PCIE_SWITCH_UPSTREAM, None)
        return [self._bridge(self._buses[up], vendor, dsp, PCIE_SWITCH_DOWNSTREAM, acs_ctrl)
                for _ in range(ports)]

    def nvme(self, parent: str, serial: str, *, cmb: int | None = None,
             available: int | None = None, published: bool = True, namespaces: int = 1,
             ns_size: int = 256 * MiB, model: str = "QEMU NVMe Ctrl", numa: int | None = None,
             vendor: int = 0x1b36, device: int = 0x0010, multipath: bool = False) -> str:
        """An NVMe controller below ``parent`` with ``namespaces`` block devices. ``cmb`` (bytes)
        registers and publishes a p2pmem pool of that size (``available`` defaults to size minus
        the 128 KiB the lab's nvme driver keeps for SQs)."""
        bus = self._buses[parent]
        p2p = None
        cmb_info = None
        if cmb:
            avail = cmb - 128 * 1024 if available is None else available
            p2p = P2pMem(size=cmb, available=avail, published=published, allocate=True)
            szu, unit = (2, MiB) if cmb % MiB == 0 else (0, 4096)
            cmbsz = ((cmb // unit) << 12) | (szu << 8) | 0x1 | 0x8 | 0x10
            cmb_info = CmbInfo.decode(cmbsz, 2)
        bdf = self._add(bus, vendor=vendor, device=device, class_code=CLASS_NVME,
                        pcie_type=PCIE_ENDPOINT, numa=numa, p2pmem=p2p, driver="nvme")
        k = self._nvme_count
        self._nvme_count += 1
        ctrl = NvmeController(name=f"nvme{k}", transport="pcie", pci=bdf, serial=serial,
                              model=model, firmware="1.0", subsysnqn=f"nqn.2019-08.org.qemu:{serial}",
                              address=bdf, cmb=cmb_info)
        for j in range(1, namespaces + 1):
            name = f"nvme{k}n{j}"
            h = hashlib.sha256(f"{serial}/{j}".encode()).hexdigest()
            nguid = h[:32]
            ns = NvmeNamespace(name=name, nsid=j, controller=ctrl.name,
                               pci=None if multipath else bdf, multipath_head=multipath,
                               size_bytes=ns_size, wwid=f"eui.{nguid}", nguid=nguid,
                               eui=h[32:48], uuid=f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}",
                               paths=[f"nvme{k}c{k}n{j}"] if multipath else [])
            self.inv.namespaces[name] = ns
            ctrl.namespaces.append(name)
        self.inv.nvme[ctrl.name] = ctrl
        return bdf

    def rdma_nic(self, parent: str, name: str, *, netdev: str, ip: str | None = None,
                 numa: int | None = None, vendor: int = 0x15b3, device: int = 0x1017,
                 driver: str = "mlx5_core", acs_ctrl: int | None = None) -> str:
        """A PCI RDMA NIC (RoCE) below ``parent`` with one port and netdev ``netdev``."""
        bdf = self._add(self._buses[parent], vendor=vendor, device=device,
                        class_code=CLASS_ETHERNET, pcie_type=PCIE_ENDPOINT, numa=numa,
                        driver=driver, acs_ctrl=acs_ctrl)
        self.inv.rdma[name] = RdmaDevice(name=name, pci=bdf, driver=driver, soft=False,
                                         node_type="1: CA",
                                         ports=[RdmaPort(port=1, state="4: ACTIVE",
                                                         phys_state="5: LinkUp",
                                                         link_layer="Ethernet",
                                                         netdevs=[netdev])],
                                         netdevs=[netdev])
        self.netdev(netdev, ip, pci=bdf)
        return bdf

    def soft_rdma(self, name: str = "rxe0", *, netdev: str = "dummy0", ip: str | None = None,
                  driver: str = "rdma_rxe") -> None:
        """A soft RDMA device (rxe/siw) over ``netdev``: no PCI parent, no p2p client."""
        self.inv.rdma[name] = RdmaDevice(name=name, pci=None, driver=driver, soft=True,
                                         node_type="1: CA",
                                         ports=[RdmaPort(port=1, state="4: ACTIVE",
                                                         phys_state="5: LinkUp",
                                                         link_layer="Ethernet",
                                                         netdevs=[netdev])],
                                         netdevs=[netdev])
        if netdev not in self.inv.net:
            self.netdev(netdev, ip)

    def netdev(self, name: str, ip: str | list[str] | None = None, *, pci: str | None = None,
               operstate: str = "up", mtu: int = 1500) -> None:
        addrs = [ip] if isinstance(ip, str) else list(ip or [])
        self.inv.net[name] = NetDevice(name=name, pci=pci, operstate=operstate, mtu=mtu,
                                       mac="52:54:00:00:00:%02x" % (len(self.inv.net) + 1),
                                       addresses=addrs)

    def build(self) -> Inventory:
        """The inventory, with bus numbers assigned depth-first as the kernel's scan does
        (every bridge's subtree is numbered before its next sibling; devices placed at given
        BDFs keep them)."""
        self.inv.system.numa_nodes.sort()
        if not self._explicit:
            self._renumber()
        if self.inv.blocks is None:      # every namespace a block device nothing uses
            self.inv.blocks = {n: BlockDevice(name=n, dev=f"259:{i}")
                               for i, n in enumerate(sorted(self.inv.namespaces))}
        return self.inv

    # -- placement at given BDFs ---------------------------------------------------------
    def _place(self, bdf: str, parent: str | None, host_bridge: str | None = None, **kw) -> str:
        """One PCI function at ``bdf``: below bridge ``parent`` (the upstream chain follows
        from it, as the reader derives it from the sysfs realpath) or, with ``parent=None``,
        on the root bus of ``host_bridge`` (default: the one its bus number names)."""
        if self._buses:
            raise ValueError("this machine allocates its bus numbers; *_at placement cannot "
                             "be mixed in")
        self._explicit = True
        if parent is not None:
            p = self.inv.pci[parent]
            host_bridge, upstream = p.host_bridge, p.upstream + [parent]
        else:
            host_bridge, upstream = host_bridge or "pci" + bdf.rsplit(":", 1)[0], []
        kw.setdefault("config_readable", self.readable)
        if not kw["config_readable"]:
            kw.update(acs_ctrl=None, acs_cap=None, pcie_type=None)
        self.inv.pci[bdf] = PciFunction(bdf=bdf, host_bridge=host_bridge, upstream=upstream, **kw)
        return bdf

    def host_device(self, bdf: str, vendor: int, device: int, host_bridge: str | None = None,
                    class_code: int = CLASS_HOST_BRIDGE, **kw: Any) -> str:
        """A device on a root bus (e.g. the 00.0 host bridge that identifies the root complex)."""
        return self._place(bdf, None, host_bridge, vendor=vendor, device=device,
                           class_code=class_code, **kw)

    def root_port_at(self, bdf: str, vendor: int = 0x1b36, device: int = 0x000c,
                     acs: int | None = None, host_bridge: str | None = None) -> str:
        return self._place(bdf, None, host_bridge, vendor=vendor, device=device,
                           class_code=CLASS_PCI_BRIDGE, pcie_type=PCIE_ROOT_PORT, acs_ctrl=acs,
                           acs_cap=QEMU_ACS_CAP if acs is not None else None, driver="pcieport")

    def switch_at(self, usp: str, parent: str, dsps: list[str], acs: int | None = None,
                  dsp_acs: dict[str, int] | None = None) -> list[str]:
        """A switch: upstream port ``usp`` below ``parent`` and downstream ports ``dsps``
        (``acs``, or ``dsp_acs[bdf]``, gives a downstream port an ACS capability)."""
        self._place(usp, parent, vendor=0x104c, device=0x8232, class_code=CLASS_PCI_BRIDGE,
                    pcie_type=PCIE_SWITCH_UPSTREAM, driver="pcieport")
        out = []
        for d in dsps:
            a = (dsp_acs or {}).get(d, acs)
            out.append(self._place(d, usp, vendor=0x104c, device=0x8233,
                                   class_code=CLASS_PCI_BRIDGE, pcie_type=PCIE_SWITCH_DOWNSTREAM,
                                   acs_ctrl=a, acs_cap=QEMU_ACS_CAP if a is not None else None,
                                   driver="pcieport"))
        return out

    def endpoint(self, bdf: str, parent: str | None, vendor: int = 0x1b36, device: int = 0x0010,
                 class_code: int = CLASS_NVME, driver: str | None = "nvme",
                 acs: int | None = None, physfn: str | None = None, numa: int | None = None,
                 p2pmem: tuple | None = None, host_bridge: str | None = None,
                 config_readable: bool | None = None) -> str:
        """A PCI function that is not a bridge; ``p2pmem=(size, available, published[,
        allocate])``."""
        kw = {} if config_readable is None else {"config_readable": config_readable}
        return self._place(bdf, parent, host_bridge, vendor=vendor, device=device,
                           class_code=class_code, pcie_type=PCIE_ENDPOINT, acs_ctrl=acs,
                           acs_cap=QEMU_ACS_CAP if acs is not None else None, driver=driver,
                           physfn=physfn, numa_node=numa,
                           p2pmem=P2pMem(*p2pmem) if p2pmem else None, **kw)

    def nvme_at(self, bdf: str, parent: str | None, ctrl: str, cmb_mib: int | None = 64,
                published: bool = True, serial: str | None = None,
                host_bridge: str | None = None, numa: int | None = None, ns: int = 1,
                ids: bool = False) -> str:
        """An NVMe controller ``ctrl`` at ``bdf`` with ``ns`` namespaces and, with ``cmb_mib``,
        a CMB registered as p2pmem the way QEMU's ``cmb_size_mb`` makes it (the nvme driver
        keeps 128 KiB of it for submission queues). A QEMU namespace has no EUI-64, NGUID or
        UUID unless given (``ids=True``: derived from the serial); its ``wwid`` is the one
        the kernel's ``wwid_show()`` prints for what it has."""
        p2p = (cmb_mib * MiB, cmb_mib * MiB - 128 * 1024, published, True) if cmb_mib else None
        self.endpoint(bdf, parent, p2pmem=p2p, host_bridge=host_bridge, numa=numa)
        cmb = CmbInfo.decode((cmb_mib << 12) | (2 << 8) | CMB_BITS, LAB_CMBLOC) if cmb_mib else None
        names = [f"{ctrl}n{i}" for i in range(1, ns + 1)]
        self.inv.nvme[ctrl] = NvmeController(name=ctrl, transport="pcie", pci=bdf,
                                             serial=serial or ctrl, model="QEMU NVMe Ctrl",
                                             address=bdf, cmb=cmb, namespaces=names)
        for i, n in enumerate(names, 1):
            self.inv.namespaces[n] = NvmeNamespace(name=n, nsid=i, controller=ctrl, pci=bdf,
                                                   size_bytes=256 * MiB,
                                                   **_ns_ids(0x1b36, serial or ctrl,
                                                             "QEMU NVMe Ctrl", i, ids))
        return bdf

    def multipath_head(self, name: str, ctrl: str) -> None:
        """A native-multipath head disk over controller ``ctrl``: no PCI parent."""
        self.inv.namespaces[name] = NvmeNamespace(name=name, nsid=1, controller=ctrl, pci=None,
                                                  multipath_head=True,
                                                  paths=[f"{ctrl[:-1]}c{ctrl[-1]}n1"])

    def rdma_nic_at(self, bdf: str, parent: str | None, ibdev: str, netdev: str,
                    ip: str | None = None, acs: int | None = None, physfn: str | None = None,
                    host_bridge: str | None = None, numa: int | None = None) -> str:
        """A ConnectX-style RDMA NIC (or, with ``physfn``, a VF of one) at ``bdf``."""
        self.endpoint(bdf, parent, vendor=0x15b3, device=0x1017, class_code=CLASS_ETHERNET,
                      driver="mlx5_core", acs=acs, physfn=physfn, host_bridge=host_bridge,
                      numa=numa)
        self.inv.rdma[ibdev] = RdmaDevice(name=ibdev, pci=bdf, driver="mlx5_core",
                                          node_type="1: CA", netdevs=[netdev],
                                          ports=[RdmaPort(1, "4: ACTIVE", "5: LinkUp", "Ethernet",
                                                          netdevs=[netdev])])
        self.inv.net[netdev] = NetDevice(name=netdev, pci=bdf, operstate="up",
                                         addresses=[ip + "/24"] if ip else [])
        return bdf

    def _renumber(self) -> None:
        by_bus: dict[tuple[int, int], list[str]] = {}
        for bdf in self.inv.pci:
            dom, bus, _ = bdf.split(":")
            by_bus.setdefault((int(dom, 16), int(bus, 16)), []).append(bdf)
        roots = sorted({(int(f.bdf[:4], 16), int(f.bdf[5:7], 16)) for f in self.inv.pci.values()
                        if not f.upstream})
        mapping: dict[tuple[int, int], int] = {}
        for dom, root in roots:
            mapping[(dom, root)] = root
            nxt = root + 1

            def walk(bus: int) -> None:
                nonlocal nxt
                for bdf in sorted(by_bus.get((dom, bus), []), key=lambda b: b[8:]):
                    if bdf in self._buses:
                        sec = self._buses[bdf].number
                        mapping[(dom, sec)] = nxt
                        nxt += 1
                        walk(sec)
            walk(root)
        if len(set(mapping.values())) != len(mapping):
            raise ValueError("bus numbers collide: leave more room between host bridges")

        def new(bdf: str | None) -> str | None:
            if bdf is None:
                return None
            dom, bus, rest = bdf.split(":")
            return f"{dom}:{mapping[(int(dom, 16), int(bus, 16))]:02x}:{rest}"
        pci = {}
        for f in self.inv.pci.values():
            f.bdf = new(f.bdf)
            f.upstream = [new(b) for b in f.upstream]
            f.physfn = new(f.physfn)
            pci[f.bdf] = f
        self.inv.pci = pci
        for c in self.inv.nvme.values():
            c.pci = new(c.pci)
            c.address = c.pci or c.address
        for ns in self.inv.namespaces.values():
            ns.pci = new(ns.pci)
        for r in self.inv.rdma.values():
            r.pci = new(r.pci)
        for n in self.inv.net.values():
            n.pci = new(n.pci)
        self._buses = {new(k): v for k, v in self._buses.items()}
        for k, v in self._buses.items():
            v.number = mapping[(v.domain, v.number)]

    # -- internals -----------------------------------------------------------------------
    def _alloc_bus(self, domain: int) -> int:
        n = self._next_bus.get(domain, 0)
        self._next_bus[domain] = n + 1
        return n

    def _add(self, bus: _Bus, *, vendor: int, device: int, class_code: int,
             pcie_type: int | None, numa: int | None = None, p2pmem: P2pMem | None = None,
             driver: str | None = None, acs_ctrl: int | None = None) -> str:
        if bus.next_dev > 31:
            raise ValueError(f"bus {bus.number:02x} is full")
        bdf = f"{bus.domain:04x}:{bus.number:02x}:{bus.next_dev:02x}.0"
        bus.next_dev += 1
        self.inv.pci[bdf] = PciFunction(
            bdf=bdf, host_bridge=bus.host_bridge, upstream=list(bus.upstream), vendor=vendor,
            device=device, class_code=class_code, numa_node=bus.numa if numa is None else numa,
            driver=driver, pcie_type=pcie_type, acs_cap=None if acs_ctrl is None else 0x5f,
            acs_ctrl=acs_ctrl, config_readable=True, p2pmem=p2pmem)
        return bdf

    def _bridge(self, bus: _Bus, vendor: int, device: int, kind: int, acs_ctrl: int | None) -> str:
        bdf = self._add(bus, vendor=vendor, device=device, class_code=CLASS_PCI_BRIDGE,
                        pcie_type=kind, acs_ctrl=acs_ctrl, driver="pcieport")
        self._buses[bdf] = _Bus(number=self._alloc_bus(bus.domain), domain=bus.domain,
                                host_bridge=bus.host_bridge, upstream=bus.upstream + [bdf],
                                numa=bus.numa)
        return bdf


def _ns_ids(vendor: int, serial: str, model: str, nsid: int, ids: bool) -> dict:
    """``wwid`` (and with ``ids`` the EUI-64, NGUID and UUID) of a namespace, as
    ``wwid_show()`` in drivers/nvme/host/core.c forms it: ``uuid.`` > ``eui.<nguid>`` >
    ``eui.<eui64>`` > ``nvme.<vid>-<serial hex>-<model hex>-<nsid>``."""
    if not ids:
        return {"wwid": f"nvme.{vendor:04x}-{serial.encode().hex()}-{model.encode().hex()}-"
                        f"{nsid:08x}"}
    h = hashlib.sha256(f"{serial}/{nsid}".encode()).hexdigest()
    uuid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
    return {"wwid": f"uuid.{uuid}", "nguid": h[:32], "eui": h[32:48], "uuid": uuid}


# -- reference machines ------------------------------------------------------------------------

#: QEMU's q35 functions on the lab's root bus besides the ports: virtio (9p shares, console,
#: rng) and the ICH9 LPC, SATA and SMBus controllers (vendor, device, class, driver).
LAB_ROOT_BUS_DEVICES = {
    "0000:00:18.0": (0x1af4, 0x1009, 0x000200, "virtio-pci"),
    "0000:00:19.0": (0x1af4, 0x1009, 0x000200, "virtio-pci"),
    "0000:00:1a.0": (0x1af4, 0x1009, 0x000200, "virtio-pci"),
    "0000:00:1b.0": (0x1af4, 0x1009, 0x000200, "virtio-pci"),
    "0000:00:1f.0": (0x8086, 0x2918, 0x060100, None),
    "0000:00:1f.2": (0x8086, 0x2922, 0x010601, None),
    "0000:00:1f.3": (0x8086, 0x2930, 0x0c0500, None),
}


def lab(*, kernel: str = LAB_KERNEL, iommu: bool = False, dsp_acs: int | None = None,
        readable: bool = True, cpu_vendor: str = "AuthenticAMD", cpu_family: int | None = 15,
        cmdline: str = "", ns_ids: bool = False) -> Machine:
    """The lab's default topology (``tools/lab/topologies/default.yaml``), the one description
    of it in the tests: QEMU q35 (host bridge 8086:29c0, not whitelisted), an XIO3130 switch
    with three 64 MiB-CMB NVMe (cmbA/B/C at 03/04/05:00.0) behind root port 00:04.0, a plain
    NVMe on root port 00:05.0 (06:00.0), soft-RoCE ``rxe0`` on ``dummy0`` 10.77.0.1; TCG's
    ``-cpu max`` reports AuthenticAMD family 15, so the AMD Zen rule does not apply. The
    root ports have an ACS capability with nothing enabled, the switch ports none.

    Variants: ``dsp_acs`` sets that ACS Control word on both root ports and the three
    downstream ports (what an IOMMU makes Linux do), ``readable=False`` a non-root read,
    ``ns_ids=True`` gives the namespaces EUI-64/NGUID/UUID (QEMU's ``nvme-ns`` properties;
    the lab sets none)."""
    m = Machine(kernel=kernel, iommu=iommu, readable=readable, cpu_vendor=cpu_vendor,
                cpu_family=cpu_family, cmdline=cmdline)
    m.host_device("0000:00:00.0", 0x8086, 0x29c0)
    rp1 = m.root_port_at("0000:00:04.0", acs=0 if dsp_acs is None else dsp_acs)
    rp2 = m.root_port_at("0000:00:05.0", acs=0 if dsp_acs is None else dsp_acs)
    for bdf, (vendor, device, cls, driver) in LAB_ROOT_BUS_DEVICES.items():
        m.host_device(bdf, vendor, device, class_code=cls, driver=driver)
    d1, d2, d3 = m.switch_at("0000:01:00.0", rp1, ["0000:02:00.0", "0000:02:01.0",
                                                   "0000:02:02.0"], acs=dsp_acs)
    m.nvme_at("0000:03:00.0", d1, "nvme0", serial="cmbA", ids=ns_ids)
    m.nvme_at("0000:04:00.0", d2, "nvme1", serial="cmbB", ids=ns_ids)
    m.nvme_at("0000:05:00.0", d3, "nvme2", serial="cmbC", ids=ns_ids)
    m.nvme_at("0000:06:00.0", rp2, "nvme3", cmb_mib=None, serial="plain", ids=ns_ids)
    m.netdev("dummy0", "10.77.0.1/24", operstate="unknown")
    m.soft_rdma("rxe0", netdev="dummy0")
    m.netdev("lo", ["127.0.0.1/8", "::1/128"], operstate="unknown", mtu=65536)
    m.inv.system.numa_nodes = [0]
    return m


def lab_machine(**variant: Any) -> Inventory:
    """:func:`lab` as an Inventory."""
    return lab(**variant).build()


def jbof_machine(cmb: int = 256 * MiB) -> Inventory:
    """A 24-bay JBOF: an Intel host bridge that is *not* on the p2pdma whitelist, two root
    ports each with a 13-port PCIe switch holding a 100G RDMA NIC and 12 NVMe bays. Every third
    drive has a CMB (4 per switch); the others rely on a sibling's. Models name the switch
    (``JBOF-SW0``/``JBOF-SW1``) so a profile can select per switch."""
    m = Machine()
    hb = m.host_bridge(vendor=0x8086, device=0x6f00, numa=0)
    for k in range(2):
        rp = m.root_port(hb, vendor=0x8086, device=0x6f08)
        dsps = m.switch(rp, ports=13, vendor=0x10b5, usp=0x9765, dsp=0x9765)
        m.rdma_nic(dsps[0], f"mlx5_{k}", netdev=f"ens{k + 1}f0", ip=f"10.0.{k}.1/24")
        for i in range(12):
            m.nvme(dsps[i + 1], f"J{k}{i:02d}", model=f"JBOF-SW{k}",
                   cmb=cmb if i % 3 == 0 else None, vendor=0x144d, device=0xa824)
    return m.build()


def jbof_single_switch_machine(cmb: int = 256 * MiB) -> Inventory:
    """A single-switch JBOF: one 27-port switch with a dual-port RDMA NIC (mlx5_0, mlx5_1) and
    24 NVMe bays, every third drive with a CMB (8 of 24)."""
    m = Machine()
    hb = m.host_bridge(vendor=0x8086, device=0x6f00, numa=0)
    dsps = m.switch(m.root_port(hb, vendor=0x8086, device=0x6f08), ports=26, vendor=0x10b5,
                    usp=0x9797, dsp=0x9797)
    for k in range(2):
        m.rdma_nic(dsps[k], f"mlx5_{k}", netdev=f"ens1f{k}", ip=f"10.0.{k}.1/24")
    for i in range(24):
        m.nvme(dsps[i + 2], f"JB{i:02d}", model="JBOF-SSD", cmb=cmb if i % 3 == 0 else None,
               vendor=0x144d, device=0xa824)
    return m.build()


def amd_machine(cmb: int = 128 * MiB) -> Inventory:
    """A dual-socket AMD EPYC server (family 0x19: the kernel allows every host-bridge path),
    four host bridges per socket, NVMe directly on root ports (12 per socket, every third with
    a CMB) and one RDMA NIC per socket."""
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=0x19)
    for socket in range(2):
        for q in range(4):
            hb = m.host_bridge(bus=socket * 0x80 + q * 0x20, vendor=0x1022, device=0x1480,
                               numa=socket)
            if q == 0:
                rp = m.root_port(hb, vendor=0x1022, device=0x1483)
                m.rdma_nic(rp, f"mlx5_{socket}", netdev=f"ens{socket + 1}f0",
                           ip=f"10.{socket}.0.1/24")
                continue
            for i in range(4):
                n = (q - 1) * 4 + i
                rp = m.root_port(hb, vendor=0x1022, device=0x1483)
                m.nvme(rp, f"A{socket}{n:02d}", model=f"EPYC-S{socket}",
                       cmb=cmb if n % 3 == 0 else None, vendor=0x144d, device=0xa824)
    return m.build()


def skylake_machine(cmb: int = 256 * MiB) -> Inventory:
    """A Skylake-SP server: DMI 8086:2020 at 00.0 of the legacy root bus, three PCIe stacks
    whose first device is a whitelisted root port (8086:2030..2033). Stack 0x17: a switch with
    an RDMA NIC and four NVMe (two with CMB). Stack 0x3a: four NVMe on root ports (two with CMB).
    Stack 0x5d: a second RDMA NIC on a root port."""
    m = Machine()
    m.host_bridge(bus=0, vendor=0x8086, device=0x2020, numa=0)
    s17 = m.host_bridge(bus=0x17, first_function=False, numa=0)
    rp = m.root_port(s17, vendor=0x8086, device=0x2030)
    dsps = m.switch(rp, ports=5, vendor=0x10b5, usp=0x8747, dsp=0x8747)
    m.rdma_nic(dsps[0], "mlx5_0", netdev="ens1f0", ip="10.0.0.1/24")
    for i in range(4):
        m.nvme(dsps[i + 1], f"S17{i}", model="SKX-SW", cmb=cmb if i < 2 else None,
               vendor=0x8086, device=0x0a54)
    s3a = m.host_bridge(bus=0x3a, first_function=False, numa=0)
    for i in range(4):
        rp = m.root_port(s3a, vendor=0x8086, device=0x2030 + i)
        m.nvme(rp, f"S3A{i}", model="SKX-RP", cmb=cmb if i < 2 else None, vendor=0x8086,
               device=0x0a54)
    s5d = m.host_bridge(bus=0x5d, first_function=False, numa=0)
    rp = m.root_port(s5d, vendor=0x8086, device=0x2030)
    m.rdma_nic(rp, "mlx5_1", netdev="ens2f0", ip="10.0.1.1/24")
    return m.build()


def multipath_machine(cmb: int = 32 * MiB) -> Inventory:
    """The lab's ``multipath`` topology (tools/lab/topologies/multipath.yaml): q35 (not
    whitelisted), two root ports each with a switch holding a CMB NVMe, a plain NVMe and an
    e1000e with the lab's rxe_p2p device -- cmbA 03:00.0, driveA 04:00.0, nica/rxpa 05:00.0
    (10.81.0.1); cmbB 08:00.0, driveB 09:00.0, nicb/rxpb 0a:00.0 (10.82.0.1), the BDFs the lab
    guest showed. Every pair inside a switch is accepted, every pair across refused."""
    m = Machine(cpu_vendor="AuthenticAMD", cpu_family=15)
    hb = m.host_bridge()
    for k, side in enumerate("AB"):
        d = m.switch(m.root_port(hb), ports=3)
        m.nvme(d[0], f"cmb{side}", cmb=cmb)
        m.nvme(d[1], f"drive{side}")
        m.rdma_nic(d[2], f"rxp{side.lower()}", netdev=f"nic{side.lower()}",
                   ip=f"10.8{k + 1}.0.1/24", vendor=0x8086, device=0x10d3, driver="e1000e")
    m.inv.system.numa_nodes = [0]
    return m.build()


def small_cmb_machine() -> Inventory:
    """A switch with an RDMA NIC and eight NVMe: six with a small 4 MiB CMB, two with 1 GiB.
    Own-CMB is what the kernel prefers; here it overflows at once."""
    m = Machine()
    hb = m.host_bridge(vendor=0x8086, device=0x6f00, numa=0)
    dsps = m.switch(m.root_port(hb, vendor=0x8086, device=0x6f08), ports=9)
    m.rdma_nic(dsps[0], "mlx5_0", netdev="ens1f0", ip="10.0.0.1/24")
    for i in range(8):
        m.nvme(dsps[i + 1], f"SC{i}", model="SMALLCMB", cmb=GiB if i in (2, 5) else 4 * MiB,
               vendor=0x1b36, device=0x0010)
    return m.build()


def big_machine(switches: int = 8, per_switch: int = 8, namespaces: int = 64) -> Inventory:
    """Scale test: two sockets, ``switches`` switches (half per socket) each with an RDMA NIC
    and ``per_switch`` CMB NVMe of ``namespaces`` namespaces: 8 x 8 x 64 = 4096 namespaces over
    64 providers and 8 NICs. Models name the switch (``BIG-SW<k>``)."""
    m = Machine()
    for socket in range(2):
        hb = m.host_bridge(bus=socket * 0x80, vendor=0x8086, device=0x2020, numa=socket)
        for k in range(socket * switches // 2, (socket + 1) * switches // 2):
            dsps = m.switch(m.root_port(hb, vendor=0x8086, device=0x2030), ports=per_switch + 1)
            m.rdma_nic(dsps[0], f"mlx5_{k}", netdev=f"ens{k}", ip=f"10.1.{k}.1/24")
            for i in range(per_switch):
                m.nvme(dsps[i + 1], f"B{k:02d}{i:02d}", model=f"BIG-SW{k}", cmb=1 * GiB,
                       namespaces=namespaces, ns_size=16 * GiB)
    return m.build()
