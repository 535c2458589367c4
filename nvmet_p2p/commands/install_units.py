"""``nvmet-p2p install-units``: write the systemd units for this installation."""

from __future__ import annotations

import os
import sys

from nvmet_p2p import output, paths
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_state_dir
from nvmet_p2p.errors import InputError, UsageError
from nvmet_p2p.safefs import write_file
from nvmet_p2p.service import units

NAME = "install-units"
ORDER = 46
KERNEL_OPTION = False      # renders files; no kernel rules
HELP = ("install the systemd units (boot-time restore, hotplug watcher, metrics exporter or "
        "textfile timer) for this installation")
DESCRIPTION = (
    "Write nvmet-p2p.service (restore --wait-devices at boot; conflicts with nvmetcli's "
    "nvmet.service), nvmet-p2p-watch.service (watch), nvmet-p2p-exporter.service (the metrics "
    "over HTTP) and nvmet-p2p-metrics.timer/.service (metrics --textfile every minute for "
    "node_exporter) into the unit directory, with the absolute path of this nvmet-p2p, the "
    "saved configuration file and the state directory filled in. Then: systemctl "
    "daemon-reload; systemctl enable nvmet-p2p.service nvmet-p2p-watch.service, and for "
    "Prometheus either nvmet-p2p-exporter.service or nvmet-p2p-metrics.timer. Stopping "
    "nvmet-p2p.service leaves the target running unless --clear-on-stop.")

EXAMPLES = (
    Example("nvmet-p2p install-units --print", "the units as they would be written"),
    Example("nvmet-p2p install-units --dir units", "write them into units/ (the default is "
            f"{paths.UNIT_DIR}; then: systemctl daemon-reload; systemctl enable "
            "nvmet-p2p.service nvmet-p2p-watch.service)"),
)


def register(p) -> None:
    p.add_argument("--dir", default=None, metavar="DIR",
                   help=f"unit directory (default {paths.UNIT_DIR}, below --root)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the rendered units, write nothing")
    p.add_argument("--bin", metavar="PATH", default=None,
                   help="the nvmet-p2p executable the units run (default: this one)")
    p.add_argument("--save-file", metavar="FILE", default=None,
                   help=f"the configuration restored at boot (default ${paths.SAVE_FILE_ENV} or "
                        f"{paths.SAVE_FILE})")
    p.add_argument("--clear-on-stop", action="store_true",
                   help="`systemctl stop nvmet-p2p` removes the objects nvmet-p2p manages "
                        "(default: stopping leaves the target running)")
    add_state_dir(p)


def run(args) -> int:
    if args.print_only and args.dir is not None:
        raise UsageError("--print writes nothing: --dir would be ignored")
    bin_path = os.path.abspath(args.bin) if args.bin else units.executable()
    if not os.access(bin_path, os.X_OK):
        raise InputError(f"{bin_path} is not an executable (--bin)")
    # like `systemctl --root`: the units are written below --root, the paths they name are the
    # ones of the system that boots from it
    save_file = os.path.abspath(paths.save_file("/", args.save_file))
    state_dir = os.path.abspath(paths.state_dir("/", args.state_dir))
    unit_dir = paths.unit_dir(args.root, args.dir)
    try:
        rendered = units.render_all(bin_path=bin_path, save_file=save_file, state_dir=state_dir,
                                    clear_on_stop=args.clear_on_stop)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.print_only:
        if args.json:
            output.dump_json({"units": rendered})
        else:
            for name, text in rendered.items():
                sys.stdout.write(f"# --- {name}\n{text}\n")
        return 0
    written = []
    for name, text in rendered.items():
        path = os.path.join(unit_dir, name)
        write_file(path, text, mode=0o644, option="give --dir DIR")
        written.append(path)
    if args.json:
        output.dump_json({"written": written, "executable": bin_path, "save_file": save_file})
        return 0
    for path in written:
        print(f"wrote {path}")
    print(f"restores {save_file} at boot with {bin_path}; next:\n"
          f"  systemctl daemon-reload\n"
          f"  systemctl enable nvmet-p2p.service nvmet-p2p-watch.service\n"
          f"for Prometheus, one of:\n"
          f"  systemctl enable --now nvmet-p2p-exporter.service   # scraped at 127.0.0.1:9878/metrics\n"
          f"  systemctl enable --now nvmet-p2p-metrics.timer      # node_exporter's textfile collector\n"
          f"nvmetcli's own {units.NVMETCLI_UNIT}, if enabled, is not started with nvmet-p2p.service "
          f"(Conflicts=); `systemctl disable {units.NVMETCLI_UNIT}` (nvmet-p2p doctor warns while it is "
          f"enabled)")
    return 0
