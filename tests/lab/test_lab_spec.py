"""Lab tier: nvmet_p2p/nvmet/spec.py against the lab kernel's nvmet (7.3). One object of every
kind that has attribute files is made by hand in configfs; then

* every file the kernel shows is a row of that kind's spec (or its ``enable``): an attribute
  of a newer kernel would be found by its group prefix, but this kernel has none the spec
  does not name;
* every row the spec expects on this release (``since``) is there (all the options the rows
  need are set in the lab kernel: CONFIG_PCI_P2PDMA, _NVME_TARGET_AUTH, _PASSTHRU,
  _BLK_DEV_INTEGRITY);
* a new object's values are the rows' ``new`` values (the plan leaves those writes out).
"""

from __future__ import annotations

import os

import pytest

from labutil import NVMET, devmap, ensure_nvmet
from nvmet_p2p.kernel import parse_kernel_version
from nvmet_p2p.nvmet.spec import SPECS, same

pytestmark = pytest.mark.lab

NQN = "nqn.2026-12.io.lab:spec"
HOST = "nqn.2026-12.io.lab:spec-host"
PORT = 60123


def _files(rel: str) -> dict[str, str | None]:
    """The attribute files of ``rel`` (a readable one with its value)."""
    out: dict[str, str | None] = {}
    d = os.path.join(NVMET, rel)
    for n in os.listdir(d):
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            if os.stat(p).st_mode & 0o444:
                with open(p) as f:
                    out[n] = f.read().strip()
            else:
                out[n] = None
    return out


def _rmdir(*rels: str) -> None:
    for rel in rels:
        p = os.path.join(NVMET, rel)
        if os.path.islink(p):
            os.unlink(p)
        elif os.path.isdir(p):
            os.rmdir(p)


@pytest.fixture
def objects():
    if devmap() is None:
        pytest.skip("lab test: needs the QEMU lab (tools/lab/run): it makes nvmet objects")
    ensure_nvmet()
    made = [SPECS["host"].path_of(HOST), SPECS["subsystem"].path_of(NQN),
            SPECS["namespace"].path_of(NQN, 1), SPECS["port"].path_of(PORT),
            SPECS["referral"].path_of(PORT, "r"), SPECS["ana_group"].path_of(PORT, 2)]
    try:
        for rel in made:
            os.mkdir(os.path.join(NVMET, rel))
        yield {"root": "", "host": made[0], "subsystem": made[1], "namespace": made[2],
               "passthru": SPECS["passthru"].path_of(NQN), "port": made[3], "referral": made[4],
               "ana_group": made[5]}
    finally:
        _rmdir(*reversed(made))


def test_the_kernel_shows_what_the_spec_says(objects):
    release = parse_kernel_version(os.uname().release)
    problems = []
    for kind, rel in objects.items():
        spec = SPECS[kind]
        shown = set(_files(rel)) - {"enable"}
        if kind == "root":
            shown = {n for n in shown if not os.path.isdir(os.path.join(NVMET, n))}
        unknown = sorted(shown - set(spec.names))
        if unknown:
            problems.append(f"{kind}: the kernel shows {unknown}, no row of the spec "
                            f"(group prefix: {[spec.group_of(n) for n in unknown]})")
        expected = {a.name for a in spec.attrs if not a.since or a.since <= release}
        missing = sorted(expected - shown)
        if missing:
            problems.append(f"{kind}: the spec expects {missing} on {release}, the kernel has none")
    assert problems == [], "\n".join(problems)


def test_a_new_object_has_the_rows_new_values(objects):
    wrong = []
    for kind, rel in objects.items():
        values = _files(rel)
        for a in SPECS[kind].attrs:
            if a.new is not None and a.name in values and not same(a.name, a.new, values[a.name] or ""):
                wrong.append(f"{kind} {a.name}: spec says {a.new!r}, a new one has {values[a.name]!r}")
    assert wrong == [], "\n".join(wrong)
