"""``tools/lab/run``: boot a lab topology, run one command in the guest, return its status.

Exit status: the command's own, or 124 (timeout), 130 (interrupted), 125 (the lab itself
failed: no QEMU, no kernel, guest crash after retries, bad topology ...). Every lab failure
is one line starting with ``lab: error:`` on stderr. QEMU is always reaped: it runs with
PR_SET_PDEATHSIG=SIGKILL (dies with the runner even on SIGKILL) and is killed in ``finally``.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import LabError, console, hotplug, initramfs, kernel, rxemod, topology

CHECKOUT = Path(__file__).resolve().parents[3]
QEMU = "qemu-system-x86_64"
EXIT_LAB = 125
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
GUEST_TIMEOUT_MARGIN = 45
GUEST_CTL = "/run/nvmet-p2p-lab/ctl"     # where the guest mounts the control share


class Interrupted(Exception):
    pass


def _slot_count() -> int:
    """How many lab VMs may run at once on this host (``NVMET_P2P_LAB_SLOTS``, default the
    number of CPUs, at least 2). Several developers share one machine; TCG guests that get a
    fraction of a core each time out, so later runs queue instead."""
    raw = os.environ.get("NVMET_P2P_LAB_SLOTS", "")
    try:
        return max(1, int(raw)) if raw else max(2, os.cpu_count() or 2)
    except ValueError:
        raise LabError(f"NVMET_P2P_LAB_SLOTS={raw!r}: expected a number") from None


def acquire_slot(cache: Path, count: int | None = None, poll: float = 2.0):
    """Hold one of ``count`` flock slots in the shared cache; return the open file (the slot is
    released when it is closed or the process exits). Waits, saying so once a minute."""
    count = _slot_count() if count is None else count
    slots = cache / "slots"
    slots.mkdir(parents=True, exist_ok=True)
    waited, said = 0.0, -60.0
    while True:
        for i in range(count):
            f = open(slots / f"slot-{i}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            if waited:
                log(f"got lab slot {i + 1} of {count} after {waited:.0f} s")
            return f
        if waited - said >= 60:
            log(f"waiting for a lab slot: {count} lab VM(s) already run on this host "
                f"(NVMET_P2P_LAB_SLOTS)")
            said = waited
        time.sleep(poll)
        waited += poll


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tools/lab/run",
        description="Boot a lab topology under QEMU (TCG) with a p2pdma-enabled Debian kernel and run "
                    "COMMAND as root in the guest (configfs mounted, modules loadable, the checkout and "
                    "its .venv at the same paths). Exits with COMMAND's status.",
        epilog="Exit status: COMMAND's, or 124 timeout, 125 lab failure, 130 interrupted. "
               f"Topologies: {', '.join(topology.available())}.")
    p.add_argument("--topology", "-t", default="default", help="name in tools/lab/topologies/ or a YAML path")
    p.add_argument("--results", metavar="DIR",
                   help="results folder (NVMET_P2P_LAB_RESULTS in the guest; default "
                        "results/lab/<topology>-<time> in the checkout)")
    p.add_argument("--timeout", type=float, default=900, metavar="S",
                   help="wall-clock limit for boot + command (default 900)")
    p.add_argument("--retries", type=int, default=2,
                   help="re-boots after a guest crash the lab attributes to the emulator (default 2)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not stream the guest console (it is still saved)")
    p.add_argument("--share", action="append", default=[], metavar="PATH",
                   help="also make PATH visible in the guest at the same path (writable, changes discarded)")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment for COMMAND")
    p.add_argument("--refresh-kernel", action="store_true", help="re-resolve the newest kernel through apt")
    p.add_argument("--kernel-release", metavar="ABI", help="use this kernel ABI (e.g. 7.3.4+deb13-amd64)")
    p.add_argument("--tcg-thread", choices=("multi", "single"),
                   default=os.environ.get("NVMET_P2P_LAB_TCG_THREAD", "multi"))
    p.add_argument("--print-qemu", action="store_true", help="print the QEMU command line and exit")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] (default: true)")
    a = p.parse_args(argv)
    if a.command and a.command[0] == "--":
        a.command = a.command[1:]
    if not a.command:
        a.command = ["true"]
    return a


# --------------------------------------------------------------------------------------------


def _under(path: Path, base: Path) -> bool:
    try:
        path.relative_to(base)
        return True
    except ValueError:
        return False


def plan_shares(checkout: Path, results: Path, extra: list[str]) -> list[tuple[str, str, Path]]:
    """(tag, mode, path) of the 9p shares besides the host root and the control share.

    The checkout, its .venv (when it lives elsewhere) and any --share PATH are mounted
    read-only with a tmpfs overlay; the results folder read-write. Parents come first so a
    results folder inside the checkout is mounted over the checkout's overlay.
    """
    wanted: list[tuple[str, Path]] = [("overlay", checkout.resolve())]
    venv = checkout / ".venv"
    if venv.exists():
        real = venv.resolve()
        if not _under(real, checkout.resolve()):
            wanted.append(("overlay", real))
    for e in extra:
        wanted.append(("overlay", Path(e).resolve()))
    wanted.append(("rw", results.resolve()))
    seen: set[Path] = set()
    out = []
    for mode, path in sorted(wanted, key=lambda mp: (len(mp[1].parts), mp[0] == "rw")):
        if path in seen:
            continue
        seen.add(path)
        if any(c.isspace() for c in str(path)):
            raise LabError(f"cannot share {path}: paths with white space are not supported")
        out.append((mode, path))
    if len(out) > len(topology.SHARE_SLOTS) - 1:
        raise LabError(f"too many shared folders ({len(out)}); at most {len(topology.SHARE_SLOTS) - 1}")
    return [(f"labshare{i}", mode, path) for i, (mode, path) in enumerate(out)]


def qemu_argv(topo: topology.Topology, k: kernel.Kernel, initrd: Path, ctl: Path,
              shares: list[tuple[str, str, Path]], images: dict[str, str], tcg_thread: str,
              qmp: Path | None = None) -> list[str]:
    append = ["console=ttyS0,115200", "loglevel=4", "panic=-1", "oops=panic", "printk.devkmsg=on",
              # 4 MiB kernel log (the Debian kernel's is 128 KiB): a whole lab tier fits, so a
              # test reading the log after many others still finds its boot-time lines
              "log_buf_len=4M", *topo.kernel_args()]
    argv = [QEMU, "-machine", topo.machine,
            "-accel", f"tcg,thread={tcg_thread},tb-size=256",
            "-cpu", topo.cpu, "-smp", str(topo.smp), "-m", topo.memory,
            "-nodefaults", "-display", "none", "-no-reboot",
            "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
            "-kernel", k.vmlinuz, "-initrd", str(initrd), "-append", " ".join(append)]
    if qmp is not None:     # the hotplug broker's monitor (labkit/hotplug.py)
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    slots = iter(topology.SHARE_SLOTS)
    for tag, path, ro in [("hostroot", Path("/"), True), ("labctl", ctl, False)] + \
                         [(t, p, m != "rw") for t, m, p in shares]:
        argv += ["-fsdev", f"local,id=fs-{tag},path={path},security_model=none,multidevs=remap"
                           + (",readonly=on" if ro else ""),
                 "-device", f"virtio-9p-pci,fsdev=fs-{tag},mount_tag={tag},bus=pcie.0,addr=0x{next(slots):x}"]
    return argv + topo.qemu_devices(images)


def _env_file(env: dict[str, str], argv: list[str]) -> str:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines.append("LAB_ARGV=(" + " ".join(shlex.quote(a) for a in argv) + ")")
    return "\n".join(lines) + "\n"


def _clean_old_runs(runs: Path) -> None:
    now = time.time()
    for d in runs.glob("*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        alive = os.path.exists(f"/proc/{pid}")
        if (not alive and now - d.stat().st_mtime > 600) or now - d.stat().st_mtime > 86400:
            shutil.rmtree(d, ignore_errors=True)


class Boot:
    """One QEMU process: launch, stream, wait, reap."""

    def __init__(self, argv: list[str], ctl: Path, console_log: Path, quiet: bool,
                 broker: hotplug.Broker | None = None):
        self.argv = argv
        self.broker = broker
        self.ctl = ctl
        self.console_log = console_log
        self.quiet = quiet
        self.proc: subprocess.Popen | None = None
        self.text = ""
        self.t_start = 0.0
        self.t_command = None
        self.t_userspace = None

    def reap(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def run(self, deadline: float) -> tuple[str, int | None]:
        """Returns (how it ended: exited|timeout, rc from the rc file or None)."""
        for f in ("rc", "stdout", "stderr", "setup.log"):
            (self.ctl / f).unlink(missing_ok=True)
        (self.ctl / "stdout").touch()
        (self.ctl / "stderr").touch()
        qerr = open(self.ctl.parent / "qemu.stderr", "w")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=qerr, preexec_fn=_pdeathsig, start_new_session=True)
        qerr.close()
        if self.broker:
            self.broker.start()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        outs = [(open(self.ctl / "stdout", "rb"), sys.stdout.buffer),
                (open(self.ctl / "stderr", "rb"), sys.stderr.buffer)]
        partial = b""
        how = "exited"
        with open(self.console_log, "wb") as clog:
            eof = False
            while True:
                now = time.monotonic()
                if now > deadline:
                    how = "timeout"
                    break
                for _key, _ in sel.select(timeout=0.1):
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    if not chunk:
                        sel.unregister(self.proc.stdout)
                        eof = True
                        break
                    clog.write(chunk)
                    clog.flush()
                    partial += chunk
                    *lines, partial = partial.split(b"\n")
                    for raw in lines:
                        self._console_line(raw.decode("utf-8", "replace").rstrip("\r"))
                for src, dst in outs:
                    data = src.read()
                    if data:
                        dst.write(data)
                        dst.flush()
                if eof or self.proc.poll() is not None:
                    # drain what is left
                    rest = self.proc.stdout.read() or b""
                    clog.write(rest)
                    for raw in (partial + rest).split(b"\n"):
                        if raw:
                            self._console_line(raw.decode("utf-8", "replace").rstrip("\r"))
                    break
            for src, dst in outs:
                data = src.read()
                if data:
                    dst.write(data)
                    dst.flush()
                src.close()
        # keep the command's output next to the console log
        for name in ("stdout", "stderr"):
            try:
                shutil.copyfile(self.ctl / name, self.console_log.with_name(
                    self.console_log.name.replace("console", name)))
            except OSError:
                pass
        self.reap()
        if self.broker:
            self.broker.stop()
        rc = None
        try:
            rc = int((self.ctl / "rc").read_text().strip())
        except (OSError, ValueError):
            pass
        return how, rc

    def _console_line(self, line: str) -> None:
        self.text += line + "\n"
        now = time.monotonic() - self.t_start
        m = console.MARK_USERSPACE.search(line)
        if m:
            self.t_userspace = now
        m = console.MARK_START.search(line)
        if m:
            self.t_command = now
            if not self.quiet:
                log(f"command starts: {now:.1f} s after QEMU start (guest uptime {m.group(1)} s)")
            return
        if line.startswith(("LAB_USERSPACE", "LAB_COMMAND_RC", "LAB_COMMAND_TIMEOUT")):
            return
        if not self.quiet:
            print(f"  [guest] {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    t0 = time.monotonic()

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    # Ctrl-C must work even when SIGINT was inherited as ignored (background jobs of a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _main(args, t0)
    except LabError as exc:
        log(f"error: {exc}")
        return exc.exit_status
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({str(exc) or 'SIGINT'}); QEMU stopped")
        return EXIT_INTERRUPTED


def _main(args: argparse.Namespace, t0: float) -> int:
    topo = topology.load(args.topology)
    if not shutil.which(QEMU):
        raise LabError(f"{QEMU} not found: install qemu-system-x86 (bash tools/lab/setup)")
    cache = kernel.cache_root()
    k, k_cached = kernel.ensure_kernel(cache, log, refresh=args.refresh_kernel, release=args.kernel_release)
    initrd, i_cached = initramfs.ensure_initramfs(cache, k)
    rxe = rxemod.ensure_module(cache, k, log) if topo.needs_rxe_p2p else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = Path(args.results) if args.results else CHECKOUT / "results" / "lab" / f"{topo.name}-{stamp}"
    results = results.absolute()
    results.mkdir(parents=True, exist_ok=True)
    runs = cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    _clean_old_runs(runs)
    run = runs / f"{stamp}-{topo.name}-{os.getpid()}"
    ctl = run / "ctl"
    disks = run / "disks"
    ctl.mkdir(parents=True)
    disks.mkdir()
    try:
        with acquire_slot(cache):
            t0 = time.monotonic()   # --timeout covers boot + command, not the wait for a slot
            return _run(args, t0, topo, k, k_cached, initrd, i_cached, results, run, ctl, disks, rxe)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _run(args, t0, topo, k, k_cached, initrd, i_cached, results, run, ctl, disks, rxe) -> int:
    shares = plan_shares(CHECKOUT, results, args.share)
    images = {}
    for n in topo.nvme:
        img = disks / f"{n.serial}.img"
        with open(img, "wb") as f:
            f.truncate(n.disk)
        images[n.serial] = str(img)
    cwd = Path.cwd().resolve()
    visible = any(_under(cwd, p) for _t, _m, p in shares) or not any(
        _under(cwd, Path(x)) for x in ("/tmp", "/run"))
    guest_cwd = cwd if visible else CHECKOUT
    path_prefix = []
    venv_bin = CHECKOUT / ".venv" / "bin"
    if venv_bin.is_dir():
        path_prefix.append(str(venv_bin))
    env = {
        "NVMET_P2P_LAB": "1",
        "NVMET_P2P_LAB_TOPOLOGY": topo.name,
        "NVMET_P2P_LAB_DEVICES": str(results / "lab-devices.json"),
        "NVMET_P2P_LAB_RESULTS": str(results),
        "NVMET_P2P_LAB_CHECKOUT": str(CHECKOUT),
        "NVMET_P2P_LAB_HOTPLUG": f"{GUEST_CTL}/hotplug",
        "LAB_CWD": str(guest_cwd),
        "LAB_PATH_PREFIX": ":".join(path_prefix),
        "LAB_TIMEOUT": (str(int(args.timeout - GUEST_TIMEOUT_MARGIN))
                        if args.timeout > 2 * GUEST_TIMEOUT_MARGIN else "0"),
    }
    for kv in args.env:
        key, sep, val = kv.partition("=")
        if not sep or not key.isidentifier():
            raise LabError(f"--env {kv!r}: expected NAME=VALUE")
        env[key] = val
    (ctl / "job.env").write_text(_env_file(env, args.command))
    (ctl / "boot.env").write_text(f"LAB_MODDIR={shlex.quote(k.moddir)}\nLAB_TMPFS_SIZE=1g\n")
    (ctl / "mounts").write_text("".join(f"{t} {m} {p}\n" for t, m, p in shares))
    guest = topo.guest_json(images)
    if rxe is not None:
        guest["rxe_p2p_module"] = rxe[0].path
    (ctl / "topology.json").write_text(json.dumps(guest, indent=2) + "\n")
    qmp = run / "qmp.sock"
    argv = qemu_argv(topo, k, initrd, ctl, shares, images, args.tcg_thread, qmp)
    (results / "lab-qemu-cmdline.txt").write_text(shlex.join(argv) + "\n")
    if args.print_qemu:
        print(shlex.join(argv))
        return 0
    log(f"topology {topo.name}; kernel {k.release} ({'cached' if k_cached else 'downloaded'}); "
        f"initramfs {initrd.name} ({'cached' if i_cached else 'built'}); "
        + (f"{rxemod.MODULE} {rxe[0].key} ({'cached' if rxe[1] else 'built'}); " if rxe else "")
        + f"results {results}")

    deadline = t0 + args.timeout
    attempts = []
    verdict = None
    boot = None
    for attempt in range(1, args.retries + 2):
        clog = results / ("lab-console.log" if attempt == 1 else f"lab-console.attempt{attempt}.log")
        shutil.rmtree(ctl / "hotplug", ignore_errors=True)
        broker = hotplug.Broker(ctl / "hotplug", str(qmp), topo.hotplug_devices(),
                                results / "lab-hotplug.jsonl")
        boot = Boot(argv, ctl, clog, args.quiet, broker)
        try:
            how, rc = boot.run(deadline)
        finally:
            boot.reap()
        verdict = console.classify(boot.text, rc)
        rec = {"attempt": attempt, "how": how, "verdict": verdict.kind, "phase": verdict.phase,
               "detail": verdict.detail, "rc": verdict.rc, "console": clog.name,
               "wall_s": round(time.monotonic() - boot.t_start, 2),
               "boot_to_command_s": round(boot.t_command, 2) if boot.t_command else None,
               "guest_uptime_at_command_s": verdict.start_uptime}
        attempts.append(rec)
        if how == "timeout":
            break
        if verdict.kind == "crash" and verdict.retryable and attempt <= args.retries \
                and time.monotonic() < deadline - 30:
            log(f"RETRY: {verdict.describe()}; console kept in {clog.name}; rebooting "
                f"(attempt {attempt + 1}/{args.retries + 1})")
            continue
        break
    total = time.monotonic() - t0
    summary = {"topology": topo.name, "kernel": k.release, "kernel_cached": k_cached,
               "initramfs": initrd.name, "initramfs_cached": i_cached, "command": args.command,
               "rxe_p2p": ({"path": rxe[0].path, "key": rxe[0].key, "cached": rxe[1],
                            "build_s": None if rxe[1] else rxe[0].build_s} if rxe else None),
               "attempts": attempts, "total_s": round(total, 2), "tcg_thread": args.tcg_thread,
               "shares": [{"tag": t, "mode": m, "path": str(p)} for t, m, p in shares]}
    last = attempts[-1]
    how = last["how"]
    if how == "timeout":
        status = EXIT_TIMEOUT
        where = "before the command started" if boot.t_command is None else "while the command ran"
        msg = f"timeout after {args.timeout:.0f} s {where}; QEMU killed (console: {results / last['console']})"
    elif verdict.kind == "ok" and "LAB_COMMAND_TIMEOUT" in boot.text:
        status = EXIT_TIMEOUT
        msg = (f"the command did not finish within {env['LAB_TIMEOUT']} s in the guest and was killed "
               f"(--timeout {args.timeout:.0f} minus {GUEST_TIMEOUT_MARGIN} s for boot and shutdown)")
    elif verdict.kind == "ok":
        status = verdict.rc
        msg = None
    else:
        status = EXIT_LAB
        tail = ""
        if verdict.kind == "no_status":
            qerr = (run / "qemu.stderr").read_text(errors="replace").strip().splitlines()
            if qerr:
                tail = f"; QEMU said: {qerr[-1][:300]}"
        msg = f"{verdict.describe()}{tail} (console: {results / last['console']})"
    summary["exit_status"] = status
    (results / "lab-run.json").write_text(json.dumps(summary, indent=2) + "\n")
    if msg:
        log(f"error: {msg}")
    b2c = last["boot_to_command_s"]
    log(f"{'command exited ' + str(status) if msg is None else 'failed'}; boot-to-command "
        f"{b2c if b2c is not None else '-'} s (kernel {'cached' if k_cached else 'downloaded'}, initramfs "
        f"{'cached' if i_cached else 'built'}); {len(attempts)} boot(s); total {total:.1f} s; results {results}")
    return status
