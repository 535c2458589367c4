"""What every command's parser shares: the common options, the help layout with its EXAMPLES
epilog, "did you mean" and one way of reporting a usage error (the command's own usage, exit
status 2).

A command module may declare::

    EXAMPLES = (Example("nvmet-p2p doctor", "can this machine offload?"), ...)
    KERNEL_OPTION = False          # no --kernel: the command applies no kernel rules
    COMMON_OPTIONS = ("quiet", "debug")   # the common options it takes (default: all of them)

The examples are printed by ``--help``, become the EXAMPLES of its man page, and are run by
the tests (``tests/test_examples.py``) against the test machine or, marked ``lab``, in the lab.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass

from nvmet_p2p import exits, paths


@dataclass(frozen=True)
class Example:
    """One example of a command line.

    ``command``: exactly what a user types (a shell command line, ``nvmet-p2p`` first).
    ``what``: what it does, one sentence. ``status``: the exit status it ends with on the test
    machine. ``lab``: it needs the real kernel (it writes configfs, or reads a live device), so
    it runs in the lab instead of the fast tier. ``interrupt``: it runs until Ctrl-C; the test
    starts it, sends SIGINT and expects status 130.
    """

    command: str
    what: str
    status: int = exits.OK
    lab: bool = False
    interrupt: bool = False


#: dest -> (flags, add_argument keywords, default when not given)
COMMON: dict[str, tuple[tuple[str, ...], dict, object]] = {
    "root": (("--root",), {"metavar": "DIR", "help": "filesystem root to work on: the live system "
                           f"(default: ${paths.ROOT_ENV} or /), a snapshot directory or a test "
                           "tree -- then every default path (state directory, saved file) is "
                           "below it too"},
             None),
    "json": (("--json",), {"action": "store_true", "help": "machine-readable JSON on stdout"},
             False),
    "kernel": (("--kernel",), {"metavar": "X.Y", "help": "apply the rules of this kernel release "
                               "instead of the running one's (or the snapshot's)"}, None),
    "quiet": (("-q", "--quiet"), {"action": "store_true", "help": "no progress lines and notes "
                                  "on stderr (warnings and errors are still printed)"}, False),
    "debug": (("--debug",), {"action": "store_true", "help": "show Python tracebacks "
                             f"(also ${paths.DEBUG_ENV}=1)"}, False),
}
ALL_COMMON = tuple(COMMON)


def common_options_of(mod) -> tuple[str, ...]:
    """The common options a command module takes."""
    names = getattr(mod, "COMMON_OPTIONS", ALL_COMMON)
    if not getattr(mod, "KERNEL_OPTION", True):
        names = tuple(n for n in names if n != "kernel")
    return tuple(names)


def add_common_options(parser: argparse.ArgumentParser, names=ALL_COMMON) -> None:
    """The common options, not set unless given (``argparse.SUPPRESS``): given before the
    command (top level) or after it, the value the user typed wins; :func:`fill_defaults` puts
    the defaults in afterwards."""
    g = parser.add_argument_group("common options")
    for name in names:
        flags, kw, _default = COMMON[name]
        g.add_argument(*flags, dest=name, default=argparse.SUPPRESS, **kw)


def fill_defaults(args: argparse.Namespace) -> frozenset[str]:
    """Set every common option that was not given to its default; return the ones given."""
    given = frozenset(n for n in COMMON if hasattr(args, n))
    for name, (_flags, _kw, default) in COMMON.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.root is None:
        args.root = os.environ.get(paths.ROOT_ENV) or "/"
    return given


def columns() -> int:
    return shutil.get_terminal_size().columns


class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout, except that an indented line of a description or epilog is kept as
    it is (examples, tables); other lines are wrapped as usual."""

    def __init__(self, prog, indent_increment=2, max_help_position=26, width=None):
        super().__init__(prog, indent_increment, max_help_position,
                         columns() - 2 if width is None else width)

    def _fill_text(self, text, width, indent):
        out, para = [], []

        def flush():
            if para:
                out.append(textwrap.fill(" ".join(para), width, initial_indent=indent,
                                         subsequent_indent=indent))
                para.clear()

        for line in text.splitlines():
            if line.startswith(" ") or not line.strip():
                flush()
                out.append(indent + line if line.strip() else "")
            else:
                para.append(line.strip())
        flush()
        return "\n".join(out)


def exit_status_epilog(width: int) -> str:
    """The exit status table (:data:`nvmet_p2p.exits.TABLE`) as ``--help`` prints it."""
    code_width = max(len(code) for code, _ in exits.TABLE)
    lines = ["exit status:"]
    for code, meaning in exits.TABLE:
        lines += textwrap.wrap(meaning, max(40, width), initial_indent=f"  {code:<{code_width}}  ",
                               subsequent_indent=" " * (code_width + 4))
    return "\n".join(lines)


def examples_epilog(examples) -> str | None:
    if not examples:
        return None
    lines = ["examples:"]
    for ex in examples:
        lines += textwrap.wrap(ex.what, max(40, columns() - 4), initial_indent="  # ",
                               subsequent_indent="  # ")
        lines.append(f"  {ex.command}")
    return "\n".join(lines)


class UsageParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with the project's help layout, no abbreviated options (a script
    that says ``--inv`` would change meaning when an option is added), "did you mean" on an
    unknown option or choice, and the usage error's exit status from :mod:`nvmet_p2p.exits`.
    Unknown arguments are reported by the parser that met them -- a command's usage, not the
    top level's."""

    def __init__(self, *args, formatter_class=HelpFormatter, allow_abbrev=False, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, allow_abbrev=False, **kwargs)

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            msg = f"invalid choice: {value!r}"
            hint = did_you_mean(str(value), choices)
            if hint:
                msg += f"; did you mean {hint!r}?"
            if isinstance(action, argparse._SubParsersAction):
                msg += f" (see {self.prog} --help)"
            else:
                msg += f" (choose from {', '.join(map(repr, choices))})"
            raise argparse.ArgumentError(action, msg)

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(exits.USAGE, f"{self.prog}: error: {message}\n")

    def option_strings(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings]


class CommandParser(UsageParser):
    """The parser of a command (and of its sub-commands): arguments it does not know are an
    error here, with this command's usage and a "did you mean"."""

    def parse_known_args(self, args=None, namespace=None):
        if args is not None and not self._subparsers:
            # an unknown long option is the first thing to say (before "X is required", which
            # a mistyped --X would cause)
            known = set(self.option_strings())
            for a in args:
                if a == "--":
                    break
                if a.startswith("--") and a.split("=", 1)[0] not in known:
                    self._unrecognized([a])
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self._unrecognized(extras)
        return ns, extras

    def _unrecognized(self, extras: list[str]) -> None:
        msg = f"unrecognized arguments: {' '.join(extras)}"
        unknown = next((a for a in extras if a.startswith("-")), None)
        hint = did_you_mean(unknown.split("=", 1)[0], self.option_strings()) if unknown else None
        if hint:
            msg += f"; did you mean {hint}?"
        self.error(msg)


def did_you_mean(word: str, candidates) -> str | None:
    """The closest candidate (difflib's ratio >= 0.6), or one the word is a prefix of when
    that is the only one (``--inv`` -> ``--inventory``)."""
    candidates = list(candidates)
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [c for c in candidates if c.startswith(word)] if len(word) > 2 else []
    return prefixed[0] if len(prefixed) == 1 else None
