"""ANA groups and per-port ANA states from p2p reachability (``multipath: p2p``).

What the kernel offers (docs/multipath.md#what-nvmet-offers, checked in the lab by
``tests/lab/test_lab_multipath.py``): a namespace belongs to one ANA group (``ana_grpid``,
writable while enabled, any id 1..128 -- a group needs no directory to be named); each port
holds one state per group (``ports/<id>/ana_groups/<grpid>/ana_state``; group 1 exists on
every port and starts ``optimized``, a group created with ``mkdir`` starts ``inaccessible``,
and a port without the group's directory reports it ``inaccessible``). Hosts with native NVMe
multipath send I/O to ``optimized`` paths first, to ``non-optimized`` ones only when no
optimized path is usable, and never to ``inaccessible`` ones.

The rule here, per namespace of a ``multipath: p2p`` subsystem and per port that exports it:
``optimized`` where a connection through that port gets a p2p mapping (the kernel accepts the
namespace's provider -- or, in auto mode, some provider -- for that port's NIC and for the
NVMe), ``non-optimized`` where its I/O would go through host memory. ``inaccessible`` is never
set: every path stays usable, so no derivation can leave a namespace without a path while
one can serve. A namespace that offloads nowhere gets ``non-optimized`` everywhere (nothing is
preferred, nothing is hidden).

Namespaces whose states are the same on the same ports share a group. Group ids are global in
nvmet (``nvmet_ana_group_enabled[]``), so the ids are chosen against the live tree: a group
keeps its id while its namespaces keep belonging together (a failover is then a few
``ana_state`` writes and no namespace moves), ids that foreign namespaces use are never taken,
and 128 is never used: on 7.3 ``array_index_nospec(grpid, NVMET_MAX_ANAGRPS)`` clamps 128 to 0,
so a namespace written 128 reads back 0 and a group directory 128 leaves a phantom group in the
ANA log after its removal (the lab test shows both).

Pure logic on plain data: nothing here reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p.nvmet.state import TargetState

OPTIMIZED = "optimized"
NON_OPTIMIZED = "non-optimized"
#: ids nvmet-p2p assigns: 2..127 (1 is every port's default group; see the module docstring
#: for 128).
FIRST_GROUP = 2
LAST_GROUP = 127

#: (portid, state) for every port of the namespace's subsystem, sorted by port
Key = tuple[tuple[int, str], ...]


class AnaError(Exception):
    """More distinct port-state combinations than ANA group ids."""


@dataclass
class NsPaths:
    """One namespace of a ``multipath: p2p`` subsystem and what each of its ports can do."""

    subsystem: str
    nsid: int
    offloads: dict[int, bool]        # portid -> a connection through it gets a p2p mapping

    @property
    def key(self) -> Key:
        return tuple((pid, OPTIMIZED if ok else NON_OPTIMIZED)
                     for pid, ok in sorted(self.offloads.items()))


@dataclass
class AnaPlan:
    """The groups and their per-port states, and each namespace's group."""

    groups: dict[int, dict[int, str]] = field(default_factory=dict)   # grpid -> port -> state
    members: dict[tuple[str, int], int] = field(default_factory=dict)  # (nqn, nsid) -> grpid
    kept: dict[int, bool] = field(default_factory=dict)    # grpid -> id taken over from live

    def state_of(self, nqn: str, nsid: int, portid: int) -> str | None:
        g = self.members.get((nqn, nsid))
        return None if g is None else self.groups.get(g, {}).get(portid)

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [{"grpid": g, "ports": {str(p): s for p, s in sorted(ps.items())},
                            "kept": self.kept.get(g, False),
                            "namespaces": [f"{n}/{i}" for (n, i), gg in sorted(self.members.items())
                                           if gg == g]}
                           for g, ps in sorted(self.groups.items())]}


def live_groups(live: TargetState | None) -> tuple[dict[tuple[str, int], int], set[int]]:
    """(live ``ana_grpid`` of every namespace, every group id that has a directory on a port)."""
    members: dict[tuple[str, int], int] = {}
    dirs: set[int] = set()
    if live is None:
        return members, dirs
    for nqn, sub in live.subsystems.items():
        for nsid, ns in sub.namespaces.items():
            v = (ns.attrs.get("ana_grpid") or "1").strip()
            members[(nqn, nsid)] = int(v) if v.isdigit() else 1
    for port in live.ports.values():
        dirs |= set(port.ana_groups)
    return members, dirs


def assign(paths: list[NsPaths], live: TargetState | None = None) -> AnaPlan:
    """Group the namespaces by their per-port states and give each group an id.

    An id is taken over from the live tree when the namespaces that use it there all share
    one new state combination (so a change of reachability re-states the group in place);
    a foreign namespace's group id is never used; new groups get the lowest free id."""
    live_member, _dirs = live_groups(live)
    ours = {(p.subsystem, p.nsid) for p in paths}
    reserved = {g for k, g in live_member.items() if k not in ours} | {1, 128}
    key_of = {(p.subsystem, p.nsid): p.key for p in paths}
    by_live: dict[int, list[tuple[str, int]]] = {}
    for k in sorted(ours):
        g = live_member.get(k)
        if g is not None and FIRST_GROUP <= g <= LAST_GROUP and g not in reserved:
            by_live.setdefault(g, []).append(k)
    plan = AnaPlan()
    group_of_key: dict[Key, int] = {}
    # a live group keeps its id for the state combination most of its namespaces now need
    for g, members in sorted(by_live.items(), key=lambda t: (-len(t[1]), t[0])):
        counts: dict[Key, int] = {}
        for k in members:
            counts[key_of[k]] = counts.get(key_of[k], 0) + 1
        key = min(counts, key=lambda kk: (-counts[kk], kk))
        if key not in group_of_key:
            group_of_key[key] = g
            plan.kept[g] = True
    used = set(group_of_key.values()) | reserved
    # new groups in a readable order: the group optimized on the lowest port first
    for key in sorted({p.key for p in paths}, key=lambda k: tuple((pid, st != OPTIMIZED)
                                                                  for pid, st in k)):
        if key in group_of_key:
            continue
        g = next((i for i in range(FIRST_GROUP, LAST_GROUP + 1) if i not in used), None)
        if g is None:
            raise AnaError(f"{len({p.key for p in paths})} distinct ANA state combinations need "
                           f"more group ids than {FIRST_GROUP}..{LAST_GROUP} leaves free")
        group_of_key[key] = g
        used.add(g)
    for key, g in group_of_key.items():
        plan.groups[g] = dict(key)
    for p in paths:
        plan.members[(p.subsystem, p.nsid)] = group_of_key[p.key]
    return plan


def apply_to(state: TargetState, plan: AnaPlan) -> None:
    """Write the plan into a desired state: each group's state on every port it names, each
    namespace's ``ana_grpid``."""
    for g, ports in plan.groups.items():
        for pid, s in ports.items():
            if pid in state.ports:
                state.ports[pid].ana_groups[g] = s
    for (nqn, nsid), g in plan.members.items():
        ns = state.subsystems.get(nqn) and state.subsystems[nqn].namespaces.get(nsid)
        if ns:
            ns.attrs["ana_grpid"] = str(g)


def render(plan: AnaPlan) -> list[str]:
    """Lines for ``plan --explain``: one per group."""
    out = []
    for g, ports in sorted(plan.groups.items()):
        members = [f"{n} nsid {i}" for (n, i), gg in sorted(plan.members.items()) if gg == g]
        states = ", ".join(f"port {p} {s}" for p, s in sorted(ports.items()))
        kept = " (id kept from the live tree)" if plan.kept.get(g) else ""
        out.append(f"ANA group {g}{kept}: {states}; {len(members)} namespace(s): "
                   + ", ".join(members[:6]) + (" ..." if len(members) > 6 else ""))
    return out
