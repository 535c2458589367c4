"""A/B: put the local target's namespaces into p2p-on or p2p-off between rounds.

"On" is each namespace's ``p2pmem`` as configured when the run starts (a provider BDF or
``1``), or a value the user gives; "off" is ``0``. The kernel accepts a ``p2pmem`` change only
while the namespace is disabled, and a controller's p2p mapping is fixed when it connects, so
the bench disconnects before toggling and reconnects after.

Every change goes through the reconciler (:func:`nvmet_p2p.nvmet.apply.reconcile`): the desired
state is the subsystem as it is live (read under the apply lock) with only ``p2pmem`` changed,
so the plan cycles exactly those namespaces (``enable`` 0, ``p2pmem``, ``enable`` 1), rolls
back if the kernel refuses, and holds the apply lock. The subsystem joins nvmet-p2p's managed set, as with any apply.
"""

from __future__ import annotations

import copy

from nvmet_p2p import paths
from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.apply import reconcile
from nvmet_p2p.nvmet.configfs import Configfs, read_state


class LocalToggle:
    def __init__(self, root: str, subsystems: list[str], nsids: list[int] | None = None,
                 on_value: str | None = None, state_dir: str | None = None, progress=None, cfs=None):
        self.root = root
        self.cfs = cfs            # tests pass a fake configfs; None: the live tree under root
        self.directory = paths.state_dir(root, state_dir)
        self.progress = progress or (lambda m: None)
        self.outcomes: list[dict] = []
        live = read_state(cfs or Configfs(root))
        self.targets: dict[tuple[str, int], str] = {}
        self.original: dict[tuple[str, int], str] = {}
        for nqn in subsystems:
            sub = live.subsystems.get(nqn)
            if sub is None:
                raise InputError(f"A/B: subsystem {nqn} is not on this machine's target; use "
                                 f"--ab-on-cmd/--ab-off-cmd for a remote target", where="--nqn")
            for nsid, ns in sorted(sub.namespaces.items()):
                if nsids and nsid not in nsids:
                    continue
                cur = ns.attrs.get("p2pmem")
                if cur is None:
                    raise InputError(f"A/B: {nqn} nsid {nsid} has no p2pmem attribute (kernel without "
                                     f"CONFIG_PCI_P2PDMA?)")
                val = on_value or cur
                if val == "0":
                    raise InputError(f"A/B: {nqn} nsid {nsid} has p2pmem 0, so 'p2p on' is undefined; "
                                     f"configure a provider first or pass --ab-p2pmem BDF|1", where="--ab-p2pmem")
                self.targets[(nqn, nsid)] = val
                self.original[(nqn, nsid)] = cur
        if not self.targets:
            raise InputError("A/B: no namespace to toggle", where="--nsid")

    def desired(self, values: dict[tuple[str, int], str]):
        """What the reconciler is asked for (a desire: computed under the apply lock from the
        tree read there): the subsystems as they are then (a named subsystem's allowed hosts and
        namespaces are authoritative in a desired state), with only ``p2pmem`` changed."""
        def want(live: st.TargetState, _managed) -> st.TargetState:
            d = st.TargetState()
            for (nqn, nsid), v in values.items():
                sub = live.subsystems.get(nqn)
                if sub is None or nsid not in sub.namespaces:
                    continue          # gone since the run started: not re-created
                if nqn not in d.subsystems:
                    d.subsystems[nqn] = copy.deepcopy(sub)
                    for h in sub.allowed_hosts:
                        if h in live.hosts:
                            d.hosts[h] = copy.deepcopy(live.hosts[h])
                d.subsystems[nqn].namespaces[nsid].attrs["p2pmem"] = v
            return d
        return want

    def _apply(self, values: dict[tuple[str, int], str], label: str) -> None:
        out = reconcile(self.root, self.desired(values), self.directory, cfs=self.cfs)
        r = out.result
        self.outcomes.append({"to": label, "writes": r.writes if r else 0,
                              "ops": [op.describe() for op in out.plan.ops]})
        self.progress(f"target -> {label}: {r.writes if r else 0} configfs writes")

    def set(self, variant: str) -> None:
        self._apply({k: (v if variant == "p2p-on" else "0") for k, v in self.targets.items()}, variant)

    def restore(self) -> None:
        self._apply(dict(self.original), "original p2pmem values")
