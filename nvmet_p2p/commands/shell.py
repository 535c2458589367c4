"""``nvmet-p2p shell``: the interactive shell (see :mod:`nvmet_p2p.shell`)."""

from __future__ import annotations

import sys

from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_state_dir, directory, lock_timeout, report_recovery
from nvmet_p2p.errors import InputError
from nvmet_p2p.output import Progress, warn
from nvmet_p2p.shell.app import ShellApp, secure_dir, user_dir
from nvmet_p2p.shell.p2p import P2pContext
from nvmet_p2p.shell.session import Session

NAME = "shell"
ORDER = 45
HELP = "an nvmetcli-style shell: staged changes (diff/commit/abort/undo), p2p-aware completion"
DESCRIPTION = (
    "An interactive shell over the nvmet configfs tree, laid out like nvmetcli's. Commands "
    "stage changes; `diff` shows the reconciler's plan and `commit` applies it all or nothing "
    "(the same plan/apply/lock code as `nvmet-p2p apply`). `set p2pmem=<TAB>` offers the "
    "providers the kernel accepts for the namespace, ranked like placement. With -c or "
    "commands on standard input it runs them in order and stops at the first error "
    "(exit status 1).")

EXAMPLES = (
    Example("nvmet-p2p shell", "the interactive shell: TAB completes paths, attributes and the "
            "p2pmem providers the kernel accepts"),
    Example("nvmet-p2p shell -c 'cd /subsystems; ls'", "run commands and exit (stops at the "
            "first error)"),
)


def register(p) -> None:
    p.add_argument("-c", "--command", dest="script", metavar="CMDS", action="append", default=None,
                   help="run these commands (separated by ';' or newlines) and exit; may repeat")
    p.add_argument("--write-through", action="store_true",
                   help="apply every command at once, like nvmetcli (no staging)")
    add_state_dir(p)


def _split(cmds: list[str]):
    n = 0
    for block in cmds:
        for part in block.replace("\n", ";").split(";"):
            if part.strip():
                n += 1
                yield f"command {n}", part


def _stdin_lines():
    for i, line in enumerate(sys.stdin, 1):
        yield f"line {i}", line


def run(args) -> int:

    if args.json:
        raise InputError("--json: the shell prints for people; use `nvmet-p2p save`, `plan --json` "
                         "or `status --json` for machine-readable output")
    interactive = args.script is None and sys.stdin.isatty()
    session = Session(args.root, directory(args), kernel=args.kernel,
                      write_through=args.write_through, lock_timeout=lock_timeout(args))
    report_recovery(session.recovery)
    p2p = P2pContext(args.root, kernel=args.kernel, progress=Progress(quiet=args.quiet) if interactive else None)
    state_path = None
    if interactive:
        ok, note = secure_dir(user_dir())
        if note:
            warn("shell", note)
        state_path = user_dir() if ok else None
    app = ShellApp(session, p2p, state_path=state_path, interactive=interactive)
    if args.script is not None:
        return app.run_script(_split(args.script))
    if not interactive:
        return app.run_script(_stdin_lines())
    return app.interact()
