"""Executing a plan against configfs: all or nothing, one at a time, every write counted.

Before each step the engine records how to undo it, from what configfs shows at that moment
(the old value of an attribute; for a directory about to be removed, every attribute and its
``enable``). If the kernel refuses a step, the completed steps are undone in reverse order and
:class:`ApplyFailed` reports the kernel's own words: the errno and the kernel log lines printed
while the step ran (read through :mod:`nvmet_p2p.kmsg`). After a failed apply the tree is back
to what it was (checked by the lab tests with a full dump before and after).

Only one apply runs at a time: :func:`apply_lock` takes an exclusive ``flock`` on
``<state dir>/lock``; a second apply waits for it up to ``lock_timeout`` seconds (default
:func:`nvmet_p2p.paths.lock_timeout`: ``$NVMET_P2P_LOCK_TIMEOUT``, else 30, for the command line
and library callers alike) and then gets :class:`nvmet_p2p.errors.Busy` naming the holder.

Whatever ends an apply early leaves the target before-or-after, never a mix: a kernel refusal,
an exception, SIGTERM, SIGINT, SIGHUP and the other catchable signals that would end the process
(:data:`STOP_SIGNALS`) roll the completed steps back in-process (the signals then end the
command with 128 + the signal's number -- 143, 130, 129 ... --, :class:`ApplyInterrupted`; a
signal inherited as ignored stays ignored); for what cannot be caught (SIGKILL, a
crash, power loss) the intent is in :mod:`nvmet_p2p.nvmet.journal` before the first write, and the
next command settles it (:func:`settle`) before it does anything else.

:func:`reconcile` is the whole "plan + apply" cycle used by ``apply``, ``restore`` and
``clear`` (and by the placement code with a ``TargetState`` of its own).

Every change is planned from the live tree and the managed set as read *after* the lock was
taken: :func:`locked` takes the lock, settles, reads both and hands out a :class:`Locked`, the
only thing that executes a plan (one it made, or a saved plan whose fingerprints of the tree and
of the managed set still match). A writer whose wish depends on the target (the watcher, the
shell, an A/B toggle, a partial restore) passes :func:`reconcile` a function of the live tree and
the managed set, called in the locked section: an apply that ran while it waited for the lock
(a host revoked by ``apply --prune``) is planned from, never undone.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nvmet_p2p import exits, paths, safeload
from nvmet_p2p.errors import Busy, KernelError, NvmetP2PError
from nvmet_p2p.kmsg import KernelLog
from nvmet_p2p.nvmet import journal as jr
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.configfs import Configfs, ConfigfsError, capabilities, read_state
from nvmet_p2p.nvmet.plan import (
    Managed,
    Op,
    Plan,
    build_plan,
    clear_plan,
    digest,
    managed_digest,
)
from nvmet_p2p.nvmet.spec import SPECS, parse_path, same
from nvmet_p2p.safefs import PrivateDir

#: a desired state computed from the live tree and the managed set (``desire(live, managed)``):
#: what a writer passes when what it wants depends on what is there; :func:`reconcile` calls it
#: under the lock, with what it read there
Desire = Callable[[st.TargetState, Managed], st.TargetState]

MANAGED_FILE = "managed.json"
LOCK_FILE = "lock"

#: test-only hook: ``NVMET_P2P_TEST_KILL_AFTER_STEP=K`` makes the applier SIGKILL itself once K
#: configfs steps are done (0: right after the journal; ``record``: after the managed set, before
#: the journal is removed) -- what a crash or ``kill -9`` at that point leaves behind
TEST_KILL_ENV = paths.TEST_KILL_ENV
#: test-only hook: ``NVMET_P2P_TEST_SIGNAL_AFTER_STEP=K:SIG`` sends SIG (TERM, INT) to itself
TEST_SIGNAL_ENV = paths.TEST_SIGNAL_ENV


# ----------------------------------------------------------------------------------------------
# Managed set on disk, lock
# ----------------------------------------------------------------------------------------------

class ManagedStore:
    """``<state dir>/managed.json``: which objects nvmet-p2p manages (see :class:`Managed`).

    While an apply journal is pending (an apply was interrupted and not settled yet), the set
    read also holds what that apply was creating: no object nvmet-p2p made is ever outside it.
    The file is read and written through :class:`nvmet_p2p.safefs.PrivateDir` (no symlink, FIFO
    or device followed; bounded; atomic and durable, one backup ``managed.json.1``).
    """

    def __init__(self, directory: str):
        self.directory = directory
        self.dir = PrivateDir(directory)
        self.path = self.dir.file(MANAGED_FILE)

    def load(self) -> Managed:
        m = self._load_file()
        j = jr.load(self.directory)
        if j is not None:
            m = m.union(j.managed_before).union(j.managed_after)
        return m

    def exists(self) -> bool:
        """Is there a managed-set file (one ``lstat``)?"""
        return self.dir.exists(MANAGED_FILE)

    def _load_file(self) -> Managed:
        try:
            raw = self.dir.read(MANAGED_FILE, safeload.LIMITS["state"])
            if raw is None:
                return Managed()
            doc = safeload.loads_json(safeload.decode(raw, self.path), self.path)
            return Managed.from_dict(doc)
        except (safeload.DocumentError, ValueError, TypeError, KeyError, AttributeError) as exc:
            why = exc.message if isinstance(exc, safeload.DocumentError) else exc
            raise NvmetP2PError(f"{self.path}: unreadable managed-set file ({why}); move it away "
                                f"to start managing from scratch") from None

    def save(self, m: Managed) -> None:
        self.dir.write(MANAGED_FILE, json.dumps(m.to_dict(), indent=2, sort_keys=True) + "\n",
                       mode=0o600, backups=1)


def _lock_record() -> bytes:
    """What the lock holder writes into the lock file: pid, command, since (secrets removed)."""
    command = safeload.redact(" ".join(["nvmet-p2p", *sys.argv[1:]]))
    if len(command) > 200:
        command = command[:197] + "..."
    return f"pid {os.getpid()} ({command}) since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()


def _lock_holder(fd: int) -> str:
    """The holder's record as a waiter reads it (bounded, printable only)."""
    text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text or "unknown process"


@contextlib.contextmanager
def apply_lock(directory: str, timeout: float | None = None, progress=None):
    """Exclusive lock for one apply at a time. A second one waits up to ``timeout`` seconds
    (default :func:`nvmet_p2p.paths.lock_timeout`) for the first to finish, then gets
    :class:`Busy` naming the holder. Only the holder writes the lock file (its record: pid,
    command, since); a waiter reads it and never truncates it."""
    sd = PrivateDir(directory)
    wait = paths.lock_timeout(timeout)
    fd = sd.open_lock(LOCK_FILE)
    path = sd.file(LOCK_FILE)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _lock_holder(fd)
                if time.monotonic() >= deadline:
                    waited = f"waited {wait:g} s for it; " if wait else ""
                    raise Busy(f"another nvmet-p2p apply is running ({holder}); {waited}run again "
                               f"when it has finished, or give --lock-timeout SECONDS to wait "
                               f"(lock: {path}; nothing was changed)") from None
                if progress and not told:
                    progress(f"waiting up to {wait:g} s for the lock held by {holder}")
                    told = True
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        rec = _lock_record()
        os.pwrite(fd, rec, 0)
        os.ftruncate(fd, len(rec))
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)          # (still the holder: the lock is released by close)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# Executing
# ----------------------------------------------------------------------------------------------

@dataclass
class ApplyResult:
    steps: int
    writes: int
    seconds: float
    undo_writes: int = 0

    def to_dict(self) -> dict:
        return {"steps": self.steps, "configfs_writes": self.writes, "seconds": round(self.seconds, 4)}


class ApplyFailed(KernelError):
    """A step failed; the completed steps were undone (see ``rollback_errors``)."""

    def __init__(self, message: str, *, op: Op, step: int, total: int, errno: int | None,
                 dmesg: list[str], rolled_back: int, rollback_errors: list[str]):
        self.op = op
        self.step = step
        self.total = total
        self.rolled_back = rolled_back
        self.rollback_errors = rollback_errors
        super().__init__(message, errno=errno, path=op.path, dmesg=dmesg)

    def to_dict(self) -> dict:
        return {"error": str(self), "step": self.step, "steps": self.total,
                "op": self.op.to_dict(), "errno": self.errno,
                "errno_name": _errno.errorcode.get(self.errno or 0),
                "kernel_log": self.dmesg, "rolled_back_steps": self.rolled_back,
                "rollback_errors": self.rollback_errors}


def _readable(cfs: Configfs, rel: str) -> dict[str, str]:
    return jr.readable_attrs(cfs, rel)


_restorable = jr.restorable


class ApplyInterrupted(NvmetP2PError):
    """A signal of :data:`STOP_SIGNALS` arrived while an apply ran; the completed steps were undone (unless
    ``completed``: the signal came after the last configfs step and the apply stands)."""

    #: the apply had reached configfs (:func:`nvmet_p2p.nvmet.lastapply.reached_configfs`)
    reached_configfs = True

    def __init__(self, signum: int, *, step: int, total: int, rolled_back: int,
                 rollback_errors: list[str], completed: bool = False):
        self.signum = signum
        self.step = step
        self.total = total
        self.rolled_back = rolled_back
        self.rollback_errors = rollback_errors
        self.completed = completed
        self.exit_status = exits.signalled(signum)
        name = signal.Signals(signum).name
        if completed:
            msg = (f"{name} arrived after all {total} configfs steps were done: the apply is "
                   f"complete and recorded")
        else:
            msg = (f"{name} after step {step}/{total}: the {step} completed step{'s' if step != 1 else ''} "
                   f"were undone")
            msg += "; configfs is as before." if not rollback_errors else \
                f"; ROLLBACK INCOMPLETE: {'; '.join(rollback_errors)}"
        super().__init__(msg)

    def to_dict(self) -> dict:
        return {"error": str(self), "signal": signal.Signals(self.signum).name, "step": self.step,
                "steps": self.total, "rolled_back_steps": self.rolled_back,
                "rollback_errors": self.rollback_errors, "completed": self.completed}


#: the signals that end an apply with a rollback: every catchable one whose default action
#: ends the process -- SIGTERM (systemd, kill), SIGINT (Ctrl-C), SIGHUP (the SSH session or the
#: terminal went away), SIGQUIT (Ctrl-\\), SIGUSR1/SIGUSR2 and SIGALRM (nobody should send them
#: to an apply, but if one does, its default would end the process between two configfs steps).
#: Not SIGPIPE: Python ignores it (a closed pipe is an EPIPE on the write, and a progress line
#: that cannot be written does not stop an apply); not SIGKILL/SIGSTOP (cannot be caught: the
#: journal covers SIGKILL); not the fault signals (SIGSEGV, SIGBUS...: the interpreter itself
#: is broken, the journal covers it).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGALRM)


class _Signals:
    """:data:`STOP_SIGNALS` held back while configfs changes: the handler only notes the
    signal, the applier looks between steps and rolls back. A signal this process inherited as
    ignored (``nohup``: SIGHUP; a background job of a script: SIGINT and SIGQUIT) stays
    ignored: whoever started the apply asked for that. Only in the main thread (elsewhere Python
    cannot install handlers; the embedding program owns its signals there)."""

    def __init__(self):
        self.pending: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "_Signals":
        for s in STOP_SIGNALS:
            if signal.getsignal(s) is signal.SIG_IGN:
                continue
            try:
                self._old[s] = signal.signal(s, self._note)
            except ValueError:      # not the main thread: signals are not ours to take here
                break
        return self

    def _note(self, signum, frame) -> None:
        if self.pending is None:
            self.pending = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _test_hook(point) -> None:
    """The test-only kill/signal hooks (see :data:`TEST_KILL_ENV`); nothing when unset."""
    k = os.environ.get(TEST_KILL_ENV)
    if k is not None and k == str(point):
        os.kill(os.getpid(), signal.SIGKILL)
    spec = os.environ.get(TEST_SIGNAL_ENV)
    if spec and spec.split(":")[0] == str(point):
        os.kill(os.getpid(), getattr(signal, "SIG" + spec.split(":", 1)[1]))


class Applier:
    """Runs a plan's operations on ``cfs`` with undo on failure."""

    def __init__(self, cfs: Configfs, klog: KernelLog | None = None,
                 progress: Callable[[str], None] | None = None):
        self.cfs = cfs
        self.klog = klog
        self.progress = progress
        #: returns a signal number when the apply must stop (set by :func:`_execute`)
        self.stop_requested: Callable[[], int | None] = lambda: None

    # -- undo recipes -------------------------------------------------------------------------
    def _undo_for(self, op: Op) -> list[Callable[[], None]]:
        cfs = self.cfs
        if op.action == "mkdir":
            return [lambda p=op.path: cfs.rmdir(p)]
        if op.action == "link":
            return [lambda p=op.path: cfs.unlink(p)]
        if op.action == "unlink":
            name = op.path.rsplit("/", 1)[-1]
            target = f"hosts/{name}" if "/allowed_hosts/" in op.path else f"subsystems/{name}"
            return [lambda p=op.path, t=target: cfs.symlink(t, p)]
        if op.action == "write":
            try:
                old = cfs.read(op.path).strip()
            except OSError:
                return []
            name = op.attr
            if same(name, old, op.value) or not _restorable(name, old):
                return []
            return [lambda p=op.path, v=old: cfs.write(p, v)]
        if op.action == "rmdir":
            return [self._recreate_recipe(op.path)]
        return []

    def _recreate_recipe(self, rel: str) -> Callable[[], None]:
        kind, _, _ = parse_path(rel)
        snap = _readable(self.cfs, rel)
        enable = snap.pop("enable", None)
        cfs = self.cfs

        def recreate():
            cfs.mkdir(rel)
            fresh = _readable(cfs, rel)
            names = SPECS[kind].ordered(snap)
            if kind == "subsystem" and "attr_allow_any_host" in names:
                names.remove("attr_allow_any_host")
                names.append("attr_allow_any_host")
            for n in names:
                if n in fresh and not same(n, fresh[n], snap[n]) and _restorable(n, snap[n]):
                    cfs.write(f"{rel}/{n}", snap[n])
            if enable == "1":
                cfs.write(f"{rel}/enable", "1")
        return recreate

    # -- running ------------------------------------------------------------------------------
    def _run(self, op: Op) -> None:
        if op.action == "write":
            self.cfs.write(op.path, op.value or "")
        elif op.action == "mkdir":
            self.cfs.mkdir(op.path)
        elif op.action == "rmdir":
            self.cfs.rmdir(op.path)
        elif op.action == "link":
            self.cfs.symlink(op.target or "", op.path)
        elif op.action == "unlink":
            self.cfs.unlink(op.path)
        else:
            raise NvmetP2PError(f"unknown plan operation {op.action!r}")

    def apply(self, plan: Plan) -> ApplyResult:
        """Run every step; on a refusal, an exception or a stop request undo the completed ones
        in reverse order and raise (:class:`ApplyFailed`, the exception, :class:`ApplyInterrupted`)."""
        t0 = time.monotonic()
        w0 = self.cfs.writes
        undo: list[tuple[int, Callable[[], None]]] = []
        total = len(plan.ops)
        last_report = 0.0
        follower = self.klog.follow() if self.klog and total else None
        try:
            for i, op in enumerate(plan.ops, 1):
                self._check_stop(undo, i - 1, total)
                if follower:
                    follower.drain()          # forget what earlier steps printed
                try:
                    recipe = self._undo_for(op)
                    self._run(op)
                except ConfigfsError as exc:
                    dmesg = self._kernel_lines(follower)
                    forward = self.cfs.writes - w0
                    rolled, rb_errors = self._rollback(undo)
                    raise self._failure(op, i, total, exc, dmesg, rolled, rb_errors, forward) from None
                except BaseException:
                    # a bug, MemoryError ...: the step's outcome is unknown, undo what is known
                    self._rollback(undo)
                    raise
                undo.extend((i, r) for r in recipe)
                _test_hook(i)
                if self.progress and (time.monotonic() - last_report > 2.0) and total > 50:
                    last_report = time.monotonic()
                    self._tell(f"{i}/{total} configfs writes")
            self._check_stop(undo, total, total)
        finally:
            if follower:
                follower.close()
        return ApplyResult(steps=total, writes=self.cfs.writes - w0, seconds=time.monotonic() - t0)

    def _tell(self, message: str) -> None:
        """A progress line, if it can be shown: after SIGHUP the terminal is gone (EIO), a
        reader that went away leaves a closed pipe (EPIPE) -- neither stops an apply or its
        rollback; the line is dropped."""
        if self.progress:
            with contextlib.suppress(OSError):
                self.progress(message)

    def _check_stop(self, undo, done: int, total: int) -> None:
        signum = self.stop_requested()
        if signum is None:
            return
        self._tell(f"{signal.Signals(signum).name}: rolling back {done} completed step(s)")
        rolled, errors = self._rollback(undo)
        raise ApplyInterrupted(signum, step=done, total=total, rolled_back=rolled,
                               rollback_errors=errors)

    @staticmethod
    def _kernel_lines(follower) -> list[str]:
        """What the kernel printed while the failing step ran (some lines arrive late)."""
        if follower is None:
            return []
        lines: list[str] = []
        for delay in (0.0, 0.05, 0.2):
            if delay:
                time.sleep(delay)
            lines += [r.text for r in follower.drain()]
            if lines:
                break
        return lines

    def _rollback(self, undo) -> tuple[int, list[str]]:
        errors = []
        for step, fn in reversed(undo):
            try:
                fn()
            except OSError as exc:
                errors.append(f"undo of step {step}: {getattr(exc, 'op', '')} "
                              f"{getattr(exc, 'rel', '')}: {exc.strerror}")
        return len({s for s, _ in undo}), errors

    def _failure(self, op, i, total, exc: ConfigfsError, dmesg, rolled, rb_errors, forward):
        ename = _errno.errorcode.get(exc.errno or 0, str(exc.errno))
        what = op.describe().split(None, 1)[1] if op.action != "link" else op.path
        msg = f"step {i}/{total} failed: {op.action} {what}: {exc.strerror} ({ename})"
        if op.action == "write" and exc.errno == _errno.ENOENT and \
                self.cfs.isdir(op.path.rsplit("/", 1)[0]) and not self.cfs.exists(op.path):
            msg += f"; this kernel has no attribute '{op.attr}' there"
        if exc.errno == _errno.EACCES and op.path.startswith("ports/"):
            msg += "; the port is enabled (a subsystem is linked)"
        msg += f". Rolled back {rolled} completed step{'s' if rolled != 1 else ''}"
        msg += "; configfs is as before." if not rb_errors else \
            f"; ROLLBACK INCOMPLETE: {'; '.join(rb_errors)}"
        return ApplyFailed(msg, op=op, step=i, total=total, errno=exc.errno, dmesg=dmesg,
                           rolled_back=rolled, rollback_errors=rb_errors)


# ----------------------------------------------------------------------------------------------
# The reconcile cycle
# ----------------------------------------------------------------------------------------------

def open_configfs(root: str, load_module: bool = True) -> Configfs:
    """The nvmet tree under ``root``; on the live system, load nvmet if it is not there yet."""
    cfs = Configfs(root)
    if not cfs.present() and load_module and os.path.realpath(root) == "/":
        with contextlib.suppress(OSError):
            subprocess.run(["modprobe", "nvmet"], check=False, capture_output=True)
    if not cfs.present():
        raise NvmetP2PError(f"{cfs.base}: no nvmet configfs tree (load the nvmet module and mount "
                            f"configfs on /sys/kernel/config)")
    return cfs


@dataclass
class Outcome:
    plan: Plan
    result: ApplyResult | None = None
    applied: bool = False
    extra: dict = field(default_factory=dict)
    #: seconds spent per phase of :func:`reconcile`: "read" (open, lock, read the live tree),
    #: "plan", "apply" (the configfs steps), "record" (the managed-set file and the journal);
    #: for benchmarks (tools/bench/bench_apply.py prints them), not part of :meth:`to_dict`
    timings: dict = field(default_factory=dict)
    #: an interrupted earlier apply this call settled first (see :func:`settle`), else None
    recovery: jr.Recovery | None = None
    #: the live tree and the managed set the plan was made from (for an apply: as read under
    #: the lock; ``live`` is partial unless the whole tree was asked for), not in :meth:`to_dict`
    live: st.TargetState | None = None
    managed_before: Managed | None = None

    def to_dict(self, secrets: bool = False) -> dict:
        d = {"applied": self.applied, "plan": self.plan.to_dict(secrets)}
        if self.result:
            d["result"] = self.result.to_dict()
        if self.recovery is not None:
            d["recovery"] = self.recovery.to_dict()
        d.update(self.extra)
        return d


class Locked:
    """The target as it is while this process holds the apply lock: the live tree and the
    managed set read *after* the lock was taken (and after an interrupted apply was settled).

    It is the only source a change is planned from: only :func:`locked` makes one, and
    :meth:`execute` runs only a plan made by :meth:`plan` (or a saved plan :meth:`accept` found
    made for this very tree and managed set) while the lock is still held. A writer that wants
    something depending on the target (the watcher's re-placement, the shell's staged edits, an
    A/B toggle) computes it from :attr:`live` and :attr:`managed` here, never from an earlier
    read: whatever another apply changed while it waited for the lock -- a host link revoked by
    ``apply --prune`` -- is what it plans from.
    """

    def __init__(self, cfs: Configfs, directory: str, root: str, *, kernel: str | None,
                 progress, recovery: jr.Recovery | None, live: st.TargetState, managed: Managed,
                 whole: bool):
        self.cfs, self.directory, self.root = cfs, directory, root
        self.kernel, self.progress, self.recovery = kernel, progress, recovery
        self.live, self.managed, self.whole = live, managed, whole
        self.held = True
        self._plans: list[Plan] = []

    def plan(self, desired: st.TargetState, *, prune: bool = False,
             managed: Managed | None = None) -> Plan:
        """:func:`build_plan` from :attr:`live` to ``desired``; ``managed``: the set the planner
        may remove from (default :attr:`managed`; the shell passes every live object)."""
        caps = capabilities(self.cfs, self.kernel, live=self.live)
        plan = build_plan(self.live, desired, self.managed if managed is None else managed,
                          prune=prune, caps=caps, fingerprint=False)
        self._plans.append(plan)
        return plan

    def accept(self, plan: Plan) -> None:
        """A plan made earlier (``plan --out``): executable only if the tree and the managed set
        are still the ones it was made for."""
        if not plan.live_digest:
            raise NvmetP2PError("this plan carries no fingerprint of the configfs tree it was made "
                                "for (it was printed by `apply`); save one with `nvmet-p2p plan "
                                "--out FILE` (nothing was changed)")
        if not self.whole:
            raise NvmetP2PError("internal: a saved plan is checked against the whole tree")
        if digest(self.live) != plan.live_digest:
            raise NvmetP2PError("configfs changed since this plan was made; run `nvmet-p2p plan` "
                                "again (nothing was changed)")
        if plan.managed_digest != managed_digest(self.managed):
            raise NvmetP2PError("the managed set changed since this plan was made (another apply "
                                "ran"
                                + ("" if plan.managed_digest else
                                   ", or the plan was saved by an older nvmet-p2p")
                                + "); run `nvmet-p2p plan --out` again (nothing was changed)")
        self._plans.append(plan)

    def execute(self, plan: Plan) -> Outcome:
        """Run ``plan`` (see :func:`_execute`); refused for a plan not made or accepted here."""
        if not self.held or not any(p is plan for p in self._plans):
            raise NvmetP2PError("internal: a plan runs only under the lock it was made under")
        out = _execute(self.cfs, plan, ManagedStore(self.directory), self.root, self.progress,
                       managed_before=self.managed)
        out.recovery, out.live, out.managed_before = self.recovery, self.live, self.managed
        return out


@contextlib.contextmanager
def locked(root: str, directory: str, *, cfs: Configfs | None = None,
           only: st.TargetState | None = None, kernel: str | None = None,
           lock_timeout: float | None = None, progress=None, load_module: bool = True):
    """Take the apply lock, settle an interrupted apply, then read the live tree (``only``: the
    attributes a plan to that desired state needs, see :func:`read_state`; default the whole
    tree) and the managed set: a :class:`Locked`, valid inside the ``with`` block only."""
    cfs = cfs or open_configfs(root, load_module=load_module)
    with apply_lock(directory, lock_timeout, progress):
        recovery = settle(cfs, directory, root, kernel=kernel, progress=progress)
        live = read_state(cfs, only=only)
        t = Locked(cfs, directory, root, kernel=kernel, progress=progress, recovery=recovery,
                   live=live, managed=ManagedStore(directory).load(), whole=only is None)
        try:
            yield t
        finally:
            t.held = False


def reconcile(root: str, desired: st.TargetState | Desire, directory: str, *, prune: bool = False,
              dry_run: bool = False, progress=None, kernel: str | None = None,
              cfs: Configfs | None = None, lock_timeout: float | None = None,
              whole: bool = False) -> Outcome:
    """Plan ``desired`` against the live tree and (unless ``dry_run``) apply it, under the lock.

    ``desired``: a ``TargetState``, or a ``Desire`` -- a function of the live tree and the
    managed set, called with what was read under the lock (a writer whose wish depends on the
    target must pass one). This is the function ``plan``/``apply``/``restore`` call and the
    placement code can call with the ``TargetState`` it computed from a profile. An interrupted
    earlier apply is settled first (:func:`settle`; ``Outcome.recovery`` says what was done),
    also for ``dry_run``. ``whole``: read the whole tree for an apply (``Outcome.live``), not
    only what ``desired`` names.
    """
    t0 = time.perf_counter()
    cfs = cfs or open_configfs(root, load_module=not dry_run)
    if dry_run:
        # A plan that is only shown may be saved and applied later: it is made from the whole
        # tree and carries its fingerprint (and the managed set's). Nothing is changed here, so
        # no lock is held while planning.
        recovery = settle_pending(cfs, directory, root, kernel=kernel, lock_timeout=lock_timeout,
                                  progress=progress)
        live = read_state(cfs)
        managed = ManagedStore(directory).load()
        t1 = time.perf_counter()
        want = desired(live, managed) if callable(desired) else desired
        plan = build_plan(live, want, managed, prune=prune,
                          caps=capabilities(cfs, kernel, live=live), fingerprint=True)
        out = Outcome(plan, recovery=recovery, live=live, managed_before=managed)
        out.timings = {"read": t1 - t0, "plan": time.perf_counter() - t1}
        return out
    # Applying right away needs only what the desired state names (every named attribute is
    # still read, so drift in it is still seen); a Desire reads the whole tree.
    only = None if whole or callable(desired) else desired
    with locked(root, directory, cfs=cfs, only=only, kernel=kernel, lock_timeout=lock_timeout,
                progress=progress) as t:
        t1 = time.perf_counter()
        plan = t.plan(desired(t.live, t.managed) if callable(desired) else desired, prune=prune)
        t2 = time.perf_counter()
        out = t.execute(plan)
    out.timings = {"read": t1 - t0, "plan": t2 - t1, **out.timings}
    return out


def apply_saved_plan(root: str, plan: Plan, directory: str, progress=None,
                     cfs: Configfs | None = None, lock_timeout: float | None = None) -> Outcome:
    """Apply a plan made earlier, if configfs and the managed set have not changed since (else
    refuse)."""
    with locked(root, directory, cfs=cfs, lock_timeout=lock_timeout, progress=progress) as t:
        t.accept(plan)
        return t.execute(plan)


def clear(root: str, directory: str, everything: bool = False, dry_run: bool = False,
          cfs: Configfs | None = None, lock_timeout: float | None = None) -> Outcome:
    cfs = cfs or open_configfs(root, load_module=False)
    if dry_run:
        recovery = settle_pending(cfs, directory, root, lock_timeout=lock_timeout)
        live = read_state(cfs)
        managed = ManagedStore(directory).load()
        return Outcome(clear_plan(live, managed, everything=everything), recovery=recovery,
                       live=live, managed_before=managed)
    with locked(root, directory, cfs=cfs, lock_timeout=lock_timeout) as t:
        plan = t.plan(st.TargetState(), prune=True,
                      managed=Managed.of_state(t.live) if everything else None)
        return t.execute(plan)


def _execute(cfs: Configfs, plan: Plan, store: ManagedStore, root: str, progress,
             managed_before: Managed) -> Outcome:
    """Journal (only when something changes), steps, managed set, end of journal; the
    :data:`STOP_SIGNALS` are held back for the whole of it and answered with a rollback. Called by
    :meth:`Locked.execute` only: ``managed_before`` is the set read under the same lock."""
    t0 = time.perf_counter()
    applier = Applier(cfs, KernelLog(root=root) if plan.ops else None, progress)
    with _Signals() as sig:
        applier.stop_requested = lambda: sig.pending
        if plan.ops:
            jr.begin(store.directory, cfs, plan, managed_before)
            _test_hook(0)
        t1 = time.perf_counter()
        try:
            res = applier.apply(plan)
        except ApplyFailed as exc:
            if not exc.rollback_errors:
                jr.finish(store.directory)   # back as before: nothing to settle
            else:
                exc.args = (str(exc) + " The journal is kept: the next nvmet-p2p command tries "
                            "the rollback again.",)
            raise
        except ApplyInterrupted as exc:
            if not exc.rollback_errors:
                jr.finish(store.directory)
            raise
        except BaseException:
            raise                            # (rolled back as far as known; journal kept)
        t2 = time.perf_counter()
        if plan.managed_after != managed_before or not store.exists():
            store.save(plan.managed_after)   # (unchanged: no rewrite, no fsync, no backup rotation)
        if plan.ops:
            _test_hook("record")
            jr.finish(store.directory)
        late = sig.pending
    if late is not None:
        raise ApplyInterrupted(late, step=len(plan.ops), total=len(plan.ops), rolled_back=0,
                               rollback_errors=[], completed=True)
    return Outcome(plan, res, applied=True,
                   timings={"journal": t1 - t0, "apply": t2 - t1,
                            "record": time.perf_counter() - t2})


# ----------------------------------------------------------------------------------------------
# Settling an interrupted apply
# ----------------------------------------------------------------------------------------------

def settle_pending(cfs: Configfs, directory: str, root: str, *, kernel: str | None = None,
                   lock_timeout: float | None = None, progress=None) -> jr.Recovery | None:
    """:func:`settle` under the lock, for callers that do not hold it (read-only commands:
    ``plan``, ``status``, ``save``); one ``stat`` when there is nothing to settle."""
    if not jr.pending(directory):
        return None
    with apply_lock(directory, lock_timeout, progress):
        return settle(cfs, directory, root, kernel=kernel, progress=progress)


def settle(cfs: Configfs, directory: str, root: str, *, kernel: str | None = None,
           progress=None) -> jr.Recovery | None:
    """Finish the bookkeeping of, or roll back, an apply that was interrupted (the caller holds
    the lock). See :mod:`nvmet_p2p.nvmet.journal` for the rule. None when nothing was pending.

    Only what the journal's own steps touched is looked at and put back; the journal is checked
    at every level first (:func:`nvmet_p2p.nvmet.journal.check`), and a damaged one is refused
    (kept, nothing written). An object the journal never touched -- a hand-made subsystem under
    a name nvmet-p2p would refuse -- is neither read for the rollback nor validated: it cannot
    block it."""
    j = jr.load(directory)
    if j is None:
        return None
    rec = j.record
    store = ManagedStore(directory)
    if rec["configfs"] != os.path.abspath(cfs.base):
        raise NvmetP2PError(f"{jr.journal_path(directory)}: an interrupted apply of "
                            f"{rec['configfs']} is pending; run nvmet-p2p with the --root of "
                            f"that tree to settle it (this command works on {cfs.base})")
    bid = jr.boot_id(cfs.root)
    if rec.get("boot_id") and bid and rec["boot_id"] != bid:
        store.save(store._load_file().union(j.managed_before).union(j.managed_after))
        jr.finish(directory)
        return jr.Recovery("discarded", "it ran in an earlier boot, and configfs does not survive a "
                           "reboot; the managed set keeps every object it was creating", rec)
    if jr.is_complete(cfs, j.ops):
        store.save(j.managed_after)
        jr.finish(directory)
        return jr.Recovery("completed", "only the bookkeeping after its last step was missing", rec)
    live = read_state(cfs, only=jr.read_scope(j))
    target, created = jr.rollback(j, live, cfs)
    # (the names were checked with the journal: as configfs holds them, since a rollback may
    # re-create what the apply removed, under a name that was made by hand)
    plan = build_plan(live, target, created, prune=True,
                      caps=capabilities(cfs, kernel, live=live), fingerprint=False,
                      check_names=False)
    if progress and plan.ops:
        progress(f"rolling back an interrupted apply: {len(plan.ops)} configfs step(s)")
    try:
        res = Applier(cfs, KernelLog(root=root), progress).apply(plan)
    except ApplyFailed as exc:
        err = NvmetP2PError(f"an earlier apply (pid {rec.get('pid')}, {rec.get('started')}) was "
                            f"interrupted and rolling it back failed: {exc} The journal "
                            f"{jr.journal_path(directory)} is kept; fix the cause and run any "
                            f"nvmet-p2p command again")
        err.reached_configfs = True
        raise err from None
    store.save(j.managed_before)
    jr.finish(directory)
    r = jr.Recovery("rolled back", "not every step had been done, and the state before it is the "
                    "only whole one known", rec, writes=res.writes)
    r.steps = [o.describe() for o in plan.ops]
    return r
