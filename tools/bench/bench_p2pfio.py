#!/usr/bin/env python3
"""Benchmark: does the fio path of ``p2p-test --engine fio`` cost fio anything? (run it in the lab)

    tools/lab/run --topology default -- python3 tools/bench/bench_p2pfio.py [--reps 5] [--runtime 5]

One matrix cell (sequential 128 KiB at QD16 by default, write then read, buffers in cmbA's
p2pmem, on cmbB's namespace) measured two ways, interleaved, in one process and one boot:

* **harness**: the command's own fio path, :meth:`FioP2pRun.fio_pass` — fio with its ETA lines
  streamed and parsed for progress (printed to stderr as the command does), the pool sampler
  reading ``p2pmem/available`` every 0.25 s (``--sample-interval``), fio's JSON and stderr
  parsed into the run record, the job file written and kept;
* **bare**: ``fio --output-format=json <job file>`` on a copy of the very job file the harness
  wrote for that run (compared byte for byte), and nothing else.

Before the pairs, the command's preparation and verification passes run once (the region is
written and both directions are verified, or the benchmark stops); after them, the final
checks (every write of both kinds carried fio's headers). Those passes are extra *time* the
command spends by design, not overhead on the measured runs, which is what this compares.
Order alternates (harness, bare), (bare, harness), ... so drift hits both alike: printed per
direction are every run's GB/s, the pairwise ratios harness/bare and their median (target >=
0.97; exit status 0 when every direction reaches it), the ratio of the medians, and the CPU
the harness process used while that fio ran next to fio's own. Inside QEMU the numbers carry
the emulation label: only ratios mean anything (the emulated CMB is trapped MMIO).
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

from nvmet_p2p.harness import p2pfio as pf  # noqa: E402
from nvmet_p2p.harness import p2pfio_report as rep  # noqa: E402
from nvmet_p2p.harness import p2ptest  # noqa: E402
from nvmet_p2p.harness.environment import emulation_label  # noqa: E402
from nvmet_p2p.harness.p2pfio_run import FioP2pRun, alloc_path  # noqa: E402
from nvmet_p2p.output import Progress  # noqa: E402

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


def run_bare(jobfile: str, out: str) -> float:
    r = subprocess.run(["fio", "--output-format=json", f"--output={out}", jobfile], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bare fio failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    with open(out) as f:
        return gbps(json.load(f))


def harness(args, provider: str, dev: str, work: str):
    """The command's runner for one cell, its preparation and verification done."""
    pool = p2ptest.check_provider(provider)
    plan = pf.make_plan(provider, [dev], available=pool["available"], pool_size=pool["size"], device_sizes={},
                        iomem=f"mmapshared:{alloc_path('/', provider)}", size=p2ptest.parse_size(args.size),
                        offset=p2ptest.parse_size(args.offset, "--offset", zero_ok=True),
                        bss=(p2ptest.parse_size(args.bs, "--bs"),), qds=(args.qd,), repeat=1, runtime=args.runtime)
    run = FioP2pRun(plan, work, sample_interval=args.sample_interval, plots=False, progress=Progress())
    run.verify_phase()
    st = rep.device_status(run.runs, dev)["checks"]
    if any(st.get(c, {}).get("status") != "verified" for c in ("cmb_to_nvme", "nvme_to_cmb")):
        raise SystemExit(f"the pair does not verify: {st}")
    return plan, run


def measure(args, plan, run, work: str) -> dict:
    vals: dict[str, dict[str, list[float]]] = {c.rw: {"bare": [], "harness": [], "hcpu": [], "fcpu": []}
                                               for c in plan.cells}
    for i in range(args.reps):
        order = ("harness", "bare") if i % 2 == 0 else ("bare", "harness")
        for cell in plan.cells:                       # write, then read (what it wrote)
            v = vals[cell.rw]
            for kind in order:
                if kind == "harness":
                    e = run.fio_pass(pf.matrix_workload(plan, cell, "p2p"), "p2p", cell.bs, cell.iodepth, rnd=i + 1)
                    if not e["fio"]["ok"]:
                        raise SystemExit(f"harness fio run failed: {e['fio']['problems']}")
                    jf = os.path.join(work, "fio", f"{cell.name}-p2p-r{i + 1}.fio")
                    bare_jf = os.path.join(work, f"{cell.rw}.fio")
                    if not os.path.exists(bare_jf):
                        shutil.copy(jf, bare_jf)
                    elif open(jf).read() != open(bare_jf).read():
                        raise SystemExit("the harness ran a different job file than the bare run")
                    v["harness"].append(e["summary"]["gb_per_s"])
                    v["hcpu"].append(e["harness"]["cpu_s"])
                    v["fcpu"].append(sum((j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime_ms"] / 1000
                                         for j in e["fio"]["jobs"]))
                else:
                    bare_jf = os.path.join(work, f"{cell.rw}.fio")
                    if not os.path.exists(bare_jf):     # the first pair starts with the harness
                        continue
                    v["bare"].append(run_bare(bare_jf, os.path.join(work, f"bare-{cell.rw}-{i}.json")))
                got = v[kind][-1]
                print(f"  rep {i + 1} {kind:7} {cell.rw:5}: {got:.4f} GB/s", file=sys.stderr, flush=True)
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
    plan, run = harness(args, *pair, work)
    vals = measure(args, plan, run, work)
    run.final_phase()
    final = {k: v["status"] for k, v in rep.device_status(run.runs, pair[1])["checks"].items()}
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
           "checks": final, "ok": all(r["ok"] for r in rows)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if out["ok"] else 1
    if label:
        print(f"[{label}]")
    print(f"p2p buffers in {pair[0]}'s p2pmem, namespace {pair[1]}, {args.bs} x QD{args.qd}, "
          f"{args.reps} interleaved pairs of {args.runtime:g} s runs; data checks: "
          + ", ".join(f"{k} {v}" for k, v in final.items()))
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
