"""How the kernel names things, for every layer: kernel releases, PCI device names and the
booleans its attributes parse. A leaf: it imports nothing of nvmet-p2p."""

from __future__ import annotations

import re

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
