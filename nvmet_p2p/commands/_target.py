"""Shared pieces of the target-side commands (plan, apply, save, restore, clear)."""

from __future__ import annotations

import os
import sys

from nvmet_p2p import output
from nvmet_p2p.apply import state_dir


def add_state_dir(parser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", default=None,
                        help="where nvmet-p2p records the objects it manages and its lock "
                             "(default $NVMET_P2P_STATE_DIR or /var/lib/nvmet-p2p)")


def directory(args) -> str:
    return state_dir(getattr(args, "state_dir", None))


def print_plan(args, outcome, steps: bool = False) -> None:
    plan = outcome.plan
    if args.json:
        output.dump_json(outcome.to_dict())
        return
    sys.stdout.write(plan.render(steps=steps) + "\n")
    if outcome.result is not None:
        r = outcome.result
        sys.stdout.write(f"Applied: {r.writes} configfs write{'s' if r.writes != 1 else ''} "
                         f"in {r.seconds:.2f} s.\n")


def failure_report(args, exc) -> int:
    """Print an ApplyFailed (kernel errno + its log lines) and return the exit status."""
    if args.json:
        output.dump_json({"applied": False, **exc.to_dict()})
    else:
        print(f"nvmet-p2p {args.command}: error: {exc}", file=sys.stderr)
    return exc.exit_status


def default_save_file() -> str:
    return os.environ.get("NVMET_P2P_SAVE_FILE", "/etc/nvmet/config.json")
