"""The export policy: which ``device_path`` values nvmet-p2p exports, and which it refuses
(docs/export-policy.md#what-is-exported).

nvmet exports whatever path a namespace's ``device_path`` names: a block device through its
bdev backend, anything else it can open through its file backend (``buffered_io``). Only a
block device is what nvmet-p2p is for (p2pmem needs the bdev backend: the kernel refuses
peer-to-peer DMA for a non-block namespace), and a disk this machine is itself using is
almost never meant to be exported to other hosts: a host writing to it corrupts a mounted
filesystem, a swap area or an LVM/md volume under the running system.

So a namespace's ``device_path`` must be (refusals are errors, before anything is written):

* an absolute path (nvmet opens a relative one from the kernel's working directory);
* a block device (``/dev/...``, a ``/dev/disk/by-id`` link to one), or -- declared with
  ``backing: file`` in a state file -- a regular file outside the system directories
  (``/etc``, ``/boot``, ``/proc``, ``/sys``, ``/dev`` ...): ``/etc/shadow`` or
  ``/proc/kcore`` are never exported;
* not in use by this machine: not mounted, no mounted partition, not an active swap device,
  not held by device-mapper (LVM, dm-crypt, multipath), md RAID or bcache -- unless the
  profile or state says ``allow_in_use: true`` for that namespace (then it is a warning).

:func:`check` is pure (the facts of a path and the :class:`~nvmet_p2p.pci.model.Inventory`'s
block devices in, findings out); :func:`probe` is the edge that finds what a path is below an
injectable root, and :func:`infer` what an inventory alone says about it (``--inventory``).
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass

from nvmet_p2p import paths
from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet.state import TargetState
from nvmet_p2p.pci.inventory import SysRoot, read_blocks
from nvmet_p2p.pci.model import Inventory
from nvmet_p2p.policy.profile import by_id_names

#: directories whose files are never a namespace's backing file (the system's own files and
#: the kernel's pseudo filesystems)
SYSTEM_DIRS = ("/etc", "/boot", "/proc", "/sys", "/dev", "/run", "/usr", "/bin", "/sbin",
               "/lib", "/lib32", "/lib64", "/libx32", "/root", paths.STATE_DIR)

BACKINGS = ("block", "file")

#: kinds of :class:`Finding`
RELATIVE, NOT_BLOCK, SYSTEM_FILE, MISSING, IN_USE, BACKING = (
    "relative", "not_block_device", "system_file", "missing", "in_use", "backing_mismatch")


@dataclass
class PathFacts:
    """What a ``device_path`` is on the machine.

    ``kind``: ``block`` (``block`` names the kernel's block device), ``file`` (a regular
    file), ``char``, ``dir``, ``other``, ``missing`` (nothing there) or ``unknown`` (an
    inventory alone cannot say)."""

    path: str
    kind: str
    block: str | None = None
    real: str | None = None          # where the path leads (links resolved), when known


@dataclass
class Finding:
    """One thing the export policy says about a namespace's device path: refused
    (``error``) or accepted with a warning."""

    kind: str
    message: str
    error: bool = True


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in dirs)


def check(facts: PathFacts, inv: Inventory, *, allow_in_use: bool = False,
          backing: str = "block") -> list[Finding]:
    """The export policy for one namespace (see the module docstring). A ``missing`` or
    ``unknown`` path gives one :data:`MISSING` finding: whether that is an error is the
    caller's (a device may appear at boot)."""
    path = facts.path
    if not path.startswith("/"):
        return [Finding(RELATIVE, f"{path!r} is a relative path: nvmet opens it from the "
                                  "kernel's working directory; give the absolute /dev path "
                                  "of a block device")]
    where = facts.real or posixpath.normpath(path)
    shown = path if where == path else f"{path} (-> {where})"
    if _under(where, SYSTEM_DIRS) and not _under(where, ("/dev",)):
        # by its name: whatever is (or is not) there, nothing under /etc or /proc is a disk
        return [Finding(SYSTEM_FILE, f"{shown} is a system file (under {_system_dir(where)}): "
                                     "never exported")]
    if facts.kind in ("missing", "unknown"):
        what = ("does not exist" if facts.kind == "missing" else
                "is not a block device of this machine's inventory")
        return [Finding(MISSING, f"{shown} {what}")]
    if backing == "file":
        return _check_file(facts, shown, where)
    if facts.kind == "block":
        return _check_block(facts, inv, shown, allow_in_use)
    if facts.kind == "file" and not _under(where, ("/dev",)):
        return [Finding(NOT_BLOCK, f"{shown} is a regular file, not a block device (nvmet "
                                   "would export it through its file backend, without p2pmem); "
                                   "to export a file on purpose say backing: file")]
    if facts.kind == "file":
        return [Finding(SYSTEM_FILE, f"{shown} is a regular file under /dev, not a device: "
                                     "never exported")]
    what = {"char": "a character device", "dir": "a directory"}.get(facts.kind, "not a file")
    return [Finding(NOT_BLOCK, f"{shown} is {what}, not a block device: nvmet cannot export it")]


def _system_dir(path: str) -> str:
    return next(d for d in SYSTEM_DIRS if _under(path, (d,)))


def _check_file(facts: PathFacts, shown: str, where: str) -> list[Finding]:
    """``backing: file``: a regular file outside the system directories."""
    if facts.kind == "block":
        return [Finding(BACKING, f"{shown} is a block device, but the namespace says backing: "
                                 "file; remove it (nvmet uses its block device backend)")]
    if facts.kind != "file":
        return [Finding(NOT_BLOCK, f"{shown} is not a regular file (backing: file)")]
    if _under(where, ("/dev",)):
        return [Finding(SYSTEM_FILE, f"{shown} is a file under /dev (devtmpfs): never exported")]
    return []


def _check_block(facts: PathFacts, inv: Inventory, shown: str,
                 allow_in_use: bool) -> list[Finding]:
    """A block device: refused while this machine uses it, unless ``allow_in_use``."""
    if inv.blocks is None:
        return [Finding(IN_USE, f"{shown}: whether this machine uses it is unknown (the "
                                "inventory has no block devices: an older topology --json?)",
                        error=False)]
    uses = inv.block_usage(facts.block or "")
    if not uses:
        return []
    if allow_in_use:
        return [Finding(IN_USE, f"{shown} is exported although this machine uses it "
                                f"(allow_in_use): {'; '.join(uses)}", error=False)]
    return [Finding(IN_USE, f"{shown} is in use on this machine: {'; '.join(uses)}; "
                            "exporting it lets hosts write under the running system. Set "
                            "allow_in_use: true for this namespace to export it anyway")]


# ----------------------------------------------------------------------------------------------
# What a path is: on the machine (edge), or from an inventory alone (pure)
# ----------------------------------------------------------------------------------------------

def probe(root: str, path: str, inv: Inventory) -> PathFacts:
    """What ``path`` is below ``root`` (symlinks resolved inside it, as the kernel would if
    ``root`` were ``/``). A block device is named by its ``major:minor``; below another root (a
    snapshot or test tree, where ``/dev`` holds no device nodes) a ``/dev/<name>`` whose name
    is one of the inventory's block devices stands for that device."""
    if not path.startswith("/"):
        return PathFacts(path, "unknown")
    fs = SysRoot(root)
    try:
        real = fs.resolve(path)
    except InputError:         # too many links, a NUL: nothing the kernel could open either
        return PathFacts(path, "other")
    try:
        st = os.stat(fs.host(real))
    except FileNotFoundError:
        if fs.live:
            return PathFacts(path, "missing", real=real)
        return _inferred(infer(path, inv), real)
    except OSError:
        return PathFacts(path, "other", real=real)
    if stat.S_ISBLK(st.st_mode):
        dev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        name = next((b.name for b in (inv.blocks or {}).values() if b.dev == dev),
                    posixpath.basename(real))
        return PathFacts(path, "block", name, real)
    if not fs.live and real.startswith("/dev/") and \
            posixpath.basename(real) in (inv.blocks or inv.namespaces):
        return PathFacts(path, "block", posixpath.basename(real), real)
    kind = ("file" if stat.S_ISREG(st.st_mode) else "char" if stat.S_ISCHR(st.st_mode)
            else "dir" if stat.S_ISDIR(st.st_mode) else "other")
    return PathFacts(path, kind, real=real)


def _inferred(facts: PathFacts, real: str) -> PathFacts:
    facts.real = facts.real or real
    if facts.kind == "unknown":
        facts.kind = "missing"
    return facts


def infer(path: str, inv: Inventory) -> PathFacts:
    """What an inventory alone says about ``path``: ``/dev/<name>`` of one of its block
    devices, or a ``/dev/disk/by-id`` name udev gives one of its NVMe namespaces; anything
    else is ``unknown``."""
    norm = posixpath.normpath(path) if path.startswith("/") else path
    if norm.startswith("/dev/disk/by-id/"):
        link = norm[len("/dev/disk/by-id/"):]
        for ns in inv.namespaces.values():
            ctrl = inv.nvme.get(ns.controller or "")
            if ctrl is not None and link in by_id_names(ns, ctrl):
                return PathFacts(path, "block", ns.name, f"/dev/{ns.name}")
    elif norm.startswith("/dev/"):
        name = norm[len("/dev/"):]
        if name in (inv.blocks or {}) or name in inv.namespaces:
            return PathFacts(path, "block", name, norm)
    return PathFacts(path, "unknown")


# ----------------------------------------------------------------------------------------------
# A live target, saved: the consents it needs to be restored as it runs
# ----------------------------------------------------------------------------------------------

def mark_consents(state: TargetState, facts_of: Callable[[str], PathFacts],
                  inv: Inventory) -> list[str]:
    """Set ``allow_in_use`` / ``backing="file"`` on the namespaces of a *live* tree (what
    ``save`` writes) that export a device this machine uses or a regular file: the target runs
    them, so the boot that restores the file must take them too. Returns one note per
    namespace marked (``save`` says them; an export nobody meant shows up there)."""
    notes = []
    for nqn, sub in sorted(state.subsystems.items()):
        for nsid, ns in sorted(sub.namespaces.items()):
            path = ns.attrs.get("device_path", "")
            if not path:
                continue
            facts = facts_of(path)
            if facts.kind == "file":
                ns.backing = "file"
                notes.append(f"namespace {nqn}/{nsid}: {path} is a regular file: saved with "
                             "backing: file")
            elif facts.kind == "block":
                uses = inv.block_usage(facts.block or "")
                if uses:
                    ns.allow_in_use = True
                    notes.append(f"namespace {nqn}/{nsid}: {path} is in use on this machine "
                                 f"({'; '.join(uses)}): saved with allow_in_use: true")
    return notes


def consents_for_save(root: str) -> Callable[[TargetState], list[str]]:
    """:func:`mark_consents` for the live tree under ``root`` about to be saved (``save``,
    ``apply --save``, the Ansible module's ``save``): the block devices are read now, the
    marking is done on the tree the caller read. Returns the notes."""
    inv = Inventory(blocks=read_blocks(root))
    return lambda live: mark_consents(live, lambda p: probe(root, p, inv), inv)
