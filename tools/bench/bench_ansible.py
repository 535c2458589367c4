#!/usr/bin/env python3
"""Benchmark: an Ansible ``nvmet_p2p.target.apply`` task that changes nothing, against a bare
``nvmet-p2p apply`` of the same state (run it in the lab: the real configfs).

    tools/lab/run --topology default -- python3 tools/bench/bench_ansible.py [--reps 5]
    tools/lab/run --topology default -- python3 tools/bench/bench_ansible.py --namespaces 500

Applies the profile (with ``--namespaces N`` instead: a desired-state file of N namespaces on
null_blk, one subsystem, one host, a loop port; ``nvmet-p2p apply --state`` and the task's
``desired_state``) once, then, interleaved for ``--reps`` rounds:

* bare: the wall time of the process ``nvmet-p2p apply --profile P`` (0 writes);
* task: the cost of one apply task inside a running play, measured as the difference between
  a play with ``--tasks`` apply tasks and the same play with none, divided by ``--tasks``
  (so the playbook's own start-up, inventory and fact-free play set-up are not counted; every
  task pays the module's packaging, its Python start-up and the apply);
* ping: the same for ``ansible.builtin.ping``, what any module costs ansible-core per task.

Prints the medians, the ratio task/bare (target: at most 1.5) and (task - ping)/bare, the part
of the task that is nvmet-p2p's. Cleans up afterwards.
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


NQN = "nqn.2026-11.io.nvmet-p2p:bench-ansible"
HOST = "nqn.2014-08.org.nvmexpress:uuid:6e7670ee-7032-4c61-6200-0000000000b1"


def state(n: int, dev: str) -> dict:
    """A desired state of ``n`` namespaces on one block device (distinct UUIDs)."""
    nss = [{"nsid": i, "enable": 1, "device": {"path": dev,
                                               "uuid": f"00000000-0000-4000-8000-{i:012x}"}}
           for i in range(1, n + 1)]
    return {"hosts": [{"nqn": HOST}],
            "subsystems": [{"nqn": NQN, "allowed_hosts": [HOST], "namespaces": nss}],
            "ports": [{"portid": 79, "addr": {"trtype": "loop"}, "subsystems": [NQN]}]}


def play(path: str, source: tuple[str, str], sd: str, tasks: int, module: str = "apply") -> None:
    task = (f"""
    - nvmet_p2p.target.apply:
        {source[0]}: "{source[1]}"
        state_dir: "{sd}"
""" if module == "apply" else """
    - ansible.builtin.ping:
""")
    body = task * tasks
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


def timed_out(cmd: list[str], env: dict) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"bench_ansible: {' '.join(cmd)} failed ({r.returncode}):\n"
                         f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout


def unchanged(stdout: str) -> None:
    if "changed=0" not in stdout:
        raise SystemExit(f"bench_ansible: the apply tasks changed something:\n{stdout[-2000:]}")


def result_size(stdout: str) -> int:
    """The size of an apply task's result as the default callback prints it with ``-v``."""
    return max((len(line.split(" => ", 1)[1]) for line in stdout.splitlines()
                if line.startswith("ok: [") and " => " in line), default=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=os.path.join(CHECKOUT, "profiles", "lab-default.yaml"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--namespaces", type=int, default=0, metavar="N",
                    help="instead of --profile: a desired state of N namespaces on --device")
    ap.add_argument("--device", default="/dev/nullb0")
    ap.add_argument("--no-pipelining", dest="pipelining", action="store_false",
                    help="ansible-core's default: the module copied to a temporary directory, "
                         "chmod, run, removed (a shell each); default: ANSIBLE_PIPELINING=1")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir("/sys/kernel/config") or os.geteuid() != 0:
        print("bench_ansible: needs root and configfs (run it inside the lab: tools/lab/run)",
              file=sys.stderr)
        return 2
    for m in ("nvmet", "nvmet-rdma", "nvmet-tcp") + (("nvme-loop", "null_blk") if a.namespaces else ()):
        subprocess.run(["modprobe", m], check=False)
    work = tempfile.mkdtemp(prefix="nvmet-p2p-bench-ansible-")
    sd = os.path.join(work, "state")
    if a.namespaces:
        desired = os.path.join(work, "desired.json")
        with open(desired, "w") as f:
            json.dump(state(a.namespaces, a.device), f)
        source, cli_source = ("desired_state", desired), ["--state", desired]
        what = f"a desired state of {a.namespaces} namespaces on {a.device}"
    else:
        source, cli_source = ("profile", a.profile), ["--profile", a.profile]
        what = os.path.relpath(a.profile, CHECKOUT)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=CHECKOUT, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PIPELINING="1" if a.pipelining else "0")
    bare_cmd = [os.path.join(BIN, "nvmet-p2p"), "apply", *cli_source, "--state-dir", sd]
    plays = {}
    for name, n, module in (("none", 0, "apply"), ("apply", a.tasks, "apply"),
                            ("ping", a.tasks, "ping")):
        plays[name] = os.path.join(work, f"play-{name}.yml")
        play(plays[name], source, sd, n, module)
    pb = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local"]
    bare, task, ping = [], [], []
    try:
        timed(bare_cmd, env)                               # the first apply creates the exports
        warm = timed_out(pb + ["-v", plays["apply"]], env)  # warm-up; and nothing changes
        unchanged(warm)
        result_bytes = result_size(warm)
        for rnd in range(1, a.reps + 1):
            b = timed(bare_cmd, env)
            p0 = timed(pb + [plays["none"]], env)
            pn = timed(pb + [plays["apply"]], env)
            pp = timed(pb + [plays["ping"]], env)
            bare.append(b)
            task.append((pn - p0) / a.tasks)
            ping.append((pp - p0) / a.tasks)
            print(f"... round {rnd}: bare apply {b:.2f} s; plays: {a.tasks} apply tasks {pn:.2f} s, "
                  f"{a.tasks} ping tasks {pp:.2f} s, none {p0:.2f} s -> {task[-1]:.2f} s per apply "
                  f"task, {ping[-1]:.2f} s per ping task", file=sys.stderr)
    finally:
        subprocess.run([os.path.join(BIN, "nvmet-p2p"), "clear", "--state-dir", sd],
                       capture_output=True)
    mb, mt, mp = statistics.median(bare), statistics.median(task), statistics.median(ping)
    res = {"kernel": os.uname().release, "desired": what, "namespaces": a.namespaces or None,
           "reps": a.reps,
           "pipelining": a.pipelining,
           "tasks_per_play": a.tasks, "bare_seconds": [round(x, 3) for x in bare],
           "task_seconds": [round(x, 3) for x in task],
           "ping_task_seconds": [round(x, 3) for x in ping], "median_bare": round(mb, 3),
           "median_task": round(mt, 3), "median_ping_task": round(mp, 3),
           "result_bytes": result_bytes, "ratio": round(mt / mb, 3),
           "ratio_without_ansible_task_cost": round((mt - mp) / mb, 3),
           "target": TARGET, "pass": mt / mb <= TARGET}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        if os.environ.get("NVMET_P2P_LAB"):
            print("[QEMU, emulated; not a performance claim]")
        print(f"bench_ansible: apply of {what} that changes "
              f"nothing, kernel {res['kernel']}, {a.reps} interleaved rounds, pipelining "
              f"{'on' if a.pipelining else 'off'}")
        print(f"  bare `nvmet-p2p apply`: median {mb:.2f} s: " + " ".join(f"{x:.2f}" for x in bare))
        print(f"  Ansible apply task:     median {mt:.2f} s: " + " ".join(f"{x:.2f}" for x in task))
        print(f"  Ansible ping task:      median {mp:.2f} s: " + " ".join(f"{x:.2f}" for x in ping))
        print(f"  apply task result: {result_bytes} bytes (as `-v` prints it)")
        print(f"ratio task/bare = {mt / mb:.2f} (target <= {TARGET}); "
              f"(apply task - ping task)/bare = {(mt - mp) / mb:.2f}")
        print("PASS" if res["pass"] else "FAIL")
    out_dir = os.environ.get("NVMET_P2P_LAB_RESULTS")
    if out_dir:
        with open(os.path.join(out_dir, "bench_ansible.json"), "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
