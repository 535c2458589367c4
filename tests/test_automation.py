"""``nvmet_p2p.automation`` (what the Ansible modules call) on the fake configfs of
tests/fakenvmet.py: check mode writes nothing, diff before/after, changed, refusals, secrets,
the last-apply record. The real kernel: tests/lab/test_lab_ansible.py."""

from __future__ import annotations

import copy
import json

import pytest
import sysfsfixture as sf
from fakenvmet import FakeNvmet, dump
from test_apply_fake import DOC, H1, S1

from nvmet_p2p import automation as a
from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet import lastapply, statefile
from nvmet_p2p.nvmet.apply import ApplyFailed
from nvmet_p2p.nvmet.configfs import read_state

KEY = "DHHC-1:00:ia6zGodOr5SEG0Fg9HYsAFa2oD6fpZmNkFG8oGbQTHfHxAq7:"


@pytest.fixture
def env(tmp_path):
    """The lab's machine (its sysfs: the state's machine checks) with a fake configfs."""
    root = tmp_path / "root"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    return FakeNvmet(str(root)), str(tmp_path / "state")


def run(env, doc, **kw):
    cfs, sd = env
    return a.apply(a.desired_from(state_content=doc, root=cfs.root), root=cfs.root, state_dir=sd,
                   cfs=cfs, **kw)


def test_check_mode_writes_nothing_and_its_diff_is_what_the_apply_then_shows(env):
    cfs, sd = env
    before = dump(cfs)
    check = run(env, DOC, check=True, diff=True)
    assert check["changed"] and check["configfs_writes"] == 0 and cfs.writes == 0
    assert dump(cfs) == before and lastapply.load(sd) is None
    assert json.loads(check["diff"]["before"]) == {"hosts": [], "ports": [], "subsystems": []}
    real = run(env, DOC, diff=True)
    assert real["changed"] and real["configfs_writes"] == cfs.writes == len(real["plan"]["ops"])
    assert real["diff"]["after"] == check["diff"]["after"]      # on paper == read back
    after = json.loads(real["diff"]["after"])
    assert [s["nqn"] for s in after["subsystems"]] == [S1, "nqn.2026-11.io.lab:s2"]
    again = run(env, DOC, diff=True)
    assert not again["changed"] and again["configfs_writes"] == 0
    assert again["diff"]["before"] == again["diff"]["after"] == real["diff"]["after"]


def test_diff_shows_one_changed_attribute_and_pruned_objects(env):
    run(env, DOC)
    doc = copy.deepcopy(DOC)
    doc["subsystems"][0]["namespaces"][1]["p2pmem"] = "0000:03:00.0"
    del doc["subsystems"][1]
    doc["ports"] = [{"portid": 1, "addr": DOC["ports"][0]["addr"], "subsystems": [S1]}]
    out = run(env, doc, check=True, diff=True, prune=True)
    before, after = (json.loads(out["diff"][k]) for k in ("before", "after"))
    ns2 = lambda d: d["subsystems"][0]["namespaces"][1]["p2pmem"]   # noqa: E731
    assert (ns2(before), ns2(after)) == ("0000:05:00.0", "0000:03:00.0")
    assert [s["nqn"] for s in before["subsystems"]] == [S1, "nqn.2026-11.io.lab:s2"]
    assert [s["nqn"] for s in after["subsystems"]] == [S1]
    assert [p["portid"] for p in after["ports"]] == [1]
    assert out["summary"].get("delete") == 2 and out["summary"].get("cycle") == 1


def test_a_kernel_refusal_rolls_back_and_is_recorded(env):
    cfs, sd = env
    run(env, DOC)
    before = dump(cfs)
    doc = copy.deepcopy(DOC)
    doc["subsystems"][1]["namespaces"][0]["p2pmem"] = "0000:04:00.0"    # not below one switch
    # (the machine checks refuse this before any write: test_state_checks_refuse_...; here
    # the kernel itself has the last word)
    with pytest.raises(ApplyFailed) as e:
        a.apply(a.Desired(statefile.parse(doc), "automation"), root=cfs.root, state_dir=sd,
                cfs=cfs)
    d = e.value.to_dict()
    assert d["errno_name"] == "EINVAL" and d["rolled_back_steps"] >= 1 and not d["rollback_errors"]
    assert any("cannot be used for peer-to-peer DMA" in m for m in cfs.kmsg)   # (the fake's log)
    assert dump(cfs) == before
    rec = lastapply.load(sd)
    assert (rec.result, rec.error_kind, rec.source) == ("failed", "kernel", "automation")
    assert "EINVAL" in rec.error


def test_secrets_never_reach_the_result(env):
    doc = copy.deepcopy(DOC)
    doc["hosts"][0]["dhchap"] = {"key": KEY}
    for check in (True, False):
        out = run(env, doc, check=check, diff=True)
        assert KEY not in json.dumps(out)
        assert "(secret)" in out["diff"]["after"]
    assert read_state(env[0]).hosts[H1].attrs["dhchap_key"] == KEY     # but it was written


def test_simulate_follows_every_kind_of_operation():
    live = statefile.parse(DOC)
    doc = copy.deepcopy(DOC)
    doc["ports"][1]["referrals"] = [{"name": "r1", "addr": {"trtype": "tcp", "traddr": "10.0.0.9"},
                                     "enable": 1}]
    from nvmet_p2p.nvmet.plan import Managed, build_plan
    plan = build_plan(statefile.parse({"hosts": [], "subsystems": [], "ports": []}),
                      statefile.parse(doc), Managed())
    sim = a.simulate(statefile.parse({"hosts": [], "subsystems": [], "ports": []}), plan.ops,
                     statefile.parse(doc))
    want = statefile.parse(doc)
    assert sim.subsystems[S1].namespaces[1].attrs == want.subsystems[S1].namespaces[1].attrs
    assert sim.subsystems[S1].namespaces[1].enable
    assert sorted(sim.ports[1].subsystems) == sorted(live.ports[1].subsystems)
    assert sim.ports[3].referrals["r1"].enable and sim.ports[3].referrals["r1"].attrs == \
        want.ports[3].referrals["r1"].attrs
    assert sim.subsystems[S1].allowed_hosts == [H1]


def test_simulate_starts_a_new_ana_group_inaccessible_as_the_kernel_does():
    """check mode's "after": a group made with ``mkdir`` and no state write (the desired state
    is the kernel's initial one) is inaccessible, not optimized (docs/multipath.md)."""
    empty = statefile.parse({"hosts": [], "subsystems": [], "ports": []})
    doc = copy.deepcopy(DOC)
    doc["ports"][0]["ana_groups"] = [{"grpid": 3, "ana": {"state": "inaccessible"}},
                                     {"grpid": 4, "ana": {"state": "non-optimized"}}]
    from nvmet_p2p.nvmet.plan import Managed, build_plan
    plan = build_plan(empty, statefile.parse(doc), Managed())
    sim = a.simulate(empty, plan.ops, statefile.parse(doc))
    assert sim.ports[1].ana_groups[3] == "inaccessible"
    assert sim.ports[1].ana_groups[4] == "non-optimized"


def test_exactly_one_source_and_inline_documents_are_checked(tmp_path):
    with pytest.raises(InputError, match="exactly one of"):
        a.desired_from()
    with pytest.raises(InputError, match="exactly one of .*got profile, state"):
        a.desired_from(profile="p.yaml", state="s.json")
    with pytest.raises(InputError, match="state_content: not valid YAML"):
        a.desired_from(state_content="{: [")
    with pytest.raises(InputError, match=r"\$.subsystems\[0\].namespaces\[0\].nsid"):
        a.desired_from(state_content={"subsystems": [{"nqn": S1, "namespaces": [{"nsid": 0}]}]})
    sf.q35_lab(tmp_path / "m", rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    assert S1 in a.desired_from(state_content=json.dumps(DOC),
                                root=str(tmp_path / "m")).state.subsystems


def test_inline_profile_is_placed_like_a_file(tmp_path):
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    key = tmp_path / "keys" / "h.key"
    key.parent.mkdir()
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    prof = {"version": 1,
            "hosts": [{"nqn": H1, "dhchap_key_file": "keys/h.key"}],
            "ports": [{"id": 1, "transport": "rdma", "rdma_device": "rxe0"}],
            "subsystems": [{"nqn": S1, "hosts": [H1], "ports": [1],
                            "namespaces": [{"select": {"serial": "cmbB"}}]}]}
    d = a.desired_from(profile_content=prof, profile_dir=str(tmp_path), root=str(root))
    ns = d.state.subsystems[S1].namespaces[1]
    assert ns.attrs["p2pmem"] == "0000:04:00.0"                 # its own CMB
    assert d.state.hosts[H1].attrs["dhchap_key"] == KEY
    f = tmp_path / "p.yaml"
    import yaml
    f.write_text(yaml.safe_dump(prof))
    same = a.desired_from(profile=str(f), root=str(root))
    assert statefile.dumps(same.state) == statefile.dumps(d.state)
    with pytest.raises(InputError, match="cannot read key file"):
        a.desired_from(profile_content=yaml.safe_dump(prof), profile_dir=str(root), root=str(root))


def test_inline_profile_parsed_by_a_yaml_11_loader_keeps_p2p_off(tmp_path):
    """An Ansible task's ``profile_content`` reaches the module already parsed by a YAML 1.1
    loader: a bare ``p2p: off`` arrives as ``False`` (and a mapping given as text is written
    back as ``false``); both mean off."""
    import yaml
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    text = (f"version: 1\nhosts: [{{nqn: '{H1}'}}]\n"
            "ports: [{id: 1, transport: rdma, rdma_device: rxe0}]\n"
            f"subsystems:\n  - nqn: {S1}\n    hosts: ['{H1}']\n    ports: [1]\n"
            "    p2p: {policy: placed, when_none: off}\n"
            "    namespaces:\n      - select: {serial: cmbB}\n        p2p: off\n")
    parsed = yaml.safe_load(text)
    assert parsed["subsystems"][0]["namespaces"][0]["p2p"] is False
    for given in (parsed, yaml.safe_dump(parsed), text):
        d = a.desired_from(profile_content=given, root=str(root))
        assert d.state.subsystems[S1].namespaces[1].attrs["p2pmem"] == "0"
        assert d.placement.decisions[0].status == "off"


def test_an_apply_that_changes_nothing_returns_no_plan_or_placement_document(tmp_path):
    """The plan and the placement as data come with a change; the run after it returns the
    counts, the text and the warnings only (small for a fleet and for ansible-core's result
    processing), with diff mode still the before/after."""
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    prof = {"version": 1, "hosts": [{"nqn": H1}],
            "ports": [{"id": 1, "transport": "rdma", "rdma_device": "rxe0"}],
            "subsystems": [{"nqn": S1, "hosts": [H1], "ports": [1],
                            "namespaces": [{"select": {"serial": "cmbB"}}]}]}
    d = a.desired_from(profile_content=prof, root=str(root))
    cfs, sd = FakeNvmet(str(tmp_path / "cfs")), str(tmp_path / "state")
    first = a.apply(d, root=cfs.root, state_dir=sd, cfs=cfs)
    assert first["changed"] and first["configfs_writes"] == len(first["plan"]["ops"]) > 0
    assert first["placement"]["decisions"][0]["p2pmem"] == "0000:04:00.0"
    again = a.apply(d, root=cfs.root, state_dir=sd, cfs=cfs, diff=True)
    assert not again["changed"] and again["configfs_writes"] == 0 and again["summary"] == {}
    assert "plan" not in again and "placement" not in again
    assert again["placement_warnings"] == [] and again["text"].startswith("No changes")
    assert again["diff"]["before"] == again["diff"]["after"]
    assert len(json.dumps({k: v for k, v in again.items() if k != "diff"})) < 1000 < \
        len(json.dumps(first))


def test_offload_summary_lists_what_is_not_active():
    doc = {"subsystems": [{"nqn": S1, "namespaces": [
        {"nsid": 1, "verdicts": [{"verdict": "offload active", "cntlid": 1}]},
        {"nsid": 2, "verdicts": [{"verdict": "inactive", "cntlid": 1, "reason": "soft_rdma",
                                  "detail": "rxe"},
                                 {"verdict": "offload partial", "cntlid": 2,
                                  "reason": "pool_exhausted", "detail": "full"}]}]}]}
    s = a.offload_summary(doc)
    assert (s["verdicts"], s["active"], s["all_active"]) == (3, 1, False)
    assert s["inactive"] == [{"subsystem": S1, "nsid": 2, "cntlid": 1, "verdict": "inactive",
                              "reason": "soft_rdma", "detail": "rxe"},
                             {"subsystem": S1, "nsid": 2, "cntlid": 2, "verdict": "offload partial",
                              "reason": "pool_exhausted", "detail": "full"}]
    from nvmet_p2p.observe.metrics import offload_families
    active, reasons, counts = offload_families(doc)
    assert {tuple(s.labels.values()): s.value for s in counts.samples} == {
        ("active", ""): 1, ("inactive", "soft_rdma"): 1, ("partial", "pool_exhausted"): 1}
    assert [s.value for s in active.samples] == [1.0, 0.0]           # per namespace
    assert [s.labels["reason"] for s in reasons.samples] == ["soft_rdma", "pool_exhausted"]
    assert not a.offload_summary({"subsystems": []})["all_active"]     # nothing is not "all"
