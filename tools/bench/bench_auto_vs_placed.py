#!/usr/bin/env python3
"""Benchmark (lab, real kernel): the kernel's auto mode (``p2pmem=1``) against nvmet-p2p's
placement, where the NIC's position decides which providers are candidates.

    tools/lab/run --topology rdma-p2p -- python3 tools/bench/bench_auto_vs_placed.py [--connects 4] [--runtime 3]

One namespace on an NVMe without a CMB of its own (``plain``) is exported through the lab's
emulated RDMA NIC (``rxp0``, an rxe_p2p device on an e1000e beside the CMBs on switch sw1; its
"DMA" is CPU copies). The providers the kernel accepts for both the NIC and the NVMe are the
ones on sw1 (a provider behind another root port is refused); among them the kernel's auto mode
(``pci_p2pmem_find_many()``) sees a tie at the smallest summed distance and picks one at random
for every host connection, whatever its free capacity. nvmet-p2p places once, by the same
rules plus room for the namespace's budget.

For each mode (placed first, then auto; same boot), ``--connects`` times: ``nvmet-p2p bench``
connects over RDMA, runs fio (sequential 128 KiB reads at ``--qd``, in flight more than the small
CMB holds) and disconnects. Per connection: the provider the kernel mapped (its ``using p2pmem
on <BDF>`` line, read by ``status``), the distance from that provider to the NIC, the offload
verdict for the window (``offload active`` / ``offload partial: pool exhausted``), the pool's
time near zero and GB/s. Printed: the table, the share of connections whose pool ran out per
mode and the ratio of median GB/s placed / auto. Under TCG every GB/s is an emulation number
(the CMB is trapped MMIO, the NIC copies with the CPU): only the verdicts and the ratio of
exhausted connections mean anything. Exit 1 if placement ever had a connection whose pool ran
out, or chose a provider outside the kernel's ties.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from nvmet_p2p import cli  # noqa: E402
from nvmet_p2p.harness.environment import emulation_label  # noqa: E402

SUB = "nqn.2026-12.io.nvmet-p2p.bench:auto-vs-placed"
HOSTID = "1b0c9e55-77a2-4f0e-9c3d-5a6b7c8d9e0f"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def cli_json(*args: str):
    rc, out, err = run_cli(*args, "--json")
    if rc:
        raise SystemExit(f"nvmet-p2p {' '.join(args)} failed ({rc}): {err.strip()[-500:]}")
    return json.loads(out)


def profile_text(policy: str, nic: str, serial: str) -> str:
    return f"""version: 1
budget: {{hosts: 1, queues: 2, queue_depth: 16, io_size: 128KiB}}
hosts:
  - nqn: {HOSTNQN}
ports:
  - {{id: 7, transport: rdma, rdma_device: {nic}, trsvcid: 4460, inline_data_size: 0}}
subsystems:
  - nqn: {SUB}
    hosts: [{HOSTNQN}]
    ports: [7]
    namespaces:
      - select: {{serial: {serial}}}
        p2p: {policy}
"""


def one_connection(args, ip: str, out: str) -> dict:
    """``nvmet-p2p bench`` once (one host connection) and what its evidence says."""
    rc, text, err = run_cli("bench", "-t", "rdma", "-a", ip, "-s", "4460", "-n", SUB, "--hostnqn", HOSTNQN,
                            "--hostid", HOSTID, "--matrix", "quick", "--qd", str(args.qd),
                            "--workload", f"seq-read-128k-qd{args.qd}", "--runtime", str(args.runtime),
                            "--ramp", "0", "--no-plots", "--sample-interval", "0.2", "--out", out,
                            "--state-dir", args.state_dir)
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    (run,) = res["runs"]
    (row,) = run["offload"] or [{}]
    prov = row.get("provider")
    u = (run.get("pool") or {}).get(prov) or {}
    return {"rc": rc, "provider": prov, "verdict": row.get("verdict"), "reason": row.get("reason"),
            "gb_per_s": (run.get("summary") or {}).get("gb_per_s"), "near_zero_s": u.get("seconds_near_zero"),
            "near_zero_pct": u.get("pct_near_zero"), "peak_in_use": u.get("peak_in_use"), "size": u.get("size")}


def mode(args, policy: str, nic: str, ip: str, serial: str, work: str) -> list[dict]:
    prof = os.path.join(work, f"{policy}.yaml")
    with open(prof, "w") as f:
        f.write(profile_text(policy, nic, serial))
    rc, _, err = run_cli("apply", "--profile", prof, "--state-dir", args.state_dir)
    if rc:
        raise SystemExit(f"apply --profile ({policy}) failed: {err.strip()[-500:]}")
    rows = []
    for i in range(args.connects):
        r = one_connection(args, ip, os.path.join(work, f"{policy}-{i}"))
        rows.append(r)
        print(f"... {policy} connection {i + 1}: {r['provider']} {r['verdict']}", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connects", type=int, default=4, help="host connections per mode (default 4)")
    ap.add_argument("--runtime", type=float, default=3.0, help="fio seconds per connection (default 3)")
    ap.add_argument("--qd", type=int, default=32, help="queue depth of the 128 KiB reads (default 32)")
    ap.add_argument("--nic", default="rxp0", help="RDMA device the namespace is exported through")
    ap.add_argument("--serial", default="plain", help="serial of the NVMe behind the namespace")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.environ.get("NVMET_P2P_LAB") != "1":
        raise SystemExit("run it in the lab: tools/lab/run --topology rdma-p2p -- python3 "
                         "tools/bench/bench_auto_vs_placed.py")
    work = os.environ.get("NVMET_P2P_LAB_RESULTS") or tempfile.mkdtemp()
    work = os.path.join(work, "auto-vs-placed")
    os.makedirs(work, exist_ok=True)
    args.state_dir = os.path.join(work, "state")
    topo = cli_json("topology")
    ns = next(n for n in topo["inventory"]["namespaces"].values()
              if topo["inventory"]["nvme"][n["controller"]]["serial"].strip() == args.serial)
    nicdev = topo["inventory"]["rdma"][args.nic]
    ip = next(a.split("/")[0] for nd in nicdev["netdevs"] for a in topo["inventory"]["net"][nd]["addresses"]
              if "." in a)
    for m in ("nvmet", "nvmet-rdma", "nvme-rdma"):
        os.system(f"modprobe {m}")
    find = cli_json("distance", "--find", f"/dev/{ns['name']}", args.nic)
    to_nic = {c["provider"]: cli_json("distance", c["provider"], args.nic)["distance"]
              for c in find["candidates"]}
    try:
        placed = mode(args, "placed", args.nic, ip, args.serial, work)
        auto = mode(args, "kernel", args.nic, ip, args.serial, work)
    finally:
        run_cli("clear", "--state-dir", args.state_dir)
    return report(args, find, to_nic, placed, auto)


def report(args, find: dict, to_nic: dict, placed: list[dict], auto: list[dict]) -> int:
    label = emulation_label() or "measured on real hardware"
    ties = set(find["ties"])
    out = {"emulated": emulation_label(), "ties": sorted(ties), "best_distance": find["best_distance"],
           "distance_to_nic": to_nic, "placed": placed, "auto": auto}

    def exhausted(rows):
        return sum(1 for r in rows if r["reason"] == "pool_exhausted")

    def med(rows):
        v = [r["gb_per_s"] for r in rows if r["gb_per_s"]]
        return statistics.median(v) if v else None
    mp, ma = med(placed), med(auto)
    out["ratio_gb_per_s_placed_auto"] = (mp / ma) if mp and ma else None
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"[{label}]")
        print(f"kernel's candidates for {args.nic} + {args.serial}: "
              + ", ".join(f"{c['provider']} (sum {c['distance']})" for c in find["candidates"])
              + f"; ties at {find['best_distance']}: {', '.join(sorted(ties))}")
        print("distance of each provider to the NIC: "
              + ", ".join(f"{p} {d}" for p, d in sorted(to_nic.items())))
        print(f"{'mode':<7} {'conn':>4}  {'provider':<13} {'to NIC':>6}  {'GB/s':>6}  {'near zero':>12}  verdict")
        for name, rows in (("placed", placed), ("auto", auto)):
            for i, r in enumerate(rows, 1):
                nz = "-" if r["near_zero_s"] is None else f"{r['near_zero_s']:.1f} s ({r['near_zero_pct'] or 0:.0f}%)"
                gb = "-" if r["gb_per_s"] is None else f"{r['gb_per_s']:.3f}"
                print(f"{name:<7} {i:>4}  {r['provider'] or '-':<13} {to_nic.get(r['provider'], '-')!s:>6}  "
                      f"{gb:>6}  {nz:>12}  {r['verdict']}")
        print(f"pool exhausted: placed {exhausted(placed)}/{len(placed)} connections, "
              f"auto {exhausted(auto)}/{len(auto)}")
        if out["ratio_gb_per_s_placed_auto"]:
            print(f"median GB/s placed / auto = {out['ratio_gb_per_s_placed_auto']:.3f} ({label})")
    bad = exhausted(placed) or any(r["provider"] not in ties for r in placed + auto)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
