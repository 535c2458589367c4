"""Pool samples over time: how long ``p2pmem/available`` sat near zero, and what the verdict says.

nvmet falls back to system memory request by request, without a word, when the provider's pool
cannot hand out a chunk of the request's size (kernel ``nvmet_req_alloc_sgls()``). The only
trace is ``available`` at or near zero while I/O runs. Synthetic series here; the lab's
too-small CMB (tests/lab/test_lab_offload.py) is the real one.
"""

from __future__ import annotations

import pytest

from nvmet_p2p.observe import evidence as ev

MiB = 1 << 20
KiB = 1 << 10
SUB = "nqn.2026-11.io.lab:small"
HOST = "nqn.2014-08.org.nvmexpress:uuid:3e6573f3-72c6-4641-bbac-d9ef310c2c99"
BDF = "0000:03:00.0"
NIC = ev.PortFacts(portid=1, trtype="rdma", traddr="10.77.1.1", rdma_device="rxp1", rdma_soft=False,
                   rdma_pci="0000:02:00.0", rdma_emulated="rxp1 is the lab's emulated RDMA NIC")


def series(values, step=1.0, size=2 * MiB, io_size=None, t0=100.0):
    st = ev.PoolStats(BDF, size=size, io_size=io_size)
    for i, v in enumerate(values):
        st.add(v, t0 + i * step)
    return st


def ctrl(mapped=True):
    return ev.ControllerEvidence(cntlid=1, subsystem=SUB, hostnqn=HOST, mappings={1: BDF} if mapped else {})


def decide(st, io=True, **kw):
    return ev.decide(subsystem=SUB, nsid=1, ns_enabled=True, p2pmem=BDF, ports=[NIC], ctrl=ctrl(),
                     pools={BDF: st}, io_during_sampling=io, **kw)


# -- the threshold ----------------------------------------------------------------------------

@pytest.mark.parametrize("size,io_size,want", [
    (64 * MiB, None, 1 * MiB),          # 1/64 of the pool
    (2 * MiB, None, 32 * KiB),
    (128 * KiB, None, 4 * KiB),         # at least one page
    (1024 * MiB, None, 1 * MiB),        # never more than nvmet-rdma's largest transfer
    (None, None, 1 * MiB),
    (64 * MiB, 128 * KiB, 128 * KiB),   # the hosts' I/O size when known
    (64 * MiB, 512, 4 * KiB),
    (64 * MiB, 4 * MiB, 1 * MiB),       # the host splits at MDTS: 1 MiB per command at most
])
def test_near_zero_threshold(size, io_size, want):
    assert ev.near_zero_threshold(size, io_size) == want


# -- time accounting ----------------------------------------------------------------------------

def test_time_at_zero_is_sample_and_hold():
    full = 1920 * KiB
    st = series([full, full - 1 * MiB, 0, 0, 256 * KiB, full], step=0.5)
    u = st.usage()
    assert u["window_s"] == 2.5
    assert u["seconds_at_zero"] == 1.0 and u["pct_at_zero"] == 40.0        # t=1.0..2.0
    assert u["samples_at_zero"] == 2 and u["samples_near_zero"] == 2       # 256 KiB > 32 KiB mark
    assert u["seconds_near_zero"] == 1.0
    assert u["peak_in_use"] == full and u["min_available"] == 0 and u["size"] == 2 * MiB
    assert st.exhausted and st.moved


def test_near_zero_counts_what_no_request_of_the_io_size_fits_in():
    st = series([1920 * KiB, 64 * KiB, 64 * KiB, 64 * KiB, 1920 * KiB], io_size=128 * KiB)
    u = st.usage()
    assert u["seconds_near_zero"] == 3.0 and u["pct_near_zero"] == 75.0 and u["seconds_at_zero"] == 0.0
    # the same samples without the I/O size: 64 KiB is above 1/64 of the pool (32 KiB)
    assert not series([1920 * KiB, 64 * KiB, 64 * KiB, 64 * KiB, 1920 * KiB]).exhausted


def test_samples_without_time_count_but_measure_no_time():
    st = ev.PoolStats(BDF, size=2 * MiB)
    for v in (2 * MiB, 0, 2 * MiB):
        st.add(v)
    u = st.usage()
    assert st.exhausted and u["samples_at_zero"] == 1
    assert u["window_s"] == 0 and u["pct_near_zero"] is None


@pytest.mark.parametrize("values", [
    [5, 0, 0, 7, 0, 3, 0, 0, 0, 9],
    [0] * 6,
    [2 * MiB] * 4,
    [1, 2, 3, 0],
])
@pytest.mark.parametrize("step", [0.1, 1.0, 3.7])
def test_shares_never_exceed_the_window(values, step):
    st = series(values, step=step)
    u = st.usage()
    assert u["window_s"] == pytest.approx(step * (len(values) - 1))
    assert 0 <= u["seconds_at_zero"] <= u["seconds_near_zero"] <= u["window_s"] + 1e-9
    # the last reading holds for no time: only the intervals that start with a zero count
    zeros = sum(1 for v in values[:-1] if v == 0)
    assert u["seconds_at_zero"] == pytest.approx(zeros * step)


def test_merge_adds_windows_of_a_run():
    a = series([2 * MiB, 0, 2 * MiB], io_size=128 * KiB)
    b = series([2 * MiB, 1 * MiB, 2 * MiB], io_size=1 * MiB)
    tot = ev.PoolStats(BDF, size=2 * MiB)
    tot.merge(a)
    tot.merge(b)
    assert (tot.samples, tot.minimum, tot.maximum, tot.window) == (6, 0, 2 * MiB, 4.0)
    assert tot.seconds_at_zero == 1.0 and tot.samples_near_zero == 1 and tot.io_size == 1 * MiB
    tot.merge(ev.PoolStats(BDF, errors=2))
    assert tot.errors == 2 and tot.samples == 6


def test_sampler_times_its_samples_with_its_clock():
    values = iter([1920 * KiB, 0, 0, 1920 * KiB])
    clock = iter([0.0, 0.25, 0.5, 0.75])
    s = ev.PoolSampler([BDF], root="/nonexistent", io_size=128 * KiB,
                       probe=ev.PoolProbe(read=lambda root, bdf: next(values), clock=lambda: next(clock)))
    for _ in range(4):
        s.sample_once()
    st = s.stats[BDF]
    assert st.io_size == 128 * KiB and st.window == 0.75 and st.seconds_at_zero == 0.5


# -- verdicts ------------------------------------------------------------------------------------

def test_pool_that_ran_out_while_used_is_partial_with_numbers():
    full = 1920 * KiB
    v = decide(series([full, 512 * KiB, 0, 0, 0, full], step=0.5, io_size=128 * KiB))
    assert v.verdict == ev.PARTIAL and v.reason == ev.R_POOL_EXHAUSTED and not v.active and v.partial
    assert v.headline().startswith("offload partial: pool exhausted: p2pmem/available of 0000:03:00.0")
    assert "for 1.5 s of 2.5 s (60%)" in v.detail
    assert "peak in use 1.9 MiB of a 2 MiB pool" in v.detail and "system memory" in v.detail
    assert "below 128 KiB (the largest I/O)" in v.detail and "lowest 0 B" in v.detail
    assert v.pool["seconds_at_zero"] == 1.5 and v.pool["pct_near_zero"] == 60.0
    assert v.pool["peak_in_use"] == full and v.pool["size"] == 2 * MiB
    assert v.headline().endswith("(emulated NIC)") and v.emulated.startswith("rxp1")
    assert v.to_dict()["pool"]["exhausted"] is True


def test_pool_stuck_near_zero_the_whole_window_is_inactive():
    v = decide(series([0, 0, 0, 0]))
    assert v.verdict == ev.INACTIVE and v.reason == ev.R_POOL_EXHAUSTED
    assert "every request got system memory" in v.detail and "for all 4 samples" in v.detail
    v = decide(series([0, 0, 0, 0]), io=False)
    assert v.reason == ev.R_POOL_EXHAUSTED and "any request gets system memory" in v.detail


def test_pool_used_with_room_to_spare_is_active():
    v = decide(series([64 * MiB, 61 * MiB, 62 * MiB, 64 * MiB], size=64 * MiB, io_size=128 * KiB))
    assert v.active and v.reason is None and v.headline() == "offload active (emulated NIC)"
    assert v.pool["peak_in_use"] == 3 * MiB and v.pool["seconds_near_zero"] == 0
    assert any("moved during I/O" in e for e in v.evidence)
    assert v.evidence[0] == "kernel: nvmet: using p2pmem on 0000:03:00.0 for nsid 1 (controller 1)"


def test_pool_never_moved_while_io_ran_is_still_pool_never_used():
    v = decide(series([64 * MiB] * 5, size=64 * MiB))
    assert v.reason == ev.R_POOL_UNUSED and not v.pool["exhausted"]


def test_a_pci_nic_that_is_not_emulated_carries_no_label():
    nic = ev.PortFacts(portid=1, trtype="rdma", traddr="10.0.0.1", rdma_device="mlx5_0", rdma_soft=False,
                       rdma_pci="0000:41:00.0")
    v = ev.decide(subsystem=SUB, nsid=1, ns_enabled=True, p2pmem=BDF, ports=[nic], ctrl=ctrl(),
                  pools={BDF: series([64 * MiB, 60 * MiB], size=64 * MiB)}, io_during_sampling=True)
    assert v.active and v.emulated is None and v.headline() == "offload active"


# -- status: the pool numbers and the emulated NIC in both outputs ---------------------------------

def test_status_quotes_the_pool_and_labels_the_emulated_nic():
    from test_status import HOST as H
    from test_status import SUB as S
    from test_status import lab_inventory, lab_state

    from nvmet_p2p.observe import status as st
    inv = lab_inventory()
    inv.rdma["mlx5_0"].emulated = ("the lab's emulated RDMA NIC (rxe_p2p on e1000e 0000:41:00.0): "
                                   "its DMA is done by CPU copies")
    log = ["nvmet: using p2pmem on 0000:03:00.0 for nsid 1",
           f"nvmet: Created nvm controller 7 for subsystem {S} for NQN {H}."]
    pool = series([1920 * KiB, 0, 0, 64 * KiB, 1920 * KiB], step=0.5, io_size=128 * KiB)
    rep = st.assemble(lab_state(("mlx",)), inv, ev.parse_log(log), pools={BDF: pool}, io_during_sampling=True)
    rep.sampling = {"seconds": 2.0, "interval": 0.5, "io_running": True, "io_size": 128 * KiB}
    d = rep.to_dict()
    (sub,) = d["subsystems"]
    assert sub["ports"][0]["rdma_emulated"].startswith("mlx5_0: the lab's emulated RDMA NIC")
    v = sub["namespaces"][0]["verdicts"][0]
    assert v["verdict"] == "offload partial" and v["emulated"].startswith("mlx5_0: the lab's emulated")
    assert v["pool"]["seconds_near_zero"] == 1.5 and v["pool"]["pct_near_zero"] == 75.0
    assert "distance 0000:03:00.0 -> mlx5_0 (PCI 0000:41:00.0)" not in " ".join(v["evidence"])  # no PCI tree here
    assert d["providers"][BDF]["sampled"]["seconds_near_zero"] == 1.5
    text = st.render(rep)
    assert "port 3: rdma 10.0.0.1:4420 via mlx5_0 (PCI 0000:41:00.0, the lab's emulated NIC)" in text
    assert "nsid 1 × controller 7: offload partial: pool exhausted: p2pmem/available of 0000:03:00.0" in text
    assert "(emulated NIC)" in text and "  emulated: mlx5_0: the lab's emulated RDMA NIC" in text
    assert "1.5 s (75%)" in text and "near zero = available below the largest I/O (128 KiB)" in text
    assert "      kernel: nvmet: using p2pmem on 0000:03:00.0 for nsid 1 (controller 7)" in text


def test_status_samples_first_then_reads_the_inventory(tmp_path, monkeypatch):
    """On a slow machine reading the inventory takes seconds: the window opens at once and
    samples in the main thread (a background sampler next to the CPU-bound inventory read was
    starved under TCG), and only then is the inventory read."""
    import time as _time

    import sysfsfixture as sf

    from nvmet_p2p.observe import status as st
    sf.q35_lab(tmp_path)                       # 0000:03:00.0 p2pmem 67108864/66977792
    avail = tmp_path / "sys/bus/pci/devices/0000:03:00.0/p2pmem/available"
    real = st.read_inventory
    calls = []

    def slow_inventory(root):
        calls.append(_time.monotonic())
        avail.write_text("65929216\n")         # after the window: must not be in it
        _time.sleep(0.2)
        return real(root)

    monkeypatch.setattr(st, "read_inventory", slow_inventory)
    monkeypatch.setattr(st, "read_log", lambda root: ([], {"source": "none", "records": 0}))
    assert st.pool_providers(str(tmp_path)) == ["0000:03:00.0", "0000:04:00.0", "0000:05:00.0"]
    t0 = _time.monotonic()
    rep = st.collect(str(tmp_path), sample_seconds=0.2, interval=0.02, all_subsystems=True)
    s = rep.providers["0000:03:00.0"]["sampled"]
    assert calls and calls[0] - t0 >= 0.2           # the inventory came after the window
    assert not s["moved"] and s["min"] == 66977792 and s["samples"] >= 2, s
    assert rep.sampling["seconds"] >= 0.2
