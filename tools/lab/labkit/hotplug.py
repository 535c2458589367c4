"""PCIe hotplug in the lab: a command in the guest asks the host's QEMU to hot-remove or
hot-add one of the topology's NVMe controllers while the guest runs.

Channel (no extra guest device, so the guest's PCI tree is unchanged): the run's control
share (9p, read-write, no cache; ``/run/nvmet-p2p-lab/ctl`` in the guest) holds a folder
``hotplug/``. The guest writes a request ``<id>.req`` (JSON, written to ``.tmp`` and renamed);
the runner's :class:`Broker` thread picks it up within 50 ms, performs it on QEMU's QMP
socket (``-qmp unix:<run>/qmp.sock``) and answers ``<id>.resp`` the same way. The guest gets
the folder in ``$NVMET_P2P_LAB_HOTPLUG``.

Requests (``device`` is the NVMe serial the topology declares)::

    {"op": "remove", "device": "cmbA", "timeout": 30}
    {"op": "add", "device": "cmbA"}
    {"op": "list"}

``remove`` sends QMP ``device_del`` and waits for the ``DEVICE_DELETED`` event of that device:
the guest has to acknowledge the unplug (ACPI hotplug: acpiphp, ~0.3 s; native PCIe hotplug:
pciehp's "will power off in 5 sec" attention-button delay, ~6.5 s). A second ``device_del``
inside QEMU's 5 s pending window is refused by QEMU, and one the guest sees during pciehp's
5 s window *cancels* the first, so the broker never re-sends before ``retry_after`` (15 s).
``add`` sends ``device_add`` with the same properties the device had at boot (the
``-drive if=none`` backend survives the unplug and is reused: the data is still there).
Answers: ``{"ok": true|false, "op", "device", "qemu_id", "seconds", "attempts", "error"}``.

Guest side: :func:`remove` / :func:`add` (stdlib only; also ``python3 -m labkit.hotplug
remove cmbA`` with ``tools/lab`` on ``sys.path``); :func:`wait_bound` waits until the nvme
driver bound the re-added controller and its namespace appeared.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

ENV = "NVMET_P2P_LAB_HOTPLUG"
POLL_S = 0.05
RETRY_AFTER_S = 15.0
DEFAULT_TIMEOUT_S = 30.0


class QmpError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# host side: QMP client


class Qmp:
    """A minimal QMP client on a unix socket: commands in order, events kept in a list."""

    def __init__(self, path: str, connect_timeout: float = 10.0):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError as exc:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QmpError(f"cannot connect to QMP at {path}: {exc.strerror}") from None
                time.sleep(0.1)
        self.buf = b""
        self.events: list[dict] = []
        greeting = self._read_message(10.0)
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def close(self) -> None:
        self.sock.close()

    def _read_message(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError("QMP: no answer")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise QmpError("QMP: QEMU closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10.0):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self._read_message(timeout)
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                raise QmpError(f"{command}: {m['error'].get('desc', m['error'])}")
            return m.get("return")

    def wait_event(self, name: str, match: dict, timeout: float) -> dict | None:
        """The first event ``name`` whose data contains ``match`` (seen before or now)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("event") == name and all(e.get("data", {}).get(k) == v for k, v in match.items()):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                m = self._read_message(left)
            except QmpError as exc:
                if "no answer" in str(exc):
                    return None
                raise
            if "event" in m:
                self.events.append(m)


# --------------------------------------------------------------------------------------------
# host side: the broker the runner starts next to QEMU


class Broker:
    """Serves the guest's hotplug requests while one boot runs (a daemon thread).

    ``devices``: serial -> the QMP ``device_add`` arguments of that NVMe (from the topology).
    Every request and answer is appended to ``log_path`` (JSON lines) for the results folder.
    """

    def __init__(self, folder: Path, qmp_path: str, devices: dict[str, dict], log_path: Path | None = None):
        self.folder = Path(folder)
        self.qmp_path = qmp_path
        self.devices = devices
        self.log_path = log_path
        self.present = {s: True for s in devices}
        self.qmp: Qmp | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> "Broker":
        self._thread = threading.Thread(target=self._loop, name="lab-hotplug", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        if self.qmp:
            self.qmp.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            for req in sorted(self.folder.glob("*.req")):
                self._serve(req)

    def _serve(self, req: Path) -> None:
        rid = req.name[:-4]
        t0 = time.monotonic()
        try:
            doc = json.loads(req.read_text())
            req.unlink()
            answer = self.handle(doc)
        except (OSError, ValueError) as exc:
            answer = {"ok": False, "error": f"unreadable request: {exc}"}
            req.unlink(missing_ok=True)
        except QmpError as exc:
            answer = {"ok": False, "error": str(exc)}
        answer.setdefault("seconds", round(time.monotonic() - t0, 3))
        tmp = self.folder / f"{rid}.resp.tmp"
        tmp.write_text(json.dumps(answer) + "\n")
        os.replace(tmp, self.folder / f"{rid}.resp")
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"time": time.time(), "id": rid, **answer}) + "\n")

    def _client(self) -> Qmp:
        if self.qmp is None:
            self.qmp = Qmp(self.qmp_path)
        return self.qmp

    def handle(self, doc: dict) -> dict:
        op, serial = doc.get("op"), doc.get("device")
        if op == "list":
            return {"ok": True, "op": op, "devices": dict(self.present)}
        if op not in ("remove", "add"):
            return {"ok": False, "op": op, "error": f"unknown op {op!r} (remove, add, list)"}
        if serial not in self.devices:
            return {"ok": False, "op": op, "device": serial,
                    "error": f"{serial!r} is not a hot-pluggable NVMe of this topology "
                             f"({', '.join(sorted(self.devices)) or 'none'})"}
        args = self.devices[serial]
        base = {"op": op, "device": serial, "qemu_id": args["id"]}
        if op == "add":
            t0 = time.monotonic()
            self._client().execute("device_add", args)
            self.present[serial] = True
            return {"ok": True, **base, "attempts": 1, "seconds": round(time.monotonic() - t0, 3)}
        return {**base, **self._remove(args["id"], float(doc.get("timeout", DEFAULT_TIMEOUT_S)), serial)}

    def _remove(self, qid: str, timeout: float, serial: str) -> dict:
        q = self._client()
        t0 = time.monotonic()
        deadline = t0 + timeout
        attempts = 0
        while True:
            attempts += 1
            q.execute("device_del", {"id": qid})
            sent = time.monotonic()
            ev = q.wait_event("DEVICE_DELETED", {"device": qid},
                              min(RETRY_AFTER_S, max(0.0, deadline - sent)))
            if ev is not None:
                self.present[serial] = False
                return {"ok": True, "attempts": attempts, "seconds": round(time.monotonic() - t0, 3)}
            if time.monotonic() >= deadline:
                return {"ok": False, "attempts": attempts, "seconds": round(time.monotonic() - t0, 3),
                        "error": f"no DEVICE_DELETED for {qid} within {timeout:.0f} s: the guest did "
                                 f"not acknowledge the unplug"}


# --------------------------------------------------------------------------------------------
# guest side


class HotplugError(Exception):
    pass


def folder() -> str:
    f = os.environ.get(ENV)
    if not f or not os.path.isdir(f):
        raise HotplugError(f"no lab hotplug channel (${ENV} is not set or missing): run inside "
                           f"tools/lab/run")
    return f


def request(doc: dict, timeout: float = 60.0) -> dict:
    """Send one request to the runner and wait for its answer."""
    d = folder()
    rid = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}"
    tmp = os.path.join(d, f"{rid}.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, os.path.join(d, f"{rid}.req"))
    resp = os.path.join(d, f"{rid}.resp")
    deadline = time.monotonic() + timeout
    while not os.path.exists(resp):
        if time.monotonic() > deadline:
            raise HotplugError(f"no answer from the lab runner to {doc} within {timeout:.0f} s")
        time.sleep(0.02)
    with open(resp) as f:
        answer = json.load(f)
    os.unlink(resp)
    return answer


def remove(serial: str, timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """Hot-remove the NVMe ``serial``; returns after QEMU reported DEVICE_DELETED."""
    a = request({"op": "remove", "device": serial, "timeout": timeout}, timeout + 30)
    if not a.get("ok"):
        raise HotplugError(f"remove {serial}: {a.get('error')}")
    return a


def add(serial: str, wait: float | None = 30.0) -> dict:
    """Hot-add the NVMe ``serial`` again; with ``wait``, also wait until the guest bound it."""
    a = request({"op": "add", "device": serial})
    if not a.get("ok"):
        raise HotplugError(f"add {serial}: {a.get('error')}")
    if wait:
        a["guest"] = wait_bound(serial, wait)
    return a


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def controller(serial: str, root: str = "/") -> dict | None:
    """The pcie NVMe controller with this serial: {"ctrl", "bdf", "namespaces"}, or None."""
    for c in sorted(glob.glob(os.path.join(root, "sys/class/nvme/nvme*"))):
        if _read(c + "/transport") != "pcie" or _read(c + "/serial") != serial:
            continue
        name = os.path.basename(c)
        nss = sorted(glob.glob(f"{c}/{name[:4]}*n*"))
        devs = []
        for n in nss:
            b = os.path.basename(n)
            if "c" in b[4:].split("n")[0]:      # nvme0c0n1: a multipath path, not a disk
                continue
            devs.append(f"/dev/{b}")
        return {"ctrl": name, "bdf": _read(c + "/address"), "namespaces": devs}
    return None


def wait_bound(serial: str, timeout: float = 30.0) -> dict:
    """Wait until the controller ``serial`` is bound, has its namespaces as block devices and
    (when it has a CMB the driver registers) its p2pmem pool published."""
    t0 = time.monotonic()
    while True:
        c = controller(serial)
        if c and c["namespaces"] and all(os.path.exists(d) for d in c["namespaces"]):
            c["seconds"] = round(time.monotonic() - t0, 3)
            _settle(timeout)
            return c
        if time.monotonic() - t0 > timeout:
            raise HotplugError(f"{serial}: not bound with a namespace {timeout:.0f} s after device_add")
        time.sleep(0.05)


def wait_gone(serial: str, timeout: float = 10.0) -> None:
    """Wait until the guest no longer lists the controller ``serial``."""
    t0 = time.monotonic()
    while controller(serial) is not None:
        if time.monotonic() - t0 > timeout:
            raise HotplugError(f"{serial}: still present {timeout:.0f} s after DEVICE_DELETED")
        time.sleep(0.05)
    _settle(timeout)


def _settle(timeout: float) -> None:
    """When udevd runs, wait until it has handled the events (by-id links made or removed)."""
    if os.path.exists("/run/udev/control"):
        import subprocess
        subprocess.run(["udevadm", "settle", f"--timeout={max(1, int(timeout))}"], timeout=timeout + 5)

UDEVD = "/lib/systemd/systemd-udevd"


def start_udev(timeout: float = 60.0) -> bool:
    """Start udevd in the guest (the lab runs none) and replay the block/nvme ``add`` events
    so that ``/dev/disk/by-id`` exists; False when this host has no systemd-udevd."""
    import subprocess
    if subprocess.run(["udevadm", "control", "--ping"], capture_output=True, timeout=timeout).returncode == 0:
        return True
    if not os.access(UDEVD, os.X_OK):
        return False
    subprocess.run([UDEVD, "--daemon"], check=True, timeout=timeout)
    subprocess.run(["udevadm", "trigger", "--action=add", "--subsystem-match=block",
                    "--subsystem-match=nvme"], check=True, timeout=timeout)
    subprocess.run(["udevadm", "settle", f"--timeout={int(timeout)}"], check=True, timeout=timeout + 5)
    return True


def stop_udev() -> None:
    import subprocess
    subprocess.run(["udevadm", "control", "--exit"], timeout=30)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] in ("remove", "add"):
        try:
            a = remove(argv[1]) if argv[0] == "remove" else add(argv[1])
        except HotplugError as exc:
            print(f"hotplug: error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(a))
        return 0
    if argv == ["list"]:
        print(json.dumps(request({"op": "list"})))
        return 0
    print("usage: hotplug remove|add SERIAL | list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
