"""Kernel-log parsing (every wording of docs/kernel-log.md#the-lines), correlation, verdict
rules (docs/kernel-log.md#how-status-decides)."""

from __future__ import annotations

import os

import pytest

from nvmet_p2p.kmsg import parse_text
from nvmet_p2p.observe import evidence as ev

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "lab", "capture1")
HOST = "nqn.2014-08.org.nvmexpress:uuid:3e6573f3-72c6-4641-bbac-d9ef310c2c99"
SUB = "nqn.2026-11.io.lab:harness"


# -- one line of each wording ---------------------------------------------------------------

LINES = [
    # (line, kind, expected fields, wording)
    ("[   10.1] nvmet: using p2pmem on 0000:03:00.0 for nsid 1",
     ev.KIND_P2P_MAPPED, {"provider": "0000:03:00.0", "nsid": 1}, "current"),
    ("nvmet: using p2pmem on 0000:3b:00.0 for nsid 4294967294",
     ev.KIND_P2P_MAPPED, {"provider": "0000:3b:00.0", "nsid": 4294967294}, "current"),
    ("[  9.0] nvmet: no peer-to-peer memory is available that's supported by mlx5_0 and /dev/nvme3n1",
     ev.KIND_NO_P2P_FOR_CTRL, {"client": "mlx5_0", "device": "/dev/nvme3n1"}, "current"),
    ("nvmet: no peer-to-peer memory is available for /dev/nvme3n1",
     ev.KIND_NO_P2P_FOR_NS, {"device": "/dev/nvme3n1"}, "current"),
    ("nvmet: peer-to-peer DMA is not supported by non-block device namespaces",
     ev.KIND_NOT_BDEV, {}, "current"),
    ("nvmet: peer-to-peer DMA is not supported by the driver of /dev/md0",
     ev.KIND_DRIVER_NO_P2P, {"device": "/dev/md0"}, "current"),
    ("nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:04:00.0) "
     "do not share an upstream bridge or whitelisted host bridge",
     ev.KIND_NO_COMMON_BRIDGE, {"client": "0000:06:00.0", "provider": "0000:04:00.0"}, "current"),
    # 4.20-5.4
    ("nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:04:00.0) "
     "do not share an upstream bridge",
     ev.KIND_NO_COMMON_BRIDGE, {"client": "0000:06:00.0", "provider": "0000:04:00.0"}, "old"),
    # proposed HMAT series
    ("mlx5_core 0000:41:00.0: cannot be used for peer-to-peer DMA as the client and provider "
     "(0000:03:00.0) do not share an upstream bridge, whitelisted host bridge, or HMAT-described P2P path",
     ev.KIND_NO_COMMON_BRIDGE, {"client": "0000:41:00.0", "provider": "0000:03:00.0"}, "proposed"),
    ("mlx5_core 0000:41:00.0: ACS redirect is set between the client and provider (0000:03:00.0)",
     ev.KIND_ACS_REDIRECT, {"client": "0000:41:00.0", "provider": "0000:03:00.0"}, "current"),
    # 4.20-5.4: prefixed and fatal
    ("mlx5_core 0000:41:00.0: cannot be used for peer-to-peer DMA as ACS redirect is set between the "
     "client and provider (0000:03:00.0)",
     ev.KIND_ACS_REDIRECT, {"client": "0000:41:00.0", "provider": "0000:03:00.0"}, "old"),
    ("mlx5_core 0000:41:00.0: to disable ACS redirect for this path, add the kernel parameter: "
     "pci=disable_acs_redir=0000:40:01.0;0000:41:00.0",
     ev.KIND_ACS_PARAMETER, {"kernel_parameter": "pci=disable_acs_redir=0000:40:01.0;0000:41:00.0"}, "current"),
    ("mlx5_core 0000:41:00.0: to disable ACS controls for this path, add the kernel parameter: "
     "pci=disable_acs_redir=0000:40:01.0",
     ev.KIND_ACS_PARAMETER, {"kernel_parameter": "pci=disable_acs_redir=0000:40:01.0"}, "proposed"),
    ("mlx5_core 0000:41:00.0: ACS blocks the direct P2P path to provider 0000:03:00.0 at 0000:40:01.0",
     ev.KIND_ACS_BLOCKS, {"client": "0000:41:00.0", "provider": "0000:03:00.0"}, "proposed"),
    ("pcieport 0000:00:00.0: Host bridge not in P2PDMA whitelist: 8086:29c0",
     ev.KIND_HOST_BRIDGE_NOT_WHITELISTED, {}, "current"),
    ("nvme-subsystem nvme-subsys4: cannot be used for peer-to-peer DMA as it is not a PCI device",
     ev.KIND_NOT_PCI, {"client": "nvme-subsys4"}, "current"),
    ("infiniband rxe0: cannot be used for peer-to-peer DMA because the driver makes use of dma_virt_ops",
     ev.KIND_VIRT_DMA, {"client": "rxe0"}, "old"),
    ("nvme 0000:06:00.0: PCI device has no peer-to-peer memory: 0000:06:00.0",
     ev.KIND_PROVIDER_WITHOUT_P2PMEM, {"provider": "0000:06:00.0"}, "current"),
    ("pci-p2pdma: No such PCI device: auto", ev.KIND_NO_SUCH_PROVIDER, {"provider": "auto"}, "current"),
    ("[    4.50] nvme 0000:04:00.0: added peer-to-peer DMA memory 0xf4000000-0xf7ffffff",
     ev.KIND_PROVIDER_ADDED, {"provider": "0000:04:00.0"}, "current"),
    ("nvme 0000:04:00.0: added peer-to-peer DMA memory [mem 0xf4000000-0xf7ffffff 64bit pref]",
     ev.KIND_PROVIDER_ADDED, {"provider": "0000:04:00.0"}, "current"),
    ("nvme 0000:04:00.0: failed to register the CMB", ev.KIND_CMB_FAILED, {"provider": "0000:04:00.0"}, "current"),
    ("pcieport 0000:02:00.0: Configured ACS to 0x001d", ev.KIND_ACS_CONFIGURED, {}, "current"),
    ("pcieport 0000:00:04.0: disabled ACS redirect", ev.KIND_ACS_CONFIGURED, {"client": "0000:00:04.0"}, "current"),
    ("pcieport 0000:00:05.0: cannot disable ACS redirect for this hardware as it does not have ACS capabilities",
     ev.KIND_ACS_CONFIGURED, {}, "current"),
    ("PCI: Can't parse ACS command line parameter", ev.KIND_ACS_PARAM_ERROR, {}, "current"),
    # controller creation, three generations + suffixes
    (f"[    9.912292] nvmet: Created nvm controller 1 for subsystem {SUB} for NQN {HOST}.",
     ev.KIND_CTRL_CREATED, {"cntlid": 1, "subsystem": SUB, "hostnqn": HOST, "ctrl_type": "nvm"}, "current"),
    (f"nvmet: Created nvm controller 3 for subsystem {SUB} for NQN {HOST} with DH-HMAC-CHAP.",
     ev.KIND_CTRL_CREATED, {"cntlid": 3, "hostnqn": HOST}, "current"),
    (f"nvmet: Created nvm controller 4 for subsystem {SUB} for NQN {HOST} T10-PI is enabled.",
     ev.KIND_CTRL_CREATED, {"cntlid": 4, "hostnqn": HOST}, "current"),
    (f"nvmet: creating nvm controller 2 for subsystem {SUB} for NQN {HOST}.",
     ev.KIND_CTRL_CREATED, {"cntlid": 2, "hostnqn": HOST, "ctrl_type": "nvm"}, "current"),
    (f"nvmet: creating controller 5 for subsystem {SUB} for NQN {HOST}.",
     ev.KIND_CTRL_CREATED, {"cntlid": 5, "subsystem": SUB}, "current"),
    (f"nvmet: Created discovery controller 1 for subsystem nqn.2014-08.org.nvmexpress.discovery for NQN {HOST}.",
     ev.KIND_CTRL_CREATED, {"cntlid": 1, "ctrl_type": "discovery"}, "current"),
]


@pytest.mark.parametrize("line,kind,fields,wording", LINES,
                         ids=[f"{k}-{w}-{i}" for i, (_, k, _f, w) in enumerate(LINES)])
def test_every_wording_parses(line, kind, fields, wording):
    e = ev.parse_line(line)
    assert e is not None, line
    assert e.kind == kind
    assert e.wording == wording
    for k, v in fields.items():
        assert getattr(e, k) == v, (k, getattr(e, k))


@pytest.mark.parametrize("prefix", ["", "[   12.345678] ", "<4>[   12.345678] ", "6,1234,12345678,-;",
                                    "Nov 25 12:00:01 labvm kernel: "])
def test_prefixes_of_every_log_source(prefix):
    e = ev.parse_line(prefix + "nvmet: using p2pmem on 0000:03:00.0 for nsid 7")
    assert e and e.kind == ev.KIND_P2P_MAPPED and e.nsid == 7
    if prefix.startswith("6,"):
        assert e.seq == 1234 and e.time == pytest.approx(12.345678)
    elif "[" in prefix:
        assert e.time == pytest.approx(12.345678)


@pytest.mark.parametrize("line", [
    "nvme nvme4: creating 2 I/O queues.",
    "nvmet_rdma: enabling port 1 (10.77.0.1:4420)",
    "nvme nvme4: new ctrl: NQN \"nqn.2026-11.io.lab:harness\", addr 10.77.0.1:4420",
    "nvmet: adding nsid 1 to subsystem nqn.2026-11.io.lab:harness",
    "random: crng init done",
])
def test_unrelated_lines_are_ignored(line):
    assert ev.parse_line(line) is None


# -- the real lab log ------------------------------------------------------------------------

def test_real_lab_dmesg_capture():
    """Soft-RoCE + TCP connects to a subsystem with p2pmem set: controllers, no mapping."""
    with open(os.path.join(FIX, "dmesg.txt")) as f:
        events = ev.parse_log(f)
    kinds = [e.kind for e in events]
    assert kinds.count(ev.KIND_PROVIDER_ADDED) == 3
    assert ev.KIND_P2P_MAPPED not in kinds
    ctrls = ev.correlate(events)
    nvm = [c for c in ctrls if c.ctrl_type == "nvm"]
    assert [(c.cntlid, c.subsystem, c.hostnqn) for c in nvm] == [(1, SUB, HOST), (2, SUB, HOST)]
    assert all(c.mappings == {} for c in nvm)
    disc = [c for c in ctrls if c.ctrl_type == "discovery"]
    assert len(disc) == 2 and disc[0].superseded and not disc[1].superseded


def test_real_lab_kmsg_records_through_the_kmsg_reader():
    with open(os.path.join(FIX, "kmsg.txt")) as f:
        recs = parse_text(f.read())
    events = ev.parse_log(recs)
    created = [e for e in events if e.kind == ev.KIND_CTRL_CREATED and e.ctrl_type == "nvm"]
    assert [e.cntlid for e in created] == [1, 2]
    assert created[0].seq == 518 and created[0].time == pytest.approx(9.912292)


def test_correlation_assigns_mapping_lines_to_the_next_controller():
    log = [
        "nvmet: using p2pmem on 0000:03:00.0 for nsid 1",
        "nvmet: using p2pmem on 0000:04:00.0 for nsid 2",
        f"nvmet: Created nvm controller 1 for subsystem {SUB} for NQN {HOST}.",
        "nvmet: no peer-to-peer memory is available that's supported by mlx5_1 and /dev/nvme2n1",
        f"nvmet: Created nvm controller 2 for subsystem {SUB} for NQN {HOST}.",
        f"nvmet: Created nvm controller 1 for subsystem {SUB} for NQN other-host.",
        "nvmet: using p2pmem on 0000:05:00.0 for nsid 3",   # ns enabled later: no Created after it
    ]
    events = ev.parse_log(log)
    c1, c2, c1b = ev.correlate(events)
    assert c1.mappings == {1: "0000:03:00.0", 2: "0000:04:00.0"} and c1.superseded
    assert c2.mappings == {} and c2.refusals[0].kind == ev.KIND_NO_P2P_FOR_CTRL
    assert c1b.mappings == {} and c1b.hostnqn == "other-host" and not c1b.superseded
    assert [e.provider for e in ev.late_mappings(events)] == ["0000:05:00.0"]


# -- verdict rules ---------------------------------------------------------------------------

RDMA_SOFT = ev.PortFacts(portid=1, trtype="rdma", traddr="10.77.0.1", rdma_device="rxe_dummy", rdma_soft=True)
RDMA_PCI = ev.PortFacts(portid=3, trtype="rdma", traddr="10.0.0.1", rdma_device="mlx5_0", rdma_soft=False,
                        rdma_pci="0000:41:00.0")
TCP = ev.PortFacts(portid=2, trtype="tcp", traddr="127.0.0.1")


def ctrl(mappings=None, refusals=()):
    c = ev.ControllerEvidence(cntlid=1, subsystem=SUB, hostnqn=HOST, mappings=dict(mappings or {}))
    c.refusals = [ev.parse_line(r) for r in refusals]
    return c


def decide(**kw):
    base = dict(subsystem=SUB, nsid=1, ns_enabled=True, p2pmem="0000:03:00.0", ports=[RDMA_PCI], ctrl=ctrl())
    base.update(kw)
    return ev.decide(**base)


def test_p2pmem_off():
    v = decide(p2pmem="0")
    assert v.verdict == ev.INACTIVE and v.reason == ev.R_P2PMEM_OFF


def test_namespace_disabled():
    assert decide(ns_enabled=False).reason == ev.R_NS_DISABLED


def test_no_controller():
    assert decide(ctrl=None).reason == ev.R_NOT_CONNECTED


def test_mapping_logged_is_active_and_pool_movement_confirms_it():
    v = decide(ctrl=ctrl({1: "0000:03:00.0"}))
    assert v.active and v.provider == "0000:03:00.0"
    assert any("not sampled" in e for e in v.evidence)
    st = ev.PoolStats("0000:03:00.0")
    for x in (66977792, 65929216, 66977792):
        st.add(x)
    v = decide(ctrl=ctrl({1: "0000:03:00.0"}), pools={"0000:03:00.0": st}, io_during_sampling=True)
    assert v.active and any("moved during I/O" in e and "1048576 bytes" in e for e in v.evidence)


def test_mapping_logged_but_pool_never_moved_while_io_ran_is_fallback():
    st = ev.PoolStats("0000:03:00.0")
    for _ in range(5):
        st.add(66977792)
    v = decide(ctrl=ctrl({1: "0000:03:00.0"}), pools={"0000:03:00.0": st}, io_during_sampling=True)
    assert v.verdict == ev.INACTIVE and v.reason == ev.R_POOL_UNUSED and "66977792" in v.detail
    # the same pool sampled without I/O known to run proves nothing either way
    v = decide(ctrl=ctrl({1: "0000:03:00.0"}), pools={"0000:03:00.0": st}, io_during_sampling=False)
    assert v.active


def test_mapping_of_another_nsid_does_not_count():
    assert decide(ctrl=ctrl({2: "0000:03:00.0"})).reason == ev.R_NO_MAPPING


def test_tcp_has_no_p2p_client():
    v = decide(ports=[TCP])
    assert v.reason == ev.R_TRANSPORT and "tcp" in v.detail


def test_soft_rdma():
    v = decide(ports=[RDMA_SOFT])
    assert v.reason == ev.R_SOFT_RDMA and "rxe_dummy" in v.detail
    # a subsystem on both a soft RDMA port and TCP: a controller of unknown port is still soft/tcp...
    v = decide(ports=[RDMA_SOFT, TCP])
    assert v.reason == ev.R_NO_P2P_CLIENT and "rxe_dummy" in v.detail and "tcp" in v.detail
    # a PCI RDMA port among the candidates: only the log can tell
    assert decide(ports=[RDMA_SOFT, RDMA_PCI]).reason == ev.R_NO_MAPPING
    # ...but known to be the RDMA one, the reason is precise
    assert decide(ports=[RDMA_SOFT, TCP], port=RDMA_SOFT).reason == ev.R_SOFT_RDMA
    assert decide(ports=[RDMA_SOFT, TCP], port=TCP).reason == ev.R_TRANSPORT


def test_provider_unreachable_from_nic():
    d = ev.DistanceFacts(map_type="not_supported", reasons=["ACS redirect on 0000:40:01.0"],
                         kernel_parameter="pci=disable_acs_redir=0000:40:01.0")
    v = decide(distance=d)
    assert v.reason == ev.R_UNREACHABLE and "mlx5_0" in v.detail
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:40:01.0"


def test_auto_mode_refusal_at_connect():
    v = decide(p2pmem="1", ctrl=ctrl(refusals=[
        "nvmet: no peer-to-peer memory is available that's supported by mlx5_0 and /dev/nvme3n1"]))
    assert v.reason == ev.R_NO_PROVIDER and "mlx5_0" in v.detail and "/dev/nvme3n1" in v.detail


def test_no_mapping_logged_carries_the_pci_warnings():
    v = decide(ctrl=ctrl(refusals=[
        "mlx5_core 0000:41:00.0: ACS redirect is set between the client and provider (0000:03:00.0)",
        "mlx5_core 0000:41:00.0: to disable ACS redirect for this path, add the kernel parameter: "
        "pci=disable_acs_redir=0000:40:01.0"]))
    assert v.reason == ev.R_NO_MAPPING
    assert v.kernel_parameter == "pci=disable_acs_redir=0000:40:01.0"
    assert len(v.evidence) == 2


def test_pool_sampler_reads_available(tmp_path):
    d = tmp_path / "sys/bus/pci/devices/0000:03:00.0/p2pmem"
    d.mkdir(parents=True)
    (d / "size").write_text("67108864\n")
    (d / "available").write_text("66977792\n")
    s = ev.PoolSampler(["0000:03:00.0", "0000:09:00.0"], root=str(tmp_path), interval=0.01)
    s.sample_once()
    (d / "available").write_text("65929216\n")
    s.sample_once()
    st = s.stats["0000:03:00.0"]
    assert (st.size, st.minimum, st.maximum, st.moved, st.max_in_use) == (67108864, 65929216, 66977792, True, 1048576)
    assert s.stats["0000:09:00.0"].errors == 2 and not s.stats["0000:09:00.0"].moved
