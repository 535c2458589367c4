"""Facts about the machine a measurement ran on (hostname, kernel, emulation, tool versions)."""

from __future__ import annotations

import os
import platform
import subprocess

from nvmet_p2p import __version__
from nvmet_p2p.harness.hostsys import read_text

EMULATED_LABEL = "QEMU, emulated; not a performance claim"


def emulation_label(root: str = "/") -> str | None:
    """The label numbers must carry when measured inside QEMU (DMI vendor/product), else None."""
    dmi = os.path.join(root, "sys/class/dmi/id")
    text = " ".join(read_text(os.path.join(dmi, f)) for f in ("sys_vendor", "product_name", "bios_vendor"))
    if "QEMU" in text or "Bochs" in text:
        return EMULATED_LABEL
    return None


def tool_version(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0] if out else None


def host_facts(root: str = "/") -> dict:
    return {"hostname": platform.node(), "kernel": platform.release(), "nvmet_p2p": __version__}
