"""Read the machine: sysfs and procfs below an injectable root -> :class:`~nvmet_p2p.pci.model.Inventory`.

The root is the live system (``/``) or a directory captured by ``nvmet-p2p snapshot`` (or a
test tree from ``tests/support/sysfs.py``). There is one code path for all of them: plain file
reads, directory listings and symlink resolution *inside* the root (:class:`SysRoot`) --
libudev itself does nothing more than this. The only thing sysfs cannot hold are the IP
addresses of network interfaces: on a live system they come from rtnetlink (nvmet_p2p.pci.addresses, pyroute2), in a
snapshot from the ``nvmet-p2p-snapshot.json`` file the snapshot recorded them into.

What is read, and where the kernel keeps it:

* PCI functions: ``/sys/bus/pci/devices/<bdf>`` resolves to
  ``/sys/devices/pciDDDD:BB/<bridge>/.../<bdf>``; the ``pciDDDD:BB`` component is the host
  bridge, the BDF components before the function are its upstream bridges (what
  ``pci_upstream_bridge()`` walks). ``physfn`` maps a VF to its PF. ``config`` is parsed for the
  PCI Express port type and the ACS Capability/Control words (extended capability 0x000D);
  reads by non-root users stop at 64 bytes, which is recorded as ``config_readable=False``.
* p2pmem providers: ``<bdf>/p2pmem/{size,available,published}`` (+ ``allocate`` on 6.2+).
* NVMe: ``/sys/class/nvme/nvmeX`` (CMBSZ/CMBLOC from ``cmbsz``/``cmbloc``, or the older
  ``cmb`` text), namespaces from ``/sys/block`` (a head disk under
  ``/sys/devices/virtual/nvme-subsystem`` has no PCI parent; hidden per-path disks are listed
  as its ``paths``).
* RDMA: ``/sys/class/infiniband/<dev>`` (PCI parent or a virtual soft device), ports, netdevs
  from ``gid_attrs/ndevs``, ``device/net`` and rxe's ``parent``. The lab's rxe_p2p device
  (``node_desc`` ``rxe_p2p``, its ``device`` the PCI NIC) is a PCI RDMA device labelled as
  the emulated NIC it is (``emulated``).
* Block devices and what uses them (the export policy): ``/sys/class/block/<name>``
  (``dev``, ``partition``, ``holders/``, ``dm/name``), ``/proc/self/mountinfo`` (else
  ``/proc/mounts``) and ``/proc/swaps``.
* System: ``/proc/sys/kernel/osrelease``, ``/proc/cmdline``, ``/proc/cpuinfo``, ``/proc/modules``,
  ``/proc/mounts``, ``/sys/class/iommu``, ``/sys/kernel/iommu_groups``, nvme module parameters,
  the kernel config (``/boot/config-R``, ``/lib/modules/R/config``, ``/proc/config.gz``) and
  ``modules.dep``/``modules.builtin``.

Bad input (a missing file the kernel always has, a value that does not parse) raises
:class:`~nvmet_p2p.errors.InputError` naming the file; absences a real machine can have
(no config space access, no kernel config file, no netlink) become ``Inventory.warnings``.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import re
import struct
from collections.abc import Callable

from nvmet_p2p import paths, safeload
from nvmet_p2p.errors import InputError
from nvmet_p2p.kernel import is_bdf
from nvmet_p2p.pci import model
from nvmet_p2p.pci.model import (
    BlockDevice,
    CmbInfo,
    Inventory,
    NetDevice,
    NvmeController,
    NvmeNamespace,
    P2pMem,
    PciFunction,
    RdmaDevice,
    RdmaPort,
    SystemInfo,
    bdf_sort_key,
)

#: File at the top of a snapshot with what sysfs cannot hold (netlink addresses, metadata).
SNAPSHOT_META = "nvmet-p2p-snapshot.json"

#: Kernel config options the rules and checks look at (value "y"/"m"/"n").
WATCHED_CONFIG = (
    "CONFIG_PCI_P2PDMA", "CONFIG_ZONE_DEVICE", "CONFIG_CONFIGFS_FS", "CONFIG_BLK_DEV_NVME",
    "CONFIG_NVME_CORE", "CONFIG_NVME_MULTIPATH", "CONFIG_NVME_TARGET", "CONFIG_NVME_TARGET_RDMA",
    "CONFIG_NVME_TARGET_TCP", "CONFIG_NVME_TARGET_LOOP", "CONFIG_INFINIBAND", "CONFIG_RDMA_RXE",
    "CONFIG_RDMA_SIW", "CONFIG_PCI_IOV", "CONFIG_IOMMU_SUPPORT", "CONFIG_INTEL_IOMMU",
    "CONFIG_AMD_IOMMU", "CONFIG_INTEL_IOMMU_DEFAULT_ON", "CONFIG_IOMMU_DEFAULT_PASSTHROUGH",
)

#: Modules worth listing as "available" (the rest of modules.dep is noise for this tool).
INTERESTING_MODULE = re.compile(
    r"^(nvme|nvme_\w+|nvmet|nvmet_\w+|rdma_\w+|ib_\w+|iw_cm|siw|configfs|mlx[45]_\w+|irdma|"
    r"bnxt_re|qedr|efa|erdma|rdma_rxe)$")

PCI_DEVICES_RE = re.compile(r"^/sys/devices/(pci[0-9a-f]{4,}:[0-9a-f]{2})((?:/[^/]+)*)$")
HOST_BRIDGE_RE = re.compile(r"^pci[0-9a-f]{4,}:[0-9a-f]{2}$")

PCI_CAP_EXP = 0x10
PCI_EXT_CAP_ACS = 0x000D
#: Bytes of config space a root read returns at least (a non-root read gets 64).
CONFIG_FULL = 256


# ---------------------------------------------------------------------------------------------
# The filesystem view
# ---------------------------------------------------------------------------------------------

class SysRoot:
    """Plain reads of absolute paths (``/sys/...``) below ``root``, links resolved inside it.

    Symlinks are followed the way the kernel would if ``root`` were ``/`` (an absolute
    target starts again at ``root``), so a snapshot directory behaves like the machine it came
    from. :mod:`nvmet_p2p.pci.snapshot` subclasses this to record every path it touches.
    """

    MAX_LINKS = 40

    def __init__(self, root: str | os.PathLike = "/"):
        self.root = os.path.abspath(os.fspath(root))
        self.live = self.root == "/"
        self._cache: dict[str, str] = {}

    # -- paths -------------------------------------------------------------------------------
    def host(self, path: str) -> str:
        """The host path of an absolute in-root path (what error messages show)."""
        if self.live:
            return path
        return self.root + path if path != "/" else self.root

    def _lstat_link(self, path: str) -> str | None:
        """The link target if ``path`` (already resolved up to its parent) is a symlink."""
        try:
            return os.readlink(self.host(path))
        except OSError:
            return None

    def _on_link(self, path: str, target: str) -> None:
        """Hook: a symlink was traversed (the recorder keeps it)."""

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """``realpath`` inside the root. Missing components are kept as they are."""
        return self._resolve(posixpath.normpath("/" + path.lstrip("/")), follow_last, 0, path)

    def _resolve(self, path: str, follow_last: bool, hops: int, orig: str) -> str:
        if "\0" in path:   # a name read from a corrupt file; no path holds a NUL
            raise InputError(f"a path built from what was read contains a NUL byte: {orig[:120]!r}",
                             where=self.root)
        if path == "/":
            return "/"
        key = f"{int(follow_last)}{path}"
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        parent, name = posixpath.split(path)
        rparent = self._resolve(parent, True, hops, orig)
        cand = posixpath.join(rparent, name)
        target = self._lstat_link(cand) if follow_last else None
        if target is None:
            real = cand
        else:
            if hops >= self.MAX_LINKS:
                raise InputError("too many levels of symbolic links", where=self.host(orig))
            self._on_link(cand, target)
            base = "/" if target.startswith("/") else rparent
            real = self._resolve(posixpath.normpath(posixpath.join(base, target)), True,
                                 hops + 1, orig)
        self._cache[key] = real
        return real

    # -- reads (all take absolute in-root paths) ----------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        real = self.resolve(path)
        # os.open/os.read: three syscalls per sysfs attribute (io.open adds fstat/ioctl/lseek),
        # which matters under TCG where a syscall costs ~1 ms.
        fd = os.open(self.host(real), os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        self._on_file(real, data)
        return data

    def _on_file(self, real: str, data: bytes | None) -> None:
        """Hook: a file was read (``data``) or found to exist (``None``)."""

    def _on_dir(self, real: str, entries: dict[str, str] | None) -> None:
        """Hook: a directory exists (``entries``: name -> "d"/"f"/"l" when listed)."""

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def listdir(self, path: str) -> list[str]:
        real = self.resolve(path)
        kinds: dict[str, str] = {}
        with os.scandir(self.host(real)) as it:       # d_type: no stat per entry
            for e in it:
                if e.is_symlink():
                    kinds[e.name] = "l"
                elif e.is_dir(follow_symlinks=False):
                    kinds[e.name] = "d"
                else:
                    kinds[e.name] = "f"
        names = sorted(kinds)
        self._on_dir(real, kinds)
        for n, k in kinds.items():
            child = posixpath.join(real, n)
            if k == "l":
                self._on_link(child, os.readlink(self.host(child)))
            else:
                self._cache.setdefault(f"1{child}", child)   # not a link: resolves to itself
        return names

    def readlink(self, path: str) -> str:
        real = self.resolve(path, follow_last=False)
        target = os.readlink(self.host(real))
        self._on_link(real, target)
        return target

    def exists(self, path: str) -> bool:
        real = self.resolve(path)
        hp = self.host(real)
        if os.path.isdir(hp):
            self._on_dir(real, None)
            return True
        if os.path.exists(hp):
            self._on_file(real, None)
            return True
        return False

    def is_dir(self, path: str) -> bool:
        real = self.resolve(path)
        if os.path.isdir(self.host(real)):
            self._on_dir(real, None)
            return True
        return False


# ---------------------------------------------------------------------------------------------
# Small parsers (each raises InputError naming the file)
# ---------------------------------------------------------------------------------------------

class _Reader:
    """Holds the root, the warnings and the helpers that turn files into values."""

    def __init__(self, fs: SysRoot):
        self.fs = fs
        self.warnings: list[str] = []
        self.config_full_reads = 0
        self.config_short_reads = 0

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def text(self, path: str, *, required: bool = False, what: str = "") -> str | None:
        """The file's text, stripped; ``None`` when absent (``InputError`` if ``required``)."""
        try:
            return self.fs.read_text(path).strip()
        except FileNotFoundError:
            if required:
                raise InputError(f"missing file{(' (' + what + ')') if what else ''}",
                                 where=self.fs.host(path)) from None
            return None
        except IsADirectoryError:
            raise InputError("expected a file, found a directory", where=self.fs.host(path)) from None
        except OSError as exc:
            # sysfs attributes can refuse reads (EINVAL for empty GID slots, EIO, EACCES)
            if required:
                raise InputError(f"cannot read: {exc.strerror}", where=self.fs.host(path)) from None
            return None

    def hexint(self, path: str, *, required: bool = True) -> int | None:
        t = self.text(path, required=required)
        if t is None:
            return None
        try:
            return int(t, 16)
        except ValueError:
            raise InputError(f"not a hexadecimal number: {t!r}", where=self.fs.host(path)) from None

    def decint(self, path: str, *, required: bool = False) -> int | None:
        t = self.text(path, required=required)
        if t is None:
            return None
        try:
            return int(t, 10)
        except ValueError:
            raise InputError(f"not a decimal number: {t!r}", where=self.fs.host(path)) from None

    def flag(self, path: str, *, required: bool = False) -> bool | None:
        t = self.text(path, required=required)
        if t is None:
            return None
        if t in ("1", "Y", "y"):
            return True
        if t in ("0", "N", "n"):
            return False
        raise InputError(f"not a boolean (0/1/Y/N): {t!r}", where=self.fs.host(path))

    def listdir(self, path: str) -> list[str]:
        try:
            return self.fs.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            self.warn(f"cannot list {path}: {exc.strerror}")
            return []


def block_device_name(root: str | os.PathLike, path: str) -> str | None:
    """The block device a ``/dev`` path names, following links inside ``root``:
    ``/dev/disk/by-id/nvme-eui.0123...`` -> ``nvme1n1``, ``/dev/nvme1n1`` -> ``nvme1n1``.
    ``None`` when ``path`` is not under ``/dev`` or does not lead to a ``/dev/<name>`` node
    (a snapshot holds no ``/dev``: a by-id path then stays unresolved)."""
    if not path or not path.startswith("/dev/"):
        return None
    real = SysRoot(root).resolve(path)
    name = real[len("/dev/"):] if real.startswith("/dev/") else ""
    return name if name and "/" not in name else None


def pci_parent(real: str) -> str | None:
    """The PCI function a device path sits below (the kernel's ``find_parent_pci_dev``).

    ``/sys/devices/pci0000:00/0000:00:04.0/.../0000:03:00.0/nvme/nvme0`` -> ``0000:03:00.0``;
    anything not under ``/sys/devices/pciDDDD:BB`` (virtual devices) -> ``None``.
    """
    m = PCI_DEVICES_RE.match(real)
    if not m:
        return None
    last = None
    for comp in m.group(2).split("/"):
        if is_bdf(comp):
            last = comp
    return last


def parse_config(data: bytes) -> dict:
    """PCI Express port type and ACS words from raw config space bytes.

    Returns ``{"readable", "pcie_type", "acs_cap", "acs_ctrl", "vendor", "device"}``.
    ``readable`` is False for a non-root read (64 bytes): nothing past the header is known then.
    The capability lists are walked defensively (bounded, aligned, no loops); a malformed chain
    stops the walk and sets ``"malformed"``.
    """
    out = {"readable": len(data) >= CONFIG_FULL, "pcie_type": None, "acs_cap": None,
           "acs_ctrl": None, "vendor": None, "device": None, "malformed": None}
    if len(data) >= 4:
        out["vendor"], out["device"] = struct.unpack_from("<HH", data, 0)
    if not out["readable"]:
        return out
    status = struct.unpack_from("<H", data, 0x06)[0]
    if status & 0x10:
        ptr = data[0x34] & 0xFC
        seen: set[int] = set()
        while ptr:
            if ptr < 0x40 or ptr + 4 > min(len(data), 256) or ptr in seen:
                out["malformed"] = f"capability pointer {ptr:#x}"
                break
            seen.add(ptr)
            if data[ptr] == PCI_CAP_EXP:
                out["pcie_type"] = (struct.unpack_from("<H", data, ptr + 2)[0] >> 4) & 0xF
            ptr = data[ptr + 1] & 0xFC
    if len(data) > 0x100 and out["pcie_type"] is not None:
        off = 0x100
        seen = set()
        while off:
            if off < 0x100 or off + 8 > len(data) or off in seen or off & 3:
                out["malformed"] = f"extended capability offset {off:#x}"
                break
            seen.add(off)
            hdr = struct.unpack_from("<I", data, off)[0]
            if hdr in (0, 0xFFFFFFFF):
                break
            if hdr & 0xFFFF == PCI_EXT_CAP_ACS:
                out["acs_cap"], out["acs_ctrl"] = struct.unpack_from("<HH", data, off + 4)
                break
            off = hdr >> 20
    return out


def parse_cpulist(text: str) -> list[int]:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``."""
    out: list[int] = []
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def parse_kernel_config(text: str) -> dict[str, str]:
    """``CONFIG_X=y`` / ``# CONFIG_X is not set`` lines -> ``{"CONFIG_X": "y"|"m"|"n"|value}``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, sep, val = line.partition("=")
            if sep:
                out[key.strip()] = val.strip().strip('"')
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-len(" is not set")].strip()] = "n"
    return out


def module_name(path: str) -> str:
    """``kernel/drivers/nvme/target/nvmet-rdma.ko.xz`` -> ``nvmet_rdma``."""
    base = path.rsplit("/", 1)[-1]
    i = base.find(".ko")
    if i > 0:
        base = base[:i]
    return base.replace("-", "_")


# ---------------------------------------------------------------------------------------------
# The readers
# ---------------------------------------------------------------------------------------------

def read_inventory(root: str | os.PathLike = "/", *, fs: SysRoot | None = None,
                   netlink: Callable[[], dict[str, dict]] | None = None) -> Inventory:
    """Read everything the pure logic needs from ``root`` (``/`` or a snapshot directory).

    ``netlink`` returns ``{ifname: {"addresses": [CIDR, ...], ...}}``; by default it is
    :func:`live_netlink` on ``/`` and the snapshot's recorded data elsewhere.
    """
    fs = fs or SysRoot(root)
    if not os.path.isdir(fs.root):
        raise InputError("no such directory", where=fs.root)
    if not fs.live and not os.path.isdir(fs.host("/sys")):
        raise InputError("not a snapshot or sysfs tree: no sys/ directory in it", where=fs.root)
    r = _Reader(fs)
    inv = Inventory(source=fs.root)
    inv.pci = _read_pci(r)
    inv.nvme, inv.namespaces = _read_nvme(r)
    inv.net = _read_net(r, netlink)
    inv.rdma = _read_rdma(r)
    inv.blocks = _read_blocks(r)
    inv.system = _read_system(r)
    if inv.pci:
        inv.system.is_root = r.config_full_reads > 0
        if r.config_short_reads:
            r.warn(f"PCI config space beyond 64 bytes was not readable for {r.config_short_reads} "
                   f"of {len(inv.pci)} functions (not root?): PCIe port types and ACS control "
                   f"words are unknown there")
    else:
        inv.system.is_root = fs.live and os.geteuid() == 0
    inv.warnings = r.warnings
    return inv


def _read_pci(r: _Reader) -> dict[str, PciFunction]:
    """/sys/bus/pci/devices: every function, where it sits in the tree, and its p2pmem."""
    out: dict[str, PciFunction] = {}
    base = "/sys/bus/pci/devices"
    names = r.listdir(base)
    if not names and not r.fs.is_dir(base):
        r.warn(f"{base} does not exist: no PCI devices read")
    for name in names:
        if not is_bdf(name):
            r.warn(f"ignoring {base + '/' + name}: not a PCI device name")
            continue
        d, host_bridge, comps = _pci_place(r, f"{base}/{name}", name)
        f = PciFunction(bdf=name, host_bridge=host_bridge, upstream=comps[:-1])
        f.vendor = r.hexint(f"{d}/vendor")
        f.device = r.hexint(f"{d}/device")
        f.class_code = r.hexint(f"{d}/class")
        f.subsystem_vendor = r.hexint(f"{d}/subsystem_vendor", required=False)
        f.subsystem_device = r.hexint(f"{d}/subsystem_device", required=False)
        numa = r.decint(f"{d}/numa_node")
        f.numa_node = numa if numa is not None and numa >= 0 else None
        try:
            f.driver = posixpath.basename(r.fs.readlink(f"{d}/driver"))
        except OSError:
            f.driver = None
        try:
            f.physfn = posixpath.basename(r.fs.resolve(f"{d}/physfn")) \
                if r.fs.readlink(f"{d}/physfn") else None
        except OSError:
            f.physfn = None
        _read_config(r, f, f"{d}/config")
        f.p2pmem = _read_p2pmem(r, f"{d}/p2pmem")
        out[name] = f
    return dict(sorted(out.items(), key=lambda kv: bdf_sort_key(kv[0])))


def _pci_place(r: _Reader, link: str, name: str) -> tuple[str, str | None, list[str]]:
    """Where the device link resolves: the device directory, its host bridge and the chain of
    BDFs from the root bus down to ``name``."""
    real = r.fs.resolve(link)
    m = PCI_DEVICES_RE.match(real)
    comps = [c for c in (m.group(2).split("/") if m else []) if c]
    host_bridge = m.group(1) if m else None
    # A domain hosted by a PCI device (Intel VMD: .../0000:00:0e.0/pci10000:00/10000:...)
    # has its own host bridge: the kernel's chain starts at the innermost pciDDDD:BB.
    nested = [i for i, c in enumerate(comps) if HOST_BRIDGE_RE.match(c)]
    if nested:
        host_bridge, comps = comps[nested[-1]], comps[nested[-1] + 1:]
    if not m or not comps or comps[-1] != name or not all(is_bdf(c) for c in comps):
        raise InputError(f"does not resolve to /sys/devices/pciDDDD:BB/.../{name} "
                         f"(resolves to {real}); a snapshot must keep the symlinks",
                         where=r.fs.host(link))
    return real, host_bridge, comps


def _read_p2pmem(r: _Reader, pd: str) -> P2pMem | None:
    """The provider's ``p2pmem/`` directory (``pci_p2pdma_add_resource()`` made it), if any."""
    if not r.fs.is_dir(pd):
        return None
    size = r.decint(f"{pd}/size", required=True)
    avail = r.decint(f"{pd}/available", required=True)
    pub = r.flag(f"{pd}/published", required=True)
    return P2pMem(size=size, available=avail, published=bool(pub),
                  allocate=r.fs.exists(f"{pd}/allocate"))


def _read_config(r: _Reader, f: PciFunction, path: str) -> None:
    try:
        data = r.fs.read_bytes(path)
    except FileNotFoundError:
        r.warn(f"{f.bdf}: no config space file ({path}): ACS and port type unknown")
        return
    except OSError as exc:
        r.warn(f"{f.bdf}: cannot read {path}: {exc.strerror}")
        r.config_short_reads += 1
        return
    if len(data) < 64:
        raise InputError(f"truncated config space: {len(data)} bytes (a read returns 64 for "
                         f"non-root users and 256 or 4096 for root)", where=r.fs.host(path))
    cfg = parse_config(data)
    f.config_readable = cfg["readable"]
    if cfg["readable"]:
        r.config_full_reads += 1
    else:
        r.config_short_reads += 1
    f.pcie_type = cfg["pcie_type"]
    f.acs_cap = cfg["acs_cap"]
    f.acs_ctrl = cfg["acs_ctrl"]
    if cfg["malformed"]:
        r.warn(f"{f.bdf}: malformed capability list in {path} "
               f"({cfg['malformed']}); ACS may be unknown")


_RELEASE_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+~-]{0,63}")   # `uname -r`: one path component
_CMB_TEXT = re.compile(r"cmbloc\s*:\s*(?:0?x)?([0-9a-fA-F]+)\s*cmbsz\s*:\s*(?:0?x)?([0-9a-fA-F]+)")


def _read_nvme(r: _Reader) -> tuple[dict[str, NvmeController], dict[str, NvmeNamespace]]:
    """/sys/class/nvme (controllers, their CMB), /sys/class/nvme-subsystem (which controllers
    belong together) and /sys/block (namespaces, multipath heads and their hidden paths)."""
    ctrls: dict[str, NvmeController] = {}
    for name in r.listdir("/sys/class/nvme"):
        ctrls[name] = _read_nvme_controller(r, name)
    # subsystems: which controllers belong together
    for s in r.listdir("/sys/class/nvme-subsystem"):
        sd = r.fs.resolve(f"/sys/class/nvme-subsystem/{s}")
        for e in r.listdir(sd):
            if e in ctrls:
                ctrls[e].subsystem = s

    namespaces: dict[str, NvmeNamespace] = {}
    hidden_paths: dict[str, str] = {}   # path disk -> controller
    for name in r.listdir("/sys/block"):
        if not re.match(r"^nvme\d+(c\d+)?n\d+$", name):
            continue
        ns = _read_nvme_namespace(r, name, ctrls, hidden_paths)
        if ns is not None:
            namespaces[name] = ns
    # Hidden path disks not reached through a head's multipath/ dir still say which ctrl serves
    for p, ctrl in hidden_paths.items():
        if not any(p in ns.paths for ns in namespaces.values()):
            r.warn(f"{p}: hidden multipath path disk of {ctrl} without a head disk")
    for c in ctrls.values():
        c.namespaces.sort(key=_natural)
    return ctrls, namespaces


def _read_nvme_controller(r: _Reader, name: str) -> NvmeController:
    """One /sys/class/nvme/<name>: identity, state and CMB registers."""
    d = r.fs.resolve(f"/sys/class/nvme/{name}")
    transport = r.text(f"{d}/transport", required=True, what="NVMe transport")
    c = NvmeController(name=name, transport=transport, pci=pci_parent(d))
    if transport == "pcie" and c.pci is None:
        r.warn(f"{name}: pcie controller without a PCI parent ({d})")
    c.serial = r.text(f"{d}/serial") or ""
    c.model = r.text(f"{d}/model") or ""
    c.firmware = r.text(f"{d}/firmware_rev") or ""
    c.subsysnqn = r.text(f"{d}/subsysnqn") or ""
    c.address = r.text(f"{d}/address") or ""
    c.state = r.text(f"{d}/state") or ""
    c.cmb = _read_cmb(r, d)
    return c


def _read_cmb(r: _Reader, d: str) -> CmbInfo | None:
    """The controller's CMBSZ/CMBLOC (``cmbsz``/``cmbloc``, or the older ``cmb`` text line);
    ``None`` without a CMB."""
    cmbsz = r.decint(f"{d}/cmbsz")
    cmbloc = r.decint(f"{d}/cmbloc")
    if cmbsz is None:
        legacy = r.text(f"{d}/cmb")
        if legacy is not None:
            m = _CMB_TEXT.search(legacy)
            if not m:
                raise InputError(f"cannot parse CMB registers from {legacy!r}",
                                 where=r.fs.host(f"{d}/cmb"))
            cmbloc, cmbsz = int(m.group(1), 16), int(m.group(2), 16)
    if not cmbsz:
        return None
    if cmbloc is None:
        raise InputError("cmbsz is present but cmbloc is not", where=r.fs.host(f"{d}/cmbloc"))
    return CmbInfo.decode(cmbsz, cmbloc)


def _read_nvme_namespace(r: _Reader, name: str, ctrls: dict[str, NvmeController],
                         hidden_paths: dict[str, str]) -> NvmeNamespace | None:
    """One /sys/block/<name> namespace disk, linked to its controller(s); a hidden multipath
    path disk is only recorded in ``hidden_paths`` (``None``)."""
    d = r.fs.resolve(f"/sys/block/{name}")
    nsid = r.decint(f"{d}/nsid")
    if nsid is None:
        raise InputError("missing file (namespace id)", where=r.fs.host(f"{d}/nsid"))
    hidden = r.flag(f"{d}/hidden") or False
    parent = posixpath.basename(posixpath.dirname(d))
    if hidden:
        hidden_paths[name] = parent
        return None
    sectors = r.decint(f"{d}/size") or 0
    ns = NvmeNamespace(name=name, nsid=nsid, controller=None, pci=pci_parent(d),
                       size_bytes=sectors * 512)
    for attr in ("wwid", "nguid", "eui", "uuid"):
        setattr(ns, attr, r.text(f"{d}/{attr}") or None)
    if "/nvme-subsystem/" in d:
        # a multipath head: its controllers are the parents of the path disks
        ns.multipath_head = True
        ns.pci = None
        ns.paths = [p for p in r.listdir(f"{d}/multipath")]
        owners = []
        for p in ns.paths:
            pr = r.fs.resolve(f"{d}/multipath/{p}")
            owners.append(posixpath.basename(posixpath.dirname(pr)))
        ns.controller = owners[0] if owners else None
        for o in owners:
            if o in ctrls and name not in ctrls[o].namespaces:
                ctrls[o].namespaces.append(name)
    else:
        ns.controller = parent if parent in ctrls else None
        if ns.controller:
            ctrls[ns.controller].namespaces.append(name)
    return ns


def read_blocks(root: str | os.PathLike = "/") -> dict[str, BlockDevice]:
    """Only the block devices and what uses them (:func:`_read_blocks`), for a command that
    needs nothing else of the machine (``save`` marking in-use exports)."""
    return _read_blocks(_Reader(SysRoot(root)))


def _read_blocks(r: _Reader) -> dict[str, BlockDevice]:
    """``/sys/class/block`` (disks, partitions, dm, md: ``dev``, ``partition``, ``holders/``),
    the mount table (``/proc/self/mountinfo``, else ``/proc/mounts``) and ``/proc/swaps``:
    which block devices this machine is using."""
    out: dict[str, BlockDevice] = {}
    by_dev: dict[str, str] = {}
    by_path: dict[str, str] = {}          # /dev/<name>, /dev/mapper/<dm name> -> name
    for name in r.listdir("/sys/class/block"):
        d = r.fs.resolve(f"/sys/class/block/{name}")
        b = BlockDevice(name=name, dev=r.text(f"{d}/dev") or "")
        if r.fs.exists(f"{d}/partition"):
            b.disk = posixpath.basename(posixpath.dirname(d))
        b.holders = r.listdir(f"{d}/holders")
        out[name] = b
        by_path[f"/dev/{name}"] = name
        if b.dev:
            by_dev[b.dev] = name
        if name.startswith("dm-"):
            alias = r.text(f"{d}/dm/name")
            if alias:
                by_path[f"/dev/mapper/{alias}"] = name
    for b in out.values():
        if b.disk in out and b.name not in out[b.disk].partitions:
            out[b.disk].partitions.append(b.name)
    for b in out.values():
        b.partitions.sort(key=_natural)
    for dev, source, where in _read_mounts(r):
        name = by_dev.get(dev) or by_path.get(source)
        if name is not None and where not in out[name].mounts:
            out[name].mounts.append(where)
    swaps = r.text("/proc/swaps")
    for line in (swaps or "").splitlines()[1:]:
        name = by_path.get(_unoctal(line.split()[0])) if line.split() else None
        if name is not None:
            out[name].swap = True
    return out


def _read_mounts(r: _Reader) -> list[tuple[str, str, str]]:
    """``(major:minor, source, mount point)`` of every mount: ``/proc/self/mountinfo`` (the
    device number, which a bind mount or ``/dev/root`` keeps), else ``/proc/mounts`` (the
    source only)."""
    info = r.text("/proc/self/mountinfo")
    out = []
    if info is not None:
        for line in info.splitlines():
            head, sep, tail = line.partition(" - ")
            f, t = head.split(), tail.split()
            if sep and len(f) >= 5 and len(t) >= 2:
                out.append((f[2], _unoctal(t[1]), _unoctal(f[4])))
        return out
    mounts = r.text("/proc/mounts")
    if mounts is None:
        r.warn("/proc/self/mountinfo and /proc/mounts missing: mounted disks cannot be told "
               "apart (the export policy cannot refuse them)")
        return out
    for line in mounts.splitlines():
        f = line.split()
        if len(f) >= 2:
            out.append(("", _unoctal(f[0]), _unoctal(f[1])))
    return out


def _unoctal(text: str) -> str:
    """The kernel's escapes in mount tables (``\\040`` for a space, ``\\012`` newline)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _read_rdma(r: _Reader) -> dict[str, RdmaDevice]:
    out: dict[str, RdmaDevice] = {}
    for name in r.listdir("/sys/class/infiniband"):
        d = r.fs.resolve(f"/sys/class/infiniband/{name}")
        bdf = pci_parent(d)
        dev = RdmaDevice(name=name, pci=bdf, soft=bdf is None)
        dev.node_type = r.text(f"{d}/node_type") or ""
        node_desc = r.text(f"{d}/node_desc") or ""
        parent_netdev = r.text(f"{d}/parent")          # rdma_rxe only
        if bdf:
            pdir = r.fs.resolve(f"/sys/bus/pci/devices/{bdf}")
            try:
                dev.driver = posixpath.basename(r.fs.readlink(f"{pdir}/driver"))
            except OSError:
                dev.driver = None
            if node_desc == model.RXE_P2P_NODE_DESC:   # the lab's NIC: label it, nothing else
                dev.emulated = model.rxe_p2p_label(dev.driver, bdf)
                dev.driver = model.RXE_P2P_DRIVER
        elif parent_netdev is not None or node_desc == "rxe":
            dev.driver = "rdma_rxe"
        elif dev.node_type.startswith("4") or "iwarp" in node_desc.lower():
            dev.driver = "siw"
        netdevs: list[str] = []
        for p in sorted((x for x in r.listdir(f"{d}/ports") if x.isdigit()), key=int):
            pd = f"{d}/ports/{p}"
            port = RdmaPort(port=int(p), state=r.text(f"{pd}/state") or "",
                            phys_state=r.text(f"{pd}/phys_state") or "",
                            link_layer=r.text(f"{pd}/link_layer") or "",
                            rate=r.text(f"{pd}/rate") or "")
            slots = [s for s in r.listdir(f"{pd}/gid_attrs/ndevs") if s.isdigit()]
            for s in sorted(slots, key=int):
                nd = r.text(f"{pd}/gid_attrs/ndevs/{s}")   # EINVAL for empty slots: None
                if nd and nd not in port.netdevs:
                    port.netdevs.append(nd)
            dev.ports.append(port)
            netdevs.extend(port.netdevs)
        if bdf:
            pdir = r.fs.resolve(f"/sys/bus/pci/devices/{bdf}")
            netdevs.extend(r.listdir(f"{pdir}/net"))
        if parent_netdev:
            netdevs.append(parent_netdev)
        dev.netdevs = list(dict.fromkeys(netdevs))
        out[name] = dev
    return out


def _read_net(r: _Reader, netlink: Callable[[], dict[str, dict]] | None) -> dict[str, NetDevice]:
    out: dict[str, NetDevice] = {}
    for name in r.listdir("/sys/class/net"):
        d = r.fs.resolve(f"/sys/class/net/{name}")
        if not r.fs.is_dir(d):
            continue   # bonding_masters and friends are files
        n = NetDevice(name=name, pci=pci_parent(d))
        n.operstate = r.text(f"{d}/operstate") or ""
        n.mtu = r.decint(f"{d}/mtu")
        n.mac = r.text(f"{d}/address") or ""
        out[name] = n
    if not out:
        return out
    data = None
    if netlink is not None:
        data = netlink()
    elif r.fs.live:
        try:
            data = live_netlink()
        except OSError as exc:   # netlink unavailable (no permission, no module): not fatal
            r.warn(f"cannot read interface addresses through netlink: {exc}")
    else:
        data = snapshot_netlink(r)
    for name, rec in (data or {}).items():
        if name in out:
            addrs = rec.get("addresses", [])
            if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
                raise InputError(f"netlink.{name}.addresses is not a list of strings",
                                 where=r.fs.host("/" + SNAPSHOT_META))
            out[name].addresses = list(addrs)
    return out


def snapshot_netlink(r: _Reader) -> dict[str, dict] | None:
    """The netlink data a snapshot recorded (``None`` with a warning when it has none)."""
    path = "/" + SNAPSHOT_META
    try:
        raw = r.fs.read_text(path)
    except OSError:
        r.warn(f"{path} is missing: interface addresses unknown (a snapshot made "
               f"by `nvmet-p2p snapshot` records them)")
        return None
    meta = safeload.loads_json(raw, r.fs.host(path))
    if not isinstance(meta, dict) or not isinstance(meta.get("netlink", {}), dict):
        raise InputError("expected an object with a 'netlink' object", where=r.fs.host(path))
    return meta.get("netlink", {})


def live_netlink() -> dict[str, dict]:
    """IPv4/IPv6 addresses of every interface, from the kernel's rtnetlink (live only; see
    :mod:`nvmet_p2p.pci.addresses`); :class:`OSError` when netlink cannot be used (no permission, an
    error reply)."""
    # pyroute2 is imported here, where the addresses are read live: its import is 0.5 s on a
    # host and seconds under the lab's TCG, and most commands never read them (a snapshot, a
    # saved inventory, the status of an empty target)
    from nvmet_p2p.pci import addresses
    return addresses.interface_addresses()


def _read_system(r: _Reader) -> SystemInfo:
    s = SystemInfo()
    s.kernel_release = r.text("/proc/sys/kernel/osrelease") or ""
    if not _RELEASE_RE.fullmatch(s.kernel_release or "x"):
        # the release names /lib/modules/<release>/: it is one path component, never a path
        raise InputError(f"not a kernel release: {s.kernel_release[:80]!r}",
                         where=r.fs.host("/proc/sys/kernel/osrelease"))
    if not s.kernel_release:
        r.warn("kernel release unknown (/proc/sys/kernel/osrelease missing): "
               "pass --kernel X.Y")
    cmdline = r.text("/proc/cmdline")
    if cmdline is None:
        r.warn("/proc/cmdline missing: boot parameters (ACS, IOMMU) unknown")
    s.cmdline = cmdline or ""
    _read_cpu(r, s)
    s.iommu = bool(r.listdir("/sys/class/iommu"))
    s.iommu_groups = bool(r.listdir("/sys/kernel/iommu_groups"))
    s.nvme_use_cmb_sqes = r.flag("/sys/module/nvme/parameters/use_cmb_sqes")
    s.nvme_multipath = r.flag("/sys/module/nvme_core/parameters/multipath")
    online = r.text("/sys/devices/system/node/online")
    if online:
        try:
            s.numa_nodes = parse_cpulist(online)
        except ValueError:
            raise InputError(f"not a node list: {online!r}",
                             where=r.fs.host("/sys/devices/system/node/online")) from None
    _read_loaded(r, s)
    _read_nvmetcli_unit(r, s)
    s.nvmet_configfs = r.fs.is_dir("/sys/kernel/config/nvmet")
    rel = s.kernel_release
    if rel:
        _read_kernel_config(r, s, rel)
        _read_modules(r, s, rel)
    return s


#: nvmetcli's systemd unit: it restores /etc/nvmet/config.json after clearing the whole target
NVMETCLI_UNIT = "nvmet.service"
#: where ``systemctl enable`` (and ``enable --runtime``, ``mask``) put a unit's links
UNIT_DIRS = (paths.UNIT_DIR, "/run/systemd/system")


def _read_nvmetcli_unit(r: _Reader, s: SystemInfo) -> None:
    """Whether nvmetcli's unit is enabled, read from the filesystem as systemd keeps it (links
    in ``<dir>/<target>.wants/`` or ``.requires/``; masked: ``<dir>/nvmet.service`` -> /dev/null),
    never by asking systemd: the same under ``--root`` and in a snapshot."""
    links: list[str] = []
    for d in UNIT_DIRS:
        try:
            names = r.fs.listdir(d)
        except OSError:
            continue
        if NVMETCLI_UNIT in names:
            try:
                s.nvmetcli_unit_masked |= r.fs.readlink(f"{d}/{NVMETCLI_UNIT}") == "/dev/null"
            except OSError:
                pass                                   # a unit file, not a link
        for n in names:
            if n.endswith((".wants", ".requires")):
                try:
                    if NVMETCLI_UNIT in r.fs.listdir(f"{d}/{n}"):
                        links.append(f"{d}/{n}/{NVMETCLI_UNIT}")
                except OSError:
                    continue
    s.nvmetcli_unit_links = links


def _read_cpu(r: _Reader, s: SystemInfo) -> None:
    """The first CPU of /proc/cpuinfo: vendor and family (what ``cpu_supports_p2pdma()``
    looks at), model name."""
    cpuinfo = r.text("/proc/cpuinfo")
    if cpuinfo is None:
        r.warn("/proc/cpuinfo missing: CPU vendor unknown (the AMD rule cannot "
               "be applied)")
        return
    first = cpuinfo.split("\n\n", 1)[0]
    for line in first.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "vendor_id":
            s.cpu_vendor = val
        elif key == "cpu family":
            try:
                s.cpu_family = int(val)
            except ValueError:
                raise InputError(f"'cpu family' is not a number: {val!r}",
                                 where=r.fs.host("/proc/cpuinfo")) from None
        elif key == "model name":
            s.cpu_model_name = val


def _read_loaded(r: _Reader, s: SystemInfo) -> None:
    """/proc/modules (the loaded modules) and /proc/mounts (is configfs mounted)."""
    mods = r.text("/proc/modules")
    if mods is None:
        r.warn("/proc/modules missing: loaded modules unknown")
    else:
        s.modules_loaded = sorted({line.split()[0] for line in mods.splitlines() if line.strip()})
    mounts = r.text("/proc/mounts")
    if mounts is None:
        r.warn("/proc/mounts missing: configfs mount unknown")
    else:
        for line in mounts.splitlines():
            f = line.split()
            if len(f) >= 3 and f[2] == "configfs":
                s.configfs_mounted = True


def _read_kernel_config(r: _Reader, s: SystemInfo, rel: str) -> None:
    for path in (f"/boot/config-{rel}", f"/lib/modules/{rel}/config",
                 f"/usr/lib/modules/{rel}/config"):
        text = r.text(path)
        if text is not None:
            break
    else:
        path = "/proc/config.gz"
        try:
            raw = r.fs.read_bytes(path)
        except OSError:
            r.warn(f"no kernel config found (/boot/config-{rel}, /lib/modules/{rel}/config, "
                   f"/proc/config.gz): CONFIG_PCI_P2PDMA unknown")
            return
        try:
            text = gzip.decompress(raw).decode("utf-8", errors="replace")
        except (OSError, EOFError) as exc:
            raise InputError(f"not a gzip file: {exc}", where=r.fs.host(path)) from None
    cfg = parse_kernel_config(text)
    if not cfg:
        raise InputError("no CONFIG_ lines: not a kernel config", where=r.fs.host(path))
    s.kernel_config = {k: cfg.get(k, "n") for k in WATCHED_CONFIG}
    s.kernel_config_source = path


def _read_modules(r: _Reader, s: SystemInfo, rel: str) -> None:
    dep = r.text(f"/lib/modules/{rel}/modules.dep")
    if dep is None:
        dep = r.text(f"/usr/lib/modules/{rel}/modules.dep")
    if dep is None:
        r.warn(f"/lib/modules/{rel}/modules.dep not found: available modules unknown")
        return
    names = set()
    for line in dep.splitlines():
        if ":" in line:
            names.add(module_name(line.split(":", 1)[0].strip()))
    builtin = r.text(f"/lib/modules/{rel}/modules.builtin") or ""
    for line in builtin.splitlines():
        if line.strip():
            names.add(module_name(line.strip()))
    s.modules_available = sorted(n for n in names if INTERESTING_MODULE.match(n))


__all__ = ["SysRoot", "read_inventory", "parse_config", "parse_kernel_config", "pci_parent",
           "live_netlink", "module_name", "SNAPSHOT_META", "WATCHED_CONFIG"]
