"""Event counters kept in the state directory, for Prometheus counters (``*_total``).

What is counted happens in many short-lived processes -- ``apply``, ``restore`` at boot,
``clear``, the Ansible module, a ``shell`` commit -- and in the long-running watcher; the
metrics are read by ``nvmet-p2p exporter`` (maybe not running, maybe restarted) or by
``nvmet-p2p metrics --textfile`` (a new process every time). So the process that did the work
counts it, in ``<state dir>/counters.json``, and every reader reads the same file: no apply is
missed between two scrapes, two applies between scrapes count two, and a restarted exporter
goes on from the same numbers. An exporter that counted what it observes (``last-apply.json``
changing between scrapes) would miss all of that and has nothing to observe with the textfile.

The file holds ``{"format": 1, "counters": {NAME: [{"labels": {...}, "value": N, "created":
T}, ...]}}``; ``created`` is when that series was first counted (Prometheus' ``_created``).
Each update takes ``flock(LOCK_EX)`` on the file itself and rewrites it in place (a counter
file only grows; the write is one ``pwrite`` then ``ftruncate`` and ``fsync``); readers take
``LOCK_SH``. The file is opened like every file of the state directory
(:class:`nvmet_p2p.safefs.PrivateDir`: the directory's owner and mode checked, ``O_NOFOLLOW``,
a regular file), and counting never creates the directory. A file that
cannot be parsed is started afresh by the next update: to Prometheus that is a counter reset,
which ``rate()`` and ``increase()`` handle.

Counting never fails what was counted: an update that cannot be written is dropped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.safefs import PrivateDir, open_regular_at

FILE = "counters.json"
FORMAT = 1
MAX_BYTES = 1 << 20
MAX_LABEL = 200

#: counter -> its label names: the only series the file may hold (the metric is
#: ``nvmet_p2p_<counter>_total``)
SCHEMA: dict[str, tuple[str, ...]] = {
    "applies": ("source",),
    "apply_refusals": ("source", "error_kind"),
    "watch_reactions": ("decision", "action"),
}


@dataclass
class Series:
    """One counted series: its label values (in :data:`SCHEMA` order), the count, and when it
    was first counted (Unix time)."""

    labels: tuple[str, ...]
    value: float
    created: float


def path(directory: str) -> str:
    return os.path.join(directory, FILE)


def _open(directory: str, write: bool) -> int:
    """The counter file, through the state directory's checks (:class:`PrivateDir`: a safe
    directory, no symlink, a regular file); a missing directory is never created here."""
    with PrivateDir(directory).opened() as dfd:
        if dfd is None:
            raise FileNotFoundError(errno.ENOENT, "no state directory", directory)
        fd = open_regular_at(dfd, FILE, path(directory),
                             (os.O_RDWR | os.O_CREAT) if write else os.O_RDONLY, 0o600)
    if fd is None:
        raise FileNotFoundError(errno.ENOENT, "no counter file", path(directory))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_fd(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        b = os.pread(fd, 65536, size)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        size += len(b)
        if size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")


def parse(raw: bytes) -> dict[str, list[Series]]:
    """The counters in ``raw``; :class:`ValueError` when it is not a counter file. Series that
    do not fit :data:`SCHEMA` (unknown counter, other labels, a negative or non-finite count)
    are left out."""
    doc = json.loads(raw.decode("utf-8")) if raw.strip() else {"format": FORMAT, "counters": {}}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("counters"), dict):
        raise ValueError(f"not a format-{FORMAT} counter file")
    out: dict[str, list[Series]] = {}
    for name, names in SCHEMA.items():
        rows = doc["counters"].get(name)
        for row in rows if isinstance(rows, list) else []:
            s = _series(row, names)
            if s is not None:
                out.setdefault(name, []).append(s)
    return out


def _series(row: Any, names: tuple[str, ...]) -> Series | None:
    if not isinstance(row, dict) or not isinstance(row.get("labels"), dict):
        return None
    labels, value, created = row["labels"], row.get("value"), row.get("created")
    if set(labels) != set(names) or not all(isinstance(v, str) and len(v) <= MAX_LABEL
                                            for v in labels.values()):
        return None
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
               for x in (value, created)):
        return None
    assert value is not None and created is not None      # (checked just above)
    return Series(tuple(labels[n] for n in names), float(value), float(created))


def load(directory: str) -> dict[str, list[Series]]:
    """Every counter in ``directory`` (empty when nothing was counted yet);
    :class:`NvmetP2PError` when the file is unreadable."""
    try:
        fd = _open(directory, write=False)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise NvmetP2PError(f"{path(directory)}: cannot read the counters ({exc.strerror})") from None
    try:
        return parse(_read_fd(fd))
    except (OSError, ValueError) as exc:
        raise NvmetP2PError(f"{path(directory)}: unreadable counter file ({exc})") from None
    finally:
        os.close(fd)


def _dump(counters: dict[str, list[Series]]) -> bytes:
    doc = {"format": FORMAT, "counters": {
        name: [{"labels": dict(zip(SCHEMA[name], s.labels)), "value": s.value, "created": s.created}
               for s in sorted(rows, key=lambda s: s.labels)]
        for name, rows in sorted(counters.items())}}
    return (json.dumps(doc, indent=1) + "\n").encode()


def count(directory: str, events: list[tuple[str, dict[str, str]]]) -> None:
    """Add 1 to the series of every ``(counter, labels)`` in ``events``, in one locked update.
    Never raises: counting must not fail what was counted (a counter that cannot be written is
    left as it was)."""
    if not events:
        return
    for name, labels in events:
        if name not in SCHEMA or set(labels) != set(SCHEMA[name]):
            raise ValueError(f"counter {name} takes the labels {SCHEMA.get(name)}, got {sorted(labels)}")
    with contextlib.suppress(OSError, NvmetP2PError):
        fd = _open(directory, write=True)
        try:
            try:
                counters = parse(_read_fd(fd))
            except ValueError:
                counters = {}                 # unreadable: start again (a counter reset)
            now = time.time()
            for name, labels in events:
                key = tuple(str(labels[n])[:MAX_LABEL] for n in SCHEMA[name])
                rows = counters.setdefault(name, [])
                hit = next((s for s in rows if s.labels == key), None)
                if hit is None:
                    rows.append(Series(key, 1.0, now))
                else:
                    hit.value += 1
            data = _dump(counters)
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
