"""What a desired state needs from the machine before it can be exported, and waiting for it.

At boot the devices a saved configuration names appear late: the NVMe driver binds the
controllers (and publishes their CMBs as p2pmem) in the background, udev creates the
``/dev/disk/by-id`` links after that, and the RDMA/Ethernet interfaces get their addresses
when the network comes up. Restoring before that fails in the kernel's own way (shared
experience of ``nvmetcli restore`` at boot): enabling a namespace whose ``device_path`` does
not exist is ENOENT, writing the BDF of a provider that is not there is ENODEV, linking a
subsystem to a port whose address is not configured fails to bind ("nvmet_tcp: failed to bind
port socket -99") -- and one such refusal rolls back the whole apply.

:func:`needs` (pure) lists what a :class:`~nvmet_p2p.nvmet.state.TargetState` needs:

* ``device``: the block device behind each enabled namespace's ``device_path`` (a by-id link
  must lead to a block device the kernel has, ``/sys/class/block/<name>``);
* ``provider``: each pinned ``p2pmem`` BDF, published (``p2pmem/published`` = 1);
* ``address``: the ``addr_traddr`` of each IP port that has subsystems linked, configured on
  some interface (wildcards 0.0.0.0 / :: need nothing).

:func:`wait` polls them (edges: :class:`Probe`, injectable root) until all are there or the
time is up; :func:`degrade` (pure) turns the desired state into the part that can be exported
now: a namespace whose device is missing is created but left disabled; one whose provider is
missing is exported without p2p memory (``p2pmem`` 0, so hosts get their data and the loss of
the offload is named) or, with ``hold``, left disabled; the links of a port without its
address are left out. The restore command names every missing item and exits with
:data:`EXIT_PARTIAL`.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nvmet_p2p import exits
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.pci import inventory
from nvmet_p2p.pci.inventory import SysRoot, block_device_name

#: exit status of a restore that exported only part of the configuration
EXIT_PARTIAL = exits.PARTIAL
POLL_S = 0.25

_IP_TRTYPES = ("rdma", "tcp")


@dataclass(frozen=True)
class Need:
    """One thing the kernel must have before part of the configuration can be exported."""

    kind: str                   # device | provider | address
    what: str                   # the device path, provider BDF or IP address
    users: tuple[str, ...]      # "namespace <nqn>/<nsid>" / "port <id>"

    def describe(self) -> str:
        label = {"device": "block device", "provider": "p2pmem provider",
                 "address": "address"}[self.kind]
        return f"{label} {self.what} (for {', '.join(self.users)})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "what": self.what, "users": list(self.users)}


def _is_bdf(v: str) -> bool:
    parts = v.split(":")
    return len(parts) == 3 and "." in parts[2] and len(parts[0]) == 4


def needs(desired: st.TargetState) -> list[Need]:
    """Everything ``desired`` needs from the machine, in a stable order (pure)."""
    users: dict[tuple[str, str], list[str]] = {}
    for nqn, sub in sorted(desired.subsystems.items()):
        for nsid, ns in sorted(sub.namespaces.items()):
            if not ns.enable:
                continue
            who = f"namespace {nqn}/{nsid}"
            dev = ns.attrs.get("device_path", "")
            if dev and dev != "(null)":
                users.setdefault(("device", dev), []).append(who)
            p2p = ns.attrs.get("p2pmem", "").strip().lower()
            if _is_bdf(p2p):
                users.setdefault(("provider", p2p), []).append(who)
    for pid, port in sorted(desired.ports.items()):
        if not port.subsystems or port.attrs.get("addr_trtype") not in _IP_TRTYPES:
            continue
        addr = port.attrs.get("addr_traddr", "").strip()
        if addr and not _wildcard(addr):
            users.setdefault(("address", addr), []).append(f"port {pid}")
    order = {"device": 0, "provider": 1, "address": 2}
    return [Need(k, w, tuple(u)) for (k, w), u in sorted(users.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))]


def _wildcard(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_unspecified
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------
# Probing the machine (edges)
# ----------------------------------------------------------------------------------------------

class Probe:
    """Is a :class:`Need` met on the machine below ``root``? ``addresses`` returns the set of
    configured IP addresses (default: on the live system, whether the address can be bound --
    what nvmet-tcp/rdma will do with it; below another root, the snapshot's record)."""

    def __init__(self, root: str = "/", addresses: Callable[[], set[str]] | None = None):
        self.root = root
        self.fs = SysRoot(root)
        self._addresses = addresses or (None if self.fs.live else self._read_addresses)

    #: the time on the machine, and how :func:`wait` lets it pass between polls
    clock = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    @staticmethod
    def bindable(addr: str) -> bool:
        """The kernel has ``addr`` on an interface: a socket can bind it (EADDRNOTAVAIL if not,
        the -99 nvmet_tcp logs when a port is enabled too early)."""
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            try:
                s.bind((str(ip), 0))
                return True
            except OSError:
                return False

    def _read_addresses(self) -> set[str]:
        data = inventory.snapshot_netlink(inventory._Reader(self.fs)) or {}
        out = set()
        for rec in data.values():
            for cidr in rec.get("addresses", []):
                try:
                    out.add(str(ipaddress.ip_interface(cidr).ip))
                except ValueError:
                    continue
        return out

    def block_device(self, path: str) -> str | None:
        """The kernel block device ``path`` leads to, if the kernel has it."""
        name = block_device_name(self.root, path)
        if name and os.path.exists(self.fs.host(f"/sys/class/block/{name}")) and \
                os.path.exists(self.fs.host(path)):
            return name
        return None

    def provider_published(self, bdf: str) -> bool:
        try:
            return self.fs.read_text(f"/sys/bus/pci/devices/{bdf}/p2pmem/published").strip() == "1"
        except OSError:
            return False

    def missing(self, items: list[Need]) -> list[Need]:
        """The needs not met right now."""
        addrs: set[str] | None = None
        out = []
        for n in items:
            if n.kind == "device":
                ok = self.block_device(n.what) is not None
            elif n.kind == "provider":
                ok = self.provider_published(n.what)
            elif self._addresses is None:
                ok = self.bindable(n.what)
            else:
                if addrs is None:
                    addrs = self._addresses()
                ok = _canonical(n.what) in addrs
            if not ok:
                out.append(n)
        return out


def _canonical(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return addr


@dataclass
class WaitResult:
    needs: list[Need]
    missing: list[Need] = field(default_factory=list)
    seconds: float = 0.0
    #: when each need was first seen met, seconds after the wait started
    appeared: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"needed": len(self.needs), "missing": [m.to_dict() for m in self.missing],
                "waited_seconds": round(self.seconds, 3),
                "appeared_after_seconds": {k: round(v, 3) for k, v in self.appeared.items()}}


def wait(items: list[Need], seconds: float, probe: Probe, progress=None) -> WaitResult:
    """Poll until every need is met or ``seconds`` passed (on ``probe``'s clock, sleeping
    with its ``sleep``); progress every 5 s."""
    clock, sleep = probe.clock, probe.sleep
    t0 = clock()
    res = WaitResult(needs=list(items))
    pending = list(items)
    last_report = t0
    while True:
        pending = probe.missing(pending)
        now = clock()
        for n in items:
            key = f"{n.kind} {n.what}"
            if n not in pending and key not in res.appeared:
                res.appeared[key] = now - t0
        if not pending or now - t0 >= seconds:
            break
        if progress and now - last_report >= 5.0:
            last_report = now
            progress(f"waiting for {len(pending)} of {len(items)}: "
                     f"{', '.join(f'{n.kind} {n.what}' for n in pending[:4])}"
                     f"{' ...' if len(pending) > 4 else ''} ({seconds - (now - t0):.0f} s left)")
        sleep(min(POLL_S, max(0.0, seconds - (now - t0))))
    res.missing = pending
    res.seconds = clock() - t0
    return res


# ----------------------------------------------------------------------------------------------
# The part that can be exported now (pure)
# ----------------------------------------------------------------------------------------------

@dataclass
class Degraded:
    state: st.TargetState
    #: per object what was held back and why, as degraded-record entries:
    #: ``(object, kind, text, facts)``, e.g. ``("namespace nqn/1", "held-back", "created
    #: disabled: ...", {"device_path": ...})``; kinds as in :mod:`nvmet_p2p.nvmet.degraded`
    held: list[tuple[str, str, str, dict]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"held_back": [{"object": o, "kind": k, "what": w, **f} for o, k, w, f in self.held]}


def degrade(desired: st.TargetState, missing: list[Need], live: st.TargetState | None = None,
            without_provider: str = "export") -> Degraded:
    """``desired`` minus what cannot be exported while ``missing`` is missing.

    ``without_provider``: ``export`` (serve from host memory, ``p2pmem`` 0) or ``hold``
    (leave the namespace disabled). A port link that is already live is kept (the port is
    listening, so its address is there after all).
    """
    if without_provider not in ("export", "hold"):
        raise ValueError(without_provider)
    out = copy.deepcopy(desired)
    d = Degraded(out)
    gone = _Gone({n.what for n in missing if n.kind == "device"},
                 {n.what for n in missing if n.kind == "provider"})
    gone_addr = {n.what for n in missing if n.kind == "address"}
    for nqn, sub in sorted(out.subsystems.items()):
        for nsid, ns in sorted(sub.namespaces.items()):
            if ns.enable:
                _degrade_namespace(d, f"namespace {nqn}/{nsid}", ns, gone, without_provider)
    for pid, port in sorted(out.ports.items()):
        _degrade_port(d, pid, port, gone_addr, live)
    return d


@dataclass(frozen=True)
class _Gone:
    """What a namespace may be missing: block devices and p2pmem providers."""

    devices: set[str]
    providers: set[str]


def _degrade_namespace(d: Degraded, who: str, ns: st.Namespace, gone: _Gone,
                       without_provider: str) -> None:
    gone_dev, gone_prov = gone.devices, gone.providers
    dev = ns.attrs.get("device_path", "")
    p2p = ns.attrs.get("p2pmem", "").strip().lower()
    if dev in gone_dev:
        ns.enable = False
        d.held.append((who, "held-back", f"created disabled: block device {dev} is missing",
                       {"device_path": dev}))
        if p2p in gone_prov:
            ns.attrs.pop("p2pmem")
            d.held.append((who, "offload-lost", f"p2pmem provider {p2p} is missing too", {"provider": p2p}))
    elif p2p in gone_prov and without_provider == "hold":
        ns.enable = False
        ns.attrs.pop("p2pmem")
        d.held.append((who, "held-back", f"created disabled: p2pmem provider {p2p} is missing",
                       {"provider": p2p}))
    elif p2p in gone_prov:
        ns.attrs["p2pmem"] = "0"
        d.held.append((who, "offload-lost", f"exported WITHOUT p2p memory (host memory): provider "
                                            f"{p2p} is missing", {"provider": p2p}))


def _degrade_port(d: Degraded, pid: int, port: st.Port, gone_addr: set[str], live) -> None:
    addr = port.attrs.get("addr_traddr", "").strip()
    if addr not in gone_addr or not port.subsystems:
        return
    live_links = set(live.ports[pid].subsystems) if live and pid in live.ports else set()
    left = [s for s in port.subsystems if s not in live_links]
    if not left:
        return
    port.subsystems = [s for s in port.subsystems if s in live_links]
    d.held.append((f"port {pid}", "port-lost", f"not linked to {', '.join(left)}: address {addr} is "
                                               f"not configured on any interface",
                   {"address": addr, "subsystems": left}))
