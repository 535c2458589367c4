#!/usr/bin/env python3
"""Benchmark: an Ansible ``nvmet_p2p.target.apply`` task that changes nothing, against a bare
``nvmet-p2p apply`` of the same state (run it in the lab: the real configfs).

    tools/lab/run --topology default -- python3 tools/bench/bench_ansible.py [--reps 5]

Applies the profile once, then, interleaved for ``--reps`` rounds:

* bare: the wall time of the process ``nvmet-p2p apply --profile P`` (0 writes);
* task: the cost of one apply task inside a running play, measured as the difference between
  a play with ``--tasks`` apply tasks and the same play with none, divided by ``--tasks``
  (so the playbook's own start-up, inventory and fact-free play set-up are not counted; every
  task pays the module's packaging, its Python start-up and the apply).

Prints both medians and the ratio task/bare (target: at most 1.5). Cleans up afterwards.
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

CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.path.dirname(sys.executable)
TARGET = 1.5


def play(path: str, profile: str, sd: str, tasks: int) -> None:
    body = "".join(f"""
    - nvmet_p2p.target.apply:
        profile: "{profile}"
        state_dir: "{sd}"
      register: r{i}
    - ansible.builtin.assert:
        that: not r{i}.changed
""" for i in range(tasks))
    with open(path, "w") as f:
        f.write(f"""
- hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: "{sys.executable}"
  tasks:
    - ansible.builtin.meta: noop
{body}""")


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"bench_ansible: {' '.join(cmd)} failed ({r.returncode}):\n"
                         f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=os.path.join(CHECKOUT, "profiles", "lab-default.yaml"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir("/sys/kernel/config") or os.geteuid() != 0:
        print("bench_ansible: needs root and configfs (run it inside the lab: tools/lab/run)",
              file=sys.stderr)
        return 2
    for m in ("nvmet", "nvmet-rdma", "nvmet-tcp"):
        subprocess.run(["modprobe", m], check=False)
    work = tempfile.mkdtemp(prefix="nvmet-p2p-bench-ansible-")
    sd = os.path.join(work, "state")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=CHECKOUT, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    bare_cmd = [os.path.join(BIN, "nvmet-p2p"), "apply", "--profile", a.profile, "--state-dir", sd]
    plays = {}
    for n in (0, a.tasks):
        plays[n] = os.path.join(work, f"play{n}.yml")
        play(plays[n], a.profile, sd, n)
    pb = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local"]
    bare, task = [], []
    try:
        timed(bare_cmd, env)                               # the first apply creates the exports
        timed(pb + [plays[a.tasks]], env)                  # warm-up (and: nothing changes)
        for rnd in range(1, a.reps + 1):
            b = timed(bare_cmd, env)
            p0 = timed(pb + [plays[0]], env)
            pn = timed(pb + [plays[a.tasks]], env)
            bare.append(b)
            task.append((pn - p0) / a.tasks)
            print(f"... round {rnd}: bare apply {b:.2f} s; play with {a.tasks} tasks {pn:.2f} s, "
                  f"without {p0:.2f} s -> {task[-1]:.2f} s per task", file=sys.stderr)
    finally:
        subprocess.run([os.path.join(BIN, "nvmet-p2p"), "clear", "--state-dir", sd],
                       capture_output=True)
    mb, mt = statistics.median(bare), statistics.median(task)
    res = {"kernel": os.uname().release, "profile": a.profile, "reps": a.reps,
           "tasks_per_play": a.tasks, "bare_seconds": [round(x, 3) for x in bare],
           "task_seconds": [round(x, 3) for x in task], "median_bare": round(mb, 3),
           "median_task": round(mt, 3), "ratio": round(mt / mb, 3), "target": TARGET,
           "pass": mt / mb <= TARGET}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        if os.environ.get("NVMET_P2P_LAB"):
            print("[QEMU, emulated; not a performance claim]")
        print(f"bench_ansible: apply of {os.path.relpath(a.profile, CHECKOUT)} that changes "
              f"nothing, kernel {res['kernel']}, {a.reps} interleaved rounds")
        print(f"  bare `nvmet-p2p apply`: median {mb:.2f} s: " + " ".join(f"{x:.2f}" for x in bare))
        print(f"  Ansible apply task:     median {mt:.2f} s: " + " ".join(f"{x:.2f}" for x in task))
        print(f"ratio task/bare = {mt / mb:.2f} (target <= {TARGET})")
        print("PASS" if res["pass"] else "FAIL")
    out_dir = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out_dir:
        with open(os.path.join(out_dir, "bench_ansible.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
