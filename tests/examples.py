"""The test machine the commands' EXAMPLES run against, and how one example is run.

A sandbox directory holds what the examples name: the machine (the lab's default topology as
a sysfs/configfs tree, with a configured target and its kernel log), a copy of it as ``snap``,
the lab profile as ``target.yaml``, the target saved as ``config.json``, its inventory as
``inventory.json``, a plan as ``plan.json``. An example runs in a real bash, in the sandbox,
with ``$NVMET_P2P_ROOT`` pointing at the machine and the state directory and save file inside
the sandbox: exactly the line a user would type, against the test machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nvmet_p2p import cli

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "lab" / "capture1"


def all_examples():
    """(command name, Example) of every command module, in --help order."""
    return [(m.NAME, ex) for m in cli.command_modules() for ex in getattr(m, "EXAMPLES", ())]


def build_sandbox(base: Path) -> dict[str, str]:
    """Lay the test machine and the example files out under ``base``; return the environment
    the examples run with."""
    from test_status import lab_state

    from nvmet_p2p.nvmet.apply import reconcile
    from nvmet_p2p.nvmet.state import Host
    from support import sysfs as sf
    from support.fakenvmet import FakeNvmet

    machine = base / "machine"
    sf.q35_lab(machine, rxe=True, nvmet_loaded=True)
    shutil.rmtree(machine / "sys/kernel/config/nvmet")
    # a configured target, its tree as the kernel shows it (every attribute file)
    state = lab_state()
    for sub in state.subsystems.values():
        for nqn in sub.allowed_hosts:
            state.hosts[nqn] = Host(nqn)
    reconcile(str(machine), state, str(base / "state"), cfs=FakeNvmet(str(machine)))
    (machine / "dev").mkdir(exist_ok=True)
    (machine / "dev/kmsg").write_text((FIX / "kmsg.txt").read_text())
    shutil.copytree(machine, base / "snap", symlinks=True)
    shutil.copy(REPO / "profiles" / "lab-default.yaml", base / "target.yaml")
    (base / "node-exporter").mkdir()
    (base / "home" / ".zfunc").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVMET_P2P")}
    env.update(NVMET_P2P_ROOT=str(machine), NVMET_P2P_STATE_DIR=str(base / "state"),
               NVMET_P2P_SAVE_FILE=str(base / "config.json"), HOME=str(base / "home"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               COLUMNS="100")
    for line in ("nvmet-p2p save config.json", "nvmet-p2p topology --json > inventory.json",
                 "nvmet-p2p plan --state config.json --out plan.json > /dev/null"):
        r = run_line(line, base, env)
        assert r.returncode == 0, (line, r.stderr)
    return env


def run_line(line: str, cwd: Path, env: dict[str, str], timeout: float = 120):
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run_until_interrupted(line: str, cwd: Path, env: dict[str, str], after: float = 3.0):
    """Start ``line``, wait ``after`` seconds, send SIGINT to its process group (what Ctrl-C in a
    terminal does) and return (exit status, stdout, stderr)."""
    proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert alive, f"{line} ended by itself before Ctrl-C (status {proc.returncode}): {err}"
    return proc.returncode, out, err
