"""Capture exactly what the inventory readers read, so ``--root DIR`` reproduces the machine.

:class:`RecordingRoot` is a :class:`~nvmet_p2p.pci.inventory.SysRoot` that remembers every path the
readers touched: file contents (binary config space included), every symlink traversed on the
way (with its target, so realpath chains such as
``/sys/bus/pci/devices/0000:03:00.0 -> ../../../devices/pci0000:00/...`` survive), directories
listed and files only tested for existence. :func:`take_snapshot` runs the normal reader
through it and writes the recorded tree, plus ``nvmet-p2p-snapshot.json`` with what sysfs
cannot hold (the netlink addresses the live read got, who took it, when). It then reads the
new directory back and checks that the inventory is identical.

Nothing is written outside the target directory, and nothing is written to the machine.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from nvmet_p2p import __version__
from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.pci.inventory import SNAPSHOT_META, SysRoot, live_netlink, read_inventory
from nvmet_p2p.pci.model import Inventory

FORMAT = 1


class RecordingRoot(SysRoot):
    """A :class:`SysRoot` that records what it reads (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str] = "/"):
        super().__init__(root)
        self.files: dict[str, bytes | None] = {}   # real path -> bytes (None: existence only)
        self.links: dict[str, str] = {}            # link path -> raw target
        self.dirs: set[str] = set()                # real directory paths

    def _on_link(self, path: str, target: str) -> None:
        self.links[path] = target

    def _on_file(self, real: str, data: bytes | None) -> None:
        if data is not None or real not in self.files:
            self.files[real] = data if data is not None else self.files.get(real)

    def _on_dir(self, real: str, entries: dict[str, str] | None) -> None:
        self.dirs.add(real)
        for name, kind in (entries or {}).items():
            if kind == "d":
                self.dirs.add(posixpath.join(real, name))

    # -- writing -----------------------------------------------------------------------------
    def write_tree(self, dest: str) -> int:
        """Recreate the recorded paths below ``dest``; returns the number of entries."""
        def host(p: str) -> str:
            return os.path.join(dest, p.lstrip("/"))

        link_paths = set(self.links)
        count = 0
        for d in sorted(self.dirs):
            if d != "/" and d not in link_paths:
                os.makedirs(host(d), exist_ok=True)
                count += 1
        for path, target in sorted(self.links.items()):
            hp = host(path)
            os.makedirs(os.path.dirname(hp), exist_ok=True)
            if os.path.lexists(hp):
                continue
            os.symlink(target, hp)
            count += 1
        for path, data in sorted(self.files.items()):
            hp = host(path)
            if os.path.islink(hp):
                continue
            os.makedirs(os.path.dirname(hp), exist_ok=True)
            with open(hp, "wb") as f:
                f.write(data or b"")
            count += 1
        return count


def _comparable(inv: Inventory) -> dict[str, Any]:
    d = inv.to_dict()
    d.pop("source", None)
    return d


def take_snapshot(dest: str | os.PathLike[str], *, root: str | os.PathLike[str] = "/",
                  force: bool = False, netlink: Callable[[], Any] | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Snapshot ``root`` (default the live system) into the new directory ``dest``.

    Returns a summary dict (``path``, ``entries``, ``bytes``, counts, ``warnings``). Refuses a
    non-empty ``dest`` unless ``force`` (then it is replaced). The snapshot is built in a
    temporary sibling directory and renamed into place only after the read-back check passed.
    """
    dest = os.path.abspath(os.fspath(dest))
    src = os.path.abspath(os.fspath(root))
    parent = _check_destination(dest, src, force)
    rec = RecordingRoot(src)
    if progress:
        progress(f"reading {src}")
    inv, captured = _read_recorded(rec, src, netlink)
    tmp = tempfile.mkdtemp(prefix=".nvmet-p2p-snapshot-", dir=parent)
    keep_tmp = False
    try:
        entries = rec.write_tree(tmp)
        _write_meta(tmp, rec, src, inv, captured)
        if progress:
            progress(f"checking the snapshot reads back the same ({entries} entries)")
        a, b = _comparable(inv), _comparable(read_inventory(tmp))
        if a != b:
            keep_tmp = True
            diff = [k for k in a if a[k] != b.get(k)]
            raise NvmetP2PError(f"snapshot self-check failed: re-reading it differs in {diff} "
                                f"(this is a bug in nvmet-p2p; the partial snapshot is in {tmp})")
        size = sum(os.path.getsize(os.path.join(d, fn)) for d, _dirs, files in os.walk(tmp)
                   for fn in files if not os.path.islink(os.path.join(d, fn)))
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    finally:
        if not keep_tmp and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "path": dest, "source": src, "entries": entries, "bytes": size,
        "files": sum(1 for v in rec.files), "links": len(rec.links),
        "pci_functions": len(inv.pci), "providers": len(inv.providers(published_only=False)),
        "nvme_controllers": len(inv.nvme), "namespaces": len(inv.namespaces),
        "rdma_devices": len(inv.rdma), "netdevs": len(inv.net),
        "config_readable": inv.system.is_root, "kernel_release": inv.system.kernel_release,
        "verified": True, "warnings": list(inv.warnings),
    }


def _check_destination(dest: str, src: str, force: bool) -> str:
    """Refuse a destination that is a file, not empty (without ``force``), inside the tree
    read, or without a parent; returns the parent directory."""
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise InputError("exists and is not a directory", where=dest)
    if os.path.isdir(dest) and os.listdir(dest) and not force:
        raise InputError("directory is not empty (use --force to replace it)", where=dest)
    if src != "/" and (dest == src or dest.startswith(src + "/")):
        raise InputError("the snapshot cannot be written inside the tree it reads", where=dest)
    parent = os.path.dirname(dest) or "."
    if not os.path.isdir(parent):
        raise InputError("parent directory does not exist", where=parent)
    return parent


def _read_recorded(rec: RecordingRoot, src: str,
                   netlink: Callable[[], Any] | None) -> tuple[Any, ...]:
    """The inventory of ``src`` read through ``rec`` (which records every path read), and the
    netlink data it used (live, given, or carried over from a snapshot being re-snapshotted)."""
    captured: dict[str, dict[str, Any]] = {}

    def recording_netlink() -> Any:
        if netlink is not None:
            data = netlink()
        elif rec.live:
            data = live_netlink()
        else:
            return None
        captured.update(data)
        return data

    use_netlink = netlink is not None or rec.live
    inv = read_inventory(src, fs=rec, netlink=recording_netlink if use_netlink else None)
    if not use_netlink:
        try:
            with open(os.path.join(src, SNAPSHOT_META)) as f:
                captured.update(json.load(f).get("netlink", {}))
        except (OSError, ValueError):
            pass
    return inv, captured


def _write_meta(tmp: str, rec: RecordingRoot, src: str, inv: Any, captured: dict[str, Any]) -> None:
    meta = {
        "format": FORMAT, "kind": "snapshot", "tool": f"nvmet-p2p {__version__}",
        # (what datetime.now(timezone.utc).isoformat(timespec="seconds") and
        # socket.gethostname() give, without importing datetime and socket for two strings)
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "hostname": os.uname().nodename if rec.live else None,
        "source": src, "euid": os.geteuid(),
        "kernel_release": inv.system.kernel_release,
        "netlink": {k: v for k, v in captured.items() if k in inv.net},
    }
    with open(os.path.join(tmp, SNAPSHOT_META), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


__all__ = ["RecordingRoot", "take_snapshot", "FORMAT"]
