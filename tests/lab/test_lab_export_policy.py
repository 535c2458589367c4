"""Lab tier (issue 19.9): the export policy reads what the real kernel says a disk is used for.

On the default topology the plain NVMe (nvme3n1 here; the device map names it) gets an ext4
filesystem mounted, and cmbC's namespace becomes an active swap device: ``/proc/self/mountinfo``
and ``/proc/swaps`` as the kernel writes them. Then ``doctor`` names both, ``plan --profile``
with ``select {model: "*"}, each: true`` leaves them out (and plans the other two), and a state
file exporting the mounted one is refused -- with ``allow_in_use: true`` it is planned, with a
warning. Both disks are given back (umount, swapoff, wipefs) whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.topology("default")]

NQN = "nqn.2026-12.io.lab:policy"


def sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"
    return r.stdout


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", *args], capture_output=True, text=True,
                       timeout=900)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def in_use(lab_devices, tmp_path):
    nv = lab_devices["nvme"]
    mounted, swap = nv["plain"]["namespaces"][0], nv["cmbC"]["namespaces"][0]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mkfs.ext4", "-q", "-F", mounted)
    sh("mount", mounted, str(mnt))
    try:
        sh("mkswap", "-q", swap)
        sh("swapon", swap)
        try:
            yield mounted, swap, str(mnt)
        finally:
            subprocess.run(["swapoff", swap])
    finally:
        subprocess.run(["umount", str(mnt)])
        subprocess.run(["wipefs", "-q", "-a", mounted, swap])


def test_doctor_and_plan_name_the_disks_this_machine_uses(in_use, tmp_path, lab_devices):
    mounted, swap, mnt = in_use
    rc, out, err = cli("doctor", "--json")
    check = next(c for c in json.loads(out)["checks"] if c["id"] == "in-use")
    print(f"doctor: [{check['status']}] {check['detail']}")
    uses = {i["name"]: i["uses"] for i in check["items"]}
    assert uses[os.path.basename(mounted)] == [f"it is mounted at {mnt}"]
    assert uses[os.path.basename(swap)] == ["it is an active swap device"]

    rdma = next(iter(lab_devices["rdma"]))             # its name (rxe0)
    prof = tmp_path / "every.yaml"
    prof.write_text(textwrap.dedent(f"""\
        version: 1
        ports: [{{id: 1, transport: rdma, rdma_device: {rdma}}}]
        subsystems:
          - nqn: {NQN}
            allow_any_host: true
            ports: [1]
            p2p: {{policy: placed, when_none: off}}
            namespaces:
              - select: {{model: "*"}}
                each: true
        """))
    rc, out, err = cli("plan", "--profile", str(prof), "--state-dir", str(tmp_path / "sd"))
    print(out)
    assert rc == 0, err
    planned = [ln for ln in out.splitlines() if " <- " in ln]     # one line per namespace
    assert len(planned) == 2 and not [ln for ln in planned if mounted in ln or swap in ln]
    assert f"({mounted}) is left out" in out and f"({swap}) is left out" in out

    state = {"hosts": [], "ports": [], "subsystems": [{
        "nqn": NQN, "attr": {"allow_any_host": "1"},
        "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": mounted}}]}]}
    f = tmp_path / "s.json"
    f.write_text(json.dumps(state))
    rc, out, err = cli("plan", "--state", str(f), "--state-dir", str(tmp_path / "sd"))
    print(err)
    assert rc == 2 and f"{mounted} is in use on this machine: it is mounted at {mnt}" in err
    state["subsystems"][0]["namespaces"][0]["allow_in_use"] = True
    f.write_text(json.dumps(state))
    rc, out, err = cli("plan", "--state", str(f), "--state-dir", str(tmp_path / "sd"))
    assert rc == 0 and "exported although this machine uses it" in err and "+ namespace" in out
