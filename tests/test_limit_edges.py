"""Limits at their edge, N and N+1, each written here from where it comes from -- the kernel,
nvmetcli, the profile's documented defaults -- never read from the code under test (issue 19):
placement at an exact capacity fit, budget precedence when a key is set at two levels,
nvmetcli's nsid limit (8192/8193), JSON nesting (64/65)."""

from __future__ import annotations

import json

import pytest
from test_placement import SUB, make_profile

from nvmet_p2p import safeload
from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.policy import placement, profile
from support.machine import Machine, MiB

KiB = 1024

# -- placement: an exact fit -----------------------------------------------------------------

#: the budget of a namespace with the profile's documented defaults (policy/profile.py BUDGET:
#: "Defaults: 1 host, 4 queues, depth 128, 128KiB"): 1 x 4 x 128 x 128 KiB
DEFAULT_DEMAND = 1 * 4 * 128 * 128 * KiB          # 64 MiB


def machine_with_room(free: int):
    """One switch: NVMe X (no CMB), an RDMA NIC, and provider P whose pool has ``free`` bytes
    available (p2pmem/available, what placement weighs)."""
    m = Machine()
    d = m.switch(m.root_port(m.host_bridge()), ports=3)
    m.nvme(d[0], "X")
    m.rdma_nic(d[1], "mlx5_0", netdev="ens1", ip="10.0.0.1/24")
    m.nvme(d[2], "P", cmb=256 * MiB, available=free)
    return m.build()


@pytest.mark.parametrize("free,status", [(DEFAULT_DEMAND, "placed"),
                                          (DEFAULT_DEMAND - 1, "shared")])
def test_a_provider_with_exactly_the_budget_free_fits(free, status):
    inv = machine_with_room(free)
    p = placement.place(profile.resolve(make_profile("- select: {serial: X}"), inv), inv)
    d = p.decisions[0]
    assert d.demand == DEFAULT_DEMAND
    assert d.status == status and d.p2pmem != "0"
    fits = not any("no candidate has room" in n for n in d.notes)
    assert fits == (status == "placed")


# -- budget: the innermost level wins, key by key --------------------------------------------

def budget_of(ns_budget: str = "", sub_budget: str = "", top_budget: str = ""):
    inv = machine_with_room(1024 * MiB)
    top = f"budget: {top_budget}\n" if top_budget else ""
    prof = make_profile("- select: {serial: X}" + (f"\n  budget: {ns_budget}" if ns_budget else ""),
                        top=top)
    if sub_budget:
        sub = prof.data["subsystems"][0]
        text = (f"version: 1\n{top}ports:\n  - {{id: 1, transport: rdma, rdma_device: mlx5_0}}\n"
                f"subsystems:\n  - nqn: {SUB}\n    hosts: [{sub['hosts'][0]}]\n    ports: [1]\n"
                f"    budget: {sub_budget}\n    namespaces:\n      - select: {{serial: X}}\n"
                + (f"        budget: {ns_budget}\n" if ns_budget else ""))
        rep = profile.Report("t.yaml")
        data = profile.parse(text, "t.yaml", rep)
        assert not rep.errors, [str(e) for e in rep.errors]
        prof = profile.Profile(file="t.yaml", data=data)
    ns = profile.resolve(prof, inv).namespaces[0]
    return ns.budget, ns.demand


def test_a_key_set_at_two_levels_takes_the_inner_value():
    # namespace over profile
    b, demand = budget_of(ns_budget="{queues: 2}", top_budget="{queues: 8, hosts: 3}")
    assert (b["queues"], b["hosts"], b["queue_depth"], b["io_size"]) == (2, 3, 128, 128 * KiB)
    assert demand == 3 * 2 * 128 * 128 * KiB
    # subsystem over profile, namespace over subsystem
    b, demand = budget_of(ns_budget="{queue_depth: 16}", sub_budget="{queue_depth: 64, hosts: 2}",
                          top_budget="{hosts: 5, queue_depth: 256}")
    assert (b["hosts"], b["queue_depth"], b["queues"]) == (2, 16, 4)
    assert demand == 2 * 4 * 16 * 128 * KiB


# -- nvmetcli's nsid limit -------------------------------------------------------------------

#: nvmetcli, nvmet/nvme.py: ``class Namespace: MAX_NSID = 8192`` and ``if nsid < 1 or nsid >
#: self.MAX_NSID: raise CFSError("NSID must be 1 to %d" ...)`` -- a saved file with a larger
#: nsid makes ``nvmetcli restore`` skip that namespace (the kernel itself takes up to 0xfffffffe)
NVMETCLI_MAX_NSID = 8192


def _doc(nsid: int) -> dict:
    return {"hosts": [], "ports": [],
            "subsystems": [{"nqn": "nqn.2026-01.io.x:s", "allowed_hosts": [],
                            "namespaces": [{"nsid": nsid, "enable": 0, "device": {}}]}]}


def test_nvmetcli_nsid_limit_at_8192_and_8193():
    assert statefile.nvmetcli_problems(_doc(NVMETCLI_MAX_NSID)) == []
    probs = statefile.nvmetcli_problems(_doc(NVMETCLI_MAX_NSID + 1))
    assert probs == [("$.subsystems[0].namespaces[0].nsid", "nvmetcli accepts nsid 1..8192 only")]
    # nvmet-p2p itself takes what the kernel takes
    assert 8193 in statefile.parse(_doc(8193)).subsystems["nqn.2026-01.io.x:s"].namespaces


# -- JSON nesting ----------------------------------------------------------------------------

#: README (Security: "nesting deeper than 64 refused before the recursive parsers see it")
MAX_JSON_DEPTH = 64


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_json_nesting_at_64_and_65(opener, closer):
    ok = opener * MAX_JSON_DEPTH + "1" + closer * MAX_JSON_DEPTH
    assert safeload.loads_json(ok, "t") is not None
    deep = opener * (MAX_JSON_DEPTH + 1) + "1" + closer * (MAX_JSON_DEPTH + 1)
    with pytest.raises(InputError, match="nested deeper than 64 levels"):
        safeload.loads_json(deep, "t")
    # a state file one level deeper than the limit is refused the same way, with the position
    with pytest.raises(InputError, match=r"nested deeper than 64 levels \(line 1, column"):
        statefile.parse(safeload.loads_json(json.dumps({"hosts": []})[:-1] + ', "x": '
                                            + deep + "}", "t"))
