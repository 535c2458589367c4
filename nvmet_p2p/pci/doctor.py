"""Can this machine export NVMe over RDMA with p2p (CMB) memory, and if not, what to change?

Pure checks on an :class:`~nvmet_p2p.pci.model.Inventory` (no filesystem): each
:class:`Check` has a status -- ``ok``, ``warn`` (works, but not as well as it could or only
partly), ``fail`` (blocks the offload) or ``skip`` (cannot be judged from what was read) -- a
one-line detail and, unless ok, the fix. :func:`diagnose` returns a :class:`Report` whose
``can_offload`` is False when any check failed; ``summary`` is the one line that says why.

The path checks (IOMMU/ACS on candidate provider <-> RDMA NIC paths) use
:mod:`nvmet_p2p.pci.distance`, so doctor and ``nvmet-p2p distance`` never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nvmet_p2p.kernel import parse_kernel_version
from nvmet_p2p.pci import distance as D
from nvmet_p2p.pci.model import Inventory
from nvmet_p2p.pci.p2pdma_rules import MapType

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

#: Which problem the one-line summary names first (most fundamental first).
PRIORITY = ("kernel", "p2pdma", "nvmet", "nvmet_rdma", "rdma", "providers", "namespaces",
            "paths", "configfs", "cmb-registered", "in-use", "multipath", "config-space",
            "addresses", "cmb-sqes", "iommu", "nvmetcli-unit")


def _rank(c: "Check") -> int:
    return PRIORITY.index(c.id) if c.id in PRIORITY else len(PRIORITY)

P2PDMA_FIX = ("Debian's stable kernels (bookworm 6.1, trixie 6.12) are built without "
              "CONFIG_PCI_P2PDMA; install the trixie-backports kernel (7.x: "
              "apt install -t trixie-backports linux-image-amd64, which has "
              "CONFIG_PCI_P2PDMA=y) or build one with CONFIG_PCI_P2PDMA=y (needs ZONE_DEVICE, "
              "64-bit)")


@dataclass
class Check:
    """One diagnosis: what was looked at, the verdict, and how to fix it."""

    id: str
    title: str
    status: str
    detail: str
    fix: str = ""
    items: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "status": self.status,
                "detail": self.detail, "fix": self.fix, "items": list(self.items)}


@dataclass
class Report:
    checks: list[Check]
    source: str
    kernel: str
    #: words when every PCI RDMA device is an emulation (the lab's NIC): the verdict depends on it
    emulated: str | None = None

    @property
    def can_offload(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def summary(self) -> str:
        fails = sorted((c for c in self.checks if c.status == FAIL), key=_rank)
        warns = sorted((c for c in self.checks if c.status == WARN), key=_rank)
        if fails:
            more = f" (and {len(fails) - 1} more blocking problem{'s' if len(fails) > 2 else ''})" \
                if len(fails) > 1 else ""
            return f"CANNOT OFFLOAD: {fails[0].detail}{more}"
        label = f" [RDMA NIC emulated: {self.emulated}]" if self.emulated else ""
        if warns:
            return (f"CAN OFFLOAD, with {len(warns)} warning{'s' if len(warns) > 1 else ''}: "
                    f"{warns[0].detail}{label}")
        return f"CAN OFFLOAD: every check passed{label}"

    def to_dict(self) -> dict:
        return {"can_offload": self.can_offload, "summary": self.summary,
                "emulated": self.emulated, "source": self.source, "kernel": self.kernel,
                "counts": {s: sum(1 for c in self.checks if c.status == s)
                           for s in (OK, WARN, FAIL, SKIP)},
                "checks": [c.to_dict() for c in self.checks]}


def _mib(n: int) -> str:
    if n >= (1 << 20):
        v = n / (1 << 20)
        return f"{v:.0f} MiB" if n % (1 << 20) == 0 else f"{v:.2f} MiB"
    return f"{n} bytes"


def _module_state(inv: Inventory, name: str, config_key: str) -> tuple[str, str]:
    """("loaded"|"available"|"missing"|"unknown", how we know)."""
    s = inv.system
    if name in s.modules_loaded:
        return "loaded", "/proc/modules"
    if s.modules_available is not None and name in s.modules_available:
        return "available", "modules.dep"
    cfg = (s.kernel_config or {}).get(config_key)
    if cfg == "y":
        return "loaded", f"{config_key}=y (built in)"
    if cfg == "m":
        return "available", f"{config_key}=m"
    if s.modules_available is not None or cfg == "n":
        return "missing", "not in modules.dep" if s.modules_available is not None else f"{config_key} is not set"
    return "unknown", "no module list and no kernel config"


# ---------------------------------------------------------------------------------------------
# The checks (each takes the inventory, returns a Check)
# ---------------------------------------------------------------------------------------------

def check_kernel(inv: Inventory, kernel: str | None) -> Check:
    rel = kernel or inv.system.kernel_release
    title = "kernel release"
    if not rel:
        return Check("kernel", title, WARN, "kernel release unknown",
                     "pass --kernel X.Y (the version-dependent p2pdma rules need it)")
    try:
        ver = parse_kernel_version(rel)
    except ValueError:
        return Check("kernel", title, WARN, f"cannot parse kernel release {rel!r}",
                     "pass --kernel X.Y")
    if ver < (4, 20):
        return Check("kernel", title, FAIL, f"kernel {rel} predates PCI p2pdma (4.20)",
                     "boot a 4.20+ kernel with CONFIG_PCI_P2PDMA=y; " + P2PDMA_FIX)
    if ver < (5, 4):
        return Check("kernel", title, WARN,
                     f"kernel {rel}: ACS redirect on a path rejects the pair outright and no "
                     f"host-bridge path is allowed (5.4+ relaxed both)",
                     "a 5.4+ kernel (better 6.2+, for p2pmem/allocate) gives more options")
    return Check("kernel", title, OK, f"kernel {rel}")


def check_p2pdma(inv: Inventory) -> Check:
    title = "CONFIG_PCI_P2PDMA"
    cfg = inv.system.kernel_config
    has_pmem = any(f.p2pmem is not None for f in inv.pci.values())
    src = inv.system.kernel_config_source or "kernel config"
    if cfg is not None:
        val = cfg.get("CONFIG_PCI_P2PDMA", "n")
        if val == "y":
            return Check("p2pdma", title, OK, f"CONFIG_PCI_P2PDMA=y ({src})")
        if has_pmem:
            return Check("p2pdma", title, OK,
                         f"{src} says CONFIG_PCI_P2PDMA is not set, but p2pmem directories exist, "
                         f"so the running kernel has it (the config file belongs to another build?)")
        return Check("p2pdma", title, FAIL,
                     f"the kernel {inv.system.kernel_release or ''} is built without "
                     f"CONFIG_PCI_P2PDMA ({src}): no p2pmem, no nvmet p2pmem attribute".replace("  ", " "),
                     P2PDMA_FIX)
    if has_pmem:
        return Check("p2pdma", title, OK, "no kernel config file found, but p2pmem directories "
                                          "exist: p2pdma is built in")
    return Check("p2pdma", title, WARN,
                 "no kernel config file found (/boot/config-R, /lib/modules/R/config, "
                 "/proc/config.gz) and no p2pmem directory: cannot tell whether the kernel has "
                 "CONFIG_PCI_P2PDMA", P2PDMA_FIX)


def check_configfs(inv: Inventory) -> Check:
    title = "configfs mounted"
    if inv.system.configfs_mounted:
        extra = " (nvmet/ present)" if inv.system.nvmet_configfs else ""
        return Check("configfs", title, OK, f"configfs is mounted at /sys/kernel/config{extra}")
    return Check("configfs", title, FAIL,
                 "configfs is not mounted: nvmet is configured only through /sys/kernel/config",
                 "modprobe configfs && mount -t configfs none /sys/kernel/config "
                 "(systemd does it with sys-kernel-config.mount)")


def check_module(inv: Inventory, name: str, config_key: str, why: str) -> Check:
    title = f"{name.replace('_', '-')} module"
    state, how = _module_state(inv, name, config_key)
    if name == "nvmet" and inv.system.nvmet_configfs and state != "loaded":
        state, how = "loaded", "/sys/kernel/config/nvmet exists"
    mod = name.replace("_", "-")
    if state == "loaded":
        return Check(name, title, OK, f"{mod} is loaded ({how})")
    if state == "available":
        return Check(name, title, OK, f"{mod} is available, not loaded ({how}); "
                                      f"`modprobe {mod}` loads it")
    if state == "missing":
        return Check(name, title, FAIL, f"{mod} is not available for this kernel ({how}): {why}",
                     f"install a kernel with CONFIG_{config_key[7:]}=m or y (Debian's "
                     f"kernels have it as a module)")
    return Check(name, title, SKIP, f"cannot tell whether {mod} is available ({how})",
                 "check with `modinfo " + mod + "`")


def check_config_space(inv: Inventory) -> Check:
    title = "PCI config space readable"
    if not inv.pci:
        return Check("config-space", title, SKIP, "no PCI functions read")
    unreadable = [b for b, f in inv.pci.items() if not f.config_readable]
    if not unreadable:
        return Check("config-space", title, OK,
                     f"full config space of all {len(inv.pci)} PCI functions was read "
                     f"(ACS control words known)")
    return Check("config-space", title, WARN,
                 f"config space beyond 64 bytes was unreadable for {len(unreadable)} of "
                 f"{len(inv.pci)} PCI functions (not root): ACS redirect bits are unknown, "
                 f"so path verdicts are uncertain",
                 "run as root (sudo nvmet-p2p doctor), or take the snapshot as root",
                 items=[{"bdf": b} for b in unreadable])


def check_providers(inv: Inventory) -> Check:
    title = "p2pmem providers"
    provs = inv.providers(published_only=False)
    pub = [f for f in provs if f.p2pmem.published]
    items = [{"bdf": f.bdf, "size": f.p2pmem.size, "available": f.p2pmem.available,
              "published": f.p2pmem.published} for f in provs]
    if pub:
        tot = sum(f.p2pmem.available for f in pub)
        return Check("providers", title, OK,
                     f"{len(pub)} published provider{'s' if len(pub) > 1 else ''} "
                     f"({', '.join(f.bdf for f in pub)}), {_mib(tot)} available", items=items)
    if provs:
        return Check("providers", title, FAIL,
                     f"p2pmem is registered on {', '.join(f.bdf for f in provs)} but not "
                     f"published: nvmet only uses published memory",
                     "an NVMe CMB is published only when CMBSZ has both RDS and WDS; use a "
                     "controller that advertises them", items=items)
    cmbs = [c for c in inv.nvme.values() if c.cmb is not None]
    if cmbs:
        return Check("providers", title, FAIL,
                     f"no p2pmem provider: the CMB of {', '.join(c.name for c in cmbs)} was not "
                     f"registered (see the CMB check)",
                     "see the fix of the 'CMB registered' check")
    return Check("providers", title, FAIL,
                 "no device exposes p2p memory (no /sys/bus/pci/devices/*/p2pmem): nothing "
                 "for nvmet to place buffers in",
                 "add an NVMe with a Controller Memory Buffer that supports reads and writes "
                 "(CMBSZ.RDS and WDS), at least 2 MiB and 2 MiB-aligned")


def check_cmb_registered(inv: Inventory) -> Check:
    title = "CMB registered as p2pmem"
    rows, bad = [], []
    for c in sorted(inv.nvme.values(), key=lambda c: c.name):
        if c.cmb is None:
            continue
        f = inv.pci.get(c.pci or "")
        pm = f.p2pmem if f else None
        row = {"controller": c.name, "bdf": c.pci, "cmb_size": c.cmb.size, "rds": c.cmb.rds,
               "wds": c.cmb.wds, "registered": pm is not None,
               "published": bool(pm and pm.published)}
        rows.append(row)
        if pm is None:
            bad.append(f"{c.name} ({c.pci}, CMB {_mib(c.cmb.size)})")
    if not rows:
        return Check("cmb-registered", title, SKIP, "no NVMe controller reports a CMB")
    if bad:
        return Check("cmb-registered", title, WARN,
                     f"CMB present but not registered as p2pmem: {', '.join(bad)}",
                     "the kernel skips a CMB silently when its size or BAR address is not "
                     "2 MiB-aligned (since the 2025 alignment fix) and logs 'failed to register "
                     "the CMB' when registration fails; check `dmesg | grep -i cmb` and use a "
                     "CMB of at least 2 MiB (QEMU: cmb_size_mb >= 2, even)", items=rows)
    return Check("cmb-registered", title, OK,
                 f"every CMB is registered ({', '.join(r['controller'] for r in rows)})", items=rows)


def check_cmb_sqes(inv: Inventory) -> Check:
    title = "CMB not consumed by submission queues"
    hits = []
    for c in sorted(inv.nvme.values(), key=lambda c: c.name):
        f = inv.pci.get(c.pci or "")
        if c.cmb is not None and c.cmb.sqs and f is not None and f.p2pmem is not None:
            used = f.p2pmem.size - f.p2pmem.available
            hits.append({"controller": c.name, "bdf": c.pci, "size": f.p2pmem.size,
                         "available": f.p2pmem.available, "used": used})
    if inv.system.nvme_use_cmb_sqes is None:
        return Check("cmb-sqes", title, SKIP,
                     "nvme use_cmb_sqes unknown (nvme module not loaded?)", items=hits)
    if not inv.system.nvme_use_cmb_sqes:
        return Check("cmb-sqes", title, OK, "nvme.use_cmb_sqes=N: the CMB stays free for p2pmem",
                     items=hits)
    if not hits:
        return Check("cmb-sqes", title, OK,
                     "use_cmb_sqes=Y, but no registered CMB advertises SQS", items=hits)
    desc = ", ".join(f"{h['controller']} {_mib(h['available'])} of {_mib(h['size'])} available"
                     for h in hits)
    return Check("cmb-sqes", title, WARN,
                 f"nvme.use_cmb_sqes=Y puts I/O submission queues into SQS-capable CMBs, which "
                 f"shrinks the p2pmem pool ({desc})",
                 "boot with nvme.use_cmb_sqes=0 (or `options nvme use_cmb_sqes=0` in "
                 "/etc/modprobe.d and reload nvme) to keep the whole CMB for p2pmem", items=hits)


def check_rdma(inv: Inventory) -> Check:
    title = "RDMA devices"
    items = [{"name": r.name, "pci": r.pci, "soft": r.soft, "driver": r.driver,
              "emulated": r.emulated, "netdevs": r.netdevs, "states": [p.state for p in r.ports]}
             for r in sorted(inv.rdma.values(), key=lambda r: r.name)]
    if not inv.rdma:
        return Check("rdma", title, FAIL,
                     "no RDMA device (/sys/class/infiniband is empty): only nvmet-rdma ever "
                     "uses p2pmem", "install an RDMA NIC (ConnectX, E810 iRDMA, ...) and its "
                                    "driver", items=items)
    hard = [r for r in inv.rdma.values() if not r.soft and r.pci]
    soft = [r for r in inv.rdma.values() if r.soft or not r.pci]
    if not hard:
        names = ", ".join(f"{r.name} ({r.driver or 'soft'})" for r in sorted(soft, key=lambda r: r.name))
        return Check("rdma", title, FAIL,
                     f"only soft RDMA present ({names}): their DMA is virtual, nvmet-rdma never "
                     f"sets a p2p client for them, so fabric I/O never touches p2pmem "
                     f"(configuration and enable-time checks still work)",
                     "use a PCI RDMA NIC for the offload; soft-RoCE is fine for testing the "
                     "configuration path only", items=items)
    inactive = [r.name for r in hard if r.ports and not any("ACTIVE" in p.state for p in r.ports)]
    if inactive:
        return Check("rdma", title, WARN,
                     f"PCI RDMA device(s) without an ACTIVE port: {', '.join(inactive)}",
                     "check the cable/switch and `rdma link show`", items=items)
    extra = f"; soft devices ignored: {', '.join(r.name for r in soft)}" if soft else ""
    emulated = sorted(r.name for r in hard if r.emulated)
    if emulated:
        extra += (f"; emulated: {', '.join(emulated)} "
                  f"({next(r.emulated for r in hard if r.emulated)}, not a real RNIC)")
    return Check("rdma", title, OK,
                 f"{len(hard)} PCI RDMA device(s): {', '.join(sorted(r.name for r in hard))}{extra}",
                 items=items)


def check_addresses(inv: Inventory) -> Check:
    title = "RDMA interfaces have IP addresses"
    hard = [r for r in inv.rdma.values() if not r.soft and r.pci]
    if not hard:
        return Check("addresses", title, SKIP, "no PCI RDMA device")
    missing, items = [], []
    for r in sorted(hard, key=lambda r: r.name):
        addrs = [a for n in r.netdevs for a in (inv.net[n].addresses if n in inv.net else [])
                 if not a.startswith("fe80:")]
        items.append({"rdma": r.name, "netdevs": r.netdevs, "addresses": addrs})
        link_layers = {p.link_layer for p in r.ports}
        if not addrs and link_layers != {"InfiniBand"}:
            missing.append(r.name)
    if missing:
        return Check("addresses", title, WARN,
                     f"no routable IP address on the interfaces of {', '.join(missing)}: an "
                     f"nvmet rdma port listens on an IP address",
                     "ip addr add A.B.C.D/NN dev <netdev>", items=items)
    return Check("addresses", title, OK, "every PCI RDMA device has an address", items=items)


def check_namespaces(inv: Inventory) -> Check:
    title = "NVMe namespaces behind nvme-pci"
    usable = [n for n in inv.namespaces.values() if n.pci and not n.multipath_head]
    if usable:
        return Check("namespaces", title, OK,
                     f"{len(usable)} namespace(s) with a PCI parent: "
                     f"{', '.join(sorted((n.name for n in usable), key=_nat))}")
    heads = [n for n in inv.namespaces.values() if n.multipath_head]
    if heads:
        return Check("namespaces", title, FAIL,
                     "every NVMe namespace is a native-multipath head disk without a PCI parent: "
                     "nvmet refuses p2pmem for all of them", "see the multipath check")
    return Check("namespaces", title, FAIL, "no NVMe namespace on a PCIe controller to export",
                 "nvmet's p2pmem needs a block namespace served by nvme-pci")


def check_in_use(inv: Inventory) -> Check:
    """The export policy's view: NVMe namespaces this machine itself uses (mounted, a mounted
    partition, swap, LVM/md member) are refused unless a profile or state says
    ``allow_in_use: true`` for them."""
    title = "NVMe namespaces in use on this machine (export policy)"
    if inv.blocks is None:
        return Check("in-use", title, SKIP, "block devices were not read (an older inventory "
                                            "file): mounted disks are not known")
    items = [{"name": n, "uses": inv.block_usage(n)} for n in sorted(inv.namespaces, key=_nat)]
    used = [i for i in items if i["uses"]]
    if not used:
        return Check("in-use", title, OK, f"none of the {len(items)} NVMe namespace(s) is "
                                          "mounted, swap or an LVM/md member")
    text = "; ".join(f"{i['name']}: {', '.join(i['uses'])}" for i in used)
    detail = (f"{len(used)} of {len(items)} NVMe namespace(s) would be refused by the export "
              f"policy (profiles with each: true leave them out): {text}")
    fix = ("export another namespace, or write allow_in_use: true for it in the profile or "
           "state if hosts are meant to write to a disk this machine uses")
    status = WARN if len(used) == len(items) else OK
    return Check("in-use", title, status, detail, fix, items=used)


def check_multipath(inv: Inventory) -> Check:
    title = "native NVMe multipath"
    heads = sorted((n for n in inv.namespaces.values() if n.multipath_head), key=lambda n: _nat(n.name))
    if not heads:
        state = {True: "enabled, but no head disks", False: "disabled",
                 None: "state unknown"}[inv.system.nvme_multipath]
        return Check("multipath", title, OK, f"no multipath head disks (nvme_core multipath {state})")
    items = [{"name": n.name, "paths": n.paths, "controller": n.controller} for n in heads]
    return Check("multipath", title, WARN,
                 f"{', '.join(n.name for n in heads)} "
                 f"{'is a' if len(heads) == 1 else 'are'} native-multipath head disk"
                 f"{'' if len(heads) == 1 else 's'} (parent under /sys/devices/virtual/"
                 f"nvme-subsystem, no PCI device): nvmet cannot use p2pmem for "
                 f"{'it' if len(heads) == 1 else 'them'}",
                 "boot with nvme_core.multipath=N (each path becomes a plain nvmeXnY with a PCI "
                 "parent), or export namespaces of controllers whose CMIC bit is clear",
                 items=items)


def check_nvmetcli_unit(inv: Inventory) -> Check:
    """nvmetcli's ``nvmet.service`` enabled beside nvmet-p2p: at boot (or on a restart) it
    clears the whole target and restores /etc/nvmet/config.json with nvmetcli, which drops
    ``p2pmem`` and ``buffered_io``; nvmet-p2p.service conflicts with it, so systemd runs only
    one, but which one an operator meant is theirs to say."""
    title = "nvmetcli's nvmet.service"
    links = inv.system.nvmetcli_unit_links
    if links is None:
        return Check("nvmetcli-unit", title, SKIP, "systemd's unit links were not read")
    if not links:
        return Check("nvmetcli-unit", title, OK, "nvmetcli's nvmet.service is not enabled")
    if inv.system.nvmetcli_unit_masked:
        return Check("nvmetcli-unit", title, OK, "nvmetcli's nvmet.service is masked", items=[
            {"link": x} for x in links])
    return Check("nvmetcli-unit", title, WARN,
                 f"nvmetcli's nvmet.service is enabled ({', '.join(links)}): it restores the "
                 f"saved file after clearing the whole target and nvmetcli drops p2pmem and "
                 f"buffered_io; nvmet-p2p.service conflicts with it (systemd starts one of the two)",
                 "systemctl disable nvmet.service (nvmet-p2p.service restores the same file with "
                 "p2pmem), or systemctl mask nvmet.service", items=[{"link": x} for x in links])


def check_iommu(inv: Inventory) -> Check:
    title = "IOMMU"
    s = inv.system
    if not s.iommu:
        groups = " (iommu_groups exist: a VM's or firmware IOMMU?)" if s.iommu_groups else ""
        return Check("iommu", title, OK, f"no IOMMU driver active{groups}: Linux leaves ACS alone")
    pt = " in passthrough mode (iommu=pt)" if "iommu=pt" in s.cmdline else ""
    return Check("iommu", title, OK,
                 f"an IOMMU is active{pt}: Linux sets ACS RR/CR on ACS-capable ports, which "
                 f"turns switch paths into root-complex paths (see the ACS path check)")


def _pair_reason(v) -> str:
    """The short 'why' of a verdict: ACS devices and host-bridge refusals, not the topology."""
    parts = []
    if v.acs_redirect:
        parts.append(f"ACS redirect is set on {', '.join(v.acs_redirect)}")
    for c in (v.host_bridge_check or {}).get("checks", []):
        if not c.get("ok") and c.get("why"):
            parts.append(c["why"])
    if not parts and v.reasons:
        parts.append(v.reasons[-1])
    return "; ".join(_uniq(parts)) or "not supported"


def check_paths(inv: Inventory, kernel: str | None) -> Check:
    """Every published provider x every PCI RDMA NIC, as the kernel would judge them."""
    title = "p2p paths provider <-> RDMA NIC (ACS, host bridge)"
    provs = inv.providers()
    nics = sorted((r for r in inv.rdma.values() if r.pci and not r.soft), key=lambda r: r.name)
    if not provs or not nics:
        why = "no published provider" if not provs else "no PCI RDMA device"
        return Check("paths", title, SKIP, f"nothing to check: {why}")
    engine = D.P2pdma(inv, kernel)
    items, verdicts, acs_devs, uncertain = [], [], [], []
    for f in provs:
        for r in nics:
            v = engine.pair(f.bdf, r.name)
            verdicts.append(v)
            items.append({"provider": f.bdf, "client": r.name, "client_bdf": r.pci,
                          "map_type": v.map_type, "distance": v.distance,
                          "acs_redirect": list(v.acs_redirect),
                          "kernel_parameter": v.kernel_parameter,
                          "reasons": list(v.reasons), "uncertain": list(v.uncertain)})
            acs_devs.extend(v.acs_redirect)
            uncertain.extend(v.uncertain)
    return _paths_verdict(title, items, verdicts[0], _acs_parameter(items, acs_devs), uncertain)


def _acs_parameter(items: list[dict], acs_devs: list[str]) -> str | None:
    """One pair: the kernel's exact string. Several: the union (sorted), which clears them all;
    each pair's own string is in its item."""
    params = _uniq(i["kernel_parameter"] for i in items if i["kernel_parameter"])
    if len(params) == 1:
        return params[0]
    if acs_devs:
        return "pci=disable_acs_redir=" + ";".join(sorted(set(acs_devs)))
    return None


def _paths_verdict(title: str, items: list[dict], first: D.PairVerdict, acs_param: str | None,
                   uncertain: list[str]) -> Check:
    """The check from the pairs: all refused, ACS redirect, none below a switch, unknown ACS
    states, else ok (``first``: the first pair's verdict, whose reason a refusal names)."""
    n = len(items)
    bus = [i for i in items if i["map_type"] == MapType.BUS_ADDR]
    thru = [i for i in items if i["map_type"] == MapType.THRU_HOST_BRIDGE]
    refused = n - len(bus) - len(thru)
    counts = (f"{len(bus)} map by PCI bus address, {len(thru)} go through the root complex, "
              f"{refused} refused")
    if not bus and not thru:
        fix = ("put the RDMA NIC and a CMB NVMe under one PCIe switch, or use a root complex the "
               "kernel whitelists (or an AMD Zen CPU)")
        if acs_param:
            fix = (f"clear ACS redirect at boot with {acs_param} (quote it in the bootloader; "
                   f"the devices behind those ports then share an IOMMU group)")
        return Check("paths", title, FAIL,
                     f"the kernel would refuse all {n} provider<->NIC pair(s): "
                     f"{_pair_reason(first)}", fix, items=items)
    if acs_param:
        hit = sum(1 for i in items if i["acs_redirect"])
        return Check("paths", title, WARN,
                     f"ACS redirect affects {hit} of {n} provider<->NIC pair(s) ({counts})",
                     f"boot with {acs_param} (quote it in the bootloader; devices behind those "
                     f"ports then share an IOMMU group)", items=items)
    if not bus:
        return Check("paths", title, WARN,
                     f"no provider shares a PCIe switch with an RDMA NIC ({counts} of {n} pairs)",
                     "for the best path put the NIC and a CMB NVMe under one PCIe switch",
                     items=items)
    if uncertain:
        return Check("paths", title, WARN,
                     f"{counts} of {n} pairs, but some ACS states are unknown: {uncertain[0]}",
                     "run as root so that ACS control words can be read", items=items)
    best = [f"{i['provider']}<->{i['client']}" for i in bus]
    return Check("paths", title, OK,
                 f"{counts} of {n} provider<->NIC pairs "
                 f"(bus address: {', '.join(best[:4])}{' ...' if len(best) > 4 else ''})",
                 items=items)


def _uniq(seq):
    return list(dict.fromkeys(seq))


def _nat(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def diagnose(inv: Inventory, kernel: str | None = None) -> Report:
    """Run every check on ``inv``; ``kernel`` ("X.Y") overrides the inventory's release."""
    checks = [
        check_kernel(inv, kernel),
        check_p2pdma(inv),
        check_configfs(inv),
        check_module(inv, "nvmet", "CONFIG_NVME_TARGET", "it is the NVMe-oF target"),
        check_module(inv, "nvmet_rdma", "CONFIG_NVME_TARGET_RDMA",
                     "only the RDMA transport uses p2pmem"),
        check_providers(inv),
        check_cmb_registered(inv),
        check_cmb_sqes(inv),
        check_namespaces(inv),
        check_in_use(inv),
        check_multipath(inv),
        check_rdma(inv),
        check_addresses(inv),
        check_iommu(inv),
        check_config_space(inv),
        check_nvmetcli_unit(inv),
        check_paths(inv, kernel),
    ]
    hard = [r for r in inv.rdma.values() if r.pci and not r.soft]
    emulated = next((r.emulated for r in hard if r.emulated), None) \
        if hard and all(r.emulated for r in hard) else None
    return Report(checks=checks, source=inv.source, kernel=kernel or inv.system.kernel_release,
                  emulated=emulated)


__all__ = ["Check", "Report", "diagnose", "OK", "WARN", "FAIL", "SKIP"]
