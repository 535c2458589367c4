"""``nvmet-p2p metrics`` / ``exporter``: the exposition is parsed back with prometheus_client's
own parser; a synthetic lab machine (tests/sysfsfixture.py) with a target applied on the fake
configfs (tests/fakenvmet.py). The pool gauge on the real kernel: tests/lab/test_lab_metrics.py."""

from __future__ import annotations

import copy
import os
import threading
import urllib.request

import pytest
import sysfsfixture as sf
from fakenvmet import FakeNvmet
from prometheus_client.parser import text_string_to_metric_families

from nvmet_p2p import automation, cli
from nvmet_p2p.commands.exporter import parse_listen
from nvmet_p2p.nvmet import lastapply
from nvmet_p2p.observe import metrics as M

S = "nqn.2026-11.io.lab:m"
H = "nqn.2014-08.org.nvmexpress:uuid:h1"
DOC = {"hosts": [{"nqn": H}],
       "subsystems": [{"nqn": S, "attr": {"allow_any_host": "0"}, "allowed_hosts": [H],
                       "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme0n1"},
                                       "p2pmem": "0000:03:00.0"},
                                      {"nsid": 2, "enable": 0, "device": {"path": "/dev/nvme1n1"},
                                       "p2pmem": "0"}]}],
       "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "10.77.0.1",
                                        "trsvcid": "4420"}, "subsystems": [S]},
                 {"portid": 2, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "10.77.0.1",
                                        "trsvcid": "4421"}, "subsystems": [S]}]}

#: the label names of every family: a fixed, bounded set
LABELS = {
    "p2pmem_size_bytes": {"provider"}, "p2pmem_available_bytes": {"provider"},
    "p2pmem_published": {"provider"},
    "offload_active": {"subsystem", "nsid"},
    "offload_reason_info": {"subsystem", "nsid", "reason"},
    "offload_verdicts": {"verdict", "reason"}, "subsystems": {"allow_any_host"},
    "namespaces": {"enabled"}, "ports": {"trtype"}, "allowed_hosts": set(),
    "host_controllers": set(),
    "namespace_info": {"subsystem", "nsid", "device_path", "p2pmem", "mode"},
    "last_apply_success": set(), "last_apply_timestamp_seconds": set(),
    "last_apply_duration_seconds": set(), "last_apply_configfs_writes": set(),
    "last_apply_info": {"result", "source", "error_kind"},
    "doctor_can_offload": set(), "doctor_check": {"check", "status"},
    "applies": {"source"}, "apply_refusals": {"source", "error_kind"},
    "watch_reactions": {"decision", "action"},
    "ana_state": {"port", "grpid", "state"}, "ana_group_namespaces": {"grpid"},
    "saved_config_drift": set(),
    "build_info": {"version", "kernel"}, "collector_success": {"collector"},
    "collector_duration_seconds": {"collector"},
}


@pytest.fixture
def machine(tmp_path):
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    cfs = FakeNvmet(str(root))
    sd = str(tmp_path / "state")
    automation.apply(automation.desired_from(state_content=DOC, root=str(root)), root=str(root), state_dir=sd,
                     cfs=cfs)
    return str(root), sd


def parse(text: str) -> dict:
    """{family name: {(sorted label items): value}} through prometheus_client's parser."""
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.endswith("_created"):          # prometheus_client's _created beside a _total
            continue
        out.setdefault(fam.name, {})
        for s in fam.samples:
            out.setdefault(fam.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(fams, name, **labels):
    return fams[M.PREFIX + name][tuple(sorted(labels.items()))]


def test_exposition_parses_back_to_what_the_machine_shows(machine):
    root, sd = machine
    text = M.exposition(M.TargetCollector(root, state_dir=sd))
    assert text.endswith("\n") and "# HELP nvmet_p2p_offload_active" in text
    fams = parse(text)
    assert set(fams) == {M.PREFIX + n for n in LABELS}
    for name, labels in LABELS.items():
        for key in fams[M.PREFIX + name]:
            assert {k for k, _ in key} == labels, name
    assert value(fams, "p2pmem_size_bytes", provider="0000:03:00.0") == 64 << 20
    assert value(fams, "p2pmem_available_bytes", provider="0000:04:00.0") == 66977792
    assert value(fams, "offload_active", subsystem=S, nsid="1") == 0
    assert value(fams, "offload_reason_info", subsystem=S, nsid="1", reason="no_controller") == 1
    assert value(fams, "offload_reason_info", subsystem=S, nsid="2", reason="p2pmem_off") == 1
    assert value(fams, "offload_verdicts", verdict="inactive", reason="no_controller") == 1
    assert value(fams, "offload_verdicts", verdict="inactive", reason="p2pmem_off") == 1
    assert value(fams, "namespaces", enabled="true") == 1 == value(fams, "namespaces", enabled="false")
    assert value(fams, "ports", trtype="rdma") == 1 == value(fams, "ports", trtype="tcp")
    assert value(fams, "allowed_hosts") == 1 and value(fams, "subsystems", allow_any_host="false") == 1
    assert value(fams, "namespace_info", subsystem=S, nsid="1", device_path="/dev/nvme0n1",
                 p2pmem="0000:03:00.0", mode="pinned") == 1
    rec = lastapply.load(sd)
    assert value(fams, "last_apply_success") == 1 and rec.result == "applied"
    assert value(fams, "last_apply_configfs_writes") == rec.configfs_writes > 0
    assert value(fams, "last_apply_timestamp_seconds") == pytest.approx(rec.time)
    assert value(fams, "doctor_can_offload") == 0                      # soft RDMA only
    assert value(fams, "doctor_check", check="rdma", status="fail") == 1
    assert value(fams, "doctor_check", check="rdma", status="ok") == 0
    assert all(value(fams, "collector_success", collector=c) == 1
               for c in ("status", "doctor", "last_apply", "counters"))
    assert value(fams, "applies", source="automation") == 1           # the fixture's apply
    assert fams[M.PREFIX + "apply_refusals"] == {} and fams[M.PREFIX + "watch_reactions"] == {}


def test_a_failed_apply_and_an_unreadable_part(machine, tmp_path):
    root, sd = machine
    lastapply.save(sd, lastapply.LastApply(time=1.0e9, result="failed", source="ansible",
                                           error="step 3/9 failed: ... (EINVAL)", error_kind="kernel"))
    fams = parse(M.exposition(M.TargetCollector(root, state_dir=sd, doctor=False)))
    assert value(fams, "last_apply_success") == 0
    assert value(fams, "last_apply_info", result="failed", source="ansible", error_kind="kernel") == 1
    assert M.PREFIX + "doctor_check" not in fams
    col = M.TargetCollector(str(tmp_path / "nothing"), state_dir=str(tmp_path / "empty"))
    fams = parse(M.exposition(col))
    assert value(fams, "collector_success", collector="status") == 0
    assert M.PREFIX + "last_apply_success" not in fams               # no apply recorded yet
    assert "no such directory" in col.errors["status"]


def test_textfile_is_written_atomically_for_node_exporter(machine, tmp_path, capsys):
    root, sd = machine
    out = tmp_path / "tf" / "nvmet_p2p.prom"
    out.parent.mkdir()
    assert cli.main(["metrics", "--root", root, "--state-dir", sd, "--textfile", str(out)]) == 0
    assert os.listdir(out.parent) == ["nvmet_p2p.prom"]                # no temporary left
    assert os.stat(out).st_mode & 0o777 == 0o644
    first = parse(out.read_text())
    assert value(first, "p2pmem_published", provider="0000:05:00.0") == 1
    assert cli.main(["metrics", "--root", root, "--state-dir", sd, "--textfile",
                     str(tmp_path / "tf" / "x.txt")]) == 2
    assert "only *.prom" in capsys.readouterr().err
    assert cli.main(["metrics", "--root", root, "--textfile", str(tmp_path / "no" / "a.prom")]) == 2
    assert os.listdir(out.parent) == ["nvmet_p2p.prom"]


def test_metrics_json_and_stdout(machine, capsys):
    root, sd = machine
    assert cli.main(["metrics", "--root", root, "--state-dir", sd, "--no-doctor"]) == 0
    text = capsys.readouterr().out
    assert "nvmet_p2p_doctor_check" not in text and parse(text)
    assert cli.main(["metrics", "--root", root, "--state-dir", sd, "--json"]) == 0
    import json
    doc = json.loads(capsys.readouterr().out)
    s = [x for x in doc["samples"] if x["name"] == "nvmet_p2p_p2pmem_size_bytes"]
    assert len(s) == 3 and s[0]["type"] == "gauge" and doc["errors"] == {}


def test_exporter_serves_and_caches(machine):
    root, sd = machine
    calls = []

    class Counting(M.TargetCollector):
        def collect(self):
            calls.append(1)
            yield from super().collect()
    inner = Counting(root, state_dir=sd)
    col = M.CachedCollector(inner, min_interval=60)
    from nvmet_p2p.observe.exporter import make_server
    server = make_server(M.registry_for(col), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.effective_port}/metrics"
        bodies = [urllib.request.urlopen(url, timeout=10).read().decode() for _ in range(2)]
    finally:
        server.close()
    assert bodies[0] == bodies[1] and len(calls) == 1                 # the second one is cached
    assert value(parse(bodies[0]), "p2pmem_size_bytes", provider="0000:03:00.0") == 64 << 20


@pytest.mark.parametrize("signame,status", [("SIGTERM", 0), ("SIGINT", 130)])
def test_exporter_cli_stops_on_sigterm_and_ctrl_c(machine, signame, status):
    """SIGTERM (systemctl stop) is a normal end: 0; Ctrl-C is 130, as everywhere."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    root, sd = machine
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "nvmet_p2p", "exporter", "--root", root,
                          "--state-dir", sd, "--listen", f"127.0.0.1:{port}"],
                         stderr=subprocess.PIPE, text=True)
    try:
        assert "serving http://127.0.0.1" in p.stderr.readline()
        deadline = time.monotonic() + 20
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert b"nvmet_p2p_offload_active" in body
        p.send_signal(getattr(signal, signame))
        assert p.wait(timeout=20) == status
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("text,want", [("127.0.0.1:9878", ("127.0.0.1", 9878)),
                                       (":9100", ("0.0.0.0", 9100)),
                                       ("[::1]:80", ("::1", 80))])
def test_parse_listen(text, want):
    assert parse_listen(text) == want


@pytest.mark.parametrize("bad", ["9878", "host:", "host:0", "a:70000", "a:x"])
def test_parse_listen_refuses(bad, capsys):
    assert cli.main(["exporter", "--listen", bad]) == 2
    assert "expected ADDR:PORT" in capsys.readouterr().err


def test_thread_safety_of_the_cache(machine):
    root, sd = machine
    col = M.CachedCollector(M.TargetCollector(root, state_dir=sd), min_interval=0)
    errors = []

    def scrape():
        try:
            parse(M.exposition(col))
        except Exception as exc:   # noqa: BLE001 - collected for the assertion
            errors.append(exc)
    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_the_grafana_dashboard_uses_only_metrics_that_exist():
    import json
    import re
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "monitoring", "grafana", "nvmet-p2p.json")
    with open(path) as f:
        dash = json.load(f)
    assert dash["uid"] == "nvmet-p2p" and dash["templating"]["list"][0]["type"] == "datasource"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for t in p.get("targets", []):
            names = re.findall(r"\bnvmet_p2p_[a-z0-9_]+", t["expr"])
            assert names, t["expr"]
            names = [n.removeprefix(M.PREFIX).removesuffix("_total") for n in names]
            for n in names:
                assert n in LABELS, n
                used.add(n)
            for label in re.findall(r"\{\{(\w+)\}\}", t.get("legendFormat", "")):
                assert label == "instance" or any(label in LABELS[n] for n in names), (label, t["expr"])
            for label in re.findall(r"by \(([\w, ]+)\)", t["expr"]):
                assert all(x == "instance" or any(x in LABELS[n] for n in names)
                           for x in label.replace(" ", "").split(",")), (label, t["expr"])
            assert 'instance=~"$instance"' in t["expr"]
    assert {"p2pmem_available_bytes", "offload_reason_info", "offload_verdicts", "last_apply_success",
            "doctor_check", "namespace_info", "applies", "apply_refusals", "watch_reactions"} <= used


# ----------------------------------------------------------------------------------------------
# Naming (docs/metrics.md#naming-rules) and bounded series (docs/metrics.md#labels)
# ----------------------------------------------------------------------------------------------

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "metrics.md")


def documented() -> dict:
    """{metric: (type, {labels})} from the table of docs/metrics.md."""
    import re
    out = {}
    with open(DOCS, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\| `(nvmet_p2p_\w+)` \| (counter|gauge|gauge \(info\)) \|([^|]*)\|", line)
            if m:
                out[m.group(1)] = (m.group(2).split()[0], set(re.findall(r"`(\w+)`", m.group(3))))
    return out


def exposed(root, sd) -> dict:
    """{metric as written: (type, {labels})} of a scrape where every family has a sample."""
    from nvmet_p2p.nvmet import counters
    counters.count(sd, [("apply_refusals", {"source": "apply", "error_kind": "input"}),
                        ("watch_reactions", {"decision": "provider-lost", "action": "reported"})])
    out = {}
    for fam in text_string_to_metric_families(M.exposition(M.TargetCollector(root, state_dir=sd))):
        if fam.name.endswith("_created"):
            continue
        names = {s.name for s in fam.samples}
        assert len(names) == 1, (fam.name, names)
        out[names.pop()] = (fam.type, {k for s in fam.samples for k in s.labels})
    return out


def test_docs_list_every_metric_with_its_type_and_labels(machine):
    """docs/metrics.md is the reference (and the convention a new metric follows): every
    metric a scrape has is in its table with the same type and labels, and nothing else is."""
    assert exposed(*machine) == documented()


def test_names_follow_the_naming_guide(machine):
    import re
    got = exposed(*machine)
    for name, (typ, labels) in got.items():
        assert re.fullmatch(r"nvmet_p2p_[a-z][a-z0-9_]*[a-z0-9]", name), name
        assert name.endswith("_total") == (typ == "counter"), name
        assert not re.search(r"_(mib|kib|ms|milliseconds|percent)(_|$)", name), name
        assert not labels & {"cntlid", "controller", "traddr", "trsvcid", "host_traddr", "pid",
                             "time", "error", "message", "detail"}, (name, labels)
    assert {n for n in got if n.endswith("_total")} == {
        "nvmet_p2p_applies_total", "nvmet_p2p_apply_refusals_total", "nvmet_p2p_watch_reactions_total"}


def _verdict_doc(*verdicts) -> dict:
    return {"subsystems": [{"nqn": S, "namespaces": [
        {"nsid": 1, "verdicts": [{"cntlid": c, "verdict": v, "reason": r} for c, v, r in verdicts]}]}]}


def _series(fams) -> dict:
    return {(f.name, tuple(sorted(s.labels.items()))): s.value for f in fams for s in f.samples}


def test_a_reconnect_makes_no_new_series():
    """The kernel gives a host a new controller id at every connect: same series before and
    after (the README promises bounded labels; a cntlid label broke it)."""
    before = _series(M.offload_families(_verdict_doc((1, "inactive", "no_p2p_client_on_any_port"))))
    after = _series(M.offload_families(_verdict_doc((7, "inactive", "no_p2p_client_on_any_port"))))
    assert before == after
    assert before[("nvmet_p2p_offload_active", (("nsid", "1"), ("subsystem", S)))] == 0


def test_a_changed_reason_keeps_the_offload_series():
    """The reason is its own info series: offload_active keeps one series (its history goes on)
    whatever the reason, and active has none."""
    key = ("nvmet_p2p_offload_active", (("nsid", "1"), ("subsystem", S)))
    docs = [_verdict_doc((3, "inactive", "no_mapping_logged")),
            _verdict_doc((3, "offload partial", "pool_exhausted")),
            _verdict_doc((3, "offload active", None))]
    got = [_series(M.offload_families(d)) for d in docs]
    assert [g[key] for g in got] == [0, 0, 1]
    assert [{k[1] for k in g if k[0] == "nvmet_p2p_offload_reason_info"} for g in got] == [
        {(("nsid", "1"), ("reason", "no_mapping_logged"), ("subsystem", S))},
        {(("nsid", "1"), ("reason", "pool_exhausted"), ("subsystem", S))}, set()]


def test_one_gauge_per_namespace_over_several_controllers():
    two = _series(M.offload_families(_verdict_doc((1, "offload active", None),
                                                  (2, "inactive", "provider_unreachable_from_nic"))))
    assert two[("nvmet_p2p_offload_active", (("nsid", "1"), ("subsystem", S)))] == 0
    assert two[("nvmet_p2p_offload_reason_info", (("nsid", "1"), ("reason", "provider_unreachable_from_nic"),
                                                  ("subsystem", S)))] == 1
    assert two[("nvmet_p2p_offload_verdicts", (("reason", ""), ("verdict", "active")))] == 1
    both = _series(M.offload_families(_verdict_doc((1, "offload active", None), (2, "offload active", None))))
    assert both[("nvmet_p2p_offload_active", (("nsid", "1"), ("subsystem", S)))] == 1


def test_applies_are_counted_and_served_as_counters_by_every_reader(machine, tmp_path):
    """Counted by the process that applied; read the same by a scrape and by the textfile (a
    new process every time): the second and third apply are not lost between two readings."""
    import subprocess
    import sys
    root, sd = machine
    for _ in range(2):
        automation.apply(automation.desired_from(state_content=DOC, root=root), root=root, state_dir=sd,
                         cfs=FakeNvmet(root))
    text = M.exposition(M.TargetCollector(root, state_dir=sd, doctor=False))
    assert "# TYPE nvmet_p2p_applies_total counter" in text and "nvmet_p2p_applies_created{" in text
    assert value(parse(text), "applies", source="automation") == 3
    prom = tmp_path / "n.prom"
    subprocess.run([sys.executable, "-m", "nvmet_p2p", "metrics", "--root", root, "--state-dir", sd,
                    "--no-doctor", "--textfile", str(prom)], check=True)
    assert value(parse(prom.read_text()), "applies", source="automation") == 3


def test_an_unreadable_counter_file_is_one_collector_down(machine):
    root, sd = machine
    from nvmet_p2p.nvmet import counters
    with open(counters.path(sd), "w") as f:
        f.write("[")
    col = M.TargetCollector(root, state_dir=sd, doctor=False)
    fams = parse(M.exposition(col))
    assert value(fams, "collector_success", collector="counters") == 0
    assert value(fams, "collector_success", collector="status") == 1
    assert M.PREFIX + "applies" not in fams and "unreadable counter file" in col.errors["counters"]


def test_ana_state_per_port_and_group(tmp_path):
    """A namespace in ANA group 2, optimized through the tcp port and non-optimized through the
    rdma one: one series per state, 1 for the current; group 1 on both ports; the group's
    namespace count."""
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    cfs = FakeNvmet(str(root))
    sd = str(tmp_path / "state")
    doc = copy.deepcopy(DOC)
    doc["subsystems"][0]["namespaces"][0]["ana_grpid"] = 2
    doc["ports"][0]["ana_groups"] = [{"grpid": 2, "ana": {"state": "non-optimized"}}]
    doc["ports"][1]["ana_groups"] = [{"grpid": 2, "ana": {"state": "optimized"}}]
    automation.apply(automation.desired_from(state_content=doc, root=str(root)), root=str(root), state_dir=sd,
                     cfs=cfs)
    fams = parse(M.exposition(M.TargetCollector(str(root), state_dir=sd)))
    states = {k: v for k, v in fams[M.PREFIX + "ana_state"].items() if v == 1}
    got = {(dict(k)["port"], dict(k)["grpid"]): dict(k)["state"] for k in states}
    assert got == {("1", "1"): "optimized", ("1", "2"): "non-optimized",
                   ("2", "1"): "optimized", ("2", "2"): "optimized"}
    assert len(fams[M.PREFIX + "ana_state"]) == 4 * 5          # every state of every row
    assert value(fams, "ana_group_namespaces", grpid="2") == 1
    assert value(fams, "ana_group_namespaces", grpid="1") == 1
