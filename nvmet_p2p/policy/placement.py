"""Placement: choose the p2pmem provider of every exported namespace, and say why.

Pure logic: a :class:`~nvmet_p2p.policy.profile.Resolved` profile plus the machine's
:class:`~nvmet_p2p.pci.model.Inventory` in, a :class:`~nvmet_p2p.nvmet.state.TargetState` (the configfs
tree to reach) plus one :class:`Decision` per namespace out. Nothing here reads or writes files.

In ``p2pmem=1`` ("auto") mode the kernel picks a provider per host connection, uniformly at
random among the published providers at the smallest summed distance. It cannot tell a switch
path from a path through the root complex, ignores free capacity and NUMA, and when the pool
runs out every further request silently uses host memory. nvmet-p2p decides once, the same way
every time, and writes the chosen BDF into the namespace's ``p2pmem`` attribute.

The p2p clients of a namespace are its NVMe (the kernel checks provider <-> NVMe when the
namespace is enabled) and the RDMA NIC behind each of its ports (checked per host connection;
soft RDMA and TCP have none). The kernel's verdict for a provider and a set of clients comes
from :mod:`nvmet_p2p.pci.distance`, never from a copy of its rules.

Candidates are published providers the kernel accepts for all clients (with ``require:
bus_addr``, only those whose every path stays below the root complex). Among the candidates
with room for the namespace's budget, the rank is:

1. ``bus_addr`` before ``thru_host_bridge`` (no trip through the root complex); with several
   NICs, fewer client paths through the root complex first;
2. the namespace's own CMB;
3. smaller summed distance (the kernel's own number);
4. fewer clients on another NUMA node than the provider;
5. more free capacity after what this plan already assigned;
6. lower BDF (so the same input always gives the same plan).

"Room" comes first: a provider is never oversubscribed while another candidate has room. When
none has, ``when_full`` decides (share the candidate that leaves the fewest bytes to fall back,
switch p2p off, or refuse) and the decision names the knobs that would bound the demand.
Namespaces are placed most-constrained first (own CMB, then fewest candidates, then largest
budget), in phases: first every namespace that fits in its own best rank group, then every
namespace that fits anywhere, and only then the ones that fit nowhere share (again their best
group first). So one namespace's second choice never takes the room that was another's first,
and nothing is shared while something could still fit.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p import exits
from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet.state import Host, Namespace, Port, Subsystem, TargetState
from nvmet_p2p.output import safe_lines
from nvmet_p2p.pci import distance
from nvmet_p2p.pci.model import Inventory, bdf_sort_key
from nvmet_p2p.pci.p2pdma_rules import MapType
from nvmet_p2p.policy import ana
from nvmet_p2p.policy import profile as _profile
from nvmet_p2p.policy.profile import Resolved, ResolvedNamespace
from nvmet_p2p.policy.schema import format_size


class PlacementError(NvmetP2PError):
    """The profile cannot be placed on this machine (``when_none``/``when_full: error``)."""

    exit_status = exits.USAGE

    def __init__(self, placement: "Placement"):
        self.placement = placement
        lines = [f"{placement.file}: {len(placement.errors)} namespace(s) cannot be placed "
                 "(nothing was changed)"]
        lines += [f"  {e}" for e in placement.errors]
        super().__init__("\n".join(lines))


@dataclass
class Candidate:
    """One provider considered for one namespace."""

    provider: str
    map_type: str
    distance: int
    own_cmb: bool
    numa_mismatch: int
    available: int                   # the pool's ``available`` when the inventory was read
    free: int                        # available minus what this plan assigned before
    fits: bool
    reasons: list[str] = field(default_factory=list)
    kernel_parameter: str | None = None
    host_bridge_paths: int = 0       # clients reached through the root complex
    rank: int | None = None          # 1 = chosen; None = not a candidate (rejected)
    lost: str | None = None          # why it is not the choice

    def to_dict(self) -> dict:
        return {"provider": self.provider, "rank": self.rank, "map_type": self.map_type,
                "host_bridge_paths": self.host_bridge_paths,
                "distance": self.distance, "own_cmb": self.own_cmb,
                "numa_mismatch": self.numa_mismatch, "available": self.available,
                "free": self.free, "fits": self.fits, "lost": self.lost,
                "reasons": list(self.reasons), "kernel_parameter": self.kernel_parameter}


@dataclass
class PortPath:
    """One port of a namespace, as a host connection through it will find it: the kernel
    checks the namespace's provider against *that connection's* NIC when the host connects
    (``nvmet_p2pmem_ns_add_p2p()``, per controller;
    docs/multipath.md#per-controller-p2p-what-the-kernel-decides-at-connect)."""

    portid: int
    label: str
    nics: list[str]                  # the port's RDMA NIC(s) (PCI BDF); empty: no p2p client
    offloads: bool                   # a connection through it gets a p2p mapping
    providers: list[str]             # providers the kernel accepts for these NIC(s) + the NVMe
    kernel_picks: list[str]          # p2pmem=1: what pci_p2pmem_find_many() picks from
    map_type: str | None             # the chosen provider's verdict for this port's clients
    reason: str
    ana_state: str | None = None     # multipath: p2p: this port's state for the namespace
    detail: str | None = None        # the kernel's reasons for a refusal (explain)

    def to_dict(self) -> dict:
        return {"port": self.portid, "nics": list(self.nics), "offloads": self.offloads,
                "providers": list(self.providers), "kernel_picks": list(self.kernel_picks),
                "map_type": self.map_type, "reason": self.reason, "detail": self.detail,
                "ana_state": self.ana_state}


@dataclass
class Decision:
    """What one namespace gets, and why."""

    namespace: ResolvedNamespace
    p2pmem: str                      # what goes into configfs: "0", "1" or a BDF
    provider: str | None             # the chosen provider (pinned or placed)
    status: str                      # placed | pinned | kernel | off | shared | fallback | error
    clients: list[str]               # PCI BDFs: the NVMe, then each NIC
    demand: int
    summary: str
    notes: list[str] = field(default_factory=list)
    knob_room: int | None = None     # set when no candidate had room: what the best had
    candidates: list[Candidate] = field(default_factory=list)   # ranked, chosen first
    rejected: list[Candidate] = field(default_factory=list)     # the kernel (or require) refuses
    map_type: str | None = None
    error: str | None = None
    step: int = 0                    # when it was decided (capacity is what was left then)
    paths: list[PortPath] = field(default_factory=list)   # per port (several ports / multipath)

    @property
    def label(self) -> str:
        return self.namespace.label

    @property
    def knobs(self) -> list[str]:
        """Settings that would bound the budget to what the best candidate has free (only
        when no candidate had room); computed when asked."""
        return [] if self.knob_room is None else _knobs(self.namespace, self.knob_room)

    def to_dict(self) -> dict:
        ns = self.namespace
        return {
            "subsystem": ns.subsystem, "nsid": ns.nsid, "device_path": ns.device_path,
            "serial": ns.controller.serial.strip(), "backing_nsid": ns.ns.nsid,
            "nvme": ns.nvme_pci, "ports": [p.portid for p in ns.ports],
            "policy": ns.policy, "require": ns.require, "p2pmem": self.p2pmem,
            "provider": self.provider, "map_type": self.map_type, "status": self.status,
            "clients": list(self.clients), "demand": self.demand,
            "budget": dict(ns.effective), "summary": self.summary, "notes": list(self.notes),
            "knobs": list(self.knobs), "error": self.error, "step": self.step,
            "candidates": [c.to_dict() for c in self.candidates],
            "rejected": [c.to_dict() for c in self.rejected],
            "multipath": ns.multipath,
            "paths": [p.to_dict() for p in self.paths],
        }


@dataclass
class Placement:
    file: str
    state: TargetState
    decisions: list[Decision]
    usage: dict[str, dict[str, int]]         # provider -> available, assigned
    kernel: str
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ana: ana.AnaPlan | None = None           # multipath: p2p subsystems' ANA groups

    def to_dict(self) -> dict:
        return {"profile": self.file, "kernel": self.kernel,
                "decisions": [d.to_dict() for d in self.decisions],
                "providers": {k: dict(v) for k, v in self.usage.items()},
                "ana": self.ana.to_dict() if self.ana else None,
                "warnings": list(self.warnings), "errors": list(self.errors)}


# =============================================================================================
# The kernel's verdicts, computed once per (provider, clients)
# =============================================================================================

class _Oracle:
    """:class:`nvmet_p2p.pci.distance.P2pdma` with a cache of ``distance_many`` per client set."""

    def __init__(self, inv: Inventory, kernel: str | None):
        self.p2p = distance.P2pdma(inv, kernel)
        self.kernel = self.p2p.kernel
        self._many: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._clients: dict[str, Any] = {}
        self._found: dict[tuple[str, ...], Any] = {}

    def client(self, bdf: str):
        c = self._clients.get(bdf)
        if c is None:
            c = self._clients[bdf] = distance.resolve_client(self.p2p.inv, bdf)
        return c

    def many(self, provider: str, clients: tuple[str, ...]):
        key = (provider, clients)
        v = self._many.get(key)
        if v is None:
            v = self._many[key] = self.p2p.distance_many(provider,
                                                         [self.client(c) for c in clients])
        return v

    def find_many(self, clients: list[str]):
        key = tuple(clients)
        v = self._found.get(key)
        if v is None:
            v = self._found[key] = self.p2p.find_many([self.client(c) for c in clients])
        return v


@dataclass
class _Static:
    """A candidate's capacity-independent rank for one client set."""

    key: tuple
    provider: str
    verdict: Any
    own: bool
    numa: int
    thb: int                         # client paths that cross the root complex
    order: tuple = ()                # (key, BDF key): the full static order


# =============================================================================================
# Placement
# =============================================================================================

def place(res: Resolved, inv: Inventory, kernel: str | None = None, *,
          explain: bool = True, live=None) -> Placement:
    """Place every namespace of ``res`` on ``inv``; see the module docstring for the rules.

    ``explain=False`` skips the per-candidate explanation (the choice is the same), for
    planning very large profiles fast. ``live`` (the target as it is, or a function reading
    it, called only when a subsystem has ``multipath: p2p``) only keeps ANA group ids stable
    across applies and away from other namespaces' groups
    (:func:`nvmet_p2p.policy.ana.assign`)."""
    pl = _Placer(inv, kernel, explain)
    todo = pl.fixed(res.namespaces)
    pl.phased(todo)
    ordered = [pl.decisions[i] for i in range(len(res.namespaces))]
    for step, i in enumerate(pl.decisions, 1):   # dict order = the order decisions were made
        pl.decisions[i].step = step
    errors: list[str] = []
    for d in ordered:
        if _needs_paths(d.namespace):
            d.paths = port_paths(d.namespace, d.p2pmem, pl.oracle, pl.providers)
        if d.error:
            where = d.namespace.where
            errors.append(f"{where}: {d.label}: {d.error}" if where else f"{d.label}: {d.error}")
    usage = {b: {"available": pl.avail[b], "assigned": pl.assigned[b]} for b in pl.providers}
    state = _state(res, ordered)
    ana_plan = None
    if any(s.multipath == "p2p" for s in res.subsystems) and not errors:
        try:
            ana_plan = _ana(res, ordered, state, live() if callable(live) else live)
        except ana.AnaError as exc:
            errors.append(str(exc))
    return Placement(file=res.file, state=state, decisions=ordered, usage=usage,
                     kernel=pl.oracle.kernel, warnings=[str(w) for w in res.warnings],
                     errors=errors, ana=ana_plan)


def _needs_paths(ns: ResolvedNamespace) -> bool:
    """Per-port paths are worked out for namespaces of ``multipath: p2p`` subsystems and for
    every namespace a host can reach through more than one port with a p2p client."""
    return ns.multipath == "p2p" or sum(1 for p in ns.ports if p.clients) > 1


def port_paths(ns: ResolvedNamespace, p2pmem: str, oracle: "_Oracle",
               providers: list[str]) -> list[PortPath]:
    """What a host connection through each of the namespace's ports will get
    (:func:`path_verdict` per port)."""
    return [path_verdict(PathPort(port.portid, port.label, list(port.clients), port.note),
                         ns.nvme_pci, p2pmem, oracle, providers) for port in ns.ports]


@dataclass(frozen=True)
class PathPort:
    """A port as :func:`path_verdict` judges it: its id, how to name it, its p2p client
    NIC(s), and why it has none when it has none (``note``)."""
    portid: int
    label: str
    nics: list[str]
    note: str | None = None


def path_verdict(port: PathPort, nvme: str | None, p2pmem: str,
                 oracle: "_Oracle", providers: list[str]) -> PortPath:
    """One port of a namespace (NVMe ``nvme``) whose NIC(s) are ``port.nics``: the kernel
    checks an explicit provider against that connection's NIC at connect (and skips p2p when
    it refuses the pair), and in auto mode picks among the providers at the smallest summed
    distance to the NIC and the NVMe (``pci_p2pmem_find_many()``, at random). ``providers``:
    the published providers on the bus; a ``p2pmem`` naming another device does not offload."""
    nics = port.nics
    pp = PortPath(port.portid, port.label, nics, False, [], [], None, "")
    if not nvme or not nics:
        pp.reason = port.note or "no p2p client on this port (host memory)"
        return pp
    pp.providers = [b for b in providers
                    if oracle.many(b, (nvme, *nics)).map_type != MapType.NOT_SUPPORTED]
    found = [oracle.find_many([nvme, nic]) for nic in nics]
    pp.kernel_picks = sorted({t for f in found for t in f.ties}, key=bdf_sort_key)
    if p2pmem in ("0", ""):
        pp.reason = "p2pmem 0: host memory"
    elif p2pmem == "1":
        pp.offloads = all(f.ties for f in found)
        pp.reason = (f"auto: the kernel picks among {', '.join(pp.kernel_picks)} per "
                     "connection" if pp.offloads else
                     "auto: no provider serves this NIC and the NVMe: the kernel logs 'no "
                     "peer-to-peer memory is available that's supported by ...' and uses "
                     "host memory")
    elif p2pmem not in providers:
        pp.reason = (f"{p2pmem} is not a published provider on the PCI bus: the kernel serves "
                     "the namespace from host memory")
    else:
        v = oracle.many(p2pmem, (nvme, *nics))
        pp.map_type = v.map_type
        pp.offloads = v.map_type != MapType.NOT_SUPPORTED
        if pp.offloads:
            pp.reason = f"{p2pmem} serves this NIC ({v.map_type})"
        else:
            bad = [pv for pv in v.pairs if pv.map_type == MapType.NOT_SUPPORTED]
            pp.reason = (f"the kernel refuses {p2pmem} for "
                         + " and ".join(pv.client.name for pv in bad)
                         + " at connect: host memory")
            pp.detail = " | ".join(f"{pv.client.name}: {'; '.join(pv.reasons)}" for pv in bad)
    return pp


class Oracle(_Oracle):
    """The kernel's p2pdma verdicts for one inventory, cached (what :func:`path_verdict`
    asks); with the published providers of the inventory."""

    def __init__(self, inv: Inventory, kernel: str | None = None):
        super().__init__(inv, kernel)
        self.providers = [f.bdf for f in inv.providers(published_only=True)]


def _ana(res: Resolved, decisions: list[Decision], state: TargetState,
         live: TargetState | None) -> ana.AnaPlan:
    """ANA groups of the ``multipath: p2p`` subsystems from their namespaces' per-port paths
    (the other subsystems' namespaces are left in whatever group they are)."""
    nspaths = []
    for d in decisions:
        ns = d.namespace
        if ns.multipath != "p2p":
            continue
        nspaths.append(ana.NsPaths(ns.subsystem, ns.nsid,
                                   {pp.portid: pp.offloads for pp in d.paths}))
    plan = ana.assign(nspaths, live)
    ana.apply_to(state, plan)
    for d in decisions:
        for pp in d.paths:
            pp.ana_state = plan.state_of(d.namespace.subsystem, d.namespace.nsid, pp.portid)
    return plan


class _Placer:
    """One :func:`place` run: the providers, what the plan has assigned to each so far, and
    the decisions made."""

    def __init__(self, inv: Inventory, kernel: str | None, explain: bool):
        self.oracle = _Oracle(inv, kernel)
        self.explain = explain
        self.providers = [f.bdf for f in inv.providers(published_only=True)]
        self.unpublished = [f.bdf for f in inv.providers(published_only=False)
                            if not f.p2pmem.published]
        self.avail = {b: max(0, inv.pci[b].p2pmem.available) for b in self.providers}
        self.assigned = {b: 0 for b in self.providers}
        self.numa = {b: f.numa_node for b, f in inv.pci.items()}
        self.bdfkey = {b: bdf_sort_key(b) for b in self.providers}
        self.statics: dict[tuple[str, tuple[str, ...], str, str], list[_Static]] = {}
        self.decisions: dict[int, Decision] = {}

    def ranked(self, ns: ResolvedNamespace, clients: tuple[str, ...]) -> list[_Static]:
        """Accepted providers for ``clients`` in capacity-independent rank order: every path
        below the root complex, own CMB, the kernel's distance, clients on another NUMA node,
        BDF (rules 1-4 and 6; free capacity, rule 5, is weighed when choosing)."""
        key = (ns.nvme_pci or "", clients, ns.require, ns.numa)
        got = self.statics.get(key)
        if got is not None:
            return got
        got, numa = [], self.numa
        for p in self.providers:
            v = self.oracle.many(p, clients)
            if v.map_type == MapType.NOT_SUPPORTED:
                continue
            if ns.require == MapType.BUS_ADDR and v.map_type != MapType.BUS_ADDR:
                continue
            own = p == ns.nvme_pci
            mism = sum(1 for c in clients if numa.get(c) is not None
                       and numa.get(p) is not None and numa[c] != numa[p])
            if mism and ns.numa == "strict":
                continue
            thb = sum(1 for pv in v.pairs if pv.map_type != MapType.BUS_ADDR)
            rank = (thb, not own, v.distance, mism)
            got.append(_Static(key=rank, provider=p, verdict=v, own=own, numa=mism,
                               thb=thb, order=(rank, self.bdfkey[p])))
        got.sort(key=lambda s: s.order)
        self.statics[key] = got
        return got

    def fixed(self, all_ns: list[ResolvedNamespace]) -> list[tuple]:
        """1. Fixed choices first: off, kernel, pinned (pins consume capacity whatever we do).
        Returns the placed namespaces, most constrained first."""
        todo: list[tuple[tuple, int, ResolvedNamespace, tuple[str, ...]]] = []
        for i, ns in enumerate(all_ns):
            clients = tuple([ns.nvme_pci] + ns.nic_clients) if ns.nvme_pci else ()
            if ns.policy == "off":
                self.decisions[i] = Decision(ns, "0", None, "off", list(clients), 0,
                                             "p2p off (policy): data buffers in host memory")
            elif ns.policy == "kernel":
                self.decisions[i] = _kernel_mode(ns, clients, self.oracle, self.providers)
            elif ns.policy == "pinned":
                self.decisions[i] = _pinned(ns, clients, self.oracle, self.avail, self.assigned)
            else:
                if ns.multipath == "p2p" and clients:
                    clients, auto = self.multipath_clients(ns, clients)
                    if auto is not None:
                        self.decisions[i] = auto
                        continue
                rk = self.ranked(ns, clients)
                own = any(s.own for s in rk)
                todo.append(((not own, len(rk), -ns.demand, i), i, ns, clients))
        todo.sort(key=lambda t: t[0])
        return todo

    def multipath_clients(self, ns: ResolvedNamespace, clients: tuple[str, ...]
                          ) -> tuple[tuple[str, ...], Decision | None]:
        """``multipath: p2p``: the ports a provider can serve decide, not all of them. Returns
        the p2p clients to place for -- the NVMe and the NICs of the largest set of ports one
        provider serves (on a tie, the set whose best candidate ranks best) -- or, when the
        kernel's per-connection choice (``p2pmem=1``) serves more ports than any single
        provider, the auto-mode decision. With no port served the clients stay as they are
        (``when_none`` then decides)."""
        nvme = clients[0]
        nic_ports = [p for p in ns.ports if p.clients]
        per_port = {p.portid: {s.provider for s in self.ranked(ns, (nvme, *p.clients))}
                    for p in nic_ports}
        sets: dict[frozenset, None] = {}
        for s in self.ranked(ns, (nvme,)):
            served = frozenset(pid for pid, ok in per_port.items() if s.provider in ok)
            if served:
                sets.setdefault(served, None)
        best: tuple | None = None
        for served in sets:
            nics = tuple(c for p in nic_ports if p.portid in served for c in p.clients)
            rk = self.ranked(ns, (nvme, *dict.fromkeys(nics)))
            k = (-len(served), rk[0].order if rk else (), sorted(served))
            if rk and (best is None or k < best[0]):
                best = (k, (nvme, *dict.fromkeys(nics)), served)
        n_best = len(best[2]) if best else 0
        auto_served = [p.portid for p in nic_ports if self._auto_serves(ns, nvme, p.clients)]
        if len(auto_served) > n_best:
            return clients, self._auto(ns, clients, auto_served, n_best)
        return (best[1] if best else clients), None

    def _auto_serves(self, ns: ResolvedNamespace, nvme: str, nics: list[str]) -> bool:
        """Whether every connection through a port gets a provider in auto mode that the
        profile accepts: every NIC has one, and whichever tie the kernel picks satisfies
        ``require``."""
        for nic in nics:
            f = self.oracle.find_many([nvme, nic])
            if not f.ties:
                return False
            if ns.require == MapType.BUS_ADDR and any(
                    self.oracle.many(t, (nvme, nic)).map_type != MapType.BUS_ADDR for t in f.ties):
                return False
        return True

    def _auto(self, ns: ResolvedNamespace, clients: tuple[str, ...], served: list[int],
              n_best: int) -> Decision:
        d = _kernel_mode(ns, clients, self.oracle, self.providers)
        if d.status != "error":
            d.status = "auto"
            d.summary = (f"p2pmem=1: the kernel's choice per connection serves {len(served)} "
                         f"port(s) ({', '.join(map(str, served))}); any single provider serves at "
                         f"most {n_best} (the budget is not charged: the kernel picks the pool)")
        return d

    def phased(self, todo: list[tuple]) -> None:
        """2. Placed namespaces in phases (see _PHASES): everything that fits is placed before
        anything is shared, and at each stage a namespace's first choice goes before another
        namespace's second choice."""
        pending = []
        for _, i, ns, clients in todo:
            rk = self.ranked(ns, clients)
            if not clients or not rk:
                self.decisions[i] = self.placed(ns, clients, rk, None)
            else:
                pending.append((i, ns, clients, rk))
        for phase in _PHASES:
            rest = []
            for i, ns, clients, rk in pending:
                choice = _choose(phase, ns, rk, self.avail, self.assigned)
                if choice is None and phase != "share":
                    rest.append((i, ns, clients, rk))
                    continue
                self.decisions[i] = self.placed(ns, clients, rk, choice,
                                                shared=phase.startswith("share"))
            pending = rest

    def placed(self, ns: ResolvedNamespace, clients: tuple[str, ...], rk: list[_Static],
               choice: _Static | None, shared: bool = False) -> Decision:
        """The decision for one placed namespace, given the phase's ``choice`` (``shared``: no
        candidate had room; ``_NO_ROOM``: none had, and when_full is off or error)."""
        demand = ns.demand
        notes = _no_client_notes(ns)
        d = Decision(ns, "0", None, "placed", list(clients), demand, "", notes=notes)
        if not clients:
            d.status, d.error = "error", "no PCI NVMe behind this namespace"
            return d
        if not rk:
            return self.none_serves(d, ns, clients)

        if shared:
            # nobody has room: say so, name the knobs, then follow when_full
            best = rk[0]
            def free(s: _Static) -> int:
                return self.avail[s.provider] - self.assigned[s.provider]
            d.knob_room = max(0, free(best))
            short = (f"no candidate has room for the budget of {format_size(demand)} "
                     f"({_budget_text(ns)}); most free: "
                     + ", ".join(f"{s.provider} {format_size(max(0, free(s)))}"
                                 for s in heapq.nlargest(3, rk, key=free)))
            if choice is _NO_ROOM and ns.when_full == "error":
                d.status, d.error = "error", short + " (when_full: error)"
                if self.explain:
                    d.candidates = _explain(rk, None, demand, self.avail, self.assigned)
                return d
            if choice is _NO_ROOM:
                d.status, d.summary = "fallback", "p2p off: " + short + " (when_full: off)"
                d.notes.append(d.summary)
                if self.explain:
                    d.candidates = _explain(rk, None, demand, self.avail, self.assigned)
                return d
            over = _overflow(choice.provider, demand, self.avail, self.assigned)
            d.status = "shared"
            d.notes.append(short + f"; sharing {choice.provider}: about {format_size(over)} of the "
                           "budget would fall back to host memory, request by request (when_full: share)")

        if self.explain:
            d.candidates = _explain(rk, choice, demand, self.avail, self.assigned)
            d.rejected = self.rejected(ns, clients)
        self.assigned[choice.provider] += demand
        d.provider = d.p2pmem = choice.provider
        d.map_type = choice.verdict.map_type
        d.summary = _why(choice, len(rk), demand)
        return d

    def none_serves(self, d: Decision, ns: ResolvedNamespace, clients: tuple[str, ...]) -> Decision:
        """No provider is accepted for the NVMe and every NIC together: ``when_none`` decides."""
        nvme, nics = clients[0], list(clients[1:])
        req = " with require: bus_addr" if ns.require == MapType.BUS_ADDR else ""
        if ns.numa == "strict":
            req += (" and " if req else " with ") + "numa: strict"

        def ok(p: str, cl: tuple[str, ...]) -> bool:
            v = self.oracle.many(p, cl)
            if v.map_type == MapType.NOT_SUPPORTED or (ns.require == MapType.BUS_ADDR
                                                       and v.map_type != MapType.BUS_ADDR):
                return False
            return ns.numa != "strict" or not any(
                self.numa.get(c) is not None and self.numa.get(p) is not None and self.numa[c] != self.numa[p]
                for c in cl)

        for_nvme = [p for p in self.providers if ok(p, (nvme,))]
        why = self._why_none(nvme, nics, req, for_nvme, ok)
        if self.explain:
            d.rejected = self.rejected(ns, clients)
        if ns.when_none == "off" or (ns.when_none == "best_effort" and not for_nvme):
            d.status, d.summary = "fallback", f"p2p off: {why} (when_none: {ns.when_none})"
            d.notes.append(d.summary)
            return d
        if ns.when_none == "error":
            d.status = "error"
            d.error = (why + "; set p2p: off for it, or when_none: off / best_effort" +
                       (f", or relax{req.replace(' with', '')}" if req else ""))
            return d
        s, served = self._best_effort(ns, nvme, nics, for_nvme, ok)
        left_out = [n for n in nics if n not in served]
        # a budget is in-flight memory of connections through a NIC that can use the provider:
        # with none, nothing of it is charged (the plan's other namespaces keep that room)
        charge = ns.demand if served or not nics else 0
        self.assigned[s.provider] += charge
        d.provider = d.p2pmem = s.provider
        d.map_type = s.verdict.map_type
        d.status = "best_effort"
        d.summary = (f"{s.provider}: serves the NVMe and {len(served)} of {len(nics)} NIC(s); "
                     f"connections through {', '.join(left_out)} use host memory (when_none: "
                     "best_effort)")
        d.notes.append(why)
        if not charge and ns.demand:
            d.notes.append(f"no NIC of this namespace's ports can use {s.provider}: nothing of its "
                           f"budget ({format_size(ns.demand)}) is charged to it")
        if self.explain:
            d.candidates = _explain([s], s, charge, self.avail, {**self.assigned,
                                                            s.provider: self.assigned[s.provider] - charge})
        return d

    def _why_none(self, nvme, nics, req, for_nvme, ok) -> str:
        """Why no provider serves the NVMe and every NIC: none at all, none for the NVMe itself
        (with the kernel's reasons for the first provider), or, per NIC, the ones that would."""
        providers, unpublished, oracle = self.providers, self.unpublished, self.oracle
        if not providers:
            why = "this machine has no published p2pmem provider"
            if unpublished:
                why += f" ({', '.join(unpublished)} have unpublished pools)"
            return why
        if not for_nvme:
            v = oracle.many(providers[0], (nvme,))
            why = (f"no provider is accepted{req} for the NVMe {nvme} itself (e.g. {providers[0]}: "
                   f"{'; '.join(v.reasons) or v.map_type})")
            if v.kernel_parameter:
                why += f"; {v.kernel_parameter} would change that"
            return why
        per_nic = []
        for nic in nics:
            both = [p for p in for_nvme if ok(p, (nvme, nic))]
            per_nic.append(f"{nvme}+{nic}: {', '.join(both) or 'none'}")
        return (f"no single provider serves the NVMe and every port's NIC{req} "
                f"({'; '.join(per_nic)})")

    def _best_effort(self, ns, nvme, nics, for_nvme, ok):
        """``when_none: best_effort``: among the providers that serve the NVMe and the most NICs,
        the best-ranked one with room, else the least oversubscribed."""
        avail, assigned = self.avail, self.assigned
        best_n, best_set = -1, []
        for p in for_nvme:
            served = tuple(n for n in nics if ok(p, (nvme, n)))
            if len(served) > best_n:
                best_n, best_set = len(served), [(p, served)]
            elif len(served) == best_n:
                best_set.append((p, served))
        groups: dict[tuple[str, ...], list[str]] = {}
        for p, served in best_set:
            groups.setdefault(served, []).append(p)
        options = []
        for served, _ in groups.items():
            sub = self.ranked(ns, (nvme,) + served)
            options += [(s, served) for s in sub if s.provider in groups[served]]
        for s, served in sorted(options, key=lambda t: (t[0].key, bdf_sort_key(t[0].provider))):
            if avail[s.provider] - assigned[s.provider] >= (ns.demand if served else 0):
                return s, served
        return min(options, key=lambda t: (
            _overflow(t[0].provider, ns.demand, avail, assigned), t[0].key,
            _load_after(t[0].provider, ns.demand, avail, assigned),
            bdf_sort_key(t[0].provider)))

    def rejected(self, ns: ResolvedNamespace, clients: tuple[str, ...]) -> list[Candidate]:
        out = []
        for p in self.providers:
            v = self.oracle.many(p, clients)
            lost = None
            if v.map_type == MapType.NOT_SUPPORTED:
                bad = [f"{pv.client.name}: {'; '.join(pv.reasons)}" for pv in v.pairs
                       if pv.map_type == MapType.NOT_SUPPORTED]
                lost = "the kernel refuses it: " + " | ".join(bad)
            elif ns.require == MapType.BUS_ADDR and v.map_type != MapType.BUS_ADDR:
                lost = "its path crosses the root complex; the profile says require: bus_addr"
            elif ns.numa == "strict" and any(
                    self.numa.get(c) is not None and self.numa.get(p) is not None and self.numa[c] != self.numa[p]
                    for c in clients):
                lost = (f"on NUMA node {self.numa.get(p)}, a client is not; the profile says "
                        "numa: strict")
            if lost:
                out.append(Candidate(provider=p, map_type=v.map_type, distance=v.distance,
                                     own_cmb=p == ns.nvme_pci, numa_mismatch=0,
                                     available=self.avail[p], free=self.avail[p] - self.assigned[p],
                                     fits=False, reasons=list(v.reasons),
                                     kernel_parameter=v.kernel_parameter, lost=lost))
        for p in self.unpublished:
            out.append(Candidate(provider=p, map_type=MapType.NOT_SUPPORTED, distance=-1,
                                 own_cmb=p == ns.nvme_pci, numa_mismatch=0, available=0, free=0,
                                 fits=False, lost="its p2pmem is not published (the kernel "
                                                  "refuses it with ENODEV)"))
        return out


def place_or_raise(res: Resolved, inv: Inventory, kernel: str | None = None, *,
                   explain: bool = True, live=None) -> Placement:
    p = place(res, inv, kernel, explain=explain, live=live)
    if p.errors:
        raise PlacementError(p)
    return p


# -- fixed policies ---------------------------------------------------------------------------

def _no_client_notes(ns: ResolvedNamespace) -> list[str]:
    notes = []
    for p in ns.ports:
        if p.note:
            notes.append(f"{p.label}: {p.note}")
    if not ns.nic_clients:
        notes.append("no port of this namespace has a p2p client: the provider only has to suit "
                     "the NVMe (the kernel checks provider <-> NVMe at enable); no p2p memory "
                     "is used in flight")
    return notes


def _kernel_mode(ns: ResolvedNamespace, clients: tuple[str, ...], oracle: _Oracle,
                 providers: list[str]) -> Decision:
    d = Decision(ns, "1", None, "kernel", list(clients), ns.demand,
                 "p2pmem=1: the kernel chooses a provider per host connection", notes=[])
    if not clients:
        d.status, d.error = "error", "no PCI NVMe behind this namespace"
        return d
    at_enable = oracle.find_many([clients[0]])
    if not at_enable.ties:
        d.status = "error"
        d.error = ("the kernel would refuse enable (EINVAL, 'no peer-to-peer memory is "
                   f"available for {ns.device_path}'): " + "; ".join(at_enable.reasons))
        return d
    nics = ns.nic_clients
    for nic in nics or [None]:
        cl = [clients[0]] + ([nic] if nic else [])
        fm = oracle.find_many(cl)
        who = f"connections through {nic}" if nic else "at enable"
        if not fm.ties:
            d.notes.append(f"{who}: no provider serves NVMe and NIC: host memory")
        elif len(fm.ties) == 1:
            d.notes.append(f"{who}: the kernel will use {fm.ties[0]} (the only provider at "
                           f"distance {fm.best_distance})")
        else:
            kinds = sorted({oracle.many(t, tuple(cl)).map_type for t in fm.ties})
            d.notes.append(f"{who}: the kernel picks at random among {len(fm.ties)} providers at "
                           f"distance {fm.best_distance} ({', '.join(fm.ties[:8])}"
                           f"{' ...' if len(fm.ties) > 8 else ''}; {' and '.join(kinds)})")
    d.notes += _no_client_notes(ns)
    return d


def _pinned(ns: ResolvedNamespace, clients: tuple[str, ...], oracle: _Oracle,
            avail: dict[str, int], assigned: dict[str, int]) -> Decision:
    bdf = ns.pinned
    v = oracle.many(bdf, clients) if clients else None
    d = Decision(ns, bdf, bdf, "pinned", list(clients), ns.demand,
                 f"pinned to {bdf} by the profile", map_type=v.map_type if v else None)
    # a NIC the provider cannot serve makes the kernel skip p2p for those connections only
    if v is not None and v.map_type == MapType.NOT_SUPPORTED:
        served = [p.client.name for p in v.pairs if p.map_type != MapType.NOT_SUPPORTED]
        d.map_type = oracle.many(bdf, tuple(c for c in clients if c in served)).map_type \
            if served else MapType.NOT_SUPPORTED
        for p in v.pairs:
            if p.map_type == MapType.NOT_SUPPORTED:
                d.notes.append(f"{p.client.name}: {'; '.join(p.reasons)}: connections through "
                               "it use host memory")
    nic_paths = _nic_paths(v, clients) if v is not None else []
    if bdf in avail and ns.nic_clients and not nic_paths:
        d.notes.append(f"no NIC of this namespace's ports can use {bdf}: nothing of its budget "
                       "is charged to it (every connection uses host memory)")
    elif bdf in avail:
        free = avail[bdf] - assigned[bdf]
        assigned[bdf] += ns.demand
        if ns.demand > free:
            d.notes.append(f"{bdf} has {format_size(max(free, 0))} free for a budget of "
                           f"{format_size(ns.demand)}: the excess falls back to host memory "
                           "request by request")
    d.notes += _no_client_notes(ns)
    return d


def _nic_paths(v, clients: tuple[str, ...]) -> list[str]:
    """The NICs (clients after the NVMe) the kernel accepts ``v``'s provider for: the paths
    whose connections can take p2p memory from it, and so the only ones a budget is for."""
    nics = set(clients[1:])
    return [p.client.name for p in v.pairs if p.client.name in nics and p.map_type != MapType.NOT_SUPPORTED]


# -- placed -----------------------------------------------------------------------------------

#: Phases of placement: "fit_top" a provider of the namespace's best rank group with room;
#: "fit" any candidate with room (in rank order); then, for what is left, when_full decides:
#: "share_top" the best rank group while it still has some room, "share" the candidate leaving
#: the fewest bytes to fall back (then rank, then the least oversubscribed).
_PHASES = ("fit_top", "fit", "share_top", "share")


def _top(rk: list[_Static]) -> list[_Static]:
    return [s for s in rk if s.key == rk[0].key]


def _choose(phase: str, ns: ResolvedNamespace, rk: list[_Static], avail, assigned
            ) -> _Static | None:
    demand = ns.demand
    if phase == "fit_top":
        return _pick(_top(rk), demand, avail, assigned)
    if phase == "fit":
        return _pick(rk, demand, avail, assigned)
    if ns.when_full != "share":
        return None if phase == "share_top" else _NO_ROOM
    if phase == "share_top":
        roomy = [s for s in _top(rk) if avail[s.provider] > assigned[s.provider]]
        return _share(roomy, demand, avail, assigned) if roomy else None
    return _share(rk, demand, avail, assigned)


_NO_ROOM = _Static(key=(), provider="", verdict=None, own=False, numa=0, thb=0)


def _pick(rk: list[_Static], demand: int, avail, assigned) -> _Static | None:
    """First static-rank group with room; inside it the most free, then the lowest BDF."""
    group_key = None
    best: _Static | None = None
    best_free = -1
    for s in rk:
        free = avail[s.provider] - assigned[s.provider]
        if free < demand:
            continue
        if group_key is None:
            group_key = s.key
        elif s.key != group_key:
            break
        if free > best_free:        # rk is BDF-ordered inside a group: '>' keeps the lowest
            best, best_free = s, free
    return best


def _overflow(p: str, demand: int, avail, assigned) -> int:
    before = max(0, assigned[p] - avail[p])
    after = max(0, assigned[p] + demand - avail[p])
    return after - before


def _share(rk: list[_Static], demand: int, avail, assigned) -> _Static:
    best, best_k = None, None
    for s in rk:
        p = s.provider
        a = avail[p]
        free = a - assigned[p]
        k = (demand - max(free, 0), s.key, (assigned[p] + demand) / a if a else float("inf"),
             s.order[1])
        if best_k is None or k < best_k:
            best, best_k = s, k
    return best


def _load_after(p: str, demand: int, avail, assigned) -> float:
    return (assigned[p] + demand) / avail[p] if avail[p] else float("inf")


def _budget_text(ns: ResolvedNamespace) -> str:
    e = ns.effective
    return (f"{e['hosts']} host(s) x {e['queues']} queue(s) x depth {e['queue_depth']} x "
            f"{format_size(e['io_size'])}")


def _knobs(ns: ResolvedNamespace, room: int) -> list[str]:
    """Settings that would bound this namespace's in-flight bytes to ``room``."""
    e = ns.effective
    hosts, queues, depth, io = e["hosts"], e["queues"], e["queue_depth"], e["io_size"]
    out = []
    ports = [p for p in ns.ports if p.clients]
    pids = ", ".join(str(p.portid) for p in ports) or "?"
    q = room // max(1, hosts * queues * io)
    if q >= 16:
        out.append(f"port {pids}: param_max_queue_size={min(q, 1024)} (max_queue_size: "
                   f"{min(q, 1024)}) caps the queue depth at {min(q, 1024)}")
    qid = room // max(1, hosts * depth * io)
    if qid >= 1:
        out.append(f"subsystem {ns.subsystem}: attr_qid_max={min(qid, 128)} (qid_max: "
                   f"{min(qid, 128)}) gives each host at most {min(qid, 128)} I/O queue(s); "
                   "connected hosts reconnect when it changes")
    per_io = room // max(1, hosts * queues * depth)
    if per_io >= 4096:
        mdts = int(math.log2(per_io // 4096))
        mdts = min(mdts, 8)
        out.append(f"port {pids}: param_mdts={mdts} (mdts: {mdts}; kernels that have it) "
                   f"limits transfers to {format_size(4096 << mdts)}")
    if not out:
        out.append(f"even one host x 1 queue x depth 16 x 4 KiB does not fit in "
                   f"{format_size(room)}: use another provider or p2p: off")
    out.append("or lower the budget in the profile if fewer hosts/queues will really connect")
    return out


def _why(choice: _Static, n: int, demand: int) -> str:
    v = choice.verdict
    bits = ["below the root complex (bus_addr)" if v.map_type == MapType.BUS_ADDR
            else "through the root complex (thru_host_bridge)"]
    if choice.own:
        bits.append("the namespace's own CMB")
    bits.append(f"distance {v.distance}")
    if choice.numa:
        bits.append(f"{choice.numa} client(s) on another NUMA node")
    bits.append(f"best of {n} candidate(s)")
    if demand:
        bits.append(f"budget {format_size(demand)}")
    return ", ".join(bits)


def _explain(rk: list[_Static], choice: _Static | None, demand: int, avail, assigned
             ) -> list[Candidate]:
    """Every candidate, ranked as the choice was made, with the first rule that set it back."""
    def cand(s: _Static) -> Candidate:
        free = avail[s.provider] - assigned[s.provider]
        return Candidate(provider=s.provider, map_type=s.verdict.map_type,
                         distance=s.verdict.distance, own_cmb=s.own, numa_mismatch=s.numa,
                         available=avail[s.provider], free=free, fits=free >= demand,
                         reasons=list(s.verdict.reasons),
                         kernel_parameter=s.verdict.kernel_parameter, host_bridge_paths=s.thb)
    cands = [cand(s) for s in rk]
    order = sorted(cands, key=lambda c: (
        c.provider != (choice.provider if choice else None), not c.fits,
        c.host_bridge_paths, not c.own_cmb, c.distance, c.numa_mismatch, -c.free,
        bdf_sort_key(c.provider)))
    win = order[0] if choice else None
    for rank, c in enumerate(order, 1):
        c.rank = rank
        if win is not None and c is not win:
            c.lost = _lost(c, win, demand)
        elif win is None:
            c.lost = f"full: {_signed(c.free)} free, the budget needs {format_size(demand)}"
    return order


def _signed(n: int) -> str:
    """Free bytes; negative when the plan already oversubscribed the pool."""
    return format_size(n) if n >= 0 else "-" + format_size(-n)


def _lost(c: Candidate, w: Candidate, demand: int) -> str:
    if not c.fits and w.fits:
        return f"full: {_signed(c.free)} free, the budget needs {format_size(demand)}"
    if c.host_bridge_paths != w.host_bridge_paths:
        if w.host_bridge_paths == 0:
            return (f"its path crosses the root complex (thru_host_bridge); {w.provider}'s "
                    "stays below it (bus_addr)")
        return (f"{c.host_bridge_paths} of its client paths cross the root complex, "
                f"{w.provider}: {w.host_bridge_paths}")
    if c.own_cmb != w.own_cmb:
        return f"not the namespace's own CMB ({w.provider} is)"
    if c.distance != w.distance:
        return f"distance {c.distance} > {w.distance}"
    if c.numa_mismatch != w.numa_mismatch:
        return (f"{c.numa_mismatch} client(s) on another NUMA node ({w.provider}: "
                f"{w.numa_mismatch})")
    if not c.fits and not w.fits and c.free != w.free:
        return (f"already more loaded: {_signed(c.free)} free < {_signed(w.free)}; sharing it "
                "would let more fall back to host memory")
    if c.free != w.free:
        return f"less free after this plan's assignments: {_signed(c.free)} < {_signed(w.free)}"
    return f"tie on every rule; lower BDF wins ({w.provider})"


# =============================================================================================
# Desired state
# =============================================================================================

def _state(res: Resolved, decisions: list[Decision]) -> TargetState:
    st = TargetState()
    for nqn, attrs in res.hosts.items():
        st.hosts[nqn] = Host(nqn=nqn, attrs=dict(attrs))
    for pid, p in res.ports.items():
        attrs = {"addr_trtype": p.transport, "addr_adrfam": p.adrfam, "addr_traddr": p.address,
                 "addr_trsvcid": str(p.trsvcid)}
        attrs.update(p.params)
        st.ports[pid] = Port(portid=pid, attrs=attrs)
    by_ns = {(d.namespace.subsystem, d.namespace.nsid): d for d in decisions}
    for s in res.subsystems:
        sub = Subsystem(nqn=s.nqn, attrs=dict(s.attrs), allowed_hosts=list(s.allowed_hosts))
        for ns in sorted(s.namespaces, key=lambda n: n.nsid):
            d = by_ns[(s.nqn, ns.nsid)]
            sub.namespaces[ns.nsid] = Namespace(nsid=ns.nsid, enable=True, attrs={
                "device_path": ns.device_path, "p2pmem": d.p2pmem})
        st.subsystems[s.nqn] = sub
        for pid in s.ports:
            if s.nqn not in st.ports[pid].subsystems:
                st.ports[pid].subsystems.append(s.nqn)
    return st


# =============================================================================================
# Rendering (plain text for ``plan --explain``)
# =============================================================================================

def render(p: Placement, explain: bool = False) -> str:
    """Per namespace: the choice in one line; with ``explain`` the p2p clients and budget, the
    ranked candidates with the rule each lost on, the providers the kernel refuses, notes and
    knobs. Port-level facts (soft RDMA, tcp) are said once, above the namespaces."""
    lines = [f"placement ({p.file}; kernel {p.kernel} p2pdma rules)"]
    port_notes: dict[int, str] = {}
    for d in p.decisions:
        for port in d.namespace.ports:
            if port.note and port.portid not in port_notes:
                port_notes[port.portid] = f"{port.label}: {port.note}"
    for pid in sorted(port_notes):
        lines.append(f"  {port_notes[pid]}")
    for d in p.decisions:
        ns = d.namespace
        lines.append(f"  {ns.subsystem} nsid {ns.nsid} <- {ns.backing}")
        when = f", decision {d.step} of {len(p.decisions)}" if explain else ""
        lines.append(f"      p2pmem={d.p2pmem} [{d.status}{when}]"
                     + (f" {d.summary}" if d.summary and not d.error else ""))
        if d.error:
            lines.append(f"      ERROR: {d.error}")
        if explain:
            if d.clients:
                nics = d.clients[1:]
                lines.append(f"      p2p clients: NVMe {d.clients[0]}"
                             + (f", NIC {', '.join(nics)}" if nics else " (no port has a PCI "
                                "RDMA NIC)")
                             + (f"; budget {format_size(d.demand)} = {_budget_text(ns)}"
                                if d.demand else "; nothing in flight to budget"))
            for c in d.candidates:
                lines.append(f"      {c.rank:>3}. {c.provider}  {c.map_type:<16} distance "
                             f"{c.distance:<3} free {_signed(c.free):>10}"
                             + ("  own CMB" if c.own_cmb else "")
                             + (f"  lost: {c.lost}" if c.lost else "  <- chosen"))
            for c in d.rejected:
                lines.append(f"        -  {c.provider}  not a candidate: {c.lost}")
        port_lines = {v for v in port_notes.values()}
        for n in d.notes:
            if n != d.summary and n not in port_lines and (explain or "p2p client" not in n):
                lines.append(f"      note: {n}")
        for k in d.knobs:
            lines.append(f"      knob: {k}")
        lines += _render_paths(d, explain)
    if p.usage:
        lines.append("  providers (budget assigned by this plan / available now):")
        for b, u in p.usage.items():
            a, used = u["available"], u["assigned"]
            pct = f" ({100 * used / a:.0f}%)" if a else ""
            lines.append(f"    {b}: {format_size(used)} / {format_size(a)}{pct}")
    if p.ana is not None:
        lines.append("  ANA (multipath: p2p; optimized where the port's NIC offloads, "
                     "non-optimized where I/O would go through host memory):")
        lines += [f"    {ln}" for ln in ana.render(p.ana)]
    for w in p.warnings:
        lines.append(f"  warning: {w}")
    return safe_lines(lines)


def _render_paths(d: Decision, explain: bool) -> list[str]:
    """Per port: whether a connection through it offloads and, with ``explain``, which
    providers the kernel accepts for its NIC and the NVMe (and picks from in auto mode)."""
    if not d.paths:
        return []
    served = [pp.portid for pp in d.paths if pp.offloads]
    out = [f"      paths: {len(served)} of {len(d.paths)} port(s) offload"
           + (f" ({', '.join(map(str, served))})" if served else "")]
    for pp in d.paths:
        state = f" [ANA {pp.ana_state}]" if pp.ana_state else ""
        out.append(f"        port {pp.portid}: {'offloads' if pp.offloads else 'host memory'}"
                   f"{state}: {pp.reason}")
        if explain and pp.detail:
            out.append(f"          why: {pp.detail}")
        if explain and pp.nics:
            out.append(f"          the kernel accepts for this NIC and the NVMe: "
                       f"{', '.join(pp.providers) or 'none'}"
                       + (f"; p2pmem=1 would pick among: {', '.join(pp.kernel_picks)}"
                          if pp.kernel_picks else ""))
    return out


def place_profile(path: str, inv: Inventory, kernel: str | None = None, *,
                  explain: bool = False, root: str | None = None, live=None) -> Placement:
    """The ``--profile`` path of ``plan``/``apply``: load and validate the profile (every
    error at once), resolve it against ``inv``, place it. Raises
    :class:`~nvmet_p2p.policy.profile.ProfileError` or :class:`PlacementError` (nothing written).
    ``root`` (the filesystem root the inventory came from) is only used to read the
    ``/dev/disk/by-id`` links a ``by_id`` selector may name."""
    return place_loaded(_profile.load(path, strict=False), inv, kernel, explain=explain,
                        root=root, live=live)


def place_loaded(prof, inv: Inventory, kernel: str | None = None, *, explain: bool = False,
                 root: str | None = None, live=None) -> Placement:
    """:func:`place_profile` for a profile already loaded (``profile.load``/``load_text``)."""
    links = _profile.read_by_id_links(root) if root else {}
    res = _profile.resolve(prof, inv, kernel=kernel, by_id_links=links)
    return place_or_raise(res, inv, kernel, explain=explain, live=live)
