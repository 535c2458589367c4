#!/usr/bin/env python3
"""Benchmark: TAB completion in ``nvmet-p2p shell`` as the target grows (run it in the lab).

    tools/lab/run --topology default -- python3 tools/bench/bench_shell.py [--reps 40]

Builds, through the reconciler, one subsystem exported on an RDMA port with N enabled
namespaces: namespace 1 on cmbA's namespace (the one completed), the others on cmbB's with
``p2pmem`` pinned to cmbB (the kernel accepts the same block device in many namespaces).
First N = 10, then the same target grown to N = 1000, both in this one VM. For each size a
shell session is opened in-process, ``cd`` to namespace 1, and each completion is timed the
way readline calls it (configshell's completer on the line; ``complete_line``):
``set p2pmem=`` (ranked providers), ``set p2pmem=0000:0``, ``set device path=/dev/nvme``,
``set `` (attribute names), and ``set p2pmem=`` as the first TAB after a staged change (the
per-change caches are rebuilt then). Prints the median of ``--reps`` runs per size and the
ratio 1000 / 10; the target is <= 1.5 for every line. Cleans up afterwards.

The lab is QEMU TCG: absolute times are emulation numbers; the ratio is the result.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from nvmet_p2p import statefile  # noqa: E402
from nvmet_p2p.apply import clear, reconcile  # noqa: E402

NQN = "nqn.2026-12.io.nvmet-p2p:bench-shell"
LINES = ("set p2pmem=", "set p2pmem=0000:0", "set device path=/dev/nvme", "set ")
TARGET = 1.5


def devices() -> dict:
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if not path:
        raise SystemExit("bench_shell: run it inside the lab (tools/lab/run): no device map")
    with open(path) as f:
        dm = json.load(f)
    nv, rdma = dm["nvme"], next(iter(dm["rdma"].values()))
    return {"a": nv["cmbA"]["namespaces"][0], "b": nv["cmbB"]["namespaces"][0],
            "b_bdf": nv["cmbB"]["bdf"], "ip": rdma["ip"]}


def state(n: int, d: dict) -> dict:
    nss = [{"nsid": 1, "enable": 1, "device": {"path": d["a"]}, "p2pmem": "0"}]
    nss += [{"nsid": i, "enable": 1, "device": {"path": d["b"]}, "p2pmem": d["b_bdf"]}
            for i in range(2, n + 1)]
    return {"hosts": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": nss}],
            "ports": [{"portid": 91, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": d["ip"],
                                              "trsvcid": "4491"}, "subsystems": [NQN]}]}


def open_shell(sd: str):
    from nvmet_p2p.shell.app import ShellApp
    from nvmet_p2p.shell.p2p import P2pContext
    from nvmet_p2p.shell.session import Session
    t = time.perf_counter()
    app = ShellApp(Session("/", sd), P2pContext("/"), out=io.StringIO(), err=io.StringIO())
    assert app.run_script([("cd", f"cd /subsystems/{NQN}/namespaces/1")], finish=False) == 0
    app.p2p.inv
    return app, time.perf_counter() - t


def timed(app, line: str, reps: int, after_change: bool = False, warm: int = 10) -> dict:
    got = app.shell.complete_line(line)           # check it offers something
    if not got:
        raise SystemExit(f"bench_shell: `{line}` completes to nothing")
    for _ in range(warm):                         # TCG translates code on first use: warm it
        app.shell.complete_line(line)
    times = []
    for i in range(reps):
        if after_change:
            app.run_line(f"set buffered_io={i % 2}")
        t = time.perf_counter()
        app.shell.complete_line(line)
        times.append(time.perf_counter() - t)
    if after_change:
        app.session.abort()
    return {"median_ms": round(statistics.median(times) * 1000, 3),
            "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 3),
            "completions": len(got)}


def measure(n: int, d: dict, sd: str, reps: int) -> dict:
    t = time.perf_counter()
    reconcile("/", statefile.parse(state(n, d)), sd)
    built = time.perf_counter() - t
    app, opened = open_shell(sd)
    res = {"namespaces": n, "build_seconds": round(built, 2), "open_seconds": round(opened, 3),
           "lines": {line: timed(app, line, reps) for line in LINES}}
    res["lines"]["set p2pmem= (first TAB after a change)"] = timed(app, "set p2pmem=", reps, True)
    print(f"... {n} namespaces: built in {built:.1f} s, shell opened in {opened:.2f} s; "
          + ", ".join(f"`{k}` {v['median_ms']:.2f} ms" for k, v in res["lines"].items()),
          file=sys.stderr)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir("/sys/kernel/config") or os.geteuid() != 0:
        print("bench_shell: needs root and configfs (run it inside the lab: tools/lab/run)",
              file=sys.stderr)
        return 2
    for m in ("nvmet", "nvmet-rdma"):
        subprocess.run(["modprobe", m], check=False)
    d = devices()
    sd = tempfile.mkdtemp(prefix="nvmet-p2p-bench-shell-")
    try:
        small = measure(a.small, d, sd, a.reps)
        large = measure(a.large, d, sd, a.reps)
    finally:
        clear("/", sd)
    ratios = {k: round(large["lines"][k]["median_ms"] / small["lines"][k]["median_ms"], 3)
              for k in small["lines"]}
    res = {"kernel": os.uname().release, "emulated": "QEMU TCG: absolute times are emulation numbers",
           "small": small, "large": large, "ratios": ratios, "target": TARGET,
           "pass": all(r <= TARGET for r in ratios.values())}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"bench_shell: TAB completion, {a.small} vs {a.large} namespaces, median of {a.reps} "
              f"(kernel {res['kernel']}; {res['emulated']})")
        w = max(len(k) for k in ratios) + 2
        print(f"{'completion':<{w}} {f'{a.small} ns ms':>10} {f'{a.large} ns ms':>11} {'ratio':>7}")
        for k, r in ratios.items():
            print(f"{'`' + k + '`':<{w}} {small['lines'][k]['median_ms']:>10.2f} "
                  f"{large['lines'][k]['median_ms']:>11.2f} {r:>7.3f}")
        print(f"shell start (reads the whole tree): {small['open_seconds']:.2f} s with {a.small}, "
              f"{large['open_seconds']:.2f} s with {a.large} namespaces")
        print(f"{'PASS' if res['pass'] else 'FAIL'}: every ratio <= {TARGET}")
    out_dir = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out_dir:
        with open(os.path.join(out_dir, "bench_shell.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
