"""``nvmet-p2p doctor``: checks on synthetic machines read through the real readers."""

from __future__ import annotations

import json
import subprocess
import sys

from nvmet_p2p.pci.doctor import FAIL, OK, SKIP, WARN, diagnose
from nvmet_p2p.pci.inventory import read_inventory
from support import sysfs as sf


def run_doctor(m, kernel=None):
    report = diagnose(read_inventory(m.root), kernel=kernel)
    return report, {c.id: c for c in report.checks}


def cli(root, *extra):
    return subprocess.run([sys.executable, "-m", "nvmet_p2p", "doctor", "--root", str(root), *extra],
                          capture_output=True, text=True)


def good_machine(tmp_path):
    """A machine that can offload: NIC and CMB NVMe behind one switch, no ACS, SQs off the CMB."""
    m = sf.vf_pf(tmp_path / "good", vfs=0, write=False)
    m.update_system(use_cmb_sqes="N")
    m.set_p2pmem("0000:03:00.0", available=64 << 20)
    return m.write()


def test_good_machine_can_offload(tmp_path):
    report, c = run_doctor(good_machine(tmp_path))
    bad = {k: (v.status, v.detail) for k, v in c.items() if v.status not in (OK, SKIP)}
    assert report.can_offload, bad
    assert c["paths"].status == OK and "1 map by PCI bus address" in c["paths"].detail
    assert report.summary == "CAN OFFLOAD: every check passed"
    r = cli(tmp_path / "good")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "CAN OFFLOAD: every check passed"


def test_lab_without_rdma_cannot_offload(tmp_path):
    m = sf.q35_lab(tmp_path)
    report, c = run_doctor(m)
    assert not report.can_offload
    assert c["rdma"].status == FAIL and "no RDMA device" in c["rdma"].detail
    assert report.summary.startswith("CANNOT OFFLOAD: no RDMA device")
    r = cli(m.root)
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].startswith("CANNOT OFFLOAD: no RDMA device")


def test_only_soft_rdma_is_a_blocker(tmp_path):
    m = sf.soft_roce(tmp_path, siw=True)
    report, c = run_doctor(m)
    assert c["rdma"].status == FAIL
    assert "only soft RDMA present" in c["rdma"].detail
    assert "rxe0 (rdma_rxe)" in c["rdma"].detail and "siw0 (siw)" in c["rdma"].detail
    assert c["paths"].status == SKIP
    assert not report.can_offload


def test_missing_p2pdma_names_debian_kernels(tmp_path):
    m = sf.q35_lab(tmp_path, write=False)
    for b in ("0000:03:00.0", "0000:04:00.0", "0000:05:00.0"):
        m.set_p2pmem(b, remove=True)
    m.update_system(kernel_release="6.12.117+deb13-amd64", kernel_config=sf.NO_P2P_KERNEL_CONFIG)
    m.write()
    report, c = run_doctor(m)
    p = c["p2pdma"]
    assert p.status == FAIL and "without CONFIG_PCI_P2PDMA" in p.detail
    assert "6.1" in p.fix and "6.12" in p.fix and "trixie-backports" in p.fix
    assert report.summary.startswith("CANNOT OFFLOAD: the kernel 6.12.117+deb13-amd64 is built "
                                     "without CONFIG_PCI_P2PDMA")
    assert c["providers"].status == FAIL


def test_p2pdma_inferred_from_p2pmem_when_no_config(tmp_path):
    m = sf.q35_lab(tmp_path, write=False)
    m.update_system(kernel_config_at=None)
    _, c = run_doctor(m.write())
    assert c["p2pdma"].status == OK and "p2pmem directories exist" in c["p2pdma"].detail
    for b in ("0000:03:00.0", "0000:04:00.0", "0000:05:00.0"):
        m.set_p2pmem(b, remove=True)
    _, c = run_doctor(m.write())
    assert c["p2pdma"].status == WARN


def test_configfs_not_mounted(tmp_path):
    m = good_machine(tmp_path)
    m.update_system(configfs=False).write()
    report, c = run_doctor(m)
    assert c["configfs"].status == FAIL and "mount -t configfs" in c["configfs"].fix
    assert not report.can_offload


def test_nvmet_modules(tmp_path):
    m = good_machine(tmp_path)
    mods = dict(sf.LAB_MODULES)
    del mods["nvmet_rdma"]
    m.update_system(modules_loaded=["nvme"], modules_available=mods,
                    kernel_config=dict(sf.P2P_KERNEL_CONFIG, CONFIG_NVME_TARGET_RDMA=None),
                    nvmet_configfs=False).write()
    report, c = run_doctor(m)
    assert c["nvmet"].status == OK and "modprobe nvmet" in c["nvmet"].detail
    assert c["nvmet_rdma"].status == FAIL and "not available" in c["nvmet_rdma"].detail
    assert not report.can_offload


def test_cmb_present_but_not_registered(tmp_path):
    m = sf.q35_lab(tmp_path, write=False)
    m.set_p2pmem("0000:04:00.0", remove=True)
    _, c = run_doctor(m.write())
    assert c["cmb-registered"].status == WARN
    assert "nvme1 (0000:04:00.0, CMB 64 MiB)" in c["cmb-registered"].detail
    assert "2 MiB" in c["cmb-registered"].fix
    assert c["providers"].status == OK          # the other two CMBs still provide


def test_no_provider_at_all_because_cmb_unregistered(tmp_path):
    m = sf.Machine(tmp_path)
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x29C0)
    m.root_port("0000:00:04.0", secondary=1)
    m.nvme("0000:01:00.0", parent="0000:00:04.0", ctrl="nvme0", cmb_mb=1, p2pmem=False)
    m.write()
    _, c = run_doctor(m)
    assert c["providers"].status == FAIL and "was not registered" in c["providers"].detail
    assert c["cmb-registered"].status == WARN


def test_unpublished_provider(tmp_path):
    m = sf.q35_lab(tmp_path, write=False)
    for b in ("0000:03:00.0", "0000:04:00.0", "0000:05:00.0"):
        m.set_p2pmem(b, published=False)
    _, c = run_doctor(m.write())
    assert c["providers"].status == FAIL and "not published" in c["providers"].detail


def test_cmb_consumed_by_sqes(tmp_path):
    m = sf.q35_lab(tmp_path)
    _, c = run_doctor(m)
    s = c["cmb-sqes"]
    assert s.status == WARN and "use_cmb_sqes=0" in s.fix
    assert "63.88 MiB of 64 MiB available" in s.detail
    assert [i["used"] for i in s.items] == [131072] * 3
    m.update_system(use_cmb_sqes="N").write()
    assert run_doctor(m)[1]["cmb-sqes"].status == OK
    m.update_system(use_cmb_sqes=None).write()
    assert run_doctor(m)[1]["cmb-sqes"].status == SKIP


def test_multipath_head_disks(tmp_path):
    m = sf.multipath(tmp_path)
    _, c = run_doctor(m)
    assert c["multipath"].status == WARN and "nvme4n1 is a native-multipath head disk" in c["multipath"].detail
    assert "nvme_core.multipath=N" in c["multipath"].fix
    assert c["namespaces"].status == OK


def test_only_multipath_namespaces(tmp_path):
    m = sf.Machine(tmp_path)
    m.host_bridge_device("0000:00:00.0", 0x8086, 0x29C0)
    m.root_port("0000:00:06.0", secondary=7)
    m.root_port("0000:00:07.0", secondary=8)
    m.nvme("0000:07:00.0", parent="0000:00:06.0", ctrl="nvme0", subsys="nvme-subsys0",
           namespaces=[], cmb_mb=64)
    m.nvme("0000:08:00.0", parent="0000:00:07.0", ctrl="nvme1", subsys="nvme-subsys0", namespaces=[])
    m.multipath_head(subsys="nvme-subsys0", ctrls=["nvme0", "nvme1"])
    _, c = run_doctor(m.write())
    assert c["namespaces"].status == FAIL and "multipath head" in c["namespaces"].detail


def test_acs_on_switch_gives_exact_kernel_parameter(tmp_path):
    m = sf.acs_switch(tmp_path)
    report, c = run_doctor(m)
    p = c["paths"]
    assert p.status == FAIL          # q35 host bridge is not whitelisted: ACS makes it refuse
    # both pairs need clearing: the fix is the union; each pair carries the kernel's own string
    assert "pci=disable_acs_redir=0000:02:00.0;0000:02:01.0;0000:02:02.0 (quote" in p.fix
    assert {i["provider"]: i["kernel_parameter"] for i in p.items} == {
        "0000:03:00.0": "pci=disable_acs_redir=0000:02:00.0;0000:02:02.0",
        "0000:04:00.0": "pci=disable_acs_redir=0000:02:01.0;0000:02:02.0"}
    assert "ACS redirect is set on 0000:02:00.0, 0000:02:02.0" in p.detail
    assert c["iommu"].status == OK and "IOMMU is active" in c["iommu"].detail
    m.set_acs("0000:02:00.0", 0).set_acs("0000:02:01.0", 0).set_acs("0000:02:02.0", 0).write()
    _, c = run_doctor(m)
    assert c["paths"].status == OK


def test_acs_with_amd_zen_cpu_downgrades_instead(tmp_path):
    m = sf.acs_switch(tmp_path, write=False)
    m.update_system(cpu_vendor="AuthenticAMD", cpu_family=0x17)
    _, c = run_doctor(m.write())
    p = c["paths"]
    assert p.status == WARN and "0 map by PCI bus address, 2 go through the root complex" in p.detail
    assert "pci=disable_acs_redir=0000:02:00.0;0000:02:01.0;0000:02:02.0" in p.fix
    m.set_p2pmem("0000:04:00.0", remove=True).write()      # one pair left: the kernel's string
    _, c = run_doctor(m)
    assert "boot with pci=disable_acs_redir=0000:02:00.0;0000:02:02.0 (quote" in c["paths"].fix


def test_multifunction_endpoint_acs(tmp_path):
    _, c = run_doctor(sf.multifunction_acs(tmp_path))
    assert c["paths"].status == FAIL
    assert "ACS redirect is set on 0000:04:00.0" in c["paths"].detail


def test_cross_socket_refusals_are_counted(tmp_path):
    report, c = run_doctor(sf.two_host_bridges(tmp_path))
    p = c["paths"]
    assert p.status == WARN
    assert "0 map by PCI bus address, 2 go through the root complex, 2 refused" in p.detail
    assert report.can_offload


def test_non_root_snapshot_warns(tmp_path):
    m = sf.vf_pf(tmp_path, vfs=0, write=False)
    m.privileged = False
    _, c = run_doctor(m.write())
    assert c["config-space"].status == WARN and "not root" in c["config-space"].detail
    assert "as root" in c["config-space"].fix
    assert c["paths"].status in (WARN, OK)
    assert c["paths"].items[0]["uncertain"]


def test_missing_addresses_warn(tmp_path):
    m = good_machine(tmp_path)
    m.nets["ens1f0np0"].addresses = ["fe80::1/64"]
    _, c = run_doctor(m.write())
    assert c["addresses"].status == WARN and "mlx5_0" in c["addresses"].detail


def test_kernel_version_checks(tmp_path):
    m = good_machine(tmp_path)
    _, c = run_doctor(m, kernel="4.19")
    assert c["kernel"].status == FAIL
    _, c = run_doctor(m, kernel="5.3")
    assert c["kernel"].status == WARN
    r = cli(m.root, "--kernel", "4.19")
    assert r.returncode == 1 and r.stdout.startswith("CANNOT OFFLOAD: kernel 4.19 predates")


def test_json_output(tmp_path):
    m = sf.soft_roce(tmp_path)
    r = cli(m.root, "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["can_offload"] is False and doc["summary"].startswith("CANNOT OFFLOAD: only soft RDMA")
    ids = [c["id"] for c in doc["checks"]]
    assert {"p2pdma", "configfs", "nvmet", "nvmet_rdma", "iommu", "paths", "cmb-registered",
            "cmb-sqes", "rdma", "multipath", "config-space"} <= set(ids)
    assert sum(doc["counts"].values()) == len(ids)
    for c in doc["checks"]:
        assert c["status"] in ("ok", "warn", "fail", "skip")
        if c["status"] in ("warn", "fail"):
            assert c["fix"], c["id"]


def test_doctor_reads_an_inventory_file(tmp_path):
    m = good_machine(tmp_path)
    inv = read_inventory(m.root)
    f = tmp_path / "inv.json"
    f.write_text(json.dumps(inv.to_dict()))
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "doctor", "--inventory", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("CAN OFFLOAD")


def _enable_nvmetcli(root, where="etc", target="multi-user.target.wants"):
    wants = root / where / "systemd" / "system" / target
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "nvmet.service").symlink_to("/lib/systemd/system/nvmet.service")   # as systemctl enable


def test_nvmetcli_unit_enabled_is_a_warning_read_from_the_filesystem(tmp_path, monkeypatch):
    """nvmetcli's nvmet.service restores the same file after clearing the target, and drops
    p2pmem/buffered_io: doctor warns when it is enabled, reading systemd's links under the
    root -- never asking systemctl (nothing is run)."""
    m = good_machine(tmp_path)
    _, c = run_doctor(m)
    assert (c["nvmetcli-unit"].status, c["nvmetcli-unit"].detail) == (OK, "nvmetcli's nvmet.service is not enabled")
    _enable_nvmetcli(m.root)

    def no_process(*a, **k):
        raise AssertionError(f"doctor ran a process: {a}")
    with monkeypatch.context() as mp:
        mp.setattr(subprocess, "run", no_process)
        mp.setattr(subprocess, "Popen", no_process)
        report, c = run_doctor(m)
    w = c["nvmetcli-unit"]
    assert w.status == WARN and "/etc/systemd/system/multi-user.target.wants/nvmet.service" in w.detail
    assert "systemctl disable nvmet.service" in w.fix
    assert report.can_offload and report.summary.startswith("CAN OFFLOAD, with 1 warning")
    r = cli(m.root)
    assert r.returncode == 0 and "[warn] nvmetcli's nvmet.service: nvmetcli's nvmet.service is enabled" in r.stdout
    assert "fix: systemctl disable nvmet.service" in r.stdout


def test_nvmetcli_unit_enabled_at_runtime_or_masked(tmp_path):
    m = good_machine(tmp_path)
    _enable_nvmetcli(m.root, where="run", target="sysinit.target.requires")
    _, c = run_doctor(m)
    w = c["nvmetcli-unit"]
    assert w.status == WARN and "/run/systemd/system/sysinit.target.requires/nvmet.service" in w.detail
    (m.root / "etc" / "systemd" / "system").mkdir(parents=True)
    (m.root / "etc" / "systemd" / "system" / "nvmet.service").symlink_to("/dev/null")   # systemctl mask
    _, c = run_doctor(m)
    assert (c["nvmetcli-unit"].status, c["nvmetcli-unit"].detail) == (OK, "nvmetcli's nvmet.service is masked")


def test_nvmetcli_unit_unknown_in_an_older_inventory_file(tmp_path):
    m = good_machine(tmp_path)
    d = read_inventory(m.root).to_dict()
    del d["system"]["nvmetcli_unit_links"]
    f = tmp_path / "inv.json"
    f.write_text(json.dumps(d))
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "doctor", "--inventory", str(f), "--json"],
                       capture_output=True, text=True)
    check = {c["id"]: c for c in json.loads(r.stdout)["checks"]}["nvmetcli-unit"]
    assert r.returncode == 0 and check["status"] == "skip"
