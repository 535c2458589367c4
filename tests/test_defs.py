"""The kernel's facts and validators (nvmet_p2p.nvmet.defs), every limit at N and N+1, and names
never becoming configfs paths whatever made the desired state (state file, profile, caller)."""

from __future__ import annotations

import copy
import json

import pytest

from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet import defs, spec, statefile
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.apply import reconcile
from nvmet_p2p.nvmet.configfs import ConfigfsError
from nvmet_p2p.nvmet.plan import Plan, PlanError, build_plan
from nvmet_p2p.pci.p2pdma_rules import MapType
from support.fakenvmet import FakeNvmet, dump

S1 = "nqn.2026-11.io.lab:s1"
H1 = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
EVIL = "nqn.2026-11.io.x:../../hosts/evil"


def nqn_of_length(n: int) -> str:
    head = "nqn.2026-11.io.lab:"
    return head + "x" * (n - len(head))


# -- NQNs ---------------------------------------------------------------------------------------

def test_nqn_limit_is_223_bytes_not_224():
    assert defs.nqn_problem(nqn_of_length(223)) is None
    assert "224 bytes long" in defs.nqn_problem(nqn_of_length(224))


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "nqn.2026-11.io.x:../../hosts/evil", "a\0b"])
def test_names_that_would_be_paths_are_refused(name):
    assert defs.name_problem(name) is not None
    assert defs.nqn_problem(name) is not None


@pytest.mark.parametrize("nqn,ok", [
    ("testnqn", True),                                    # nvmetcli's examples
    ("nqn.2026-12.io.lab:s1", True), ("nqn.2026-01.io.lab", True),
    ("nqn.2026-13.io.lab:s1", False), ("nqn.2026-00.io.lab:s1", False),
    ("nqn.20261.io.lab:s1", False), ("has space", False),
])
def test_nqn_form(nqn, ok):
    assert (defs.nqn_problem(nqn) is None) is ok


def test_discovery_nqn_is_never_a_subsystem():
    assert defs.nqn_problem(defs.DISCOVERY_NQN) is None
    assert "discovery" in defs.subsystem_nqn_problem(defs.DISCOVERY_NQN)


def test_rel_path_problem():
    assert defs.rel_path_problem("subsystems/nqn.x:a/namespaces/1/enable") is None
    for bad in ("", "/subsystems/x", "subsystems//x", "subsystems/../hosts/x", "subsystems/./x"):
        assert defs.rel_path_problem(bad) is not None, bad


# -- attribute values at their limits -----------------------------------------------------------

@pytest.mark.parametrize("name,good,bad", [
    ("attr_qid_max", "128", "129"), ("attr_qid_max", "1", "0"),
    ("ana_grpid", "128", "129"), ("ana_grpid", "1", "0"),
    ("addr_portid", "65535", "65536"), ("addr_portid", "0", "-1"),
    ("attr_cntlid_min", "1", "0"), ("attr_cntlid_max", "65535", "65536"),
    ("attr_vendor_id", "0xffff", "0x10000"), ("attr_ieee_oui", "0xffffff", "0x1000000"),
    ("attr_serial", "x" * 20, "x" * 21), ("attr_model", "x" * 40, "x" * 41),
    ("attr_firmware", "x" * 8, "x" * 9),
    ("addr_traddr", "a" * 256, "a" * 257), ("addr_trsvcid", "1" * 32, "1" * 33),
    ("p2pmem", "0000:03:00.0", "03:00.0"), ("p2pmem", "1", "auto"),
    ("dhchap_hash", "hmac(sha512)", "hmac(md5)"), ("ana_state", "change", "gone"),
    ("attr_allow_any_host", "yes", "maybe"),
])
def test_attribute_values_at_n_and_n_plus_1(name, good, bad):
    assert spec.value_problem(name, good) is None
    assert spec.value_problem(name, bad) is not None


def test_map_type_is_a_string_in_json():
    assert json.dumps({MapType.BUS_ADDR: [MapType.NOT_SUPPORTED]}) == \
        '{"bus_addr": ["not_supported"]}'
    assert MapType.THRU_HOST_BRIDGE == "thru_host_bridge"


# -- state files: ids and NQNs at N and N+1 -----------------------------------------------------

def _doc(nqn=S1, nsid=1, portid=1):
    return {"hosts": [{"nqn": H1}],
            "subsystems": [{"nqn": nqn, "allowed_hosts": [H1],
                            "namespaces": [{"nsid": nsid, "enable": 0}]}],
            "ports": [{"portid": portid, "addr": {"trtype": "loop"}, "subsystems": [nqn]}]}


# The limits are written here from the kernel's source, never read from nvmet_p2p.defs:
# nsid: drivers/nvme/target/configfs.c nvmet_ns_make() parses the name with kstrtou32() and
#   refuses 0 and NVME_NSID_ALL (0xffffffff, include/linux/nvme.h): 1..0xfffffffe;
# port id: nvmet_ports_make() parses it with kstrtou16(): 0..65535;
# NQN: NVMF_NQN_SIZE 223 (include/linux/nvme.h), the longest NQN a host connects with.
@pytest.mark.parametrize("good,bad", [
    (dict(nqn=nqn_of_length(223)), dict(nqn=nqn_of_length(224))),
    (dict(nsid=0xFFFFFFFE), dict(nsid=0xFFFFFFFF)),
    (dict(nsid=1), dict(nsid=0)),
    (dict(portid=65535), dict(portid=65536)),
])
def test_state_file_limits_at_n_and_n_plus_1(good, bad):
    statefile.parse(_doc(**good))
    with pytest.raises(statefile.StateFileError):
        statefile.parse(_doc(**bad))


@pytest.mark.parametrize("name", [".", "..", "a/b"])
def test_state_file_refuses_referral_names_that_are_paths(name):
    doc = _doc()
    doc["ports"][0]["referrals"] = [{"name": name}]
    with pytest.raises(statefile.StateFileError, match="not a valid directory name"):
        statefile.parse(doc)


# -- the planner checks names whatever made the desired state -----------------------------------

def _desired(nqn=S1, host=H1, referral="r1", portid=1, nsid=1):
    s = st.TargetState()
    s.hosts[host] = st.Host(host)
    sub = st.Subsystem(nqn, {"attr_allow_any_host": "0"}, [host])
    sub.namespaces[nsid] = st.Namespace(nsid, False, {})
    s.subsystems[nqn] = sub
    port = st.Port(portid, {"addr_trtype": "loop"}, [nqn])
    port.referrals[referral] = st.Referral(referral)
    s.ports[portid] = port
    return s


@pytest.mark.parametrize("kw,needle", [
    (dict(nqn=EVIL), "subsystem NQN"),
    (dict(nqn=defs.DISCOVERY_NQN), "discovery"),
    (dict(nqn=nqn_of_length(224)), "224 bytes"),
    (dict(host="nqn.2026-11.io.x:a/../../subsystems"), "host NQN"),
    (dict(host=".."), "host NQN"),
    (dict(referral="../../subsystems/x"), "referral"),
    (dict(referral=".."), "referral"),
    (dict(portid=70000), "port id 70000"),
    (dict(nsid=0), "nsid 0"),
])
def test_build_plan_refuses_names_that_are_not_configfs_names(kw, needle):
    with pytest.raises(PlanError, match="configfs cannot hold") as e:
        build_plan(st.TargetState(), _desired(**kw))
    assert needle in str(e.value)


def test_build_plan_accepts_the_longest_nqn():
    p = build_plan(st.TargetState(), _desired(nqn=nqn_of_length(223)))
    assert any(o.action == "mkdir" and o.path == f"subsystems/{nqn_of_length(223)}" for o in p.ops)


def test_reconcile_of_a_path_like_name_writes_nothing(tmp_path):
    cfs = FakeNvmet(str(tmp_path / "root"))
    before = dump(cfs)
    with pytest.raises(PlanError):
        reconcile(cfs.root, _desired(nqn=EVIL), str(tmp_path / "state"), cfs=cfs)
    assert cfs.writes == 0 and dump(cfs) == before


def test_a_saved_plan_with_a_path_outside_nvmet_is_refused():
    p = build_plan(st.TargetState(), _desired())
    d = p.to_dict(secrets=True)
    Plan.from_dict(copy.deepcopy(d))
    d["ops"][0]["path"] = "subsystems/../../../../etc/evil"
    with pytest.raises(InputError, match="not a configfs path"):
        Plan.from_dict(d)
    d["ops"][0]["path"] = "hosts/x"
    d["ops"][0]["target"] = "/etc"
    with pytest.raises(InputError, match="not a configfs path"):
        Plan.from_dict(d)


def test_configfs_mutations_refuse_paths_that_leave_nvmet(tmp_path):
    cfs = FakeNvmet(str(tmp_path / "root"))
    for call in (lambda: cfs.mkdir("subsystems/../hosts/x"), lambda: cfs.rmdir("/etc"),
                 lambda: cfs.write("subsystems/./x", "1"),
                 lambda: cfs.symlink("../../x", "ports/1/subsystems/x"),
                 lambda: cfs.unlink("hosts/..")):
        with pytest.raises(ConfigfsError, match="refused by nvmet-p2p"):
            call()
    assert cfs.writes == 0
