"""The saved configuration -- the file the boot unit restores -- against the live target.

``apply`` (the CLI, the Ansible module, a shell ``commit``) changes the running target; what
the next boot brings back is the saved file (``nvmet-p2p.service`` runs ``restore FILE`` on an
empty configfs, configfs does not survive a reboot). The two **drift** apart whenever configfs
changes and nobody saves: a reboot then restores the old configuration, or none. This module
says whether and how they differ -- for ``status``, ``doctor``, the metric
``nvmet_p2p_saved_config_drift`` and the warning after an ``apply`` -- and saves the live tree
under the apply lock (``apply --save``, ``save: true`` in Ansible).

Drift is judged by the planner itself (:func:`compare`): the plan that would take the live tree
to the saved file, with every live object counted as managed and pruning on, is exactly what a
boot would not reproduce. Attributes the saved file does not name are not drift (a restore
leaves them to the kernel); a missing saved file is an empty configuration (a reboot restores
nothing); a saved file that cannot be read is reported as such, never as "in sync".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import apply_lock, settle
from nvmet_p2p.nvmet.configfs import Configfs, read_state
from nvmet_p2p.nvmet.plan import Change, Managed, build_plan

#: plan actions that are a difference (``adopt``/``left`` never occur: every live object counts)
DRIFT_ACTIONS = ("create", "update", "cycle", "delete")
#: what each action means for a reboot
_AFTER_REBOOT = {"create": "only in the saved file: a reboot brings it back",
                 "update": "differs: a reboot restores the saved values",
                 "cycle": "differs: a reboot restores the saved values",
                 "delete": "not in the saved file: a reboot loses it"}
_SIGN = {"create": "+", "update": "~", "cycle": "~", "delete": "-"}


@dataclass
class Drift:
    """The live target against the saved file ``file``. ``error``: the file could not be read
    (the comparison was not made)."""

    file: str
    exists: bool = False
    changes: list[Change] = field(default_factory=list)
    error: str | None = None

    @property
    def in_sync(self) -> bool:
        return self.error is None and not self.changes

    def lines(self, limit: int = 20) -> list[str]:
        """One line per object that differs (at most ``limit``, then a count)."""
        out = []
        for c in self.changes[:limit]:
            attrs = f" ({', '.join(n for n, _o, _v in c.attrs)})" if c.attrs and c.action != "create" else ""
            out.append(f"{_SIGN[c.action]} {c.kind} {c.key}{attrs}: {_AFTER_REBOOT[c.action]}")
        if len(self.changes) > limit:
            out.append(f"... and {len(self.changes) - limit} more")
        return out

    def summary(self) -> str:
        """One line for people."""
        if self.error:
            return f"the saved configuration {self.file} cannot be read: {self.error}"
        if self.in_sync:
            what = "matches the live target" if self.exists else \
                "does not exist, and the target is empty"
            return f"the saved configuration {self.file} {what}"
        n = len(self.changes)
        where = (f"differs from the live target in {n} object{'s' if n != 1 else ''}"
                 if self.exists else f"does not exist: a reboot loses all {n} live object(s)")
        return (f"the saved configuration {self.file} (restored at boot) {where}; "
                f"`nvmet-p2p save` (or `apply --save`) keeps the live target across a reboot")

    def to_dict(self) -> dict:
        return {"file": self.file, "exists": self.exists, "in_sync": self.in_sync,
                "error": self.error, "changes": len(self.changes),
                "objects": [{"action": c.action, "kind": c.kind, "key": c.key,
                             "attrs": [n for n, _o, _v in c.attrs]} for c in self.changes],
                "summary": self.summary(), "lines": self.lines()}


def compare(live: st.TargetState, saved: st.TargetState) -> list[Change]:
    """The objects a boot that restores ``saved`` would not reproduce as ``live`` has them
    (pure; the planner's object-level changes from ``live`` to ``saved``)."""
    plan = build_plan(live, saved, Managed.of_state(live), prune=True, fingerprint=False)
    if not plan.ops:
        return []
    return [c for c in plan.changes if c.action in DRIFT_ACTIONS]


def check(live: st.TargetState, path: str) -> Drift:
    """``live`` against the saved file ``path``; never raises for the file (an unreadable one
    is :attr:`Drift.error`)."""
    path = os.path.abspath(path)
    exists = os.path.lexists(path)
    try:
        saved = statefile.load(path) if exists else st.TargetState()
        return Drift(path, exists, compare(live, saved))
    except NvmetP2PError as exc:
        return Drift(path, exists, error=str(exc))


def check_tree(cfs: Configfs, path: str) -> Drift:
    """:func:`check` of the whole live tree of ``cfs``."""
    return check(read_state(cfs), path)


@dataclass
class Saved:
    """What :func:`save_live` did: ``changed`` is False when the file already held the live
    target (it was left alone); ``notes``: what ``prepare`` said (the export policy's
    consents written with the tree)."""

    file: str
    backup: str | None
    changed: bool
    counts: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"file": self.file, "saved": True, "changed": self.changed, "backup": self.backup,
                "in_sync": True, **self.counts, "notes": list(self.notes)}


def counts(s: st.TargetState) -> dict:
    return {"hosts": len(s.hosts), "subsystems": len(s.subsystems),
            "namespaces": sum(len(x.namespaces) for x in s.subsystems.values()),
            "ports": len(s.ports)}


def save_live(cfs: Configfs, path: str, directory: str, *, lock_timeout: float | None = None,
              progress=None, prepare: Callable[[st.TargetState], list[str]] | None = None) -> Saved:
    """Write the live tree to ``path`` (:func:`nvmet_p2p.nvmet.statefile.save`) under the apply
    lock, after settling an interrupted apply: never a half-applied tree, never one that another
    apply is changing. ``prepare``: marks the tree before it is written and returns notes (the
    export policy's consents, :func:`nvmet_p2p.policy.exportpolicy.consents_for_save`: what runs
    is what the boot restores, so a file-backed or in-use export is saved with its consent, as
    ``nvmet-p2p save`` writes it)."""
    path = os.path.abspath(path)
    with apply_lock(directory, lock_timeout, progress):
        settle(cfs, directory, cfs.root)
        live = read_state(cfs)
        notes = prepare(live) if prepare else []
        before = _inode(path)
        backup = statefile.save(live, path)
    return Saved(path, backup, before is None or before != _inode(path), counts(live), notes)


def _inode(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``: a save that writes replaces the file (a new inode)."""
    try:
        s = os.lstat(path)
    except FileNotFoundError:
        return None
    return s.st_dev, s.st_ino
