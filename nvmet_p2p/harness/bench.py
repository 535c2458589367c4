"""The bench orchestration: connect, run the matrix, verify, gather evidence, always disconnect.

:class:`Bench` is driven by ``nvmet-p2p bench`` and by tests; every edge is injectable
(nvme-cli runner, fio, sysfs root, the target evidence source, the A/B toggle).

Order of one run::

    connect (nvme discover/connect -o json)  ->  wait for block devices (sysfs, by nsid)
    for each round (A/B: interleaved p2p-on, p2p-off, p2p-on, ...; otherwise one round):
        [A/B: disconnect, toggle the target, reconnect]
        for each workload: evidence window opens -> fio -> window closes
            (integrity: write pass, the between-phases hook, verify-only pass)
    target status for the whole run  ->  results.json / CSV / summary.md / plots
    disconnect everything this run connected (also on failure, Ctrl-C, SIGTERM)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nvmet_p2p import paths
from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.harness import environment, hostsys
from nvmet_p2p.harness import results as res
from nvmet_p2p.harness.fio import FioInterrupted, FioRun, Workload, job_file, job_name, run_fio
from nvmet_p2p.harness.nvmecli import AlreadyConnected, HostIdentity, NvmeCli
from nvmet_p2p.kmsg import KernelLog
from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.observe import explain
from nvmet_p2p.observe import status as st
from nvmet_p2p.observe.status import HostControllerHint

# --------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------

@dataclass
class TargetAddress:
    """Where the target listens and what to take from it."""

    transport: str                      # rdma | tcp | loop
    traddr: str | None = None
    trsvcid: str | None = None
    nqns: list[str] = field(default_factory=list)    # empty: every NVM subsystem discovered
    nsids: list[int] | None = None                   # None: every namespace


@dataclass
class Connection:
    ctrl: hostsys.HostController
    connected_by_us: bool
    disconnected: bool = False
    other_paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = self.ctrl.to_dict()
        d.update(connected_by_us=self.connected_by_us, disconnected=self.disconnected,
                 other_paths=self.other_paths)
        return d


class Connections:
    """Controllers this run uses; ``close()`` disconnects exactly the ones it connected."""

    def __init__(self, cli: NvmeCli, host: HostIdentity, *, root: str = "/", progress=None,
                 nr_io_queues: int | None = None, queue_size: int | None = None, timeout: float = 30.0):
        self.cli = cli
        self.host = host
        self.root = root
        self.progress = progress or (lambda m: None)
        self.nr_io_queues = nr_io_queues
        self.queue_size = queue_size
        self.timeout = timeout
        self.items: list[Connection] = []
        self.history: list[dict] = []
        self.discovered: list[dict] = []

    def open(self, addr: TargetAddress) -> list[Connection]:
        nqns = list(addr.nqns)
        if not nqns:
            recs = self.cli.discover(addr.transport, addr.traddr, addr.trsvcid, self.host)
            self.discovered = [r.to_dict() for r in recs]
            nqns = sorted({r.subnqn for r in recs if r.is_nvm})
            if not nqns:
                raise NvmetP2PError(f"discovery at {addr.transport} {addr.traddr}:{addr.trsvcid} lists no "
                                    f"NVM subsystem this host ({self.host.hostnqn}) may use")
        for nqn in nqns:
            self.progress(f"connecting {nqn} over {addr.transport} {addr.traddr or ''}:{addr.trsvcid or ''}")
            try:
                name = self.cli.connect(addr.transport, addr.traddr, addr.trsvcid, nqn, self.host,
                                        nr_io_queues=self.nr_io_queues, queue_size=self.queue_size)
                ours = True
            except AlreadyConnected:
                name = hostsys.find_controller(nqn, addr.transport, addr.traddr, addr.trsvcid, self.root)
                if not name:
                    raise
                ours = False
                self.progress(f"{nqn} is already connected as {name}: using it, will not disconnect it")
            conn = Connection(ctrl=hostsys.HostController(name=name), connected_by_us=ours)
            self.items.append(conn)       # registered before waiting: close() must see it
            conn.ctrl = hostsys.wait_for_namespaces(name, root=self.root, nsids=addr.nsids, timeout=self.timeout)
            conn.other_paths = hostsys.other_paths(conn.ctrl, self.root)
            self.progress(f"{name}: target controller {conn.ctrl.cntlid}, "
                          + ", ".join(f"nsid {n.nsid} -> {n.device}" for n in conn.ctrl.namespaces))
        return self.items

    def devices(self) -> list[hostsys.HostNamespace]:
        out = []
        for c in self.items:
            if not c.disconnected:
                out += c.ctrl.namespaces
        return out

    def close(self) -> list[str]:
        """Disconnect what we connected; returns errors (never raises: it runs in finally)."""
        errors = []
        for c in self.items:
            if c.connected_by_us and not c.disconnected:
                try:
                    self.cli.disconnect(c.ctrl.name)
                    c.disconnected = True
                    self.progress(f"disconnected {c.ctrl.name}")
                except (NvmetP2PError, OSError) as exc:  # keep going: disconnect the others too
                    errors.append(f"disconnect {c.ctrl.name}: {exc}")
        self.history += [c.to_dict() for c in self.items]
        self.items = [c for c in self.items if not c.disconnected]
        return errors


# --------------------------------------------------------------------------------------
# Target evidence for a window
# --------------------------------------------------------------------------------------

class Evidence:
    """What the bench needs of the target's evidence for a window (:class:`NoEvidence`,
    :class:`LocalEvidence`, :class:`CommandEvidence`, :class:`AutoEvidence` have these)."""

    def start(self, seconds_hint: float, io_size: int | None = None) -> None: ...
    def stop(self, io_ran: bool) -> dict | None: ...
    def final(self) -> dict | None: ...


class NoEvidence:
    reason = "target not reachable from this host (give --target-status-cmd)"

    def start(self, seconds_hint: float, io_size: int | None = None) -> None:
        pass

    def stop(self, io_ran: bool) -> dict | None:
        return None

    def final(self) -> dict | None:
        return {"error": self.reason}


class LocalEvidence:
    """The target runs on this machine: sample its pools, read its log and configfs."""

    def __init__(self, root: str = "/", hints: Callable[[], list] = lambda: [], subsystems: Callable[[], set] = set,
                 interval: float = 1.0):
        self.st = st
        self.root = root
        self.hints = hints
        self.subsystems = subsystems
        self.interval = interval
        self.sampler: ev.PoolSampler | None = None
        self.all_pools: dict[str, ev.PoolStats] = {}
        self._inv = None

    def inventory(self):
        """Read once per run: the PCI tree, pools' existence and RDMA devices do not change
        when hosts connect (and a full read is not cheap)."""
        if self._inv is None:
            self._inv = self.st.read_inventory(self.root)
        return self._inv

    def _providers(self) -> list[str]:
        return [f.bdf for f in self.inventory().providers(published_only=False)]

    def start(self, seconds_hint: float, io_size: int | None = None) -> None:
        self.sampler = ev.PoolSampler(self._providers(), root=self.root, interval=self.interval,
                                      io_size=io_size).start()

    def stop(self, io_ran: bool) -> dict | None:
        if self.sampler is None:
            return None
        self.sampler.stop()
        for bdf, s in self.sampler.stats.items():
            self.all_pools.setdefault(bdf, ev.PoolStats(provider=bdf, size=s.size)).merge(s)
        rep = self.st.collect(self.root, sampler=self.sampler, io_during_sampling=io_ran,
                              all_subsystems=True, hints=self.hints(), inventory=self.inventory())
        self.sampler = None
        return filter_evidence(rep.to_dict(), self.subsystems(), self.hints())

    def final(self) -> dict | None:
        """The status at the end, judged on the pools sampled over every window of the run (a
        pool that ran out in any window makes the end verdict partial too)."""
        run = _RunSamples(self.all_pools, self.interval)
        rep = self.st.collect(self.root, all_subsystems=True, hints=self.hints(), inventory=self.inventory(),
                              sampler=run if self.all_pools else None, io_during_sampling=bool(self.all_pools))
        d = filter_evidence(rep.to_dict(), self.subsystems(), self.hints())
        d["pools_over_run"] = {b: s.to_dict() for b, s in self.all_pools.items()}
        return d


class _RunSamples:
    """The merged windows of a run, shaped like a finished :class:`PoolSampler`."""

    def __init__(self, stats: dict, interval: float):
        self.stats, self.interval = stats, interval
        self.stopped = time.time()
        self.started = self.stopped - max((s.window for s in stats.values()), default=0.0)


class AutoEvidence:
    """Local evidence when this run's subsystems turn out to be on this machine's target
    (known only after discovery/connect), none otherwise."""

    def __init__(self, root: str = "/", hints: Callable[[], list] = lambda: [], subsystems: Callable[[], set] = set,
                 interval: float = 1.0):
        self.args = (root, hints, subsystems, interval)
        self.delegate: Evidence | None = None

    def _pick(self) -> Evidence:
        if self.delegate is None:
            root, hints, subsystems, interval = self.args
            base = os.path.join(root, "sys/kernel/config/nvmet/subsystems")
            local = any(os.path.isdir(os.path.join(base, n)) for n in subsystems())
            self.delegate = (LocalEvidence(root, hints=hints, subsystems=subsystems, interval=interval)
                             if local else NoEvidence())
        return self.delegate

    def start(self, seconds_hint: float, io_size: int | None = None) -> None:
        self._pick().start(seconds_hint, io_size)

    def stop(self, io_ran: bool) -> dict | None:
        return self._pick().stop(io_ran)

    def final(self) -> dict | None:
        return self._pick().final()


class CommandEvidence:
    """The target is elsewhere: run the user's command (e.g. ``ssh tgt nvmet-p2p status --json
    --sample {seconds} --io``) in the background for the window and parse its JSON."""

    def __init__(self, command: str, hints: Callable[[], list] = lambda: [], subsystems: Callable[[], set] = set,
                 timeout_extra: float = 60.0):
        self.command = command
        self.hints = hints
        self.subsystems = subsystems
        self.timeout_extra = timeout_extra
        self.proc: subprocess.Popen | None = None
        self.seconds = 0.0
        self.last: dict | None = None

    def _cmd(self, seconds: float, io_size: int | None = None) -> str:
        cmd = self.command.replace("{seconds}", str(max(1, int(round(seconds)))))
        return cmd.replace("{io_size}", str(io_size or 0))

    def start(self, seconds_hint: float, io_size: int | None = None) -> None:
        self.seconds = seconds_hint
        self.proc = subprocess.Popen(self._cmd(seconds_hint, io_size), shell=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def stop(self, io_ran: bool) -> dict | None:
        if self.proc is None:
            return None
        try:
            out, err = self.proc.communicate(timeout=self.seconds + self.timeout_extra)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        rc = self.proc.returncode
        self.proc = None
        try:
            d = json.loads(out)
        except ValueError:
            return {"error": f"target status command printed no JSON (exit {rc}): "
                             + (err.strip().splitlines() or [""])[-1]}
        self.last = filter_evidence(d, self.subsystems(), self.hints())
        return self.last

    def final(self) -> dict | None:
        if self.last is None:
            self.start(1)
            self.stop(False)
        return self.last


def filter_evidence(status: dict, subsystems: set, hints: list) -> dict:
    """Keep only our subsystems and, where we know them, our controllers' verdicts."""
    ours = {(h.subsystem, h.cntlid) for h in hints}
    out = dict(status)
    subs = []
    for s in status.get("subsystems", []):
        if subsystems and s.get("nqn") not in subsystems:
            continue
        s = dict(s)
        if ours:
            s["controllers"] = [c for c in s.get("controllers", []) if (s["nqn"], c.get("cntlid")) in ours]
            nss = []
            for n in s.get("namespaces", []):
                n = dict(n)
                n["verdicts"] = [v for v in n.get("verdicts", []) if (s["nqn"], v.get("cntlid")) in ours]
                nss.append(n)
            s["namespaces"] = nss
        subs.append(s)
    out["subsystems"] = subs
    return out


# --------------------------------------------------------------------------------------
# A/B toggle
# --------------------------------------------------------------------------------------

class Toggle:
    """What the A/B needs to switch the target (:class:`CommandToggle`, :class:`nvmet_p2p.harness.ab.LocalToggle`)."""

    def set(self, variant: str) -> None: ...


class CommandToggle:
    """User commands that put the target into each state (remote targets)."""

    def __init__(self, on_cmd: str, off_cmd: str):
        self.cmds = {"p2p-on": on_cmd, "p2p-off": off_cmd}

    def set(self, variant: str) -> None:
        r = subprocess.run(self.cmds[variant], shell=True, capture_output=True, text=True)
        if r.returncode != 0:
            raise NvmetP2PError(f"A/B toggle to {variant} failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")


# --------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------

@dataclass
class BenchConfig:
    workloads: list[Workload]
    out_dir: str
    target: TargetAddress | None = None       # connect to it; or
    devices: list[str] = field(default_factory=list)   # use these block devices as they are
    fio_servers: list[tuple[str, str]] = field(default_factory=list)  # (server, device) client/server mode
    host: HostIdentity | None = None
    root: str = "/"
    nr_io_queues: int | None = None
    queue_size: int | None = None
    between_phases: str | None = None         # shell command between integrity write and verify
    ab_rounds: int = 0
    fio: str = "fio"
    plots: bool = True
    connect_timeout: float = 30.0
    argv: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, cfg: BenchConfig, *, cli: NvmeCli | None = None, evidence: Evidence | None = None,
                 toggle: Toggle | None = None, progress: Callable[[str], None] | None = None,
                 fio_runner: Callable[..., FioRun] = run_fio):
        cfg.out_dir = os.path.abspath(cfg.out_dir)   # fio runs with its cwd inside it
        self.cfg = cfg
        self.cli = cli or NvmeCli()
        self.evidence = evidence
        self.toggle = toggle
        self.progress = progress or (lambda m: None)
        self.fio_runner = fio_runner
        self.conns: Connections | None = None
        self.runs: list[dict] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.order: list[str] = []
        self.started = time.time()
        #: the kernel log of this machine (the initiator; the target too when it is local):
        #: read for the cause when a run fails or its data does not verify
        self.klog = None

    # -- helpers ---------------------------------------------------------------------------
    def hints(self) -> list:
        out = []
        for c in (self.conns.items if self.conns else []):
            addr = dict(kv.split("=", 1) for kv in c.ctrl.address.split(",") if "=" in kv)
            if c.ctrl.cntlid is not None:
                out.append(HostControllerHint(subsystem=c.ctrl.subsysnqn, cntlid=c.ctrl.cntlid,
                                              transport=c.ctrl.transport, traddr=addr.get("traddr", ""),
                                              trsvcid=addr.get("trsvcid", ""), hostnqn=c.ctrl.hostnqn))
        return out

    def subsystems(self) -> set:
        return {c.ctrl.subsysnqn for c in (self.conns.items if self.conns else [])} or \
            set((self.cfg.target.nqns if self.cfg.target else []) or [])

    def _devices(self) -> list[str]:
        if self.cfg.devices:
            return list(self.cfg.devices)
        return [n.device for n in self.conns.devices()] if self.conns else []

    def _lbs(self) -> int:
        lbs = 512
        for n in (self.conns.devices() if self.conns else []):
            lbs = max(lbs, n.logical_block_size)
        for dev in self.cfg.devices:
            try:
                with open(os.path.join(self.cfg.root, "sys/block", os.path.basename(os.path.realpath(dev)),
                                       "queue/logical_block_size")) as f:
                    lbs = max(lbs, int(f.read().strip()))
            except (OSError, ValueError):
                pass
        return lbs

    def _fit_block_sizes(self) -> None:
        """The integrity job's smallest block must be a whole logical block of every device."""
        lbs = self._lbs()
        for w in self.cfg.workloads:
            if w.bsrange:
                lo, hi = w.bsrange.split("-", 1)
                if lo.isdigit() and int(lo) < lbs:
                    w.bsrange = f"{lbs}-{hi}"

    def connect(self) -> None:
        if self.cfg.target is None:
            return
        self.conns = self.conns or Connections(self.cli, self.cfg.host, root=self.cfg.root, progress=self.progress,
                                               nr_io_queues=self.cfg.nr_io_queues, queue_size=self.cfg.queue_size,
                                               timeout=self.cfg.connect_timeout)
        self.conns.open(self.cfg.target)
        for c in self.conns.items:
            if c.other_paths:
                block = c.ctrl.namespaces[0].block if c.ctrl.namespaces else "?"
                self.notes.append(f"{c.ctrl.subsysnqn} is also connected through {', '.join(c.other_paths)}: "
                                  f"native multipath may send I/O on /dev/{block} over any of those paths")
        if not self._devices():
            raise NvmetP2PError("connected, but no namespace block devices to run on")
        self._fit_block_sizes()

    def disconnect(self) -> None:
        if self.conns:
            for e in self.conns.close():
                self.problems.append(e)

    # -- one workload ----------------------------------------------------------------------
    def run_workload(self, w: Workload, variant: str | None, rnd: int) -> dict:
        devices = self._devices()
        tag = f"{w.name}" + (f"-{variant}-r{rnd}" if variant else "")
        jdir = os.path.join(self.cfg.out_dir, "fio")
        os.makedirs(jdir, exist_ok=True)
        jobfile, files, clients = self._job_files(w, tag, jdir, devices)
        hint = (w.runtime or 0) + (w.ramp_time or 0) or 10.0
        if self.evidence:
            self.evidence.start(hint, io_size=largest_io(w))
        self.progress(f"{tag}: fio on {', '.join(files.values())}")
        interrupted = None
        mark = self._log_mark()
        cpu0, wall0 = time.process_time(), time.monotonic()
        try:
            run = self.fio_runner(w, jobfile, os.path.join(jdir, f"{tag}.json"), cwd=jdir, fio=self.cfg.fio,
                                  clients=clients or None, progress=self.progress, job_files=files)
        except FioInterrupted as exc:
            run, interrupted = exc.run, exc
        # what the harness itself (progress parsing, evidence sampling) cost while fio ran
        harness_cpu = {"cpu_s": round(time.process_time() - cpu0, 4), "wall_s": round(time.monotonic() - wall0, 4)}
        evid = None
        if self.evidence:
            try:
                evid = self.evidence.stop(io_ran=True)
            except (NvmetP2PError, OSError, ValueError) as exc:
                evid = {"error": str(exc)}
        fd = run.to_dict()
        entry = {"workload": w.to_dict(), "variant": variant, "round": rnd, "fio": fd,
                 "summary": res.summarize(fd) if run.jobs else None, "evidence": evid,
                 "offload": res.offload_rows(evid), "pool": res.pool_usage(evid),
                 "harness": harness_cpu}
        self.runs.append(entry)
        self._report_run(entry, run, tag, mark)
        if interrupted:
            raise interrupted
        return entry

    def _job_files(self, w: Workload, tag: str, jdir: str,
                   devices: list[str]) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
        """Write the workload's fio job file(s): one per fio server (client/server mode), else
        one for the local devices. Returns the first job file, job name -> device, and the
        (server, job file) pairs."""
        clients: list[tuple[str, str]] = []
        if self.cfg.fio_servers:
            by_server: dict[str, list[str]] = {}
            for server, dev in self.cfg.fio_servers:
                by_server.setdefault(server, []).append(dev)
            for i, (server, devs) in enumerate(by_server.items()):
                jf = os.path.join(jdir, f"{tag}.client{i}.fio")
                with open(jf, "w") as f:
                    f.write(job_file(w, devs))
                clients.append((server, jf))
            return clients[0][1], {job_name(w, d): d for _, d in self.cfg.fio_servers}, clients
        jobfile = os.path.join(jdir, f"{tag}.fio")
        with open(jobfile, "w") as f:
            f.write(job_file(w, devices))
        return jobfile, {job_name(w, d): d for d in devices}, clients

    def _report_run(self, entry: dict, run: FioRun, tag: str, mark) -> None:
        """A failed run's problems and the kernel log's likely cause; a good run's numbers."""
        if not run.ok:
            entry["explanation"] = self._explain(mark)
            for p in run.problems():
                self.problems.append(f"{tag}: {p}")
            if entry["explanation"] and entry["explanation"].get("causes"):
                self.problems.append(f"{tag}: likely cause (kernel log of this machine): "
                                     f"{entry['explanation']['summary']}")
        else:
            s = entry["summary"]
            self.progress(f"{tag}: {s['gb_per_s']:.3f} GB/s, {s['iops']:.0f} IOPS"
                          + (f", p99 {s['p99_ns'] / 1000:.0f} µs" if s.get("p99_ns") else ""))

    def _log_mark(self):
        try:
            self.klog = self.klog or KernelLog(root=self.cfg.root)
            return self.klog.mark()
        except OSError:
            return None

    def _explain(self, mark) -> dict | None:
        """The likely cause of a failed run from the kernel log of its window
        (:func:`nvmet_p2p.observe.explain.explain`, the same reading ``p2p-test`` does)."""
        if mark is None or self.klog is None:
            return None
        try:
            records = self.klog.records_since(mark)
        except OSError:
            return None
        e = explain.explain(records, root=self.cfg.root)
        d = e.to_dict()
        if not e.found:
            d["summary"] = ("no IOMMU fault, AER error, I/O error or reset in this machine's kernel "
                            "log of the window")
        return d

    def between_phases(self) -> None:
        if not self.cfg.between_phases:
            return
        env = dict(os.environ)
        env[paths.BENCH_DEVICES_ENV] = " ".join(self._devices())
        env[paths.BENCH_OUT_ENV] = self.cfg.out_dir
        self.progress(f"between integrity phases: {self.cfg.between_phases}")
        r = subprocess.run(self.cfg.between_phases, shell=True, env=env, capture_output=True, text=True)
        self.notes.append(f"between-phases command ran (exit {r.returncode}): {self.cfg.between_phases}")
        if r.returncode != 0:
            raise NvmetP2PError(f"--between-phases command failed (exit {r.returncode}): "
                                f"{r.stderr.strip()[-300:]}")

    def run_round(self, variant: str | None, rnd: int) -> None:
        skip: set[str] = set()
        for w in self.cfg.workloads:
            if w.group and w.group in skip and w.phase == "verify":
                self.notes.append(f"{w.name} skipped{f' ({variant} round {rnd})' if variant else ''}: "
                                  f"its write pass failed, nothing trustworthy to verify")
                continue
            if w.phase == "verify":
                self.between_phases()
            entry = self.run_workload(w, variant, rnd)
            if w.phase == "write" and not entry["fio"]["ok"] and w.group:
                skip.add(w.group)

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> dict:
        os.makedirs(self.cfg.out_dir, exist_ok=True)
        interrupted = False
        restore = _install_signal_handlers()
        try:
            try:
                if self.cfg.ab_rounds:
                    if self.toggle is None:
                        raise InputError("A/B needs a way to toggle the target (--ab-state or "
                                         "--ab-on-cmd/--ab-off-cmd)")
                    for rnd in range(1, self.cfg.ab_rounds + 1):
                        for variant in ("p2p-on", "p2p-off"):
                            self.disconnect()
                            self.progress(f"A/B round {rnd}: target -> {variant}")
                            self.toggle.set(variant)
                            self.order.append(variant)
                            self.connect()
                            self.run_round(variant, rnd)
                else:
                    self.connect()
                    if self.cfg.devices:
                        self._fit_block_sizes()
                    self.run_round(None, 1)
                if self.evidence:
                    try:
                        self._final = self.evidence.final()
                    except (NvmetP2PError, OSError, ValueError) as exc:
                        self._final = {"error": str(exc)}
            except KeyboardInterrupt:
                interrupted = True
                self.problems.append("interrupted")
        finally:
            self.disconnect()
            if self.cfg.ab_rounds and self.toggle is not None and hasattr(self.toggle, "restore"):
                try:
                    self.toggle.restore()
                    self.notes.append("A/B: target namespaces restored to their p2pmem values from before the run")
                except (NvmetP2PError, OSError) as exc:
                    self.problems.append(f"A/B: restoring the target's p2pmem values failed: {exc}")
            restore()
        return self.finish(interrupted)

    def finish(self, interrupted: bool) -> dict:
        failures = [f for r in self.runs if r["workload"].get("kind") == "integrity"
                    for f in r["fio"]["verify_failures"]]
        integ_runs = [r for r in self.runs if r["workload"].get("kind") == "integrity"]
        if not integ_runs:
            verdict = "not run"
        elif failures or any(not r["fio"]["ok"] for r in integ_runs):
            verdict = "fail"
        elif any(r["workload"].get("phase") == "verify" for r in integ_runs):
            verdict = "pass"
        else:
            verdict = "incomplete"
        for r in self.runs:
            if r["workload"].get("kind") != "integrity":
                failures += r["fio"]["verify_failures"]
        conns = (self.conns.history if self.conns else [])
        providers = res.pool_providers(self.runs)
        res.restrict_pools(self.runs, providers)
        results = {
            "schema": res.SCHEMA, "schema_version": res.SCHEMA_VERSION,
            "tool": {"nvmet_p2p": environment.host_facts()["nvmet_p2p"],
                     "fio": environment.tool_version([self.cfg.fio, "--version"]),
                     "nvme_cli": environment.tool_version(["nvme", "version"]) if self.cfg.target else None},
            "started": res.iso(self.started), "finished": res.iso(time.time()),
            "host": {**environment.host_facts(self.cfg.root),
                     "hostnqn": self.cfg.host.hostnqn if self.cfg.host else None,
                     "hostid": self.cfg.host.hostid if self.cfg.host else None},
            "emulated": environment.emulation_label(self.cfg.root),
            "config": {"argv": self.cfg.argv, "target": self.cfg.target.__dict__ if self.cfg.target else None,
                       "devices": self.cfg.devices, "fio_servers": self.cfg.fio_servers,
                       "workloads": [w.name for w in self.cfg.workloads], "ab_rounds": self.cfg.ab_rounds},
            "discovery": self.conns.discovered if self.conns else [],
            "connections": conns,
            "nvme_cli_log": self.cli.log,
            "runs": self.runs,
            "integrity": {"verdict": verdict, "failures": failures},
            "ab": ({"rounds": self.cfg.ab_rounds, "order": self.order,
                    "workloads": res.ab_table(self.runs), "pool": res.ab_pool(self.runs),
                    "target_changes": list(getattr(self.toggle, "outcomes", []))}
                   if self.cfg.ab_rounds else None),
            "pool_providers": providers,
            "evidence": getattr(self, "_final", None),
            "interrupted": interrupted,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }
        results["ok"] = not self.problems and verdict != "fail" and not interrupted
        res.write_all(self.cfg.out_dir, results, plots=self.cfg.plots)
        return results


def _install_signal_handlers() -> Callable[[], None]:
    """SIGTERM/SIGHUP -> KeyboardInterrupt in the main thread, so ``finally`` disconnects."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}

    def restore():
        for s, h in old.items():
            signal.signal(s, h)
    return restore


_FIO_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def largest_io(w: Workload) -> int | None:
    """Bytes of the workload's largest I/O (``bs``, or the top of ``bsrange``; fio's units are
    binary), or None when it cannot be told. The target sees at most 1 MiB per command."""
    text = w.bs or (w.bsrange.split("-", 1)[-1] if w.bsrange else "")
    m = re.fullmatch(r"(\d+)([kmg]?)i?b?", text.strip().lower())
    return int(m.group(1)) * _FIO_UNITS[m.group(2)] if m else None


def parse_fio_server(spec: str) -> tuple[str, str]:
    """``HOST[,PORT]=DEVICE`` -> (fio --client string, device)."""
    if "=" not in spec:
        raise InputError(f"expected HOST[,PORT]=DEVICE, got {spec!r}", where="--fio-server")
    server, dev = spec.split("=", 1)
    if not server or not dev.startswith("/"):
        raise InputError(f"expected HOST[,PORT]=/dev/..., got {spec!r}", where="--fio-server")
    return server, dev

