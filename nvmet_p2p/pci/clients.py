"""Client resolution: what a user types (a BDF, an RDMA device, a block device, an NVMe
controller, a network interface, an address) -> the device nvmet would hand to p2pdma as a
client, or why there is none.

The kernel's side of it: nvmet passes the namespace's block device and the RDMA NIC of each
host connection to ``pci_p2pdma_distance_many()``, which walks up from each with
``find_parent_pci_dev()``; a device without a PCI ancestor (a native-multipath head disk, soft
RDMA, a fabrics namespace) can never be a client. :mod:`nvmet_p2p.pci.distance` judges the pairs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p.errors import InputError
from nvmet_p2p.kernel import BDF_NO_DOMAIN_RE, is_bdf
from nvmet_p2p.pci.model import Inventory, NetDevice, RdmaDevice

# Client kinds
KIND_PCI = "pci"
KIND_NVME_NS = "nvme-namespace"
KIND_NVME_CTRL = "nvme-controller"
KIND_RDMA = "rdma"
KIND_SOFT_RDMA = "soft-rdma"
KIND_MULTIPATH_HEAD = "multipath-head"
KIND_NETDEV = "netdev"
KIND_NON_PCI = "non-pci"



@dataclass
class Client:
    """A p2p client as the kernel sees it: the device nvmet hands to p2pdma.

    ``bdf`` is the PCI function ``find_parent_pci_dev()`` would reach, or ``None`` when there is
    none (native-multipath head disk, soft RDMA, fabrics namespace): ``reason`` says why in words.
    ``device`` is the kernel device name used in its log lines (``nvme1n1``, ``rxe0``, a BDF).
    """

    name: str
    bdf: str | None
    kind: str
    reason: str = ""
    device: str = ""
    soft: bool = False
    driver: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bdf": self.bdf, "kind": self.kind, "reason": self.reason,
                "device": self.device or self.name, "soft": self.soft, "notes": list(self.notes)}


def normalize_bdf(text: str) -> str | None:
    """``0000:03:00.0`` / ``03:00.0`` / upper case -> canonical full BDF, else None."""
    t = text.strip().lower()
    if is_bdf(t):
        return t
    if BDF_NO_DOMAIN_RE.match(t):
        return "0000:" + t
    return None


def resolve_client(inv: Inventory, name: str) -> Client:
    """Map what a user types to the device nvmet would hand to p2pdma.

    Accepts a PCI BDF, an RDMA device (``mlx5_0``, ``rxe0``), a block device (``/dev/nvme1n1``,
    ``nvme1n1``, a partition resolves to its disk), an NVMe controller (``nvme1``), a network
    interface or an IP address (resolved to the RDMA device on that interface, as nvmet-rdma's
    listener would).
    """
    raw = name
    key = name.strip()
    if key.startswith("/dev/"):
        key = key[5:]
    bdf = normalize_bdf(key)
    if bdf is not None:
        f = inv.pci.get(bdf)
        if f is None:
            raise InputError(f"unknown client {raw!r}: no PCI function {bdf} in the inventory",
                             where="CLIENT")
        return Client(raw, bdf, KIND_PCI, device=bdf, driver=f.driver)
    rd = inv.rdma.get(key)
    if rd is not None:
        return _rdma_client(raw, rd)
    for lookup in (_block_client, _nvme_client, _netdev_client):
        c = lookup(inv, raw, key)
        if c is not None:
            return c
    known = sorted(list(inv.rdma) + list(inv.namespaces) + list(inv.nvme))
    raise InputError(f"unknown client {raw!r}: not a PCI BDF, RDMA device, block device, NVMe "
                     f"controller, network interface or address in the inventory (known: "
                     f"{short_list(known)})", where="CLIENT")


def _block_client(inv: Inventory, raw: str, key: str) -> Client | None:
    """A namespace block device (or a partition of one): ``find_parent_pci_dev()`` of the disk."""
    ns = inv.namespaces.get(key)
    if ns is None:
        m = re.match(r"^(nvme\d+n\d+)p\d+$", key)
        if m and m.group(1) in inv.namespaces:
            ns = inv.namespaces[m.group(1)]
    if ns is None:
        return None
    if ns.multipath_head:
        return Client(raw, None, KIND_MULTIPATH_HEAD, device=ns.name, reason=(
            f"{ns.name} is a native-multipath head disk (its parent is the nvme-subsystem "
            f"device under /sys/devices/virtual), not a PCI device; boot with "
            f"nvme_core.multipath=N or use a controller whose CMIC bit is clear"))
    if ns.pci is None:
        ctrl = inv.nvme.get(ns.controller or "")
        tr = ctrl.transport if ctrl else "unknown"
        return Client(raw, None, KIND_NON_PCI, device=ns.name, reason=(
            f"{ns.name} belongs to a {tr} (fabrics) controller and has no PCI parent"))
    return Client(raw, ns.pci, KIND_NVME_NS, device=ns.name, driver=_driver(inv, ns.pci))


def _nvme_client(inv: Inventory, raw: str, key: str) -> Client | None:
    """A per-path disk (``nvme0c1n1``) or an NVMe controller (``nvme1``)."""
    m = re.match(r"^nvme(\d+)c(\d+)n(\d+)$", key)
    if m and f"nvme{m.group(2)}" in inv.nvme:
        ctrl = inv.nvme[f"nvme{m.group(2)}"]
        if ctrl.pci:
            return Client(raw, ctrl.pci, KIND_NVME_NS, device=key, driver=_driver(inv, ctrl.pci))
    found = inv.nvme.get(key)
    if found is None:
        return None
    ctrl = found
    if ctrl.pci is None:
        return Client(raw, None, KIND_NON_PCI, device=key, reason=(
            f"{key} is a {ctrl.transport} controller with no PCI function"))
    return Client(raw, ctrl.pci, KIND_NVME_CTRL, device=ctrl.pci, driver=_driver(inv, ctrl.pci))


def _netdev_client(inv: Inventory, raw: str, key: str) -> Client | None:
    """A network interface or an address: the RDMA device on it, as nvmet-rdma's listener
    would find it."""
    nd = inv.net.get(key)
    if nd is None:
        nd = _netdev_by_ip(inv, key)
    if nd is None:
        return None
    for rd in sorted(inv.rdma.values(), key=lambda r: r.name):
        nds = set(rd.netdevs) | {n for p in rd.ports for n in p.netdevs}
        if nd.name in nds:
            c = _rdma_client(raw, rd)
            c.notes.append(f"{key} is served by RDMA device {rd.name}")
            return c
    if nd.pci is None:
        return Client(raw, None, KIND_NON_PCI, device=nd.name, reason=(
            f"network interface {nd.name} has no PCI device and no RDMA device"))
    c = Client(raw, nd.pci, KIND_NETDEV, device=nd.pci, driver=_driver(inv, nd.pci))
    c.notes.append(f"{nd.name} has no RDMA device: only nvmet-rdma uses p2pmem, so this "
                   f"topology answer would not be used by nvmet")
    return c


def _rdma_client(raw: str, rd: RdmaDevice) -> Client:
    if rd.soft or rd.pci is None:
        drv = rd.driver or ("rdma_rxe" if rd.name.startswith("rxe") else
                            "siw" if rd.name.startswith("siw") else None)
        reason = (f"{rd.name} is a soft RDMA device" + (f" ({drv})" if drv else "") +
                  " whose ib_device is virtual: it has no PCI function to DMA with")
        return Client(raw, rd.pci if rd.soft else None, KIND_SOFT_RDMA if rd.soft else KIND_NON_PCI,
                      reason=reason, device=rd.name, soft=bool(rd.soft) or rd.pci is None,
                      driver=drv)
    return Client(raw, rd.pci, KIND_RDMA, device=rd.name, driver=rd.driver)


def _netdev_by_ip(inv: Inventory, text: str) -> NetDevice | None:
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    for nd in sorted(inv.net.values(), key=lambda n: n.name):
        for a in nd.addresses:
            try:
                if ipaddress.ip_interface(a).ip == ip:
                    return nd
            except ValueError:
                continue
    return None


def _driver(inv: Inventory, bdf: str | None) -> str | None:
    f = inv.pci.get(bdf or "")
    return f.driver if f else None


def class_prefix(client: Client) -> str:
    if client.kind in (KIND_MULTIPATH_HEAD, KIND_NVME_NS) or (
            client.kind == KIND_NON_PCI and re.match(r"^nvme\d+n\d+", client.device or "")):
        return "block"
    if client.kind in (KIND_SOFT_RDMA, KIND_RDMA) or client.soft:
        return "infiniband"
    if client.kind == KIND_NON_PCI and re.match(r"^nvme\d+$", client.device or ""):
        return "nvme"
    return "device"


def short_list(items: Iterable[str], limit: int = 12) -> str:
    items = list(items)
    if not items:
        return "none"
    text = ", ".join(items[:limit])
    return text + (f", ... ({len(items)} in all)" if len(items) > limit else "")
