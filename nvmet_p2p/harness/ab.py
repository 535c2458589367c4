"""A/B: put the local target's namespaces into p2p-on or p2p-off between rounds.

"On" is each namespace's ``p2pmem`` as configured when the run starts (a provider BDF or
``1``), or a value the user gives; "off" is ``0``. The kernel accepts a ``p2pmem`` change only
while the namespace is disabled, and the p2p mapping of a controller is fixed when it
connects, so the bench disconnects before toggling and reconnects after.

The change goes through the reconciler (``nvmet_p2p.apply``: minimal, ordered, rolled back on
failure) when it is installed; until then through the same three configfs writes the
reconciler would make (``enable`` 0, ``p2pmem``, ``enable`` 1), restoring the previous
value if the kernel refuses.
"""

from __future__ import annotations

import os

from nvmet_p2p.errors import InputError, KernelError

NVMET = "sys/kernel/config/nvmet"


class LocalToggle:
    def __init__(self, root: str, subsystems: list[str], nsids: list[int] | None = None,
                 on_value: str | None = None, progress=None):
        self.root = root
        self.progress = progress or (lambda m: None)
        self.targets: dict[tuple[str, int], str] = {}
        for nqn in subsystems:
            nsdir = os.path.join(root, NVMET, "subsystems", nqn, "namespaces")
            if not os.path.isdir(nsdir):
                raise InputError(f"A/B: subsystem {nqn} is not on this machine's target "
                                 f"({nsdir} missing); use --ab-on-cmd/--ab-off-cmd for a remote target")
            for n in sorted(os.listdir(nsdir), key=lambda x: int(x) if x.isdigit() else -1):
                if not n.isdigit() or (nsids and int(n) not in nsids):
                    continue
                cur = self._read(nqn, int(n), "p2pmem")
                val = on_value or cur
                if val in (None, "0"):
                    raise InputError(f"A/B: {nqn} nsid {n} has p2pmem 0, so 'p2p on' is undefined; "
                                     f"configure a provider first or pass --ab-p2pmem BDF|1")
                self.targets[(nqn, int(n))] = val
        if not self.targets:
            raise InputError("A/B: no namespace to toggle")
        self.original = {k: self._read(*k, "p2pmem") for k in self.targets}

    def _path(self, nqn: str, nsid: int, attr: str) -> str:
        return os.path.join(self.root, NVMET, "subsystems", nqn, "namespaces", str(nsid), attr)

    def _read(self, nqn: str, nsid: int, attr: str) -> str | None:
        try:
            with open(self._path(nqn, nsid, attr)) as f:
                return f.read().strip()
        except OSError:
            return None

    def _write(self, nqn: str, nsid: int, attr: str, value: str) -> None:
        p = self._path(nqn, nsid, attr)
        try:
            with open(p, "w") as f:
                f.write(value)
        except OSError as exc:
            raise KernelError(f"writing {value!r} to {p} failed: {exc.strerror}", errno=exc.errno, path=p) from None

    def _apply_ns(self, nqn: str, nsid: int, value: str) -> None:
        cur = self._read(nqn, nsid, "p2pmem")
        if cur == value:
            return
        enabled = self._read(nqn, nsid, "enable") == "1"
        if enabled:
            self._write(nqn, nsid, "enable", "0")
        try:
            self._write(nqn, nsid, "p2pmem", value)
            if enabled:
                self._write(nqn, nsid, "enable", "1")
        except KernelError:
            # back to how it was, then report the kernel's refusal
            try:
                self._write(nqn, nsid, "p2pmem", cur or "0")
                if enabled:
                    self._write(nqn, nsid, "enable", "1")
            finally:
                pass
            raise

    def set(self, variant: str) -> None:
        for (nqn, nsid), on in self.targets.items():
            value = on if variant == "p2p-on" else "0"
            self._apply_ns(nqn, nsid, value)
            self.progress(f"{nqn} nsid {nsid}: p2pmem {value}")

    def restore(self) -> None:
        for (nqn, nsid), v in self.original.items():
            if v is not None:
                self._apply_ns(nqn, nsid, v)
