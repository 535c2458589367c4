"""``nvmet-p2p restore [FILE]``: apply a saved configuration through the reconciler.

Unlike ``nvmetcli restore`` it does not clear first: objects already right are not touched,
so hosts connected to them stay connected.

``--wait-devices SECONDS`` (what the boot unit uses): wait up to SECONDS for every block
device, p2pmem provider and port address the file needs (:mod:`nvmet_p2p.service.devwait`), then
export what is there, name what is missing, record it in the state directory (``status``
shows it, ``watch --policy reconcile`` completes it when the device appears) and exit with
status 4 (a partial restore). Without it the restore is all or nothing, as before.
"""

from __future__ import annotations

import sys
import time

from nvmet_p2p import output, paths
from nvmet_p2p.commands import _statecheck
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import (
    add_state_dir,
    directory,
    failure_report,
    lock_timeout,
    print_plan,
    save_file,
)
from nvmet_p2p.errors import InputError, UsageError
from nvmet_p2p.nvmet import lastapply, statefile
from nvmet_p2p.nvmet.apply import ApplyFailed, ApplyInterrupted, reconcile
from nvmet_p2p.nvmet.degraded import DegradedStore, Entry
from nvmet_p2p.output import Progress
from nvmet_p2p.service import devwait

NAME = "restore"
ORDER = 44
HELP = "restore a saved configuration without disturbing what is already right"
DESCRIPTION = (HELP + ". With --wait-devices SECONDS (the boot unit) it waits for the devices, "
               "providers and addresses the file names, exports what is there and exits 4 "
               "when something is still missing (a partial restore).")

EXAMPLES = (
    Example("nvmet-p2p restore --dry-run", "what restoring the saved file would change"),
    Example("nvmet-p2p restore --wait-devices 30", "what the boot unit runs: wait for the "
            "devices, export what is there, exit status 4 if something is still missing",
            lab=True),
)


def register(p) -> None:
    p.add_argument("file", nargs="?", default=None,
                   help=f"file to read (default ${paths.SAVE_FILE_ENV} or {paths.SAVE_FILE}, "
                        "below --root)")
    p.add_argument("--prune", action="store_true",
                   help="also remove managed objects that are not in the file")
    p.add_argument("--dry-run", action="store_true", help="only show the plan")
    p.add_argument("--wait-devices", type=float, metavar="SECONDS", default=None,
                   help="wait up to SECONDS for the block devices (by-id links), p2pmem providers "
                        "and port addresses the file needs, then export what is there; exit 4 "
                        "if anything is missing (partial restore)")
    p.add_argument("--without-provider", choices=("export", "hold"), default=None,
                   help="with --wait-devices, a namespace whose p2pmem provider is missing: "
                        "export it from host memory (p2pmem 0; default) or hold it disabled")
    add_state_dir(p)


def run(args) -> int:
    if args.without_provider and args.wait_devices is None:
        raise UsageError("--without-provider decides what --wait-devices does with a namespace "
                         "whose provider is missing: give --wait-devices SECONDS too")
    args.without_provider = args.without_provider or "export"
    if args.wait_devices is not None and not 0 <= args.wait_devices <= 86400:
        raise InputError("--wait-devices must be between 0 and 86400 seconds")
    progress = Progress(quiet=args.json or args.quiet)
    waited = None
    held: list[devwait.Degraded] = []
    where = save_file(args, args.file)
    desired = statefile.load(where)
    if args.wait_devices is None:
        # all or nothing: the machine checks refuse before anything is written or recorded
        checked = _statecheck.checked(args, desired, where)
        checked.report(args)
        desired = checked.state
    try:
        with lastapply.recorded(directory(args), "restore", enabled=not args.dry_run, root=args.root) as rec:
            if args.wait_devices is not None:   # waiting is not an apply: nothing written yet
                waited = _wait(args, desired, progress)
                _check_after_wait(args, desired, where, waited)
                desired = _degraded(args, desired, waited, held)
            rec.outcome = outcome = reconcile(args.root, desired, directory(args),
                                              prune=args.prune, dry_run=args.dry_run,
                                              progress=progress, kernel=args.kernel,
                                              lock_timeout=lock_timeout(args))
    except (ApplyFailed, ApplyInterrupted) as exc:
        return failure_report(args, exc)
    if waited is None:
        print_plan(args, outcome)
        return 0
    degraded = held[-1]
    if not args.dry_run:
        _record(directory(args), degraded)
    partial = bool(waited.missing)
    if args.json:
        output.dump_json({**outcome.to_dict(), "complete": not partial, "devices": waited.to_dict(),
                          **degraded.to_dict()})
    else:
        print_plan(args, outcome)
        _report(waited, degraded)
    return devwait.EXIT_PARTIAL if partial else 0


def _wait(args, desired, progress) -> devwait.WaitResult:
    items = devwait.needs(desired)
    probe = devwait.Probe(args.root)
    if items:
        progress(f"waiting up to {args.wait_devices:g} s for {len(items)} device(s), provider(s) "
                 f"and address(es)")
    return devwait.wait(items, args.wait_devices, probe, progress)


def _check_after_wait(args, desired, where: str, waited: devwait.WaitResult) -> None:
    """The machine checks after the wait: what is still missing stays a partial restore
    (what the checks find missing that the wait did not is held back too); the rest of what
    they refuse (the export policy, the kernel's p2pdma rules) refuses the restore."""
    chk, _again, _kernel = _statecheck.machine_check(args, desired)
    chk.raise_if_refused(where, allow_missing=True)
    known = {(n.kind, n.what) for n in waited.missing}
    waited.missing += [n for n in _statecheck.needs(chk.missing) if (n.kind, n.what) not in known]
    _statecheck.Checked(desired, warnings=chk.warnings).report(args)


def _degraded(args, desired, waited: devwait.WaitResult, held: list):
    """The desire for a partial restore: ``desired`` minus what is missing, computed from the
    live tree the reconcile reads under the apply lock (a port link kept because it is live is
    one that is live then); the :class:`devwait.Degraded` it made is appended to ``held``."""
    def want(live, _managed):
        d = devwait.degrade(desired, waited.missing, live if waited.missing else None,
                            args.without_provider)
        held.append(d)
        return d.state
    return want


def _record(directory: str, degraded: devwait.Degraded) -> None:
    """Replace restore's previous entries in the state directory with this run's."""
    now = time.time()
    DegradedStore(directory).update(
        put=[Entry(obj, kind, now, what, "restore", facts) for obj, kind, what, facts in degraded.held],
        drop_source="restore")


def _report(waited: devwait.WaitResult, degraded: devwait.Degraded) -> None:
    n = len(waited.needs)
    if not waited.missing:
        print(f"All {n} device(s), provider(s) and address(es) present "
              f"(waited {waited.seconds:.1f} s); every namespace exported.")
        return
    print(f"PARTIAL RESTORE: {len(waited.missing)} of {n} still missing after "
          f"{waited.seconds:.1f} s:", file=sys.stderr)
    for m in waited.missing:
        print(f"  missing {m.describe()}", file=sys.stderr)
    for obj, _kind, what, _facts in degraded.held:
        print(f"  {obj}: {what}", file=sys.stderr)
    print("  (`nvmet-p2p restore` again, or `nvmet-p2p watch --policy reconcile`, completes it "
          "when they appear)", file=sys.stderr)
