"""``nvmet-p2p apply``: bring configfs to a desired state, all or nothing.

The running target is what changes; what the next boot restores is the saved file. ``--save``
writes the live target there after the apply (under the apply lock); without it nothing is
saved and, when the live target now differs from the saved file, a warning says so (on
stderr; ``--json`` carries it as ``saved_config``). See docs/state-directory.md#apply-and-the-saved-configuration
for why saving is not the default."""

from __future__ import annotations

from nvmet_p2p import output, safeload
from nvmet_p2p.commands import _profile, _profileopts, _statecheck
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import (
    add_save_file,
    add_state_dir,
    after_apply,
    directory,
    failure_report,
    lock_timeout,
    print_plan,
    report_recovery,
    report_saved,
)
from nvmet_p2p.nvmet import lastapply, statefile
from nvmet_p2p.nvmet.apply import ApplyFailed, ApplyInterrupted, apply_saved_plan, reconcile
from nvmet_p2p.nvmet.plan import Plan
from nvmet_p2p.output import Progress
from nvmet_p2p.service import devwait

NAME = "apply"
ORDER = 41
HELP = "apply a desired state (or a saved plan) to configfs; rolled back if the kernel refuses a step"

EXAMPLES = (
    Example("nvmet-p2p apply --profile target.yaml", "place the profile's namespaces and apply "
            "them, all or nothing", lab=True),
    Example("nvmet-p2p apply --plan plan.json", "apply exactly a reviewed plan (refused if the "
            "target changed since it was made)", lab=True),
    Example("nvmet-p2p apply --state config.json --prune --steps", "reach a desired state, remove "
            "the managed objects it does not name, list every configfs operation", lab=True),
)


def register(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--state", metavar="FILE", help="desired state (nvmetcli config.json format)")
    src.add_argument("--plan", metavar="PLANFILE", help="a plan saved with `plan --out`")
    _profileopts.add_profile_options(p, src)
    p.add_argument("--prune", action="store_true",
                   help="also remove managed objects that are not in the desired state")
    p.add_argument("--steps", action="store_true", help="list every configfs operation in order")
    _statecheck.add_allow_missing(p)
    p.add_argument("--save", action="store_true",
                   help="after the apply, save the live target to the file the boot unit restores "
                        "(like `nvmet-p2p save`); without it, a warning says when the two differ")
    add_save_file(p, "with --save: the file to write; without: the file compared with the live "
                     "target")
    add_state_dir(p)


def run(args) -> int:
    _profileopts.refuse_profile_options(args)
    progress = Progress(quiet=args.json or args.quiet)
    checked = None
    if args.state:
        # the machine checks refuse before anything is written or recorded
        checked = _statecheck.checked(args, statefile.load(args.state), args.state,
                                      allow_missing=args.allow_missing)
        checked.report(args)
    placed = None
    try:
        with lastapply.recorded(directory(args), "apply", root=args.root) as rec:
            if args.profile:
                placed, outcome = _profile.apply_profile(args, progress)
            elif args.plan:
                plan = Plan.from_dict(safeload.load_json(args.plan), where=args.plan)
                outcome = apply_saved_plan(args.root, plan, directory(args), progress=progress,
                                           lock_timeout=lock_timeout(args))
            else:
                outcome = reconcile(args.root, checked.state, directory(args), prune=args.prune,
                                    progress=progress, kernel=args.kernel,
                                    lock_timeout=lock_timeout(args))
                outcome.extra["checks"] = checked.to_dict()
            rec.outcome = outcome
    except (ApplyFailed, ApplyInterrupted) as exc:
        return failure_report(args, exc)
    kept = outcome.extra["saved_config"] = after_apply(args, progress)
    if args.json:
        report_recovery(outcome.recovery)
        doc = outcome.to_dict()
        output.dump_json({"placement": placed.to_dict(), **doc} if placed else doc)
    else:
        print_plan(args, outcome, steps=args.steps)
    report_saved(args, kept)
    # something held back (--allow-missing): exported in part, as a partial restore is
    return devwait.EXIT_PARTIAL if checked is not None and checked.held else 0
