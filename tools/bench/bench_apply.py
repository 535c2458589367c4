#!/usr/bin/env python3
"""Benchmark of the reconciler against the real nvmet configfs (run it in the lab).

    tools/lab/run --topology default -- python3 tools/bench/bench_apply.py [--namespaces 1000]

Applies a state of N namespaces (one subsystem; NVMET_MAX_NAMESPACES is 1024 per subsystem)
backed by a null_blk device from an empty target, re-applies it unchanged, then changes one
namespace. Prints seconds and configfs writes of each step and the ratios against the full
apply (targets: unchanged re-apply < 2 %, one-namespace change < 5 %), where each step's time
went (parse the state, read configfs, plan, apply, record the managed set), and a floor: the
time a minimal loop in the same VM takes to read just the attributes any re-apply has to read
(those the state names, plus ``enable``: 3 per namespace), with the cheapest syscalls
(open relative to the namespaces/ directory, one read, close). Cleans up afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from nvmet_p2p.nvmet import statefile  # noqa: E402
from nvmet_p2p.nvmet.apply import clear, reconcile  # noqa: E402

NQN = "nqn.2026-11.io.nvmet-p2p:bench"


def state(n: int, dev: str, changed: int | None = None) -> dict:
    nss = []
    for i in range(1, n + 1):
        ns = {"nsid": i, "enable": 1, "device": {"path": dev, "uuid": f"00000000-0000-4000-8000-{i:012x}"}}
        if changed == i:
            ns["device"]["uuid"] = f"11111111-0000-4000-8000-{i:012x}"
        nss.append(ns)
    return {"hosts": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": nss}],
            "ports": [{"portid": 77, "addr": {"trtype": "loop"}, "subsystems": [NQN]}]}


def read_floor(n: int, reps: int = 3) -> float:
    """Best of ``reps`` of a bare loop reading device_path, device_uuid and enable of the
    ``n`` benchmark namespaces: the least any re-apply has to do (no parsing, no planning)."""
    base = f"/sys/kernel/config/nvmet/subsystems/{NQN}/namespaces"
    names = [f"{i}/{attr}" for i in range(1, n + 1) for attr in ("device_path", "device_uuid", "enable")]
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        dfd = os.open(base, os.O_PATH | os.O_DIRECTORY)
        for name in names:
            fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
            os.read(fd, 8192)
            os.close(fd)
        os.close(dfd)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--device", default="/dev/nullb0")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir("/sys/kernel/config") or os.geteuid() != 0:
        print("bench_apply: needs root and configfs (run it inside the lab: tools/lab/run)", file=sys.stderr)
        return 2
    for m in ("nvmet", "nvme-loop", "null_blk"):
        subprocess.run(["modprobe", m], check=False)
    if not os.path.exists(a.device):
        print(f"bench_apply: {a.device} does not exist", file=sys.stderr)
        return 2
    sd = tempfile.mkdtemp(prefix="nvmet-p2p-bench-")
    rows = []

    def step(name, doc, **kw):
        t = time.perf_counter()
        desired = statefile.parse(doc)
        t_parse = time.perf_counter() - t
        out = reconcile("/", desired, sd, **kw)
        dt = time.perf_counter() - t
        phases = {"parse": t_parse, **out.timings}
        rows.append({"step": name, "seconds": round(dt, 3), "configfs_writes": out.result.writes,
                     "plan_ops": len(out.plan.ops),
                     "phases": {k: round(v, 4) for k, v in phases.items()}})
        print(f"... {name}: {dt:.2f} s, {out.result.writes} writes ("
              + ", ".join(f"{k} {v:.3f}" for k, v in phases.items()) + ")", file=sys.stderr)

    floor = None
    try:
        step("full apply from empty", state(a.namespaces, a.device))
        step("re-apply unchanged", state(a.namespaces, a.device))
        step("change one namespace", state(a.namespaces, a.device, changed=a.namespaces // 2))
        floor = read_floor(a.namespaces)
    finally:
        t = time.perf_counter()
        clear("/", sd)
        clear_s = time.perf_counter() - t
    full = rows[0]
    res = {"namespaces": a.namespaces, "device": a.device, "kernel": os.uname().release,
           "steps": rows, "clear_seconds": round(clear_s, 3),
           "ratios": {r["step"]: {"seconds": round(r["seconds"] / full["seconds"], 5),
                                  "writes": round(r["configfs_writes"] / full["configfs_writes"], 5)}
                      for r in rows[1:]},
           "targets": {"re-apply unchanged": 0.02, "change one namespace": 0.05}}
    if floor is not None:
        res["read_floor"] = {"reads": 3 * a.namespaces, "seconds": round(floor, 4),
                             "ratio": round(floor / full["seconds"], 5)}
    res["pass"] = all(res["ratios"][k]["seconds"] < v for k, v in res["targets"].items())
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"bench_apply: {a.namespaces} namespaces on {a.device}, kernel {res['kernel']}")
        print(f"{'step':<24} {'seconds':>9} {'writes':>7} {'time ratio':>11} {'target':>7}")
        for r in rows:
            ratio = res["ratios"].get(r["step"], {}).get("seconds")
            tgt = res["targets"].get(r["step"])
            print(f"{r['step']:<24} {r['seconds']:>9.3f} {r['configfs_writes']:>7} "
                  f"{(f'{ratio:.2%}' if ratio is not None else '(base)'):>11} "
                  f"{(f'< {tgt:.0%}' if tgt else ''):>7}")
        for r in rows:
            print(f"  {r['step']:<22} " + ", ".join(f"{k} {v:.3f}" for k, v in r["phases"].items()))
        if floor is not None:
            print(f"floor: a bare loop reading the {3 * a.namespaces} attributes a re-apply must read: "
                  f"{floor:.3f} s ({floor / full['seconds']:.2%} of the full apply)")
        print(f"clear (rmdir {a.namespaces} namespaces): {clear_s:.2f} s")
        print("PASS" if res["pass"] else "FAIL")
    out_dir = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out_dir:
        with open(os.path.join(out_dir, "bench_apply.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
