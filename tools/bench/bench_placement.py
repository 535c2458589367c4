#!/usr/bin/env python3
"""Benchmark: placement quality against the kernel's own auto mode, and planning speed.

Quality. On four synthetic reference machines (tests/support/machine.py) a profile exports every
namespace through the RDMA NIC(s) its subsystem names, with a budget per namespace of hosts x
queues x depth x I/O size. Every host connection is one namespace x NIC path:

* nvmet-p2p: the provider ``placement`` writes into the namespace's ``p2pmem`` serves every
  connection whose NIC the kernel accepts for it (per connection the kernel checks provider <->
  NIC and silently uses host memory otherwise);
* kernel auto mode (``p2pmem=1``): per connection the kernel picks uniformly at random among
  the published providers at the smallest summed distance (``pci_p2pmem_find_many`` as
  ``nvmet_p2p.pci.distance`` predicts it), averaged over ``--seeds`` seeds.

Reported per machine and method: share of paths that stay below the root complex (the provider
reaches NIC and NVMe as bus_addr), worst provider oversubscription (budgeted in-flight bytes /
available p2pmem), expected share of in-flight bytes falling back to host memory (beyond a
pool's available bytes, or no provider), and share of paths whose provider is on another NUMA
node than the NIC. Ratios are nvmet-p2p / kernel. The run fails (exit 1) unless nvmet-p2p is
at least as good as the kernel on every machine and strictly better on the AMD and small-CMB
machines.

Speed. Planning 4096 namespaces over 64 providers and 8 NICs (tests/support/machine.py
``big_machine``: load + resolve + place, without and with the per-candidate explanation),
against a baseline run in the same process: one ``find_many`` verdict per namespace x NIC,
i.e. only asking the kernel's rules what auto mode would consider. Target: < 1 s.

    .venv/bin/python tools/bench/bench_placement.py [--seeds 200] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, CHECKOUT)
sys.path.insert(0, os.path.join(CHECKOUT, "tests"))

from nvmet_p2p.pci.distance import P2pdma  # noqa: E402
from nvmet_p2p.policy import placement, profile  # noqa: E402
from support import machine as machines  # noqa: E402

MiB = 1 << 20
BUDGET = "budget: {hosts: 2, queues: 4, queue_depth: 64, io_size: 128KiB}\n"   # 64 MiB/ns


def profile_text(ports: list[str], subsystems: list[tuple[str, list[int], str]]) -> str:
    """A profile: ``ports`` RDMA device names (ids 1..), subsystems (name, port ids, select)."""
    out = ["version: 1", BUDGET.strip(), "ports:"]
    out += [f"  - {{id: {i}, transport: rdma, rdma_device: {p}}}" for i, p in enumerate(ports, 1)]
    out.append("subsystems:")
    for name, pids, select in subsystems:
        out += [f"  - nqn: nqn.2026-01.io.bench:{name}", "    allow_any_host: true",
                f"    ports: {pids}", "    namespaces:", f"      - select: {select}",
                "        each: true"]
    return "\n".join(out) + "\n"


REFERENCE = {
    "jbof-24": (machines.jbof_machine, profile_text(
        ["mlx5_0", "mlx5_1"],
        [("sw0", [1], "{model: JBOF-SW0}"), ("sw1", [2], "{model: JBOF-SW1}")]),
        "24-bay JBOF, two switches, a NIC per switch, 8 x 256 MiB CMB"),
    "amd-2s": (machines.amd_machine, profile_text(
        ["mlx5_0", "mlx5_1"],
        [("s0", [1], "{numa_node: 0, model: '*'}"), ("s1", [2], "{numa_node: 1, model: '*'}")]),
        "dual-socket AMD EPYC, NVMe on root ports, a NIC per socket, 8 x 128 MiB CMB"),
    "skylake-sp": (machines.skylake_machine, profile_text(
        ["mlx5_0", "mlx5_1"],
        [("sw", [1], "{model: SKX-SW}"), ("rp", [2], "{model: SKX-RP}")]),
        "Skylake-SP: switch with NIC + 4 NVMe, 4 NVMe on root ports, NIC on another stack"),
    "small-cmb": (machines.small_cmb_machine, profile_text(
        ["mlx5_0"], [("all", [1], "{model: SMALLCMB}")]),
        "one switch, NIC + 8 NVMe: six 4 MiB CMBs, two 1 GiB CMBs"),
}
MUST_BE_BETTER = {"amd-2s", "small-cmb"}


@dataclass
class Conn:
    ns: str            # subsystem/nsid
    nvme: str          # NVMe BDF
    nic: str           # NIC BDF
    demand: int        # in-flight bytes of this host connection


def connections(res) -> list[Conn]:
    """One connection per budgeted host; host h reaches the namespace through its p2p ports
    round-robin."""
    out = []
    for ns in res.namespaces:
        nics = ns.nic_clients
        if not nics or not ns.demand:
            continue
        e = ns.effective
        per = e["queues"] * e["queue_depth"] * e["io_size"]
        for h in range(e["hosts"]):
            out.append(Conn(ns.label, ns.nvme_pci, nics[h % len(nics)], per))
    return out


def metrics(conns: list[Conn], choice: list[str | None], eng: P2pdma, avail: dict[str, int],
            numa: dict) -> dict:
    load: dict[str, int] = {p: 0 for p in avail}
    below = fallback = remote = total = 0
    for c, p in zip(conns, choice):
        total += c.demand
        if p is None or eng.pair(p, c.nic).map_type == "not_supported":
            fallback += c.demand               # no p2p for this connection at all
            continue
        load[p] += c.demand
        if eng.distance_many(p, [c.nic, c.nvme]).map_type == "bus_addr":
            below += 1
        if numa.get(p) is not None and numa.get(c.nic) is not None and numa[p] != numa[c.nic]:
            remote += 1
    over = sum(max(0, load[p] - avail[p]) for p in avail)
    worst = max((load[p] / avail[p] for p in avail if avail[p]), default=0.0)
    n = len(conns)
    return {"below_rc": below / n, "worst_oversub": worst,
            "fallback": (fallback + over) / total if total else 0.0, "remote_numa": remote / n}


def evaluate(name: str, seeds: int) -> dict:
    build, text, desc = REFERENCE[name]
    inv = build()
    data = profile.parse(text, f"<{name}>")
    res = profile.resolve(profile.Profile(file=f"<{name}>", data=data), inv)
    plan = placement.place_or_raise(res, inv, explain=False)
    eng = P2pdma(inv)
    avail = {f.bdf: f.p2pmem.available for f in inv.providers()}
    numa = {b: f.numa_node for b, f in inv.pci.items()}
    conns = connections(res)
    by_ns = {d.namespace.label: (d.provider if d.p2pmem not in ("0", "1") else None)
             for d in plan.decisions}
    ours = metrics(conns, [by_ns[c.ns] for c in conns], eng, avail, numa)
    ties = [eng.find_many([c.nic, c.nvme]).ties for c in conns]
    runs = []
    for seed in range(seeds):
        rnd = random.Random(seed)
        runs.append(metrics(conns, [rnd.choice(t) if t else None for t in ties], eng, avail, numa))
    kernel = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    kernel_worst_seed = {k: (min if k == "below_rc" else max)(r[k] for r in runs)
                         for k in runs[0]}
    return {"machine": name, "description": desc, "namespaces": len(res.namespaces),
            "connections": len(conns), "providers": len(avail),
            "random_ties": sum(1 for t in ties if len(t) > 1),
            "nvmet_p2p": ours, "kernel_mean": kernel, "kernel_worst_seed": kernel_worst_seed}


def judge(r: dict) -> tuple[bool, bool]:
    """(at least as good on every metric, strictly better on at least one)."""
    o, k = r["nvmet_p2p"], r["kernel_mean"]
    eps = 1e-9
    ge = (o["below_rc"] >= k["below_rc"] - eps and o["worst_oversub"] <= k["worst_oversub"] + eps
          and o["fallback"] <= k["fallback"] + eps and o["remote_numa"] <= k["remote_numa"] + eps)
    gt = (o["below_rc"] > k["below_rc"] + eps or o["worst_oversub"] < k["worst_oversub"] - eps
          or o["fallback"] < k["fallback"] - eps or o["remote_numa"] < k["remote_numa"] - eps)
    return ge, gt


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "  =  " if a == 0 else "  inf"
    return f"{a / b:5.2f}"


def speed(repeat: int) -> dict:
    inv = machines.big_machine()
    ports = [f"mlx5_{k}" for k in range(8)]
    text = profile_text(ports, [(f"sw{k}", [k + 1], f"{{model: BIG-SW{k}}}") for k in range(8)])

    def baseline():
        eng = P2pdma(inv)
        nics = [inv.rdma[p].pci for p in ports]
        n = 0
        for ns in inv.namespaces.values():
            k = int(inv.nvme[ns.controller].model.rsplit("SW", 1)[1])
            eng.find_many([nics[k], ns.pci])
            n += 1
        return n

    def plan(explain: bool):
        data = profile.parse(text, "<big>")
        res = profile.resolve(profile.Profile(file="<big>", data=data), inv)
        return placement.place_or_raise(res, inv, explain=explain)

    def timed(fn):
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t0)
        return min(ts), statistics.median(ts), out

    b = timed(baseline)
    p = timed(lambda: plan(False))
    e = timed(lambda: plan(True))
    d = p[2].decisions
    return {"namespaces": len(d), "providers": len(inv.providers()), "nics": len(ports),
            "baseline_find_many_s": b[0], "plan_s": p[0], "plan_median_s": p[1],
            "plan_explain_s": e[0], "plan_explain_median_s": e[1],
            "placed": sum(1 for x in d if x.status == "placed")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=200, help="kernel auto-mode seeds (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repetitions (best is shown)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    results = []
    for name in REFERENCE:
        print(f"... {name}", file=sys.stderr)
        results.append(evaluate(name, args.seeds))
    print("... planning 4096 namespaces", file=sys.stderr)
    sp = speed(args.repeat)
    ok = True
    for r in results:
        ge, gt = judge(r)
        r["at_least_as_good"], r["strictly_better"] = ge, gt
        if not ge or (r["machine"] in MUST_BE_BETTER and not gt):
            ok = False
    sp["under_1s"] = sp["plan_s"] < 1.0
    ok = ok and sp["under_1s"]
    if args.json:
        json.dump({"quality": results, "speed": sp, "ok": ok}, sys.stdout, indent=2)
        print()
        return 0 if ok else 1

    print(f"Placement quality: nvmet-p2p vs kernel auto mode (mean of {args.seeds} seeds; "
          "ratio = nvmet-p2p / kernel)")
    head = (f"  {'metric':<36}{'nvmet-p2p':>10}{'kernel':>10}{'ratio':>8}"
            f"{'kernel worst seed':>19}")
    for r in results:
        o, k, w = r["nvmet_p2p"], r["kernel_mean"], r["kernel_worst_seed"]
        print(f"\n{r['machine']}: {r['description']}")
        print(f"  {r['namespaces']} namespaces, {r['connections']} host connections, "
              f"{r['providers']} providers; {r['random_ties']} connections where the kernel "
              "draws among ties")
        print(head)
        rows = [("paths below the root complex", "below_rc", True),
                ("worst provider oversubscription", "worst_oversub", False),
                ("in-flight bytes to host memory", "fallback", True),
                ("paths to a provider on another node", "remote_numa", True)]
        for label, key, pct in rows:
            f = (lambda v: f"{100 * v:9.1f}%") if pct else (lambda v: f"{v:9.2f}x")
            print(f"  {label:<36}{f(o[key]):>10}{f(k[key]):>10}{ratio(o[key], k[key]):>8}"
                  f"{f(w[key]):>19}")
        verdict = ("strictly better" if r["strictly_better"] else "as good") \
            if r["at_least_as_good"] else "WORSE than the kernel"
        need = " (must be strictly better)" if r["machine"] in MUST_BE_BETTER else ""
        print(f"  verdict: {verdict}{need}")
    print(f"\nPlanning speed: {sp['namespaces']} namespaces, {sp['providers']} providers, "
          f"{sp['nics']} NICs (best of {args.repeat})")
    print(f"  baseline (find_many per namespace x NIC)  {sp['baseline_find_many_s'] * 1000:8.1f} ms")
    print(f"  plan (load + resolve + place)             {sp['plan_s'] * 1000:8.1f} ms   "
          f"ratio {sp['plan_s'] / sp['baseline_find_many_s']:.2f}   "
          f"{'< 1 s OK' if sp['under_1s'] else '>= 1 s: TOO SLOW'}")
    print(f"  plan --explain                            {sp['plan_explain_s'] * 1000:8.1f} ms   "
          f"ratio {sp['plan_explain_s'] / sp['baseline_find_many_s']:.2f}")
    print(f"\n{'OK' if ok else 'FAILED'}: nvmet-p2p >= kernel on every machine, > on amd-2s and "
          "small-cmb; planning < 1 s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
