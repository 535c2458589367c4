"""Lab tier: ``nvmet_p2p.pci.distance`` against the real kernel, beyond accept/refuse.

For every (p2pmem provider, NVMe namespace) pair of the booted topology (one in-process
inventory read, so the whole module takes seconds):

* the pci-p2pdma warnings the kernel logs when nvmet enables the namespace with
  ``p2pmem=<provider>`` are exactly the predicted ``kernel_messages`` (the ACS lines carry the
  ``pci=disable_acs_redir=`` list, so this checks its devices and their order);
* auto mode (``p2pmem=1``) is accepted exactly when ``find_many`` has a candidate;
* running as root in the lab nothing is uncertain (every ACS word was read).

(tests/lab/test_lab_oracle.py checks accept/refuse through the CLI for the same pairs.)
"""

from __future__ import annotations

import re

import pytest

import labutil

pytestmark = [pytest.mark.lab, pytest.mark.topology("all")]

P2P_LINE = re.compile(r"peer-to-peer DMA|ACS redirect|P2PDMA whitelist")


@pytest.fixture(scope="module")
def engine():
    from nvmet_p2p.pci.distance import P2pdma
    from nvmet_p2p.pci.inventory import read_inventory
    return P2pdma(read_inventory("/"))


def _strip(line: str) -> str:
    """``[   12.345678] nvme 0000:..: msg`` -> ``nvme 0000:..: msg``."""
    return re.sub(r"^\[\s*[0-9.]+\]\s*", "", line)


def test_kernel_messages_match_exactly(lab_devices, engine):
    pairs = labutil.provider_client_pairs(lab_devices)
    assert pairs, "no provider/namespace pair in this topology"
    wrong = []
    for p in pairs:
        v = engine.distance_many(p.provider_bdf, [p.ns])
        predicted = [m for pv in v.pairs for m in pv.kernel_messages]
        res = labutil.nvmet_try_p2pmem(p.ns, p.provider_bdf)
        logged = [_strip(x) for x in res.dmesg if P2P_LINE.search(x)]
        if res.accepted != (v.map_type != "not_supported") or logged != predicted:
            wrong.append(f"{p.id} ({p.provider_bdf} <- {p.ns}): predicted {v.map_type} "
                         f"{predicted}, kernel {res.describe()}")
    assert not wrong, "\n".join(wrong)


def test_auto_mode_matches_find_many(lab_devices, engine):
    wrong = []
    for serial, n in sorted(lab_devices["nvme"].items()):
        if not n["namespaces"]:
            continue
        ns = n["namespaces"][0]
        r = engine.find_many([ns])
        res = labutil.nvmet_try_p2pmem(ns, "1")
        if res.accepted != (r.best_distance is not None):
            wrong.append(f"{serial} ({ns}): find_many best {r.best_distance} ties {r.ties}, "
                         f"kernel {res.describe()}")
        if not res.accepted:
            want = f"nvmet: no peer-to-peer memory is available for {ns}"
            if not any(want in x for x in res.dmesg):
                wrong.append(f"{serial}: refused without '{want}': {res.dmesg}")
    assert not wrong, "\n".join(wrong)


def test_nothing_uncertain_as_root(lab_devices, engine):
    unc = {}
    for p in labutil.provider_client_pairs(lab_devices):
        v = engine.distance_many(p.provider_bdf, [p.ns])
        if v.uncertain:
            unc[p.id] = v.uncertain
    assert not unc, unc
    assert engine.kernel_source == "inventory" and engine.kernel == "%d.%d" % tuple(
        int(x) for x in lab_devices["kernel"].split(".")[:2])
