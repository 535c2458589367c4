"""The apply journal: an unfinished apply is found and settled by the next command.

configfs changes one file at a time, so a process that dies between two steps of a plan (SIGKILL,
an OOM kill, a crash of the interpreter) leaves the target half way. Before the first configfs
write of a plan that changes something, :func:`begin` writes ``<state dir>/journal.json``
(temporary file, ``fsync``, ``rename``, ``fsync`` of the directory) holding:

* ``before``: what every path the plan touches was like before the apply -- a directory that the
  plan creates did not exist; a directory it removes existed, with every readable attribute (and
  ``enable``); an attribute it writes had this value; a link it adds was absent, one it removes
  present (with its target);
* ``ops``: the plan's steps (a secret value only as its SHA-256, enough to recognise it);
* the managed set before and after, the configfs tree it was for, and the boot it ran in.

After the last step and the managed-set record, :func:`finish` removes the file (``unlink`` and
``fsync`` of the directory). An apply with an empty plan writes no journal at all.

:func:`settle` is what every command that touches the target (and ``status``) runs first, under
the apply lock, when the file is there. Its rule, deterministic:

* **completed** when every step's effect is already in configfs (the process died after its last
  configfs step, during the bookkeeping): the managed set of the plan is recorded, nothing is
  written to configfs;
* **rolled back** otherwise: the state before the apply is the only whole state known to the
  kernel's liking (the desired one was never reached, and a step that was not done may be the one
  the kernel refuses). The touched objects are planned back to ``before`` by the ordinary planner
  (:func:`nvmet_p2p.nvmet.plan.build_plan`, so the kernel's ordering rules hold for the way back too)
  and applied; objects the apply created are removed, objects it removed are re-created with their
  old attributes (UUIDs and serials included), and the managed set is the one from before;
* **discarded** when the journal is from another boot: configfs lives in memory, a reboot (power
  loss) already took the half-done tree away. The managed set becomes the union of before and
  after, so no object nvmet-p2p made is ever left out of it.

The result is a :class:`Recovery` that says which, why, and what it wrote; the commands print it.
The journal holds the old values of secrets the plan overwrites (needed to put them back): it is
mode 0600 in the 0700 state directory, like the saved plans and ``/etc/nvmet/config.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.configfs import NULL_PATH, Configfs
from nvmet_p2p.nvmet.spec import empty_means_unset, is_secret, parse_path, same
from nvmet_p2p.nvmet.statefile import write_atomic

JOURNAL_FILE = "journal.json"
FORMAT = 1

def restorable(name: str, value: str | None) -> bool:
    """Can ``value`` be written back to the attribute ``name``?"""
    if value is None:
        return False
    if name == "device_path" and value in ("", NULL_PATH):
        return False
    return not (value == "" and empty_means_unset(name))  # (the kernel refuses "" for these)


def journal_path(directory: str) -> str:
    return os.path.join(directory, JOURNAL_FILE)


def boot_id(root: str) -> str | None:
    """The kernel's random boot id (``/proc/sys/kernel/random/boot_id``), None when unknown."""
    try:
        with open(os.path.join(root, "proc/sys/kernel/random/boot_id"), encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.strip().encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Paths of the nvmet tree -> objects of a TargetState
# ----------------------------------------------------------------------------------------------

def _obj(state: st.TargetState, kind: str, key: tuple):
    """The object of ``state`` a (kind, key) names, or None."""
    if kind == "host":
        return state.hosts.get(key[0])
    if kind in ("subsystem", "passthru"):
        return state.subsystems.get(key[0])
    if kind == "namespace":
        sub = state.subsystems.get(key[0])
        return sub.namespaces.get(key[1]) if sub else None
    if kind == "port":
        return state.ports.get(key[0])
    if kind == "referral":
        port = state.ports.get(key[0])
        return port.referrals.get(key[1]) if port else None
    if kind == "ana_group":
        port = state.ports.get(key[0])
        return port if port and key[1] in port.ana_groups else None
    return None


def _parent_exists(state: st.TargetState, kind: str, key: tuple) -> bool:
    if kind in ("namespace", "allowed_host"):
        return key[0] in state.subsystems
    if kind in ("referral", "ana_group", "port_link"):
        return key[0] in state.ports
    return True


# ----------------------------------------------------------------------------------------------
# Before the first write: what the plan's paths were like
# ----------------------------------------------------------------------------------------------

def readable_attrs(cfs: Configfs, rel: str) -> dict[str, str]:
    """Every readable attribute of a directory (what a re-creation must write back)."""
    out = {}
    for name, mode in cfs.files(rel).items():
        if mode & 0o444:
            try:
                out[name] = cfs.read(rel + "/" + name).strip()
            except OSError:
                continue
    return out


def before_facts(cfs: Configfs, ops) -> list[dict]:
    """One record per path the plan touches, describing it before the first step.

    Paths below a directory the plan itself creates get no record (nothing was there); an
    attribute's old value is read from configfs (one read per attribute of an existing object;
    an apply from an empty target reads nothing here).
    """
    facts: list[dict] = []
    seen: set[str] = set()
    created: set[str] = set()
    for op in ops:
        path = op.path
        if path in seen:
            continue
        seen.add(path)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if any(parent == c or parent.startswith(c + "/") for c in created):
            continue
        if op.action == "mkdir":
            created.add(path)
            facts.append({"path": path, "dir": False})
        elif op.action == "rmdir":
            attrs = readable_attrs(cfs, path)
            facts.append({"path": path, "dir": True, "attrs": attrs})
        elif op.action in ("link", "unlink"):
            present = cfs.exists(path)
            fact = {"path": path, "link": present}
            if present:
                fact["target"] = _link_target(cfs, path)
            facts.append(fact)
        elif op.action == "write":
            try:
                value = cfs.read(path).strip()
            except OSError:
                value = None
            facts.append({"path": path, "value": value})
    return facts


def _link_target(cfs: Configfs, path: str) -> str:
    kind, key, _ = parse_path(path)
    return f"hosts/{key[1]}" if kind == "allowed_host" else f"subsystems/{key[1]}"


def _op_record(op) -> list:
    if op.action == "write":
        value = op.value or ""
        return ["write", op.path, _digest(value) if is_secret(op.attr) else value]
    if op.action == "link":
        return ["link", op.path, op.target]
    return [op.action, op.path]


# ----------------------------------------------------------------------------------------------
# The file
# ----------------------------------------------------------------------------------------------

def begin(directory: str, cfs: Configfs, plan, managed_before, *, command: str | None = None) -> dict:
    """Record the intent of ``plan`` durably before its first step; returns the record."""
    rec = {
        "format": FORMAT,
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command if command is not None else " ".join(["nvmet-p2p"] + sys.argv[1:]),
        "configfs": os.path.abspath(cfs.base),
        "boot_id": boot_id(cfs.root),
        "steps": len(plan.ops),
        "ops": [_op_record(o) for o in plan.ops],
        "before": before_facts(cfs, plan.ops),
        "managed_before": managed_before.to_dict(),
        "managed_after": plan.managed_after.to_dict(),
    }
    os.makedirs(directory, mode=0o700, exist_ok=True)
    write_atomic(journal_path(directory), json.dumps(rec, separators=(",", ":")) + "\n",
                 mode=0o600, backups=0)
    return rec


def finish(directory: str) -> None:
    """The apply is over (done, or rolled back in-process): remove the journal durably."""
    path = journal_path(directory)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(directory: str) -> dict | None:
    """The pending journal, None when there is none."""
    path = journal_path(directory)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NvmetP2PError(f"{path}: cannot read the apply journal: {exc.strerror}") from None
    try:
        rec = json.loads(raw.decode("utf-8"))
        if not isinstance(rec, dict) or rec.get("format") != FORMAT:
            raise ValueError(f"format {rec.get('format') if isinstance(rec, dict) else '?'}")
        for k in ("ops", "before", "managed_before", "managed_after", "configfs"):
            if k not in rec:
                raise ValueError(f"no {k!r}")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise NvmetP2PError(f"{path}: the apply journal is damaged ({exc}); an apply was interrupted "
                            f"and cannot be settled automatically: check configfs (nvmet-p2p "
                            f"save FILE shows it), then move the journal away") from None
    return rec


def pending(directory: str) -> bool:
    """One ``stat``: is an apply journal waiting to be settled?"""
    return os.path.exists(journal_path(directory))


# ----------------------------------------------------------------------------------------------
# Settling: completed, or rolled back
# ----------------------------------------------------------------------------------------------

def is_complete(cfs: Configfs, ops: list) -> bool:
    """Does configfs already show the effect of every step (the last one on each path)?"""
    last: dict[str, list] = {}
    for o in ops:
        last[o[1]] = o
    for path, o in last.items():
        action = o[0]
        if action == "mkdir" and not cfs.isdir(path):
            return False
        if action == "rmdir" and cfs.exists(path):
            return False
        if action == "link" and not os.path.islink(cfs.path(path)):
            return False
        if action == "unlink" and cfs.exists(path):
            return False
        if action == "write":
            try:
                live = cfs.read(path).strip()
            except OSError:
                return False
            name = path.rsplit("/", 1)[-1]
            want = o[2]
            if is_secret(name):
                if _digest(live) != want:
                    return False
            elif not same(name, live, want):
                return False
    return True


def rollback_target(live: st.TargetState, facts: list[dict]) -> st.TargetState:
    """``live`` with every touched path put back as ``facts`` describe it (pure)."""
    d = copy.deepcopy(live)
    # directories first, parents before children; then attributes; then links
    dirs = sorted((f for f in facts if "dir" in f), key=lambda f: f["path"].count("/"))
    for f in dirs:
        kind, key, _ = parse_path(f["path"])
        if f["dir"]:
            if _obj(d, kind, key) is None and _parent_exists(d, kind, key):
                _recreate(d, kind, key, dict(f.get("attrs", {})))
        else:
            _remove(d, kind, key)
    for f in facts:
        if "value" in f:
            _set_attr(d, f["path"], f["value"])
    for f in facts:
        if "link" in f:
            kind, key, _ = parse_path(f["path"])
            if not _parent_exists(d, kind, key):
                continue
            lst = (d.subsystems[key[0]].allowed_hosts if kind == "allowed_host"
                   else d.ports[key[0]].subsystems)
            if f["link"] and key[1] not in lst:
                lst.append(key[1])
            elif not f["link"] and key[1] in lst:
                lst.remove(key[1])
    return d


def _recreate(d: st.TargetState, kind: str, key: tuple, attrs: dict[str, str]) -> None:
    enable = attrs.pop("enable", "0").strip() == "1"
    attrs = {k: ("" if k == "device_path" and v == NULL_PATH else v) for k, v in attrs.items()}
    if kind == "host":
        d.hosts[key[0]] = st.Host(key[0], attrs)
    elif kind == "subsystem":
        d.subsystems[key[0]] = st.Subsystem(key[0], attrs)
    elif kind == "namespace":
        d.subsystems[key[0]].namespaces[key[1]] = st.Namespace(key[1], enable, attrs)
    elif kind == "port":
        d.ports[key[0]] = st.Port(key[0], attrs)
    elif kind == "referral":
        d.ports[key[0]].referrals[key[1]] = st.Referral(key[1], enable, attrs)
    elif kind == "ana_group":
        d.ports[key[0]].ana_groups[key[1]] = attrs.get("ana_state", "inaccessible")


def _remove(d: st.TargetState, kind: str, key: tuple) -> None:
    if kind == "host":
        d.hosts.pop(key[0], None)
    elif kind == "subsystem":
        d.subsystems.pop(key[0], None)
        for p in d.ports.values():
            if key[0] in p.subsystems:
                p.subsystems.remove(key[0])
    elif kind == "namespace" and key[0] in d.subsystems:
        d.subsystems[key[0]].namespaces.pop(key[1], None)
    elif kind == "port":
        d.ports.pop(key[0], None)
    elif kind == "referral" and key[0] in d.ports:
        d.ports[key[0]].referrals.pop(key[1], None)
    elif kind == "ana_group" and key[0] in d.ports:
        d.ports[key[0]].ana_groups.pop(key[1], None)


def _set_attr(d: st.TargetState, path: str, value: str | None) -> None:
    kind, key, name = parse_path(path)
    if name is None or not restorable(name, value):
        return
    if kind == "root":
        d.discovery_nqn = value
        return
    if kind == "ana_group":
        port = d.ports.get(key[0])
        if port is not None and key[1] in port.ana_groups:
            port.ana_groups[key[1]] = value
        return
    obj = _obj(d, kind, key)
    if obj is None:
        return
    if kind == "passthru":
        obj.passthru = dict(obj.passthru or {})
        obj.passthru[name] = value
    elif name == "enable" and kind in ("namespace", "referral"):
        obj.enable = value.strip() == "1"
    else:
        obj.attrs[name] = "" if name == "device_path" and value == NULL_PATH else value


def read_scope(facts: list[dict]) -> st.TargetState:
    """A skeleton naming, per touched object, the attributes the rollback compares: what
    :func:`nvmet_p2p.nvmet.configfs.read_state` must read (``only=``) for the rollback plan."""
    s = st.TargetState()
    for f in facts:
        kind, key, name = parse_path(f["path"])
        names = list(f.get("attrs", {})) if f.get("dir") else ([name] if "value" in f else [])
        names = [n for n in names if n != "enable"] if kind in ("namespace", "referral") else names
        if kind == "root" and name:
            s.discovery_nqn = ""
            continue
        if kind in ("host",):
            h = s.hosts.setdefault(key[0], st.Host(key[0]))
            h.attrs.update(dict.fromkeys(names, ""))
        elif kind in ("subsystem", "passthru", "namespace", "allowed_host"):
            sub = s.subsystems.setdefault(key[0], st.Subsystem(key[0]))
            if kind == "subsystem":
                sub.attrs.update(dict.fromkeys(names, ""))
            elif kind == "passthru":
                sub.passthru = dict(sub.passthru or {})
                sub.passthru.update(dict.fromkeys(names, ""))
            elif kind == "namespace":
                ns = sub.namespaces.setdefault(key[1], st.Namespace(key[1]))
                ns.attrs.update(dict.fromkeys(names, ""))
        elif kind in ("port", "port_link", "referral", "ana_group"):
            port = s.ports.setdefault(key[0], st.Port(key[0]))
            if kind == "port":
                port.attrs.update(dict.fromkeys(names, ""))
            elif kind == "referral":
                r = port.referrals.setdefault(key[1], st.Referral(key[1]))
                r.attrs.update(dict.fromkeys(names, ""))
    return s


@dataclass
class Recovery:
    """What :func:`settle` did with an unfinished apply."""

    action: str                  # "completed" | "rolled back" | "discarded"
    reason: str
    journal: dict                # pid, started, command, steps of the interrupted apply
    writes: int = 0
    steps: list[str] = field(default_factory=list)

    def message(self) -> str:
        j = self.journal
        who = (f"an earlier apply (pid {j.get('pid')}, started {j.get('started')}, {j.get('steps')} "
               f"configfs step(s): {j.get('command')})")
        if self.action == "rolled back":
            what = (f"rolled it back with {self.writes} configfs write(s): configfs is as it was "
                    f"before that apply")
        elif self.action == "completed":
            what = "completed it: every configfs step had been done; recorded its managed set"
        else:
            what = "discarded its journal"
        return f"nvmet-p2p: {who} did not finish; {what} ({self.reason})."

    def to_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "configfs_writes": self.writes,
                "interrupted_apply": {k: self.journal.get(k) for k in ("pid", "started", "command", "steps")},
                "message": self.message()}
