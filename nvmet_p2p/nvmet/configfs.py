"""The kernel's nvmet configfs tree (``/sys/kernel/config/nvmet``) as a small object model.

One class per kernel object, like the tree itself and like nvmetcli's ``nvmet/nvme.py``:
:class:`Root` (``discovery_nqn``), :class:`Subsystem`, :class:`Namespace`, :class:`Passthru`,
:class:`Port`, :class:`Referral`, :class:`ANAGroup` and :class:`Host`. Attributes are files;
their names carry a *group prefix* (``attr_``, ``device_``, ``addr_``, ``param_``, ``dhchap_``
...), and a few namespace files have none (``enable``, ``p2pmem``, ``buffered_io``,
``revalidate_size``) — the ones nvmetcli never sees.

Everything goes through :class:`Configfs`, which holds the injectable root (the live ``/`` or
a test tree) and **counts every mutation** (write, mkdir, rmdir, symlink, unlink): the apply
engine reports that number and the "re-apply is zero writes" promise is checked against it.

Which attributes exist depends on the kernel and its configuration (6.1 has no ``p2pmem`` and
no ``resv_enable``; ``param_mdts`` is recent; ``p2pmem`` needs ``CONFIG_PCI_P2PDMA``;
``dhchap_*`` needs ``CONFIG_NVME_TARGET_AUTH``). :func:`capabilities` reports what the running
kernel actually shows, and where nothing can be observed yet it says so and falls back to the
release table (:data:`nvmet_p2p.nvmet.spec.SPECS`), naming that as the source.

:func:`read_state` turns the live tree into a :class:`nvmet_p2p.nvmet.state.TargetState`.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p.kernel import parse_kernel_version
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.defs import rel_path_problem
from nvmet_p2p.nvmet.spec import SECRETS, SPECS
from nvmet_p2p.safeload import redact_later

NVMET_DIR = "sys/kernel/config/nvmet"

#: the kernel prints this for a namespace or passthru ``device_path`` never set
NULL_PATH = "(null)"

#: the kinds of object that have attribute files (capabilities are per kind)
ATTR_KINDS = tuple(k for k, s in SPECS.items() if s.attrs)

#: open a directory only to resolve paths relative to it (no read access, cheapest open)
_O_DIRPATH = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY


def _read_fd(fd: int) -> bytes:
    """The whole content of an attribute (configfs serves it in one read of <= PAGE_SIZE)."""
    b = os.read(fd, 8192)
    if len(b) < 8192:
        return b
    chunks = [b]
    while len(b) == 8192:
        b = os.read(fd, 8192)
        chunks.append(b)
    return b"".join(chunks)


class ConfigfsError(OSError):
    """An operation on configfs failed; ``errno`` and ``path`` (relative to nvmet) say which."""

    def __init__(self, op: str, rel: str, exc: OSError):
        super().__init__(exc.errno, exc.strerror)
        self.op = op
        self.rel = rel

    @property
    def errname(self) -> str:
        return _errno.errorcode.get(self.errno or 0, str(self.errno))


class Configfs:
    """Access to the nvmet tree below ``root`` with a count of every mutation.

    Paths given to the methods are relative to the nvmet directory
    (``"subsystems/<nqn>/namespaces/1/enable"``). ``writes`` counts write/mkdir/rmdir/
    symlink/unlink calls that reached the filesystem (also failed ones: the kernel saw them).
    ``journal`` (when not ``None``) receives one tuple per mutation, for tests and benchmarks.
    """

    def __init__(self, root: str = "/", base: str | None = None):
        self.root = root
        self.base = base or os.path.join(root, NVMET_DIR)
        self.writes = 0
        self.journal: list[tuple[Any, ...]] | None = None

    def path(self, rel: str = "") -> str:
        return os.path.join(self.base, rel) if rel else self.base

    # -- reading ---------------------------------------------------------------------------
    def present(self) -> bool:
        return os.path.isdir(self.base)

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.path(rel))

    def isdir(self, rel: str) -> bool:
        p = self.path(rel)
        return os.path.isdir(p) and not os.path.islink(p)

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(rel)))
        except FileNotFoundError:
            return []

    def files(self, rel: str) -> dict[str, int]:
        """Attribute files of a directory: name -> permission bits (one ``lstat`` per file)."""
        out = {}
        try:
            with os.scandir(self.path(rel)) as it:
                for e in it:
                    if e.is_file(follow_symlinks=False):
                        out[e.name] = e.stat(follow_symlinks=False).st_mode & 0o777
        except FileNotFoundError:
            pass
        return dict(sorted(out.items()))

    def attr_names(self, rel: str) -> list[str]:
        """Names of the attribute files of a directory, without a ``stat`` per file (configfs
        reports each entry's type in the directory listing itself)."""
        try:
            with os.scandir(self.path(rel)) as it:
                return sorted(e.name for e in it if e.is_file(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def read(self, rel: str) -> str:
        """An attribute's value as the kernel shows it, without the trailing newline. A secret
        (``dhchap_*key``) read is remembered for :func:`nvmet_p2p.safeload.redact`."""
        fd = os.open(self.path(rel), os.O_RDONLY)
        try:
            value = _read_fd(fd).decode("utf-8", errors="replace").rstrip("\n")
        finally:
            os.close(fd)
        if rel.rsplit("/", 1)[-1] in SECRETS and value.strip():
            redact_later(value)
        return value

    def read_many(self, rel: str, paths: list[str]) -> list[str | None]:
        """The values of the attribute files ``paths`` (relative to the directory ``rel``), in
        order, stripped of surrounding blanks and the newline (as :func:`read_state` gives
        them, like nvmetcli); ``None`` for a file this kernel does not have (or a write-only
        one), and all ``None`` when ``rel`` itself does not exist.

        This is the reconciler's hot path (3 values per namespace on every apply). Reading
        configfs costs mostly the path walk and the fresh inode configfs allocates on every
        open (it drops attribute dentries as soon as they are closed), so ``rel`` is resolved
        once (an ``O_PATH`` descriptor) and each value costs exactly open-relative, one read,
        close: no ``stat``, nothing read twice.
        """
        try:
            dfd = os.open(self.path(rel), _O_DIRPATH)
        except FileNotFoundError:
            return [None] * len(paths)
        out: list[bytes | None] = []
        append = out.append
        open_, read, close, rdonly = os.open, os.read, os.close, os.O_RDONLY   # (hot loop)
        try:
            for p in paths:
                try:
                    fd = open_(p, rdonly, dir_fd=dfd)
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    append(None)   # no such attribute (or object) on this kernel; write-only
                    continue
                try:
                    b = read(fd, 8192)
                    if len(b) == 8192:
                        b += _read_fd(fd)
                    append(b)
                except PermissionError:
                    append(None)
                finally:
                    close(fd)
        finally:
            close(dfd)
        return [None if b is None else b.decode("utf-8", "replace").strip() for b in out]

    def read_attrs(self, rel: str, wanted: dict[str, tuple[str, ...]]) -> dict[str, dict[str, str]]:
        """:meth:`read_many` by object: ``wanted`` maps a child directory of ``rel`` (``"7"``
        for namespace 7; ``""`` for ``rel`` itself) to the attribute names to read there.
        Returns ``{child: {name: value}}`` without the attributes that do not exist."""
        paths = [f"{child}/{name}" if child else name
                 for child, names in wanted.items() for name in names]
        vals = iter(self.read_many(rel, paths))
        out = {}
        for child, names in wanted.items():
            got = {}
            for name in names:
                v = next(vals)
                if v is not None:
                    got[name] = v
            out[child] = got
        return out

    def readlink(self, rel: str) -> str:
        return os.readlink(self.path(rel))

    # -- mutating (counted) ----------------------------------------------------------------
    @staticmethod
    def _named(op: str, *rels: str) -> None:
        """Refuse to mutate anything but named objects below nvmet/ (names never become
        paths; the planner checked them already, this is the last line). Raised as a refused
        operation, so an apply in progress rolls back."""
        for rel in rels:
            problem = rel_path_problem(rel)
            if problem:
                raise ConfigfsError(op, rel, OSError(_errno.EINVAL, f"refused by nvmet-p2p: path "
                                                                   f"{problem}"))

    def _mut(self, op: str, rel: str, fn: Callable[[], object], *extra: str) -> None:
        self.writes += 1
        if self.journal is not None:
            self.journal.append((op, rel) + extra)
        try:
            fn()
        except OSError as exc:
            raise ConfigfsError(op, rel, exc) from exc

    def write(self, rel: str, value: str) -> None:
        """One ``write(2)`` of ``value`` (as ``echo -n``); the kernel parses it."""
        self._named("write", rel)

        def do() -> None:
            fd = os.open(self.path(rel), os.O_WRONLY)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        self._mut("write", rel, do, value)

    def mkdir(self, rel: str) -> None:
        self._named("mkdir", rel)
        self._mut("mkdir", rel, lambda: os.mkdir(self.path(rel)))

    def rmdir(self, rel: str) -> None:
        self._named("rmdir", rel)
        self._mut("rmdir", rel, lambda: os.rmdir(self.path(rel)))

    def symlink(self, target_rel: str, link_rel: str) -> None:
        """Link ``link_rel`` to the object ``target_rel`` (both relative to nvmet)."""
        self._named("link", link_rel, target_rel)
        self._mut("link", link_rel, lambda: os.symlink(self.path(target_rel), self.path(link_rel)),
                  target_rel)

    def unlink(self, rel: str) -> None:
        self._named("unlink", rel)
        self._mut("unlink", rel, lambda: os.unlink(self.path(rel)))


# ----------------------------------------------------------------------------------------------
# The object model
# ----------------------------------------------------------------------------------------------

class Node:
    """One configfs directory of a kernel object."""

    kind = "node"

    def __init__(self, cfs: Configfs, rel: str):
        self.cfs = cfs
        self.rel = rel

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.rel or '/'}>"

    @property
    def exists(self) -> bool:
        return self.cfs.isdir(self.rel) if self.rel else self.cfs.present()

    def attr_path(self, name: str) -> str:
        return f"{self.rel}/{name}" if self.rel else name

    def attr_files(self) -> dict[str, int]:
        """The attribute files this kernel shows for this object: name -> mode bits."""
        return self.cfs.files(self.rel)

    def list_attrs(self, group: str) -> list[str]:
        """Names (without prefix) of the attributes of one group, like nvmetcli."""
        pre = group + "_"
        return sorted(n[len(pre):] for n in self.attr_files() if n.startswith(pre))

    def has_attr(self, name: str) -> bool:
        return name in self.attr_files()

    def get(self, name: str) -> str:
        return self.cfs.read(self.attr_path(name))

    def set(self, name: str, value: str) -> None:
        self.cfs.write(self.attr_path(name), value)

    def readable_attrs(self) -> dict[str, str]:
        """Every readable attribute (write-only files such as ``revalidate_size`` skipped)."""
        out = {}
        for name, mode in self.attr_files().items():
            if mode & 0o444:
                out[name] = self.get(name)
        return out


class Root(Node):
    """``nvmet/``: ``discovery_nqn`` plus the ``subsystems/``, ``ports/`` and ``hosts/`` groups."""

    kind = "root"

    def __init__(self, cfs: Configfs):
        super().__init__(cfs, "")

    def subsystems(self) -> list["Subsystem"]:
        return [Subsystem(self.cfs, n) for n in self.cfs.listdir("subsystems")]

    def ports(self) -> list["Port"]:
        out = []
        for n in self.cfs.listdir("ports"):
            try:
                out.append(Port(self.cfs, int(n)))
            except ValueError:
                continue
        return sorted(out, key=lambda p: p.portid)

    def hosts(self) -> list["Host"]:
        return [Host(self.cfs, n) for n in self.cfs.listdir("hosts")]


class Subsystem(Node):
    """``subsystems/<nqn>/``: ``attr_*`` files, ``namespaces/``, ``allowed_hosts/`` (symlinks to
    hosts) and, with CONFIG_NVME_TARGET_PASSTHRU, ``passthru/``."""

    kind = "subsystem"

    def __init__(self, cfs: Configfs, nqn: str):
        super().__init__(cfs, SPECS["subsystem"].path_of(nqn))
        self.nqn = nqn

    def namespaces(self) -> list["Namespace"]:
        out = []
        for n in self.cfs.listdir(f"{self.rel}/namespaces"):
            try:
                out.append(Namespace(self.cfs, self.nqn, int(n)))
            except ValueError:
                continue
        return sorted(out, key=lambda ns: ns.nsid)

    def allowed_hosts(self) -> list[str]:
        return self.cfs.listdir(f"{self.rel}/allowed_hosts")

    def passthru(self) -> "Passthru | None":
        p = Passthru(self.cfs, self.nqn)
        return p if p.exists else None


class Namespace(Node):
    """``subsystems/<nqn>/namespaces/<nsid>/``: ``device_*``, ``ana_grpid``, ``resv_enable`` and
    the un-prefixed ``enable``, ``p2pmem``, ``buffered_io``, ``revalidate_size``."""

    kind = "namespace"

    def __init__(self, cfs: Configfs, nqn: str, nsid: int):
        super().__init__(cfs, SPECS["namespace"].path_of(nqn, nsid))
        self.nqn = nqn
        self.nsid = nsid

    @property
    def enabled(self) -> bool:
        return self.get("enable").strip() == "1"


class Passthru(Node):
    kind = "passthru"

    def __init__(self, cfs: Configfs, nqn: str):
        super().__init__(cfs, SPECS["passthru"].path_of(nqn))
        self.nqn = nqn


class Port(Node):
    """``ports/<portid>/``: ``addr_*`` and ``param_*`` files, ``subsystems/`` links (the first
    link enables the port, after which ``addr_*``/``param_*`` writes get EACCES),
    ``referrals/`` and ``ana_groups/``."""

    kind = "port"

    def __init__(self, cfs: Configfs, portid: int):
        super().__init__(cfs, SPECS["port"].path_of(portid))
        self.portid = portid

    def subsystems(self) -> list[str]:
        return self.cfs.listdir(f"{self.rel}/subsystems")

    def referrals(self) -> list["Referral"]:
        return [Referral(self.cfs, self.portid, n) for n in self.cfs.listdir(f"{self.rel}/referrals")]

    def ana_groups(self) -> list["ANAGroup"]:
        out = []
        for n in self.cfs.listdir(f"{self.rel}/ana_groups"):
            try:
                out.append(ANAGroup(self.cfs, self.portid, int(n)))
            except ValueError:
                continue
        return sorted(out, key=lambda g: g.grpid)


class Referral(Node):
    kind = "referral"

    def __init__(self, cfs: Configfs, portid: int, name: str):
        super().__init__(cfs, SPECS["referral"].path_of(portid, name))
        self.portid = portid
        self.name = name


class ANAGroup(Node):
    kind = "ana_group"

    def __init__(self, cfs: Configfs, portid: int, grpid: int):
        super().__init__(cfs, SPECS["ana_group"].path_of(portid, grpid))
        self.portid = portid
        self.grpid = grpid


class Host(Node):
    """``hosts/<hostnqn>/``: ``dhchap_*`` files (CONFIG_NVME_TARGET_AUTH). Secrets: never log."""

    kind = "host"

    def __init__(self, cfs: Configfs, nqn: str):
        super().__init__(cfs, SPECS["host"].path_of(nqn))
        self.nqn = nqn


# ----------------------------------------------------------------------------------------------
# Reading the live tree into a TargetState
# ----------------------------------------------------------------------------------------------

def _clean(name: str, value: str) -> str:
    value = value.strip()
    if name == "device_path" and value == NULL_PATH:
        return ""
    return value


def _attrs(node: Node, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {k: _clean(k, v) for k, v in sorted(node.readable_attrs().items()) if k not in skip}


def read_state(cfs: Configfs, only: st.TargetState | None = None) -> st.TargetState:
    """The live nvmet tree as a :class:`TargetState` (values as the kernel prints them,
    trailing blanks stripped as nvmetcli does; an unset ``device_path`` reads ``""``).

    Without ``only``: the whole tree, every readable attribute (what ``save`` writes).

    With ``only`` (a desired state): just what a plan against it needs, which is what the
    reconciler reads on every apply. Every object and every link is listed, but attribute
    files are read only where ``only`` names them: for each object ``only`` has, the
    attributes it gives (so drift in any of them is seen), plus ``enable`` of every namespace
    and referral, ``ana_state`` of every ANA group and ``discovery_nqn``. Objects ``only``
    does not have come back with empty ``attrs``. With 1000 namespaces that is 3 reads per
    namespace instead of 9 reads and 18 ``stat`` calls.
    """
    if not cfs.present():
        return st.TargetState()
    if only is not None:
        return _read_named(cfs, only)
    root = Root(cfs)
    out = st.TargetState()
    if root.has_attr("discovery_nqn"):
        out.discovery_nqn = root.get("discovery_nqn").strip()
    for h in root.hosts():
        out.hosts[h.nqn] = st.Host(nqn=h.nqn, attrs=_attrs(h))
    for s in root.subsystems():
        sub = st.Subsystem(nqn=s.nqn, attrs=_attrs(s), allowed_hosts=s.allowed_hosts())
        for ns in s.namespaces():
            a = _attrs(ns, skip=("enable",))
            sub.namespaces[ns.nsid] = st.Namespace(nsid=ns.nsid, enable=ns.enabled, attrs=a)
        pt = s.passthru()
        if pt is not None:
            pa = _attrs(pt)
            if pa.get("enable", "0") != "0" or pa.get("device_path"):
                sub.passthru = pa
        out.subsystems[s.nqn] = sub
    for p in root.ports():
        port = st.Port(portid=p.portid, attrs=_attrs(p), subsystems=p.subsystems())
        for r in p.referrals():
            ra = _attrs(r, skip=("enable",))
            port.referrals[r.name] = st.Referral(name=r.name, enable=r.get("enable").strip() == "1",
                                                 attrs=ra)
        for g in p.ana_groups():
            port.ana_groups[g.grpid] = g.get("ana_state").strip()
        out.ports[p.portid] = port
    return out


def _cleaned(vals: dict[str, str]) -> dict[str, str]:
    """Values from :meth:`Configfs.read_attrs` (already stripped) as :func:`read_state` gives
    them: an unset ``device_path`` is ``""``. Changes and returns ``vals``."""
    if vals.get("device_path") == NULL_PATH:
        vals["device_path"] = ""
    return vals


def _numbered(names: list[str]) -> list[tuple[int, str]]:
    """(number, name) of the directory names that are numbers (nsid, port id ...), sorted."""
    out = []
    for n in names:
        try:
            out.append((int(n), n))
        except ValueError:
            continue
    return sorted(out)


def _ids(names: list[str]) -> list[int]:
    return [i for i, _ in _numbered(names)]


def _read_named(cfs: Configfs, only: st.TargetState) -> st.TargetState:
    """:func:`read_state` limited to the attributes ``only`` names (see there)."""
    out = st.TargetState()
    top = cfs.read_attrs("", {"": ("discovery_nqn",)})[""]
    if "discovery_nqn" in top:
        out.discovery_nqn = top["discovery_nqn"].strip()
    names = cfs.listdir("hosts")
    got = cfs.read_attrs("hosts", {n: tuple(only.hosts[n].attrs) for n in names
                                   if n in only.hosts and only.hosts[n].attrs})
    for vals in got.values():                  # (hosts hold the secrets: never shown)
        for name, value in vals.items():
            if name in SECRETS and value:
                redact_later(value)
    for n in names:
        out.hosts[n] = st.Host(nqn=n, attrs=_cleaned(got.get(n, {})))
    _read_named_subsystems(cfs, only, out)
    _read_named_ports(cfs, only, out)
    return out


def _read_named_subsystems(cfs: Configfs, only: st.TargetState, out: st.TargetState) -> None:
    names = cfs.listdir("subsystems")
    want: dict[str, tuple[str, ...]] = {}
    for n in names:
        d = only.subsystems.get(n)
        if d is None:
            continue
        if d.attrs:
            want[n] = tuple(d.attrs)
        if d.passthru is not None:
            want[f"{n}/passthru"] = tuple(dict.fromkeys(("enable", "device_path", *d.passthru)))
    got = cfs.read_attrs("subsystems", want)
    for n in names:
        d = only.subsystems.get(n)
        rel = f"subsystems/{n}"
        sub = st.Subsystem(nqn=n, attrs=_cleaned(got.get(n, {})),
                           allowed_hosts=cfs.listdir(f"{rel}/allowed_hosts"))
        _read_named_namespaces(cfs, rel, d.namespaces if d is not None else {}, sub)
        pt = _cleaned(got.get(f"{n}/passthru", {}))
        if pt and (pt.get("enable", "0") != "0" or pt.get("device_path")):
            sub.passthru = pt
        out.subsystems[n] = sub


def _read_named_namespaces(cfs: Configfs, rel: str, dns: dict[int, st.Namespace],
                           sub: st.Subsystem) -> None:
    """``enable`` and the attributes the desired namespace names, of every namespace: one
    :meth:`Configfs.read_many` for the subsystem. (The loops run once per namespace: kept
    lean, it is what a re-apply costs.)"""
    nsids = _numbered(cfs.listdir(f"{rel}/namespaces"))
    if not nsids:
        return
    shapes: dict[tuple[str, ...], tuple[str, ...]] = {(): ("enable",)}
    want_ns = {}
    for i, name in nsids:
        dn = dns.get(i)
        keys = tuple(dn.attrs) if dn is not None else ()
        names_ = shapes.get(keys)
        if names_ is None:
            names_ = shapes[keys] = ("enable",) + keys
        want_ns[name] = names_
    vals = cfs.read_many(f"{rel}/namespaces",
                         [f"{name}/{a}" for name, attrs in want_ns.items() for a in attrs])
    k = 0
    for i, name in nsids:
        attrs = want_ns[name]
        enable = vals[k]
        a = {n: v for n, v in zip(attrs[1:], vals[k + 1:k + len(attrs)]) if v is not None}
        k += len(attrs)
        if a.get("device_path") == NULL_PATH:
            a["device_path"] = ""
        sub.namespaces[i] = st.Namespace(i, enable == "1", a)


def _read_named_ports(cfs: Configfs, only: st.TargetState, out: st.TargetState) -> None:
    pids = _ids(cfs.listdir("ports"))
    got = cfs.read_attrs("ports", {str(p): tuple(only.ports[p].attrs) for p in pids
                                   if p in only.ports and only.ports[p].attrs})
    for pid in pids:
        d = only.ports.get(pid)
        rel = f"ports/{pid}"
        port = st.Port(portid=pid, attrs=_cleaned(got.get(str(pid), {})),
                       subsystems=cfs.listdir(f"{rel}/subsystems"))
        refs = cfs.listdir(f"{rel}/referrals")
        if refs:
            want = {}
            for r in refs:
                dr = d.referrals.get(r) if d is not None else None
                want[r] = ("enable",) + tuple(dr.attrs) if dr is not None else ("enable",)
            got_r = cfs.read_attrs(f"{rel}/referrals", want)
            for r in refs:
                a = _cleaned(got_r[r])
                enable = a.pop("enable", "0")
                port.referrals[r] = st.Referral(name=r, enable=enable == "1", attrs=a)
        gids = _ids(cfs.listdir(f"{rel}/ana_groups"))
        if gids:
            got_g = cfs.read_attrs(f"{rel}/ana_groups", {str(g): ("ana_state",) for g in gids})
            for g in gids:
                port.ana_groups[g] = got_g[str(g)].get("ana_state", "").strip()
        out.ports[pid] = port


# ----------------------------------------------------------------------------------------------
# What this kernel has
# ----------------------------------------------------------------------------------------------

@dataclass
class KindCapability:
    """The attribute files of one object kind on this kernel.

    ``source``: ``"observed"`` (read from an existing object, at ``observed_at``) or
    ``"release table"`` (nothing of that kind exists yet, so the spec's rows filtered by
    the kernel release is what we expect; the apply engine checks again after each mkdir).
    """

    kind: str
    attrs: list[str]
    source: str
    observed_at: str | None = None
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attrs": self.attrs, "source": self.source,
                "observed_at": self.observed_at, "missing_known": self.missing}


@dataclass
class Capabilities:
    kernel: str | None
    present: bool
    kinds: dict[str, KindCapability]

    def has(self, kind: str, name: str) -> bool | None:
        """True/False when known; None when the kind was neither observed nor predictable."""
        k = self.kinds.get(kind)
        if k is None:
            return None
        return name in k.attrs

    def to_dict(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "nvmet_configfs": self.present,
                "kinds": {k: v.to_dict() for k, v in self.kinds.items()}}


def _expected(kind: str, release: tuple[int, int] | None) -> list[str]:
    out = []
    for a in SPECS[kind].attrs:
        if a.since and release and release < a.since:
            continue
        out.append(a.name)
    return sorted(out)


def capabilities(cfs: Configfs, kernel_release: str | None = None,
                 live: st.TargetState | None = None) -> Capabilities:
    """Which attribute files each object kind has on the kernel behind ``cfs``.

    ``live``: the tree as just read by :func:`read_state` (whole or partial), to pick the
    sample objects from without listing the directories again.
    """
    if kernel_release is None and os.path.realpath(cfs.root) == "/":
        kernel_release = os.uname().release
    try:
        rel2 = parse_kernel_version(kernel_release) if kernel_release else None
    except ValueError:
        rel2 = None
    samples = _samples(cfs, live) if cfs.present() else {k: None for k in ATTR_KINDS}
    kinds = {}
    for kind, node in samples.items():
        if node is not None:
            names = [n for n in cfs.attr_names(node.rel) if n != "enable"]
            known = set(SPECS[kind].names)
            kinds[kind] = KindCapability(kind, names, "observed", node.rel or "/",
                                         missing=sorted(known - set(names)))
        else:
            kinds[kind] = KindCapability(kind, _expected(kind, rel2), "release table")
    return Capabilities(kernel=kernel_release, present=cfs.present(), kinds=kinds)


def _samples(cfs: Configfs, live: st.TargetState | None) -> dict[str, Node | None]:
    """One existing object of each kind to look at (``None`` where there is none yet)."""
    root = Root(cfs)
    samples: dict[str, Node | None] = {k: None for k in ATTR_KINDS}
    samples["root"] = root
    # (name, child ids) of each object kind, from ``live`` or listed here
    if live is not None:
        subs = [(n, sorted(live.subsystems[n].namespaces)) for n in sorted(live.subsystems)]
        ports = [(p, sorted(live.ports[p].referrals), sorted(live.ports[p].ana_groups))
                 for p in sorted(live.ports)]
        hosts = sorted(live.hosts)
    else:
        subs = [(s.nqn, _ids(cfs.listdir(f"{s.rel}/namespaces"))) for s in root.subsystems()]
        ports = [(p.portid, cfs.listdir(f"{p.rel}/referrals"),
                  _ids(cfs.listdir(f"{p.rel}/ana_groups"))) for p in root.ports()]
        hosts = cfs.listdir("hosts")
    for nqn, nsids in subs:
        sub = Subsystem(cfs, nqn)
        samples["subsystem"] = samples["subsystem"] or sub
        if samples["passthru"] is None:
            samples["passthru"] = sub.passthru()
        if samples["namespace"] is None and nsids:
            samples["namespace"] = Namespace(cfs, nqn, nsids[0])
    for pid, refs, gids in ports:
        samples["port"] = samples["port"] or Port(cfs, pid)
        if samples["referral"] is None and refs:
            samples["referral"] = Referral(cfs, pid, refs[0])
        if samples["ana_group"] is None and gids:
            samples["ana_group"] = ANAGroup(cfs, pid, gids[0])
    if hosts:
        samples["host"] = Host(cfs, hosts[0])
    return samples
