"""``nvmet-p2p help [COMMAND]``: a command's help (its options and examples), or the list of
commands with the exit status table."""

from __future__ import annotations

from nvmet_p2p import cli
from nvmet_p2p.commands._common import Example, did_you_mean
from nvmet_p2p.errors import UsageError

NAME = "help"
ORDER = 1
HELP = "show a command's options and examples (help COMMAND), or the list of commands"
COMMON_OPTIONS = ("quiet", "debug")

EXAMPLES = (
    Example("nvmet-p2p help", "the commands, the common options and the exit status table"),
    Example("nvmet-p2p help plan", "the options and examples of plan (like nvmet-p2p plan --help)"),
    Example("nvmet-p2p help profile check", "a sub-command's options"),
)


def register(p) -> None:
    p.add_argument("topic", nargs="*", metavar="COMMAND",
                   help="a command (and its sub-command, e.g. profile check)")


def run(args) -> int:
    parser = cli.build_parser()
    for word in args.topic:
        nxt = cli.subparser(parser, word)
        if nxt is None:
            names = _names(parser)
            if not names:
                raise UsageError(f"{parser.prog} has no sub-command {word!r}")
            hint = did_you_mean(word, names)
            raise UsageError(f"no command {word!r} in {parser.prog}"
                             + (f"; did you mean {hint!r}?" if hint else "")
                             + f" (commands: {', '.join(names)})")
        parser = nxt
    parser.print_help()
    return 0


def _names(parser) -> list[str]:
    for action in parser._actions:
        if action.choices and hasattr(action, "_name_parser_map"):
            return list(action.choices)
    return []
