"""The shell's staging area: the live tree, the staged edits, and the one way to write.

:class:`Session` reads configfs once (``base``) and keeps the shell's *view*: ``base`` with the
staged :class:`~nvmet_p2p.shell.edits.Edit` list applied. Every command reads the view (no
configfs read per keypress); a command that changes something stages an edit.

Writing goes through the reconciler and nothing else. ``diff`` and ``commit`` read configfs
again, replay the edits on that fresh read (someone else's changes since are kept; an edit
that no longer applies is reported as a conflict), and let :func:`nvmet_p2p.nvmet.plan.build_plan`
turn "live -> desired" into ordered operations. ``commit`` does that under the apply lock
(:func:`nvmet_p2p.nvmet.apply.locked`: the tree and the managed set read after the lock was
taken), executes the plan and undoes every completed step if the kernel refuses one
(:class:`~nvmet_p2p.nvmet.apply.ApplyFailed` carries the kernel's own log lines). The plan is
built as if every live object were managed, with ``prune``, so a ``delete`` in the shell
removes what it names; its recorded ``managed_after`` is then set
to what the managed set really becomes: what nvmet-p2p managed before, plus what the shell
created, minus what is gone (a shell edit never adopts an object nvmetcli made).

With ``write_through`` every staged edit is committed at once (nvmetcli's behaviour); an edit
the kernel refuses is rolled back and dropped.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from nvmet_p2p import paths
from nvmet_p2p.errors import Busy, NvmetP2PError
from nvmet_p2p.nvmet import defs, lastapply
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.apply import (
    ApplyFailed,
    ApplyInterrupted,
    Locked,
    ManagedStore,
    Outcome,
    locked,
    open_configfs,
    settle_pending,
)
from nvmet_p2p.nvmet.configfs import Configfs, capabilities, read_state
from nvmet_p2p.nvmet.plan import Managed, Plan, build_plan
from nvmet_p2p.shell.edits import Edit, EditError, Locator


class Conflict(NvmetP2PError):
    """A staged edit no longer applies to configfs as it is now (nothing was changed)."""


# ----------------------------------------------------------------------------------------------
# What is pending: base vs view, object by object
# ----------------------------------------------------------------------------------------------

@dataclass
class Pending:
    """``created``: locators new in the view; ``changed``: locator -> what differs
    (attribute names, ``enable``, ``links``); ``gone``: container path -> names removed."""

    created: set = field(default_factory=set)
    changed: dict = field(default_factory=dict)
    gone: dict = field(default_factory=dict)

    def mark(self, loc: Locator) -> str | None:
        if loc in self.created:
            return "new"
        what = self.changed.get(loc)
        return f"changed: {', '.join(sorted(what))}" if what else None


def _diff_attrs(a: dict, b: dict) -> set[str]:
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def _ns_diff(a: st.Namespace, b: st.Namespace) -> set[str]:
    return _diff_attrs(a.attrs, b.attrs) | ({"enable"} if a.enable != b.enable else set())


def _objs(p: Pending, kind, old: dict, new: dict, keyf, inner) -> None:
    """Objects of one container: gone ones under ``kind``, new and changed ones by locator."""
    for k in set(old) - set(new):
        p.gone.setdefault(kind, []).append(str(k))
    for k, o in new.items():
        if k not in old:
            p.created.add(keyf(k))
        else:
            what = inner(old[k], o)
            if what:
                p.changed[keyf(k)] = what


def _compare_subsystems(p: Pending, base: st.TargetState, view: st.TargetState) -> None:
    for nqn, sub in view.subsystems.items():
        old = base.subsystems.get(nqn)
        if old is None:
            p.created.update(("namespace", nqn, i) for i in sub.namespaces)
            continue
        _objs(p, ("namespaces", nqn), old.namespaces, sub.namespaces,
              lambda k, n=nqn: ("namespace", n, k), _ns_diff)
        for h in set(old.allowed_hosts) - set(sub.allowed_hosts):
            p.gone.setdefault(("allowed_hosts", nqn), []).append(h)
        if (old.passthru or {}) != (sub.passthru or {}):
            p.changed[("passthru", nqn)] = _diff_attrs(old.passthru or {}, sub.passthru or {})
    _objs(p, ("subsystems",), base.subsystems, view.subsystems, lambda k: ("subsystem", k),
          lambda a, b: _diff_attrs(a.attrs, b.attrs)
          | ({"allowed_hosts"} if sorted(a.allowed_hosts) != sorted(b.allowed_hosts) else set()))


def _compare_ports(p: Pending, base: st.TargetState, view: st.TargetState) -> None:
    for pid, port in view.ports.items():
        old = base.ports.get(pid)
        if old is None:
            p.created.update(("referral", pid, r) for r in port.referrals)
            p.created.update(("ana_group", pid, g) for g in port.ana_groups)
            continue
        _objs(p, ("referrals", pid), old.referrals, port.referrals,
              lambda k, i=pid: ("referral", i, k), _ns_diff)
        _objs(p, ("ana_groups", pid), old.ana_groups, port.ana_groups,
              lambda k, i=pid: ("ana_group", i, k), lambda a, b: {"ana_state"} if a != b else set())
        for n in set(old.subsystems) - set(port.subsystems):
            p.gone.setdefault(("port_subsystems", pid), []).append(n)
    _objs(p, ("ports",), base.ports, view.ports, lambda k: ("port", k),
          lambda a, b: _diff_attrs(a.attrs, b.attrs)
          | ({"subsystems"} if sorted(a.subsystems) != sorted(b.subsystems) else set()))


def _compare(base: st.TargetState, view: st.TargetState) -> Pending:
    p = Pending()
    if base.discovery_nqn != view.discovery_nqn:
        p.changed[("root",)] = {"discovery_nqn"}
    _objs(p, ("hosts",), base.hosts, view.hosts, lambda k: ("host", k),
          lambda a, b: _diff_attrs(a.attrs, b.attrs))
    _compare_subsystems(p, base, view)
    _compare_ports(p, base, view)
    return p


# ----------------------------------------------------------------------------------------------
# The managed set a shell commit records
# ----------------------------------------------------------------------------------------------

def _minus(a: Managed, b: Managed) -> Managed:
    out = Managed()
    for f in dataclasses.fields(Managed):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        setattr(out, f.name, (va and not vb) if isinstance(va, bool) else va - vb)
    return out


def set_aside(live: st.TargetState, desired: st.TargetState, managed: Managed) -> list[str]:
    """Leave alone what the kernel holds under a name nvmet-p2p cannot manage (``mkdir``
    took it, the planner refuses it: see :func:`nvmet_p2p.nvmet.plan.name_problems`) when no staged
    edit touched it: such hosts and subsystems, and the links to them that are still wanted,
    leave ``desired`` and ``managed`` (changed in place), so the plan neither checks nor
    touches them. What the user did change under such a name stays, and the plan refuses it.
    Returns one line per object set aside."""
    hosts = {h for h in live.hosts if defs.nqn_problem(h)
             and h in desired.hosts and desired.hosts[h] == live.hosts[h]}
    subs = {n for n in live.subsystems if defs.subsystem_nqn_problem(n)
            and n in desired.subsystems and desired.subsystems[n] == live.subsystems[n]}
    for h in hosts:
        del desired.hosts[h]
        managed.hosts.discard(h)
    for n in subs:
        del desired.subsystems[n]
        managed.subsystems.discard(n)
        managed.namespaces -= {k for k in managed.namespaces if k[0] == n}
    odd_hosts = {h for h in live.hosts if defs.nqn_problem(h)}
    odd_subs = {n for n in live.subsystems if defs.subsystem_nqn_problem(n)}
    for n, sub in desired.subsystems.items():
        for h in [h for h in sub.allowed_hosts if h in odd_hosts]:
            sub.allowed_hosts.remove(h)
            managed.allowed_hosts.discard((n, h))
    for pid, port in desired.ports.items():
        for n in [n for n in port.subsystems if n in odd_subs]:
            port.subsystems.remove(n)
            managed.port_links.discard((pid, n))
    return ([f"left alone: host {h!r} (nvmet-p2p cannot manage that name)" for h in sorted(hosts)]
            + [f"left alone: subsystem {n!r} (nvmet-p2p cannot manage that name)" for n in sorted(subs)])


def managed_after(before: Managed, live: st.TargetState, desired: st.TargetState) -> Managed:
    """What nvmet-p2p manages after a shell commit: what it managed, plus what the commit
    creates, limited to what still exists."""
    after = Managed.of_state(desired)
    created = _minus(after, Managed.of_state(live))
    return before.union(created).intersect(after)


# ----------------------------------------------------------------------------------------------
# The session
# ----------------------------------------------------------------------------------------------

@dataclass
class CommitResult:
    plan: Plan
    outcome: Outcome | None          # None: nothing to write
    edits: int


class Session:
    """Staged editing of the nvmet tree below ``root`` (see the module docstring)."""

    def __init__(self, root: str = "/", directory: str | None = None, *,
                 cfs: Configfs | None = None, kernel: str | None = None,
                 write_through: bool = False, lock_timeout: float | None = None):
        self.root = root
        self.directory = paths.state_dir(root, directory)
        self.kernel = kernel
        self.cfs = cfs or open_configfs(root)
        self.write_through = write_through
        self.lock_timeout = lock_timeout
        #: an earlier apply that was interrupted, settled before reading the tree (or None)
        self.recovery = settle_pending(self.cfs, self.directory, root, kernel=kernel,
                                       lock_timeout=lock_timeout)
        self.edits: list[Edit] = []
        self.generation = 0
        self._pending: tuple[int, Pending] | None = None
        self._changes: list[tuple[int, frozenset | None]] = []
        self.reload()

    def _changed(self, scope: frozenset | None = None) -> None:
        """A new generation of the view; ``scope``: the subsystems it may have changed."""
        self.generation += 1
        self._changes.append((self.generation, scope))
        if len(self._changes) > 256:
            self._changes = [(self.generation, None)]

    def changed_since(self, generation: int) -> frozenset | None:
        """Subsystems whose p2p facts may differ from ``generation`` (``None``: any)."""
        if generation == self.generation:
            return frozenset()
        if not self._changes or self._changes[0][0] > generation + 1:
            return None
        out: set = set()
        for g, scope in self._changes:
            if g > generation:
                if scope is None:
                    return None
                out |= scope
        return frozenset(out)

    # -- reading -------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read configfs again as the base, the edits dropped."""
        self.base = read_state(self.cfs)
        self.caps = capabilities(self.cfs, self.kernel, live=self.base)
        self.edits = []
        self.view = copy.deepcopy(self.base)
        self._changed()

    def refresh(self) -> list[str]:
        """Re-read configfs and replay the staged edits on it; edits that no longer apply are
        dropped and named in the returned lines."""
        base = read_state(self.cfs)
        view = copy.deepcopy(base)
        kept, dropped = [], []
        for e in self.edits:
            try:
                e.apply(view)
                kept.append(e)
            except EditError as exc:
                dropped.append(f"dropped `{e.text}`: {exc}")
        self.base, self.view, self.edits = base, view, kept
        self.caps = capabilities(self.cfs, self.kernel, live=base)
        self._changed()
        return dropped

    @property
    def dirty(self) -> bool:
        return bool(self.edits)

    def pending(self) -> Pending:
        if self._pending is None or self._pending[0] != self.generation:
            self._pending = (self.generation, _compare(self.base, self.view))
        return self._pending[1]

    # -- staging -------------------------------------------------------------------------------
    def stage(self, edit: Edit) -> CommitResult | None:
        """Apply ``edit`` to the view (an :class:`EditError` leaves everything as it was);
        with ``write_through``, commit it at once."""
        edit.apply(self.view)
        self.edits.append(edit)
        self._changed(edit.scope)
        if not self.write_through:
            return None
        try:
            return self.commit()
        except ApplyInterrupted as exc:
            if not exc.completed:
                self.undo()
            raise
        except (ApplyFailed, Conflict, Busy, NvmetP2PError):
            self.undo()
            raise

    def undo(self) -> Edit:
        if not self.edits:
            raise EditError("nothing to undo: no staged changes")
        e = self.edits.pop()
        self.view = self._replay(self.base, self.edits)
        self._changed()
        return e

    def abort(self) -> int:
        n = len(self.edits)
        self.edits = []
        self.view = copy.deepcopy(self.base)
        self._changed()
        return n

    @staticmethod
    def _replay(base: st.TargetState, edits: list[Edit]) -> st.TargetState:
        s = copy.deepcopy(base)
        for e in edits:
            try:
                e.apply(s)
            except EditError as exc:
                raise Conflict(f"configfs changed since this change was staged: `{e.text}` no "
                               f"longer applies ({exc}); `refresh` re-reads the tree, `undo` "
                               "drops the last change (nothing was changed)") from None
        return s

    # -- planning and writing ------------------------------------------------------------------
    def plan(self) -> Plan:
        """The reconciler's plan from configfs as it is now to the view (nothing written; what
        ``diff`` shows -- ``commit`` makes it again under the apply lock)."""
        live = read_state(self.cfs)
        return self._plan(live, ManagedStore(self.directory).load(),
                          capabilities(self.cfs, self.kernel, live=live))

    def _plan(self, live: st.TargetState, before: Managed, caps, target: Locked | None = None) -> Plan:
        """The staged edits replayed on ``live``, planned as if every live object were managed
        (with prune: a ``delete`` removes what it names); the managed set it records is
        ``before`` plus what the commit creates (:func:`managed_after`)."""
        desired = self._replay(live, self.edits)
        everything = before.union(Managed.of_state(live))
        aside = set_aside(live, desired, everything)
        if target is not None:
            plan = target.plan(desired, prune=True, managed=everything)
        else:
            plan = build_plan(live, desired, everything, prune=True, caps=caps, fingerprint=True)
        plan.managed_after = managed_after(before, live, desired)
        plan.warnings = [w for w in plan.warnings if not any(a.split("'")[1] in w for a in aside)]
        return plan

    def commit(self) -> CommitResult:
        """Apply the staged edits through the reconciler (all or nothing): replayed on the tree
        and planned against the managed set as read under the apply lock, so that whatever
        another apply did meanwhile is planned from, never undone or forgotten."""
        n = len(self.edits)
        try:
            with lastapply.recorded(self.directory, "shell") as rec, \
                    locked(self.root, self.directory, cfs=self.cfs, kernel=self.kernel,
                           lock_timeout=self.lock_timeout) as target:
                plan = self._plan(target.live, target.managed, None, target)
                if plan.empty:
                    rec.outcome = None
                    outcome = None
                else:
                    rec.outcome = outcome = target.execute(plan)
        except ApplyInterrupted as exc:         # Ctrl-C or SIGTERM: undone, unless it was done
            self.reload() if exc.completed else self.refresh()
            raise
        except (ApplyFailed, Busy):
            self.refresh()           # configfs is as before; the edits stay staged
            raise
        self.reload()
        return CommitResult(plan, outcome, n)
