"""Reading the guest's serial console: the lab's markers and kernel crash signatures.

Multi-threaded TCG on this host has been seen (about 1 boot in 70) to kill the guest kernel
early with ``Oops: int3`` at an address the kernel had just live-patched (a stale translated
block racing ``text_poke_bp`` across vCPUs). Such a crash is the emulator's, not the code
under test: :func:`classify` marks it retryable. A crash before the command started is
retryable whatever its signature (nothing of the command ran); a crash during the command with
any other signature is reported, never retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRASH_RE = re.compile(r"(Kernel panic - not syncing.*|Oops: .*|BUG: .*|kernel BUG at .*|"
                      r"general protection fault.*|watchdog: BUG: soft lockup.*)")
TCG_RACE_RE = re.compile(r"Oops: int3\b")
MARK_USERSPACE = re.compile(r"LAB_USERSPACE uptime=([\d.]+)")
MARK_START = re.compile(r"LAB_COMMAND_START uptime=([\d.]+)")
MARK_RC = re.compile(r"LAB_COMMAND_RC=(\d+)")
MARK_INIT_FAILED = re.compile(r"LAB_INIT_FAILED: (.*)")
MARK_SETUP_FAILED = re.compile(r"LAB_SETUP_FAILED: (.*)")


@dataclass
class Verdict:
    kind: str                   # ok | crash | init_failed | setup_failed | no_status
    phase: str                  # boot | command | done
    detail: str = ""            # the signature / reason line
    retryable: bool = False
    rc: int | None = None
    userspace_uptime: float | None = None
    start_uptime: float | None = None

    def describe(self) -> str:
        if self.kind == "crash":
            where = "during boot" if self.phase == "boot" else "while the command ran"
            race = " (the known multi-threaded TCG int3 race)" if TCG_RACE_RE.search(self.detail) else ""
            return f"guest kernel crashed {where}: {self.detail}{race}"
        if self.kind == "init_failed":
            return f"guest init failed: {self.detail}"
        if self.kind == "setup_failed":
            return f"guest device setup failed: {self.detail}"
        if self.kind == "no_status":
            return f"guest ended without a command status ({self.detail})"
        return f"command exited {self.rc}"


def _clean(line: str) -> str:
    line = re.sub(r"^\[\s*\d+\.\d+\]\s*", "", line.strip())
    return line[:200]


def classify(console: str, rc_file: int | None = None) -> Verdict:
    """What happened in one boot, from its console text (and the rc file if the guest wrote one)."""
    v = Verdict(kind="no_status", phase="boot")
    m = MARK_USERSPACE.search(console)
    if m:
        v.userspace_uptime = float(m.group(1))
    m = MARK_START.search(console)
    if m:
        v.start_uptime = float(m.group(1))
        v.phase = "command"
    m = MARK_INIT_FAILED.search(console)
    if m:
        v.kind, v.detail = "init_failed", _clean(m.group(1))
        return v
    m = MARK_SETUP_FAILED.search(console)
    if m:
        v.kind, v.detail = "setup_failed", _clean(m.group(1))
        return v
    rc = rc_file
    if rc is None:
        m = MARK_RC.search(console)
        if m:
            rc = int(m.group(1))
    crash = CRASH_RE.search(console)
    if rc is not None and not crash:
        v.kind, v.phase, v.rc = "ok", "done", rc
        return v
    if crash:
        v.kind, v.detail = "crash", _clean(crash.group(1))
        # report the first crash line, but prefer the Oops/BUG line over the final panic line
        v.retryable = v.phase == "boot" or bool(TCG_RACE_RE.search(console))
        if rc is not None:
            v.rc = rc
        return v
    v.detail = "no LAB_COMMAND_RC marker and no crash signature on the console"
    return v
