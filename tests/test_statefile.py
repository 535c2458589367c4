import copy
import json
import os
import stat

import pytest

from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet import statefile

DATA = os.path.join(os.path.dirname(__file__), "data", "nvmetcli")

H1 = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
S1 = "nqn.2026-11.io.lab:s1"

# what `nvmetcli save` writes on a 7.3 kernel (groups of every writable file, ana twice)
NVMETCLI_DUMP_73 = {
    "discovery": {"nqn": "nqn.2014-08.org.nvmexpress.discovery"},
    "hosts": [{"dhchap": {"ctrl_key": "", "dhgroup": "null", "hash": "hmac(sha256)", "key": ""},
               "nqn": H1}],
    "ports": [{"addr": {"adrfam": "ipv4", "traddr": "10.77.0.1", "treq": "not specified",
                        "trsvcid": "4420", "trtype": "rdma", "tsas": "connected"},
               "ana_groups": [{"ana": {"state": "optimized"}, "grpid": 1}],
               "param": {"inline_data_size": "0", "max_queue_size": "128", "mdts": "0",
                         "pi_enable": "0"},
               "portid": 1, "referrals": [], "subsystems": [S1]}],
    "subsystems": [{"allowed_hosts": [H1],
                    "attr": {"allow_any_host": "0", "cntlid_max": "65519", "cntlid_min": "1",
                             "firmware": "7.3.4+de", "ieee_oui": "0x000000", "model": "Linux",
                             "pi_enable": "0", "qid_max": "128", "serial": "0b7509ca7e8deb2c6394",
                             "subsys_vendor_id": "0x0", "vendor_id": "0x0", "version": "2.1"},
                    "namespaces": [{"ana": {"grpid": "1"}, "ana_grpid": 1,
                                    "device": {"nguid": "00000000-0000-0000-0000-000000000000",
                                               "path": "/dev/nvme0n1",
                                               "uuid": "fbb6ee94-9e8d-4ec3-8364-4657c68f9bb6"},
                                    "enable": 1, "nsid": 1, "resv": {"enable": "0"}}],
                    "nqn": S1}],
}


@pytest.mark.parametrize("name", ["loop.json", "rdma.json", "tcp.json"])
def test_reads_nvmetcli_example_files(name):
    s = statefile.load(os.path.join(DATA, name))
    assert len(s.subsystems) == 1
    sub = next(iter(s.subsystems.values()))
    ns = sub.namespaces[1]
    assert ns.enable and ns.attrs["device_path"].startswith("/dev/")
    port = next(iter(s.ports.values()))
    assert port.attrs["addr_trtype"] == name.split(".")[0]
    assert port.subsystems == [sub.nqn]
    if name == "loop.json":
        # nvmetcli saves unset address fields as "": they mean "leave as the kernel has it"
        assert "addr_adrfam" not in port.attrs and "addr_traddr" not in port.attrs
        assert sub.allowed_hosts == ["hostnqn"] and "hostnqn" in s.hosts
    if name == "tcp.json":
        assert port.ana_groups == {1: "optimized"} and port.attrs["param_inline_data_size"] == "16384"


def test_reads_a_full_nvmetcli_dump():
    s = statefile.parse(NVMETCLI_DUMP_73)
    ns = s.subsystems[S1].namespaces[1]
    assert ns.attrs["ana_grpid"] == "1" and ns.attrs["resv_enable"] == "0"
    assert s.hosts[H1].attrs["dhchap_hash"] == "hmac(sha256)"
    assert s.discovery_nqn == "nqn.2014-08.org.nvmexpress.discovery"


def test_round_trip_dump_parse_dump_is_byte_identical():
    doc = copy.deepcopy(NVMETCLI_DUMP_73)
    doc["subsystems"][0]["namespaces"][0]["p2pmem"] = "0000:04:00.0"
    doc["subsystems"][0]["namespaces"][0]["buffered_io"] = "0"
    s = statefile.parse(doc)
    text = statefile.dumps(s)
    assert statefile.dumps(statefile.parse(json.loads(text))) == text
    out = json.loads(text)
    ns = out["subsystems"][0]["namespaces"][0]
    assert ns["p2pmem"] == "0000:04:00.0" and ns["buffered_io"] == "0"
    assert ns["ana"] == {"grpid": "1"} and ns["ana_grpid"] == 1     # like nvmetcli
    assert statefile.nvmetcli_problems(out) == []


def test_nvmetcli_rules_catch_what_nvmetcli_would_trip_on():
    bad = {"hosts": [], "subsystems": [{"nqn": "a", "namespaces": [{"nsid": 9000, "device": {}}],
                                        "allowed_hosts": ["ghost"]}],
           "ports": [{"portid": 1, "subsystems": ["b"], "ana_groups": [{"grpid": 0}]}]}
    paths = [p for p, _ in statefile.nvmetcli_problems(bad)]
    assert "$.subsystems[0].namespaces[0].nsid" in paths
    assert "$.subsystems[0].allowed_hosts[0]" in paths
    assert "$.ports[0].subsystems[0]" in paths and "$.ports[0].ana_groups[0]" in paths


def _problems(doc):
    with pytest.raises(statefile.StateFileError) as e:
        statefile.parse(doc, where="t.json")
    return dict(e.value.problems)


def _base():
    return copy.deepcopy(NVMETCLI_DUMP_73)


@pytest.mark.parametrize("mutate,path,words", [
    (lambda d: d.update(bogus=1), "$.bogus", "unknown key"),
    (lambda d: d["subsystems"][0]["namespaces"][0].update(p2p="1"), "$.subsystems[0].namespaces[0].p2p", "unknown key"),
    (lambda d: d["subsystems"][0]["attr"].update(colour="red"), "$.subsystems[0].attr.colour", "unknown key"),
    (lambda d: d["subsystems"][0]["namespaces"][0].update(nsid="1"),
     "$.subsystems[0].namespaces[0].nsid", "must be an integer"),
    (lambda d: d["subsystems"][0]["attr"].update(allow_any_host=0),
     "$.subsystems[0].attr.allow_any_host", "must be a string"),
    (lambda d: d["ports"][0].update(subsystems="x"), "$.ports[0].subsystems", "must be a list"),
    (lambda d: d["subsystems"][0]["namespaces"][0].update(nsid=0),
     "$.subsystems[0].namespaces[0].nsid", "out of range 1..4294967294"),
    (lambda d: d["subsystems"][0]["namespaces"][0].update(nsid=0xFFFFFFFF),
     "$.subsystems[0].namespaces[0].nsid", "out of range"),
    (lambda d: d["subsystems"][0]["namespaces"].append(dict(d["subsystems"][0]["namespaces"][0])),
     "$.subsystems[0].namespaces[1].nsid", "defined twice"),
    (lambda d: d["ports"][0].update(portid=65536), "$.ports[0].portid", "out of range 0..65535"),
    (lambda d: d["ports"][0].update(portid=-1), "$.ports[0].portid", "out of range"),
    (lambda d: d["subsystems"][0].update(nqn="nqn.2026-11.io.lab:" + "x" * 210), "$.subsystems[0].nqn", "at most 223"),
    (lambda d: d["subsystems"][0].update(nqn="nqn.20261.io.lab:s1"), "$.subsystems[0].nqn", "malformed"),
    (lambda d: d["subsystems"][0].update(nqn="nqn.2026-13.io.lab:s1"), "$.subsystems[0].nqn", "month"),
    (lambda d: d["subsystems"][0].update(nqn="has space"), "$.subsystems[0].nqn", "printable ASCII"),
    (lambda d: d["subsystems"][0].update(nqn="nqn.2014-08.org.nvmexpress.discovery"),
     "$.subsystems[0].nqn", "discovery"),
    (lambda d: d["hosts"][0].update(nqn="a/b"), "$.hosts[0].nqn", "'/'"),
    (lambda d: d["subsystems"][0]["allowed_hosts"].append("nqn.2014-08.org.example:ghost"),
     "$.subsystems[0].allowed_hosts[1]", "not defined in $.hosts"),
    (lambda d: d["ports"][0]["subsystems"].append("nqn.2026-11.io.lab:ghost"),
     "$.ports[0].subsystems[1]", "not defined in $.subsystems"),
    (lambda d: d["subsystems"][0]["attr"].update(allow_any_host="1"),
     "$.subsystems[0].attr.allow_any_host", "cannot coexist"),
    (lambda d: d["subsystems"][0]["namespaces"][0].update(p2pmem="auto"),
     "$.subsystems[0].namespaces[0].p2pmem", "refused by the kernel"),
    (lambda d: d["subsystems"][0]["namespaces"][0].update(p2pmem="04:00.0"),
     "$.subsystems[0].namespaces[0].p2pmem", "domain"),
    (lambda d: d["subsystems"][0]["namespaces"][0].update(ana_grpid=2),
     "$.subsystems[0].namespaces[0].ana_grpid", "contradicts"),
    (lambda d: d["subsystems"][0]["attr"].update(serial="x" * 21), "$.subsystems[0].attr.serial", "1..20"),
    (lambda d: d["subsystems"][0]["attr"].update(qid_max="129"), "$.subsystems[0].attr.qid_max", "1..128"),
    (lambda d: d["ports"][0]["addr"].update(trtype="bogus"), "$.ports[0].addr.trtype", "not a transport"),
    (lambda d: d["ports"][0]["ana_groups"][0].update(grpid=129), "$.ports[0].ana_groups[0].grpid", "out of range"),
    (lambda d: d["hosts"][0]["dhchap"].update(key="secret-password"), "$.hosts[0].dhchap.key", "DHHC-1"),
    (lambda d: d["hosts"].append({"nqn": d["hosts"][0]["nqn"]}), "$.hosts[1].nqn", "defined twice"),
    (lambda d: d["subsystems"][0]["namespaces"][0]["device"].update(path=""),
     "$.subsystems[0].namespaces[0]", "needs device.path"),
    (lambda d: d["subsystems"][0]["namespaces"][0]["device"].update(uuid="not-a-uuid"),
     "$.subsystems[0].namespaces[0].device.uuid", "not a UUID"),
])
def test_every_bad_input_class_is_reported_with_its_json_path(mutate, path, words):
    d = _base()
    mutate(d)
    probs = _problems(d)
    assert path in probs, probs
    assert words in probs[path]


def test_secrets_never_appear_in_errors():
    d = _base()
    d["hosts"][0]["dhchap"]["key"] = "my-secret-password"
    with pytest.raises(statefile.StateFileError) as e:
        statefile.parse(d)
    assert "my-secret-password" not in str(e.value)


def test_namespace_limit_per_subsystem():
    d = _base()
    ns = d["subsystems"][0]["namespaces"][0]
    d["subsystems"][0]["namespaces"] = [dict(ns, nsid=i) for i in range(1, 1026)]
    assert "at most 1024" in _problems(d)["$.subsystems[0].namespaces"]


def test_all_problems_are_listed_at_once(tmp_path):
    d = _base()
    d["ports"][0]["portid"] = 70000
    d["subsystems"][0]["namespaces"][0]["nsid"] = 0
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(d))
    with pytest.raises(InputError) as e:
        statefile.load(str(f))
    text = str(e.value)
    assert text.startswith(f"{f}: 2 problems")
    assert "$.ports[0].portid" in text and "$.subsystems[0].namespaces[0].nsid" in text


def test_load_errors_name_the_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{ nope")
    with pytest.raises(InputError, match=r"x.json: not valid JSON.*line 1"):
        statefile.load(str(f))
    with pytest.raises(InputError, match="no such file"):
        statefile.load(str(tmp_path / "missing.json"))


def test_atomic_save_mode_0600_and_rotating_backups(tmp_path):
    s = statefile.parse(_base())
    f = tmp_path / "etc" / "config.json"
    assert statefile.save(s, str(f)) is None
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    first = f.read_text()
    assert statefile.save(s, str(f)) is None                    # identical: no backup churn
    s.subsystems[S1].attrs["attr_model"] = "second"
    assert statefile.save(s, str(f)) == f"{f}.1"
    assert (tmp_path / "etc" / "config.json.1").read_text() == first
    for i in range(3, 6):
        s.subsystems[S1].attrs["attr_model"] = f"v{i}"
        statefile.save(s, str(f))
    names = sorted(p.name for p in (tmp_path / "etc").iterdir())
    assert names == ["config.json", "config.json.1", "config.json.2", "config.json.3"]
    assert all(stat.S_IMODE(os.stat(tmp_path / "etc" / n).st_mode) == 0o600 for n in names)
    assert not [n for n in names if n.endswith(".tmp")]


UUID1 = "00000000-0000-4000-8000-000000000001"
FAST_SHAPE = [   # namespace entries of the shape _namespace_fast takes (or must hand over)
    {"nsid": 1, "enable": 1, "device": {"path": "/dev/nullb0", "uuid": UUID1}},
    {"nsid": 2, "enable": True, "device": {"uuid": UUID1, "path": "/dev/nullb0"}},
    {"nsid": 3, "enable": 0, "device": {}},
    {"nsid": 4, "enable": False},
    {"nsid": 5, "device": {"path": "/dev/nullb0", "nguid": "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"}},
    {"nsid": 6, "enable": 0, "device": {"path": "(null)", "uuid": ""}},
    {"nsid": 4294967294, "enable": 1, "device": {"path": "/dev/nullb0"}},
    # each of these is wrong; the fast path must hand it over so that it is reported
    {"nsid": 7, "enable": 2, "device": {"path": "/dev/nullb0"}},
    {"nsid": 8, "enable": "1", "device": {"path": "/dev/nullb0"}},
    {"nsid": True, "enable": 1, "device": {"path": "/dev/nullb0"}},
    {"nsid": "9", "enable": 1, "device": {"path": "/dev/nullb0"}},
    {"nsid": 9.0, "enable": 1, "device": {"path": "/dev/nullb0"}},
    {"nsid": 0, "enable": 1, "device": {"path": "/dev/nullb0"}},
    {"nsid": 4294967295, "enable": 1, "device": {"path": "/dev/nullb0"}},
    {"enable": 1, "device": {"path": "/dev/nullb0"}},
    {"nsid": 10, "enable": 1, "device": None},
    {"nsid": 11, "enable": 1, "device": "/dev/nullb0"},
    {"nsid": 12, "enable": 1, "device": {"path": 1}},
    {"nsid": 13, "enable": 1, "device": {"path": ""}},
    {"nsid": 14, "enable": 1, "device": {"path": "(null)"}},
    {"nsid": 15, "enable": 1},
    {"nsid": 16, "enable": 1, "device": {"path": "/dev/nullb0", "uuid": "not-a-uuid"}},
    {"nsid": 17, "enable": 1, "device": {"path": "/dev/nullb0", "nguid": "xyz"}},
    {"nsid": 18, "enable": 1, "device": {"path": "/dev/nullb0", "colour": "red"}},
    {"nsid": 1, "enable": 1, "device": {"path": "/dev/nullb0"}},      # nsid 1 again
    "not an object",
]


def test_fast_namespace_path_agrees_with_the_full_validator():
    """statefile parses the usual namespace entry without building JSON paths; for every entry
    it takes, the full validator must give the same namespace, and everything the full
    validator refuses must be handed over to it (so it is reported with its path)."""
    from nvmet_p2p.nvmet import state as st
    fast, slow = st.Subsystem(S1), st.Subsystem(S1)
    took = 0
    for j, n in enumerate(FAST_SHAPE):
        v = statefile._V()
        statefile._namespace(v, f"$.ns[{j}]", copy.deepcopy(n), slow)
        if statefile._namespace_fast(copy.deepcopy(n), fast):
            took += 1
            assert not v.problems, (n, v.problems)
        else:
            statefile._namespace(statefile._V(), f"$.ns[{j}]", copy.deepcopy(n), fast)
    assert took == 7
    assert fast.namespaces == slow.namespaces
    assert [list(ns.attrs) for ns in fast.namespaces.values()] == \
        [list(ns.attrs) for ns in slow.namespaces.values()]          # same order too
    # and through parse(): the wrong ones are reported with their JSON paths
    d = {"subsystems": [{"nqn": S1, "namespaces": FAST_SHAPE}]}
    probs = _problems(d)
    for j in range(7, len(FAST_SHAPE)):
        assert any(p.startswith(f"$.subsystems[0].namespaces[{j}]") for p in probs), (j, probs)
