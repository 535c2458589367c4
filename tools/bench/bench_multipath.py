#!/usr/bin/env python3
"""P2P-aware multipath in the lab: the share of a host's I/O bytes that went through a
controller whose namespace had a p2p mapping, without and with ``multipath: p2p``, same fio job.

    tools/lab/run --topology multipath -- python3 tools/bench/bench_multipath.py [--size 16M]

The guest is target and host (native NVMe multipath, one RDMA controller per port: nica and
nicb, the lab's emulated rxe_p2p NICs). Per namespace and iopolicy (``numa``, the kernel's
default, and ``round-robin``) one fio write + crc32c verify runs on the multipath device; the
bytes per path come from the hidden path disks' ``stat``. A path offloads when the kernel
logged ``nvmet: using p2pmem on <provider> for nsid <n>`` for its controller at connect
(:func:`nvmet_p2p.observe.evidence.correlate`; the host's ``cntlid`` names the controller).
The share is the same fio job's bytes both times; the goal is at least 0.99 with
``multipath: p2p``. Emulated: the NIC's DMA is CPU copies, timings are TCG.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, CHECKOUT)
sys.path.insert(0, os.path.join(CHECKOUT, "tests", "lab"))

import mputil as mp  # noqa: E402

from labutil import Dmesg, devmap, disconnect_all  # noqa: E402
from nvmet_p2p.observe import evidence as ev  # noqa: E402

EMULATED = "emulated: the lab's rxe_p2p NIC (DMA by CPU copies), QEMU TCG"


def mapped(lines: list[str]) -> set[tuple[int, int]]:
    """(cntlid, nsid) of every controller the kernel gave a p2p mapping at connect."""
    ctrls = ev.correlate(ev.parse_log(lines))
    return {(c.cntlid, nsid) for c in ctrls if c.subsystem == mp.NQN and not c.superseded
            for nsid in c.mappings}


def measure(policy: str, offloading: set[tuple[int, int]], size: str) -> dict:
    """One fio job per namespace under ``policy``: bytes per path and the offloading share."""
    assert mp.write_attr(f"{mp.subsys_dir()}/iopolicy", policy)
    per_path: dict[str, dict] = {}
    for nsid in sorted(mp.heads()):
        before = mp.host_paths()
        mp.fio_verify(mp.heads()[nsid], size)
        after = mp.host_paths()
        for name, p in after.items():
            if p["nsid"] != nsid:
                continue
            moved = (p["sectors"] - before[name]["sectors"]) * 512
            per_path[name] = {"nsid": nsid, "traddr": p["traddr"], "cntlid": p["cntlid"],
                              "ana_state": p["ana_state"], "bytes": moved,
                              "offloads": (p["cntlid"], nsid) in offloading}
    total = sum(p["bytes"] for p in per_path.values())
    off = sum(p["bytes"] for p in per_path.values() if p["offloads"])
    return {"policy": policy, "paths": per_path, "bytes": total, "offload_bytes": off,
            "share": off / total if total else 0.0}


def wait_states(want: dict[tuple[int, str], str], timeout: float = 20.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        seen = {(p["nsid"], p["traddr"]): p["ana_state"] for p in mp.host_paths().values()}
        if all(seen.get(k) == v for k, v in want.items()):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise SystemExit(f"bench: the host never saw the ANA states {want}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="16M", help="fio size per namespace and run (default 16M)")
    args = ap.parse_args(argv)
    dm = devmap()
    if dm is None or dm.get("topology") != "multipath":
        print("bench_multipath: run it in the lab's multipath topology (tools/lab/run --topology "
              "multipath -- python3 tools/bench/bench_multipath.py)", file=sys.stderr)
        return 2
    for m in ("nvmet", "nvmet-rdma", "nvme-rdma", "nvme-fabrics"):
        mp.sh("modprobe", m)
    work = tempfile.mkdtemp(prefix="bench-mp-")
    os.environ["NVMET_P2P_STATE_DIR"] = os.path.join(work, "state")
    ips = {"A": dm["rdma"]["rxpa"]["ip"], "B": dm["rdma"]["rxpb"]["ip"]}
    out: dict = {"emulated": EMULATED, "size": args.size, "runs": []}
    try:
        mp.apply_profile(work, multipath=False)
        log = Dmesg()
        mp.connect(ips["A"])
        mp.connect(ips["B"])
        offloading = mapped(log.since())
        out["offloading_paths"] = sorted(offloading)
        for policy in ("numa", "round-robin"):
            out["runs"].append({"ana": False, **measure(policy, offloading, args.size)})
        mp.apply_profile(work, multipath=True)
        out["host_saw_states_s"] = wait_states({(1, ips["A"]): "optimized", (1, ips["B"]): "non-optimized",
                                                (2, ips["A"]): "non-optimized", (2, ips["B"]): "optimized"})
        for policy in ("numa", "round-robin"):
            out["runs"].append({"ana": True, **measure(policy, offloading, args.size)})
    finally:
        disconnect_all()
        mp.sh(sys.executable, "-m", "nvmet_p2p", "clear", "--all", "--yes", check=False)
    report(out)
    res = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if res:
        with open(os.path.join(res, "bench_multipath.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


def report(out: dict) -> None:
    print(f"bench_multipath ({out['emulated']}); fio write+verify {out['size']} per namespace, "
          "2 namespaces (driveA offloads only through nica, driveB only through nicb)")
    print(f"  controller x namespace with a p2p mapping at connect (cntlid, nsid): "
          f"{out['offloading_paths']}")
    print(f"  {'iopolicy':<12} {'share without ANA':>18} {'share with multipath: p2p':>26} {'ratio':>7}")
    by = {(r["ana"], r["policy"]): r for r in out["runs"]}
    for policy in ("numa", "round-robin"):
        a, b = by[(False, policy)], by[(True, policy)]
        ratio = f"{b['share'] / a['share']:.2f}x" if a["share"] else "inf"
        print(f"  {policy:<12} {a['share']:>18.3f} {b['share']:>26.3f} {ratio:>7}")
    print(f"  host saw the new ANA states {out['host_saw_states_s'] * 1000:.0f} ms after apply returned")
    worst = min(r["share"] for r in out["runs"] if r["ana"])
    print(f"  goal: share >= 0.99 with multipath: p2p -> {'met' if worst >= 0.99 else 'NOT met'} "
          f"(lowest {worst:.3f})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
