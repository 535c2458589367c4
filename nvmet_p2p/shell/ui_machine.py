"""``/machine``: a read-only view of what the target can use, from the inventory.

``providers/<bdf>`` (p2pmem pools: size, free now, published), ``nvme/<controller>`` (PCI
function, serial, model, CMB, namespaces), ``rdma/<device>`` (PCI function or soft RDMA,
netdevs and addresses). ``refresh`` here reads the machine again.
"""

from __future__ import annotations

from nvmet_p2p.shell.p2p import fmt_size
from nvmet_p2p.shell.ui_base import UINode


class _RO(UINode):
    read_only = True

    @property
    def inv(self):
        return self.app.p2p.inv


class UIMachine(_RO):
    def child_names(self):
        return ["providers", "nvme", "rdma"]

    def make_child(self, name):
        return {"providers": UIProviders, "nvme": UINvmes, "rdma": UIRdmas}[name](name, self)

    def describe(self):
        inv = self.inv
        if self.app.p2p.problem:
            return self.app.p2p.problem, False
        return (f"{len(inv.providers())} p2pmem provider(s), {len(inv.nvme)} NVMe, "
                f"{len(inv.rdma)} RDMA (read-only)"), None

    def ui_command_refresh(self):
        '''
        Read the machine again (PCI tree, p2pmem pools, NVMe, RDMA devices).
        '''
        self.app.p2p.reload()
        self._gen = -1
        self.out(self.describe()[0])


class UIProviders(_RO):
    def child_names(self):
        return [f.bdf for f in self.inv.providers(published_only=False)]

    def make_child(self, name):
        return UIProvider(name, self)

    def describe(self):
        return "p2pmem pools", None


class UIProvider(_RO):
    def describe(self):
        f = self.inv.pci[self.name]
        p = f.p2pmem
        free = self.app.p2p.available(self.name)
        ctrl = self.inv.nvme_by_pci(self.name)
        who = f"{ctrl.name} sn {ctrl.serial.strip()}, " if ctrl else ""
        numa = f", NUMA {f.numa_node}" if f.numa_node is not None else ""
        return (f"{who}pool {fmt_size(p.size)}, {fmt_size(free)} free, "
                f"{'published' if p.published else 'NOT published'}{numa}"), bool(p.published)


class UINvmes(_RO):
    def child_names(self):
        return sorted(self.inv.nvme)

    def make_child(self, name):
        return UINvme(name, self)

    def describe(self):
        return "NVMe controllers", None


class UINvme(_RO):
    def describe(self):
        c = self.inv.nvme[self.name]
        bits = [c.pci or c.transport, f"sn {c.serial.strip()}", c.model.strip()]
        if c.cmb is not None:
            bits.append(f"CMB {fmt_size(c.cmb.size)}")
        if c.namespaces:
            bits.append("ns " + " ".join(c.namespaces))
        return ", ".join(b for b in bits if b), None


class UIRdmas(_RO):
    def child_names(self):
        return sorted(self.inv.rdma)

    def make_child(self, name):
        return UIRdma(name, self)

    def describe(self):
        return "RDMA devices", None


class UIRdma(_RO):
    def describe(self):
        d = self.inv.rdma[self.name]
        nds = list(d.netdevs) + [n for p in d.ports for n in p.netdevs if n not in d.netdevs]
        addrs = [a for n in nds if n in self.inv.net for a in self.inv.net[n].addresses
                 if not a.startswith("fe80:")]
        where = (f"soft RDMA ({d.driver or 'virtual'}): no p2p client" if d.soft or not d.pci
                 else f"PCI {d.pci} ({d.driver or '?'})")
        return f"{where}, on {', '.join(nds) or '-'} {' '.join(addrs)}".rstrip(), \
            (None if d.soft or not d.pci else True)
