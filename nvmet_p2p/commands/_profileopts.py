"""The ``--profile``/``--explain``/``--inventory`` options of ``plan`` and ``apply``, apart from
the profile machinery itself (:mod:`nvmet_p2p.commands._profile`, YAML and placement: imported
only when ``--profile`` is given)."""

from __future__ import annotations

from nvmet_p2p.commands._inventory import add_inventory_option
from nvmet_p2p.errors import UsageError


def refuse_profile_options(args) -> None:
    """--explain is about a profile's placement, --inventory about the machine a profile or a
    state file is checked against; with what does not use them they would be ignored."""
    if args.profile:
        return
    state = getattr(args, "state", None)
    why = []
    if args.explain:
        why.append("--explain only apply to --profile (a placement)")
    if args.inventory and not state:
        why.append("--inventory only apply to --profile or --state (the machine they are "
                   "checked against)")
    if why:
        source = "--state" if state else "--plan"
        raise UsageError(f"{'; '.join(why)}; with {source} they would be ignored")


def add_profile_options(parser, group) -> None:
    """``group``: the mutually exclusive source group (--state / --plan / --profile)."""
    group.add_argument("--profile", metavar="PROFILE",
                       help="a profile (YAML, see profiles/): nvmet-p2p places the p2pmem "
                            "providers and derives the desired state")
    parser.add_argument("--explain", action="store_true",
                        help="with --profile: per namespace the ranked candidates and why each lost")
    add_inventory_option(parser)
