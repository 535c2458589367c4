"""``p2p-test --engine fio``: the edges — the provider's pool, fio, the pool sampler, the kernel log.

:class:`FioP2pRun` runs a :class:`~nvmet_p2p.harness.p2pfio.Plan`: the verification passes,
the timed matrix (p2p and host buffers interleaved) and the final checks, one fio process
per pass with one job section per namespace (they run at the same time, each with its own
buffers in the pool), through the bench harness (:func:`nvmet_p2p.harness.fio.run_fio`: job
files kept in ``OUT/fio/``, fio's JSON parsed, its ETA lines as progress). While each fio
runs, ``p2pmem/available`` of the provider is sampled (:class:`~nvmet_p2p.observe.evidence.PoolSampler`)
and compared with what the p2p jobs must map. Results land in ``OUT`` in the bench schema
(``results.json``/CSV/``summary.md``/plots) with a ``p2p_test`` section.

Nothing here touches configfs: the only writes are fio's to the namespaces the user named
(``--allow-write``) and the poison pattern into free pool pages. Killed half-way (Ctrl-C,
SIGTERM), fio is stopped, its mappings are released with it, and what ran is written out.
"""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from nvmet_p2p.errors import InputError
from nvmet_p2p.harness import environment
from nvmet_p2p.harness import p2pfio as pf
from nvmet_p2p.harness import p2pfio_report as rep
from nvmet_p2p.harness import results as res
from nvmet_p2p.harness.bench import _install_signal_handlers
from nvmet_p2p.harness.fio import FioInterrupted, FioRun, Workload, job_file, job_name, run_fio
from nvmet_p2p.harness.kwatch import KernelWatch, Stop, device_names, settle_controllers
from nvmet_p2p.harness.p2ptest import before_io_refusal, explain_refusal, refused_before_io
from nvmet_p2p.kmsg import KernelLog
from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.observe.explain import explain

KERNEL_LOG_KEEP = 200        # kernel log lines kept in results.json (every failed I/O logs one)


# --------------------------------------------------------------------------------------
# The pool: probe and poison (the same mmap fio makes)
# --------------------------------------------------------------------------------------

def alloc_path(root: str, provider: str) -> str:
    return os.path.join(root, "sys/bus/pci/devices", provider, "p2pmem/allocate")


def _map_all(path: str, sizes: list[int]) -> list[mmap.mmap]:
    """Map every size from the pool at once (as fio's jobs will); all or nothing."""
    fd = os.open(path, os.O_RDWR)
    maps: list[mmap.mmap] = []
    try:
        for n in sizes:
            maps.append(mmap.mmap(fd, n, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE))
    except OSError:
        for m in maps:
            m.close()
        raise
    finally:
        os.close(fd)
    return maps


def probe_pool(root: str, provider: str, sizes: list[int], available: int) -> None:
    """Check with the kernel itself that the pool holds these mappings at once (it needs one
    contiguous range each); a clear :class:`InputError` when it does not."""
    try:
        for m in _map_all(alloc_path(root, provider), sizes):
            m.close()
    except OSError as exc:
        raise InputError(f"{provider}'s pool refused {len(sizes)} mapping(s) of {sizes[0]} bytes "
                         f"({os.strerror(exc.errno) if exc.errno else exc}): p2pmem/available says {available}, "
                         f"but each mapping needs one contiguous range (in use by nvmet or another "
                         f"mapping?); lower --qd, --bs or --numjobs", where="--qd") from None


def poison_pool(root: str, provider: str, sizes: list[int]) -> None:
    """Write the poison at the head of every 4 KiB of the ranges fio's next jobs will get
    (the pool hands out the lowest free range first, and does not clear it)."""
    head = bytes([pf.POISON]) * pf.POISON_HEAD
    maps = _map_all(alloc_path(root, provider), sizes)
    try:
        for m in maps:
            for off in range(0, len(m), pf.VERIFY_INTERVAL):
                m[off:off + pf.POISON_HEAD] = head
    finally:
        for m in maps:
            m.close()


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------

class KernelStopped(Exception):
    """The kernel logged a refusal, a command timeout or a reset about the run's devices."""

    def __init__(self, stop: Stop):
        super().__init__(stop.line)
        self.stop = stop


@dataclass(frozen=True)
class _PassId:
    """Which fio pass this is: its workload, the buffer ``kind`` (p2p or host), and the
    verification ``step`` it is or the matrix round ``rnd``."""

    w: Workload
    kind: str
    step: str | None = None
    rnd: int = 1


class FioP2pRun:
    def __init__(self, plan: pf.Plan, out_dir: str, *, root: str = "/", fio: str = "fio",
                 prediction: dict | None = None, progress: Callable[[str], None] | None = None,
                 fio_runner: Callable[..., FioRun] = run_fio, log=None, sample_interval: float = 0.25,
                 argv: list[str] | None = None, plots: bool = True):
        self.plan = plan
        self.out_dir = os.path.abspath(out_dir)
        self.root = root
        self.fio = fio
        self.prediction = prediction or {}
        self.progress = progress or (lambda m: None)
        self.fio_runner = fio_runner
        self.log = log
        self.sample_interval = sample_interval
        self.argv = list(argv or [])
        self.plots = plots
        self.runs: list[dict] = []
        # pairs the kernel's p2pdma rules refuse get no p2p I/O at all (every one of it would
        # fail, and a drive given such I/O long enough times out and is reset)
        self.before_io = {d: before_io_refusal(plan.provider, d, self.prediction)
                          for d in refused_before_io(self.prediction) if d in plan.devices}
        self.refused: set[str] = set(self.before_io)
        #: the kernel's line that stopped the run (kwatch), the refusals it means, the states
        #: of the controllers afterwards
        self.stopped: Stop | None = None
        self.stop_refusals: dict[str, dict] = {}
        self.controllers: dict[str, str] = {}
        self.watch: KernelWatch | None = None
        self._proc: subprocess.Popen | None = None
        self.problems: list[str] = []
        self.notes: list[str] = list(plan.notes)
        self.started = time.time()
        self.counter = 0
        self.planned = plan.runs_planned()

    # -- one fio process ----------------------------------------------------------------
    def active(self, kind: str) -> list[str]:
        return [d for d in self.plan.devices if kind == "host" or d not in self.refused]

    def fio_pass(self, p: _PassId, bs: int, qd: int, devices: list[str] | None = None) -> dict | None:
        w, kind, step, rnd = p.w, p.kind, p.step, p.rnd
        devices = self.active(kind) if devices is None else devices
        if not devices:
            self.planned -= 1
            return None
        jdir = os.path.join(self.out_dir, "fio")
        tag = step or f"{w.name}-{kind}-r{rnd}"
        # fio writes the blocks it finds bad into its working directory, named by file and
        # offset: one directory per verifying pass, so a later pass cannot overwrite them
        cwd = os.path.join(jdir, f"{tag}.dumps") if w.verify and w.extra.get("do_verify") != "0" else jdir
        os.makedirs(cwd, exist_ok=True)
        jobfile = os.path.join(jdir, f"{tag}.fio")
        with open(jobfile, "w") as f:
            f.write(job_file(w, devices, {"ioengine": w.extra["ioengine"]}))
        expected = self.plan.need(bs, qd, len(devices)) if kind == "p2p" else 0
        self.counter += 1
        self.progress(f"[{self.counter}/{max(self.planned, self.counter)}] {tag}: fio on {', '.join(devices)}")
        sampler = ev.PoolSampler([self.plan.provider], root=self.root, interval=self.sample_interval,
                                 io_size=bs).start()
        interrupted = None
        cpu0, wall0 = time.process_time(), time.monotonic()
        if self.watch is not None:
            self.watch.start(self._stop_fio)
        try:
            run = self.fio_runner(w, jobfile, os.path.join(jdir, f"{tag}.json"), cwd=cwd, fio=self.fio,
                                  progress=self.progress, job_files={job_name(w, d): d for d in devices},
                                  popen=self._popen)
        except FioInterrupted as exc:
            run, interrupted = exc.run, exc
        finally:
            if self.watch is not None:
                self.watch.pause()
        harness = {"cpu_s": round(time.process_time() - cpu0, 4), "wall_s": round(time.monotonic() - wall0, 4)}
        pool = sampler.stop()[self.plan.provider]
        entry = self._record(p, run, pool, expected, harness)
        if interrupted:
            raise interrupted
        stop = self.watch.check() if self.watch is not None else None
        if stop is not None:
            self._stopped(stop, w, kind, devices)
        return entry

    # -- stopping at the kernel's first refusal ----------------------------------------------
    def _popen(self, *args, **kw) -> subprocess.Popen:
        """run_fio's Popen, remembered so the kernel-log watcher can stop fio."""
        self._proc = subprocess.Popen(*args, **kw)
        return self._proc

    def _stop_fio(self, stop: Stop) -> None:
        """(watcher thread) Stop fio at once: SIGINT (it ends its jobs and still writes its
        JSON), SIGKILL when it has not ended 10 s later."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.progress(f"the kernel logged: {stop.line} -- stopping fio")
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        except OSError:
            pass

    def _stopped(self, stop: Stop, w: Workload, kind: str, devices: list[str]) -> None:
        """No more I/O: the refusal is the named namespace's (any of this pass's p2p ones when
        the line names none); raises :class:`KernelStopped`."""
        self.stopped = stop
        if stop.refused and kind == "p2p":
            named = [d for d in devices if any(n in stop.line for n in self._names_of(d))]
            for d in named or devices:
                self.stop_refusals.setdefault(d, {
                    "direction": w.rw, "device": d, "errno": 22, "errname": "EINVAL",
                    "step": w.name, "line": stop.line})
        raise KernelStopped(stop)

    def _names_of(self, dev: str) -> set[str]:
        pci = (self.prediction.get(dev) or {}).get("pci")
        return device_names(self.root, [dev], "", [pci] if pci else []) - {""}

    def _record(self, p: _PassId, run: FioRun, pool: ev.PoolStats, expected: int, harness: dict) -> dict:
        w, kind, step, rnd = p.w, p.kind, p.step, p.rnd
        fd = run.to_dict()
        entry = {"workload": w.to_dict(), "variant": kind, "round": rnd, "step": step,
                 "check": pf.CHECKS.get(step or ""), "fio": fd,
                 "summary": res.summarize(fd) if run.jobs else None, "evidence": None, "offload": [],
                 "pool": res.pool_usage({"providers": {self.plan.provider: {"sampled": pool.to_dict()}}}),
                 "p2pmem_expected": expected, "harness": harness}
        self.runs.append(entry)
        if kind == "p2p":
            for dev in self.active("p2p"):
                if rep.refusal_of([entry], dev):
                    self.refused.add(dev)
                    self.progress(f"{dev}: the kernel refused p2p DMA with {self.plan.provider} (EINVAL): "
                                  f"no more p2p jobs on it")
        tag = step or f"{w.name} {kind} round {rnd}"
        seen = pool.max_in_use
        if run.ok and entry["summary"]:
            s = entry["summary"]
            self.progress(f"{tag}: {s['gb_per_s']:.3f} GB/s, {s['iops']:.0f} IOPS; pool in use {seen} "
                          f"(fio maps {expected})")
        elif not run.ok:
            self.progress(f"{tag}: " + "; ".join(run.problems())[:300])
        if kind == "p2p" and run.ok and seen is not None and seen != expected:
            self.notes.append(f"{tag}: p2pmem in use peaked at {seen} bytes while fio ran, its jobs map {expected}")
        return entry

    # -- the phases -----------------------------------------------------------------------
    def verify_step(self, step: tuple, devices: list[str] | None = None) -> dict | None:
        w = pf.verify_workload(self.plan, step)
        return self.fio_pass(_PassId(w, step[1], step=step[0]), self.plan.verify_bs, self.plan.verify_qd, devices)

    def poison(self) -> None:
        n = len(self.active("p2p"))
        if n:
            poison_pool(self.root, self.plan.provider, self.plan.mappings(self.plan.verify_bs, self.plan.verify_qd, n))

    def verify_phase(self) -> None:
        steps = dict((s[0], s) for s in pf.VERIFY_STEPS)
        self.verify_step(steps["prep-zero"])
        self.verify_step(steps["prep-host"])
        self.verify_step(steps["verify-p2p-write"])
        back = self.verify_step(steps["verify-host-read"], devices=self.active("p2p"))
        bad = [d for d in self.active("p2p") if back and rep._check_outcome(back, d)["status"] != "verified"]
        if bad:   # judge NVMe -> CMB on known-good blocks, apart from the failed write direction
            self.planned += 1
            self.verify_step(pf.REFILL, devices=bad)
        self.poison()
        self.verify_step(steps["verify-p2p-read"])

    def matrix(self) -> None:
        """Host-buffer runs on the same namespaces as the p2p runs (a refused namespace is left
        out of both, so each ratio compares like with like; all of them when every one was refused)."""
        for cell, kind, rnd in pf.matrix_order(self.plan):
            devices = self.active("p2p") if kind == "p2p" else (self.active("p2p") or list(self.plan.devices))
            self.fio_pass(_PassId(pf.matrix_workload(self.plan, cell, kind), kind, rnd=rnd), cell.bs, cell.iodepth,
                          devices)

    def final_phase(self) -> None:
        steps = dict((s[0], s) for s in pf.VERIFY_STEPS)
        self.verify_step(steps["final-host-read"], devices=self.active("p2p"))
        self.verify_step(steps["final-host-control"])

    def run(self) -> dict:
        os.makedirs(self.out_dir, exist_ok=True)
        self.avail_before = ev.read_available(self.root, self.plan.provider)
        mark = self._mark()
        pcis = [p["pci"] for p in self.prediction.values() if p.get("pci")]
        self.watch = KernelWatch(self.log, device_names(self.root, self.plan.devices,
                                                        self.plan.provider, pcis))
        interrupted = False
        restore = _install_signal_handlers()
        try:
            self.verify_phase()
            self.matrix()
            self.final_phase()
        except KernelStopped as exc:
            self.problems.append(f"stopped at the kernel's first {exc.stop.kind.replace('_', ' ')}: "
                                 f"{exc.stop.line}")
            self.progress("no more I/O; waiting for the namespaces' controllers to be live")
            self.controllers = settle_controllers(self.root, [os.path.basename(d)
                                                              for d in self.plan.devices])
        except KeyboardInterrupt:
            interrupted = True
            self.problems.append("interrupted")
        finally:
            restore()
            self.watch.close()
        return self.finish(interrupted, self._log_since(mark))

    # -- kernel log -------------------------------------------------------------------------
    def _mark(self):
        if self.log is None:
            self.log = KernelLog(root=self.root)
        try:
            return self.log.mark()
        except OSError:
            return None

    def _log_since(self, mark) -> list[str]:
        if mark is None:
            return []
        try:
            return self.log.lines_since(mark)
        except OSError:
            return []

    # -- results ----------------------------------------------------------------------------
    def finish(self, interrupted: bool, kernel_log: list[str]) -> dict:
        statuses = {d: rep.device_status(self.runs, d) for d in self.plan.devices}
        for d, r in {**self.stop_refusals, **self.before_io}.items():
            statuses[d]["refusal"], statuses[d]["verdict"] = dict(r), "refused"
        self._explain(statuses, kernel_log)
        verdict = "failed" if interrupted else rep.overall_verdict(statuses)
        if self.stopped is not None and not self.stopped.refused:
            verdict = "failed"
        for s in statuses.values():
            lost = [c for c in rep.P2P_CHECKS if s["checks"].get(c, {}).get("status") == "lost"]
            if lost and s["verdict"] != "refused":
                self.problems.append(f"{s['device']}: lost data ({', '.join(rep.CHECK_TEXT[c] for c in lost)})")
        results = self._document(statuses, verdict, kernel_log, interrupted)
        res.write_all(self.out_dir, results, plots=self.plots)
        return results

    def _explain(self, statuses: dict, kernel_log: list[str]) -> None:
        for dev, s in statuses.items():
            if s["refusal"]:
                explain_refusal(self.plan.provider, s["refusal"], self.prediction, _lines_for(
                    dev, kernel_log, self.prediction))
        self.lost_explanation, self.lost_causes = None, None
        lost = {d: self.prediction.get(d, {}) for d, s in statuses.items() if s["verdict"] == "mismatch"}
        if lost:
            self.lost_explanation, self.lost_causes = explain_lost_data(self.plan.provider, kernel_log,
                                                                        self.root, lost)

    def _document(self, statuses: dict, verdict: str, kernel_log: list[str], interrupted: bool) -> dict:
        failures = [f for r in self.runs if r.get("check") for f in r["fio"]["verify_failures"]]
        integ = "not run" if not any(r.get("check") for r in self.runs) else ("fail" if failures else "pass")
        p2p = {"engine": "fio", "provider": self.plan.provider, "plan": self.plan.to_dict(),
               "prediction": self.prediction, "devices": statuses, "verdict": verdict,
               "cells": rep.cell_table(self.runs, self.plan),
               "pool": {"size": self.plan.pool_size, "available_before": self.avail_before,
                        "available_after": ev.read_available(self.root, self.plan.provider)},
               "lost_explanation": self.lost_explanation, "lost_causes": self.lost_causes,
               "kernel_log": kernel_log[-KERNEL_LOG_KEEP:],
               "refused_before_io": sorted(self.before_io),
               "stopped": self.stopped.to_dict() if self.stopped else None,
               "controllers": dict(self.controllers),
               "out": self.out_dir}
        return {
            "schema": res.SCHEMA, "schema_version": res.SCHEMA_VERSION,
            "title": "nvmet-p2p p2p-test --engine fio",
            "tool": {"nvmet_p2p": environment.host_facts()["nvmet_p2p"],
                     "fio": environment.tool_version([self.fio, "--version"]), "nvme_cli": None},
            "started": res.iso(self.started), "finished": res.iso(time.time()),
            "host": {**environment.host_facts(self.root), "hostnqn": None, "hostid": None},
            "emulated": environment.emulation_label(self.root),
            "config": {"argv": self.argv, "target": None, "devices": self.plan.devices, "fio_servers": [],
                       "workloads": [c.name for c in self.plan.cells], "ab_rounds": self.plan.repeat},
            "discovery": [], "connections": [], "nvme_cli_log": [],
            "runs": self.runs,
            "integrity": {"verdict": integ, "failures": failures},
            "ab": rep.ab_section(self.runs, self.plan), "pool_providers": [self.plan.provider],
            "evidence": None, "p2p_test": p2p,
            "interrupted": interrupted, "problems": list(self.problems), "notes": list(self.notes),
            "ok": verdict == "verified" and not interrupted,
        }


def _lines_for(dev: str, kernel_log: list[str], prediction: dict) -> list[str]:
    """The kernel lines about this namespace's pair: lines naming its PCI function, and lines
    naming no other namespace's (the host bridge, the ACS parameter)."""
    mine = (prediction.get(dev) or {}).get("pci")
    others = {p.get("pci") for d, p in prediction.items() if d != dev and p.get("pci")} - {mine}
    return [ln for ln in kernel_log if (mine and mine in ln) or not any(o in ln for o in others)]


def kernel_cause(kernel_log: list[str], root: str, provider: str, devices: list[str]) -> tuple[str | None, dict | None]:
    """The project's kernel-log explainer of lost data (:func:`nvmet_p2p.observe.explain.explain`:
    IOMMU faults mapped to the BAR they hit, AER, I/O errors, resets): (its one sentence, its
    causes), or (None, None) when the window holds none."""
    e = explain(kernel_log, root=root, providers=[provider], devices=devices)
    return (e.summary or None), (e.to_dict() if e.found else None)


def explain_lost_data(provider: str, kernel_log: list[str], root: str, prediction: dict) -> tuple[str, dict | None]:
    """Why data got lost on a path the kernel allowed, from what the kernel printed: (the
    text, the explainer's causes or None)."""
    pred = ", ".join(f"{d}: {p.get('map_type')}" for d, p in prediction.items())
    summary, causes = kernel_cause(kernel_log, root, provider, [p["pci"] for p in prediction.values() if p.get("pci")])
    faults = [c["line"] for c in (causes or {}).get("causes", []) if c["kind"] == "iommu_fault"]
    if faults:
        more = f" (+{len(faults) - 3} more)" if len(faults) > 3 else ""
        said = summary or (" | ".join(faults[:3]) + more)
        text = (f"the kernel allowed the p2p DMA ({pred}) but an IOMMU dropped it: {said}"
                + (f" (kernel: {faults[0]})" if summary else "")
                + ". An IOMMU that translates peer DMA by bus address (QEMU's emulated intel-iommu does, "
                  "for every DMA of a device) loses it: such a pair is not usable for p2p with the IOMMU on")
    elif summary:
        text = f"the kernel allowed the p2p DMA ({pred}); the data still did not arrive intact: {summary}"
    else:
        text = (f"the kernel allowed the p2p DMA ({pred}) and logged nothing about it; the data still did "
                f"not arrive intact (see the failures above and the fio dumps in the results folder)")
    return text, causes
