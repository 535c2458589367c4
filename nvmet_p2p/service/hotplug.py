"""Hotplug decisions for ``nvmet-p2p watch``: kernel events + what the watcher knew -> what
happened to the target and what to write (pure logic on plain data; the edges are in
:mod:`nvmet_p2p.service.watch`).

What the kernel does, as observed in the lab (tests/lab/test_lab_hotplug.py; kernel 7.3,
pciehp and ACPI hotplug) and read in ``drivers/pci/p2pdma.c`` / ``drivers/nvme/target``:

* **Provider removed** (the NVMe whose CMB a namespace's ``p2pmem`` names): no nvmet or
  p2pdma line, the namespace stays enabled, ``p2pmem`` still reads the removed BDF, and the
  data path silently falls back to host memory (``pci_alloc_p2pmem()`` on the dead device
  returns nothing). Disable + enable with the stale value *succeeds*; writing the absent BDF
  is ENODEV. When the device returns (same BDF, new ``pci_dev``) ``p2pmem`` still reads the
  BDF, so it looks right, but the namespace keeps the dead device: only disable -> write the
  BDF -> enable makes the offload resume (EBUSY while enabled).
* **Backing NVMe removed**: nvmet holds the block device without holder ops, so nothing
  tells it; the namespace stays enabled and every fabric I/O fails (EIO, no AEN). When the
  drive returns its namespace is a *new* block device (a new name while nvmet still holds
  the old one); disable -> ``device_path`` -> enable restores I/O.
* **RDMA device / address**: nvmet-rdma tears the queues down itself and retries a port
  whose address went away; nothing needs writing, but the ports and the placement (the NIC
  is a p2p client) are affected.

Events (:class:`Event`) carry the uevent properties because on ``remove`` sysfs is already
gone: PCI removals are matched by ``PCI_SLOT_NAME``, block removals by ``DEVNAME`` (and
``MAJOR``/``MINOR``) against the :class:`Facts` read before the event. Additions are matched
by identity read from sysfs (the namespace's ``wwid``, the provider's BDF).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nvmet_p2p.kernel import BDF_RE

SUBSYSTEMS = ("pci", "nvme", "block", "infiniband", "net")
POLICIES = ("report", "reconcile")


@dataclass
class Event:
    """One uevent (or address change), reduced to what the decisions need."""

    action: str                      # add | remove | bind | unbind | change | move
    subsystem: str                   # pci | nvme | block | infiniband | net | addr
    name: str                        # sys_name: 0000:03:00.0, nvme2n1, rxe0, dummy0
    props: dict[str, str] = field(default_factory=dict)
    received: float = 0.0            # time.monotonic() when the watcher read it
    seq: int | None = None
    #: when the kernel sent it (CLOCK_MONOTONIC): read from the kernel's own uevent socket,
    #: by SEQNUM, when the watcher listens to udev (udev passes an event on only after its
    #: rules ran); None: ``received`` is the kernel's time (a kernel source, or no SEQNUM)
    kernel_time: float | None = None

    @property
    def t(self) -> float:
        """The kernel's time of this event (``kernel_time``, else when it was read)."""
        return self.kernel_time if self.kernel_time is not None else self.received

    @property
    def devpath(self) -> str:
        return self.props.get("DEVPATH", "")

    def under(self, bdf: str) -> bool:
        """Is this event about the PCI device ``bdf`` or a device below it (its NVMe
        controller, its namespaces' block devices)?"""
        if not bdf:
            return False
        if self.subsystem == "pci" and self.bdf == bdf:
            return True
        return f"/{bdf}/" in self.devpath + "/"

    @property
    def devname(self) -> str:
        """The block/char device name without /dev/ (udev gives /dev/x, the kernel x)."""
        d = self.props.get("DEVNAME", "") or self.name
        return d[5:] if d.startswith("/dev/") else d

    @property
    def bdf(self) -> str:
        return (self.props.get("PCI_SLOT_NAME") or self.name).lower()

    def to_dict(self) -> dict:
        keep = ("DEVNAME", "PCI_SLOT_NAME", "DRIVER", "MAJOR", "MINOR", "DEVTYPE", "ID_SERIAL",
                "ID_WWN", "INTERFACE", "ADDRESS", "SEQNUM")
        return {"action": self.action, "subsystem": self.subsystem, "name": self.name,
                "props": {k: v for k, v in self.props.items() if k in keep}}


@dataclass
class NsFacts:
    """A namespace as the watcher last saw it (configfs + the block device behind it)."""

    nqn: str
    nsid: int
    enabled: bool
    device_path: str
    p2pmem: str                       # "0", "1" or a BDF (lower case)
    block: str | None = None          # nvme2n1
    devnum: str | None = None         # "259:3"
    wwid: str | None = None           # /sys/block/<name>/wwid: survives a remove + add
    serial: str | None = None         # the controller's serial
    backing_pci: str | None = None
    ports: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.nqn}/{self.nsid}"

    @property
    def provider(self) -> str | None:
        return self.p2pmem if _is_bdf(self.p2pmem) else None


@dataclass
class PortFacts:
    portid: int
    trtype: str
    traddr: str
    rdma: tuple[str, ...] = ()        # RDMA devices serving traddr
    netdevs: tuple[str, ...] = ()


@dataclass
class Facts:
    namespaces: dict[str, NsFacts] = field(default_factory=dict)
    ports: dict[int, PortFacts] = field(default_factory=dict)
    providers: set[str] = field(default_factory=set)     # published p2pmem BDFs


@dataclass
class Appeared:
    """A block device that appeared, with its identity read from sysfs at the event."""

    name: str
    wwid: str | None
    serial: str | None
    devlinks: tuple[str, ...] = ()


@dataclass
class Decision:
    """What one burst of events means for the target: one log line each."""

    kind: str        # provider-lost | provider-back | backing-lost | backing-back |
    #                  rdma-lost | rdma-back | address-lost | address-back
    subject: str     # the BDF, block device, RDMA device, netdev or address
    namespaces: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    detail: str = ""
    #: the kernel's first uevent of the event this decision is about (CLOCK_MONOTONIC; see
    #: :func:`first_uevent`), its SEQNUM, and when the watcher read that same event
    first_event: float = 0.0
    first_seq: int | None = None
    first_received: float = 0.0
    facts: dict = field(default_factory=dict)
    # filled in when acted upon
    action: str = "reported"
    result: dict = field(default_factory=dict)


def _is_bdf(v: str) -> bool:
    parts = (v or "").split(":")
    return len(parts) == 3 and len(parts[0]) == 4 and "." in parts[2]


# ----------------------------------------------------------------------------------------------
# events -> decisions
# ----------------------------------------------------------------------------------------------

def decide(events: list[Event], facts: Facts, lost: dict[str, dict],
           appeared: list[Appeared] = (), published: set[str] = frozenset(),
           earlier: list[Event] = ()) -> list[Decision]:
    """The decisions one debounced burst of ``events`` implies.

    ``facts``: the target as read *before* the burst; ``lost``: the degraded record as
    ``{"<kind> <object>": facts}`` (what the watcher saw go earlier: wwid/serial of a lost
    backing device, the provider a namespace lost); ``appeared``: the block devices added in
    the burst, read from sysfs; ``published``: p2pmem providers published after the burst;
    ``earlier``: uevents of earlier bursts that may have begun an event decided now (a
    returning device's ``add`` when its driver's ``bind`` comes in a later burst).
    """
    out: list[Decision] = []
    out += _removed_providers(events, facts)
    out += _removed_backing(events, facts, lost)
    out += _returned_backing(events, facts, lost, appeared)
    out += _returned_providers(events, facts, lost, published, list(earlier))
    out += _rdma(events, facts)
    return out


def first_uevent(events, bdf: str | None = None, devname: str | None = None) -> Event | None:
    """The kernel's first uevent of one device event: the earliest (by the kernel's time, then
    SEQNUM) of the events about the PCI device ``bdf`` or anything below it, or about the
    block/char device ``devname``. A hot-removed NVMe's first uevent is its namespace's block
    ``remove``, long before the PCI ``remove``; a returning one's is the PCI ``add``, before the
    driver's ``bind``."""
    hits = [e for e in events if (bdf and e.under(bdf)) or (devname and e.devname == devname)]
    if not hits:
        return None
    return min(hits, key=lambda e: (e.t, e.seq if e.seq is not None else 0))


def _first(d: Decision, e: Event | None) -> Decision:
    if e is not None:
        d.first_event, d.first_seq, d.first_received = e.t, e.seq, e.received
    return d


def _pci_of(devpath: str) -> str | None:
    """The PCI device a sysfs device path lies under (its last PCI name)."""
    names = [p for p in devpath.split("/") if BDF_RE.match(p)]
    return names[-1] if names else None


def _ns_on(facts: Facts, pred) -> list[str]:
    return sorted(k for k, n in facts.namespaces.items() if pred(n))


def _removed_providers(events, facts) -> list[Decision]:
    out = []
    for bdf in sorted({e.bdf for e in events if e.subsystem == "pci" and e.action == "remove"}):
        nss = _ns_on(facts, lambda n: n.provider == bdf)
        if not nss and bdf not in facts.providers:
            continue
        out.append(_first(Decision("provider-lost", bdf, nss,
                                   detail=(f"p2pmem provider {bdf} removed; the kernel keeps "
                                           f"{len(nss)} namespace(s) enabled and silently serves them "
                                           f"from host memory" if nss else
                                           f"p2pmem provider {bdf} removed; no namespace used it"),
                                   facts={"provider": bdf}), first_uevent(events, bdf=bdf)))
    return out


def _removed_backing(events, facts, lost) -> list[Decision]:
    out = []
    gone_blocks = {e.devname: e for e in events if e.subsystem == "block" and e.action == "remove"}
    gone_pci = {e.bdf for e in events if e.subsystem == "pci" and e.action == "remove"}
    hit: dict[str, list[str]] = {}
    for k, n in sorted(facts.namespaces.items()):
        if f"backing-lost namespace {k}" in lost:
            continue      # already lost: whatever sits at its path now is another drive
        if n.block and n.block in gone_blocks:
            hit.setdefault(n.block, []).append(k)
        elif n.backing_pci and n.backing_pci in gone_pci and n.block:
            hit.setdefault(n.block, []).append(k)
    for block, nss in sorted(hit.items()):
        n = facts.namespaces[nss[0]]
        out.append(_first(Decision("backing-lost", block, nss,
                                   detail=(f"block device {block} (serial {n.serial or '?'}) removed; the "
                                           f"kernel does not notice: {len(nss)} namespace(s) stay enabled "
                                           f"and every I/O fails"),
                                   facts={"device": block, "wwid": n.wwid, "serial": n.serial,
                                          "device_path": n.device_path}),
                          first_uevent(events, bdf=n.backing_pci, devname=block)))
    return out


def _returned_backing(events, facts, lost, appeared) -> list[Decision]:
    out = []
    for a in appeared:
        nss = []
        for key, rec in sorted(lost.items()):
            kind, _, obj = key.partition(" ")
            if kind != "backing-lost" or not obj.startswith("namespace "):
                continue
            if a.wwid and rec.get("wwid") == a.wwid:
                nss.append(obj[len("namespace "):])
        # a namespace that was never seen lose it but waits for it (held back at restore)
        for k, n in sorted(facts.namespaces.items()):
            if k not in nss and not n.enabled and f"held-back namespace {k}" in lost and \
                    (n.device_path == f"/dev/{a.name}" or n.device_path in a.devlinks):
                nss.append(k)
        if nss:
            added = next((e for e in events if e.subsystem == "block" and e.action == "add"
                          and e.devname == a.name), None)
            pci = _pci_of(added.devpath) if added is not None else None
            out.append(_first(Decision("backing-back", a.name, sorted(nss),
                                       detail=f"block device {a.name} (wwid {a.wwid or '?'}) appeared",
                                       facts={"device": a.name, "wwid": a.wwid, "serial": a.serial,
                                              "devlinks": list(a.devlinks)}),
                              first_uevent(events, bdf=pci, devname=a.name)))
    return out


def _returned_providers(events, facts, lost, published, earlier) -> list[Decision]:
    out = []
    seen = {e.bdf for e in events if e.subsystem == "pci" and e.action in ("add", "bind")}
    for bdf in sorted(seen & set(published)):
        nss = set()
        for key, rec in lost.items():
            kind, _, obj = key.partition(" ")
            if kind in ("offload-lost", "re-placed", "held-back") and rec.get("provider") == bdf and \
                    obj.startswith("namespace ") and not (kind == "held-back" and rec.get("device_path")):
                nss.add(obj[len("namespace "):])
        if bdf not in facts.providers:
            # seen absent before this burst (removed while nobody recorded it): its namespaces
            # hold the dead device too; once published again, a later burst leaves them alone
            nss |= set(_ns_on(facts, lambda n: n.provider == bdf))
        if not nss:
            continue
        out.append(_first(Decision("provider-back", bdf, sorted(nss),
                                   detail=(f"p2pmem provider {bdf} is back as a new PCI device; "
                                           f"namespaces still hold the removed one until p2pmem is "
                                           f"rewritten (disable, write, enable)"),
                                   facts={"provider": bdf}),
                          first_uevent(earlier + list(events), bdf=bdf)))
    return out


def _rdma(events, facts) -> list[Decision]:
    out = []
    for e in events:
        if e.subsystem == "infiniband" and e.action in ("add", "remove"):
            ports = sorted(p.portid for p in facts.ports.values() if e.name in p.rdma)
            kind = "rdma-lost" if e.action == "remove" else "rdma-back"
        elif e.subsystem == "net" and e.action in ("add", "remove"):
            ports = sorted(p.portid for p in facts.ports.values() if e.name in p.netdevs)
            kind = "rdma-lost" if e.action == "remove" else "rdma-back"
        elif e.subsystem == "addr" and e.action in ("add", "remove"):
            addr = e.props.get("ADDRESS", "")
            ports = sorted(p.portid for p in facts.ports.values() if p.traddr == addr)
            kind = "address-lost" if e.action == "remove" else "address-back"
            if not ports:
                continue
            verb = "removed from" if e.action == "remove" else "added to"
            out.append(_first(Decision(kind, addr, [], ports,
                                       detail=f"address {addr} {verb} {e.name}; port(s) "
                                              f"{', '.join(map(str, ports))} listen on it"), e))
            continue
        else:
            continue
        if e.action == "add" and not ports:
            # a returning device: ports that serve on its address are only known after the fact
            ports = sorted(p.portid for p in facts.ports.values() if not p.rdma and p.trtype == "rdma")
        if not ports:
            continue
        nss = _ns_on(facts, lambda n: any(p in ports for p in n.ports))
        out.append(_first(Decision(kind, e.name, nss, ports,
                                   detail=(f"{e.subsystem} device {e.name} "
                                           f"{'removed' if e.action == 'remove' else 'added'}; "
                                           f"port(s) {', '.join(map(str, ports))} affected "
                                           f"(nvmet-rdma handles its queues itself); placement re-checked")), e))
    return out


# ----------------------------------------------------------------------------------------------
# decisions -> what to write (policy reconcile)
# ----------------------------------------------------------------------------------------------

@dataclass
class NsTarget:
    """The end state one namespace should reach after a burst (``None`` = leave as is)."""

    key: str
    enable: bool | None = None
    device_path: str | None = None
    p2pmem: str | None = None
    #: the namespace holds a removed provider's ``pci_dev``: write p2pmem even if it reads right
    rewrite_p2pmem: bool = False
    why: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"key": self.key, "enable": self.enable, "device_path": self.device_path,
                "p2pmem": self.p2pmem, "rewrite_p2pmem": self.rewrite_p2pmem, "why": list(self.why)}

    @classmethod
    def from_dict(cls, d: dict) -> "NsTarget":
        return cls(str(d["key"]), d.get("enable"), d.get("device_path"), d.get("p2pmem"),
                   bool(d.get("rewrite_p2pmem")), [str(x) for x in d.get("why") or []])


# ----------------------------------------------------------------------------------------------
# the rewrite policy: when a p2pmem rewrite may disturb the hosts
# ----------------------------------------------------------------------------------------------

#: ``now``: rewrite at once; ``idle``: only once the namespace has had no I/O for a while;
#: ``operator``: never by itself -- record it as pending (``status`` shows it) until the
#: operator runs ``watch --rewrite-pending``.
REWRITE_POLICIES = ("now", "idle", "operator")

#: What a host sees when an enabled namespace's p2pmem is rewritten (the kernel takes it only
#: while the namespace is disabled): measured in the lab, tests/lab/test_lab_rewrite.py.
REWRITE_EFFECT = ("hosts see the namespace go and come back (their block device is deleted and "
                  "created again); I/O in flight then can fail and a handle held open stays dead")


def disrupts(x: NsTarget, n: NsFacts) -> bool:
    """Does reaching ``x`` rewrite the p2pmem of a namespace that serves now (disable, write,
    enable)? Disabling a namespace whose drive is gone, or enabling one that is disabled,
    takes nothing from the hosts that they still had."""
    if not n.enabled or x.enable is False:
        return False
    return x.rewrite_p2pmem or (x.p2pmem is not None and x.p2pmem != n.p2pmem) or \
        (x.device_path is not None and x.device_path != n.device_path)


def block_stat_counts(text: str) -> tuple[int, int] | None:
    """``/sys/block/<dev>/stat`` -> (I/Os completed: reads + writes + discards + flushes, I/Os in
    flight now). The block layer counts every bio nvmet submits for the namespace's fabric I/O
    on its backing device (lab: the counters moved with the host's fio), so they say whether
    a namespace is busy on the target side."""
    f = text.split()
    if len(f) < 11 or not all(x.isdigit() for x in f):
        return None
    done = int(f[0]) + int(f[4]) + (int(f[11]) if len(f) > 11 else 0) + (int(f[15]) if len(f) > 15 else 0)
    return done, int(f[8])


@dataclass
class IdleClock:
    """When a namespace has been idle since: no I/O completed and none in flight for
    ``window`` seconds, judged from successive :func:`block_stat_counts` readings."""

    window: float
    last: tuple[int, int] | None = None
    quiet_since: float | None = None

    def observe(self, counts: tuple[int, int] | None, now: float) -> bool:
        """One reading; True once the namespace has been quiet for the whole window."""
        if counts is None:
            self.last, self.quiet_since = None, None
            return False
        if counts[1] > 0 or self.last is None or counts[0] != self.last[0]:
            self.quiet_since = now if counts[1] == 0 else None
        elif self.quiet_since is None:
            self.quiet_since = now
        self.last = counts
        return self.quiet_since is not None and now - self.quiet_since >= self.window


def remedies(decisions: list[Decision], facts: Facts, lost: dict[str, dict],
             choose_provider, published: set[str]) -> dict[str, NsTarget]:
    """Per namespace, what to write so that the target matches the configuration again.

    ``choose_provider(ns: NsFacts, exclude: set[str]) -> (bdf | "0" | None, why)`` re-places
    a namespace whose provider is gone (None: nothing the kernel would accept; keep serving
    from host memory). Only the namespaces the decisions name appear in the result.
    """
    t: dict[str, NsTarget] = {}
    ctx = _Ctx(lost, choose_provider, published,
               lost_backing={k for d in decisions if d.kind == "backing-lost" for k in d.namespaces},
               gone={d.subject for d in decisions if d.kind == "provider-lost"})
    for d in decisions:
        fn = _REMEDY.get(d.kind)
        for k in d.namespaces:
            n = facts.namespaces.get(k)
            if fn is not None and n is not None:
                fn(t.setdefault(k, NsTarget(k)), n, d, ctx)
    return {k: x for k, x in t.items() if x.why}


@dataclass
class _Ctx:
    lost: dict
    choose_provider: object
    published: set
    lost_backing: set
    gone: set


def _backing_lost(x: NsTarget, n: NsFacts, d: Decision, c: _Ctx) -> None:
    x.enable = False
    x.why.append(f"disabled: its block device {d.subject} is gone (hosts get namespace-not-ready "
                 f"instead of I/O errors)")


def _provider_lost(x: NsTarget, n: NsFacts, d: Decision, c: _Ctx) -> None:
    if n.key in c.lost_backing:
        return                          # its own drive went with it: disabled, nothing to place
    choice, why = c.choose_provider(n, c.gone)
    if choice is not None:
        x.p2pmem = choice
        x.why.append(why)


def _backing_back(x: NsTarget, n: NsFacts, d: Decision, c: _Ctx) -> None:
    x.enable = True
    path = _returning_path(n, d)
    if path != n.device_path:
        x.device_path = path
        x.why.append(f"device_path {n.device_path} -> {path} (the drive came back under a new name)")
    x.why.append(f"re-enabled: block device {d.subject} (same wwid) is back")
    prov = n.provider
    if not prov or (prov in c.published and f"offload-lost namespace {n.key}" not in c.lost):
        return
    if prov in c.published:
        x.rewrite_p2pmem = True         # it came back with the drive: a new device, same BDF
        return
    choice, why = c.choose_provider(n, {prov})
    x.p2pmem = choice if choice is not None else "0"
    x.why.append(why if choice is not None else
                 f"p2pmem 0: provider {prov} is gone and nothing else is accepted")


def _provider_back(x: NsTarget, n: NsFacts, d: Decision, c: _Ctx) -> None:
    held = c.lost.get(f"held-back namespace {n.key}", {})
    if held.get("provider") == d.subject and not held.get("device_path"):
        x.enable = True
        x.why.append(f"enabled: it was held back until provider {d.subject} appeared")
    if n.p2pmem == d.subject:
        x.rewrite_p2pmem = True
        x.why.append(f"p2pmem {d.subject} rewritten (disable, write, enable): the namespace held "
                     f"the removed device")
    else:
        x.p2pmem = d.subject
        x.why.append(f"p2pmem {n.p2pmem} -> {d.subject}: the configured provider is back")


_REMEDY = {"backing-lost": _backing_lost, "provider-lost": _provider_lost,
           "backing-back": _backing_back, "provider-back": _provider_back}


def _returning_path(n: NsFacts, d: Decision) -> str:
    """Keep a by-id path (udev points it at the new device); a kernel name that moved is
    replaced by the new name (nvmet held the old one)."""
    links = d.facts.get("devlinks") or []
    if n.device_path in links or n.device_path == f"/dev/{d.subject}":
        return n.device_path
    if n.device_path.startswith("/dev/disk/"):
        return n.device_path
    return f"/dev/{d.subject}"
