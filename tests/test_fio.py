"""fio: job files, JSON parsing and verify-failure parsing on real fio 3.33 output from the lab.

Every fixture under tests/fixtures/lab/ was produced by Debian's fio 3.33 inside the QEMU lab
(7.3 kernel, NVMe-oF over soft-RoCE and TCP); the scripts that produced them sit next to them
(capture1/capture.sh, e2e1/e2e.sh).
"""

from __future__ import annotations

import json
import os

import pytest

from nvmet_p2p.harness import fio as F
from nvmet_p2p.harness import workloads as W

LAB = os.path.join(os.path.dirname(__file__), "fixtures", "lab")


def load(*parts):
    with open(os.path.join(LAB, *parts)) as f:
        return f.read()


def doc(*parts):
    return F.load_json_document(load(*parts))


# -- JSON of local runs ----------------------------------------------------------------------

def test_sequential_read_over_rdma():
    jobs, agg, ver = F.parse_fio_output(doc("capture1", "fio-seqread.json"))
    assert ver == "fio-3.33" and agg is None and len(jobs) == 1
    j = jobs[0]
    assert j.name == "seqread-128k-qd8" and j.error == 0 and j.filename == "/dev/nvme4n2"
    assert j.read.io_bytes == 32 * 1048576 and j.write.io_bytes == 0
    assert j.read.bw_bytes == pytest.approx(j.read.io_bytes / (j.read.runtime_ms / 1000), rel=0.01)
    assert (j.read.p50_ns, j.read.p99_ns, j.read.p999_ns) == (19791872, 35913728, 50593792)
    assert j.usr_cpu == pytest.approx(5.288462) and j.sys_cpu == pytest.approx(5.929487)
    assert j.write.p50_ns is None


def test_random_read_iops_and_random_mixed_over_tcp():
    (j,), _, _ = F.parse_fio_output(doc("capture1", "fio-randread.json"))
    assert j.read.iops == pytest.approx(4655.189621) and j.iops == j.read.iops
    (m,), _, _ = F.parse_fio_output(doc("capture1", "fio-randrw-tcp.json"))
    assert m.read.iops > 0 and m.write.iops > 0 and m.iops == pytest.approx(m.read.iops + m.write.iops)


def test_two_jobs_in_one_run():
    jobs, _, _ = F.parse_fio_output(doc("capture1", "fio-twojobs.json"))
    assert [j.name for j in jobs] == ["a", "b"]
    assert jobs[0].options["rw"] == "read" and jobs[1].options["rw"] == "randread"
    assert all(j.filename == jobs[0].filename for j in jobs)  # from "global options"


def test_harness_job_names_and_integrity_write_with_backlog():
    jobs, _, _ = F.parse_fio_output(doc("e2e1", "bench-rdma", "integrity-write.json"))
    (j,) = jobs
    assert j.name == "integrity-write@nvme4n1" and j.filename == "/dev/nvme4n1"
    assert j.options["verify"] == "crc32c" and j.options["verify_backlog"] == "256"
    # verify_backlog: the write pass also reads every block back
    assert j.read.io_bytes == j.write.io_bytes == 32 * 1048576 and j.read.p50_ns and j.write.p50_ns


def test_verify_only_pass_fake_writes_are_not_measured():
    """fio reports the writes a verify_only pass pretends to do with runtime 0 and a bogus
    17 s completion latency (seen in the lab); they must not reach the summary."""
    raw = doc("e2e1", "bench-tcp", "integrity-verify.json")
    assert raw["jobs"][0]["write"]["runtime"] == 0
    assert raw["jobs"][0]["write"]["clat_ns"]["percentile"]["50.000000"] > 10e9
    (j,), _, _ = F.parse_fio_output(raw)
    assert j.write.p50_ns is None and j.write.bw_bytes == 0 and j.write.total_ios == 0
    assert j.read.bw_bytes > 0 and j.read.p50_ns < 1e9


def test_failed_verify_run_json():
    (j,), _, _ = F.parse_fio_output(doc("e2e1", "bench-rdma", "integrity-verify.json"))
    assert j.error == 84   # EILSEQ: what fio sets for a verify failure


# -- client/server mode ----------------------------------------------------------------------

def test_client_server_one_server():
    text = load("capture1", "fio-client1.json")
    assert not text.startswith("{")   # fio prints "<host>" lines before the JSON
    jobs, agg, _ = F.parse_fio_output(F.load_json_document(text))
    assert len(jobs) == 1 and agg is None
    assert jobs[0].host == "127.0.0.1" and jobs[0].filename == "/dev/nvme4n2"


def test_client_server_two_servers_and_all_clients_aggregate():
    jobs, agg, _ = F.parse_fio_output(doc("capture1", "fio-client2.json"))
    assert [(j.name, j.host) for j in jobs] == [("cs-read", "127.0.0.1"), ("cs-read", "127.0.0.1")]
    assert agg is not None and agg.name == "All clients"
    assert agg.read.io_bytes == sum(j.read.io_bytes for j in jobs)


def test_no_json_is_an_error():
    with pytest.raises(ValueError):
        F.load_json_document("fio: pid=1, err=84/file:io_u.c:2190, func=io_u_queued_complete, error=x\n")


# -- verify failures (stderr text) -----------------------------------------------------------

def test_lab_verify_failure_from_results():
    """The bench run in the lab overwrote 4 KiB block 300 of the backing device between the
    integrity write and verify passes; fio's message names that byte offset."""
    r = json.loads(load("e2e1", "bench-rdma", "results.json"))
    (f,) = r["integrity"]["failures"]
    msg = f["message"]
    (p,) = F.parse_verify_failures(msg)
    assert (p.file, p.offset, p.length, p.kind) == ("/dev/nvme4n1", 300 * 4096, 512, "bad magic")
    assert (p.block_offset, p.block_length, p.expected, p.received) == (1193472, 311808, "acca", "bc0")


STDERR = """fio: pid=11320, err=84/file:io_u.c:2190, func=io_u_queued_complete, error=Invalid or incomplete multibyte or wide character
verify: bad header offset 12582912, wanted 10412032 at file /dev/nvme4n1 offset 10485760, length 512 (requested block: offset=10412032, length=293888)
crc32c: verify failed at file /dev/nvme4n1 offset 10485760, length 512 (requested block: offset=10412032, length=293888, flags=88)
       Expected CRC: 3cb9ea60
       Received CRC: 1228cb7c
<10.0.0.2> verify: bad magic header 8cf7, wanted acca at file /dev/nvme1n1 offset 9437184, length 512 (requested block: offset=9293824, length=288256)
"""  # noqa: E501 (fio's own lines)


def test_verify_failure_kinds():
    a, b, c = F.parse_verify_failures(STDERR)
    assert (a.kind, a.offset, a.expected, a.received) == ("bad header offset", 10485760, "10412032", "12582912")
    assert (b.kind, b.algorithm, b.expected, b.received) == ("checksum", "crc32c", "3cb9ea60", "1228cb7c")
    assert (c.host, c.kind, c.file, c.offset) == ("10.0.0.2", "bad magic", "/dev/nvme1n1", 9437184)
    (e,) = F.parse_job_errors(STDERR)
    assert e["errno"] == 84 and e["func"] == "io_u_queued_complete"


def test_failures_are_named_by_job_through_the_file():
    fails = F.parse_verify_failures(STDERR)
    jobs = [F.JobResult(name="integrity-verify@nvme4n1", filename="/dev/nvme4n1"),
            F.JobResult(name="integrity-verify@nvme1n1", filename="/dev/nvme1n1", host="10.0.0.2")]
    F.assign_failures_to_jobs(fails, jobs)
    assert [f.job for f in fails] == ["integrity-verify@nvme4n1"] * 2 + ["integrity-verify@nvme1n1"]
    assert "job integrity-verify@nvme4n1" in fails[1].describe() and "10485760" in fails[1].describe()


# -- progress ----------------------------------------------------------------------------------

def test_eta_lines_from_the_lab():
    import re
    parts = [p for p in re.split(r"[\r\n]", load("capture1", "fio-eta.stdout")) if p.strip()]
    etas = [F.parse_eta(p) for p in parts]
    assert all(e is not None for e in etas)
    full = [e for e in etas if "pct" in e]
    assert full and full[-1]["pct"] == 100.0 and full[-1]["rate"] == "r=45.2MiB/s"
    assert full[0]["eta"] == "00m:01s" and full[0]["iops"] == "r=376 IOPS"


# -- job files ---------------------------------------------------------------------------------

def test_job_file_matches_what_the_lab_ran():
    w = W.integrity_workloads(size="32m")[0]
    text = F.job_file(w, ["/dev/nvme4n1"])
    assert text == load("e2e1", "bench-rdma", "integrity-write.fio")


def test_verify_pass_never_sets_verify_backlog():
    """fio 3.33: verify_only together with verify_backlog verifies nothing (seen in the lab)."""
    write, verify = W.integrity_workloads()
    assert write.options()["verify_backlog"] == "256" and write.options()["do_verify"] == "1"
    o = verify.options()
    assert o["verify_only"] == "1" and "verify_backlog" not in o and o["verify_fatal"] == "1"
    assert o["bsrange"] == write.options()["bsrange"] and o["randseed"] == write.options()["randseed"]


def test_timed_options():
    w = W.build_matrix("default", runtime=2.5, ramp=1)[0]
    o = w.options()
    assert o["time_based"] == "1" and o["runtime"] == "2500ms" and o["ramp_time"] == "1s"


# -- running real fio on a file (the harness's runner, not a fake) -----------------------------

def _have_fio():
    import shutil
    return shutil.which("fio") is not None


@pytest.mark.skipif(not _have_fio(), reason="fio is not installed (apt-get install fio)")
def test_run_fio_catches_corruption_between_phases(tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    write, verify = W.integrity_workloads(size="8m", iodepth=4)
    common = {"ioengine": "psync", "direct": "0"}   # a file in tmp: no O_DIRECT needed
    jf = tmp_path / "w.fio"
    jf.write_text(F.job_file(write, [str(img)], common))
    r1 = F.run_fio(write, str(jf), str(tmp_path / "w.json"), cwd=str(tmp_path))
    assert r1.ok, r1.problems()
    with open(img, "r+b") as f:       # the corruption: 4 KiB of garbage at 3 MiB
        f.seek(3 << 20)
        f.write(os.urandom(4096))
    jf2 = tmp_path / "v.fio"
    jf2.write_text(F.job_file(verify, [str(img)], common))
    r2 = F.run_fio(verify, str(jf2), str(tmp_path / "v.json"), cwd=str(tmp_path),
                   job_files={F.job_name(verify, str(img)): str(img)})
    assert not r2.ok
    (f,) = r2.verify_failures
    assert f.offset == 3 << 20 and f.file == str(img) and f.job == F.job_name(verify, str(img))
    assert (tmp_path / "v.stderr").read_text().count("verify") >= 1




def test_lab_verify_failure_stderr_with_dump_file():
    """stderr of the verify pass in the lab tier run (block 777 of the backing device
    overwritten between the passes): the offset, and the block fio dumped for inspection."""
    (f,) = F.parse_verify_failures(load("labrun1", "integrity-verify.stderr"))
    assert (f.kind, f.file, f.offset, f.length) == ("bad magic", "/dev/nvme4n1", 777 * 4096, 512)
    assert (f.block_offset, f.block_length) == (2787840, 612864)
    assert f.dumps == ["nvme4n1.3182592.hdr_fail"]
    (j,), _, _ = F.parse_fio_output(doc("labrun1", "integrity-verify.json"))
    assert j.error == 84 and j.name == "integrity-verify@nvme4n1"


class _InterruptedFio:
    """A fio process whose output read is cut by Ctrl-C; ``exits_after`` is the wait() timeout
    from which it exits (None: at once), as fio does once it has the SIGINT."""

    def __init__(self, exits_after=None):
        self.exits_after, self.signals, self.killed = exits_after, [], False
        self.stderr = iter(["fio: terminating on signal 2\n"])
        self.stdout = self

    def read(self, n):
        raise KeyboardInterrupt

    def wait(self, timeout=None):
        import subprocess
        if self.exits_after is not None and (timeout or 0) < self.exits_after and not self.killed:
            raise subprocess.TimeoutExpired("fio", timeout)
        return -9 if self.killed else 130

    def send_signal(self, sig):
        self.signals.append(sig)

    def kill(self):
        self.killed = True


@pytest.mark.parametrize("exits_after,code,signals", [
    (None, 130, []),            # the terminal's Ctrl-C reached fio: it exits by itself
    (60, 130, [2]),             # a SIGTERM to us only: fio is sent SIGINT and exits
    (600, -9, [2]),             # fio ignores SIGINT: killed
])
def test_run_fio_interrupted_stops_fio_and_still_parses(tmp_path, exits_after, code, signals):
    proc = _InterruptedFio(exits_after)
    w = W.build_matrix("default", runtime=1, ramp=0, qds=(1,))[0]
    with pytest.raises(F.FioInterrupted) as e:
        F.run_fio(w, "j.fio", str(tmp_path / "r.json"), popen=lambda *a, **k: proc)
    run = e.value.run
    assert (run.interrupted, run.returncode, proc.signals) == (True, code, signals)
    assert run.jobs == [] and (tmp_path / "r.stderr").read_text() == "fio: terminating on signal 2\n"
