"""The apply engine's bookkeeping on a fake configfs that follows the lab kernel's rules
(tests/support/fakenvmet.py). The real kernel is exercised by tests/lab/test_lab_nvmet.py."""

import copy
import json

import pytest

from nvmet_p2p.errors import Busy
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import ApplyFailed, ManagedStore, apply_lock, clear, reconcile
from nvmet_p2p.nvmet.configfs import capabilities, read_state
from support.fakenvmet import FakeNvmet, dump

S1, S2 = "nqn.2026-11.io.lab:s1", "nqn.2026-11.io.lab:s2"
H1 = "nqn.2014-08.org.nvmexpress:uuid:host1"
DOC = {
    "hosts": [{"nqn": H1}],
    "subsystems": [
        {"nqn": S1, "attr": {"allow_any_host": "0", "serial": "t1"}, "allowed_hosts": [H1],
         "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme0n1"}, "p2pmem": "0000:04:00.0"},
                        {"nsid": 2, "enable": 1, "device": {"path": "/dev/nvme2n1"}, "p2pmem": "0000:05:00.0"}]},
        {"nqn": S2, "attr": {"allow_any_host": "1"},
         "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme3n1"}, "p2pmem": "0"}]}],
    "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "10.77.0.1", "trsvcid": "4420"},
               "subsystems": [S1, S2]},
              {"portid": 3, "addr": {"trtype": "loop"}, "subsystems": [S2]}],
}


@pytest.fixture
def env(tmp_path):
    return FakeNvmet(str(tmp_path / "root")), str(tmp_path / "state")


def go(env, doc, **kw):
    cfs, sd = env
    return reconcile(cfs.root, statefile.parse(doc), sd, cfs=cfs, **kw)


def test_apply_then_reapply_is_zero_writes(env):
    cfs, sd = env
    out = go(env, DOC)
    assert out.result.writes == len(out.plan.ops) == cfs.writes
    live = read_state(cfs)
    assert live.ports[1].attrs["param_max_queue_size"] == "128"      # transport filled it in
    assert live.subsystems[S1].attrs["attr_serial"] == "t1"           # read back without padding
    w = cfs.writes
    again = go(env, DOC)
    assert again.plan.ops == [] and cfs.writes == w
    assert ManagedStore(sd).load().subsystems == {S1, S2}


@pytest.mark.parametrize("mutate,errname,words", [
    (lambda d: d["subsystems"][0]["namespaces"].append({"nsid": 3, "enable": 1, "device": {"path": "/dev/gone"}}),
     "ENOENT", "failed to open block device /dev/gone"),
    (lambda d: d["subsystems"][1]["namespaces"][0].update(p2pmem="0000:04:00.0"),
     "EINVAL", "cannot be used for peer-to-peer DMA"),
    (lambda d: d["ports"].append({"portid": 4, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "10.99.0.1",
                                                        "trsvcid": "4420"}, "subsystems": [S1]}),
     "EADDRNOTAVAIL", "10.99.0.1"),
    (lambda d: d["ports"][0]["addr"].update(trsvcid="4421") or d["ports"][0]["addr"].update(traddr="10.99.0.1"),
     "EADDRNOTAVAIL", "10.99.0.1"),
])
def test_failure_mid_apply_restores_the_tree_exactly(env, mutate, errname, words):
    cfs, sd = env
    go(env, DOC)
    cfs.kmsg.clear()
    before = dump(cfs)
    managed_before = ManagedStore(sd).load()
    doc = copy.deepcopy(DOC)
    doc["hosts"].append({"nqn": "nqn.2014-08.org.example:late"})     # a step that succeeds first
    mutate(doc)
    with pytest.raises(ApplyFailed) as e:
        go(env, doc)
    exc = e.value
    assert exc.to_dict()["errno_name"] == errname
    assert exc.rolled_back >= 1 and not exc.rollback_errors
    assert "configfs is as before" in str(exc)
    assert any(words in m for m in cfs.kmsg)
    assert dump(cfs) == before
    assert ManagedStore(sd).load() == managed_before


def test_rollback_recreates_removed_objects_with_their_attributes(env):
    cfs, sd = env
    go(env, DOC)
    before = dump(cfs)
    doc = copy.deepcopy(DOC)
    del doc["subsystems"][1]
    doc["ports"] = [{"portid": 1, "addr": DOC["ports"][0]["addr"], "subsystems": [S1]},
                    {"portid": 4, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "10.99.0.1",
                                           "trsvcid": "1"}, "subsystems": [S1]}]
    with pytest.raises(ApplyFailed) as e:
        go(env, doc, prune=True)
    assert e.value.rolled_back > 5
    assert dump(cfs) == before          # S2, its namespace (same uuid), port 3 and links are back


def test_lock_refuses_a_second_apply(env):
    cfs, sd = env
    with apply_lock(sd):
        with pytest.raises(Busy, match="another nvmet-p2p apply is running .pid"):
            go(env, DOC)
    assert cfs.writes == 0


def test_clear_keeps_hand_made_objects(env):
    cfs, sd = env
    go(env, DOC)
    cfs.mkdir("subsystems/nqn.user:mine")
    out = clear(cfs.root, sd, cfs=cfs)
    live = read_state(cfs)
    assert set(live.subsystems) == {"nqn.user:mine"} and not live.ports and not live.hosts
    assert out.result.writes == len(out.plan.ops)
    clear(cfs.root, sd, everything=True, cfs=cfs)
    assert not read_state(cfs).subsystems


def test_capabilities_observed_versus_release_table(tmp_path):
    old = FakeNvmet(str(tmp_path / "k61"), without=("p2pmem", "resv_enable"))
    caps = capabilities(old, "6.1.0-47-amd64")
    assert caps.kinds["namespace"].source == "release table"
    assert "resv_enable" not in caps.kinds["namespace"].attrs         # 6.13+
    old.mkdir("subsystems/x")
    old.mkdir("subsystems/x/namespaces/1")
    caps = capabilities(old, "6.1.0-47-amd64")
    k = caps.kinds["namespace"]
    assert k.source == "observed" and "p2pmem" not in k.attrs and "p2pmem" in k.missing
    with pytest.raises(Exception, match="no namespace attribute 'p2pmem'"):
        reconcile(old.root, statefile.parse(DOC), str(tmp_path / "st"), cfs=old)


def test_save_restore_round_trip_on_the_fake(env, tmp_path):
    cfs, sd = env
    go(env, DOC)
    f1 = tmp_path / "a.json"
    statefile.save(read_state(cfs), str(f1))
    clear(cfs.root, sd, cfs=cfs)
    go(env, json.loads(f1.read_text()))
    f2 = tmp_path / "b.json"
    statefile.save(read_state(cfs), str(f2))
    assert f1.read_bytes() == f2.read_bytes()


# -- passthru and referrals through the apply engine ------------------------------------------

S3 = "nqn.2026-11.io.lab:pt"
REFERRAL = {"name": "r1", "enable": 1, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "10.77.0.2",
                                                "trsvcid": "4420", "portid": "2"}}


def with_extras(passthru_device="/dev/nvme0", traddr="10.77.0.2"):
    doc = copy.deepcopy(DOC)
    doc["subsystems"].append({"nqn": S3, "attr": {"allow_any_host": "0"},
                              "passthru": [{"device": {"path": passthru_device}, "enable": 1}]})
    doc["ports"][0]["referrals"] = [dict(REFERRAL, addr=dict(REFERRAL["addr"], traddr=traddr))]
    return doc


def test_passthru_and_referral_apply_reapply_and_change(env):
    cfs, sd = env
    go(env, with_extras())
    live = read_state(cfs)
    assert live.subsystems[S3].passthru["device_path"] == "/dev/nvme0"
    assert live.subsystems[S3].passthru["enable"] == "1"
    ref = live.ports[1].referrals["r1"]
    assert ref.enable and ref.attrs["addr_traddr"] == "10.77.0.2" and ref.attrs["addr_portid"] == "2"
    w = cfs.writes
    assert go(env, with_extras()).plan.ops == [] and cfs.writes == w
    # the kernel refuses both changes while enabled: the plan disables, writes, re-enables
    out = go(env, with_extras(passthru_device="/dev/nvme3", traddr="10.77.0.3"))
    assert out.result.writes == 6
    live = read_state(cfs)
    assert live.subsystems[S3].passthru["device_path"] == "/dev/nvme3"
    assert live.ports[1].referrals["r1"].attrs["addr_traddr"] == "10.77.0.3"
    assert live.ports[1].referrals["r1"].enable and live.subsystems[S3].passthru["enable"] == "1"
    assert (1, "r1") in ManagedStore(sd).load().referrals


def test_failed_passthru_enable_rolls_back_the_referral_too(env):
    cfs, sd = env
    go(env, DOC)
    before = dump(cfs)
    with pytest.raises(ApplyFailed) as e:
        go(env, with_extras(passthru_device="/dev/nvme9"))
    assert e.value.to_dict()["errno_name"] == "ENOENT"
    assert any("failed to open device /dev/nvme9" in m for m in cfs.kmsg)
    assert dump(cfs) == before


def test_pruned_referral_is_removed_and_rollback_recreates_it(env):
    cfs, sd = env
    go(env, with_extras())
    before = dump(cfs)
    doc = with_extras()
    doc["ports"][0]["referrals"] = []
    doc["ports"].append({"portid": 4, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "10.99.0.1",
                                               "trsvcid": "1"}, "subsystems": [S1]})
    with pytest.raises(ApplyFailed):
        go(env, doc, prune=True)
    assert dump(cfs) == before                   # r1 is back, enabled, with its address
    del doc["ports"][-1]
    go(env, doc, prune=True)
    assert "r1" not in read_state(cfs).ports[1].referrals
