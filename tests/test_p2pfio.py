"""``p2p-test --engine fio``: the plan, the workloads, the judgement, the runner's flow.

The numbers fio 3.33 really maps from a pool and the kernel's and fio's messages used here
were measured in the lab (tools/lab/run, kernel 7.3, see nvmet_p2p/harness/p2pfio.py). The
DMA itself only exists in the lab (tests/lab/test_lab_p2p_fio.py); here one test runs real
fio against plain files standing in for the namespaces and for ``p2pmem/allocate``, and the
rest drive the runner with fio results replayed from what fio printed in the lab.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os

import pytest
import sysfsfixture as sf

from nvmet_p2p import cli, exits
from nvmet_p2p.errors import InputError
from nvmet_p2p.harness import p2pfio as pf
from nvmet_p2p.harness import p2pfio_report as rep
from nvmet_p2p.harness import results as res
from nvmet_p2p.harness.fio import FioInterrupted, FioRun, JobResult, job_file, parse_verify_failures
from nvmet_p2p.harness.p2pfio_run import FioP2pRun, explain_lost_data, poison_pool, probe_pool

BDF = "0000:03:00.0"
AVAIL = 66977792                       # the lab's 64 MiB CMB minus the 128 KiB nvme-pci keeps for SQs
IOMEM = f"mmapshared:/sys/bus/pci/devices/{BDF}/p2pmem/allocate"
DMAR = ["DMAR: DRHD: handling fault status reg 2",
        "DMAR: [DMA Read NO_PASID] Request device [0000:05:00.0] fault addr 0xf8080000 [fault reason 0x06] "
        "PTE Read access is not set"]
REFUSAL_LINE = ("nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and provider "
                "(0000:03:00.0) do not share an upstream bridge or whitelisted host bridge")


def plan(devices=("/dev/nvme1n1",), **kw):
    args = dict(available=AVAIL, pool_size=64 << 20, device_sizes={}, iomem=IOMEM, size=4 << 20)
    args.update(kw)
    return pf.make_plan(BDF, list(devices), **args)


# -- what fio maps -----------------------------------------------------------------------

@pytest.mark.parametrize("bs,qd,mapped", [(4096, 1, 12288), (128 << 10, 4, 532480), (1 << 20, 63, 66068480),
                                          (1 << 20, 16, 16785408)])
def test_fio_buffer_bytes_is_what_the_lab_pool_lost(bs, qd, mapped):
    """p2pmem/available dropped by exactly these amounts while fio 3.33 ran (lab)."""
    assert pf.fio_buffer_bytes(bs, qd) == mapped


# -- the plan ----------------------------------------------------------------------------

def test_default_matrix_leaves_out_cells_the_pool_cannot_hold():
    p = plan(devices=["/dev/nvme1n1", "/dev/nvme2n1"])
    names = {c.name for c in p.cells}
    assert "seq-read-1m-qd16-libaio" in names and "seq-read-1m-qd32-libaio" not in names   # 2 x 32 MiB + 16 KiB
    assert any("left out bs 1m x iodepth 32" in n and "holds iodepth 31" in n for n in p.notes)
    assert p.largest == (1 << 20, 16) and (p.verify_bs, p.verify_qd) == (1 << 20, 16)
    assert p.need(1 << 20, 16) == 2 * 16785408 <= AVAIL


def test_explicit_cell_that_does_not_fit_is_an_error_before_anything():
    with pytest.raises(InputError, match=r"bs 1m x iodepth 64: .* 67117056 bytes .* 66977792 available; at bs 1m "
                                         r"the pool holds iodepth 63"):
        plan(bss=(1 << 20,), qds=(64,))
    with pytest.raises(InputError, match="holds iodepth 31"):
        plan(bss=(1 << 20,), qds=(32,), numjobs=2)


def test_numjobs_max_is_what_the_largest_cell_leaves_room_for():
    p = plan(devices=["/dev/nvme1n1", "/dev/nvme2n1"], bss=(1 << 20,), qds=(16,), numjobs="max", size=8 << 20)
    assert p.numjobs == 1                                   # 2 x 2 x 16 MiB would not fit in 63.9 MiB
    p = plan(bss=(128 << 10,), qds=(4,), numjobs="max", size=8 << 20)
    assert p.numjobs == 64                                  # capped
    p = plan(bss=(128 << 10,), qds=(4,), numjobs=3, size=4 << 20)
    assert p.job_size == (4 << 20) // 3 // (128 << 10) * (128 << 10) and p.size == 3 * p.job_size
    assert any("not the 4194304 asked for" in n for n in p.notes)


@pytest.mark.parametrize("kw,match", [
    (dict(bss=(1000,)), "multiples of"),
    (dict(repeat=0), "repeat"),
    (dict(runtime=0), "--runtime"),
    (dict(numjobs=0), "numjobs must be"),
    (dict(size=4096, bss=(1 << 20,), qds=(1,)), "too small"),
    (dict(device_sizes={"/dev/nvme1n1": 6 << 20}), "lower --size or --offset"),
])
def test_plan_input_errors(kw, match):
    with pytest.raises(InputError, match=match):
        plan(**kw)
    with pytest.raises(InputError, match="twice"):
        plan(devices=["/dev/a", "/dev/a"])


def test_matrix_order_interleaves_buffers_and_writes_before_reads():
    p = plan(bss=(128 << 10,), qds=(1, 4), repeat=2)
    order = [(c.name, k, r) for c, k, r in pf.matrix_order(p)]
    assert order[:8] == [("seq-write-128k-qd1-libaio", "p2p", 1), ("seq-read-128k-qd1-libaio", "p2p", 1),
                         ("seq-write-128k-qd1-libaio", "host", 1), ("seq-read-128k-qd1-libaio", "host", 1),
                         ("seq-write-128k-qd1-libaio", "host", 2), ("seq-read-128k-qd1-libaio", "host", 2),
                         ("seq-write-128k-qd1-libaio", "p2p", 2), ("seq-read-128k-qd1-libaio", "p2p", 2)]
    assert len(order) == 16 and p.runs_planned() == 16 + len(pf.VERIFY_STEPS)


# -- the workloads and their job files ----------------------------------------------------

def test_job_options_of_p2p_and_host_passes():
    p = plan(bss=(128 << 10,), qds=(4,), numjobs=2, size=4 << 20)
    w_cell = {c.rw: c for c in p.cells}
    wr = pf.matrix_workload(p, w_cell["write"], "p2p").options()
    assert wr["iomem"] == IOMEM and wr["verify"] == "crc32c" and wr["do_verify"] == "0"
    assert wr["verify_interval"] == "4096" and wr["time_based"] == "1" and wr["numjobs"] == "2"
    assert wr["offset_increment"] == wr["size"] == str(2 << 20) and wr["offset"] == "0"
    rd = pf.matrix_workload(p, w_cell["read"], "host").options()
    assert "iomem" not in rd and "verify" not in rd and rd["offset"] == str(4 << 20)     # the host region
    p.verify_reads = True
    assert pf.matrix_workload(p, w_cell["read"], "p2p").options()["do_verify"] == "1"
    steps = {s[0]: pf.verify_workload(p, s).options() for s in pf.VERIFY_STEPS}
    assert steps["prep-zero"]["zero_buffers"] == "1" and "iomem" not in steps["prep-zero"]
    assert steps["verify-p2p-read"]["iomem"] == IOMEM and steps["verify-p2p-read"]["do_verify"] == "1"
    assert all("time_based" not in o for o in steps.values())     # one whole pass each
    assert steps["final-host-control"]["offset"] == str(4 << 20)
    text = job_file(pf.verify_workload(p, pf.VERIFY_STEPS[2]), ["/dev/nvme1n1"], {"ioengine": "io_uring"})
    assert "thread=0" in text          # fio 3.33 double-frees with thread=1 + mmapshared + numjobs
    assert f"iomem={IOMEM}" in text and "ioengine=io_uring" in text


# -- the judgement ------------------------------------------------------------------------

def job(name, dev, error=0):
    return JobResult(name=f"{name}@{os.path.basename(dev)}", error=error, filename=dev).to_dict()


def entry(step, kind, devs, *, errors=None, failures="", rw="read"):
    errors = errors or {}
    fails = [f.to_dict() for f in parse_verify_failures(failures)]
    return {"workload": {"name": step, "rw": rw, "group": "verify"}, "variant": kind, "round": 1, "step": step,
            "check": pf.CHECKS.get(step), "fio": {"jobs": [job(step, d, errors.get(d, 0)) for d in devs],
                                                  "verify_failures": fails, "ok": not fails and not errors},
            "summary": None, "evidence": None, "pool": {}, "p2pmem_expected": 0}


def bad(dev, got):
    return (f"verify: bad magic header {got}, wanted acca at file {dev} offset 67108864, length 4096 "
            f"(requested block: offset=67108864, length=131072)\n")


def clean(devs):
    return [entry(s, "p2p" if "p2p" in s else "host", devs) for s in pf.CHECKS]


def test_every_check_verified():
    s = rep.device_status(clean(["/dev/a"]), "/dev/a")
    assert s["verdict"] == "verified" and set(s["checks"]) == set(pf.CHECKS.values())


def test_lost_data_is_attributed_by_what_fio_found():
    d = "/dev/nvme3n1"
    runs = [entry("verify-host-read", "host", [d], failures=bad(d, "0")),
            entry("verify-p2p-read", "p2p", [d], failures=bad(d, "eeee")),
            entry("final-host-read", "host", [d], failures=bad(d, "0")),
            entry("final-host-control", "host", [d])]
    s = rep.device_status(runs, d)
    assert s["verdict"] == "mismatch" and rep.overall_verdict({d: s}) == "mismatch"
    text = " ".join(s["lost"])
    assert "NVMe -> CMB DMA never arrived" in text and "found the poison" in text
    assert "holds zeros where fio wrote from the CMB" in text
    # the same failures with a broken host control: the namespace itself is suspect
    runs[-1] = entry("final-host-control", "host", [d], failures=bad(d, "1f54"))
    assert rep.device_status(runs, d)["verdict"] == "failed"


def test_refusal_and_pool_failure():
    a, b = "/dev/nvme1n1", "/dev/nvme3n1"
    runs = [entry("verify-p2p-write", "p2p", [a, b], errors={b: errno.EINVAL}, rw="write")] + clean([a])
    runs += [entry("final-host-control", "host", [b])]
    st = {d: rep.device_status(runs, d) for d in (a, b)}
    assert st[a]["verdict"] == "verified"
    assert st[b]["verdict"] == "refused" and st[b]["refusal"]["direction"] == "write"
    assert rep.check_words(st[b]) == ["refused", "refused", "refused", "yes"]
    assert rep.overall_verdict(st) == "refused"
    runs = [entry("verify-p2p-write", "p2p", [a], errors={a: errno.ENOMEM}, rw="write")] + clean([a])
    s = rep.device_status(runs, a)
    assert s["verdict"] == "failed" and "ENOMEM" in s["pool_failure"] and "NULL buffer" in s["pool_failure"]


def test_lost_data_explained_by_the_kernel_log():
    text, causes = explain_lost_data(BDF, ["nvme nvme3: something"] + DMAR, "/",
                                     {"/dev/nvme3n1": {"map_type": "bus_addr", "pci": "0000:05:00.0"}})
    assert "kernel allowed the p2p DMA (/dev/nvme3n1: bus_addr) but an IOMMU dropped it" in text
    assert "IOMMU fault: the IOMMU blocked the DMA read of 0000:05:00.0" in text  # explain.py's words
    assert f"(kernel: {DMAR[1]})" in text and [c["kind"] for c in causes["causes"]] == ["iommu_fault"]
    assert "logged nothing" in explain_lost_data(BDF, [], "/", {})[0]


# -- the runner, with fio results replayed ------------------------------------------------

class Replay:
    """Stands in for run_fio: writes nothing, answers from ``script(step, devices)``."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def __call__(self, w, jobfile, json_path, *, cwd, fio, progress, job_files, popen=None):
        devs = list(job_files.values())
        self.calls.append((w.name, w.extra.get("iomem") is not None, devs, open(jobfile).read()))
        errors, failures, interrupt = self.script(w.name, devs)
        run = FioRun(workload=w.name, command=["fio", jobfile], returncode=1 if errors or failures else 0)
        run.jobs = [JobResult(name=n, error=errors.get(d, 0), filename=d) for n, d in job_files.items()]
        run.verify_failures = parse_verify_failures(failures)
        if interrupt:
            raise FioInterrupted(run)
        return run


class Log:
    def __init__(self, lines):
        self.lines = lines

    def mark(self):
        return 0

    def lines_since(self, mark):
        return list(self.lines)


def tree(tmp_path, n=1):
    m = sf.q35_lab(tmp_path, write=False)
    m.set_p2pmem(BDF, available=AVAIL)
    m.write()
    with open(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate", "wb") as f:
        f.truncate(64 << 20)
    devs = []
    for name in ("nvme1n1", "nvme2n1", "nvme3n1")[:n]:
        with open(tmp_path / name, "wb") as f:
            f.truncate(32 << 20)
        devs.append(str(tmp_path / name))
    return devs


def runner(tmp_path, devs, script, lines=(), maps=("bus_addr", "not_supported"), fake=None,
           log=None, **kw):
    p = plan(devices=devs, bss=(128 << 10,), qds=(4,), repeat=1, runtime=1.0, size=2 << 20,
             iomem=f"mmapshared:{tmp_path}/sys/bus/pci/devices/{BDF}/p2pmem/allocate")
    fake = fake or Replay(script)
    pred = {d: {"pci": pci, "map_type": mt, "reasons": []} for d, (pci, mt) in
            zip(devs, zip(["0000:05:00.0", "0000:06:00.0"], maps))}
    r = FioP2pRun(p, str(tmp_path / "out"), root=str(tmp_path), fio_runner=fake,
                  log=log or Log(list(lines)), prediction=pred, plots=False, **kw)
    return r, fake


def test_runner_lost_data_refills_before_judging_the_read_direction(tmp_path):
    (d,) = tree(tmp_path)

    def script(step, devs):
        fails = {"verify-host-read": bad(d, "0"), "verify-p2p-read": bad(d, "eeee"), "final-host-read": bad(d, "0")}
        return {}, fails.get(step, ""), False
    r, fake = runner(tmp_path, [d], script, lines=DMAR)
    out = r.run()
    steps = [c[0] for c in fake.calls]
    assert steps[:6] == ["prep-zero", "prep-host", "verify-p2p-write", "verify-host-read", "refill-host",
                         "verify-p2p-read"]
    assert steps[-2:] == ["final-host-read", "final-host-control"] and len(steps) == 12
    p = out["p2p_test"]
    assert p["verdict"] == "mismatch" and not out["ok"]
    assert "IOMMU dropped it" in p["lost_explanation"] and out["integrity"]["verdict"] == "fail"
    with open(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate", "rb") as f:
        assert f.read(16) == b"\xee" * 16           # the pool head was poisoned before the p2p read
    with open(tmp_path / "out/results.json") as f:
        doc = json.load(f)
    assert doc["schema"] == res.SCHEMA and doc["schema_version"] == res.SCHEMA_VERSION
    assert doc["p2p_test"]["devices"][d]["verdict"] == "mismatch"
    assert os.path.isdir(tmp_path / "out/fio/verify-p2p-read.dumps")     # its own folder for fio's dumps
    md = (tmp_path / "out/summary.md").read_text()
    assert "## p2p-test: **mismatch**" in md and "| LOST | LOST | LOST | yes | mismatch |" in md
    text = rep.render(out)
    assert "verdict: mismatch" in text and "they are not throughput" in text


def test_runner_refused_namespace_gets_no_more_p2p_jobs(tmp_path):
    """A refusal the prediction could not foresee (map type unknown): after fio's EINVAL on b,
    b gets no more p2p jobs."""
    a, b = tree(tmp_path, 2)

    def script(step, devs):
        return ({b: errno.EINVAL} if step == "verify-p2p-write" and b in devs else {}), "", False
    r, fake = runner(tmp_path, [a, b], script, lines=[REFUSAL_LINE, "unrelated 0000:05:00.0 line"],
                     maps=("bus_addr", None))
    out = r.run()
    later_p2p = [c for c in fake.calls[3:] if c[1]]
    assert later_p2p and all(c[2] == [a] for c in later_p2p)
    matrix_host = [c for c in fake.calls if c[0].startswith("seq-") and not c[1]]
    assert matrix_host and all(c[2] == [a] for c in matrix_host)       # the ratio compares like with like
    assert all(b in c[2] for c in fake.calls if c[0] == "final-host-control")
    p = out["p2p_test"]
    assert p["devices"][a]["verdict"] == "verified" and p["devices"][b]["verdict"] == "refused"
    assert p["verdict"] == "refused" and rep.VERDICT_EXIT[p["verdict"]] == exits.NO_P2P == 5
    expl = p["devices"][b]["refusal"]["explanation"]
    assert "do not share an upstream bridge" in expl and "unrelated" not in expl
    cells = {c["name"]: c for c in p["cells"]}
    assert cells["seq-read-128k-qd4-libaio"]["median_host_gb_per_s"] is not None


def test_runner_gives_no_p2p_io_to_a_pair_the_kernel_refuses(tmp_path):
    """Issue 19.12: the distance rules refuse b's pair with the provider, so b never gets a
    p2p job (every one would fail, and a drive given such I/O was reset over and over); its
    host-memory control still runs; the verdict is refused (exit 5: no p2p), explained."""
    a, b = tree(tmp_path, 2)
    r, fake = runner(tmp_path, [a, b], lambda step, devs: ({}, "", False))
    out = r.run()
    assert all(b not in c[2] for c in fake.calls if c[1])              # no p2p job on b at all
    assert any(c[1] and a in c[2] for c in fake.calls)
    assert any(b in c[2] for c in fake.calls if c[0] == "final-host-control")
    p = out["p2p_test"]
    s = p["devices"][b]
    assert s["verdict"] == "refused" and s["refusal"]["before_io"] and p["verdict"] == "refused"
    assert "refused before any I/O" in s["refusal"]["explanation"] and p["refused_before_io"] == [b]
    assert p["devices"][a]["verdict"] == "verified" and rep.VERDICT_EXIT[p["verdict"]] == 5


class ArmedLog:
    """A kernel log that prints ``line`` once the fake fio has started its I/O."""

    def __init__(self, line):
        self.line, self.armed, self.sent = line, False, False

    def mark(self):
        return 0

    def lines_since(self, mark):
        return [self.line] if self.sent else []

    def follow(self):
        log = self

        class F:
            def drain(self):
                if log.armed and not log.sent:
                    log.sent = True
                    from nvmet_p2p.kmsg import KmsgRecord
                    return [KmsgRecord(seq=1, time=0.0, level=3, facility=0, text=log.line)]
                return []

            def close(self):
                pass
        return F()


def test_runner_stops_fio_at_the_kernels_first_refusal(tmp_path):
    """The kernel refuses although nothing predicted it: at its first line about our disk fio
    is stopped (here a 30 s stand-in process, killed in well under that), no further pass runs,
    and the controllers are read back (the fixture's nvme1 is live)."""
    import time
    (d,) = tree(tmp_path)
    line = "invalid error, dev nvme1n1, sector 0 op 0x1:(WRITE) flags 0x8800 phys_seg 32 prio class 2"
    log = ArmedLog(line)
    calls = []

    def fio(w, jobfile, json_path, *, cwd, fio, progress, job_files, popen):
        calls.append(w.name)
        run = FioRun(workload=w.name, command=["fio", jobfile], returncode=0)
        run.jobs = [JobResult(name=n, filename=dev) for n, dev in job_files.items()]
        if w.extra.get("iomem"):                  # the first p2p pass: the kernel refuses
            log.armed = True
            proc = popen(["sleep", "30"])
            run.returncode = proc.wait()
        return run
    r, _ = runner(tmp_path, [d], None, maps=(None,), fake=fio, log=log)
    t0 = time.monotonic()
    out = r.run()
    assert time.monotonic() - t0 < 20
    assert calls == ["prep-zero", "prep-host", "verify-p2p-write"]      # nothing after the line
    p = out["p2p_test"]
    assert p["stopped"] == {"kind": "invalid_request", "line": line} and p["verdict"] == "refused"
    assert p["devices"][d]["refusal"]["step"] == "verify-p2p-write"
    assert p["controllers"] == {"nvme1": "live"}
    assert any("stopped at the kernel's first invalid request" in x for x in out["problems"])
    assert "STOPPED at the kernel's line (invalid_request)" in rep.render(out)


def test_command_refuses_before_fio_when_every_pair_is_refused(tmp_path, capsys):
    """Every namespace across a root port from the provider: exit 5 before fio is even looked
    for, nothing written, no results directory."""
    tree(tmp_path)
    plain = tmp_path / "nvme3n1"
    with open(plain, "wb") as f:
        f.truncate(32 << 20)
    before = hashlib.sha256(plain.read_bytes()).hexdigest()
    out_dir = tmp_path / "results"
    argv = ["p2p-test", "--root", str(tmp_path), "--engine", "fio", BDF, str(plain), "--size", "2M",
            "--bs", "128k", "--qd", "4", "--allow-write", "--fio", str(tmp_path / "no-such-fio"),
            "--out", str(out_dir)]
    assert cli.main(argv + ["--json"]) == 5
    d = json.loads(capsys.readouterr().out)
    r = d["devices"][str(plain)]["refusal"]
    assert d["verdict"] == "refused" and d["refused_before_io"] == [str(plain)]
    assert r["before_io"] and "whitelist" in r["explanation"] and "0000:06:00.0" in r["explanation"]
    assert cli.main(argv) == 5
    assert "verdict: refused (fio was not started)" in capsys.readouterr().out
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == before and not out_dir.exists()


def test_runner_interrupted_writes_what_ran(tmp_path):
    (d,) = tree(tmp_path)
    r, fake = runner(tmp_path, [d], lambda step, devs: ({}, "", step == "verify-p2p-read"))
    out = r.run()
    assert out["interrupted"] and out["p2p_test"]["verdict"] == "failed" and "interrupted" in out["problems"]
    assert (tmp_path / "out/results.json").exists() and len(fake.calls) == 5


def test_pool_probe_and_poison(tmp_path):
    tree(tmp_path)
    probe_pool(str(tmp_path), BDF, [532480, 532480], AVAIL)
    poison_pool(str(tmp_path), BDF, [8192])
    with open(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate", "rb") as f:
        head = f.read(8192)
    assert head[:16] == head[4096:4112] == b"\xee" * 16 and head[16:4096] == bytes(4080)
    os.unlink(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate")
    os.mkdir(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate")
    with pytest.raises(InputError, match="refused 1 mapping"):
        probe_pool(str(tmp_path), BDF, [532480], AVAIL)


# -- the command --------------------------------------------------------------------------

def test_command_input_errors_change_nothing(tmp_path, capsys):
    devs = tree(tmp_path, 2)
    before = hashlib.sha256(open(devs[0], "rb").read()).hexdigest()
    base = ["p2p-test", "--root", str(tmp_path), BDF, devs[0]]
    cases = [(["--engine", "fio", "--read-only-source", "--allow-write"], "--read-only-source"),
             (["--engine", "fio", "--size", "2M"], "--allow-write"),
             (["--engine", "fio", "--bs", "1m", "--qd", "64", "--allow-write"], "holds iodepth 63"),
             (["--engine", "fio", "--ioengine", "posixaio", "--allow-write"], "unknown fio engine"),
             (["--engine", "fio", "--numjobs", "lots", "--allow-write"], "--numjobs"),
             (["--bs", "4k", "--allow-write"], "only apply to --engine fio"),
             ([devs[1], devs[1], "--allow-write"], "one DST")]
    for extra, msg in cases:
        assert cli.main(base + extra) == 2, extra
        assert msg in capsys.readouterr().err, extra
    assert hashlib.sha256(open(devs[0], "rb").read()).hexdigest() == before
    assert not (tmp_path / "results").exists()


def o_direct_works(path):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False


def test_real_fio_takes_every_job_and_verifies_through_the_pool_file(tmp_path):
    """Real fio 3.33: every job section the plan writes parses (``--parse-only``), and a p2p
    write with headers then a verified p2p read run through ``iomem=mmapshared`` on a plain
    file standing in for the pool (the whole flow against the kernel: tests/lab)."""
    import shutil
    import subprocess
    if not shutil.which("fio"):
        pytest.skip("fio is not installed")
    (d,) = tree(tmp_path)
    if not o_direct_works(d):
        pytest.skip("the test filesystem refuses O_DIRECT")
    r, _ = runner(tmp_path, [d], None)
    r.fio_runner = __import__("nvmet_p2p.harness.fio", fromlist=["run_fio"]).run_fio
    p = r.plan
    p.verify_reads = True
    works = [pf.verify_workload(p, s) for s in pf.VERIFY_STEPS + (pf.REFILL,)]
    works += [pf.matrix_workload(p, c, k) for c in p.cells for k in pf.KINDS]
    text = "\n".join(job_file(w, [d]) for w in works)
    (tmp_path / "all.fio").write_text(text)
    parsed = subprocess.run(["fio", "--parse-only", str(tmp_path / "all.fio")], capture_output=True, text=True)
    assert parsed.returncode == 0 and "Bad option" not in parsed.stderr, parsed.stderr
    steps = {s[0]: s for s in pf.VERIFY_STEPS}
    wr = r.verify_step(steps["verify-p2p-write"])
    rd = r.verify_step(steps["verify-p2p-read"])
    assert wr["fio"]["ok"] and rd["fio"]["ok"] and rd["fio"]["verify_failures"] == []
    assert rd["fio"]["jobs"][0]["read"]["io_bytes"] == p.size and rd["check"] == "nvme_to_cmb"
    assert rep.device_status([rd], d)["checks"]["nvme_to_cmb"] == {"status": "verified"}
    with open(tmp_path / "sys/bus/pci/devices" / BDF / "p2pmem/allocate", "rb") as f:
        assert f.read(2) == b"\xca\xac"          # the last block fio read sits in the "CMB": header magic 0xacca
