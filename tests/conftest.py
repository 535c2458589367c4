"""Test tiers.

* fast tier: everything not marked ``lab``; synthetic sysfs trees, plain data, no root.
* lab tier: tests marked ``@pytest.mark.lab`` need the real kernel inside the QEMU lab
  (``tools/lab/run``). Outside the VM they are skipped, and the skip says why.

Inside the lab the runner sets ``NVMET_P2P_LAB=1``, names the booted topology in
``$NVMET_P2P_LAB_TOPOLOGY`` and describes the machine in ``$NVMET_P2P_LAB_DEVICES`` (JSON: the
stable serial -> BDF -> /dev map of the booted topology, format in tools/lab/README.md).

Topology selection: a lab test runs in the ``default`` topology's boot unless it is marked
``@pytest.mark.topology("name", ...)`` (``"all"`` = every topology in tools/lab/topologies/).
In any other boot it is skipped with the reason. ``tools/lab/check`` (and so ``.ci/run``) boots
each topology that some lab test asks for, once, and runs ``pytest -m lab`` inside it on the
test files holding that topology's tests; it learns which topologies and files those are by
collecting with ``NVMET_P2P_LAB_LIST_TOPOLOGIES=<file>`` (node id -> topologies).
"""

from __future__ import annotations

import json
import os

import pytest

IN_LAB = os.environ.get("NVMET_P2P_LAB") == "1"
LAB_TOPOLOGY = os.environ.get("NVMET_P2P_LAB_TOPOLOGY", "")
DEFAULT_TOPOLOGY = "default"
#: the wheel tests (tests/test_packaging.py: python -m build, a clean venv, pip install) take
#: one to two minutes: they run with NVMET_P2P_PACKAGING_TESTS=1, a bare pytest skips them
#: (tools/lab/check does not set it yet: the CI budget decides)
PACKAGING = os.environ.get("NVMET_P2P_PACKAGING_TESTS") == "1"
PACKAGING_SKIP_REASON = ("packaging test (wheel build + clean venv, 1-2 min): "
                         "set NVMET_P2P_PACKAGING_TESTS=1 to run it here")
LAB_SKIP_REASON = ("lab test: needs the real Linux kernel of the QEMU lab; run the lab tier with "
                   "`tools/lab/run --topology <name> -- python3 -m pytest -m lab` "
                   "(NVMET_P2P_LAB is not set here)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "topology(*names): lab test meant for these lab topologies ('all' = every shipped "
        "topology); without it a lab test runs in the default topology")
    config.addinivalue_line("markers", "packaging: builds and installs the wheel (slow; "
                                       "NVMET_P2P_PACKAGING_TESTS=1)")


def lab_topologies(item) -> list[str]:
    """The topologies a lab test wants to run in (``["all"]`` for every one)."""
    names: list[str] = []
    for mark in item.iter_markers("topology"):
        names.extend(str(a) for a in mark.args)
    if not names:
        return [DEFAULT_TOPOLOGY]
    return ["all"] if "all" in names else sorted(set(names))


def pytest_collection_modifyitems(config, items):
    if not PACKAGING:
        for item in items:
            if item.get_closest_marker("packaging") is not None:
                item.add_marker(pytest.mark.skip(reason=PACKAGING_SKIP_REASON))
    lab_items = [it for it in items if it.get_closest_marker("lab") is not None]
    listing = os.environ.get("NVMET_P2P_LAB_LIST_TOPOLOGIES")
    if listing:
        with open(listing, "w") as f:
            json.dump({it.nodeid: lab_topologies(it) for it in lab_items}, f, indent=1, sort_keys=True)
    if not IN_LAB:
        skip = pytest.mark.skip(reason=LAB_SKIP_REASON)
        for item in lab_items:
            item.add_marker(skip)
        return
    for item in lab_items:
        wanted = lab_topologies(item)
        if "all" in wanted or LAB_TOPOLOGY in wanted:
            continue
        item.add_marker(pytest.mark.skip(
            reason=f"lab test for topology {', '.join(wanted)}; this boot is {LAB_TOPOLOGY or '(unnamed)'}"))


@pytest.fixture
def lab_devices():
    """The booted lab topology's device map (only inside the lab)."""
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if not IN_LAB or not path:
        pytest.skip(LAB_SKIP_REASON)
    with open(path) as f:
        return json.load(f)
