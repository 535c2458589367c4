#!/usr/bin/env python3
"""Start-up of the ``nvmet-p2p`` command line against ``nvmetcli ls``, the peer, in one run.

    tools/lab/run --topology default --share /path/to/nvmetcli -- \\
        python3 tools/bench/bench_startup.py --nvmetcli /path/to/nvmetcli/nvmetcli [--runs 9]

nvmetcli (``nvmetcli ls``: it imports configshell and nvmet/nvme.py, then lists the configfs
tree) is the baseline every command is held to: each at most 1.0x its time.

* ``--version`` and ``--help``: the whole command;
* ``status --json`` on an empty target (nvmet loaded, no object: what a monitoring script
  runs), with a fresh state directory;
* ``topology --inventory FILE``: the machine from a saved inventory (tests/data), no sysfs.

Each is run as a user runs it (the venv's console script, else ``python -m nvmet_p2p``), and
``nvmetcli ls`` right before it, ``--runs`` times: the ratio is the median over the runs of
(the command's wall time / that of the nvmetcli run just before it), so a busy host, whose
load comes and goes, slows both sides of each pair alike; the seconds shown are the medians,
``cpu`` is the same ratio of user+system time. ``python -c pass`` is timed the same way, for
scale. Bytecode is compiled once before anything is timed (``compileall`` of both programs),
and everything is run once untimed.

nvmetcli needs configfs with the nvmet module, so the benchmark runs where that is: in the lab
guest (``tools/lab/run``; TCG timings are emulated, the ratios are what counts) or on a host
with nvmet loaded. ``--nvmetcli`` names its script (default: ``nvmetcli`` on PATH); it is run
with this Python, which has configshell-fb (a dependency of nvmet-p2p), so both programs start
the same interpreter. nvmetcli is not packaged in Debian 12 nor on PyPI: take a checkout of
its repository (docs/dev/benchmarks.md says which). Prints a table and PASS/FAIL; ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import nvmet_p2p

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(nvmet_p2p.__file__)))
INVENTORY = os.path.join(CHECKOUT, "tests", "data", "lab_default_inventory.json")
TARGET = 1.0


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``cmd``."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, _, ru = os.wait4(p.pid, 0)
    return time.perf_counter() - t, ru.ru_utime + ru.ru_stime


def paired(cmd: list[str], base: list[str], runs: int, env: dict) -> dict:
    """``base`` then ``cmd``, ``runs`` times: medians and the median of the paired ratios."""
    pairs = [(timed(base, env), timed(cmd, env)) for _ in range(runs)]
    med = statistics.median
    return {"seconds": med(c[0] for _, c in pairs), "base_seconds": med(b[0] for b, _ in pairs),
            "ratio": med(c[0] / b[0] for b, c in pairs),
            "cpu_ratio": med(c[1] / max(b[1], 1e-6) for b, c in pairs)}


def commands(cli: list[str], tmp: str) -> dict[str, list[str]]:
    return {"--version": cli + ["--version"], "--help": cli + ["--help"],
            "status --json": cli + ["status", "--json", "--state-dir", os.path.join(tmp, "state")],
            "topology --inventory": cli + ["topology", "--inventory", INVENTORY]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--nvmetcli", default=shutil.which("nvmetcli"), metavar="SCRIPT",
                    help="nvmetcli's script (default: nvmetcli on PATH)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not a.nvmetcli or not os.path.exists(a.nvmetcli):
        ap.error("no nvmetcli: give --nvmetcli SCRIPT (docs/dev/benchmarks.md: where it comes from)")
    if not os.path.isdir("/sys/kernel/config/nvmet"):
        subprocess.run(["modprobe", "nvmet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not os.path.isdir("/sys/kernel/config/nvmet"):
        ap.error("nvmetcli ls needs the nvmet configfs tree: run this in the lab (tools/lab/run) "
                 "or where nvmet is loaded")
    py = sys.executable
    script = os.path.join(os.path.dirname(py), "nvmet-p2p")
    cli = [script] if os.access(script, os.X_OK) else [py, "-m", "nvmet_p2p"]
    nvmetcli_dir = os.path.dirname(os.path.abspath(a.nvmetcli))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((CHECKOUT, nvmetcli_dir)))
    base = [py, a.nvmetcli, "ls"]
    for d in (os.path.join(CHECKOUT, "nvmet_p2p"), os.path.join(nvmetcli_dir, "nvmet")):
        subprocess.run([py, "-m", "compileall", "-q", d], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
    lab = bool(os.environ.get("NVMET_P2P_LAB_DEVICES"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="nvmet-p2p-startup-") as tmp:
        cmds = commands(cli, tmp)
        check = subprocess.run(base, capture_output=True, text=True, env=env)
        if check.returncode:
            ap.error(f"`nvmetcli ls` failed ({check.returncode}): {check.stderr.strip()[-300:]}")
        for c in [*cmds.values(), [py, "-c", "pass"]]:            # one untimed run each
            subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        for name, cmd in [*cmds.items(), ("python -c pass", [py, "-c", "pass"])]:
            rows.append({"command": name, **paired(cmd, base, a.runs, env),
                         "target": TARGET if name in cmds else None})
            print(f"  {name}: {rows[-1]['seconds']:.3f} s, nvmetcli {rows[-1]['base_seconds']:.3f} s, "
                  f"ratio {rows[-1]['ratio']:.2f}", file=sys.stderr, flush=True)
    ok = all(r["ratio"] <= r["target"] for r in rows if r["target"] is not None)
    res = {"python": sys.version.split()[0], "kernel": os.uname().release, "machine": os.uname().nodename,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "emulated": "QEMU TCG lab" if lab else None, "runs": a.runs, "baseline": "nvmetcli ls",
           "rows": rows, "pass": ok}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"bench_startup: {a.runs} runs each, each after `nvmetcli ls`; python {res['python']}, "
              f"kernel {res['kernel']}, {res['date']}" + (" [emulated: QEMU TCG lab]" if lab else ""))
        print("ratio: median of (run / the nvmetcli ls run before it); seconds: medians; cpu: the same "
              "ratio of user+system time")
        print(f"{'command':<22} {'seconds':>8} {'nvmetcli':>9} {'ratio':>6} {'cpu':>6} {'target':>7}")
        for r in rows:
            tgt = f"<= {r['target']:g}" if r["target"] is not None else "(scale)"
            mark = "  <-- over" if r["target"] is not None and r["ratio"] > r["target"] else ""
            print(f"{r['command']:<22} {r['seconds']:>8.3f} {r['base_seconds']:>9.3f} {r['ratio']:>6.2f} "
                  f"{r['cpu_ratio']:>6.2f} {tgt:>7}{mark}")
        print("PASS" if ok else "FAIL")
    out = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out:
        with open(os.path.join(out, "bench_startup.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
