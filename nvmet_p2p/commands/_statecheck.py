"""The machine checks of a state file (:mod:`nvmet_p2p.policy.statecheck`) for ``plan``,
``apply`` and ``restore``: the machine from ``--root`` or ``--inventory``, the export policy's
path facts from the same place, and ``--allow-missing``: devices, providers and addresses
that are not there yet hold back what needs them (:func:`nvmet_p2p.service.devwait.degrade`,
what ``restore --wait-devices`` does after waiting) instead of refusing the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nvmet_p2p.commands._inventory import load_inventory
from nvmet_p2p.nvmet.configfs import Configfs, read_state
from nvmet_p2p.nvmet.state import TargetState
from nvmet_p2p.output import warn
from nvmet_p2p.policy import exportpolicy, statecheck
from nvmet_p2p.service import devwait


def add_allow_missing(parser) -> None:
    parser.add_argument("--allow-missing", action="store_true",
                        help="with --state: a block device, p2pmem provider or port address "
                             "that is not there yet holds back what needs it (namespace created "
                             "disabled, p2pmem 0, port not linked), as restore --wait-devices "
                             "does at boot, instead of refusing the state")


@dataclass
class Checked:
    """A state file after the machine checks: the state to plan (degraded when missing items
    were accepted), the checks' warnings, what was held back, the machine's kernel."""

    state: TargetState
    warnings: list[str] = field(default_factory=list)
    held: list[tuple[str, str, str, dict]] = field(default_factory=list)
    kernel: str | None = None

    def to_dict(self) -> dict:
        return {"warnings": list(self.warnings),
                "held_back": [{"object": o, "kind": k, "what": w, **f} for o, k, w, f in self.held]}

    def report(self, args) -> None:
        """Warnings and what was held back, on stderr (``--json`` carries them in
        ``checks``)."""
        if args.json:
            return
        for w in self.warnings:
            warn(args.command, w)
        for o, _k, w, _f in self.held:
            warn(args.command, f"held back: {o}: {w}")


def machine_check(args, desired: TargetState
                  ) -> tuple[statecheck.StateCheck, Callable[[TargetState], statecheck.StateCheck], str]:
    """The checks of ``desired`` on the machine of ``--root``/``--inventory``; also the check
    itself (for a degraded state) and the machine's kernel release."""
    inv = load_inventory(args)
    if getattr(args, "inventory", None):
        def facts(path):
            return exportpolicy.infer(path, inv)
    else:
        def facts(path):
            return exportpolicy.probe(args.root, path, inv)

    def run(state: TargetState) -> statecheck.StateCheck:
        return statecheck.check(state, inv, facts, args.kernel)
    return run(desired), run, args.kernel or inv.system.kernel_release or None


def checked(args, desired: TargetState, where: str, *, allow_missing: bool = False) -> Checked:
    """``desired`` checked against the machine; raises
    :class:`~nvmet_p2p.policy.statecheck.StateCheckError` (nothing written). Missing items
    accepted (``allow_missing``) hold back what needs them; a port link already live is kept
    (the port listens, so its address is there after all)."""
    chk, again, kernel = machine_check(args, desired)
    out = Checked(desired, kernel=kernel)
    if allow_missing and chk.missing:
        d = devwait.degrade(desired, needs(chk.missing), _live(args), "export")
        out.state, out.held = d.state, d.held
        first = chk.warnings
        chk = again(d.state)
        chk.warnings = first + [w for w in chk.warnings if w not in first]
    chk.raise_if_refused(where, allow_missing)
    out.warnings = chk.warnings
    return out


def _live(args) -> TargetState | None:
    cfs = Configfs(args.root)
    return read_state(cfs) if cfs.present() else None


def needs(missing: list[statecheck.Missing]) -> list[devwait.Need]:
    """The checks' missing items as :class:`devwait.Need` (what ``degrade`` takes)."""
    users: dict[tuple[str, str], list[str]] = {}
    for m in missing:
        users.setdefault((m.kind, m.what), []).append(m.user)
    return [devwait.Need(k, w, tuple(u)) for (k, w), u in users.items()]
