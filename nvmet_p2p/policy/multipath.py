"""ANA states of a live target, re-derived from the machine as it is now (``multipath: p2p``
after a provider, a NIC or an address went or came back).

The profile's placement derives the states once (:mod:`nvmet_p2p.policy.placement`); a watcher
without the profile, or between applies, has only the live tree. The namespaces concerned are
the ones in ANA groups nvmet-p2p manages; for each, every port that exports its subsystem is
judged the way the kernel will judge a new connection through it
(:func:`nvmet_p2p.policy.placement.path_verdict`: the namespace's ``p2pmem`` against that port's
NIC and the NVMe, with the providers on the bus now), and the groups follow
(:func:`nvmet_p2p.policy.ana.assign`: ids kept while their namespaces stay together, so a
change is a few ``ana_state`` writes). Nothing here reads files: the caller gives the backing
NVMe of each namespace and the NIC(s) of each port as it found them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nvmet_p2p.nvmet.state import TargetState
from nvmet_p2p.policy import ana
from nvmet_p2p.policy.placement import Oracle, PathPort, PortPath, path_verdict


@dataclass
class Rederived:
    """The new ANA plan, and per namespace the port verdicts it came from."""

    plan: ana.AnaPlan
    paths: dict[tuple[str, int], list[PortPath]] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)     # "port 1 group 2: optimized -> non-optimized"

    def to_dict(self) -> dict:
        return {"ana": self.plan.to_dict(), "changes": list(self.changes),
                "paths": {f"{n}/{i}": [p.to_dict() for p in ps]
                          for (n, i), ps in sorted(self.paths.items())}}


def managed_namespaces(live: TargetState, groups: set[int]) -> list[tuple[str, int]]:
    """Namespaces whose live ANA group is one nvmet-p2p manages (``multipath: p2p``)."""
    out = []
    for nqn, sub in sorted(live.subsystems.items()):
        for nsid, ns in sorted(sub.namespaces.items()):
            g = (ns.attrs.get("ana_grpid") or "1").strip()
            if g.isdigit() and int(g) in groups:
                out.append((nqn, nsid))
    return out


@dataclass
class MachineNow:
    """What :func:`rederive` needs of the machine as it is now: ``nvme_of``, each namespace's
    backing NVMe (PCI BDF, None when it is gone); ``nics_of``, each port's p2p client NIC(s)
    (empty: none -- tcp, soft RDMA, or its address or NIC is gone; ``notes_of`` says why)."""

    nvme_of: dict[tuple[str, int], str | None]
    nics_of: dict[int, list[str]]
    notes_of: dict[int, str] = field(default_factory=dict)


def rederive(live: TargetState, groups: set[int], machine: MachineNow, oracle: Oracle, *,
             not_offloading: dict[tuple[str, int], str] | None = None) -> Rederived:
    """The ANA plan of the live tree's managed multipath namespaces on the machine now.

    ``groups``: the ANA group ids nvmet-p2p manages; ``machine``: the namespaces' NVMe and the
    ports' NICs now (:class:`MachineNow`); ``not_offloading``: namespaces known not to offload
    whatever the verdict says, with the reason (a provider that came back at the same BDF is a
    new device: the kernel keeps the old one until ``p2pmem`` is written again)."""
    nvme_of, nics_of, notes_of = machine.nvme_of, machine.nics_of, machine.notes_of
    not_offloading = not_offloading or {}
    exports: dict[str, list[int]] = {}
    for pid, port in sorted(live.ports.items()):
        for nqn in port.subsystems:
            exports.setdefault(nqn, []).append(pid)
    out = Rederived(plan=ana.AnaPlan())
    nspaths = []
    for key in managed_namespaces(live, groups):
        nqn, nsid = key
        ns = live.subsystems[nqn].namespaces[nsid]
        p2pmem = (ns.attrs.get("p2pmem") or "0").strip().lower()
        paths = []
        for pid in exports.get(nqn, []):
            port = PathPort(pid, f"port {pid}", list(nics_of.get(pid, [])), notes_of.get(pid))
            pp = path_verdict(port, nvme_of.get(key), p2pmem if ns.enable else "0", oracle,
                              oracle.providers)
            if not ns.enable:
                pp.reason = "namespace disabled"
            if pp.offloads and key in not_offloading:
                pp.offloads, pp.reason = False, not_offloading[key]
            paths.append(pp)
        out.paths[key] = paths
        if paths:
            nspaths.append(ana.NsPaths(nqn, nsid, {pp.portid: pp.offloads for pp in paths}))
    out.plan = ana.assign(nspaths, live)
    for key, paths in out.paths.items():
        for pp in paths:
            pp.ana_state = out.plan.state_of(key[0], key[1], pp.portid)
    out.changes = changes(live, out.plan)
    return out


def changes(live: TargetState, plan: ana.AnaPlan) -> list[str]:
    """What applying ``plan`` to ``live`` changes, one line each (for the decision log)."""
    out = []
    for g, ports in sorted(plan.groups.items()):
        for pid, s in sorted(ports.items()):
            lp = live.ports.get(pid)
            old = lp.ana_groups.get(g) if lp else None
            if old != s:
                out.append(f"port {pid} group {g}: {old or 'new'} -> {s}")
    for (nqn, nsid), g in sorted(plan.members.items()):
        ns = live.subsystems.get(nqn) and live.subsystems[nqn].namespaces.get(nsid)
        old = (ns.attrs.get("ana_grpid") or "1").strip() if ns else None
        if ns and old != str(g):
            out.append(f"{nqn}/{nsid}: group {old} -> {g}")
    return out
