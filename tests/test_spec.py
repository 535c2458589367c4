"""nvmet_p2p/nvmet/spec.py: one spec per nvmet object kind. Paths round-trip through the
spec's patterns; the tables the engine used to keep are the spec's rows; an attribute the spec
does not know is still found by its group prefix; a value is checked by its row. (The lab
tier holds the rows against the kernel: tests/lab/test_lab_spec.py.)"""

from __future__ import annotations

import pytest

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import spec, statefile
from nvmet_p2p.nvmet.spec import KINDS, SPECS, parse_path

KEYS = {"root": (), "host": ("nqn.h",), "subsystem": ("nqn.s",), "namespace": ("nqn.s", 7),
        "passthru": ("nqn.s",), "allowed_host": ("nqn.s", "nqn.h"), "port": (3,),
        "port_link": (3, "nqn.s"), "referral": (3, "r1"), "ana_group": (3, 2)}


def test_ten_kinds_each_with_one_spec():
    assert set(KINDS) == set(KEYS) and len(KINDS) == 10


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_every_kinds_paths_parse_back_to_it(kind):
    s = SPECS[kind]
    base = s.path_of(*KEYS[kind])
    if s.own_dir or s.link_to:
        assert parse_path(base) == (kind, KEYS[kind], None)
    for a in s.attrs:
        assert parse_path(f"{base}/{a.name}" if base else a.name) == (kind, KEYS[kind], a.name)
    if s.enable:
        assert parse_path(f"{base}/enable") == (kind, KEYS[kind], "enable")


@pytest.mark.parametrize("path,want", [
    ("discovery_nqn", ("root", (), "discovery_nqn")),
    ("hosts", ("root", (), "hosts")),                                   # a directory of root
    ("subsystems/s/passthru", ("subsystem", ("s",), "passthru")),       # made by the kernel
    ("subsystems/s/namespaces", ("subsystem", ("s",), "namespaces")),
    ("ports/1/subsystems", ("port", (1,), "subsystems")),
    ("ports/1/ana_groups/2/ana_state", ("ana_group", (1, 2), "ana_state")),
])
def test_paths_of_the_nvmet_tree(path, want):
    assert parse_path(path) == want


@pytest.mark.parametrize("path,exc", [
    ("ports/one", ValueError), ("subsystems/s/namespaces/x", ValueError),
    ("subsystems/s/allowed_hosts/h/x", NvmetP2PError), ("ports/1/subsystems/s/x", NvmetP2PError),
    ("a/b", NvmetP2PError), ("hosts/h/a/b", NvmetP2PError),
])
def test_paths_of_no_object_are_refused(path, exc):
    with pytest.raises(exc):
        parse_path(path)


def test_the_engines_tables_are_the_spec_rows():
    """What plan, journal and statefile used to keep in tables of their own."""
    ns = SPECS["namespace"]
    assert ns.offline == ("device_path", "device_uuid", "device_nguid", "buffered_io", "resv_enable",
                          "p2pmem")
    assert ns.ordered(["ana_grpid", "p2pmem", "device_path"]) == ["device_path", "p2pmem", "ana_grpid"]
    assert SPECS["host"].names == ("dhchap_hash", "dhchap_dhgroup", "dhchap_key", "dhchap_ctrl_key")
    assert SPECS["port"].names[:2] == ("addr_trtype", "addr_adrfam")
    assert {n for n in ("addr_adrfam", "addr_traddr", "addr_trsvcid", "addr_trtype", "addr_tsas",
                        "device_path", "device_nguid", "device_uuid", "p2pmem", "attr_serial")
            if spec.empty_means_unset(n)} == {"addr_adrfam", "addr_traddr", "addr_trsvcid",
                                              "addr_trtype", "addr_tsas", "device_path",
                                              "device_nguid", "device_uuid"}
    assert statefile.NS_DEVICE == ("nguid", "path", "uuid")
    assert spec.SECRETS == {"dhchap_key", "dhchap_ctrl_key"}


def test_a_name_means_the_same_in_every_kind_that_has_it():
    """(normalize, value_problem and choices look a value up by its file name)"""
    seen: dict[str, tuple] = {}
    for s in SPECS.values():
        for a in s.attrs:
            facts = (a.value, a.secret, a.empty_unset, a.choices)
            assert seen.setdefault(a.name, facts) == facts, a.name


def test_an_attribute_of_a_newer_kernel_is_found_by_its_group():
    port, ns = SPECS["port"], SPECS["namespace"]
    assert port.attr("param_new_thing") is None
    assert port.group_of("param_new_thing") == "param" and port.group_of("addr_traddr") == "addr"
    assert ns.group_of("p2pmem") is None and ns.group_of("device_path") == "device"
    assert port.ordered(["param_zz", "addr_traddr", "param_aa"]) == ["addr_traddr", "param_aa", "param_zz"]


@pytest.mark.parametrize("name,value,ok", [
    ("p2pmem", "on", True), ("p2pmem", "auto", False), ("attr_qid_max", "128", True),
    ("attr_qid_max", "129", False), ("addr_trtype", "", True), ("addr_treq", "", False),
    ("ana_grpid", "0", False), ("device_uuid", "not-a-uuid", False), ("enable", "x", True),
])
def test_a_value_is_checked_by_its_row(name, value, ok):
    assert (spec.value_problem(name, value) is None) == ok


def test_values_compare_as_the_kernel_parses_them():
    assert spec.same("p2pmem", "0000:0A:00.0", "0000:0a:00.0") and spec.same("p2pmem", "on", "1")
    assert spec.same("attr_cntlid_min", "0x10", "16") and spec.same("enable", "y", "1")
    assert spec.same("device_nguid", "00-11", "0011") and not spec.same("attr_serial", "a", "A")
    assert spec.SPECS["subsystem"].is_new_default("attr_model", "Linux ")
    assert not spec.SPECS["subsystem"].is_new_default("attr_serial", "")


@pytest.mark.parametrize("path,value,ok", [
    ("subsystems/s/namespaces/1/p2pmem", "0000:03:00.0", True),
    ("subsystems/s/namespaces/1/p2pmem", "auto", False),
    ("subsystems/s/namespaces/1/enable", "1", True),
    ("subsystems/s/namespaces/1", "1", False),                      # a directory
    ("ports/1/param_new_thing", "5", True),                         # a newer kernel's, by group
    ("ports/1/bogus", "5", False), ("hosts/h/enable", "1", False),  # hosts have no enable
    ("../../etc/passwd", "x", False), ("ports/x/addr_traddr", "1.2.3.4", False),
])
def test_a_recorded_write_is_checked_against_the_spec(path, value, ok):
    assert (spec.write_problem(path, value) is None) == ok
