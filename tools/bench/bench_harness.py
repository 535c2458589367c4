#!/usr/bin/env python3
"""Benchmark: does the harness cost fio anything? (run it in the lab)

    tools/lab/run --topology default -- python3 tools/bench/bench_harness.py [--reps 5] [--runtime 5]

The same fio job file runs on the same block device, interleaved, in one boot:

* **bare**: ``fio --output-format=json <job file>`` and nothing else;
* **harness**: ``nvmet-p2p bench --device DEV --workload W ...`` — the full command: fio with
  ETA lines (every 2 s) streamed and parsed for progress, stderr drained, the target-evidence sampler
  reading ``p2pmem/available`` of every provider every second (``--target-status local``),
  results.json / CSV / summary written afterwards.

Order alternates (bare, harness), (harness, bare), ... so drift hits both alike. Printed: every
run's GB/s (IOPS for 4 KiB jobs); per workload the median of the pairwise ratios harness/bare
(each pair ran back to back, which cancels slow drift such as other VMs on the host starting or
stopping) and the ratio of the medians; and the CPU the harness process itself used while fio
ran, next to fio's own. The target is a median pairwise ratio >= 0.97; the exit status is 0
when every workload reaches it, 1 otherwise. Inside QEMU the numbers carry the emulation label:
only ratios mean anything.

The job file the harness wrote is compared with the bare one byte for byte first, so both
really run the same job.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from nvmet_p2p.harness import workloads as W  # noqa: E402
from nvmet_p2p.harness.environment import emulation_label  # noqa: E402
from nvmet_p2p.harness.fio import job_file  # noqa: E402

TARGET = 0.97


def lab_device() -> str | None:
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        dm = json.load(f)
    nv = dm.get("nvme", {})
    for serial in ("cmbC", "plain", *sorted(nv)):
        if serial in nv and nv[serial].get("namespaces"):
            return nv[serial]["namespaces"][0]
    return None


def metric(workload, bw_bytes: float, iops: float) -> float:
    return iops if workload.bs == "4k" else bw_bytes / 1e9


def run_bare(workload, jobfile: str, out: str) -> float:
    r = subprocess.run(["fio", "--output-format=json", f"--output={out}", jobfile],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bare fio failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    with open(out) as f:
        jobs = json.load(f)["jobs"]
    return metric(workload, sum(j["read"]["bw_bytes"] + j["write"]["bw_bytes"] for j in jobs),
                  sum(j["read"]["iops"] + j["write"]["iops"] for j in jobs))


def run_harness(workload, args, device: str, out: str, bare_jobfile: str) -> tuple[float, float, float]:
    cmd = [sys.executable, "-m", "nvmet_p2p", "bench", "--device", device, "--matrix", args.matrix,
           "--workload", workload.name, "--runtime", str(args.runtime), "--ramp", str(args.ramp),
           "--no-plots", "--target-status", args.target_status, "--out", out]
    if workload.writes:
        cmd.append("--allow-write")
    if args.target_status == "local":
        cmd += ["--sample-interval", str(args.sample_interval)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    res_path = os.path.join(out, "results.json")
    if not os.path.exists(res_path):
        raise SystemExit(f"harness run failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    with open(res_path) as f:
        res = json.load(f)
    (run,) = res["runs"]
    if not run["fio"]["ok"]:
        raise SystemExit(f"harness fio run failed: {run['fio']['problems']}")
    with open(os.path.join(out, "fio", f"{workload.name}.fio")) as f, open(bare_jobfile) as g:
        if f.read() != g.read():
            raise SystemExit("the harness ran a different job file than the bare run")
    s = run["summary"]
    fio_cpu = sum((j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime_ms"] / 1000 for j in run["fio"]["jobs"])
    return metric(workload, s["gb_per_s"] * 1e9, s["iops"]), run["harness"]["cpu_s"], fio_cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", help="block device (default: a namespace from the lab's device map)")
    ap.add_argument("--workload", action="append",
                    help="workloads of the matrix (default: seq-read-128k-qd16 and rand-read-4k-qd16)")
    ap.add_argument("--matrix", default="quick")
    ap.add_argument("--reps", type=int, default=7, help="interleaved pairs per workload (default 7)")
    ap.add_argument("--runtime", type=float, default=5.0)
    ap.add_argument("--ramp", type=float, default=1.0)
    ap.add_argument("--target-status", default="local", choices=("local", "none"),
                    help="harness samples the local p2pmem pools while fio runs (default local)")
    ap.add_argument("--sample-interval", type=float, default=1.0,
                    help="harness's p2pmem sampling interval (bench --sample-interval; default 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    device = args.device or lab_device()
    if not device or not os.path.exists(device):
        print("bench_harness: no device (give --device, or run it in the lab: tools/lab/run)", file=sys.stderr)
        return 2
    names = args.workload or ["seq-read-128k-qd16", "rand-read-4k-qd16"]
    matrix = W.select(W.build_matrix(args.matrix, runtime=args.runtime, ramp=args.ramp), names)
    work = tempfile.mkdtemp(prefix="bench-harness-", dir=os.environ.get("NVMET_P2P_LAB_RESULTS"))
    label = emulation_label()
    rows = []
    for w in matrix:
        jf = os.path.join(work, f"{w.name}.fio")
        with open(jf, "w") as f:
            f.write(job_file(w, [device]))
        bare, harn, hcpu, fcpu = [], [], [], []
        for i in range(args.reps):
            order = ("bare", "harness") if i % 2 == 0 else ("harness", "bare")
            for kind in order:
                if kind == "bare":
                    v = run_bare(w, jf, os.path.join(work, f"{w.name}-bare-{i}.json"))
                    bare.append(v)
                else:
                    v, hc, fc = run_harness(w, args, device, os.path.join(work, f"{w.name}-harness-{i}"), jf)
                    harn.append(v)
                    hcpu.append(hc)
                    fcpu.append(fc)
                print(f"  {w.name} rep {i + 1} {kind:7}: {v:.4f} {'IOPS' if w.bs == '4k' else 'GB/s'}",
                      file=sys.stderr, flush=True)
        mb, mh = statistics.median(bare), statistics.median(harn)
        pairs = [h / b for h, b in zip(harn, bare)]
        pr = statistics.median(pairs)
        rows.append({"workload": w.name, "unit": "IOPS" if w.bs == "4k" else "GB/s", "bare": bare,
                     "harness": harn, "pair_ratios": pairs, "median_pair_ratio": pr,
                     "median_bare": mb, "median_harness": mh, "ratio_of_medians": mh / mb,
                     "harness_cpu_s": statistics.median(hcpu), "fio_cpu_s": statistics.median(fcpu),
                     "ok": pr >= TARGET})
    out = {"device": device, "reps": args.reps, "runtime_s": args.runtime, "emulated": label,
           "target_ratio": TARGET, "workloads": rows, "ok": all(r["ok"] for r in rows)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        if label:
            print(f"[{label}]")
        print(f"device {device}, {args.reps} interleaved pairs per workload, {args.runtime:g} s each")
        for r in rows:
            print(f"{r['workload']}: bare median {r['median_bare']:.4f} {r['unit']}, harness median "
                  f"{r['median_harness']:.4f} {r['unit']} (ratio of medians {r['ratio_of_medians']:.3f})")
            print(f"  pairwise harness/bare: {' '.join(f'{x:.3f}' for x in r['pair_ratios'])}")
            print(f"  median pairwise ratio = {r['median_pair_ratio']:.3f}  "
                  f"({'ok' if r['ok'] else 'BELOW'} target {TARGET})")
            print(f"  harness process CPU while fio ran: {r['harness_cpu_s']:.3f} s (median) vs fio's own "
                  f"{r['fio_cpu_s']:.3f} s")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
