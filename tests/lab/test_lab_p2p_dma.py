"""Lab tier: userspace peer-to-peer DMA into a CMB.

An O_DIRECT read from an NVMe namespace into another device's CMB (mmap of
``/sys/bus/pci/devices/<provider>/p2pmem/allocate``) must complete and match byte for byte
when ``nvmet-p2p distance`` predicts the pair supported, and fail with EINVAL when it predicts
not_supported (the block layer refuses p2p pages the client cannot reach).

Not in the intel-iommu topologies: QEMU's emulated IOMMU translates every DMA of a device,
including one aimed at a peer's BAR by bus address, which real switches route below the IOMMU;
there the DMA faults for a reason that is QEMU's, not the kernel's decision (measured, see
tools/lab/README.md).
"""

from __future__ import annotations

import errno

import pytest

import labutil

NO_IOMMU = ("default", "two-switches", "nested-switch", "amd-epyc")
pytestmark = [pytest.mark.lab, pytest.mark.topology(*NO_IOMMU)]
SIZE = 1 << 20

PAIRS, IDS = labutil.lab_params(labutil.provider_client_pairs)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_p2p_read_into_cmb(pair, lab_devices):
    v = labutil.predict(pair.provider_bdf, pair.ns)
    predicted = labutil.predicted_supported(v)
    data = labutil.pattern(f"{pair.id}:{lab_devices['topology']}", SIZE)
    labutil.write_direct(pair.ns, data)
    r = labutil.p2p_read(pair.provider_bdf, pair.ns, data)
    where = (f"{pair.id}: O_DIRECT read of {pair.ns} ({pair.client_bdf}) into the CMB of "
             f"{pair.provider_bdf}; predicted {v['map_type']}")
    assert r.available_during <= r.available_before - SIZE, \
        f"{where}: p2pmem/available did not drop while mapped ({r.available_before} -> {r.available_during})"
    if predicted:
        assert r.ok, f"{where}: the read failed with {errno.errorcode.get(r.errno)}; dmesg: {r.dmesg}"
        assert r.nbytes == SIZE and r.matches, f"{where}: data differs ({r.nbytes} bytes read)"
    else:
        assert not r.ok and r.errno == errno.EINVAL, (
            f"{where}: expected EINVAL, got " + ("success" if r.ok else errno.errorcode.get(r.errno, str(r.errno)))
            + f"; dmesg: {r.dmesg}")
