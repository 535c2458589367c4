"""Offload evidence: what the kernel log and the p2pmem pools say about the data path.

The kernel never reports when nvmet falls back from peer-to-peer memory to system memory
(shared/docs/kernel.md §4.3, §6). What it does leave behind:

* at namespace enable, refusals (``no peer-to-peer memory is available for <dev>``, the
  pci-p2pdma distance warnings, ``not supported by the driver of ...``);
* at every host connect (one controller per host connection), one line
  ``nvmet: using p2pmem on <provider BDF> for nsid <n>`` per namespace that got a p2p
  mapping, printed *before* ``nvmet: Created nvm controller <cntlid> for subsystem <nqn> for
  NQN <hostnqn>.`` of the same controller (auto mode may print
  ``no peer-to-peer memory is available that's supported by <ibdev> and <dev>`` instead);
* while I/O runs, ``/sys/bus/pci/devices/<provider>/p2pmem/available`` drops for every
  in-flight request that got p2p memory. It is the only runtime signal.

This module is pure: it parses log *lines* (whatever reader produced them) and decides
verdicts from plain data. The :class:`PoolSampler` at the end is the one edge: it reads
``p2pmem/available`` below an injectable root.

Every wording of kernel.md §7 is accepted, old and new, including the proposed
ACS/HMAT series (§1.10) so a newer kernel does not silently defeat the parser.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from nvmet_p2p.defs import MapType

# --------------------------------------------------------------------------------------
# Log line parsing
# --------------------------------------------------------------------------------------

#: ``/dev/kmsg`` record: ``<prio>,<seq>,<usec>,<flags>[,...];<message>``
_KMSG_RE = re.compile(r"^(?P<prio>\d+),(?P<seq>\d+),(?P<usec>\d+),[^;]*;(?P<msg>.*)$")
#: ``dmesg`` (``[   12.345678] msg``), optionally with ``dmesg -r``'s ``<6>`` in front.
_DMESG_RE = re.compile(r"^(?:<(?P<prio>\d+)>)?\[\s*(?P<sec>\d+\.\d+)\]\s?(?P<msg>.*)$")
#: syslog/journal style ``kernel: msg`` (``journalctl -k`` without timestamps).
_JOURNAL_RE = re.compile(r"^(?:\S+\s+\d+\s+[\d:]+\s+\S+\s+)?kernel:\s(?P<msg>.*)$")

#: ``<driver> <BDF>: `` prefix of pci_warn/pci_info/dev_* messages, e.g. ``nvme 0000:06:00.0: ``
_DEV_PREFIX = r"(?:(?P<driver>[\w.-]+) )?(?P<dev>\S+): "


@dataclass
class LogEvent:
    """One kernel log line that means something for p2p.

    ``kind`` is one of the ``KIND_*`` names below; the remaining fields are filled when the
    line carries them. ``time`` is seconds since boot when the line had a timestamp,
    ``seq`` the /dev/kmsg sequence number when read from there, ``index`` the position in
    the parsed list (order is what correlation relies on).
    """

    kind: str
    message: str
    index: int = 0
    time: float | None = None
    seq: int | None = None
    provider: str | None = None      # provider BDF (or the value the user wrote)
    client: str | None = None        # client device (pci_warn prefix, ib device name)
    device: str | None = None        # namespace device path
    nsid: int | None = None
    cntlid: int | None = None
    ctrl_type: str | None = None     # "nvm" / "discovery"
    subsystem: str | None = None
    hostnqn: str | None = None
    kernel_parameter: str | None = None
    wording: str = "current"         # "current", "old" (<= 5.4), "proposed" (ACS/HMAT series)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


KIND_PROVIDER_ADDED = "provider_added"            # added peer-to-peer DMA memory
KIND_CMB_FAILED = "cmb_register_failed"           # failed to register the CMB
KIND_P2P_MAPPED = "p2pmem_mapped"                 # using p2pmem on X for nsid N
KIND_NO_P2P_FOR_CTRL = "no_p2pmem_for_ctrl"       # ... that's supported by A and B (connect)
KIND_NO_P2P_FOR_NS = "no_p2pmem_for_ns"           # ... available for DEV (enable, auto)
KIND_NOT_BDEV = "not_block_device"                # non-block device namespaces
KIND_DRIVER_NO_P2P = "driver_no_p2p"              # not supported by the driver of DEV
KIND_NO_COMMON_BRIDGE = "no_common_bridge"        # do not share an upstream bridge ...
KIND_ACS_REDIRECT = "acs_redirect"                # ACS redirect is set between ...
KIND_ACS_BLOCKS = "acs_blocks"                    # ACS blocks the direct P2P path (proposed)
KIND_ACS_PARAMETER = "acs_parameter"              # add the kernel parameter: pci=...
KIND_HOST_BRIDGE_NOT_WHITELISTED = "host_bridge_not_whitelisted"
KIND_NOT_PCI = "client_not_pci"                   # it is not a PCI device
KIND_VIRT_DMA = "client_virt_dma"                 # dma_virt_ops (5.0-5.10)
KIND_NO_SUCH_PROVIDER = "no_such_pci_device"      # configfs p2pmem write: No such PCI device
KIND_PROVIDER_WITHOUT_P2PMEM = "provider_without_p2pmem"  # PCI device has no peer-to-peer memory
KIND_CTRL_CREATED = "ctrl_created"                # Created nvm controller N ...
KIND_ACS_CONFIGURED = "acs_configured"            # boot-time ACS lines
KIND_ACS_PARAM_ERROR = "acs_parameter_unparsed"   # PCI: Can't parse ACS command line parameter

#: Kinds that mean "the kernel refused or downgraded a p2p path".
REFUSAL_KINDS = frozenset({
    KIND_NO_P2P_FOR_CTRL, KIND_NO_P2P_FOR_NS, KIND_NOT_BDEV, KIND_DRIVER_NO_P2P,
    KIND_NO_COMMON_BRIDGE, KIND_ACS_REDIRECT, KIND_ACS_BLOCKS, KIND_HOST_BRIDGE_NOT_WHITELISTED,
    KIND_NOT_PCI, KIND_VIRT_DMA, KIND_NO_SUCH_PROVIDER, KIND_PROVIDER_WITHOUT_P2PMEM,
})


def _rx(pattern: str) -> re.Pattern:
    return re.compile(pattern)


# (kind, regex, wording). Order matters where one wording contains another.
_RULES: list[tuple[str, re.Pattern, str]] = [
    (KIND_P2P_MAPPED, _rx(r"nvmet: using p2pmem on (?P<provider>\S+) for nsid (?P<nsid>\d+)"), "current"),
    (KIND_NO_P2P_FOR_CTRL, _rx(r"nvmet: no peer-to-peer memory is available that's supported by "
                               r"(?P<client>\S+) and (?P<device>\S+)"), "current"),
    (KIND_NO_P2P_FOR_NS, _rx(r"nvmet: no peer-to-peer memory is available for (?P<device>\S+)"), "current"),
    (KIND_NOT_BDEV, _rx(r"nvmet: peer-to-peer DMA is not supported by non-block device namespaces"), "current"),
    (KIND_DRIVER_NO_P2P, _rx(r"nvmet: peer-to-peer DMA is not supported by the driver of (?P<device>\S+)"), "current"),
    # nvmet controller creation: 4.x "creating controller", 5.x+ "creating nvm controller",
    # 6.x "Created nvm controller" (+ " with DH-HMAC-CHAP", ", TLS" suffixes).
    (KIND_CTRL_CREATED, _rx(r"nvmet: [Cc]reat(?:ed|ing) (?:(?P<ctrl_type>nvm|discovery) )?controller "
                            r"(?P<cntlid>\d+) for subsystem (?P<subsystem>\S+) for NQN "
                            r"(?P<hostnqn>[^\s,]+)"), "current"),
    # pci-p2pdma distance warnings (pci_warn on the client: "<drv> <BDF>: ...")
    (KIND_NO_COMMON_BRIDGE, _rx(_DEV_PREFIX + r"cannot be used for peer-to-peer DMA as the client and "
                                r"provider \((?P<provider>[^)]+)\) do not share an upstream bridge, "
                                r"whitelisted host bridge, or HMAT-described P2P path"), "proposed"),
    (KIND_NO_COMMON_BRIDGE, _rx(_DEV_PREFIX + r"cannot be used for peer-to-peer DMA as the client and "
                                r"provider \((?P<provider>[^)]+)\) do not share an upstream bridge or "
                                r"whitelisted host bridge"), "current"),
    (KIND_NO_COMMON_BRIDGE, _rx(_DEV_PREFIX + r"cannot be used for peer-to-peer DMA as the client and "
                                r"provider \((?P<provider>[^)]+)\) do not share an upstream bridge"), "old"),
    (KIND_ACS_REDIRECT, _rx(_DEV_PREFIX + r"cannot be used for peer-to-peer DMA as ACS redirect is set "
                            r"between the client and provider \((?P<provider>[^)]+)\)"), "old"),
    (KIND_ACS_REDIRECT, _rx(_DEV_PREFIX + r"ACS redirect is set between the client and provider "
                            r"\((?P<provider>[^)]+)\)"), "current"),
    (KIND_ACS_BLOCKS, _rx(_DEV_PREFIX + r"ACS blocks the direct P2P path to provider (?P<provider>\S+) "
                          r"at (?P<at>\S+)"), "proposed"),
    (KIND_ACS_PARAMETER, _rx(_DEV_PREFIX + r"to disable ACS controls for this path, add the kernel "
                             r"parameter: (?P<kernel_parameter>pci=\S+)"), "proposed"),
    (KIND_ACS_PARAMETER, _rx(_DEV_PREFIX + r"to disable ACS redirect for this path, add the kernel "
                             r"parameter: (?P<kernel_parameter>pci=\S+)"), "current"),
    (KIND_HOST_BRIDGE_NOT_WHITELISTED, _rx(_DEV_PREFIX + r"Host bridge not in P2PDMA whitelist: "
                                           r"(?P<hb>[0-9a-fA-F]{4}:[0-9a-fA-F]{4})"), "current"),
    (KIND_NOT_PCI, _rx(_DEV_PREFIX + r"cannot be used for peer-to-peer DMA as it is not a PCI device"), "current"),
    (KIND_VIRT_DMA, _rx(_DEV_PREFIX + r"cannot be used for peer-to-peer DMA because the driver makes use "
                        r"of dma_virt_ops"), "old"),
    (KIND_PROVIDER_WITHOUT_P2PMEM, _rx(_DEV_PREFIX + r"PCI device has no peer-to-peer memory: "
                                       r"(?P<provider>\S+)"), "current"),
    (KIND_NO_SUCH_PROVIDER, _rx(r"pci-p2pdma: No such PCI device: (?P<provider>\S+)"), "current"),
    (KIND_PROVIDER_ADDED, _rx(_DEV_PREFIX + r"added peer-to-peer DMA memory (?P<range>.+)$"), "current"),
    (KIND_CMB_FAILED, _rx(_DEV_PREFIX + r"failed to register the CMB"), "current"),
    (KIND_ACS_CONFIGURED, _rx(_DEV_PREFIX + r"(?:Configured ACS to (?P<acs>0x[0-9a-fA-F]+)|disabled ACS redirect"
                              r"|cannot disable ACS redirect for this hardware.*)"), "current"),
    (KIND_ACS_PARAM_ERROR, _rx(r"PCI: Can't parse ACS command line parameter"), "current"),
]


def split_prefix(line: str) -> tuple[str, float | None, int | None]:
    """Strip a dmesg / kmsg / journal prefix: ``(message, seconds since boot, kmsg seq)``."""
    line = line.rstrip("\n")
    m = _KMSG_RE.match(line)
    if m:
        return m.group("msg"), int(m.group("usec")) / 1e6, int(m.group("seq"))
    m = _DMESG_RE.match(line)
    if m:
        return m.group("msg"), float(m.group("sec")), None
    m = _JOURNAL_RE.match(line)
    if m:
        return m.group("msg"), None, None
    return line, None, None


def parse_line(line: str, index: int = 0) -> LogEvent | None:
    """The :class:`LogEvent` a log line means, or ``None`` for lines unrelated to p2p."""
    msg, t, seq = split_prefix(line)
    if "p2p" not in msg and "peer-to-peer" not in msg and "ontroller" not in msg \
            and "ACS" not in msg and "CMB" not in msg and "P2P" not in msg:
        return None
    for kind, rx, wording in _RULES:
        m = rx.search(msg)
        if not m:
            continue
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        ev = LogEvent(kind=kind, message=msg, index=index, time=t, seq=seq, wording=wording)
        if "provider" in g:
            ev.provider = g["provider"]
        if "client" in g:
            ev.client = g["client"]
        elif "dev" in g and kind not in (KIND_PROVIDER_ADDED, KIND_CMB_FAILED, KIND_PROVIDER_WITHOUT_P2PMEM):
            ev.client = g["dev"]
        if kind in (KIND_PROVIDER_ADDED, KIND_CMB_FAILED, KIND_PROVIDER_WITHOUT_P2PMEM) and "dev" in g:
            ev.provider = ev.provider or g["dev"]
        if "device" in g:
            ev.device = g["device"]
        if "nsid" in g:
            ev.nsid = int(g["nsid"])
        if "cntlid" in g:
            ev.cntlid = int(g["cntlid"])
            ev.ctrl_type = g.get("ctrl_type") or "nvm"
        if "subsystem" in g:
            ev.subsystem = g["subsystem"]
        if "hostnqn" in g:
            ev.hostnqn = g["hostnqn"].rstrip(".")
        if "kernel_parameter" in g:
            ev.kernel_parameter = g["kernel_parameter"]
        return ev
    return None


def parse_log(lines: Iterable) -> list[LogEvent]:
    """Every p2p-relevant event, in log order (``index`` = position among all lines).

    ``lines`` are text lines (dmesg, /dev/kmsg or journal format) or
    :class:`nvmet_p2p.kmsg.KmsgRecord` objects (``text``, ``time``, ``seq``).
    """
    out = []
    for i, line in enumerate(lines):
        text = getattr(line, "text", None)
        if text is not None:
            ev = parse_line(text, i)
            if ev is not None:
                ev.time = getattr(line, "time", None)
                ev.seq = getattr(line, "seq", None)
        else:
            ev = parse_line(line, i)
        if ev is not None:
            out.append(ev)
    return out


# --------------------------------------------------------------------------------------
# Correlation: which p2p lines belong to which controller
# --------------------------------------------------------------------------------------

@dataclass
class ControllerEvidence:
    """One host connection as the target's log recorded it.

    ``mappings`` maps nsid -> provider BDF from the ``using p2pmem`` lines printed while
    this controller was being created; ``no_p2p`` keeps the auto-mode refusals
    (``no peer-to-peer memory is available that's supported by <ibdev> and <dev>``) and the
    pci-p2pdma warnings printed at the same moment.
    """

    cntlid: int
    subsystem: str
    hostnqn: str
    ctrl_type: str = "nvm"
    time: float | None = None
    index: int = 0
    mappings: dict[int, str] = field(default_factory=dict)
    refusals: list[LogEvent] = field(default_factory=list)
    superseded: bool = False     # a later controller reused this cntlid in this subsystem

    def to_dict(self) -> dict:
        return {
            "cntlid": self.cntlid, "subsystem": self.subsystem, "hostnqn": self.hostnqn,
            "type": self.ctrl_type, "time": self.time,
            "mappings": {str(k): v for k, v in sorted(self.mappings.items())},
            "refusals": [r.message for r in self.refusals],
            "superseded": self.superseded,
        }


def correlate(events: list[LogEvent]) -> list[ControllerEvidence]:
    """Group ``using p2pmem`` and connect-time refusal lines with the controller they belong to.

    nvmet prints a controller's p2p lines while ``nvmet_alloc_ctrl()`` sets up its p2p
    namespace map, *before* the ``Created ... controller`` line, and they carry no controller
    id. So each such line belongs to the next ``Created`` line after it. Lines that no
    controller claims (e.g. added to already-connected controllers when a namespace is
    enabled) are attached to nothing here; :func:`late_mappings` returns them.
    """
    ctrls: list[ControllerEvidence] = []
    pending_map: list[LogEvent] = []
    pending_ref: list[LogEvent] = []
    for ev in events:
        if ev.kind == KIND_P2P_MAPPED:
            pending_map.append(ev)
        elif ev.kind in (KIND_NO_P2P_FOR_CTRL, KIND_NO_COMMON_BRIDGE, KIND_ACS_REDIRECT,
                         KIND_ACS_BLOCKS, KIND_ACS_PARAMETER, KIND_HOST_BRIDGE_NOT_WHITELISTED,
                         KIND_NOT_PCI, KIND_VIRT_DMA):
            pending_ref.append(ev)
        elif ev.kind in (KIND_NO_P2P_FOR_NS, KIND_NOT_BDEV, KIND_DRIVER_NO_P2P):
            # enable-time refusals: not about a controller
            pending_ref = []
        elif ev.kind == KIND_CTRL_CREATED:
            c = ControllerEvidence(cntlid=ev.cntlid or 0, subsystem=ev.subsystem or "",
                                   hostnqn=ev.hostnqn or "", ctrl_type=ev.ctrl_type or "nvm",
                                   time=ev.time, index=ev.index)
            if c.ctrl_type == "nvm":
                for m in pending_map:
                    if m.nsid is not None and m.provider:
                        c.mappings[m.nsid] = m.provider
                c.refusals = list(pending_ref)
            pending_map, pending_ref = [], []
            for old in ctrls:
                if old.subsystem == c.subsystem and old.cntlid == c.cntlid:
                    old.superseded = True
            ctrls.append(c)
    return ctrls


def late_mappings(events: list[LogEvent]) -> list[LogEvent]:
    """``using p2pmem`` lines not followed by any ``Created`` line (namespace enabled while
    controllers were already connected: the kernel then adds the mapping to each of them)."""
    last_created = max((e.index for e in events if e.kind == KIND_CTRL_CREATED), default=-1)
    return [e for e in events if e.kind == KIND_P2P_MAPPED and e.index > last_created]


# --------------------------------------------------------------------------------------
# Pool sampling (the only edge in this module)
# --------------------------------------------------------------------------------------

@dataclass
class PoolStats:
    """``p2pmem/available`` of one provider sampled over a window."""

    provider: str
    size: int | None = None
    first: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    last: int | None = None
    samples: int = 0
    errors: int = 0

    @property
    def moved(self) -> bool:
        """Did ``available`` ever change during the window?"""
        return self.minimum is not None and self.maximum is not None and self.minimum != self.maximum

    @property
    def max_in_use(self) -> int | None:
        """Peak bytes taken from the pool during the window, relative to its highest reading."""
        if self.minimum is None or self.maximum is None:
            return None
        return self.maximum - self.minimum

    def add(self, value: int) -> None:
        self.samples += 1
        if self.first is None:
            self.first = value
        self.last = value
        self.minimum = value if self.minimum is None else min(self.minimum, value)
        self.maximum = value if self.maximum is None else max(self.maximum, value)

    def to_dict(self) -> dict:
        return {"provider": self.provider, "size": self.size, "first": self.first,
                "min": self.minimum, "max": self.maximum, "last": self.last,
                "samples": self.samples, "errors": self.errors, "moved": self.moved,
                "max_in_use": self.max_in_use}


def _p2pmem_dir(root: str, bdf: str) -> str:
    return os.path.join(root, "sys/bus/pci/devices", bdf, "p2pmem")


def read_available(root: str, bdf: str) -> int:
    with open(os.path.join(_p2pmem_dir(root, bdf), "available")) as f:
        return int(f.read().strip())


class PoolSampler:
    """Samples ``p2pmem/available`` of some providers in a background thread.

    Use as a context manager around the I/O; ``stats`` holds one :class:`PoolStats` per
    provider. ``interval`` is in seconds (default 0.1 s: cheap, a sysfs read each).
    """

    def __init__(self, providers: Iterable[str], root: str = "/", interval: float = 0.1,
                 reader: Callable[[str, str], int] = read_available):
        self.root = root
        self.interval = interval
        self.reader = reader
        self.stats: dict[str, PoolStats] = {}
        for bdf in providers:
            st = PoolStats(provider=bdf)
            try:
                with open(os.path.join(_p2pmem_dir(root, bdf), "size")) as f:
                    st.size = int(f.read().strip())
            except (OSError, ValueError):
                pass
            self.stats[bdf] = st
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started: float | None = None
        self.stopped: float | None = None

    def sample_once(self) -> None:
        for bdf, st in self.stats.items():
            try:
                st.add(self.reader(self.root, bdf))
            except (OSError, ValueError):
                st.errors += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval)

    def start(self) -> "PoolSampler":
        self.started = time.time()
        self.sample_once()
        self._thread = threading.Thread(target=self._loop, name="p2pmem-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, PoolStats]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample_once()
        self.stopped = time.time()
        return self.stats

    def __enter__(self) -> "PoolSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# Verdicts (pure)
# --------------------------------------------------------------------------------------

ACTIVE = "offload active"
INACTIVE = "inactive"

# Reason codes (stable, for --json consumers); the text says it in words.
R_P2PMEM_OFF = "p2pmem_off"
R_NS_DISABLED = "namespace_disabled"
R_TRANSPORT = "transport_without_p2p_client"
R_SOFT_RDMA = "soft_rdma"
R_NO_P2P_CLIENT = "no_p2p_client_on_any_port"
R_UNREACHABLE = "provider_unreachable_from_nic"
R_NO_PROVIDER = "no_provider_for_nic_and_device"
R_NO_MAPPING = "no_mapping_logged"
R_POOL_UNUSED = "pool_never_used"
R_NOT_CONNECTED = "no_controller"


@dataclass
class PortFacts:
    """What decides whether a controller that came in through a port can have a p2p client."""

    portid: int
    trtype: str                       # "rdma", "tcp", "loop", "fc", "pci"
    traddr: str = ""
    rdma_device: str | None = None    # ib device serving traddr, when known
    rdma_soft: bool | None = None     # rxe/siw (virtual DMA): never a p2p client
    rdma_pci: str | None = None       # PCI function of the RDMA device
    rdma_driver: str | None = None


@dataclass
class Verdict:
    """Whether one namespace's I/O through one controller used peer-to-peer memory."""

    subsystem: str
    nsid: int
    cntlid: int | None
    verdict: str                      # ACTIVE or INACTIVE
    reason: str | None = None         # R_* code when inactive
    detail: str = ""                  # one sentence a user can act on
    provider: str | None = None       # provider the mapping names, or the configured one
    port: int | None = None
    evidence: list[str] = field(default_factory=list)
    kernel_parameter: str | None = None

    @property
    def active(self) -> bool:
        return self.verdict == ACTIVE

    def headline(self) -> str:
        return self.verdict if self.active else f"{INACTIVE}: {self.detail or self.reason}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["headline"] = self.headline()
        return d


@dataclass
class DistanceFacts:
    """The distance module's answer for (provider, [NIC]) in plain data."""

    map_type: str                     # a MapType value
    reasons: list[str] = field(default_factory=list)
    kernel_parameter: str | None = None


def decide(*, subsystem: str, nsid: int, ns_enabled: bool, p2pmem: str,
           ports: list[PortFacts], ctrl: ControllerEvidence | None,
           port: PortFacts | None = None,
           distance: DistanceFacts | None = None,
           pools: dict[str, PoolStats] | None = None,
           io_during_sampling: bool = False) -> Verdict:
    """The verdict for one namespace × controller, from plain facts.

    ``p2pmem`` is the namespace attribute read back (``"0"``, ``"1"`` or a provider BDF);
    ``ports`` the ports the subsystem is linked to; ``port`` the port this controller came
    through when known (host side, or nvmet debugfs), else every port in ``ports`` is a
    candidate; ``distance`` the distance module's verdict for (provider, NIC) when an explicit
    provider and a PCI RDMA device are known; ``pools`` the sampled ``available`` statistics;
    ``io_during_sampling`` whether the caller knows I/O ran while the pools were sampled.
    Rules, first match wins (kernel.md §4):

    1. ``p2pmem`` 0 -> inactive (off);   2. namespace disabled -> inactive;
    3. a ``using p2pmem`` line for this controller and nsid -> active, unless the pool was
       sampled during I/O and never moved (-> inactive, pool never used);
    4. every candidate port is a non-RDMA transport -> inactive (no p2p client);
    5. every candidate port is RDMA on a soft device -> inactive (soft RDMA); a mix of soft
       RDMA and other transports -> inactive (no p2p client on any port);
    6. explicit provider the distance module says the NIC cannot reach -> inactive;
    7. auto-mode connect refusal logged for this controller -> inactive (no provider);
    8. otherwise -> inactive, no mapping logged.
    """
    cntlid = ctrl.cntlid if ctrl else None
    v = Verdict(subsystem=subsystem, nsid=nsid, cntlid=cntlid, verdict=INACTIVE,
                port=port.portid if port else None)
    explicit = p2pmem not in ("0", "1", "")
    if explicit:
        v.provider = p2pmem
    if p2pmem in ("0", ""):
        v.reason, v.detail = R_P2PMEM_OFF, "p2pmem is 0 for this namespace (system memory by configuration)"
        return v
    if not ns_enabled:
        v.reason, v.detail = R_NS_DISABLED, "namespace is not enabled"
        return v
    if ctrl is None:
        v.reason, v.detail = R_NOT_CONNECTED, "no host controller of this subsystem in the kernel log"
        return v

    mapped = ctrl.mappings.get(nsid)
    if mapped:
        v.provider = mapped
        v.evidence.append(f"kernel: nvmet: using p2pmem on {mapped} for nsid {nsid} "
                          f"(controller {ctrl.cntlid})")
        if explicit and mapped != p2pmem:
            v.evidence.append(f"note: configured provider is {p2pmem}, the kernel mapped {mapped}")
        st = (pools or {}).get(mapped)
        if st is not None and st.samples:
            if st.moved:
                v.evidence.append(f"p2pmem/available of {mapped} moved during I/O: "
                                  f"min {st.minimum}, max {st.maximum} ({st.max_in_use} bytes in use at peak)")
            elif io_during_sampling:
                v.reason = R_POOL_UNUSED
                v.detail = (f"mapping logged but p2pmem/available of {mapped} stayed at {st.maximum} "
                            f"for all {st.samples} samples while I/O ran: every request fell back to "
                            f"system memory (pool exhausted, inline writes only, or no I/O to this namespace)")
                return v
            else:
                v.evidence.append(f"p2pmem/available of {mapped} did not move in {st.samples} samples "
                                  f"(no I/O known to run while sampling)")
        else:
            v.evidence.append("pool use not sampled (sample p2pmem/available while I/O runs to confirm)")
        v.verdict, v.reason = ACTIVE, None
        v.detail = f"NIC DMA goes to p2pmem on {mapped}"
        return v

    candidates = [port] if port is not None else list(ports)
    if candidates and all(p.trtype != "rdma" for p in candidates):
        kinds = sorted({p.trtype for p in candidates})
        v.reason = R_TRANSPORT
        v.detail = (f"{'/'.join(kinds)} transport has no p2p client: only nvmet-rdma with a PCI RDMA "
                    f"device DMAs into p2pmem; data goes through system memory")
        if port is None and len(candidates) > 1:
            v.evidence.append("controller's port not known; every port of the subsystem is " + "/".join(kinds))
        return v
    if candidates and all(p.trtype == "rdma" and p.rdma_soft for p in candidates):
        devs = ", ".join(sorted({p.rdma_device or "?" for p in candidates}))
        v.reason = R_SOFT_RDMA
        v.detail = (f"soft RDMA ({devs}: virtual DMA, no PCI parent): nvmet-rdma sets no p2p client, "
                    f"so the kernel never maps p2pmem for this controller")
        return v
    if candidates and all(p.trtype != "rdma" or p.rdma_soft for p in candidates):
        parts = sorted({f"soft RDMA {p.rdma_device}" if p.trtype == "rdma" else p.trtype for p in candidates})
        v.reason = R_NO_P2P_CLIENT
        v.detail = (f"no port of this subsystem can give the controller a p2p client ({', '.join(parts)}); "
                    f"data goes through system memory")
        v.evidence.append("controller's port not known (no nvmet debugfs); every candidate lacks a p2p client")
        return v
    if distance is not None and distance.map_type == MapType.NOT_SUPPORTED:
        nic = next((p.rdma_device for p in candidates if p.rdma_device), "the NIC")
        v.reason = R_UNREACHABLE
        v.detail = (f"provider {p2pmem} is not reachable from {nic}"
                    + (f": {'; '.join(distance.reasons)}" if distance.reasons else ""))
        v.kernel_parameter = distance.kernel_parameter
        for r in ctrl.refusals:
            v.evidence.append("kernel: " + r.message)
        return v
    auto_refusals = [r for r in ctrl.refusals if r.kind == KIND_NO_P2P_FOR_CTRL]
    if auto_refusals:
        r = auto_refusals[0]
        v.reason = R_NO_PROVIDER
        v.detail = (f"no published provider is reachable from both {r.client} and {r.device} "
                    f"(auto mode); the connection runs on system memory")
        v.evidence.extend("kernel: " + x.message for x in ctrl.refusals)
        return v
    v.reason = R_NO_MAPPING
    v.detail = (f"no 'using p2pmem ... for nsid {nsid}' line for controller {ctrl.cntlid}: the kernel "
                f"did not map p2pmem for it")
    for r in ctrl.refusals:
        v.evidence.append("kernel: " + r.message)
        if r.kernel_parameter and not v.kernel_parameter:
            v.kernel_parameter = r.kernel_parameter
    if any(p.trtype == "rdma" and p.rdma_soft is None for p in candidates):
        v.evidence.append("the RDMA device behind the port is not known (port bound to any address?)")
    return v
