"""Lab tier: the examples marked ``lab`` (they write configfs or read a live device) run on the
real kernel, exactly as a user types them, in a directory holding the files they name (the lab
profile as target.yaml, the target it makes saved as config.json, a plan as plan.json). The
fast tier runs the others against the test machine (tests/test_examples.py).

Device names and PCI addresses in the examples are the lab's default topology as the test
machine lays it out (cmbA 03:00.0 nvme0n1, cmbB nvme1n1, cmbC nvme2n1, plain nvme3n1); they are
mapped to the booted ones through the lab's device map."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from examples import REPO, all_examples, run_until_interrupted

pytestmark = [pytest.mark.lab]

LAB_EXAMPLES = [(name, ex) for name, ex in all_examples() if ex.lab]
#: the test machine's names -> the serial of the lab device they stand for
TEST_MACHINE = {"cmbA": ("0000:03:00.0", "/dev/nvme0n1"), "cmbB": ("0000:04:00.0", "/dev/nvme1n1"),
                "cmbC": ("0000:05:00.0", "/dev/nvme2n1"), "plain": ("0000:06:00.0", "/dev/nvme3n1")}


def _mapped(command: str, devices: dict) -> str:
    subst = {}
    for serial, (bdf, dev) in TEST_MACHINE.items():
        n = devices["nvme"][serial]
        subst[bdf], subst[dev] = n["bdf"], n["namespaces"][0]
    for old in sorted(subst, key=len, reverse=True):
        command = command.replace(old, f"\0{old}\0")
    for old, new in subst.items():
        command = command.replace(f"\0{old}\0", new)
    return command


def _sh(line: str, cwd: Path, env: dict, check: bool = True):
    r = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=900, stdin=subprocess.DEVNULL)
    assert not check or r.returncode == 0, (line, r.stdout, r.stderr)
    return r


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab-examples")
    shutil.copy(REPO / "profiles" / "lab-default.yaml", base / "target.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVMET_P2P_") or
           k.startswith("NVMET_P2P_LAB")}
    env.update(NVMET_P2P_STATE_DIR=str(base / "state"), NVMET_P2P_SAVE_FILE=str(base / "config.json"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    _sh("modprobe nvmet nvmet-rdma nvmet-tcp 2>/dev/null; nvmet-p2p clear --all --yes", base, env)
    _sh("nvmet-p2p apply --profile target.yaml > /dev/null && nvmet-p2p save config.json "
        "&& nvmet-p2p clear --all --yes > /dev/null", base, env)
    yield base, env
    _sh("nvmet-p2p clear --all --yes", base, env, check=False)


@pytest.mark.parametrize("name,ex", LAB_EXAMPLES, ids=[ex.command for _, ex in LAB_EXAMPLES])
def test_lab_example_runs(sandbox, lab_devices, name, ex):
    base, env = sandbox
    # each from the same start: an empty target and a plan from it to the saved state
    _sh("nvmet-p2p clear --all --yes > /dev/null && "
        "nvmet-p2p plan --state config.json --out plan.json > /dev/null", base, env)
    command = _mapped(ex.command, lab_devices)
    if ex.interrupt:
        rc, out, err = run_until_interrupted(command, base, env, after=15.0)
        assert rc == 130, f"{command}: status {rc} after Ctrl-C\n{err}"
    else:
        r = _sh(command, base, env, check=False)
        rc, out, err = r.returncode, r.stdout, r.stderr
        assert rc == ex.status, f"{command}: status {rc}, expected {ex.status}\n{out}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
