"""Rendering helpers shared by the commands: ``--json`` documents, plain tables, progress.

Progress goes to stderr so that stdout stays machine-readable with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def safe(text: str) -> str:
    """``text`` made safe for a terminal: every character that is not printable -- control
    characters (ESC, which starts a terminal escape sequence; newline, carriage return, tab),
    DEL and the C1 controls, Unicode format and separator characters (bidirectional
    overrides) -- is shown as a Python-style escape (``\\x1b``, ``\\n``, ``\\u202e``).

    Names that come from the kernel or from files (configfs directories anyone with root can
    ``mkdir``, host NQNs a remote host sends, netdev names, profile and state-file text) pass
    through here in every human renderer, one line at a time: a name cannot recolour the
    terminal, move the cursor or forge a line of output. ``--json`` output is not touched
    (JSON escapes control characters itself, and a program wants the exact name)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    e = _ESCAPES.get(c)
    if e is not None:
        return e
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def safe_lines(lines: Iterable[str]) -> str:
    """Lines of a human rendering, each made :func:`safe`, joined with newlines (a newline
    inside one of them is a name's, and is escaped)."""
    return "\n".join(safe(line) for line in lines)


def dump_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(data, out, indent=2, sort_keys=False, default=_default)
    out.write("\n")


def _default(obj: Any) -> Any:
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def emit(as_json: bool, data: Any, human: Callable[[Any], str], out: TextIO | None = None) -> None:
    """Print ``data`` as JSON, or as the text ``human(data)`` returns."""
    out = out or sys.stdout
    if as_json:
        dump_json(data, out)
    else:
        text = safe_lines(human(data).split("\n"))
        out.write(text if text.endswith("\n") or not text else text + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain left-aligned text table (no colours, no box drawing); cells are :func:`safe`."""
    rows = [["" if c is None else safe(str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join(lines)


class Progress:
    """Progress lines on stderr for long work; silent when ``quiet``. Best effort: a line that
    cannot be written (the terminal went away with SIGHUP, a closed pipe) is dropped, never
    the reason long work stops."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def __call__(self, message: str) -> None:
        if not self.quiet:
            try:
                self.stream.write(f"... {message}\n")
                self.stream.flush()
            except OSError:
                self.quiet = True


def warn(command: str, text: str) -> None:
    """A warning: on stderr, always (``--quiet`` keeps warnings)."""
    sys.stderr.write(safe_lines(f"nvmet-p2p {command}: warning: {text}".split("\n")) + "\n")
    sys.stderr.flush()


def note(args: Any, text: str) -> None:
    """A note (something worth knowing, nothing wrong): on stderr, not with ``--quiet``."""
    if not getattr(args, "quiet", False):
        sys.stderr.write(safe_lines(f"nvmet-p2p {args.command}: note: {text}".split("\n")) + "\n")
        sys.stderr.flush()
