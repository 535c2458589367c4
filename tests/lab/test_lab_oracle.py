"""Lab tier: the distance oracle.

For every (p2pmem provider, NVMe) pair of every shipped topology, ``nvmet-p2p distance
PROVIDER /dev/<ns> --json`` must predict exactly what the real kernel does when an nvmet
namespace backed by that NVMe gets ``p2pmem=<provider BDF>`` and ``enable=1``: accepted when
the map type is bus_addr or thru_host_bridge, refused when not_supported.
"""

from __future__ import annotations

import pytest

import labutil

pytestmark = [pytest.mark.lab, pytest.mark.topology("all")]

PAIRS, IDS = labutil.lab_params(labutil.provider_client_pairs)


def test_topology_has_providers(lab_devices):
    assert lab_devices["providers"], "the booted topology registered no p2pmem provider"
    assert labutil.provider_client_pairs(lab_devices)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_distance_verdict_matches_kernel(pair, lab_devices):
    v = labutil.predict(pair.provider_bdf, pair.ns)
    assert v["provider"] == pair.provider_bdf
    predicted = labutil.predicted_supported(v)
    if not predicted:
        assert v["distance"] == -1, v
    kernel = labutil.nvmet_try_p2pmem(pair.ns, pair.provider_bdf)
    assert predicted == kernel.accepted, (
        f"{pair.id}: nvmet-p2p predicted {v['map_type']} (distance {v['distance']}; reasons: "
        f"{'; '.join(v.get('reasons') or [])}; kernel_parameter: {v.get('kernel_parameter')}) "
        f"but the kernel {kernel.describe()} [namespace {pair.ns} on {pair.client_bdf}, "
        f"p2pmem={pair.provider_bdf}, {lab_devices['topology']}]")
