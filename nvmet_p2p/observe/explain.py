"""Why data did not arrive: the kernel log of a transfer's window, read for its likely cause.

``p2p-test`` and ``bench`` (and any other engine: :func:`explain` takes plain log lines) call
this when a transfer failed or its data did not match. The kernel prints what went wrong around
a DMA that never landed, in a handful of forms (the driver or subsystem prefix, then the words):

* IOMMU faults -- Intel ``DMAR: [DMA Write NO_PASID] Request device [04:00.0] fault addr
  0xfe800000 [fault reason 0x05] PTE Write access is not set`` (older: ``[DMA Write] Request
  device [04:00.0] PASID ffffffff fault addr fe800000 [fault reason 05] ...``), AMD ``AMD-Vi:
  Event logged [IO_PAGE_FAULT domain=0x000e address=0xfe800000 flags=0x0020]`` (with the device
  in the ``dev_err`` prefix, or ``device=04:00.0`` inside on older kernels). The faulting
  address is a bus address: when it falls into a BAR of a peer (read from sysfs ``resource``),
  the device was writing to that peer -- a p2p DMA the IOMMU did not let through;
* AER: ``AER: Corrected error received: 0000:04:00.0``, ``AER: Uncorrected (Non-Fatal|Fatal)
  error received: ...``, ``PCIe Bus Error: severity=..., type=...``;
* I/O errors: ``I/O error, dev nvme1n1, sector 2048 op 0x1:(WRITE) ...``, NVMe status lines
  ``nvme1n1: Read(0x2) @ LBA 0, 8 blocks, Data Transfer Error (sct 0x0 / sc 0x4) DNR``,
  ``nvme nvme1: I/O tag 12 (100c) opcode 0x2 (Read) QID 1 timeout, aborting``;
* device resets: ``nvme nvme1: resetting controller``, ``controller is down; will reset``,
  ``Removing after probe failure``, ``DPC: containment event``, ``Link Down``.

Pure logic on lines plus one edge (:func:`read_bars`, :func:`device_bdfs`: sysfs below an
injectable root).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from nvmet_p2p.observe.evidence import split_prefix

_BDF = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
_HEX = r"(?:0x)?[0-9a-fA-F]{1,16}"

KIND_IOMMU = "iommu_fault"
KIND_AER = "aer"
KIND_IO_ERROR = "io_error"
KIND_RESET = "device_reset"
KIND_TIMEOUT = "timeout"

_PREFIX = r"^(?:(?P<drv>[\w.-]+) (?P<pdev>" + _BDF + r"): )?"
_RULES: list[tuple[str, re.Pattern]] = [
    (KIND_IOMMU, re.compile(r"DMAR: \[DMA (?P<dir>Read|Write)[^\]]*\] Request device \[(?P<dev>" + _BDF
                            + r")\](?: PASID \w+)? fault addr (?P<addr>" + _HEX
                            + r")(?: \[fault reason (?P<reason>" + _HEX + r")\] ?(?P<why>.*))?")),
    (KIND_IOMMU, re.compile(_PREFIX + r"AMD-Vi: Event logged \[IO_PAGE_FAULT(?: device=(?P<dev>" + _BDF
                            + r"))?(?: domain=(?P<domain>" + _HEX + r"))? address=(?P<addr>" + _HEX
                            + r")(?: flags=(?P<flags>" + _HEX + r"))?\]")),
    (KIND_IOMMU, re.compile(_PREFIX + r"(?:DMAR|AMD-Vi|iommu)(?!: DRHD: handling fault status).*?"
                            r"(?:fault|FAULT).*?(?:addr(?:ess)?[= ](?P<addr>" + _HEX + r"))?")),
    (KIND_AER, re.compile(r"AER: (?P<sev>Corrected|Uncorrected \((?:Non-Fatal|Fatal)\)|Multiple \w+) "
                          r"error (?:message )?received: (?P<dev>" + _BDF + r")")),
    (KIND_AER, re.compile(_PREFIX + r"(?:AER: )?PCIe Bus Error: severity=(?P<sev>[^,]+), type=(?P<type>[^,]+)")),
    (KIND_IO_ERROR, re.compile(r"I/O error, dev (?P<disk>[\w-]+), sector (?P<sector>\d{1,20})"
                               r"(?: op 0x[0-9a-f]+:\((?P<op>\w+)\))?")),
    (KIND_IO_ERROR, re.compile(r"^(?P<disk>nvme\d{1,6}n\d{1,6}): (?P<op>[\w ]+)\(0x[0-9a-f]+\) @ LBA "
                               r"(?P<lba>\d{1,20}), (?P<blocks>\d{1,10}) blocks, (?P<status>[^(]+?) \(sct")),
    (KIND_TIMEOUT, re.compile(r"nvme (?P<ctrl>nvme\d{1,6}): I/O tag \d{1,10} \([0-9a-f]+\) "
                              r"(?:opcode 0x[0-9a-f]+ \((?P<op>[\w ]+)\) )?QID \d{1,6} timeout")),
    (KIND_RESET, re.compile(r"nvme (?P<ctrl>nvme\d{1,6}): (?P<what>resetting controller|controller is down; "
                            r"will reset|Removing after probe failure|Device not ready; aborting reset)")),
    (KIND_RESET, re.compile(_PREFIX + r"(?P<what>DPC: containment event|pciehp: Slot\(\S+\): Link Down"
                            r"|Link Down|resetting|reset done)")),
]

#: Intel VT-d fault reasons the lab and real machines print (reason code -> meaning)
DMAR_REASONS = {0x05: "the page table entry has no write permission (no mapping for it)",
                0x06: "the page table entry has no read permission (no mapping for it)",
                0x02: "no context entry for the device", 0x01: "no root entry for the device"}


@dataclass
class Bar:
    """One BAR of a PCI function as sysfs ``resource`` lists it (CPU physical = PCI bus
    address on x86 without a translation offset)."""

    device: str
    index: int
    start: int
    end: int

    def contains(self, addr: int) -> bool:
        return self.start <= addr <= self.end


@dataclass
class Cause:
    """One kernel log line that explains lost data, decoded."""

    kind: str
    line: str
    device: str | None = None          # BDF of the device the line names (the DMA master)
    disk: str | None = None            # block device of an I/O error
    address: int | None = None         # faulting bus address (IOMMU)
    direction: str | None = None       # "Read" / "Write" (IOMMU) or the I/O op
    bar: Bar | None = None             # the BAR the faulting address falls in
    detail: str = ""

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v not in (None, "")}
        if self.address is not None:
            d["address"] = hex(self.address)
        return d


@dataclass
class Explanation:
    """The causes found in a window, and one sentence naming the likeliest."""

    causes: list[Cause] = field(default_factory=list)
    summary: str = ""

    @property
    def found(self) -> bool:
        return bool(self.causes)

    def to_dict(self) -> dict:
        return {"summary": self.summary, "causes": [c.to_dict() for c in self.causes]}


def _bdf(text: str | None) -> str | None:
    if not text:
        return None
    t = text.lower()
    return t if t.count(":") == 2 else "0000:" + t


def _int(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def parse_line(line: str) -> Cause | None:
    """The :class:`Cause` a kernel log line means, or None."""
    msg = split_prefix(line)[0]
    if not any(w in msg for w in ("DMAR", "AMD-Vi", "iommu", "AER", "Bus Error", "I/O error",
                                  "LBA", "timeout", "reset", "Removing", "DPC", "Link Down")):
        return None
    for kind, rx in _RULES:
        m = rx.search(msg)
        if not m:
            continue
        g = {k: v for k, v in m.groupdict().items() if v}
        c = Cause(kind=kind, line=msg.strip())
        c.device = _bdf(g.get("dev") or g.get("pdev"))
        c.address = _int(g.get("addr"))
        c.direction = g.get("dir") or g.get("op")
        c.disk = g.get("disk") or g.get("ctrl")
        if kind == KIND_IOMMU and g.get("reason"):
            c.detail = DMAR_REASONS.get(_int(g["reason"]) or -1, g.get("why", "").strip())
        elif kind == KIND_IOMMU:
            c.detail = "I/O page fault"
        else:
            c.detail = (g.get("sev") or g.get("status") or g.get("what") or "").strip()
        return c
    return None


def explain_window(lines: Iterable, *, bars: list[Bar] | None = None, providers: Iterable[str] = (),
                   devices: dict[str, str] | None = None) -> Explanation:
    """Read a window of kernel log lines (text in any dmesg/kmsg form, or records with
    ``text``). ``bars``: the BARs to map faulting addresses to (:func:`read_bars`);
    ``providers``: the p2pmem providers of the transfer; ``devices``: block device or
    controller name -> BDF (:func:`device_bdfs`), to name the PCI function of an I/O error."""
    out = Explanation()
    bars = bars or []
    devices = devices or {}
    seen: set[str] = set()
    for line in lines:
        text = getattr(line, "text", line)
        if not isinstance(text, str):
            continue
        c = parse_line(text)
        if c is None or c.line in seen:
            continue
        seen.add(c.line)
        if c.address is not None:
            c.bar = next((b for b in bars if b.contains(c.address)), None)
        if c.device is None and c.disk:
            c.device = devices.get(c.disk) or devices.get(re.sub(r"n\d+$", "", c.disk))
        out.causes.append(c)
    out.summary = _summary(out.causes, set(providers), devices)
    return out


_RANK = {KIND_IOMMU: 0, KIND_AER: 1, KIND_RESET: 2, KIND_TIMEOUT: 3, KIND_IO_ERROR: 4}


def _summary(causes: list[Cause], providers: set[str], devices: dict[str, str]) -> str:
    if not causes:
        return ""
    first = sorted(causes, key=lambda c: (_RANK.get(c.kind, 9), c.address is None, c.device is None))[0]
    n = sum(1 for c in causes if c.kind == first.kind)
    more = f" ({n} such lines)" if n > 1 else ""
    who = _name(first.device, devices)
    if first.kind == KIND_IOMMU:
        where = f"0x{first.address:x}" if first.address is not None else "an address"
        if first.bar is not None:
            peer = "p2pmem provider " if first.bar.device in providers else ""
            where += (f", inside BAR {first.bar.index} of {peer}{_name(first.bar.device, devices)} "
                      f"(0x{first.bar.start:x}-0x{first.bar.end:x})")
        d = (first.direction or "DMA").lower()
        text = (f"IOMMU fault: the IOMMU blocked the DMA {d} of {who} to {where}"
                + (f": {first.detail}" if first.detail else "") + more)
        if first.bar is not None and first.bar.device != first.device:
            text += (". The device was writing to a peer's BAR by bus address (a p2p transfer) and "
                     "the IOMMU had no mapping for it, so the data never reached the peer"
                     if d == "write" else
                     ". The device was reading a peer's BAR by bus address (a p2p transfer) and the "
                     "IOMMU had no mapping for it")
        return text
    if first.kind == KIND_AER:
        return f"PCIe AER error reported for {who}: {first.detail}{more} ({first.line})"
    if first.kind == KIND_RESET:
        return f"device reset: {first.disk or who}: {first.detail}{more}"
    if first.kind == KIND_TIMEOUT:
        return f"I/O timeout on {first.disk or who}{more} ({first.line})"
    return f"I/O error on {first.disk}{f' ({who})' if first.device else ''}: {first.line}{more}"


def _name(bdf: str | None, devices: dict[str, str]) -> str:
    if bdf is None:
        return "the device"
    ctrl = next((k for k, v in sorted(devices.items()) if v == bdf and re.fullmatch(r"nvme\d+", k)), None)
    return f"{bdf} ({ctrl})" if ctrl else bdf


# ----------------------------------------------------------------------------------------------
# The edge: sysfs
# ----------------------------------------------------------------------------------------------

def read_bars(bdf: str, root: str = "/") -> list[Bar]:
    """The memory BARs of ``bdf`` from ``/sys/bus/pci/devices/<bdf>/resource`` (lines of
    ``start end flags`` in hex; index = line; unused BARs are all zero)."""
    path = os.path.join(root, "sys/bus/pci/devices", bdf, "resource")
    out = []
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read(65536).splitlines()
    except (OSError, UnicodeDecodeError):
        return out
    for i, ln in enumerate(lines[:6]):
        parts = ln.split()
        if len(parts) < 3:
            continue
        try:
            start, end, flags = (int(p, 16) for p in parts[:3])
        except ValueError:
            continue
        if start or end:
            if flags & 0x200:              # IORESOURCE_MEM
                out.append(Bar(bdf, i, start, end))
    return out


def device_bdfs(root: str = "/") -> dict[str, str]:
    """NVMe controller and namespace names -> BDF of their PCI function (from /sys/class/nvme
    and /sys/block)."""
    out: dict[str, str] = {}
    for cls in ("sys/class/nvme", "sys/block"):
        base = os.path.join(root, cls)
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for n in names:
            real = os.path.realpath(os.path.join(base, n))
            bdf = next((c for c in reversed(real.split("/")) if re.fullmatch(_BDF, c) and c.count(":") == 2),
                       None)
            if bdf:
                out[n] = bdf
    return out


def explain(lines: Iterable, *, root: str = "/", providers: Iterable[str] = (),
            devices: Iterable[str] = ()) -> Explanation:
    """:func:`explain_window` with the BARs of every PCI function named in the window, of the
    providers and of ``devices`` (BDFs) read from sysfs below ``root``."""
    lines = list(lines)
    providers = list(providers)
    names = device_bdfs(root)
    bdfs = set(providers) | set(devices)
    for line in lines:
        text = getattr(line, "text", line)
        if isinstance(text, str):
            c = parse_line(text)
            if c is not None and c.device:
                bdfs.add(c.device)
    if any(isinstance(getattr(x, "text", x), str) and "DMAR" in getattr(x, "text", x) or
           isinstance(getattr(x, "text", x), str) and "AMD-Vi" in getattr(x, "text", x) for x in lines):
        try:
            bdfs |= set(os.listdir(os.path.join(root, "sys/bus/pci/devices")))
        except OSError:
            pass
    bars = [b for bdf in sorted(bdfs) for b in read_bars(bdf, root)]
    return explain_window(lines, bars=bars, providers=providers, devices=names)
