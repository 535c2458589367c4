"""``<state dir>/degraded.json``: what is exported less well than the configuration asks, since
when, and why -- written by ``restore --wait-devices`` (items it held back) and by ``watch``
(what it saw the kernel lose), read by ``status``.

The kernel keeps no such record: a namespace whose p2pmem provider was hot-removed stays
enabled, still shows the removed BDF in ``p2pmem`` and silently serves from host memory; when
the provider comes back it is a new PCI device the namespace does not use. Only someone who saw
the event can tell, so the watcher writes it down here.

One entry per (object, kind); objects are named like the plan names them (``namespace
<nqn>/<nsid>``, ``port <id>``). Kinds:

* ``offload-lost``: the namespace's provider is gone (or came back as a new device the
  namespace does not use yet); ``provider`` = the BDF;
* ``re-placed``: the provider is gone and the watcher moved the namespace to ``now`` until
  it returns;
* ``backing-lost``: the block device behind the namespace is gone; ``device`` (kernel name),
  ``wwid`` and ``serial`` identify it when it returns;
* ``held-back``: restore could not export it (a device, provider or address was missing);
* ``port-lost``: the RDMA device or address a port listens on is gone.
* ``rewrite-pending``: the watcher decided to rewrite the namespace's ``p2pmem`` but its
  ``--rewrite`` policy holds it back (until the namespace is idle, or until the operator runs
  ``watch --rewrite-pending``); ``target`` = what it will write, ``policy``.

Reads never fail the caller (an unreadable, oversized or deeply nested file, or a state
directory that is not safe to use, is an empty record with a warning); writes are atomic
(temporary file, fsync, rename) under an ``flock`` of ``degraded.lock``, through
:class:`nvmet_p2p.safefs.PrivateDir` like every file of the state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p import safeload
from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.safefs import PrivateDir
from nvmet_p2p.safeload import LIMITS, decode, loads_json

FILE = "degraded.json"
#: the ``flock`` that serialises updates of :data:`FILE`
LOCK_FILE = "degraded.lock"
KINDS = ("offload-lost", "re-placed", "backing-lost", "held-back", "port-lost", "rewrite-pending")


@dataclass
class Entry:
    object: str
    kind: str
    since: float
    detail: str
    source: str = "watch"
    facts: dict[str, Any] = field(default_factory=dict)     # provider, device, wwid, serial ...

    def to_dict(self) -> dict[str, Any]:
        """The record as written (the detail and the facts' text with every secret removed)."""
        facts = {k: safeload.redact(v) if isinstance(v, str) else v for k, v in self.facts.items()}
        return {"object": self.object, "kind": self.kind, "since": self.since,
                "since_text": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)),
                "detail": safeload.redact(self.detail), "source": self.source, **facts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Entry":
        known = {"object", "kind", "since", "since_text", "detail", "source"}
        return cls(str(d["object"]), str(d["kind"]), float(d["since"]), str(d.get("detail", "")),
                   str(d.get("source", "watch")), {k: v for k, v in d.items() if k not in known})


class DegradedStore:
    def __init__(self, directory: str):
        self.directory = directory
        self.dir = PrivateDir(directory)
        self.path = self.dir.file(FILE)
        self.warning: str | None = None

    def load(self) -> dict[tuple[str, str], Entry]:
        """The entries; never raises: an unsafe directory, a damaged, oversized or deeply
        nested file is an empty record and :attr:`warning` says why."""
        self.warning = None
        try:
            raw = self.dir.read(FILE, LIMITS["record"])
            if raw is None:
                return {}
            doc = loads_json(decode(raw, self.path), self.path)
            return {(e.object, e.kind): e for e in map(Entry.from_dict, doc.get("entries", []))}
        except NvmetP2PError as exc:
            self.warning = f"unreadable record of degraded objects: {exc}; ignored"
        except (OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            self.warning = f"{self.path}: unreadable ({exc}); ignored"
        return {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = self.dir.open_lock(LOCK_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _save(self, entries: dict[tuple[str, str], Entry]) -> None:
        doc = {"format": 1, "entries": [e.to_dict() for _, e in sorted(entries.items())]}
        self.dir.write(FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n", mode=0o600)

    def update(self, put: Iterable[Entry] = (), drop: Iterable[tuple[str, str]] = (),
               drop_source: str | None = None) -> dict[tuple[str, str], Entry]:
        """Add/replace ``put`` (an existing entry keeps its ``since``), remove ``drop`` keys
        and, with ``drop_source``, every entry that source wrote before."""
        with self._locked():
            cur = self.load()
            if drop_source:
                cur = {k: e for k, e in cur.items() if e.source != drop_source}
            for k in drop:
                cur.pop(k, None)
            for e in put:
                old = cur.get((e.object, e.kind))
                if old is not None:
                    e.since = old.since
                cur[(e.object, e.kind)] = e
            self._save(cur)
            return cur


def for_object(entries: dict[tuple[str, str], Entry], obj: str) -> list[Entry]:
    return [e for (o, _k), e in sorted(entries.items()) if o == obj]
