"""Watch the kernel log while p2p-test's I/O runs, and stop at the kernel's first refusal.

A peer-to-peer DMA the kernel refuses does not stop an I/O engine by itself: the block layer
fails each request (``invalid error, dev nvme3n1, sector 0 op 0x0:(READ)``, after the
p2pdma line ``cannot be used for peer-to-peer DMA ...`` the first time the pair is
evaluated -- the answer is cached, so later runs show only the request errors), fio carries on
through its matrix, and in the lab the NVMe then timed out commands and was reset over and over
(QEMU 7.2 TCG: eight controller resets in ten minutes). So p2p-test follows the log
(:class:`nvmet_p2p.kmsg.Follower`, one non-blocking read per new record) and stops its I/O
at the first of:

* a p2pdma or nvmet refusal (:data:`nvmet_p2p.observe.evidence.REFUSAL_KINDS`);
* a request failed with BLK_STS_INVAL (``invalid error, dev <disk>``): what a refused p2p
  page looks like to the block layer;
* an NVMe command timeout or a controller reset (``I/O tag ... timeout``, ``resetting
  controller``, ``controller is down; will reset``).

Only lines about the run's own devices count (the provider's and the namespaces' PCI
functions, disks and controllers), so another process's trouble does not stop the test.
After a stop, :func:`settle_controllers` waits (bounded) until the namespaces' controllers
are ``live`` again, so the test never ends with a drive left resetting without saying so.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.observe import explain

#: how often the follower is drained while I/O runs
POLL_S = 0.2
#: how long :func:`settle_controllers` waits for a controller to be live again
SETTLE_S = 60.0

REFUSAL, INVALID, TIMEOUT, RESET = "refusal", "invalid_request", "timeout", "controller_reset"

_INVALID = re.compile(r"\binvalid error, dev (?P<disk>[\w-]+)")


@dataclass
class Stop:
    """Why the I/O was stopped: the kind and the kernel's line."""

    kind: str
    line: str

    @property
    def refused(self) -> bool:
        """The kernel refused the p2p DMA (not a timeout or a reset)."""
        return self.kind in (REFUSAL, INVALID)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "line": self.line}


def classify(line: str) -> str | None:
    """The stop kind of a kernel log line, or ``None``."""
    if _INVALID.search(line):
        return INVALID
    e = ev.parse_line(line)
    if e is not None and e.kind in ev.REFUSAL_KINDS:
        return REFUSAL
    c = explain.parse_line(line)
    if c is not None and c.kind == explain.KIND_TIMEOUT:
        return TIMEOUT
    if c is not None and c.kind == explain.KIND_RESET:
        return RESET
    return None


class KernelWatch:
    """Follows the kernel log from now on; :meth:`check` returns the first :class:`Stop` about
    ``names`` (PCI BDFs, disks, controllers; empty: any) or ``None``. :meth:`start` also polls
    in a thread and calls ``on_stop`` once (to kill the I/O engine)."""

    def __init__(self, log, names: set[str]):
        self.follower = log.follow() if hasattr(log, "follow") else None
        self.names = {n for n in names if n}
        self.stop: Stop | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    def _about_us(self, line: str) -> bool:
        return not self.names or any(re.search(rf"(?<![\w:.]){re.escape(n)}(?![\w.])", line)
                                     for n in self.names)

    def check(self) -> Stop | None:
        with self._lock:
            if self.stop is None and self.follower is not None:
                for rec in self.follower.drain():
                    kind = classify(rec.text)
                    if kind and self._about_us(rec.text):
                        self.stop = Stop(kind, rec.text)
                        break
            return self.stop

    def start(self, on_stop: Callable[[Stop], None]) -> "KernelWatch":
        def loop():
            while not self._done.wait(POLL_S):
                if self.check() is not None:
                    on_stop(self.stop)
                    return
        self._done.clear()
        self._thread = threading.Thread(target=loop, daemon=True, name="p2p-test-kmsg")
        self._thread.start()
        return self

    def pause(self) -> None:
        """Stop polling (the I/O process ended); :meth:`check` still works."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self.pause()
        if self.follower is not None:
            self.follower.close()


def device_names(root: str, devices: list[str], provider: str, pcis: list[str]) -> set[str]:
    """What the kernel calls the run's devices: PCI functions, disks, their controllers."""
    names = {provider, *pcis}
    for dev in devices:
        disk = os.path.basename(os.path.realpath(dev) if root == "/" else dev)
        names.add(disk)
        ctrl = controller_of(root, disk)
        if ctrl:
            names.add(ctrl)
    return names


def controller_of(root: str, disk: str) -> str | None:
    """``nvme3`` for ``nvme3n1`` (``/sys/block/<disk>/device`` is its controller)."""
    link = os.path.join(root, "sys/block", disk, "device")
    try:
        name = os.path.basename(os.path.realpath(link))
    except OSError:
        return None
    return name if re.fullmatch(r"nvme\d+", name) else None


def settle_controllers(root: str, disks: list[str], *, timeout: float = SETTLE_S,
                       sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic) -> dict[str, str]:
    """Wait until every disk's NVMe controller reads ``live`` (``/sys/class/nvme/<c>/state``)
    or ``timeout`` passed; returns each controller's last state (``"unknown"`` unreadable)."""
    ctrls = sorted({c for d in disks if (c := controller_of(root, d))})
    t0 = clock()
    while True:
        states = {}
        for c in ctrls:
            try:
                with open(os.path.join(root, "sys/class/nvme", c, "state")) as f:
                    states[c] = f.read().strip() or "unknown"
            except OSError:
                states[c] = "unknown"
        if all(s in ("live", "unknown") for s in states.values()) or clock() - t0 >= timeout:
            return states
        sleep(0.5)
