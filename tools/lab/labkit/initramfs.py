"""A reproducible initramfs: busybox-static, the 9p/overlay modules, the lab's guest scripts.

Same inputs give the same bytes: entries are written in sorted order with fixed mtime (0),
owner (0:0) and inode numbers, by our own ``newc`` cpio writer, and compressed with gzip
without a name or timestamp (like ``gzip -n``). The cache file is named by a SHA256 over the
inputs (busybox binary, each module's bytes, the guest scripts, the builder version), so a
change in any of them builds a new image and an unchanged tree reuses the cached one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import subprocess
from pathlib import Path

from . import LabError
from .kernel import Kernel, locked

BUILDER_VERSION = "1"
#: modules the initramfs needs to reach the host root: 9p over virtio, overlayfs
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
GUEST_DIR = Path(__file__).resolve().parent.parent / "guest"
#: files copied from tools/lab/guest into the image (name in image -> source name, mode)
GUEST_FILES = {"init": ("initramfs-init", 0o755), "pid1.sh": ("pid1.sh", 0o755),
               "labguest.py": ("labguest.py", 0o755)}
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def _modname(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return base.replace("-", "_")


def module_closure(moddir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Relative module paths to insmod, dependencies first; built-in modules are skipped."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[_modname(mod)] = mod
    builtin = set()
    if (moddir / "modules.builtin").exists():
        builtin = {_modname(x) for x in (moddir / "modules.builtin").read_text().split()}
    order: list[str] = []

    def visit(mod: str) -> None:
        # modules.dep lists the full closure, deepest last: load in reverse
        for d in reversed(deps.get(mod, [])):
            if d not in order:
                visit(d)
        if mod not in order:
            order.append(mod)

    for name in wanted:
        key = name.replace("-", "_")
        if key in builtin:
            continue
        if key not in by_name:
            raise LabError(f"kernel module {name} is neither built in nor in {moddir}/modules.dep")
        visit(by_name[key])
    return order


def _decompress(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        proc = subprocess.run(["zstd", "-qdc", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise LabError(f"zstd -d {path} failed: {proc.stderr.decode().strip()} (install zstd)")
        return proc.stdout
    return data


class Cpio:
    """A minimal deterministic ``newc`` archive writer."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + nb)
        self.buf.write(b"\0" * (-(110 + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def find_busybox() -> Path:
    for p in BUSYBOX_CANDIDATES:
        if os.path.exists(p):
            out = subprocess.run(["file", "-L", p], stdout=subprocess.PIPE, text=True).stdout \
                if shutil.which("file") else ""
            if "dynamically linked" in out:
                continue
            return Path(p)
    raise LabError("busybox (static) not found: install busybox-static (tools/lab/setup)")


def inputs(kernel: Kernel) -> dict[str, bytes]:
    """Every file of the image, by its path inside the image."""
    moddir = Path(kernel.moddir)
    files: dict[str, bytes] = {"bin/busybox": find_busybox().read_bytes()}
    order = []
    for rel in module_closure(moddir, INITRAMFS_MODULES):
        name = os.path.basename(rel)
        for ext in (".xz", ".zst", ".gz"):
            if name.endswith(ext):
                name = name[: -len(ext)]
        files[f"mods/{name}"] = _decompress(moddir / rel)
        order.append(name)
    files["modules.order"] = ("\n".join(order) + "\n").encode()
    for dst, (src, _mode) in GUEST_FILES.items():
        p = GUEST_DIR / src
        if not p.exists():
            raise LabError(f"guest script missing: {p}")
        files[dst] = p.read_bytes()
    files["kernel-release"] = (kernel.release + "\n").encode()
    return files


def content_key(files: dict[str, bytes]) -> str:
    h = hashlib.sha256(f"nvmet-p2p-lab-initramfs:{BUILDER_VERSION}\n".encode())
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:24]


def build_bytes(files: dict[str, bytes]) -> bytes:
    """The gzip'ed cpio for ``files`` (deterministic)."""
    c = Cpio()
    dirs = {"bin", "sbin", "dev", "proc", "sys", "mnt", "newroot", "mods", "tmp"}
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        c.dir(d)
    modes = {dst: mode for dst, (_src, mode) in GUEST_FILES.items()}
    modes["bin/busybox"] = 0o755
    for name in sorted(files):
        c.file(name, files[name], modes.get(name, 0o644))
    c.symlink("bin/sh", "busybox")
    raw = c.finish()
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw)
    return out.getvalue()


def ensure_initramfs(cache: Path, kernel: Kernel) -> tuple[Path, bool]:
    """(path, came_from_cache) of the initramfs for this kernel and these guest scripts."""
    files = inputs(kernel)
    key = content_key(files)
    path = cache / "initramfs" / f"initramfs-{kernel.release}-{key}.cpio.gz"
    if path.exists():
        os.utime(path)  # mark as recently used
        return path, True
    with locked(cache / "initramfs.lock"):
        if path.exists():
            return path, True
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(build_bytes(files))
        tmp.rename(path)
        # keep the cache small, but never pull an image from under a run that may be booting it
        # (several checkouts with different guest scripts share the cache): keep the 8 newest
        # and anything used in the last hour
        import time
        olds = sorted(path.parent.glob("initramfs-*.cpio.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in olds[8:]:
            if time.time() - old.stat().st_mtime > 3600:
                old.unlink(missing_ok=True)
    return path, False
