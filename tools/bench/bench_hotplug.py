#!/usr/bin/env python3
"""Reaction time of ``nvmet-p2p watch --policy reconcile``: from the kernel's uevent to the
reconciled configfs, against the time of the same configfs writes alone (run it in the lab).

    tools/lab/run --topology hotplug -- python3 tools/bench/bench_hotplug.py [--cycles 3]

Both ends are observed from outside the watcher, on CLOCK_MONOTONIC: ``udevadm monitor
--kernel`` stamps every uevent when it arrives, and a poller reads the namespace's ``enable``
and ``p2pmem`` every millisecond. Per cycle (hot-remove, then hot-add, through QEMU; pciehp
acknowledges):

* backing drive (plainS, behind nsid 1): remove -> ``enable`` 1->0; add -> 0->1;
* provider (cmbA, nsid 1's p2pmem): remove -> ``p2pmem`` A->B (re-placed on cmbB, enabled);
  add -> ``p2pmem`` back to A and enabled (disable, write, enable).

The baseline is the same writes done directly (one ``write(2)`` each, on a scratch namespace of
the same device type in the same VM, median of 9). The ratio says how much of the reaction is
the watcher (debounce, reading, planning, locking) rather than the kernel's configfs. Prints
the watcher's own split too (debounce; configfs time inside reconcile). Emulated: TCG timings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, CHECKOUT)
sys.path.insert(0, os.path.join(CHECKOUT, "tests", "lab"))

import hotplugutil as hu  # noqa: E402
from hotplugutil import hotplug  # noqa: E402

UEVENT = re.compile(r"^KERNEL\[(\d+\.\d+)\]\s+(\w+)\s+(\S+)\s+\((\S+)\)")


class Uevents(threading.Thread):
    """udevadm monitor --kernel: (monotonic time, action, devpath, subsystem) of every uevent."""

    def __init__(self):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(["udevadm", "monitor", "--kernel", "--subsystem-match=block",
                                      "--subsystem-match=pci"], stdout=subprocess.PIPE, text=True)
        self.events: list[tuple[float, str, str, str]] = []

    def run(self):
        for line in self.proc.stdout:
            m = UEVENT.match(line)
            if m:
                self.events.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))

    def first(self, since: float, action: str, subsystem: str, tail: str) -> float:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for t, a, p, s in list(self.events):
                if t >= since and a == action and s == subsystem and p.endswith(tail):
                    return t
            time.sleep(0.05)
        raise SystemExit(f"bench: no {action} {subsystem} uevent for {tail}")

    def stop(self):
        self.proc.terminate()


class Poller(threading.Thread):
    """Reads ns/enable and ns/p2pmem every millisecond; keeps (time, enable, p2pmem) changes."""

    def __init__(self, nsid: int):
        super().__init__(daemon=True)
        self.base = f"{hu.NVMET}/subsystems/{hu.NQN}/namespaces/{nsid}"
        self.changes: list[tuple[float, str, str]] = []
        self.halt = False

    def run(self):
        last = None
        while not self.halt:
            cur = (hu.read(f"{self.base}/enable"), hu.read(f"{self.base}/p2pmem"))
            if cur != last:
                self.changes.append((time.monotonic(), *cur))
                last = cur
            time.sleep(0.001)

    def when(self, since: float, pred, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, en, p2p in list(self.changes):
                if t >= since and pred(en, p2p):
                    return t
            time.sleep(0.01)
        raise SystemExit(f"bench: configfs never reached the expected state: {self.changes[-5:]}")


def baseline(dev: str, a: str, b: str, reps: int = 9) -> dict[str, float]:
    """Median seconds of the raw writes each reaction needs, on a scratch namespace."""
    nqn = "nqn.2026-12.io.nvmet-p2p:bench-baseline"
    sub = f"{hu.NVMET}/subsystems/{nqn}"
    ns = f"{sub}/namespaces/1"
    os.mkdir(sub)
    os.mkdir(ns)
    try:
        for attr, v in (("device_path", dev), ("p2pmem", a), ("enable", "1")):
            assert hu.write(f"{ns}/{attr}", v) is None, attr
        # name: (the state to start from, the timed writes, the untimed writes back to the start)
        seqs = {"backing-lost": ([("enable", "1")], [("enable", "0")], [("enable", "1")]),
                "backing-back": ([("enable", "0")], [("enable", "1")], [("enable", "0")]),
                "provider-lost": ([("enable", "1")], [("enable", "0"), ("p2pmem", b), ("enable", "1")],
                                  [("enable", "0"), ("p2pmem", a), ("enable", "1")]),
                "provider-back": ([("enable", "1")],
                                  [("enable", "0"), ("p2pmem", "0"), ("p2pmem", a), ("enable", "1")], [])}
        out = {}
        for name, (pre, timed, back) in seqs.items():
            for attr, v in pre:
                hu.write(f"{ns}/{attr}", v)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                for attr, v in timed:
                    assert hu.write(f"{ns}/{attr}", v) is None, (name, attr, v)
                times.append(time.perf_counter() - t0)
                for attr, v in back:
                    hu.write(f"{ns}/{attr}", v)
            out[name] = statistics.median(times)
        return out
    finally:
        hu.write(f"{ns}/enable", "0")
        os.rmdir(ns)
        os.rmdir(sub)


def cycle(uev, poll, watch_log, a, b, s_block_tail, a_tail) -> dict[str, tuple[float, dict]]:
    """One remove/add of the backing drive and of the provider: per decision, (seconds from its
    first uevent until the poller saw configfs as wanted, the watcher's log line)."""
    steps = (  # decision, QEMU action, device, uevent (action, subsystem, devpath tail), wanted
        ("backing-lost", hotplug.remove, "plainS", ("remove", "block", s_block_tail),
         lambda en, p: en == "0"),
        ("backing-back", hotplug.add, "plainS", ("add", "block", ""), lambda en, p: en == "1"),
        ("provider-lost", hotplug.remove, "cmbA", ("remove", "pci", a_tail),
         lambda en, p: en == "1" and p == b),
        ("provider-back", hotplug.add, "cmbA", ("bind", "pci", a_tail),
         lambda en, p: en == "1" and p == a),
    )
    out = {}
    for decision, act, dev, (action, subsystem, tail), wanted in steps:
        start = len(hu.log_lines(watch_log))
        t = time.monotonic()
        act(dev)
        te = uev.first(t, action, subsystem, tail)
        out[decision] = (poll.when(te, wanted) - te,
                         hu.wait_line(watch_log, lambda x, d=decision: x.get("decision") == d, 60, "",
                                      start))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--debounce", type=float, default=0.5)
    ap.add_argument("--source", choices=("udev", "kernel"), default="udev")
    args = ap.parse_args()
    if os.environ.get("NVMET_P2P_LAB") != "1":
        print("bench_hotplug: run it in the lab: tools/lab/run --topology hotplug -- python3 "
              "tools/bench/bench_hotplug.py", file=sys.stderr)
        return 2
    res_dir = os.path.join(os.environ["NVMET_P2P_LAB_RESULTS"], "bench-hotplug")
    os.makedirs(res_dir, exist_ok=True)
    assert hotplug.start_udev()
    for m in ("nvmet", "nvmet-tcp", "nvme-tcp"):
        hu.run("modprobe", m)
    a, b = hotplug.controller("cmbA")["bdf"], hotplug.controller("cmbB")["bdf"]
    base = baseline(hotplug.controller("cmbB")["namespaces"][0], a, b)
    sd, cfg = f"{res_dir}/state", f"{res_dir}/config.json"
    s_dev = hotplug.controller("plainS")["namespaces"][0]
    with open(cfg, "w") as f:
        json.dump(hu.config([(1, hu.byid(s_dev), a), (2, hu.byid(hotplug.controller("cmbB")["namespaces"][0]), b),
                             (3, hu.byid(hotplug.controller("plain")["namespaces"][0]), "0")]), f)
    hu.run(*hu.nvmet_p2p(), "restore", cfg, "--state-dir", sd)
    hu.connect()
    uev, poll = Uevents(), Poller(1)
    uev.start()
    poll.start()
    log = f"{res_dir}/watch.log"
    w = hu.Watch(log, cfg, "--policy", "reconcile", "--state-dir", sd, "--debounce", str(args.debounce),
                 "--source", args.source)
    got: dict[str, list[tuple[float, dict]]] = {}
    try:
        for i in range(args.cycles):
            s_tail = "/" + os.path.basename(hotplug.controller("plainS")["namespaces"][0])
            for k, v in cycle(uev, poll, log, a, b, s_tail, "/" + a).items():
                got.setdefault(k, []).append(v)
            print(f"... cycle {i + 1}/{args.cycles} done", file=sys.stderr, flush=True)
    finally:
        w.stop()
        poll.halt = True
        uev.stop()
        hu.clear_target(sd)
        hu.ensure_present(("cmbA", "plainS"))
    print("[QEMU, emulated; not a performance claim]")
    print(f"watch --policy reconcile --source {args.source} --debounce {args.debounce}; {args.cycles} "
          f"cycles; reaction = first uevent (udevadm monitor --kernel) -> configfs changed (1 ms poller)")
    print(f"{'event':<14} {'reaction ms (median, min-max)':<30} {'writes alone ms':>15} {'ratio':>7} "
          f"{'watch: debounce ms':>18} {'watch: configfs ms':>18}")
    summary = {}
    for k in ("backing-lost", "backing-back", "provider-lost", "provider-back"):
        r = [x[0] for x in got[k]]
        med = statistics.median(r)
        deb = statistics.median(float(x[1].get("debounce_ms", "nan")) for x in got[k])
        cfs = statistics.median(float(x[1].get("configfs_ms", "nan")) for x in got[k])
        summary[k] = {"reaction_s": r, "writes_alone_s": base[k], "ratio": med / base[k],
                      "watch_debounce_ms": deb, "watch_configfs_ms": cfs,
                      "actions": [x[1].get("action") for x in got[k]]}
        print(f"{k:<14} {med * 1000:8.1f} ({min(r) * 1000:.1f}-{max(r) * 1000:.1f}){'':<12} "
              f"{base[k] * 1000:15.2f} {med / base[k]:7.0f} {deb:18.1f} {cfs:18.1f}")
    print("the reaction without the configured debounce: " + ", ".join(
        f"{k} {(statistics.median(summary[k]['reaction_s']) * 1000 - summary[k]['watch_debounce_ms']):.0f} ms"
        for k in summary))
    with open(f"{res_dir}/summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    bad = [k for k, v in summary.items() if any(a != "reconciled" for a in v["actions"])]
    if bad:
        print(f"bench_hotplug: not every reaction reconciled: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
