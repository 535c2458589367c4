"""Initiator-side sysfs: a fabrics controller, its namespaces and their block devices.

``/sys/class/nvme/<ctrl>/`` holds ``transport``, ``address``, ``subsysnqn``, ``state``,
``cntlid`` (the *target's* controller id, the number nvmet prints in ``Created nvm
controller <cntlid>``) and one directory per namespace path. With native multipath (the
default in Debian kernels) those directories are the hidden per-path disks
``nvme<S>c<C>n<H>`` and the block device to use is the head ``/dev/nvme<S>n<H>``; without
it they are ``nvme<C>n<H>`` themselves. ``n<H>`` is an instance number, **not** the nsid
(seen in the lab: ``nvme4c4n1`` had nsid 2), so the nsid always comes from the ``nsid``
attribute.

A head disk is shared by every controller of the subsystem: if the same subsystem is also
connected through another port, I/O on the head may take either path. :func:`other_paths`
tells.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

from nvmet_p2p.errors import NvmetP2PError

_NS_DIR_RE = re.compile(r"^nvme(?P<s>\d+)(?:c(?P<c>\d+))?n(?P<h>\d+)$")


def read_text(path: str, default: str | None = "") -> str | None:
    """A sysfs/procfs file's text, stripped; ``default`` when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


@dataclass
class HostNamespace:
    """One namespace as the initiator sees it."""

    nsid: int
    block: str                 # block device name to do I/O on ("nvme4n2")
    path_disk: str             # the per-controller directory ("nvme4c4n2" or "nvme4n2")
    multipath: bool
    size_bytes: int = 0
    logical_block_size: int = 512

    @property
    def device(self) -> str:
        return f"/dev/{self.block}"

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["device"] = self.device
        return d


@dataclass
class HostController:
    name: str                  # "nvme4"
    transport: str = ""
    address: str = ""
    subsysnqn: str = ""
    state: str = ""
    cntlid: int | None = None
    hostnqn: str = ""
    namespaces: list[HostNamespace] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["namespaces"] = [n.to_dict() for n in self.namespaces]
        return d


def read_controller(name: str, root: str = "/") -> HostController:
    base = os.path.join(root, "sys/class/nvme", name)
    if not os.path.isdir(base):
        raise NvmetP2PError(f"no NVMe controller {name} (/sys/class/nvme/{name} missing)")
    c = HostController(name=name, transport=read_text(f"{base}/transport"), address=read_text(f"{base}/address"),
                       subsysnqn=read_text(f"{base}/subsysnqn"), state=read_text(f"{base}/state"),
                       hostnqn=read_text(f"{base}/hostnqn"))
    cid = read_text(f"{base}/cntlid")
    c.cntlid = int(cid) if cid.isdigit() else None
    c.namespaces = read_namespaces(name, root)
    return c


def read_namespaces(ctrl: str, root: str = "/") -> list[HostNamespace]:
    base = os.path.join(root, "sys/class/nvme", ctrl)
    out = []
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    for e in entries:
        m = _NS_DIR_RE.match(e)
        if not m:
            continue
        nsid = read_text(os.path.join(base, e, "nsid"))
        if not nsid.isdigit():
            continue
        multipath = m.group("c") is not None
        block = f"nvme{m.group('s')}n{m.group('h')}" if multipath else e
        bdir = os.path.join(root, "sys/block", block)
        size = read_text(os.path.join(bdir, "size"))
        lbs = read_text(os.path.join(bdir, "queue/logical_block_size"))
        out.append(HostNamespace(nsid=int(nsid), block=block, path_disk=e, multipath=multipath,
                                 size_bytes=int(size) * 512 if size.isdigit() else 0,
                                 logical_block_size=int(lbs) if lbs.isdigit() else 512))
    return sorted(out, key=lambda n: n.nsid)


def other_paths(ctrl: HostController, root: str = "/") -> list[str]:
    """Other controllers of the same subsystem on this host (paths the head disk may use)."""
    out = []
    for c in sorted(os.listdir(os.path.join(root, "sys/class/nvme")) if os.path.isdir(
            os.path.join(root, "sys/class/nvme")) else []):
        if c == ctrl.name:
            continue
        if read_text(os.path.join(root, "sys/class/nvme", c, "subsysnqn")) == ctrl.subsysnqn:
            out.append(c)
    return out


def wait_for_namespaces(ctrl: str, *, root: str = "/", nsids: list[int] | None = None,
                        timeout: float = 30.0, settle: float = 1.0, dev_root: str | None = None,
                        sleep=time.sleep, clock=time.monotonic) -> HostController:
    """Wait until the controller is live and its namespaces have block devices.

    With ``nsids`` it waits for exactly those; otherwise until at least one namespace exists
    and the set has not changed for ``settle`` seconds (namespaces are attached one by one
    after connect). Device nodes are checked under ``dev_root`` (default ``root``).
    """
    dev_root = root if dev_root is None else dev_root
    deadline = clock() + timeout
    last_set: tuple | None = None
    stable_since = clock()
    while True:
        c = read_controller(ctrl, root)
        present = tuple(n.nsid for n in c.namespaces
                        if os.path.exists(os.path.join(dev_root, "dev", n.block)))
        now = clock()
        if present != last_set:
            last_set, stable_since = present, now
        if c.state == "live":
            if nsids is not None:
                if set(nsids) <= set(present):
                    c.namespaces = [n for n in c.namespaces if n.nsid in nsids]
                    return c
            elif present and now - stable_since >= settle:
                c.namespaces = [n for n in c.namespaces if n.nsid in present]
                return c
        if now >= deadline:
            want = f"nsids {nsids}" if nsids else "any namespace"
            raise NvmetP2PError(f"controller {ctrl} (state {c.state or '?'}) did not show {want} "
                                f"with a block device within {timeout:.0f} s (seen: {list(present)})")
        sleep(0.2)


def find_controller(subsysnqn: str, transport: str, traddr: str | None, trsvcid: str | None,
                    root: str = "/") -> str | None:
    """An existing controller connected to that subsystem through that address."""
    base = os.path.join(root, "sys/class/nvme")
    if not os.path.isdir(base):
        return None
    for c in sorted(os.listdir(base)):
        d = os.path.join(base, c)
        if read_text(f"{d}/subsysnqn") != subsysnqn or read_text(f"{d}/transport") != transport:
            continue
        addr = dict(kv.split("=", 1) for kv in read_text(f"{d}/address").split(",") if "=" in kv)
        if transport == "loop" or (addr.get("traddr") == traddr and
                                   (not trsvcid or addr.get("trsvcid") == str(trsvcid))):
            return c
    return None
