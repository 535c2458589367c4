"""``nvmet-p2p restore [FILE]``: apply a saved configuration through the reconciler.

Unlike ``nvmetcli restore`` it does not clear first: objects already right are not touched,
so hosts connected to them stay connected.
"""

from __future__ import annotations

from nvmet_p2p import statefile
from nvmet_p2p.apply import ApplyFailed, ApplyInterrupted, reconcile
from nvmet_p2p.commands._target import (
    add_state_dir,
    default_save_file,
    directory,
    failure_report,
    lock_timeout,
    print_plan,
)
from nvmet_p2p.output import Progress

NAME = "restore"
ORDER = 44
HELP = "restore a saved configuration without disturbing what is already right"


def register(p) -> None:
    p.add_argument("file", nargs="?", default=None,
                   help="file to read (default /etc/nvmet/config.json, or $NVMET_P2P_SAVE_FILE)")
    p.add_argument("--prune", action="store_true",
                   help="also remove managed objects that are not in the file")
    p.add_argument("--dry-run", action="store_true", help="only show the plan")
    add_state_dir(p)


def run(args) -> int:
    from nvmet_p2p import lastapply
    try:
        with lastapply.recorded(directory(args), "restore", enabled=not args.dry_run) as rec:
            desired = statefile.load(args.file or default_save_file())
            rec.outcome = outcome = reconcile(args.root, desired, directory(args),
                                              prune=args.prune, dry_run=args.dry_run,
                                              progress=Progress(quiet=args.json),
                                              kernel=args.kernel, lock_timeout=lock_timeout(args))
    except (ApplyFailed, ApplyInterrupted) as exc:
        return failure_report(args, exc)
    print_plan(args, outcome)
    return 0
