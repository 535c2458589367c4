"""The PCIe tree as ``lspci -tv`` draws it, annotated with what matters for p2p, and the
provider x client matrix of the kernel's p2pdma verdicts.

Pure rendering on an :class:`~nvmet_p2p.pci.model.Inventory` (no filesystem): the command layer
reads the inventory and prints what :func:`render_tree`, :func:`render_matrix` or
:func:`topology_document` return.

* providers: PCI functions with ``p2pmem/`` (size, available, published);
* NVMe controllers: serial, CMB size and the CMBSZ bits Linux cares about, namespaces
  (native-multipath heads flagged);
* RDMA devices: netdevs and addresses, PCI or soft (rxe/siw, listed apart: no PCI parent);
* bridges: PCIe role and ACS control state (RR/CR/EC are what p2pdma checks);
* NUMA node of every function that reports one;
* per host bridge: the device the kernel identifies it by and whether it is whitelisted.

The matrix uses the NVMe controllers and RDMA devices as clients (what nvmet hands to p2pdma
for a namespace and for a host connection).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nvmet_p2p.pci.distance import Client, P2pdma, acs_bits_text, device_role, resolve_client
from nvmet_p2p.pci.model import Inventory, PciFunction, bdf_sort_key
from nvmet_p2p.pci.p2pdma_rules import MapType


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------------------------------------
# Matrix
# ---------------------------------------------------------------------------------------------

@dataclass
class MatrixClient:
    name: str          # nvme controller ("nvme0") or RDMA device ("mlx5_0")
    kind: str
    bdf: str | None
    client: Client

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "bdf": self.bdf,
                "reason": self.client.reason}


def matrix_clients(inv: Inventory) -> list[MatrixClient]:
    """NVMe controllers (PCIe) and RDMA devices, sorted by name (natural order)."""
    out: list[MatrixClient] = []
    for name in sorted(inv.nvme, key=_natural):
        ctrl = inv.nvme[name]
        if ctrl.transport not in ("pcie", "") and ctrl.pci is None:
            continue
        c = resolve_client(inv, name)
        out.append(MatrixClient(name, "nvme", c.bdf, c))
    for name in sorted(inv.rdma, key=_natural):
        c = resolve_client(inv, name)
        out.append(MatrixClient(name, "rdma" if not c.soft else "soft-rdma", c.bdf, c))
    return out


def matrix_providers(inv: Inventory) -> list[PciFunction]:
    """Every function with p2pmem (published or not), in the kernel's enumeration order."""
    return sorted((f for f in inv.pci.values() if f.p2pmem is not None),
                  key=lambda f: (f.physfn is not None, bdf_sort_key(f.bdf)))


def build_matrix(inv: Inventory, engine: P2pdma | None = None) -> dict:
    """``{"providers": [...], "clients": [...], "pairs": [...], "summary": {...}}``."""
    eng = engine or P2pdma(inv)
    provs = matrix_providers(inv)
    clients = matrix_clients(inv)
    pairs = []
    counts = {MapType.BUS_ADDR: 0, MapType.THRU_HOST_BRIDGE: 0, MapType.NOT_SUPPORTED: 0}
    uncertain_pairs = 0
    for p in provs:
        for mc in clients:
            v = eng.pair(p.bdf, mc.client)
            counts[v.map_type] += 1
            if v.uncertain:
                uncertain_pairs += 1
            pairs.append({
                "provider": p.bdf,
                "client": mc.name,
                "client_bdf": mc.bdf,
                "map_type": v.map_type,
                "distance": v.distance,
                "hops": v.hops,
                "crosses_root_complex": v.crosses_root_complex,
                "kernel_parameter": v.kernel_parameter,
                "uncertain": bool(v.uncertain),
            })
    return {
        "kernel": eng.kernel,
        "kernel_source": eng.kernel_source,
        "providers": [{"bdf": p.bdf, "size": p.p2pmem.size, "available": p.p2pmem.available,
                       "published": p.p2pmem.published} for p in provs],
        "clients": [c.to_dict() for c in clients],
        "pairs": pairs,
        "summary": {"providers": len(provs),
                    "published": sum(1 for p in provs if p.p2pmem.published),
                    "clients": len(clients), "pairs": len(pairs),
                    **counts, "uncertain": uncertain_pairs},
        "notes": list(eng.notes),
    }


def topology_document(inv: Inventory, kernel: str | None = None) -> dict:
    """What ``topology --json`` prints: the inventory plus the matrix."""
    eng = P2pdma(inv, kernel)
    return {"kernel": eng.kernel, "kernel_source": eng.kernel_source,
            "host_bridges": host_bridge_summary(inv, eng),
            "inventory": inv.to_dict(), "matrix": build_matrix(inv, eng)}


def _cell(pair: dict) -> str:
    mt = pair["map_type"]
    if mt == MapType.BUS_ADDR:
        s = f"bus {pair['distance']}"
    elif mt == MapType.THRU_HOST_BRIDGE:
        s = f"host {pair['distance']}"
    else:
        s = "no"
    return s + ("?" if pair["uncertain"] else "")


def render_matrix(matrix: dict, width: int = 10) -> str:
    """Provider rows x client columns; ``width`` client columns per block."""
    provs = matrix["providers"]
    clients = matrix["clients"]
    if not provs:
        return "no p2pmem provider: no PCI function registered p2p memory (no CMB accepted)"
    if not clients:
        return "no client: no PCIe NVMe controller and no RDMA device"
    cells = {(p["provider"], p["client"]): _cell(p) for p in matrix["pairs"]}
    lines: list[str] = []
    for start in range(0, len(clients), width):
        block = clients[start:start + width]
        headers = ["provider"] + [c["name"] for c in block]
        rows = []
        for p in provs:
            label = p["bdf"] + ("" if p["published"] else " (unpublished)")
            rows.append([label] + [cells[(p["bdf"], c["name"])] for c in block])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        if lines:
            lines.append("")
        lines.append(fmt.format(*headers).rstrip())
        lines.append(fmt.format(*("-" * w for w in widths)).rstrip())
        lines.extend(fmt.format(*r).rstrip() for r in rows)
    s = matrix["summary"]
    lines.append("")
    lines.append("bus N = BUS_ADDR (below a common switch/device), host N = THRU_HOST_BRIDGE "
                 "(through the root complex), no = NOT_SUPPORTED, ? = uncertain (run "
                 "'nvmet-p2p distance PROVIDER CLIENT'); N is the kernel's distance")
    lines.append(f"{s['pairs']} pairs: {s[MapType.BUS_ADDR]} bus_addr, {s[MapType.THRU_HOST_BRIDGE]} "
                 f"thru_host_bridge, {s[MapType.NOT_SUPPORTED]} not_supported, {s['uncertain']} uncertain")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Tree
# ---------------------------------------------------------------------------------------------

def host_bridge_summary(inv: Inventory, eng: P2pdma) -> list[dict]:
    """Per host bridge: the device the whitelist looks at, whether the table has it, and what
    the kernel will do for paths through it (``trusted``: whitelisted, or every path through
    the root complex allowed by the AMD CPU rule of ``cpu_supports_p2pdma()``)."""
    cpu_ok, _ = eng.cpu_rule()
    out = []
    for hb in sorted({f.host_bridge for f in inv.pci.values()}, key=_hb_key):
        ok, info, unc = eng._wl_one(hb, True)
        _, info_x, _ = eng._wl_one(hb, False)
        out.append({"host_bridge": hb, "device": info.get("device"), "id": info.get("id"),
                    "whitelisted": ok, "whitelisted_across_host_bridges": bool(info_x.get("ok")),
                    "trusted": bool(ok or cpu_ok),
                    "trusted_by": "cpu_rule" if cpu_ok else "whitelist" if ok else None,
                    "why": info.get("why"), "uncertain": unc})
    return out


def render_tree(inv: Inventory, kernel: str | None = None, engine: P2pdma | None = None) -> str:
    eng = engine or P2pdma(inv, kernel)
    children: dict[str | None, list[PciFunction]] = {}
    for f in inv.pci.values():
        parent = f.upstream[-1] if f.upstream else None
        key = parent if parent is not None else "@" + f.host_bridge
        children.setdefault(key, []).append(f)
    for lst in children.values():
        lst.sort(key=lambda f: bdf_sort_key(f.bdf))
    tree = _Tree(inv, children)
    lines = _tree_header(inv, eng)
    for hb in host_bridge_summary(inv, eng):
        lines.append("")
        lines.append(_host_bridge_line(hb))
        roots = children.get("@" + hb["host_bridge"], [])
        lines += tree.subtree(roots, "")
    lines += _virtual_lines(inv)
    return "\n".join(lines)


def _tree_header(inv: Inventory, eng: P2pdma) -> list[str]:
    s = inv.system
    cpu = (f"{s.cpu_vendor or 'unknown CPU vendor'}"
           + (f" family {s.cpu_family} ({s.cpu_family:#x})" if s.cpu_family is not None else ""))
    cpu_ok, _ = eng.cpu_rule()
    lines = [f"kernel {s.kernel_release or '?'} -> p2pdma rules of {eng.kernel} "
             f"({eng.kernel_source}); CPU {cpu}"
             + ("; AMD CPU rule: every host-bridge path allowed" if cpu_ok else "")
             + f"; IOMMU {'on' if s.iommu else 'off'}"
             + (f"; config space {'read' if s.is_root else 'NOT readable (not root): ACS unknown'}")]
    for note in eng.notes:
        lines.append(f"note: {note}")
    for w in inv.warnings[:10]:
        lines.append(f"warning: {w}")
    if len(inv.warnings) > 10:
        lines.append(f"warning: ... {len(inv.warnings) - 10} more (see --json: inventory.warnings)")
    return lines


def _host_bridge_line(hb: dict) -> str:
    """What the kernel will do with paths through this host bridge, and why: the whitelist
    entry, or (AMD family >= 0x17) the CPU rule that trusts every host bridge."""
    if not hb["device"]:
        return f"[{hb['host_bridge']}] {hb['why']}" + (
            "; trusted anyway through the AMD CPU rule" if hb["trusted_by"] == "cpu_rule" else "")
    head = f"[{hb['host_bridge']}] identified by {hb['device']} {hb['id']}: "
    if hb["trusted_by"] == "cpu_rule":
        table = "in" if hb["whitelisted"] else "not in"
        return (head + f"trusted for p2pdma through the root complex by the AMD CPU rule "
                       f"({table} the whitelist table)")
    wl = ("whitelisted" if hb["whitelisted"] else "NOT whitelisted") + \
         ("" if hb["whitelisted"] == hb["whitelisted_across_host_bridges"] else
          " (same host bridge only)")
    return head + f"{wl} for p2pdma through the root complex"


def _virtual_lines(inv: Inventory) -> list[str]:
    soft = [r for r in inv.rdma.values() if r.soft or r.pci is None]
    heads = [n for n in inv.namespaces.values() if n.multipath_head]
    if not soft and not heads:
        return []
    lines = ["", "[virtual] no PCI parent: never a p2p client"]
    for r in sorted(soft, key=lambda r: r.name):
        nd = "; ".join(_netdev_text(inv, n) for n in r.netdevs) or "no netdev"
        lines.append(f"  {r.name} soft RDMA ({r.driver or '?'}) on {nd}")
    for n in sorted(heads, key=lambda n: n.name):
        lines.append(f"  {n.name} native-multipath head disk (paths: "
                     f"{', '.join(n.paths) or '?'}): nvmet refuses p2pmem for it")
    return lines


class _Tree:
    """The PCI tree of one inventory as ``topology`` prints it: each function's children and
    the NVMe controllers, RDMA devices and netdevs on each PCI function."""

    def __init__(self, inv: Inventory, children: dict[str | None, list[PciFunction]]):
        self.inv, self.children = inv, children
        self.nvme: dict[str, list] = {}
        for c in inv.nvme.values():
            if c.pci:
                self.nvme.setdefault(c.pci, []).append(c)
        self.rdma: dict[str, list] = {}
        for r in inv.rdma.values():
            if r.pci and not r.soft:
                self.rdma.setdefault(r.pci, []).append(r)
        self.net: dict[str, list] = {}
        for n in inv.net.values():
            if n.pci:
                self.net.setdefault(n.pci, []).append(n)

    def subtree(self, devs: list[PciFunction], prefix: str) -> list[str]:
        lines = []
        for i, f in enumerate(devs):
            last = i == len(devs) - 1
            branch = "\\-" if last else "+-"
            lines.append(prefix + branch + self.device_line(f))
            kids = self.children.get(f.bdf, [])
            if kids:
                lines += self.subtree(kids, prefix + ("  " if last else "| "))
        return lines

    def device_line(self, f: PciFunction) -> str:
        """One function: its ids, role, driver, NUMA node, ACS, and what sits on it (NVMe
        controllers with their CMB and namespaces, p2pmem, RDMA devices, netdevs)."""
        inv, nvme, rdma, net = self.inv, self.nvme, self.rdma, self.net
        name = f.bdf[5:] if f.bdf.startswith("0000:") else f.bdf
        parts = [f"{name} {f.vendor:04x}:{f.device:04x}"]
        role = device_role(f)
        if role:
            parts.append(role)
        if f.driver:
            parts.append(f"[{f.driver}]")
        if f.physfn:
            parts.append(f"VF of {f.physfn}")
        if f.numa_node is not None:
            parts.append(f"node {f.numa_node}")
        if f.is_bridge or f.acs_ctrl is not None:
            parts.append(_acs_short(f))
        for c in sorted(nvme.get(f.bdf, []), key=lambda c: _natural(c.name)):
            t = f"{c.name}"
            if c.serial:
                t += f" sn {c.serial}"
            if c.cmb is not None:
                bits = [b for b, on in (("WDS", c.cmb.wds), ("RDS", c.cmb.rds), ("SQS", c.cmb.sqs),
                                        ("CQS", c.cmb.cqs), ("LISTS", c.cmb.lists)) if on]
                t += f", CMB {human_size(c.cmb.size)} {'+'.join(bits) or 'no bits'}"
                if not (c.cmb.wds and c.cmb.rds):
                    t += " (not published by Linux: needs WDS and RDS)"
                elif f.p2pmem is None:
                    t += " (no p2pmem: CMB not registered)"
            ns = []
            for n in c.namespaces:
                nsobj = inv.namespaces.get(n)
                ns.append(n + (" (multipath head)" if nsobj and nsobj.multipath_head else ""))
            if ns:
                t += ", ns " + " ".join(ns)
            parts.append(t)
        if f.p2pmem is not None:
            pm = f.p2pmem
            parts.append(f"p2pmem {human_size(pm.size)} ({human_size(pm.available)} free, "
                         f"{'published' if pm.published else 'NOT published'})")
        for r in sorted(rdma.get(f.bdf, []), key=lambda r: _natural(r.name)):
            nds = "; ".join(_netdev_text(inv, n) for n in r.netdevs)
            parts.append(f"RDMA {r.name}" + (f" on {nds}" if nds else "")
                         + (f" [{r.emulated}]" if r.emulated else ""))
        rdma_nds = {n for r in rdma.get(f.bdf, []) for n in r.netdevs}
        for n in sorted(net.get(f.bdf, []), key=lambda n: n.name):
            if n.name not in rdma_nds:
                parts.append("net " + _netdev_text(inv, n.name) + " (no RDMA device)")
        return "  ".join(parts)


def _netdev_text(inv: Inventory, name: str) -> str:
    n = inv.net.get(name)
    if n is None or not n.addresses:
        return name
    return f"{name} {' '.join(n.addresses)}"


def _acs_short(f: PciFunction) -> str:
    if f.acs_ctrl is None:
        return "ACS none" if f.config_readable else "ACS ?"
    red = [b for b, bit in (("RR", 0x4), ("CR", 0x8), ("EC", 0x20)) if f.acs_ctrl & bit]
    return f"ACS {f.acs_ctrl:#06x}" + (f" redirect {'+'.join(red)}" if red else "")


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _hb_key(hb: str):
    try:
        dom, bus = hb[3:].split(":")
        return int(dom, 16), int(bus, 16)
    except ValueError:
        return (1 << 30, 0)


__all__ = ["build_matrix", "render_matrix", "render_tree", "topology_document",
           "matrix_clients", "matrix_providers", "host_bridge_summary", "acs_bits_text"]
