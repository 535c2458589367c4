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
the apply lock, when the file is there. The journal is read with a bound (:data:`MAX_BYTES`) and
checked at every level (:func:`check`): each step an action on a path of the nvmet tree, with
names, ids and values as a desired state gives them, and one ``before`` fact per path the
steps touch, of the kind that step needs. A journal that fails is *damaged*: nothing is settled
from it, it is kept, and every command says so until it is moved away. Settle then acts on the
journal's own paths only. Its rule, deterministic:

* **completed** when every step's effect is already in configfs (the process died after its last
  configfs step, during the bookkeeping): the managed set of the plan is recorded, nothing is
  written to configfs;
* **rolled back** otherwise: the state before the apply is the only whole state known to the
  kernel's liking (the desired one was never reached, and a step that was not done may be the one
  the kernel refuses). The touched objects -- and nothing else -- are planned back to ``before``
  by the ordinary planner (:func:`nvmet_p2p.nvmet.plan.build_plan`, so the kernel's ordering
  rules hold for the way back too) and applied: objects the apply created are removed (the only
  objects the rollback may remove), objects it removed are re-created with their old attributes
  (UUIDs and serials included), an attribute goes back to its old value only where a step's
  write shows (a step that never ran changed nothing), and the managed set is the one from
  before. An object the journal never touched is not in that plan: whatever its name, it is
  neither checked nor changed;
* **discarded** when the journal is from another boot: configfs lives in memory, a reboot (power
  loss) already took the half-done tree away. The managed set becomes the union of before and
  after, so no object nvmet-p2p made is ever left out of it.

:func:`begin` checks the record it writes the same way (and its size), so an apply whose journal
the next command could not settle is refused before its first configfs write.

The result is a :class:`Recovery` that says which, why, and what it wrote; the commands print it.
The journal holds the old values of secrets the plan overwrites (needed to put them back): it is
mode 0600 in the 0700 state directory, like the saved plans and ``/etc/nvmet/config.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field

from nvmet_p2p import safeload
from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.configfs import NULL_PATH, Configfs
from nvmet_p2p.nvmet.defs import (
    ANA_GRPID_MAX,
    NSID_MAX,
    PORTID_MAX,
    name_problem,
    nqn_problem,
    rel_path_problem,
    subsystem_nqn_problem,
)
from nvmet_p2p.nvmet.plan import Managed
from nvmet_p2p.nvmet.spec import SPECS, empty_means_unset, is_secret, parse_path, same, write_problem
from nvmet_p2p.nvmet.spec import value_problem as attr_value_problem
from nvmet_p2p.safefs import PrivateDir

JOURNAL_FILE = "journal.json"
FORMAT = 1
#: the largest journal read back (and so written): the limit of every JSON document nvmet-p2p
#: reads (safeload.LIMITS["json"], 64 MiB; about 150,000 namespaces created in one apply)
MAX_BYTES = safeload.LIMITS["json"]
_ACTIONS = ("mkdir", "rmdir", "write", "link", "unlink")

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
                kind, key, _ = parse_path(path)
                fact["target"] = _link_target(kind, key)
            facts.append(fact)
        elif op.action == "write":
            try:
                value = cfs.read(path).strip()
            except OSError:
                value = None
            facts.append({"path": path, "value": value})
    return facts


def _link_target(kind: str, key: tuple) -> str:
    """What the link (kind ``allowed_host`` or ``port_link``) at ``key`` points to."""
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
    """Record the intent of ``plan`` durably before its first step; returns the record.

    The record is checked as :func:`load` will check it (:func:`check`) and must fit in
    :data:`MAX_BYTES`: a journal the next command could not settle is never written -- the apply
    is refused instead, before its first configfs write."""
    rec = {
        "format": FORMAT,
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": safeload.redact(command if command is not None
                                   else " ".join(["nvmet-p2p"] + sys.argv[1:])),
        "configfs": os.path.abspath(cfs.base),
        "boot_id": boot_id(cfs.root),
        "steps": len(plan.ops),
        "ops": [_op_record(o) for o in plan.ops],
        "before": before_facts(cfs, plan.ops),
        "managed_before": managed_before.to_dict(),
        "managed_after": plan.managed_after.to_dict(),
    }
    try:
        check(rec)
    except JournalDamaged as exc:
        raise NvmetP2PError(f"this apply cannot be journaled so that an interruption could be "
                            f"settled ({exc}); nothing was changed") from None
    text = json.dumps(rec, separators=(",", ":")) + "\n"
    if len(text) > MAX_BYTES:
        raise NvmetP2PError(f"this apply's journal would be {len(text)} bytes, more than the "
                            f"{MAX_BYTES} an interrupted apply's journal may have; apply the "
                            f"change in parts (nothing was changed)")
    PrivateDir(directory).write(JOURNAL_FILE, text, mode=0o600)
    return rec


def finish(directory: str) -> None:
    """The apply is over (done, or rolled back in-process): remove the journal durably."""
    PrivateDir(directory).remove(JOURNAL_FILE)


def load(directory: str) -> Journal | None:
    """The pending journal, read with a bound (:data:`MAX_BYTES`, one bounded ``read`` of a
    regular file) and checked at every level (:func:`check`); None when there is none.

    A journal that is not one nvmet-p2p writes is not settled at all: :class:`NvmetP2PError`
    says what is wrong and what to do (nothing is changed, the file is kept)."""
    path = journal_path(directory)
    try:
        raw = PrivateDir(directory).read(JOURNAL_FILE, MAX_BYTES)
        if raw is None:
            return None
        rec = safeload.loads_json(safeload.decode(raw, path), path)
        return check(rec)
    except (safeload.DocumentError, JournalDamaged) as exc:
        what = exc.message if isinstance(exc, safeload.DocumentError) else str(exc)
        raise NvmetP2PError(f"{path}: the apply journal is damaged ({what}); an apply was "
                            f"interrupted and cannot be settled automatically: check configfs "
                            f"(nvmet-p2p save FILE shows it), then move the journal away "
                            f"(nothing was changed)") from None


def pending(directory: str) -> bool:
    """One ``lstat``: is an apply journal waiting to be settled? (A state directory that is not
    safe to use is :class:`~nvmet_p2p.errors.HostError`, as for every use of it.)"""
    return PrivateDir(directory).exists(JOURNAL_FILE)


# ----------------------------------------------------------------------------------------------
# Checking a journal as it is read back: every level, every name, every value
# ----------------------------------------------------------------------------------------------

class JournalDamaged(NvmetP2PError):
    """The journal is not one an apply of nvmet-p2p writes: nothing is settled from it."""


@dataclass(frozen=True)
class JournalOp:
    """One step of the interrupted plan, checked: ``value`` of a write (a secret's is its
    SHA-256, ``sha256:<hex>``), ``target`` of a link."""

    action: str
    path: str
    kind: str
    key: tuple
    name: str | None = None
    value: str | None = None
    target: str | None = None


@dataclass
class Journal:
    """A journal read back and checked (:func:`check`): settle acts on nothing else.

    ``ops``: the plan's steps; ``facts``: path -> what it was like before, exactly one per
    path the steps touch that was not inside a directory the plan itself created (see
    :func:`before_facts`); ``record``: the document (pid, started, command, steps...)."""

    record: dict
    ops: list[JournalOp]
    facts: dict[str, dict]
    managed_before: Managed
    managed_after: Managed

    @property
    def written(self) -> dict[str, list[str]]:
        """Per attribute path, every value the plan wrote there (in order)."""
        out: dict[str, list[str]] = {}
        for o in self.ops:
            if o.action == "write":
                out.setdefault(o.path, []).append(o.value or "")
        return out


_DIR_KINDS = frozenset({"host", "subsystem", "namespace", "port", "referral", "ana_group"})
_LINK_KINDS = frozenset({"allowed_host", "port_link"})
#: a configfs directory entry is at most NAME_MAX bytes (include/uapi/linux/limits.h)
NAME_MAX = 255
#: a configfs attribute's store() is handed at most one page (fs/configfs/file.c:
#: ``SIMPLE_ATTR_SIZE`` 4096); nvmet-p2p writes nothing longer
VALUE_MAX = 4096
_PLAIN_ATTR = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SECRET_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SHAPE = {"format": safeload.OneOf(FORMAT), "pid": int, "started": str, "command": str,
          "configfs": str, "boot_id": safeload.Opt(str), "steps": int, "ops": [list],
          "before": [dict], "managed_before": dict, "managed_after": dict}


def _known(kind: str, name: str) -> bool:
    """Is ``name`` an attribute file the spec of ``kind`` knows (its rows, its ``enable``)?"""
    s = SPECS[kind]
    return s.attr(name) is not None or (name == "enable" and s.enable)


def _id(text: str, lo: int, hi: int, what: str) -> str | None:
    """``text`` must be the kernel's decimal spelling of an id in lo..hi (``int()`` alone would
    take ``+1``, ``1_0`` or `` 1``, names configfs would hold as other directories)."""
    if not text.isdigit() or str(int(text)) != text or not lo <= int(text) <= hi:
        return f"{what} {text!r} is not a number {lo}..{hi}"
    return None


def _name(name: str, what: str, strict: bool) -> str | None:
    """``strict``: as a desired state names objects (an object nvmet-p2p creates); else what
    configfs holds (an object an apply removed or wrote may have been made by hand)."""
    if strict:
        p = (subsystem_nqn_problem(name) if what == "subsystem" else
             nqn_problem(name) if what == "host" else name_problem(name))
    else:
        p = name_problem(name)
        if p is None and len(name.encode("utf-8", "replace")) > NAME_MAX:
            p = f"is longer than {NAME_MAX} bytes"
    return f"{what} {name!r} {p}" if p else None


def path_problem(path: str, strict: bool) -> tuple[str | None, tuple | None]:
    """(problem, (kind, key, name)) of a journal path: inside the nvmet tree, ids as the kernel
    spells them, names as configfs holds them (``strict``: as a desired state names them)."""
    problem = rel_path_problem(path) if isinstance(path, str) else "is not a string"
    if problem:
        return problem, None
    try:
        kind, key, name = parse_path(path)
    except (NvmetP2PError, ValueError):
        return "is not a path of the nvmet tree", None
    p = path.split("/")
    checks: list[str | None] = []
    if kind in ("host",):
        checks.append(_name(key[0], "host", strict))
    elif kind in ("subsystem", "namespace", "passthru", "allowed_host"):
        checks.append(_name(key[0], "subsystem", strict))
        if kind == "namespace":
            checks.append(_id(p[3], 1, NSID_MAX, "nsid"))
        if kind == "allowed_host":
            checks.append(_name(key[1], "host", strict))
    elif kind in ("port", "port_link", "referral", "ana_group"):
        checks.append(_id(p[1], 0, PORTID_MAX, "port id"))
        if kind == "port_link":
            checks.append(_name(key[1], "subsystem", strict))
        elif kind == "referral":
            checks.append(_name(key[1], "referral", strict))
        elif kind == "ana_group":
            checks.append(_id(p[3], 1, ANA_GRPID_MAX, "ANA group"))
    problem = next((c for c in checks if c), None)
    return problem, None if problem else (kind, key, name)


def value_problem(name: str, value) -> str | None:
    """What a desired state would refuse in ``value`` for the attribute ``name``."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if "\x00" in value or len(value) > VALUE_MAX:
        return f"is not an attribute value (NUL, or longer than {VALUE_MAX} characters)"
    if name == "enable":
        return None if value.strip() in ("0", "1") else f"{value!r} is not 0 or 1"
    if name == "discovery_nqn":
        return nqn_problem(value.strip())
    return attr_value_problem(name, value)


def _op(i: int, o, managed_after: Managed) -> JournalOp:
    where = f"$.ops[{i}]"
    if not (isinstance(o, list) and 2 <= len(o) <= 3 and o[0] in _ACTIONS and isinstance(o[1], str)):
        raise JournalDamaged(f"{where}: expected [action, path] or [action, path, value], got "
                             f"{safeload.short(o)}")
    action, path = o[0], o[1]
    want_len = 3 if action in ("write", "link") else 2
    if len(o) != want_len:
        raise JournalDamaged(f"{where}: a {action} step has {want_len} items, not {len(o)}")
    problem, parsed = path_problem(path, strict=action in ("mkdir", "link", "write"))
    if problem:
        raise JournalDamaged(f"{where}: {path!r}: {problem}")
    kind, key, name = parsed
    if action in ("mkdir", "rmdir"):
        if kind not in _DIR_KINDS or name is not None:
            raise JournalDamaged(f"{where}: {action} of {path!r}, which is not an object's directory")
        if kind == "ana_group" and key[1] == 1:
            raise JournalDamaged(f"{where}: ANA group 1 is the kernel's own (never made or removed)")
        if action == "mkdir" and not _managed_has(managed_after, kind, key):
            raise JournalDamaged(f"{where}: creates {path!r}, which its managed set after does not "
                                 f"hold (every object an apply creates is managed)")
        return JournalOp(action, path, kind, key)
    if action in ("link", "unlink"):
        if kind not in _LINK_KINDS:
            raise JournalDamaged(f"{where}: {action} of {path!r}, which is not a link")
        target = None
        if action == "link":
            target = o[2]
            if target != _link_target(kind, key):
                raise JournalDamaged(f"{where}: link {path!r} must point to "
                                     f"{_link_target(kind, key)!r}, not {safeload.short(target)}")
        return JournalOp(action, path, kind, key, target=target)
    # write
    problem = write_problem(path, None)     # (an attribute file of the object's spec)
    if problem or name is None:
        raise JournalDamaged(f"{where}: {problem or repr(path) + ' is not an attribute file'}")
    value = o[2]
    if is_secret(name):
        if not (isinstance(value, str) and _SECRET_DIGEST.match(value)):
            raise JournalDamaged(f"{where}: a secret is journaled as its sha256:<hex> digest only")
    else:
        p = value_problem(name, value)
        if p:
            raise JournalDamaged(f"{where}: {name}: {p}")
    return JournalOp("write", path, kind, key, name, value)


def _fact(i: int, f: dict, op: JournalOp | None) -> None:
    """Does ``f`` describe what ``op`` (the first step on its path) found there?"""
    where = f"$.before[{i}]"
    path = f.get("path")
    if op is None:
        raise JournalDamaged(f"{where}: {safeload.short(path)} is not a path its steps touch "
                             f"(or one inside a directory the plan itself created)")
    keys = set(f) - {"path"}
    if op.action == "mkdir":
        ok = keys == {"dir"} and f["dir"] is False
    elif op.action == "rmdir":
        ok = keys == {"dir", "attrs"} and f["dir"] is True and isinstance(f["attrs"], dict)
        if ok:
            enable = f["attrs"].get("enable")
            for n, v in f["attrs"].items():
                p = (f"{n!r} is not an attribute file name" if not _PLAIN_ATTR.match(n) else
                     value_problem(n, v) if _known(op.kind, n) else
                     None if isinstance(v, str) and "\x00" not in v and len(v) <= VALUE_MAX else
                     "is not an attribute value")
                if p:
                    raise JournalDamaged(f"{where}.attrs: {n}: {p}")
            if enable is not None and op.kind not in ("namespace", "referral"):
                raise JournalDamaged(f"{where}.attrs: a {op.kind} has no enable file")
    elif op.action in ("link", "unlink"):
        ok = keys in ({"link"}, {"link", "target"}) and isinstance(f["link"], bool)
        if ok and f["link"]:
            ok = f.get("target") == _link_target(op.kind, op.key)
        elif ok:
            ok = "target" not in f
    else:
        ok = keys == {"value"}
        if ok and f["value"] is not None:
            p = value_problem(op.name, f["value"])
            if p:
                raise JournalDamaged(f"{where}.value: {op.name}: "
                                     f"{'(value not shown)' if is_secret(op.name) else p}")
    if not ok:
        raise JournalDamaged(f"{where}: does not describe what a {op.action} step on {path!r} "
                             f"found there")


def check(rec) -> Journal:
    """The journal ``rec`` (parsed JSON), checked at every level, as a :class:`Journal`; else
    :class:`JournalDamaged` naming the first problem by its JSON path.

    The shape of every field; every step an action on a path of the nvmet tree whose names and
    ids are what configfs holds (an object the plan creates, an attribute it writes: as a
    desired state names them), each attribute written one nvmet-p2p writes with a value a
    desired state may give; links to their own targets; the managed sets as a managed-set file
    is checked; and the ``before`` facts one per touched path, each of the kind its step needs
    (a created directory did not exist, a removed one had these attributes, a written
    attribute this value, a link was there or not), none for a path the steps never touch.
    """
    try:
        safeload.check(rec, _SHAPE, "journal")
        before = Managed.from_dict(rec["managed_before"])
        after = Managed.from_dict(rec["managed_after"])
    except (safeload.DocumentError, ValueError, TypeError, KeyError) as exc:
        raise JournalDamaged(getattr(exc, "message", None) or str(exc)) from None
    ops = [_op(i, o, after) for i, o in enumerate(rec["ops"])]
    if rec["steps"] != len(ops):
        raise JournalDamaged(f"$.steps: {rec['steps']} steps announced, {len(ops)} recorded")
    expected = _fact_paths(ops)
    facts: dict[str, dict] = {}
    for i, f in enumerate(rec["before"]):
        path = f.get("path")
        if not isinstance(path, str):
            raise JournalDamaged(f"$.before[{i}].path: expected a string")
        if path in facts:
            raise JournalDamaged(f"$.before[{i}]: {path!r} is described twice")
        _fact(i, f, expected.get(path))
        facts[path] = f
    missing = [p for p in expected if p not in facts]
    if missing:
        raise JournalDamaged(f"$.before: nothing recorded about {missing[0]!r}, which a step "
                             f"touches (what to put back there is unknown)")
    return Journal(rec, ops, facts, before, after)


def _fact_paths(ops: list[JournalOp]) -> dict[str, JournalOp]:
    """Path -> first step on it, for every path :func:`before_facts` records: all but those
    inside a directory an earlier step created (nothing was there)."""
    out: dict[str, JournalOp] = {}
    seen: set[str] = set()
    created: list[str] = []
    for o in ops:
        if o.path in seen:
            continue
        seen.add(o.path)
        if any(o.path.startswith(c) for c in created):
            continue
        if o.action == "mkdir":
            created.append(o.path + "/")
        out[o.path] = o
    return out


def _managed_has(m: Managed, kind: str, key: tuple) -> bool:
    table = {"host": m.hosts, "subsystem": m.subsystems, "namespace": m.namespaces,
             "port": m.ports, "referral": m.referrals, "ana_group": m.ana_groups}[kind]
    return (key[0] if len(key) == 1 else key) in table
# ----------------------------------------------------------------------------------------------
# Settling: completed, or rolled back -- on the journal's own paths only
# ----------------------------------------------------------------------------------------------

def _live_value(cfs: Configfs, path: str) -> str | None:
    try:
        return cfs.read(path).strip()
    except OSError:
        return None


def _shows(name: str, live: str | None, written: str) -> bool:
    """Does the live value ``live`` show the write of ``written`` (a secret: its digest)?"""
    if live is None:
        return False
    if is_secret(name):
        return _digest(live) == written
    return same(name, live, written)


def is_complete(cfs: Configfs, ops: list[JournalOp]) -> bool:
    """Does configfs already show the effect of every step (the last one on each path)?"""
    last: dict[str, JournalOp] = {}
    for o in ops:
        last[o.path] = o
    for path, o in last.items():
        if o.action == "mkdir" and not cfs.isdir(path):
            return False
        if o.action == "rmdir" and cfs.exists(path):
            return False
        if o.action == "link" and not os.path.islink(cfs.path(path)):
            return False
        if o.action == "unlink" and os.path.lexists(cfs.path(path)):
            return False
        if o.action == "write" and not _shows(o.name or "", _live_value(cfs, path), o.value or ""):
            return False
    return True


def read_scope(j: Journal) -> st.TargetState:
    """A skeleton naming, per touched object, the attributes the rollback compares: what
    :func:`nvmet_p2p.nvmet.configfs.read_state` must read (``only=``) for the rollback plan."""
    s = st.TargetState()
    for path, f in j.facts.items():
        kind, key, name = parse_path(path)
        names = list(f.get("attrs", {})) if f.get("dir") else ([name] if "value" in f else [])
        names = [n for n in names if n != "enable"] if kind in ("namespace", "referral") else names
        if kind == "root":
            s.discovery_nqn = ""
        elif kind == "host":
            s.hosts.setdefault(key[0], st.Host(key[0])).attrs.update(dict.fromkeys(names, ""))
        elif kind in ("subsystem", "passthru", "namespace", "allowed_host"):
            sub = s.subsystems.setdefault(key[0], st.Subsystem(key[0]))
            if kind == "subsystem":
                sub.attrs.update(dict.fromkeys(names, ""))
            elif kind == "passthru":
                sub.passthru = {**(sub.passthru or {}), **dict.fromkeys(names, "")}
            elif kind == "namespace":
                sub.namespaces.setdefault(key[1], st.Namespace(key[1])).attrs.update(
                    dict.fromkeys(names, ""))
        else:
            port = s.ports.setdefault(key[0], st.Port(key[0]))
            if kind == "port":
                port.attrs.update(dict.fromkeys(names, ""))
            elif kind == "referral":
                port.referrals.setdefault(key[1], st.Referral(key[1])).attrs.update(
                    dict.fromkeys(names, ""))
    return s


class _Rollback:
    """The desired state of a rollback: only the objects the journal's steps touched (and the
    parents they live in), each as ``before`` describes it where a step's effect shows, and the
    set of what the steps created (the only things the planner may remove)."""

    def __init__(self, j: Journal, live: st.TargetState, cfs: Configfs):
        self.j, self.live, self.cfs = j, live, cfs
        self.desired = st.TargetState()
        self.created = Managed()

    # -- the objects of the desired state ------------------------------------------------------
    def obj(self, kind: str, key: tuple):
        """The object (kind, key) in the desired state, named from its live self (attributes
        left out: only what is put back is named); None when it is neither live nor re-created."""
        d, live = self.desired, self.live
        if kind == "host":
            if key[0] not in d.hosts and key[0] in live.hosts:
                d.hosts[key[0]] = st.Host(key[0])
            return d.hosts.get(key[0])
        if kind in ("subsystem", "passthru", "allowed_host"):
            if key[0] not in d.subsystems and key[0] in live.subsystems:
                d.subsystems[key[0]] = st.Subsystem(key[0])
            return d.subsystems.get(key[0])
        if kind == "namespace":
            sub = self.obj("subsystem", key[:1])
            if sub is None:
                return None
            lns = live.subsystems.get(key[0], st.Subsystem(key[0])).namespaces.get(key[1])
            if key[1] not in sub.namespaces and lns is not None:
                sub.namespaces[key[1]] = st.Namespace(key[1], lns.enable)
            return sub.namespaces.get(key[1])
        if kind in ("port", "port_link"):
            if key[0] not in d.ports and key[0] in live.ports:
                d.ports[key[0]] = st.Port(key[0])
            return d.ports.get(key[0])
        port = self.obj("port", key[:1])
        if port is None:
            return None
        lp = live.ports.get(key[0], st.Port(key[0]))
        if kind == "referral":
            lr = lp.referrals.get(key[1])
            if key[1] not in port.referrals and lr is not None:
                port.referrals[key[1]] = st.Referral(key[1], lr.enable)
            return port.referrals.get(key[1])
        if key[1] not in port.ana_groups and key[1] in lp.ana_groups:
            port.ana_groups[key[1]] = lp.ana_groups[key[1]]
        return port if key[1] in port.ana_groups else None

    def recreate(self, kind: str, key: tuple, attrs: dict[str, str]) -> None:
        """An object a step removed and that is gone: back with its old attributes."""
        attrs = {k: ("" if k == "device_path" and v == NULL_PATH else v) for k, v in attrs.items()}
        enable = attrs.pop("enable", "0").strip() == "1"
        attrs = {k: v for k, v in attrs.items() if restorable(k, v)}
        d = self.desired
        if kind == "host":
            d.hosts[key[0]] = st.Host(key[0], attrs)
            return
        if kind == "subsystem":
            d.subsystems[key[0]] = st.Subsystem(key[0], attrs)
            return
        if kind == "port":
            d.ports[key[0]] = st.Port(key[0], attrs)
            return
        parent = self.obj("subsystem" if kind == "namespace" else "port", key[:1])
        if parent is None:
            return          # its parent is gone and was not removed by this apply: nowhere to go
        if kind == "namespace":
            parent.namespaces[key[1]] = st.Namespace(key[1], enable, attrs)
        elif kind == "referral":
            parent.referrals[key[1]] = st.Referral(key[1], enable, attrs)
        else:
            parent.ana_groups[key[1]] = attrs.get("ana_state", "inaccessible")

    # -- the facts -------------------------------------------------------------------------------
    def build(self) -> tuple[st.TargetState, Managed]:
        facts = self.j.facts
        dirs = sorted((p for p, f in facts.items() if "dir" in f), key=lambda p: p.count("/"))
        for path in dirs:
            kind, key, _ = parse_path(path)
            if facts[path]["dir"]:
                if not _live_has(self.live, kind, key):
                    self.recreate(kind, key, dict(facts[path]["attrs"]))
            else:
                _managed_add(self.created, kind, key)      # made by a step: removed if there
                if kind in _PARENT:                        # (its parent names it for the planner)
                    self.obj(_PARENT[kind], key[:1])
        written = self.j.written
        for path, f in facts.items():
            if "value" in f:
                self.attr(path, f["value"], written.get(path, []))
        for path, f in facts.items():
            if "link" in f:
                self.link(path, f["link"])
        return self.desired, self.created

    def attr(self, path: str, before: str | None, written: list[str]) -> None:
        """Put an attribute back only where a step's write shows (the step ran): a value the
        plan never wrote there is someone else's, and is left as it is."""
        kind, key, name = parse_path(path)
        live = _live_value(self.cfs, path)
        if not restorable(name, before) or not any(_shows(name, live, w) for w in written):
            return
        if live is not None and same(name, live, before):
            return
        if kind == "root":
            self.desired.discovery_nqn = before
            return
        obj = self.obj(kind, key)
        if obj is None:
            return
        value = "" if name == "device_path" and before == NULL_PATH else before
        if kind == "passthru":
            lp = self.live.subsystems[key[0]].passthru or {}
            obj.passthru = {"enable": lp.get("enable", "0"), **(obj.passthru or {}), name: value}
        elif kind == "ana_group":
            obj.ana_groups[key[1]] = value
        elif name == "enable" and kind in ("namespace", "referral"):
            obj.enable = value.strip() == "1"
        else:
            obj.attrs[name] = value

    def link(self, path: str, was: bool) -> None:
        kind, key, _ = parse_path(path)
        parent = self.obj(kind, key)
        if not was:
            _managed_add(self.created, kind, key)       # made by a step: removed if there
            return
        if parent is None:
            return
        names = parent.allowed_hosts if kind == "allowed_host" else parent.subsystems
        if key[1] not in names:
            names.append(key[1])


_PARENT = {"namespace": "subsystem", "referral": "port", "ana_group": "port"}


def _live_has(live: st.TargetState, kind: str, key: tuple) -> bool:
    if kind == "host":
        return key[0] in live.hosts
    if kind == "subsystem":
        return key[0] in live.subsystems
    if kind == "namespace":
        return key[1] in live.subsystems.get(key[0], st.Subsystem(key[0])).namespaces
    if kind == "port":
        return key[0] in live.ports
    lp = live.ports.get(key[0], st.Port(key[0]))
    return key[1] in (lp.referrals if kind == "referral" else lp.ana_groups)


def _managed_add(m: Managed, kind: str, key: tuple) -> None:
    table = {"host": m.hosts, "subsystem": m.subsystems, "namespace": m.namespaces,
             "port": m.ports, "referral": m.referrals, "ana_group": m.ana_groups,
             "allowed_host": m.allowed_hosts, "port_link": m.port_links}[kind]
    table.add(key[0] if len(key) == 1 else key)


def rollback(j: Journal, live: st.TargetState, cfs: Configfs) -> tuple[st.TargetState, Managed]:
    """The rollback's desired state and the set the planner may remove from (pure but for
    the reads of the touched attributes): planned with ``prune`` against ``live``, it puts
    back what the journal's steps changed and nothing else -- every object it does not name
    is left alone, whatever its name."""
    return _Rollback(j, live, cfs).build()


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
