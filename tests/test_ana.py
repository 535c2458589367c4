"""ANA groups from per-port p2p reachability (nvmet_p2p/policy/ana.py): grouping, ids kept
across applies, ids never taken from other namespaces, never 128."""

from __future__ import annotations

import itertools

import pytest

from nvmet_p2p.nvmet.state import Namespace, Port, Subsystem, TargetState
from nvmet_p2p.policy import ana
from nvmet_p2p.policy.ana import NON_OPTIMIZED, OPTIMIZED, NsPaths

S = "nqn.2026-12.io.lab:mp"
F = "nqn.2026-12.io.lab:foreign"


def paths(*specs) -> list[NsPaths]:
    """specs: (nsid, {port: offloads}) of subsystem S."""
    return [NsPaths(S, nsid, dict(off)) for nsid, off in specs]


def live_with(groups: dict[tuple[str, int], int], port_groups: dict[int, dict[int, str]] = None
              ) -> TargetState:
    t = TargetState()
    for (nqn, nsid), g in groups.items():
        sub = t.subsystems.setdefault(nqn, Subsystem(nqn=nqn))
        sub.namespaces[nsid] = Namespace(nsid=nsid, attrs={"ana_grpid": str(g)})
    for pid, gs in (port_groups or {}).items():
        t.ports[pid] = Port(portid=pid, ana_groups=dict(gs))
    return t


def test_states_follow_offload_and_same_states_share_a_group():
    plan = ana.assign(paths((1, {1: True, 2: False}), (2, {1: False, 2: True}),
                            (3, {1: True, 2: False})))
    assert plan.members[(S, 1)] == plan.members[(S, 3)] != plan.members[(S, 2)]
    g1, g2 = plan.members[(S, 1)], plan.members[(S, 2)]
    assert plan.groups[g1] == {1: OPTIMIZED, 2: NON_OPTIMIZED}
    assert plan.groups[g2] == {1: NON_OPTIMIZED, 2: OPTIMIZED}
    # new ids from 2, the group optimized on the lowest port first
    assert (g1, g2) == (2, 3)


def test_a_namespace_that_offloads_nowhere_is_non_optimized_everywhere_never_inaccessible():
    plan = ana.assign(paths((1, {1: False, 2: False, 3: False})))
    assert set(plan.groups[plan.members[(S, 1)]].values()) == {NON_OPTIMIZED}
    every = ana.assign([NsPaths(S, i, dict(zip((1, 2, 3), bits)))
                        for i, bits in enumerate(itertools.product((True, False), repeat=3), 1)])
    for states in every.groups.values():
        assert set(states.values()) <= {OPTIMIZED, NON_OPTIMIZED}


def test_a_live_group_keeps_its_id_when_its_states_change():
    """Provider of ns 1 and 3 lost: their group (5 in the live tree) is re-stated in place,
    not replaced, so a failover is a few ana_state writes and no namespace moves."""
    live = live_with({(S, 1): 5, (S, 2): 6, (S, 3): 5})
    plan = ana.assign(paths((1, {1: False, 2: False}), (2, {1: False, 2: True}),
                            (3, {1: False, 2: False})), live)
    assert plan.members == {(S, 1): 5, (S, 2): 6, (S, 3): 5}
    assert plan.groups[5] == {1: NON_OPTIMIZED, 2: NON_OPTIMIZED}
    assert plan.kept == {5: True, 6: True}


def test_a_split_group_keeps_its_id_for_the_majority_and_the_rest_gets_a_new_one():
    live = live_with({(S, 1): 7, (S, 2): 7, (S, 3): 7})
    plan = ana.assign(paths((1, {1: True, 2: False}), (2, {1: True, 2: False}),
                            (3, {1: False, 2: False})), live)
    assert plan.members[(S, 1)] == plan.members[(S, 2)] == 7
    assert plan.members[(S, 3)] == 2 and not plan.kept.get(2)


def test_ids_of_foreign_namespaces_and_128_are_never_taken():
    live = live_with({(F, 1): 2, (F, 2): 3})
    many = [NsPaths(S, i, dict(zip(range(1, 8), bits)))
            for i, bits in enumerate(itertools.product((True, False), repeat=7), 1)][:124]
    plan = ana.assign(many, live)
    used = set(plan.groups)
    assert not used & {1, 2, 3, 128}
    assert used == set(range(4, 128))


def test_a_foreign_group_id_is_not_kept_even_if_our_namespace_sits_in_it():
    live = live_with({(F, 1): 4, (S, 1): 4})
    plan = ana.assign(paths((1, {1: True, 2: False})), live)
    assert plan.members[(S, 1)] == 2


def test_more_combinations_than_ids_is_an_error_naming_the_limit():
    many = [NsPaths(S, i, dict(zip(range(1, 8), bits)))
            for i, bits in enumerate(itertools.product((True, False), repeat=7), 1)]
    assert len(many) == 128
    with pytest.raises(ana.AnaError, match=r"2\.\.127"):
        ana.assign(many)


def test_apply_to_writes_groups_on_the_ports_and_grpid_on_the_namespaces():
    state = TargetState()
    state.ports[1] = Port(portid=1)
    state.ports[2] = Port(portid=2)
    sub = state.subsystems[S] = Subsystem(nqn=S)
    sub.namespaces[1] = Namespace(nsid=1, attrs={"device_path": "/dev/x"})
    plan = ana.assign(paths((1, {1: True, 2: False, 9: False})))
    ana.apply_to(state, plan)
    assert state.ports[1].ana_groups == {2: OPTIMIZED}
    assert state.ports[2].ana_groups == {2: NON_OPTIMIZED}
    assert 9 not in state.ports                       # a port the state does not have: skipped
    assert sub.namespaces[1].attrs["ana_grpid"] == "2"
    assert plan.state_of(S, 1, 2) == NON_OPTIMIZED and plan.state_of(S, 5, 1) is None
