"""``nvmet-p2p watch``: one udev monitor, debounced bursts, one decision line each, and (with
``--policy reconcile``) the writes that make the target match its configuration again -- all
through :func:`nvmet_p2p.nvmet.apply.reconcile` (the plan/apply path and its lock).

Edges here, decisions in :mod:`nvmet_p2p.service.hotplug`:

* :class:`UdevSource`: a pyudev netlink monitor on ``pci``, ``nvme``, ``block``,
  ``infiniband`` and ``net`` (source ``udev`` when udevd runs -- its events carry ``ID_*``
  properties and come after the ``/dev/disk/by-id`` links exist -- else the kernel's own
  uevents); :class:`AddressSource`: address changes through rtnetlink (:mod:`nvmet_p2p.pci.addresses`, pyroute2), which
  uevents do not carry.
* :func:`read_facts`: the managed namespaces and ports, the block device and wwid behind each,
  read *before* a burst, because on ``remove`` sysfs is gone.
* :class:`Watcher`: collects a burst until the events have been quiet for ``debounce``
  seconds (at most ``max_window``), decides, logs, records what was lost in
  ``<state dir>/degraded.json`` (``status`` shows it) and, with ``reconcile``, writes only the
  namespaces concerned.

Log lines are logfmt (``key=value``, one per decision) on stdout, with a ``<N>`` syslog
priority prefix when stdout is the journal (``$JOURNAL_STREAM``); ``--json`` prints JSON
lines instead.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import pyudev

from nvmet_p2p import paths
from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import counters, lastapply
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.apply import ApplyFailed, ApplyInterrupted, open_configfs, reconcile, settle_pending
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.nvmet.degraded import DegradedStore, Entry
from nvmet_p2p.observe.status import managed_subsystems, rdma_devices_for_address
from nvmet_p2p.pci import distance
from nvmet_p2p.pci.inventory import block_device_name, read_inventory
from nvmet_p2p.pci.p2pdma_rules import MapType
from nvmet_p2p.policy import placement
from nvmet_p2p.safeload import redact
from nvmet_p2p.service import anawatch
from nvmet_p2p.service import hotplug as hp
from nvmet_p2p.service.devwait import Probe

DEFAULT_DEBOUNCE = 0.5
#: decisions after which the ANA states of ``multipath: p2p`` groups are re-derived
ANA_EVENTS = frozenset({"provider-lost", "provider-back", "rdma-lost", "rdma-back",
                        "address-lost", "address-back"})
MAX_WINDOW = 3.0
#: how long a re-enable waits for a returning device's path (a by-id link udev is creating)
PATH_WAIT = 5.0


# ----------------------------------------------------------------------------------------------
# event sources
# ----------------------------------------------------------------------------------------------

class UdevSource:
    """pyudev monitor; ``source``: ``udev``, ``kernel`` or ``auto`` (udev if udevd runs)."""

    def __init__(self, source: str = "auto"):
        if source == "auto":
            source = "udev" if os.path.exists("/run/udev/control") else "kernel"
        self.source = source
        self.context = pyudev.Context()
        self.monitor = pyudev.Monitor.from_netlink(self.context, source=source)
        for s in hp.SUBSYSTEMS:
            self.monitor.filter_by(s)
        self.monitor.set_receive_buffer_size(8 << 20)
        self.monitor.start()

    def fileno(self) -> int:
        return self.monitor.fileno()

    def read(self) -> list[hp.Event]:
        out = []
        while True:
            dev = self.monitor.poll(timeout=0)
            if dev is None:
                return out
            now = time.monotonic()
            if dev.subsystem not in hp.SUBSYSTEMS:
                continue
            props = {k: str(v) for k, v in dev.properties.items()}
            seq = props.get("SEQNUM")
            out.append(hp.Event(dev.action or "", dev.subsystem, dev.sys_name, props, now,
                                int(seq) if seq and seq.isdigit() else None))


class KernelStamps:
    """The kernel's own uevent socket, read only for *when* each uevent was sent.

    udev passes an event on after its rules ran (by-id links, ``ID_*`` properties), so under
    load its events reach the watcher hundreds of milliseconds after the kernel sent them. This
    second monitor (source ``kernel``) is read first in every round and stamps each SEQNUM with
    ``time.monotonic()``; the udev event with the same SEQNUM gets that time as its
    ``kernel_time``, and a reaction is measured from the kernel's first uevent of the event."""

    source = "kernel-stamps"
    KEEP_S = 120.0

    def __init__(self, monitor=None):
        if monitor is None:
            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
            for sub in hp.SUBSYSTEMS:
                monitor.filter_by(sub)
            monitor.set_receive_buffer_size(8 << 20)
            monitor.start()
        self.monitor = monitor
        self.stamps: dict[int, float] = {}

    def fileno(self) -> int:
        return self.monitor.fileno()

    def read(self) -> list[hp.Event]:
        """Record the arrival of every queued kernel uevent; returns no events (the udev
        source delivers them)."""
        now = time.monotonic()
        while True:
            dev = self.monitor.poll(timeout=0)
            if dev is None:
                break
            seq = dev.properties.get("SEQNUM")
            if seq and str(seq).isdigit():
                self.stamps.setdefault(int(seq), now)
        if len(self.stamps) > 4096:
            self.stamps = {k: t for k, t in self.stamps.items() if now - t < self.KEEP_S}
        return []

    def stamp(self, events: list[hp.Event]) -> None:
        self.read()
        for e in events:
            if e.seq is not None and e.kernel_time is None and e.seq in self.stamps:
                e.kernel_time = min(self.stamps[e.seq], e.received)


def _addresses():
    """:mod:`nvmet_p2p.pci.addresses`, imported when the watcher listens: it imports pyroute2
    (0.55 s on a host, seconds under the lab's TCG), which ``nvmet-p2p --help`` and every other
    command that imports this module never use."""
    from nvmet_p2p.pci import addresses
    return addresses


class AddressSource:
    """IPv4/IPv6 address additions and removals as events, from an rtnetlink socket bound to
    the IFADDR groups (a plain non-blocking socket the select loop can own; each datagram is
    parsed by pyroute2, :func:`nvmet_p2p.pci.addresses.address_events`)."""

    source = "rtnetlink"

    def __init__(self):
        self.sock = _addresses().address_socket()

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[hp.Event]:
        out = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return out
            out += self.parse(data, time.monotonic())

    @classmethod
    def parse(cls, data: bytes, now: float) -> list[hp.Event]:
        """The address messages of one datagram as ``addr`` events named by interface (its
        index when the name is gone)."""
        out = []
        for added, index, ip in _addresses().address_events(data):
            try:
                name = socket.if_indextoname(index)
            except OSError:
                name = str(index)
            out.append(hp.Event("add" if added else "remove", "addr", name, {"ADDRESS": ip}, now))
        return out


# ----------------------------------------------------------------------------------------------
# facts (read before a burst)
# ----------------------------------------------------------------------------------------------

def _read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path.lstrip("/"))) as f:
            return f.read().strip()
    except OSError:
        return None


def block_identity(root: str, name: str) -> tuple[str | None, str | None, str | None]:
    """(devnum, wwid, controller serial) of a block device from sysfs."""
    base = f"/sys/class/block/{name}"
    serial = _read(root, f"{base}/device/serial")
    return _read(root, f"{base}/dev"), _read(root, f"{base}/wwid"), serial


def read_facts(root: str, live: st.TargetState, managed_subsystems: set[str] | None,
               inventory=None) -> hp.Facts:
    """What the watcher needs to recognise a later removal: per managed namespace its block
    device, wwid, serial and PCI function; per port the RDMA devices and netdevs serving it."""
    inv = inventory or read_inventory(root)
    facts = hp.Facts(providers={f.bdf for f in inv.providers()})
    ports_of: dict[str, list[int]] = {}
    for pid, p in sorted(live.ports.items()):
        traddr = p.attrs.get("addr_traddr", "")
        rd = rdma_devices_for_address(traddr, inv) if p.attrs.get("addr_trtype") == "rdma" else []
        nd = sorted({n for d in rd for n in (list(d.netdevs) + [x for q in d.ports for x in q.netdevs])})
        facts.ports[pid] = hp.PortFacts(pid, p.attrs.get("addr_trtype", ""), traddr,
                                        tuple(d.name for d in rd), tuple(nd))
        for nqn in p.subsystems:
            ports_of.setdefault(nqn, []).append(pid)
    for nqn, sub in sorted(live.subsystems.items()):
        if managed_subsystems is not None and nqn not in managed_subsystems:
            continue
        for nsid, ns in sorted(sub.namespaces.items()):
            path = ns.attrs.get("device_path", "")
            n = hp.NsFacts(nqn, nsid, ns.enable, path, ns.attrs.get("p2pmem", "0").strip().lower(),
                           ports=tuple(ports_of.get(nqn, [])))
            name = block_device_name(root, path) if path else None
            if name and os.path.exists(os.path.join(root, f"sys/class/block/{name}")):
                n.block = name
                n.devnum, n.wwid, n.serial = block_identity(root, name)
                nsinfo = inv.namespaces.get(name)
                n.backing_pci = nsinfo.pci if nsinfo else None
            facts.namespaces[n.key] = n
    return facts


def appeared_blocks(root: str, events: list[hp.Event]) -> list[hp.Appeared]:
    out = []
    for e in events:
        if e.subsystem == "block" and e.action == "add" and e.props.get("DEVTYPE", "disk") == "disk":
            name = e.devname
            _dev, wwid, serial = block_identity(root, name)
            links = tuple(x for x in e.props.get("DEVLINKS", "").split() if x)
            out.append(hp.Appeared(name, wwid, serial, links))
    return out


def published_providers(root: str, events: list[hp.Event]) -> set[str]:
    out = set()
    for e in events:
        if e.subsystem == "pci" and e.action in ("add", "bind"):
            if _read(root, f"/sys/bus/pci/devices/{e.bdf}/p2pmem/published") == "1":
                out.add(e.bdf)
    return out


# ----------------------------------------------------------------------------------------------
# log lines
# ----------------------------------------------------------------------------------------------

_PRIO = {"provider-lost": 4, "backing-lost": 3, "rdma-lost": 4, "address-lost": 4}


def logfmt(fields: dict) -> str:
    parts = []
    for k, v in fields.items():
        if v is None or v == [] or v == "":
            continue
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        s = str(v)
        if not s or any(c in s for c in ' "=\\') or any(ord(c) < 32 for c in s):
            s = json.dumps(s)
        parts.append(f"{k}={s}")
    return " ".join(parts)


class Log:
    def __init__(self, as_json: bool = False, stream=None):
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))

    def __call__(self, fields: dict, priority: int = 6) -> None:
        """One line (logfmt, or JSON), every secret removed (errors carry kernel and file text)."""
        if self.as_json:
            line = json.dumps({k: v for k, v in fields.items() if v is not None}, default=str)
        else:
            line = logfmt(fields)
        line = redact(line)
        if self.journal and not self.as_json:
            line = f"<{priority}>{line}"
        self.stream.write(line + "\n")
        self.stream.flush()


def sd_notify(message: str) -> None:
    """``sd_notify(3)`` without libsystemd (Type=notify units)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall(message.encode())
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------
# the watcher
# ----------------------------------------------------------------------------------------------

@dataclass
class Options:
    root: str = "/"
    state_dir: str = paths.STATE_DIR
    policy: str = "report"
    debounce: float = DEFAULT_DEBOUNCE
    max_window: float = MAX_WINDOW
    profile: str | None = None
    kernel: str | None = None
    all_subsystems: bool = False
    exit_after: int | None = None       # stop after this many bursts with decisions (tests)
    verbose: bool = False               # one debug line per event received
    lock_timeout: float | None = None   # wait this long for another apply's lock (then Busy)
    rewrite: str = "now"                # hp.REWRITE_POLICIES: when a p2pmem rewrite may disturb hosts
    idle_window: float = 2.0            # --rewrite idle: seconds without I/O before rewriting
    poll_s: float = 0.5                 # --rewrite idle: how often the I/O counters are read


@dataclass
class Pending:
    """A p2pmem rewrite the ``--rewrite`` policy holds back."""

    target: hp.NsTarget
    decision: str                       # the decision that wanted it (provider-lost/-back)
    subject: str
    since: float                        # time.monotonic() when it was decided
    first_event: float = 0.0            # the kernel's first uevent of that event
    policy: str = "idle"
    clock: hp.IdleClock | None = None


@dataclass
class Burst:
    events: list[hp.Event] = field(default_factory=list)
    first: float = 0.0
    last: float = 0.0


class Watcher:
    def __init__(self, opts: Options, sources: list, log: Log, *, cfs=None):
        self.o = opts
        self.sources = sources
        self.log = log
        self.cfs = cfs
        self.store = DegradedStore(opts.state_dir)
        self.facts = hp.Facts()
        self.inventory = None
        self.stopping = False
        self.bursts_decided = 0
        self._wake = _Wake()
        self._placement = None          # the profile's placement for the burst being handled
        self.pending: dict[str, Pending] = {}    # rewrites the --rewrite policy holds back
        self._read_ms: float | None = None       # the last re-read of the machine after a burst

    # -- facts --------------------------------------------------------------------------------
    def _cfs(self):
        if self.cfs is None:
            self.cfs = open_configfs(self.o.root, load_module=False)
        return self.cfs

    def _managed(self) -> set[str] | None:
        """The subsystems to watch: the ones nvmet-p2p manages (none without a record: it
        never writes objects it did not make), every one with ``--all``."""
        if self.o.all_subsystems:
            return None
        return managed_subsystems(self.o.state_dir) or set()

    def refresh(self) -> None:
        """Read the target and the machine (between bursts, so that a re-placement at the next
        event needs no read of the whole machine: under the lab's TCG that takes seconds)."""
        self.inventory = read_inventory(self.o.root)
        self.facts = read_facts(self.o.root, read_state(self._cfs()), self._managed(), self.inventory)

    def settle(self) -> None:
        """An apply that was killed half-way (this watcher's own, under systemd's restart, or
        any other) is settled before the target is read: the facts are never a half-applied
        tree. The same journal rule as every command (:func:`nvmet_p2p.nvmet.apply.settle_pending`)."""
        rec = settle_pending(self._cfs(), self.o.state_dir, self.o.root, kernel=self.o.kernel,
                             lock_timeout=self.o.lock_timeout)
        if rec is not None:
            self.log({"msg": "settled an interrupted apply", "recovery": rec.message()}, 4)

    def lost(self) -> dict[str, dict]:
        return {f"{e.kind} {e.object}": {**e.facts, "since": e.since}
                for e in self.store.load().values()}

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> int:
        self.settle()
        self.refresh()
        if self.o.policy == "reconcile":
            self.load_pending()
        if not self.facts.namespaces:
            self.log({"msg": "no managed namespace to watch (nothing applied with this state directory "
                             "yet; --all watches every subsystem)", "state_dir": self.o.state_dir}, 4)
        self.log({"msg": "watching", "policy": self.o.policy,
                  "rewrite": self.o.rewrite if self.o.policy == "reconcile" else None,
                  "pending": sorted(self.pending) or None,
                  "sources": [getattr(s, "source", type(s).__name__) for s in self.sources],
                  "namespaces": len(self.facts.namespaces), "ports": len(self.facts.ports),
                  "debounce_s": self.o.debounce})
        sd_notify("READY=1")
        burst = Burst()
        while not self.stopping:
            timeout = None
            if burst.events:
                now = time.monotonic()
                timeout = max(0.0, min(burst.last + self.o.debounce, burst.first + self.o.max_window) - now)
            if any(p.policy == "idle" for p in self.pending.values()):
                timeout = self.o.poll_s if timeout is None else min(timeout, self.o.poll_s)
            try:
                ready, _, _ = select.select(self.sources + [self._wake], [], [], timeout)
            except InterruptedError:
                continue
            for src in ready:
                if src is self._wake or isinstance(src, KernelStamps):
                    if isinstance(src, KernelStamps):
                        src.read()
                    continue
                events = src.read()
                for st_ in self.sources:
                    if isinstance(st_, KernelStamps):
                        st_.stamp(events)
                for e in events:
                    if self.o.verbose:
                        self.log({"event": e.action, "subsystem": e.subsystem, "name": e.name,
                                  **{k.lower(): v for k, v in e.to_dict()["props"].items()}}, 7)
                    if not burst.events:
                        burst.first = e.received
                    burst.events.append(e)
                    burst.last = e.received
            now = time.monotonic()
            if burst.events and (now >= burst.last + self.o.debounce or now >= burst.first + self.o.max_window):
                self.handle(burst.events, burst)
                burst = Burst()
                if self.o.exit_after is not None and self.bursts_decided >= self.o.exit_after \
                        and not self.pending:
                    break
            if self.pending and not burst.events and not self.stopping:
                self.idle_tick()
                if self.o.exit_after is not None and self.bursts_decided >= self.o.exit_after \
                        and not any(p.policy == "idle" for p in self.pending.values()):
                    break
        sd_notify("STOPPING=1")
        return 0

    def stop(self, *_a) -> None:
        """Signal handler: finish the burst being handled (never half a reconcile), then exit."""
        self.stopping = True
        self._wake.set()

    # -- one burst ----------------------------------------------------------------------------
    def handle(self, events: list[hp.Event], burst: Burst | None = None) -> list[hp.Decision]:
        """Decide, (reconcile,) record and log one burst. ``burst``: its first and last
        events' arrival (default: from the events), for the debounce actually waited."""
        t_decide = time.monotonic()
        if burst is None:
            burst = Burst(events, min((e.received for e in events), default=t_decide),
                          max((e.received for e in events), default=t_decide))
        self._placement = None
        self._dropped_pending: list[str] = []
        lost = self.lost()
        came = published_providers(self.o.root, events)
        went = {e.bdf for e in events if e.subsystem == "pci" and e.action in ("remove", "unbind")}
        published = (self.facts.providers - went) | came
        decisions = hp.decide(events, self.facts, lost, appeared_blocks(self.o.root, events), came,
                              earlier=self._earlier_adds(events))
        if decisions:
            self.bursts_decided += 1
            if self.o.policy == "reconcile":
                self._reconcile(decisions, lost, published)
            self._record(decisions)
            for d in decisions:
                self._log(d, t_decide, len(events), burst)
            counters.count(self.o.state_dir, [("watch_reactions", {"decision": d.kind, "action": d.action})
                                              for d in decisions])
        t_read = time.monotonic()
        try:
            self.refresh()
        except Exception as exc:          # keep watching; the next burst reads again
            self.log({"msg": "cannot re-read the target", "error": str(exc)}, 3)
            return decisions
        self._read_ms = round((time.monotonic() - t_read) * 1000, 1)
        if any(d.kind in ANA_EVENTS for d in decisions):
            self._ana(decisions, time.monotonic())
        return decisions

    def _ana(self, decisions: list[hp.Decision], t_start: float) -> None:
        """``multipath: p2p``: re-derive the ANA states of the groups nvmet-p2p manages on the
        machine as it is after the burst (:mod:`nvmet_p2p.service.anawatch`), written with
        ``--policy reconcile`` (under the apply lock, from reads made under it), else only
        reported. One ``decision=ana-states`` line when a state changes (or would): its
        ``reaction_ms`` from the kernel's first uevent, ``read_ms`` the re-read of the machine
        after the burst, ``ana_ms`` the derivation and the writes."""
        # a provider back at its BDF whose p2pmem was not rewritten: the kernel keeps the
        # removed device, so its namespaces do not offload whatever the verdict says
        stale = {}
        for d in decisions:
            if d.kind == "provider-back" and d.action != "reconciled":
                for key in d.namespaces:
                    nqn, _, nsid = key.rpartition("/")
                    if nsid.isdigit():
                        stale[(nqn, int(nsid))] = (f"p2pmem still bound to the removed "
                                                   f"{d.subject} (not rewritten)")
        write = self.o.policy == "reconcile"
        target = anawatch.AnaTarget(self.o.root, self.o.state_dir, kernel=self.o.kernel,
                                    cfs=self._cfs(), lock_timeout=self.o.lock_timeout)
        try:
            r = target.react(self.inventory, write=write, not_offloading=stale)
        except (NvmetP2PError, OSError) as exc:   # a refused step, configfs gone: keep watching
            self.log({"decision": "ana-states", "policy": self.o.policy, "action": "failed",
                      "error": redact(str(exc))}, 3)
            return
        if not r.changes:
            return
        first = min((d.first_event for d in decisions if d.first_event), default=0.0)
        done = time.monotonic()
        self.log({"decision": "ana-states",
                  "subject": ",".join(sorted({c.split(" group")[0] for c in r.changes
                                              if c.startswith("port ")})) or None,
                  "policy": self.o.policy, "action": "reconciled" if r.applied else "reported",
                  "detail": "ANA states follow p2p reachability (multipath: p2p)",
                  "reaction_ms": round((done - first) * 1000, 1) if first and r.applied else None,
                  "read_ms": self._read_ms,
                  "ana_ms": round((done - t_start) * 1000, 1),
                  "writes": r.writes or None, "changes": "; ".join(r.changes)}, 4)
        counters.count(self.o.state_dir, [("watch_reactions", {"decision": "ana-states",
                                                               "action": "reconciled" if r.applied
                                                               else "reported"})])

    def _rewrite_words(self, d: hp.Decision) -> str | None:
        """For a decision that rewrites p2pmem (or holds it back): the policy, and what the
        hosts see."""
        if d.result.get("pending"):
            return f"{self.o.rewrite} (held back)"
        if d.kind in ("provider-lost", "provider-back") and d.action == "reconciled":
            return f"{self.o.rewrite}: {hp.REWRITE_EFFECT}" if d.result.get("writes") else self.o.rewrite
        return None

    def _earlier_adds(self, events: list[hp.Event]) -> list[hp.Event]:
        """PCI ``add`` uevents of earlier bursts (kept two minutes): a returning device's
        driver ``bind`` -- what makes its pool published -- can come in the burst after its
        ``add``, and the reaction is measured from the ``add``."""
        now = time.monotonic()
        self._adds = [e for e in getattr(self, "_adds", []) if now - e.t < 120.0]
        out = list(self._adds)
        self._adds += [e for e in events if e.subsystem == "pci" and e.action == "add"]
        return out

    def _log(self, d: hp.Decision, t_decide: float, n_events: int, burst: Burst) -> None:
        """One line per decision. Times (ms, CLOCK_MONOTONIC): ``reaction_ms`` from the kernel's
        first uevent of the event (``first_seq``) to the reconciled configfs; apart from it,
        ``uevent_ms`` (that uevent until the watcher read it: udev's rules), ``burst_ms`` (the
        watcher's first to last event of the burst), ``debounce_ms`` (the quiet wait after the
        last one, the ``--debounce`` setting) and ``configfs_ms`` (the writes)."""
        r = d.result
        ms = (lambda a, b: round((a - b) * 1000, 1))
        fields = {"decision": d.kind, "subject": d.subject, "namespaces": d.namespaces,
                  "ports": d.ports, "policy": self.o.policy, "action": d.action,
                  "detail": d.detail, "events": n_events,
                  "reaction_ms": r.get("reaction_ms"),
                  "first_seq": d.first_seq,
                  "uevent_ms": ms(d.first_received, d.first_event) if d.first_event else None,
                  "burst_ms": ms(burst.last, burst.first),
                  "debounce_ms": ms(t_decide, burst.last),
                  "configfs_ms": r.get("configfs_ms"),
                  "writes": r.get("writes"), "error": r.get("error"),
                  "rewrite": self._rewrite_words(d) if self.o.policy == "reconcile" else None}
        for k in ("changes",):
            if r.get(k):
                fields[k] = r[k]
        self.log(fields, 3 if r.get("error") else _PRIO.get(d.kind, 5))

    # -- recording what was lost --------------------------------------------------------------
    def _record(self, decisions: list[hp.Decision]) -> None:
        now = time.time()
        put, drop = [], []
        for d in decisions:
            for k in d.namespaces:
                obj = f"namespace {k}"
                if d.kind == "provider-lost":
                    where = d.result.get("replaced", {}).get(k)
                    if where and where != "0":
                        put.append(Entry(obj, "re-placed", now, f"provider {d.subject} removed; "
                                         f"p2pmem {where} until it returns", "watch",
                                         {"provider": d.subject, "now": where}))
                        drop.append((obj, "offload-lost"))
                    else:
                        put.append(Entry(obj, "offload-lost", now, f"provider {d.subject} removed; the "
                                         f"namespace serves from host memory", "watch",
                                         {"provider": d.subject}))
                elif d.kind == "backing-lost":
                    put.append(Entry(obj, "backing-lost", now, f"block device {d.subject} removed",
                                     "watch", {k2: v for k2, v in d.facts.items() if v}))
                elif d.kind == "backing-back" and d.action == "reconciled":
                    drop.append((obj, "backing-lost"))
                    drop.append((obj, "held-back"))
                elif d.kind == "provider-back" and d.action == "reconciled":
                    drop.append((obj, "offload-lost"))
                    drop.append((obj, "re-placed"))
                elif d.kind == "provider-back":
                    then = (f"the rewrite is held back (--rewrite {self.o.rewrite})" if d.result.get("pending")
                            else "`watch --policy reconcile` rewrites it")
                    put.append(Entry(obj, "offload-lost", now,
                                     f"provider {d.subject} is back as a new PCI device, but the "
                                     f"namespace still holds the removed one (p2pmem reads the same "
                                     f"BDF); {then}", "watch", {"provider": d.subject}))
            for p in d.ports:
                obj = f"port {p}"
                if d.kind in ("rdma-lost", "address-lost"):
                    put.append(Entry(obj, "port-lost", now, d.detail, "watch", {"subject": d.subject}))
                elif d.kind in ("rdma-back", "address-back"):
                    drop.append((obj, "port-lost"))
        for d in decisions:
            for k, t in (d.result.get("pending") or {}).items():
                put.append(Entry(f"namespace {k}", "rewrite-pending", now,
                                 f"{'; '.join(t['why'])} -- held back by --rewrite {self.o.rewrite} ("
                                 + ("until the namespace has had no I/O for "
                                    f"{self.o.idle_window:g} s" if self.o.rewrite == "idle" else
                                    "until the operator runs nvmet-p2p watch --rewrite-pending")
                                 + ")", "watch", {"target": t, "policy": self.o.rewrite,
                                                  "decision": d.kind, "subject": d.subject}))
        for k in getattr(self, "_dropped_pending", []):
            if not any(e.object == f"namespace {k}" and e.kind == "rewrite-pending" for e in put):
                drop.append((f"namespace {k}", "rewrite-pending"))
        if put or drop:
            self.store.update(put=put, drop=drop)

    # -- held-back rewrites -------------------------------------------------------------------
    def idle_tick(self) -> None:
        """``--rewrite idle``: read each held-back namespace's I/O counters; rewrite the ones
        quiet for the whole window."""
        now = time.monotonic()
        for k, p in sorted(self.pending.items()):
            if p.policy != "idle" or p.clock is None:
                continue
            n = self.facts.namespaces.get(k)
            text = _read(self.o.root, f"/sys/class/block/{n.block}/stat") if n and n.block else None
            if p.clock.observe(hp.block_stat_counts(text or ""), now):
                self.run_pending([k], why=f"idle for {self.o.idle_window:g} s")

    def run_pending(self, keys: list[str], why: str) -> list[hp.Decision]:
        """Do held-back rewrites now: re-read the target, check the provider is still there,
        write through the same path as a burst, log one ``decision=rewrite`` line each and
        record the outcome as the original decision would have."""
        self.refresh()
        out = []
        for k in keys:
            p = self.pending.pop(k, None)
            if p is None:
                continue
            x = p.target
            d = hp.Decision("rewrite", k, [k], detail=f"held-back p2pmem rewrite of {k} ({p.decision} "
                            f"{p.subject}), now: {why}", first_event=p.first_event)
            prov = x.p2pmem if x.p2pmem not in (None, "0", "1") else (
                self.facts.namespaces[k].provider if x.rewrite_p2pmem and k in self.facts.namespaces else None)
            if k not in self.facts.namespaces or (prov and not self._published(prov)):
                d.action = "dropped"
                gone = "the namespace is gone" if k not in self.facts.namespaces else f"provider {prov} is gone again"
                d.result["changes"] = [f"not written: {gone}"]
            else:
                res = self.apply_targets({k: x})
                d.result.update({a: b for a, b in res.items() if a not in ("t_done", "per_ns")})
                d.action = "failed" if "error" in res else "reconciled"
                d.result["changes"] = ["; ".join(x.why)] if "error" not in res else res.get("recovered", [])
                d.result["reaction_ms"] = round((res["t_done"] - p.first_event) * 1000, 1) if p.first_event else None
                d.result["held_ms"] = round((res["t_done"] - p.since) * 1000, 1)
            self._log_pending(d, p)
            if d.action == "reconciled":
                done = hp.Decision(p.decision, p.subject, [k], action="reconciled",
                                   result={"replaced": {k: x.p2pmem}} if p.decision == "provider-lost" else {})
                self._record([done])
            self.store.update(drop=[(f"namespace {k}", "rewrite-pending")])
            out.append(d)
        return out

    def _log_pending(self, d: hp.Decision, p: Pending) -> None:
        r = d.result
        self.log({"decision": "rewrite", "subject": d.subject, "namespaces": d.namespaces,
                  "policy": self.o.policy, "rewrite": f"{p.policy}: {hp.REWRITE_EFFECT}"
                  if d.action == "reconciled" else p.policy, "action": d.action, "detail": d.detail,
                  "reaction_ms": r.get("reaction_ms"), "held_ms": r.get("held_ms"),
                  "configfs_ms": r.get("configfs_ms"), "writes": r.get("writes"), "error": r.get("error"),
                  "changes": r.get("changes") or None}, 3 if r.get("error") else 5)

    def load_pending(self) -> None:
        """The held-back rewrites recorded in the state directory (another watcher's, or this
        one's before a restart)."""
        for e in self.store.load().values():
            if e.kind == "rewrite-pending" and e.object.startswith("namespace ") and e.facts.get("target"):
                k = e.object[len("namespace "):]
                pol = str(e.facts.get("policy") or "operator")
                self.pending.setdefault(k, Pending(
                    hp.NsTarget.from_dict(e.facts["target"]), str(e.facts.get("decision") or ""),
                    str(e.facts.get("subject") or ""), time.monotonic(), 0.0, pol,
                    hp.IdleClock(self.o.idle_window) if pol == "idle" else None))

    # -- reconcile ----------------------------------------------------------------------------
    def _reconcile(self, decisions: list[hp.Decision], lost: dict[str, dict],
                   published: set[str]) -> None:
        def inv():          # as read before the burst; the removed devices are excluded by name
            if self.inventory is None:
                self.inventory = read_inventory(self.o.root)
            return self.inventory

        targets = hp.remedies(decisions, self.facts, lost,
                              lambda n, gone: self.choose_provider(inv(), n, gone), published)
        for d in decisions:              # a new decision about a namespace replaces a held-back one
            for k in d.namespaces:
                if self.pending.pop(k, None) is not None:
                    self._dropped_pending.append(k)
        held = {k: x for k, x in targets.items()
                if self.o.rewrite != "now" and hp.disrupts(x, self.facts.namespaces[k])}
        for k, x in held.items():
            d = next(d for d in decisions if k in d.namespaces)
            self.pending[k] = Pending(x, d.kind, d.subject, time.monotonic(), d.first_event, self.o.rewrite,
                                      hp.IdleClock(self.o.idle_window) if self.o.rewrite == "idle" else None)
        targets = {k: x for k, x in targets.items() if k not in held}
        for d in decisions:
            mine = [k for k in d.namespaces if k in held]
            if mine:
                d.result["pending"] = {k: held[k].to_dict() for k in mine}
                d.result["changes"] = ["; ".join(held[k].why) + f" -- held back (--rewrite {self.o.rewrite}): "
                                       + ("waits until the namespace has had no I/O for "
                                          f"{self.o.idle_window:g} s" if self.o.rewrite == "idle" else
                                          "waits for the operator: nvmet-p2p watch --rewrite-pending")
                                       for k in mine]
        if not targets:
            for d in decisions:
                d.action = "nothing to write" if d.kind.endswith(("-lost", "-back")) else d.action
                if d.result.get("pending"):
                    d.action = "pending"
                if d.kind.startswith(("rdma", "address")):
                    d.action = "reported"
                    d.result["changes"] = self._placement_recheck(inv(), d)
            return
        res = self.apply_targets(targets)
        for d in decisions:
            if d.result.get("pending") and not [k for k in d.namespaces if k in targets]:
                d.action = "pending"
                continue
            mine = [k for k in d.namespaces if k in targets]
            d.result.update({k: v for k, v in res.items() if k != "per_ns"})
            if "error" in res:
                d.action = "failed"
                if res.get("recovered"):
                    d.result["changes"] = res["recovered"]
            elif mine:
                d.action = "reconciled"
                d.result["changes"] = ["; ".join(targets[k].why) for k in mine]
                if d.kind == "provider-lost":
                    d.result["replaced"] = {k: targets[k].p2pmem for k in mine}
            else:
                d.action = "nothing to write"
            d.result["reaction_ms"] = round((res["t_done"] - d.first_event) * 1000, 1) \
                if d.first_event and "t_done" in res else None
            d.result.pop("t_done", None)

    def choose_provider(self, inv, n: hp.NsFacts, gone: set[str]):
        """Another published provider the kernel accepts for this namespace's backing NVMe
        that serves the most of the PCI RDMA NICs of its ports (a namespace exported through
        a NIC no provider of its switch can reach keeps the NICs it had), then the nearest,
        then the most free; with ``--profile``, the profile's placement on the machine as it
        is now. None when no provider serves the NVMe and at least one of its NICs."""
        if self.o.profile:
            return self._profile_choice(n, gone)
        nics = []
        for pid in n.ports:
            for ib in self.facts.ports.get(pid, hp.PortFacts(pid, "", "")).rdma:
                d = inv.rdma.get(ib)
                if d and d.pci and not d.soft and d.pci not in nics:
                    nics.append(d.pci)
        clients = ([n.backing_pci] if n.backing_pci else []) + nics
        if not clients:
            return None, "no PCI client to place against"
        found = distance.find_many(inv, clients, self.o.kernel)
        avail = {f.bdf: (f.p2pmem.available if f.p2pmem else 0) for f in inv.pci.values()}
        ranked = []
        for v in found.candidates:
            if v.provider in gone or not v.provider_published:
                continue
            ok = [p for p in v.pairs if p.map_type != MapType.NOT_SUPPORTED]
            if n.backing_pci and n.backing_pci not in {p.client.name for p in ok}:
                continue                    # the kernel would refuse the enable
            served = [p.client.name for p in ok if p.client.name in nics]
            if nics and not served:
                continue                    # no connection could use it: nothing gained
            ranked.append(((-len(served), sum(p.distance for p in ok), -avail.get(v.provider, 0),
                            v.provider), v, served, ok))
        if not ranked:
            return None, (f"no other provider the kernel accepts for {', '.join(clients)}"
                          + (" (the NVMe and at least one NIC)" if nics else "")
                          + ": the namespace keeps serving from host memory until the provider returns")
        key, best, served, ok = min(ranked, key=lambda t: t[0])
        left = [x for x in nics if x not in served]
        kind = MapType.BUS_ADDR if all(p.map_type == MapType.BUS_ADDR for p in ok) else MapType.THRU_HOST_BRIDGE
        used = ([n.backing_pci] if n.backing_pci else []) + served
        return best.provider, (f"re-placed on {best.provider} ({kind}, distance {key[1]}): the nearest "
                               f"published provider the kernel accepts for {', '.join(used)}"
                               + (f"; connections through {', '.join(left)} use host memory" if left else ""))

    def _profile_placement(self):
        """The profile placed on the machine as it is *after* the burst: the inventory is read
        again (the one read before the burst still lists the device just removed, and the
        profile's placement would choose it again). Once per burst; (placement, error)."""
        if self._placement is None:
            try:
                inv_now = read_inventory(self.o.root)
                self._placement = (placement.place_profile(self.o.profile, inv_now, self.o.kernel,
                                                           root=self.o.root), None)
            except Exception as exc:
                self._placement = (None, str(exc))
        return self._placement

    def _profile_choice(self, n: hp.NsFacts, gone: set[str]):
        p, error = self._profile_placement()
        if p is None:
            return None, f"profile {self.o.profile} cannot be placed now: {error}"
        sub = p.state.subsystems.get(n.nqn)
        ns = sub.namespaces.get(n.nsid) if sub else None
        if ns is None or ns.attrs.get("device_path") != n.device_path:
            return None, (f"profile {self.o.profile} no longer maps {n.key} to {n.device_path} on "
                          f"this machine: not re-placed")
        v = ns.attrs.get("p2pmem", "0")
        if v in gone or (_is_bdf(v) and not self._published(v)):
            # a profile that pins the namespace on the provider just removed: nothing to write
            return None, (f"profile {self.o.profile} places {n.key} on {v}, which is gone: not "
                          f"re-placed; the namespace serves from host memory until it returns")
        return v, f"re-placed by profile {self.o.profile} (on the machine after the event): p2pmem {v}"

    def _placement_recheck(self, inv, d: hp.Decision) -> list[str]:
        """After an RDMA device or address change: does each pinned provider still suit the
        namespace's clients (its NVMe and the PCI RDMA devices its ports now have)?"""
        out = []
        for k in d.namespaces:
            n = self.facts.namespaces[k]
            if not n.provider:
                continue
            nics = {x.pci for pid in n.ports if pid in self.facts.ports
                    for x in rdma_devices_for_address(self.facts.ports[pid].traddr, inv)
                    if x.pci and not x.soft}
            clients = ([n.backing_pci] if n.backing_pci else []) + sorted(nics)
            if not clients:
                continue
            try:
                v = distance.distance_many(inv, n.provider, clients, self.o.kernel)
            except Exception as exc:
                out.append(f"{k}: provider {n.provider} not re-checked ({exc})")
                continue
            out.append(f"{k}: provider {n.provider} {'still suits' if v.distance >= 0 else 'NO LONGER suits'} "
                       f"{', '.join(clients)} ({v.map_type}, distance {v.distance})")
        return out

    def apply_targets(self, targets: dict[str, hp.NsTarget]) -> dict:
        """At most two reconciles: first the namespaces holding a dead provider get p2pmem 0
        (disabled), then every target's end state. Returns timings and writes.

        The first step also runs before moving a namespace off a provider that is gone: the
        second step's undo then writes ``0`` back, never the removed BDF (ENODEV: a rollback
        that cannot finish leaves the apply journal pending and blocks every later apply).

        What each step writes is computed under the apply lock from the tree and the managed
        set read there (:func:`partial_desired` as the reconcile's desire): an apply that ran
        while this one waited for the lock -- a host revoked, a subsystem pruned -- is never
        undone."""
        cfs = self._cfs()
        self._wait_paths(targets)
        step1, step2 = self._steps(targets)
        out = {"writes": 0, "configfs_ms": 0.0}
        first: dict = {}        # the tree as the first step read it under the lock

        def desire(step):
            def want(live, managed):
                first.setdefault("live", live)
                return partial_desired(live, managed, step, self.facts)
            return want
        try:
            for step in (step1, step2):
                if not step:
                    continue
                try:
                    with lastapply.recorded(self.o.state_dir, "watch", root=self.o.root) as rec:
                        rec.outcome = o = reconcile(
                            self.o.root, desire(step), self.o.state_dir, cfs=cfs,
                            kernel=self.o.kernel, lock_timeout=self.o.lock_timeout)
                except ApplyInterrupted as exc:
                    # SIGTERM/SIGINT during the writes was meant for the watcher: it stops after
                    # this burst. All steps done: the burst is finished as promised (the next
                    # step still runs). Rolled back: the apply path put this step's writes back
                    # (the journal covers a kill); nothing more is written but the recovery
                    # below, so the namespaces serve as before the burst.
                    self.stopping = True
                    if not exc.completed:
                        raise
                    o = None
                if o is not None:
                    out["writes"] += o.result.writes if o.result else 0
                    out["configfs_ms"] += round(o.timings.get("apply", 0.0) * 1000, 2)
        except (ApplyFailed, NvmetP2PError) as exc:
            out["error"] = str(exc)
            if "live" in first:
                out["recovered"] = self._recover(first["live"], targets)
        out["t_done"] = time.monotonic()
        return out

    def _steps(self, targets: dict[str, hp.NsTarget]) -> tuple[dict, dict]:
        """The two reconciles' namespaces: first p2pmem 0 and disabled (those being rewritten or
        leaving a dead provider), then every target's end state."""
        step1 = {k: st.Namespace(self.facts.namespaces[k].nsid, False, {"p2pmem": "0"})
                 for k, x in targets.items() if x.rewrite_p2pmem or self._leaves_dead(k, x)}
        step2 = {}
        for k, x in targets.items():
            n = self.facts.namespaces[k]
            attrs = {}
            if x.device_path is not None:
                attrs["device_path"] = x.device_path
            p2p = x.p2pmem if x.p2pmem is not None else (n.p2pmem if x.rewrite_p2pmem else None)
            if p2p is not None:
                attrs["p2pmem"] = p2p
            step2[k] = st.Namespace(n.nsid, n.enabled if x.enable is None else x.enable, attrs)
        return step1, step2

    def _leaves_dead(self, k: str, x: hp.NsTarget) -> bool:
        prov = self.facts.namespaces[k].provider
        return bool(prov and x.p2pmem is not None and x.p2pmem != prov and not self._published(prov))

    def _recover(self, before: st.TargetState, targets: dict[str, hp.NsTarget]) -> list[str]:
        """After a refused step the rollback cannot always write a removed provider's BDF
        back (ENODEV): a namespace that served before (``before``: the tree the burst's first
        step read under the lock) must serve again, from host memory if its provider is gone.
        What to re-enable is decided under the lock, from the tree read there."""
        fix: dict[str, st.Namespace] = {}

        def want(now, managed):
            fix.clear()
            for k in targets:
                n = self.facts.namespaces[k]
                was = before.subsystems.get(n.nqn, st.Subsystem(n.nqn)).namespaces.get(n.nsid)
                cur = now.subsystems.get(n.nqn, st.Subsystem(n.nqn)).namespaces.get(n.nsid)
                if was and cur and was.enable and not cur.enable and targets[k].enable is not False:
                    p2p = was.attrs.get("p2pmem", "0")
                    if _is_bdf(p2p) and not self._published(p2p):
                        p2p = "0"
                    fix[k] = st.Namespace(n.nsid, True, {"p2pmem": p2p})
            return partial_desired(now, managed, fix, self.facts)
        try:
            with lastapply.recorded(self.o.state_dir, "watch", root=self.o.root) as rec:
                rec.outcome = reconcile(self.o.root, want, self.o.state_dir, cfs=self._cfs(),
                                        kernel=self.o.kernel, lock_timeout=self.o.lock_timeout)
        except (ApplyFailed, NvmetP2PError) as exc:
            return [f"re-enabling {', '.join(fix)} failed too: {exc}"] if fix else []
        return [f"{k} re-enabled with p2pmem {fix[k].attrs['p2pmem']}" +
                (" (host memory)" if fix[k].attrs["p2pmem"] == "0" else "") for k in fix]

    def _published(self, bdf: str) -> bool:
        return _read(self.o.root, f"/sys/bus/pci/devices/{bdf}/p2pmem/published") == "1"

    def _wait_paths(self, targets: dict[str, hp.NsTarget]) -> None:
        """A re-enable opens device_path: give udev a moment to create a by-id link."""
        probe = Probe(self.o.root)
        deadline = time.monotonic() + PATH_WAIT
        for k, x in targets.items():
            if not x.enable:
                continue
            path = x.device_path or self.facts.namespaces[k].device_path
            while probe.block_device(path) is None and time.monotonic() < deadline:
                time.sleep(0.05)


class _Wake:
    """A pipe the signal handler writes to, so that select() returns at once."""

    def __init__(self):
        self.r, self.w = os.pipe()
        os.set_blocking(self.w, False)

    def fileno(self) -> int:
        return self.r

    def set(self) -> None:
        try:
            os.write(self.w, b"x")
        except OSError:
            pass


def _is_bdf(v: str) -> bool:
    return hp._is_bdf(v)


def partial_desired(live: st.TargetState, managed, changes: dict[str, st.Namespace],
                    facts: hp.Facts) -> st.TargetState:
    """A desired state naming only the changed namespaces (and, so that nothing else moves,
    the subsystems' host links nvmet-p2p made); everything it does not name is left alone.

    ``live`` and ``managed`` are what the reconcile read under the apply lock: a namespace or
    subsystem that is gone by then (another apply pruned it) is not named -- never re-created
    -- and only the host links that are still there and still managed are named."""
    out = st.TargetState()
    for k, ns in changes.items():
        nqn = facts.namespaces[k].nqn
        ls = live.subsystems.get(nqn)
        if ls is None or ns.nsid not in ls.namespaces:
            continue
        hosts = [h for h in ls.allowed_hosts if (nqn, h) in managed.allowed_hosts]
        sub = out.subsystems.setdefault(nqn, st.Subsystem(nqn, {}, hosts))
        sub.namespaces[ns.nsid] = ns
    return out


def install_signal_handlers(w: Watcher) -> None:
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, w.stop)


def rewrite_pending(w: Watcher) -> int:
    """``watch --rewrite-pending``: do every rewrite a watcher held back (``status`` lists them
    as REWRITE PENDING) now, and exit: 0 when all were written or had nothing left to write,
    1 when one failed."""
    w.settle()
    w.refresh()
    w.load_pending()
    if not w.pending:
        w.log({"msg": "no rewrite pending", "state_dir": w.o.state_dir})
        return 0
    done = w.run_pending(sorted(w.pending), why="the operator ran nvmet-p2p watch --rewrite-pending")
    return 1 if any(d.action == "failed" for d in done) else 0
