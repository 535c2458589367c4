#!/usr/bin/env python3
"""Benchmark: ``nvmet-p2p topology --json`` on a large synthetic machine.

Builds (tests/support/sysfs.py ``big_machine``) a 2-socket Skylake-SP server with 64 CMB NVMe
behind 8 PCIe switches and 8 ConnectX NICs as a real sysfs tree, then times, in this process:

* baseline:  the inventory read alone (``read_inventory``),
* matrix:    the provider x client verdicts alone on that inventory (``build_matrix``),
* topology:  the whole ``topology --json`` command (read + matrix + tree data + JSON on stdout),
* cli:       the same as a fresh ``python -m nvmet_p2p`` process (interpreter start included).

Prints the best and median of ``--repeat`` runs, the pair count and ratios against the
baseline. Target on the 2-core dev box: topology --json < 1 s.

    .venv/bin/python tools/bench/bench_topology.py [--repeat 5] [--nvme-per-switch 8] [--nics 8]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, CHECKOUT)
sys.path.insert(0, os.path.join(CHECKOUT, "tests"))

from nvmet_p2p import cli  # noqa: E402
from nvmet_p2p.pci.distance import P2pdma  # noqa: E402
from support import sysfs as sf  # noqa: E402

try:
    from nvmet_p2p.pci.inventory import read_inventory  # noqa: E402
except ImportError as exc:  # the readers are the inventory developer's module
    sys.exit(f"bench_topology: cannot import the sysfs readers: {exc}")
from nvmet_p2p.pci.topology import build_matrix  # noqa: E402


def timed(fn, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def fmt(times: list[float]) -> str:
    return f"best {min(times) * 1000:8.1f} ms   median {statistics.median(times) * 1000:8.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sockets", type=int, default=2)
    ap.add_argument("--switches", type=int, default=8)
    ap.add_argument("--nvme-per-switch", type=int, default=8)
    ap.add_argument("--nics", type=int, default=8)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-topology-") as tmp:
        t0 = time.perf_counter()
        m = sf.big_machine(tmp, sockets=args.sockets, switches=args.switches,
                           nvme_per_switch=args.nvme_per_switch, nics=args.nics)
        build_s = time.perf_counter() - t0
        root = str(m.root)

        base, inv = timed(lambda: read_inventory(root), args.repeat)
        mat_t, matrix = timed(lambda: build_matrix(inv, P2pdma(inv)), args.repeat)

        def topo_json() -> int:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                rc = cli.main(["topology", "--root", root, "--json"])
            topo_json.size = len(buf.getvalue())
            topo_json.doc = buf.getvalue()
            return rc

        topo_t, rc = timed(topo_json, args.repeat)
        if rc != 0:
            print(f"topology --json exited {rc}", file=sys.stderr)
            return 1
        doc = json.loads(topo_json.doc)
        summary = doc["matrix"]["summary"]

        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        cli_times = []
        for _ in range(max(1, args.repeat // 2)):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "topology", "--root", root,
                                "--json"], stdout=subprocess.DEVNULL, env=env, cwd=CHECKOUT)
            cli_times.append(time.perf_counter() - t0)
            if r.returncode != 0:
                print(f"python -m nvmet_p2p topology exited {r.returncode}", file=sys.stderr)
                return 1

    b = min(base)
    print(f"machine: {args.sockets} sockets, {args.switches} switches, "
          f"{summary['providers']} CMB NVMe providers, {len(inv.rdma)} RDMA NICs, "
          f"{len(inv.pci)} PCI functions (fixture written in {build_s * 1000:.0f} ms)")
    print(f"pairs: {summary['pairs']} ({summary['providers']} providers x {summary['clients']} "
          f"clients): {summary['bus_addr']} bus_addr, {summary['thru_host_bridge']} "
          f"thru_host_bridge, {summary['not_supported']} not_supported")
    print(f"baseline  read_inventory         {fmt(base)}   ratio  1.00")
    print(f"matrix    build_matrix only      {fmt(mat_t)}   ratio {min(mat_t) / b:5.2f}")
    print(f"topology  --json in-process      {fmt(topo_t)}   ratio {min(topo_t) / b:5.2f}"
          f"   ({topo_json.size / 1e6:.2f} MB of JSON)")
    print(f"cli       python -m nvmet_p2p    {fmt(cli_times)}   ratio {min(cli_times) / b:5.2f}")
    target = 1.0
    verdict = "OK" if min(topo_t) < target else "SLOW"
    print(f"target: topology --json < {target:.1f} s: {verdict} "
          f"({min(topo_t):.3f} s in-process, {min(cli_times):.3f} s as a new process)")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    raise SystemExit(main())
