"""Desired (or observed) nvmet target state, as plain data.

The shape follows the kernel's configfs tree under ``/sys/kernel/config/nvmet`` one to one:
every attribute is keyed by its **configfs file name** (``attr_allow_any_host``,
``device_path``, ``p2pmem``, ``addr_traddr``, ``param_inline_data_size``, ``dhchap_key``...)
and every value is the string one would ``echo`` into that file. Attributes a state does not
mention are left as the kernel has them; the diff (``nvmet_p2p.nvmet.plan``) only touches the ones
that are named and differ.

This is the contract between:

* ``placement`` (profile + inventory -> ``TargetState``),
* ``configfs`` (reads the live tree into a ``TargetState``),
* ``plan`` (diff of two ``TargetState``s -> ordered operations),
* ``statefile`` (``TargetState`` <-> nvmetcli-compatible JSON, plus the ``p2pmem`` and
  ``buffered_io`` keys that nvmetcli drops).

Pure data: nothing here touches the filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Namespace:
    """``subsystems/<nqn>/namespaces/<nsid>/``.

    ``attrs`` keys: ``device_path``, ``device_uuid``, ``device_nguid``, ``ana_grpid``,
    ``buffered_io``, ``resv_enable``, ``p2pmem`` (``"0"``, ``"1"`` or a full provider BDF).
    ``enable`` is kept apart because the kernel's ordering revolves around it: most
    attributes are writable only while the namespace is disabled.

    ``allow_in_use`` and ``backing`` are not configfs files: they are the export policy's
    explicit consents a state file can give (:mod:`nvmet_p2p.policy.exportpolicy`): export
    ``device_path`` although this machine uses it, and ``backing="file"`` for a regular file
    nvmet serves through its file backend. Plans never write them.
    """

    nsid: int
    enable: bool = True
    attrs: dict[str, str] = field(default_factory=dict)
    allow_in_use: bool = False
    backing: str = "block"


@dataclass
class Subsystem:
    """``subsystems/<nqn>/``: ``attrs`` holds ``attr_*`` files; ``allowed_hosts`` host NQNs
    (symlinks to ``hosts/<nqn>``); ``passthru`` the ``passthru/`` files when used."""

    nqn: str
    attrs: dict[str, str] = field(default_factory=dict)
    allowed_hosts: list[str] = field(default_factory=list)
    namespaces: dict[int, Namespace] = field(default_factory=dict)
    passthru: dict[str, str] | None = None


@dataclass
class Referral:
    """``ports/<id>/referrals/<name>/``: ``addr_*`` files plus ``enable``."""

    name: str
    enable: bool = True
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Port:
    """``ports/<portid>/``: ``attrs`` holds ``addr_*`` and ``param_*`` files; ``subsystems``
    the NQNs linked into ``ports/<id>/subsystems/`` (the first link enables the port);
    ``ana_groups`` maps group id (2..) to ``ana_state``."""

    portid: int
    attrs: dict[str, str] = field(default_factory=dict)
    subsystems: list[str] = field(default_factory=list)
    referrals: dict[str, Referral] = field(default_factory=dict)
    ana_groups: dict[int, str] = field(default_factory=dict)


@dataclass
class Host:
    """``hosts/<nqn>/``: ``attrs`` holds ``dhchap_*`` files (secrets: never log them)."""

    nqn: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class TargetState:
    """The whole nvmet tree (or the part of it nvmet-p2p manages)."""

    hosts: dict[str, Host] = field(default_factory=dict)
    ports: dict[int, Port] = field(default_factory=dict)
    subsystems: dict[str, Subsystem] = field(default_factory=dict)
    discovery_nqn: str | None = None


# -- plain-dict form (JSON of plans and digests; additive to the records above) ----------

def state_to_dict(state: TargetState) -> dict[str, Any]:
    """A JSON-ready dict of ``state`` (keys sorted where the kernel has no order)."""
    return {
        "discovery_nqn": state.discovery_nqn,
        "hosts": {n: {"attrs": dict(sorted(h.attrs.items()))} for n, h in sorted(state.hosts.items())},
        "subsystems": {
            n: {"attrs": dict(sorted(s.attrs.items())),
                "allowed_hosts": sorted(s.allowed_hosts),
                "passthru": dict(sorted(s.passthru.items())) if s.passthru is not None else None,
                "namespaces": {str(i): {"enable": ns.enable, "attrs": dict(sorted(ns.attrs.items()))}
                               for i, ns in sorted(s.namespaces.items())}}
            for n, s in sorted(state.subsystems.items())},
        "ports": {
            str(i): {"attrs": dict(sorted(p.attrs.items())),
                     "subsystems": sorted(p.subsystems),
                     "referrals": {r: {"enable": ref.enable, "attrs": dict(sorted(ref.attrs.items()))}
                                   for r, ref in sorted(p.referrals.items())},
                     "ana_groups": {str(g): s for g, s in sorted(p.ana_groups.items())}}
            for i, p in sorted(state.ports.items())},
    }


def state_from_dict(d: dict[str, Any]) -> TargetState:
    """Inverse of :func:`state_to_dict`."""
    out = TargetState(discovery_nqn=d.get("discovery_nqn"))
    for n, h in (d.get("hosts") or {}).items():
        out.hosts[n] = Host(nqn=n, attrs=dict(h.get("attrs") or {}))
    for n, s in (d.get("subsystems") or {}).items():
        sub = Subsystem(nqn=n, attrs=dict(s.get("attrs") or {}),
                        allowed_hosts=list(s.get("allowed_hosts") or []),
                        passthru=dict(s["passthru"]) if s.get("passthru") is not None else None)
        for i, ns in (s.get("namespaces") or {}).items():
            sub.namespaces[int(i)] = Namespace(nsid=int(i), enable=bool(ns.get("enable", True)),
                                               attrs=dict(ns.get("attrs") or {}))
        out.subsystems[n] = sub
    for i, p in (d.get("ports") or {}).items():
        port = Port(portid=int(i), attrs=dict(p.get("attrs") or {}),
                    subsystems=list(p.get("subsystems") or []),
                    ana_groups={int(g): s for g, s in (p.get("ana_groups") or {}).items()})
        for r, ref in (p.get("referrals") or {}).items():
            port.referrals[r] = Referral(name=r, enable=bool(ref.get("enable", True)),
                                         attrs=dict(ref.get("attrs") or {}))
        out.ports[int(i)] = port
    return out
