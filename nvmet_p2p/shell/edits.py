"""Staged edits: what a shell command changes in the desired :class:`TargetState`.

An :class:`Edit` is one shell command's change, kept as data plus a function that performs it
on *any* state: the shell applies it to its view at once (so ``ls`` shows it), and at
``diff``/``commit`` time the whole list is replayed on a fresh read of configfs, so changes
someone else made meanwhile are kept and a conflicting edit is reported instead of being
written over.

Every function here checks everything first and only then mutates, so an edit that raises
:class:`EditError` leaves the state untouched. Pure: plain data in, plain data out.

Objects are addressed by a *locator* tuple, in the kernel's vocabulary:
``("root",)``, ``("host", nqn)``, ``("subsystem", nqn)``, ``("namespace", nqn, nsid)``,
``("passthru", nqn)``, ``("port", portid)``, ``("referral", portid, name)``,
``("ana_group", portid, grpid)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import state as st

Locator = tuple


class EditError(NvmetP2PError):
    """The edit cannot be made on this state (nothing was changed)."""


@dataclass
class Edit:
    """One staged change: ``text`` says what it does (secrets masked), ``run`` does it.

    ``scope``: the namespaces whose p2p situation it can change (their p2pmem, device,
    enable, or what their budget depends on): ``(nqn, nsid)`` for one namespace, ``nqn`` for
    every namespace of a subsystem, ``None`` for possibly all. It lets the shell's caches
    update only what an edit touched instead of rescanning the target."""

    text: str
    run: Callable[[st.TargetState], None]
    notes: list[str] = field(default_factory=list)
    scope: frozenset | None = None

    def apply(self, state: st.TargetState) -> None:
        self.run(state)


# ----------------------------------------------------------------------------------------------
# Looking objects up
# ----------------------------------------------------------------------------------------------

def describe(loc: Locator) -> str:
    kind = loc[0]
    if kind == "root":
        return "the nvmet root"
    if kind == "namespace":
        return f"namespace {loc[2]} of {loc[1]}"
    if kind == "passthru":
        return f"passthru of {loc[1]}"
    if kind == "referral":
        return f"referral {loc[2]} of port {loc[1]}"
    if kind == "ana_group":
        return f"ANA group {loc[2]} of port {loc[1]}"
    return f"{kind} {loc[1]}"


def find(state: st.TargetState, loc: Locator):
    """The object ``loc`` names in ``state``, or ``None``."""
    kind = loc[0]
    if kind == "root":
        return state
    if kind == "host":
        return state.hosts.get(loc[1])
    if kind == "subsystem":
        return state.subsystems.get(loc[1])
    if kind in ("namespace", "passthru"):
        sub = state.subsystems.get(loc[1])
        if sub is None:
            return None
        if kind == "passthru":
            return sub
        return sub.namespaces.get(loc[2])
    if kind in ("port", "referral", "ana_group"):
        port = state.ports.get(loc[1])
        if port is None or kind == "port":
            return port
        if kind == "referral":
            return port.referrals.get(loc[2])
        return port if loc[2] in port.ana_groups else None
    raise EditError(f"unknown object kind {kind!r}")


def need(state: st.TargetState, loc: Locator):
    obj = find(state, loc)
    if obj is None:
        raise EditError(f"{describe(loc)} does not exist")
    return obj


def attrs_of(state: st.TargetState, loc: Locator) -> dict[str, str]:
    """The attribute files of ``loc`` as the state holds them (``enable`` apart)."""
    kind = loc[0]
    obj = need(state, loc)
    if kind == "root":
        return {"discovery_nqn": state.discovery_nqn} if state.discovery_nqn is not None else {}
    if kind == "passthru":
        return {k: v for k, v in (obj.passthru or {}).items() if k != "enable"}
    if kind == "ana_group":
        return {"ana_state": obj.ana_groups[loc[2]]}
    return obj.attrs


def enabled(state: st.TargetState, loc: Locator) -> bool | None:
    """``enable`` of a namespace, passthru or referral (``None`` for other kinds)."""
    kind = loc[0]
    obj = find(state, loc)
    if obj is None:
        return None
    if kind in ("namespace", "referral"):
        return obj.enable
    if kind == "passthru":
        return (obj.passthru or {}).get("enable", "0") == "1"
    return None


# ----------------------------------------------------------------------------------------------
# Attributes and enable
# ----------------------------------------------------------------------------------------------

def set_attrs(loc: Locator, values: dict[str, str], text: str) -> Edit:
    """Write attribute files of ``loc`` (names are configfs file names)."""
    values = dict(values)

    def run(s: st.TargetState) -> None:
        obj = need(s, loc)
        kind = loc[0]
        if kind == "root":
            s.discovery_nqn = values["discovery_nqn"]
        elif kind == "passthru":
            pt = dict(obj.passthru or {"enable": "0"})
            pt.update(values)
            obj.passthru = pt
        elif kind == "ana_group":
            obj.ana_groups[loc[2]] = values["ana_state"]
        else:
            obj.attrs.update(values)
    return Edit(text, run, scope=_scope(loc, values))


def _scope(loc: Locator, values: dict | None = None) -> frozenset | None:
    if loc[0] == "namespace":
        return frozenset({(loc[1], loc[2])})
    if loc[0] == "subsystem":         # qid_max bounds the budget of all its namespaces
        return frozenset({loc[1]}) if values is None or "attr_qid_max" in values else frozenset()
    if loc[0] == "port":
        return None                   # addresses and queue sizes: every subsystem it exports
    return frozenset()                # hosts, referrals, ANA groups, passthru, the root


def set_enable(loc: Locator, on: bool) -> Edit:
    def run(s: st.TargetState) -> None:
        obj = need(s, loc)
        if loc[0] == "passthru":
            pt = dict(obj.passthru or {})
            pt["enable"] = "1" if on else "0"
            obj.passthru = pt
        else:
            obj.enable = on
    return Edit(f"{'enable' if on else 'disable'} {describe(loc)}", run, scope=_scope(loc))


# ----------------------------------------------------------------------------------------------
# Creating and deleting objects
# ----------------------------------------------------------------------------------------------

def create_subsystem(nqn: str) -> Edit:
    def run(s: st.TargetState) -> None:
        if nqn in s.subsystems:
            raise EditError(f"subsystem {nqn} already exists")
        if s.discovery_nqn is not None and nqn == s.discovery_nqn:
            raise EditError(f"{nqn} is the discovery NQN; the kernel refuses it as a subsystem")
        s.subsystems[nqn] = st.Subsystem(nqn=nqn)
    return Edit(f"create subsystem {nqn}", run, scope=frozenset({nqn}))


def delete_subsystem(nqn: str) -> Edit:
    """The subsystem with its namespaces, host links and the port links that export it (the
    kernel refuses to remove a subsystem that a port still exports)."""
    def run(s: st.TargetState) -> None:
        if nqn not in s.subsystems:
            raise EditError(f"subsystem {nqn} does not exist")
        del s.subsystems[nqn]
        for port in s.ports.values():
            if nqn in port.subsystems:
                port.subsystems.remove(nqn)
    return Edit(f"delete subsystem {nqn}", run, scope=frozenset({nqn}))


def create_namespace(nqn: str, nsid: int, attrs: dict[str, str] | None = None) -> Edit:
    """A new namespace starts disabled, as the kernel creates it."""
    def run(s: st.TargetState) -> None:
        sub = need(s, ("subsystem", nqn))
        if nsid in sub.namespaces:
            raise EditError(f"namespace {nsid} of {nqn} already exists")
        sub.namespaces[nsid] = st.Namespace(nsid=nsid, enable=False, attrs=dict(attrs or {}))
    extra = "".join(f" {k}={v}" for k, v in (attrs or {}).items())
    return Edit(f"create namespace {nsid} of {nqn}{extra}", run, scope=frozenset({(nqn, nsid)}))


def delete_namespace(nqn: str, nsid: int) -> Edit:
    def run(s: st.TargetState) -> None:
        sub = need(s, ("subsystem", nqn))
        if nsid not in sub.namespaces:
            raise EditError(f"namespace {nsid} of {nqn} does not exist")
        del sub.namespaces[nsid]
    return Edit(f"delete namespace {nsid} of {nqn}", run, scope=frozenset({(nqn, nsid)}))


def create_port(portid: int) -> Edit:
    def run(s: st.TargetState) -> None:
        if portid in s.ports:
            raise EditError(f"port {portid} already exists")
        s.ports[portid] = st.Port(portid=portid, ana_groups={1: "optimized"})
    return Edit(f"create port {portid}", run, scope=frozenset())


def delete_port(portid: int) -> Edit:
    def run(s: st.TargetState) -> None:
        if portid not in s.ports:
            raise EditError(f"port {portid} does not exist")
        del s.ports[portid]
    return Edit(f"delete port {portid}", run, scope=None)


def create_host(nqn: str) -> Edit:
    def run(s: st.TargetState) -> None:
        if nqn in s.hosts:
            raise EditError(f"host {nqn} already exists")
        s.hosts[nqn] = st.Host(nqn=nqn)
    return Edit(f"create host {nqn}", run, scope=frozenset())


def delete_host(nqn: str) -> Edit:
    """The host and every ``allowed_hosts`` link to it (the kernel keeps a linked host)."""
    def run(s: st.TargetState) -> None:
        if nqn not in s.hosts:
            raise EditError(f"host {nqn} does not exist")
        del s.hosts[nqn]
        for sub in s.subsystems.values():
            if nqn in sub.allowed_hosts:
                sub.allowed_hosts.remove(nqn)
    return Edit(f"delete host {nqn}", run, scope=frozenset())


def create_referral(portid: int, name: str) -> Edit:
    def run(s: st.TargetState) -> None:
        port = need(s, ("port", portid))
        if name in port.referrals:
            raise EditError(f"referral {name} of port {portid} already exists")
        port.referrals[name] = st.Referral(name=name, enable=False)
    return Edit(f"create referral {name} of port {portid}", run, scope=frozenset())


def delete_referral(portid: int, name: str) -> Edit:
    def run(s: st.TargetState) -> None:
        port = need(s, ("port", portid))
        if name not in port.referrals:
            raise EditError(f"referral {name} of port {portid} does not exist")
        del port.referrals[name]
    return Edit(f"delete referral {name} of port {portid}", run, scope=frozenset())


def create_ana_group(portid: int, grpid: int) -> Edit:
    """A new ANA group starts ``inaccessible``, as the kernel creates it."""
    def run(s: st.TargetState) -> None:
        port = need(s, ("port", portid))
        if grpid in port.ana_groups:
            raise EditError(f"ANA group {grpid} of port {portid} already exists")
        port.ana_groups[grpid] = "inaccessible"
    return Edit(f"create ANA group {grpid} of port {portid}", run, scope=frozenset())


def delete_ana_group(portid: int, grpid: int) -> Edit:
    def run(s: st.TargetState) -> None:
        port = need(s, ("port", portid))
        if grpid == 1:
            raise EditError("ANA group 1 belongs to the kernel and cannot be deleted")
        if grpid not in port.ana_groups:
            raise EditError(f"ANA group {grpid} of port {portid} does not exist")
        del port.ana_groups[grpid]
    return Edit(f"delete ANA group {grpid} of port {portid}", run, scope=frozenset())


# ----------------------------------------------------------------------------------------------
# Links
# ----------------------------------------------------------------------------------------------

def allow_host(nqn: str, host: str) -> Edit:
    def run(s: st.TargetState) -> None:
        sub = need(s, ("subsystem", nqn))
        if host not in s.hosts:
            raise EditError(f"host {host} does not exist; create it under /hosts first")
        if host in sub.allowed_hosts:
            raise EditError(f"host {host} is already allowed by {nqn}")
        sub.allowed_hosts.append(host)
    return Edit(f"allow host {host} on {nqn}", run, scope=frozenset())


def disallow_host(nqn: str, host: str) -> Edit:
    def run(s: st.TargetState) -> None:
        sub = need(s, ("subsystem", nqn))
        if host not in sub.allowed_hosts:
            raise EditError(f"host {host} is not allowed by {nqn}")
        sub.allowed_hosts.remove(host)
    return Edit(f"disallow host {host} on {nqn}", run, scope=frozenset())


def link_port(portid: int, nqn: str) -> Edit:
    def run(s: st.TargetState) -> None:
        port = need(s, ("port", portid))
        if nqn not in s.subsystems:
            raise EditError(f"subsystem {nqn} does not exist")
        if nqn in port.subsystems:
            raise EditError(f"port {portid} already exports {nqn}")
        port.subsystems.append(nqn)
    return Edit(f"export {nqn} on port {portid}", run, scope=frozenset({nqn}))


def unlink_port(portid: int, nqn: str) -> Edit:
    def run(s: st.TargetState) -> None:
        port = need(s, ("port", portid))
        if nqn not in port.subsystems:
            raise EditError(f"port {portid} does not export {nqn}")
        port.subsystems.remove(nqn)
    return Edit(f"stop exporting {nqn} on port {portid}", run, scope=frozenset({nqn}))


# ----------------------------------------------------------------------------------------------
# Whole trees (restoreconfig, clearconfig)
# ----------------------------------------------------------------------------------------------

def replace_all(new: st.TargetState, text: str) -> Edit:
    """Make the state exactly ``new`` (what it names; attributes it does not name stay as the
    kernel has them). ``clearconfig`` is ``replace_all(TargetState())``."""
    snapshot = copy.deepcopy(new)

    def run(s: st.TargetState) -> None:
        n = copy.deepcopy(snapshot)
        s.hosts, s.ports, s.subsystems = n.hosts, n.ports, n.subsystems
        if n.discovery_nqn is not None:
            s.discovery_nqn = n.discovery_nqn
    return Edit(text, run)


def merge(new: st.TargetState, text: str) -> Edit:
    """Add or update every object ``new`` names (``restoreconfig`` without clearing): attributes
    it gives override, link lists become the file's, objects it does not name stay."""
    snapshot = copy.deepcopy(new)

    def run(s: st.TargetState) -> None:
        n = copy.deepcopy(snapshot)
        if n.discovery_nqn is not None:
            s.discovery_nqn = n.discovery_nqn
        for nqn, h in n.hosts.items():
            s.hosts.setdefault(nqn, st.Host(nqn=nqn)).attrs.update(h.attrs)
        for nqn, sub in n.subsystems.items():
            cur = s.subsystems.setdefault(nqn, st.Subsystem(nqn=nqn))
            cur.attrs.update(sub.attrs)
            cur.allowed_hosts = list(sub.allowed_hosts)
            if sub.passthru is not None:
                cur.passthru = {**(cur.passthru or {}), **sub.passthru}
            for nsid, ns in sub.namespaces.items():
                old = cur.namespaces.get(nsid)
                attrs = {**(old.attrs if old else {}), **ns.attrs}
                cur.namespaces[nsid] = st.Namespace(nsid=nsid, enable=ns.enable, attrs=attrs)
        for pid, p in n.ports.items():
            cur = s.ports.setdefault(pid, st.Port(portid=pid, ana_groups={1: "optimized"}))
            cur.attrs.update(p.attrs)
            cur.subsystems = list(p.subsystems)
            cur.referrals.update(p.referrals)
            cur.ana_groups.update(p.ana_groups)
    return Edit(text, run)
