"""Offload evidence: what the kernel log and the p2pmem pools say about the data path.

The kernel never reports when nvmet falls back from peer-to-peer memory to system memory
(docs/kernel-log.md#where-p2p-memory-is-used-and-where-it-silently-is-not). What it does
leave behind:

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

Every wording of docs/kernel-log.md#the-lines is accepted, old and new, including the
proposed ACS/HMAT series, so a newer kernel does not silently defeat the parser.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from nvmet_p2p.pci.p2pdma_rules import MapType

# --------------------------------------------------------------------------------------
# Log line parsing
# --------------------------------------------------------------------------------------

#: ``/dev/kmsg`` record: ``<prio>,<seq>,<usec>,<flags>[,...];<message>``
_KMSG_RE = re.compile(r"^(?P<prio>\d{1,10}),(?P<seq>\d{1,20}),(?P<usec>\d{1,20}),[^;]*;(?P<msg>.*)$")
#: ``dmesg`` (``[   12.345678] msg``), optionally with ``dmesg -r``'s ``<6>`` in front.
_DMESG_RE = re.compile(r"^(?:<(?P<prio>\d{1,10})>)?\[\s*(?P<sec>\d{1,20}\.\d{1,20})\]\s?(?P<msg>.*)$")
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


# (kind, regex, wording). Order matters where one wording contains another. Compiled on first
# use (:func:`_rules`): compiling the table costs milliseconds, which would be part of the
# start-up of every command that imports this module.
_RULES: list[tuple[str, str, str]] = [
    (KIND_P2P_MAPPED, r"nvmet: using p2pmem on (?P<provider>\S+) for nsid (?P<nsid>\d{1,10})\b", "current"),
    (KIND_NO_P2P_FOR_CTRL, r"nvmet: no peer-to-peer memory is available that's supported by "
                           r"(?P<client>\S+) and (?P<device>\S+)", "current"),
    (KIND_NO_P2P_FOR_NS, r"nvmet: no peer-to-peer memory is available for (?P<device>\S+)", "current"),
    (KIND_NOT_BDEV, r"nvmet: peer-to-peer DMA is not supported by non-block device namespaces", "current"),
    (KIND_DRIVER_NO_P2P, r"nvmet: peer-to-peer DMA is not supported by the driver of (?P<device>\S+)", "current"),
    # nvmet controller creation: 4.x "creating controller", 5.x+ "creating nvm controller",
    # 6.x "Created nvm controller" (+ " with DH-HMAC-CHAP", ", TLS" suffixes).
    (KIND_CTRL_CREATED, r"nvmet: [Cc]reat(?:ed|ing) (?:(?P<ctrl_type>nvm|discovery) )?controller "
                        r"(?P<cntlid>\d{1,10}) for subsystem (?P<subsystem>\S+) for NQN "
                        r"(?P<hostnqn>[^\s,]+)", "current"),
    # pci-p2pdma distance warnings (pci_warn on the client: "<drv> <BDF>: ...")
    (KIND_NO_COMMON_BRIDGE, _DEV_PREFIX + r"cannot be used for peer-to-peer DMA as the client and "
                            r"provider \((?P<provider>[^)]+)\) do not share an upstream bridge, "
                            r"whitelisted host bridge, or HMAT-described P2P path", "proposed"),
    (KIND_NO_COMMON_BRIDGE, _DEV_PREFIX + r"cannot be used for peer-to-peer DMA as the client and "
                            r"provider \((?P<provider>[^)]+)\) do not share an upstream bridge or "
                            r"whitelisted host bridge", "current"),
    (KIND_NO_COMMON_BRIDGE, _DEV_PREFIX + r"cannot be used for peer-to-peer DMA as the client and "
                            r"provider \((?P<provider>[^)]+)\) do not share an upstream bridge", "old"),
    (KIND_ACS_REDIRECT, _DEV_PREFIX + r"cannot be used for peer-to-peer DMA as ACS redirect is set "
                        r"between the client and provider \((?P<provider>[^)]+)\)", "old"),
    (KIND_ACS_REDIRECT, _DEV_PREFIX + r"ACS redirect is set between the client and provider "
                        r"\((?P<provider>[^)]+)\)", "current"),
    (KIND_ACS_BLOCKS, _DEV_PREFIX + r"ACS blocks the direct P2P path to provider (?P<provider>\S+) "
                      r"at (?P<at>\S+)", "proposed"),
    (KIND_ACS_PARAMETER, _DEV_PREFIX + r"to disable ACS controls for this path, add the kernel "
                         r"parameter: (?P<kernel_parameter>pci=\S+)", "proposed"),
    (KIND_ACS_PARAMETER, _DEV_PREFIX + r"to disable ACS redirect for this path, add the kernel "
                         r"parameter: (?P<kernel_parameter>pci=\S+)", "current"),
    (KIND_HOST_BRIDGE_NOT_WHITELISTED, _DEV_PREFIX + r"Host bridge not in P2PDMA whitelist: "
                                       r"(?P<hb>[0-9a-fA-F]{4}:[0-9a-fA-F]{4})", "current"),
    (KIND_NOT_PCI, _DEV_PREFIX + r"cannot be used for peer-to-peer DMA as it is not a PCI device", "current"),
    (KIND_VIRT_DMA, _DEV_PREFIX + r"cannot be used for peer-to-peer DMA because the driver makes use "
                    r"of dma_virt_ops", "old"),
    (KIND_PROVIDER_WITHOUT_P2PMEM, _DEV_PREFIX + r"PCI device has no peer-to-peer memory: "
                                   r"(?P<provider>\S+)", "current"),
    (KIND_NO_SUCH_PROVIDER, r"pci-p2pdma: No such PCI device: (?P<provider>\S+)", "current"),
    (KIND_PROVIDER_ADDED, _DEV_PREFIX + r"added peer-to-peer DMA memory (?P<range>.+)$", "current"),
    (KIND_CMB_FAILED, _DEV_PREFIX + r"failed to register the CMB", "current"),
    (KIND_ACS_CONFIGURED, _DEV_PREFIX + r"(?:Configured ACS to (?P<acs>0x[0-9a-fA-F]+)|disabled ACS redirect"
                          r"|cannot disable ACS redirect for this hardware.*)", "current"),
    (KIND_ACS_PARAM_ERROR, r"PCI: Can't parse ACS command line parameter", "current"),
]


@functools.cache
def _rules() -> list[tuple[str, re.Pattern, str]]:
    return [(kind, re.compile(rx), wording) for kind, rx, wording in _RULES]


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
    for kind, rx, wording in _rules():
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

#: Bytes nvmet-rdma moves in one command at most (``NVMET_RDMA_MAX_MDTS`` 8: 2^8 x 4 KiB): the
#: host splits larger I/O, so no single p2pmem allocation is bigger.
NVMET_RDMA_MAX_TRANSFER = 1 << 20
#: p2pmem is handed out in whole pages (the provider's ``gen_pool`` has PAGE_SIZE granules).
P2PMEM_GRANULE = 4096


def near_zero_threshold(size: int | None, io_size: int | None = None) -> int:
    """Below how many available bytes a pool counts as exhausted.

    ``nvmet_req_alloc_sgls()`` needs one contiguous chunk of the request's transfer length; when
    the pool has less, that request silently gets system memory (kernel ``sgl_alloc()``). With
    the hosts' I/O size known (``bench`` knows each workload's; ``status --io-size``), the pool
    is exhausted once ``available`` is below it. Without it: below 1/64 of the pool. Always at
    least one page and at most :data:`NVMET_RDMA_MAX_TRANSFER`."""
    if io_size:
        want = io_size
    elif size:
        want = size // 64
    else:
        want = NVMET_RDMA_MAX_TRANSFER
    return max(P2PMEM_GRANULE, min(NVMET_RDMA_MAX_TRANSFER, want))


@dataclass
class PoolStats:
    """``p2pmem/available`` of one provider sampled over a window.

    Samples added with a time (seconds, any monotonic clock) also measure *how long* the pool
    was exhausted: each reading holds until the next one (sample and hold), so
    ``seconds_near_zero`` is the time ``available`` spent below :attr:`near_zero_below` (see
    :func:`near_zero_threshold`) and ``seconds_at_zero`` the time at exactly 0.
    """

    provider: str
    size: int | None = None
    first: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    last: int | None = None
    samples: int = 0
    errors: int = 0
    io_size: int | None = None          # largest I/O the hosts send, when known
    samples_near_zero: int = 0
    samples_at_zero: int = 0
    seconds_near_zero: float = 0.0
    seconds_at_zero: float = 0.0
    window: float = 0.0                 # seconds from the first to the last timed sample
    _t_last: float | None = field(default=None, repr=False, compare=False)

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

    @property
    def near_zero_below(self) -> int:
        return near_zero_threshold(self.size, self.io_size)

    @property
    def exhausted(self) -> bool:
        """Was ``available`` below :attr:`near_zero_below` in any sample?"""
        return self.samples_near_zero > 0

    def add(self, value: int, t: float | None = None) -> None:
        """One reading; ``t`` (seconds) makes the time spent near zero measurable."""
        if t is not None and self._t_last is not None and self.last is not None:
            dt = max(0.0, t - self._t_last)
            self.window += dt
            if self.last < self.near_zero_below:
                self.seconds_near_zero += dt
            if self.last == 0:
                self.seconds_at_zero += dt
        if t is not None:
            self._t_last = t
        self.samples += 1
        if value < self.near_zero_below:
            self.samples_near_zero += 1
        if value == 0:
            self.samples_at_zero += 1
        if self.first is None:
            self.first = value
        self.last = value
        self.minimum = value if self.minimum is None else min(self.minimum, value)
        self.maximum = value if self.maximum is None else max(self.maximum, value)

    def merge(self, other: "PoolStats") -> None:
        """Fold another window of the same provider into this one (totals over a run)."""
        if other.samples == 0:
            self.errors += other.errors
            return
        self.size = self.size if self.size is not None else other.size
        self.first = self.first if self.first is not None else other.first
        self.last = other.last
        for v in (other.minimum, other.maximum):
            self.minimum = v if self.minimum is None else min(self.minimum, v)
            self.maximum = v if self.maximum is None else max(self.maximum, v)
        self.samples += other.samples
        self.errors += other.errors
        self.samples_near_zero += other.samples_near_zero
        self.samples_at_zero += other.samples_at_zero
        self.seconds_near_zero += other.seconds_near_zero
        self.seconds_at_zero += other.seconds_at_zero
        self.window += other.window
        if other.io_size and (not self.io_size or other.io_size > self.io_size):
            self.io_size = other.io_size

    def usage(self) -> dict:
        """The numbers a verdict quotes: pool size, lowest ``available``, peak in use, and the
        time (seconds and share of the window) spent near and at zero."""
        def pct(s: float) -> float | None:
            return round(100.0 * s / self.window, 1) if self.window > 0 else None
        return {"provider": self.provider, "size": self.size, "min_available": self.minimum,
                "max_available": self.maximum, "peak_in_use": self.max_in_use, "moved": self.moved,
                "samples": self.samples, "window_s": round(self.window, 3),
                "near_zero_below": self.near_zero_below, "io_size": self.io_size,
                "samples_near_zero": self.samples_near_zero,
                "seconds_near_zero": round(self.seconds_near_zero, 3),
                "pct_near_zero": pct(self.seconds_near_zero),
                "samples_at_zero": self.samples_at_zero,
                "seconds_at_zero": round(self.seconds_at_zero, 3), "pct_at_zero": pct(self.seconds_at_zero),
                "exhausted": self.exhausted}

    def to_dict(self) -> dict:
        d = {"provider": self.provider, "size": self.size, "first": self.first,
             "min": self.minimum, "max": self.maximum, "last": self.last,
             "samples": self.samples, "errors": self.errors, "moved": self.moved,
             "max_in_use": self.max_in_use}
        u = self.usage()
        d.update({k: u[k] for k in ("window_s", "io_size", "near_zero_below", "samples_near_zero",
                                    "seconds_near_zero", "pct_near_zero", "samples_at_zero",
                                    "seconds_at_zero", "pct_at_zero", "exhausted")})
        return d


def _p2pmem_dir(root: str, bdf: str) -> str:
    return os.path.join(root, "sys/bus/pci/devices", bdf, "p2pmem")


def read_available(root: str, bdf: str) -> int:
    with open(os.path.join(_p2pmem_dir(root, bdf), "available")) as f:
        return int(f.read().strip())


class PoolSampler:
    """Samples ``p2pmem/available`` of some providers in a background thread.

    Use as a context manager around the I/O; ``stats`` holds one :class:`PoolStats` per
    provider. ``interval`` is in seconds (default 0.1 s: cheap, a sysfs read each);
    ``io_size`` the largest I/O the hosts send, when known (what "exhausted" means, see
    :func:`near_zero_threshold`); ``clock`` the time source of the samples.
    """

    def __init__(self, providers: Iterable[str], root: str = "/", interval: float = 0.1,
                 reader: Callable[[str, str], int] = read_available, io_size: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.root = root
        self.interval = interval
        self.reader = reader
        self.clock = clock
        self.stats: dict[str, PoolStats] = {}
        for bdf in providers:
            st = PoolStats(provider=bdf, io_size=io_size)
            try:
                with open(os.path.join(_p2pmem_dir(root, bdf), "size")) as f:
                    st.size = int(f.read().strip())
            except (OSError, ValueError):
                pass
            self.stats[bdf] = st
        #: the background thread of :meth:`start` and the event that stops it
        self._thread = self._stop = None
        self.started: float | None = None
        self.stopped: float | None = None

    def sample_once(self) -> None:
        for bdf, st in self.stats.items():
            try:
                value = self.reader(self.root, bdf)
            except (OSError, ValueError):
                st.errors += 1
                continue
            st.add(value, self.clock())

    def run_for(self, seconds: float) -> dict[str, PoolStats]:
        """Sample in the calling thread for ``seconds`` (no thread competing with other work
        in this process for the interpreter: on a slow, busy machine a background sampler
        next to CPU-bound reading gets few turns)."""
        self.started = time.time()
        end = time.monotonic() + seconds
        while True:
            self.sample_once()
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(self.interval, left))
        self.stopped = time.time()
        return self.stats

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval)

    def start(self) -> "PoolSampler":
        self._stop = threading.Event()
        self.started = time.time()
        self.sample_once()
        self._thread = threading.Thread(target=self._loop, name="p2pmem-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, PoolStats]:
        if self._thread is not None:
            self._stop.set()
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
PARTIAL = "offload partial"
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
R_POOL_EXHAUSTED = "pool_exhausted"
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
    rdma_emulated: str | None = None  # the inventory's words when the device is an emulation


@dataclass
class Verdict:
    """Whether one namespace's I/O through one controller used peer-to-peer memory.

    ``verdict`` is ``offload active`` (the kernel mapped p2pmem and, when sampled, the pool was
    used), ``offload partial`` (mapped and used, but the pool ran out while I/O ran: the
    requests arriving then got system memory) or ``inactive``. ``pool`` carries the sampled
    numbers of the provider's pool; ``emulated`` says which part of the evidence comes from an
    emulated device (the lab's NIC), in words.
    """

    subsystem: str
    nsid: int
    cntlid: int | None
    verdict: str                      # ACTIVE, PARTIAL or INACTIVE
    reason: str | None = None         # R_* code unless active
    detail: str = ""                  # one sentence a user can act on
    provider: str | None = None       # provider the mapping names, or the configured one
    port: int | None = None
    evidence: list[str] = field(default_factory=list)
    kernel_parameter: str | None = None
    pool: dict | None = None          # PoolStats.usage() of the provider, when sampled
    emulated: str | None = None

    @property
    def active(self) -> bool:
        return self.verdict == ACTIVE

    @property
    def partial(self) -> bool:
        return self.verdict == PARTIAL

    def headline(self) -> str:
        if self.active:
            text = self.verdict
        else:
            text = f"{self.verdict}: {self.detail or self.reason}"
        return text + (" (emulated NIC)" if self.emulated else "")

    def to_dict(self) -> dict:
        # by hand, not dataclasses.asdict (its recursive deep copy was a tenth of a 1000-namespace
        # scrape): the fields are scalars, a list of strings and a flat dict
        d = dict(self.__dict__)
        d["evidence"] = list(self.evidence)
        d["pool"] = dict(self.pool) if self.pool is not None else None
        d["headline"] = self.headline()
        return d


@dataclass
class DistanceFacts:
    """The distance module's answer for (provider, [NIC]) in plain data."""

    map_type: str                     # a MapType value
    reasons: list[str] = field(default_factory=list)
    kernel_parameter: str | None = None
    distance: int | None = None       # the kernel's number (-1 when not supported)


def format_bytes(n: int | None) -> str:
    """Bytes in the largest binary unit, exact when it divides (``128 KiB``, ``1.9 MiB``)."""
    if n is None:
        return "?"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n} B"


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
    candidate; ``distance`` the distance module's verdict for (provider, NIC) when the provider
    (configured, or mapped in auto mode) and a PCI RDMA device are known; ``pools`` the sampled
    ``available`` statistics; ``io_during_sampling`` whether the caller knows I/O ran while the
    pools were sampled. Rules, first match wins (docs/kernel-log.md#how-status-decides):

    1. ``p2pmem`` 0 -> inactive (off);   2. namespace disabled -> inactive;
    3. a ``using p2pmem`` line for this controller and nsid -> active; with pool samples:
       partial when ``available`` went near zero while the pool was in use (requests then fall
       back, silently), inactive when it sat near zero or never moved while I/O ran;
    4. every candidate port is a non-RDMA transport -> inactive (no p2p client);
    5. every candidate port is RDMA on a soft device -> inactive (soft RDMA); a mix of soft
       RDMA and other transports -> inactive (no p2p client on any port);
    6. explicit provider the distance module says the NIC cannot reach -> inactive, quoting
       the kernel's refusal printed at connect time;
    7. auto-mode connect refusal logged for this controller -> inactive (no provider);
    8. otherwise -> inactive, no mapping logged.
    """
    cntlid = ctrl.cntlid if ctrl else None
    candidates = [port] if port is not None else list(ports)
    v = Verdict(subsystem=subsystem, nsid=nsid, cntlid=cntlid, verdict=INACTIVE,
                port=port.portid if port else None, emulated=_emulated(candidates))
    if p2pmem not in ("0", "1", ""):
        v.provider = p2pmem
    if p2pmem in ("0", ""):
        v.reason, v.detail = R_P2PMEM_OFF, "p2pmem is 0 for this namespace (system memory by configuration)"
        v.emulated = None
        return v
    if not ns_enabled:
        v.reason, v.detail = R_NS_DISABLED, "namespace is not enabled"
        v.emulated = None
        return v
    if ctrl is None:
        v.reason, v.detail = R_NOT_CONNECTED, "no host controller of this subsystem in the kernel log"
        v.emulated = None
        return v
    if ctrl.mappings.get(nsid):
        return _mapped(v, ctrl, p2pmem, candidates, distance, pools or {}, io_during_sampling)
    if _no_p2p_client(v, candidates, port):
        v.emulated = None
        return v
    if distance is not None and distance.map_type == MapType.NOT_SUPPORTED:
        return _unreachable(v, ctrl, p2pmem, candidates, distance)
    return _not_mapped(v, ctrl, candidates)


def _emulated(candidates: list[PortFacts]) -> str | None:
    labels = sorted({p.rdma_emulated for p in candidates if p and p.rdma_emulated})
    return "; ".join(labels) or None


def _nic_words(candidates: list[PortFacts]) -> str:
    p = next((p for p in candidates if p.rdma_device), None)
    if p is None:
        return "the NIC"
    return p.rdma_device + (f" (PCI {p.rdma_pci})" if p.rdma_pci else "")


def _distance_words(d: DistanceFacts, provider: str, nic: str) -> str:
    dist = f", distance {d.distance}" if d.distance is not None else ""
    return f"distance {provider} -> {nic}: {d.map_type}{dist}"


def _mapped(v: Verdict, ctrl: ControllerEvidence, p2pmem: str, candidates: list[PortFacts],
            distance: DistanceFacts | None, pools: dict[str, PoolStats], io_ran: bool) -> Verdict:
    """Rule 3: the kernel logged a mapping for this controller and nsid."""
    mapped = ctrl.mappings[v.nsid]
    v.provider = mapped
    v.evidence.append(f"kernel: nvmet: using p2pmem on {mapped} for nsid {v.nsid} "
                      f"(controller {ctrl.cntlid})")
    if p2pmem not in ("0", "1", "") and mapped != p2pmem:
        v.evidence.append(f"note: configured provider is {p2pmem}, the kernel mapped {mapped}")
    if p2pmem == "1":
        v.evidence.append(f"auto mode (p2pmem=1): the kernel chose {mapped} when the host connected")
    if distance is not None:
        v.evidence.append(_distance_words(distance, mapped, _nic_words(candidates)))
    v.verdict, v.reason = ACTIVE, None
    v.detail = f"NIC DMA goes to p2pmem on {mapped}"
    st = pools.get(mapped)
    if st is None or not st.samples:
        v.evidence.append("pool use not sampled (sample p2pmem/available while I/O runs to confirm)")
        return v
    v.pool = st.usage()
    return _pool_verdict(v, st, io_ran)


def _pool_verdict(v: Verdict, st: PoolStats, io_ran: bool) -> Verdict:
    """What the samples of the mapped provider's pool add to a logged mapping."""
    u, mapped = v.pool, st.provider
    span = (f"{u['seconds_near_zero']:.1f} s of {u['window_s']:.1f} s ({u['pct_near_zero']:.0f}%)"
            if u["pct_near_zero"] is not None else f"{st.samples_near_zero} of {st.samples} samples")
    below = f"below {format_bytes(st.near_zero_below)}" + (" (the largest I/O)" if st.io_size else "")
    if st.exhausted and st.moved:
        v.verdict, v.reason = PARTIAL, R_POOL_EXHAUSTED
        v.detail = (f"pool exhausted: p2pmem/available of {mapped} was {below} for {span}, lowest "
                    f"{format_bytes(st.minimum)}; peak in use {format_bytes(st.max_in_use)} of a "
                    f"{format_bytes(st.size)} pool; "
                    f"requests arriving then got system memory (the kernel falls back per request, silently)")
        v.evidence.append(f"p2pmem/available of {mapped} moved during I/O: min {st.minimum}, max {st.maximum} "
                          f"({st.max_in_use} bytes in use at peak); at 0 for {u['seconds_at_zero']:.1f} s")
        return v
    if st.exhausted:       # and never moved: it sat near zero the whole window
        v.verdict, v.reason = INACTIVE, R_POOL_EXHAUSTED
        v.detail = (f"pool exhausted: p2pmem/available of {mapped} stayed {below} (at {format_bytes(st.maximum)} "
                    f"of a {format_bytes(st.size)} pool) for all {st.samples} samples: "
                    + ("every request got system memory" if io_ran else "any request gets system memory"))
        return v
    if st.moved:
        v.evidence.append(f"p2pmem/available of {mapped} moved during I/O: min {st.minimum}, max {st.maximum} "
                          f"({st.max_in_use} bytes in use at peak)")
        return v
    if io_ran:
        v.verdict, v.reason = INACTIVE, R_POOL_UNUSED
        v.detail = (f"mapping logged but p2pmem/available of {mapped} stayed at {st.maximum} "
                    f"for all {st.samples} samples while I/O ran: every request fell back to "
                    f"system memory (inline writes only, or no I/O to this namespace)")
        return v
    v.evidence.append(f"p2pmem/available of {mapped} did not move in {st.samples} samples "
                      f"(no I/O known to run while sampling)")
    return v


def _no_p2p_client(v: Verdict, candidates: list[PortFacts], port: PortFacts | None) -> bool:
    """Rules 4 and 5: no candidate port can give the controller a p2p client."""
    if candidates and all(p.trtype != "rdma" for p in candidates):
        kinds = sorted({p.trtype for p in candidates})
        v.reason = R_TRANSPORT
        v.detail = (f"{'/'.join(kinds)} transport has no p2p client: only nvmet-rdma with a PCI RDMA "
                    f"device DMAs into p2pmem; data goes through system memory")
        if port is None and len(candidates) > 1:
            v.evidence.append("controller's port not known; every port of the subsystem is " + "/".join(kinds))
        return True
    if candidates and all(p.trtype == "rdma" and p.rdma_soft for p in candidates):
        devs = ", ".join(sorted({p.rdma_device or "?" for p in candidates}))
        v.reason = R_SOFT_RDMA
        v.detail = (f"soft RDMA ({devs}: virtual DMA, no PCI parent): nvmet-rdma sets no p2p client, "
                    f"so the kernel never maps p2pmem for this controller")
        return True
    if candidates and all(p.trtype != "rdma" or p.rdma_soft for p in candidates):
        parts = sorted({f"soft RDMA {p.rdma_device}" if p.trtype == "rdma" else p.trtype for p in candidates})
        v.reason = R_NO_P2P_CLIENT
        v.detail = (f"no port of this subsystem can give the controller a p2p client ({', '.join(parts)}); "
                    f"data goes through system memory")
        v.evidence.append("controller's port not known (no nvmet debugfs); every candidate lacks a p2p client")
        return True
    return False


def _unreachable(v: Verdict, ctrl: ControllerEvidence, p2pmem: str, candidates: list[PortFacts],
                 distance: DistanceFacts) -> Verdict:
    """Rule 6: the configured provider is one the NIC cannot reach (the kernel refused it when
    the host connected; the connection itself succeeded, on system memory)."""
    nic = _nic_words(candidates)
    v.reason = R_UNREACHABLE
    mine = [r for r in ctrl.refusals if r.provider in (None, p2pmem)]
    said = [r for r in mine if r.kind != KIND_ACS_PARAMETER]
    v.detail = (f"provider {p2pmem} is not reachable from {nic}"
                + (f": {'; '.join(distance.reasons)}" if distance.reasons else "")
                + ("; the kernel refused it when the host connected" if said else "")
                + "; the connection runs on system memory")
    v.kernel_parameter = distance.kernel_parameter or next(
        (r.kernel_parameter for r in mine if r.kernel_parameter), None)
    v.evidence.extend("kernel: " + r.message for r in mine)
    v.evidence.append(_distance_words(distance, p2pmem, nic))
    return v


def _not_mapped(v: Verdict, ctrl: ControllerEvidence, candidates: list[PortFacts]) -> Verdict:
    """Rules 7 and 8: a p2p client was possible, but the kernel logged no mapping."""
    auto_refusals = [r for r in ctrl.refusals if r.kind == KIND_NO_P2P_FOR_CTRL]
    if auto_refusals:
        r = auto_refusals[0]
        v.reason = R_NO_PROVIDER
        v.detail = (f"no published provider is reachable from both {r.client} and {r.device} "
                    f"(auto mode); the connection runs on system memory")
        v.evidence.extend("kernel: " + x.message for x in ctrl.refusals)
        return v
    v.reason = R_NO_MAPPING
    v.detail = (f"no 'using p2pmem ... for nsid {v.nsid}' line for controller {ctrl.cntlid}: the kernel "
                f"did not map p2pmem for it")
    for r in ctrl.refusals:
        v.evidence.append("kernel: " + r.message)
        if r.kernel_parameter and not v.kernel_parameter:
            v.kernel_parameter = r.kernel_parameter
    if any(p.trtype == "rdma" and p.rdma_soft is None for p in candidates):
        v.evidence.append("the RDMA device behind the port is not known (port bound to any address?)")
    return v
