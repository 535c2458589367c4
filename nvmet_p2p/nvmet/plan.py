"""The reconciler's brain: live ``TargetState`` + desired ``TargetState`` -> ordered operations.

Pure logic on plain data (no filesystem). :func:`build_plan` is what ``plan``, ``apply``,
``restore`` and ``clear`` call, and what the placement code calls with the ``TargetState`` it
derives from a profile.

The order of operations is the one the kernel demands
(docs/nvmet-configfs.md#what-the-kernel-refuses-and-so-the-order-of-a-change):

1. port links that must go (a port whose ``addr_*``/``param_*`` change is detached first:
   the kernel answers EACCES to those writes while any subsystem is linked);
2. ``allowed_hosts`` links that must go;
3. deletions (``--prune``), children before parents: namespaces, subsystems, referrals,
   ANA groups, ports, hosts;
4. ``discovery_nqn``; hosts and their ``dhchap_*``; subsystems and their ``attr_*``
   (``allow_any_host=0`` here, before host links);
5. namespaces: ``device_*``, ``buffered_io``, ``resv_enable`` and ``p2pmem`` only while the
   namespace is disabled (EBUSY/EINVAL otherwise), so a changed enabled namespace is cycled
   (disable, write, enable) — that namespace only;
6. ``allowed_hosts`` links, then ``allow_any_host=1`` (the kernel refuses it while links exist);
7. ports: ``addr_trtype`` first (it resets ``addr_tsas``), the other ``addr_*``/``param_*``,
   referrals (disabled while their address changes), ANA groups;
8. port links last (the first link enables the port and starts listening).

Minimal: attributes equal to the live value (compared the way the kernel parses them: ``yes``
is ``1``, ``0x1`` is ``1``, the serial is blank-padded...) produce nothing, so re-applying the
same state is an empty plan. Nothing outside the *managed set* is removed; objects that left
the desired state are removed only with ``prune``. Links inside a desired object are
reconciled like kubectl's fields: a link nvmet-p2p made that is no longer desired is removed,
one it did not make is left alone (with a warning when it grants access).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p import exits
from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.defs import (
    ANA_GRPID_MAX,
    DISCOVERY_NQN,
    NSID_MAX,
    PORTID_MAX,
    name_problem,
    nqn_problem,
    parse_int,
    rel_path_problem,
    subsystem_nqn_problem,
)
from nvmet_p2p.nvmet.spec import SPECS, is_secret, mask, normalize, parse_path, same
from nvmet_p2p.output import safe_lines
from nvmet_p2p.safeload import DocumentError, OneOf, Opt, check, no_nul, problem, short

PLAN_FORMAT = 1

HOST = SPECS["host"]
SUBSYSTEM = SPECS["subsystem"]
NAMESPACE = SPECS["namespace"]
PASSTHRU = SPECS["passthru"]
PORT = SPECS["port"]
REFERRAL = SPECS["referral"]
#: port parameters whose negative value asks for the transport's default (an enabled port then
#: shows what the transport chose)
_TRANSPORT_DEFAULTED = frozenset(a.name for a in PORT.attrs if a.name.startswith("param_") and a.new == "-1")


_LEFT_NOTE = "not in the desired state; --prune removes it"


class PlanError(NvmetP2PError):
    """The desired state cannot be reached on this kernel / from this live state."""

    exit_status = exits.USAGE


# ----------------------------------------------------------------------------------------------
# The managed set
# ----------------------------------------------------------------------------------------------

@dataclass
class Managed:
    """Which configfs objects and links nvmet-p2p created or adopted (and may remove)."""

    hosts: set[str] = field(default_factory=set)
    subsystems: set[str] = field(default_factory=set)
    namespaces: set[tuple[str, int]] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    referrals: set[tuple[int, str]] = field(default_factory=set)
    ana_groups: set[tuple[int, int]] = field(default_factory=set)
    allowed_hosts: set[tuple[str, str]] = field(default_factory=set)   # (subsystem, host)
    port_links: set[tuple[int, str]] = field(default_factory=set)      # (portid, subsystem)
    discovery_nqn: bool = False

    @classmethod
    def of_state(cls, s: st.TargetState) -> "Managed":
        m = cls()
        m.hosts = set(s.hosts)
        m.subsystems = set(s.subsystems)
        m.namespaces = {(n, i) for n, sub in s.subsystems.items() for i in sub.namespaces}
        m.allowed_hosts = {(n, h) for n, sub in s.subsystems.items() for h in sub.allowed_hosts}
        m.ports = set(s.ports)
        m.referrals = {(p, r) for p, port in s.ports.items() for r in port.referrals}
        m.ana_groups = {(p, g) for p, port in s.ports.items() for g in port.ana_groups if g != 1}
        m.port_links = {(p, n) for p, port in s.ports.items() for n in port.subsystems}
        m.discovery_nqn = s.discovery_nqn is not None
        return m

    def union(self, o: "Managed") -> "Managed":
        return Managed(self.hosts | o.hosts, self.subsystems | o.subsystems,
                       self.namespaces | o.namespaces, self.ports | o.ports,
                       self.referrals | o.referrals, self.ana_groups | o.ana_groups,
                       self.allowed_hosts | o.allowed_hosts, self.port_links | o.port_links,
                       self.discovery_nqn or o.discovery_nqn)

    def intersect(self, o: "Managed") -> "Managed":
        return Managed(self.hosts & o.hosts, self.subsystems & o.subsystems,
                       self.namespaces & o.namespaces, self.ports & o.ports,
                       self.referrals & o.referrals, self.ana_groups & o.ana_groups,
                       self.allowed_hosts & o.allowed_hosts, self.port_links & o.port_links,
                       self.discovery_nqn and o.discovery_nqn)

    def is_empty(self) -> bool:
        return not any((self.hosts, self.subsystems, self.namespaces, self.ports, self.referrals,
                        self.ana_groups, self.allowed_hosts, self.port_links, self.discovery_nqn))

    def to_dict(self) -> dict:
        return {"format": 1,
                "hosts": sorted(self.hosts), "subsystems": sorted(self.subsystems),
                "namespaces": [[n, i] for n, i in sorted(self.namespaces)],
                "ports": sorted(self.ports),
                "referrals": [[p, r] for p, r in sorted(self.referrals)],
                "ana_groups": [[p, g] for p, g in sorted(self.ana_groups)],
                "allowed_hosts": [[s, h] for s, h in sorted(self.allowed_hosts)],
                "port_links": [[p, s] for p, s in sorted(self.port_links)],
                "discovery_nqn": self.discovery_nqn}

    @classmethod
    def from_dict(cls, d: dict) -> "Managed":
        try:
            check_managed(d)
        except DocumentError as exc:
            raise ValueError(exc.message) from None
        return cls(set(d.get("hosts", [])), set(d.get("subsystems", [])),
                   {(n, int(i)) for n, i in d.get("namespaces", [])},
                   {int(p) for p in d.get("ports", [])},
                   {(int(p), r) for p, r in d.get("referrals", [])},
                   {(int(p), int(g)) for p, g in d.get("ana_groups", [])},
                   {(s, h) for s, h in d.get("allowed_hosts", [])},
                   {(int(p), s) for p, s in d.get("port_links", [])},
                   bool(d.get("discovery_nqn", False)))


# ----------------------------------------------------------------------------------------------
# Plan data
# ----------------------------------------------------------------------------------------------

@dataclass
class Op:
    """One configfs mutation. ``path`` (and ``target`` for links) are relative to nvmet/."""

    action: str                 # mkdir | rmdir | write | link | unlink
    path: str
    value: str | None = None    # write
    target: str | None = None   # link target
    old: str | None = None      # write: the live value when planned (display only)
    obj: str = ""               # "namespace <nqn>/<nsid>" ...

    @property
    def attr(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def secret(self) -> bool:
        return self.action == "write" and is_secret(self.attr)

    def describe(self) -> str:
        if self.action == "write":
            return f"write   {self.path} = {json.dumps(mask(self.attr, self.value))}"
        if self.action == "link":
            return f"link    {self.path} -> {self.target}"
        return f"{self.action:<7} {self.path}"

    def to_dict(self, secrets: bool = False) -> dict:
        d: dict[str, Any] = {"action": self.action, "path": self.path, "object": self.obj}
        if self.action == "write":
            d["value"] = self.value if secrets else mask(self.attr, self.value)
            d["old"] = self.old if secrets else mask(self.attr, self.old)
        if self.target is not None:
            d["target"] = self.target
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Op":
        return cls(d["action"], d["path"], d.get("value"), d.get("target"), d.get("old"),
                   d.get("object", ""))


@dataclass
class Change:
    """An object-level line of the readable diff."""

    action: str                 # create | update | delete | adopt | left | cycle
    kind: str                   # host | subsystem | namespace | port | referral | ana_group | root
    key: str
    attrs: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, secrets: bool = False) -> dict:
        return {"action": self.action, "kind": self.kind, "key": self.key,
                "attrs": [{"name": n, "old": o if secrets else mask(n, o),
                           "new": v if secrets else mask(n, v)} for n, o, v in self.attrs],
                "notes": self.notes}


@dataclass
class Plan:
    ops: list[Op]
    changes: list[Change]
    managed_after: Managed
    warnings: list[str]
    live_digest: str
    prune: bool = False
    #: fingerprint of the managed set the plan was made with (with ``live_digest``): a saved
    #: plan is applied only while both are unchanged
    managed_digest: str = ""

    @property
    def writes(self) -> int:
        return len(self.ops)

    @property
    def empty(self) -> bool:
        return not self.ops

    def summary(self) -> dict:
        c: dict[str, int] = {}
        for ch in self.changes:
            c[ch.action] = c.get(ch.action, 0) + 1
        return c

    def to_dict(self, secrets: bool = False) -> dict:
        return {"format": PLAN_FORMAT, "live_digest": self.live_digest,
                "managed_digest": self.managed_digest, "prune": self.prune,
                "writes": self.writes, "summary": self.summary(),
                "secrets_masked": not secrets and any(o.secret for o in self.ops),
                "changes": [c.to_dict(secrets) for c in self.changes],
                "warnings": self.warnings,
                "ops": [o.to_dict(secrets) for o in self.ops],
                "managed_after": self.managed_after.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, where: str = "<plan>") -> "Plan":
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise InputError(f"not an nvmet-p2p plan (format {PLAN_FORMAT})", where=where)
        check_plan(d, where)
        if d.get("secrets_masked"):
            raise InputError("this plan was printed with its secrets masked and cannot be "
                             "applied; save plans with `plan --out FILE`", where=where)
        for o in d.get("ops", []):
            for key in ("path", "target"):
                rel = o.get(key) if isinstance(o, dict) else None
                problem = rel_path_problem(rel) if isinstance(rel, str) else None
                if problem or (key == "path" and not isinstance(rel, str)):
                    raise InputError(f"operation {key} {rel!r} is not a configfs path below "
                                     f"nvmet/: {problem or 'missing'}", where=where)
        changes = [Change(c["action"], c["kind"], c["key"],
                          [(a["name"], a.get("old"), a.get("new")) for a in c.get("attrs", [])],
                          list(c.get("notes", []))) for c in d.get("changes", [])]
        return cls([Op.from_dict(o) for o in d.get("ops", [])], changes,
                   Managed.from_dict(d.get("managed_after") or {}), list(d.get("warnings", [])),
                   d.get("live_digest", ""), bool(d.get("prune", False)),
                   d.get("managed_digest") or "")

    def render(self, steps: bool = False) -> str:
        return render(self, steps)


def digest(live: st.TargetState) -> str:
    """A fingerprint of a live tree: a saved plan is applied only to the tree it was made for."""
    return _sha256(json.dumps(st.state_to_dict(live), sort_keys=True))


def managed_digest(managed: Managed) -> str:
    """A fingerprint of a managed set: a saved plan records the set after it (``managed_after``),
    which is right only if the set is still the one it was made with."""
    return _sha256(json.dumps(managed.to_dict(), sort_keys=True))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Building a plan
# ----------------------------------------------------------------------------------------------

class _Builder:
    # ANA groups of existing ports are created and (re)stated before namespaces move into
    # them ("ana_groups" before "ns": a port reports a group it has no directory for as
    # inaccessible, and a new group starts inaccessible); groups are removed after
    # namespaces left them ("drop_ana"). docs/multipath.md#what-nvmet-offers
    PHASES = ("detach", "unhost", "delete_ns", "delete_subsys", "delete_port_children",
              "delete_ports", "delete_hosts", "root", "hosts", "subsys", "ana_groups", "ns",
              "link_hosts", "allow_any", "ports", "drop_ana", "link_ports")

    def __init__(self, live: st.TargetState, desired: st.TargetState, managed: Managed,
                 prune: bool, caps):
        self.live, self.desired, self.managed, self.prune, self.caps = live, desired, managed, prune, caps
        self.ph: dict[str, list[Op]] = {p: [] for p in self.PHASES}
        self.changes: list[Change] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.removed = Managed()
        # attributes per kind that the kernel is known to have (checked once, not per object)
        self._known: dict[str, set[str]] = {k: set() for k in SPECS}

    def op(self, phase: str, *a, **k) -> Op:
        o = Op(*a, **k)
        self.ph[phase].append(o)
        return o

    def check_attr(self, kind: str, name: str, where: str) -> None:
        if self.caps is None or name in self._known[kind]:
            return
        has = self.caps.has(kind, name)
        if has is not False:
            self._known[kind].add(name)
        if has is False:
            kc = self.caps.kinds[kind]
            info = SPECS[kind].attr(name)
            why = f" (needs {info.needs})" if info and info.needs else ""
            src = (f"observed in {kc.observed_at}" if kc.source == "observed"
                   else f"expected for kernel {self.caps.kernel} from the release table")
            self.errors.append(f"{where}: this kernel has no {kind} attribute '{name}'{why}; "
                               f"{kind} attributes here: {', '.join(kc.attrs) or 'none'} ({src})")

    # -- hosts --------------------------------------------------------------------------------
    def hosts(self):
        for nqn, h in sorted(self.desired.hosts.items()):
            lh = self.live.hosts.get(nqn)
            obj = f"host {nqn}"
            for a in h.attrs:
                self.check_attr("host", a, obj)
            if lh is None:
                ch = Change("create", "host", nqn)
                self.op("hosts", "mkdir", f"hosts/{nqn}", obj=obj)
                for a in HOST.ordered(h.attrs):
                    if HOST.is_new_default(a, h.attrs[a]):
                        continue  # the kernel's value in a new host
                    self.op("hosts", "write", f"hosts/{nqn}/{a}", h.attrs[a], obj=obj)
                    ch.attrs.append((a, None, h.attrs[a]))
                self.changes.append(ch)
            else:
                diff = [a for a in HOST.ordered(h.attrs)
                        if not same(a, lh.attrs.get(a), h.attrs[a])]
                ch = Change("update" if diff else "adopt", "host", nqn)
                for a in diff:
                    self.op("hosts", "write", f"hosts/{nqn}/{a}", h.attrs[a], old=lh.attrs.get(a), obj=obj)
                    ch.attrs.append((a, lh.attrs.get(a), h.attrs[a]))
                if diff or nqn not in self.managed.hosts:
                    self.changes.append(ch)
        for nqn in sorted(set(self.live.hosts) - set(self.desired.hosts)):
            if nqn not in self.managed.hosts:
                continue
            if not self.prune:
                self.changes.append(Change("left", "host", nqn, notes=[_LEFT_NOTE]))
                continue
            users = [s for s, sub in self.live.subsystems.items() if nqn in sub.allowed_hosts]
            remaining = [s for s in users if s not in self.removed.subsystems
                         and (s, nqn) not in self.removed.allowed_hosts]
            if remaining:
                self.warnings.append(f"host {nqn} is not removed: subsystem(s) {', '.join(remaining)} "
                                     f"still allow it (not pruned, or not managed by nvmet-p2p)")
                continue
            self.op("delete_hosts", "rmdir", f"hosts/{nqn}", obj=f"host {nqn}")
            self.removed.hosts.add(nqn)
            self.changes.append(Change("delete", "host", nqn))

    def _pruned_subsystems(self) -> set[str]:
        if not self.prune:
            return set()
        return {n for n in self.live.subsystems
                if n not in self.desired.subsystems and n in self.managed.subsystems}

    # -- subsystems ---------------------------------------------------------------------------
    def subsystems(self):
        for nqn, s in sorted(self.desired.subsystems.items()):
            self.subsystem(nqn, s, self.live.subsystems.get(nqn))
        for nqn in sorted(set(self.live.subsystems) - set(self.desired.subsystems)):
            if nqn not in self.managed.subsystems:
                continue
            if not self.prune:
                self.changes.append(Change("left", "subsystem", nqn, notes=[_LEFT_NOTE]))
                continue
            self.prune_subsystem(nqn, self.live.subsystems[nqn])

    def subsystem(self, nqn: str, s: st.Subsystem, ls: st.Subsystem | None):
        obj = f"subsystem {nqn}"
        pos = len(self.changes)   # the subsystem's line goes before its namespaces' lines
        for a in s.attrs:
            self.check_attr("subsystem", a, obj)
        created = ls is None
        ch = Change("create" if created else "update", "subsystem", nqn)
        if created:
            self.op("subsys", "mkdir", f"subsystems/{nqn}", obj=obj)
        aah_late = self.subsystem_attrs(nqn, s, ls, ch)
        if s.passthru is not None:
            self.passthru(nqn, s.passthru, (ls.passthru if ls else None) or {}, ch)
        live_ns = {} if created else ls.namespaces
        for nsid, ns in sorted(s.namespaces.items()):
            self.namespace(nqn, ns, live_ns.get(nsid))
        for nsid in sorted(set(live_ns) - set(s.namespaces)):
            self.drop_namespace(nqn, nsid)
        self.allowed_hosts(nqn, s, ls, ch, aah_late)
        if not created and not ch.attrs and not ch.notes:
            if nqn not in self.managed.subsystems:
                ch.action = "adopt"
                self.changes.insert(pos, ch)
            return
        self.changes.insert(pos, ch)

    def subsystem_attrs(self, nqn: str, s: st.Subsystem, ls: st.Subsystem | None, ch: Change) -> bool:
        """The ``attr_*`` writes; ``allow_any_host=1`` goes to its late phase (after the host
        links are gone). Returns whether it did."""
        obj = f"subsystem {nqn}"
        created = ls is None
        live_attrs = {} if created else ls.attrs
        diff = [a for a in _subsys_order(s.attrs, live_attrs)
                if created or not same(a, live_attrs.get(a), s.attrs[a])]
        aah_late = False
        for a in diff:
            if created and a != "attr_allow_any_host" and SUBSYSTEM.is_new_default(a, s.attrs[a]):
                continue
            if a == "attr_allow_any_host":
                want = bool(normalize(a, s.attrs[a]))
                if created and not want:
                    continue  # a new subsystem starts with allow_any_host=0
                if want:
                    aah_late = True
                    self.op("allow_any", "write", f"subsystems/{nqn}/{a}", s.attrs[a],
                            old=live_attrs.get(a), obj=obj)
                    ch.attrs.append((a, live_attrs.get(a), s.attrs[a]))
                    continue
            self.op("subsys", "write", f"subsystems/{nqn}/{a}", s.attrs[a], old=live_attrs.get(a), obj=obj)
            ch.attrs.append((a, live_attrs.get(a), s.attrs[a]))
        return aah_late

    def passthru(self, nqn: str, want: dict[str, str], lp: dict[str, str], ch: Change):
        """``passthru/``: ``device_path`` only while the passthru controller is disabled
        (``nvmet_passthru_device_path_store()`` answers EBUSY), so an enabled one is cycled."""
        obj = f"subsystem {nqn}"
        base = f"subsystems/{nqn}/passthru"
        pdiff = [a for a in PASSTHRU.names if a in want and not same(a, lp.get(a), want[a])]
        want_en = want.get("enable", "0") == "1"
        live_en = lp.get("enable", "0") == "1"
        cycle = live_en and any(a in PASSTHRU.offline for a in pdiff)
        if cycle:
            self.op("subsys", "write", f"{base}/enable", "0", old="1", obj=obj)
        for a in pdiff:
            self.op("subsys", "write", f"{base}/{a}", want[a], old=lp.get(a), obj=obj)
            ch.attrs.append((f"passthru/{a}", lp.get(a), want[a]))
        if want_en != live_en or (cycle and want_en):
            self.op("subsys", "write", f"{base}/enable", "1" if want_en else "0",
                    old="0" if cycle else lp.get("enable"), obj=obj)
            ch.attrs.append(("passthru/enable", lp.get("enable"), "1" if want_en else "0"))

    def allowed_hosts(self, nqn: str, s: st.Subsystem, ls: st.Subsystem | None, ch: Change,
                      aah_late: bool):
        """``allowed_hosts/`` links: the ones nvmet-p2p made and no longer wants go first,
        foreign ones stay (and block ``allow_any_host=1``), new ones come after the hosts."""
        obj = f"subsystem {nqn}"
        live_hosts = set() if ls is None else set(ls.allowed_hosts)
        want_hosts = set(s.allowed_hosts)
        for h in sorted(live_hosts - want_hosts):
            if (nqn, h) in self.managed.allowed_hosts:
                self.op("unhost", "unlink", f"subsystems/{nqn}/allowed_hosts/{h}", obj=obj)
                ch.notes.append(f"host {h} no longer allowed")
                self.removed.allowed_hosts.add((nqn, h))
            else:
                self.warnings.append(f"subsystem {nqn}: host {h} is allowed but not in the "
                                     f"desired state (nvmet-p2p did not add it; left in place)")
                if aah_late:
                    self.errors.append(f"subsystem {nqn}: allow_any_host=1 is desired but host "
                                       f"{h} (not managed by nvmet-p2p) is still linked; the "
                                       f"kernel refuses allow_any_host with explicit hosts")
        for h in sorted(want_hosts - live_hosts):
            self.op("link_hosts", "link", f"subsystems/{nqn}/allowed_hosts/{h}", target=f"hosts/{h}", obj=obj)
            ch.notes.append(f"host {h} allowed")

    def prune_subsystem(self, nqn: str, ls: st.Subsystem):
        """Remove a managed subsystem that left the desired state: its port links, host links
        and namespaces first (the kernel refuses to remove a busy or non-empty one)."""
        obj = f"subsystem {nqn}"
        for pid, port in sorted(self.live.ports.items()):
            if nqn in port.subsystems and not self._port_detached(pid):
                self.op("detach", "unlink", f"ports/{pid}/subsystems/{nqn}", obj=obj)
                if (pid, nqn) not in self.managed.port_links:
                    self.warnings.append(f"port {pid} (link not made by nvmet-p2p) loses subsystem "
                                         f"{nqn}, which is pruned")
                self.removed.port_links.add((pid, nqn))
        for h in sorted(ls.allowed_hosts):
            self.op("unhost", "unlink", f"subsystems/{nqn}/allowed_hosts/{h}", obj=obj)
            self.removed.allowed_hosts.add((nqn, h))
        for nsid in sorted(ls.namespaces):
            self.op("delete_ns", "rmdir", f"subsystems/{nqn}/namespaces/{nsid}", obj=f"namespace {nqn}/{nsid}")
            self.removed.namespaces.add((nqn, nsid))
        self.op("delete_subsys", "rmdir", f"subsystems/{nqn}", obj=obj)
        self.removed.subsystems.add(nqn)
        self.changes.append(Change("delete", "subsystem", nqn,
                                   notes=[f"{len(ls.namespaces)} namespace(s) removed with it"]
                                   if ls.namespaces else []))

    def namespace(self, nqn: str, ns: st.Namespace, lns: st.Namespace | None):
        if self.caps is not None and not self._known["namespace"].issuperset(ns.attrs):
            for a in ns.attrs:
                self.check_attr("namespace", a, f"namespace {nqn}/{ns.nsid}")
        if lns is not None and ns.enable == lns.enable:
            # the common case of a re-apply, kept lean (it runs once per namespace)
            la = lns.attrs
            for a, v in ns.attrs.items():
                lv = la.get(a)
                if lv != v and not same(a, lv, v):
                    break
            else:
                if (nqn, ns.nsid) not in self.managed.namespaces:
                    self.changes.append(Change("adopt", "namespace", f"{nqn}/{ns.nsid}"))
                return
        if lns is None:
            self.create_namespace(nqn, ns)
        else:
            self.update_namespace(nqn, ns, lns)

    def create_namespace(self, nqn: str, ns: st.Namespace):
        """mkdir, the attributes that differ from a new namespace's, then ``enable``."""
        key = f"{nqn}/{ns.nsid}"
        obj, base = f"namespace {key}", f"subsystems/{nqn}/namespaces/{ns.nsid}"
        ch = Change("create", "namespace", key)
        self.op("ns", "mkdir", base, obj=obj)
        for a in NAMESPACE.ordered(ns.attrs):
            if NAMESPACE.is_new_default(a, ns.attrs[a]):
                continue
            self.op("ns", "write", f"{base}/{a}", ns.attrs[a], obj=obj)
            ch.attrs.append((a, None, ns.attrs[a]))
        if ns.enable:
            self.op("ns", "write", f"{base}/enable", "1", old="0", obj=obj)
            ch.attrs.append(("enable", None, "1"))
        self.changes.append(ch)

    def update_namespace(self, nqn: str, ns: st.Namespace, lns: st.Namespace):
        """The changed attributes; an enabled namespace whose ``device_*``, ``buffered_io``,
        ``resv_enable`` or ``p2pmem`` change is cycled (the kernel answers EBUSY/EINVAL to
        those on an enabled namespace)."""
        key = f"{nqn}/{ns.nsid}"
        obj, base = f"namespace {key}", f"subsystems/{nqn}/namespaces/{ns.nsid}"
        diff = [a for a in NAMESPACE.ordered(ns.attrs) if not same(a, lns.attrs.get(a), ns.attrs[a])]
        offline = [a for a in diff if a in NAMESPACE.offline]
        ch = Change("update", "namespace", key)
        cycle = lns.enable and bool(offline)
        if cycle:
            self.op("ns", "write", f"{base}/enable", "0", old="1", obj=obj)
            ch.action = "cycle"
            ch.notes.append(f"disabled while {', '.join(offline)} change{'s' if len(offline) == 1 else ''} "
                            f"(the kernel refuses {'it' if len(offline) == 1 else 'them'} on an enabled namespace)")
        for a in diff:
            self.op("ns", "write", f"{base}/{a}", ns.attrs[a], old=lns.attrs.get(a), obj=obj)
            ch.attrs.append((a, lns.attrs.get(a), ns.attrs[a]))
        if ns.enable and (cycle or not lns.enable):
            self.op("ns", "write", f"{base}/enable", "1", old="0", obj=obj)
            if not cycle:
                ch.attrs.append(("enable", "0", "1"))
        elif not ns.enable and lns.enable and not cycle:
            self.op("ns", "write", f"{base}/enable", "0", old="1", obj=obj)
            ch.attrs.append(("enable", "1", "0"))
        elif not ns.enable and cycle:
            ch.attrs.append(("enable", "1", "0"))
        if ch.attrs or ch.notes:
            self.changes.append(ch)
        elif (nqn, ns.nsid) not in self.managed.namespaces:
            ch.action = "adopt"
            self.changes.append(ch)

    def drop_namespace(self, nqn: str, nsid: int):
        if (nqn, nsid) not in self.managed.namespaces:
            return
        key = f"{nqn}/{nsid}"
        if not self.prune:
            self.changes.append(Change("left", "namespace", key, notes=[_LEFT_NOTE]))
            return
        self.op("delete_ns", "rmdir", f"subsystems/{nqn}/namespaces/{nsid}", obj=f"namespace {key}")
        self.removed.namespaces.add((nqn, nsid))
        self.changes.append(Change("delete", "namespace", key))

    # -- ports --------------------------------------------------------------------------------
    def _port_detached(self, pid: int) -> bool:
        return pid in self._detached

    def ports_prepare(self):
        """Decide which ports must be detached (their addr/param change) before anything else."""
        self._detached: set[int] = set()
        for pid, p in self.desired.ports.items():
            lp = self.live.ports.get(pid)
            if lp is None or not lp.subsystems:
                continue
            if self._port_attr_diff(p, lp):
                self._detached.add(pid)

    def _port_attr_diff(self, p: st.Port, lp: st.Port) -> list[str]:
        enabled = bool(lp.subsystems)
        out = []
        for a in PORT.ordered(p.attrs):
            if same(a, lp.attrs.get(a), p.attrs[a]):
                continue
            if a in _TRANSPORT_DEFAULTED and enabled:
                n = normalize(a, p.attrs[a])
                if isinstance(n, int) and n < 0:
                    continue  # "transport default": the enabled port shows what it chose
            if a == "addr_tsas" and not p.attrs[a]:
                continue
            out.append(a)
        return out

    def ports(self):
        for pid, p in sorted(self.desired.ports.items()):
            self.port(pid, p, self.live.ports.get(pid))
        for pid in sorted(set(self.live.ports) - set(self.desired.ports)):
            if pid not in self.managed.ports:
                continue
            if not self.prune:
                self.changes.append(Change("left", "port", str(pid), notes=[_LEFT_NOTE]))
                continue
            self.prune_port(pid, self.live.ports[pid])

    def port(self, pid: int, p: st.Port, lp: st.Port | None):
        obj = f"port {pid}"
        base = f"ports/{pid}"
        for a in p.attrs:
            self.check_attr("port", a, obj)
        created = lp is None
        ch = Change("create" if created else "update", "port", str(pid))
        if created:
            self.op("ports", "mkdir", base, obj=obj)
            diff = [a for a in PORT.ordered(p.attrs)
                    if not _is_kernel_default_new_port(a, p.attrs[a], p.attrs.get("addr_trtype", ""))]
        else:
            diff = self._port_attr_diff(p, lp)
        live_links = set() if created else set(lp.subsystems)
        if pid in self._detached:
            ch.notes.append(f"disabled while its address/parameters change: "
                            f"{len(live_links)} subsystem link(s) removed and restored; "
                            f"hosts connected through it reconnect")
            for n in sorted(live_links):
                self.op("detach", "unlink", f"{base}/subsystems/{n}", obj=obj)
        for a in diff:
            self.op("ports", "write", f"{base}/{a}", p.attrs[a],
                    old=None if created else lp.attrs.get(a), obj=obj)
            ch.attrs.append((a, None if created else lp.attrs.get(a), p.attrs[a]))
        self.port_referrals(pid, p, {} if created else lp.referrals, ch)
        self.port_ana_groups(pid, p, {1: "optimized"} if created else lp.ana_groups, ch,
                             created=created)
        self.port_links(pid, p, live_links, ch)
        if created or ch.attrs or ch.notes:
            self.changes.append(ch)
        elif pid not in self.managed.ports:
            ch.action = "adopt"
            self.changes.append(ch)

    def port_referrals(self, pid: int, p: st.Port, lrefs: dict[str, st.Referral], ch: Change):
        for name, r in sorted(p.referrals.items()):
            self.referral(pid, r, lrefs.get(name), ch)
        for name in sorted(set(lrefs) - set(p.referrals)):
            if (pid, name) not in self.managed.referrals:
                continue
            if self.prune:
                self.op("delete_port_children", "rmdir", f"ports/{pid}/referrals/{name}", obj=f"port {pid}")
                self.removed.referrals.add((pid, name))
                ch.notes.append(f"referral {name} removed")
            else:
                self.changes.append(Change("left", "referral", f"{pid}/{name}", notes=[_LEFT_NOTE]))

    def port_ana_groups(self, pid: int, p: st.Port, lgroups: dict[int, str], ch: Change,
                        created: bool = False):
        """``ana_groups/<id>``: group 1 always exists; a new group starts inaccessible, so its
        state is written right after the ``mkdir`` -- on an existing port before any namespace
        moves into it, on a new port before the port is linked (no host sees it before)."""
        obj = f"port {pid}"
        phase = "ports" if created else "ana_groups"
        for gid, state in sorted(p.ana_groups.items()):
            gbase = f"ports/{pid}/ana_groups/{gid}"
            if gid not in lgroups:
                self.op(phase, "mkdir", gbase, obj=obj)
                if state != "inaccessible":
                    self.op(phase, "write", f"{gbase}/ana_state", state, obj=obj)
                ch.notes.append(f"ANA group {gid} created ({state})")
            elif not same("ana_state", lgroups[gid], state):
                self.op(phase, "write", f"{gbase}/ana_state", state, old=lgroups[gid], obj=obj)
                ch.attrs.append((f"ana_groups/{gid}/ana_state", lgroups[gid], state))
        for gid in sorted(set(lgroups) - set(p.ana_groups) - {1}):
            if (pid, gid) in self.managed.ana_groups and self.prune:
                users = self._ana_users(pid, gid)
                if users:
                    self.warnings.append(
                        f"port {pid}: ANA group {gid} is not in the desired state but "
                        f"{', '.join(users[:4])}{' ...' if len(users) > 4 else ''} (exported "
                        f"through port {pid}) still belong to it: removing it would make them "
                        "inaccessible through this port (the kernel reports a group a port has "
                        "no directory for as inaccessible); left in place")
                    continue
                self.op("drop_ana", "rmdir", f"ports/{pid}/ana_groups/{gid}", obj=obj)
                self.removed.ana_groups.add((pid, gid))
                ch.notes.append(f"ANA group {gid} removed")

    def _ana_groups_after(self) -> dict[tuple[str, int], int]:
        """Every namespace's ANA group once the plan ran (desired value, else the live one)."""
        out: dict[tuple[str, int], int] = {}
        for nqn, sub in self.live.subsystems.items():
            for nsid, ns in sub.namespaces.items():
                out[(nqn, nsid)] = parse_int(ns.attrs.get("ana_grpid") or "1") or 1
        for nqn, sub in self.desired.subsystems.items():
            for nsid, ns in sub.namespaces.items():
                v = ns.attrs.get("ana_grpid")
                if v is not None:
                    out[(nqn, nsid)] = parse_int(v) or 1
                else:
                    out.setdefault((nqn, nsid), 1)
        return out

    def _exports_after(self) -> dict[int, set[str]]:
        """Subsystems each port exports once the plan ran (links of live ports not in the
        desired state stay; desired ports keep their desired links plus foreign ones)."""
        out = {pid: set(p.subsystems) for pid, p in self.live.ports.items()}
        for pid, p in self.desired.ports.items():
            foreign = {n for n in out.get(pid, set())
                       if (pid, n) not in self.managed.port_links}
            out[pid] = set(p.subsystems) | foreign
        return out

    def _ana_users(self, pid: int, gid: int) -> list[str]:
        if not hasattr(self, "_ana_after"):
            self._ana_after = self._ana_groups_after()
            self._exports = self._exports_after()
        subs = self._exports.get(pid, set())
        return [f"{n}/{i}" for (n, i), g in sorted(self._ana_after.items())
                if g == gid and n in subs]

    def check_ana(self):
        """A namespace in a group a port that exports it has no directory for is inaccessible
        through that port; one that ends inaccessible through every port cannot be reached."""
        after = self._ana_groups_after()
        exports = self._exports_after()
        groups: dict[int, dict[int, str]] = {pid: dict(p.ana_groups) for pid, p in self.live.ports.items()}
        for pid, p in self.desired.ports.items():
            g = dict(groups.get(pid, {1: "optimized"}))
            for gid in list(g):
                if gid != 1 and gid not in p.ana_groups and (pid, gid) in self.removed.ana_groups:
                    del g[gid]
            g.update(p.ana_groups)
            groups[pid] = g
        for (nqn, nsid), gid in sorted(after.items()):
            if nqn not in self.desired.subsystems:
                continue
            ports = sorted(pid for pid, subs in exports.items() if nqn in subs)
            if not ports:
                continue
            states = {pid: groups.get(pid, {}).get(gid, "inaccessible" if gid != 1 else "optimized")
                      for pid in ports}
            missing = [pid for pid in ports if gid not in groups.get(pid, {1: None})]
            if missing:
                self.warnings.append(
                    f"namespace {nqn}/{nsid} is in ANA group {gid}, which port(s) "
                    f"{', '.join(map(str, missing))} have no directory for: the kernel reports "
                    "it inaccessible through them")
            if all(s in ("inaccessible", "persistent-loss") for s in states.values()):
                self.warnings.append(
                    f"namespace {nqn}/{nsid}: ANA group {gid} is inaccessible through every port "
                    f"that exports it ({', '.join(f'{p} {s}' for p, s in states.items())}): no "
                    "host can reach it")

    def port_links(self, pid: int, p: st.Port, live_links: set[str], ch: Change):
        """``subsystems/`` links of a port, last of all: the first link enables the port. A
        detached port gets every link back, foreign ones included."""
        obj = f"port {pid}"
        base = f"ports/{pid}"
        detached = pid in self._detached
        want_links = set(p.subsystems)
        for n in sorted(live_links - want_links):
            if n in self._pruned_subsystems():
                self.removed.port_links.add((pid, n))
                continue  # unlinked by the subsystem pass (or by the detach above)
            if (pid, n) in self.managed.port_links:
                if not detached:
                    self.op("detach", "unlink", f"{base}/subsystems/{n}", obj=obj)
                self.removed.port_links.add((pid, n))
                ch.notes.append(f"subsystem {n} no longer exported here")
            else:
                self.warnings.append(f"port {pid}: subsystem {n} is exported but not in the desired "
                                     f"state (nvmet-p2p did not link it; left in place)")
                if detached:
                    self.op("link_ports", "link", f"{base}/subsystems/{n}", target=f"subsystems/{n}", obj=obj)
        for n in sorted(want_links):
            if n not in live_links or detached:
                self.op("link_ports", "link", f"{base}/subsystems/{n}", target=f"subsystems/{n}", obj=obj)
                if n not in live_links:
                    ch.notes.append(f"subsystem {n} exported here")

    def prune_port(self, pid: int, lp: st.Port):
        """Remove a managed port that left the desired state: links, referrals and ANA groups
        first (the kernel refuses to remove a non-empty port)."""
        obj = f"port {pid}"
        for n in sorted(lp.subsystems):
            if n in self._pruned_subsystems():
                continue  # already unlinked by the subsystem pass
            self.op("detach", "unlink", f"ports/{pid}/subsystems/{n}", obj=obj)
            self.removed.port_links.add((pid, n))
        for name in sorted(lp.referrals):
            self.op("delete_port_children", "rmdir", f"ports/{pid}/referrals/{name}", obj=obj)
            self.removed.referrals.add((pid, name))
        for gid in sorted(set(lp.ana_groups) - {1}):
            self.op("delete_port_children", "rmdir", f"ports/{pid}/ana_groups/{gid}", obj=obj)
            self.removed.ana_groups.add((pid, gid))
        self.op("delete_ports", "rmdir", f"ports/{pid}", obj=obj)
        self.removed.ports.add(pid)
        self.changes.append(Change("delete", "port", str(pid)))

    def referral(self, pid: int, r: st.Referral, lr: st.Referral | None, ch: Change):
        base = f"ports/{pid}/referrals/{r.name}"
        obj = f"port {pid}"
        if lr is None:
            self.op("ports", "mkdir", base, obj=obj)
            for a in REFERRAL.ordered(r.attrs):
                self.op("ports", "write", f"{base}/{a}", r.attrs[a], obj=obj)
            if r.enable:
                self.op("ports", "write", f"{base}/enable", "1", old="0", obj=obj)
            ch.notes.append(f"referral {r.name} created")
            return
        diff = [a for a in REFERRAL.ordered(r.attrs) if not same(a, lr.attrs.get(a), r.attrs[a])]
        cycle = bool(diff) and lr.enable
        if cycle:
            self.op("ports", "write", f"{base}/enable", "0", old="1", obj=obj)
        for a in diff:
            self.op("ports", "write", f"{base}/{a}", r.attrs[a], old=lr.attrs.get(a), obj=obj)
            ch.attrs.append((f"referrals/{r.name}/{a}", lr.attrs.get(a), r.attrs[a]))
        if r.enable and (cycle or not lr.enable):
            self.op("ports", "write", f"{base}/enable", "1", old="0", obj=obj)
        elif not r.enable and lr.enable and not cycle:
            self.op("ports", "write", f"{base}/enable", "0", old="1", obj=obj)

    # -- root ---------------------------------------------------------------------------------
    def root(self):
        want = self.desired.discovery_nqn
        have = self.live.discovery_nqn
        if want is not None:
            self.check_attr("root", "discovery_nqn", "root")
            if have != want:
                self.op("root", "write", "discovery_nqn", want, old=have, obj="root")
                self.changes.append(Change("update", "root", "discovery_nqn", [("discovery_nqn", have, want)]))
        elif self.managed.discovery_nqn and self.prune and have not in (None, DISCOVERY_NQN):
            self.op("root", "write", "discovery_nqn", DISCOVERY_NQN, old=have, obj="root")
            self.changes.append(Change("update", "root", "discovery_nqn", [("discovery_nqn", have, DISCOVERY_NQN)],
                                       notes=["back to the well-known discovery NQN (--prune)"]))

    def build(self) -> list[Op]:
        self.ports_prepare()
        self.root()
        self.subsystems()   # before hosts(): host removal depends on the links removed here
        self.hosts()
        self.ports()
        self.check_ana()
        rank = {"root": 0, "host": 1, "subsystem": 2, "namespace": 2, "port": 3, "referral": 3}
        self.changes.sort(key=lambda c: rank.get(c.kind, 4))
        if self.errors:
            raise PlanError("the desired state cannot be applied (nothing was changed):\n  "
                            + "\n  ".join(self.errors))
        ops: list[Op] = []
        for p in self.PHASES:
            ops.extend(self.ph[p])
        return ops


def _subsys_order(want: dict[str, str], live: dict[str, str]) -> list[str]:
    names = SUBSYSTEM.ordered(want)
    # cntlid_min/max: write in the order that never crosses the other (min <= max always)
    if "attr_cntlid_min" in want and "attr_cntlid_max" in want:
        new_min = normalize("attr_cntlid_min", want["attr_cntlid_min"])
        live_max = normalize("attr_cntlid_max", live.get("attr_cntlid_max", SUBSYSTEM.attr("attr_cntlid_max").new))
        if isinstance(new_min, int) and isinstance(live_max, int) and new_min > live_max:
            names.remove("attr_cntlid_max")
            names.insert(names.index("attr_cntlid_min"), "attr_cntlid_max")
    return names


_TSAS_DEFAULT = {"rdma": "connected", "tcp": "none"}


def _is_kernel_default_new_port(name: str, value: str, trtype: str) -> bool:
    if name == "addr_tsas":  # addr_trtype sets it: rdma -> connected, tcp -> none, others ""
        return value.strip() in ("", _TSAS_DEFAULT.get(trtype.strip(), ""))
    return PORT.is_new_default(name, value)


def name_problems(desired: st.TargetState) -> list[str]:
    """Every name or id in ``desired`` that could not be one configfs object, whatever made
    the state (a state file, a profile, a caller): NQNs by the kernel's rules, referral names
    as directory names, ids in the kernel's ranges. Names never become paths."""
    out: list[str] = []

    def bad(what: str, name, problem: str | None) -> None:
        if problem:
            out.append(f"{what} {name!r}: {problem}")

    def id_in(what: str, n, lo: int, hi: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
            out.append(f"{what} {n!r} is out of range {lo}..{hi}")

    for nqn in desired.hosts:
        bad("host NQN", nqn, nqn_problem(nqn))
    for nqn, sub in desired.subsystems.items():
        bad("subsystem NQN", nqn, subsystem_nqn_problem(nqn))
        for h in sub.allowed_hosts:
            bad(f"subsystem {nqn!r}: allowed host", h, nqn_problem(h))
        for nsid in sub.namespaces:
            id_in(f"subsystem {nqn!r}: nsid", nsid, 1, NSID_MAX)
    for pid, port in desired.ports.items():
        id_in("port id", pid, 0, PORTID_MAX)
        for n in port.subsystems:
            bad(f"port {pid}: subsystem", n, nqn_problem(n))
        for name in port.referrals:
            bad(f"port {pid}: referral", name, name_problem(name))
        for gid in port.ana_groups:
            id_in(f"port {pid}: ANA group", gid, 1, ANA_GRPID_MAX)
    return out


def build_plan(live: st.TargetState, desired: st.TargetState, managed: Managed | None = None,
               prune: bool = False, caps=None, fingerprint: bool = True,
               check_names: bool = True) -> Plan:
    """Diff ``live`` against ``desired`` into an ordered :class:`Plan`.

    Every name in ``desired`` is checked first (:func:`name_problems`): :class:`PlanError`
    before any operation exists. ``managed``: what nvmet-p2p manages today (objects outside it are never removed or
    changed unless ``desired`` names them); ``prune``: remove managed objects that are not in
    ``desired``; ``caps``: :class:`nvmet_p2p.nvmet.configfs.Capabilities` of the kernel, to refuse
    attributes it does not have before anything is written. ``fingerprint=False`` when
    ``live`` is not the whole tree (``read_state(cfs, only=desired)``, what ``apply`` reads):
    the plan then carries no :func:`digest` and cannot be applied later as a saved plan.
    ``check_names=False``: the caller checked the names itself (a rollback re-creating what an
    apply removed, under whatever name configfs held).
    """
    problems = name_problems(desired) if check_names else []
    if problems:
        raise PlanError("the desired state names objects configfs cannot hold (nothing was "
                        "changed):\n  " + "\n  ".join(problems))
    managed = managed or Managed()
    b = _Builder(live, desired, managed, prune, caps)
    ops = b.build()
    exists_after = Managed.of_state(desired).union(_minus(Managed.of_state(live), b.removed))
    managed_after = _minus(managed.union(Managed.of_state(desired)), b.removed).intersect(exists_after)
    return Plan(ops=ops, changes=b.changes, managed_after=managed_after, warnings=b.warnings,
                live_digest=digest(live) if fingerprint else "", prune=prune,
                managed_digest=managed_digest(managed) if fingerprint else "")


def _minus(a: Managed, b: Managed) -> Managed:
    return Managed(a.hosts - b.hosts, a.subsystems - b.subsystems, a.namespaces - b.namespaces,
                   a.ports - b.ports, a.referrals - b.referrals, a.ana_groups - b.ana_groups,
                   a.allowed_hosts - b.allowed_hosts, a.port_links - b.port_links,
                   a.discovery_nqn and not b.discovery_nqn)


def clear_plan(live: st.TargetState, managed: Managed, everything: bool = False) -> Plan:
    """Remove the managed objects (or, with ``everything``, the whole tree)."""
    m = Managed.of_state(live) if everything else managed
    desired = st.TargetState()
    return build_plan(live, desired, m, prune=True)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

_SIGN = {"create": "+", "update": "~", "cycle": "~", "delete": "-", "adopt": "=", "left": "!"}


def _q(name: str, v: str | None) -> str:
    if v is None:
        return "(unset)"
    return json.dumps(mask(name.rsplit("/", 1)[-1], v))


def render(plan: Plan, steps: bool = False) -> str:
    """The plan as a readable, Terraform-like diff (secrets masked)."""
    lines: list[str] = []
    if plan.empty and not [c for c in plan.changes if c.action in ("adopt", "left")]:
        lines.append("No changes: configfs already matches the desired state (0 writes).")
    for c in plan.changes:
        head = f"{_SIGN.get(c.action, '?')} {c.kind} {c.key}"
        tag = {"cycle": "  (cycled: disable, change, enable)", "adopt": "  (exists; now managed, no writes)",
               "left": "  (left in place)", "delete": "  (removed)"}.get(c.action, "")
        lines.append(head + tag)
        for name, old, new in c.attrs:
            if old is None and c.action == "create":
                lines.append(f"      {name}: {_q(name, new)}")
            else:
                lines.append(f"      {name}: {_q(name, old)} -> {_q(name, new)}")
        for n in c.notes:
            lines.append(f"      # {n}")
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    s = plan.summary()
    parts = [f"{s[k]} to {k}" for k in ("create", "update", "cycle", "delete", "adopt") if s.get(k)]
    if s.get("left"):
        parts.append(f"{s['left']} left in place (use --prune to remove)")
    if not plan.empty or parts:
        lines.append("")
        lines.append(f"Plan: {plan.writes} configfs write{'s' if plan.writes != 1 else ''}"
                     + (f" ({', '.join(parts)})" if parts else "") + ".")
    if steps and plan.ops:
        lines.append("")
        lines.append("Steps, in order:")
        w = len(str(len(plan.ops)))
        for i, o in enumerate(plan.ops, 1):
            lines.append(f"  {i:>{w}}. {o.describe()}")
    return safe_lines(lines)


# ----------------------------------------------------------------------------------------------
# The project's own documents read back: managed sets (and the journal's), saved plans
# ----------------------------------------------------------------------------------------------

def check_managed(d: Any, where: str = "managed set") -> None:
    """The shape :meth:`Managed.from_dict` reads."""
    pairs = {"namespaces": (str, int), "referrals": (int, str), "ana_groups": (int, int),
             "allowed_hosts": (str, str), "port_links": (int, str)}
    check(d, {"hosts": Opt([str], False), "subsystems": Opt([str], False), "ports": Opt([int], False),
              "discovery_nqn": Opt(bool, False), **{k: Opt([list], False) for k in pairs}}, where)
    for k, kinds in pairs.items():
        for i, p in enumerate(d.get(k) or []):
            if len(p) != 2 or any(problem(x, t) for x, t in zip(p, kinds)):
                raise DocumentError(f"$.{k}[{i}]: expected a pair of {kinds[0].__name__} and "
                                    f"{kinds[1].__name__}, got {short(p)}", where=where)


def check_plan(d: dict, where: str) -> None:
    """A saved plan (``plan --out``) before :meth:`Plan.from_dict` builds it:
    the shape, and every operation's path inside the nvmet tree (a plan file is a list of
    writes; one naming ``../../etc/...`` must never run)."""
    scalar = Opt((str, type(None)))
    check(d, {"ops": [{"action": OneOf("mkdir", "rmdir", "write", "link", "unlink"), "path": str,
                       "value": scalar, "target": scalar, "old": scalar, "object": Opt(str)}],
              "changes": Opt([{"action": str, "kind": str, "key": str,
                               "attrs": Opt([{"name": str, "old": scalar, "new": scalar}]),
                               "notes": Opt([str])}]),
              "warnings": Opt([str]), "live_digest": Opt(str), "managed_digest": Opt(str),
              "prune": Opt(bool),
              "managed_after": Opt(dict)}, where)
    check_managed(d.get("managed_after") or {}, where)
    for i, op in enumerate(d["ops"]):
        path = op["path"]
        parts = path.split("/")
        bad = (not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts)
               or "\x00" in path)
        try:
            if not bad:
                parse_path(path)
        except (ValueError, Exception):
            bad = True
        if bad:
            raise DocumentError(f"$.ops[{i}].path: {short(path)} is not a configfs path of the "
                                f"nvmet tree", where=where)
        if op["action"] == "link":
            t = op.get("target") or ""
            if not (t.startswith(("hosts/", "subsystems/")) and t.count("/") == 1 and ".." not in t):
                raise DocumentError(f"$.ops[{i}].target: {short(t)} is not a configfs path of a "
                                    f"host or subsystem", where=where)
        if op["action"] == "write" and op.get("value") is not None:
            no_nul(op["value"], where, f"$.ops[{i}].value")
