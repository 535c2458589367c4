"""The ``--profile``/``--explain``/``--inventory`` options of ``plan`` and ``apply``, apart from
the profile machinery itself (:mod:`nvmet_p2p.commands._profile`, YAML and placement: imported
only when ``--profile`` is given)."""

from __future__ import annotations

from nvmet_p2p.commands._inventory import add_inventory_option
from nvmet_p2p.errors import UsageError


def refuse_profile_options(args) -> None:
    """--explain and --inventory are about a profile's placement; without --profile they
    would be ignored."""
    if args.profile:
        return
    given = [o for o, on in (("--explain", args.explain), ("--inventory", args.inventory)) if on]
    if given:
        source = "--state" if getattr(args, "state", None) else "--plan"
        raise UsageError(f"{' and '.join(given)} only apply to --profile (a placement); with "
                         f"{source} they would be ignored")


def add_profile_options(parser, group) -> None:
    """``group``: the mutually exclusive source group (--state / --plan / --profile)."""
    group.add_argument("--profile", metavar="PROFILE",
                       help="a profile (YAML, see profiles/): nvmet-p2p places the p2pmem "
                            "providers and derives the desired state")
    parser.add_argument("--explain", action="store_true",
                        help="with --profile: per namespace the ranked candidates and why each lost")
    add_inventory_option(parser)
