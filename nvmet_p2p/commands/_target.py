"""Shared pieces of the target-side commands (plan, apply, save, restore, clear)."""

from __future__ import annotations

import contextlib
import sys

from nvmet_p2p import output, paths
from nvmet_p2p.nvmet import journal, saved
from nvmet_p2p.nvmet.apply import Outcome, open_configfs, reconcile, settle_pending
from nvmet_p2p.nvmet.configfs import Configfs, capabilities
from nvmet_p2p.nvmet.plan import build_plan
from nvmet_p2p.nvmet.state import TargetState
from nvmet_p2p.policy import exportpolicy
from nvmet_p2p.safeload import redact, redact_doc


def add_state_dir(parser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", default=None,
                        help="where nvmet-p2p records the objects it manages and its lock "
                             f"(default ${paths.STATE_DIR_ENV} or {paths.STATE_DIR}, below --root)")
    parser.add_argument("--lock-timeout", metavar="SECONDS", type=float, default=None,
                        help="wait up to SECONDS for another nvmet-p2p apply to finish (default "
                             f"${paths.LOCK_TIMEOUT_ENV} or {paths.LOCK_TIMEOUT:g}; 0: refuse at once)")


def add_save_file(parser, what: str = "the saved configuration the boot unit restores") -> None:
    parser.add_argument("--save-file", metavar="FILE", default=None,
                        help=f"{what} (default ${paths.SAVE_FILE_ENV} or {paths.SAVE_FILE}, "
                             "below --root)")


def directory(args) -> str:
    """The state directory: ``--state-dir``, else ``$NVMET_P2P_STATE_DIR``, else
    /var/lib/nvmet-p2p below ``--root`` (:func:`nvmet_p2p.paths.state_dir`)."""
    return paths.state_dir(getattr(args, "root", "/"), getattr(args, "state_dir", None))


def save_file(args, given: str | None = None) -> str:
    """The saved configuration: ``given`` (a FILE argument), else ``--save-file``, else
    ``$NVMET_P2P_SAVE_FILE``, else /etc/nvmet/config.json below ``--root``."""
    return paths.save_file(getattr(args, "root", "/"), given or getattr(args, "save_file", None))


def lock_timeout(args) -> float:
    """``--lock-timeout``, else ``$NVMET_P2P_LOCK_TIMEOUT``, else 30 s
    (:func:`nvmet_p2p.paths.lock_timeout`)."""
    return paths.lock_timeout(getattr(args, "lock_timeout", None))


def report_recovery(recovery) -> None:
    """Tell the user (stderr) that an interrupted earlier apply was settled first."""
    if recovery is not None:
        sys.stderr.write(recovery.message() + "\n")
        sys.stderr.flush()


def settle_first(args, *, must: bool = True):
    """Settle an interrupted earlier apply before a command that reads the target (``status``,
    ``save``). ``must=False``: a failure is a warning on stderr, the command goes on."""
    d = directory(args)
    if not journal.pending(d):
        return None
    try:
        rec = settle_pending(open_configfs(args.root, load_module=False), d, args.root,
                             kernel=getattr(args, "kernel", None), lock_timeout=lock_timeout(args))
    except Exception as exc:   # (status must still show what is there)
        if must:
            raise
        sys.stderr.write(f"nvmet-p2p {args.command}: warning: an interrupted apply is pending and "
                         f"could not be settled: {exc}\n")
        return None
    report_recovery(rec)
    return rec


def dry_run(args, desired, kernel: str | None = None) -> Outcome:
    """``plan``: what an apply of ``desired`` would do -- against the live tree (read under
    the apply lock) when ``--root`` has an nvmet configfs tree, else, offline on a snapshot or
    with ``--inventory``, against an empty target (said in ``extra["note"]``). ``kernel``: the
    machine's release for the attributes an empty target's kernel has."""
    cfs = Configfs(args.root)
    if cfs.present():
        return reconcile(args.root, desired, directory(args), prune=args.prune, dry_run=True,
                         kernel=args.kernel, lock_timeout=lock_timeout(args))
    plan = build_plan(TargetState(), desired, None, prune=False,
                      caps=capabilities(cfs, args.kernel or kernel))
    return Outcome(plan, extra={"note": f"{cfs.base} does not exist: planned against an empty "
                                        "nvmet target"})


def print_plan(args, outcome, steps: bool = False) -> None:
    plan = outcome.plan
    report_recovery(getattr(outcome, "recovery", None))
    if args.json:
        output.dump_json(outcome.to_dict())
        return
    if "note" in outcome.extra:
        output.note(args, outcome.extra["note"])
    sys.stdout.write(plan.render(steps=steps) + "\n")
    if outcome.result is not None:
        r = outcome.result
        sys.stdout.write(f"Applied: {r.writes} configfs write{'s' if r.writes != 1 else ''} "
                         f"in {r.seconds:.2f} s.\n")


def failure_report(args, exc) -> int:
    """Print an ApplyFailed (kernel errno + its log lines) or an ApplyInterrupted and return the
    exit status; every secret removed (the kernel's lines are its own words). A report that
    cannot be written (after SIGHUP the terminal is gone) does not change the status."""
    with contextlib.suppress(OSError):
        if args.json:
            output.dump_json(redact_doc({"applied": False, **exc.to_dict()}))
        else:
            print(output.safe_lines(redact(f"nvmet-p2p {args.command}: error: {exc}").split("\n")),
                  file=sys.stderr)
    return exc.exit_status


def after_apply(args, progress=None) -> dict:
    """After a successful apply: ``--save`` writes the live target to the saved file (under the
    apply lock); otherwise the live target is compared with it and a difference is a warning on
    stderr (the boot unit restores the saved file: what differs is lost, or undone, at the next
    reboot). Returns the ``saved_config`` member of the JSON result."""
    cfs = open_configfs(args.root, load_module=False)
    path = save_file(args)
    if getattr(args, "save", False):
        return saved.save_live(cfs, path, directory(args), lock_timeout=lock_timeout(args),
                               progress=progress,
                               prepare=exportpolicy.consents_for_save(args.root)).to_dict()
    drift = saved.check_tree(cfs, path)
    if not drift.in_sync:
        lines = [f"nvmet-p2p {args.command}: warning: {drift.summary()}"]
        lines += [f"  {line}" for line in drift.lines(limit=5)]
        sys.stderr.write(output.safe_lines(lines) + "\n")   # (names from configfs and the file)
    return drift.to_dict()


def report_saved(args, kept: dict) -> None:
    """The human line for ``apply --save`` (the JSON result carries ``saved_config``)."""
    if args.json or not kept.get("saved"):
        return
    backup = f"; previous file kept as {kept['backup']}" if kept.get("backup") else ""
    lines = [f"Saved the live target ({kept['subsystems']} subsystem(s), {kept['namespaces']} "
             f"namespace(s), {kept['ports']} port(s), {kept['hosts']} host(s)) to {kept['file']} "
             f"(mode 0600){backup}: the boot unit restores it."]
    lines += [f"note: {n}" for n in kept.get("notes") or ()]
    print(output.safe_lines(lines))
