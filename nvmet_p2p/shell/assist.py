"""The p2p knowledge the nodes show: completions with their facts, verdicts, ``explain``, and
the warnings a staged value earns before anything is written.

Mixed into :class:`nvmet_p2p.shell.app.ShellApp` (it uses ``self.session``, ``self.p2p`` and
``self.shell``).
"""

from __future__ import annotations

import copy
import os

from configshell import ExecutionError

from nvmet_p2p.nvmet.spec import SPECS
from nvmet_p2p.pci import distance
from nvmet_p2p.policy import placement
from nvmet_p2p.policy.profile import stable_by_id_name
from nvmet_p2p.shell.p2p import ByNamespace, Verdict, clients_line
from nvmet_p2p.shell.ui_tree import _path_choices


def _with(view, loc, values):
    """A shallow copy of ``view`` in which the namespace ``loc`` has ``values`` set."""
    v = copy.copy(view)
    v.subsystems = dict(view.subsystems)
    sub = copy.copy(view.subsystems[loc[1]])
    sub.namespaces = dict(sub.namespaces)
    ns = copy.copy(sub.namespaces[loc[2]])
    ns.attrs = {**ns.attrs, **values}
    sub.namespaces[loc[2]] = ns
    v.subsystems[loc[1]] = sub
    return v


def _path_of(view, nqn: str, nsid: int) -> dict[str, int]:
    p = view.subsystems[nqn].namespaces[nsid].attrs.get("device_path")
    return {p: 1} if p else {}


class P2pAssist:
    # -- what ls shows -------------------------------------------------------------------------
    def verdict(self, loc) -> Verdict:
        try:
            return self.p2p.verdict(self.session.view, loc[1], loc[2])
        except OSError as exc:                  # the machine could not be read
            return Verdict("p2p ?", None, [f"cannot read the machine: {exc}"])

    # -- completion ----------------------------------------------------------------------------
    def p2pmem_completions(self, loc, text: str) -> list[str]:
        s = self.session
        choices, head = self.p2p.choices(s, loc[1], loc[2])
        got = [c for c in choices if c.value.startswith(text.lower() if text[:1].isalpha() else text)]
        self.shell.annotate([f"p2pmem for namespace {loc[2]} of {loc[1]}, best first:"] + head,
                            {c.value: f"{c.rank}. {c.note}" for c in got})
        return [c.value for c in got]

    def _used_paths(self) -> dict[str, int]:
        if getattr(self, "_used", None) is None:
            self._used = ByNamespace(_path_of)
        return self._used.get(self.session)

    def device_completions(self, text: str) -> list[str]:
        choices = self.p2p.device_choices(self._used_paths())
        got = [c for c in choices if c.value.startswith(text)]
        if not got and text and not text.startswith("/dev/disk/by-id/"):
            return _path_choices(text)               # a file-backed namespace
        links = self.p2p.by_id_links()
        head = ["block devices (NVMe namespaces of this machine):"]
        if not links:
            head.append("no /dev/disk/by-id links here (no udev?): only /dev/nvmeXnY names, "
                        "which can change between boots")
        self.shell.annotate(head, {c.value: c.note for c in got})
        return [c.value for c in got]

    def address_completions(self, text: str) -> list[str]:
        got = [c for c in self.p2p.address_choices() if c.value.startswith(text)]
        self.shell.annotate(["addresses of this machine (the RDMA device behind each is the "
                             "port's p2p client):"], {c.value: c.note for c in got})
        return [c.value for c in got]

    # -- checks before staging -----------------------------------------------------------------
    def ns_checks(self, loc, values: dict[str, str]) -> list[str]:
        """Refuse what the kernel refuses on the write itself; return warnings for what it
        would refuse later (at enable) and notes on what commit will do."""
        notes: list[str] = []
        view = self.session.view
        ns = view.subsystems[loc[1]].namespaces[loc[2]]
        if "p2pmem" in values:
            self._check_provider(values["p2pmem"])
        if "device_path" in values:
            notes += self.path_warnings(values["device_path"])
        if "p2pmem" in values or "device_path" in values:
            v = self.p2p.verdict(_with(view, loc, values), loc[1], loc[2])
            if v.health is False:
                notes.append(f"the kernel will refuse this when the namespace is enabled "
                             f"({v.short}): {'; '.join(v.lines)}. `commit` would fail and be "
                             "rolled back; `explain` shows the providers it accepts")
        offline = [k for k in values if k in SPECS["namespace"].offline and ns.attrs.get(k) != values[k]]
        live = self.session.base.subsystems.get(loc[1])
        live_ns = live.namespaces.get(loc[2]) if live else None
        if live_ns is not None and live_ns.enable and ns.enable and offline:
            notes.append(f"the namespace is enabled: commit disables it, writes "
                         f"{', '.join(offline)}, and enables it again (connected hosts see it "
                         "go away briefly)")
        return notes

    def _check_provider(self, value: str) -> None:
        bdf = distance.normalize_bdf(value)
        if bdf is None:
            return
        if bdf != value.strip():
            raise ExecutionError(f"p2pmem: write the full PCI name {bdf} (nothing was changed)")
        f = self.p2p.inv.pci.get(bdf)
        if f is None:
            raise ExecutionError(f"p2pmem: {bdf} is not a PCI device of this machine (the kernel "
                                 "answers ENODEV: No such PCI device) (nothing was changed)")
        if f.p2pmem is None or not f.p2pmem.published:
            what = "has no p2p memory" if f.p2pmem is None else "does not publish its p2p memory"
            raise ExecutionError(f"p2pmem: {bdf} {what} (the kernel answers ENODEV: PCI device "
                                 "has no peer-to-peer memory) (nothing was changed); providers "
                                 "here: " + (", ".join(p.bdf for p in self.p2p.inv.providers())
                                             or "none"))

    def path_warnings(self, path: str) -> list[str]:
        out = []
        real = os.path.join(self.p2p.root, path.lstrip("/"))
        if not os.path.exists(real):
            out.append(f"warning: {path} does not exist here: enabling the namespace will fail "
                       "(ENOENT)")
        block = self.p2p.block_name(path) if path.startswith("/dev/") else None
        if block and path == f"/dev/{block}":
            stable = stable_by_id_name(block, self.p2p.by_id_links())
            if stable:
                out.append(f"/dev/disk/by-id/{stable} names the same device and keeps its name "
                           "across reboots (nvmeXnY names do not)")
        return out

    def enable_warnings(self, loc) -> list[str]:
        ns = self.session.view.subsystems[loc[1]].namespaces[loc[2]]
        if not ns.attrs.get("device_path"):
            return ["warning: device_path is not set: the kernel refuses to enable it"]
        v = self.verdict(loc)
        if v.health is False:
            return [f"warning: the kernel will refuse this at enable ({v.short}); `explain` "
                    "says why and which providers it accepts"]
        return []

    # -- explain -------------------------------------------------------------------------------
    def explain(self, loc) -> list[str]:
        s = self.session
        nqn, nsid = loc[1], loc[2]
        ns = s.view.subsystems[nqn].namespaces[nsid]
        f, pl = self.p2p.rank(s, nqn, nsid)
        path = ns.attrs.get("device_path") or "(not set)"
        lines = [f"namespace {nsid} of {nqn}: device_path {path}"
                 + (f" -> {f.block}" if f.block and f"/dev/{f.block}" != path else ""),
                 f"  {clients_line(f)}"]
        v = self.verdict(loc)
        lines.append(f"  p2pmem now: {v.short}")
        lines += [f"    {x}" for x in v.lines]
        if pl is None:
            lines.append(f"  no placement: {f.why_no_nvme}")
            return lines
        d = pl.decisions[0]
        lines.append(f"  placement (the order `set p2pmem=<TAB>` offers; kernel {pl.kernel} "
                     "p2pdma rules):")
        body = placement.render(pl, explain=True).splitlines()[1:]
        for b in body:
            if b.strip().startswith("p2pmem="):
                b = b.replace("p2pmem=", "would choose p2pmem=", 1)
            lines.append("  " + b)
        if d.error:
            lines.append(f"  no provider can be placed: {d.error}")
        return lines
