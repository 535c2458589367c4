"""``nvmet-p2p save [FILE]``: write the live configfs tree as nvmetcli-compatible JSON."""

from __future__ import annotations

import os

from nvmet_p2p import output, paths
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_state_dir, save_file, settle_first
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import open_configfs
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.policy import exportpolicy

NAME = "save"
ORDER = 43
HELP = "save the live target configuration (nvmetcli format + p2pmem/buffered_io; 0600, with backup)"
KERNEL_OPTION = False      # applies no kernel rules: no --kernel

EXAMPLES = (
    Example("nvmet-p2p save", "save the running target where the boot unit restores it from "
            f"({paths.SAVE_FILE} or ${paths.SAVE_FILE_ENV}; below --root when it is not /)"),
    Example("nvmet-p2p save backup.json", "save it to another file"),
)


def register(p) -> None:
    p.add_argument("file", nargs="?", default=None,
                   help=f"file to write (default ${paths.SAVE_FILE_ENV} or {paths.SAVE_FILE}, "
                        "below --root)")
    add_state_dir(p)


def run(args) -> int:
    path = save_file(args, args.file)
    settle_first(args)        # never save the tree of a half-done apply
    live = read_state(open_configfs(args.root, load_module=False))
    # what runs is what the boot restores: an export of a device in use, or of a file, is
    # saved with the export policy's consent (and said)
    notes = exportpolicy.consents_for_save(args.root)(live)
    backup = statefile.save(live, path)
    info = {"file": os.path.abspath(path), "backup": backup, "mode": "0600",
            "hosts": len(live.hosts), "subsystems": len(live.subsystems),
            "namespaces": sum(len(s.namespaces) for s in live.subsystems.values()),
            "ports": len(live.ports), "notes": notes}
    output.emit(args.json, info, lambda d: (
        f"Saved {d['subsystems']} subsystem(s), {d['namespaces']} namespace(s), {d['ports']} port(s), "
        f"{d['hosts']} host(s) to {d['file']} (mode 0600)"
        + (f"; previous file kept as {d['backup']}" if d["backup"] else "")
        + "".join(f"\nnote: {n}" for n in d["notes"])))
    return 0
