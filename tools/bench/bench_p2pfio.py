#!/usr/bin/env python3
"""Benchmark: does ``p2p-test --engine fio`` cost fio anything? (run it in the lab)

    tools/lab/run --topology default -- python3 tools/bench/bench_p2pfio.py [--reps 5] [--runtime 5]

One matrix cell (sequential 128 KiB at QD16 by default, buffers in cmbA's p2pmem, on cmbB's
namespace) measured two ways, interleaved, in one boot:

* **harness**: the full command, ``nvmet-p2p p2p-test --engine fio PROVIDER DEV --bs B --qd Q
  --repeat 1 ...`` — fio with its ETA lines streamed and parsed for progress, the pool sampler
  reading ``p2pmem/available`` every 0.25 s (``--sample-interval``), fio's JSON parsed, the
  verification passes around it, results written; the cell's write and read p2p runs are taken
  from its ``results.json``;
* **bare**: ``fio --output-format=json <job file>`` on the very job files the harness wrote
  (compared byte for byte with the first harness run's), and nothing else.

Order alternates (harness, bare), (bare, harness), ... so drift hits both alike. Printed per
direction: every run's GB/s, the pairwise ratios harness/bare and their median (target >=
0.97; exit status 0 when every direction reaches it), the ratio of the medians, and the CPU the
harness process used while that fio ran next to fio's own. Inside QEMU the numbers carry the
emulation label: only ratios mean anything (the emulated CMB is trapped MMIO).
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from nvmet_p2p.harness.environment import emulation_label  # noqa: E402

TARGET = 0.97


def lab_pair() -> tuple[str, str] | None:
    """(provider BDF, namespace) from the lab's device map: cmbA's CMB, cmbB's namespace."""
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        nv = json.load(f)["nvme"]
    if "cmbA" in nv and "cmbB" in nv:
        return nv["cmbA"]["bdf"], nv["cmbB"]["namespaces"][0]
    return None


def gbps(doc: dict) -> float:
    return sum(j["read"]["bw_bytes"] + j["write"]["bw_bytes"] for j in doc["jobs"]) / 1e9


def run_harness(args, provider: str, dev: str, out: str) -> dict[str, tuple[float, float, float, str]]:
    """The full command; per direction (GB/s, harness CPU s, fio CPU s, job file)."""
    cmd = [sys.executable, "-m", "nvmet_p2p", "p2p-test", "--engine", "fio", provider, dev, "--bs", args.bs,
           "--qd", str(args.qd), "--runtime", str(args.runtime), "--repeat", "1", "--size", args.size,
           "--offset", args.offset, "--sample-interval", str(args.sample_interval), "--allow-write",
           "--no-plots", "--json", "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        raise SystemExit(f"harness run failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    with open(path) as f:
        res = json.load(f)
    if res["p2p_test"]["verdict"] != "verified":
        raise SystemExit(f"harness run not verified: {res['p2p_test']['verdict']} {res['problems']}")
    got = {}
    for run in res["runs"]:
        w = run["workload"]
        if w["group"] != "matrix" or run["variant"] != "p2p":
            continue
        fio_cpu = sum((j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime_ms"] / 1000 for j in run["fio"]["jobs"])
        jf = os.path.join(out, "fio", f"{w['name']}-p2p-r1.fio")
        got[w["rw"]] = (run["summary"]["gb_per_s"], run["harness"]["cpu_s"], fio_cpu, jf)
    return got


def run_bare(jobfile: str, out: str) -> float:
    r = subprocess.run(["fio", "--output-format=json", f"--output={out}", jobfile], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bare fio failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    with open(out) as f:
        return gbps(json.load(f))


def measure(args, provider: str, dev: str, work: str) -> dict:
    vals: dict[str, dict[str, list[float]]] = {d: {"bare": [], "harness": [], "hcpu": [], "fcpu": []}
                                               for d in ("write", "read")}
    jobfiles: dict[str, str] = {}
    for i in range(args.reps):
        # harness first in even pairs (the first one also gives the bare runs their job files)
        order = ("harness", "bare") if i % 2 == 0 else ("bare", "harness")
        for kind in order:
            if kind == "harness":
                got = run_harness(args, provider, dev, os.path.join(work, f"harness-{i}"))
                for d, (v, hc, fc, jf) in got.items():
                    vals[d]["harness"].append(v)
                    vals[d]["hcpu"].append(hc)
                    vals[d]["fcpu"].append(fc)
                    if d not in jobfiles:
                        jobfiles[d] = os.path.join(work, f"{d}.fio")
                        shutil.copy(jf, jobfiles[d])
                    elif open(jf).read() != open(jobfiles[d]).read():
                        raise SystemExit("the harness ran a different job file than the bare run")
                    print(f"  rep {i + 1} harness {d:5}: {v:.4f} GB/s", file=sys.stderr, flush=True)
            else:
                for d, jf in jobfiles.items():
                    v = run_bare(jf, os.path.join(work, f"bare-{d}-{i}.json"))
                    vals[d]["bare"].append(v)
                    print(f"  rep {i + 1} bare    {d:5}: {v:.4f} GB/s", file=sys.stderr, flush=True)
    return vals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--provider", help="p2pmem provider BDF (default: the lab's cmbA)")
    ap.add_argument("--device", help="namespace (default: the lab's cmbB namespace); its data is destroyed")
    ap.add_argument("--bs", default="128k")
    ap.add_argument("--qd", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5, help="interleaved pairs (default 5)")
    ap.add_argument("--runtime", type=float, default=5.0)
    ap.add_argument("--size", default="16M", help="region size (p2p-test --size, default 16M)")
    ap.add_argument("--offset", default="160M", help="offset on the namespace (default 160M)")
    ap.add_argument("--sample-interval", type=float, default=0.25)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pair = (args.provider, args.device) if args.provider and args.device else lab_pair()
    if not pair or not os.path.exists(pair[1]):
        print("bench_p2pfio: no provider/namespace (give --provider and --device, or run it in the lab: "
              "tools/lab/run)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="bench-p2pfio-", dir=os.environ.get("NVMET_P2P_LAB_RESULTS"))
    vals = measure(args, *pair, work)
    rows = []
    for d, v in vals.items():
        pairs = [h / b for h, b in zip(v["harness"], v["bare"])]
        pr = statistics.median(pairs)
        rows.append({"direction": d, "bare": v["bare"], "harness": v["harness"], "pair_ratios": pairs,
                     "median_pair_ratio": pr, "ratio_of_medians": statistics.median(v["harness"]) /
                     statistics.median(v["bare"]), "harness_cpu_s": statistics.median(v["hcpu"]),
                     "fio_cpu_s": statistics.median(v["fcpu"]), "ok": pr >= TARGET})
    label = emulation_label()
    out = {"provider": pair[0], "device": pair[1], "cell": f"{args.bs} x QD{args.qd}", "reps": args.reps,
           "runtime_s": args.runtime, "emulated": label, "target_ratio": TARGET, "directions": rows,
           "ok": all(r["ok"] for r in rows)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if out["ok"] else 1
    if label:
        print(f"[{label}]")
    print(f"p2p buffers in {pair[0]}'s p2pmem, namespace {pair[1]}, {args.bs} x QD{args.qd}, "
          f"{args.reps} interleaved pairs of {args.runtime:g} s runs")
    for r in rows:
        print(f"{r['direction']}: bare median {statistics.median(r['bare']):.4f} GB/s, harness median "
              f"{statistics.median(r['harness']):.4f} GB/s (ratio of medians {r['ratio_of_medians']:.3f})")
        print(f"  pairwise harness/bare: {' '.join(f'{x:.3f}' for x in r['pair_ratios'])}")
        print(f"  median pairwise ratio = {r['median_pair_ratio']:.3f}  ({'ok' if r['ok'] else 'BELOW'} "
              f"target {TARGET})")
        print(f"  harness process CPU while fio ran: {r['harness_cpu_s']:.3f} s (median) vs fio's own "
              f"{r['fio_cpu_s']:.3f} s")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
