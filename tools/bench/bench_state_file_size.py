#!/usr/bin/env python3
"""What a desired-state file of a given size costs ``plan`` (issue 19.7: a file just under the
old 64 MiB limit took 1.25 GB and 25 s), and so where the limit belongs.

    python3 tools/bench/bench_state_file_size.py [--mib 1 4 8 16 63]

Writes state files of about N MiB (subsystems of 1024 namespaces, every attribute a saved file
has), runs ``nvmet-p2p plan --state FILE`` on each in a fresh process against an empty nvmet
tree in a temporary directory (no kernel involved: parsing, validation and planning), and
prints wall seconds and peak RSS -- and their ratios against a 1000-namespace file run the same
way (a large real target), so a result reads on any machine. A file over the limit is refused
before it is read: that run's seconds are the refusal's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHECKOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def namespace(sub: int, n: int) -> dict:
    return {"nsid": n, "enable": 1, "p2pmem": "0", "buffered_io": "0", "ana_grpid": 1,
            "device": {"path": f"/dev/disk/by-id/nvme-eui.{sub:08x}{n:08x}",
                       "uuid": f"00000000-0000-4000-8000-{sub:04x}{n:08x}",
                       "nguid": "00000000-0000-0000-0000-000000000000"}}


def _doc(count: int) -> dict:
    subs, i = [], 0
    while count > 0:
        n = min(1024, count)
        subs.append({"nqn": f"nqn.2026-11.io.bench:s{i}",
                     "attr": {"allow_any_host": "1", "serial": f"s{i}", "model": "Linux"},
                     "allowed_hosts": [], "namespaces": [namespace(i, k) for k in range(1, n + 1)]})
        count -= n
        i += 1
    return {"hosts": [], "ports": [], "subsystems": subs}


def write_state_file(path: str, mib: float | None, namespaces: int | None) -> int:
    """Write a state file of ``namespaces`` namespaces, or of exactly ``mib`` MiB (as many whole
    namespaces as fit, then blanks, which cost parsing next to nothing); its namespace count."""
    if mib is None:
        text = json.dumps(_doc(namespaces), indent=2)
    else:
        target = int(mib * (1 << 20))
        per = len(json.dumps(_doc(1024), indent=2)) / 1024
        namespaces = int(target / per)
        text = json.dumps(_doc(namespaces), indent=2)
        while len(text) > target:
            namespaces = int(namespaces * target / len(text)) - 1
            text = json.dumps(_doc(namespaces), indent=2)
        text += " " * (target - len(text))
    with open(path, "w") as f:
        f.write(text)
    return namespaces


def state_file(path: str, *, mib: float | None = None, namespaces: int | None = None) -> int:
    """:func:`write_state_file` in a child process (the benchmark's own memory stays small: a
    child forked from it would start with it)."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--write", path,
                        str(mib) if mib is not None else "-", str(namespaces or 0)],
                       capture_output=True, text=True, check=True)
    return int(r.stdout)


def plan(path: str, root: str) -> tuple[float, int, int, str]:
    """(seconds, peak RSS in KiB, exit status, last line of stderr) of one plan in a new process
    (its own peak: ``wait4``'s resource usage of that child)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "nvmet_p2p", "plan", "--state", path,
                              "--root", root, "--state-dir", os.path.join(root, "state")],
                             stdout=subprocess.DEVNULL, stderr=err, cwd=CHECKOUT)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        last = (err.read().strip().splitlines() or [""])[-1]
    return seconds, usage.ru_maxrss, p.returncode, last


def main() -> int:
    if sys.argv[1:2] == ["--write"]:
        path, mib, n = sys.argv[2:5]
        print(write_state_file(path, None if mib == "-" else float(mib), int(n) or None))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=float, nargs="+", default=[1, 4, 8, 15.99, 16.01, 63.99])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = os.path.join(d, "root")
        for sub in ("subsystems", "ports", "hosts"):
            os.makedirs(os.path.join(root, "sys/kernel/config/nvmet", sub))
        base = os.path.join(d, "base.json")
        n0 = state_file(base, namespaces=1000)
        s0, m0, rc0, _ = plan(base, root)
        print(f"baseline: {n0} namespaces, {os.path.getsize(base) / (1 << 20):.2f} MiB: "
              f"{s0:.2f} s, {m0 / 1024:.0f} MiB peak RSS (exit {rc0})")
        print(f"{'file':>9}  {'namespaces':>10}  {'seconds':>8}  {'x base':>7}  {'peak RSS':>9}  "
              f"{'x base':>7}  result")
        for mib in args.mib:
            f = os.path.join(d, f"s{mib}.json")
            n = state_file(f, mib=mib)
            s, m, rc, err = plan(f, root)
            size = os.path.getsize(f) / (1 << 20)
            result = "planned" if rc == 0 else f"exit {rc}: {err[:70]}"
            print(f"{size:7.2f} M  {n:>10}  {s:8.2f}  {s / s0:7.1f}  {m / 1024:7.0f} M  "
                  f"{m / m0:7.1f}  {result}")
            os.unlink(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
