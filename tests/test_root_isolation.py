"""``--root DIR`` isolates (issue 22.2): every command, run with ``--root`` on a synthetic
machine, creates and changes nothing outside DIR -- the saved file, the state directory, its
lock and records, crash details and the units resolve below it.

``save --root DIR`` used to write the host's own ``/etc/nvmet/config.json`` (and create
``/etc/nvmet``), ``apply --root DIR`` the host's ``/var/lib/nvmet-p2p``. Each command runs in
its own process with a clean environment (no ``NVMET_P2P_*``, ``HOME``/``TMPDIR``/``XDG_*`` and
the working directory in an "outside" directory); the host paths nvmet-p2p could write and the
outside directory are hashed before and after."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

import nvmet_p2p
from nvmet_p2p import cli, exits
from support import sysfs as sf

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(nvmet_p2p.__file__)))

H1 = "nqn.2014-08.org.nvmexpress:uuid:host1"
S1 = "nqn.2026-11.io.lab:s1"
STATE_DIR, SAVE_FILE, UNIT_DIR = "/var/lib/nvmet-p2p", "/etc/nvmet/config.json", "/etc/systemd/system"
#: the host paths a default could resolve to (and the temporary files a crash report made)
HOST_PATHS = [STATE_DIR, "/etc/nvmet", UNIT_DIR, "/etc/default/nvmet-p2p"]
HOST_GLOBS = ["/tmp/nvmet-p2p-*", "/var/tmp/nvmet-p2p-*", STATE_DIR + "*"]


def fingerprint(*tops: str) -> dict[str, str]:
    """path -> sha256 of a file, "dir", "link -> target" or "absent", for every path below."""
    out: dict[str, str] = {}
    for top in tops:
        if not os.path.lexists(top):
            out[top] = "absent"
            continue
        if os.path.islink(top) or not os.path.isdir(top):
            out[top] = _one(top)
            continue
        if top == UNIT_DIR:           # the host's unit directory: only our names matter
            for p in glob.glob(os.path.join(top, "nvmet*")):
                out[p] = _one(p)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            out[dirpath] = "dir"
            for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                p = os.path.join(dirpath, n)
                out[p] = _one(p)
    return out


def _one(p: str) -> str:
    if os.path.islink(p):
        return "link -> " + os.readlink(p)
    if not os.path.isfile(p):
        return "special"
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def host_fingerprint() -> dict[str, str]:
    found = sorted({p for g in HOST_GLOBS for p in glob.glob(g)})
    return fingerprint(*HOST_PATHS, *found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(root: str, inputs: str, explicit: str = "/e") -> dict[str, list[list[str]]]:
    """Every command, with the arguments an operator would give it on the tree (``--root``
    goes after the command word, or where the command takes it)."""
    state = os.path.join(inputs, "state.json")
    prof = os.path.join(inputs, "profile.yaml")
    nodev = "/dev/nvmet-p2p-test-no-such-device"
    return {
        "doctor": [["doctor"]],
        "snapshot": [["snapshot", os.path.join(explicit, "snap")]],   # (its DIR: as given)
        "topology": [["topology"]],
        "distance": [["distance", "0000:03:00.0", "rxe0"]],
        "profile": [["profile", "--root", root, "schema"], ["profile", "--root", root, "check", prof]],
        "plan": [["plan", "--state", state]],
        "apply": [["apply", "--state", state], ["apply", "--state", state, "--save"]],
        "save": [["save"]],
        "restore": [["restore"], ["restore", "nonexist.json"], ["restore", "--dry-run"]],
        "clear": [["clear", "--dry-run"], ["clear"]],
        "shell": [["shell", "-c", "ls /"]],
        "install-units": [["install-units", "--bin", "/bin/true"]],
        "status": [["status"], ["status", "--json"]],
        "metrics": [["metrics"], ["metrics", "--textfile", os.path.join(root, "nvmet_p2p.prom")]],
        "watch": [["watch"]],
        "exporter": [["exporter", "--listen", f"127.0.0.1:{_free_port()}"]],
        "bench": [["bench", "--device", nodev, "--workload", "seq-read-128k-qd1", "--runtime", "1"]],
        "p2p-test": [["p2p-test", "0000:03:00.0", nodev, "--read-only-source"]],
        "help": [["help", "save"]],                 # (reads nothing: no --root)
        "completion": [["completion", "bash"]],     # (prints the script: no --root)
    }


@pytest.fixture(scope="module")
def isolated_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("iso")
    root, outside, inputs = base / "root", base / "outside", base / "inputs"
    explicit = base / "explicit"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    for d in ("subsystems", "ports", "hosts"):
        os.makedirs(root / "sys/kernel/config/nvmet" / d, exist_ok=True)
    for d in ("home", "tmp", "state", "cache", "cwd"):
        os.makedirs(outside / d)
    inputs.mkdir()
    explicit.mkdir()
    # (configfs is a plain directory tree here: a host is what it can hold)
    (inputs / "state.json").write_text(json.dumps({"hosts": [{"nqn": H1}]}))
    (inputs / "profile.yaml").write_text(
        "version: 1\nsubsystems:\n  - nqn: " + S1 + "\n    namespaces:\n      - select: {serial: cmbB}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVMET_P2P_")}
    env.update(HOME=str(outside / "home"), TMPDIR=str(outside / "tmp"),
               XDG_STATE_HOME=str(outside / "state"), XDG_CACHE_HOME=str(outside / "cache"),
               PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=CHECKOUT)   # (this checkout's nvmet_p2p)
    before_host, before_out = host_fingerprint(), fingerprint(str(outside), str(inputs))
    ran = {}
    for name, runs in commands(str(root), str(inputs), str(explicit)).items():
        for argv in runs:
            cmd = [sys.executable, "-m", "nvmet_p2p", *argv]
            if "--root" not in argv and name not in ("help", "completion"):
                cmd[4:4] = ["--root", str(root)]
            if name == "exporter":
                p = subprocess.Popen(cmd, env=env, cwd=outside / "cwd", stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                try:
                    out, err = p.communicate(timeout=4)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGTERM)
                    out, err = p.communicate(timeout=20)
                ran[" ".join(argv)] = (p.returncode, err)
                continue
            r = subprocess.run(cmd, env=env, cwd=outside / "cwd", capture_output=True, text=True,
                               timeout=300)
            ran[" ".join(argv)] = (r.returncode, r.stderr)
    return {"root": root, "ran": ran, "host": (before_host, host_fingerprint()),
            "outside": (before_out, fingerprint(str(outside), str(inputs)))}


def test_every_command_is_run(isolated_runs):
    assert {m.NAME for m in cli.command_modules()} == set(commands("/r", "/i"))


def test_nothing_outside_the_root_is_created_or_changed(isolated_runs):
    before, after = isolated_runs["host"]
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
    before, after = isolated_runs["outside"]
    # matplotlib's per-user font cache (bench draws its plots with it): the library's own file,
    # made by any plot with or without --root, not one nvmet-p2p writes
    after = {p: h for p, h in after.items() if "matplotlib" not in p and not (
        p.endswith("/home/.config") and p + "/matplotlib" in after)}
    assert after == before, sorted(set(after) ^ set(before))


def test_no_command_failed_as_a_bug(isolated_runs):
    bugs = {argv: err for argv, (rc, err) in isolated_runs["ran"].items()
            if rc == exits.INTERNAL or "Traceback" in err}
    assert bugs == {}


def test_the_defaults_resolved_below_the_root(isolated_runs):
    root, ran = isolated_runs["root"], isolated_runs["ran"]
    for argv in ("apply --state", "save", "restore", "install-units --bin /bin/true"):
        rc, err = next(v for k, v in ran.items() if k.startswith(argv))
        assert rc == 0, (argv, err)
    assert os.path.isfile(root / SAVE_FILE.lstrip("/"))
    assert {"lock", "managed.json", "last-apply.json"} <= set(os.listdir(root / STATE_DIR.lstrip("/")))
    assert os.path.isfile(root / UNIT_DIR.lstrip("/") / "nvmet-p2p.service")
    unit = (root / UNIT_DIR.lstrip("/") / "nvmet-p2p.service").read_text()
    # like systemctl --root: the unit names the paths of the system that boots from the tree
    assert f" {SAVE_FILE} " in unit and f"={STATE_DIR}" in unit and str(root) not in unit
