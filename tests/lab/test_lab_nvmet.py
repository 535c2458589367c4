"""Lab tier: the reconciler against the real nvmet configfs of the lab kernel.

One realistic target is built from a state file (2 subsystems; namespaces on CMB NVMe with
p2pmem pinned to a provider BDF; one port per transport: rdma over soft-RoCE, tcp, loop;
allowed hosts, one with a DH-HMAC-CHAP key), hosts connect with nvme-cli, and then the tests
check what the kernel really does: re-apply is zero writes and leaves the connections alone,
a p2pmem change cycles only its namespace, injected failures leave configfs exactly as before
(full dump compared), save -> clear -> restore -> save is byte-identical, and what we write
passes nvmetcli's restore rules. A hand-made export outside the managed set survives it all.

(The RDMA NIC <-> CMB data path is not exercised: soft-RoCE has no PCI device, so nvmet never
maps p2pmem for fabric I/O in the lab; the configuration and enable-time checks are real.)
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import pytest

from nvmet_p2p.kmsg import KernelLog
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import ApplyFailed, reconcile
from nvmet_p2p.nvmet.configfs import Configfs, capabilities, read_state

pytestmark = pytest.mark.lab

CFG = "/sys/kernel/config/nvmet"
S1 = "nqn.2026-11.io.lab:target1"
S2 = "nqn.2026-11.io.lab:target2"
HOSTID = "7c9c7a1e-6b1a-4b53-9d27-0d7a3c5e2f11"
H1 = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
H2 = "nqn.2014-08.org.nvmexpress:uuid:0b4d3a58-9f2e-4a51-8b9a-2f0b6ad4e7c3"
H2_KEY = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"
HANDMADE = "nqn.2026-11.io.user:handmade"


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")
    return r


def cli(*args, check=True):
    return sh(sys.executable, "-m", "nvmet_p2p", *args, check=check)


def dump() -> dict:
    """Every readable attribute and every link of the nvmet tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(CFG):
        rel = os.path.relpath(dirpath, CFG)
        for n in dirnames + filenames:
            q = os.path.join(dirpath, n)
            if os.path.islink(q):
                out[f"{rel}/{n}"] = "-> " + os.path.basename(os.readlink(q))
            elif os.path.isfile(q) and os.stat(q).st_mode & 0o444:
                with open(q) as f:
                    out[f"{rel}/{n}"] = f.read()
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


def fabric_ctrls() -> dict[str, tuple]:
    out = {}
    base = "/sys/class/nvme"
    for c in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        def rd(n):
            try:
                with open(f"{base}/{c}/{n}") as f:
                    return f.read().strip()
            except OSError:
                return ""
        if rd("transport") in ("tcp", "rdma", "loop"):
            out[c] = (rd("transport"), rd("subsysnqn"), rd("state"), rd("cntlid"))
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = os.environ.get("NVMET_P2P_LAB_DEVICES")
    if os.environ.get("NVMET_P2P_LAB") != "1" or not path:
        pytest.skip("lab test: needs the QEMU lab (tools/lab/run)")
    with open(path) as f:
        lab_devices = json.load(f)
    for m in ("nvmet", "nvmet-rdma", "nvmet-tcp", "nvme-loop", "nvme-rdma", "nvme-tcp", "nvme-fabrics"):
        sh("modprobe", m)
    nv = lab_devices["nvme"]
    rdma = next(iter(lab_devices["rdma"].values()))
    work = tmp_path_factory.mktemp("nvmet")
    env = {"state_dir": str(work / "state"), "work": work, "dev": nv, "ip": rdma["ip"]}
    os.environ["NVMET_P2P_STATE_DIR"] = env["state_dir"]
    # a hand-made export nvmet-p2p must never touch
    img = work / "handmade.img"
    sh("truncate", "-s", "16M", str(img))
    hm = f"{CFG}/subsystems/{HANDMADE}"
    os.mkdir(hm)
    os.mkdir(f"{hm}/namespaces/7")
    for f, v in (("device_path", str(img)), ("enable", "1")):
        with open(f"{hm}/namespaces/7/{f}", "w") as fh:
            fh.write(v)
    doc = {
        "hosts": [{"nqn": H1}, {"nqn": H2, "dhchap": {"key": H2_KEY, "hash": "hmac(sha512)"}}],
        "subsystems": [
            {"nqn": S1, "attr": {"allow_any_host": "0", "serial": "nvmetp2p-t1", "model": "nvmet-p2p lab"},
             "allowed_hosts": [H1, H2],
             "namespaces": [
                 {"nsid": 1, "enable": 1, "device": {"path": nv["cmbA"]["namespaces"][0]},
                  "p2pmem": nv["cmbB"]["bdf"]},
                 {"nsid": 2, "enable": 1, "device": {"path": nv["cmbC"]["namespaces"][0]},
                  "p2pmem": nv["cmbC"]["bdf"]}]},
            {"nqn": S2, "attr": {"allow_any_host": "0"}, "allowed_hosts": [H1],
             "namespaces": [
                 {"nsid": 1, "enable": 1, "device": {"path": nv["cmbB"]["namespaces"][0]},
                  "p2pmem": nv["cmbA"]["bdf"]},
                 {"nsid": 2, "enable": 1, "device": {"path": nv["plain"]["namespaces"][0]},
                  "p2pmem": "0"}]}],
        "ports": [
            {"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": rdma["ip"],
                                   "trsvcid": "4420"},
             "param": {"inline_data_size": "0"}, "subsystems": [S1, S2]},
            {"portid": 2, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                                   "trsvcid": "4420"}, "subsystems": [S1, S2]},
            {"portid": 3, "addr": {"trtype": "loop"}, "subsystems": [S2]}],
    }
    env["doc"] = doc
    env["state_file"] = work / "target.json"
    env["state_file"].write_text(json.dumps(doc, indent=2))
    yield env
    for c in fabric_ctrls():
        sh("nvme", "disconnect", "-d", c, check=False)
    cli("clear", "--all", "--yes", check=False)


def _apply(doc, state_dir, **kw):
    return reconcile("/", statefile.parse(doc), state_dir, **kw)


def test_01_kernel_capabilities_are_read_not_assumed(lab):
    caps = capabilities(Configfs("/"))
    ns = caps.kinds["namespace"]
    assert ns.source == "observed"            # the hand-made namespace exists
    assert "p2pmem" in ns.attrs and "resv_enable" in ns.attrs   # 7.x with CONFIG_PCI_P2PDMA
    assert caps.kinds["port"].source == "release table"          # no port exists yet


def test_02_create_target_from_state_file(lab):
    before = dump()
    r = cli("apply", "--state", str(lab["state_file"]), "--json")
    out = json.loads(r.stdout)
    assert out["applied"] and out["result"]["configfs_writes"] == out["plan"]["writes"] > 20
    nv = lab["dev"]
    assert open(f"{CFG}/subsystems/{S1}/namespaces/1/p2pmem").read().strip() == nv["cmbB"]["bdf"]
    assert open(f"{CFG}/subsystems/{S1}/namespaces/2/p2pmem").read().strip() == nv["cmbC"]["bdf"]
    for s, n in ((S1, 1), (S1, 2), (S2, 1), (S2, 2)):
        assert open(f"{CFG}/subsystems/{s}/namespaces/{n}/enable").read().strip() == "1"
    assert sorted(os.listdir(f"{CFG}/ports/1/subsystems")) == [S1, S2]
    assert open(f"{CFG}/hosts/{H2}/dhchap_hash").read().strip() == "hmac(sha512)"
    assert H2_KEY not in r.stdout and H2_KEY not in r.stderr          # secrets masked
    # the hand-made export is untouched
    hm = {k: v for k, v in before.items() if HANDMADE in k}
    assert hm and all(dump()[k] == v for k, v in hm.items())


def test_03_connect_over_rdma_tcp_and_loop(lab):
    base = ["--hostnqn", H1, "--hostid", HOSTID]
    sh("nvme", "connect", "-t", "rdma", "-a", lab["ip"], "-s", "4420", "-n", S1, *base)
    sh("nvme", "connect", "-t", "tcp", "-a", "127.0.0.1", "-s", "4420", "-n", S2, *base)
    sh("nvme", "connect", "-t", "loop", "-n", S2, *base)
    for _ in range(50):
        c = fabric_ctrls()
        if len(c) == 3 and all(v[2] == "live" for v in c.values()):
            break
        time.sleep(0.2)
    c = fabric_ctrls()
    assert sorted(v[0] for v in c.values()) == ["loop", "rdma", "tcp"], c
    assert all(v[2] == "live" for v in c.values()), c
    lab["ctrls"] = c


def test_04_reapply_is_zero_writes_and_connections_stay(lab):
    log = KernelLog()
    mark = log.mark()
    out = _apply(lab["doc"], lab["state_dir"])
    assert out.plan.ops == [] and out.result.writes == 0
    time.sleep(1)
    assert fabric_ctrls() == lab["ctrls"]
    assert not log.grep_since(mark, r"Created nvm controller|Removing ctrl|disconnect")
    r = cli("plan", "--state", str(lab["state_file"]))
    assert "No changes" in r.stdout and "0 writes" in r.stdout


def test_05_p2pmem_change_cycles_only_that_namespace(lab):
    doc = copy.deepcopy(lab["doc"])
    doc["subsystems"][0]["namespaces"][1]["p2pmem"] = lab["dev"]["cmbA"]["bdf"]
    before = dump()
    out = _apply(doc, lab["state_dir"])
    ns2 = f"subsystems/{S1}/namespaces/2"
    assert [(o.action, o.path, o.value) for o in out.plan.ops] == [
        ("write", f"{ns2}/enable", "0"), ("write", f"{ns2}/p2pmem", lab["dev"]["cmbA"]["bdf"]),
        ("write", f"{ns2}/enable", "1")]
    assert out.result.writes == 3
    after = dump()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [f"{ns2}/p2pmem"]
    time.sleep(1)
    assert fabric_ctrls() == lab["ctrls"]           # S1's rdma controller stays connected
    out = _apply(lab["doc"], lab["state_dir"])      # and back
    assert out.result.writes == 3


def _fails(lab, doc, errname, kernel_words):
    before = dump()
    with pytest.raises(ApplyFailed) as e:
        _apply(doc, lab["state_dir"])
    exc = e.value
    assert exc.to_dict()["errno_name"] == errname, str(exc)
    assert any(kernel_words in line for line in exc.dmesg), exc.dmesg
    assert exc.rolled_back >= 1 and not exc.rollback_errors, str(exc)
    assert dump() == before
    assert fabric_ctrls() == lab["ctrls"]
    return exc


def test_06_missing_device_rolls_back(lab):
    doc = copy.deepcopy(lab["doc"])
    doc["hosts"].append({"nqn": "nqn.2014-08.org.example:late-host"})
    doc["subsystems"][0]["allowed_hosts"].append("nqn.2014-08.org.example:late-host")
    doc["subsystems"][0]["namespaces"].append(
        {"nsid": 3, "enable": 1, "device": {"path": "/dev/nvme-gone"}})
    exc = _fails(lab, doc, "ENOENT", "failed to open block device /dev/nvme-gone")
    assert exc.op.path.endswith("namespaces/3/enable") and exc.step > 3


def test_07_provider_the_kernel_refuses_rolls_back(lab):
    doc = copy.deepcopy(lab["doc"])
    # plain NVMe (other root port) with a CMB behind the switch: not p2p-compatible
    doc["subsystems"][1]["namespaces"][1]["p2pmem"] = lab["dev"]["cmbB"]["bdf"]
    exc = _fails(lab, doc, "EINVAL", "cannot be used for peer-to-peer DMA")
    assert exc.op.path == f"subsystems/{S2}/namespaces/2/enable"
    assert open(f"{CFG}/subsystems/{S2}/namespaces/2/p2pmem").read().strip() == "0"


def test_08_provider_without_p2pmem_is_refused_at_write(lab):
    doc = copy.deepcopy(lab["doc"])
    doc["subsystems"][1]["namespaces"][1]["p2pmem"] = lab["dev"]["plain"]["bdf"]
    _fails(lab, doc, "ENODEV", "has no peer-to-peer memory")


def test_09_invalid_port_address_rolls_back(lab):
    doc = copy.deepcopy(lab["doc"])
    doc["ports"].append({"portid": 4, "addr": {"trtype": "rdma", "adrfam": "ipv4",
                                               "traddr": "10.99.0.1", "trsvcid": "4420"},
                         "subsystems": [S1]})
    exc = _fails(lab, doc, "EADDRNOTAVAIL", "10.99.0.1:4420")
    assert exc.op.action == "link" and not os.path.exists(f"{CFG}/ports/4")


def test_10_second_apply_waits_for_the_lock(lab):
    from nvmet_p2p.nvmet.apply import apply_lock
    with apply_lock(lab["state_dir"]):
        t0 = time.monotonic()
        r = cli("apply", "--state", str(lab["state_file"]), "--lock-timeout", "2", check=False)
        waited = time.monotonic() - t0
    assert r.returncode == 3 and "another nvmet-p2p apply is running" in r.stderr
    assert "waited 2 s" in r.stderr and waited >= 2


def test_11_save_clear_restore_save_is_byte_identical(lab):
    for c in fabric_ctrls():
        sh("nvme", "disconnect", "-d", c)
    f1, f2 = lab["work"] / "saved1.json", lab["work"] / "saved2.json"
    cli("save", str(f1))
    assert oct(os.stat(f1).st_mode & 0o777) == "0o600"
    saved = json.loads(f1.read_text())
    assert statefile.nvmetcli_problems(saved) == []
    s1 = next(s for s in saved["subsystems"] if s["nqn"] == S1)
    assert s1["namespaces"][0]["p2pmem"] == lab["dev"]["cmbB"]["bdf"]   # nvmetcli would drop it
    assert "buffered_io" in s1["namespaces"][0]
    r = cli("clear", "--json")
    assert json.loads(r.stdout)["applied"]
    left = read_state(Configfs("/"))
    assert set(left.subsystems) == {HANDMADE} and not left.ports and not left.hosts
    # restore the whole saved file (it also holds the hand-made export: adopted, not rewritten)
    r = cli("restore", str(f1), "--json")
    out = json.loads(r.stdout)
    assert out["applied"] and not [o for o in out["plan"]["ops"] if HANDMADE in o["path"]]
    cli("save", str(f2))
    assert f2.read_bytes() == f1.read_bytes()
    out = _apply(saved, lab["state_dir"])
    assert out.result.writes == 0
