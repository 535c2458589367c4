"""The ``--profile``/``--explain``/``--inventory`` options of ``plan`` and ``apply``, apart from
the profile machinery itself (:mod:`nvmet_p2p.commands._profile`, YAML and placement: imported
only when ``--profile`` is given)."""

from __future__ import annotations

from nvmet_p2p.commands._inventory import add_inventory_option


def add_profile_options(parser, group) -> None:
    """``group``: the mutually exclusive source group (--state / --plan / --profile)."""
    group.add_argument("--profile", metavar="PROFILE",
                       help="a profile (YAML, see profiles/): nvmet-p2p places the p2pmem "
                            "providers and derives the desired state")
    parser.add_argument("--explain", action="store_true",
                        help="with --profile: per namespace the ranked candidates and why each lost")
    add_inventory_option(parser)
