"""Diff and ordering on plain data (no filesystem)."""

import copy

import pytest

from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.plan import Managed, Plan, PlanError, build_plan, clear_plan, render
from nvmet_p2p.nvmet.spec import normalize

S1, S2 = "nqn.2026-11.io.lab:s1", "nqn.2026-11.io.lab:s2"
H1 = "nqn.2014-08.org.nvmexpress:uuid:host1"
KEY = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"


def desired():
    s = st.TargetState()
    s.hosts[H1] = st.Host(H1, {"dhchap_key": KEY})
    sub = st.Subsystem(S1, {"attr_allow_any_host": "0", "attr_serial": "labsub1"}, [H1])
    sub.namespaces[1] = st.Namespace(1, True, {"device_path": "/dev/nvme0n1", "p2pmem": "0000:04:00.0"})
    sub.namespaces[2] = st.Namespace(2, True, {"device_path": "/dev/nvme2n1", "p2pmem": "0000:05:00.0"})
    s.subsystems[S1] = sub
    s.subsystems[S2] = st.Subsystem(S2, {"attr_allow_any_host": "1"}, [],
                                    {1: st.Namespace(1, True, {"device_path": "/dev/nullb0"})})
    s.ports[1] = st.Port(1, {"addr_trtype": "rdma", "addr_adrfam": "ipv4", "addr_traddr": "10.77.0.1",
                             "addr_trsvcid": "4420", "param_inline_data_size": "0"}, [S1, S2])
    s.ports[3] = st.Port(3, {"addr_trtype": "loop"}, [S2])
    return s


def live_after(d):
    """What the kernel shows after applying d (transport defaults filled in, serial padded)."""
    s = copy.deepcopy(d)
    s.subsystems[S1].attrs["attr_serial"] = "labsub1             "
    s.ports[1].attrs["addr_tsas"] = "connected"
    s.ports[1].attrs["param_max_queue_size"] = "128"
    s.ports[1].ana_groups = {1: "optimized"}
    s.ports[3].ana_groups = {1: "optimized"}
    return s


def idx(plan, action, path):
    for i, o in enumerate(plan.ops):
        if o.action == action and o.path == path:
            return i
    raise AssertionError(f"{action} {path} not in plan:\n" + render(plan, steps=True))


def test_create_from_empty_orders_ops_as_the_kernel_demands():
    p = build_plan(st.TargetState(), desired())
    ns1 = f"subsystems/{S1}/namespaces/1"
    assert idx(p, "mkdir", f"hosts/{H1}") < idx(p, "link", f"subsystems/{S1}/allowed_hosts/{H1}")
    assert idx(p, "write", f"{ns1}/device_path") < idx(p, "write", f"{ns1}/enable")
    assert idx(p, "write", f"{ns1}/p2pmem") < idx(p, "write", f"{ns1}/enable")
    # allow_any_host=1 is written after every host link
    last_link = max(i for i, o in enumerate(p.ops) if "/allowed_hosts/" in o.path)
    assert idx(p, "write", f"subsystems/{S2}/attr_allow_any_host") > last_link
    # port attributes before the first link of that port; trtype first of them
    assert idx(p, "write", "ports/1/addr_trtype") < idx(p, "write", "ports/1/addr_traddr")
    assert idx(p, "write", "ports/1/param_inline_data_size") < idx(p, "link", f"ports/1/subsystems/{S1}")
    # namespaces are enabled before any port exports them
    assert idx(p, "write", f"{ns1}/enable") < idx(p, "link", f"ports/1/subsystems/{S1}")
    # a new subsystem needs no allow_any_host=0 write (kernel default), p2pmem 0 is not written
    assert not [o for o in p.ops if o.path == f"subsystems/{S1}/attr_allow_any_host"]
    assert p.managed_after.namespaces == {(S1, 1), (S1, 2), (S2, 1)}


def test_reapply_same_state_is_zero_operations():
    d = desired()
    p = build_plan(live_after(d), d, Managed.of_state(d))
    assert p.ops == [] and p.empty
    assert "No changes" in render(p)


def test_equal_values_in_kernel_spelling_are_no_change():
    d = desired()
    live = live_after(d)
    d.subsystems[S2].attrs["attr_allow_any_host"] = "yes"
    d.ports[1].attrs["param_max_queue_size"] = "-1"        # transport default, port enabled
    d.subsystems[S1].namespaces[1].attrs["p2pmem"] = "0000:04:00.0".upper()
    live.subsystems[S1].attrs["attr_version"] = "1.3"
    d.subsystems[S1].attrs["attr_version"] = "1.3.0"
    assert build_plan(live, d, Managed.of_state(d)).ops == []
    assert normalize("p2pmem", "on") is True and normalize("attr_vendor_id", "0x0001") == 1


def test_one_namespace_change_cycles_only_that_namespace():
    d = desired()
    live = live_after(d)
    d.subsystems[S1].namespaces[2].attrs["p2pmem"] = "0000:04:00.0"
    p = build_plan(live, d, Managed.of_state(d))
    ns2 = f"subsystems/{S1}/namespaces/2"
    assert [(o.action, o.path, o.value) for o in p.ops] == [
        ("write", f"{ns2}/enable", "0"), ("write", f"{ns2}/p2pmem", "0000:04:00.0"),
        ("write", f"{ns2}/enable", "1")]
    assert [c.action for c in p.changes] == ["cycle"]


def test_ana_grpid_is_changed_live_without_cycling():
    d = desired()
    live = live_after(d)
    d.subsystems[S1].namespaces[1].attrs["ana_grpid"] = "2"
    d.ports[1].ana_groups = {2: "non-optimized"}
    p = build_plan(live, d, Managed.of_state(d))
    assert not [o for o in p.ops if o.path.endswith("/enable")]


def test_port_change_unlinks_sets_and_relinks_including_foreign_links():
    d = desired()
    live = live_after(d)
    live.ports[1].subsystems.append("nqn.2026-11.io.user:handmade")
    live.subsystems["nqn.2026-11.io.user:handmade"] = st.Subsystem("nqn.2026-11.io.user:handmade")
    d.ports[1].attrs["addr_trsvcid"] = "4421"
    p = build_plan(live, d, Managed.of_state(d))
    acts = [(o.action, o.path.split("/", 2)[-1]) for o in p.ops]
    unl = [i for i, (a, _) in enumerate(acts) if a == "unlink"]
    w = idx(p, "write", "ports/1/addr_trsvcid")
    lnk = [i for i, (a, _) in enumerate(acts) if a == "link"]
    assert len(unl) == 3 and len(lnk) == 3 and max(unl) < w < min(lnk)
    assert any("reconnect" in n for c in p.changes for n in c.notes)


def test_allow_any_host_transitions():
    d = desired()
    live = live_after(d)
    # explicit hosts -> any host: unlink first, then allow_any_host=1
    d.subsystems[S1].allowed_hosts = []
    d.subsystems[S1].attrs["attr_allow_any_host"] = "1"
    p = build_plan(live, d, Managed.of_state(desired()))
    assert idx(p, "unlink", f"subsystems/{S1}/allowed_hosts/{H1}") < \
        idx(p, "write", f"subsystems/{S1}/attr_allow_any_host")
    # any host -> explicit hosts: allow_any_host=0 before the link
    d2 = desired()
    live2 = live_after(d2)
    d2.subsystems[S2].attrs["attr_allow_any_host"] = "0"
    d2.subsystems[S2].allowed_hosts = [H1]
    p2 = build_plan(live2, d2, Managed.of_state(desired()))
    assert idx(p2, "write", f"subsystems/{S2}/attr_allow_any_host") < \
        idx(p2, "link", f"subsystems/{S2}/allowed_hosts/{H1}")


def test_allow_any_host_refused_while_a_foreign_host_link_remains():
    d = desired()
    live = live_after(d)
    d.subsystems[S1].allowed_hosts = []
    d.subsystems[S1].attrs["attr_allow_any_host"] = "1"
    with pytest.raises(PlanError, match="allow_any_host=1"):
        build_plan(live, d, Managed())            # the link was not made by nvmet-p2p


def test_unmanaged_objects_are_never_touched_and_managed_ones_need_prune():
    d = desired()
    live = live_after(d)
    live.subsystems["nqn.2026-11.io.user:handmade"] = st.Subsystem(
        "nqn.2026-11.io.user:handmade", namespaces={1: st.Namespace(1, True, {"device_path": "/dev/sda"})})
    live.ports[9] = st.Port(9, {"addr_trtype": "tcp"}, ["nqn.2026-11.io.user:handmade"])
    managed = Managed.of_state(d)
    smaller = copy.deepcopy(d)
    del smaller.subsystems[S2]
    smaller.ports[1].subsystems = [S1]
    del smaller.ports[3]
    p = build_plan(live, smaller, managed)
    touched = {o.path for o in p.ops}
    assert not [t for t in touched if "handmade" in t or t.startswith("ports/9")]
    # S2 and port 3 left in place; the port-1 link to S2 is a managed link: removed
    assert {(c.action, c.key) for c in p.changes if c.action == "left"} == {("left", S2), ("left", "3")}
    assert [o.path for o in p.ops] == [f"ports/1/subsystems/{S2}"]
    pp = build_plan(live, smaller, managed, prune=True)
    order = [(o.action, o.path) for o in pp.ops]
    assert ("rmdir", f"subsystems/{S2}") in order and ("rmdir", "ports/3") in order
    assert idx(pp, "unlink", f"ports/3/subsystems/{S2}") < idx(pp, "rmdir", f"subsystems/{S2}")
    assert idx(pp, "rmdir", f"subsystems/{S2}/namespaces/1") < idx(pp, "rmdir", f"subsystems/{S2}")
    assert not [o for o in pp.ops if "handmade" in o.path or o.path.startswith("ports/9")]
    assert S2 not in pp.managed_after.subsystems and 3 not in pp.managed_after.ports


def test_adopting_existing_objects_writes_nothing():
    d = desired()
    p = build_plan(live_after(d), d, Managed())
    assert p.ops == [] and {c.action for c in p.changes} == {"adopt"}
    assert p.managed_after.subsystems == {S1, S2}


def test_clear_removes_managed_objects_in_reverse_dependency_order():
    d = desired()
    live = live_after(d)
    live.hosts["nqn.user:h"] = st.Host("nqn.user:h")
    p = clear_plan(live, Managed.of_state(d))
    acts = [(o.action, o.path) for o in p.ops]
    assert ("rmdir", "hosts/nqn.user:h") not in acts
    assert idx(p, "unlink", f"subsystems/{S1}/allowed_hosts/{H1}") < idx(p, "rmdir", f"hosts/{H1}")
    assert idx(p, "unlink", f"ports/1/subsystems/{S1}") < idx(p, "rmdir", "ports/1")
    assert max(i for i, (a, _) in enumerate(acts) if a == "unlink") < \
        min(i for i, (a, _) in enumerate(acts) if a == "rmdir")
    pall = clear_plan(live, Managed(), everything=True)
    assert ("rmdir", "hosts/nqn.user:h") in [(o.action, o.path) for o in pall.ops]


def test_capabilities_refuse_attributes_the_kernel_lacks():
    from nvmet_p2p.nvmet.configfs import Capabilities, KindCapability
    caps = Capabilities("6.1.0", True, {
        "namespace": KindCapability("namespace", ["ana_grpid", "buffered_io", "device_nguid",
                                                  "device_path", "device_uuid", "revalidate_size"],
                                    "observed", "subsystems/x/namespaces/1")})
    with pytest.raises(PlanError, match=r"no namespace attribute 'p2pmem' \(needs CONFIG_PCI_P2PDMA\).*observed"):
        build_plan(st.TargetState(), desired(), caps=caps)


def test_plan_json_round_trip_and_secret_masking():
    p = build_plan(st.TargetState(), desired())
    shown = p.to_dict()
    assert KEY not in str(shown) and "(secret)" in str(shown) and shown["secrets_masked"]
    assert KEY not in render(p, steps=True)
    with pytest.raises(Exception, match="masked"):
        Plan.from_dict(shown)
    full = Plan.from_dict(p.to_dict(secrets=True))
    assert [o.to_dict(True) for o in full.ops] == [o.to_dict(True) for o in p.ops]
    assert full.managed_after == p.managed_after and full.live_digest == p.live_digest


# -- passthru and referrals (pinned before plan.py was split) --------------------------------

S3 = "nqn.2026-11.io.lab:pt"
REF = {"addr_trtype": "tcp", "addr_adrfam": "ipv4", "addr_traddr": "10.77.0.2", "addr_trsvcid": "4420",
       "addr_portid": "2"}


def with_passthru_and_referral(device="/dev/nvme0", enable="1", ref_enable=True, traddr="10.77.0.2"):
    d = desired()
    d.subsystems[S3] = st.Subsystem(S3, {"attr_allow_any_host": "0"},
                                    passthru={"device_path": device, "enable": enable})
    d.ports[1].referrals["r1"] = st.Referral("r1", ref_enable, dict(REF, addr_traddr=traddr))
    return d


def live_with(d):
    s = live_after(d)
    s.subsystems[S3].passthru = dict(d.subsystems[S3].passthru, clear_ids="0", admin_timeout="0",
                                     io_timeout="0")
    s.ports[1].referrals["r1"].attrs["addr_treq"] = "not specified"
    return s


def test_new_passthru_and_referral_are_written_in_the_kernels_order():
    p = build_plan(st.TargetState(), with_passthru_and_referral())
    pt = f"subsystems/{S3}/passthru"
    assert idx(p, "mkdir", f"subsystems/{S3}") < idx(p, "write", f"{pt}/device_path") < \
        idx(p, "write", f"{pt}/enable")
    assert p.ops[idx(p, "write", f"{pt}/enable")].value == "1"
    ref = "ports/1/referrals/r1"
    assert idx(p, "mkdir", "ports/1") < idx(p, "mkdir", ref) < idx(p, "write", f"{ref}/addr_trtype") < \
        idx(p, "write", f"{ref}/addr_traddr") < idx(p, "write", f"{ref}/enable")
    assert [o.path for o in p.ops if o.path.startswith(ref)][-1] == f"{ref}/enable"
    assert (S3 in p.managed_after.subsystems) and (1, "r1") in p.managed_after.referrals


def test_reapplied_passthru_and_referral_are_zero_operations():
    d = with_passthru_and_referral()
    assert build_plan(live_with(d), d, Managed.of_state(d)).ops == []


def test_passthru_device_change_cycles_the_passthru_controller():
    d = with_passthru_and_referral()
    live = live_with(d)
    d.subsystems[S3].passthru["device_path"] = "/dev/nvme3"
    p = build_plan(live, d, Managed.of_state(d))
    pt = f"subsystems/{S3}/passthru"
    assert [(o.path, o.value) for o in p.ops] == [(f"{pt}/enable", "0"), (f"{pt}/device_path", "/dev/nvme3"),
                                                  (f"{pt}/enable", "1")]


def test_passthru_timeouts_change_without_a_cycle_and_disable_alone():
    d = with_passthru_and_referral()
    live = live_with(d)
    d.subsystems[S3].passthru["io_timeout"] = "30"
    p = build_plan(live, d, Managed.of_state(d))
    assert [(o.path, o.value) for o in p.ops] == [(f"subsystems/{S3}/passthru/io_timeout", "30")]
    d2 = with_passthru_and_referral(enable="0")
    p2 = build_plan(live_with(with_passthru_and_referral()), d2, Managed.of_state(d2))
    assert [(o.path, o.value) for o in p2.ops] == [(f"subsystems/{S3}/passthru/enable", "0")]


def test_referral_address_change_disables_it_first():
    d = with_passthru_and_referral()
    live = live_with(d)
    d.ports[1].referrals["r1"].attrs["addr_traddr"] = "10.77.0.3"
    p = build_plan(live, d, Managed.of_state(d))
    ref = "ports/1/referrals/r1"
    assert [(o.path, o.value) for o in p.ops] == [(f"{ref}/enable", "0"), (f"{ref}/addr_traddr", "10.77.0.3"),
                                                  (f"{ref}/enable", "1")]
    assert not [o for o in p.ops if "subsystems" in o.path]      # the port itself stays linked
    d.ports[1].referrals["r1"].enable = False
    p2 = build_plan(live, d, Managed.of_state(d))
    assert [(o.path, o.value) for o in p2.ops] == [(f"{ref}/enable", "0"), (f"{ref}/addr_traddr", "10.77.0.3")]


def test_referrals_left_or_pruned_and_foreign_ones_untouched():
    d = with_passthru_and_referral()
    live = live_with(d)
    live.ports[1].referrals["theirs"] = st.Referral("theirs", True, dict(REF))
    smaller = copy.deepcopy(d)
    del smaller.ports[1].referrals["r1"]
    p = build_plan(live, smaller, Managed.of_state(d))
    assert p.ops == [] and [(c.action, c.key) for c in p.changes] == [("left", "1/r1")]
    pp = build_plan(live, smaller, Managed.of_state(d), prune=True)
    assert [(o.action, o.path) for o in pp.ops] == [("rmdir", "ports/1/referrals/r1")]
    assert (1, "r1") not in pp.managed_after.referrals
    # clearing a managed port removes its referrals (foreign or not) before the port itself
    c = clear_plan(live, Managed.of_state(d))
    acts = [(o.action, o.path) for o in c.ops]
    assert idx(c, "rmdir", "ports/1/referrals/theirs") < idx(c, "rmdir", "ports/1")
    assert ("rmdir", "ports/1/referrals/r1") in acts
