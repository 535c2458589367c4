"""The sysfs/procfs readers (nvmet_p2p.pci.inventory) on synthetic trees and real lab bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nvmet_p2p.errors import InputError
from nvmet_p2p.pci.inventory import (
    SysRoot,
    live_netlink,
    module_name,
    parse_config,
    parse_kernel_config,
    pci_parent,
    read_inventory,
)
from nvmet_p2p.pci.model import PCIE_ROOT_PORT, PCIE_SWITCH_DOWNSTREAM, PCIE_SWITCH_UPSTREAM
from support import sysfs as sf

TRUTH = json.loads((Path(__file__).parent / "data" / "lab_q35_7.3.json").read_text())


def real_config(bdf: str) -> bytes:
    raw = TRUTH["config_raw"][bdf]
    data = bytes.fromhex(raw["hex"])
    return data + bytes(raw["len"] - len(data))


# ---------------------------------------------------------------------------------------------
# parse_config on the real QEMU bytes captured in the lab
# ---------------------------------------------------------------------------------------------

def test_parse_config_real_root_port_walks_aer_to_acs():
    cfg = parse_config(real_config("0000:00:04.0"))
    assert cfg["readable"] and cfg["pcie_type"] == PCIE_ROOT_PORT
    assert (cfg["acs_cap"], cfg["acs_ctrl"]) == (0x005F, 0x0000)
    assert (cfg["vendor"], cfg["device"]) == (0x1B36, 0x000C)


def test_parse_config_real_switch_ports_and_endpoint():
    assert parse_config(real_config("0000:01:00.0"))["pcie_type"] == PCIE_SWITCH_UPSTREAM
    dsp = parse_config(real_config("0000:02:00.0"))
    assert dsp["pcie_type"] == PCIE_SWITCH_DOWNSTREAM and dsp["acs_ctrl"] is None
    nvme = parse_config(real_config("0000:03:00.0"))
    assert nvme["pcie_type"] == 0 and nvme["acs_ctrl"] is None and nvme["readable"]


def test_parse_config_conventional_host_bridge():
    cfg = parse_config(real_config("0000:00:00.0"))
    assert cfg["readable"] and cfg["pcie_type"] is None and cfg["acs_ctrl"] is None
    assert (cfg["vendor"], cfg["device"]) == (0x8086, 0x29C0)


def test_parse_config_non_root_64_bytes_is_unreadable():
    cfg = parse_config(real_config("0000:00:04.0")[:64])
    assert not cfg["readable"]
    assert cfg["acs_ctrl"] is None and cfg["pcie_type"] is None
    assert cfg["vendor"] == 0x1B36


def test_parse_config_survives_looping_capability_lists():
    b = bytearray(sf.config_space(vendor=1, device=2, class_code=0x010802, pcie_type=0,
                                  acs_ctrl=0x1D))
    b[0x81] = 0x40            # PCIe cap -> back to PM: a loop
    cfg = parse_config(bytes(b))
    assert cfg["malformed"] and cfg["pcie_type"] == 0
    b = bytearray(sf.config_space(vendor=1, device=2, class_code=0x010802, pcie_type=0))
    b[0x102:0x104] = (0x100 << 4).to_bytes(2, "little")   # AER next -> itself
    cfg = parse_config(bytes(b))
    assert cfg["malformed"] and cfg["acs_ctrl"] is None


def test_parse_config_finds_acs_after_other_ext_caps():
    b = sf.config_space(vendor=1, device=2, class_code=0x060400, header_type=1, pcie_type=6,
                        acs_ctrl=0x001D, acs_cap=0x007F)
    assert parse_config(b)["acs_ctrl"] == 0x001D and parse_config(b)["acs_cap"] == 0x007F
    b = sf.config_space(vendor=1, device=2, class_code=0x060400, header_type=1, pcie_type=6,
                        acs_ctrl=0x0004, aer=False)
    assert parse_config(b)["acs_ctrl"] == 0x0004


# ---------------------------------------------------------------------------------------------
# The lab topology
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def lab(tmp_path):
    return sf.q35_lab(tmp_path / "root", rxe=True)


def test_pci_tree_from_realpath_chain(lab):
    inv = read_inventory(lab.root)
    f = inv.pci["0000:03:00.0"]
    assert f.host_bridge == "pci0000:00"
    assert f.upstream == ["0000:00:04.0", "0000:01:00.0", "0000:02:00.0"]
    assert inv.pci["0000:00:04.0"].upstream == []
    assert (f.vendor, f.device, f.class_code) == (0x1B36, 0x0010, 0x010802)
    assert f.numa_node is None and f.driver == "nvme"
    assert list(inv.pci) == sorted(inv.pci, key=lambda b: tuple(int(x, 16) for x in
                                                                 b.replace(".", ":").split(":")))


def test_pcie_types_and_acs_words(lab):
    inv = read_inventory(lab.root)
    rp = inv.pci["0000:00:04.0"]
    assert rp.pcie_type == PCIE_ROOT_PORT and rp.acs_cap == 0x5F and rp.acs_ctrl == 0
    assert rp.acs_redirects is False
    assert inv.pci["0000:01:00.0"].pcie_type == PCIE_SWITCH_UPSTREAM
    dsp = inv.pci["0000:02:00.0"]
    assert dsp.pcie_type == PCIE_SWITCH_DOWNSTREAM and dsp.acs_ctrl is None
    assert dsp.config_readable
    assert inv.pci["0000:00:00.0"].config_readable and inv.pci["0000:00:00.0"].pcie_type is None
    assert inv.system.is_root


def test_p2pmem_providers(lab):
    inv = read_inventory(lab.root)
    provs = inv.providers()
    assert [p.bdf for p in provs] == ["0000:03:00.0", "0000:04:00.0", "0000:05:00.0"]
    pm = provs[0].p2pmem
    assert (pm.size, pm.available, pm.published, pm.allocate) == (67108864, 66977792, True, True)
    assert inv.pci["0000:06:00.0"].p2pmem is None


def test_unpublished_provider_is_read_but_not_listed(tmp_path):
    m = sf.q35_lab(tmp_path)
    m.set_p2pmem("0000:04:00.0", published=False, allocate=False).write()
    inv = read_inventory(m.root)
    assert inv.pci["0000:04:00.0"].p2pmem.published is False
    assert inv.pci["0000:04:00.0"].p2pmem.allocate is False
    assert "0000:04:00.0" not in [p.bdf for p in inv.providers()]
    assert "0000:04:00.0" in [p.bdf for p in inv.providers(published_only=False)]


def test_nvme_controllers_cmb_decoded(lab):
    inv = read_inventory(lab.root)
    c = inv.nvme["nvme0"]
    assert (c.transport, c.pci, c.serial, c.model) == ("pcie", "0000:03:00.0", "cmbA", "QEMU NVMe Ctrl")
    assert c.subsysnqn == "nqn.2019-08.org.qemu:cmbA" and c.subsystem == "nvme-subsys0"
    cmb = c.cmb
    assert (cmb.cmbsz, cmb.cmbloc) == (sf.LAB_CMBSZ, sf.LAB_CMBLOC)
    assert cmb.size == 64 << 20 and cmb.bir == 2 and cmb.offset == 0
    assert (cmb.sqs, cmb.cqs, cmb.lists, cmb.rds, cmb.wds) == (True, False, True, True, True)
    assert inv.nvme["nvme3"].cmb is None
    assert c.namespaces == ["nvme0n1"]


def test_legacy_cmb_text_file_is_parsed(tmp_path):
    m = sf.q35_lab(tmp_path)
    d = m.path(m.sysfs_dir("0000:03:00.0") + "/nvme/nvme0")
    (d / "cmbsz").unlink()
    (d / "cmbloc").unlink()
    (d / "cmb").write_text("cmbloc : x00000062\ncmbsz  : x0004021d\n")  # 4.x/5.x wording
    inv = read_inventory(m.root)
    assert inv.nvme["nvme0"].cmb.cmbsz == sf.LAB_CMBSZ and inv.nvme["nvme0"].cmb.bir == 2


def test_namespaces_and_block_devices(lab):
    inv = read_inventory(lab.root)
    ns = inv.namespaces["nvme1n1"]
    assert (ns.nsid, ns.controller, ns.pci, ns.multipath_head) == (1, "nvme1", "0000:04:00.0", False)
    assert ns.size_bytes == 268435456 and ns.wwid.startswith("nvme.1b36-")
    assert ns.device_path == "/dev/nvme1n1"


def test_soft_roce_device(lab):
    inv = read_inventory(lab.root)
    r = inv.rdma["rxe0"]
    assert r.pci is None and r.soft and r.driver == "rdma_rxe"
    assert r.netdevs == ["dummy0"]
    assert r.ports[0].state == "4: ACTIVE" and r.ports[0].link_layer == "Ethernet"
    assert inv.net["dummy0"].addresses == ["10.77.0.1/24", "fd00::1/64"]
    assert inv.net["dummy0"].pci is None


def test_siw_is_soft_iwarp(tmp_path):
    inv = read_inventory(sf.soft_roce(tmp_path, siw=True).root)
    assert inv.rdma["siw0"].driver == "siw" and inv.rdma["siw0"].soft
    assert inv.rdma["siw0"].node_type.startswith("4")


def test_system_facts(lab):
    s = read_inventory(lab.root).system
    assert s.kernel_release == sf.LAB_KERNEL
    assert (s.cpu_vendor, s.cpu_family) == ("AuthenticAMD", 15)
    assert s.cmdline.startswith("console=ttyS0")
    assert s.nvme_use_cmb_sqes is True and s.nvme_multipath is True
    assert s.kernel_config["CONFIG_PCI_P2PDMA"] == "y"
    assert s.kernel_config["CONFIG_RDMA_SIW"] == "n"
    assert s.kernel_config_source == f"/lib/modules/{sf.LAB_KERNEL}/config"
    assert "rdma_rxe" in s.modules_loaded and "nvmet_rdma" not in s.modules_loaded
    assert "nvmet_rdma" in s.modules_available and "nvme_loop" in s.modules_available
    assert s.configfs_mounted and not s.nvmet_configfs     # as in a fresh tools/lab guest
    assert s.iommu is False and s.numa_nodes == [0]


# ---------------------------------------------------------------------------------------------
# Other machines
# ---------------------------------------------------------------------------------------------

def test_non_root_reads_leave_acs_unknown(tmp_path):
    m = sf.q35_lab(tmp_path, privileged=False)
    inv = read_inventory(m.root)
    assert not inv.system.is_root
    for f in inv.pci.values():
        assert not f.config_readable and f.acs_ctrl is None and f.pcie_type is None
        assert f.acs_redirects is None
    n = len(inv.pci)
    assert n == 18 and any("not readable" in w and f"{n} of {n}" in w for w in inv.warnings)
    # everything world-readable is still there
    assert inv.pci["0000:03:00.0"].upstream[-1] == "0000:02:00.0"
    assert inv.providers()[0].p2pmem.size == 67108864


def test_one_function_unreadable(tmp_path):
    m = sf.acs_switch(tmp_path)
    m.config_read_limit(m.bdf("dsp1"), 64).write()
    inv = read_inventory(m.root)
    assert inv.system.is_root
    assert not inv.pci[m.bdf("dsp1")].config_readable
    assert inv.pci[m.bdf("dsp2")].acs_ctrl == sf.ACS_IOMMU_DEFAULT
    assert any(f"1 of {len(inv.pci)}" in w for w in inv.warnings)


def test_acs_variants(tmp_path):
    inv = read_inventory(sf.acs_switch(tmp_path / "a").root)
    assert inv.pci["0000:02:00.0"].acs_ctrl == 0x1D and inv.pci["0000:02:00.0"].acs_redirects
    assert inv.pci["0000:00:04.0"].acs_ctrl == 0x1D
    assert inv.system.iommu
    inv = read_inventory(sf.multifunction_acs(tmp_path / "b").root)
    assert inv.pci["0000:04:00.0"].acs_ctrl == sf.ACS_SV | sf.ACS_RR | sf.ACS_CR
    assert inv.pci["0000:04:00.1"].acs_ctrl == sf.ACS_SV | sf.ACS_RR | sf.ACS_CR
    assert inv.pci["0000:02:01.0"].acs_ctrl == 0


def test_vf_maps_to_pf(tmp_path):
    m = sf.vf_pf(tmp_path, vfs=2)
    inv = read_inventory(m.root)
    vf = inv.pci[m.bdf("vf1")]
    assert vf.physfn == m.bdf("pf")
    assert vf.upstream == inv.pci[m.bdf("pf")].upstream
    assert inv.pci[m.bdf("pf")].physfn is None
    assert inv.rdma["mlx5_2"].pci == m.bdf("vf1") and inv.rdma["mlx5_2"].netdevs == ["ens1f0v1"]


def test_pci_nic_netdevs_and_addresses(tmp_path):
    m = sf.skylake_sp(tmp_path)
    inv = read_inventory(m.root)
    r = inv.rdma["mlx5_0"]
    assert (r.pci, r.driver, r.soft) == (m.bdf("nic"), "mlx5_core", False)
    assert r.netdevs == ["ens2f0np0"] and r.ports[0].netdevs == ["ens2f0np0"]
    assert inv.net["ens2f0np0"].pci == m.bdf("nic")
    assert inv.net["ens2f0np0"].addresses == ["192.168.10.1/24"]


def test_host_bridges_and_numa(tmp_path):
    m = sf.two_host_bridges(tmp_path)
    inv = read_inventory(m.root)
    assert inv.pci[m.bdf("cmb1")].host_bridge == "pci0000:80"
    assert inv.pci[m.bdf("cmb0")].host_bridge == "pci0000:00"
    assert inv.pci[m.bdf("cmb1")].numa_node == 1
    assert inv.system.numa_nodes == [0, 1]


def test_amd_zen_cpu(tmp_path):
    inv = read_inventory(sf.amd_zen(tmp_path).root)
    assert (inv.system.cpu_vendor, inv.system.cpu_family) == ("AuthenticAMD", 0x17)
    assert inv.system.iommu and "iommu=pt" in inv.system.cmdline


def test_multipath_head_has_no_pci_parent(tmp_path):
    m = sf.multipath(tmp_path)
    inv = read_inventory(m.root)
    head = inv.namespaces["nvme4n1"]
    assert head.multipath_head and head.pci is None
    assert head.paths == ["nvme4c4n1", "nvme4c5n1"] and head.controller == "nvme4"
    assert "nvme4c4n1" not in inv.namespaces          # hidden path disks are not namespaces
    assert inv.nvme["nvme4"].namespaces == ["nvme4n1"] == inv.nvme["nvme5"].namespaces
    assert inv.nvme["nvme5"].subsystem == "nvme-subsys4"
    assert inv.namespaces["nvme0n1"].pci == "0000:03:00.0"


def test_nested_switches_chain(tmp_path):
    m = sf.nested_switches(tmp_path)
    inv = read_inventory(m.root)
    assert inv.pci[m.bdf("cmbA")].upstream == ["0000:00:01.0", "0000:01:00.0", "0000:02:00.0",
                                               "0000:03:00.0", "0000:04:00.0"]
    assert inv.pci[m.bdf("nic")].upstream == ["0000:00:01.0", "0000:01:00.0", "0000:02:01.0"]


def test_big_machine_reads(tmp_path):
    inv = read_inventory(sf.big_machine(tmp_path).root)
    assert len(inv.providers()) == 64 and len(inv.rdma) == 8 and len(inv.namespaces) == 64


# ---------------------------------------------------------------------------------------------
# Kernel config sources
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where,source", [
    ("boot", f"/boot/config-{sf.LAB_KERNEL}"),
    ("lib", f"/lib/modules/{sf.LAB_KERNEL}/config"),
    ("proc", "/proc/config.gz"),
])
def test_kernel_config_locations(tmp_path, where, source):
    m = sf.q35_lab(tmp_path, write=False)
    m.update_system(kernel_config_at=where, kernel_config=sf.NO_P2P_KERNEL_CONFIG).write()
    s = read_inventory(m.root).system
    assert s.kernel_config_source == source
    assert s.kernel_config["CONFIG_PCI_P2PDMA"] == "n"
    assert s.kernel_config["CONFIG_NVME_TARGET_RDMA"] == "m"


def test_no_kernel_config_is_a_warning(tmp_path):
    m = sf.q35_lab(tmp_path, write=False)
    m.update_system(kernel_config_at=None).write()
    inv = read_inventory(m.root)
    assert inv.system.kernel_config is None
    assert any("no kernel config found" in w for w in inv.warnings)


def test_parse_kernel_config_and_module_names():
    cfg = parse_kernel_config("# CONFIG_PCI_P2PDMA is not set\nCONFIG_NVME_TARGET=m\n"
                              'CONFIG_LOCALVERSION=""\nCONFIG_X=y\n# comment\n')
    assert cfg == {"CONFIG_PCI_P2PDMA": "n", "CONFIG_NVME_TARGET": "m",
                   "CONFIG_LOCALVERSION": "", "CONFIG_X": "y"}
    assert module_name("kernel/drivers/nvme/target/nvmet-rdma.ko.xz") == "nvmet_rdma"
    assert module_name("kernel/fs/configfs/configfs.ko") == "configfs"
    assert module_name("kernel/drivers/nvme/host/nvme-core.ko.zst") == "nvme_core"


def test_builtin_modules_count_as_available(tmp_path):
    m = sf.q35_lab(tmp_path, write=False)
    m.update_system(modules_available={}, modules_builtin=["fs/configfs/configfs",
                                                          "drivers/nvme/target/nvmet"]).write()
    s = read_inventory(m.root).system
    assert s.modules_available == ["configfs", "nvmet"]


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors naming the file; tolerable absences as warnings
# ---------------------------------------------------------------------------------------------

def _dev(m, bdf):
    return m.path(m.sysfs_dir(bdf))


@pytest.mark.parametrize("name,content,needle", [
    ("vendor", "zzz\n", "not a hexadecimal number: 'zzz'"),
    ("class", "", "not a hexadecimal number: ''"),
    ("numa_node", "node0\n", "not a decimal number: 'node0'"),
])
def test_garbage_values_name_the_file(tmp_path, name, content, needle):
    m = sf.q35_lab(tmp_path)
    p = _dev(m, "0000:03:00.0") / name
    p.write_text(content)
    with pytest.raises(InputError) as e:
        read_inventory(m.root)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_missing_vendor_names_the_file(tmp_path):
    m = sf.q35_lab(tmp_path)
    p = _dev(m, "0000:02:01.0") / "vendor"
    p.unlink()
    with pytest.raises(InputError, match="missing file") as e:
        read_inventory(m.root)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("name,content,needle", [
    ("p2pmem/available", "lots\n", "not a decimal number: 'lots'"),
    ("p2pmem/published", "maybe\n", "not a boolean"),
    ("nvme/nvme0/cmbsz", "0x40\n", "not a decimal number: '0x40'"),
    ("nvme/nvme0/cmb", None, None),
])
def test_garbage_in_provider_and_nvme_files(tmp_path, name, content, needle):
    m = sf.q35_lab(tmp_path)
    p = _dev(m, "0000:03:00.0") / name
    if content is None:
        # cmbsz without cmbloc and no cmb text -> must say which file is missing
        (_dev(m, "0000:03:00.0") / "nvme/nvme0/cmbloc").unlink()
        with pytest.raises(InputError, match="cmbloc") as e:
            read_inventory(m.root)
        return
    p.write_text(content)
    with pytest.raises(InputError) as e:
        read_inventory(m.root)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_missing_p2pmem_file_is_an_error(tmp_path):
    m = sf.q35_lab(tmp_path)
    p = _dev(m, "0000:05:00.0") / "p2pmem/size"
    p.unlink()
    with pytest.raises(InputError, match="missing file") as e:
        read_inventory(m.root)
    assert str(p) in str(e.value)


def test_truncated_config_space_is_an_error(tmp_path):
    m = sf.q35_lab(tmp_path)
    p = _dev(m, "0000:01:00.0") / "config"
    p.write_bytes(b"\x36\x1b\x10\x00")
    with pytest.raises(InputError, match="truncated config space: 4 bytes") as e:
        read_inventory(m.root)
    assert str(p) in str(e.value)


def test_missing_config_file_is_a_warning(tmp_path):
    m = sf.q35_lab(tmp_path)
    (_dev(m, "0000:02:00.0") / "config").unlink()
    inv = read_inventory(m.root)
    assert not inv.pci["0000:02:00.0"].config_readable
    assert any("0000:02:00.0: no config space file" in w for w in inv.warnings)


def test_snapshot_without_symlinks_is_refused(tmp_path):
    m = sf.q35_lab(tmp_path)
    link = m.path("/sys/bus/pci/devices/0000:03:00.0")
    target = link.resolve()
    link.unlink()
    shutil.copytree(target, link, symlinks=True)   # a copy that lost the top link
    with pytest.raises(InputError, match="must keep the symlinks") as e:
        read_inventory(m.root)
    assert str(link) in str(e.value)


def test_absolute_symlinks_resolve_inside_the_root(tmp_path):
    m = sf.q35_lab(tmp_path)
    link = m.path("/sys/bus/pci/devices/0000:03:00.0")
    link.unlink()
    os.symlink(m.sysfs_dir("0000:03:00.0"), link)     # absolute: /sys/devices/...
    inv = read_inventory(m.root)
    assert inv.pci["0000:03:00.0"].upstream[-1] == "0000:02:00.0"


def test_symlink_loop_is_an_error(tmp_path):
    m = sf.q35_lab(tmp_path)
    link = m.path("/sys/class/nvme/nvme9")
    os.symlink("nvme9", link)
    with pytest.raises(InputError, match="too many levels of symbolic links"):
        read_inventory(m.root)


def test_garbage_cpu_family_and_meta(tmp_path):
    m = sf.q35_lab(tmp_path)
    m.path("/proc/cpuinfo").write_text("vendor_id\t: AuthenticAMD\ncpu family\t: seventeen\n")
    with pytest.raises(InputError, match="'cpu family' is not a number: 'seventeen'"):
        read_inventory(m.root)
    m.write()
    m2 = sf.soft_roce(tmp_path / "b")
    m2.path("/nvmet-p2p-snapshot.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON") as e:
        read_inventory(m2.root)
    assert "nvmet-p2p-snapshot.json" in str(e.value)


def test_missing_meta_is_a_warning(tmp_path):
    m = sf.soft_roce(tmp_path)
    m.path("/nvmet-p2p-snapshot.json").unlink()
    inv = read_inventory(m.root)
    assert inv.net["dummy0"].addresses == []
    assert any("interface addresses unknown" in w for w in inv.warnings)


def test_missing_procfs_files_are_warnings(tmp_path):
    m = sf.q35_lab(tmp_path)
    for p in ("/proc/cmdline", "/proc/cpuinfo", "/proc/modules", "/proc/mounts"):
        m.path(p).unlink()
    inv = read_inventory(m.root)
    assert inv.system.cpu_vendor == "" and not inv.system.configfs_mounted
    text = " ".join(inv.warnings)
    for p in ("/proc/cmdline", "/proc/cpuinfo", "/proc/modules", "/proc/mounts"):
        assert p in text


def test_unreadable_gid_slots_are_skipped(tmp_path):
    m = sf.skylake_sp(tmp_path)
    ndevs = m.path(m.sysfs_dir(m.bdf("nic")) + "/infiniband/mlx5_0/ports/1/gid_attrs/ndevs")
    os.symlink("does-not-exist", ndevs / "7")        # reading it fails (like EINVAL slots)
    inv = read_inventory(m.root)
    assert inv.rdma["mlx5_0"].netdevs == ["ens2f0np0"]


def test_bad_roots(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        read_inventory(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sys/ directory"):
        read_inventory(tmp_path / "empty")


def test_cli_bad_snapshot_gives_one_line_error(tmp_path):
    m = sf.q35_lab(tmp_path)
    (_dev(m, "0000:03:00.0") / "device").write_text("banana\n")
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "doctor", "--root", str(m.root)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "0000:03:00.0/device: not a hexadecimal number: 'banana'" in r.stderr


# ---------------------------------------------------------------------------------------------
# Helpers and the live system
# ---------------------------------------------------------------------------------------------

def test_pci_parent():
    assert pci_parent("/sys/devices/pci0000:00/0000:00:04.0/0000:01:00.0/nvme/nvme0") == "0000:01:00.0"
    assert pci_parent("/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0") == "0000:00:03.0"
    assert pci_parent("/sys/devices/virtual/infiniband/rxe0") is None
    assert pci_parent("/sys/devices/virtual/nvme-subsystem/nvme-subsys4/nvme4n1") is None


def test_sysroot_resolve_records_nothing_outside(tmp_path):
    m = sf.q35_lab(tmp_path)
    fs = SysRoot(m.root)
    assert fs.resolve("/sys/block/nvme0n1") == m.sysfs_dir("0000:03:00.0") + "/nvme/nvme0/nvme0n1"
    assert fs.resolve("/sys/block/nvme0n1/device") == m.sysfs_dir("0000:03:00.0") + "/nvme/nvme0"
    assert fs.host("/proc/cmdline") == str(m.root) + "/proc/cmdline"


def test_live_netlink_sees_loopback():
    data = live_netlink()
    assert "lo" in data
    assert "127.0.0.1/8" in data["lo"]["addresses"]


def test_live_read_of_this_machine():
    """The reader runs on the real / of whatever machine runs the tests."""
    inv = read_inventory("/")
    assert inv.source == "/"
    assert inv.system.kernel_release == os.uname().release
    assert "127.0.0.1/8" in inv.net["lo"].addresses
    for f in inv.pci.values():
        assert f.host_bridge.startswith("pci")


def test_block_device_name_follows_dev_links_inside_the_root(tmp_path):
    from nvmet_p2p.pci.inventory import block_device_name
    (tmp_path / "dev/disk/by-id").mkdir(parents=True)
    (tmp_path / "dev/nvme1n1").write_text("")
    os.symlink("../../nvme1n1", tmp_path / "dev/disk/by-id/nvme-eui.0011223344556677")
    os.symlink("/dev/nvme1n1", tmp_path / "dev/disk/by-id/nvme-absolute")
    assert block_device_name(tmp_path, "/dev/disk/by-id/nvme-eui.0011223344556677") == "nvme1n1"
    assert block_device_name(tmp_path, "/dev/disk/by-id/nvme-absolute") == "nvme1n1"
    assert block_device_name(tmp_path, "/dev/nvme1n1") == "nvme1n1"
    assert block_device_name(tmp_path, "/dev/disk/by-id/missing") is None
    assert block_device_name(tmp_path, "/var/tmp/file.img") is None
