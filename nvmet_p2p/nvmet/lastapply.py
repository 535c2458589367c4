"""The last apply's result, kept in the state directory for monitoring.

``<state dir>/last-apply.json`` says when the last ``apply`` (CLI, ``restore``, ``clear``, the
Ansible module, the watcher, a ``shell`` commit) finished, whether it succeeded, how many
configfs writes it made and, when it failed, the one-line error (secrets are masked in every
message nvmet-p2p makes, and removed again as the error is written:
:func:`nvmet_p2p.safeload.redact`). The metrics exporter publishes it as ``nvmet_p2p_last_apply_*``;
every recorded apply is also counted (:mod:`nvmet_p2p.nvmet.counters`).

It is written *after* the reconciler returned or raised, outside the apply lock and beside the
reconciler's own files (``managed.json``, the lock, a journal): it is a report, never read back
by the apply path. Dry runs (``plan``, check mode) are not applies and are not recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nvmet_p2p import safeload
from nvmet_p2p.errors import Busy, InputError, KernelError, NvmetP2PError
from nvmet_p2p.nvmet import bindings, counters
from nvmet_p2p.safefs import PrivateDir
from nvmet_p2p.safeload import LIMITS, decode, loads_json

FILE = "last-apply.json"
FORMAT = 1


@dataclass
class LastApply:
    """One recorded apply. ``result``: ``applied`` (changes written), ``unchanged`` (0 writes),
    ``failed``; ``error_kind`` (failed only): ``kernel`` (a step refused, rolled back), ``other``
    (interrupted by a signal, an earlier apply's rollback failed). Failures before the first
    configfs write (``input``: bad input, ``busy``: another apply held the lock) are counted
    (``nvmet_p2p_apply_refusals_total``) but never replace the record of the last apply."""

    time: float
    result: str
    source: str
    configfs_writes: int = 0
    seconds: float = 0.0
    error: str | None = None
    error_kind: str | None = None

    @property
    def success(self) -> bool:
        return self.result != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "time": self.time, "result": self.result, "source": self.source,
                "configfs_writes": self.configfs_writes, "seconds": round(self.seconds, 4),
                "error": self.error, "error_kind": self.error_kind}


def path(directory: str) -> str:
    return os.path.join(directory, FILE)


def save(directory: str, rec: LastApply) -> None:
    """Write ``rec`` (0600); its error with every secret removed, whoever made it."""
    if rec.error:
        rec.error = safeload.redact(rec.error)
    PrivateDir(directory).write(FILE, json.dumps(rec.to_dict(), indent=2) + "\n", mode=0o600)


def _from_doc(d: Any) -> LastApply:
    if not isinstance(d, dict):
        raise TypeError(f"expected an object, got {type(d).__name__}")
    error, kind = d.get("error"), d.get("error_kind")
    return LastApply(time=float(d["time"]), result=str(d["result"]), source=str(d["source"]),
                     configfs_writes=int(d.get("configfs_writes") or 0),
                     seconds=float(d.get("seconds") or 0.0),
                     error=None if error is None else str(error),
                     error_kind=None if kind is None else str(kind))


def read(directory: str) -> tuple[LastApply | None, str | None]:
    """``(record, None)``, ``(None, None)`` when there is none, ``(None, why)`` when it cannot
    be read (an unsafe state directory, a damaged or oversized file): never raises, the readers
    (``metrics``, the exporter) say the record is unreadable and go on."""
    where = path(directory)
    try:
        raw = PrivateDir(directory).read(FILE, LIMITS["record"])
        if raw is None:
            return None, None
        return _from_doc(loads_json(decode(raw, where), where)), None
    except NvmetP2PError as exc:
        return None, f"unreadable last-apply record: {exc}"
    except (OSError, ValueError, TypeError, KeyError, OverflowError) as exc:
        return None, f"{where}: unreadable last-apply record ({exc})"


def load(directory: str) -> LastApply | None:
    """The record, or None when there is none; :class:`NvmetP2PError` when it is unreadable."""
    rec, problem = read(directory)
    if problem:
        raise NvmetP2PError(problem)
    return rec


def _kind(exc: BaseException) -> str:
    if isinstance(exc, Busy):
        return "busy"
    if isinstance(exc, KernelError):
        return "kernel"
    if isinstance(exc, InputError):
        return "input"
    return "other"


class Recorder:
    """What :func:`recorded` hands to its block: set ``outcome`` to the reconciler's result."""

    def __init__(self) -> None:
        self.outcome: Any = None


@contextlib.contextmanager
def recorded(directory: str, source: str, enabled: bool = True, root: str = "/") -> Iterator[Recorder]:
    """Record the apply run in the block: success from ``rec.outcome`` (an
    :class:`~nvmet_p2p.nvmet.apply.Outcome`), failure from the :class:`NvmetP2PError` it raises
    (re-raised) -- only a failure of an apply that reached configfs (:func:`reached_configfs`):
    a typo, a held lock, a state directory or permission problem happen before the first write
    and neither create the state directory nor replace the record of the real last apply. A
    record that cannot be written never turns an apply into a failure. ``enabled=False`` (a dry
    run) records nothing. A successful apply that wrote ``p2pmem`` also records which provider
    device each namespace was bound to (:mod:`nvmet_p2p.nvmet.bindings`; ``root``: the machine
    whose devices those are)."""
    rec = Recorder()
    t0 = time.monotonic()
    wall0 = time.time()
    if not enabled:
        yield rec
        return
    try:
        yield rec
    except NvmetP2PError as exc:
        failed = LastApply(time=time.time(), result="failed", source=source,
                           seconds=time.monotonic() - t0, error=safeload.redact(str(exc)),
                           error_kind=_kind(exc))
        if reached_configfs(exc):
            _save_quietly(directory, failed)
        else:
            _count(directory, failed)        # (counted where counted before; nothing created)
        raise
    out = rec.outcome
    if out is None or not getattr(out, "applied", False):
        return
    writes = out.result.writes if out.result else 0
    if writes:
        with contextlib.suppress(OSError, NvmetP2PError):
            bindings.note_apply(directory, out.plan.ops, t0, wall0, root)
    _save_quietly(directory, LastApply(time=time.time(), result="applied" if writes else "unchanged",
                                       source=source, configfs_writes=writes,
                                       seconds=out.result.seconds if out.result else 0.0))


def reached_configfs(exc: BaseException) -> bool:
    """Did the failed apply get as far as configfs (a step ran, was refused or interrupted, or
    an earlier apply's rollback failed)? Errors before the first write did not."""
    return isinstance(exc, KernelError) or bool(getattr(exc, "reached_configfs", False))


def _save_quietly(directory: str, rec: LastApply) -> None:
    """Save the record and count the apply (``nvmet_p2p_applies_total``, and
    ``nvmet_p2p_apply_refusals_total`` when it failed): every recorded apply is counted."""
    with contextlib.suppress(OSError, NvmetP2PError):
        save(directory, rec)
    _count(directory, rec)


def _count(directory: str, rec: LastApply) -> None:
    """Count ``rec`` (``counters`` never creates the state directory; a failure before the first
    write is counted as a refusal only where one is already kept)."""
    events = [("applies", {"source": rec.source})]
    if not rec.success:
        events.append(("apply_refusals", {"source": rec.source, "error_kind": rec.error_kind or "other"}))
    counters.count(directory, events)
