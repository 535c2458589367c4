"""Build :class:`nvmet_p2p.model.Inventory` objects directly (no sysfs) for the pure distance tests.

Each helper adds one PCI function below a parent and returns its BDF; the ``upstream`` chain
is derived from the parent exactly as the sysfs reader derives it from the realpath.
"""

from __future__ import annotations

from nvmet_p2p.model import (
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

RR_CR = 0x000C          # what Linux sets with an IOMMU (plus SV/UF, irrelevant here)
ACS_SV_UF = 0x0011      # source validation + upstream forwarding: no redirect
MIB = 1 << 20


class Topo:
    def __init__(self, kernel: str = "7.3.4+deb13-amd64", cpu_vendor: str = "GenuineIntel",
                 cpu_family: int | None = 6, iommu: bool = False, cmdline: str = "",
                 readable: bool = True):
        self.inv = Inventory(system=SystemInfo(kernel_release=kernel, cpu_vendor=cpu_vendor,
                                               cpu_family=cpu_family, iommu=iommu,
                                               cmdline=cmdline, is_root=readable))
        self.readable = readable

    # -- PCI ---------------------------------------------------------------------------------
    def _add(self, bdf: str, parent: str | None, host_bridge: str | None = None, **kw) -> str:
        if parent is not None:
            p = self.inv.pci[parent]
            host_bridge = p.host_bridge
            upstream = p.upstream + [parent]
        else:
            assert host_bridge is not None
            upstream = []
        kw.setdefault("config_readable", self.readable)
        if not kw["config_readable"]:
            kw["acs_ctrl"] = None
            kw["acs_cap"] = None
            kw["pcie_type"] = None
        self.inv.pci[bdf] = PciFunction(bdf=bdf, host_bridge=host_bridge, upstream=upstream, **kw)
        return bdf

    def host_device(self, bdf: str, vendor: int, device: int, host_bridge: str | None = None) -> str:
        """A device on a root bus (e.g. the 00.0 host bridge that identifies the root complex)."""
        hb = host_bridge or "pci" + bdf.rsplit(":", 1)[0]
        return self._add(bdf, None, hb, vendor=vendor, device=device, class_code=0x060000)

    def root_port(self, bdf: str, vendor: int = 0x1b36, device: int = 0x000c, acs: int | None = None,
                  host_bridge: str | None = None) -> str:
        hb = host_bridge or "pci" + bdf.rsplit(":", 1)[0]
        return self._add(bdf, None, hb, vendor=vendor, device=device, class_code=0x060400,
                         pcie_type=0x4, acs_ctrl=acs, acs_cap=0x1f if acs is not None else None,
                         driver="pcieport")

    def switch(self, usp: str, parent: str, dsps: list[str], acs: int | None = None,
               dsp_acs: dict[str, int] | None = None) -> list[str]:
        """A switch: upstream port ``usp`` below ``parent`` and downstream ports ``dsps``."""
        self._add(usp, parent, vendor=0x104c, device=0x8232, class_code=0x060400, pcie_type=0x5,
                  driver="pcieport")
        out = []
        for d in dsps:
            a = (dsp_acs or {}).get(d, acs)
            out.append(self._add(d, usp, vendor=0x104c, device=0x8233, class_code=0x060400,
                                 pcie_type=0x6, acs_ctrl=a,
                                 acs_cap=0x1f if a is not None else None, driver="pcieport"))
        return out

    def endpoint(self, bdf: str, parent: str | None, vendor: int = 0x1b36, device: int = 0x0010,
                 class_code: int = 0x010802, driver: str | None = "nvme", acs: int | None = None,
                 physfn: str | None = None, numa: int | None = None,
                 p2pmem: tuple[int, int, bool] | None = None, host_bridge: str | None = None,
                 config_readable: bool | None = None) -> str:
        kw = {}
        if config_readable is not None:
            kw["config_readable"] = config_readable
        return self._add(bdf, parent, host_bridge, vendor=vendor, device=device,
                         class_code=class_code, pcie_type=0x0, acs_ctrl=acs,
                         acs_cap=0x1f if acs is not None else None, driver=driver, physfn=physfn,
                         numa_node=numa,
                         p2pmem=P2pMem(*p2pmem) if p2pmem else None, **kw)

    # -- NVMe / RDMA ----------------------------------------------------------------------------
    def nvme(self, bdf: str, parent: str | None, ctrl: str, cmb_mib: int | None = 64,
             published: bool = True, serial: str | None = None, host_bridge: str | None = None,
             numa: int | None = None, ns: int = 1) -> str:
        p2p = (cmb_mib * MIB, cmb_mib * MIB - 128 * 1024, published) if cmb_mib else None
        self.endpoint(bdf, parent, p2pmem=p2p, host_bridge=host_bridge, numa=numa)
        cmb = None
        if cmb_mib:
            # SZU=2 (1 MiB units), SZ=cmb_mib, WDS|RDS|SQS
            cmbsz = (cmb_mib << 12) | (2 << 8) | 0x19
            cmb = CmbInfo.decode(cmbsz, 2)
        names = [f"{ctrl}n{i}" for i in range(1, ns + 1)]
        self.inv.nvme[ctrl] = NvmeController(name=ctrl, transport="pcie", pci=bdf,
                                             serial=serial or ctrl, model="QEMU NVMe Ctrl",
                                             cmb=cmb, namespaces=names)
        for i, n in enumerate(names, 1):
            self.inv.namespaces[n] = NvmeNamespace(name=n, nsid=i, controller=ctrl, pci=bdf,
                                                   size_bytes=256 * MIB)
        return bdf

    def multipath_head(self, name: str, ctrl: str) -> None:
        self.inv.namespaces[name] = NvmeNamespace(name=name, nsid=1, controller=ctrl, pci=None,
                                                  multipath_head=True,
                                                  paths=[f"{ctrl[:-1]}c{ctrl[-1]}n1"])

    def rnic(self, bdf: str, parent: str | None, ibdev: str, netdev: str, ip: str | None = None,
             acs: int | None = None, physfn: str | None = None, host_bridge: str | None = None,
             numa: int | None = None) -> str:
        self.endpoint(bdf, parent, vendor=0x15b3, device=0x1017, class_code=0x020000,
                      driver="mlx5_core", acs=acs, physfn=physfn, host_bridge=host_bridge,
                      numa=numa)
        self.inv.rdma[ibdev] = RdmaDevice(name=ibdev, pci=bdf, driver="mlx5_core",
                                          node_type="1: CA", netdevs=[netdev],
                                          ports=[RdmaPort(1, "4: ACTIVE", "5: LinkUp", "Ethernet",
                                                          netdevs=[netdev])])
        self.inv.net[netdev] = NetDevice(name=netdev, pci=bdf, operstate="up",
                                         addresses=[ip + "/24"] if ip else [])
        return bdf

    def soft_rdma(self, ibdev: str = "rxe0", netdev: str = "dummy0", ip: str | None = "10.77.0.1",
                  driver: str = "rdma_rxe") -> None:
        self.inv.rdma[ibdev] = RdmaDevice(name=ibdev, pci=None, driver=driver, soft=True,
                                          node_type="1: CA", netdevs=[netdev])
        self.inv.net[netdev] = NetDevice(name=netdev, pci=None, operstate="unknown",
                                         addresses=[ip + "/24"] if ip else [])


def q35_lab(kernel: str = "7.3.4+deb13-amd64", iommu: bool = False, dsp_acs: int | None = 0,
            readable: bool = True, cpu_vendor: str = "AuthenticAMD", cpu_family: int = 15) -> Topo:
    """The lab's q35 machine (shared/docs/lab.md §4): a switch with three CMB NVMe behind root
    port 00:04.0 and a plain NVMe on root port 00:05.0; TCG ``-cpu max`` is AMD family 15."""
    t = Topo(kernel=kernel, iommu=iommu, readable=readable, cpu_vendor=cpu_vendor,
             cpu_family=cpu_family)
    t.host_device("0000:00:00.0", 0x8086, 0x29c0)
    rp1 = t.root_port("0000:00:04.0", acs=dsp_acs)
    rp2 = t.root_port("0000:00:05.0", acs=dsp_acs)
    d1, d2, d3 = t.switch("0000:01:00.0", rp1, ["0000:02:00.0", "0000:02:01.0", "0000:02:02.0"],
                          acs=dsp_acs)
    t.nvme("0000:03:00.0", d1, "nvme0", serial="cmbA")
    t.nvme("0000:04:00.0", d2, "nvme1", serial="cmbB")
    t.nvme("0000:05:00.0", d3, "nvme2", serial="cmbC")
    t.nvme("0000:06:00.0", rp2, "nvme3", cmb_mib=None, serial="plain")
    t.soft_rdma()
    return t
