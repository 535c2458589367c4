"""nvmet_p2p.record against the standard library's dataclasses: the same class declarations
behave alike (construction, errors, equality, hashing, repr, frozen, asdict, replace, fields)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from nvmet_p2p import record

SOURCE = '''
@dc.dataclass
class Port:
    """a port"""
    port: int
    state: str = ""
    netdevs: list[str] = dc.field(default_factory=list)

@dc.dataclass
class Device:
    """a device"""
    name: str
    pci: str | None
    soft: bool = False
    ports: list[Port] = dc.field(default_factory=list)
    by_name: dict[str, Port] = dc.field(default_factory=dict)
    pair: tuple = ()
    _t_last: float | None = dc.field(default=None, repr=False, compare=False)

@dc.dataclass(frozen=True)
class Record:
    seq: int
    msg: str
    prio: int = 6

@dc.dataclass
class Later:
    a: int
    b: int = 0
    def __post_init__(self):
        self.total = self.a + self.b

@dc.dataclass
class Own:
    x: int
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__

@dc.dataclass
class Child(Port):
    speed: int = 0
'''


def classes(mod):
    ns = {"dc": mod}
    exec(SOURCE, ns)
    return ns


STD, REC = classes(dataclasses), classes(record)


def both(cls, args, kwargs):
    """The same construction with each implementation: (std result or exception type, ours)."""
    out = []
    for ns in (STD, REC):
        try:
            out.append(ns[cls](*args, **kwargs))
        except Exception as exc:   # (the exception type is what is compared)
            out.append(type(exc))
    return out


@pytest.mark.parametrize("name,args,kwargs", [
    ("Port", (1,), {}), ("Port", (), {"port": 2, "state": "4: ACTIVE"}), ("Port", (1, "s", ["eth0"]), {}),
    ("Port", (), {}), ("Port", (1, 2, 3, 4), {}), ("Port", (1,), {"port": 2}), ("Port", (1,), {"nope": 1}),
    ("Device", ("mlx5_0", "0000:07:00.0"), {"ports": []}), ("Device", ("rxe0",), {}),
    ("Device", (), {"pci": None, "name": "siw0", "soft": True}),
    ("Record", (1, "m"), {}), ("Record", (1,), {"msg": "m", "prio": 3}), ("Later", (1, 2), {}),
    ("Child", (1,), {"speed": 100}), ("Child", (), {"speed": 100}),
])
def test_construction_and_repr_as_dataclasses(name, args, kwargs):
    std, ours = both(name, args, kwargs)
    if isinstance(std, type):
        assert ours is std                      # the same exception type
        return
    assert repr(ours) == repr(std)
    assert record.asdict(ours) == dataclasses.asdict(std)
    assert [f.name for f in record.fields(ours)] == [f.name for f in dataclasses.fields(std)]
    assert vars(ours) == vars(std)


def test_defaults_are_fresh_per_instance_and_class_attributes_as_dataclasses():
    a, b = REC["Port"](1), REC["Port"](2)
    a.netdevs.append("eth0")
    assert b.netdevs == []
    for attr in ("state", "port", "netdevs"):
        assert hasattr(REC["Port"], attr) == hasattr(STD["Port"], attr)
    assert REC["Port"].state == ""


def test_equality_and_hashing_as_dataclasses():
    P, D, R = REC["Port"], REC["Device"], REC["Record"]
    assert P(1) == P(1) and P(1) != P(2) and P(1, "x") != P(1)
    assert (P(1) == STD["Port"](1)) is False    # another class: never equal
    assert P(1).__eq__(object()) is NotImplemented
    d1, d2 = D("a", None), D("a", None)
    d2._t_last = 5.0                             # compare=False
    assert d1 == d2
    with pytest.raises(TypeError):
        hash(P(1))                               # mutable and compared: unhashable
    assert hash(R(1, "m")) == hash(R(1, "m")) and len({R(1, "m"), R(1, "m"), R(2, "m")}) == 2
    own = REC["Own"](1)
    assert own == REC["Own"](2) and hash(own) == object.__hash__(own)   # the class's own methods stay


def test_frozen():
    r = REC["Record"](1, "m")
    with pytest.raises(record.FrozenInstanceError):
        r.seq = 2
    with pytest.raises(AttributeError):
        del r.msg
    assert r.seq == 1
    assert copy.deepcopy(r) == r


def test_post_init_replace_asdict_nested():
    assert REC["Later"](1, 2).total == 3
    D, P = REC["Device"], REC["Port"]
    d = D("mlx5_0", "0000:07:00.0", ports=[P(1, netdevs=["eth0"])], by_name={"p": P(2)}, pair=(P(3), 4))
    s = STD["Device"]("mlx5_0", "0000:07:00.0", ports=[STD["Port"](1, netdevs=["eth0"])],
                       by_name={"p": STD["Port"](2)}, pair=(STD["Port"](3), 4))
    assert record.asdict(d) == dataclasses.asdict(s)
    assert record.asdict(d)["ports"][0]["netdevs"] is not d.ports[0].netdevs     # copied
    e = record.replace(d, soft=True)
    assert e.soft and not d.soft and e.ports is d.ports and e != d
    with pytest.raises(TypeError):
        record.replace(d, nope=1)
    assert record.is_dataclass(d) and record.is_dataclass(D) and not record.is_dataclass(object())
    with pytest.raises(TypeError):
        record.asdict(D)
    assert [(f.name, f.default) for f in record.fields(P)] == [
        (f.name, f.default if f.default is not dataclasses.MISSING else record.MISSING)
        for f in dataclasses.fields(STD["Port"])]
    assert copy.deepcopy(d) == d


def test_declaration_errors_as_dataclasses():
    for mod, err in ((dataclasses, ValueError), (record, ValueError)):
        with pytest.raises(err):
            exec("@dc.dataclass\nclass Bad:\n    x: list = []\n", {"dc": mod})
    for mod in (dataclasses, record):
        with pytest.raises(TypeError):
            exec("@dc.dataclass\nclass Bad:\n    x: int = 0\n    y: int\n", {"dc": mod})
