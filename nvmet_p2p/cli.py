"""The ``nvmet-p2p`` command line.

Each subcommand lives in ``nvmet_p2p/commands/<name>.py`` and is found automatically. A command
module defines::

    NAME = "topology"          # the subcommand
    ORDER = 10                 # position in --help
    HELP = "one line for --help"
    DESCRIPTION = "..."        # optional: the paragraph of its --help and man page
    EXAMPLES = (Example(...),) # its examples (nvmet_p2p.commands._common.Example)
    def register(parser): ...  # add its own arguments (the common ones are already there)
    def run(args) -> int: ...  # do the work, return the exit status (nvmet_p2p.exits)
    KERNEL_OPTION = False      # optional: the command applies no kernel rules (no --kernel)

Common options every subcommand accepts, before or after its name: ``--root DIR`` (read
sysfs/procfs/configfs below DIR: a captured snapshot or a test tree; default ``/``), ``--json``,
``--quiet``, ``--debug`` and, where kernel rules apply, ``--kernel X.Y`` (the kernel release
whose rules apply; default: the running kernel, or the snapshot's).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import tempfile
import time
import traceback

import nvmet_p2p.commands as commands_pkg
from nvmet_p2p import __version__, exits, paths
from nvmet_p2p.commands._common import (
    ALL_COMMON,
    CommandParser,
    UsageParser,
    add_common_options,
    columns,
    common_options_of,
    examples_epilog,
    exit_status_epilog,
    fill_defaults,
)
from nvmet_p2p.errors import NvmetP2PError, UsageError
from nvmet_p2p.output import safe_lines  # (names in messages: no terminal escapes)
from nvmet_p2p.safefs import HOST_ERRNOS, PrivateDir, host_error
from nvmet_p2p.safeload import redact

DESCRIPTION = ("Export NVMe namespaces over NVMe-oF with PCI peer-to-peer (CMB) memory, placed "
               "by PCIe topology, applied safely, and verified.")


def command_modules(only: str | None = None) -> list:
    """The command modules, in --help order. ``only``: the word on the command line where the
    command goes; when a module of that name (``-`` -> ``_``) defines it, just that one is
    imported (a command does not pay for the others' imports: YAML, the harness, configshell)."""
    if only and not only.startswith(("_", ".")) and "/" not in only:
        name = f"{commands_pkg.__name__}.{only.replace('-', '_')}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
        else:
            if getattr(mod, "NAME", None) == only and hasattr(mod, "run"):
                return [mod]
    mods = []
    for info in pkgutil.iter_modules(commands_pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line (every command module imported), or with ``only`` the parser of
    that one command (see :func:`command_modules`)."""
    parser = UsageParser(prog="nvmet-p2p", description=DESCRIPTION,
                         epilog=exit_status_epilog(columns() - 2) + "\n\n"
                         "`nvmet-p2p help COMMAND` (or COMMAND --help) shows a command's options "
                         "and examples; man nvmet-p2p, man nvmet-p2p-COMMAND.")
    parser.add_argument("--version", action="version", version=f"nvmet-p2p {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                parser_class=CommandParser)
    add_common_options(parser)
    for mod in command_modules(only):
        add_command(sub, mod)
    return parser


def add_command(sub, mod) -> argparse.ArgumentParser:
    """The parser of one command module: its common options, its own arguments, its examples."""
    p = sub.add_parser(mod.NAME, help=getattr(mod, "HELP", None),
                       description=getattr(mod, "DESCRIPTION", getattr(mod, "HELP", None)),
                       epilog=examples_epilog(getattr(mod, "EXAMPLES", ())))
    add_common_options(p, common_options_of(mod))
    if hasattr(mod, "register"):
        mod.register(p)
    p.set_defaults(_run=mod.run, _module=mod)
    return p


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


#: the top-level options that take a value (to find the command word without parsing)
_VALUE_OPTIONS = {"--root", "--kernel"}


def _command_word(argv: list[str]) -> str | None:
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if not a.startswith("-") or a == "-":
            return a
        i += 2 if a in _VALUE_OPTIONS else 1
    return None


def parse(argv: list[str]) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """Parse the command line; returns the arguments and the parser of the command (argparse
    exits with status 2 on a usage error, after printing that parser's usage)."""
    parser = build_parser(_command_word(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        return args, parser
    cmd = subparser(parser, args.command)
    given = fill_defaults(args)
    takes = set(common_options_of(args._module))
    for name in ALL_COMMON:
        if name in given and name not in takes:
            cmd.error(f"--{name} does not apply to {args.command}")
    args._given = given
    return args, cmd


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or bool(os.environ.get(paths.DEBUG_ENV))
    command = "?"
    if argv and argv[0] == "--version":
        print(f"nvmet-p2p {__version__}")
        return exits.OK
    cmd = None
    try:
        args, cmd = parse(argv)
        if not getattr(args, "_run", None):
            cmd.print_help()
            return exits.USAGE
        command = args.command
        return int(args._run(args) or exits.OK)
    except UsageError as exc:
        cmd.print_usage(sys.stderr)
        print(safe_lines(f"{cmd.prog}: error: {exc}".split("\n")), file=sys.stderr)
        return exc.exit_status
    except NvmetP2PError as exc:
        if debug:
            _print_traceback()
        print(safe_lines(_redact(f"nvmet-p2p {command}: error: {exc}").split("\n")),
              file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"nvmet-p2p {command}: interrupted", file=sys.stderr)
        return exits.INTERRUPTED
    except BrokenPipeError:
        return exits.OK
    except OSError as exc:     # the host refused (not root, read-only, full): not a bug
        if exc.errno not in HOST_ERRNOS:
            return _internal_error(exc, argv, command, debug)
        if debug:
            _print_traceback()
        err = host_error(exc, exc.filename or "(a file)", None, doing="refused")
        print(safe_lines(_redact(f"nvmet-p2p {command}: error: {err}").split("\n")), file=sys.stderr)
        return err.exit_status
    except Exception as exc:   # a bug: one line, the details in a file (--debug: here)
        return _internal_error(exc, argv, command, debug)


def _internal_error(exc: Exception, argv: list[str], command: str, debug: bool) -> int:
    if debug:
        _print_traceback()
        return exits.INTERNAL
    where = _crash_report(argv, command)
    print(f"nvmet-p2p {command}: internal error ({type(exc).__name__}); this is a bug in "
          f"nvmet-p2p, nothing of yours. Details: {where} (or run again with --debug)",
          file=sys.stderr)
    return exits.INTERNAL


def _print_traceback() -> None:
    """The exception being handled, as ``traceback.print_exc()`` prints it -- its message and the
    messages of every exception chained to it -- with every secret removed (what people paste
    into bug reports). Frame locals are not printed (the traceback module's default)."""
    sys.stderr.write(_redact(traceback.format_exc()))


def _redact(text: str) -> str:
    return redact(text)


#: the name of a crash report in the state directory (nvmet-p2p-state-dir(5))
CRASH_FILE = "crash-{time}-{pid}.txt"


def _crash_report(argv: list[str], command: str) -> str:
    """Write the traceback (secrets removed) to a new 0600 file: in the state directory when it
    exists and is safe to use (:class:`nvmet_p2p.safefs.PrivateDir`), else -- on the live system
    only -- a temporary file; under a ``--root`` other than ``/`` nothing outside it. Returns its
    path (or why none could be written)."""
    text = _redact("".join([
        f"nvmet-p2p {__version__} internal error in `{command}` at {time.strftime('%Y-%m-%d %H:%M:%S')}\n",
        f"argv: {argv!r}\npython: {sys.version.split()[0]}\n\n", traceback.format_exc()]))
    root = _arg_value(argv, "--root") or os.environ.get(paths.ROOT_ENV) or "/"
    d = paths.state_dir(root, _arg_value(argv, "--state-dir"))
    name = CRASH_FILE.format(time=time.strftime("%Y%m%d-%H%M%S"), pid=os.getpid())
    path = PrivateDir(d).create_new(name, text)
    if path:
        return path
    if not paths.is_host(root):
        return (f"(none written: {d} is missing or not safe, and --root keeps files below it; "
                f"run again with --debug)")
    try:
        fd, path = tempfile.mkstemp(prefix="nvmet-p2p-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path
    except OSError:
        return "(no file could be written; run again with --debug)"


def _arg_value(argv: list[str], opt: str) -> str | None:
    for i, a in enumerate(argv):
        if a == opt and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(opt + "="):
            return a.split("=", 1)[1]
    return None


if __name__ == "__main__":
    raise SystemExit(main())
