"""``bench`` end to end on plain files with the real fio (no target): matrix, integrity verdict,
corruption between the phases, results.json / CSV / Markdown / plots, A/B bookkeeping."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

import pytest

from nvmet_p2p import cli
from nvmet_p2p.harness import bench as B
from nvmet_p2p.harness import results as R
from nvmet_p2p.harness import workloads as W

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)")


@pytest.fixture(autouse=True)
def files_as_devices(monkeypatch):
    """These runs use plain files for namespaces: the command's refusal of anything but a block
    device (tested below) is lifted for them."""
    import nvmet_p2p.commands.bench as cmd
    real = cmd.check_block_device
    monkeypatch.setattr(cmd, "check_block_device", lambda dev: None)
    return real


def disk(tmp_path, name="disk.img", mib=24):
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(mib << 20)
    return str(p)


def test_bench_command_on_a_file_catches_the_corrupted_block(tmp_path, capsys):
    img = disk(tmp_path)
    out = tmp_path / "out"
    rc = cli.main(["bench", "--device", img, "--matrix", "quick", "--runtime", "1", "--ramp", "0",
                   "--integrity-size", "8m", "--allow-write", "--out", str(out), "--no-plots",
                   "--between-phases",
                   f"dd if=/dev/urandom of={img} bs=4096 seek=700 count=1 conv=notrunc status=none"])
    assert rc == 1
    text = capsys.readouterr().out
    assert "integrity: fail" in text and f"offset {700 * 4096}" in text
    r = json.loads((out / "results.json").read_text())
    assert r["schema"] == "nvmet-p2p/bench-results" and r["schema_version"] == 2
    assert [x["workload"]["name"] for x in r["runs"]] == [
        "seq-read-128k-qd16", "seq-write-128k-qd16", "rand-read-4k-qd16", "integrity-write", "integrity-verify"]
    (f,) = r["integrity"]["failures"]
    assert f["offset"] == 700 * 4096 and f["file"] == img and f["job"] == f"integrity-verify@{os.path.basename(img)}"
    assert r["integrity"]["verdict"] == "fail" and not r["ok"]
    s = r["runs"][0]["summary"]
    assert s["gb_per_s"] > 0 and s["iops"] > 0 and s["p99_ns"] >= s["p50_ns"] > 0
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert len(rows) == 5 and rows[0]["workload"] == "seq-read-128k-qd16" and float(rows[0]["read_gb_per_s"]) > 0
    md = (out / "summary.md").read_text()
    assert "## Integrity: **fail**" in md and str(700 * 4096) in md
    assert (out / "fio" / "integrity-verify.fio").exists() and (out / "fio" / "integrity-verify.stderr").exists()


def test_bench_clean_run_passes(tmp_path, capsys):
    img = disk(tmp_path)
    out = tmp_path / "out"
    rc = cli.main(["bench", "--device", img, "--matrix", "integrity", "--integrity-size", "4m",
                   "--allow-write", "--out", str(out), "--no-plots", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["ok"] and d["integrity"]["verdict"] == "pass"


def test_writes_need_permission(tmp_path, capsys):
    assert cli.main(["bench", "--device", disk(tmp_path), "--matrix", "quick"]) == 2
    assert "--allow-write" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--matrix", "quick"], "say where to run"),
    (["bench", "-t", "rdma", "--device", "/dev/x"], "exactly one"),
    (["bench", "-t", "tcp"], "needs --traddr"),
    (["bench", "--device", "/dev/x", "--workload", "nope"], "unknown workload"),
    (["bench", "--device", "/dev/x", "--qd", "0"], "queue depths"),
    (["bench", "--fio-server", "host1", "--workload", "seq-read-128k-qd1"], "HOST[,PORT]=DEVICE"),
])
def test_bad_arguments(argv, msg, capsys):
    assert cli.main(argv) == 2
    assert msg in capsys.readouterr().err


def test_device_must_be_an_existing_block_device(tmp_path, capsys, files_as_devices, monkeypatch):
    """`--device /dev/nvme9n1` says "no such device" before fio runs; a regular file or a
    character device is refused (fio would fill the file)."""
    import nvmet_p2p.commands.bench as cmd
    monkeypatch.setattr(cmd, "check_block_device", files_as_devices)
    ran = []
    monkeypatch.setattr(B.Bench, "run", lambda self: ran.append(self) or {})
    for dev, msg in ((str(tmp_path / "nvme9n1"), "no such device"),
                     (disk(tmp_path), "not a block device"), ("/dev/null", "not a block device")):
        assert cli.main(["bench", "--device", dev, "--workload", "seq-read-128k-qd16",
                         "--matrix", "quick", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert f"{dev}: {msg}" in err, err
    assert ran == [] and not (tmp_path / "o").exists()


class FlipToggle:
    def __init__(self):
        self.calls = []

    def set(self, v):
        self.calls.append(v)


def test_ab_rounds_interleave_and_give_medians_and_ratio(tmp_path):
    img = disk(tmp_path)
    wl = W.select(W.build_matrix("quick", runtime=1, ramp=0), ["seq-read-128k-qd16"])
    tog = FlipToggle()
    cfg = B.BenchConfig(workloads=wl, out_dir=str(tmp_path / "ab"), devices=[img], ab_rounds=2, plots=False)
    r = B.Bench(cfg, toggle=tog).run()
    assert tog.calls == ["p2p-on", "p2p-off", "p2p-on", "p2p-off"] and r["ab"]["order"] == tog.calls
    t = r["ab"]["workloads"]["seq-read-128k-qd16"]
    assert t["metric"] == "gb_per_s" and len(t["p2p-on"]) == 2 and len(t["p2p-off"]) == 2
    assert t["ratio_on_off"] == pytest.approx(t["median_on"] / t["median_off"])
    assert [(x["variant"], x["round"]) for x in r["runs"]] == [("p2p-on", 1), ("p2p-off", 1), ("p2p-on", 2),
                                                               ("p2p-off", 2)]


def test_ab_table_and_markdown_from_plain_data():
    def run(name, variant, v, bs="128k"):
        return {"workload": {"name": name, "bs": bs, "kind": "throughput", "rw": "read", "iodepth": 1},
                "variant": variant, "round": 1, "summary": {"gb_per_s": v, "iops": v * 1000},
                "fio": {"ok": True, "problems": [], "jobs": []}}
    runs = [run("a", "p2p-on", 2.0), run("a", "p2p-off", 1.0), run("a", "p2p-on", 4.0), run("a", "p2p-off", 1.0),
            run("r", "p2p-on", 1.0, "4k"), run("r", "p2p-off", 2.0, "4k")]
    t = R.ab_table(runs)
    assert t["a"]["median_on"] == 3.0 and t["a"]["ratio_on_off"] == 3.0
    assert t["r"]["metric"] == "iops" and t["r"]["ratio_on_off"] == 0.5
    md = R.markdown({"runs": runs, "ab": {"rounds": 2, "order": ["p2p-on", "p2p-off"], "workloads": t},
                     "emulated": R.EMULATED_LABEL})
    assert "QEMU, emulated; not a performance claim" in md and "| a | gb_per_s | 3.000 | 1.000 | 3.000 |" in md


def test_plots_are_drawn_or_skipped_with_a_note(tmp_path):
    from nvmet_p2p.harness import plots
    img = disk(tmp_path)
    wl = W.select(W.build_matrix("default", runtime=0.5, ramp=0, qds=(1, 4)),
                  ["seq-read-128k-qd1", "seq-read-128k-qd4", "rand-read-4k-qd1"])
    cfg = B.BenchConfig(workloads=wl, out_dir=str(tmp_path / "p"), devices=[img], ab_rounds=1, plots=True)
    r = B.Bench(cfg, toggle=FlipToggle()).run()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not os.environ.get("CI"), "CI installs the plots extra (tools/lab/setup): draw them"
        assert plots.NOTE_MISSING in r["notes"]
        return
    for png in ("throughput_vs_qd.png", "latency_percentiles.png", "ab.png"):
        p = tmp_path / "p" / png
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_local_toggle_goes_through_the_reconciler(tmp_path):
    """A/B on the local target: only the namespaces' p2pmem change, through reconcile()."""
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from test_apply_fake import DOC, S1, S2

    from nvmet_p2p.errors import InputError
    from nvmet_p2p.harness.ab import LocalToggle
    from nvmet_p2p.nvmet import statefile
    from nvmet_p2p.nvmet.apply import reconcile
    from nvmet_p2p.nvmet.configfs import read_state
    from support.fakenvmet import FakeNvmet

    cfs = FakeNvmet(str(tmp_path / "root"))
    sd = str(tmp_path / "state")
    reconcile(cfs.root, statefile.parse(DOC), sd, cfs=cfs)
    before = read_state(cfs)
    t = LocalToggle(cfs.root, [S1], state_dir=sd, cfs=cfs)
    w0 = cfs.writes
    t.set("p2p-off")
    live = read_state(cfs)
    assert [live.subsystems[S1].namespaces[i].attrs["p2pmem"] for i in (1, 2)] == ["0", "0"]
    assert all(ns.enable for ns in live.subsystems[S1].namespaces.values())
    assert live.subsystems[S2] == before.subsystems[S2] and live.ports == before.ports
    assert cfs.writes - w0 == 6          # per namespace: enable 0, p2pmem, enable 1
    t.set("p2p-on")
    t.set("p2p-on")                      # already on: zero writes
    assert t.outcomes[-1]["writes"] == 0
    assert read_state(cfs) == before
    t.set("p2p-off")
    t.restore()
    assert read_state(cfs) == before
    with pytest.raises(InputError, match="p2pmem 0"):
        LocalToggle(cfs.root, [S2], state_dir=sd, cfs=cfs)
    with pytest.raises(InputError, match="not on this machine"):
        LocalToggle(cfs.root, ["nqn.x:none"], state_dir=sd, cfs=cfs)


def test_many_initiators_through_fio_client_server(tmp_path):
    """Two 'initiators' = two fio servers (here both on localhost, different ports) driven by
    fio's own --client mode; the harness reads client_stats and fio's All-clients aggregate."""
    import socket
    import subprocess
    import time as _t

    ports, procs = [], []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    try:
        for p in ports:
            procs.append(subprocess.Popen(["fio", f"--server=ip:127.0.0.1,{p}"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        _t.sleep(1.0)
        a, b = disk(tmp_path, "a.img"), disk(tmp_path, "b.img")
        wl = W.select(W.build_matrix("quick", runtime=1, ramp=0), ["seq-read-128k-qd16"])
        cfg = B.BenchConfig(workloads=wl, out_dir=str(tmp_path / "cs"), plots=False,
                            fio_servers=[(f"ip:127.0.0.1,{ports[0]}", a), (f"ip:127.0.0.1,{ports[1]}", b)])
        r = B.Bench(cfg).run()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    assert r["ok"], r["problems"]
    (run,) = r["runs"]
    assert sorted(j["filename"] for j in run["fio"]["jobs"]) == [a, b]
    assert {j["host"] for j in run["fio"]["jobs"]} == {"127.0.0.1"}
    agg = run["fio"]["aggregate"]
    assert agg is not None and agg["read"]["io_bytes"] == sum(j["read"]["io_bytes"] for j in run["fio"]["jobs"])
    assert run["summary"]["gb_per_s"] == pytest.approx(agg["bw_bytes"] / 1e9)


def test_target_evidence_from_a_command(tmp_path):
    """--target-status-cmd: the target's status JSON for the window, filtered to our controllers."""
    status = {"schema": "nvmet-p2p/status", "subsystems": [
        {"nqn": "nqn.a", "controllers": [{"cntlid": 1}, {"cntlid": 2}],
         "namespaces": [{"nsid": 1, "verdicts": [{"cntlid": 1, "headline": "offload active"},
                                                  {"cntlid": 2, "headline": "inactive: x"}]}]},
        {"nqn": "nqn.other", "controllers": [], "namespaces": []}]}
    f = tmp_path / "status.json"
    f.write_text(json.dumps(status))
    from nvmet_p2p.observe.status import HostControllerHint
    hints = [HostControllerHint("nqn.a", 1, "rdma")]
    ev = B.CommandEvidence(f"sleep 0; cat {f} # window {{seconds}}", hints=lambda: hints,
                           subsystems=lambda: {"nqn.a"})
    assert ev._cmd(2.4) .endswith("window 2")
    ev.start(2.4)
    d = ev.stop(io_ran=True)
    (s,) = d["subsystems"]
    assert s["controllers"] == [{"cntlid": 1}] and s["namespaces"][0]["verdicts"] == [
        {"cntlid": 1, "headline": "offload active"}]
    bad = B.CommandEvidence("echo oops; exit 3")
    bad.start(1)
    assert "no JSON (exit 3)" in bad.stop(True)["error"]
    assert B.NoEvidence().final()["error"].startswith("target not reachable")


def test_auto_evidence_is_local_only_when_the_subsystem_is_here(tmp_path):
    (tmp_path / "sys/kernel/config/nvmet/subsystems/nqn.here").mkdir(parents=True)
    here = B.AutoEvidence(str(tmp_path), subsystems=lambda: {"nqn.here"})
    assert isinstance(here._pick(), B.LocalEvidence)
    away = B.AutoEvidence(str(tmp_path), subsystems=lambda: {"nqn.elsewhere"})
    assert isinstance(away._pick(), B.NoEvidence) and away.final()["error"].startswith("target not reachable")


def test_integrity_blocks_fit_a_4k_native_device(tmp_path):
    (tmp_path / "sys/block/nvme7n1/queue").mkdir(parents=True)
    (tmp_path / "sys/block/nvme7n1/queue/logical_block_size").write_text("4096\n")
    wl = W.integrity_workloads(size="4m")
    b = B.Bench(B.BenchConfig(workloads=wl, out_dir=str(tmp_path / "o"), devices=["/dev/nvme7n1"],
                              root=str(tmp_path)))
    b._fit_block_sizes()
    assert [w.bsrange for w in wl] == ["4096-1028k", "4096-1028k"]


class PoolEvidence:
    """A target whose provider's pool runs out in every p2p-on round and is untouched in the
    p2p-off rounds (the evidence the local target would give; here made by a real PoolStats
    and evidence.decide from a synthetic series)."""

    BDF = "0000:03:00.0"

    def __init__(self, toggle):
        self.toggle = toggle
        self.io_sizes = []

    def start(self, seconds_hint, io_size=None):
        self.io_sizes.append(io_size)

    def stop(self, io_ran):
        from nvmet_p2p.observe import evidence as ev
        on = self.toggle.calls[-1] == "p2p-on"
        st = ev.PoolStats(self.BDF, size=2 << 20, io_size=self.io_sizes[-1])
        for i, v in enumerate([1920 << 10, 0, 0, 1920 << 10] if on else [1920 << 10] * 4):
            st.add(v, i * 0.5)
        ctrl = ev.ControllerEvidence(cntlid=4, subsystem="nqn.a", hostnqn="h",
                                     mappings={1: self.BDF} if on else {})
        nic = ev.PortFacts(1, "rdma", "10.0.0.1", "rxp1", False, "0000:02:00.0",
                           rdma_emulated="rxp1 is the lab's emulated RDMA NIC")
        v = ev.decide(subsystem="nqn.a", nsid=1, ns_enabled=True, p2pmem=self.BDF if on else "0",
                      ports=[nic], ctrl=ctrl, pools={self.BDF: st}, io_during_sampling=io_ran)
        return {"providers": {self.BDF: {"size": 2 << 20, "sampled": st.to_dict()},
                              "0000:04:00.0": {"size": 2 << 20, "sampled": {"samples": 4, "min": 5, "max": 5}}},
                "subsystems": [{"nqn": "nqn.a", "namespaces": [
                    {"nsid": 1, "mode": "pinned" if on else "off", "p2pmem": self.BDF if on else "0",
                     "verdicts": [v.to_dict()]}]}]}

    def final(self):
        return None


def test_ab_reports_the_pool_usage_of_every_round(tmp_path):
    img = disk(tmp_path)
    wl = W.select(W.build_matrix("quick", runtime=0.5, ramp=0), ["seq-read-128k-qd16"])
    tog = FlipToggle()
    cfg = B.BenchConfig(workloads=wl, out_dir=str(tmp_path / "ab"), devices=[img], ab_rounds=2, plots=True)
    evid = PoolEvidence(tog)
    r = B.Bench(cfg, toggle=tog, evidence=evid).run()
    assert evid.io_sizes == [128 << 10] * 4                    # the workload's block size
    assert r["pool_providers"] == [PoolEvidence.BDF]            # the other pool is not ours
    on, off = r["runs"][0], r["runs"][1]
    assert list(on["pool"]) == [PoolEvidence.BDF] and list(off["pool"]) == [PoolEvidence.BDF]
    u = on["pool"][PoolEvidence.BDF]
    assert (u["min_available"], u["peak_in_use"], u["moved"], u["seconds_at_zero"]) == (0, 1920 << 10, True, 1.0)
    assert u["pct_near_zero"] == pytest.approx(66.7) and u["exhausted"]
    assert off["pool"][PoolEvidence.BDF]["moved"] is False and off["pool"][PoolEvidence.BDF]["peak_in_use"] == 0
    (row,) = on["offload"]
    assert row["verdict"] == "offload partial" and row["reason"] == "pool_exhausted"
    assert row["headline"].startswith("offload partial: pool exhausted") and row["emulated"]
    assert off["offload"][0]["reason"] == "p2pmem_off"
    p = r["ab"]["pool"]["seq-read-128k-qd16"]
    assert p["median_peak_on"] == 1920 << 10 and p["median_peak_off"] == 0
    assert [x["round"] for x in p["p2p-on"]] == [1, 2]
    saved = json.loads((tmp_path / "ab" / "results.json").read_text())
    assert saved["schema_version"] == 2 and saved["ab"]["pool"]["seq-read-128k-qd16"] == p
    md = (tmp_path / "ab" / "summary.md").read_text()
    assert "| seq-read-128k-qd16 | gb_per_s |" in md and "| 1.9 MiB | 0.0 MiB |" in md
    assert "## p2pmem pools while each run ran (target side)" in md
    assert (f"| seq-read-128k-qd16 | p2p-on | 1 | {PoolEvidence.BDF} | 2.0 MiB | 0.0 MiB | 1.9 MiB | yes "
            f"| 1.0 s (67%) | offload partial |") in md
    assert "**offload partial: pool exhausted" in md
    from nvmet_p2p.commands.bench import _human
    text = _human(r, "OUT")
    assert "pool peak in use on 1.9 MiB / off 0.0 MiB" in text and "-> ratio" in text
    assert "seq-read-128k-qd16 p2p-on r1: nsid 1 × controller 4: offload partial: pool exhausted" in text
    assert "pool peak  near zero" in text and "1.9 MiB    1.0 s (67%)" in text


def test_csv_carries_the_pool_of_each_job_and_the_off_rounds_control():
    res = {"connections": [{"subsysnqn": "nqn.a", "namespaces": [{"nsid": 1, "device": "/dev/nvme4n1"}]}],
           "runs": []}
    job = {"name": "j", "filename": "/dev/nvme4n1", "read": {"total_ios": 5, "bw_bytes": 1e9}, "iops": 1.0,
           "write": {"total_ios": 0, "bw_bytes": 0}, "cpu_pct": 1.0, "error": 0}
    wl = {"name": "w", "rw": "read", "bs": "128k", "iodepth": 1}
    pool = {"0000:03:00.0": {"min_available": 0, "peak_in_use": 7, "moved": True, "seconds_near_zero": 1.5,
                             "pct_near_zero": 37.5}}
    res["runs"] = [
        {"workload": wl, "variant": "p2p-on", "round": 1, "fio": {"jobs": [job]}, "pool": pool,
         "offload": [{"subsystem": "nqn.a", "nsid": 1, "verdict": "offload partial", "provider": "0000:03:00.0"}]},
        {"workload": wl, "variant": "p2p-off", "round": 1, "fio": {"jobs": [job]},
         "pool": {"0000:03:00.0": {"min_available": 9, "peak_in_use": 0, "moved": False, "seconds_near_zero": 0.0,
                                   "pct_near_zero": 0.0}},
         "offload": [{"subsystem": "nqn.a", "nsid": 1, "verdict": "inactive", "provider": None}]}]
    rows = list(csv.DictReader(io.StringIO(R.csv_text(res))))
    assert list(rows[0])[-7:] == ["offload", "pool_provider", "pool_min_available", "pool_peak_in_use",
                                  "pool_moved", "pool_near_zero_s", "pool_near_zero_pct"]
    assert [rows[0][k] for k in ("offload", "pool_provider", "pool_peak_in_use", "pool_moved", "pool_near_zero_s")] \
        == ["offload partial", "0000:03:00.0", "7", "yes", "1.5"]
    assert [rows[1][k] for k in ("offload", "pool_provider", "pool_peak_in_use", "pool_moved")] \
        == ["inactive", "0000:03:00.0", "0", "no"]


def test_largest_io_of_a_workload():
    from nvmet_p2p.harness.fio import Workload
    assert B.largest_io(Workload("a", "read", bs="128k")) == 128 << 10
    assert B.largest_io(Workload("b", "randwrite", bsrange="512-1028k")) == 1028 << 10
    assert B.largest_io(Workload("c", "read", bs="4096")) == 4096
    assert B.largest_io(Workload("d", "read", bs="1m")) == 1 << 20
    assert B.largest_io(Workload("e", "read")) is None


def test_end_evidence_is_judged_on_every_window_of_the_run(tmp_path, monkeypatch):
    """LocalEvidence.final: a pool that ran out in one window makes the end verdict partial."""
    from nvmet_p2p.observe import evidence as ev
    from nvmet_p2p.observe import status as st
    seen = {}

    def collect(root, **kw):
        s = kw["sampler"]
        seen.update(seconds=s.stopped - s.started, io=kw["io_during_sampling"], stats=s.stats)
        return st.StatusReport()

    monkeypatch.setattr(st, "collect", collect)
    le = B.LocalEvidence(str(tmp_path))
    le._inv = object()
    win = ev.PoolStats("0000:04:00.0", size=2 << 20, io_size=128 << 10)
    for i, v in enumerate((1920 << 10, 0, 0, 1920 << 10)):
        win.add(v, i * 0.5)
    le.all_pools["0000:04:00.0"] = ev.PoolStats("0000:04:00.0", size=2 << 20)
    le.all_pools["0000:04:00.0"].merge(win)
    d = le.final()
    assert seen["io"] is True and seen["seconds"] == pytest.approx(1.5, abs=0.1)
    assert seen["stats"]["0000:04:00.0"].exhausted and d["pools_over_run"]["0000:04:00.0"]["exhausted"]
