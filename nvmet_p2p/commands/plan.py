"""``nvmet-p2p plan``: what ``apply`` would change in configfs, as a readable diff or JSON."""

from __future__ import annotations

import json

from nvmet_p2p.commands import _profile, _profileopts, _statecheck
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_state_dir, dry_run, print_plan
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.safefs import write_file

NAME = "plan"
ORDER = 40
HELP = "show the configfs changes that would bring the target to a desired state"

EXAMPLES = (
    Example("nvmet-p2p plan --profile target.yaml --explain", "where each namespace's p2p memory "
            "would come from and why, then the configfs changes"),
    Example("nvmet-p2p plan --state config.json --out plan.json", "the changes that reach a saved "
            "state, kept for `apply --plan`"),
)


def register(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--state", metavar="FILE",
                     help="desired state (nvmetcli config.json format, plus p2pmem/buffered_io)")
    _profileopts.add_profile_options(p, src)
    p.add_argument("--prune", action="store_true",
                   help="also remove managed objects that are not in the desired state")
    p.add_argument("--steps", action="store_true", help="list every configfs operation in order")
    p.add_argument("--out", metavar="PLANFILE",
                   help="save the complete plan (mode 0600, secrets included) for `apply --plan`")
    _statecheck.add_allow_missing(p)
    add_state_dir(p)


def desired_from_args(args):
    return statefile.load(args.state)


def run(args) -> int:
    _profileopts.refuse_profile_options(args)
    if args.profile:
        return _profile.run_plan(args)
    # the same machine checks as a profile, against --root or --inventory (nothing written)
    checked = _statecheck.checked(args, desired_from_args(args), args.state,
                                  allow_missing=args.allow_missing)
    outcome = dry_run(args, checked.state, checked.kernel)
    outcome.extra["checks"] = checked.to_dict()
    checked.report(args)
    if args.out:
        write_file(args.out, json.dumps(outcome.plan.to_dict(secrets=True), indent=2) + "\n",
                   mode=0o600)
    print_plan(args, outcome, steps=args.steps)
    return 0
