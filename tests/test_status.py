"""``status``: configfs + inventory + kernel log -> per namespace × controller verdicts."""

from __future__ import annotations

import json
import os

import pytest

from nvmet_p2p import cli, exits
from nvmet_p2p.nvmet.state import Namespace, Port, Subsystem, TargetState
from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.observe import status as st
from nvmet_p2p.pci.model import Inventory, NetDevice, NvmeNamespace, P2pMem, PciFunction, RdmaDevice
from support import sysfs as sf

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "lab", "capture1")
SUB = "nqn.2026-11.io.lab:harness"
HOST = "nqn.2014-08.org.nvmexpress:uuid:3e6573f3-72c6-4641-bbac-d9ef310c2c99"


def lab_state(ports=("rdma", "tcp")) -> TargetState:
    """The target of the lab capture: ns1 on cmbB pinned to cmbA's CMB, ns2 on cmbC auto."""
    s = TargetState()
    sub = Subsystem(nqn=SUB, attrs={"attr_allow_any_host": "0"}, allowed_hosts=[HOST])
    sub.namespaces[1] = Namespace(1, True, {"device_path": "/dev/nvme1n1", "p2pmem": "0000:03:00.0"})
    sub.namespaces[2] = Namespace(2, True, {"device_path": "/dev/nvme2n1", "p2pmem": "1"})
    s.subsystems[SUB] = sub
    if "rdma" in ports:
        s.ports[1] = Port(1, {"addr_trtype": "rdma", "addr_adrfam": "ipv4", "addr_traddr": "10.77.0.1",
                              "addr_trsvcid": "4420"}, [SUB])
    if "tcp" in ports:
        s.ports[2] = Port(2, {"addr_trtype": "tcp", "addr_adrfam": "ipv4", "addr_traddr": "127.0.0.1",
                              "addr_trsvcid": "4421"}, [SUB])
    if "mlx" in ports:
        s.ports[3] = Port(3, {"addr_trtype": "rdma", "addr_traddr": "10.0.0.1", "addr_trsvcid": "4420"}, [SUB])
    return s


def lab_inventory() -> Inventory:
    inv = Inventory()
    for i, bdf in enumerate(("0000:03:00.0", "0000:04:00.0", "0000:05:00.0")):
        inv.pci[bdf] = PciFunction(bdf=bdf, host_bridge="pci0000:00",
                                   p2pmem=P2pMem(size=67108864, available=66977792, published=True, allocate=True))
        inv.namespaces[f"nvme{i}n1"] = NvmeNamespace(name=f"nvme{i}n1", nsid=1, controller=f"nvme{i}", pci=bdf)
    inv.rdma["rxe_dummy"] = RdmaDevice(name="rxe_dummy", pci=None, driver="rdma_rxe", soft=True, netdevs=["dummy0"])
    inv.net["dummy0"] = NetDevice(name="dummy0", addresses=["10.77.0.1/24"])
    inv.rdma["mlx5_0"] = RdmaDevice(name="mlx5_0", pci="0000:41:00.0", driver="mlx5_core", netdevs=["ens1"])
    inv.net["ens1"] = NetDevice(name="ens1", pci="0000:41:00.0", addresses=["10.0.0.1/24"])
    return inv


def lab_events():
    with open(os.path.join(FIX, "dmesg.txt")) as f:
        return ev.parse_log(f)


def verdicts(rep):
    return {(v.nsid, v.cntlid): v for v in rep.verdicts()}


def test_port_facts_find_the_soft_rdma_device():
    inv = lab_inventory()
    st_ = lab_state(("rdma", "tcp", "mlx"))
    pf = st.port_facts(st_.ports[1], inv)
    assert (pf.rdma_device, pf.rdma_soft, pf.rdma_pci) == ("rxe_dummy", True, None)
    pf = st.port_facts(st_.ports[3], inv)
    assert (pf.rdma_device, pf.rdma_soft, pf.rdma_pci) == ("mlx5_0", False, "0000:41:00.0")
    assert st.port_facts(st_.ports[2], inv).rdma_device is None
    wildcard = Port(9, {"addr_trtype": "rdma", "addr_traddr": "0.0.0.0"})
    pf = st.port_facts(wildcard, inv)
    assert pf.rdma_soft is None   # any device: rxe and a PCI NIC


def test_lab_capture_without_hints():
    """Both lab controllers, unknown ports (no debugfs): no port can give a p2p client."""
    rep = st.assemble(lab_state(), lab_inventory(), lab_events())
    v = verdicts(rep)
    assert set(v) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert all(x.verdict == ev.INACTIVE and x.reason == ev.R_NO_P2P_CLIENT for x in v.values())
    sub = rep.to_dict()["subsystems"][0]
    assert [c["cntlid"] for c in sub["controllers"]] == [1, 2]
    assert sub["namespaces"][0]["provider"]["size"] == 67108864
    assert sub["namespaces"][0]["backing_pci"] == "0000:04:00.0"
    assert sub["namespaces"][1]["mode"] == "auto"
    assert any("debugfs" in n for n in rep.notes)


def test_lab_capture_with_the_initiators_hints():
    """bench knows controller 1 is its RDMA connection and 2 its TCP one."""
    hints = [st.HostControllerHint(SUB, 1, "rdma", "10.77.0.1", "4420", HOST),
             st.HostControllerHint(SUB, 2, "tcp", "127.0.0.1", "4421", HOST)]
    v = verdicts(st.assemble(lab_state(), lab_inventory(), lab_events(), hints=hints))
    assert v[(1, 1)].reason == ev.R_SOFT_RDMA and "rxe_dummy" in v[(1, 1)].detail and v[(1, 1)].port == 1
    assert v[(1, 2)].reason == ev.R_TRANSPORT and v[(1, 2)].port == 2


def test_debugfs_decides_liveness_and_port():
    dbg = {SUB: {2: {"port": 2, "hostnqn": HOST, "state": "ready"}}}
    rep = st.assemble(lab_state(), lab_inventory(), lab_events(), debugfs=dbg)
    v = verdicts(rep)
    assert set(v) == {(1, 2), (2, 2)} and v[(1, 2)].reason == ev.R_TRANSPORT
    c = rep.to_dict()["subsystems"][0]["controllers"]
    assert c == [dict(c[0], cntlid=2, port=2, live=True, state="ready")]


def test_pci_nic_with_mapping_and_pool_movement_is_active():
    log = ["nvmet: using p2pmem on 0000:03:00.0 for nsid 1",
           f"nvmet: Created nvm controller 7 for subsystem {SUB} for NQN {HOST}."]
    pool = ev.PoolStats("0000:03:00.0")
    for x in (66977792, 64880640, 66977792):
        pool.add(x)
    rep = st.assemble(lab_state(("mlx",)), lab_inventory(), ev.parse_log(log),
                      pools={"0000:03:00.0": pool}, io_during_sampling=True)
    v = verdicts(rep)
    assert v[(1, 7)].active and v[(1, 7)].port == 3
    assert v[(2, 7)].reason == ev.R_NO_MAPPING   # ns 2 (auto) got no mapping line
    assert rep.to_dict()["providers"]["0000:03:00.0"]["sampled"]["moved"] is True


def test_only_managed_and_no_controller():
    rep = st.assemble(lab_state(), lab_inventory(), [], only={"nqn.other"})
    assert rep.subsystems == []
    rep = st.assemble(lab_state(), lab_inventory(), [])
    assert {v.reason for v in rep.verdicts()} == {ev.R_NOT_CONNECTED}


def test_enable_time_refusals_are_listed():
    events = ev.parse_log(["nvmet: no peer-to-peer memory is available for /dev/nvme3n1"])
    rep = st.assemble(lab_state(), lab_inventory(), events)
    assert rep.refusals[0]["device"] == "/dev/nvme3n1"


# -- the command on a tree -----------------------------------------------------------------------

def write_configfs(root, state: TargetState):
    """The nvmet tree as configfs shows it: objects are directories, links are symlinks to
    the object they point at (``allowed_hosts/<h>`` -> ``hosts/<h>``, a port's
    ``subsystems/<nqn>`` -> ``subsystems/<nqn>``)."""
    base = root / st.NVMET
    for nqn, sub in state.subsystems.items():
        d = base / "subsystems" / nqn
        (d / "allowed_hosts").mkdir(parents=True)
        for h in sub.allowed_hosts:
            (base / "hosts" / h).mkdir(parents=True, exist_ok=True)
            os.symlink(base / "hosts" / h, d / "allowed_hosts" / h)
        for k, v in sub.attrs.items():
            (d / k).write_text(v + "\n")
        for nsid, ns in sub.namespaces.items():
            n = d / "namespaces" / str(nsid)
            n.mkdir(parents=True)
            (n / "enable").write_text("1\n" if ns.enable else "0\n")
            for k, v in ns.attrs.items():
                (n / k).write_text(v + "\n")
    for pid, p in state.ports.items():
        d = base / "ports" / str(pid)
        (d / "subsystems").mkdir(parents=True)
        for k, v in p.attrs.items():
            (d / k).write_text(v + "\n")
        for s in p.subsystems:
            os.symlink(base / "subsystems" / s, d / "subsystems" / s)


def test_status_command_on_a_tree(tmp_path, capsys, monkeypatch):
    write_configfs(tmp_path, lab_state())
    (tmp_path / "dev").mkdir()
    with open(os.path.join(FIX, "kmsg.txt")) as f:
        (tmp_path / "dev/kmsg").write_text(f.read())
    monkeypatch.setattr(st, "read_inventory", lambda root: lab_inventory())
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["schema"] == "nvmet-p2p/status" and d["log"]["source"] == "kmsg" and d["log"]["complete"]
    (sub,) = d["subsystems"]
    assert [p["trtype"] for p in sub["ports"]] == ["rdma", "tcp"]
    assert sub["ports"][0]["rdma_device"] == "rxe_dummy" and sub["ports"][0]["rdma_soft"] is True
    heads = [v["headline"] for n in sub["namespaces"] for v in n["verdicts"]]
    assert len(heads) == 4 and all(h.startswith("inactive: ") for h in heads)
    assert cli.main(["status", "--root", str(tmp_path), "--all"]) == 0
    text = capsys.readouterr().out
    assert "port 1: rdma 10.77.0.1:4420 via rxe_dummy (soft RDMA)" in text
    assert "nsid 1 × controller 1: inactive:" in text


def test_status_sample_reads_the_pools(tmp_path, capsys, monkeypatch):
    sf.q35_lab(tmp_path)   # real sysfs layout; 0000:03:00.0 p2pmem 67108864/66977792/published
    write_configfs(tmp_path, lab_state())
    monkeypatch.setattr(st, "read_log", lambda root: ([], {"source": "none", "records": 0}))
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--json", "--sample", "0.2",
                     "--interval", "0.05"]) == 0
    d = json.loads(capsys.readouterr().out)
    s = d["providers"]["0000:03:00.0"]["sampled"]
    assert s["samples"] >= 3 and s["moved"] is False and s["min"] == 66977792
    assert d["sampling"]["seconds"] >= 0.2          # measured: from the first sample to the last


def test_status_rejects_bad_arguments(capsys):
    assert cli.main(["status", "--sample", "-1"]) == 2
    assert "--sample" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["nvmet"])
def test_status_without_nvmet(tmp_path, capsys, missing, monkeypatch):
    monkeypatch.setattr(st, "read_log", lambda root: ([], {"source": "none", "records": 0}))
    sf.q35_lab(tmp_path, write=False).update_system(nvmet_configfs=False).write()
    assert cli.main(["status", "--root", str(tmp_path)]) == 0
    assert "no nvmet configfs tree" in capsys.readouterr().out


def test_pci_nic_across_root_ports_is_unreachable_by_the_distance_rules(tmp_path, monkeypatch):
    """Real inventory reader + distance module on the lab layout plus a ConnectX on a third root
    port: the pinned CMB behind the switch cannot be reached through the q35 host bridge."""
    m = sf.q35_lab(tmp_path, write=False)
    m.root_port("0000:00:06.0", secondary=7, role="rp3")
    m.nic("0000:07:00.0", parent="0000:00:06.0", ibdev="mlx5_0", netdev="ens6", addresses=["10.0.0.1/24"])
    m.write()
    state = lab_state(("mlx",))
    write_configfs(tmp_path, state)
    created = f"nvmet: Created nvm controller 3 for subsystem {SUB} for NQN {HOST}."
    monkeypatch.setattr(st, "read_log", lambda root: ([created],
                                                      {"source": "given", "records": 1}))
    rep = st.collect(str(tmp_path), all_subsystems=True)
    v = verdicts(rep)
    assert v[(1, 3)].reason == ev.R_UNREACHABLE and "mlx5_0" in v[(1, 3)].detail
    assert "0000:03:00.0" in v[(1, 3)].detail
    sub = rep.to_dict()["subsystems"][0]
    assert sub["ports"][0]["rdma_pci"] == "0000:07:00.0" and sub["ports"][0]["rdma_soft"] is False
    assert v[(2, 3)].reason == ev.R_NO_MAPPING      # auto mode: only the log can tell


def test_status_watch_refreshes_until_interrupted(tmp_path, capsys, monkeypatch):
    sf.q35_lab(tmp_path)
    write_configfs(tmp_path, lab_state())
    monkeypatch.setattr(st, "read_log", lambda root: ([], {"source": "none", "records": 0}))
    import nvmet_p2p.commands.status as cmd
    ticks = []
    real_sleep = cmd.time.sleep

    def fake_sleep(s):
        ticks.append(s)
        if len(ticks) > 2:
            raise KeyboardInterrupt
        real_sleep(s)               # the pool sampler runs on real time: give it the interval

    monkeypatch.setattr(cmd.time, "sleep", fake_sleep)
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--json", "--watch", "0.5"]) == exits.INTERRUPTED
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and ticks == [0.5, 0.5, 0.5]
    assert lines[-1]["providers"]["0000:03:00.0"]["sampled"]["samples"] >= 2


def test_backing_pci_follows_by_id_device_paths():
    state = lab_state()
    link = "/dev/disk/by-id/nvme-eui.0011223344556677"
    state.subsystems[SUB].namespaces[1].attrs["device_path"] = link
    rows = {n["nsid"]: n for n in st.assemble(state, lab_inventory(), [])
            .subsystems[0]["namespaces"]}
    assert rows[1]["backing_pci"] is None            # unresolved without the edge's map
    rows = {n["nsid"]: n for n in st.assemble(state, lab_inventory(), [],
                                              dev_names={link: "nvme1n1"}).subsystems[0]["namespaces"]}
    assert rows[1]["backing_pci"] == "0000:04:00.0"
    assert rows[1]["device_path"] == link


def test_configfs_links_of_the_test_tree_are_symlinks(tmp_path):
    write_configfs(tmp_path, lab_state())
    ports = tmp_path / st.NVMET / "ports"
    links = [p / "subsystems" / n for p in ports.iterdir() for n in os.listdir(p / "subsystems")]
    assert links and all(os.path.islink(x) and os.path.isdir(x) for x in links)


def test_a_corrupt_managed_set_is_named_not_hidden(tmp_path, monkeypatch):
    write_configfs(tmp_path, lab_state())
    monkeypatch.setattr(st, "read_inventory", lambda root: lab_inventory())
    monkeypatch.setattr(st, "read_log", lambda root: ([], {"source": "none", "records": 0}))
    sd = tmp_path / "state"
    sd.mkdir()
    (sd / "managed.json").write_text("{not json")
    rep = st.collect(str(tmp_path), state_dir=str(sd))
    assert any("unreadable managed-set file" in n and "showing every subsystem" in n
               for n in rep.notes), rep.notes
    assert not any("no record of subsystems" in n for n in rep.notes)
    assert rep.to_dict()["subsystems"]                  # every subsystem shown


def test_a_crash_in_the_distance_engine_is_not_cannot_say(monkeypatch):
    from nvmet_p2p.pci import distance
    assert st.distance_facts("0000:99:00.0", "nvme0n1", lab_inventory()) is None  # unknown: cannot say

    def broken(*a, **k):
        raise TypeError("a bug in the engine")
    monkeypatch.setattr(distance, "distance_many", broken)
    with pytest.raises(TypeError, match="a bug in the engine"):
        st.distance_facts("0000:03:00.0", "nvme0n1", lab_inventory())

