#!/usr/bin/env python3
"""Benchmark: the exporter under a burst of concurrent scrapes, against the 0.1.0 server.

    .venv/bin/python tools/bench/bench_exporter.py [--clients 200] [--idle 60] [--rounds 3]

Both servers run as their own process on the same synthetic machine (tests/sysfsfixture.py,
a target applied on the fake configfs), with the same collector and cache (``--min-interval
1``): the **baseline** is what ``nvmet-p2p exporter`` did in 0.1.0 (prometheus_client's
``start_http_server``: wsgiref on a ThreadingMixIn, listen backlog 5, no socket timeout, a
thread per connection); the **candidate** is ``nvmet-p2p exporter`` now (waitress). Each round,
interleaved baseline/candidate: ``--idle`` connections that send nothing and ``--slow`` that
send half a request line are opened, then ``--clients`` threads scrape ``/metrics`` at once,
each allowed ``--timeout`` seconds. Printed per server: scrapes answered, latency median /
95th percentile / max of the answered ones, the server's peak thread count and RSS growth
(``/proc/PID``), and how many of the idle connections the server had closed ``--idle-after``
seconds later. Loopback on this host (not the lab: the kernel is not the subject); the client
threads share the machine with the server, so latencies are of this host under this load.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CHECKOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, CHECKOUT)
sys.path.insert(0, os.path.join(CHECKOUT, "tests"))

import sysfsfixture as sf  # noqa: E402
from fakenvmet import FakeNvmet  # noqa: E402

from nvmet_p2p import automation  # noqa: E402

DOC = {"hosts": [], "ports": [], "subsystems": [
    {"nqn": "nqn.2026-11.io.nvmet-p2p:bench-exporter", "attr": {"allow_any_host": "0"},
     "namespaces": [{"nsid": i, "enable": 1, "device": {"path": "/dev/nvme0n1"}, "p2pmem": "0"}
                    for i in range(1, 9)]}]}

# what `nvmet-p2p exporter` ran in 0.1.0 (nvmet_p2p/commands/exporter.py before waitress)
BASELINE = """
import signal, sys, threading
from prometheus_client import start_http_server
from nvmet_p2p.observe.metrics import CachedCollector, TargetCollector, registry_for
col = CachedCollector(TargetCollector(sys.argv[1], state_dir=sys.argv[2], doctor=False), 1.0)
server, _ = start_http_server(int(sys.argv[3]), addr="127.0.0.1", registry=registry_for(col))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print("serving", file=sys.stderr, flush=True)
stop.wait()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, root: str, sd: str, idle_timeout: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if kind == "baseline":
        cmd = [sys.executable, "-c", BASELINE, root, sd, str(port)]
    else:
        cmd = [sys.executable, "-m", "nvmet_p2p", "exporter", "--root", root, "--state-dir", sd,
               "--listen", f"127.0.0.1:{port}", "--no-doctor", "--idle-timeout", str(idle_timeout)]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=CHECKOUT)
    assert "serving" in p.stderr.readline(), f"{kind} did not start"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
            return p, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def proc(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) * 1024


def load(port: int, pid: int, a) -> dict:
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(a.idle)]
    slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(a.slow)]
    for s in slow:
        s.sendall(b"GET /metr")
    rss0 = proc(pid)[1]
    go = threading.Event()
    results: list[tuple[bool, float]] = []

    def client():
        go.wait()
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=a.timeout) as r:
                ok = r.status == 200 and b"nvmet_p2p_build_info" in r.read()
        except OSError:
            ok = False
        results.append((ok, time.monotonic() - t0))
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    go.set()
    peak_threads, peak_rss = 0, rss0
    while any(t.is_alive() for t in threads):
        n, rss = proc(pid)
        peak_threads, peak_rss = max(peak_threads, n), max(peak_rss, rss)
        time.sleep(0.05)
    for t in threads:
        t.join()
    time.sleep(a.idle_after)
    closed = 0
    for s in idle + slow:
        s.setblocking(False)
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    closed += 1
                    break
        except BlockingIOError:
            pass                       # still open
        except OSError:
            closed += 1
        s.close()
    lat = sorted(t for ok, t in results if ok)
    return {"answered": len(lat), "clients": a.clients,
            "median_s": statistics.median(lat) if lat else None,
            "p95_s": lat[max(0, int(len(lat) * 0.95) - 1)] if lat else None,
            "max_s": lat[-1] if lat else None, "peak_threads": peak_threads,
            "rss_growth_mib": round((peak_rss - rss0) / (1 << 20), 1),
            "idle_closed": closed, "idle_opened": len(idle) + len(slow)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--slow", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--idle-timeout", type=int, default=5, help="the candidate's --idle-timeout")
    ap.add_argument("--idle-after", type=float, default=12.0,
                    help="seconds after the burst when the idle connections are checked")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nvmet-p2p-bench-exporter-")
    root, sd = os.path.join(tmp, "m"), os.path.join(tmp, "state")
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    automation.apply(automation.desired_from(state_content=DOC), root=root, state_dir=sd,
                     cfs=FakeNvmet(root))
    runs: dict[str, list[dict]] = {"baseline": [], "candidate": []}
    for rnd in range(1, a.rounds + 1):
        for kind in runs:
            p, port = start(kind, root, sd, a.idle_timeout)
            try:
                r = load(port, p.pid, a)
            finally:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()                 # the baseline can hang in shutdown with open sockets
                    p.wait()
            runs[kind].append(r)
            print(f"... round {rnd} {kind}: {r['answered']}/{r['clients']} answered, p95 "
                  f"{r['p95_s'] or float('nan'):.2f} s, {r['peak_threads']} threads", file=sys.stderr)

    def med(kind, key):
        vals = [r[key] for r in runs[kind] if r[key] is not None]
        return statistics.median(vals) if vals else None
    summary = {k: {key: med(k, key) for key in ("answered", "median_s", "p95_s", "max_s",
                                                 "peak_threads", "rss_growth_mib", "idle_closed")}
               for k in runs}
    res = {"host": os.uname().nodename, "clients": a.clients, "idle": a.idle, "slow": a.slow,
           "timeout_s": a.timeout, "rounds": a.rounds, "runs": runs, "median": summary}
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"bench_exporter: {a.clients} concurrent scrapes of /metrics + {a.idle} idle + {a.slow} "
          f"half-sent connections, {a.timeout:.0f} s each, {a.rounds} interleaved rounds, loopback "
          f"on this host (medians of the rounds)")
    print(f"{'':10} {'answered':>9} {'median s':>9} {'p95 s':>8} {'max s':>8} {'threads':>8} "
          f"{'RSS +MiB':>9} {'idle closed':>12}")
    for k, s in summary.items():
        def f(x, fmt):
            return format(x, fmt) if x is not None else "-"
        print(f"{k:10} {f(s['answered'], '.0f'):>5}/{a.clients:<3} {f(s['median_s'], '.3f'):>9} "
              f"{f(s['p95_s'], '.3f'):>8} {f(s['max_s'], '.3f'):>8} {f(s['peak_threads'], '.0f'):>8} "
              f"{f(s['rss_growth_mib'], '.1f'):>9} {f(s['idle_closed'], '.0f'):>6}/{a.idle + a.slow:<5}")
    b, c = summary["baseline"], summary["candidate"]
    if b["p95_s"] and c["p95_s"]:
        print(f"ratio candidate/baseline: answered {c['answered'] / max(b['answered'], 1):.2f}, "
              f"p95 latency {c['p95_s'] / b['p95_s']:.2f}, peak threads "
              f"{c['peak_threads'] / max(b['peak_threads'], 1):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
