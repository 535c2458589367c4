"""The kernel's p2pdma decision, re-implemented on an :class:`~nvmet_p2p.pci.model.Inventory`.

Pure logic: nothing here touches the filesystem. Given a *provider* (a PCI function with p2p
memory, e.g. an NVMe CMB) and one or more *clients* (the RDMA NIC of a host connection, the
NVMe behind a namespace), say what ``drivers/pci/p2pdma.c`` of a given kernel release would
decide, and why:

* ``bus_addr``          the devices share an upstream bridge below the root complex and no
                        ACS redirect bit is set on the checked path: TLPs are routed by the
                        switch (or the device itself) using PCI bus addresses;
* ``thru_host_bridge``  the path goes through the root complex (no common upstream bridge, or
                        ACS redirects requests upstream) and the root complex is trusted (AMD
                        Zen CPU rule or ``pci_p2pdma_whitelist[]``);
* ``not_supported``     the kernel refuses the pair (``pci_p2pdma_distance()`` returns -1).

The distance is the kernel's: hops from the provider up to the common upstream bridge plus
hops from the client up to it (0 for the same function, 2 for two functions of one device,
4 for siblings under one switch), or the depth of both devices when they share no bridge.
``distance_many`` sums it over clients exactly as ``pci_p2pdma_distance_many()`` does, so a
host-bridge path can tie with a switch path: ``map_type`` and ``crosses_root_complex`` tell
them apart.

Version awareness: the rules of the inventory's kernel release apply unless ``kernel="X.Y"``
is given (see :mod:`nvmet_p2p.pci.p2pdma_rules` for the timeline).

Things userspace cannot always see are never silently assumed: when the ACS control word of a
device on the checked path could not be read (non-root reads of ``config`` stop at 64 bytes),
the verdict is computed with an explicit assumption and ``uncertain`` says which device, what
was assumed and what the verdict would be otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p.errors import InputError
from nvmet_p2p.kernel import parse_kernel_version
from nvmet_p2p.pci import p2pdma_rules as R
from nvmet_p2p.pci.clients import (  # noqa: F401 (KIND_*, resolve_client: part of this module's API)
    KIND_MULTIPATH_HEAD,
    KIND_NETDEV,
    KIND_NON_PCI,
    KIND_NVME_CTRL,
    KIND_NVME_NS,
    KIND_PCI,
    KIND_RDMA,
    KIND_SOFT_RDMA,
    Client,
    class_prefix,
    normalize_bdf,
    resolve_client,
    short_list,
)
from nvmet_p2p.pci.model import (
    ACS_CMPLT_REDIR,
    ACS_EGRESS_CTRL,
    ACS_REDIR_MASK,
    ACS_REQ_REDIR,
    PCIE_ROOT_PORT,
    PCIE_SWITCH_UPSTREAM,
    Inventory,
    PciFunction,
    bdf_sort_key,
)
from nvmet_p2p.pci.p2pdma_rules import MapType

#: ``pci_p2pmem_find_many()`` keeps at most PAGE_SIZE / sizeof(pointer) tied providers.
FIND_MANY_MAX_TIES = 512

# ---------------------------------------------------------------------------------------------
# Result objects
# ---------------------------------------------------------------------------------------------

@dataclass
class PairVerdict:
    """The kernel's ``calc_map_type_and_dist(provider, client)`` plus the explanation."""

    provider: str
    client: Client
    map_type: str
    distance: int                      # what pci_p2pdma_distance() returns: -1 when not supported
    hops: int | None = None            # topology distance even when refused (None: no PCI client)
    common_upstream: str | None = None  # the first shared upstream bridge (or the device itself)
    crosses_root_complex: bool | None = None
    same_host_bridge: bool | None = None
    path: list[str] = field(default_factory=list)   # BDFs; pciDDDD:BB where it crosses a host bridge
    acs_redirect: list[str] = field(default_factory=list)   # kernel's order, as printed
    kernel_parameter: str | None = None
    reasons: list[str] = field(default_factory=list)
    #: the pci-p2pdma warnings the kernel logs when it evaluates this pair verbosely
    #: (pci_p2pdma_distance() at nvmet namespace enable and at connect). The DMA-mapping path
    #: caches the map type per pair and logs only on the first evaluation.
    kernel_messages: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    host_bridge_check: dict[str, Any] | None = None

    @property
    def supported(self) -> bool:
        return self.map_type != MapType.NOT_SUPPORTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "client": self.client.to_dict(),
            "map_type": self.map_type,
            "distance": self.distance,
            "hops": self.hops,
            "common_upstream": self.common_upstream,
            "crosses_root_complex": self.crosses_root_complex,
            "same_host_bridge": self.same_host_bridge,
            "path": list(self.path),
            "acs_redirect": list(self.acs_redirect),
            "kernel_parameter": self.kernel_parameter,
            "reasons": list(self.reasons),
            "kernel_messages": list(self.kernel_messages),
            "uncertain": list(self.uncertain),
            "host_bridge_check": self.host_bridge_check,
        }


@dataclass
class Verdict:
    """``pci_p2pdma_distance_many(provider, clients)`` with reasons.

    ``distance`` is the kernel's sum over clients (-1 if any client is not supported);
    ``map_type`` is the worst pair (not_supported > thru_host_bridge > bus_addr).
    ``kernel_parameter`` joins the ACS devices of all pairs in the kernel's order without
    repeats (for one client it is exactly the string the kernel prints).
    """

    provider: str
    clients: list[str]
    map_type: str
    distance: int
    reasons: list[str]
    kernel_parameter: str | None
    pairs: list[PairVerdict]
    uncertain: list[str]
    kernel: str
    kernel_source: str
    provider_has_p2pmem: bool = False
    provider_published: bool = False
    crosses_root_complex: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "clients": list(self.clients),
            "map_type": self.map_type,
            "distance": self.distance,
            "reasons": list(self.reasons),
            "kernel_parameter": self.kernel_parameter,
            "uncertain": list(self.uncertain),
            "kernel": self.kernel,
            "kernel_source": self.kernel_source,
            "provider_has_p2pmem": self.provider_has_p2pmem,
            "provider_published": self.provider_published,
            "crosses_root_complex": self.crosses_root_complex,
            "pairs": [p.to_dict() for p in self.pairs],
        }


@dataclass
class FindResult:
    """``pci_p2pmem_find_many(clients)``: every published provider the kernel would weigh.

    ``candidates`` are in the kernel's enumeration order (``for_each_pci_dev``), each with its
    :class:`Verdict`; ``ties`` are all providers at ``best_distance`` (the kernel picks one of
    them uniformly at random, capped at 512); ``unpublished`` were skipped by the kernel.
    """

    clients: list[str]
    candidates: list[Verdict]
    best_distance: int | None
    ties: list[str]
    unpublished: list[str]
    reasons: list[str]
    uncertain: list[str]
    kernel: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "clients": list(self.clients),
            "best_distance": self.best_distance,
            "ties": list(self.ties),
            "random_choice": len(self.ties) > 1,
            "unpublished": list(self.unpublished),
            "reasons": list(self.reasons),
            "uncertain": list(self.uncertain),
            "kernel": self.kernel,
            "candidates": [{"provider": v.provider, "map_type": v.map_type,
                            "distance": v.distance,
                            "crosses_root_complex": v.crosses_root_complex,
                            "reasons": list(v.reasons),
                            "uncertain": list(v.uncertain)} for v in self.candidates],
        }


# ---------------------------------------------------------------------------------------------
# Kernel selection
# ---------------------------------------------------------------------------------------------

def kernel_rules_version(inv: Inventory, kernel: str | tuple[int, int] | None = None
                         ) -> tuple[R.Version, str, list[str]]:
    """(version, source, notes): ``kernel`` if given, else the inventory's release."""
    notes: list[str] = []
    if kernel is not None and kernel != "":
        if isinstance(kernel, tuple):
            return (int(kernel[0]), int(kernel[1])), "--kernel", notes
        try:
            return parse_kernel_version(str(kernel)), "--kernel", notes
        except ValueError:
            raise InputError(f"not a kernel version: {kernel!r} (expected X.Y, e.g. 6.12)",
                             where="--kernel") from None
    release = inv.system.kernel_release
    if release:
        try:
            return parse_kernel_version(release), "inventory", notes
        except ValueError:
            notes.append(f"the inventory's kernel release {release!r} is not X.Y...; "
                         f"applied the newest rules known ({R.fmt(R.NEWEST)})")
            return R.NEWEST, "default", notes
    notes.append(f"the kernel release is unknown (no uname in the inventory); applied the newest "
                 f"rules known ({R.fmt(R.NEWEST)}); pass --kernel X.Y to choose")
    return R.NEWEST, "default", notes


# ---------------------------------------------------------------------------------------------
# Kernel command line: disable_acs_redir / config_acs (used only when ACS is unreadable)
# ---------------------------------------------------------------------------------------------

def _pci_options(cmdline: str) -> list[str]:
    opts: list[str] = []
    for tok in re.findall(r'(?:^|\s)pci=("[^"]*"|\S+)', cmdline or ""):
        tok = tok.strip('"')
        opts.extend(o for o in tok.split(",") if o)
    return opts


def _acs_param_devices(cmdline: str, key: str) -> list[str]:
    out: list[str] = []
    for opt in _pci_options(cmdline):
        if opt.startswith(key + "="):
            out.extend(s for s in opt[len(key) + 1:].split(";") if s)
    return out


_SPEC_BDF = re.compile(r"^(?:(?P<dom>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
                       r"(?P<dev>[0-9a-fA-F]{1,2})\.(?P<fn>[0-7])(?P<rest>(?:/[0-9a-fA-F]{1,2}\.[0-7])*)$")


def _spec_matches(spec: str, f: PciFunction, chain_down: list[str]) -> bool:
    """Does a ``pci=`` device spec name ``f``? ``chain_down`` = root-side bridges + f's BDF."""
    spec = spec.strip()
    if spec.startswith("pci:"):
        parts = spec[4:].split(":")
        try:
            ids = [int(p, 16) for p in parts]
        except ValueError:
            return False
        if len(ids) < 2:
            return False
        ok = ids[0] == f.vendor and ids[1] == f.device
        if len(ids) >= 4:
            ok = ok and ids[2] == (f.subsystem_vendor or 0) and ids[3] == (f.subsystem_device or 0)
        return ok
    m = _SPEC_BDF.match(spec)
    if not m:
        return False
    dom = int(m.group("dom") or "0", 16)
    first = f"{dom:04x}:{int(m.group('bus'), 16):02x}:{int(m.group('dev'), 16):02x}.{m.group('fn')}"
    steps = [s for s in m.group("rest").split("/") if s]
    if first not in chain_down:
        return False
    idx = chain_down.index(first)
    rest = chain_down[idx + 1:]
    if len(rest) != len(steps):
        return False
    for bdf, step in zip(rest, steps):
        d, fn = step.split(".")
        if bdf.rsplit(":", 1)[1] != f"{int(d, 16):02x}.{fn}":
            return False
    return True


def _config_acs_bits(flags: str) -> dict[int, str]:
    """``pci=config_acs`` flags, MSB first, rightmost = bit 0 -> {bit: '0'|'1'|'x'}."""
    return {i: ch for i, ch in enumerate(reversed(flags.strip().lower()))}


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------

@dataclass
class _Acs:
    redirect: bool | None          # None = unknown
    note: str = ""                 # how it was determined when not read from config space


class P2pdma:
    """The p2pdma rules of one kernel release applied to one inventory.

    Build once and query many pairs: per-device chains, ACS states and host-bridge verdicts are
    cached, so a full provider x client matrix stays cheap.
    """

    def __init__(self, inv: Inventory, kernel: str | tuple[int, int] | None = None):
        self.inv = inv
        self.version, self.kernel_source, self.notes = kernel_rules_version(inv, kernel)
        self.kernel = R.fmt(self.version)
        self._chain: dict[str, list[str]] = {}
        self._chain_notes: dict[str, list[str]] = {}
        self._acs: dict[str, _Acs] = {}
        self._wl: dict[tuple[str, bool], tuple[bool, dict[str, Any], list[str]]] = {}
        self._root_devs: dict[str, list[PciFunction]] | None = None
        self._pair_cache: dict[tuple[str, str], PairVerdict] = {}
        self._disable_acs = _acs_param_devices(inv.system.cmdline, "disable_acs_redir")
        self._config_acs = _acs_param_devices(inv.system.cmdline, "config_acs")
        self._config_note: list[str] = []
        cfg = inv.system.kernel_config
        if (self.kernel_source == "inventory" and cfg is not None
                and cfg.get("CONFIG_PCI_P2PDMA", "n") != "y"):
            self._config_note.append(
                "the running kernel is built without CONFIG_PCI_P2PDMA (from "
                f"{inv.system.kernel_config_source or 'its config'}): it does no peer-to-peer "
                "DMA at all, whatever the topology (Debian 6.1/6.12 lack it; trixie-backports 7.x "
                "has it)")

    # -- topology primitives ------------------------------------------------------------------
    def fn(self, bdf: str) -> PciFunction | None:
        return self.inv.pci.get(bdf)

    def chain(self, bdf: str) -> list[str]:
        """``[dev, up(dev), up(up(dev)), ...]`` with the kernel's ``pci_upstream_bridge()``:
        a VF is replaced by its PF before going up; a device on a root bus has no upstream."""
        got = self._chain.get(bdf)
        if got is not None:
            return got
        notes: list[str] = []
        f = self.fn(bdf)
        up: list[str] = []
        if f is not None:
            base = f
            if f.physfn:
                pf = self.fn(f.physfn)
                if pf is not None:
                    base = pf
                else:
                    notes.append(f"{bdf} is a VF of {f.physfn}, which is not in the inventory; "
                                 "its own sysfs parent was used instead")
            up = list(reversed(base.upstream))
        else:
            notes.append(f"{bdf} is not in the inventory")
        out = [bdf] + up
        self._chain[bdf] = out
        self._chain_notes[bdf] = notes
        return out

    def root_devices(self, host_bridge: str) -> list[PciFunction]:
        """Devices on ``host_bridge``'s root bus in the kernel's bus-list order (devfn order as
        scanned; VFs are added later, at the end)."""
        if self._root_devs is None:
            by_hb: dict[str, list[PciFunction]] = {}
            for f in self.inv.pci.values():
                if not f.upstream:
                    by_hb.setdefault(f.host_bridge, []).append(f)
            for lst in by_hb.values():
                lst.sort(key=lambda f: (f.physfn is not None, bdf_sort_key(f.bdf)))
            self._root_devs = by_hb
        return self._root_devs.get(host_bridge, [])

    def describe(self, bdf: str) -> str:
        """``0000:02:00.0 (switch downstream port)``-style label for reasons."""
        f = self.fn(bdf)
        if f is None:
            return f"{bdf} (not in the inventory)"
        role = device_role(f)
        return f"{bdf} ({role})" if role else bdf

    def _dev_prefix(self, bdf: str) -> str:
        f = self.fn(bdf)
        drv = (f.driver if f is not None and f.driver else "pci")
        return f"{drv} {bdf}"

    # -- ACS ------------------------------------------------------------------------------------
    def acs(self, bdf: str) -> _Acs:
        """Does ``bdf`` redirect p2p TLPs upstream (ACS RR|CR|EC)? ``redirect=None``: unknown."""
        got = self._acs.get(bdf)
        if got is not None:
            return got
        f = self.fn(bdf)
        if f is None:
            res = _Acs(None, "not in the inventory")
        elif f.acs_ctrl is not None:
            res = _Acs(bool(f.acs_ctrl & ACS_REDIR_MASK))
        elif f.config_readable:
            res = _Acs(False)   # read, and no ACS capability: the kernel's check returns 0
        elif not f.is_bridge and not f.physfn and not self._multifunction(f):
            # PCIe defines ACS for downstream/root ports and functions of multi-function
            # devices (and SR-IOV functions): a single-function endpoint has none to redirect.
            res = _Acs(False)
        else:
            res = self._acs_from_cmdline(f)
        self._acs[bdf] = res
        return res

    def _acs_from_cmdline(self, f: PciFunction) -> _Acs:
        chain_down = list(reversed(self.chain(f.bdf)))
        if f.physfn:
            chain_down = chain_down[:-1] + [f.bdf]
        forced: bool | None = None
        src = ""
        for spec in self._config_acs:
            if "@" not in spec:
                continue
            flags, dev = spec.split("@", 1)
            if _spec_matches(dev, f, chain_down):
                bits = _config_acs_bits(flags)
                vals = [bits.get(b, "x") for b in (2, 3, 5)]
                if "1" in vals:
                    forced, src = True, f"pci=config_acs={spec} sets RR/CR/EC"
                elif all(v == "0" for v in vals):
                    forced, src = False, f"pci=config_acs={spec} clears RR/CR/EC"
        if forced is None:
            for spec in self._disable_acs:
                if _spec_matches(spec, f, chain_down):
                    forced, src = False, f"pci=disable_acs_redir lists it ({spec})"
                    break
        if forced is not None:
            note = f"ACS control not readable; {src} on the kernel command line"
            n_specs = len(self._disable_acs) + len(self._config_acs)
            if R.in_range(self.version, R.CONFIG_ACS_MULTI_BUG) and n_specs > 1:
                return _Acs(None, note + ", but kernels 6.11-6.13 mis-parse a list of several "
                                         "devices")
            return _Acs(forced, note)
        return _Acs(None, "config space not readable (non-root read stops at 64 bytes)")

    def _assume_redirect(self, bdf: str) -> tuple[bool, str]:
        """What to assume for an unreadable ACS state, and why."""
        f = self.fn(bdf)
        iommu = self.inv.system.iommu
        if not iommu:
            return False, ("assumed clear: no IOMMU is active, so Linux did not enable ACS "
                           "(firmware could still have set it)")
        if f is not None and (f.pcie_type == PCIE_SWITCH_UPSTREAM or self._looks_like_usp(f)):
            return False, "assumed clear: switch upstream ports do not implement ACS redirect"
        return True, ("assumed set: an IOMMU is active and Linux then enables RR/CR on every "
                      "ACS-capable port, multi-function device and SR-IOV function")

    def _looks_like_usp(self, f: PciFunction) -> bool:
        """Without config space: a bridge below another bridge whose children are all bridges."""
        if f.pcie_type is not None or not f.is_bridge or not f.upstream:
            return False
        kids = [o for o in self.inv.pci.values() if o.upstream and o.upstream[-1] == f.bdf]
        return bool(kids) and all(k.is_bridge for k in kids)

    def _multifunction(self, f: PciFunction) -> bool:
        slot = f.bdf.rsplit(".", 1)[0]
        return any(o.bdf != f.bdf and o.bdf.rsplit(".", 1)[0] == slot and not o.physfn
                   for o in self.inv.pci.values())

    # -- host bridges ----------------------------------------------------------------------------
    def host_bridge_of(self, bdf: str) -> str | None:
        f = self.fn(bdf)
        if f is None:
            return None
        return f.host_bridge

    def _host_bridge_dev(self, host_bridge: str) -> tuple[PciFunction | None, str, bool]:
        """``pci_host_bridge_dev()``: (device, why-not, assumed-root-port)."""
        devs = self.root_devices(host_bridge)
        if not devs:
            return None, f"no PCI device on the root bus of {host_bridge} in the inventory", False
        root = devs[0]
        if root.devfn == (0, 0):
            return root, "", False
        if self.version >= R.ROOT_PORT_ANY_DEVFN:
            if root.pcie_type == PCIE_ROOT_PORT:
                return root, "", False
            if root.pcie_type is None and not root.config_readable and root.is_bridge:
                return root, "", True
            return None, (f"the first device on the root bus of {host_bridge}, {root.bdf}, is "
                          f"neither devfn 00.0 nor a PCIe Root Port"), False
        return None, (f"the first device on the root bus of {host_bridge}, {root.bdf}, is not at "
                      f"devfn 00.0 (kernel {self.kernel} looks only there; root ports at any devfn "
                      f"count from {R.fmt(R.ROOT_PORT_ANY_DEVFN)})"), False

    def _wl_one(self, host_bridge: str, same: bool) -> tuple[bool, dict[str, Any], list[str]]:
        key = (host_bridge, same)
        got = self._wl.get(key)
        if got is not None:
            return got
        uncertain: list[str] = []
        root, why, assumed_rp = self._host_bridge_dev(host_bridge)
        info: dict[str, Any] = {"host_bridge": host_bridge, "device": None, "id": None, "entry": None,
                      "ok": False, "why": why}
        if root is None:
            res = (False, info, uncertain)
            self._wl[key] = res
            return res
        ident = f"{root.vendor:04x}:{root.device:04x}"
        info.update(device=root.bdf, id=ident)
        entry = R.lookup(self.version, root.vendor, root.device)
        if entry is None:
            info["why"] = self._not_in_whitelist(root, ident, host_bridge, uncertain)
            res = (False, info, uncertain)
            self._wl[key] = res
            return res
        info["entry"] = {"id": entry.id_text, "name": entry.name,
                         "req_same_host_bridge": entry.same_host_bridge_only,
                         "since": R.fmt(entry.since)}
        if entry.approx and self.version < (entry.since[0], entry.since[1] + 1):
            uncertain.append(f"{ident} ({entry.name}) entered the whitelist around "
                             f"{R.fmt(entry.since)}; the exact release is not verified")
        if assumed_rp:
            uncertain.append(f"{root.bdf} ({ident}) was assumed to be a PCIe Root Port (it is a "
                             f"bridge on the root bus; its config space was not readable)")
        if entry.same_host_bridge_only and not same:
            info["why"] = (f"host bridge {ident} ({entry.name}) is whitelisted only for devices "
                           f"under the same host bridge (REQ_SAME_HOST_BRIDGE)")
            res = (False, info, uncertain)
        else:
            info["ok"] = True
            info["why"] = f"host bridge {ident} ({entry.name}) is in the P2PDMA whitelist"
            res = (True, info, uncertain)
        self._wl[key] = res
        return res

    def _not_in_whitelist(self, root: PciFunction, ident: str, host_bridge: str,
                          uncertain: list[str]) -> str:
        """Why the identifying device is not in this release's table (added later, dropped)."""
        other = R.entry_any_version(root.vendor, root.device)
        why = (f"host bridge {ident} (first device {root.bdf} on the root bus of {host_bridge}) "
               f"is not in kernel {self.kernel}'s P2PDMA whitelist")
        if other is not None and self.version < other.since:
            why += f" (added in {'about ' if other.approx else ''}{R.fmt(other.since)})"
            if other.approx and (self.version[0], self.version[1] + 1) >= other.since:
                uncertain.append(f"{ident} ({other.name}) entered the whitelist around "
                                 f"{R.fmt(other.since)}; the exact release is not verified")
        elif other is not None and other.until is not None and self.version >= other.until:
            why += (f" (its entry was dropped in {R.fmt(other.until)}: the AMD CPU rule "
                    f"replaced the AMD entries)")
        return why

    def host_bridge_whitelist(self, a: str, b: str) -> tuple[bool, dict[str, Any], list[str], str | None]:
        """``host_bridge_whitelist(a, b)``: (ok, details, uncertain, first failing host bridge)."""
        ha, hb = self.host_bridge_of(a), self.host_bridge_of(b)
        if ha is None or hb is None:
            return False, {"why": "device not in the inventory"}, [], None
        if ha == hb:
            ok, info, unc = self._wl_one(ha, True)
            return ok, {"same_host_bridge": True, "checks": [info]}, unc, (None if ok else ha)
        oka, ia, ua = self._wl_one(ha, False)
        okb, ib, ub = self._wl_one(hb, False)
        first_fail = ha if not oka else (hb if not okb else None)
        return oka and okb, {"same_host_bridge": False, "checks": [ia, ib]}, ua + ub, first_fail

    def cpu_rule(self) -> tuple[bool | None, str]:
        """5.9+: any x86 AMD CPU with family >= 0x17 allows every host-bridge path."""
        s = self.inv.system
        if self.version < R.AMD_CPU_RULE:
            return False, ""
        if not s.cpu_vendor:
            return None, "the CPU vendor is unknown (no /proc/cpuinfo in the inventory)"
        if s.cpu_vendor == "AuthenticAMD":
            if s.cpu_family is None:
                return None, "AMD CPU of unknown family"
            if s.cpu_family >= R.AMD_ZEN_FAMILY:
                return True, (f"the CPU is AMD family {s.cpu_family:#x} (>= 0x17, Zen or later): "
                              f"since 5.9 the kernel allows every path through the host bridge")
            return False, (f"the CPU is AMD but family {s.cpu_family:#x} < 0x17, so the AMD Zen "
                           f"CPU rule does not apply")
        return False, ""

    def _rc_whitelist_5_2(self, bdf: str) -> tuple[bool, str]:
        """5.2-5.3 ``root_complex_whitelist(dev)``: AMD Zen 1022:1450 at 00.0, no IOMMU."""
        if self.inv.system.iommu:
            return False, ("an IOMMU is present: kernels 5.2-5.3 refuse any host-bridge route "
                           "then")
        hb = self.host_bridge_of(bdf)
        root = next((f for f in self.root_devices(hb or "") if f.devfn == (0, 0)), None)
        if root is None:
            return False, f"no device at devfn 00.0 on the root bus of {hb}"
        if (root.vendor, root.device) == R.AMD_ZEN_ROOT:
            return True, f"{root.bdf} is the AMD Zen root complex 1022:1450"
        return False, (f"{root.bdf} ({root.vendor:04x}:{root.device:04x}) is not the AMD Zen "
                       f"root complex 1022:1450 (the only one kernels 5.2-5.3 trust)")

    # -- one pair -------------------------------------------------------------------------------
    def pair(self, provider: str, client: "Client | str") -> PairVerdict:
        if isinstance(client, str):
            client = resolve_client(self.inv, client)
        provider = self._provider_bdf(provider)
        key = (provider, client.name)
        got = self._pair_cache.get(key)
        if got is not None:
            return got
        v = self._pair(provider, client)
        self._pair_cache[key] = v
        return v

    def _provider_bdf(self, provider: str) -> str:
        bdf = normalize_bdf(provider)
        if bdf is None or bdf not in self.inv.pci:
            raise InputError(f"unknown provider {provider!r}: no such PCI function in the "
                             f"inventory (expected a BDF like 0000:03:00.0; providers here: "
                             f"{short_list([f.bdf for f in self.inv.providers(False)])})",
                             where="PROVIDER")
        return bdf

    def _pair(self, provider: str, client: Client) -> PairVerdict:
        v = self.version
        if v < R.P2PDMA_FIRST:
            return PairVerdict(provider, client, MapType.NOT_SUPPORTED, -1, reasons=[
                f"kernel {self.kernel} has no PCI peer-to-peer DMA (p2pdma arrived in 4.20)"])
        extra: list[str] = []
        if client.soft:
            soft = self._soft_client(provider, client)
            if isinstance(soft, PairVerdict):
                return soft
            extra = soft
        if client.bdf is None:
            dev = client.device or client.name
            return PairVerdict(
                provider, client, MapType.NOT_SUPPORTED, -1,
                reasons=[f"{client.name}: {client.reason or 'no PCI device behind it'}; the "
                         f"kernel's find_parent_pci_dev() finds no PCI ancestor, so "
                         f"pci_p2pdma_distance() returns -1"],
                kernel_messages=[f"{class_prefix(client)} {dev}: cannot be used for "
                                 f"peer-to-peer DMA as it is not a PCI device"],
                uncertain=list(client.notes) + extra)
        return self._calc(provider, client, extra)

    def _soft_client(self, provider: str, client: Client) -> PairVerdict | list[str]:
        v = self.version
        drv = client.driver or "a soft RDMA driver"
        if v >= R.SOFT_RDMA_NEVER_CLIENT:
            return PairVerdict(provider, client, MapType.NOT_SUPPORTED, -1, reasons=[
                f"{client.name} is a soft RDMA device ({drv}) with virtual DMA: since 6.0 "
                f"nvmet-rdma sets no p2p client for it (ib_dma_pci_p2p_dma_supported() is false), "
                f"so connections through it silently use system memory; no kernel message"])
        if R.in_range(v, R.DMA_VIRT_OPS_REJECT):
            pv = PairVerdict(provider, client, MapType.NOT_SUPPORTED, -1, reasons=[
                f"{client.name} is a soft RDMA device ({drv}) using dma_virt_ops: kernel "
                f"{self.kernel} rejects it as a p2p client"],
                kernel_messages=[f"infiniband {client.device or client.name}: cannot be used for "
                                 f"peer-to-peer DMA because the driver makes use of "
                                 f"dma_virt_ops"])
            if v < (5, 1):
                pv.uncertain.append("the dma_virt_ops check is dated ~5.0 from patch order; on "
                                    "5.0 itself it may be missing")
            return pv
        # 4.20 and 5.11-5.19: not verified; fall through to the topology with a caveat.
        return [f"soft RDMA ({drv}) on kernel {self.kernel} is not verified: the verdict "
                f"follows its PCI parent if it has one"]

    def _calc(self, provider: str, client: Client, extra: Sequence[str] = ()) -> PairVerdict:
        """``calc_map_type_and_dist()`` (5.4+) / ``upstream_bridge_distance()`` (4.20-5.3)."""
        cbdf = client.bdf
        assert cbdf is not None
        common, hops, checked, path = self._walk(provider, cbdf)
        uncertain: list[str] = list(client.notes) + list(extra)
        for b in (provider, cbdf):
            uncertain.extend(self._chain_notes.get(b, []))
        known, unknown, notes_cmdline = self._acs_states(checked)

        def acs_list(mode: str) -> list[str]:
            on = set(known)
            for b, assumed, _ in unknown:
                if mode == "set" or (mode == "assumed" and assumed):
                    on.add(b)
            return [b for b in checked if b in on]

        primary = self._decide(provider, client, common, hops, acs_list("assumed"))
        primary.path = path
        primary.reasons[:0] = [f"ACS: {n}" for n in notes_cmdline]
        if unknown:
            names = ", ".join(b for b, _, _ in unknown)
            for b, assumed, why in unknown:
                uncertain.append(f"ACS redirect state of {self.describe(b)} is unknown ({why})")
            for mode, words in (("clear", "clear on all of"), ("set", "set on all of")):
                alt = self._decide(provider, client, common, hops, acs_list(mode))
                if (alt.map_type, alt.distance) != (primary.map_type, primary.distance):
                    uncertain.append(
                        f"if ACS redirect is {words} {names}, the verdict is {alt.map_type} "
                        f"(distance {alt.distance}) instead of {primary.map_type}; read config "
                        f"space as root (or snapshot as root) to decide")
                elif alt.kernel_parameter != primary.kernel_parameter:
                    uncertain.append(f"if ACS redirect is {words} {names}, the kernel parameter "
                                     f"would be {alt.kernel_parameter or 'unnecessary'}")
        primary.uncertain = _dedup(uncertain + primary.uncertain)
        primary.reasons.extend(self._config_note)
        if self._config_note and primary.map_type != MapType.NOT_SUPPORTED:
            primary.uncertain.append("the topology allows it, but this kernel has no p2pdma")
        return primary

    def _walk(self, provider: str, cbdf: str) -> tuple[str | None, int, list[str], list[str]]:
        """The walk of ``calc_map_type_and_dist()``: the common upstream bridge (or ``None``),
        the distance, the devices whose ACS the kernel checks (the provider's chain up to and
        including the common bridge, the client's below it; none without a common bridge),
        and the path for display."""
        pch = self.chain(provider)
        cch = self.chain(cbdf)
        cindex = {b: j for j, b in enumerate(cch)}
        checked: list[str] = []
        for i, a in enumerate(pch):
            checked.append(a)                 # ACS checked on a before the match: includes it
            j = cindex.get(a)
            if j is not None:
                checked.extend(cch[:j])       # client side, excluding the common ancestor
                return pch[i], i + j, checked, pch[:i + 1] + list(reversed(cch[:j]))
        hbs = [h for h in dict.fromkeys((self.host_bridge_of(provider),
                                          self.host_bridge_of(cbdf))) if h]
        # walked, but the kernel ignores ACS then
        return None, len(pch) + len(cch), [], pch + hbs + list(reversed(cch))

    def _acs_states(self, checked: list[str]) -> tuple[list[str], list[tuple[str, bool, str]], list[str]]:
        """The checked devices with ACS redirect set, those whose state is unknown (with the
        assumption made and why), and notes from the kernel command line."""
        known: list[str] = []
        unknown: list[tuple[str, bool, str]] = []
        notes_cmdline: list[str] = []
        for b in checked:
            st = self.acs(b)
            if st.redirect is None:
                assumed, why = self._assume_redirect(b)
                unknown.append((b, assumed, f"{st.note}; {why}"))
            else:
                if st.note:
                    notes_cmdline.append(f"{b}: {st.note}")
                if st.redirect:
                    known.append(b)
        return known, unknown, notes_cmdline

    def _decide(self, provider: str, client: Client, common: str | None, hops: int,
                acs: list[str]) -> PairVerdict:
        """The verdict for one path (``common`` upstream bridge or ``None``, ``hops``, the
        bridges on it with ACS redirect): the decision ``calc_map_type_and_dist()`` makes."""
        cbdf = client.bdf or ""
        hbp, hbc = self.host_bridge_of(provider), self.host_bridge_of(cbdf)
        pv = PairVerdict(provider, client, MapType.NOT_SUPPORTED, -1, hops=hops, common_upstream=common,
                         same_host_bridge=(hbp == hbc) if hbp and hbc else None)
        param = "pci=disable_acs_redir=" + ";".join(acs) if acs else None
        pv.acs_redirect = list(acs)
        pv.kernel_parameter = param
        pv.crosses_root_complex = common is None or bool(acs)
        if common is not None:
            if provider == cbdf:
                pv.reasons.append(f"the client is the provider itself ({provider}): distance 0")
            else:
                pv.reasons.append(f"{provider} and {cbdf} share the upstream bridge "
                                  f"{self.describe(common)}: {hops} hops")
        else:
            pv.reasons.append(f"{provider} ({hbp}) and {cbdf} ({hbc}) share no upstream bridge "
                              f"below the root complex: the path goes through the host bridge "
                              f"({hops} hops, the depth of both devices)")
        acs_msgs = self._acs_redirect_messages(pv, provider, cbdf, acs) if acs else []
        if common is not None and not acs:
            pv.map_type, pv.distance = MapType.BUS_ADDR, hops
            pv.reasons.append("no ACS redirect on the path: the traffic stays below "
                              + ("the device" if hops <= 2 else "the switch")
                              + " and uses PCI bus addresses (BUS_ADDR)")
            return pv
        if self.version < R.MAP_TYPES:
            return self._upstream_bridge_distance(pv, hops, acs_msgs)
        return self._thru_host_bridge(pv, hops, acs_msgs)

    def _acs_redirect_messages(self, pv: PairVerdict, provider: str, cbdf: str,
                               acs: list[str]) -> list[str]:
        """The reason for ACS redirect on the path and the ``pci_warn()`` lines the kernel
        prints for it (``calc_map_type_and_dist()`` 5.4+, ``upstream_bridge_distance_warn()``
        before)."""
        v = self.version
        cpfx = self._dev_prefix(cbdf)
        what = ", ".join(self.describe(b) for b in acs)
        bits = "; ".join(f"{b}: {acs_bits_text(fb)}" for b in acs
                         if (fb := self.fn(b)) is not None and fb.acs_ctrl is not None)
        pv.reasons.append(f"ACS redirect (RR/CR/EC) is set on {what}" +
                          (f" [{bits}]" if bits else "") +
                          f"; clear it with the kernel parameter {pv.kernel_parameter}" +
                          (" (quote it in the bootloader because of ';')" if len(acs) > 1
                           else ""))
        printed = ";".join(acs)
        if v >= R.ACS_LIST_BUFFER_128 and len(printed) > 127:
            printed = printed[:127]
            pv.uncertain.append("the kernel prints the ACS list from a 128-byte buffer, so its "
                                "message is truncated; kernel_parameter has the full list")
        fix = (f"{cpfx}: to disable ACS redirect for this path, add the kernel parameter: "
               f"pci=disable_acs_redir={printed}")
        if v >= R.MAP_TYPES:
            return [f"{cpfx}: ACS redirect is set between the client and provider ({provider})", fix]
        return [f"{cpfx}: cannot be used for peer-to-peer DMA as ACS redirect is set between the "
                f"client and provider ({provider})", fix]

    def _upstream_bridge_distance(self, pv: PairVerdict, hops: int, acs_msgs: list[str]) -> PairVerdict:
        """4.20-5.3 ``upstream_bridge_distance()``: ACS redirect refuses the path; without a
        common bridge only 5.2-5.3's root-complex whitelist (AMD Zen 1022:1450) allows it.
        ``pv`` names the pair and the bridges with ACS redirect; ``acs_msgs`` the lines the
        kernel prints for them."""
        provider, cbdf, acs = pv.provider, pv.client.bdf or "", pv.acs_redirect
        cpfx = self._dev_prefix(cbdf)
        if acs:
            pv.reasons.append(f"kernel {self.kernel} (before 5.4) rejects any path with ACS "
                              f"redirect set instead of routing it through the host bridge")
            pv.kernel_messages = acs_msgs
            return pv
        if R.in_range(self.version, R.ROOT_COMPLEX_WHITELIST):
            okp, whyp = self._rc_whitelist_5_2(provider)
            okc, whyc = self._rc_whitelist_5_2(cbdf)
            pv.host_bridge_check = {"rule": "root_complex_whitelist (5.2-5.3)",
                                    "provider": whyp, "client": whyc, "ok": okp and okc}
            if okp and okc:
                pv.map_type = MapType.THRU_HOST_BRIDGE
                pv.distance = R.HOST_BRIDGE_PENALTY + hops
                pv.reasons.append(f"kernel {self.kernel} trusts the AMD Zen root complex "
                                  f"(1022:1450) and adds 0x1000 to the distance: {pv.distance}")
                return pv
            pv.reasons.append(f"kernel {self.kernel} trusts only the AMD Zen root complex "
                              f"between root ports: " + "; ".join(
                                  w for ok, w in ((okp, whyp), (okc, whyc)) if not ok))
        else:
            pv.reasons.append(f"kernel {self.kernel} (before 5.2) supports only devices "
                              f"behind a common upstream bridge")
        pv.kernel_messages = [f"{cpfx}: cannot be used for peer-to-peer DMA as the client and "
                              f"provider ({provider}) do not share an upstream bridge"]
        return pv

    def _thru_host_bridge(self, pv: PairVerdict, hops: int, acs_msgs: list[str]) -> PairVerdict:
        """5.4+ ``calc_map_type_and_dist()`` through the root complex: THRU_HOST_BRIDGE when
        ``cpu_supports_p2pdma()`` (AMD family >= 0x17) or ``host_bridge_whitelist()`` allows
        it, else NOT_SUPPORTED with the lines the kernel prints."""
        provider, cbdf, acs = pv.provider, pv.client.bdf or "", pv.acs_redirect
        pv.kernel_messages = list(acs_msgs)
        cpu_ok, cpu_why = self.cpu_rule()
        if cpu_ok:
            pv.map_type, pv.distance = MapType.THRU_HOST_BRIDGE, hops
            pv.host_bridge_check = {"rule": "AMD CPU family >= 0x17 (5.9+)", "ok": True}
            pv.reasons.append(cpu_why + ": THRU_HOST_BRIDGE (the root complex forwards it; "
                              "performance depends on its peer-to-peer forwarding)")
            return pv
        ok, info, unc, first_fail = self.host_bridge_whitelist(provider, cbdf)
        info["rule"] = "pci_p2pdma_whitelist"
        pv.host_bridge_check = info
        pv.uncertain.extend(unc)
        if cpu_ok is None:
            pv.uncertain.append(f"{cpu_why}; an AMD family >= 0x17 CPU would allow this path "
                                f"(kernel {self.kernel} has the AMD CPU rule)")
        elif cpu_why:
            pv.reasons.append(cpu_why)
        checks = info.get("checks", [])
        if ok:
            pv.map_type, pv.distance = MapType.THRU_HOST_BRIDGE, hops
            pv.reasons.append(checks[0]["why"] + (" (both host bridges)" if len(checks) > 1
                                                  else "") +
                              ": THRU_HOST_BRIDGE, mapped through the root complex (and the IOMMU "
                              "if one is active)")
            return pv
        for c in checks:
            if not c.get("ok"):
                pv.reasons.append(c.get("why", ""))
        if acs and first_fail is not None:
            fail = next(c for c in checks if c["host_bridge"] == first_fail)
            # printed only when no table entry matched (not for REQ_SAME_HOST_BRIDGE), and only
            # by kernels whose host_bridge_whitelist() has the warn argument (6.x; approx)
            if fail.get("device") and fail.get("entry") is None and self.version >= (6, 0):
                pv.kernel_messages.append(
                    f"{self._dev_prefix(fail['device'])}: Host bridge not in P2PDMA whitelist: "
                    f"{fail['id']}")
        pv.kernel_messages.append(
            f"{self._dev_prefix(cbdf)}: cannot be used for peer-to-peer DMA as the client and "
            f"provider ({provider}) do not share an upstream bridge or whitelisted host bridge")
        return pv

    # -- many clients ---------------------------------------------------------------------------
    def distance_many(self, provider: str, clients: Sequence["Client | str"]) -> Verdict:
        provider = self._provider_bdf(provider)
        if not clients:
            raise InputError("at least one client is needed", where="CLIENT")
        cl = [c if isinstance(c, Client) else resolve_client(self.inv, c) for c in clients]
        pairs = [self.pair(provider, c) for c in cl]
        f = self.fn(provider)
        mem = f.p2pmem if f is not None else None
        has = mem is not None
        pub = mem is not None and bool(mem.published)
        if any(p.map_type == MapType.NOT_SUPPORTED for p in pairs):
            mt, dist = MapType.NOT_SUPPORTED, -1
        else:
            thru = any(p.map_type == MapType.THRU_HOST_BRIDGE for p in pairs)
            mt = MapType.THRU_HOST_BRIDGE if thru else MapType.BUS_ADDR
            dist = sum(p.distance for p in pairs)
        reasons: list[str] = []
        multi = len(pairs) > 1
        for p in pairs:
            for r in p.reasons:
                reasons.append(f"{p.client.name}: {r}" if multi else r)
        if multi and mt != MapType.NOT_SUPPORTED:
            reasons.append(f"distance {dist} = " + " + ".join(str(p.distance) for p in pairs)
                           + " (the kernel sums the clients and does not tell host-bridge paths "
                             "from switch paths)")
        if not has:
            reasons.append(f"{provider} has no p2pmem: it is not a provider (nvmet's p2pmem "
                           f"attribute refuses it with ENODEV)")
        elif not pub:
            reasons.append(f"{provider}'s p2pmem is not published: nvmet's p2pmem attribute "
                           f"refuses it (ENODEV) and pci_p2pmem_find_many() skips it")
        acs: list[str] = []
        for p in pairs:
            for b in p.acs_redirect:
                if b not in acs:
                    acs.append(b)
        uncertain = _dedup(self.notes + [u for p in pairs for u in p.uncertain])
        if mt == MapType.NOT_SUPPORTED or not pairs:
            crosses = None if all(p.crosses_root_complex is None for p in pairs) else \
                any(bool(p.crosses_root_complex) for p in pairs)
        else:
            crosses = any(bool(p.crosses_root_complex) for p in pairs)
        return Verdict(provider=provider, clients=[c.name for c in cl], map_type=mt,
                       distance=dist, reasons=reasons,
                       kernel_parameter=("pci=disable_acs_redir=" + ";".join(acs)) if acs else None,
                       pairs=pairs, uncertain=uncertain, kernel=self.kernel,
                       kernel_source=self.kernel_source, provider_has_p2pmem=has,
                       provider_published=pub, crosses_root_complex=crosses)

    def enumeration_order(self) -> list[PciFunction]:
        """``for_each_pci_dev`` order: boot-time devices by domain/bus/devfn (bus numbers follow
        the depth-first scan), then VFs, which are added when SR-IOV is enabled."""
        return sorted(self.inv.pci.values(),
                      key=lambda f: (f.physfn is not None, bdf_sort_key(f.bdf)))

    def find_many(self, clients: Sequence["Client | str"]) -> FindResult:
        if not clients:
            raise InputError("at least one client is needed", where="CLIENT")
        cl = [c if isinstance(c, Client) else resolve_client(self.inv, c) for c in clients]
        cands: list[Verdict] = []
        unpublished: list[str] = []
        for f in self.enumeration_order():
            if f.p2pmem is None:
                continue
            if not f.p2pmem.published:
                unpublished.append(f.bdf)
                continue
            cands.append(self.distance_many(f.bdf, cl))
        ok = [v for v in cands if v.distance >= 0]
        best = min((v.distance for v in ok), default=None)
        ties = [v.provider for v in ok if v.distance == best][:FIND_MANY_MAX_TIES]
        reasons: list[str] = []
        names = ", ".join(c.name for c in cl)
        if not cands:
            reasons.append("no published p2pmem provider in the inventory"
                           + (f" ({len(unpublished)} unpublished skipped)" if unpublished else ""))
        elif best is None:
            reasons.append(f"no published provider is compatible with {names}: nvmet would log "
                           f"'no peer-to-peer memory is available ...' and use system memory")
        elif len(ties) == 1:
            reasons.append(f"{ties[0]} is the only provider at the minimum distance {best}")
        else:
            reasons.append(f"{len(ties)} providers tie at distance {best}: the kernel picks one "
                           f"at random for every controller; write an explicit BDF to the "
                           f"namespace's p2pmem attribute to be deterministic")
            kinds = {v.provider: v.crosses_root_complex for v in ok if v.distance == best}
            if len(set(kinds.values())) > 1:
                reasons.append("the tie mixes switch paths and host-bridge paths: the kernel "
                               "cannot tell them apart")
        unc = _dedup(self.notes + [u for v in cands for u in v.uncertain])
        return FindResult(clients=[c.name for c in cl], candidates=cands, best_distance=best,
                          ties=ties, unpublished=unpublished, reasons=reasons, uncertain=unc,
                          kernel=self.kernel)


# ---------------------------------------------------------------------------------------------
# Descriptions
# ---------------------------------------------------------------------------------------------

_PCIE_ROLES = {0x0: "endpoint", 0x1: "legacy endpoint", 0x4: "root port",
               0x5: "switch upstream port", 0x6: "switch downstream port",
               0x7: "PCIe-to-PCI bridge", 0x8: "PCI-to-PCIe bridge",
               0x9: "root complex integrated endpoint", 0xa: "root complex event collector"}


def device_role(f: PciFunction) -> str:
    """A short role for a PCI function: from the PCIe port type, else from the class."""
    if f.pcie_type is not None and f.pcie_type in _PCIE_ROLES and f.pcie_type not in (0x0, 0x1):
        return _PCIE_ROLES[f.pcie_type]
    base = f.class_code >> 8
    if base == 0x0604:
        return "PCI bridge" if f.upstream else "PCI bridge on the root bus"
    if base == 0x0600:
        return "host bridge"
    if base == 0x0108:
        return "NVMe"
    if base == 0x0200:
        return "Ethernet"
    if base == 0x0207:
        return "InfiniBand"
    if f.physfn:
        return "VF"
    return ""


def acs_bits_text(f: PciFunction | None) -> str:
    """``ACSCtl: ReqRedir+ CmpltRedir+ EgressCtrl-`` style, or why it is unknown."""
    if f is None:
        return "unknown (not in inventory)"
    if f.acs_ctrl is None:
        return "no ACS capability" if f.config_readable else "unknown (config space unreadable)"
    c = f.acs_ctrl

    def b(bit: int) -> str:
        return "+" if c & bit else "-"

    return (f"ACSCtl {c:#06x} ReqRedir{b(ACS_REQ_REDIR)} CmpltRedir{b(ACS_CMPLT_REDIR)} "
            f"EgressCtrl{b(ACS_EGRESS_CTRL)}")


def _dedup(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in items:
        if i and i not in seen:
            seen.add(i)
            out.append(i)
    return out


# ---------------------------------------------------------------------------------------------
# The agreed module-level API
# ---------------------------------------------------------------------------------------------

def pair(inv: Inventory, provider_bdf: str, client: "Client | str",
         kernel: str | tuple[int, int] | None = None) -> PairVerdict:
    """One provider and one client: ``calc_map_type_and_dist()`` with reasons."""
    return P2pdma(inv, kernel).pair(provider_bdf, client)


def distance_many(inv: Inventory, provider_bdf: str, clients: Sequence["Client | str"],
                  kernel: str | tuple[int, int] | None = None) -> Verdict:
    """``pci_p2pdma_distance_many(provider, clients)`` with reasons."""
    return P2pdma(inv, kernel).distance_many(provider_bdf, clients)


def find_many(inv: Inventory, clients: Sequence["Client | str"],
              kernel: str | tuple[int, int] | None = None) -> FindResult:
    """``pci_p2pmem_find_many(clients)``: candidates, the minimum and every tie."""
    return P2pdma(inv, kernel).find_many(clients)


__all__ = [
    "Client", "PairVerdict", "Verdict",
    "FindResult", "P2pdma", "resolve_client", "pair", "distance_many", "find_many",
    "normalize_bdf", "device_role", "acs_bits_text", "kernel_rules_version",
]
