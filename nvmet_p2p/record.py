"""Records: the part of :mod:`dataclasses` this project uses, without its start-up cost.

Every plain-data class here (the inventory, the target state, plans, verdicts, results) is
declared as a dataclass is -- annotated fields, defaults, ``field(default_factory=...)`` -- and
decorated with :func:`dataclass` from this module. A record gets what ``@dataclasses.dataclass``
would give it and the project relies on: an ``__init__`` taking the fields in order or by name
(then ``__post_init__`` if the class has one), ``__eq__`` over the fields, a ``__repr__``, and
with ``frozen=True`` no assignment after ``__init__`` and a hash of the fields. :func:`fields`,
:func:`asdict`, :func:`replace`, :func:`is_dataclass` and :data:`MISSING` work as there.

Why not :mod:`dataclasses` itself: a command's start-up (issue 12: at most 2x ``python -c
pass``). On Python 3.11 importing it costs about 9 ms (it imports ``inspect``, and with it
``ast``, ``dis`` and ``tokenize``), and each ``@dataclass`` compiles generated source for its
methods at import, 0.3-1 ms per class; a command loads 16-45 of these classes, and together
that was 0.6-1.2x of ``python -c pass``, half of each command's start-up. Here nothing is
compiled: one ``__init__``, ``__eq__`` and ``__repr__`` serve every record, reading the class's
field table (an ``__init__`` call costs a microsecond or two more than a generated one).
"""

from __future__ import annotations

import operator
import reprlib

__all__ = ["MISSING", "Field", "FrozenInstanceError", "asdict", "dataclass", "field", "fields",
           "is_dataclass", "replace"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: no default (as :data:`dataclasses.MISSING`)
MISSING = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a ``frozen=True`` record."""


class Field:
    """One field: its name, annotation (the source text), default or default factory, and
    whether it takes part in ``__repr__`` and ``__eq__``."""

    __slots__ = ("name", "type", "default", "default_factory", "repr", "compare")

    def __init__(self, default=MISSING, default_factory=MISSING, repr: bool = True,
                 compare: bool = True):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name: str = ""
        self.type = None
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r})"


def field(*, default=MISSING, default_factory=MISSING, repr: bool = True, compare: bool = True):
    """As :func:`dataclasses.field` (the arguments this project uses)."""
    return Field(default, default_factory, repr, compare)


def dataclass(cls=None, /, *, frozen: bool = False):
    """Make ``cls`` a record (``@dataclass`` or ``@dataclass(frozen=True)``)."""
    def wrap(c):
        return _process(c, frozen)
    return wrap if cls is None else wrap(cls)


def _process(cls, frozen: bool):
    table: dict[str, Field] = {}
    for base in cls.__mro__[-1:0:-1]:               # a record's base records' fields come first
        if "__record__" in base.__dict__:
            table.update((f.name, f) for f in base.__record__.fields)
    for name, ann in cls.__dict__.get("__annotations__", {}).items():
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        if f.default is not MISSING and type(f.default).__hash__ is None:   # (dataclasses' rule)
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: "
                             f"use default_factory")
        f.name, f.type = name, ann
        if isinstance(value, Field):        # the class attribute is the default, as in dataclasses
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        table[name] = f
    seen = False
    for f in table.values():
        if f.default is MISSING and f.default_factory is MISSING:
            if seen:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
        else:
            seen = True
    class_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in cls.__dict__))
    cls.__record__ = _Spec(cls, tuple(table.values()))
    for name, fn in (("__init__", _init), ("__repr__", _repr), ("__eq__", _eq)):
        if name not in cls.__dict__:            # (a method the class defines itself stays)
            setattr(cls, name, fn)
    if frozen:
        cls.__setattr__, cls.__delattr__ = _frozen_setattr, _frozen_delattr
    if not explicit_hash:           # dataclasses' rule: frozen -> hash of the fields, else unhashable
        cls.__hash__ = _hash if frozen else None
    return cls


class _Spec:
    """What the shared methods need to know about one record class."""

    __slots__ = ("fields", "name", "names", "nameset", "defaults", "factories", "key", "shown",
                 "post_init")

    def __init__(self, cls, table: tuple[Field, ...]):
        self.fields = table
        self.name = cls.__qualname__
        self.names = tuple(f.name for f in table)
        self.nameset = frozenset(self.names)
        self.defaults = {f.name: f.default for f in table if f.default is not MISSING}
        self.factories = tuple((f.name, f.default_factory) for f in table
                               if f.default_factory is not MISSING)
        compared = [f.name for f in table if f.compare]
        #: the compared fields' values as a tuple, from an instance's __dict__
        if len(compared) > 1:
            self.key = operator.itemgetter(*compared)
        else:
            self.key = (lambda d: ()) if not compared else (lambda d, k=compared[0]: (d[k],))
        self.shown = tuple(f.name for f in table if f.repr)
        self.post_init = getattr(cls, "__post_init__", None)


def _init(self, *args, **kwargs):
    spec = type(self).__record__
    values = dict(spec.defaults)
    if args:
        if len(args) > len(spec.names):
            raise TypeError(f"{spec.name}() takes {len(spec.names)} arguments but {len(args)} were given")
        values.update(zip(spec.names, args))
        if kwargs and not kwargs.keys().isdisjoint(spec.names[:len(args)]):
            raise TypeError(f"{spec.name}() got multiple values for an argument: "
                            f"{sorted(kwargs.keys() & set(spec.names[:len(args)]))}")
    if kwargs:
        if not kwargs.keys() <= spec.nameset:
            raise TypeError(f"{spec.name}() got an unexpected keyword argument "
                            f"{sorted(kwargs.keys() - spec.nameset)[0]!r}")
        values.update(kwargs)
    for k, factory in spec.factories:
        if k not in values:
            values[k] = factory()
    if len(values) < len(spec.names):
        missing = [k for k in spec.names if k not in values]
        raise TypeError(f"{spec.name}() missing required argument(s): {', '.join(map(repr, missing))}")
    object.__setattr__(self, "__dict__", values)
    if spec.post_init is not None:
        self.__post_init__()


@reprlib.recursive_repr()
def _repr(self) -> str:
    spec = type(self).__record__
    return f"{spec.name}({', '.join(f'{k}={getattr(self, k)!r}' for k in spec.shown)})"


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    key = type(self).__record__.key
    return key(self.__dict__) == key(other.__dict__)


def _hash(self) -> int:
    return hash(type(self).__record__.key(self.__dict__))


def _frozen_setattr(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r}")


# ----------------------------------------------------------------------------------------------
# The module functions of dataclasses
# ----------------------------------------------------------------------------------------------

def is_dataclass(obj) -> bool:
    """Is ``obj`` a record class or a record?"""
    cls = obj if isinstance(obj, type) else type(obj)
    return hasattr(cls, "__record__")


def fields(obj) -> tuple[Field, ...]:
    """The fields of a record class or record, in order."""
    try:
        return obj.__record__.fields
    except AttributeError:
        raise TypeError("must be called with a dataclass type or instance") from None


def asdict(obj) -> dict:
    """A record as a dict of its fields, records inside it (in lists, tuples and dicts too)
    turned into dicts as well; other values copied as :func:`dataclasses.asdict` does."""
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError("asdict() should be called on dataclass instances")
    return _asdict(obj)


_ATOMS = (str, int, float, bool, type(None), bytes)


def _asdict(v):
    if hasattr(type(v), "__record__"):
        return {k: _asdict(getattr(v, k)) for k in type(v).__record__.names}
    if isinstance(v, list):
        return [_asdict(x) for x in v]
    if isinstance(v, tuple):
        return type(v)(*[_asdict(x) for x in v]) if hasattr(v, "_fields") else tuple(_asdict(x) for x in v)
    if isinstance(v, dict):
        return type(v)((_asdict(k), _asdict(x)) for k, x in v.items())
    if isinstance(v, _ATOMS):
        return v
    import copy
    return copy.deepcopy(v)


def replace(obj, /, **changes):
    """A new record like ``obj`` with ``changes`` (as :func:`dataclasses.replace`)."""
    spec = type(obj).__record__
    for k in changes:
        if k not in spec.names:
            raise TypeError(f"{spec.name}.__init__() got an unexpected keyword argument {k!r}")
    values = {k: getattr(obj, k) for k in spec.names}
    values.update(changes)
    return type(obj)(**values)
