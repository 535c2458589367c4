"""Machine checks of a desired state from a state file: what a profile is checked for, before
anything is written (docs/export-policy.md#the-machine-checks-of-a-state-file).

A profile's selectors are resolved against the machine, so by the time it is a desired state
every namespace is a block device of this machine, every pinned provider published and
accepted by the kernel's p2pdma rules for the NVMe. A state file (nvmetcli's JSON, what
``restore`` and the boot unit read) names paths and BDFs directly; :func:`check` holds it to
the same rules against an :class:`~nvmet_p2p.pci.model.Inventory` (the live machine, a
snapshot ``--root`` or an ``--inventory`` file):

* every ``device_path`` passes the export policy (:mod:`nvmet_p2p.policy.exportpolicy`:
  absolute, a block device or an explicit ``backing: file``, not in use unless
  ``allow_in_use``) and, for an enabled namespace, exists (**missing**: ENOENT at enable);
* a ``p2pmem`` provider BDF is a PCI function of this machine with published p2p memory
  (**missing** otherwise: the kernel answers ENODEV), and p2pmem is only asked of an NVMe
  namespace with a PCI parent (the kernel refuses it at enable with EINVAL);
* the kernel's p2pdma rules (:mod:`nvmet_p2p.pci.distance`) accept the provider for the NVMe
  (else EINVAL at enable); with ``p2pmem`` 1 some published provider must serve it (the
  kernel picks among those). A port whose RDMA NIC the provider cannot serve is a
  **warning**, not an error: the kernel takes that configuration and every connection through
  the port uses host memory, which is what a multipath path in a non-optimized ANA group or a
  failover port is meant to do (refusing it refused the boot restore of such a saved target);
* a port with subsystems listens on an address this machine has (**missing** otherwise: the
  listen fails), and an RDMA port on an address some RDMA device runs over.

Errors name the object and say what to do; **missing** ones are errors too unless the caller
accepts them (``--allow-missing`` and the boot path ``restore --wait-devices``, which hold the
namespaces and links that need them back until they appear). Pure: the path facts come from
a function the caller gives (:func:`nvmet_p2p.policy.exportpolicy.probe` on a root, or
:func:`~nvmet_p2p.policy.exportpolicy.infer` on an inventory alone).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet.state import Namespace, TargetState
from nvmet_p2p.pci import distance
from nvmet_p2p.pci.clients import normalize_bdf
from nvmet_p2p.pci.model import Inventory
from nvmet_p2p.pci.p2pdma_rules import MapType
from nvmet_p2p.policy import exportpolicy as xp

#: what a missing item is, in devwait's words (:class:`nvmet_p2p.service.devwait.Need` kinds)
DEVICE, PROVIDER, ADDRESS = "device", "provider", "address"


@dataclass
class Missing:
    """Something the desired state needs that the machine does not have (yet)."""

    kind: str                  # device | provider | address
    what: str                  # the device path, provider BDF or address
    user: str                  # "namespace <nqn>/<nsid>" | "port <id>"
    message: str


@dataclass
class StateCheck:
    """What :func:`check` found: ``errors`` (refused whatever the flags), ``missing`` (refused
    unless accepted) and ``warnings``; each message starts with the object it is about."""

    errors: list[str] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: errors and missing items in the order the objects were checked
    _order: list[str | Missing] = field(default_factory=list, repr=False)

    def error(self, message: str) -> None:
        self.errors.append(message)
        self._order.append(message)

    def lack(self, m: Missing) -> None:
        self.missing.append(m)
        self._order.append(m)

    def problems(self, allow_missing: bool = False) -> list[str]:
        out = []
        for p in self._order:
            if isinstance(p, Missing):
                if not allow_missing:
                    out.append(f"{p.message} (missing; --allow-missing holds it back until it "
                               "appears)")
            else:
                out.append(p)
        return out

    def raise_if_refused(self, where: str, allow_missing: bool = False) -> None:
        problems = self.problems(allow_missing)
        if problems:
            raise StateCheckError(where, problems)

    def to_dict(self) -> dict:
        return {"errors": list(self.errors), "warnings": list(self.warnings),
                "missing": [{"kind": m.kind, "what": m.what, "user": m.user,
                             "message": m.message} for m in self.missing]}


class StateCheckError(InputError):
    """A desired state the machine cannot take; nothing was written."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = problems
        n = len(problems)
        lines = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {n - 50} more" if n > 50 else ""
        super().__init__(f"{n} problem{'s' if n != 1 else ''} with the desired state on this "
                         f"machine (nothing was changed):\n{lines}{more}", where=where)


def check(desired: TargetState, inv: Inventory, facts_of: Callable[[str], xp.PathFacts],
          kernel: str | None = None) -> StateCheck:
    """Every machine check of the module docstring, all problems at once."""
    c = _Checker(desired, inv, facts_of, kernel)
    for nqn, sub in sorted(desired.subsystems.items()):
        for nsid, ns in sorted(sub.namespaces.items()):
            c.namespace(nqn, nsid, ns)
    for pid, port in sorted(desired.ports.items()):
        c.port(pid, port.attrs, bool(port.subsystems))
    return c.out


class _Checker:
    def __init__(self, desired: TargetState, inv: Inventory,
                 facts_of: Callable[[str], xp.PathFacts], kernel: str | None):
        self.desired, self.inv, self.facts_of = desired, inv, facts_of
        self.engine = distance.P2pdma(inv, kernel)
        self.out = StateCheck()
        self._nics: dict[str, list[tuple[int, str]]] = {}

    # -- namespaces -------------------------------------------------------------------------
    def namespace(self, nqn: str, nsid: int, ns: Namespace) -> None:
        who = f"namespace {nqn}/{nsid}"
        path = ns.attrs.get("device_path", "")
        if not path:
            return                               # (disabled; an enabled one is a parse error)
        facts = self.facts_of(path)
        for f in xp.check(facts, self.inv, allow_in_use=ns.allow_in_use, backing=ns.backing):
            if f.kind == xp.MISSING:
                if ns.enable:
                    self.out.lack(Missing(DEVICE, path, who, f"{who}: {f.message}: "
                                                    "enabling it fails (ENOENT)"))
            elif f.error:
                self.out.error(f"{who}: {f.message}")
            else:
                self.out.warnings.append(f"{who}: {f.message}")
        p2pmem = ns.attrs.get("p2pmem", "0").strip() or "0"
        if ns.enable and p2pmem != "0" and facts.kind != "missing":
            self.p2pmem(who, nqn, p2pmem, facts)

    def p2pmem(self, who: str, nqn: str, value: str, facts: xp.PathFacts) -> None:
        """The provider and the kernel's rules for the NVMe and each port's NIC."""
        bdf = normalize_bdf(value)
        if bdf is not None and not self.provider_ok(who, bdf):
            return
        nv = self.inv.namespaces.get(facts.block or "") if facts.kind == "block" else None
        if nv is None:
            self.out.error(
                f"{who}: p2pmem {value} needs an NVMe namespace of this machine, and "
                f"{facts.path} is not one: the kernel refuses p2pmem for it at enable (EINVAL); "
                "set p2pmem 0")
            return
        if nv.pci is None:
            self.out.error(
                f"{who}: {nv.name} is a native-multipath head disk with no PCI parent; the "
                "kernel refuses it as a p2p client (enable fails with EINVAL). Boot with "
                "nvme_core.multipath=N, or set p2pmem 0")
            return
        if bdf is None:
            self.auto(who, nqn, nv.pci)
        else:
            self.pinned(who, nqn, bdf, nv.pci)

    def provider_ok(self, who: str, bdf: str) -> bool:
        fn = self.inv.pci.get(bdf)
        if fn is None or fn.p2pmem is None or not fn.p2pmem.published:
            what = ("is not a PCI function of this machine (the kernel answers ENODEV: No such "
                    "PCI device)" if fn is None else
                    "has no p2p memory (the kernel answers ENODEV)" if fn.p2pmem is None else
                    "does not publish its p2p memory (the kernel answers ENODEV)")
            here = ", ".join(f.bdf for f in self.inv.providers()) or "none"
            self.out.lack(Missing(PROVIDER, bdf, who, f"{who}: p2pmem provider {bdf} "
                                            f"{what}; published providers here: {here}"))
            return False
        return True

    def pinned(self, who: str, nqn: str, bdf: str, nvme: str) -> None:
        v = self.engine.pair(bdf, nvme)
        if v.map_type == MapType.NOT_SUPPORTED:
            fix = f" (fix: boot with {v.kernel_parameter})" if v.kernel_parameter else ""
            self.out.error(f"{who}: the kernel refuses p2pmem provider {bdf} for its NVMe "
                                   f"{nvme} (enable fails with EINVAL): {'; '.join(v.reasons)}"
                                   f"{fix}; choose a provider it accepts (`nvmet-p2p distance "
                                   f"--find {nvme}`) or p2pmem 0")
            return
        for pid, nic in self.nics(nqn):
            pv = self.engine.pair(bdf, nic)
            if pv.map_type == MapType.NOT_SUPPORTED:
                self.out.warnings.append(
                    f"{who}: the kernel refuses p2pmem provider {bdf} for the RDMA NIC {nic} of "
                    f"port {pid}: every host connection through that port will use host memory "
                    f"({'; '.join(pv.reasons)}); unless that port is meant so (a multipath "
                    "path in a non-optimized ANA group, a failover port), choose a provider "
                    "both the NVMe and the NIC reach, or p2pmem 1")

    def auto(self, who: str, nqn: str, nvme: str) -> None:
        """``p2pmem`` 1: the kernel picks among the published providers that serve the NVMe
        (at enable) and the NVMe plus the connection's NIC (at connect)."""
        if not self.engine.find_many([nvme]).ties:
            self.out.error(f"{who}: p2pmem 1, but no published provider is accepted for "
                                   f"its NVMe {nvme}: the kernel refuses enable (EINVAL, 'no "
                                   "peer-to-peer memory is available'); set p2pmem 0")
            return
        for pid, nic in self.nics(nqn):
            if not self.engine.find_many([nvme, nic]).ties:
                self.out.warnings.append(
                    f"{who}: p2pmem 1, but no published provider serves both its NVMe {nvme} and "
                    f"the RDMA NIC {nic} of port {pid}: every host connection through that port "
                    "will use host memory; unless that port is meant so, export it through "
                    "another port")

    def nics(self, nqn: str) -> list[tuple[int, str]]:
        """(port id, NIC BDF): the p2p client of host connections through each RDMA port that
        exports ``nqn`` (soft RDMA and TCP have none)."""
        got = self._nics.get(nqn)
        if got is None:
            got = []
            for pid, port in sorted(self.desired.ports.items()):
                if nqn not in port.subsystems or port.attrs.get("addr_trtype") != "rdma":
                    continue
                devs = self.inv.rdma_for_address(port.attrs.get("addr_traddr", ""))
                got += [(pid, d.pci) for d in devs if d.pci and not d.soft
                        and (pid, d.pci) not in got]
            self._nics[nqn] = got
        return got

    # -- ports --------------------------------------------------------------------------------
    def port(self, pid: int, attrs: dict[str, str], linked: bool) -> None:
        tr, addr = attrs.get("addr_trtype", ""), attrs.get("addr_traddr", "").strip()
        if not linked or tr not in ("rdma", "tcp") or not addr:
            return
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return                                  # (a parse error already)
        if ip.is_unspecified:
            return
        if not any(_has(nd.addresses, ip) for nd in self.inv.net.values()):
            self.out.lack(Missing(ADDRESS, addr, f"port {pid}", f"port {pid}: address "
                                            f"{addr} is on no interface of this machine (the "
                                            "listen would fail)"))
        elif tr == "rdma" and not self.inv.rdma_for_address(addr):
            self.out.error(f"port {pid}: no RDMA device runs over the interface of {addr}, "
                                   "so transport rdma cannot listen there (soft-RoCE: `rdma link "
                                   "add rxe0 type rxe netdev <ifname>`)")


def _has(cidrs: list[str], ip) -> bool:
    for cidr in cidrs:
        try:
            if ipaddress.ip_interface(cidr).ip == ip:
                return True
        except ValueError:
            continue
    return False
