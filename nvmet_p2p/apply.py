"""Executing a plan against configfs: all or nothing, one at a time, every write counted.

Before each step the engine records how to undo it, from what configfs shows at that moment
(the old value of an attribute; for a directory about to be removed, every attribute and its
``enable``). If the kernel refuses a step, the completed steps are undone in reverse order and
:class:`ApplyFailed` reports the kernel's own words: the errno and the kernel log lines printed
while the step ran (read through :mod:`nvmet_p2p.kmsg`). After a failed apply the tree is back
to what it was (checked by the lab tests with a full dump before and after).

Only one apply runs at a time: :func:`apply_lock` takes an exclusive ``flock`` on
``<state dir>/lock``; a second apply gets :class:`nvmet_p2p.errors.Busy` naming the holder.

:func:`reconcile` is the whole "plan + apply" cycle used by ``apply``, ``restore`` and
``clear`` (and by the placement code with a ``TargetState`` of its own).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from nvmet_p2p import state as st
from nvmet_p2p.configfs import NULL_PATH, Configfs, ConfigfsError, capabilities, read_state
from nvmet_p2p.errors import Busy, KernelError, NvmetP2PError
from nvmet_p2p.kmsg import KernelLog
from nvmet_p2p.plan import (
    HOST_ORDER,
    NS_ORDER,
    PORT_ORDER,
    REF_ORDER,
    Managed,
    Op,
    Plan,
    build_plan,
    clear_plan,
    digest,
    same,
)
from nvmet_p2p.statefile import write_atomic

DEFAULT_STATE_DIR = "/var/lib/nvmet-p2p"
MANAGED_FILE = "managed.json"
LOCK_FILE = "lock"

#: values the kernel cannot be given back (it refuses an empty string for these)
_NOT_RESTORABLE_EMPTY = {"device_path", "addr_trtype", "addr_adrfam", "addr_traddr",
                         "addr_trsvcid", "addr_tsas", "device_uuid", "device_nguid"}


def state_dir(cli_value: str | None = None) -> str:
    """``--state-dir``, else ``$NVMET_P2P_STATE_DIR``, else /var/lib/nvmet-p2p."""
    return cli_value or os.environ.get("NVMET_P2P_STATE_DIR") or DEFAULT_STATE_DIR


# ----------------------------------------------------------------------------------------------
# Managed set on disk, lock
# ----------------------------------------------------------------------------------------------

class ManagedStore:
    """``<state dir>/managed.json``: which objects nvmet-p2p manages (see :class:`Managed`)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, MANAGED_FILE)

    def load(self) -> Managed:
        try:
            with open(self.path, encoding="utf-8") as f:
                return Managed.from_dict(json.load(f))
        except FileNotFoundError:
            return Managed()
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise NvmetP2PError(f"{self.path}: unreadable managed-set file ({exc}); move it away "
                                f"to start managing from scratch") from None

    def save(self, m: Managed) -> None:
        write_atomic(self.path, json.dumps(m.to_dict(), indent=2, sort_keys=True) + "\n",
                     mode=0o600, backups=1)


@contextlib.contextmanager
def apply_lock(directory: str):
    """Exclusive lock for one apply at a time; :class:`Busy` for the second one."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            raise Busy(f"another nvmet-p2p apply is running ({holder}); wait for it to finish "
                       f"and run again (lock: {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
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


def _kind_of(path: str) -> str:
    parts = path.split("/")
    if parts[0] == "hosts":
        return "host"
    if parts[0] == "subsystems":
        return "namespace" if len(parts) == 4 else "subsystem"
    if parts[0] == "ports":
        if len(parts) == 2:
            return "port"
        return "referral" if parts[2] == "referrals" else "ana_group"
    return "root"


_ORDER = {"host": HOST_ORDER, "namespace": NS_ORDER, "port": PORT_ORDER, "referral": REF_ORDER,
          "ana_group": ("ana_state",)}


def _readable(cfs: Configfs, rel: str) -> dict[str, str]:
    out = {}
    for name, mode in cfs.files(rel).items():
        if mode & 0o444:
            with contextlib.suppress(OSError):
                out[name] = cfs.read(f"{rel}/{name}").strip()
    return out


def _restorable(name: str, value: str) -> bool:
    if name == "device_path" and value in ("", NULL_PATH):
        return False
    return not (value == "" and name in _NOT_RESTORABLE_EMPTY)


class Applier:
    """Runs a plan's operations on ``cfs`` with undo on failure."""

    def __init__(self, cfs: Configfs, klog: KernelLog | None = None,
                 progress: Callable[[str], None] | None = None):
        self.cfs = cfs
        self.klog = klog
        self.progress = progress

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
        kind = _kind_of(rel)
        snap = _readable(self.cfs, rel)
        enable = snap.pop("enable", None)
        cfs = self.cfs

        def recreate():
            cfs.mkdir(rel)
            fresh = _readable(cfs, rel)
            order = list(_ORDER.get(kind, ()))
            names = [n for n in order if n in snap] + sorted(n for n in snap if n not in order)
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
        t0 = time.monotonic()
        w0 = self.cfs.writes
        undo: list[tuple[int, Callable[[], None]]] = []
        total = len(plan.ops)
        last_report = 0.0
        follower = self.klog.follow() if self.klog and total else None
        try:
            for i, op in enumerate(plan.ops, 1):
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
                undo.extend((i, r) for r in recipe)
                if self.progress and (time.monotonic() - last_report > 2.0) and total > 50:
                    last_report = time.monotonic()
                    self.progress(f"{i}/{total} configfs writes")
        finally:
            if follower:
                follower.close()
        return ApplyResult(steps=total, writes=self.cfs.writes - w0, seconds=time.monotonic() - t0)

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
    #: "plan", "apply" (the configfs steps), "record" (the managed-set file); for
    #: benchmarks (tools/bench/bench_apply.py prints them), not part of :meth:`to_dict`
    timings: dict = field(default_factory=dict)

    def to_dict(self, secrets: bool = False) -> dict:
        d = {"applied": self.applied, "plan": self.plan.to_dict(secrets)}
        if self.result:
            d["result"] = self.result.to_dict()
        d.update(self.extra)
        return d


def reconcile(root: str, desired: st.TargetState, directory: str, *, prune: bool = False,
              dry_run: bool = False, progress=None, kernel: str | None = None,
              cfs: Configfs | None = None) -> Outcome:
    """Plan ``desired`` against the live tree and (unless ``dry_run``) apply it, under the lock.

    This is the function ``plan``/``apply``/``restore`` call and the placement code can call
    with the ``TargetState`` it computed from a profile.
    """
    t0 = time.perf_counter()
    cfs = cfs or open_configfs(root, load_module=not dry_run)
    store = ManagedStore(directory)
    ctx = contextlib.nullcontext() if dry_run else apply_lock(directory)
    with ctx:
        # A plan that is only shown may be saved and applied later: it is made from the whole
        # tree and carries its fingerprint. Applying right away needs only what the desired
        # state names (every named attribute is still read, so drift in it is still seen).
        live = read_state(cfs) if dry_run else read_state(cfs, only=desired)
        t1 = time.perf_counter()
        caps = capabilities(cfs, kernel, live=live)
        managed = store.load()
        plan = build_plan(live, desired, managed, prune=prune, caps=caps, fingerprint=dry_run)
        t2 = time.perf_counter()
        if dry_run:
            out = Outcome(plan)
        else:
            out = _execute(cfs, plan, store, root, progress, managed_before=managed)
    out.timings = {"read": t1 - t0, "plan": t2 - t1, **out.timings}
    return out


def apply_saved_plan(root: str, plan: Plan, directory: str, progress=None,
                     cfs: Configfs | None = None) -> Outcome:
    """Apply a plan made earlier, if configfs has not changed since (else refuse)."""
    cfs = cfs or open_configfs(root)
    store = ManagedStore(directory)
    with apply_lock(directory):
        if not plan.live_digest:
            raise NvmetP2PError("this plan carries no fingerprint of the configfs tree it was made "
                                "for (it was printed by `apply`); save one with `nvmet-p2p plan "
                                "--out FILE` (nothing was changed)")
        live = read_state(cfs)
        if digest(live) != plan.live_digest:
            raise NvmetP2PError("configfs changed since this plan was made; run `nvmet-p2p plan` "
                                "again (nothing was changed)")
        return _execute(cfs, plan, store, root, progress)


def clear(root: str, directory: str, everything: bool = False, dry_run: bool = False,
          cfs: Configfs | None = None) -> Outcome:
    cfs = cfs or open_configfs(root, load_module=False)
    store = ManagedStore(directory)
    ctx = contextlib.nullcontext() if dry_run else apply_lock(directory)
    with ctx:
        live = read_state(cfs)
        plan = clear_plan(live, store.load(), everything=everything)
        if dry_run:
            return Outcome(plan)
        return _execute(cfs, plan, store, root, None)


def _execute(cfs: Configfs, plan: Plan, store: ManagedStore, root: str, progress,
             managed_before: Managed | None = None) -> Outcome:
    t0 = time.perf_counter()
    klog = KernelLog(root=root)
    res = Applier(cfs, klog, progress).apply(plan)
    t1 = time.perf_counter()
    if plan.managed_after != managed_before or not os.path.exists(store.path):
        store.save(plan.managed_after)   # (unchanged: no rewrite, no fsync, no backup rotation)
    return Outcome(plan, res, applied=True,
                   timings={"apply": t1 - t0, "record": time.perf_counter() - t1})
