"""``status`` across PCIe hotplug, from the real kernel's log (tests/fixtures/lab/hotplug-p2p1:
kernel 7.3 in the lab, topology ``hotplug-p2p``, the p2p-capable emulated NIC rxe_p2p; the
capture script and what each stage did are in that folder's README).

The target: nsid 1 (plainS) pinned on cmbA (0000:03:00.0), nsid 2 (cmbB) in auto mode; port 1
on nicnear (rxp0, beside the CMBs), port 2 on nicfar (rxp1, behind another root port: the
kernel refuses every provider under the switch for it). A host connected through each port;
cmbA was hot-removed and hot-added with the host connected (no watcher), the host reconnected,
then p2pmem was rewritten.

The rules under test: a mapping to a device that is gone, or was replaced since the mapping
was logged, or a namespace that still holds a replaced device, is never ``offload active``;
the verdicts and the OFFLOAD LOST line say the same, in text and --json; the controller the
kernel refused gets ``provider_unreachable_from_nic`` and its port."""

from __future__ import annotations

import json
import os

import pytest
from test_status import write_configfs

from nvmet_p2p import cli, exits
from nvmet_p2p.kernel import PciInstance, read_pci_instance
from nvmet_p2p.kmsg import parse_text
from nvmet_p2p.nvmet.state import Namespace, Port, Subsystem, TargetState
from nvmet_p2p.observe import evidence as ev
from nvmet_p2p.observe import status as st
from nvmet_p2p.pci.inventory import read_inventory
from support import sysfs as sf

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "lab", "hotplug-p2p1")
NQN = "nqn.2026-12.io.nvmet-p2p:explore"
A, B, FAR_NIC = "0000:03:00.0", "0000:04:00.0", "0000:08:00.0"
BYID = "/dev/disk/by-id/nvme-nvme.1b36-{}-51454d55204e564d65204374726c-00000001"
PLAIN_S, CMB_B = BYID.format("706c61696e53"), BYID.format("636d6242")
#: cmbA's birth as the runtime-PM clock gave it in the capture (ident.jsonl): boot, then the
#: hot-added device
BORN_BOOT, BORN_AGAIN = 2.88, 276.58
#: nvmet-p2p's restore wrote p2pmem at 80.8 s (the capture's "restored" stage)
BOUND_AT_RESTORE = ev.BindingFacts(A, written=80.0, time=1e9, appeared=BORN_BOOT, serial="cmbA")
BOUND_AT_REWRITE = ev.BindingFacts(A, written=362.4, time=1e9 + 300, appeared=BORN_AGAIN, serial="cmbA")


def log_until(stage: str) -> list:
    """The kernel log records up to the end of ``stage`` (the capture marks each stage with a
    ``#### <stage>`` line before the records printed during it)."""
    lines, seen = [], False
    with open(os.path.join(FIX, "kmsg.txt")) as f:
        for line in f:
            if line.startswith("#### "):
                if seen:
                    break
                seen = line.split()[1] == stage
            lines.append(line)
    assert seen, stage
    return parse_text("".join(lines))


def state(p2pmem_1: str = A) -> TargetState:
    s = TargetState()
    sub = Subsystem(nqn=NQN, attrs={"attr_allow_any_host": "1"})
    sub.namespaces[1] = Namespace(1, True, {"device_path": PLAIN_S, "p2pmem": p2pmem_1})
    sub.namespaces[2] = Namespace(2, True, {"device_path": CMB_B, "p2pmem": "1"})
    s.subsystems[NQN] = sub
    for pid, ip in ((1, "10.79.0.1"), (2, "10.80.0.1")):
        s.ports[pid] = Port(pid, {"addr_trtype": "rdma", "addr_adrfam": "ipv4", "addr_traddr": ip,
                                  "addr_trsvcid": "4420"}, [NQN])
    return s


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    return read_inventory(str(sf.hotplug_p2p_lab(tmp_path_factory.mktemp("hp")).root))


def devices(a_present=True, a_born=BORN_BOOT):
    return {A: PciInstance(A, a_present, a_born if a_present else None, "cmbA" if a_present else None,
                           True if a_present else None),
            B: PciInstance(B, True, 2.9, "cmbB", True)}


def report(inv, stage, *, a_present=True, a_born=BORN_BOOT, binding=None, degraded=None):
    return st.assemble(state(), inv, ev.parse_log(log_until(stage)), only={NQN},
                       dev_names={PLAIN_S: "nvme2n1", CMB_B: "nvme1n1"},
                       instances=devices(a_present, a_born),
                       bindings={f"{NQN}/1": binding} if binding else {}, degraded=degraded)


def verdicts(rep):
    return {(v.nsid, v.cntlid): v for v in rep.verdicts()}


def by_ctrl(ns_row: dict) -> dict:
    return {v["cntlid"]: v for v in ns_row["verdicts"]}


def agree(rep):
    """The OFFLOAD LOST line and the verdicts say the same: a namespace with the line has no
    active verdict, in the JSON as in the text."""
    d = rep.to_dict()
    text = st.render(rep)
    for n in d["subsystems"][0]["namespaces"]:
        lost = [e for e in n["degraded"] if e["kind"] == "offload-lost"]
        heads = [v["headline"] for v in n["verdicts"]]
        if lost:
            assert not any(v["verdict"] == ev.ACTIVE for v in n["verdicts"]), (n["nsid"], heads)
            assert f"nsid {n['nsid']}: OFFLOAD LOST" in text
            assert lost[0]["reason"] in {v["reason"] for v in n["verdicts"]} | {ev.R_NOT_CONNECTED}
    return d, text


# -- a namespace exported through two ports (item 5) ----------------------------------------

def test_the_refused_controller_gets_unreachable_and_its_port(inv):
    rep = report(inv, "connect-far")
    v = verdicts(rep)
    near, far = v[(1, 1)], v[(1, 2)]
    assert near.active and near.port == 1 and near.nic == "rxp0"
    assert far.reason == ev.R_UNREACHABLE, far.headline()          # was no_provider_for_nic_and_device
    assert far.port == 2 and far.nic == "rxp1" and far.nic_pci == FAR_NIC
    assert "refusal at connect names 0000:08:00.0" in far.port_source
    assert any("virtio-pci 0000:08:00.0: cannot be used for peer-to-peer DMA" in e for e in far.evidence)
    # nsid 2 (auto) through nicfar: the kernel's auto-mode line names its device
    assert v[(2, 2)].reason == ev.R_NO_PROVIDER and v[(2, 2)].port == 2
    assert v[(2, 1)].active
    ctrls = {c["cntlid"]: c for c in rep.to_dict()["subsystems"][0]["controllers"]}
    assert (ctrls[1]["port"], ctrls[2]["port"]) == (1, 2)
    rec = rep.to_dict()["subsystems"][0]["namespaces"][0]["verdicts"][1]
    assert {k: rec[k] for k in ("cntlid", "port", "nic", "provider", "verdict", "reason")} == {
        "cntlid": 2, "port": 2, "nic": "rxp1", "provider": A, "verdict": ev.INACTIVE,
        "reason": ev.R_UNREACHABLE}


def test_a_later_enable_does_not_give_the_refused_controller_a_mapping(inv):
    """ns 1 and 2 disabled and enabled with both hosts connected: the kernel printed one late
    'using p2pmem' line per namespace (for the near controller) and the refusal for the far
    one; the far controller stays unreachable, the near one active on its late line."""
    v = verdicts(report(inv, "late-enable", a_born=BORN_AGAIN, binding=BOUND_AT_REWRITE))
    assert v[(1, 2)].reason == ev.R_UNREACHABLE
    assert v[(1, 1)].active and "namespace enabled while controller 1 was connected" in v[(1, 1)].evidence[0]
    assert v[(2, 2)].reason == ev.R_NO_PROVIDER and v[(2, 1)].active


# -- a provider hot-removed and back (item 1) -----------------------------------------------

def test_a_mapping_to_a_removed_provider_is_never_active(inv):
    rep = report(inv, "removed-A", a_present=False, binding=BOUND_AT_RESTORE)
    v = verdicts(rep)
    assert v[(1, 1)].reason == ev.R_PROVIDER_REMOVED, v[(1, 1)].headline()   # was "offload active"
    assert v[(2, 1)].active                       # nsid 2 on cmbB is untouched
    d, text = agree(rep)
    (row,) = d["subsystems"][0]["namespaces"][0]["degraded"]
    assert row["reason"] == ev.R_PROVIDER_REMOVED and row["provider"] == A


def test_a_host_connecting_after_the_removal_gets_the_gone_device(inv):
    """The kernel logs 'using p2pmem on <removed BDF>' for the new connection (the namespace
    holds the removed device): still never active."""
    rep = report(inv, "reconnect-after-remove", a_present=False, binding=BOUND_AT_RESTORE)
    v = verdicts(rep)
    assert v[(1, 1)].reason == ev.R_PROVIDER_REMOVED
    assert "no longer on the PCI bus" in v[(1, 1)].detail or "not on the PCI bus" in v[(1, 1)].detail
    agree(rep)


def test_back_without_a_rewrite_the_connected_controller_holds_the_old_device(inv):
    rep = report(inv, "added-A", a_born=BORN_AGAIN, binding=BOUND_AT_RESTORE)
    v = verdicts(rep)
    assert v[(1, 1)].reason == ev.R_PROVIDER_REPLACED, v[(1, 1)].headline()
    d, text = agree(rep)
    assert "new PCI device" in text


def test_back_without_a_rewrite_a_new_connection_is_not_active_either(inv):
    """After the return a new connection logs the mapping again (after the new device's
    'added peer-to-peer DMA memory' line); the namespace still holds the removed device,
    because p2pmem was written before it appeared. Issue 20: plain status said active."""
    rep = report(inv, "reconnect-after-add", a_born=BORN_AGAIN, binding=BOUND_AT_RESTORE)
    assert verdicts(rep)[(1, 1)].reason == ev.R_PROVIDER_REPLACED
    agree(rep)
    # without nvmet-p2p's record of the write: the log shows cmbA's pool registered twice
    rep = report(inv, "reconnect-after-add", a_born=BORN_AGAIN)
    v = verdicts(rep)[(1, 1)]
    assert v.reason == ev.R_PROVIDER_UNVERIFIED and "hot-added" in v.detail
    agree(rep)


def test_after_the_rewrite_the_late_mapping_is_active(inv):
    rep = report(inv, "rewrite", a_born=BORN_AGAIN, binding=BOUND_AT_REWRITE)
    v = verdicts(rep)[(1, 1)]
    assert v.active, v.headline()
    d, _ = agree(rep)
    assert d["subsystems"][0]["namespaces"][0]["degraded"] == []


def test_a_stale_watch_record_is_dropped_after_a_rewrite_and_kept_before(inv):
    from nvmet_p2p.nvmet.degraded import Entry
    obj = f"namespace {NQN}/1"
    rec = {(obj, "offload-lost"): Entry(obj, "offload-lost", 1e9 + 100, "provider back as a new device",
                                        "watch", {"provider": A})}
    rep = report(inv, "rewrite", a_born=BORN_AGAIN, binding=BOUND_AT_REWRITE, degraded=rec)
    assert verdicts(rep)[(1, 1)].active
    assert rep.to_dict()["subsystems"][0]["namespaces"][0]["degraded"] == []
    rep = report(inv, "rewrite", a_born=BORN_AGAIN, binding=BOUND_AT_RESTORE, degraded=rec)
    assert verdicts(rep)[(1, 1)].reason == ev.R_PROVIDER_REPLACED
    agree(rep)


# -- the device's identity, read from sysfs --------------------------------------------------

def test_runtime_pm_age_gives_the_device_birth(tmp_path):
    m = sf.hotplug_p2p_lab(tmp_path)
    d = m.path(m.sysfs_dir(A))
    (d / "power").mkdir(exist_ok=True)
    (d / "power/runtime_active_time").write_text("3865\n")
    (d / "power/runtime_suspended_time").write_text("0\n")
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc/uptime").write_text("280.44 155.14\n")
    inst = read_pci_instance(str(tmp_path), A)
    assert inst.present and inst.serial == "cmbA" and inst.published
    assert inst.appeared == pytest.approx(276.575)
    assert not read_pci_instance(str(tmp_path), "0000:0f:00.0").present


# -- the whole command on a tree: text, --json and --watch --json --io agree ------------------

def _tree(tmp_path, stage, *, a_present, a_age_ms=None, uptime=300.0):
    m = sf.hotplug_p2p_lab(tmp_path, write=False)
    if not a_present:
        del m.pcis[A]
        del m.nvmes["nvme0"]
    m.write()
    for bdf, age in ((A, a_age_ms), (B, (uptime - 2.9) * 1000)):
        if bdf == A and not a_present:
            continue
        d = m.path(m.sysfs_dir(bdf))
        (d / "power").mkdir(exist_ok=True)
        ms = age if age is not None else (uptime - BORN_BOOT) * 1000
        (d / "power/runtime_active_time").write_text(f"{int(ms)}\n")
        (d / "power/runtime_suspended_time").write_text("0\n")
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc/uptime").write_text(f"{uptime} 1.0\n")
    write_configfs(tmp_path, state())
    (tmp_path / "dev").mkdir(exist_ok=True)
    with open(os.path.join(FIX, "kmsg.txt")) as f:
        text = f.read()
    cut = text.index("#### ", text.index(f"#### {stage} ") + 1)
    (tmp_path / "dev/kmsg").write_text(text[:cut])
    return m


def test_status_text_json_and_watch_json_io_agree_on_a_removed_provider(tmp_path, capsys, monkeypatch):
    _tree(tmp_path, "reconnect-after-remove", a_present=False)
    sd = str(tmp_path / "state")
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--json", "--state-dir", sd]) == 0
    d = json.loads(capsys.readouterr().out)
    n1 = d["subsystems"][0]["namespaces"][0]
    assert [e["reason"] for e in n1["degraded"]] == [ev.R_PROVIDER_REMOVED]
    assert {v["reason"] for v in n1["verdicts"]} <= {ev.R_PROVIDER_REMOVED, ev.R_UNREACHABLE}
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--state-dir", sd]) == 0
    text = capsys.readouterr().out
    assert "nsid 1: OFFLOAD LOST" in text and "nsid 1 × controller 1: offload active" not in text
    import nvmet_p2p.commands.status as cmd
    ticks = []

    def one_tick(s):
        ticks.append(s)
        if len(ticks) > 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(cmd.time, "sleep", one_tick)
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--state-dir", sd, "--watch", "0.1",
                     "--json", "--io"]) == exits.INTERRUPTED
    (doc,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    n1 = doc["subsystems"][0]["namespaces"][0]
    assert [e["reason"] for e in n1["degraded"]] == [ev.R_PROVIDER_REMOVED]
    assert not any(v["verdict"] == ev.ACTIVE for v in n1["verdicts"])


def test_status_reads_a_replaced_device_from_the_binding_record(tmp_path, capsys):
    """The state directory's record (written by the apply that set p2pmem) against the device
    at that BDF now: born after the write -> the namespace holds the removed one."""
    from nvmet_p2p.nvmet import bindings
    from nvmet_p2p.nvmet.journal import boot_id
    _tree(tmp_path, "reconnect-after-add", a_present=True, a_age_ms=(300.0 - BORN_AGAIN) * 1000)
    sd = tmp_path / "state"
    sd.mkdir()
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("b00t\n")
    assert boot_id(str(tmp_path)) == "b00t"
    doc = {"format": 1, "namespaces": {f"{NQN}/1": {"p2pmem": A, "written": 80.0, "time": 1e9,
                                                    "boot_id": "b00t", "appeared": BORN_BOOT,
                                                    "serial": "cmbA"}}}
    (sd / bindings.FILE).write_text(json.dumps(doc))
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--json", "--state-dir", str(sd)]) == 0
    n1 = json.loads(capsys.readouterr().out)["subsystems"][0]["namespaces"][0]
    assert [e["reason"] for e in n1["degraded"]] == [ev.R_PROVIDER_REPLACED]
    assert by_ctrl(n1)[1]["reason"] == ev.R_PROVIDER_REPLACED
    # another boot's record says nothing about this boot's devices: the log decides
    doc["namespaces"][f"{NQN}/1"]["boot_id"] = "other"
    (sd / bindings.FILE).write_text(json.dumps(doc))
    assert cli.main(["status", "--root", str(tmp_path), "--all", "--json", "--state-dir", str(sd)]) == 0
    n1 = json.loads(capsys.readouterr().out)["subsystems"][0]["namespaces"][0]
    assert by_ctrl(n1)[1]["reason"] == ev.R_PROVIDER_UNVERIFIED


def test_the_pool_sampler_starts_afresh_for_a_device_that_came_back():
    """A pool that could not be read (removed) and is read again belongs to a new device: the
    old device's minimum and movement must not count for it (status --watch samples across
    a hotplug)."""
    values = iter([100, 40, OSError, OSError, 100, 100])

    def reader(_root, _bdf):
        v = next(values)
        if v is OSError:
            raise OSError("gone")
        return v

    s = ev.PoolSampler([A], root="/nonexistent", probe=ev.PoolProbe(read=reader, clock=iter(range(100)).__next__))
    for _ in range(6):
        s.sample_once()
    st_ = s.stats[A]
    assert (st_.samples, st_.minimum, st_.moved) == (2, 100, False)
    assert s.restarts == {A: 1}
