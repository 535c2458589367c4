#!/usr/bin/env python3
"""Reaction time of ``nvmet-p2p watch --policy reconcile``: from the kernel's first uevent of a
hot-remove or hot-add to the reconciled configfs, with the configured debounce shown apart, and
against the time of the same configfs writes alone (run it in the lab).

    tools/lab/run --topology hotplug -- python3 tools/bench/bench_hotplug.py [--cycles 3]

Both ends are observed from outside the watcher, on CLOCK_MONOTONIC: ``udevadm monitor
--kernel`` stamps every uevent when it arrives, and a poller reads the namespace's ``enable``
and ``p2pmem`` every millisecond. The start is the kernel's *first* uevent of the event: the
earliest uevent after the QEMU action whose device path lies under the device's PCI function
(a removal begins with its namespace's block ``remove``, long before the PCI ``remove``; a
return with the PCI ``add``, before the driver's ``bind``). Per cycle (hot-remove, then
hot-add, through QEMU; pciehp acknowledges):

* backing drive (plainS, behind nsid 1): remove -> ``enable`` 1->0; add -> 0->1;
* provider (cmbA, nsid 1's p2pmem): remove -> ``p2pmem`` A->B (re-placed on cmbB, enabled);
  add -> ``p2pmem`` back to A and enabled (disable, write, enable).

Printed per event: the reaction seen from outside; the watcher's own ``reaction_ms`` (from the
kernel's first uevent as its kernel socket saw it) and, apart, its ``debounce_ms`` (the quiet
wait after the burst's last event: the ``--debounce`` setting), ``uevent_ms`` (udev's delay
before the watcher got the event) and ``configfs_ms``; the writes alone (one ``write(2)``
each, on a scratch namespace of the same device type in the same VM, median of 9) and the
ratio. Emulated: TCG timings, not a performance claim.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
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
        # real-time priority: the monitor stamps a uevent when it reads it, and on a loaded
        # guest a normal process reads late (seen: later than the watcher's whole reaction)
        argv = ["udevadm", "monitor", "--kernel", "--subsystem-match=block",
                "--subsystem-match=pci", "--subsystem-match=nvme"]
        chrt = shutil.which("chrt")
        self.proc = subprocess.Popen(([chrt, "-f", "50"] if chrt else []) + argv,
                                     stdout=subprocess.PIPE, text=True)
        self.events: list[tuple[float, str, str, str]] = []

    def run(self):
        for line in self.proc.stdout:
            m = UEVENT.match(line)
            if m:
                self.events.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))

    def first(self, since: float, bdf: str, action: str) -> float:
        """The kernel's first uevent of the event: the earliest ``action`` uevent after
        ``since`` about the PCI function ``bdf`` or a device under it."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hits = [t for t, a, p, _s in list(self.events)
                    if t >= since and a == action and (f"/{bdf}/" in p + "/")]
            if hits:
                time.sleep(0.5)                 # the rest of the event's uevents
                return min(t for t, a, p, _s in list(self.events)
                           if t >= since and a == action and (f"/{bdf}/" in p + "/"))
            time.sleep(0.05)
        raise SystemExit(f"bench: no {action} uevent under {bdf}")

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
        with contextlib.suppress(OSError):      # the same reason as the uevent monitor's
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(40))
        last = None
        while not self.halt:
            cur = (hu.read(f"{self.base}/enable"), hu.read(f"{self.base}/p2pmem"))
            if cur != last:
                self.changes.append((time.monotonic(), *cur))
                last = cur
            time.sleep(0.001)

    def when(self, since: float, pred, timeout: float = 60, before: float = 0.0) -> float:
        """When configfs first reached the wanted state after ``since``; a change up to
        ``before`` seconds earlier counts too (it means the uevent was stamped late) and is
        returned as it is, so the caller sees a negative reaction rather than a hang."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, en, p2p in list(self.changes):
                if t >= since - before and pred(en, p2p):
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


def cycle(uev, poll, watch_log, a, b, s_bdf) -> dict[str, tuple[float, dict]]:
    """One remove/add of the backing drive and of the provider: per decision, (seconds from the
    kernel's first uevent of the event until the poller saw configfs as wanted, the watcher's
    log line)."""
    steps = (  # decision, QEMU action, device, (uevent action, its PCI function), wanted
        ("backing-lost", hotplug.remove, "plainS", ("remove", s_bdf), lambda en, p: en == "0"),
        ("backing-back", hotplug.add, "plainS", ("add", s_bdf), lambda en, p: en == "1"),
        ("provider-lost", hotplug.remove, "cmbA", ("remove", a), lambda en, p: en == "1" and p == b),
        ("provider-back", hotplug.add, "cmbA", ("add", a), lambda en, p: en == "1" and p == a),
    )
    out = {}
    for decision, act, dev, (action, bdf), wanted in steps:
        start = len(hu.log_lines(watch_log))
        t = time.monotonic()
        act(dev)
        te = uev.first(t, bdf, action)
        out[decision] = (poll.when(te, wanted, before=te - t) - te,
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
    s_bdf = hotplug.controller("plainS")["bdf"]
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
            for k, v in cycle(uev, poll, log, a, b, s_bdf).items():
                got.setdefault(k, []).append(v)
            print(f"... cycle {i + 1}/{args.cycles} done", file=sys.stderr, flush=True)
    finally:
        w.stop()
        poll.halt = True
        uev.stop()
        hu.clear_target(sd)
        hu.ensure_present(("cmbA", "plainS"))
    print("[QEMU TCG, emulated; not a performance claim]")
    print(f"watch --policy reconcile --source {args.source} --debounce {args.debounce}; {args.cycles} "
          f"cycle(s); reaction = the kernel's first uevent of the event (udevadm monitor --kernel) -> "
          f"configfs changed (1 ms poller); median (min-max) in ms")
    print(f"{'event':<14} {'reaction (outside)':>24} {'watch reaction_ms':>24} {'of which debounce':>18} "
          f"{'udev delay':>11} {'configfs':>9} {'writes alone':>13} {'ratio':>6}")
    summary = {}

    def med(xs):
        return f"{statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})"

    for k in ("backing-lost", "backing-back", "provider-lost", "provider-back"):
        r = [x[0] * 1000 for x in got[k]]
        field = (lambda name: [float(x[1].get(name) or "nan") for x in got[k]])
        wr, deb, uev_ms, cfs = field("reaction_ms"), field("debounce_ms"), field("uevent_ms"), field("configfs_ms")
        summary[k] = {"reaction_ms": r, "watch_reaction_ms": wr, "watch_debounce_ms": deb,
                      "watch_uevent_ms": uev_ms, "watch_configfs_ms": cfs,
                      "writes_alone_ms": base[k] * 1000, "ratio": statistics.median(r) / (base[k] * 1000),
                      "first_seq": [x[1].get("first_seq") for x in got[k]],
                      "actions": [x[1].get("action") for x in got[k]]}
        print(f"{k:<14} {med(r):>24} {med(wr):>24} {med(deb):>18} {statistics.median(uev_ms):>11.0f} "
              f"{statistics.median(cfs):>9.1f} {base[k] * 1000:>13.2f} {summary[k]['ratio']:>6.0f}")
    print("the reaction without the debounce (watch reaction_ms - debounce_ms, median): " + ", ".join(
        f"{k} {statistics.median(a - d for a, d in zip(v['watch_reaction_ms'], v['watch_debounce_ms'])):.0f} ms"
        for k, v in summary.items()))
    with open(f"{res_dir}/summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    bad = [k for k, v in summary.items() if any(a != "reconciled" for a in v["actions"])]
    if bad:
        print(f"bench_hotplug: not every reaction reconciled: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
