"""``nvmet-p2p clear``: remove what nvmet-p2p manages (or, with --all --yes, everything)."""

from __future__ import annotations

from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_state_dir, directory, failure_report, lock_timeout, print_plan
from nvmet_p2p.errors import InputError, UsageError
from nvmet_p2p.nvmet import lastapply
from nvmet_p2p.nvmet.apply import ApplyFailed, ApplyInterrupted, clear

NAME = "clear"
ORDER = 45
HELP = "remove the objects nvmet-p2p manages (--all --yes: the whole nvmet configuration)"
KERNEL_OPTION = False      # applies no kernel rules: no --kernel

EXAMPLES = (
    Example("nvmet-p2p clear --dry-run", "what removing the objects nvmet-p2p manages would do"),
    Example("nvmet-p2p clear", "remove them (hand-made objects stay)", lab=True),
    Example("nvmet-p2p clear --all --yes", "remove every nvmet object, hand-made ones too",
            lab=True),
)


def register(p) -> None:
    p.add_argument("--all", action="store_true",
                   help="remove every subsystem, port and host, including hand-made ones")
    p.add_argument("--yes", action="store_true", help="confirm --all")
    p.add_argument("--dry-run", action="store_true", help="only show the plan")
    add_state_dir(p)


def run(args) -> int:
    if args.yes and not args.all:
        raise UsageError("--yes confirms --all; without --all nothing needs confirming (clear "
                         "removes only what nvmet-p2p manages)")
    if args.all and not args.yes and not args.dry_run:
        raise InputError("--all removes every export on this machine, including ones nvmet-p2p "
                         "did not create; add --yes to confirm (or --dry-run to see the plan)")
    try:
        with lastapply.recorded(directory(args), "clear", enabled=not args.dry_run) as rec:
            rec.outcome = outcome = clear(args.root, directory(args), everything=args.all,
                                          dry_run=args.dry_run, lock_timeout=lock_timeout(args))
    except (ApplyFailed, ApplyInterrupted) as exc:
        return failure_report(args, exc)
    print_plan(args, outcome)
    return 0
