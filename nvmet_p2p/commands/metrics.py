"""``nvmet-p2p metrics``: the Prometheus metrics once (stdout, or a textfile for node_exporter)."""

from __future__ import annotations

import os
import sys

from nvmet_p2p import exits
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_save_file, add_state_dir
from nvmet_p2p.errors import InputError, UsageError
from nvmet_p2p.observe import metrics
from nvmet_p2p.observe.metrics import TargetCollector
from nvmet_p2p.output import dump_json
from nvmet_p2p.safefs import write_file

NAME = "metrics"
ORDER = 62
HELP = "Prometheus metrics once: p2pmem pools, offload verdicts, exports, last apply, doctor"
DESCRIPTION = (
    "Print the nvmet_p2p_* metrics in the Prometheus text format, or with --textfile FILE write "
    "them atomically (temporary file + rename) for node_exporter's textfile collector "
    "(--collector.textfile.directory; the file name must end in .prom). Run it from a timer; "
    "`nvmet-p2p exporter` serves the same metrics over HTTP.")

EXAMPLES = (
    Example("nvmet-p2p metrics", "the nvmet_p2p_* metrics in the Prometheus text format"),
    Example("nvmet-p2p metrics --textfile node-exporter/nvmet_p2p.prom", "for node_exporter's "
            "textfile collector, written atomically (run it from a timer)"),
)


def add_collector_options(p) -> None:
    add_state_dir(p)
    add_save_file(p, "the saved configuration the live target is compared with "
                     "(nvmet_p2p_saved_config_drift)")
    p.add_argument("--all", action="store_true",
                   help="every subsystem, not only the ones nvmet-p2p manages")
    p.add_argument("--no-doctor", action="store_true", help="leave out the doctor checks")


def collector_from_args(args):
    return TargetCollector(args.root, state_dir=args.state_dir, all_subsystems=args.all,
                           kernel=args.kernel, doctor=not args.no_doctor,
                           save_file=args.save_file)


def register(p) -> None:
    p.add_argument("--textfile", metavar="FILE",
                   help="write to FILE atomically instead of stdout (e.g. "
                        "/var/lib/prometheus/node-exporter/nvmet_p2p.prom)")
    add_collector_options(p)


def run(args) -> int:
    if args.json and args.textfile:
        raise UsageError("--textfile writes the Prometheus text format; --json prints JSON on "
                         "stdout instead: give one")
    col = collector_from_args(args)
    if args.json:
        dump_json({"samples": metrics.samples(col), "errors": col.errors})
        return exits.FAILED if col.errors else exits.OK
    text = metrics.exposition(col)
    if args.textfile:
        if not args.textfile.endswith(".prom"):
            raise InputError("node_exporter's textfile collector reads only *.prom files",
                             where=args.textfile)
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.textfile))):
            raise InputError("no such directory", where=os.path.dirname(args.textfile) or ".")
        write_file(args.textfile, text, mode=0o644)
    else:
        sys.stdout.write(text)
    for part, err in col.errors.items():
        print(f"nvmet-p2p metrics: warning: {part} could not be read: {err}", file=sys.stderr)
    return exits.FAILED if col.errors else exits.OK
