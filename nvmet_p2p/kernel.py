"""How the kernel names things, for every layer: kernel releases, PCI device names and the
booleans its attributes parse, and which device instance sits at a PCI name now. A leaf: it
imports nothing of nvmet-p2p."""

from __future__ import annotations

import glob
import os
import re
import time
from dataclasses import dataclass

#: A PCI device name as the kernel prints it (``dev_name()``: ``%04x:%02x:%02x.%d``).
BDF_RE = re.compile(r"^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
#: A full BDF in either case (what a desired-state file may give for ``p2pmem``).
BDF_ANYCASE_RE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
#: A BDF without its domain (a common mistake: ``03:00.0``).
BDF_NO_DOMAIN_RE = re.compile(r"^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")

def parse_kernel_version(text: str) -> tuple[int, int]:
    """``"7.3.4+deb13-amd64"`` or ``"5.15"`` -> ``(7, 3)``: the release whose rules apply."""
    m = re.match(r"^\s*(\d+)\.(\d+)", text or "")
    if not m:
        raise ValueError(f"not a kernel release: {text!r}")
    return int(m.group(1)), int(m.group(2))


def is_bdf(text: str) -> bool:
    """True for a full PCI device name with domain, e.g. ``0000:03:00.0``."""
    return bool(BDF_RE.match(text))


def kstrtobool(s: str) -> bool | None:
    """The kernel's ``kstrtobool()`` behind boolean attributes (and ``p2pmem``'s non-BDF
    values): the first character decides (``1 y Y t T`` true, ``0 n N f F`` false), plus
    ``on``/``off``; ``None`` where the kernel returns -EINVAL."""
    if not s:
        return None
    if s[0] in "1yYtT":
        return True
    if s[0] in "0nNfF":
        return False
    if s[:2].lower() == "on":
        return True
    if s[:3].lower() == "off":
        return False
    return None


@dataclass(frozen=True)
class PciInstance:
    """The PCI device the kernel has at one BDF *now*.

    The kernel creates a new ``struct pci_dev`` every time a device appears (boot, hot-add), and
    whoever took a reference to the old one (an nvmet namespace's ``p2pmem``, a connected
    controller's p2p map) keeps the old one, which has no memory behind it any more. The BDF
    alone therefore does not say which device a namespace uses; these do:

    * ``appeared``: when this ``pci_dev`` was set up, in seconds of ``CLOCK_MONOTONIC`` (the
      clock of ``time.monotonic()``; the kernel log's timestamps agree with it to a fraction of
      a second). The kernel starts a device's runtime-PM accounting when it initialises the
      device (``pci_pm_init()`` -> ``pm_runtime_enable()``) and counts every millisecond since
      in ``power/runtime_active_time`` + ``power/runtime_suspended_time``, so now minus their
      sum is the device's birth. Measured in the lab (kernel 7.3, TCG): 2.88 s for a boot-time
      NVMe whose ``pci ... PCIe Endpoint`` line is at 2.80 s, 276.58 s for the same drive
      hot-added again (its line at 276.33 s). The sysfs directory's own times are *not* this:
      kernfs stamps an inode when it is first looked up (the same boot-time device's directory
      carried a time 27 s after boot).
    * ``serial``: the NVMe controller's serial (a different drive in the slot).

    ``appeared`` is None when the kernel has no runtime-PM files (``CONFIG_PM`` off) or the
    clock of the tree is not known (a snapshot without ``proc/uptime``).
    """

    bdf: str
    present: bool
    appeared: float | None = None
    serial: str | None = None
    published: bool | None = None

    def to_dict(self) -> dict[str, object]:
        return {"bdf": self.bdf, "present": self.present, "appeared": self.appeared,
                "serial": self.serial, "published": self.published}


def _text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def monotonic_now(root: str = "/") -> float | None:
    """Seconds of the kernel's ``CLOCK_MONOTONIC`` under ``root``: the live clock for ``/``; for
    another root (a snapshot, a test tree) its ``proc/uptime`` when it has one, else None."""
    if os.path.realpath(root) == "/":
        return time.monotonic()
    up = _text(os.path.join(root, "proc/uptime"))
    try:
        return float(up.split()[0]) if up else None
    except ValueError:
        return None


def read_pci_instance(root: str, bdf: str, now: float | None = None) -> PciInstance:
    """The device at ``bdf`` under ``root`` (see :class:`PciInstance`); ``now``: the tree's
    ``CLOCK_MONOTONIC`` (default :func:`monotonic_now`)."""
    base = os.path.join(root, "sys/bus/pci/devices", bdf)
    if not os.path.isdir(base):
        return PciInstance(bdf, False)
    appeared = None
    active = _text(os.path.join(base, "power/runtime_active_time"))
    suspended = _text(os.path.join(base, "power/runtime_suspended_time"))
    if now is None:
        now = monotonic_now(root)
    if now is not None and active is not None and active.isdigit() and (suspended or "0").isdigit():
        appeared = round(now - (int(active) + int(suspended or "0")) / 1000.0, 3)
    serial = None
    for c in sorted(glob.glob(os.path.join(base, "nvme", "nvme*"))):
        serial = _text(os.path.join(c, "serial")) or serial
        if serial:
            break
    pub = _text(os.path.join(base, "p2pmem/published"))
    return PciInstance(bdf, True, appeared, serial, None if pub is None else pub == "1")
