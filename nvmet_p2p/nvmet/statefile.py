"""Desired-state files: nvmetcli's ``/etc/nvmet/config.json`` format, plus ``p2pmem`` and
``buffered_io``.

The format is the one ``nvmetcli save`` writes (``Root.dump()``): top-level ``hosts``,
``ports``, ``subsystems`` and, on kernels that have it, ``discovery``; inside each object the
configfs attributes grouped by file-name prefix (``"attr": {"allow_any_host": "0"}`` is the
file ``attr_allow_any_host``), values as strings; ``nsid``, ``portid``, ``grpid``,
``ana_grpid`` and ``enable`` as integers. nvmetcli never saves the un-prefixed namespace files
``p2pmem`` and ``buffered_io``; we add them as namespace keys of the same name. The export
policy's consents are two more namespace keys (not configfs files): ``allow_in_use`` (true:
export ``device.path`` although this machine uses it -- mounted, swap, LVM/md member) and
``backing`` (``"file"``: ``device.path`` is a regular file nvmet serves through its file
backend; default ``"block"``); see docs/export-policy.md. nvmetcli's own ``restore`` ignores
keys it does not know, so it still accepts our files (it just does not apply those).

:func:`load` reads and **fully validates** a file before anything else happens: unknown
keys, wrong types, out-of-range ids, malformed or too long NQNs, duplicates, links to hosts or
subsystems the file does not define, values the kernel would refuse. Every problem is
reported with its JSON path (``$.subsystems[0].namespaces[2].nsid``) in one
:class:`StateFileError`.

:func:`dump` is the inverse (deterministic: sorted lists, sorted keys, 2-space indent, like
nvmetcli), :func:`save` writes it safely (:func:`nvmet_p2p.safefs.write_file`): temporary file in
the same directory, mode 0600 (DH-HMAC-CHAP secrets may be inside), fsync, rename, fsync of the
directory, and a rotating backup of the file it replaces (``FILE.1`` newest ... ``FILE.3``);
never through a symlink, never onto a FIFO or a device.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nvmet_p2p import paths, safeload
from nvmet_p2p.errors import InputError
from nvmet_p2p.kernel import kstrtobool
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.defs import (
    ANA_GRPID_MAX,
    DISCOVERY_NQN_MAX,
    MAX_NAMESPACES,
    NSID_MAX,
    PORTID_MAX,
    name_problem,
    nqn_problem,
    parse_int,
    subsystem_nqn_problem,
)
from nvmet_p2p.nvmet.spec import SPECS, empty_means_unset, is_secret, value_problem
from nvmet_p2p.safefs import write_file

BACKUPS = 3



#: the keys of each attribute group in the save file (the spec's rows, without the prefix)
SUBSYS_ATTR = SPECS["subsystem"].group_names("attr")
NS_DEVICE = SPECS["namespace"].group_names("device")
PORT_ADDR = SPECS["port"].group_names("addr")
PORT_PARAM = SPECS["port"].group_names("param")
REF_ADDR = SPECS["referral"].group_names("addr")
HOST_DHCHAP = SPECS["host"].group_names("dhchap")


class StateFileError(InputError):
    """A desired-state file failed validation; ``problems`` lists ``(json_path, message)``."""

    def __init__(self, where: str, problems: list[tuple[str, str]]):
        self.problems = problems
        n = len(problems)
        lines = "\n".join(f"  {p}: {m}" for p, m in problems[:50])
        more = f"\n  ... and {n - 50} more" if n > 50 else ""
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the desired state "
                         f"(nothing was changed):\n{lines}{more}", where=where)


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------

class _V:
    def __init__(self):
        self.problems: list[tuple[str, str]] = []

    def err(self, path: str, msg: str) -> None:
        self.problems.append((path, msg))

    def obj(self, path: str, val: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()):
        if not isinstance(val, dict):
            self.err(path, f"must be an object, got {_tname(val)}")
            return None
        for k in val:
            if k not in allowed:
                self.err(f"{path}.{k}" if _ident(k) else f"{path}[{json.dumps(k)}]",
                         f"unknown key {k!r} (allowed: {', '.join(allowed)})")
        for k in required:
            if k not in val:
                self.err(path, f"missing required key {k!r}")
        return val

    def lst(self, path: str, val: Any):
        if not isinstance(val, list):
            self.err(path, f"must be a list, got {_tname(val)}")
            return []
        return val

    def string(self, path: str, val: Any) -> str | None:
        if not isinstance(val, str):
            self.err(path, f"must be a string, got {_tname(val)} {json.dumps(val)}")
            return None
        return val

    def integer(self, path: str, val: Any, lo: int, hi: int, what: str) -> int | None:
        if isinstance(val, bool) or not isinstance(val, int):
            self.err(path, f"{what} must be an integer, got {_tname(val)} {json.dumps(val)}")
            return None
        if not lo <= val <= hi:
            self.err(path, f"{what} {val} is out of range {lo}..{hi}")
            return None
        return val

    def enable(self, path: str, val: Any) -> bool | None:
        if isinstance(val, bool):
            return val
        if isinstance(val, int) and val in (0, 1):
            return bool(val)
        self.err(path, f"enable must be 0 or 1, got {json.dumps(val)}")
        return None

    def nqn(self, path: str, val: Any, what: str) -> str | None:
        s = self.string(path, val)
        if s is None:
            return None
        problem = nqn_problem(s)
        if problem:
            self.err(path, f"{what} {s!r}: {problem}")
            return None
        return s

    def group(self, path: str, val: Any, names: tuple[str, ...]) -> dict[str, str]:
        d = self.obj(path, val, names)
        out = {}
        if d is None:
            return out
        for k, v in d.items():
            if k not in names:
                continue
            s = self.string(f"{path}.{k}", v)
            if s is not None:
                out[k] = s
        return out


def _tname(v: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _ident(k: str) -> bool:
    return bool(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k))


def _attr_values(v: _V, path: str, prefix: str, group: dict[str, str], into: dict[str, str]):
    for k, val in group.items():
        name = f"{prefix}_{k}"
        if val == "" and empty_means_unset(name):
            continue
        if name == "device_path" and val == "(null)":
            continue
        if is_secret(name) and val:
            safeload.redact_later(val)   # never in a message, a log or a record from here on
        p = value_problem(name, val)
        if p:
            v.err(f"{path}.{k}", p)
        into[name] = val


# ----------------------------------------------------------------------------------------------
# JSON -> TargetState
# ----------------------------------------------------------------------------------------------

def parse(doc: Any, where: str = "<state>") -> st.TargetState:
    """Validate an nvmetcli-format document and return the desired :class:`TargetState`.

    Raises :class:`StateFileError` listing every problem found (nothing partial is returned).
    """
    v = _V()
    out = st.TargetState()
    top = v.obj("$", doc, ("discovery", "hosts", "ports", "subsystems"))
    if top is None:
        raise StateFileError(where, v.problems)

    if "discovery" in top:
        d = v.obj("$.discovery", top["discovery"], ("nqn",))
        if d is not None and "nqn" in d:
            s = v.string("$.discovery.nqn", d["nqn"])
            if s is not None:
                if not s or len(s.encode()) > DISCOVERY_NQN_MAX:
                    v.err("$.discovery.nqn", f"discovery NQN must be 1..{DISCOVERY_NQN_MAX} bytes")
                out.discovery_nqn = s

    for i, h in enumerate(v.lst("$.hosts", top.get("hosts", []))):
        path = f"$.hosts[{i}]"
        ho = v.obj(path, h, ("nqn", "dhchap"), ("nqn",))
        if ho is None or "nqn" not in ho:
            continue
        nqn = v.nqn(f"{path}.nqn", ho["nqn"], "host NQN")
        if nqn is None:
            continue
        if nqn in out.hosts:
            v.err(f"{path}.nqn", f"host {nqn!r} is defined twice")
            continue
        host = st.Host(nqn=nqn)
        if "dhchap" in ho:
            _attr_values(v, f"{path}.dhchap", "dhchap",
                         v.group(f"{path}.dhchap", ho["dhchap"], HOST_DHCHAP), host.attrs)
        out.hosts[nqn] = host

    for i, s in enumerate(v.lst("$.subsystems", top.get("subsystems", []))):
        _subsystem(v, f"$.subsystems[{i}]", s, out)

    for i, p in enumerate(v.lst("$.ports", top.get("ports", []))):
        _port(v, f"$.ports[{i}]", p, out)

    _cross_checks(v, top, out)
    if v.problems:
        raise StateFileError(where, v.problems)
    return out


def _subsystem(v: _V, path: str, s: Any, out: st.TargetState) -> None:
    so = v.obj(path, s, ("nqn", "attr", "allowed_hosts", "namespaces", "passthru"), ("nqn",))
    if so is None or "nqn" not in so:
        return
    nqn = v.nqn(f"{path}.nqn", so["nqn"], "subsystem NQN")
    if nqn is None:
        return
    discovery = subsystem_nqn_problem(nqn)
    if discovery:
        v.err(f"{path}.nqn", discovery)
        return
    if nqn in out.subsystems:
        v.err(f"{path}.nqn", f"subsystem {nqn!r} is defined twice")
        return
    sub = st.Subsystem(nqn=nqn)
    if "attr" in so:
        _attr_values(v, f"{path}.attr", "attr", v.group(f"{path}.attr", so["attr"], SUBSYS_ATTR),
                     sub.attrs)
    seen: set[str] = set()
    for j, h in enumerate(v.lst(f"{path}.allowed_hosts", so.get("allowed_hosts", []))):
        hn = v.string(f"{path}.allowed_hosts[{j}]", h)
        if hn is None:
            continue
        if hn in seen:
            v.err(f"{path}.allowed_hosts[{j}]", f"host {hn!r} is listed twice")
            continue
        seen.add(hn)
        sub.allowed_hosts.append(hn)
    nss = v.lst(f"{path}.namespaces", so.get("namespaces", []))
    if len(nss) > MAX_NAMESPACES:
        v.err(f"{path}.namespaces", f"{len(nss)} namespaces; the kernel allows at most "
                                    f"{MAX_NAMESPACES} per subsystem (NVMET_MAX_NAMESPACES)")
    for j, n in enumerate(nss):
        if not _namespace_fast(n, sub):
            _namespace(v, f"{path}.namespaces[{j}]", n, sub)
    if "passthru" in so:
        _passthru(v, f"{path}.passthru", so["passthru"], sub, bool(nss))
    out.subsystems[nqn] = sub


def _passthru(v: _V, path: str, val: Any, sub: st.Subsystem, has_namespaces: bool) -> None:
    """``passthru``: nvmetcli's list of (at most) one entry with ``device.path``, ``enable``
    and the timeouts; kept when it is enabled or names a device."""
    pts = v.lst(path, val)
    if len(pts) > 1:
        v.err(path, "a subsystem has at most one passthru entry")
    for j, pt in enumerate(pts[:1]):
        pp = f"{path}[{j}]"
        po = v.obj(pp, pt, ("device", "enable", "clear_ids", "admin_timeout", "io_timeout"))
        if po is None:
            continue
        d: dict[str, str] = {}
        if "device" in po:
            g = v.group(f"{pp}.device", po["device"], ("path",))
            if g.get("path") and g["path"] != "(null)":
                d["device_path"] = g["path"]
        for k in ("clear_ids", "admin_timeout", "io_timeout"):
            if k in po:
                n_ = v.integer(f"{pp}.{k}", po[k], 0, 0xFFFFFFFF, k)
                if n_ is not None:
                    d[k] = str(n_)
        if "enable" in po:
            e = v.enable(f"{pp}.enable", po["enable"])
            if e is not None:
                d["enable"] = "1" if e else "0"
        if d.get("enable") == "1" or d.get("device_path"):
            sub.passthru = d
            if has_namespaces:
                v.err(pp, "a passthru subsystem cannot also have namespaces")


_NS_FAST_KEYS = frozenset(("nsid", "enable", "device"))
_NS_DEVICE_KEYS = frozenset(NS_DEVICE)


def _namespace_fast(n: Any, sub: st.Subsystem) -> bool:
    """Take the usual namespace entry (only ``nsid``, ``enable``, ``device``) if it is valid,
    without building a single JSON path (a state file can hold 1024 namespaces per subsystem,
    and each is parsed on every apply). Anything else, and anything wrong, returns ``False``
    and goes through :func:`_namespace`, which checks the same rules and says what is wrong.
    """
    if type(n) is not dict or not n.keys() <= _NS_FAST_KEYS:
        return False
    nsid = n.get("nsid")
    if type(nsid) is not int or not 1 <= nsid <= NSID_MAX or nsid in sub.namespaces:
        return False
    enable = n.get("enable", True)
    if type(enable) is not bool:
        if type(enable) is not int or enable not in (0, 1):
            return False
        enable = enable == 1
    attrs: dict[str, str] = {}
    if "device" in n:
        dev = n["device"]
        if type(dev) is not dict or not dev.keys() <= _NS_DEVICE_KEYS:
            return False
        for k, val in dev.items():
            if type(val) is not str:
                return False
            if val == "":
                continue    # every device_* is empty_unset in the spec
            name = "device_" + k
            if name == "device_path" and val == "(null)":
                continue
            if value_problem(name, val) is not None:
                return False
            attrs[name] = val
    if enable and not attrs.get("device_path"):
        return False
    sub.namespaces[nsid] = st.Namespace(nsid, enable, attrs)
    return True


def _namespace(v: _V, path: str, n: Any, sub: st.Subsystem) -> None:
    no = v.obj(path, n, ("nsid", "enable", "device", "ana", "resv", "ana_grpid", "p2pmem",
                         "buffered_io", "allow_in_use", "backing"), ("nsid",))
    if no is None or "nsid" not in no:
        return
    nsid = v.integer(f"{path}.nsid", no["nsid"], 1, NSID_MAX, "nsid")
    if nsid is None:
        return
    if nsid in sub.namespaces:
        v.err(f"{path}.nsid", f"nsid {nsid} is defined twice in subsystem {sub.nqn!r}")
        return
    ns = st.Namespace(nsid=nsid)
    if "enable" in no:
        e = v.enable(f"{path}.enable", no["enable"])
        if e is not None:
            ns.enable = e
    if "device" in no:
        _attr_values(v, f"{path}.device", "device", v.group(f"{path}.device", no["device"], NS_DEVICE),
                     ns.attrs)
    if "ana" in no:
        g = v.group(f"{path}.ana", no["ana"], ("grpid",))
        _attr_values(v, f"{path}.ana", "ana", g, ns.attrs)
    if "ana_grpid" in no:
        gid = v.integer(f"{path}.ana_grpid", no["ana_grpid"], 1, ANA_GRPID_MAX, "ana_grpid")
        if gid is not None:
            prev = ns.attrs.get("ana_grpid")
            if prev is not None and parse_int(prev) != gid:
                v.err(f"{path}.ana_grpid", f"ana_grpid {gid} contradicts ana.grpid {prev!r}")
            else:
                ns.attrs["ana_grpid"] = prev if prev is not None else str(gid)
    if "resv" in no:
        _attr_values(v, f"{path}.resv", "resv", v.group(f"{path}.resv", no["resv"], ("enable",)),
                     ns.attrs)
    for k in ("p2pmem", "buffered_io"):
        if k in no:
            s = v.string(f"{path}.{k}", no[k])
            if s is not None:
                p = value_problem(k, s)
                if p:
                    v.err(f"{path}.{k}", p)
                ns.attrs[k] = s
    _consents(v, path, no, ns)
    if ns.enable and not ns.attrs.get("device_path"):
        v.err(path, "an enabled namespace needs device.path (the kernel refuses to enable "
                    "a namespace without a backing device)")
    sub.namespaces[nsid] = ns


def _consents(v: _V, path: str, no: dict, ns: st.Namespace) -> None:
    """The export policy's keys (not configfs files; nvmetcli ignores them): ``allow_in_use``
    (true/1: export device.path although this machine uses it) and ``backing`` ("block", the
    default, or "file": device.path is a regular file for nvmet's file backend)."""
    if "allow_in_use" in no:
        a = no["allow_in_use"]
        if isinstance(a, bool) or (isinstance(a, int) and a in (0, 1)):
            ns.allow_in_use = bool(a)
        else:
            v.err(f"{path}.allow_in_use", f"allow_in_use must be true or false, got {json.dumps(a)}")
    if "backing" in no:
        b = v.string(f"{path}.backing", no["backing"])
        if b is not None and b not in ("block", "file"):
            v.err(f"{path}.backing", f"backing must be \"block\" or \"file\", got {json.dumps(b)}")
        elif b is not None:
            ns.backing = b


def _port(v: _V, path: str, p: Any, out: st.TargetState) -> None:
    po = v.obj(path, p, ("portid", "addr", "param", "subsystems", "referrals", "ana_groups"),
               ("portid",))
    if po is None or "portid" not in po:
        return
    pid = v.integer(f"{path}.portid", po["portid"], 0, PORTID_MAX, "port id")
    if pid is None:
        return
    if pid in out.ports:
        v.err(f"{path}.portid", f"port {pid} is defined twice")
        return
    port = st.Port(portid=pid)
    if "addr" in po:
        _attr_values(v, f"{path}.addr", "addr", v.group(f"{path}.addr", po["addr"], PORT_ADDR),
                     port.attrs)
    if "param" in po:
        _attr_values(v, f"{path}.param", "param", v.group(f"{path}.param", po["param"], PORT_PARAM),
                     port.attrs)
    seen: set[str] = set()
    for j, s in enumerate(v.lst(f"{path}.subsystems", po.get("subsystems", []))):
        sn = v.string(f"{path}.subsystems[{j}]", s)
        if sn is None:
            continue
        if sn in seen:
            v.err(f"{path}.subsystems[{j}]", f"subsystem {sn!r} is listed twice")
            continue
        seen.add(sn)
        port.subsystems.append(sn)
    if port.subsystems and not port.attrs.get("addr_trtype"):
        v.err(f"{path}.addr", "a port with subsystems needs addr.trtype (the kernel cannot "
                              "enable a port without a transport)")
    for j, r in enumerate(v.lst(f"{path}.referrals", po.get("referrals", []))):
        _referral(v, f"{path}.referrals[{j}]", r, port)
    for j, g in enumerate(v.lst(f"{path}.ana_groups", po.get("ana_groups", []))):
        _ana_group(v, f"{path}.ana_groups[{j}]", g, port)
    out.ports[pid] = port


def _referral(v: _V, rp: str, r: Any, port: st.Port) -> None:
    """``referrals[]``: a named discovery referral (a directory name) with its address."""
    ro = v.obj(rp, r, ("name", "addr", "enable"), ("name",))
    if ro is None or "name" not in ro:
        return
    name = v.string(f"{rp}.name", ro["name"])
    if name is None:
        return
    bad = name_problem(name)
    if bad:
        v.err(f"{rp}.name", f"referral name {name!r} is not a valid directory name: {bad}")
        return
    if name in port.referrals:
        v.err(f"{rp}.name", f"referral {name!r} is defined twice")
        return
    ref = st.Referral(name=name)
    if "addr" in ro:
        _attr_values(v, f"{rp}.addr", "addr", v.group(f"{rp}.addr", ro["addr"], REF_ADDR),
                     ref.attrs)
    if "enable" in ro:
        e = v.enable(f"{rp}.enable", ro["enable"])
        if e is not None:
            ref.enable = e
    port.referrals[name] = ref


def _ana_group(v: _V, gp: str, g: Any, port: st.Port) -> None:
    """``ana_groups[]``: a group id and its state (group 1 starts optimized, new ones
    inaccessible)."""
    go = v.obj(gp, g, ("grpid", "ana"), ("grpid",))
    if go is None or "grpid" not in go:
        return
    gid = v.integer(f"{gp}.grpid", go["grpid"], 1, ANA_GRPID_MAX, "ANA group id")
    if gid is None:
        return
    if gid in port.ana_groups:
        v.err(f"{gp}.grpid", f"ANA group {gid} is defined twice")
        return
    a = v.group(f"{gp}.ana", go.get("ana", {}), ("state",))
    state = a.get("state", "optimized" if gid == 1 else "inaccessible")
    p_ = value_problem("ana_state", state)
    if p_:
        v.err(f"{gp}.ana.state", p_)
    port.ana_groups[gid] = state


def _cross_checks(v: _V, top: dict, out: st.TargetState) -> None:
    subs = top.get("subsystems") if isinstance(top.get("subsystems"), list) else []
    for i, s in enumerate(subs):
        if not isinstance(s, dict) or s.get("nqn") not in out.subsystems:
            continue
        sub = out.subsystems[s["nqn"]]
        for j, h in enumerate(sub.allowed_hosts):
            if h not in out.hosts:
                v.err(f"$.subsystems[{i}].allowed_hosts[{j}]",
                      f"host {h!r} is not defined in $.hosts (the link needs hosts/{h})")
        aah = sub.attrs.get("attr_allow_any_host")
        if aah is not None and kstrtobool(aah) and sub.allowed_hosts:
            v.err(f"$.subsystems[{i}].attr.allow_any_host",
                  "allow_any_host=1 cannot coexist with explicit allowed_hosts (the kernel "
                  "refuses it); remove one of them")
        lo, hi = parse_int(sub.attrs.get("attr_cntlid_min", "") or "x"), \
            parse_int(sub.attrs.get("attr_cntlid_max", "") or "x")
        if lo is not None and hi is not None and lo > hi:
            v.err(f"$.subsystems[{i}].attr.cntlid_min", f"cntlid_min {lo} > cntlid_max {hi}")
        if out.discovery_nqn and sub.nqn == out.discovery_nqn:
            v.err(f"$.subsystems[{i}].nqn", "equals $.discovery.nqn (the kernel refuses it)")
    ports = top.get("ports") if isinstance(top.get("ports"), list) else []
    for i, p in enumerate(ports):
        if not isinstance(p, dict) or not isinstance(p.get("portid"), int):
            continue
        port = out.ports.get(p["portid"])
        if port is None:
            continue
        for j, s in enumerate(port.subsystems):
            if s not in out.subsystems:
                v.err(f"$.ports[{i}].subsystems[{j}]",
                      f"subsystem {s!r} is not defined in $.subsystems")
        grps = set(port.ana_groups)
        for s in port.subsystems:
            sub = out.subsystems.get(s)
            for ns in (sub.namespaces.values() if sub else []):
                g = parse_int(ns.attrs.get("ana_grpid", "1") or "1")
                if g and g != 1 and g not in grps:
                    v.err(f"$.ports[{i}].ana_groups",
                          f"namespace {s}/{ns.nsid} uses ANA group {g}, which port "
                          f"{port.portid} does not define")


def load(path: str) -> st.TargetState:
    """Read and validate a desired-state file (nvmetcli format; limits of
    :mod:`nvmet_p2p.safeload`: size, UTF-8, NUL, depth, duplicate keys)."""
    return parse(safeload.load_json(path, kind="state"), where=path)


# ----------------------------------------------------------------------------------------------
# TargetState -> JSON (what nvmetcli's Root.dump() writes, plus p2pmem and buffered_io)
# ----------------------------------------------------------------------------------------------

def _grouped(attrs: dict[str, str], groups: tuple[str, ...]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {g: {} for g in groups}
    for name, val in attrs.items():
        g, _, rest = name.partition("_")
        if g in out and rest:
            out[g][rest] = val
    return out


def to_doc(state: st.TargetState) -> dict:
    """The nvmetcli-format document of ``state`` (secrets included: write it 0600)."""
    doc: dict[str, Any] = {}
    if state.discovery_nqn is not None:
        doc["discovery"] = {"nqn": state.discovery_nqn}
    doc["hosts"] = []
    for nqn, h in sorted(state.hosts.items()):
        d: dict[str, Any] = {"nqn": nqn}
        g = _grouped(h.attrs, ("dhchap",))
        if g["dhchap"] or h.attrs:
            d["dhchap"] = g["dhchap"]
        doc["hosts"].append(d)
    doc["ports"] = [_port_doc(pid, p) for pid, p in sorted(state.ports.items())]
    doc["subsystems"] = [_subsystem_doc(nqn, s) for nqn, s in sorted(state.subsystems.items())]
    return doc


def _port_doc(pid: int, p: st.Port) -> dict:
    g = _grouped(p.attrs, ("addr", "param"))
    return {"portid": pid, "addr": g["addr"], "param": g["param"],
            "subsystems": sorted(p.subsystems),
            "referrals": [{"name": r.name, "addr": _grouped(r.attrs, ("addr",))["addr"],
                           "enable": 1 if r.enable else 0}
                          for _, r in sorted(p.referrals.items())],
            "ana_groups": [{"grpid": gid, "ana": {"state": s}}
                           for gid, s in sorted(p.ana_groups.items())]}


def _subsystem_doc(nqn: str, s: st.Subsystem) -> dict:
    d: dict[str, Any] = {"nqn": nqn, "attr": _grouped(s.attrs, ("attr",))["attr"],
                         "allowed_hosts": sorted(s.allowed_hosts), "namespaces": []}
    for nsid, ns in sorted(s.namespaces.items()):
        g = _grouped(ns.attrs, ("device", "ana", "resv"))
        nd: dict[str, Any] = {"nsid": nsid, "enable": 1 if ns.enable else 0, "device": g["device"]}
        if g["ana"]:
            nd["ana"] = g["ana"]
            gid = parse_int(g["ana"].get("grpid", ""))
            if gid is not None:
                nd["ana_grpid"] = gid
        if g["resv"]:
            nd["resv"] = g["resv"]
        for k in ("p2pmem", "buffered_io"):
            if k in ns.attrs:
                nd[k] = ns.attrs[k]
        if ns.allow_in_use:
            nd["allow_in_use"] = True
        if ns.backing != "block":
            nd["backing"] = ns.backing
        d["namespaces"].append(nd)
    if s.passthru is not None:
        pt: dict[str, Any] = {"device": {}}
        if s.passthru.get("device_path"):
            pt["device"]["path"] = s.passthru["device_path"]
        for k in ("clear_ids", "admin_timeout", "io_timeout"):
            if k in s.passthru and parse_int(s.passthru[k]) is not None:
                pt[k] = parse_int(s.passthru[k])
        pt["enable"] = 1 if s.passthru.get("enable") == "1" else 0
        d["passthru"] = [pt]
    return d


def dumps(state: st.TargetState) -> str:
    """``to_doc`` as text, formatted exactly like ``nvmetcli save`` (sorted keys, indent 2)."""
    return json.dumps(to_doc(state), sort_keys=True, indent=2) + "\n"


def save(state: st.TargetState, path: str) -> str | None:
    """Write ``state`` to ``path`` (atomic and durable, 0600, rotating backups ``path.1`` ...
    ``path.3``; never through a symlink, never onto a FIFO or device: see
    :func:`nvmet_p2p.safefs.write_file`); returns the backup made, if any."""
    return write_file(path, dumps(state), mode=0o600, backups=BACKUPS,
                      option=f"give another FILE (or ${paths.SAVE_FILE_ENV})")


# ----------------------------------------------------------------------------------------------
# nvmetcli's restore rules, checked without nvmetcli
# ----------------------------------------------------------------------------------------------

def nvmetcli_problems(doc: Any) -> list[tuple[str, str]]:
    """Would ``nvmetcli restore`` (``nvmet.Root.restore``) process ``doc`` without an error?

    Mirrors what its code reads: top-level ``hosts``/``subsystems``/``ports`` lists of
    objects with ``nqn``/``portid``; attribute groups it knows (``attr``, ``device``, ``ana``,
    ``resv``, ``addr``, ``param``, ``dhchap``) as objects of string-able values that it
    writes to ``<group>_<name>``; ``nsid`` an int 1..8192 (its MAX_NSID); ``enable`` ints;
    ``ana_grpid``/``grpid`` ints; ``allowed_hosts``/``subsystems`` lists of names whose
    targets exist in the same file; referrals with ``name``; ANA groups with ``grpid``
    1..1024. Keys it does not know (our ``p2pmem``, ``buffered_io``) it ignores.
    """
    if not isinstance(doc, dict):
        return [("$", "must be an object")]
    probs: list[tuple[str, str]] = []
    hosts = set()
    for i, h in enumerate(doc.get("hosts", [])):
        if not isinstance(h, dict) or "nqn" not in h:
            probs.append((f"$.hosts[{i}]", "needs nqn"))
            continue
        hosts.add(h["nqn"])
        _nvmetcli_groups(probs, f"$.hosts[{i}]", h, ("dhchap",))
    subs = set()
    for i, s in enumerate(doc.get("subsystems", [])):
        if not isinstance(s, dict) or "nqn" not in s:
            probs.append((f"$.subsystems[{i}]", "needs nqn"))
            continue
        subs.add(s["nqn"])
        _nvmetcli_subsystem(probs, f"$.subsystems[{i}]", s, hosts)
    for i, p in enumerate(doc.get("ports", [])):
        if not isinstance(p, dict) or "portid" not in p:
            probs.append((f"$.ports[{i}]", "needs portid"))
            continue
        _nvmetcli_port(probs, f"$.ports[{i}]", p, subs)
    return probs


def _nvmetcli_groups(probs: list, path: str, o: dict, names: tuple[str, ...]) -> None:
    for g in names:
        if g in o:
            if not isinstance(o[g], dict):
                probs.append((f"{path}.{g}", "group must be an object"))
                continue
            for k, val in o[g].items():
                if isinstance(val, (dict, list)):
                    probs.append((f"{path}.{g}.{k}", "value must be a scalar"))


def _nvmetcli_subsystem(probs: list, path: str, s: dict, hosts: set) -> None:
    _nvmetcli_groups(probs, path, s, ("attr",))
    for j, n in enumerate(s.get("namespaces", [])):
        p = f"{path}.namespaces[{j}]"
        if not isinstance(n, dict) or "nsid" not in n:
            probs.append((p, "needs nsid"))
            continue
        try:
            nsid = int(n["nsid"])
            if not 1 <= nsid <= 8192:
                probs.append((f"{p}.nsid", "nvmetcli accepts nsid 1..8192 only"))
        except (TypeError, ValueError):
            probs.append((f"{p}.nsid", "not an integer"))
        _nvmetcli_groups(probs, p, n, ("device", "ana", "resv"))
        if "enable" in n and n["enable"] not in (0, 1):
            probs.append((f"{p}.enable", "must be 0 or 1"))
        if "ana_grpid" in n and not isinstance(n["ana_grpid"], int):
            probs.append((f"{p}.ana_grpid", "must be an integer"))
    for j, h in enumerate(s.get("allowed_hosts", [])):
        if h not in hosts:
            probs.append((f"{path}.allowed_hosts[{j}]",
                          "host not created before the link (hosts are restored first)"))


def _nvmetcli_port(probs: list, path: str, p: dict, subs: set) -> None:
    _nvmetcli_groups(probs, path, p, ("addr", "param"))
    for j, s in enumerate(p.get("subsystems", [])):
        if s not in subs:
            probs.append((f"{path}.subsystems[{j}]", "subsystem not in the file"))
    for j, r in enumerate(p.get("referrals", [])):
        if not isinstance(r, dict) or "name" not in r:
            probs.append((f"{path}.referrals[{j}]", "needs name"))
    for j, g in enumerate(p.get("ana_groups", [])):
        if not isinstance(g, dict) or not isinstance(g.get("grpid"), int) \
                or not 1 <= g["grpid"] <= 1024:
            probs.append((f"{path}.ana_groups[{j}]", "needs grpid 1..1024"))
