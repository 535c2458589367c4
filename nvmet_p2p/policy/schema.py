"""A small declarative schema for YAML files: validates the nodes (every problem with file,
line, column and the offending value, all of them at once), remembers where each value was
written, and emits the JSON Schema editors use, from the same description.

:class:`Record`, :class:`ListOf`, :class:`Either` and the scalar specs (:class:`Str`,
:class:`Int`, :class:`Bool`, :class:`Enum`, :class:`Size`) check a node against what is
expected and return plain values (mappings as :class:`Obj`, which keeps the :class:`Mark` of
each key); problems go to a :class:`Report`. :mod:`nvmet_p2p.policy.profile` describes the profile
format with them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from nvmet_p2p.errors import InputError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


# ============================================================================================
# Locations and problems
# ============================================================================================

@dataclass(frozen=True)
class Mark:
    """Where a value was written: ``file:line:column`` (1-based), and its dotted path."""

    file: str
    line: int
    column: int
    path: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    @classmethod
    def of(cls, file: str, node: yaml.Node, path: str) -> "Mark":
        return cls(file, node.start_mark.line + 1, node.start_mark.column + 1, path)


@dataclass
class Problem:
    """One thing wrong with a profile."""

    where: Mark | None
    message: str

    def __str__(self) -> str:
        loc = f"{self.where}: " if self.where else ""
        path = f"{self.where.path}: " if self.where and self.where.path else ""
        return f"{loc}{path}{self.message}"


class SchemaError(InputError):
    """A file with one or more problems. ``problems`` lists them all, in file order."""

    what = "file"

    def __init__(self, problems: list[Problem], file: str):
        self.problems = sorted(problems, key=lambda p: (p.where.line, p.where.column)
                               if p.where else (0, 0))
        n = len(self.problems)
        head = f"{file}: {n} error{'s' if n != 1 else ''} in {self.what} (nothing was changed)"
        super().__init__("\n".join([head] + [f"  {p}" for p in self.problems]))
        self.where = file

    def __str__(self) -> str:          # InputError prefixes ``where``; we already did
        return self.message


class Report:
    """Collects problems (errors) and warnings while checking one file."""

    error_class: type[SchemaError] = SchemaError

    def __init__(self, file: str):
        self.file = file
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, where: Mark | None, message: str) -> None:
        self.errors.append(Problem(where, message))

    def warn(self, where: Mark | None, message: str) -> None:
        self.warnings.append(Problem(where, message))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise self.error_class(self.errors, self.file)


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


# ============================================================================================
# A small declarative schema: validates YAML nodes (with marks) and emits JSON Schema
# ============================================================================================

class Obj(dict):
    """A validated mapping: plain values, plus where each key (and the mapping) was written."""

    def __init__(self, mark: Mark):
        super().__init__()
        self.mark = mark
        self.marks: dict[str, Mark] = {}

    def at(self, key: str) -> Mark:
        return self.marks.get(key, self.mark)


class Spec:
    doc = ""

    def check(self, node: yaml.Node, path: str, rep: Report) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict:
        raise NotImplementedError

    def _wrong(self, node: yaml.Node, path: str, rep: Report, expected: str) -> None:
        if isinstance(node, yaml.ScalarNode):
            got = "nothing" if node.tag.endswith(":null") else show(node.value)
        else:
            got = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        rep.error(Mark.of(rep.file, node, path), f"expected {expected}, got {got}")


_TAG_WORDS = {"int": "number", "float": "number", "bool": "boolean", "timestamp": "date"}


class Str(Spec):
    def __init__(self, doc: str = "", *, pattern: str | None = None, max_len: int | None = None,
                 what: str = "a string", check: Callable[[str], str | None] | None = None):
        self.doc, self.pattern, self.max_len, self.what, self.extra = doc, pattern, max_len, what, check

    def check(self, node, path, rep):
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            return self._wrong(node, path, rep, self.what)
        text = node.value            # the text as written: serials like 0012 stay "0012"
        where = Mark.of(rep.file, node, path)
        kind = node.tag.rsplit(":", 1)[-1]
        if kind != "str":
            # other tools read the same file with a YAML 1.1 loader: they get a number, a
            # boolean or a date here, and the JSON Schema (a string) flags it
            rep.warn(where, f"{show(text)} is read as text here, but YAML 1.1 loaders (PyYAML, "
                            f"Ansible) read it as a {_TAG_WORDS.get(kind, kind)}: quote it")
        if self.max_len is not None and len(text) > self.max_len:
            return rep.error(where, f"{show(text)} is longer than {self.max_len} characters")
        if self.pattern and not re.fullmatch(self.pattern, text):
            return rep.error(where, f"expected {self.what}, got {show(text)}")
        if self.extra:
            msg = self.extra(text)
            if msg:
                return rep.error(where, msg)
        return text

    def json_schema(self):
        s: dict = {"type": "string"}
        if self.pattern:
            s["pattern"] = f"^(?:{self.pattern})$"
        if self.max_len is not None:
            s["maxLength"] = self.max_len
        return _doc(s, self.doc)


class _Ranged(Spec):
    """A number between ``lo`` and ``hi`` (either may be open)."""

    def __init__(self, doc: str = "", lo: int | None = None, hi: int | None = None):
        self.doc, self.lo, self.hi = doc, lo, hi

    def _in_range(self, value, where, rep, shown):
        lo, hi = self.lo, self.hi
        if lo is not None and value < lo or hi is not None and value > hi:
            if hi is None:
                rep.error(where, f"{shown} is out of range (at least {lo})")
            else:
                rep.error(where, f"{shown} is out of range ({lo}..{hi})")
            return None
        return value


class Int(_Ranged):

    def check(self, node, path, rep):
        if not (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":int")):
            return self._wrong(node, path, rep, "an integer")
        text = node.value.replace("_", "")
        try:
            value = int(text, 16) if text.lower().lstrip("+-").startswith("0x") else int(text, 10)
        except ValueError:
            return self._wrong(node, path, rep, "a decimal or 0x-hex integer")
        return self._in_range(value, Mark.of(rep.file, node, path), rep, str(value))

    def json_schema(self):
        s: dict = {"type": "integer"}
        if self.lo is not None:
            s["minimum"] = self.lo
        if self.hi is not None:
            s["maximum"] = self.hi
        return _doc(s, self.doc)


class Bool(Spec):
    def __init__(self, doc: str = ""):
        self.doc = doc

    def check(self, node, path, rep):
        if not (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":bool")):
            return self._wrong(node, path, rep, "true or false")
        return node.value.lower() in ("true", "yes", "on", "y")

    def json_schema(self):
        return _doc({"type": "boolean"}, self.doc)


#: The words a YAML 1.1 loader (PyYAML's safe_load, Ansible) reads as false: ``off`` written
#: bare in a file arrives as ``False`` once such a loader has parsed it, and is written back as
#: ``false`` (an Ansible task's inline ``profile_content``, say).
YAML11_FALSE = ("false", "no", "off")


class Enum(Spec):
    """One of ``values``. When ``"off"`` is one of them, a YAML 1.1 false (``false``, ``no``,
    ``off`` unquoted) means ``off``: that is what the same text means to any YAML 1.1 loader."""

    def __init__(self, values: tuple[str, ...], doc: str = ""):
        self.values, self.doc = values, doc
        self.false_means = "off" if "off" in values else None

    def check(self, node, path, rep):
        # The text as written: YAML 1.1 would turn a bare ``off`` into false.
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            return self._wrong(node, path, rep, "one of " + ", ".join(self.values))
        if self.false_means and node.tag.endswith(":bool") and \
                node.value.lower() in YAML11_FALSE:
            return self.false_means
        if node.value not in self.values:
            return rep.error(Mark.of(rep.file, node, path),
                             f"expected one of {', '.join(self.values)}, got {show(node.value)}")
        return node.value

    def json_schema(self):
        values: list = list(self.values)
        doc = self.doc
        if self.false_means:
            values.append(False)
            doc = f"{doc} {self.false_note}" if doc else self.false_note
        return _doc({"enum": values}, doc)

    @property
    def false_note(self) -> str:
        return (f"false means {self.false_means} (what YAML 1.1 loaders make of a bare "
                f"{self.false_means}).")


_SIZE_RE = r"[0-9]+ ?(?:B|[kKMG]|KiB|MiB|GiB)?"
_SIZE_UNITS = {"": 1, "B": 1, "k": KiB, "K": KiB, "KiB": KiB, "M": MiB, "MiB": MiB,
               "G": GiB, "GiB": GiB}


def parse_size(text: str) -> int | None:
    """``"128KiB"`` / ``"1M"`` / ``"4096"`` -> bytes (binary units); ``None`` if malformed."""
    m = re.fullmatch(r"([0-9]+) ?(B|[kKMG]|KiB|MiB|GiB)?", text.strip())
    if not m:
        return None
    return int(m.group(1)) * _SIZE_UNITS[m.group(2) or ""]


def format_size(n: int) -> str:
    """Bytes in the largest binary unit, exact when it divides (``64 MiB``, ``63.9 MiB``)."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n} B"


class Size(_Ranged):

    def check(self, node, path, rep):
        where = Mark.of(rep.file, node, path)
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            return self._wrong(node, path, rep, "a size (bytes, or e.g. 128KiB, 1MiB)")
        value = parse_size(node.value.replace("_", ""))
        if value is None:
            return self._wrong(node, path, rep, "a size (bytes, or e.g. 128KiB, 1MiB)")
        return self._in_range(value, where, rep, show(node.value))

    def json_schema(self):
        return _doc({"oneOf": [{"type": "integer", "minimum": self.lo or 0},
                               {"type": "string", "pattern": f"^{_SIZE_RE}$"}]}, self.doc)


@dataclass
class Field:
    name: str
    spec: Spec
    doc: str = ""
    required: bool = False


class Record(Spec):
    """A mapping with known keys. ``one_of`` groups keys of which at least one must appear."""

    def __init__(self, title: str, fields: list[Field], doc: str = "",
                 at_least_one: tuple[str, ...] = (), hints: dict[str, str] | None = None):
        self.title, self.doc, self.at_least_one = title, doc, at_least_one
        self.fields = {f.name: f for f in fields}
        self.hints = hints or {}

    def check(self, node, path, rep):
        if not isinstance(node, yaml.MappingNode):
            return self._wrong(node, path, rep, f"a mapping ({self.title})")
        out = Obj(Mark.of(rep.file, node, path))
        seen: dict[str, Mark] = {}
        unknown = False
        for knode, vnode in node.value:
            kpath = f"{path}.{knode.value}" if path else str(knode.value)
            kmark = Mark.of(rep.file, knode, kpath)
            if not isinstance(knode, yaml.ScalarNode):
                rep.error(kmark, "a key must be a plain name")
                continue
            key = knode.value
            if key in seen:
                rep.error(kmark, f"key {key!r} given twice (first at line {seen[key].line})")
                continue
            seen[key] = kmark
            f = self.fields.get(key)
            if f is None:
                msg = f"unknown key {show(key)} in {self.title}"
                if key in self.hints:
                    msg += f": {self.hints[key]}"
                else:
                    close = difflib.get_close_matches(key, list(self.fields), n=1)
                    msg += (f" (did you mean {close[0]!r}?)" if close else
                            f" (known: {', '.join(self.fields)})")
                rep.error(kmark, msg)
                unknown = True
                continue
            value = f.spec.check(vnode, kpath, rep)
            if value is not None:
                out[key] = value
                out.marks[key] = Mark.of(rep.file, vnode, kpath)
        for f in self.fields.values():
            if f.required and f.name not in seen:
                rep.error(out.mark, f"{self.title} needs {f.name!r}")
        if self.at_least_one and not unknown and not any(k in seen for k in self.at_least_one):
            rep.error(out.mark, f"{self.title} needs at least one of: "
                                f"{', '.join(self.at_least_one)}")
        return out

    def json_schema(self):
        props = {}
        for f in self.fields.values():
            s = dict(f.spec.json_schema())
            if f.doc:
                s["description"] = f.doc
                if isinstance(f.spec, Enum) and f.spec.false_means:
                    s["description"] += " " + f.spec.false_note
            props[f.name] = s
        s = {"type": "object", "title": self.title, "additionalProperties": False,
             "properties": props}
        req = [f.name for f in self.fields.values() if f.required]
        if req:
            s["required"] = req
        if self.at_least_one:
            s["anyOf"] = [{"required": [k]} for k in self.at_least_one]
        return _doc(s, self.doc)


class ListOf(Spec):
    def __init__(self, item: Spec, doc: str = "", min_items: int = 0):
        self.item, self.doc, self.min_items = item, doc, min_items

    def check(self, node, path, rep):
        if not isinstance(node, yaml.SequenceNode):
            return self._wrong(node, path, rep, "a list")
        if len(node.value) < self.min_items:
            rep.error(Mark.of(rep.file, node, path), f"needs at least {self.min_items} item(s)")
        out = []
        for i, child in enumerate(node.value):
            v = self.item.check(child, f"{path}[{i}]", rep)
            if v is not None:
                out.append(v)
        return out

    def json_schema(self):
        s = {"type": "array", "items": self.item.json_schema()}
        if self.min_items:
            s["minItems"] = self.min_items
        return _doc(s, self.doc)


class Either(Spec):
    """A scalar shorthand or a full mapping (``p2p: placed`` or ``p2p: {pinned: BDF}``)."""

    def __init__(self, short: Spec, full: Record, expand: Callable[[Any, Mark], Obj], doc: str = ""):
        self.short, self.full, self.expand, self.doc = short, full, expand, doc

    def check(self, node, path, rep):
        if isinstance(node, yaml.MappingNode):
            return self.full.check(node, path, rep)
        value = self.short.check(node, path, rep)
        return None if value is None else self.expand(value, Mark.of(rep.file, node, path))

    def json_schema(self):
        return _doc({"oneOf": [self.short.json_schema(), self.full.json_schema()]}, self.doc)


def _doc(s: dict, doc: str) -> dict:
    if doc:
        s["description"] = doc
    return s
