#!/usr/bin/env python3
"""bench --between-phases command of tests/lab/test_lab_hotplug.py: hot-remove SERIAL, wait
for the watcher's LOST decision, hot-add it back, wait for its BACK decision and for the host's
disk of NSID to be there again. Prints one line per step; exit 1 if any step failed.

    hotplug_cycle.py SERIAL LOST BACK WATCH_LOG NSID
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hotplugutil as hu  # noqa: E402
from hotplugutil import hotplug  # noqa: E402


def main(serial, lost, back, log, nsid) -> int:
    start = len(hu.log_lines(log))
    t0 = time.monotonic()
    hotplug.remove(serial)
    hotplug.wait_gone(serial)
    d = hu.wait_line(log, lambda x: x.get("decision") == lost, 60, lost, start)
    print(f"cycle: {serial} removed ({time.monotonic() - t0:.1f} s); watch: {d.get('action')} "
          f"{d.get('changes', '')}", flush=True)
    start = len(hu.log_lines(log))
    hotplug.add(serial)
    d = hu.wait_line(log, lambda x: x.get("decision") == back, 60, back, start)
    hu.wait_host_disk(int(nsid), True, 60)
    print(f"cycle: {serial} back ({time.monotonic() - t0:.1f} s); watch: {d.get('action')} "
          f"{d.get('changes', '')}", flush=True)
    return 0 if d.get("action") == "reconciled" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
