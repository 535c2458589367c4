"""The ``nvmet-p2p`` command line.

Each subcommand lives in ``nvmet_p2p/commands/<name>.py`` and is found automatically. A command
module defines::

    NAME = "topology"          # the subcommand
    ORDER = 10                 # position in --help
    HELP = "one line for --help"
    def register(parser): ...  # add its own arguments (the common ones are already there)
    def run(args) -> int: ...  # do the work, return the exit status
    KERNEL_OPTION = False      # optional: the command applies no kernel rules (no --kernel)

Common options every subcommand accepts: ``--root DIR`` (read sysfs/procfs/configfs below DIR:
a captured snapshot or a test tree; default ``/``), ``--json`` and, where kernel rules apply,
``--kernel X.Y`` (the kernel release whose rules apply; default: the running kernel, or the
snapshot's).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
import tempfile
import time
import traceback

import nvmet_p2p.commands as pkg
from nvmet_p2p import __version__
from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet.apply import state_dir
from nvmet_p2p.output import safe_lines
from nvmet_p2p.safeload import redact


def _columns() -> int:
    """The terminal's width the way ``shutil.get_terminal_size()`` finds it ($COLUMNS, else the
    terminal on stdout, else 80)."""
    try:
        n = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        n = 0
    if n <= 0:
        try:
            n = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            n = 0
    return n or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, given the width it would compute: without one it imports
    ``shutil`` (and with it zlib, bz2 and lzma) on every ``add_argument``, ~2 ms of every
    command's start-up."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with :class:`_HelpFormatter` by default (sub-parsers are made by
    the parser's own class, so they get it too)."""

    def __init__(self, *args, formatter_class=_HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def _common_parser(kernel: bool = True) -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--root", default=os.environ.get("NVMET_P2P_ROOT", "/"), metavar="DIR",
                   help="filesystem root to read (live system '/' or a snapshot directory)")
    g.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    if kernel:
        g.add_argument("--kernel", metavar="X.Y", default=None,
                       help="apply the rules of this kernel release instead of the running one")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show Python tracebacks (also $NVMET_P2P_DEBUG=1)")
    return common


def command_modules(only: str | None = None):
    """The command modules, in --help order. ``only``: the subcommand on the command line;
    when a module of that name (``-`` -> ``_``) defines it, import just that one: the other
    modules' imports (YAML, the harness, configshell ...) cost seconds under the lab's TCG."""

    if only and not only.startswith(("_", ".")):
        name = f"{pkg.__name__}.{only.replace('-', '_')}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
        else:
            if getattr(mod, "NAME", None) == only and hasattr(mod, "run"):
                return [mod]
    mods = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


class _Listed:
    """A command as :func:`command_index` found it, without importing its module."""

    def __init__(self, name: str, order: int, help_: str | None, kernel_option: bool = True):
        self.NAME, self.ORDER, self.HELP = name, order, help_
        self.KERNEL_OPTION = kernel_option

    def run(self, args):   # (never called: the real module is imported to run a command)
        raise NvmetP2PError("internal: a listed command was run without its module")


def _assigned(src: str, key: str) -> str | None:
    """The text of a module-level ``KEY = ...`` in ``src``: from after ``=`` to the first line
    that starts in column 0 (so a parenthesised value over several lines is whole). Plain string
    search: a multi-line regex tried at every line of every command module was most of --help's
    own time."""
    head = f"{key} = "
    if src.startswith(head):
        start = len(head)
    else:
        i = src.find("\n" + head)
        if i < 0:
            return None
        start = i + 1 + len(head)
    j = start
    while True:
        j = src.find("\n", j + 1)
        if j < 0:
            return None
        if j + 1 < len(src) and not src[j + 1].isspace():
            return src[start:j]


def _string_value(text: str) -> str | None:
    """The value of ``text`` when it is string literals only (adjacent, maybe in parentheses),
    else None."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    if not parts or re.sub(r'"(?:[^"\\]|\\.)*"|[\s()]', "", text):
        return None
    joined = "".join(parts)
    return joined.encode().decode("unicode_escape") if "\\" in text else joined


def command_index() -> list[_Listed]:
    """NAME, ORDER and HELP of every command module, read from their source text (``--help``
    lists them all; importing them all would cost what the imports of every command cost)."""
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "commands")
    out = []
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".py") or fn.startswith("_"):
            continue
        with open(os.path.join(d, fn), encoding="utf-8") as f:
            src = f.read()
        vals: dict = {}
        for key in ("NAME", "ORDER", "HELP"):
            text = _assigned(src, key)
            if text is None:
                continue
            text = text.strip()
            if key == "ORDER":
                if text.isdigit():
                    vals[key] = int(text)
                continue
            value = _string_value(text)
            if value is None:
                vals = {}        # not plain string literals: fall back to importing
                break
            vals[key] = value
        if "NAME" not in vals or "def run(" not in src:
            return command_modules()      # a module this reader cannot follow: import them all
        kopt = (_assigned(src, "KERNEL_OPTION") or "").split("#")[0].strip()
        out.append(_Listed(vals["NAME"], vals.get("ORDER", 100), vals.get("HELP"),
                           kopt != "False"))
    return sorted(out, key=lambda m: (m.ORDER, m.NAME))


class _ListedParser:
    """The sub-parser of a listed command: the top-level ``--help`` shows only its name and HELP
    (argparse keeps those itself), and no listed command is ever parsed (the one on the command
    line has its module imported). A real ``ArgumentParser`` per command, with the common options
    copied in, was most of ``--help``'s own time."""

    def __init__(self, **kwargs):
        self.prog = kwargs.get("prog")

    def set_defaults(self, **kwargs) -> None:
        pass


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nvmet-p2p",
        description="Export NVMe namespaces over NVMe-oF with PCI peer-to-peer (CMB) memory, "
                    "placed by PCIe topology, applied safely, and verified.")
    parser.add_argument("--version", action="version", version=f"nvmet-p2p {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks (also $NVMET_P2P_DEBUG=1)")
    mods = command_modules(only) if only else command_index()
    listing = all(isinstance(m, _Listed) for m in mods)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=_ListedParser if listing else type(parser))
    commons = {} if listing else {True: [_common_parser()], False: [_common_parser(kernel=False)]}
    for mod in mods:
        common = commons.get(getattr(mod, "KERNEL_OPTION", True), [])
        p = sub.add_parser(mod.NAME, parents=common, help=getattr(mod, "HELP", None),
                           description=getattr(mod, "DESCRIPTION", getattr(mod, "HELP", None)))
        if hasattr(mod, "register"):
            mod.register(p)
        p.set_defaults(_run=mod.run)
    return parser


#: exit status of an unexpected internal error (a bug): sysexits' EX_SOFTWARE
EXIT_INTERNAL = 70


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or bool(os.environ.get("NVMET_P2P_DEBUG"))
    command = "?"
    if argv and argv[0] == "--version":
        print(f"nvmet-p2p {__version__}")     # (before anything else is imported)
        return 0
    try:
        # the top-level parser has no option taking a value: the first word is the subcommand
        first = next((a for a in argv if not a.startswith("-")), None)
        command = first or command
        parser = build_parser(first)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        command = args.command
        return int(args._run(args) or 0)
    except NvmetP2PError as exc:
        if debug:
            traceback.print_exc()
        print(safe_lines(_redact(f"nvmet-p2p {command}: error: {exc}").split("\n")),
              file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"nvmet-p2p {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:   # a bug: one line, the details in a file (--debug: here)
        if debug:
            traceback.print_exc()
            return EXIT_INTERNAL
        where = _crash_report(argv, command)
        print(f"nvmet-p2p {command}: internal error ({type(exc).__name__}); this is a bug in "
              f"nvmet-p2p, nothing of yours. Details: {where} (or run again with --debug)",
              file=sys.stderr)
        return EXIT_INTERNAL


def _redact(text: str) -> str:
    return redact(text)


def _crash_report(argv: list[str], command: str) -> str:
    """Write the traceback (secrets removed) to a 0600 file: in the state directory when it is
    writable, else a temporary file. Returns its path (or why none could be written)."""
    text = _redact("".join([
        f"nvmet-p2p {__version__} internal error in `{command}` at {time.strftime('%Y-%m-%d %H:%M:%S')}\n",
        f"argv: {argv!r}\npython: {sys.version.split()[0]}\n\n", traceback.format_exc()]))
    d = state_dir(_arg_value(argv, "--state-dir"))
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for directory in (d, None):
        try:
            if directory is not None:
                if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
                    continue
                path = os.path.join(directory, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            else:
                fd, path = tempfile.mkstemp(prefix="nvmet-p2p-crash-", suffix=".txt")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return path
        except OSError:
            continue
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
