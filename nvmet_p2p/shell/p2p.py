"""What the shell knows about p2p memory: verdicts, ranked providers, device names.

The machine's :class:`~nvmet_p2p.pci.model.Inventory` is read once (lazily, on first use; ``refresh``
under ``/machine`` reads it again). For a namespace of the shell's view, the p2p clients are
the ones the kernel will use (drivers/nvme/target/core.c): the PCI function behind its
``device_path`` (checked by ``nvmet_p2pmem_ns_enable()`` when the namespace is enabled) and
the RDMA NIC behind every port that exports its subsystem (``ctrl->p2p_client``, per host
connection; soft RDMA and TCP have none). Verdicts come from :mod:`nvmet_p2p.pci.distance`; the
ranking of providers is :func:`nvmet_p2p.policy.placement.place` run for that one namespace, with the
p2pmem budgets of the view's other namespaces already taken from each pool, so the shell
offers providers in exactly the order a profile would place them.

Nothing here reads configfs; the only reads per completion are each provider's
``p2pmem/available`` (a few sysfs files), so a Tab costs the same with 10 or 1000 namespaces.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.kernel import kstrtobool
from nvmet_p2p.nvmet.state import Port, TargetState
from nvmet_p2p.observe.status import rdma_devices_for_address
from nvmet_p2p.pci import distance
from nvmet_p2p.pci.inventory import block_device_name, read_inventory
from nvmet_p2p.pci.model import Inventory, NvmeController, NvmeNamespace, bdf_sort_key
from nvmet_p2p.pci.p2pdma_rules import MapType
from nvmet_p2p.policy import placement, profile

BUDGET = dict(profile.DEFAULT_BUDGET)


@dataclass
class Choice:
    """One value ``set p2pmem=<TAB>`` offers, with what to show next to it."""

    value: str
    note: str
    rank: int


@dataclass
class NsFacts:
    """A namespace's p2p situation: its backing NVMe and the NICs a host would use."""

    nvme: NvmeNamespace | None
    controller: NvmeController | None
    block: str | None                       # block device name, when device_path names one
    ports: list[profile.ResolvedPort] = field(default_factory=list)
    why_no_nvme: str | None = None

    @property
    def nic_clients(self) -> list[str]:
        out: list[str] = []
        for p in self.ports:
            out += [c for c in p.clients if c not in out]
        return out

    @property
    def clients(self) -> list[str]:
        return ([self.nvme.pci] if self.nvme and self.nvme.pci else []) + self.nic_clients


def _int(v: str | None) -> int | None:
    try:
        return int(v, 0) if v is not None else None
    except ValueError:
        return None


def fmt_size(n: int | None) -> str:
    return "?" if n is None else profile.format_size(max(0, n))


class P2pContext:
    """Inventory, verdict and ranking caches for one shell session."""

    def __init__(self, root: str = "/", inventory: Inventory | None = None,
                 kernel: str | None = None, progress=None):
        self.root = root
        self.kernel = kernel
        self.progress = progress
        self._inv = inventory
        self._given = inventory is not None
        self.problem: str | None = None
        self._reset()

    def _reset(self) -> None:
        self._oracle: distance.P2pdma | None = None
        self._links: dict[str, str] | None = None
        self._blocks: dict[str, str | None] = {}
        self._ports: dict[tuple, profile.ResolvedPort] = {}
        self._rank: dict[tuple, placement.Placement] = {}
        self._assigned = ByNamespace(self._contribution)

    # -- the machine ---------------------------------------------------------------------------
    @property
    def inv(self) -> Inventory:
        if self._inv is None:
            if self.progress:
                self.progress("reading the machine's inventory (PCI tree, p2pmem pools, RDMA)")
            try:
                self._inv = read_inventory(self.root)
            except (NvmetP2PError, OSError) as exc:
                # the shell still edits configfs; it just knows nothing about the machine
                self.problem = f"cannot read the machine below {self.root}: {exc}"
                self._inv = Inventory(source=self.root, warnings=[self.problem])
        return self._inv

    def reload(self) -> None:
        if not self._given:
            self._inv = None
        self._reset()

    @property
    def oracle(self) -> distance.P2pdma:
        if self._oracle is None:
            self._oracle = distance.P2pdma(self.inv, self.kernel)
        return self._oracle

    def by_id_links(self) -> dict[str, str]:
        """``/dev/disk/by-id`` NVMe names -> block device (what udev made)."""
        if self._links is None:
            self._links = profile.read_by_id_links(self.root)
        return self._links

    def available(self, bdf: str) -> int | None:
        """A provider's free p2pmem right now (sysfs), else what the inventory read."""
        try:
            with open(os.path.join(self.root, "sys/bus/pci/devices", bdf, "p2pmem/available")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            f = self.inv.pci.get(bdf)
            return f.p2pmem.available if f is not None and f.p2pmem else None

    def block_name(self, device_path: str) -> str | None:
        if device_path not in self._blocks:
            name = block_device_name(self.root, device_path)
            if name is None and device_path.startswith("/dev/disk/by-id/"):
                name = self.by_id_links().get(os.path.basename(device_path))
            if name is None and device_path.startswith("/dev/"):
                base = device_path[5:]
                name = base if base in self.inv.namespaces else None
            self._blocks[device_path] = name
        return self._blocks[device_path]

    # -- a namespace's clients -----------------------------------------------------------------
    def port(self, p: Port) -> profile.ResolvedPort:
        """A live port as placement sees it: the p2p clients behind its address."""
        a = p.attrs
        key = (p.portid, a.get("addr_trtype"), a.get("addr_traddr"), a.get("param_mdts"),
               a.get("param_max_queue_size"))
        got = self._ports.get(key)
        if got is None:
            got = self._ports[key] = self._resolve_port(p)
        return got

    def _resolve_port(self, p: Port) -> profile.ResolvedPort:
        a = p.attrs
        tr, addr = a.get("addr_trtype", ""), a.get("addr_traddr", "")
        params = {k: v for k, v in a.items() if k.startswith("param_") and (_int(v) or 0) > 0}
        rp = profile.ResolvedPort(portid=p.portid, transport=tr or "?", address=addr,
                                  adrfam=a.get("addr_adrfam", ""), trsvcid=_int(a.get("addr_trsvcid")) or 0,
                                  netdev=None, rdma=None, params=params)
        if tr != "rdma":
            rp.note = (f"{tr or 'no transport set'}: only nvmet-rdma uses p2pmem; data through "
                       "this port goes through host memory")
            return rp
        devs = rdma_devices_for_address(addr, self.inv)
        pci = sorted({d.pci for d in devs if d.pci and not d.soft}, key=bdf_sort_key)
        if not devs:
            rp.note = f"no RDMA device serves {addr or '(no address)'}: the port cannot listen"
        elif addr in ("0.0.0.0", "::"):
            rp.clients = pci
            rp.note = (f"rdma on {addr}: any RDMA NIC may carry a connection, so every PCI RDMA "
                       f"NIC is a client ({', '.join(pci) or 'none'})")
        elif not pci:
            d = devs[0]
            rp.rdma = d
            rp.note = (f"{d.name} is soft RDMA ({d.driver or 'virtual DMA'}): nvmet-rdma sets no "
                       "p2p client for it, so fabric I/O through this port uses host memory")
        else:
            rp.rdma = next(d for d in devs if d.pci == pci[0])
            rp.clients = pci
        return rp

    def facts(self, view: TargetState, nqn: str, nsid: int) -> NsFacts:
        ns = view.subsystems[nqn].namespaces[nsid]
        path = ns.attrs.get("device_path", "")
        ports = [self.port(p) for _, p in sorted(view.ports.items()) if nqn in p.subsystems]
        if not path:
            return NsFacts(None, None, None, ports, "device_path is not set")
        block = self.block_name(path)
        nv = self.inv.namespaces.get(block or "")
        if nv is None:
            return NsFacts(None, None, block, ports,
                           f"{path} is not an NVMe namespace of this machine: the kernel refuses "
                           "p2pmem for it when the namespace is enabled (EINVAL, "
                           "nvmet_p2pmem_ns_enable())")
        ctrl = self.inv.nvme.get(nv.controller or "")
        why = None
        if nv.pci is None or ctrl is None:
            why = (f"{nv.name} has no PCI parent (native-multipath head or fabrics): the kernel "
                   "refuses it as a p2p client (EINVAL at enable)")
        return NsFacts(nv, ctrl, block, ports, why)

    # -- budgets -------------------------------------------------------------------------------
    def budget(self, view: TargetState, nqn: str, ports: list[profile.ResolvedPort]
               ) -> tuple[dict[str, int], int]:
        """The budget placement plans for a namespace of ``nqn`` (the profile format's default:
        hosts x queues x queue_depth x io_size, bounded by ``attr_qid_max`` and the ports'
        queue and transfer sizes) and its in-flight bytes; 0 bytes when no port has a p2p
        client (nothing is ever in flight through p2pmem then)."""
        e = dict(BUDGET)
        qid = _int(view.subsystems[nqn].attrs.get("attr_qid_max"))
        e["queues"] = min(e["queues"], qid or profile.MAX_QUEUES)
        p2p_ports = [p for p in ports if p.clients]
        for p in p2p_ports:
            if p.max_queue_size:
                e["queue_depth"] = min(e["queue_depth"], p.max_queue_size)
            if p.max_io:
                e["io_size"] = min(e["io_size"], p.max_io)
        if not p2p_ports:
            return e, 0
        return e, e["hosts"] * e["queues"] * e["queue_depth"] * e["io_size"]

    def _contribution(self, view: TargetState, nqn: str, nsid: int) -> dict[str, int]:
        """Budget bytes an enabled namespace with a pinned provider takes from its pool."""
        ns = view.subsystems[nqn].namespaces[nsid]
        v = ns.attrs.get("p2pmem", "0")
        bdf = distance.normalize_bdf(v) if ns.enable and len(v) >= 12 else None
        if bdf is None:
            return {}
        ports = [self.port(p) for p in view.ports.values() if nqn in p.subsystems]
        dem = self.budget(view, nqn, ports)[1]
        return {bdf: dem} if dem else {}

    def assigned(self, session) -> dict[str, int]:
        """What the view's namespaces with a pinned provider take from each pool, updated
        for the subsystems each change touched (not rescanned per keypress or per change)."""
        return self._assigned.get(session)

    # -- ranking -------------------------------------------------------------------------------
    def rank(self, session, nqn: str, nsid: int
             ) -> tuple[NsFacts, placement.Placement | None]:
        """Placement's answer for this one namespace (``None`` when it has no PCI NVMe)."""
        view = session.view
        f = self.facts(view, nqn, nsid)
        if f.nvme is None or f.why_no_nvme:
            return f, None
        ns = view.subsystems[nqn].namespaces[nsid]
        eff, dem = self.budget(view, nqn, f.ports)
        taken = dict(self.assigned(session))
        mine = distance.normalize_bdf(ns.attrs.get("p2pmem", "0"))
        if mine and ns.enable and mine in taken:
            taken[mine] -= dem                       # its own budget is not someone else's
        avail = {p.bdf: self.available(p.bdf) for p in self.inv.providers()}
        key = (nqn, nsid, f.nvme.name, tuple(f.clients), tuple(p.note or "" for p in f.ports),
               dem, tuple(sorted(taken.items())), tuple(sorted(avail.items())))
        got = self._rank.get(key)
        if got is None:
            if len(self._rank) > 512:
                self._rank.clear()
            rn = profile.ResolvedNamespace(
                subsystem=nqn, nsid=nsid, ns=f.nvme, controller=f.controller, ports=f.ports,
                policy="placed", pinned=None, require="any", numa="prefer", when_full="share",
                when_none="error", budget=dict(BUDGET), effective=eff, demand=dem)
            res = profile.Resolved(file="shell", hosts={}, ports={p.portid: p for p in f.ports},
                                   subsystems=[profile.ResolvedSubsystem(
                                       nqn, {}, [], [p.portid for p in f.ports], [rn])])
            got = self._rank[key] = placement.place(res, self._with_free(avail, taken),
                                                     self.kernel, explain=True)
        return f, got

    def _with_free(self, avail: dict[str, int | None], taken: dict[str, int]) -> Inventory:
        """The inventory with each pool's ``available`` as read now, minus ``taken``."""
        inv = copy.copy(self.inv)
        inv.pci = dict(inv.pci)
        for bdf, a in avail.items():
            fn = copy.copy(inv.pci[bdf])
            base = fn.p2pmem.available if a is None else a
            fn.p2pmem = dataclasses.replace(fn.p2pmem, available=base - taken.get(bdf, 0))
            inv.pci[bdf] = fn
        return inv

    def choices(self, session, nqn: str, nsid: int) -> tuple[list[Choice], list[str]]:
        """What ``set p2pmem=<TAB>`` offers, best first, and header lines (clients, refusals)."""
        f, pl = self.rank(session, nqn, nsid)
        head = [clients_line(f)]
        out: list[Choice] = []
        if pl is None:
            head.append(f.why_no_nvme or "no PCI NVMe behind this namespace")
            return [Choice("0", "off: the only value the kernel accepts for this device", 1)], head
        d = pl.decisions[0]
        for c in d.candidates:
            size = self.inv.pci[c.provider].p2pmem.size
            bits = [f"{c.map_type} distance {c.distance}"]
            if c.own_cmb:
                bits.append("own CMB")
            bits.append(f"{fmt_size(c.free)} free of {fmt_size(size)}")
            if d.demand and not c.fits:
                bits.append(f"full for a {fmt_size(d.demand)} budget")
            out.append(Choice(c.provider, ", ".join(bits), len(out) + 1))
        if d.error:
            head.append(d.error)
        refused = [c.provider for c in d.rejected]
        if refused:
            head.append(f"not offered (the kernel refuses them here; `explain` says why): "
                        f"{', '.join(refused)}")
        fm = self.oracle.find_many([f.nvme.pci])
        if fm.ties:
            many = f"among {len(fm.ties)} providers" if len(fm.ties) > 1 else f"{fm.ties[0]}"
            out.append(Choice("1", f"the kernel picks {many} at distance {fm.best_distance}, "
                                   "per host connection", len(out) + 1))
        out.append(Choice("0", "off: data buffers in host memory", len(out) + 1))
        return out, head

    # -- verdict of the configured value -------------------------------------------------------
    def verdict(self, view: TargetState, nqn: str, nsid: int) -> "Verdict":
        ns = view.subsystems[nqn].namespaces[nsid]
        raw = ns.attrs.get("p2pmem", "0").strip() or "0"
        bdf = distance.normalize_bdf(raw)
        if bdf is None:
            on = raw == "1" or (raw not in ("0",) and bool(kbool(raw)))
            if not on:
                return Verdict("p2p off", None, ["p2pmem=0: data buffers in host memory"])
        f = self.facts(view, nqn, nsid)
        if f.nvme is None or f.why_no_nvme:
            why = f.why_no_nvme or "no PCI NVMe behind this namespace"
            return Verdict(f"p2pmem={raw} REFUSED at enable", False, [why])
        if bdf is None:
            return self._auto_verdict(f)
        try:
            v = self.oracle.distance_many(bdf, f.clients)
        except Exception as exc:      # an unknown BDF: the kernel's ENODEV, in words
            return Verdict(f"p2pmem={bdf} REFUSED (ENODEV)", False, [str(exc)])
        if not v.provider_has_p2pmem or not v.provider_published:
            return Verdict(f"p2pmem={bdf} REFUSED (ENODEV)", False, v.reasons[-1:])
        nvme_pair, nic_pairs = v.pairs[0], v.pairs[1:]
        if nvme_pair.map_type == MapType.NOT_SUPPORTED:
            return Verdict(f"p2pmem={bdf} REFUSED at enable (not_supported)", False,
                           nvme_pair.reasons + ([f"fix: {v.kernel_parameter}"]
                                                if v.kernel_parameter else []))
        lines = [f"{p.client.name}: {'; '.join(p.reasons)}" for p in v.pairs if p.reasons]
        bad = [p.client.name for p in nic_pairs if p.map_type == MapType.NOT_SUPPORTED]
        if bad:
            return Verdict(f"p2pmem={bdf} {nvme_pair.map_type} distance {nvme_pair.distance}; "
                           f"NOT via {', '.join(bad)}", False,
                           lines + [f"connections through {', '.join(bad)} use host memory"])
        return Verdict(f"p2pmem={bdf} {v.map_type} distance {v.distance}", True, lines)

    def _auto_verdict(self, f: NsFacts) -> "Verdict":
        fm = self.oracle.find_many([f.nvme.pci])
        if not fm.ties:
            return Verdict("p2pmem=1 REFUSED at enable", False,
                           fm.reasons + [f"the kernel logs 'no peer-to-peer memory is available "
                                         f"for {f.nvme.device_path}' and enable fails (EINVAL)"])
        lines = list(fm.reasons)
        return Verdict(f"p2pmem=1 kernel picks ({len(fm.ties)} at distance {fm.best_distance})",
                       True, lines)

    # -- names to complete ---------------------------------------------------------------------
    def device_choices(self, used: dict[str, int]) -> list[Choice]:
        """Block devices to export, stable ``/dev/disk/by-id`` names first; ``used`` counts
        the view's namespaces on each device path."""
        links = self.by_id_links()
        out: list[Choice] = []
        for name, nv in sorted(self.inv.namespaces.items()):
            ctrl = self.inv.nvme.get(nv.controller or "")
            prov = self.inv.pci.get(nv.pci or "")
            bits = [name]
            if ctrl is not None:
                bits.append(f"{ctrl.serial.strip()}/{nv.nsid}")
            bits.append(fmt_size(nv.size_bytes))
            if prov is not None and prov.p2pmem is not None:
                bits.append(f"own CMB {nv.pci}")
            if nv.pci is None:
                bits.append("no PCI parent: no p2pmem")
            stable = profile.stable_by_id_name(name, links)
            paths = ([f"/dev/disk/by-id/{stable}"] if stable else []) + [nv.device_path]
            for p in paths:
                n = used.get(p, 0)
                note = ", ".join(bits + ([f"in {n} namespace{'s' if n != 1 else ''} already"]
                                         if n else []))
                if p.startswith("/dev/nvme") and stable:
                    note += " (this name can change at boot; the by-id name does not)"
                out.append(Choice(p, note, len(out) + 1))
        return out

    def address_choices(self) -> list[Choice]:
        """IP addresses of this machine, with the RDMA device that would carry each."""
        out: list[Choice] = []
        for nd in sorted(self.inv.net.values(), key=lambda n: n.name):
            for cidr in nd.addresses:
                ip = cidr.split("/")[0]
                if ip.startswith("fe80:") or ip.startswith("127.") or ip == "::1":
                    continue
                devs = rdma_devices_for_address(ip, self.inv)
                what = ", ".join(f"{d.name} ({'soft RDMA: no p2p' if d.soft or not d.pci else d.pci})"
                                 for d in devs) or "no RDMA device (tcp only)"
                out.append(Choice(ip, f"{nd.name}: {what}", len(out) + 1))
        return out


class ByNamespace:
    """Counts over the view's namespaces (``compute(view, nqn, nsid) -> {key: n}``), kept per
    namespace with a running total: after a change only the namespaces it touched
    (``Session.changed_since``) are computed again, so the cost follows the change, not the
    size of the target."""

    def __init__(self, compute):
        self.compute = compute
        self.gen: int | None = None
        self.parts: dict[tuple, dict] = {}
        self.total: dict = {}

    def _put(self, view, key) -> None:
        for k, v in self.parts.pop(key, {}).items():
            self.total[k] -= v
            if not self.total[k]:
                del self.total[k]
        sub = view.subsystems.get(key[0])
        if sub is None or key[1] not in sub.namespaces:
            return
        part = self.compute(view, *key)
        if part:
            self.parts[key] = part
            for k, v in part.items():
                self.total[k] = self.total.get(k, 0) + v

    def get(self, session) -> dict:
        view, gen = session.view, session.generation
        if self.gen == gen:
            return self.total
        scope = None if self.gen is None else session.changed_since(self.gen)
        if scope is None:
            self.parts, self.total = {}, {}
            keys = [(n, i) for n, sub in view.subsystems.items() for i in sub.namespaces]
        else:
            keys = set()
            for s in scope:
                if isinstance(s, tuple):
                    keys.add(s)
                else:                                   # a whole subsystem
                    keys |= {k for k in self.parts if k[0] == s}
                    sub = view.subsystems.get(s)
                    keys |= {(s, i) for i in (sub.namespaces if sub else ())}
        for key in keys:
            self._put(view, key)
        self.gen = gen
        return self.total


@dataclass
class Verdict:
    """What ``ls`` shows for a namespace's configured p2pmem: a short text for the tree line,
    health (True ok, False the kernel refuses part or all, None off) and detail lines."""

    short: str
    health: bool | None
    lines: list[str]


def kbool(v: str) -> bool | None:
    return kstrtobool(v)


def clients_line(f: NsFacts) -> str:
    bits = []
    if f.nvme is not None and f.nvme.pci:
        bits.append(f"NVMe {f.nvme.pci} ({f.nvme.name})")
    for p in f.ports:
        if p.clients:
            bits.append(f"port {p.portid} NIC {', '.join(p.clients)}")
        else:
            bits.append(f"port {p.portid}: {p.note}")
    if not f.ports:
        bits.append("no port exports this subsystem yet (only the NVMe is a client)")
    return "p2p clients: " + "; ".join(bits)
