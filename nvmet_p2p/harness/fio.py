"""fio: job files, running with progress, and reading its JSON and its verify errors.

fio is the workload and verification engine (Debian's fio 3.33). The harness writes an
ordinary fio job file per workload (kept in the results directory so any run can be repeated
by hand), runs ``fio --output-format=json --output=<file>``, shows fio's own ETA lines as
progress, and reads:

* the JSON document (``jobs`` for a local run, ``client_stats`` for ``--client`` runs, where
  fio also adds an ``All clients`` aggregate);
* stderr/stdout for verification failures. fio names the file and byte offset of every bad
  block there (``crc32c: verify failed at file F offset O, length L (requested block:
  offset=..., length=...)``, ``verify: bad magic header ...``, ``verify: bad header offset
  ...``); the JSON only carries the errno (84, EILSEQ) — or nothing at all when the job died.

Facts measured in the lab that shape this module (fio 3.33):
* ``verify_only=1`` together with ``verify_backlog`` verifies nothing; the integrity job's
  verify pass therefore never sets ``verify_backlog``.
* with ``verify_fatal=0`` a verify-only pass prints the failure and still exits 0 with
  ``error: 0`` in the JSON: failures are taken from the text, not the exit status.
* on failure fio writes ``*.verify.state`` and (with ``verify_dump``) the expected/received
  blocks into its working directory: the harness runs fio inside the results directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from nvmet_p2p import safeload
from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.safeload import Each, Opt

SCHEMA_PERCENTILES = ("50.000000", "99.000000", "99.900000")

# --------------------------------------------------------------------------------------
# Workload description -> fio job file
# --------------------------------------------------------------------------------------


@dataclass
class Workload:
    """One named workload of the matrix: a fio job applied to every target device.

    ``phase`` separates the integrity job's two passes: ``write`` (write with
    ``verify_backlog``: blocks are read back and checked while writing) and ``verify`` (a
    ``verify_only`` pass over everything written, run as a separate fio process so that
    anything that happens to the data in between — a reconnect, a target toggle, a block
    overwritten behind the target's back — is caught).
    """

    name: str
    rw: str                                   # read, write, randread, randwrite, randrw, rw
    bs: str | None = None                     # "128k"
    bsrange: str | None = None                # "512-1028k"
    iodepth: int = 1
    numjobs: int = 1
    runtime: float | None = None              # seconds, time based
    ramp_time: float | None = None
    size: str | None = None                   # bytes of the device to use ("1g"); None: all
    offset: str | None = None
    rwmixread: int | None = None
    verify: str | None = None                 # "crc32c"
    verify_backlog: int | None = None
    randseed: int | None = None
    kind: str = "throughput"                  # throughput | latency | integrity
    phase: str | None = None                  # integrity: "write" / "verify"
    group: str | None = None                  # workloads that belong together (integrity)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.phase != "verify" and any(t in self.rw for t in ("write", "rw", "trim"))

    @property
    def block_label(self) -> str:
        return self.bs or self.bsrange or "?"

    def to_dict(self) -> dict:
        return asdict(self)

    def options(self) -> dict[str, str]:
        """fio options of this workload (job-section keys -> values), in a stable order."""
        o: dict[str, str] = {"rw": self.rw}
        if self.bs:
            o["bs"] = self.bs
        if self.bsrange:
            o["bsrange"] = self.bsrange
        o["iodepth"] = str(self.iodepth)
        if self.numjobs != 1:
            o["numjobs"] = str(self.numjobs)
        if self.size:
            o["size"] = self.size
        if self.offset:
            o["offset"] = self.offset
        if self.rwmixread is not None:
            o["rwmixread"] = str(self.rwmixread)
        if self.runtime is not None and self.phase is None:
            o["time_based"] = "1"
            o["runtime"] = _secs(self.runtime)
        if self.ramp_time:
            o["ramp_time"] = _secs(self.ramp_time)
        if self.randseed is not None:
            o["randseed"] = str(self.randseed)
        if self.verify:
            o["verify"] = self.verify
            o["verify_fatal"] = "1"
            o["verify_dump"] = "1"
            o["verify_state_save"] = "0"
            if self.phase == "verify":
                o["verify_only"] = "1"
            else:
                o["do_verify"] = "1"
                if self.verify_backlog:
                    o["verify_backlog"] = str(self.verify_backlog)
        o.update(self.extra)
        return o


def _secs(v: float) -> str:
    return f"{int(v)}s" if float(v).is_integer() else f"{int(v * 1000)}ms"


#: Options every harness job uses: direct I/O on a block device through libaio.
GLOBAL_OPTIONS = {
    "ioengine": "libaio",
    "direct": "1",
    "thread": "0",
    "group_reporting": "0",
    "percentile_list": "50:99:99.9",
}


def job_name(workload: Workload, device: str) -> str:
    return f"{workload.name}@{os.path.basename(device)}"


def job_file(workload: Workload, devices: list[str], global_options: dict[str, str] | None = None) -> str:
    """The fio job file text: a [global] section and one job section per device."""
    g = dict(GLOBAL_OPTIONS)
    g.update(global_options or {})
    lines = ["# written by nvmet-p2p bench; run it again with: fio --output-format=json <this file>",
             "[global]"]
    lines += [f"{k}={v}" for k, v in g.items()]
    for dev in devices:
        lines.append("")
        lines.append(f"[{job_name(workload, dev)}]")
        lines.append(f"filename={dev}")
        lines += [f"{k}={v}" for k, v in workload.options().items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class DirStats:
    """One direction (read or write) of a job: fio's numbers in base units."""

    io_bytes: int = 0
    bw_bytes: float = 0.0           # bytes/s
    iops: float = 0.0
    runtime_ms: int = 0
    total_ios: int = 0
    clat_mean_ns: float | None = None
    p50_ns: int | None = None
    p99_ns: int | None = None
    p999_ns: int | None = None

    @property
    def gbps(self) -> float:
        """Decimal GB/s (10^9 bytes per second), as NVMe-oF reports are usually written."""
        return self.bw_bytes / 1e9

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gb_per_s"] = round(self.gbps, 6)
        return d

    @classmethod
    def from_fio(cls, d: dict) -> "DirStats":
        clat = d.get("clat_ns") or {}
        pct = clat.get("percentile") or {}

        def p(key: str) -> int | None:
            v = pct.get(key)
            return int(v) if v is not None else None

        if int(d.get("runtime", 0)) == 0:
            # fio counts the "writes" a verify_only pass only pretends to do (io_bytes set, runtime
            # 0, bogus clat): nothing of this direction was measured
            return cls(io_bytes=int(d.get("io_bytes", 0)), total_ios=0)
        return cls(io_bytes=int(d.get("io_bytes", 0)), bw_bytes=float(d.get("bw_bytes", 0.0)),
                   iops=float(d.get("iops", 0.0)), runtime_ms=int(d.get("runtime", 0)),
                   total_ios=int(d.get("total_ios", 0)),
                   clat_mean_ns=float(clat["mean"]) if "mean" in clat and clat.get("N") else None,
                   p50_ns=p("50.000000"), p99_ns=p("99.000000"), p999_ns=p("99.900000"))


@dataclass
class JobResult:
    """One fio job (one workload on one device, possibly on one remote client)."""

    name: str
    error: int = 0
    read: DirStats = field(default_factory=DirStats)
    write: DirStats = field(default_factory=DirStats)
    usr_cpu: float = 0.0            # % of one CPU over the job's runtime
    sys_cpu: float = 0.0
    job_runtime_ms: int = 0
    filename: str | None = None
    host: str | None = None         # fio server (client/server mode)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def bw_bytes(self) -> float:
        return self.read.bw_bytes + self.write.bw_bytes

    @property
    def iops(self) -> float:
        return self.read.iops + self.write.iops

    @property
    def cpu_pct(self) -> float:
        return self.usr_cpu + self.sys_cpu

    def to_dict(self) -> dict:
        return {"name": self.name, "filename": self.filename, "host": self.host, "error": self.error,
                "read": self.read.to_dict(), "write": self.write.to_dict(),
                "bw_bytes": self.bw_bytes, "gb_per_s": round(self.bw_bytes / 1e9, 6),
                "iops": self.iops, "usr_cpu": self.usr_cpu, "sys_cpu": self.sys_cpu,
                "cpu_pct": round(self.cpu_pct, 3), "job_runtime_ms": self.job_runtime_ms,
                "options": self.options}

    @classmethod
    def from_fio(cls, j: dict, global_options: dict | None = None) -> "JobResult":
        opts = dict(global_options or {})
        opts.update(j.get("job options") or {})
        return cls(name=j.get("jobname", "?"), error=int(j.get("error", 0)),
                   read=DirStats.from_fio(j.get("read") or {}),
                   write=DirStats.from_fio(j.get("write") or {}),
                   usr_cpu=float(j.get("usr_cpu", 0.0)), sys_cpu=float(j.get("sys_cpu", 0.0)),
                   job_runtime_ms=int(j.get("job_runtime", 0)),
                   filename=opts.get("filename"), host=j.get("hostname"), options=opts)


@dataclass
class VerifyFailure:
    """A block fio found corrupt: where, and what was wrong with it."""

    file: str
    offset: int                     # byte offset of the bad verify unit in the file/device
    length: int
    kind: str                       # "checksum", "bad magic", "bad header offset", ...
    algorithm: str | None = None    # crc32c ...
    block_offset: int | None = None  # the I/O it belonged to
    block_length: int | None = None
    expected: str | None = None
    received: str | None = None
    host: str | None = None         # fio server that saw it (client/server mode)
    job: str | None = None
    message: str = ""
    dumps: list[str] = field(default_factory=list)   # verify_dump files fio wrote (its cwd)

    def describe(self) -> str:
        where = f"{self.file} offset {self.offset} (length {self.length}"
        if self.block_offset is not None:
            where += f", in the I/O at offset {self.block_offset} of {self.block_length} bytes"
        where += ")"
        what = self.kind
        if self.expected or self.received:
            what += f" (expected {self.expected}, received {self.received})"
        job = f"job {self.job}: " if self.job else ""
        host = f"[{self.host}] " if self.host else ""
        dumps = f"; fio saved what it read in {', '.join(self.dumps)}" if self.dumps else ""
        return f"{host}{job}{what} at {where}{dumps}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["description"] = self.describe()
        return d


_AT = (r" at file (?P<file>.+?) offset (?P<offset>\d+), length (?P<length>\d+)"
       r"(?: \(requested block: offset=(?P<boff>\d+), length=(?P<blen>\d+)(?:, flags=\w+)?\))?")
_VERIFY_RES = [
    ("checksum", re.compile(r"(?P<algo>[\w-]+): verify failed" + _AT)),
    ("bad magic", re.compile(r"verify: bad magic header (?P<got>\S+), wanted (?P<want>\S+)" + _AT)),
    ("bad header", re.compile(r"verify: bad header (?P<field>\w+(?: \w+)?) (?P<got>\S+), wanted (?P<want>\S+)" + _AT)),
]
_EXPECTED_RE = re.compile(r"^\s*Expected (?:CRC|MD5|SHA\w*|hash)?:?\s*(?P<v>\S+)\s*$")
_RECEIVED_RE = re.compile(r"^\s*Received (?:CRC|MD5|SHA\w*|hash)?:?\s*(?P<v>\S+)\s*$")
_DUMP_RE = re.compile(r"^\s*(?:\w+ )?data dumped as (?P<file>\S+)\s*$")
_HOST_PREFIX_RE = re.compile(r"^<(?P<host>[^>]+)>\s?(?P<rest>.*)$")
_JOB_ERROR_RE = re.compile(r"fio: pid=(?P<pid>\d+), err=(?P<err>\d+)/(?P<where>\S+), func=(?P<func>[^,]+), "
                           r"error=(?P<msg>.*)$")


def parse_verify_failures(text: str) -> list[VerifyFailure]:
    """Every verify failure fio printed (stderr, or stdout lines of a ``--client`` run)."""
    out: list[VerifyFailure] = []
    for raw in text.splitlines():
        host = None
        line = raw.rstrip("\r")
        m = _HOST_PREFIX_RE.match(line)
        if m:
            host, line = m.group("host"), m.group("rest")
        if out and (em := _EXPECTED_RE.match(line)):
            out[-1].expected = em.group("v")
            continue
        if out and (rm := _RECEIVED_RE.match(line)):
            out[-1].received = rm.group("v")
            continue
        if out and (dm := _DUMP_RE.match(line)):
            out[-1].dumps.append(dm.group("file"))
            continue
        for kind, rx in _VERIFY_RES:
            vm = rx.search(line)
            if not vm:
                continue
            g = vm.groupdict()
            f = VerifyFailure(file=g["file"], offset=int(g["offset"]), length=int(g["length"]),
                              kind=kind, host=host, message=line.strip(),
                              block_offset=int(g["boff"]) if g.get("boff") else None,
                              block_length=int(g["blen"]) if g.get("blen") else None)
            if kind == "checksum":
                f.algorithm = g["algo"]
            elif kind == "bad magic":
                f.expected, f.received = g["want"], g["got"]
            else:
                f.kind = f"bad header {g['field']}"
                f.expected, f.received = g["want"], g["got"]
            out.append(f)
            break
    return out


def parse_job_errors(text: str) -> list[dict]:
    """``fio: pid=N, err=E/file:..., func=..., error=...`` lines (an errno that stopped a job)."""
    out = []
    for raw in text.splitlines():
        line = raw
        m = _HOST_PREFIX_RE.match(line)
        host = None
        if m:
            host, line = m.group("host"), m.group("rest")
        em = _JOB_ERROR_RE.search(line)
        if em:
            out.append({"errno": int(em.group("err")), "where": em.group("where"),
                        "func": em.group("func"), "message": em.group("msg").strip(), "host": host})
    return out


def load_json_document(text: str, where: str = "fio output") -> dict:
    """fio's JSON, tolerating text fio puts in front of it (job error lines on stdout,
    ``<host>`` lines in client mode). Raises ValueError (a
    :class:`nvmet_p2p.safeload.DocumentError`) when there is none or it is malformed."""
    start = None
    if text.lstrip().startswith("{"):
        start = text.index("{")
    else:
        m = re.search(r"^\{\s*$", text, re.M)
        if m:
            start = m.start()
    if start is None:
        raise safeload.DocumentError("no JSON document in fio output", where=where)
    doc = safeload.loads_json(text[start:], where, duplicates=True)   # (fio repeats keys)
    safeload.check(doc, FIO_SHAPE, where)
    return doc


#: what parse_fio_output indexes into (everything else is optional and read with defaults)
def _fio_shape():
    dirs = Opt({"io_bytes": Opt(float), "bw_bytes": Opt(float), "iops": Opt(float),
                "runtime": Opt(float), "total_ios": Opt(float),
                "clat_ns": Opt({"mean": Opt(float), "N": Opt(float),
                                "percentile": Opt(Each(str, float))})})
    job = {"jobname": Opt(str), "error": Opt(int), "read": dirs, "write": dirs, "trim": Opt(dict),
           "usr_cpu": Opt(float), "sys_cpu": Opt(float), "job_runtime": Opt(float),
           "job options": Opt(Each(str, (str, int, float))), "hostname": Opt(str)}
    return {"jobs": Opt([job]), "client_stats": Opt([job]), "fio version": Opt(str),
            "global options": Opt(Each(str, (str, int, float)))}


FIO_SHAPE = _fio_shape()


@dataclass
class FioRun:
    """One fio invocation: its parsed jobs, verify failures and the raw material."""

    workload: str
    command: list[str]
    returncode: int
    jobs: list[JobResult] = field(default_factory=list)
    aggregate: JobResult | None = None      # fio's "All clients" (client/server mode)
    verify_failures: list[VerifyFailure] = field(default_factory=list)
    job_errors: list[dict] = field(default_factory=list)
    fio_version: str | None = None
    started: float = 0.0
    finished: float = 0.0
    json_path: str | None = None
    stderr_tail: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 and not self.verify_failures and not self.job_errors
                and all(j.error == 0 for j in self.jobs) and bool(self.jobs))

    def problems(self) -> list[str]:
        out = [f.describe() for f in self.verify_failures]
        for e in self.job_errors:
            out.append(f"fio job error errno {e['errno']} ({e['message']}) in {e['func']}"
                       + (f" on {e['host']}" if e.get("host") else ""))
        for j in self.jobs:
            if j.error and not self.verify_failures:
                out.append(f"job {j.name}: fio error {j.error}")
        if self.returncode not in (0, None) and not out:
            out.append(f"fio exited with status {self.returncode}: " + " | ".join(self.stderr_tail[-3:]))
        if not self.jobs and not out:
            out.append("fio produced no job results")
        if self.interrupted:
            out.append("interrupted")
        return out

    def to_dict(self) -> dict:
        return {"workload": self.workload, "command": self.command, "returncode": self.returncode,
                "ok": self.ok, "fio_version": self.fio_version,
                "started": self.started, "finished": self.finished,
                "jobs": [j.to_dict() for j in self.jobs],
                "aggregate": self.aggregate.to_dict() if self.aggregate else None,
                "verify_failures": [v.to_dict() for v in self.verify_failures],
                "job_errors": self.job_errors, "problems": self.problems(),
                "json_path": self.json_path}


def parse_fio_output(doc: dict) -> tuple[list[JobResult], JobResult | None, str | None]:
    """``(jobs, all-clients aggregate, fio version)`` from fio's JSON document."""
    g = doc.get("global options") or {}
    jobs: list[JobResult] = []
    agg = None
    if "client_stats" in doc:
        for j in doc["client_stats"]:
            r = JobResult.from_fio(j, g)
            if r.name == "All clients":
                agg = r
            else:
                jobs.append(r)
    else:
        jobs = [JobResult.from_fio(j, g) for j in doc.get("jobs", [])]
    return jobs, agg, doc.get("fio version")


def assign_failures_to_jobs(failures: list[VerifyFailure], jobs: list[JobResult],
                            job_files: dict[str, str] | None = None) -> None:
    """Name the job of each failure: fio's message names the file, each job has one file."""
    by_file: dict[tuple[str | None, str], str] = {}
    for j in jobs:
        if j.filename:
            by_file[(j.host, j.filename)] = j.name
            by_file.setdefault((None, j.filename), j.name)
    for name, fn in (job_files or {}).items():
        by_file.setdefault((None, fn), name)
    for f in failures:
        f.job = by_file.get((f.host, f.file)) or by_file.get((None, f.file)) or f.job


# --------------------------------------------------------------------------------------
# Progress from fio's ETA lines
# --------------------------------------------------------------------------------------

_ETA_RE = re.compile(r"Jobs: (?P<jobs>\d+) \([^)]*\)(?:: \[(?P<state>[^\]]*)\]\[(?P<pct>[\d.]+)%\]"
                     r"(?:\[(?P<rate>[^\]]*)\])?(?:\[(?P<iops>[^\]]*)\])?(?:\[eta (?P<eta>[^\]]*)\])?)?")


def parse_eta(line: str) -> dict | None:
    """``Jobs: 1 (f=1): [R(1)][75.0%][r=47.0MiB/s][r=376 IOPS][eta 00m:01s]`` -> fields."""
    m = _ETA_RE.search(line)
    if not m:
        return None
    d = {k: v for k, v in m.groupdict().items() if v is not None}
    if "pct" in d:
        d["pct"] = float(d["pct"])
    d["jobs"] = int(d["jobs"])
    return d


# --------------------------------------------------------------------------------------
# Running fio
# --------------------------------------------------------------------------------------


class FioError(NvmetP2PError):
    pass


class FioInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while fio ran; ``run`` holds what fio reported before stopping."""

    def __init__(self, run: "FioRun"):
        super().__init__("interrupted")
        self.run = run


def fio_version(fio: str = "fio") -> str:
    try:
        r = subprocess.run([fio, "--version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise FioError(f"fio not found ({fio}); install Debian's fio package") from None
    return r.stdout.strip()


def run_fio(workload: Workload, jobfile: str, json_path: str, *, cwd: str | None = None,
            fio: str = "fio", clients: list[tuple[str, str]] | None = None,
            progress: Callable[[str], None] | None = None, progress_every: float = 2.0,
            job_files: dict[str, str] | None = None,
            popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> FioRun:
    """Run fio on ``jobfile`` (or send it to fio servers), parse everything, return a FioRun.

    ``clients``: ``[(server, jobfile)]`` for client/server mode (``server`` as fio's
    ``--client`` accepts it, e.g. ``ip:10.0.0.2,8765``). Ctrl-C is passed on to fio (it stops
    its jobs and still writes its JSON), then re-raised after parsing.
    """
    cmd = [fio, "--output-format=json", f"--output={json_path}", "--eta=always",
           "--eta-newline=2", "--eta-interval=2"]
    if clients:
        for server, jf in clients:
            cmd += [f"--client={server}", jf]
    else:
        cmd.append(jobfile)
    run = FioRun(workload=workload.name, command=cmd, returncode=-1, json_path=json_path,
                 started=time.time())
    try:
        os.unlink(json_path)
    except FileNotFoundError:
        pass
    try:
        proc = popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     errors="replace", bufsize=1)
    except FileNotFoundError:
        raise FioError(f"fio not found ({fio}); install Debian's fio package") from None

    err_chunks: list[str] = []
    t_err = threading.Thread(target=_drain, args=(proc.stderr, err_chunks), daemon=True)
    t_err.start()
    out_chunks: list[str] = []
    interrupted = False
    try:
        _follow_output(proc, workload, out_chunks, progress, progress_every)
        run.returncode = proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        run.returncode = _wait_interrupted(proc)
    t_err.join(timeout=10)
    run.finished = time.time()
    run.interrupted = interrupted
    _parse_run(run, "".join(err_chunks), "".join(out_chunks), cwd, job_files)
    if interrupted:
        raise FioInterrupted(run)
    return run


def _drain(stream, chunks: list[str]) -> None:
    """Keep everything fio writes to ``stream`` (its stderr, read in a thread of its own)."""
    assert stream is not None
    for chunk in stream:
        chunks.append(chunk)


def _follow_output(proc: subprocess.Popen, workload: Workload, out_chunks: list[str],
                   progress: Callable[[str], None] | None, progress_every: float) -> None:
    """Read fio's stdout to its end, keeping it in ``out_chunks`` and reporting its ETA lines
    as progress at most every ``progress_every`` seconds."""
    assert proc.stdout is not None
    last = 0.0
    buf = ""
    while True:
        chunk = proc.stdout.read(256) if hasattr(proc.stdout, "read") else ""
        if not chunk:
            break
        out_chunks.append(chunk)
        buf += chunk
        *parts, buf = re.split(r"[\r\n]", buf)
        now = time.monotonic()
        if progress and parts and now - last >= progress_every:
            for p in reversed(parts):
                e = parse_eta(p)
                if e and "pct" in e:
                    progress(f"{workload.name}: {e['pct']:.0f}%"
                             + (f" {e['rate']}" if e.get("rate") else "")
                             + (f" {e['iops']}" if e.get("iops") else "")
                             + (f" eta {e['eta']}" if e.get("eta") else ""))
                    last = now
                    break


def _wait_interrupted(proc: subprocess.Popen) -> int:
    """After Ctrl-C: fio's exit status. A terminal Ctrl-C reaches fio too (same process
    group); a SIGTERM to us does not, so fio gets SIGINT after 5 s and SIGKILL after 60 more."""
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            proc.send_signal(signal.SIGINT)
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def _parse_run(run: FioRun, stderr: str, stdout: str, cwd: str | None,
               job_files: dict[str, str] | None) -> None:
    """Keep fio's stderr/stdout beside its JSON; parse verify failures, job errors and the
    JSON document into ``run``."""
    json_path = run.json_path
    base = json_path[:-5] if json_path.endswith(".json") else json_path
    for suffix, text in ((".stderr", stderr), (".stdout", stdout)):
        try:
            with open(base + suffix, "w") as f:
                f.write(text)
        except OSError:
            pass
    run.stderr_tail = [ln for ln in stderr.splitlines() if ln.strip()][-20:]
    text = stderr + "\n" + stdout
    run.verify_failures = parse_verify_failures(text)
    for f in run.verify_failures:     # fio writes its dumps into its working directory
        f.dumps = [os.path.join(cwd, d) if cwd and not os.path.isabs(d) else d for d in f.dumps]
    run.job_errors = parse_job_errors(text)
    try:
        with open(json_path) as f:
            doc = load_json_document(f.read())
        run.jobs, run.aggregate, run.fio_version = parse_fio_output(doc)
    except (OSError, ValueError):
        run.jobs = []
    assign_failures_to_jobs(run.verify_failures, run.jobs, job_files)


def check_workload_names(names: Iterable[str], known: Iterable[str]) -> None:
    known = list(known)
    bad = [n for n in names if n not in known]
    if bad:
        raise InputError(f"unknown workload(s) {', '.join(bad)}; known: {', '.join(known)}",
                         where="--workload")
