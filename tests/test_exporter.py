"""``nvmet-p2p exporter`` under load (issue 19.11) and its paths (issue 22.10): the real command
in a subprocess on the synthetic machine, scraped over loopback.

0.1.0 served with prometheus_client's ``start_http_server`` (listen backlog 5, no socket
timeout, one thread per connection): 52 of 200 concurrent scrapes went unanswered within 20 s,
and each idle connection held a thread forever. The bounds below are this test's own (what an
operator can expect of one exporter process), not read from the code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import sysfsfixture as sf
from fakenvmet import FakeNvmet
from prometheus_client.parser import text_string_to_metric_families

from nvmet_p2p import automation

CLIENTS = 200
IDLE = 60                 # connections that send nothing
SLOW = 20                 # connections that send half a request line and stop
ANSWER_WITHIN = 20.0
MAX_THREADS = 16          # whatever the number of connections
MAX_RSS_GROWTH = 64 << 20
# long enough that a scraping thread of this busy process (200 of them) always gets its request
# out before the server counts its connection idle; short enough to watch the idle ones closed
IDLE_TIMEOUT = 6

DOC = {"hosts": [], "subsystems": [{"nqn": "nqn.2026-11.io.lab:x", "attr": {"allow_any_host": "0"},
                                    "namespaces": [{"nsid": 1, "enable": 1,
                                                    "device": {"path": "/dev/nvme0n1"}, "p2pmem": "0"}]}],
       "ports": []}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def exporter(tmp_path):
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    sd = str(tmp_path / "state")
    automation.apply(automation.desired_from(state_content=DOC, root=str(root)), root=str(root), state_dir=sd,
                     cfs=FakeNvmet(str(root)))
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "nvmet_p2p", "exporter", "--root", str(root),
                          "--state-dir", sd, "--listen", f"127.0.0.1:{port}", "--no-doctor",
                          "--idle-timeout", str(IDLE_TIMEOUT)],
                         stderr=subprocess.PIPE, text=True)
    try:
        assert "serving http://127.0.0.1" in p.stderr.readline()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/metrics", timeout=30).read()     # the first reading
                break
            except OSError:
                assert time.monotonic() < deadline and p.poll() is None
                time.sleep(0.2)
        yield p, port, url
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def scrape(url: str, results: list, start: threading.Event) -> None:
    start.wait()
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=ANSWER_WITHIN) as r:
            body = r.read().decode()
        ok = r.status == 200 and "nvmet_p2p_build_info" in body
        results.append(("answered" if ok else "wrong", time.monotonic() - t0))
    except OSError as exc:
        results.append((f"no answer: {exc}", time.monotonic() - t0))


def test_200_concurrent_scrapes_with_idle_connections_are_all_answered(exporter):
    p, port, url = exporter
    rss0 = rss_of(p.pid)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(IDLE)]
    slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(SLOW)]
    for s in slow:
        s.sendall(b"GET /metr")
    results: list = []
    start = threading.Event()
    clients = [threading.Thread(target=scrape, args=(url, results, start)) for _ in range(CLIENTS)]
    for c in clients:
        c.start()
    t0 = time.monotonic()
    start.set()
    peak_threads = peak_rss = 0
    while any(c.is_alive() for c in clients):
        peak_threads = max(peak_threads, threads_of(p.pid))
        peak_rss = max(peak_rss, rss_of(p.pid))
        time.sleep(0.05)
    took = time.monotonic() - t0
    for c in clients:
        c.join()
    failed = [r for r in results if r[0] != "answered"]
    assert len(results) == CLIENTS and failed == [], f"{len(failed)} of {CLIENTS}: {failed[:3]}"
    assert peak_threads <= MAX_THREADS, f"{peak_threads} threads with {CLIENTS + IDLE + SLOW} connections"
    assert peak_rss - rss0 <= MAX_RSS_GROWTH, (rss0, peak_rss)
    print(f"{CLIENTS} concurrent scrapes + {IDLE + SLOW} idle connections: all answered in "
          f"{took:.1f} s, slowest {max(r[1] for r in results):.2f} s, {peak_threads} threads, "
          f"RSS {rss0 >> 20} -> {peak_rss >> 20} MiB")
    # the idle and the half-sent connections are closed by the server after --idle-timeout
    deadline = time.monotonic() + IDLE_TIMEOUT + 15
    for s in idle + slow:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while s.recv(1024):          # EOF: closed by the server (after an error page, maybe)
                pass
        except socket.timeout:
            pytest.fail(f"an idle connection was still open {IDLE_TIMEOUT + 15} s later")
        finally:
            s.close()
    assert p.poll() is None


def test_paths_other_than_metrics_are_404_and_root_is_a_page(exporter):
    _p, _port, url = exporter
    for path in ("/nope", "/metrics/", "/favicon.ico", "/metricsx"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + path, timeout=20)
        assert e.value.code == 404, path
        assert b"/metrics" in e.value.read()
    with urllib.request.urlopen(url + "/", timeout=20) as r:
        page = r.read().decode()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    assert 'href="/metrics"' in page
    with urllib.request.urlopen(url + "/metrics?debug=1", timeout=20) as r:   # a query string
        fams = [f.name for f in text_string_to_metric_families(r.read().decode())]
    assert "nvmet_p2p_build_info" in fams


def test_sigterm_stops_it_with_connections_open(exporter):
    p, port, _url = exporter
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
    p.terminate()
    try:
        assert p.wait(timeout=20) == 0
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_idle_timeout_must_be_positive(bad, capsys):
    from nvmet_p2p import cli
    assert cli.main(["exporter", "--idle-timeout", bad]) == 2
    assert "--idle-timeout must be at least 1" in capsys.readouterr().err
