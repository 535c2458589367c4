#!/usr/bin/env python3
"""Start-up cost of the ``nvmet-p2p`` command line, as ratios to ``python -c pass`` in one run.

    tools/lab/run --topology default -- python3 tools/bench/bench_startup.py [--runs 7]

* ``--version`` and ``--help``: the whole command, run as a user runs it (the console script
  of the venv, else ``python -m nvmet_p2p``); target <= 1.5x ``python -c pass``.
* every other command: its start-up, i.e. the imports it makes before it reads anything. Each
  command is first run once for real (on the lab machine, with cheap arguments; it may fail
  early, e.g. p2p-test on a device that does not exist) with a recorder that lists every module
  it imported; then ``python -c "import <those modules>"`` is timed. That is the part of the
  command's time that does not depend on the machine; target <= 2x ``python -c pass``.

Best of ``--runs`` for each, interleaved (pass, cmd, pass, cmd ...) so a busy host slows both
alike. The first round warms the bytecode cache (in the lab the checkout is a throw-away
overlay: the first import of a boot compiles). Prints a table and PASS/FAIL; ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.abspath(os.path.join(HERE, "..", ".."))

RECORDER = r"""
import json, runpy, sys
out, argv = sys.argv[1], sys.argv[2:]
sys.argv = ["nvmet-p2p"] + argv
try:
    runpy.run_module("nvmet_p2p", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
except BaseException:
    pass
mods = sorted(m for m in sys.modules if not m.startswith("_") and "." not in m or m.startswith("nvmet_p2p"))
json.dump(mods, open(out, "w"))
"""


def commands(tmp: str, devmap: dict | None) -> dict[str, list[str]]:
    """Cheap arguments for each command on this machine."""
    empty = os.path.join(tmp, "empty.json")
    with open(empty, "w") as f:
        f.write('{"hosts": [], "ports": [], "subsystems": []}\n')
    sd = ["--state-dir", os.path.join(tmp, "state")]
    prov, ns = "0000:ff:00.0", "/dev/null"
    if devmap and devmap.get("providers"):
        prov = devmap["providers"][0]
        ns = next((v["namespaces"][0] for v in devmap["nvme"].values() if v.get("namespaces")), ns)
    return {
        "topology": ["topology", "--json"],
        "distance": ["distance", prov, ns, "--json"],
        "doctor": ["doctor", "--json"],
        "snapshot": ["snapshot", os.path.join(tmp, "snap")],
        "profile": ["profile", "check", os.path.join(CHECKOUT, "profiles", "lab-default.yaml")],
        "plan": ["plan", "--state", empty, *sd],
        "apply": ["apply", "--state", empty, *sd],
        "save": ["save", os.path.join(tmp, "saved.json"), *sd],
        "restore": ["restore", empty, "--dry-run", *sd],
        "clear": ["clear", "--dry-run", *sd],
        "status": ["status", "--json", *sd],
        "bench": ["bench", "--help"],
        "p2p-test": ["p2p-test", "0000:ff:00.0", "/dev/nonexistent", "--read-only-source"],
    }


def best(cmd: list[str], base: list[str], runs: int, env: dict) -> tuple[float, float]:
    """Best wall time of ``cmd`` and of ``base``, interleaved."""
    tc, tb = [], []
    for _ in range(runs):
        for lst, c in ((tb, base), (tc, cmd)):
            t = time.perf_counter()
            subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
            lst.append(time.perf_counter() - t)
    return min(tc), min(tb)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    py = sys.executable
    script = os.path.join(os.path.dirname(py), "nvmet-p2p")
    cli = [script] if os.access(script, os.X_OK) else [py, "-m", "nvmet_p2p"]
    env = dict(os.environ, PYTHONPATH=CHECKOUT)
    devmap = None
    if os.environ.get("NVMET_P2P_LAB_DEVICES"):
        with open(os.environ["NVMET_P2P_LAB_DEVICES"]) as f:
            devmap = json.load(f)
    base = [py, "-c", "pass"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nvmet-p2p-startup-") as tmp:
        for c in (cli + ["--version"], cli + ["--help"], base):       # warm the bytecode cache
            subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        for name, argv in (("--version", ["--version"]), ("--help", ["--help"])):
            t, b = best(cli + argv, base, a.runs, env)
            rows.append({"command": name, "what": "whole command", "seconds": t, "pass_seconds": b,
                         "ratio": t / b, "target": 1.5})
        for name, argv in commands(tmp, devmap).items():
            rec = os.path.join(tmp, f"mods-{name}.json")
            subprocess.run([py, "-c", RECORDER, rec, *argv], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env, timeout=600)
            with open(rec) as f:
                mods = json.load(f)
            ours = [m for m in mods if m.startswith("nvmet_p2p")]
            imp = [py, "-c", "import " + ", ".join(ours + ["argparse"])]
            subprocess.run(imp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            t, b = best(imp, base, a.runs, env)
            third = sorted(m for m in mods if m in ("yaml", "pyroute2", "pyudev", "configshell_fb",
                                                       "matplotlib", "prometheus_client"))
            rows.append({"command": name, "what": f"imports ({len(ours)} nvmet_p2p modules"
                         + (f"; {', '.join(third)}" if third else "") + ")", "seconds": t,
                         "pass_seconds": b, "ratio": t / b, "target": 2.0})
    ok = all(r["ratio"] <= r["target"] for r in rows)
    res = {"python": sys.version.split()[0], "kernel": os.uname().release,
           "emulated": "QEMU TCG" if devmap else None, "runs": a.runs, "rows": rows, "pass": ok}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"bench_startup: best of {a.runs}, interleaved with `python -c pass`; python {res['python']}, "
              f"kernel {res['kernel']}" + (" [emulated: QEMU TCG lab]" if devmap else ""))
        print(f"{'command':<11} {'seconds':>8} {'pass':>7} {'ratio':>6} {'target':>7}  measured")
        for r in rows:
            mark = "" if r["ratio"] <= r["target"] else "  <-- over"
            print(f"{r['command']:<11} {r['seconds']:>8.3f} {r['pass_seconds']:>7.3f} {r['ratio']:>6.2f} "
                  f"{'<= ' + format(r['target'], 'g'):>7}  {r['what']}{mark}")
        print("PASS" if ok else "FAIL")
    out = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out:
        with open(os.path.join(out, "bench_startup.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
