"""The watcher's ANA reaction (``multipath: p2p``): after a burst of hotplug or address events,
the states of the ANA groups nvmet-p2p manages are re-derived from the machine as it is now
(:func:`nvmet_p2p.policy.multipath.rederive`) and what changed is written through the one
reconcile path (its lock, journal and rollback).

Only ANA is written here: ``ana_state`` of managed groups on managed ports, a new group and
``ana_grpid`` moves when the namespaces of one group no longer belong together. Nothing ever
becomes ``inaccessible`` (the derivation never produces it), so a host keeps a usable path
through every port that still has one; a port whose NIC or address is gone becomes
``non-optimized`` and its controllers' own failure makes the host use the other paths.

The edges: the caller gives the inventory read after the burst; the desired state is a
function of the live tree and the managed set read under the apply lock (``reconcile``'s
``Desire``), so nothing decided here can be stale.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.apply import reconcile
from nvmet_p2p.nvmet.configfs import Configfs
from nvmet_p2p.observe.status import backing_pci, port_facts
from nvmet_p2p.pci.model import Inventory
from nvmet_p2p.policy import ana
from nvmet_p2p.policy.multipath import MachineNow, Rederived, rederive
from nvmet_p2p.policy.placement import Oracle


@dataclass
class Reaction:
    """What one ANA reaction found and did."""

    changes: list[str] = field(default_factory=list)
    writes: int = 0
    applied: bool = False
    rederived: Rederived | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"changes": list(self.changes), "writes": self.writes, "applied": self.applied,
                "error": self.error}


def machine_facts(live: st.TargetState, inv: Inventory, dev_names: dict[str, str] | None = None
                  ) -> MachineNow:
    """The backing NVMe per namespace, the p2p client NICs per port and why a port has none,
    as the inventory shows them now."""
    nvme_of = {(nqn, nsid): backing_pci(ns.attrs.get("device_path", ""), inv, dev_names)
               for nqn, sub in live.subsystems.items() for nsid, ns in sub.namespaces.items()}
    nics_of: dict[int, list[str]] = {}
    notes_of: dict[int, str] = {}
    for pid, port in live.ports.items():
        pf = port_facts(port, inv)
        if pf.rdma_pci and not pf.rdma_soft:
            nics_of[pid] = [pf.rdma_pci]
        elif pf.trtype == "rdma" and not pf.rdma_device:
            notes_of[pid] = (f"no RDMA device serves {pf.traddr} now (its NIC or address is "
                             "gone): the port cannot take connections")
        elif pf.rdma_soft:
            notes_of[pid] = f"{pf.rdma_device} is soft RDMA: no p2p client"
        else:
            notes_of[pid] = f"{pf.trtype or 'unknown'} transport: host memory"
    return MachineNow(nvme_of, nics_of, notes_of)


def partial(live: st.TargetState, managed, plan: ana.AnaPlan) -> st.TargetState:
    """A desired state naming only ANA: each managed port the plan has a group on (its links,
    referrals and other groups as they are, so nothing else moves) with the plan's states, and
    each namespace whose group changes (with its subsystem's managed host links)."""
    out = st.TargetState()
    for g, ports in plan.groups.items():
        for pid, s in ports.items():
            lp = live.ports.get(pid)
            if lp is None or pid not in managed.ports:
                continue
            port = out.ports.get(pid)
            if port is None:
                port = out.ports[pid] = st.Port(portid=pid, attrs={},
                                                subsystems=list(lp.subsystems),
                                                referrals=copy.deepcopy(lp.referrals),
                                                ana_groups=dict(lp.ana_groups))
            port.ana_groups[g] = s
    for (nqn, nsid), g in plan.members.items():
        ls = live.subsystems.get(nqn)
        lns = ls.namespaces.get(nsid) if ls else None
        if lns is None or (lns.attrs.get("ana_grpid") or "1").strip() == str(g):
            continue
        if (nqn, nsid) not in managed.namespaces:
            continue
        hosts = [h for h in ls.allowed_hosts if (nqn, h) in managed.allowed_hosts]
        sub = out.subsystems.setdefault(nqn, st.Subsystem(nqn, {}, hosts))
        sub.namespaces[nsid] = st.Namespace(nsid=nsid, enable=lns.enable,
                                            attrs={"ana_grpid": str(g)})
    return out


@dataclass(frozen=True)
class AnaTarget:
    """The target an ANA reaction writes to: its filesystem ``root``, nvmet-p2p's
    ``state_dir``, the ``kernel`` whose p2pdma rules judge the paths, and how ``reconcile``
    reaches configfs (``cfs``) and waits for the apply lock (``lock_timeout``)."""

    root: str
    state_dir: str
    kernel: str | None = None
    cfs: Configfs | None = None
    lock_timeout: float | None = None

    def react(self, inv: Inventory, *, write: bool = True,
              not_offloading: dict[tuple[str, int], str] | None = None,
              dev_names: dict[str, str] | None = None) -> Reaction:
        """Re-derive the managed ANA groups' states on ``inv`` and (``write``) apply the
        change; without ``write`` only say what would change."""
        out = Reaction()
        oracle = Oracle(inv, self.kernel)

        def want(live: st.TargetState, managed) -> st.TargetState:
            groups = {g for _, g in managed.ana_groups}
            if not groups:
                return st.TargetState()
            out.rederived = rederive(live, groups, machine_facts(live, inv, dev_names), oracle,
                                     not_offloading=not_offloading)
            out.changes = out.rederived.changes
            return partial(live, managed, out.rederived.plan)

        res = reconcile(self.root, want, self.state_dir, dry_run=not write, kernel=self.kernel,
                        cfs=self.cfs, lock_timeout=self.lock_timeout)
        out.writes = res.result.writes if res.result is not None else 0
        out.applied = res.applied and bool(res.plan.ops)
        return out
