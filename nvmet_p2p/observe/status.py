"""``nvmet-p2p status``: the target as it runs, and whether each host connection gets p2p.

For every subsystem (by default the ones nvmet-p2p manages, when that record exists) and each
of its namespaces: the configured provider (``p2pmem`` read back), ``enable``, the ports the
subsystem is linked to (with the RDMA device behind each RDMA port), the host controllers the
kernel created, and a verdict per namespace × controller from :mod:`nvmet_p2p.observe.evidence`.

Sources, all below an injectable root:

* the nvmet configfs tree (``sys/kernel/config/nvmet``);
* the inventory (p2pmem pools, RDMA devices and whether they are soft, netdev addresses,
  the PCI function behind each namespace's block device);
* the kernel log (:class:`nvmet_p2p.kmsg.KernelLog`: ``/dev/kmsg``, or ``dmesg``);
* nvmet's debugfs (``sys/kernel/debug/nvmet/<nqn>/ctrl<N>/{port,hostnqn,state}``) when the
  kernel has ``CONFIG_NVME_TARGET_DEBUGFS`` — the only place that says which controllers are
  alive *now* and through which port; without it, controllers come from the log and their
  port is inferred (see :func:`nvmet_p2p.observe.evidence.decide`);
* ``p2pmem/available`` sampled over a window (``sample_seconds``) or continuously
  (``--watch``).
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field

from nvmet_p2p import paths
from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.kernel import BDF_ANYCASE_RE, PciInstance, is_bdf, monotonic_now, read_pci_instance
from nvmet_p2p.kmsg import KernelLog
from nvmet_p2p.nvmet import bindings, saved
from nvmet_p2p.nvmet.apply import ManagedStore
from nvmet_p2p.nvmet.configfs import Configfs, read_state
from nvmet_p2p.nvmet.degraded import DegradedStore, for_object
from nvmet_p2p.nvmet.journal import boot_id
from nvmet_p2p.nvmet.state import Host, Namespace, Port, Subsystem, TargetState
from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.output import safe_lines, table
from nvmet_p2p.pci import distance as dist
from nvmet_p2p.pci import inventory as pci_inventory
from nvmet_p2p.pci.doctor import OK, SKIP, WARN, Check
from nvmet_p2p.pci.inventory import block_device_name
from nvmet_p2p.pci.model import Inventory, RdmaDevice
from nvmet_p2p.pci.p2pdma_rules import MapType

SCHEMA = "nvmet-p2p/status"
SCHEMA_VERSION = 1
NVMET = "sys/kernel/config/nvmet"
DEBUGFS = "sys/kernel/debug/nvmet"


def _read(path: str) -> str | None:
    """A sysfs/debugfs file's text, stripped; ``None`` when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


# --------------------------------------------------------------------------------------
# Readers (edges). The configfs tree and the inventory come from their own modules once
# those are on main; the small fallbacks below read only what status needs.
# --------------------------------------------------------------------------------------

class _Every(dict):
    """A mapping that has every key, each mapped to the same template object: ``read_state``'s
    ``only`` for "these attributes of every object, whatever its name"."""

    def __init__(self, template):
        super().__init__()
        self.template = template

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key):
        return self.template

    def get(self, key, default=None):
        return self.template


#: the attributes status reads (every object is listed; only these files are read): each
#: namespace's device and p2pmem (``enable`` is always read), whether a subsystem allows any
#: host, each port's transport and address. 3 reads per namespace instead of 9 reads and 9 stats.
NEEDS = TargetState(
    hosts=_Every(Host(nqn="", attrs={})),
    subsystems=_Every(Subsystem(nqn="", attrs={"attr_allow_any_host": ""},
                                namespaces=_Every(Namespace(nsid=0, enable=False,
                                                            attrs={"device_path": "", "p2pmem": "",
                                                                   "ana_grpid": ""})))),
    ports=_Every(Port(portid=0, attrs={"addr_trtype": "", "addr_traddr": "", "addr_trsvcid": ""})))


def read_target(root: str = "/") -> TargetState:
    """The live nvmet tree as a :class:`TargetState` (the nvmet developer's reader), limited to
    the attributes status uses (:data:`NEEDS`)."""
    return read_state(Configfs(root), only=NEEDS)


def read_inventory(root: str = "/") -> Inventory:
    """The machine's inventory (the inventory developer's readers). Interface addresses only
    serve to find the RDMA device behind a port's address: on a live system whose nvmet tree
    has no port with an address they are not read (that read imports pyroute2, 0.5 s on a
    host, seconds under TCG), so ``status`` of an empty target does not pay for it."""
    if pci_inventory.SysRoot(root).live and not _ports_with_addresses(root):
        return pci_inventory.read_inventory(root, netlink=dict)
    return pci_inventory.read_inventory(root)


def _ports_with_addresses(root: str) -> bool:
    ports = os.path.join(root, NVMET, "ports")
    try:
        names = os.listdir(ports)
    except OSError:
        return False
    for name in names:
        try:
            with open(os.path.join(ports, name, "addr_traddr")) as f:
                if f.read().strip():
                    return True
        except OSError:
            continue
    return False


def read_debugfs_controllers(root: str = "/") -> dict[str, dict[int, dict]] | None:
    """``{subsysnqn: {cntlid: {"port": int, "hostnqn": str, "state": str, ...}}}`` from nvmet's
    debugfs, or ``None`` when the kernel has none (Debian: CONFIG_NVME_TARGET_DEBUGFS unset)."""
    base = os.path.join(root, DEBUGFS)
    if not os.path.isdir(base):
        return None
    out: dict[str, dict[int, dict]] = {}
    for nqn in os.listdir(base):
        d = os.path.join(base, nqn)
        if not os.path.isdir(d):
            continue
        for c in os.listdir(d):
            if not (c.startswith("ctrl") and c[4:].isdigit()):
                continue
            cd = os.path.join(d, c)
            info = {k: _read(os.path.join(cd, k)) for k in ("port", "hostnqn", "state", "host_traddr", "kato")}
            if info.get("port") and info["port"].isdigit():
                info["port"] = int(info["port"])
            out.setdefault(nqn, {})[int(c[4:])] = info
    return out


def managed_subsystems(state_dir: str) -> set[str] | None:
    """NQNs nvmet-p2p manages (``<state dir>/managed.json`` of the reconciler), or None when
    there is no such record. A record that cannot be read -- or a state directory that is not
    safe to use -- raises :class:`~nvmet_p2p.errors.NvmetP2PError` (it is not the same as no
    record)."""
    store = ManagedStore(state_dir)
    if not store.exists():
        return None
    return set(store.load().subsystems)


# --------------------------------------------------------------------------------------
# Pure assembly
# --------------------------------------------------------------------------------------

def port_facts(port: Port, inv: Inventory) -> ev.PortFacts:
    """Which RDMA device serves an RDMA port's address, and is it soft."""
    a = port.attrs
    pf = ev.PortFacts(portid=port.portid, trtype=a.get("addr_trtype", ""), traddr=a.get("addr_traddr", ""))
    if pf.trtype != "rdma":
        return pf
    ibdevs = rdma_devices_for_address(pf.traddr, inv)
    if len(ibdevs) == 1:
        d = ibdevs[0]
        pf.rdma_device, pf.rdma_pci, pf.rdma_driver = d.name, d.pci, d.driver
        pf.rdma_soft = bool(d.soft or d.pci is None)
        pf.rdma_emulated = emulated_nic(d)
    elif ibdevs and all(d.soft or d.pci is None for d in ibdevs):
        pf.rdma_device = ",".join(d.name for d in ibdevs)
        pf.rdma_soft = True
    return pf


def emulated_nic(dev: RdmaDevice) -> str | None:
    """Words for an RDMA device the inventory recognised as an emulation (the lab's NIC: a
    soft-RoCE variant whose DMA device is a PCI NIC of the emulated machine), else None."""
    mark = getattr(dev, "emulated", None)
    if not mark:
        return None
    if isinstance(mark, str):
        return f"{dev.name}: {mark}"
    return (f"{dev.name} is the lab's emulated RDMA NIC (soft-RoCE variant on the PCI NIC {dev.pci}): "
            f"its DMA is done by CPU copies")


def rdma_devices_for_address(traddr: str, inv: Inventory) -> list[RdmaDevice]:
    """RDMA devices that can accept connections on ``traddr`` (every one for a wildcard)."""
    return inv.rdma_for_address(traddr)


def backing_pci(device_path: str, inv: Inventory, dev_names: dict[str, str] | None = None
                ) -> str | None:
    """PCI function behind a namespace's ``device_path``; ``dev_names`` maps paths such as
    ``/dev/disk/by-id/...`` to block device names (read at the edge, see :func:`collect`)."""
    name = (dev_names or {}).get(device_path) or os.path.basename(device_path or "")
    ns = inv.namespaces.get(name)
    return ns.pci if ns else None


def distance_facts(provider: str, client: str | list[str], inv: Inventory,
                   kernel: str | None = None) -> ev.DistanceFacts | None:
    """The distance module's verdict for provider -> client(s), or None when it cannot say
    (an inventory without the PCI tree, an unknown device). Anything else the engine raises
    is a bug and propagates: it must never read as "cannot say"."""
    clients = [client] if isinstance(client, str) else list(client)
    try:
        r = dist.distance_many(inv, provider, clients, kernel)
    except InputError:
        return None
    return ev.DistanceFacts(map_type=r.map_type, reasons=list(r.reasons), kernel_parameter=r.kernel_parameter,
                            distance=r.distance)


@dataclass
class HostControllerHint:
    """What an initiator on the same run knows about its own connection (from ``bench``)."""

    subsystem: str
    cntlid: int
    transport: str
    traddr: str = ""
    trsvcid: str = ""
    hostnqn: str = ""


@dataclass
class StatusReport:
    kernel: str = ""
    time: float = 0.0
    log: dict = field(default_factory=dict)
    debugfs: bool = False
    providers: dict = field(default_factory=dict)
    subsystems: list = field(default_factory=list)
    refusals: list = field(default_factory=list)     # enable-time refusals from the log
    notes: list = field(default_factory=list)
    degraded_ports: list = field(default_factory=list)   # ports the watcher saw lose their NIC/address
    sampling: dict | None = None
    ana: list = field(default_factory=list)      # per port and ANA group: state, namespaces
    #: the live target against the saved file the boot unit restores (nvmet_p2p.nvmet.saved)
    saved_config: dict | None = None

    def verdicts(self) -> list[ev.Verdict]:
        return [v for s in self.subsystems for n in s["namespaces"] for v in n["_verdicts"]]

    def to_dict(self) -> dict:
        subs = []
        for s in self.subsystems:
            s2 = {k: v for k, v in s.items()}
            s2["namespaces"] = [{k: v for k, v in n.items() if k != "_verdicts"} | {
                "verdicts": [v.to_dict() for v in n["_verdicts"]]} for n in s["namespaces"]]
            subs.append(s2)
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kernel": self.kernel,
                "time": self.time, "log": self.log, "debugfs": self.debugfs,
                "sampling": self.sampling, "providers": self.providers, "subsystems": subs,
                "refusals": self.refusals, "notes": self.notes, "degraded_ports": self.degraded_ports,
                "ana": self.ana, "saved_config": self.saved_config}


def assemble(state: TargetState, inv: Inventory, events: list[ev.LogEvent], *,
             debugfs: dict | None = None, pools: dict[str, ev.PoolStats] | None = None,
             io_during_sampling: bool = False, only: set[str] | None = None,
             hints: list[HostControllerHint] | None = None, kernel: str | None = None,
             log_info: dict | None = None, dev_names: dict[str, str] | None = None,
             degraded: dict | None = None, instances: dict | None = None,
             bindings: dict[str, ev.BindingFacts] | None = None) -> StatusReport:
    """Pure: configfs state + inventory + log events (+ pools) -> report with verdicts.
    ``dev_names``: ``device_path`` -> block device name for paths that are links;
    ``degraded``: the state directory's record of what was lost (:mod:`nvmet_p2p.nvmet.degraded`);
    ``instances``: BDF -> :class:`nvmet_p2p.kernel.PciInstance`, the device at each provider
    BDF *now* (default: presence as the inventory saw it); ``bindings``: namespace key ->
    :class:`~nvmet_p2p.observe.evidence.BindingFacts`, which device nvmet-p2p bound it to."""
    rep = StatusReport(kernel=kernel or inv.system.kernel_release, time=time.time(),
                       log=dict(log_info or {}), debugfs=debugfs is not None)
    pools = pools or {}
    if instances is None:
        instances = _instances_from_inventory(state, inv, events)
    pf = ev.provider_facts(events, instances, log_complete=(log_info or {}).get("complete", True))
    rep.providers = _provider_rows(inv, pools, pf)
    ports_of, port_by_id = _ports_by_subsystem(state, inv)
    ctrls, late = ev._partition(events)
    ctx = _Context(state=state, inv=inv, ctrls=ctrls, debugfs=debugfs,
                   hints=hints or [], port_by_id=port_by_id, pools=pools, providers=rep.providers,
                   io_during_sampling=io_during_sampling, kernel=kernel, dev_names=dev_names,
                   degraded=degraded, late=late, provider_facts=pf, bindings=bindings or {})
    for e in late:
        if e.kind == ev.KIND_P2P_MAPPED and e.nsid is not None:
            ctx.late_by_nsid.setdefault(e.nsid, []).append(e)
    for nqn, sub in sorted(state.subsystems.items()):
        if only is None or nqn in only:
            rep.subsystems.append(_subsystem_row(ctx, nqn, sub, ports_of.get(nqn, [])))
    rep.ana = ana_rows(state, rep.subsystems)
    rep.refusals = [e.to_dict() for e in events if e.kind in (ev.KIND_NO_P2P_FOR_NS, ev.KIND_NOT_BDEV,
                                                              ev.KIND_DRIVER_NO_P2P)]
    if debugfs is None:
        rep.notes.append("controllers come from the kernel log ('Created nvm controller' lines; "
                         "superseded ids dropped); without nvmet debugfs it cannot say which are still "
                         "connected nor, when a subsystem has several ports, through which port "
                         "(unless the kernel's own lines name the NIC)")
    if log_info and not log_info.get("complete", True):
        rep.notes.append("the kernel log no longer reaches back to boot: controllers created "
                         "earlier are missing from it")
    return rep


def _instances_from_inventory(state: TargetState, inv: Inventory, events: list[ev.LogEvent]) -> dict:
    """Presence of every provider BDF the target or the log names, as the inventory saw it
    (when the caller read no device identities)."""
    out = {}
    for bdf in provider_bdfs(state, events) | {f.bdf for f in inv.providers(published_only=False)}:
        f = inv.pci.get(bdf)
        out[bdf] = PciInstance(bdf, f is not None or not inv.pci,
                               published=f.p2pmem.published if f and f.p2pmem else None)
    return out


def provider_bdfs(state: TargetState, events: list[ev.LogEvent]) -> set[str]:
    """Every BDF a namespace's ``p2pmem`` or a ``using p2pmem``/``added`` line names."""
    out = {e.provider for e in events if e.provider and e.kind in (ev.KIND_P2P_MAPPED, ev.KIND_PROVIDER_ADDED)
           and is_bdf(e.provider)}
    for sub in state.subsystems.values():
        for ns in sub.namespaces.values():
            v = ns.attrs.get("p2pmem", "").strip().lower()
            if is_bdf(v):
                out.add(v)
    return out


@dataclass
class _Context:
    """What every subsystem's rows are decided from (the inputs of :func:`assemble`)."""

    state: TargetState
    inv: Inventory
    ctrls: list
    debugfs: dict | None
    hints: list
    port_by_id: dict
    pools: dict
    providers: dict
    io_during_sampling: bool
    kernel: str | None
    dev_names: dict | None
    degraded: dict | None
    late: list = field(default_factory=list)              # log lines no connect claims
    late_by_nsid: dict = field(default_factory=dict)      # their mapping lines by nsid
    provider_facts: dict = field(default_factory=dict)    # BDF -> ev.ProviderFacts
    bindings: dict = field(default_factory=dict)          # "<nqn>/<nsid>" -> ev.BindingFacts


def _provider_rows(inv: Inventory, pools: dict[str, ev.PoolStats],
                   pf: dict[str, ev.ProviderFacts] | None = None) -> dict[str, dict]:
    """Every PCI function with a p2pmem pool: its size, what is available, whether it is
    published, whether it is still on the bus and which device it is (when read), and the
    sampled statistics when the pools were sampled."""
    rows = {}
    pf = pf or {}
    for f in sorted(inv.pci.values(), key=lambda f: f.bdf):
        if f.p2pmem is None:
            continue
        st = pools.get(f.bdf)
        facts = pf.get(f.bdf)
        rows[f.bdf] = {"size": f.p2pmem.size, "available": f.p2pmem.available,
                       "published": f.p2pmem.published, "sampled": st.to_dict() if st else None,
                       "present": facts.present if facts else True,
                       "device": facts.to_dict() if facts else None}
    return rows


def _ports_by_subsystem(state: TargetState, inv: Inventory):
    """The port facts each subsystem is linked into, and every port's facts by port id."""
    ports_of: dict[str, list[ev.PortFacts]] = {}
    port_by_id: dict[int, ev.PortFacts] = {}
    for p in sorted(state.ports.values(), key=lambda p: p.portid):
        pf = port_facts(p, inv)
        port_by_id[p.portid] = pf
        for nqn in p.subsystems:
            ports_of.setdefault(nqn, []).append(pf)
    return ports_of, port_by_id


def _subsystem_row(ctx: _Context, nqn: str, sub, sports: list) -> dict:
    """One subsystem: its ports, its host controllers (and the port each came in through, where
    that can be told) and its namespaces with one offload verdict per controller."""
    live = (ctx.debugfs or {}).get(nqn) if ctx.debugfs is not None else None
    cands = [c for c in ctx.ctrls if c.subsystem == nqn and c.ctrl_type == "nvm" and not c.superseded]
    if live is not None:
        cands = [c for c in cands if c.cntlid in live]
    hinted = {h.cntlid: h for h in ctx.hints if h.subsystem == nqn}
    if ctx.hints and hinted:
        cands = [c for c in cands if c.cntlid in hinted] or cands
    ctrl_rows, ctrl_port = [], {}
    for c in cands:
        port, source = _controller_port(ctx, c, live, hinted, sports)
        ctrl_port[c.cntlid] = (port, source)
        row = c.to_dict()
        row["port"] = port.portid if port else None
        row["port_source"] = source if port else None
        row["live"] = (c.cntlid in live) if live is not None else None
        if live is not None and c.cntlid in live:
            row["state"] = live[c.cntlid].get("state")
        ctrl_rows.append(row)
    ns_rows = [_namespace_row(ctx, nqn, nsid, ns, cands, ctrl_port, sports)
               for nsid, ns in sorted(sub.namespaces.items())]
    return {"nqn": nqn, "allow_any_host": sub.attrs.get("attr_allow_any_host") == "1",
            "allowed_hosts": list(sub.allowed_hosts),
            "ports": [_port_dict(p, ctx.state) for p in sports],
            "controllers": ctrl_rows, "namespaces": ns_rows}


def _controller_port(ctx: _Context, c, live: dict | None, hinted: dict, sports: list):
    """The port a host controller came in through, and how that is known: nvmet debugfs says
    it; else the host's hint (transport, address, service id) when exactly one port matches;
    else the only port; else the kernel's own lines at its connect: a refusal names the NIC
    (the pci-p2pdma warning is printed on the NIC's PCI function, the auto-mode line names
    its RDMA device), or a mapping to a provider only one port's NIC can reach."""
    if live is not None and isinstance(live.get(c.cntlid, {}).get("port"), int):
        return ctx.port_by_id.get(live[c.cntlid]["port"]), "nvmet debugfs"
    if c.cntlid in hinted:
        h = hinted[c.cntlid]
        m = [p for p in sports if p.trtype == h.transport and
             (h.transport == "loop" or (p.traddr == h.traddr and (not h.trsvcid or
                                                                 str(h.trsvcid) == _svc(ctx.state, p.portid))))]
        return (m[0], "the host's connection") if len(m) == 1 else (None, None)
    if len(sports) == 1:
        return sports[0], "the subsystem's only port"
    for r in c.refusals:
        if not r.client:
            continue
        m = [p for p in sports if p.trtype == "rdma" and r.client in (p.rdma_pci, p.rdma_device)]
        if len(m) == 1:
            return m[0], f"the kernel's refusal at connect names {r.client}"
    if c.mappings:
        reach = [p for p in sports if p.trtype == "rdma" and p.rdma_pci and not p.rdma_soft and all(
            _reaches(ctx, prov, p.rdma_pci) for prov in c.mappings.values())]
        rdma_pci = [p for p in sports if p.trtype == "rdma" and p.rdma_pci and not p.rdma_soft]
        if len(reach) == 1 and len(rdma_pci) == len([p for p in sports if p.trtype == "rdma"]):
            return reach[0], (f"its mapping to {', '.join(sorted(set(c.mappings.values())))}: the only "
                              f"port whose NIC reaches it")
    return None, None


def _reaches(ctx: _Context, provider: str, nic: str) -> bool:
    d = distance_facts(provider, nic, ctx.inv, ctx.kernel)
    return d is None or d.map_type != MapType.NOT_SUPPORTED


def _namespace_row(ctx: _Context, nqn: str, nsid: int, ns, cands: list, ctrl_port: dict,
                   sports: list) -> dict:
    """One namespace: its device, p2pmem mode and provider, what it lost, and the offload verdict
    for each host controller (one verdict without a controller when none is known). What it
    lost (the OFFLOAD LOST line) and the verdicts come from the same facts, so they agree."""
    p2p = ns.attrs.get("p2pmem", "").strip().lower() if _is_bdf_like(ns.attrs.get("p2pmem", "")) \
        else ns.attrs.get("p2pmem", "")
    dev = ns.attrs.get("device_path", "")
    obj = f"namespace {nqn}/{nsid}"
    recorded = _recorded_loss(obj, ctx.degraded)
    binding = ctx.bindings.get(f"{nqn}/{nsid}")
    loss = ev.namespace_loss(p2p, ctx.provider_facts.get(p2p), binding, recorded)
    verdicts = []
    for c in cands or [None]:
        port, source = ctrl_port.get(c.cntlid, (None, None)) if c else (None, None)
        nic = next((p.rdma_pci for p in ([port] if port else sports) if p and p.rdma_pci), None)

        def unreachable(bdf, nic_=nic if port else None):
            return bool(nic_) and not _reaches(ctx, bdf, nic_)

        mapping = ev.effective_mapping(c, nsid, ctx.late_by_nsid.get(nsid, []), p2p, unreachable) if c else None
        judged = (mapping.provider if mapping else None) or (p2p if p2p not in ("0", "1", "") else None)
        dist = distance_facts(judged, nic, ctx.inv, ctx.kernel) if judged and nic else None
        v = ev.decide(subsystem=nqn, nsid=nsid, ns_enabled=ns.enable, p2pmem=p2p,
                      ports=sports, ctrl=c, port=port, distance=dist, pools=ctx.pools,
                      io_during_sampling=ctx.io_during_sampling, mapping=mapping,
                      providers=ctx.provider_facts, loss=loss, device_path=dev)
        v.port_source = source
        verdicts.append(v)
    grp = ns.attrs.get("ana_grpid", "")
    return {"nsid": nsid, "enabled": ns.enable, "device_path": dev, "p2pmem": p2p,
            "ana_grpid": int(grp) if grp.isdigit() else 1,
            "mode": "off" if p2p in ("0", "") else ("auto" if p2p == "1" else "pinned"),
            "backing_pci": backing_pci(dev, ctx.inv, ctx.dev_names),
            "provider": ctx.providers.get(p2p) if p2p not in ("0", "1", "") else None,
            "degraded": _degraded_rows(obj, loss, ctx.degraded),
            "_verdicts": verdicts}


def _is_bdf_like(v: str) -> bool:
    return bool(BDF_ANYCASE_RE.match((v or "").strip()))


def _recorded_loss(obj: str, degraded: dict | None) -> dict | None:
    """The watcher's ``offload-lost`` entry for ``obj`` as plain data (``since``, ``detail``,
    ``provider``), or None."""
    for e in for_object(degraded or {}, obj):
        if e.kind == "offload-lost":
            return {"since": e.since, "detail": e.detail, **e.facts}
    return None


def _degraded_rows(obj: str, loss: ev.OffloadLoss | None, degraded: dict | None) -> list[dict]:
    """What the record says this object lost, with its ``offload-lost`` entry replaced by the
    namespace's :func:`~nvmet_p2p.observe.evidence.namespace_loss` (the same facts the verdicts
    use): a record a later ``p2pmem`` write made stale is dropped, and a loss the record does
    not know (a pinned provider not on the bus, a device replaced since nvmet-p2p wrote
    ``p2pmem``) is shown."""
    rows = [e.to_dict() for e in for_object(degraded or {}, obj) if e.kind != "offload-lost"]
    if loss is None:
        return rows
    rec = next((e for e in for_object(degraded or {}, obj) if e.kind == "offload-lost"), None)
    if loss.source == "watch" and rec is not None:
        row = rec.to_dict()
    else:
        since = rec.since if rec is not None else loss.since
        row = {"object": obj, "kind": "offload-lost", "since": since,
               "since_text": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "unknown",
               "detail": loss.detail, "source": loss.source, "provider": loss.provider}
    row["reason"] = loss.reason
    return rows + [row]


def ana_rows(state: TargetState, subsystems: list[dict]) -> list[dict]:
    """Per port of the shown subsystems and per ANA group on it (or named by one of their
    namespaces): the state hosts connected through that port see, and the shown namespaces in
    the group. A group a port has no directory for is reported ``inaccessible`` by the kernel
    (docs/multipath.md#what-nvmet-offers)."""
    members: dict[int, list[str]] = {}
    ports: set[int] = set()
    for sub in subsystems:
        ports |= {p["portid"] for p in sub["ports"]}
        for ns in sub["namespaces"]:
            members.setdefault(ns.get("ana_grpid") or 1, []).append(f"{sub['nqn']}/{ns['nsid']}")
    rows = []
    for pid in sorted(ports):
        groups = dict(state.ports[pid].ana_groups) if pid in state.ports else {}
        groups.setdefault(1, "optimized")
        for g in sorted(set(groups) | set(members)):
            rows.append({"port": pid, "grpid": g,
                         "state": groups.get(g, "inaccessible"),
                         "directory": g in groups, "namespaces": members.get(g, [])})
    return rows


def _svc(state: TargetState, portid: int) -> str:
    return state.ports[portid].attrs.get("addr_trsvcid", "") if portid in state.ports else ""


def _port_dict(p: ev.PortFacts, state: TargetState) -> dict:
    groups = state.ports[p.portid].ana_groups if p.portid in state.ports else {}
    return {"portid": p.portid, "trtype": p.trtype, "traddr": p.traddr,
            "trsvcid": _svc(state, p.portid), "rdma_device": p.rdma_device,
            "rdma_soft": p.rdma_soft, "rdma_pci": p.rdma_pci, "rdma_emulated": p.rdma_emulated,
            "ana_groups": {str(g): st for g, st in sorted(groups.items())}}


# --------------------------------------------------------------------------------------
# Collect (edges + assemble)
# --------------------------------------------------------------------------------------

def pool_providers(root: str = "/") -> list[str]:
    """Every PCI function with a p2pmem pool (``/sys/bus/pci/devices/*/p2pmem``): what the
    sampler reads, found without the full inventory."""
    return sorted(os.path.basename(os.path.dirname(p))
                  for p in glob.glob(os.path.join(root, "sys/bus/pci/devices/*/p2pmem")))


def read_log(root: str = "/") -> tuple[list, dict]:
    """All kernel-log records the ring buffer still holds, and a summary of the source."""
    log = KernelLog(root=root)
    try:
        recs = log.records()
    except OSError as exc:
        return [], {"source": "none", "records": 0, "error": str(exc)}
    seqs = [r.seq for r in recs if r.seq is not None]
    info = {"source": "kmsg" if seqs else ("dmesg" if recs else "none"), "records": len(recs),
            "first_time": recs[0].time if recs else None,
            "complete": (min(seqs) == 0) if seqs else (bool(recs) and recs[0].time == 0.0)}
    return recs, info


def collect(root: str = "/", *, sample_seconds: float = 0.0, interval: float = 0.1,
            io_during_sampling: bool = False, io_size: int | None = None, all_subsystems: bool = False,
            sampler: ev.PoolSampler | None = None, hints: list[HostControllerHint] | None = None,
            kernel: str | None = None, inventory: Inventory | None = None,
            log_records: list | None = None, state_dir: str | None = None,
            save_file: str | None = None) -> StatusReport:
    """Read everything and decide. ``sampler``: an already running/finished sampler whose
    statistics to use (``bench`` samples around each fio run). With ``sample_seconds`` the
    pools are sampled first, in this thread, and the inventory is read afterwards (on a slow
    machine reading it takes seconds: the window must neither start late nor compete with it)."""
    inv, pools, sampling = _pools_and_inventory(root, sample_seconds, interval, io_during_sampling,
                                                io_size, sampler, inventory)
    state = read_target(root)
    if log_records is None:
        log_records, info = read_log(root)
    else:
        info = {"source": "given", "records": len(log_records), "complete": True}
    notes: list[str] = []
    state_dir = paths.state_dir(root, state_dir)
    only = None if all_subsystems else _managed_only(state_dir, notes)
    store = DegradedStore(state_dir)
    degraded = store.load()
    if store.warning:
        notes.append(store.warning)
    events = ev.parse_log(log_records)
    rep = assemble(state, inv, events, debugfs=read_debugfs_controllers(root),
                   pools=pools, io_during_sampling=io_during_sampling, only=only, hints=hints,
                   kernel=kernel, log_info=info, dev_names=_device_names(root, state),
                   degraded=degraded, instances=read_instances(root, state, events, inv),
                   bindings=read_bindings(root, state_dir))
    rep.degraded_ports = [e.to_dict() for (o, _k), e in sorted(degraded.items()) if o.startswith("port ")]
    rep.sampling = sampling
    rep.notes = notes + rep.notes
    if not os.path.isdir(os.path.join(root, NVMET)):
        rep.notes.insert(0, f"no nvmet configfs tree at {os.path.join(root, NVMET)} "
                            "(modprobe nvmet; configfs mounted?)")
    else:
        rep.saved_config = saved_config(root, save_file).to_dict()
    return rep


def read_instances(root: str, state: TargetState, events: list[ev.LogEvent], inv: Inventory) -> dict:
    """The device at every provider BDF the target, the log or the inventory names, read now
    (:func:`nvmet_p2p.kernel.read_pci_instance`: presence, birth, serial): a few small sysfs
    files each, so ``status --watch`` sees a removal or a replacement at every refresh even
    with the inventory it read at the start."""
    now = monotonic_now(root)
    bdfs = provider_bdfs(state, events) | {f.bdf for f in inv.providers(published_only=False)}
    return {b: read_pci_instance(root, b, now) for b in sorted(bdfs)}


def read_bindings(root: str, state_dir: str) -> dict[str, ev.BindingFacts]:
    """nvmet-p2p's record of the provider device each namespace was bound to, this boot
    (``state_dir``: resolved, :func:`nvmet_p2p.paths.state_dir`)."""
    out = {}
    for k, b in bindings.load(state_dir, boot_id(root)).items():
        out[k] = ev.BindingFacts(b.p2pmem, b.written, b.time, b.appeared, b.serial)
    return out


def saved_config(root: str, save_file: str | None = None):
    """The live tree under ``root`` against the saved file (``save_file``, else the default
    below ``root``): a :class:`nvmet_p2p.nvmet.saved.Drift`, never an exception for the file."""
    return saved.check_tree(Configfs(root), paths.save_file(root, save_file))


def saved_config_check(root: str, save_file: str | None = None):
    """``doctor``'s check of the saved configuration against the live target (a
    :class:`nvmet_p2p.pci.doctor.Check`): ok in sync, warn when a reboot would not restore what
    runs or the file cannot be read, skip without an nvmet tree."""
    title = "saved configuration (restored at boot)"
    if not os.path.isdir(os.path.join(root, NVMET)):
        return Check("saved-config", title, SKIP, "no nvmet configfs tree to compare")
    d = saved_config(root, save_file)
    if d.in_sync:
        return Check("saved-config", title, OK, d.summary())
    fix = ("nvmet-p2p save (or apply --save) writes the live target to it" if not d.error
           else f"fix or move away {d.file}, then nvmet-p2p save")
    return Check("saved-config", title, WARN, d.summary(), fix,
                 items=[{"line": line} for line in d.lines()])


def _pools_and_inventory(root, sample_seconds, interval, io_during_sampling, io_size, sampler,
                         inventory):
    """The inventory, the pools' statistics and the sampling window's facts: from ``sampler``
    when given, else sampled for ``sample_seconds`` *before* the inventory is read, else none."""
    if sampler is not None:
        inv = inventory or read_inventory(root)
        pools = sampler.stats
        sampling = {"seconds": (sampler.stopped or time.time()) - (sampler.started or time.time()),
                    "interval": sampler.interval, "io_running": io_during_sampling,
                    "io_size": next((s.io_size for s in pools.values() if s.io_size), None),
                    "restarted": dict(getattr(sampler, "restarts", {}))}
        return inv, pools, sampling
    if sample_seconds > 0:
        providers = ([f.bdf for f in inventory.providers(published_only=False)] if inventory
                     else pool_providers(root))
        s = ev.PoolSampler(providers, root=root, interval=interval, io_size=io_size)
        pools = s.run_for(sample_seconds)
        sampling = {"seconds": round(s.stopped - s.started, 3), "interval": interval,
                    "io_running": io_during_sampling, "io_size": io_size}
        return inventory or read_inventory(root), pools, sampling
    return inventory or read_inventory(root), None, None


def _managed_only(state_dir: str, notes: list[str]) -> set[str] | None:
    """The subsystems nvmet-p2p manages (what status shows by default); None, with a note
    saying why, when there is no readable record: then every subsystem is shown."""
    try:
        managed = managed_subsystems(state_dir)
    except NvmetP2PError as exc:
        notes.append(f"{exc}: showing every subsystem")
        return None
    if managed is None:
        notes.append("no record of subsystems managed by nvmet-p2p (managed.json in the "
                     "state directory): showing every subsystem")
    return managed


def _device_names(root: str, state: TargetState) -> dict[str, str]:
    """``device_path`` -> block device name, for paths that are links (a device shared by
    several namespaces is resolved once)."""
    names, seen = {}, set()
    for sub in state.subsystems.values():
        for ns in sub.namespaces.values():
            path = ns.attrs.get("device_path", "")
            if path in seen:
                continue
            seen.add(path)
            name = block_device_name(root, path)
            if name:
                names[path] = name
    return names


# --------------------------------------------------------------------------------------
# Human rendering
# --------------------------------------------------------------------------------------

def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1048576:.1f} MiB"


def _near_zero(s: dict) -> str:
    """``1.2 s (30%)`` of the window below the pool's near-zero mark, from a sampled dict."""
    if not s or not s.get("samples"):
        return "-"
    secs, pct = s.get("seconds_near_zero"), s.get("pct_near_zero")
    if pct is None:
        return f"{s.get('samples_near_zero', 0)} sample(s)"
    return f"{secs:.1f} s ({pct:.0f}%)"


def _render_providers(rep: StatusReport) -> list[str]:
    rows = []
    for bdf, p in rep.providers.items():
        s = p.get("sampled") or {}
        rows.append([bdf, _mib(p["size"]), _mib(p["available"]), "yes" if p["published"] else "no",
                     f"{_mib(s.get('min'))}..{_mib(s.get('max'))}" if s else "-",
                     ("yes" if s.get("moved") else "no") if s else "-",
                     _mib(s.get("max_in_use")) if s else "-", _near_zero(s)])
    out = ["p2pmem providers"]
    out += table(["provider", "size", "available", "published", "sampled min..max", "moved", "peak in use",
                  "near zero"], rows).split("\n")
    if rep.sampling:
        sm = rep.sampling
        out.append(f"sampled {sm['seconds']:.1f} s every {sm['interval']:g} s"
                   + (" while I/O ran" if sm.get("io_running") else "")
                   + "; near zero = available below the largest I/O"
                   + (f" ({ev.format_bytes(sm['io_size'])})" if sm.get("io_size") else
                      " (unknown: 1/64 of the pool, give --io-size)"))
    return out


def _render_ports(s: dict) -> list[str]:
    out = []
    for p in s["ports"]:
        extra = ""
        if p["trtype"] == "rdma":
            if not p["rdma_device"]:
                extra = " (RDMA device not known)"
            elif p["rdma_soft"]:
                extra = f" via {p['rdma_device']} (soft RDMA)"
            elif p["rdma_pci"]:
                extra = f" via {p['rdma_device']} (PCI {p['rdma_pci']}"
                extra += (", the lab's emulated NIC)" if p.get("rdma_emulated") else ")")
            else:
                extra = f" via {p['rdma_device']}"
        out.append(f"  port {p['portid']}: {p['trtype']} {p['traddr']}:{p['trsvcid']}{extra}")
    if not s["ports"]:
        out.append("  not linked to any port")
    return out


def _render_controllers(s: dict) -> list[str]:
    if not s["controllers"]:
        return ["  no host controllers in the kernel log"]
    out = []
    for c in s["controllers"]:
        live = "" if c["live"] is None else (" live" if c["live"] else " gone")
        port = f" port {c['port']}" if c["port"] is not None else ""
        if c["port"] is not None and c.get("port_source") not in (None, "the subsystem's only port"):
            port += f" ({c['port_source']})"
        maps = ", ".join(f"nsid {k} -> {v}" for k, v in c["mappings"].items()) or "no p2p mapping"
        out.append(f"  controller {c['cntlid']}{port}{live}: {c['hostnqn']} ({maps})")
    return out


def _render_verdicts(s: dict) -> list[str]:
    out = []
    emulated = set()
    for n in s["namespaces"]:
        for v in n["_verdicts"]:
            who = f"controller {v.cntlid}" if v.cntlid is not None else "no controller"
            out.append(f"  nsid {v.nsid} × {who}: {v.headline()}")
            for e in v.evidence:
                out.append(f"      {e}")
            if v.kernel_parameter:
                out.append(f"      kernel parameter that would fix it: {v.kernel_parameter}")
            if v.emulated:
                emulated.add(v.emulated)
    for e in sorted(emulated):
        out.append(f"  emulated: {e}")
    return out


_DEGRADED_TITLE = {"offload-lost": "OFFLOAD LOST", "re-placed": "RE-PLACED", "backing-lost": "BACKING DEVICE LOST",
                   "held-back": "HELD BACK", "port-lost": "PORT LOST ITS NIC/ADDRESS",
                   "rewrite-pending": "REWRITE PENDING"}


def render(rep: StatusReport) -> str:
    out = [f"note: {n}" for n in rep.notes]
    if rep.providers:
        out += _render_providers(rep)
    for s in rep.subsystems:
        out.append("")
        hosts = "any host" if s["allow_any_host"] else f"{len(s['allowed_hosts'])} allowed host(s)"
        out.append(f"subsystem {s['nqn']} ({hosts})")
        out += _render_ports(s)
        out += _render_controllers(s)
        rows = []
        for n in s["namespaces"]:
            prov = n["provider"]
            rows.append([n["nsid"], "yes" if n["enabled"] else "no", n["device_path"], n["p2pmem"],
                         f"{_mib(prov['available'])} of {_mib(prov['size'])}" if prov else "-"])
        out += table(["nsid", "enabled", "device", "p2pmem", "provider available"], rows).split("\n")
        for n in s["namespaces"]:
            for e in n.get("degraded", []):
                out.append(f"  nsid {n['nsid']}: {_DEGRADED_TITLE.get(e['kind'], e['kind'])} since "
                           f"{e['since_text']}: {e['detail']}")
        out += _render_verdicts(s)
    for e in rep.degraded_ports:
        out.append(f"{e['object']}: {_DEGRADED_TITLE.get(e['kind'], e['kind'])} since {e['since_text']}: "
                   f"{e['detail']}")
    if rep.refusals:
        out.append("")
        out.append("kernel refusals at namespace enable:")
        for r in rep.refusals:
            out.append(f"  {r['message']}")
    if not rep.subsystems:
        out.append("no subsystems")
    if rep.saved_config is not None:
        d = rep.saved_config
        out.append("")
        out.append(("saved configuration: " if d["in_sync"] else "SAVED CONFIGURATION DIFFERS: ")
                   + d["summary"])
        out += [f"  {line}" for line in d["lines"]]
    return safe_lines(out)
