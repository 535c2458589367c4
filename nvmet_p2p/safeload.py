"""Reading outside data without trusting it: one place for size limits, encodings, depth,
duplicate keys and YAML aliases.

Every parser of a file a user hands over (desired states, saved plans, saved inventories, the
snapshot's metadata, profiles, key files) and of another program's output (fio, nvme-cli) goes
through here first. Whatever the bytes are, the result is either the parsed document or a
:class:`DocumentError` -- the project's :class:`~nvmet_p2p.errors.InputError`, naming the file
and the position (``file:line:column``, or the JSON path) -- never a traceback:

* a size limit per kind of file (read with one bounded ``read``; ``/dev/zero`` or a FIFO cannot
  hang or exhaust the process: only regular files are read);
* strict UTF-8, the first bad byte located; NUL bytes (raw, or ``\\u0000`` in a JSON string)
  refused, since every value may end up in a path or a configfs write;
* nesting deeper than :data:`MAX_DEPTH` refused before the recursive parsers see it;
* duplicate keys in a JSON object refused (the JSON standard leaves them undefined; Python keeps
  the last one silently), with their position;
* YAML: aliases may not make a document expand beyond :data:`MAX_YAML_NODES` nodes (the
  "billion laughs"), composing stops at :data:`MAX_DEPTH`.

:func:`check` validates the shape of a parsed document against a small type description, for
the documents whose readers index into them directly (plans, managed sets, fio and nvme-cli
output, saved inventories).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import types
import typing
from typing import Any

import yaml

from nvmet_p2p.errors import InputError

#: the deepest nesting accepted in any document (real ones stay below 12)
MAX_DEPTH = 64
#: size limits (bytes) per kind of file. ``state``: a desired-state file or a managed set --
#: 16 MiB is about 45,000 namespaces, planned in about 10 s and 0.2 GB (a file just under the old
#: 64 MiB limit, 180,000 namespaces, took 39 s and 0.6 GB; docs/dev/state-file-limit.md);
#: ``record``: the state directory's small records (last apply, degraded)
LIMITS = {"json": 64 << 20, "state": 16 << 20, "record": 4 << 20, "yaml": 8 << 20, "key": 4096,
          "text": 16 << 20}
#: the most YAML nodes a profile may expand to through aliases
MAX_YAML_NODES = 200_000


class DocumentError(InputError, ValueError):
    """Outside data that is not what it claims to be. Also a ``ValueError``, so code that
    treated malformed output of another program as one keeps working."""


# ----------------------------------------------------------------------------------------------
# Bytes -> text
# ----------------------------------------------------------------------------------------------

def read_bytes(path: str, kind: str = "text", limit: int | None = None) -> bytes:
    """The content of a regular file, at most ``limit`` bytes (else :class:`DocumentError`)."""
    limit = LIMITS[kind] if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DocumentError("no such file", where=path) from None
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror}", where=path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DocumentError("is a directory, not a file", where=path)
        if not stat.S_ISREG(st.st_mode):
            raise DocumentError("is not a regular file (device, FIFO or socket); refusing to read it",
                                where=path)
        if st.st_size > limit:
            raise DocumentError(f"is {st.st_size} bytes; the limit for this kind of file is {limit}",
                                where=path)
        chunks, total = [], 0
        while True:
            try:
                b = os.read(fd, min(1 << 20, limit + 1 - total))
            except OSError as exc:
                raise DocumentError(f"cannot read: {exc.strerror}", where=path) from None
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > limit:
                raise DocumentError(f"is larger than the limit for this kind of file ({limit} bytes)",
                                    where=path)
        return b"".join(chunks)
    finally:
        os.close(fd)


def line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    nl = b"\n" if isinstance(text, bytes) else "\n"
    line = text.count(nl, 0, offset) + 1
    start = text.rfind(nl, 0, offset) + 1
    return line, offset - start + 1


def decode(data: bytes, where: str) -> str:
    """Strict UTF-8 without NUL bytes; the first offending byte is located."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = line_col(data, exc.start)
        raise DocumentError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column "
                            f"{col} ({exc.reason})", where=where) from None
    if text.startswith("\ufeff"):
        text = text[1:]            # a byte-order mark some editors write
    nul = text.find("\x00")
    if nul >= 0:
        line, col = line_col(text, nul)
        raise DocumentError(f"contains a NUL byte at line {line}, column {col}", where=where)
    return text


def read_text(path: str, kind: str = "text", limit: int | None = None) -> str:
    """:func:`read_bytes` + :func:`decode`."""
    return decode(read_bytes(path, kind, limit), path)


# ----------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------

_STRUCT = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_NUL_ESCAPE = re.compile(r'\\u0000')


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return d


def _depth_problem(text: str) -> tuple[int, str] | None:
    """(offset, message) where nesting first exceeds :data:`MAX_DEPTH`, or None. One C-level
    regex pass over strings and brackets (a few ms for a 1000-namespace state file)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    for m in _STRUCT.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return m.start(), f"nested deeper than {MAX_DEPTH} levels"
        elif c in "]}":
            depth -= 1
    return None


def _find_duplicate(text: str, key: str) -> int | None:
    """Offset of the second occurrence of ``key`` as a key in one object (for the message)."""
    stack: list[set] = []
    expect_key = False
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"\s*:|[\[\]{},]|"(?:[^"\\]|\\.)*"', text):
        tok = m.group()
        if tok == "{":
            stack.append(set())
            expect_key = True
        elif tok == "[":
            stack.append(None)
        elif tok in "]}":
            if stack:
                stack.pop()
        elif tok == ",":
            expect_key = bool(stack) and stack[-1] is not None
        elif tok.endswith(":") and stack and stack[-1] is not None and expect_key:
            try:
                k = json.loads(tok[:-1].rstrip())
            except ValueError:
                k = None
            if k in stack[-1]:
                return m.start()
            stack[-1].add(k)
            expect_key = False
    return None


def loads_json(text: str, where: str, duplicates: bool = False) -> Any:
    """Parse JSON text strictly (see the module docstring); :class:`DocumentError` with the
    position otherwise. ``duplicates=True`` keeps the last of repeated keys instead of refusing
    them: for output of programs that write them (fio 3.33 repeats ``job options`` keys in
    client mode), never for files a user writes."""
    deep = _depth_problem(text)
    if deep:
        line, col = line_col(text, deep[0])
        raise DocumentError(f"not accepted as JSON: {deep[1]} (line {line}, column {col})", where=where)
    m = _NUL_ESCAPE.search(text)
    if m:
        line, col = line_col(text, m.start())
        raise DocumentError(f"a string holds a NUL character (\\u0000) at line {line}, column {col}",
                            where=where)
    try:
        return json.loads(text, object_pairs_hook=None if duplicates else _pairs)
    except _Duplicate as d:
        off = _find_duplicate(text, d.key)
        pos = f" (line {line_col(text, off)[0]}, column {line_col(text, off)[1]})" if off is not None else ""
        raise DocumentError(f"not accepted as JSON: key {d.key!r} appears twice in one object{pos}",
                            where=where) from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                            where=where) from None
    except (RecursionError, ValueError) as exc:   # (int of > 4300 digits, ...)
        raise DocumentError(f"not accepted as JSON: {exc}", where=where) from None


def load_json(path: str, kind: str = "json") -> Any:
    """Read and parse a JSON file with the limits above."""
    return loads_json(read_text(path, kind), path)


# ----------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------

def yaml_compose(text: str, where: str):
    """``yaml.compose`` with a depth limit and an alias-expansion limit; returns the root node
    (or None for an empty document). YAML syntax errors are left to the caller (they carry
    marks: ``yaml.MarkedYAMLError``); the limits raise :class:`DocumentError` with a position."""

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                ev = self.peek_event()
                self.aliases.append(ev.start_mark)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                m = self.peek_event().start_mark
                raise DocumentError(f"not accepted as YAML: nested deeper than {MAX_DEPTH} levels "
                                    f"(line {m.line + 1}, column {m.column + 1})", where=where)
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    loader.aliases = []
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is not None and loader.aliases:
        size = _yaml_size(root, {})
        if size > MAX_YAML_NODES:
            m = loader.aliases[0]
            raise DocumentError(f"not accepted as YAML: its {len(loader.aliases)} alias(es) expand "
                                f"it to {size} nodes, more than {MAX_YAML_NODES} (first alias at "
                                f"line {m.line + 1}, column {m.column + 1})", where=where)
    return root


def _yaml_size(node, memo: dict, stack=None) -> int:
    """Nodes of the document once every alias is expanded (memoized: linear in the graph)."""
    key = id(node)
    if key in memo:
        return memo[key]
    stack = stack or set()
    if key in stack:        # a recursive alias: infinite
        return MAX_YAML_NODES + 1
    stack.add(key)
    n = 1
    if isinstance(node, yaml.SequenceNode):
        for c in node.value:
            n += _yaml_size(c, memo, stack)
            if n > MAX_YAML_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            n += _yaml_size(k, memo, stack) + _yaml_size(v, memo, stack)
            if n > MAX_YAML_NODES:
                break
    stack.discard(key)
    memo[key] = n
    return n


# ----------------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------------

Optional = type("Optional", (), {})


class Opt:
    """``Opt(spec)``: the key may be missing (or null, unless ``null=False``)."""

    def __init__(self, spec, null: bool = True):
        self.spec = spec
        self.null = null


class OneOf:
    """``OneOf(*values)``: one of these exact values."""

    def __init__(self, *values):
        self.values = values


class Each:
    """``Each(key_spec, value_spec)``: a mapping of any keys."""

    def __init__(self, key, value):
        self.key, self.value = key, value


_TNAME = {dict: "an object", list: "a list", str: "a string", int: "an integer",
          float: "a number", bool: "a boolean", type(None): "null"}


def _tname(v) -> str:
    return _TNAME.get(type(v), type(v).__name__)


def check(doc: Any, spec: Any, where: str, path: str = "$") -> None:
    """Raise :class:`DocumentError` unless ``doc`` has the shape ``spec``:

    a type (``str``, ``int`` -- not bool --, ``float`` -- int accepted --, ``bool``, ``dict``,
    ``list``, ``object``: anything), ``[spec]`` (a list of it), ``{"key": spec}`` (an object
    with those keys; unknown keys are allowed, :class:`Opt` marks optional ones),
    :class:`Each`, :class:`OneOf`, or a tuple of alternatives.
    """
    problem = _check(doc, spec, path)
    if problem:
        raise DocumentError(f"{problem[0]}: {problem[1]}", where=where)


def problem(doc: Any, spec: Any, path: str = "$") -> tuple[str, str] | None:
    """What :func:`check` would raise, as ``(JSON path, message)``, or None."""
    return _check(doc, spec, path)


def _check(v, spec, path):
    if isinstance(spec, Opt):
        return None if v is None and spec.null else _check(v, spec.spec, path)
    if isinstance(spec, tuple):
        probs = [_check(v, s, path) for s in spec]
        return None if any(p is None for p in probs) else probs[0]
    if isinstance(spec, OneOf):
        return None if v in spec.values else (path, f"expected one of {', '.join(map(repr, spec.values))}, "
                                                     f"got {short(v)}")
    if isinstance(spec, list):
        if not isinstance(v, list):
            return path, f"expected a list, got {_tname(v)}"
        for i, item in enumerate(v):
            p = _check(item, spec[0], f"{path}[{i}]")
            if p:
                return p
        return None
    if isinstance(spec, Each):
        if not isinstance(v, dict):
            return path, f"expected an object, got {_tname(v)}"
        for k, item in v.items():
            p = _check(k, spec.key, f"{path} key {k!r}") or _check(item, spec.value, f"{path}[{k!r}]")
            if p:
                return p
        return None
    if isinstance(spec, dict):
        if not isinstance(v, dict):
            return path, f"expected an object, got {_tname(v)}"
        for k, s in spec.items():
            if k not in v:
                if isinstance(s, Opt):
                    continue
                return path, f"missing key {k!r}"
            p = _check(v[k], s, f"{path}.{k}")
            if p:
                return p
        return None
    if spec is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif spec is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    else:
        ok = isinstance(v, spec)
    return None if ok else (path, f"expected {_TNAME.get(spec, getattr(spec, '__name__', spec))}, "
                                  f"got {_tname(v)}")


def short(v) -> str:
    """``repr(v)``, at most 40 characters (for messages)."""
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def no_nul(value: str, where: str, what: str = "value") -> str:
    """A string that will become a path or a configfs write: no NUL, no surrogates."""
    if "\x00" in value:
        raise DocumentError(f"{what} contains a NUL character", where=where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentError(f"{what} is not valid Unicode text", where=where) from None
    return value


def check_dataclass(doc: Any, cls, where: str, path: str = "$") -> None:
    """Check a document meant for ``cls.from_dict`` against the dataclass's annotations (``str``,
    ``int``, ``bool``, ``float``, ``X | None``, ``list[X]``, ``dict[str, X]``, nested dataclasses):
    keys it does not know, values of the wrong type, missing required fields -- each with its
    JSON path. Recursive over nested dataclasses (the saved inventory)."""
    problem = _check_dc(doc, cls, path)
    if problem:
        raise DocumentError(f"{problem[0]}: {problem[1]}", where=where)


_HINTS: dict = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: (hints[f.name], f.default is dataclasses.MISSING
                                and f.default_factory is dataclasses.MISSING)
                       for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _check_dc(v, cls, path):
    if not isinstance(v, dict):
        return path, f"expected an object, got {_tname(v)}"
    fields = _hints(cls)
    for k in v:
        if k not in fields:
            return f"{path}.{k}" if isinstance(k, str) and k.isidentifier() else path, \
                f"unknown key {short(k)}"
    for name, (hint, required) in fields.items():
        if name not in v:
            if required:
                return path, f"missing key {name!r}"
            continue
        p = _check_hint(v[name], hint, f"{path}.{name}")
        if p:
            return p
    return None


def _check_hint(v, hint, path):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if v is None and type(None) in args:
            return None
        probs = [_check_hint(v, a, path) for a in args if a is not type(None)]
        return None if any(p is None for p in probs) else probs[0]
    if origin is list:
        if not isinstance(v, list):
            return path, f"expected a list, got {_tname(v)}"
        (item,) = typing.get_args(hint) or (typing.Any,)
        for i, x in enumerate(v):
            p = _check_hint(x, item, f"{path}[{i}]")
            if p:
                return p
        return None
    if origin is dict:
        if not isinstance(v, dict):
            return path, f"expected an object, got {_tname(v)}"
        kt, vt = typing.get_args(hint) or (typing.Any, typing.Any)
        for k, x in v.items():
            p = _check_hint(k, kt, f"{path} key") or _check_hint(x, vt, f"{path}[{short(k)}]")
            if p:
                return p
        return None
    if dataclasses.is_dataclass(hint):
        return _check_dc(v, hint, path)
    if hint is typing.Any:
        return None
    if hint is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    elif hint is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif isinstance(hint, type):
        ok = isinstance(v, hint)
    else:
        ok = True
    return None if ok else (path, f"expected {_TNAME.get(hint, getattr(hint, '__name__', hint))}, "
                                  f"got {_tname(v)}")


# ----------------------------------------------------------------------------------------------
# Secrets: never in a message, a log or a crash report
# ----------------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_DHHC = re.compile(r"DHHC-1:[0-9A-Fa-f]{2}:[A-Za-z0-9+/=]*:?")


def redact_later(value: bytes | str) -> None:
    """Remember ``value`` (a key file's content, a secret attribute read from configfs) so that
    :func:`redact` removes it from any text that is about to be shown or written to a report."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    for v in {value, value.strip()} | {ln.strip() for ln in value.splitlines()}:
        if len(v) >= 6:
            _SECRETS.add(v)


def redact(text: str) -> str:
    """``text`` with every DH-HMAC-CHAP secret and every remembered secret replaced."""
    for s in sorted(_SECRETS, key=len, reverse=True):
        if s in text:
            text = text.replace(s, "(secret)")
    return _DHHC.sub("(secret)", text)


def redact_doc(doc: Any) -> Any:
    """A JSON-ready document with :func:`redact` applied to every string in it (keys too)."""
    if isinstance(doc, str):
        return redact(doc)
    if isinstance(doc, dict):
        return {redact_doc(k): redact_doc(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [redact_doc(v) for v in doc]
    return doc
