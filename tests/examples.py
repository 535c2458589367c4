"""The test machine the commands' EXAMPLES run against, and how one example is run.

A sandbox directory holds what the examples name: the machine (the lab's default topology as
a sysfs/configfs tree, with a configured target and its kernel log), a copy of it as ``snap``,
the lab profile as ``target.yaml``, the target saved as ``config.json``, its inventory as
``inventory.json``, a plan as ``plan.json``. An example runs in a real bash, in the sandbox,
with ``$NVMET_P2P_ROOT`` pointing at the machine and the state directory and save file inside
the sandbox: exactly the line a user would type, against the test machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
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


# -- the examples of the guides (README.md, docs/guides/, docs/dev/) ----------------------------------
#
# A guide marks each fenced block that shows nvmet-p2p with an HTML comment on the line before
# it (invisible once rendered):
#
#   <!-- run: target -->     a console session ("$ command", then its output; "(exit N)" when
#                            the status is not 0) that tests/test_guides.py runs on the test
#                            machine TARGET, in document order, comparing the output. A line
#                            "..." stands for any number of lines, a line ending in " ..." for
#                            any line that starts with what precedes it.
#   <!-- file: NAME -->      a file (a profile, a desired state) the sessions after it use.
#   <!-- lab: TOPOLOGY -->   recorded in the lab (tools/lab/run --topology TOPOLOGY): it needs the
#                            real kernel; the lab tests named in the text assert the same.
#   <!-- not-run: WHY -->    not a command of this machine (an initiator, systemd, a sketch).
#
# NVMET_P2P_UPDATE_DOCS=1 rewrites the output of the `run` blocks that have no "..." line.

DOCS = [REPO / "README.md", *sorted((REPO / "docs" / "guides").glob("*.md")),
        *sorted((REPO / "docs" / "dev").glob("*.md"))]
_MARK = re.compile(r"^<!-- (run|file|lab|not-run): *(.*?) *-->$")
_FENCE = re.compile(r"^(```+)(.*)$")
_SHOWS_COMMAND = re.compile(r"^(\$ )?(\S+=\S+ )*nvmet-p2p\b")
#: the test machines a guide may name: builder in support/sysfs.py
GUIDE_MACHINES = {"target": "small_target", "acs": "acs_switch"}
#: saved inventories (``topology --json``) of larger machines, in every guide's working
#: directory for ``--inventory``: file name -> builder in support/machine.py
GUIDE_INVENTORIES = {"jbof.json": "jbof_single_switch_machine"}


@dataclass
class DocBlock:
    """A fenced block of a guide, with the mark on the line before it."""

    path: Path
    start: int          # index of the opening fence line (0-based)
    end: int            # index of the closing fence line
    kind: str | None
    arg: str
    info: str
    body: list[str]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.start + 1}"

    def shows_nvmet_p2p(self) -> bool:
        return any(_SHOWS_COMMAND.match(line) for line in self.body)


def doc_blocks(path: Path) -> list[DocBlock]:
    lines = path.read_text().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != m.group(1):
            j += 1
        mark = _MARK.match(lines[i - 1]) if i else None
        blocks.append(DocBlock(path, i, j, mark.group(1) if mark else None,
                               mark.group(2) if mark else "", m.group(2).strip(), lines[i + 1:j]))
        i = j + 1
    return blocks


@dataclass
class Session:
    """One ``$ command`` of a console block and what it printed."""

    command: str
    output: list[str]
    status: int = 0


def sessions(block: DocBlock) -> list[Session]:
    out: list[Session] = []
    for line in block.body:
        if line.startswith("$ "):
            out.append(Session(line[2:], []))
        elif not out:
            raise ValueError(f"{block.where}: output before the first '$ ' command: {line!r}")
        elif m := re.fullmatch(r"\(exit (\d+)\)", line):
            out[-1].status = int(m.group(1))
        else:
            out[-1].output.append(line)
    return out


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` with its "..." lines (any lines) and "text ..." lines (a line starting
    with text) against ``actual``."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(output_matches(rest, actual[k:]) for k in range(len(actual) + 1))
    if not actual:
        return False
    if head.endswith(" ...") and head.strip() != "...":
        ok = actual[0].startswith(head[:-4])
    else:
        ok = actual[0] == head
    return ok and output_matches(rest, actual[1:])


class GuideSandbox:
    """A test machine for one guide: its root, a working directory the guide's files go to,
    and an ``nvmet-p2p`` whose configfs writes go to the fake nvmet (support/fakecli.py).
    Paths are shown as they would be on the machine: under its root as ``/...``, the working
    directory as ``/root``."""

    def __init__(self, base: Path, machine: str):
        from support import sysfs as sf
        self.root = base / "machine"
        self.cwd = base / "work"
        builder = getattr(sf, GUIDE_MACHINES[machine])
        builder(self.root)
        sbin = self.root / "usr" / "local" / "sbin"      # where the README's install links it
        for d in (self.cwd, sbin, base / "home", self.root / "etc" / "nvmet", self.root / "dev"):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "dev" / "kmsg").write_text(
            "5,0,0,-;Linux version 7.3.4+deb13-amd64 (debian-kernel@lists.debian.org)\n"
            "6,1,0,-;Command line: BOOT_IMAGE=/vmlinuz-7.3.4+deb13-amd64 root=/dev/sda1 ro\n")
        (self.cwd / "profiles").symlink_to(REPO / "profiles")   # as in a checkout
        from support import machine as machines
        for name, inv_builder in GUIDE_INVENTORIES.items():
            inv = getattr(machines, inv_builder)()
            (self.cwd / name).write_text(json.dumps(inv.to_dict(), indent=1) + "\n")
        shim = sbin / "nvmet-p2p"
        shim.write_text(f"#!/bin/sh\nPYTHONPATH={REPO / 'tests'} exec {sys.executable} "
                        f"-m support.fakecli \"$@\"\n")
        shim.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NVMET_P2P")}
        self.env.update(
            NVMET_P2P_ROOT=str(self.root), NVMET_P2P_STATE_DIR=str(self.root / "var/lib/nvmet-p2p"),
            NVMET_P2P_SAVE_FILE=str(self.root / "etc/nvmet/config.json"), HOME=str(base / "home"),
            PATH=f"{sbin}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                 f"{self.env.get('PATH', '')}",
            COLUMNS="100", PYTHONUNBUFFERED="1")

    def write(self, name: str, body: list[str]) -> None:
        (self.cwd / name).write_text("\n".join(body) + "\n")

    def run(self, command: str) -> tuple[int, list[str]]:
        """Run ``command`` as a user types it; its status and its output (stdout and stderr
        as a terminal interleaves them)."""
        r = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           stdin=subprocess.DEVNULL)
        text = (r.stdout.replace(f"{self.root}/", "/").replace(str(self.root), "/")
                .replace(str(self.cwd), "/root"))
        return r.returncode, text.rstrip("\n").split("\n") if text.strip() else []
