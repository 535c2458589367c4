#!/usr/bin/env python3
"""Benchmark of a Prometheus scrape against the real nvmet configfs (run it in the lab).

    tools/lab/run --topology default -- python3 tools/bench/bench_metrics.py [--reps 5]

Builds a target of N namespaces (one subsystem on null_blk, a loop port; applied through the
reconciler, so they are managed and the metrics show them) for N = 10 and N = 1000 in turn,
serves the metrics with the server ``nvmet-p2p exporter`` uses (``nvmet_p2p.observe.exporter``:
waitress; no caching: every scrape reads the machine), and times HTTP scrapes of ``/metrics``,
interleaved small/large after one warm-up each. Prints the medians, the ratio large/small
(target: at most 2) and the series count of each. Cleans up afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from nvmet_p2p.nvmet import statefile  # noqa: E402
from nvmet_p2p.nvmet.apply import clear, reconcile  # noqa: E402
from nvmet_p2p.observe.exporter import make_server  # noqa: E402
from nvmet_p2p.observe.metrics import TargetCollector, registry_for  # noqa: E402

NQN = "nqn.2026-11.io.nvmet-p2p:bench-metrics"
TARGET = 2.0


def state(n: int, dev: str) -> dict:
    nss = [{"nsid": i, "enable": 1, "device": {"path": dev,
                                               "uuid": f"00000000-0000-4000-8000-{i:012x}"}}
           for i in range(1, n + 1)]
    return {"hosts": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"},
                                         "namespaces": nss}],
            "ports": [{"portid": 78, "addr": {"trtype": "loop"}, "subsystems": [NQN]}]}


def serve(sd: str) -> str:
    """The exporter's server for state directory ``sd`` in a daemon thread (it lives until the
    process ends: every scrape reads the machine as it is then)."""
    server = make_server(registry_for(TargetCollector("/", state_dir=sd)), "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}/metrics"


def scrape(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=600).read().decode()
    dt = time.perf_counter() - t
    return dt, sum(1 for line in body.splitlines() if line and not line.startswith("#"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="/dev/nullb0")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir("/sys/kernel/config") or os.geteuid() != 0:
        print("bench_metrics: needs root and configfs (run it inside the lab: tools/lab/run)",
              file=sys.stderr)
        return 2
    for m in ("nvmet", "nvme-loop", "null_blk"):
        subprocess.run(["modprobe", m], check=False)
    sizes = {"small": a.small, "large": a.large}
    sd = {k: tempfile.mkdtemp(prefix=f"nvmet-p2p-bench-metrics-{k}-") for k in sizes}
    times: dict[str, list[float]] = {k: [] for k in sizes}
    series: dict[str, int] = {}
    urls = {k: serve(sd[k]) for k in sizes}
    try:
        # one subsystem at a time may hold the NQN: build, scrape, tear down, for each size
        for rnd in range(a.reps + 1):
            for k, n in sizes.items():
                reconcile("/", statefile.parse(state(n, a.device)), sd[k])
                url = urls[k]
                if rnd == 0:
                    scrape(url)                     # warm-up: imports, first inventory read
                dt, series[k] = scrape(url)
                if rnd:
                    times[k].append(dt)
                    print(f"... round {rnd}: {n} namespaces: scrape {dt:.3f} s, "
                          f"{series[k]} series", file=sys.stderr)
                clear("/", sd[k])
    finally:
        for k in sizes:
            clear("/", sd[k])
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["large"] / med["small"]
    res = {"kernel": os.uname().release, "namespaces": sizes, "reps": a.reps,
           "scrape_seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
           "median_seconds": {k: round(v, 4) for k, v in med.items()}, "series": series,
           "ratio": round(ratio, 3), "target": TARGET, "pass": ratio <= TARGET}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        if os.environ.get("NVMET_P2P_LAB"):
            print("[QEMU, emulated; not a performance claim]")
        print(f"bench_metrics: HTTP scrapes of /metrics, kernel {res['kernel']}, "
              f"{a.reps} interleaved rounds")
        for k, n in sizes.items():
            print(f"  {n:>5} namespaces: median {med[k]:.3f} s ({series[k]} series): "
                  + " ".join(f"{x:.3f}" for x in times[k]))
        print(f"ratio {a.large}/{a.small} = {ratio:.2f} (target <= {TARGET})")
        print("PASS" if res["pass"] else "FAIL")
    out_dir = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out_dir:
        with open(os.path.join(out_dir, "bench_metrics.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
