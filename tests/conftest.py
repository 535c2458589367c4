"""Test tiers.

* fast tier: everything not marked ``lab``; synthetic sysfs trees, plain data, no root.
* lab tier: tests marked ``@pytest.mark.lab`` need the real kernel inside the QEMU lab
  (``tools/lab/run``). Outside the VM they are skipped, and the skip says why.

Inside the lab the runner sets ``NVMET_P2P_LAB=1`` and describes the machine in
``$NVMET_P2P_LAB_DEVICES`` (JSON: the stable serial -> BDF -> /dev map of the booted topology).
"""

from __future__ import annotations

import json
import os

import pytest

IN_LAB = os.environ.get("NVMET_P2P_LAB") == "1"
LAB_SKIP_REASON = ("lab test: needs the real Linux kernel of the QEMU lab; run the lab tier with "
                   "`tools/lab/run --topology <name> -- python3 -m pytest -m lab` "
                   "(NVMET_P2P_LAB is not set here)")


def pytest_collection_modifyitems(config, items):
    if IN_LAB:
        return
    skip = pytest.mark.skip(reason=LAB_SKIP_REASON)
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab_devices():
    """The booted lab topology's device map (only inside the lab)."""
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if not IN_LAB or not path:
        pytest.skip(LAB_SKIP_REASON)
    with open(path) as f:
        return json.load(f)
