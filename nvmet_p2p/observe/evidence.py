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
    this controller was being created (``mapping_events`` keeps those lines: their position
    in the log says which device at that BDF they were about); ``refusals`` keeps the
    auto-mode refusals (``no peer-to-peer memory is available that's supported by <ibdev> and
    <dev>``) and the pci-p2pdma warnings printed at the same moment.
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
    mapping_events: dict[int, LogEvent] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "cntlid": self.cntlid, "subsystem": self.subsystem, "hostnqn": self.hostnqn,
            "type": self.ctrl_type, "time": self.time,
            "mappings": {str(k): v for k, v in sorted(self.mappings.items())},
            "refusals": [r.message for r in self.refusals],
            "superseded": self.superseded,
        }


#: The kernel prints a controller's p2p lines in ``nvmet_alloc_ctrl()`` a moment before its
#: ``Created ... controller`` line (0.03-0.8 ms apart in the lab under TCG). A line printed
#: longer than this before the next ``Created`` line was not part of that connect: it was
#: printed when a namespace was enabled while controllers were connected (``nvmet_ns_enable()``
#: adds the mapping to each of them, one ``using p2pmem`` line or refusal per controller).
CONNECT_WINDOW_S = 1.0

#: Kinds printed for one controller at connect (and, for the connected ones, at enable).
_CTRL_LINE_KINDS = frozenset({
    KIND_NO_P2P_FOR_CTRL, KIND_NO_COMMON_BRIDGE, KIND_ACS_REDIRECT, KIND_ACS_BLOCKS,
    KIND_ACS_PARAMETER, KIND_HOST_BRIDGE_NOT_WHITELISTED, KIND_NOT_PCI, KIND_VIRT_DMA})


def _belongs(line: LogEvent, created: LogEvent, claimed_nsids: set[int]) -> bool:
    """Was ``line`` printed while the controller of ``created`` was being set up?"""
    if line.kind == KIND_P2P_MAPPED and line.nsid in claimed_nsids:
        return False                 # one line per nsid at a connect: the earlier one is older
    if line.time is not None and created.time is not None:
        return created.time - line.time <= CONNECT_WINDOW_S
    return True


def _partition(events: list[LogEvent]) -> tuple[list[ControllerEvidence], list[LogEvent]]:
    """Controllers with the lines printed while each was created, and the lines no connect
    claims (printed at namespace enable for the controllers connected then)."""
    ctrls: list[ControllerEvidence] = []
    unclaimed: list[LogEvent] = []
    pending: list[LogEvent] = []
    for ev in events:
        if ev.kind == KIND_P2P_MAPPED or ev.kind in _CTRL_LINE_KINDS:
            pending.append(ev)
        elif ev.kind in (KIND_NO_P2P_FOR_NS, KIND_NOT_BDEV, KIND_DRIVER_NO_P2P):
            # enable-time refusals: not about a controller
            unclaimed += pending
            pending = []
        elif ev.kind == KIND_CTRL_CREATED:
            c = ControllerEvidence(cntlid=ev.cntlid or 0, subsystem=ev.subsystem or "",
                                   hostnqn=ev.hostnqn or "", ctrl_type=ev.ctrl_type or "nvm",
                                   time=ev.time, index=ev.index)
            mine: list[LogEvent] = []
            nsids: set[int] = set()
            for line in reversed(pending):         # nearest first
                if c.ctrl_type == "nvm" and _belongs(line, ev, nsids):
                    mine.append(line)
                    if line.kind == KIND_P2P_MAPPED and line.nsid is not None:
                        nsids.add(line.nsid)
                else:
                    unclaimed.append(line)
            mine.reverse()
            for m in mine:
                if m.kind == KIND_P2P_MAPPED:
                    if m.nsid is not None and m.provider:
                        c.mappings[m.nsid] = m.provider
                        c.mapping_events[m.nsid] = m
                else:
                    c.refusals.append(m)
            pending = []
            for old in ctrls:
                if old.subsystem == c.subsystem and old.cntlid == c.cntlid:
                    old.superseded = True
            ctrls.append(c)
    unclaimed += pending
    unclaimed.sort(key=lambda e: e.index)
    return ctrls, unclaimed


def correlate(events: list[LogEvent]) -> list[ControllerEvidence]:
    """Group ``using p2pmem`` and connect-time refusal lines with the controller they belong to.

    nvmet prints a controller's p2p lines while ``nvmet_alloc_ctrl()`` sets up its p2p
    namespace map, *before* the ``Created ... controller`` line, and they carry no controller
    id. So each such line belongs to the next ``Created`` line after it, if that comes within
    :data:`CONNECT_WINDOW_S` (when the lines carry times) and names no nsid twice. Lines that
    no controller claims (added to already-connected controllers when a namespace is enabled)
    are attached to nothing here; :func:`late_lines` returns them."""
    return _partition(events)[0]


def late_lines(events: list[LogEvent]) -> list[LogEvent]:
    """``using p2pmem`` lines and controller refusals no connect claims: printed when a
    namespace was enabled while controllers were connected (the kernel adds the mapping to
    each of them, or prints why not), in log order."""
    return _partition(events)[1]


def late_mappings(events: list[LogEvent]) -> list[LogEvent]:
    """The ``using p2pmem`` lines of :func:`late_lines`."""
    return [e for e in late_lines(events) if e.kind == KIND_P2P_MAPPED]


# --------------------------------------------------------------------------------------
# Provider identity: which device at a BDF a mapping is about
# --------------------------------------------------------------------------------------

@dataclass
class ProviderFacts:
    """The device at one provider BDF now, and what the log says of the devices before it.

    ``present``/``appeared``/``serial`` are :class:`nvmet_p2p.kernel.PciInstance` (read at the
    edge); ``added`` the ``added peer-to-peer DMA memory`` lines for this BDF, oldest first:
    one per device the kernel set up there (boot, every hot-add), the last one the current
    device's when it is present; ``log_complete``: the log reaches back to boot.
    """

    bdf: str
    present: bool
    appeared: float | None = None
    serial: str | None = None
    added: list[LogEvent] = field(default_factory=list)
    log_complete: bool = True

    @property
    def current_added(self) -> LogEvent | None:
        return self.added[-1] if self.present and self.added else None

    @property
    def hot_added(self) -> bool:
        """The log shows this BDF's pool registered more than once: the current device is
        not the one that was there at boot."""
        return len(self.added) >= 2

    def newer_than(self, line: LogEvent) -> bool:
        """Did the current device appear after the log line ``line`` (so that the line was
        about an earlier device at this BDF)? By position in the log when the current device's
        ``added`` line is in it, else by time (``appeared`` against the line's timestamp)."""
        a = self.current_added
        if a is not None:
            return a.index > line.index
        if self.appeared is not None and line.time is not None:
            return self.appeared > line.time
        return False

    def when(self) -> str:
        a = self.current_added
        t = a.time if a is not None and a.time is not None else self.appeared
        return f"at {t:.1f} s after boot" if t is not None else "since"

    def to_dict(self) -> dict:
        a = self.current_added
        return {"bdf": self.bdf, "present": self.present, "appeared": self.appeared,
                "serial": self.serial, "devices_logged": len(self.added),
                "added_seq": a.seq if a is not None else None,
                "added_time": a.time if a is not None else None}


def provider_facts(events: list[LogEvent], instances: dict, log_complete: bool = True
                   ) -> dict[str, ProviderFacts]:
    """:class:`ProviderFacts` per BDF from the parsed log and the devices read at the edge
    (``instances``: BDF -> :class:`nvmet_p2p.kernel.PciInstance`)."""
    out: dict[str, ProviderFacts] = {}
    for bdf, inst in instances.items():
        out[bdf] = ProviderFacts(bdf, inst.present, inst.appeared, inst.serial,
                                 log_complete=log_complete)
    for e in events:
        if e.kind == KIND_PROVIDER_ADDED and e.provider in out:
            out[e.provider].added.append(e)
    return out


@dataclass
class BindingFacts:
    """When nvmet-p2p last wrote this namespace's ``p2pmem`` and which device it bound then
    (:mod:`nvmet_p2p.nvmet.bindings`, read at the edge)."""

    p2pmem: str
    written: float | None          # CLOCK_MONOTONIC seconds
    time: float                    # wall clock
    appeared: float | None = None  # the device's birth when it was written
    serial: str | None = None


#: How far apart two readings of one device's birth may be and still be the same device
#: (the runtime-PM clock is in milliseconds and read at two different moments).
SAME_DEVICE_S = 1.0


@dataclass
class OffloadLoss:
    """A namespace that does not use the provider its ``p2pmem`` names, whatever the mapping
    lines say: the device is gone, or the namespace holds an earlier device at that BDF."""

    reason: str                      # R_PROVIDER_REMOVED | R_PROVIDER_REPLACED | R_PROVIDER_UNVERIFIED
    provider: str
    detail: str
    source: str = "status"           # "status" (seen now) or "watch" (the degraded record)
    since: float | None = None       # wall clock, when the record knows


def namespace_loss(p2pmem: str, provider: ProviderFacts | None, binding: BindingFacts | None,
                   recorded: dict | None = None) -> OffloadLoss | None:
    """Does a namespace with a pinned ``p2pmem`` still use that provider? Pure.

    ``provider``: the facts at that BDF; ``binding``: nvmet-p2p's record of the write (None
    when it did not write it, or on another boot); ``recorded``: the watcher's ``offload-lost``
    entry (``since`` wall clock, ``detail``). First match:

    1. the BDF is not on the PCI bus -> removed;
    2. the device there appeared after nvmet-p2p bound the namespace (or is another drive)
       -> replaced;
    3. the watcher recorded the loss and no write since -> its words;
    4. no record of a write, and the log shows the BDF's pool registered again after boot
       (hot-added) -> unverified: the namespace may hold the removed device.
    """
    if not p2pmem or p2pmem in ("0", "1") or provider is None:
        return None
    bdf = p2pmem
    if not provider.present:
        return OffloadLoss(R_PROVIDER_REMOVED, bdf,
                           f"provider {bdf} was removed (it is not on the PCI bus): the kernel keeps "
                           f"the namespace enabled and serves it from host memory")
    if binding is not None and binding.p2pmem == bdf:
        if _replaced_since(provider, binding):
            return OffloadLoss(R_PROVIDER_REPLACED, bdf,
                               f"provider {bdf} is a new PCI device (it appeared {provider.when()}), "
                               f"after p2pmem was written: the namespace still holds the removed "
                               f"one and serves from host memory until p2pmem is rewritten "
                               f"(disable, write, enable)")
        if recorded is not None and float(recorded.get("since") or 0) > binding.time:
            return _recorded_loss(bdf, recorded)
        return None
    if recorded is not None:
        return _recorded_loss(bdf, recorded)
    if provider.hot_added:
        return OffloadLoss(R_PROVIDER_UNVERIFIED, bdf,
                           f"provider {bdf} was hot-added {provider.when()} (its pool registered "
                           f"{len(provider.added)} times since boot) and nothing records p2pmem "
                           f"being written since: the namespace may still hold the removed "
                           f"device; rewrite p2pmem (disable, write, enable), or sample the pool "
                           f"while I/O runs (status --sample S --io)")
    return None


def _replaced_since(provider: ProviderFacts, b: BindingFacts) -> bool:
    if b.serial and provider.serial and b.serial != provider.serial:
        return True
    if provider.appeared is not None and b.appeared is not None:
        return abs(provider.appeared - b.appeared) > SAME_DEVICE_S
    if provider.appeared is not None and b.written is not None:
        return provider.appeared > b.written
    a = provider.current_added
    return bool(a is not None and a.time is not None and b.written is not None and a.time > b.written)


def _recorded_loss(bdf: str, rec: dict) -> OffloadLoss:
    return OffloadLoss(R_PROVIDER_REPLACED if "back" in str(rec.get("detail", "")) else R_PROVIDER_REMOVED,
                       bdf, str(rec.get("detail") or f"provider {bdf} lost (recorded by watch)"),
                       source="watch", since=rec.get("since"))


def effective_mapping(ctrl: ControllerEvidence, nsid: int, late: list[LogEvent], p2pmem: str,
                      unreachable: Callable[[str], bool] | None = None) -> LogEvent | None:
    """The ``using p2pmem`` line that holds for ``ctrl`` and ``nsid`` now.

    Enabling a namespace (after a disable, e.g. to rewrite ``p2pmem``) drops every connected
    controller's mapping of it and adds it again to each controller the new provider can serve,
    with one late line each (:func:`late_lines`); those lines carry no controller id. So the
    last late line for ``nsid`` after the controller was created, whose provider the namespace
    can have (``p2pmem`` itself, or any in auto mode), replaces the connect-time line, unless
    the controller's NIC is known not to reach that provider (``unreachable(bdf)``): then the
    re-enable left it without a mapping."""
    later = [e for e in late if e.kind == KIND_P2P_MAPPED and e.nsid == nsid and e.index > ctrl.index
             and (p2pmem == "1" or e.provider == p2pmem)]
    if not later:
        return ctrl.mapping_events.get(nsid) or (
            LogEvent(KIND_P2P_MAPPED, "", index=ctrl.index, nsid=nsid, provider=ctrl.mappings[nsid])
            if nsid in ctrl.mappings else None)
    last = later[-1]
    if unreachable is not None and last.provider and unreachable(last.provider):
        return None
    return last


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


@dataclass(frozen=True)
class PoolProbe:
    """How a :class:`PoolSampler` takes a sample: ``read(root, bdf)`` the bytes
    ``available`` in a provider's pool, ``clock()`` the time of the sample."""
    read: Callable[[str, str], int] = field(default=read_available)
    clock: Callable[[], float] = field(default=time.monotonic)


class PoolSampler:
    """Samples ``p2pmem/available`` of some providers in a background thread.

    Use as a context manager around the I/O; ``stats`` holds one :class:`PoolStats` per
    provider. ``interval`` is in seconds (default 0.1 s: cheap, a sysfs read each);
    ``io_size`` the largest I/O the hosts send, when known (what "exhausted" means, see
    :func:`near_zero_threshold`); ``probe`` the reader and time source of the samples.
    """

    def __init__(self, providers: Iterable[str], root: str = "/", interval: float = 0.1,
                 io_size: int | None = None, probe: PoolProbe = PoolProbe()):
        self.root = root
        self.interval = interval
        self.reader = probe.read
        self.clock = probe.clock
        self.stats: dict[str, PoolStats] = {}
        self.io_size = io_size
        #: providers that could not be read at the last sample (removed): a pool read again
        #: afterwards belongs to a new device, whose statistics start afresh
        self.gone: set[str] = set()
        #: how many times each provider's statistics restarted for a new device
        self.restarts: dict[str, int] = {}
        self.track(providers)
        #: the background thread of :meth:`start` and the event that stops it
        self._thread = self._stop = None
        self.started: float | None = None
        self.stopped: float | None = None

    def _fresh(self, bdf: str) -> PoolStats:
        st = PoolStats(provider=bdf, io_size=self.io_size)
        try:
            with open(os.path.join(_p2pmem_dir(self.root, bdf), "size")) as f:
                st.size = int(f.read().strip())
        except (OSError, ValueError):
            pass
        return st

    def track(self, providers: Iterable[str]) -> None:
        """Sample these providers too (a provider that appeared since the sampler started)."""
        for bdf in providers:
            if bdf not in self.stats:
                self.stats[bdf] = self._fresh(bdf)

    def sample_once(self) -> None:
        for bdf in list(self.stats):
            try:
                value = self.reader(self.root, bdf)
            except (OSError, ValueError):
                self.stats[bdf].errors += 1
                self.gone.add(bdf)
                continue
            if bdf in self.gone:
                # the pool is back after it could not be read: a hot-added device, a new pool;
                # the old device's minimum or movement says nothing about it
                self.gone.discard(bdf)
                self.stats[bdf] = self._fresh(bdf)
                self.restarts[bdf] = self.restarts.get(bdf, 0) + 1
            self.stats[bdf].add(value, self.clock())

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
R_PROVIDER_REMOVED = "provider_removed"
R_PROVIDER_REPLACED = "provider_replaced"
R_PROVIDER_UNVERIFIED = "provider_device_unverified"


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
    hostnqn: str | None = None        # the host of the controller
    nic: str | None = None            # the RDMA device of the controller's port, when known
    nic_pci: str | None = None        # its PCI function (the p2p client the kernel checks)
    port_source: str | None = None    # how the controller's port is known (words)

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
           io_during_sampling: bool = False,
           mapping: LogEvent | None | bool = True,
           providers: dict[str, ProviderFacts] | None = None,
           loss: OffloadLoss | None = None,
           device_path: str | None = None) -> Verdict:
    """The verdict for one namespace × controller, from plain facts.

    ``p2pmem`` is the namespace attribute read back (``"0"``, ``"1"`` or a provider BDF);
    ``ports`` the ports the subsystem is linked to; ``port`` the port this controller came
    through when known (host side, nvmet debugfs, or the kernel's own lines), else every port
    in ``ports`` is a candidate; ``distance`` the distance module's verdict for (provider, NIC)
    when the provider (configured, or mapped in auto mode) and a PCI RDMA device are known;
    ``pools`` the sampled ``available`` statistics; ``io_during_sampling`` whether the caller
    knows I/O ran while the pools were sampled; ``mapping`` the ``using p2pmem`` line that
    holds for this controller and nsid (:func:`effective_mapping`; default: the one logged at
    its connect); ``providers`` what is known of the device at each provider BDF now
    (:class:`ProviderFacts`); ``loss`` the namespace's :func:`namespace_loss`;
    ``device_path`` the namespace's, to tell its connect-time refusals from other namespaces'.
    Rules, first match wins (docs/kernel-log.md#how-status-decides):

    1. ``p2pmem`` 0 -> inactive (off);   2. namespace disabled -> inactive;
    3. a ``using p2pmem`` line for this controller and nsid -> active, unless the device it
       names is gone (provider removed), appeared after the line was logged, or the namespace
       holds an earlier device at that BDF (provider replaced / unverified); with pool samples:
       partial when ``available`` went near zero while the pool was in use (requests then fall
       back, silently), inactive when it sat near zero or never moved while I/O ran;
    4. every candidate port is a non-RDMA transport -> inactive (no p2p client);
    5. every candidate port is RDMA on a soft device -> inactive (soft RDMA); a mix of soft
       RDMA and other transports -> inactive (no p2p client on any port);
    6. explicit provider the NIC cannot reach (the distance module says so, or the kernel
       refused it for this controller at connect) -> inactive, quoting the kernel's refusal;
    7. auto-mode connect refusal logged for this controller and this namespace's device ->
       inactive (no provider);
    8. otherwise -> inactive, no mapping logged.
    """
    return NamespaceFacts(subsystem=subsystem, nsid=nsid, ns_enabled=ns_enabled, p2pmem=p2pmem,
                          ports=ports, ctrl=ctrl, port=port, distance=distance, pools=pools or {},
                          io_during_sampling=io_during_sampling, mapping=mapping,
                          providers=providers or {}, loss=loss, device_path=device_path).verdict()


@dataclass(frozen=True)
class NamespaceFacts:
    """The plain facts :func:`decide` judges, for one namespace × controller (see there for
    what each means); :meth:`verdict` applies the rules."""
    subsystem: str
    nsid: int
    ns_enabled: bool
    p2pmem: str
    ports: list[PortFacts]
    ctrl: ControllerEvidence | None
    port: PortFacts | None = None
    distance: DistanceFacts | None = None
    pools: dict[str, PoolStats] = field(default_factory=dict)
    io_during_sampling: bool = False
    mapping: LogEvent | None | bool = True
    providers: dict[str, ProviderFacts] = field(default_factory=dict)
    loss: OffloadLoss | None = None
    device_path: str | None = None

    def verdict(self) -> Verdict:
        """The verdict by the rules listed at :func:`decide`, first match wins."""
        mapping = self.mapping
        cntlid = self.ctrl.cntlid if self.ctrl else None
        candidates = [self.port] if self.port is not None else list(self.ports)
        v = Verdict(subsystem=self.subsystem, nsid=self.nsid, cntlid=cntlid, verdict=INACTIVE,
                    port=self.port.portid if self.port else None, emulated=_emulated(candidates),
                    hostnqn=self.ctrl.hostnqn if self.ctrl else None,
                    nic=self.port.rdma_device if self.port else None,
                    nic_pci=self.port.rdma_pci if self.port else None)
        if self.p2pmem not in ("0", "1", ""):
            v.provider = self.p2pmem
        if self.p2pmem in ("0", ""):
            v.reason, v.detail = R_P2PMEM_OFF, "p2pmem is 0 for this namespace (system memory by configuration)"
            v.emulated = None
            return v
        if not self.ns_enabled:
            v.reason, v.detail = R_NS_DISABLED, "namespace is not enabled"
            v.emulated = None
            return v
        if self.ctrl is None:
            v.reason, v.detail = R_NOT_CONNECTED, "no host controller of this subsystem in the kernel log"
            v.emulated = None
            return v
        if mapping is True:
            mapping = effective_mapping(self.ctrl, self.nsid, [], self.p2pmem)
        if mapping:
            return self._mapped(v, self.ctrl, mapping, candidates)
        if _no_p2p_client(v, candidates, self.port):
            v.emulated = None
            return v
        refused = _refusals_for(self.ctrl, self.p2pmem, self.device_path)
        if self.p2pmem != "1" and ((self.distance is not None
                                    and self.distance.map_type == MapType.NOT_SUPPORTED)
                                   or any(r.kind in (KIND_NO_COMMON_BRIDGE, KIND_ACS_BLOCKS, KIND_NOT_PCI,
                                                     KIND_VIRT_DMA) for r in refused)):
            return _unreachable(v, refused, self.p2pmem, candidates, self.distance)
        return _not_mapped(v, self.ctrl, refused, candidates)

    def _mapped(self, v: Verdict, ctrl: ControllerEvidence, line: LogEvent,
                candidates: list[PortFacts]) -> Verdict:
        """Rule 3: the kernel logged a mapping for this controller and nsid."""
        mapped = line.provider or ""
        v.provider = mapped
        late = line.index > ctrl.index
        v.evidence.append(f"kernel: nvmet: using p2pmem on {mapped} for nsid {v.nsid} "
                          + (f"(namespace enabled while controller {ctrl.cntlid} was connected"
                             + (f", at {line.time:.1f} s" if line.time is not None else "") + ")"
                             if late else f"(controller {ctrl.cntlid})"))
        if self.p2pmem not in ("0", "1", "") and mapped != self.p2pmem:
            v.evidence.append(f"note: configured provider is {self.p2pmem}, the kernel mapped {mapped}")
        if self.p2pmem == "1":
            v.evidence.append(f"auto mode (p2pmem=1): the kernel chose {mapped} when the host connected")
        if self.distance is not None:
            v.evidence.append(_distance_words(self.distance, mapped, _nic_words(candidates)))
        if self._device_lost(v, ctrl, line):
            return v
        v.verdict, v.reason = ACTIVE, None
        v.detail = f"NIC DMA goes to p2pmem on {mapped}"
        st = self.pools.get(mapped)
        if st is None or not st.samples:
            v.evidence.append("pool use not sampled (sample p2pmem/available while I/O runs to confirm)")
            return v
        v.pool = st.usage()
        return _pool_verdict(v, st, self.io_during_sampling)

    def _device_lost(self, v: Verdict, ctrl: ControllerEvidence, line: LogEvent) -> bool:
        """The mapping names a device that is gone, or one that is not there any more (a new
        device appeared at the BDF after the line was logged, or the namespace holds an earlier
        one): never ``offload active``. Sets the verdict and says so."""
        mapped = line.provider or ""
        loss, pf = self.loss, self.providers.get(mapped)
        if loss is not None and loss.provider == mapped and self.p2pmem == mapped:
            v.reason, v.detail = loss.reason, loss.detail
            seen = "recorded by watch" if loss.source == "watch" else "seen by status"
            v.evidence.append(f"the namespace does not use {mapped} ({seen})")
            return True
        if pf is None:
            return False
        if not pf.present:
            v.reason = R_PROVIDER_REMOVED
            v.detail = (f"the kernel mapped p2pmem on {mapped} for this controller, but {mapped} is no "
                        f"longer on the PCI bus: its pool is gone and every request gets system memory "
                        f"(the kernel does not say so)")
            return True
        if pf.newer_than(line):
            v.reason = R_PROVIDER_REPLACED
            v.detail = (f"{mapped} is a new PCI device (it appeared {pf.when()}) since this mapping was "
                        f"logged: controller {ctrl.cntlid} still holds the removed device and gets system "
                        f"memory until " + ("the host reconnects" if self.p2pmem == "1" else
                                            "p2pmem is rewritten (disable, write, enable)"))
            a = pf.current_added
            if a is not None:
                v.evidence.append(f"kernel: {a.message}" + (f" (at {a.time:.1f} s)" if a.time is not None else ""))
            return True
        return False


def _refusals_for(ctrl: ControllerEvidence, p2pmem: str, device_path: str | None) -> list[LogEvent]:
    """The controller's connect-time refusals that are about this namespace: the pci-p2pdma
    warnings naming its provider (any provider in auto mode) and the auto-mode line naming
    its device (other namespaces of the subsystem print theirs at the same connect)."""
    out = []
    for r in ctrl.refusals:
        if r.kind == KIND_NO_P2P_FOR_CTRL:
            if p2pmem == "1" and (device_path is None or r.device == device_path):
                out.append(r)
        elif p2pmem != "1" and (r.provider is None or r.provider == p2pmem):
            # auto mode looks for a provider quietly (pci_p2pmem_find_many, not verbose): a
            # pci-p2pdma warning at connect is always about a pinned namespace's provider
            out.append(r)
    return out


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


def _unreachable(v: Verdict, refused: list[LogEvent], p2pmem: str, candidates: list[PortFacts],
                 distance: DistanceFacts | None) -> Verdict:
    """Rule 6: the configured provider is one the NIC cannot reach (the kernel refused it when
    the host connected; the connection itself succeeded, on system memory)."""
    said = [r for r in refused if r.kind != KIND_ACS_PARAMETER]
    client = next((r.client for r in said if r.client), None)
    nic = _nic_words(candidates) if v.nic or len(candidates) == 1 or not client else f"the NIC {client}"
    v.reason = R_UNREACHABLE
    v.detail = (f"provider {p2pmem} is not reachable from {nic}"
                + (f": {'; '.join(distance.reasons)}" if distance is not None and distance.reasons else "")
                + ("; the kernel refused it when the host connected" if said else "")
                + "; the connection runs on system memory")
    v.kernel_parameter = (distance.kernel_parameter if distance is not None else None) or next(
        (r.kernel_parameter for r in refused if r.kernel_parameter), None)
    v.evidence.extend("kernel: " + r.message for r in refused)
    if distance is not None:
        v.evidence.append(_distance_words(distance, p2pmem, nic))
    return v


def _not_mapped(v: Verdict, ctrl: ControllerEvidence, refused: list[LogEvent],
                candidates: list[PortFacts]) -> Verdict:
    """Rules 7 and 8: a p2p client was possible, but the kernel logged no mapping."""
    auto_refusals = [r for r in refused if r.kind == KIND_NO_P2P_FOR_CTRL]
    if auto_refusals:
        r = auto_refusals[0]
        v.reason = R_NO_PROVIDER
        v.detail = (f"no published provider is reachable from both {r.client} and {r.device} "
                    f"(auto mode); the connection runs on system memory")
        v.evidence.extend("kernel: " + x.message for x in refused)
        return v
    v.reason = R_NO_MAPPING
    v.detail = (f"no 'using p2pmem ... for nsid {v.nsid}' line for controller {ctrl.cntlid}: the kernel "
                f"did not map p2pmem for it")
    for r in refused:
        v.evidence.append("kernel: " + r.message)
        if r.kernel_parameter and not v.kernel_parameter:
            v.kernel_parameter = r.kernel_parameter
    if any(p.trtype == "rdma" and p.rdma_soft is None for p in candidates):
        v.evidence.append("the RDMA device behind the port is not known (port bound to any address?)")
    return v
