"""Initiator side: nvme-cli output (real, from the lab), host sysfs mapping, connect/disconnect
bookkeeping of the bench (always disconnect what it connected)."""

from __future__ import annotations

import os
import subprocess

import pytest

from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.harness import bench as B
from nvmet_p2p.harness import hostsys
from nvmet_p2p.harness.nvmecli import (
    AlreadyConnected,
    NvmeCli,
    NvmeCliError,
    host_identity,
    parse_connect,
    parse_discovery,
)

LAB = os.path.join(os.path.dirname(__file__), "fixtures", "lab", "capture1")
NQN = "nqn.2026-11.io.lab:harness"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:3e6573f3-72c6-4641-bbac-d9ef310c2c99"
HOSTID = "1f0cb0cb-d919-4c03-b664-53fff91f9910"


def fx(name):
    with open(os.path.join(LAB, name)) as f:
        return f.read()


def test_parse_real_discovery_rdma_and_tcp():
    recs = parse_discovery(fx("nvme-discover-rdma.json"))
    assert [(r.subtype, r.subnqn, r.traddr, r.trsvcid, r.portid) for r in recs] == [
        ("current discovery subsystem", "nqn.2014-08.org.nvmexpress.discovery", "10.77.0.1", "4420", 1),
        ("nvme subsystem", NQN, "10.77.0.1", "4420", 1)]
    assert [r.is_nvm for r in recs] == [False, True]
    tcp = parse_discovery(fx("nvme-discover-tcp.json"))
    assert tcp[1].trtype == "tcp" and tcp[1].traddr == "127.0.0.1" and tcp[1].is_nvm


def test_parse_real_connect():
    assert parse_connect(fx("nvme-connect-rdma.json")) == "nvme4"
    assert parse_connect(fx("nvme-connect-tcp.json")) == "nvme5"
    with pytest.raises(ValueError):
        parse_connect(fx("nvme-connect-dup.json") or "{}")


class Replay:
    """subprocess.run stand-in answering nvme-cli commands with lab output."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        rc, out, err = self.answers.pop(0)
        return subprocess.CompletedProcess(cmd, rc, out, err)


HOST = host_identity(HOSTNQN, HOSTID)


def test_cli_arguments_and_errors():
    run = Replay([(0, fx("nvme-discover-rdma.json"), ""), (0, fx("nvme-connect-rdma.json"), ""),
                  (1, "", fx("nvme-connect-dup.err")), (1, "", fx("nvme-connect-bad.err")), (0, "", "")])
    cli = NvmeCli(run=run)
    assert len(cli.discover("rdma", "10.77.0.1", "4420", HOST)) == 2
    assert cli.connect("rdma", "10.77.0.1", "4420", NQN, HOST, nr_io_queues=2) == "nvme4"
    with pytest.raises(AlreadyConnected):
        cli.connect("tcp", "127.0.0.1", "4421", NQN, HOST)
    with pytest.raises(NvmeCliError, match="could not add new controller"):
        cli.connect("tcp", "127.0.0.1", "4421", "nqn.2026-11.io.lab:nope", HOST)
    cli.disconnect("nvme4")
    assert run.calls[0] == ["nvme", "discover", "-t", "rdma", "-a", "10.77.0.1", "-s", "4420",
                            "-q", HOSTNQN, "-I", HOSTID, "-o", "json"]
    assert run.calls[1][-2:] == ["-i", "2"] and run.calls[4] == ["nvme", "disconnect", "-d", "nvme4"]
    assert [c["returncode"] for c in cli.log] == [0, 0, 1, 1, 0]


def test_host_identity(tmp_path):
    (tmp_path / "etc/nvme").mkdir(parents=True)
    (tmp_path / "etc/nvme/hostnqn").write_text(HOSTNQN + "\n")
    h = host_identity(root=str(tmp_path))
    assert (h.hostnqn, h.hostid, h.source) == (HOSTNQN, "3e6573f3-72c6-4641-bbac-d9ef310c2c99", "/etc/nvme/hostnqn")
    g = host_identity(root=str(tmp_path / "nothing"))
    assert g.source == "generated" and g.hostnqn.endswith(g.hostid)
    with pytest.raises(InputError, match="--hostid"):
        host_identity(HOSTNQN, "not-a-uuid")
    with pytest.raises(InputError, match="--hostnqn"):
        host_identity("host1", HOSTID)


# -- a host sysfs tree shaped like the lab's (two paths of one subsystem, multipath) ---------

def make_ctrl(root, name, *, transport, address, cntlid, paths, state="live", subsys=NQN, heads=None):
    base = root / "sys/class/nvme" / name
    base.mkdir(parents=True, exist_ok=True)
    for f, v in dict(transport=transport, address=address, subsysnqn=subsys, state=state,
                     cntlid=str(cntlid), hostnqn=HOSTNQN).items():
        (base / f).write_text(v + "\n")
    for path_disk, nsid in paths.items():
        (base / path_disk).mkdir(exist_ok=True)
        (base / path_disk / "nsid").write_text(f"{nsid}\n")
    for head in (heads or []):
        b = root / "sys/block" / head
        (b / "queue").mkdir(parents=True, exist_ok=True)
        (b / "size").write_text("524288\n")
        (b / "queue/logical_block_size").write_text("512\n")
        (root / "dev").mkdir(exist_ok=True)
        (root / "dev" / head).write_text("")


def lab_like(root):
    # as captured in the lab: nvme4c4n1 has nsid 2, nvme4c4n2 nsid 1 (instance != nsid)
    make_ctrl(root, "nvme4", transport="rdma", address="traddr=10.77.0.1,trsvcid=4420", cntlid=1,
              paths={"nvme4c4n1": 2, "nvme4c4n2": 1}, heads=["nvme4n1", "nvme4n2"])
    make_ctrl(root, "nvme5", transport="tcp", address="traddr=127.0.0.1,trsvcid=4421,src_addr=127.0.0.1",
              cntlid=2, paths={"nvme4c5n1": 2, "nvme4c5n2": 1})


def test_namespaces_are_mapped_by_the_nsid_attribute(tmp_path):
    lab_like(tmp_path)
    c = hostsys.read_controller("nvme4", str(tmp_path))
    assert (c.transport, c.cntlid, c.subsysnqn) == ("rdma", 1, NQN)
    assert [(n.nsid, n.device, n.path_disk, n.multipath) for n in c.namespaces] == [
        (1, "/dev/nvme4n2", "nvme4c4n2", True), (2, "/dev/nvme4n1", "nvme4c4n1", True)]
    assert c.namespaces[0].size_bytes == 268435456
    assert hostsys.other_paths(c, str(tmp_path)) == ["nvme5"]
    assert hostsys.find_controller(NQN, "tcp", "127.0.0.1", "4421", str(tmp_path)) == "nvme5"
    assert hostsys.find_controller(NQN, "tcp", "127.0.0.1", "4420", str(tmp_path)) is None


def test_wait_for_namespaces(tmp_path):
    lab_like(tmp_path)
    t = [0.0]
    c = hostsys.wait_for_namespaces("nvme4", root=str(tmp_path), nsids=[2], timeout=5,
                                    sleep=lambda s: t.__setitem__(0, t[0] + s), clock=lambda: t[0])
    assert [n.device for n in c.namespaces] == ["/dev/nvme4n1"]
    c = hostsys.wait_for_namespaces("nvme4", root=str(tmp_path), timeout=5, settle=1.0,
                                    sleep=lambda s: t.__setitem__(0, t[0] + s), clock=lambda: t[0])
    assert len(c.namespaces) == 2
    make_ctrl(tmp_path, "nvme6", transport="tcp", address="traddr=x", cntlid=3, paths={}, state="connecting")
    with pytest.raises(NvmetP2PError, match="state connecting"):
        hostsys.wait_for_namespaces("nvme6", root=str(tmp_path), timeout=2,
                                    sleep=lambda s: t.__setitem__(0, t[0] + s), clock=lambda: t[0])


class FakeCli:
    """nvme-cli for Connections: connect creates the sysfs controller, disconnect removes it."""

    def __init__(self, root, fail_connect_for=()):
        self.root = root
        self.fail = set(fail_connect_for)
        self.connected, self.disconnected = [], []
        self.log = []

    def discover(self, *a):
        return parse_discovery(fx("nvme-discover-rdma.json"))

    def connect(self, transport, traddr, trsvcid, nqn, host, **kw):
        if nqn in self.fail:
            raise NvmeCliError("nvme connect failed", "could not add new controller")
        name = f"nvme{4 + len(self.connected)}"
        make_ctrl(self.root, name, transport=transport, address=f"traddr={traddr},trsvcid={trsvcid}",
                  cntlid=len(self.connected) + 1, paths={f"nvme9c{4 + len(self.connected)}n1": 1},
                  subsys=nqn, heads=["nvme9n1"])
        self.connected.append(name)
        return name

    def disconnect(self, ctrl):
        self.disconnected.append(ctrl)


def test_connections_disconnect_what_they_connected(tmp_path):
    cli = FakeCli(tmp_path)
    conns = B.Connections(cli, HOST, root=str(tmp_path), timeout=2)
    conns.open(B.TargetAddress("rdma", "10.77.0.1", "4420"))      # discovery picks the NVM subsystem
    assert cli.connected == ["nvme4"] and [n.device for n in conns.devices()] == ["/dev/nvme9n1"]
    assert conns.close() == [] and cli.disconnected == ["nvme4"]
    assert conns.history[0]["disconnected"] is True


def test_connection_failure_still_disconnects_the_earlier_ones(tmp_path):
    cli = FakeCli(tmp_path, fail_connect_for={"nqn.b"})
    conns = B.Connections(cli, HOST, root=str(tmp_path), timeout=2)
    with pytest.raises(NvmeCliError):
        conns.open(B.TargetAddress("rdma", "10.77.0.1", "4420", nqns=["nqn.a", "nqn.b"]))
    conns.close()
    assert cli.disconnected == ["nvme4"]


def test_bench_disconnects_on_interrupt(tmp_path):
    cli = FakeCli(tmp_path)
    out = tmp_path / "out"
    from nvmet_p2p.harness import workloads as W

    def interrupted_fio(*a, **kw):
        raise KeyboardInterrupt

    cfg = B.BenchConfig(workloads=W.build_matrix("quick", runtime=1)[:1], out_dir=str(out),
                        target=B.TargetAddress("rdma", "10.77.0.1", "4420", nqns=[NQN]), host=HOST,
                        root=str(tmp_path), plots=False, connect_timeout=2)
    r = B.Bench(cfg, cli=cli, fio_runner=interrupted_fio).run()
    assert r["interrupted"] and not r["ok"] and cli.disconnected == ["nvme4"]
    assert (out / "results.json").exists()
