"""nvmet-p2p watch on a synthetic machine (tests/sysfsfixture.py) and the fake configfs
(tests/fakenvmet.py): a burst of uevents -> one decision line each -> the namespaces
concerned, and only those, written through apply.reconcile. The real kernel and real udev
events: tests/lab/test_lab_hotplug.py."""

import io
import json
import os
import signal
import socket

import fakenvmet
import pytest
from fakenvmet import FakeNvmet
from sysfsfixture import q35_lab

from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import TEST_KILL_ENV, TEST_SIGNAL_ENV, reconcile
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.nvmet.degraded import DegradedStore
from nvmet_p2p.observe import status as st
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.service import hotplug as hp
from nvmet_p2p.service import watch

NQN = "nqn.2026-12.io.lab:w"
A, B, C, P = "0000:03:00.0", "0000:04:00.0", "0000:05:00.0", "0000:06:00.0"
DOC = {"hosts": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": [
    {"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme2n1"}, "p2pmem": A},
    {"nsid": 2, "enable": 1, "device": {"path": "/dev/nvme1n1"}, "p2pmem": B},
    {"nsid": 3, "enable": 1, "device": {"path": "/dev/nvme3n1"}, "p2pmem": "0"}]}],
    "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "10.77.0.1",
                                      "trsvcid": "4420"}, "subsystems": [NQN]}]}


class Recorder(FakeNvmet):
    """The fake configfs, remembering every write (path, value) in order."""

    def __init__(self, root):
        super().__init__(root)
        self.log = []

    def write(self, rel, value):
        self.log.append((rel.split("/namespaces/")[-1], value.strip()))
        return super().write(rel, value)


@pytest.fixture
def env(tmp_path, monkeypatch):
    root = tmp_path / "root"
    m = q35_lab(root, rxe=True, rxe_name="rxe0")
    (root / "dev").mkdir()
    for i in range(4):
        (root / f"dev/nvme{i}n1").write_text("")        # devtmpfs nodes (a re-enable opens them)
    cfs = Recorder(str(tmp_path / "cfs"))
    sd = str(tmp_path / "state")
    monkeypatch.setattr(fakenvmet, "P2P_PROVIDERS", set(fakenvmet.P2P_PROVIDERS))
    monkeypatch.setattr(fakenvmet, "DEVICES", dict(fakenvmet.DEVICES))
    reconcile(str(root), statefile.parse(DOC), sd, cfs=cfs)
    cfs.log.clear()
    out = io.StringIO()

    def make(policy="reconcile"):
        w = watch.Watcher(watch.Options(root=str(root), state_dir=sd, policy=policy), [],
                          watch.Log(stream=out), cfs=cfs)
        w.refresh()
        return w
    return m, cfs, sd, make, out


def unplug(m, bdf, ctrl):
    del m.pcis[bdf]
    del m.nvmes[ctrl]
    m.write()
    fakenvmet.P2P_PROVIDERS.discard(bdf)
    fakenvmet.DEVICES.pop(f"/dev/{ctrl}n1", None)
    (m.root / f"dev/{ctrl}n1").unlink()


def plug(m, bdf, ctrl, serial, parent, cmb=True):
    m.nvme(bdf, parent=parent, ctrl=ctrl, serial=serial, cmb_mb=64 if cmb else None)
    m.write()
    if cmb:
        fakenvmet.P2P_PROVIDERS.add(bdf)
    fakenvmet.DEVICES[f"/dev/{ctrl}n1"] = bdf
    (m.root / f"dev/{ctrl}n1").write_text("")


def removal(bdf, block, t=100.0):
    return [hp.Event("remove", "block", block, {"DEVNAME": f"/dev/{block}", "DEVTYPE": "disk"}, t),
            hp.Event("unbind", "pci", bdf, {"PCI_SLOT_NAME": bdf}, t + 0.1),
            hp.Event("remove", "pci", bdf, {"PCI_SLOT_NAME": bdf}, t + 0.12)]


def arrival(bdf, block, t=200.0):
    return [hp.Event("add", "pci", bdf, {"PCI_SLOT_NAME": bdf}, t),
            hp.Event("add", "block", block, {"DEVNAME": f"/dev/{block}", "DEVTYPE": "disk"}, t + 0.5),
            hp.Event("bind", "pci", bdf, {"PCI_SLOT_NAME": bdf, "DRIVER": "nvme"}, t + 0.6)]


def lines(out):
    return [dict(kv.split("=", 1) for kv in _split(ln)) for ln in out.getvalue().splitlines()]


def _split(line):
    import shlex
    return shlex.split(line)


def test_facts_know_block_wwid_serial_and_ports(env):
    _m, _cfs, _sd, make, _out = env
    f = make().facts
    n = f.namespaces[f"{NQN}/1"]
    assert (n.block, n.serial, n.backing_pci, n.provider, n.ports) == ("nvme2n1", "cmbC", C, A, (1,))
    assert n.wwid.startswith("nvme.1b36-") and f.ports[1].rdma == ("rxe0",)
    assert f.providers == {A, B, C}


def test_provider_removed_is_replaced_and_only_that_namespace_cycles(env):
    m, cfs, sd, make, out = env
    w = make()
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert [(d.kind, d.action) for d in ds] == [("provider-lost", "reconciled")]
    ns = read_state(cfs).subsystems[NQN].namespaces
    assert ns[1].attrs["p2pmem"] == C and ns[1].enable            # nearest accepted: its own CMB
    # p2pmem 0 first: an undo must never have to write the removed BDF back (ENODEV)
    assert cfs.log == [("1/enable", "0"), ("1/p2pmem", "0"), ("1/p2pmem", C), ("1/enable", "1")]
    line = lines(out)[-1]
    assert line["decision"] == "provider-lost" and line["action"] == "reconciled"
    assert line["namespaces"] == f"{NQN}/1" and int(line["writes"]) == 4
    assert float(line["reaction_ms"]) > 0 and float(line["configfs_ms"]) >= 0
    rec = DegradedStore(sd).load()
    e = rec[(f"namespace {NQN}/1", "re-placed")]
    assert e.facts["provider"] == A and e.facts["now"] == C and C in e.detail
    # back: the configured provider is restored (p2pmem C -> A), the record cleared
    plug(m, A, "nvme0", "cmbA", "0000:02:00.0")
    cfs.log.clear()
    ds = w.handle(arrival(A, "nvme0n1"))
    assert [(d.kind, d.action) for d in ds] == [("provider-back", "reconciled")]
    assert cfs.log == [("1/enable", "0"), ("1/p2pmem", A), ("1/enable", "1")]
    assert DegradedStore(sd).load() == {}
    # the driver's bind can come in a later burst (seen in the lab): nothing is cycled twice
    cfs.log.clear()
    assert w.handle([hp.Event("bind", "pci", A, {"PCI_SLOT_NAME": A, "DRIVER": "nvme"}, 300.0)]) == []
    assert cfs.log == []


def test_provider_back_with_the_same_bdf_is_rewritten_disable_write_enable(env):
    m, cfs, sd, make, out = env
    for bdf in (B, C):
        m.set_p2pmem(bdf, published=False)
    m.write()
    w = make()
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert ds[0].action == "nothing to write" and cfs.log == []    # nothing else is accepted
    assert "host memory" in DegradedStore(sd).load()[(f"namespace {NQN}/1", "offload-lost")].detail
    plug(m, A, "nvme0", "cmbA", "0000:02:00.0")
    ds = w.handle(arrival(A, "nvme0n1"))
    assert ds[0].kind == "provider-back" and ds[0].action == "reconciled"
    # p2pmem already reads A: only 0 -> A makes the kernel take the new device
    assert cfs.log == [("1/enable", "0"), ("1/p2pmem", "0"), ("1/p2pmem", A), ("1/enable", "1")]


def test_backing_removed_is_disabled_and_reenabled_when_the_same_drive_returns(env):
    m, cfs, sd, make, out = env
    w = make()
    unplug(m, P, "nvme3")
    ds = w.handle(removal(P, "nvme3n1"))
    assert [(d.kind, d.action) for d in ds] == [("backing-lost", "reconciled")]
    assert cfs.log == [("3/enable", "0")]
    e = DegradedStore(sd).load()[(f"namespace {NQN}/3", "backing-lost")]
    assert e.facts["serial"] == "plain" and e.facts["wwid"]
    # another drive with another identity appears: nothing happens
    plug(m, P, "nvme3", "stranger", "0000:00:05.0", cmb=False)
    assert w.handle(arrival(P, "nvme3n1")) == [] and cfs.log == [("3/enable", "0")]
    unplug(m, P, "nvme3")
    w.handle(removal(P, "nvme3n1"))
    plug(m, P, "nvme3", "plain", "0000:00:05.0", cmb=False)
    cfs.log.clear()
    ds = w.handle(arrival(P, "nvme3n1"))
    assert [(d.kind, d.action) for d in ds] == [("backing-back", "reconciled")]
    assert cfs.log == [("3/enable", "1")]
    assert DegradedStore(sd).load() == {}


def test_report_policy_writes_nothing_and_status_shows_the_loss(env):
    m, cfs, sd, make, out = env
    w = make(policy="report")
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert ds[0].action == "reported" and cfs.log == []
    assert lines(out)[-1]["action"] == "reported"
    rep = st.assemble(read_state(cfs), read_inventory(m.root), [], degraded=DegradedStore(sd).load())
    n1 = rep.subsystems[0]["namespaces"][0]
    assert [e["kind"] for e in n1["degraded"]] == ["offload-lost"]
    text = st.render(rep)
    assert "nsid 1: OFFLOAD LOST since " in text and "removed" in text
    assert "nsid 2: OFFLOAD LOST" not in text


def test_status_names_a_pinned_provider_that_is_not_on_the_bus_without_a_record(env):
    m, cfs, sd, make, _out = env
    unplug(m, A, "nvme0")
    rep = st.assemble(read_state(cfs), read_inventory(m.root), [], degraded={})
    n1 = rep.subsystems[0]["namespaces"][0]
    assert n1["degraded"][0]["source"] == "status" and "not on the PCI bus" in n1["degraded"][0]["detail"]


def test_a_failed_reconcile_is_logged_and_rolled_back(env, monkeypatch):
    m, cfs, sd, make, out = env
    w = make()
    unplug(m, A, "nvme0")
    monkeypatch.setattr(fakenvmet, "SWITCH", {A, B})      # the fake now refuses C for nvme2n1
    ds = w.handle(removal(A, "nvme0n1"))
    assert ds[0].action == "failed" and "EINVAL" in ds[0].result["error"]
    # the rollback cannot write the removed BDF back (ENODEV, as the kernel): the namespace
    # that served before serves again, from host memory, and the line says so
    ns1 = read_state(cfs).subsystems[NQN].namespaces[1]
    assert ns1.enable and ns1.attrs["p2pmem"] == "0", ds[0].result
    assert not os.path.exists(os.path.join(sd, "journal.json"))    # the rollback finished
    last = out.getvalue().splitlines()[-1]
    assert "error=" in last and "re-enabled with p2pmem 0 (host memory)" in last


def test_logfmt_quotes_and_skips_empty():
    assert watch.logfmt({"a": "x", "b": "two words", "c": None, "d": [1, 2], "e": 'q"'}) == \
        'a=x b="two words" d=1,2 e="q\\""'


def test_journal_lines_carry_a_priority(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    s = io.StringIO()
    watch.Log(stream=s)({"decision": "backing-lost"}, 3)
    assert s.getvalue() == "<3>decision=backing-lost\n"


def test_address_events_from_raw_rtnetlink_messages():
    import struct
    def msg(typ, fam, raw, index=1, attr=2):
        a = struct.pack("=HH", 4 + len(raw), attr) + raw
        body = struct.pack("=BBBBI", fam, 24, 0, 0, index) + a
        return struct.pack("=IHHII", 16 + len(body), typ, 0, 0, 0) + body
    data = (msg(20, socket.AF_INET, socket.inet_aton("10.77.0.1")) +
            msg(21, socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "fd00::1"), attr=1) +
            msg(16, socket.AF_INET, b"x" * 4))                       # RTM_NEWLINK: not an address
    evs = watch.AddressSource.parse(data, 5.0)
    assert [(e.action, e.props["ADDRESS"], e.name) for e in evs] == [
        ("add", "10.77.0.1", socket.if_indextoname(1)), ("remove", "fd00::1", socket.if_indextoname(1))]


def test_sd_notify_sends_ready(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    watch.sd_notify("READY=1")
    assert srv.recv(100) == b"READY=1"


class QueueSource:
    """An event source over a pipe: bursts are delivered as they would be by netlink."""

    def __init__(self):
        self.r, self.w = os.pipe()
        self.queue = []

    def fileno(self):
        return self.r

    def push(self, events):
        self.queue.extend(events)
        os.write(self.w, b"x")

    def read(self):
        os.read(self.r, 100)
        out, self.queue = self.queue, []
        return out


def test_run_debounces_a_burst_into_one_handling(env, monkeypatch):
    m, cfs, sd, make, out = env
    w = make()
    src = QueueSource()
    w.sources = [src]
    w.o.exit_after = 1
    w.o.debounce = 0.05
    unplug(m, A, "nvme0")
    import time
    now = time.monotonic()
    src.push([hp.Event(e.action, e.subsystem, e.name, e.props, now) for e in removal(A, "nvme0n1")])
    seen = []
    orig = w.handle
    monkeypatch.setattr(w, "handle", lambda evs, burst=None: seen.append(len(evs)) or orig(evs, burst))
    assert w.run() == 0
    assert seen == [3]
    assert json.dumps(lines(out)[0]).count("watching") == 1


def test_sigterm_during_a_reconcile_rolls_it_back_and_stops_the_watcher(env, monkeypatch):
    m, cfs, sd, make, out = env
    w = make()
    unplug(m, A, "nvme0")
    monkeypatch.setenv(TEST_SIGNAL_ENV, "1:TERM")          # after the first configfs step
    ds = w.handle(removal(A, "nvme0n1"))
    assert ds[0].action == "failed" and "SIGTERM" in ds[0].result["error"], ds[0].result
    assert w.stopping                                       # the signal was meant for the watcher
    ns1 = read_state(cfs).subsystems[NQN].namespaces[1]
    assert ns1.enable and ns1.attrs["p2pmem"] == A          # exactly as before the burst
    assert not os.path.exists(os.path.join(sd, "journal.json"))


def test_a_watcher_killed_mid_reconcile_is_settled_when_it_starts_again(env):
    m, cfs, sd, make, out = env
    w = make()
    unplug(m, A, "nvme0")
    pid = os.fork()
    if pid == 0:                                            # the watcher, kill -9 after step 1
        try:
            os.environ[TEST_KILL_ENV] = "1"
            w.handle(removal(A, "nvme0n1"))
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert os.path.exists(os.path.join(sd, "journal.json"))
    assert not read_state(cfs).subsystems[NQN].namespaces[1].enable    # half-way: disabled
    w2 = watch.Watcher(watch.Options(root=w.o.root, state_dir=sd, policy="reconcile"), [],
                       watch.Log(stream=out), cfs=cfs)
    w2.settle()                                             # what run() does before reading
    assert not os.path.exists(os.path.join(sd, "journal.json"))
    ns1 = read_state(cfs).subsystems[NQN].namespaces[1]
    assert ns1.enable and ns1.attrs["p2pmem"] == A          # rolled back to before the burst
    assert "settled an interrupted apply" in out.getvalue()


def test_reactions_and_the_watchers_applies_are_counted(env, monkeypatch):
    """nvmet_p2p_watch_reactions_total and _applies_total{source="watch"}: the watcher counts
    in the state directory what it decided and did (docs/metrics.md#where-the-counters-live)."""
    from nvmet_p2p.nvmet import counters

    def counted():
        return {(name, s.labels): s.value for name, rows in counters.load(sd).items() for s in rows}
    m, cfs, sd, make, out = env
    before = counted()
    w = make()
    unplug(m, A, "nvme0")
    w.handle(removal(A, "nvme0n1"))
    plug(m, A, "nvme0", "cmbA", "0000:02:00.0")
    w.handle(arrival(A, "nvme0n1"))
    unplug(m, A, "nvme0")
    make(policy="report").handle(removal(A, "nvme0n1", t=400.0))
    now = counted()
    assert now[("watch_reactions", ("provider-lost", "reconciled"))] == 1
    assert now[("watch_reactions", ("provider-back", "reconciled"))] == 1
    assert now[("watch_reactions", ("provider-lost", "reported"))] == 1
    # the removal is two reconciles (p2pmem 0 first, then the new provider), the return one
    assert now[("applies", ("watch",))] - before.get(("applies", ("watch",)), 0) == 3
    assert ("apply_refusals", ("watch", "kernel")) not in now
    plug(m, A, "nvme0", "cmbA", "0000:02:00.0")
    w = make()
    unplug(m, A, "nvme0")
    monkeypatch.setattr(fakenvmet, "SWITCH", {A, B})      # the fake now refuses C for nvme2n1
    assert w.handle(removal(A, "nvme0n1", t=500.0))[0].action == "failed"
    now = counted()
    assert now[("watch_reactions", ("provider-lost", "failed"))] == 1
    assert now[("apply_refusals", ("watch", "kernel"))] == 1


# ---------------------------------------------------------------------------------------------
# watch --profile: re-placement by the profile, on the machine as it is after the burst
# ---------------------------------------------------------------------------------------------

PROFILE = f"""version: 1
ports:
  - {{id: 1, transport: rdma, rdma_device: rxe0}}
subsystems:
  - nqn: {NQN}
    allow_any_host: true
    ports: [1]
    namespaces:
      - {{nsid: 1, select: {{serial: cmbC}}}}
      - {{nsid: 2, select: {{serial: cmbB}}}}
      - {{nsid: 3, select: {{serial: plain}}, p2p: off}}
"""


@pytest.fixture
def profiled(env, tmp_path):
    """The target as `apply --profile` made it: cmbC's pool is not published, so nsid 1 (on
    cmbC) is placed on the lowest of the CMBs beside it, cmbA; nsid 2 on its own cmbB."""
    m, cfs, sd, make, out = env
    m.set_p2pmem(C, published=False)
    m.write()
    fakenvmet.P2P_PROVIDERS.discard(C)
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE)
    from nvmet_p2p.policy import placement
    p = placement.place_profile(str(path), read_inventory(m.root), root=str(m.root))
    assert p.state.subsystems[NQN].namespaces[1].attrs["p2pmem"] == A
    reconcile(str(m.root), p.state, sd, cfs=cfs)
    cfs.log.clear()

    def make_profiled(policy="reconcile"):
        w = make(policy)
        w.o.profile = str(path)
        return w
    return m, cfs, sd, make_profiled, out


def test_profile_replaces_on_the_machine_after_the_burst_not_on_the_removed_provider(profiled):
    m, cfs, sd, make, out = profiled
    w = make()
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert [(d.kind, d.action) for d in ds] == [("provider-lost", "reconciled")]
    ns1 = read_state(cfs).subsystems[NQN].namespaces[1]
    assert ns1.attrs["p2pmem"] == B and ns1.enable          # was: A again (the removed one)
    line = lines(out)[-1]
    assert "re-placed by profile" in line["changes"] and B in line["changes"] and A not in line["changes"]
    e = DegradedStore(sd).load()[(f"namespace {NQN}/1", "re-placed")]
    assert (e.facts["provider"], e.facts["now"]) == (A, B)
    # the provider returns: the configured one is written back
    plug(m, A, "nvme0", "cmbA", "0000:02:00.0")
    cfs.log.clear()
    ds = w.handle(arrival(A, "nvme0n1"))
    assert [(d.kind, d.action) for d in ds] == [("provider-back", "reconciled")]
    assert read_state(cfs).subsystems[NQN].namespaces[1].attrs["p2pmem"] == A


def test_profile_that_pins_the_removed_provider_writes_nothing_and_says_so(profiled, tmp_path):
    m, cfs, sd, make, out = profiled
    (tmp_path / "profile.yaml").write_text(PROFILE.replace(
        "{nsid: 1, select: {serial: cmbC}}", f"{{nsid: 1, select: {{serial: cmbC}}, p2p: {{pinned: '{A}'}}}}"))
    w = make()
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert ds[0].kind == "provider-lost" and ds[0].action == "nothing to write", ds[0].result
    assert cfs.log == []
    assert "host memory" in DegradedStore(sd).load()[(f"namespace {NQN}/1", "offload-lost")].detail


def test_watch_command_refuses_a_broken_profile_before_listening(tmp_path, capsys):
    from nvmet_p2p import cli
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nsubsystems: nope\n")
    assert cli.main(["watch", "--profile", str(bad), "--state-dir", str(tmp_path / "s")]) == 2
    assert "p.yaml" in capsys.readouterr().err


class FakeKernelMonitor(QueueSource):
    """pyudev's kernel-source monitor as KernelStamps reads it: poll() -> devices with
    properties (SEQNUM), a pipe as its file descriptor."""

    def send(self, seqs):
        self.push([type("Dev", (), {"properties": {"SEQNUM": str(s)}})() for s in seqs])

    def poll(self, timeout=0):
        if not self.queue:
            try:
                os.set_blocking(self.r, False)
                os.read(self.r, 100)
            except BlockingIOError:
                pass
            return None
        return self.queue.pop(0)


def test_reaction_is_timed_from_the_kernels_first_uevent_and_the_debounce_is_apart(env, monkeypatch):
    """udev passes events on after its rules ran: the watcher times the reaction from when the
    kernel sent the first uevent of the removal (its own kernel socket, by SEQNUM), and logs
    udev's delay, the burst and the debounce apart."""
    import threading
    import time
    m, cfs, sd, make, out = env
    w = make()
    src, kmon = QueueSource(), FakeKernelMonitor()
    w.sources = [watch.KernelStamps(kmon), src]
    w.o.exit_after, w.o.debounce = 1, 0.2
    unplug(m, A, "nvme0")
    evs = removal(A, "nvme0n1")
    for i, e in enumerate(evs):
        e.seq = 101 + i
        e.props["DEVPATH"] = f"/devices/pci0000:00/0000:00:04.0/0000:01:00.0/0000:02:00.0/{A}" + \
            ("/nvme/nvme0/nvme0n1" if e.subsystem == "block" else "")
    t_kernel = []

    def udev_later():
        src.push([hp.Event(e.action, e.subsystem, e.name, e.props, time.monotonic(), e.seq) for e in evs])

    def ready(msg):                    # the watcher listens: the kernel sends, udev 0.3 s later
        if msg == "READY=1":
            kmon.send([101, 102, 103])
            t_kernel.append(time.monotonic())
            threading.Timer(0.3, udev_later).start()
    monkeypatch.setattr(watch, "sd_notify", ready)
    assert w.run() == 0
    line = lines(out)[-1]
    assert line["decision"] == "provider-lost" and line["action"] == "reconciled"
    assert int(line["first_seq"]) == 101                   # the block remove, first of the removal
    uevent, debounce, burst = float(line["uevent_ms"]), float(line["debounce_ms"]), float(line["burst_ms"])
    reaction, configfs = float(line["reaction_ms"]), float(line["configfs_ms"])
    assert uevent >= 250                                   # udev's delay is in the reaction ...
    assert debounce >= 200 and burst >= 0                  # ... and the debounce shown apart
    assert reaction >= uevent + debounce + configfs
    assert reaction <= (time.monotonic() - t_kernel[0]) * 1000 + 1   # and not from before the kernel sent it


# ---------------------------------------------------------------------------------------------
# --rewrite: when a p2pmem rewrite may disturb the hosts
# ---------------------------------------------------------------------------------------------

def stat_file(m, block, ios, inflight=0):
    """/sys/block/<dev>/stat as the kernel prints it (17 fields): reads, ..., in_flight (9th)."""
    f = [0] * 17
    f[0], f[8] = ios, inflight
    path = m.root / f"sys/class/block/{block}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "stat").write_text(" ".join(f"{x:8d}" for x in f) + "\n")


def test_rewrite_now_says_what_the_hosts_see(env):
    m, cfs, sd, make, out = env
    w = make()
    unplug(m, A, "nvme0")
    w.handle(removal(A, "nvme0n1"))
    line = lines(out)[-1]
    assert line["action"] == "reconciled" and line["rewrite"].startswith("now: hosts see the namespace go")


def test_rewrite_operator_holds_it_back_and_status_shows_it_pending(env):
    m, cfs, sd, make, out = env
    w = make()
    w.o.rewrite = "operator"
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert [(d.kind, d.action) for d in ds] == [("provider-lost", "pending")]
    assert cfs.log == []                                       # the hosts were not disturbed
    line = lines(out)[-1]
    assert line["rewrite"] == "operator (held back)" and "watch --rewrite-pending" in line["changes"]
    rec = DegradedStore(sd).load()
    assert rec[(f"namespace {NQN}/1", "rewrite-pending")].facts["target"]["p2pmem"] == C
    assert (f"namespace {NQN}/1", "offload-lost") in rec       # it serves from host memory meanwhile
    rep = st.assemble(read_state(cfs), read_inventory(m.root), [], degraded=rec)
    text = st.render(rep)
    assert "nsid 1: REWRITE PENDING since" in text and "nsid 1: OFFLOAD LOST since" in text
    assert [e["kind"] for e in rep.to_dict()["subsystems"][0]["namespaces"][0]["degraded"]] == \
        ["rewrite-pending", "offload-lost"]
    # the operator: watch --rewrite-pending (another process, from the record)
    out2 = io.StringIO()
    w2 = watch.Watcher(watch.Options(root=w.o.root, state_dir=sd, policy="reconcile"), [],
                       watch.Log(stream=out2), cfs=cfs)
    assert watch.rewrite_pending(w2) == 0
    assert read_state(cfs).subsystems[NQN].namespaces[1].attrs["p2pmem"] == C
    (done,) = [x for x in lines(out2) if x.get("decision") == "rewrite"]
    assert done["action"] == "reconciled" and done["rewrite"].startswith("operator: hosts see")
    rec = DegradedStore(sd).load()
    assert set(rec) == {(f"namespace {NQN}/1", "re-placed")}
    assert watch.rewrite_pending(w2) == 0 and "no rewrite pending" in out2.getvalue()


def test_rewrite_idle_waits_for_the_backing_device_to_be_quiet(env):
    import time
    m, cfs, sd, make, out = env
    w = make()
    w.o.rewrite, w.o.idle_window = "idle", 0.3
    stat_file(m, "nvme2n1", 100, inflight=2)                   # nsid 1's backing device is busy
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert ds[0].action == "pending" and cfs.log == []
    assert list(w.pending) == [f"{NQN}/1"]
    for ios in (120, 150, 180):                                # I/O keeps completing
        stat_file(m, "nvme2n1", ios)
        w.idle_tick()
        time.sleep(0.15)
    assert cfs.log == [] and w.pending
    stat_file(m, "nvme2n1", 180)                               # quiet from now on
    t0 = time.monotonic()
    while w.pending and time.monotonic() - t0 < 5:
        w.idle_tick()
        time.sleep(0.1)
    assert not w.pending and time.monotonic() - t0 >= 0.3
    assert cfs.log == [("1/enable", "0"), ("1/p2pmem", "0"), ("1/p2pmem", C), ("1/enable", "1")]
    done = lines(out)[-1]
    assert done["decision"] == "rewrite" and done["rewrite"].startswith("idle: ") and float(done["held_ms"]) > 300
    assert (f"namespace {NQN}/1", "rewrite-pending") not in DegradedStore(sd).load()


def test_a_held_back_rewrite_is_replaced_by_the_next_decision_and_dropped_if_the_provider_went(env):
    m, cfs, sd, make, out = env
    w = make()
    w.o.rewrite = "operator"
    unplug(m, A, "nvme0")
    w.handle(removal(A, "nvme0n1"))                            # pending: re-place on C
    plug(m, A, "nvme0", "cmbA", "0000:02:00.0")
    ds = w.handle(arrival(A, "nvme0n1"))                       # A back: pending becomes A's rewrite
    assert ds[0].kind == "provider-back" and ds[0].action == "pending"
    t = DegradedStore(sd).load()[(f"namespace {NQN}/1", "rewrite-pending")].facts["target"]
    assert t["rewrite_p2pmem"] and t["p2pmem"] is None
    unplug(m, A, "nvme0")                                      # gone again before the operator came
    w.refresh()
    w.pending[f"{NQN}/1"].decision = "provider-back"
    (d,) = w.run_pending([f"{NQN}/1"], why="test")
    assert d.action == "dropped" and "gone again" in d.result["changes"][0] and cfs.log == []


def test_rewrite_policy_needs_reconcile(tmp_path, capsys):
    from nvmet_p2p import cli
    assert cli.main(["watch", "--rewrite", "idle", "--state-dir", str(tmp_path)]) == 2
    assert "--policy reconcile" in capsys.readouterr().err


def test_block_stat_counts_and_the_idle_clock():
    text = "  5 0 40 3   7 0 56 9   1 12 12   2 0 16 1   4 2"
    assert hp.block_stat_counts(text) == (5 + 7 + 2 + 4, 1)
    assert hp.block_stat_counts("garbage") is None
    c = hp.IdleClock(window=1.0)
    assert not c.observe((10, 0), 0.0) and not c.observe((10, 0), 0.5)
    assert c.observe((10, 0), 1.0)
    assert not c.observe((11, 0), 1.5) and not c.observe((11, 1), 3.0) and not c.observe((11, 0), 3.5)
    assert c.observe((11, 0), 4.5)


def test_a_namespace_exported_through_a_far_nic_too_is_replaced_for_the_nics_it_had(tmp_path, monkeypatch):
    """Topology hotplug-p2p: plainS exported through nicnear (beside the CMBs) and nicfar (behind
    another root port, which no provider can serve). No provider serves the NVMe and *every*
    NIC, so requiring all of them found nothing (lab: 'nothing to write', the namespace stayed
    on the removed cmbA); cmbB serves the NVMe and nicnear, as cmbA did."""
    from support import sysfs as sf
    root = tmp_path / "root"
    m = sf.hotplug_p2p_lab(root)
    (root / "dev").mkdir()
    for name in ("nvme0n1", "nvme2n1"):
        (root / f"dev/{name}").write_text("")
    cfs = Recorder(str(tmp_path / "cfs"))
    sd = str(tmp_path / "state")
    monkeypatch.setattr(fakenvmet, "P2P_PROVIDERS", {A, B})
    monkeypatch.setattr(fakenvmet, "DEVICES", dict(fakenvmet.DEVICES))
    monkeypatch.setattr(fakenvmet, "LISTEN", fakenvmet.LISTEN | {"10.79.0.1", "10.80.0.1"})
    doc = {"hosts": [], "subsystems": [{"nqn": NQN, "attr": {"allow_any_host": "1"}, "namespaces": [
        {"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme2n1"}, "p2pmem": A}]}],
        "ports": [{"portid": pid, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": ip, "trsvcid": "4420"},
                   "subsystems": [NQN]} for pid, ip in ((1, "10.79.0.1"), (2, "10.80.0.1"))]}
    reconcile(str(root), statefile.parse(doc), sd, cfs=cfs)
    cfs.log.clear()
    out = io.StringIO()
    w = watch.Watcher(watch.Options(root=str(root), state_dir=sd, policy="reconcile"), [],
                      watch.Log(stream=out), cfs=cfs)
    w.refresh()
    assert set(w.facts.ports[1].rdma) == {"rxp0"} and set(w.facts.ports[2].rdma) == {"rxp1"}
    unplug(m, A, "nvme0")
    ds = w.handle(removal(A, "nvme0n1"))
    assert [(d.kind, d.action) for d in ds] == [("provider-lost", "reconciled")], ds[0].result
    assert read_state(cfs).subsystems[NQN].namespaces[1].attrs["p2pmem"] == B
    line = lines(out)[-1]
    assert "0000:05:00.0, 0000:06:00.0" in line["changes"]
    assert "connections through 0000:08:00.0 use host memory" in line["changes"]
