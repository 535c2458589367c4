#!/usr/bin/env python3
"""Start-up cost of the ``nvmet-p2p`` command line, as ratios to ``python -c pass`` in one run.

    tools/lab/run --topology default -- python3 tools/bench/bench_startup.py [--runs 9] [COMMAND ...]

* ``--version`` and ``--help``: the whole command, run as a user runs it (the console script
  of the venv, else ``python -m nvmet_p2p``); target <= 1.5x ``python -c pass``.
* every other command: its start-up, i.e. the imports it makes before it reads anything. Each
  command is first run once for real (on the lab machine, with cheap arguments; it may fail
  early, e.g. p2p-test on a device that does not exist) with a recorder that lists every module
  it imported; then ``python -c "import <those modules>"`` is timed. That is the part of the
  command's time that does not depend on the machine; target <= 2x ``python -c pass``.

``--runs`` runs of each, interleaved with ``python -c pass`` (pass, cmd, pass, cmd ...): the
ratio is the median over the runs of (the command's wall time / that of the ``pass`` run just
before it), so a busy host, whose load comes and goes, slows both sides of each pair alike and
an outlier either way does not decide; the seconds shown are the medians. The CPU time (user +
system, from ``wait4``) of the same runs gives a second ratio beside it. Bytecode is compiled
once before anything is timed (``compileall`` of the package: in the lab the checkout is a
throw-away overlay, so every boot would otherwise compile on the first import; on a host
``PYTHONDONTWRITEBYTECODE`` would make every run compile), and every command is run once
untimed. Where a command's imports include a third-party library, its import alone is timed too
(``third-party`` column): the part of the ratio no change in this project can remove. A
third-party library the run loaded only later, while reading (pyroute2 for the addresses, PyYAML
for a profile's text), is not start-up; the table names it with its import alone's ratio
(``while reading: yaml 1.39``), so that an import moved out of the start-up stays visible.
Prints a table and PASS/FAIL; ``--json``. ``COMMAND ...``: only these (besides --version and
--help).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
        "shell": ["shell", "-c", "ls /", *sd],
        "metrics": ["metrics", "--no-doctor", *sd],
        "exporter": ["exporter", "--help"],
        # (the watcher's engine is imported, then --debounce 0 is refused before it listens)
        "watch": ["watch", "--debounce", "0", *sd],
        "install-units": ["install-units", "--print", "--bin", sys.executable, *sd],
    }


#: the third-party libraries a command may import, timed alone where a command's imports hold one
THIRD_PARTY = ("yaml", "pyroute2", "pyudev", "configshell", "configshell_fb", "matplotlib",
               "prometheus_client")


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``cmd``."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, _, ru = os.wait4(p.pid, 0)
    return time.perf_counter() - t, ru.ru_utime + ru.ru_stime


def best(cmd: list[str], base: list[str], runs: int, env: dict) -> dict:
    """``cmd`` and ``base`` interleaved: median times and the median of the paired ratios."""
    pairs = []
    for _ in range(runs):
        b = timed(base, env)
        pairs.append((b, timed(cmd, env)))
    med = statistics.median
    return {"seconds": med(c[0] for _, c in pairs), "pass_seconds": med(b[0] for b, _ in pairs),
            "ratio": med(c[0] / b[0] for b, c in pairs),
            "cpu_seconds": med(c[1] for _, c in pairs), "pass_cpu_seconds": med(b[1] for b, _ in pairs),
            "cpu_ratio": med(c[1] / max(b[1], 1e-6) for b, c in pairs)}


def row(name: str, what: str, t: dict, target: float, **extra) -> dict:
    return {"command": name, "what": what, **t, "target": target, **extra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("only", nargs="*", help="only these commands (besides --version and --help)")
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
    alone_later: dict[str, float] = {}
    subprocess.run([py, "-m", "compileall", "-q", os.path.join(CHECKOUT, "nvmet_p2p")],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    with tempfile.TemporaryDirectory(prefix="nvmet-p2p-startup-") as tmp:
        for c in (cli + ["--version"], cli + ["--help"], base):       # one untimed run each
            subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        for name, argv in (("--version", ["--version"]), ("--help", ["--help"])):
            rows.append(row(name, "whole command", best(cli + argv, base, a.runs, env), 1.5))
        for name, argv in commands(tmp, devmap).items():
            if a.only and name not in a.only:
                continue
            rec = os.path.join(tmp, f"mods-{name}.json")
            subprocess.run([py, "-c", RECORDER, rec, *argv], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env, timeout=600)
            with open(rec) as f:
                mods = json.load(f)
            ours = [m for m in mods if m.startswith("nvmet_p2p")]
            imp = [py, "-c", "import " + ", ".join(ours + ["argparse"])]
            subprocess.run(imp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            t = best(imp, base, a.runs, env)
            # third-party libraries the command's own modules import at their top (the ones
            # imported later, while the command reads, are not part of its start-up)
            probe = [py, "-c", "import sys; import " + ", ".join(ours) + "; print(' '.join("
                     f"m for m in {THIRD_PARTY!r} if m in sys.modules))"]
            third = subprocess.run(probe, capture_output=True, text=True, env=env).stdout.split()
            # ... and the ones the run loaded later, while reading (not start-up: each one's
            # import alone is timed once and shown beside it)
            later = [m for m in THIRD_PARTY if m in mods and m not in third]
            for m in later:
                if m not in alone_later:
                    alone_later[m] = best([py, "-c", f"import {m}"], base, a.runs, env)["ratio"]
            extra = {"third_party_later": {m: alone_later[m] for m in later}}
            if third:
                alone = best([py, "-c", "import " + ", ".join(third)], base, a.runs, env)
                extra.update(third_party=third, third_party_ratio=alone["ratio"])
            rows.append(row(name, f"imports ({len(ours)} nvmet_p2p modules"
                            + (f"; {', '.join(third)}" if third else "")
                            + ("; while reading: " + ", ".join(f"{m} {alone_later[m]:.2f}"
                                                              for m in later) if later else "")
                            + ")", t, 2.0, **extra))
    ok = all(r["ratio"] <= r["target"] for r in rows)
    res = {"python": sys.version.split()[0], "kernel": os.uname().release,
           "emulated": "QEMU TCG" if devmap else None, "runs": a.runs, "rows": rows, "pass": ok}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"bench_startup: {a.runs} runs each, interleaved with `python -c pass`; python {res['python']}, "
              f"kernel {res['kernel']}" + (" [emulated: QEMU TCG lab]" if devmap else ""))
        print("bytecode compiled once before timing (compileall); ratio: median of (run / the pass run "
              "before it); seconds: medians; cpu: the same ratio of user+system time; third-party: the "
              "ratio of that library's import alone")
        print(f"{'command':<13} {'seconds':>8} {'pass':>7} {'ratio':>6} {'target':>7} {'cpu':>6} "
              f"{'third-party':>11}  measured")
        for r in rows:
            mark = "" if r["ratio"] <= r["target"] else "  <-- over"
            tp = f"{r['third_party_ratio']:.2f}" if "third_party_ratio" in r else ""
            print(f"{r['command']:<13} {r['seconds']:>8.3f} {r['pass_seconds']:>7.3f} {r['ratio']:>6.2f} "
                  f"{'<= ' + format(r['target'], 'g'):>7} {r['cpu_ratio']:>6.2f} {tp:>11}  {r['what']}{mark}")
        print("PASS" if ok else "FAIL")
    out = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out:
        with open(os.path.join(out, "bench_startup.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
