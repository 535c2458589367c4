"""The ``--profile`` path of ``plan`` and ``apply``: inventory + profile -> placement ->
desired TargetState, handed to the reconciler like a state file would be.

``plan --profile P [--explain]`` prints the placement (per namespace the provider and why; with
``--explain`` the ranked candidates and the rule each lost on) and then the configfs diff.
Both read the machine from ``--root`` (live ``/`` or a snapshot directory) or ``--inventory``;
a snapshot without an nvmet configfs tree is planned against an empty target.
"""

from __future__ import annotations

import json
import sys

from nvmet_p2p import output
from nvmet_p2p.commands._inventory import load_inventory
from nvmet_p2p.commands._profileopts import add_profile_options  # noqa: F401 (its old home)
from nvmet_p2p.commands._target import (
    directory,
    dry_run,
    lock_timeout,
    print_plan,
    report_recovery,
)
from nvmet_p2p.nvmet.apply import Outcome, reconcile
from nvmet_p2p.nvmet.configfs import Configfs, read_state
from nvmet_p2p.policy import placement
from nvmet_p2p.safefs import write_file


def placement_from_args(args) -> placement.Placement:
    """Place the profile on the machine; on a placement error print the explanation first
    (with --explain), then raise (nothing is written)."""
    inv = load_inventory(args)
    cfs = Configfs(args.root)
    try:
        # the live tree only chooses ANA group ids (multipath: p2p); the plan itself is made
        # against the tree read again under the apply lock
        return placement.place_profile(args.profile, inv, args.kernel,
                                       explain=args.explain or args.json, root=args.root,
                                       live=lambda: read_state(cfs))
    except placement.PlacementError as exc:
        if args.explain and not args.json:
            sys.stdout.write(placement.render(exc.placement, explain=True) + "\n")
        raise


def run_plan(args) -> int:
    p = placement_from_args(args)
    outcome = dry_run(args, p.state, p.kernel)
    if getattr(args, "out", None):
        write_file(args.out, json.dumps(outcome.plan.to_dict(secrets=True), indent=2) + "\n",
                   mode=0o600)
    _print(args, p, outcome)
    return 0


def apply_profile(args, progress) -> tuple[placement.Placement, Outcome]:
    """Place the profile and apply it (``apply --profile``); the caller prints the result."""
    p = placement_from_args(args)
    if not args.json:
        sys.stdout.write(placement.render(p, explain=args.explain) + "\n\n")
    outcome = reconcile(args.root, p.state, directory(args), prune=args.prune,
                        progress=progress, kernel=args.kernel, lock_timeout=lock_timeout(args))
    return p, outcome


def _print(args, p: placement.Placement, outcome: Outcome) -> None:
    if args.json:
        report_recovery(outcome.recovery)
        output.dump_json({"placement": p.to_dict(), **outcome.to_dict()})
        return
    sys.stdout.write(placement.render(p, explain=args.explain) + "\n\n")
    print_plan(args, outcome, steps=args.steps)
