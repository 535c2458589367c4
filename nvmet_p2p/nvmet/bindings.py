"""``<state dir>/p2pmem-bindings.json``: which provider *device* each namespace's ``p2pmem``
was bound to when nvmet-p2p last wrote it.

Writing a BDF into a namespace's ``p2pmem`` makes the kernel look the PCI device up by name
and keep a reference to it (``pci_p2pdma_enable_store()``); the namespace uses that device
until ``p2pmem`` is written again (disable, write, enable). When the provider is hot-removed
and comes back at the same BDF it is a new device the namespace does not use, although
``p2pmem`` still reads the same BDF and every later host connection logs ``nvmet: using
p2pmem on <BDF>`` again. The kernel shows neither the write nor the device the namespace
holds, so every apply that writes ``p2pmem`` records it here (from
:func:`nvmet_p2p.nvmet.lastapply.recorded`): the time of the apply (``CLOCK_MONOTONIC``, the
clock of the kernel log), the boot, and the device's identity then
(:class:`nvmet_p2p.kernel.PciInstance`). ``status`` compares it with the device at that BDF
now: a device that appeared after the write is one the namespace does not use.

Reads never fail the caller (an unreadable or oversized record is no record); reads and writes
go through the state directory's checks (:class:`nvmet_p2p.safefs.PrivateDir`), writes are
atomic and durable.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.kernel import is_bdf, monotonic_now, read_pci_instance
from nvmet_p2p.nvmet.journal import boot_id
from nvmet_p2p.safefs import PrivateDir
from nvmet_p2p.safeload import LIMITS, decode, loads_json

FILE = "p2pmem-bindings.json"
FORMAT = 1


@dataclass(frozen=True)
class Binding:
    """One namespace's ``p2pmem`` as nvmet-p2p last wrote it."""

    namespace: str                  # "<nqn>/<nsid>"
    p2pmem: str                     # the BDF written
    written: float | None           # CLOCK_MONOTONIC seconds when the apply that wrote it began
    time: float                     # wall clock of the same moment
    boot_id: str | None
    appeared: float | None = None   # the provider device's birth then (PciInstance.appeared)
    serial: str | None = None

    def to_dict(self) -> dict:
        return {"p2pmem": self.p2pmem, "written": self.written, "time": self.time,
                "boot_id": self.boot_id, "appeared": self.appeared, "serial": self.serial}


def path(directory: str) -> str:
    return os.path.join(directory, FILE)


def load(directory: str, boot_id: str | None = None) -> dict[str, Binding]:
    """``{"<nqn>/<nsid>": Binding}``; with ``boot_id``, only the bindings of that boot (a
    reboot rebuilt every device and every namespace)."""
    try:
        raw = PrivateDir(directory).read(FILE, LIMITS["record"])
        if raw is None:
            return {}
        doc = loads_json(decode(raw, path(directory)), path(directory))
        out = {}
        for key, d in (doc.get("namespaces") or {}).items():
            b = Binding(str(key), str(d["p2pmem"]), _float(d.get("written")), float(d.get("time") or 0.0),
                        d.get("boot_id"), _float(d.get("appeared")), d.get("serial"))
            if boot_id is None or b.boot_id == boot_id:
                out[b.namespace] = b
        return out
    except (NvmetP2PError, OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _float(v) -> float | None:
    return None if v is None else float(v)


def _namespace_of(rel: str) -> tuple[str, str] | None:
    """``subsystems/<nqn>/namespaces/<nsid>/<attr>`` -> ("<nqn>/<nsid>", attr)."""
    parts = rel.strip("/").split("/")
    if len(parts) >= 4 and parts[0] == "subsystems" and parts[2] == "namespaces":
        return f"{parts[1]}/{parts[3]}", "/".join(parts[4:])
    return None


def changes(ops, written: float | None, wall: float, boot: str | None, root: str = "/"
            ) -> tuple[dict[str, Binding], set[str]]:
    """What a finished apply's operations (:class:`nvmet_p2p.nvmet.plan.Op`) did to the
    bindings: namespaces whose ``p2pmem`` got a BDF (bound now), and namespaces whose
    ``p2pmem`` became ``0``/``1`` or that were removed (no binding any more)."""
    bound: dict[str, Binding] = {}
    gone: set[str] = set()
    now = monotonic_now(root)
    for op in ops:
        ns = _namespace_of(op.path)
        if ns is None:
            continue
        key, attr = ns
        if op.action == "rmdir" and attr == "":
            gone.add(key)
            bound.pop(key, None)
        elif op.action == "write" and attr == "p2pmem":
            value = (op.value or "").strip().lower()
            if is_bdf(value):
                inst = read_pci_instance(root, value, now)
                bound[key] = Binding(key, value, written, wall, boot, inst.appeared, inst.serial)
                gone.discard(key)
            else:
                gone.add(key)
                bound.pop(key, None)
    return bound, gone


def note_apply(directory: str, ops, started: float, started_wall: float, root: str = "/") -> None:
    """Record the bindings a finished apply made (``started``: ``time.monotonic()`` when it
    began: a device that appeared after that cannot be the one it bound). Nothing to record:
    nothing written."""
    boot = boot_id(root)
    bound, gone = changes(ops, started if os.path.realpath(root) == "/" else monotonic_now(root),
                          started_wall, boot, root)
    if not bound and not gone:
        return
    cur = load(directory, boot)
    for k in gone:
        cur.pop(k, None)
    cur.update(bound)
    doc = {"format": FORMAT, "updated": time.time(),
           "namespaces": {k: b.to_dict() for k, b in sorted(cur.items())}}
    PrivateDir(directory).write(FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n", mode=0o600)
