"""Rendering helpers shared by the commands: ``--json`` documents, plain tables, progress.

Progress goes to stderr so that stdout stays machine-readable with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO


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
        text = human(data)
        out.write(text if text.endswith("\n") or not text else text + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain left-aligned text table (no colours, no box drawing)."""
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join(lines)


class Progress:
    """Progress lines on stderr for long work; silent when ``quiet``."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def __call__(self, message: str) -> None:
        if not self.quiet:
            self.stream.write(f"... {message}\n")
            self.stream.flush()
