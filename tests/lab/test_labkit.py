"""Fast tier: the lab runner's own logic (no VM, no network)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "lab"))

from labkit import LabError, console, debver, initramfs, kernel, runner, rxemod, topology  # noqa: E402

DATA = Path(__file__).parent / "data"


# -- Debian versions ---------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,want", [
    ("7.3.4-1~bpo13+1", "7.2.12-1~bpo13+1", 1),
    ("7.10.1-1", "7.9.9-1", 1),
    ("6.19.14-1~bpo13+1", "7.0.4-1~bpo13+1", -1),
    ("1.0~rc1-1", "1.0-1", -1),
    ("1:1.0-1", "2.0-1", 1),
    ("7.0.12-2~bpo13+1", "7.0.12-1~bpo13+1", 1),
    ("7.3.4-1~bpo13+1", "7.3.4-1", -1),
    ("1.0", "1.0", 0),
    ("1.0a", "1.0", 1),
    ("1.0+b1", "1.0", 1),
])
def test_debian_version_order(a, b, want):
    assert debver.compare(a, b) == want
    assert debver.compare(b, a) == -want


# -- kernel index ------------------------------------------------------------------------------

INDEX = """\
Package: linux-image-7.3.4+deb13-amd64
Version: 7.3.4-1~bpo13+1
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)
Filename: pool/main/l/linux-signed-amd64/linux-image-7.3.4+deb13-amd64_7.3.4-1~bpo13+1_amd64.deb
Size: 1900
SHA256: 7a6ff1ee63d0aafedbab6a507939ab6bce618f8fda1b3f0c42b78678ec661844

Package: linux-base-7.3.4+deb13-amd64
Version: 7.3.4-1~bpo13+1
Size: 1077476
Filename: pool/main/l/linux/linux-base-7.3.4+deb13-amd64_7.3.4-1~bpo13+1_amd64.deb

Package: linux-binary-7.3.4+deb13-amd64
Version: 7.3.4-1~bpo13+1
Size: 14138336
Filename: pool/main/l/linux/linux-binary-7.3.4+deb13-amd64_7.3.4-1~bpo13+1_amd64.deb

Package: linux-modules-7.3.4+deb13-amd64
Version: 7.3.4-1~bpo13+1
Depends: kmod, linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)
Size: 106862204
Filename: pool/main/l/linux/linux-modules-7.3.4+deb13-amd64_7.3.4-1~bpo13+1_amd64.deb

Package: linux-image-7.3.4+deb13-cloud-amd64
Version: 7.3.4-1~bpo13+1

Package: linux-image-7.3.4+deb13-amd64-dbg
Version: 7.3.4-1~bpo13+1

Package: linux-image-6.16.12+deb13-amd64
Version: 6.16.12-1~bpo13+1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux-signed-amd64/linux-image-6.16.12+deb13-amd64_6.16.12-1~bpo13+1_amd64.deb
Size: 105000000

Package: linux-image-amd64
Version: 7.3.4-1~bpo13+1
Depends: linux-image-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)
"""  # noqa: E501 (an apt index as the archive serves it)


def test_kernel_candidates_newest_first_both_layouts():
    cands = kernel.candidates(kernel.parse_packages(INDEX))
    assert [c.release for c in cands] == ["7.3.4+deb13-amd64", "6.16.12+deb13-amd64"]
    split = cands[0]
    assert sorted(p["Package"] for p in split.packages) == [
        "linux-base-7.3.4+deb13-amd64", "linux-binary-7.3.4+deb13-amd64",
        "linux-image-7.3.4+deb13-amd64", "linux-modules-7.3.4+deb13-amd64"]
    classic = cands[1]
    assert [p["Package"] for p in classic.packages] == ["linux-image-6.16.12+deb13-amd64"]


def test_parse_config():
    cfg = kernel.parse_config("CONFIG_PCI_P2PDMA=y\n# CONFIG_NVME_TARGET_DEBUGFS is not set\n"
                              'CONFIG_LOCALVERSION=""\nCONFIG_NVME_TARGET=m\n')
    assert cfg["CONFIG_PCI_P2PDMA"] == "y"
    assert cfg["CONFIG_NVME_TARGET_DEBUGFS"] == "n"
    assert cfg["CONFIG_NVME_TARGET"] == "m"


def test_verify_rejects_wrong_checksum(tmp_path):
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"not the package")
    with pytest.raises(LabError, match="SHA256/size does not match"):
        kernel._verify(deb, {"SHA256": "00" * 32, "Size": "15"})
    assert not deb.exists()


def test_cache_root_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("NVMET_P2P_LAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernel.cache_root() == tmp_path / "nvmet-p2p" / "lab"


# -- topologies --------------------------------------------------------------------------------

def test_shipped_topologies_load():
    names = topology.available()
    for required in ("default", "two-switches", "nested-switch", "amd-epyc", "iommu-acs"):
        assert required in names
    for n in names:
        t = topology.load(n)
        assert t.nvme, n


def test_default_topology_qemu_devices():
    t = topology.load("default")
    argv = t.qemu_devices({n.serial: f"/img/{n.serial}" for n in t.nvme})
    devs = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devs[0] == "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1,addr=0x4"
    assert "x3130-upstream,id=sw1,bus=rp1" in devs
    assert "nvme,id=nvme-cmbA,serial=cmbA,drive=drv-cmbA,bus=sw1-dp0,cmb_size_mb=64" in devs
    assert "nvme,id=nvme-plain,serial=plain,drive=drv-plain,bus=rp2" in devs
    chassis = [d.split("chassis=")[1].split(",")[0] for d in devs if "chassis=" in d]
    assert len(chassis) == len(set(chassis))          # QEMU needs unique chassis numbers
    assert [n.serial for n in t.nvme] == ["cmbA", "cmbB", "cmbC", "plain"]
    assert t.nvme[0].path == ["rp1", "sw1", "sw1-dp0"]
    assert t.network[0].rdma == "rxe0"


def test_nested_and_legacy_cmb():
    t = topology.load("nested-switch")
    inner = next(n for n in t.nvme if n.serial == "innerCmb")
    assert inner.path == ["rp1", "outer", "outer-dp1", "inner", "inner-dp0"]
    argv = t.qemu_devices({n.serial: "/x" for n in t.nvme})
    assert any("serial=innerCmb" in a and "legacy-cmb=on" in a for a in argv)


def test_iommu_topology_adds_intel_iommu_first():
    t = topology.load("iommu-acs")
    argv = t.qemu_devices({n.serial: "/x" for n in t.nvme})
    assert argv[:2] == ["-device", "intel-iommu"]
    assert "intel_iommu=on" in t.kernel_args()


@pytest.mark.parametrize("doc,where,what", [
    ({"root_ports": [{"name": "rp1", "nvme": {"serial": "a", "cmb": "64X"}}]},
     "root_ports[0].nvme.cmb", "not a size"),
    ({"root_ports": [{"name": "rp1", "nvme": {"serial": "a"}}], "colour": "red"},
     "colour", "unknown key"),
    ({"root_ports": [{"name": "rp1", "nvme": {"serial": "a"}}, {"name": "rp2", "nvme": {"serial": "a"}}]},
     "root_ports[1].nvme.serial", "duplicate serial"),
    ({"root_ports": [{"name": "rp1", "nvme": {"serial": "a", "legacy_cmb": True}}]},
     "root_ports[0].nvme.legacy_cmb", "needs a cmb size"),
    ({"root_ports": [{"name": "rp1", "nvme": {"serial": "a"}, "switch": {"name": "s", "ports": [None]}}]},
     "root_ports[0]", "exactly one"),
    ({"root_ports": [{"name": "rp1", "nvme": {"serial": "a"}}], "iommu": "amd"},
     "iommu", "'none' or 'intel'"),
    ({"root_ports": [{"name": "rp1", "nvme": {"serial": "a"}}],
      "network": [{"name": "lo0", "kind": "loopback"}]}, "network[0].kind", "dummy or veth"),
    ({"root_ports": []}, "root_ports", "non-empty"),
    ({"cpu": "max"}, "(top level)", "missing required key 'root_ports'"),
])
def test_topology_errors_name_the_key(doc, where, what):
    with pytest.raises(topology.TopologyError) as ei:
        topology.from_dict(doc, "bad", "bad.yaml")
    msg = str(ei.value)
    assert where in msg and what in msg, msg


def test_topology_yaml_syntax_error_has_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("root_ports:\n  - name: rp1\n    nvme: {serial: a\n")
    with pytest.raises(topology.TopologyError, match=r"broken.yaml:\d+: not valid YAML"):
        topology.load(str(p))


def test_unknown_topology_lists_shipped():
    with pytest.raises(LabError, match="shipped: .*default"):
        topology.load("no-such-topology")


# -- console -----------------------------------------------------------------------------------

def test_console_ok():
    v = console.classify((DATA / "console-ok.log").read_text())
    assert (v.kind, v.rc, v.start_uptime, v.userspace_uptime) == ("ok", 7, 7.06, 3.21)


def test_console_tcg_int3_during_boot_is_retryable():
    v = console.classify((DATA / "console-tcg-int3-boot.log").read_text())
    assert v.kind == "crash" and v.phase == "boot" and v.retryable
    assert v.detail.startswith("Oops: int3")
    assert "TCG" in v.describe()


def test_console_other_oops_during_command_is_not_retried():
    v = console.classify((DATA / "console-oops-during-command.log").read_text())
    assert v.kind == "crash" and v.phase == "command" and not v.retryable
    assert "NULL pointer" in v.detail


def test_console_init_failed():
    v = console.classify((DATA / "console-init-failed.log").read_text())
    assert v.kind == "init_failed" and "9p mount" in v.detail


def test_console_no_status():
    v = console.classify("LAB_USERSPACE uptime=3.0\n")
    assert v.kind == "no_status" and not v.retryable


def test_rc_file_wins_over_console():
    v = console.classify("LAB_COMMAND_START uptime=5.0\n", rc_file=3)
    assert v.kind == "ok" and v.rc == 3


# -- initramfs ---------------------------------------------------------------------------------

def test_cpio_is_deterministic_and_readable(tmp_path):
    files = {"init": b"#!/bin/busybox sh\necho hi\n", "mods/a.ko": b"\x7fELF" + b"x" * 1000,
             "bin/busybox": b"BB", "modules.order": b"a.ko\n"}
    one = initramfs.build_bytes(files)
    two = initramfs.build_bytes(dict(reversed(list(files.items()))))
    assert one == two
    assert initramfs.content_key(files) == initramfs.content_key(dict(reversed(list(files.items()))))
    changed = dict(files, init=b"#!/bin/busybox sh\necho bye\n")
    assert initramfs.content_key(changed) != initramfs.content_key(files)
    assert one[4:8] == b"\0\0\0\0"  # gzip mtime 0 (gzip -n)
    raw = gzip.decompress(one)
    (tmp_path / "x.cpio").write_bytes(raw)
    if subprocess.run(["which", "cpio"], stdout=subprocess.DEVNULL).returncode == 0:
        out = subprocess.run(["cpio", "-it", "--quiet"], input=raw, stdout=subprocess.PIPE, check=True).stdout.decode()
        names = out.split()
        assert {"init", "mods/a.ko", "bin/busybox", "bin/sh", "modules.order", "dev", "proc"} <= set(names)


def test_module_closure_orders_dependencies(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n"
        "kernel/net/9p/9pnet.ko.xz:\n"
        "kernel/fs/netfs/netfs.ko.xz:\n"
        "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n"
        "kernel/fs/overlayfs/overlay.ko.xz:\n")
    (tmp_path / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    order = initramfs.module_closure(tmp_path, ("virtio_pci", "9pnet_virtio", "9p", "overlay"))
    assert order == ["kernel/net/9p/9pnet.ko.xz", "kernel/net/9p/9pnet_virtio.ko.xz",
                     "kernel/fs/netfs/netfs.ko.xz", "kernel/fs/9p/9p.ko.xz", "kernel/fs/overlayfs/overlay.ko.xz"]
    with pytest.raises(LabError, match="neither built in"):
        initramfs.module_closure(tmp_path, ("nosuchmod",))


# -- runner ------------------------------------------------------------------------------------

def test_shares_results_inside_checkout_and_venv_elsewhere(tmp_path):
    co = tmp_path / "co"
    (co / "results" / "x").mkdir(parents=True)
    venv = tmp_path / "venvs" / "v"
    venv.mkdir(parents=True)
    os.symlink(venv, co / ".venv")
    shares = runner.plan_shares(co, co / "results" / "x", [])
    assert [(m, p) for _t, m, p in shares] == [
        ("overlay", co.resolve()), ("overlay", venv.resolve()), ("rw", (co / "results" / "x").resolve())]
    assert [t for t, _m, _p in shares] == ["labshare0", "labshare1", "labshare2"]


def test_qemu_argv_shares_and_kernel(tmp_path):
    t = topology.load("default")
    k = kernel.Kernel(release="7.3.4+deb13-amd64", version="7.3.4-1", suite="s", tree="/t",
                      vmlinuz="/t/vmlinuz", moddir="/t/mod", config="/t/config")
    shares = [("labshare0", "overlay", Path("/tmp/co")), ("labshare1", "rw", Path("/tmp/co/results"))]
    argv = runner.qemu_argv(t, k, Path("/c/initrd"), Path("/c/run/ctl"), shares,
                            {n.serial: f"/img/{n.serial}" for n in t.nvme}, "multi")
    s = " ".join(argv)
    assert "-accel tcg,thread=multi,tb-size=256" in s
    assert "path=/,security_model=none,multidevs=remap,readonly=on" in s
    assert "local,id=fs-labshare1,path=/tmp/co/results,security_model=none,multidevs=remap -device" in s
    assert "mount_tag=labctl" in s and "-no-reboot" in s and "panic=-1" in s
    assert argv[argv.index("-kernel") + 1] == "/t/vmlinuz"


def test_env_file_quotes_the_command():
    text = runner._env_file({"A": "x y", "B": "it's"}, ["bash", "-c", "echo $HOME; exit 3"])
    out = subprocess.run(["bash", "-c", text + 'printf "%s|" "$A" "$B" "${LAB_ARGV[@]}"'],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    assert out == "x y|it's|bash|-c|echo $HOME; exit 3|"


# -- provisioning offline: fake packages built with dpkg-deb -------------------------------------

def _fake_deb(tmp: Path, name: str, release: str, files: dict[str, bytes]) -> Path:
    root = tmp / f"pkg-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n")
    for rel, data in files.items():
        p = root / rel.format(release=release)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    out = tmp / f"{name}_1.0-1_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


class FakeApt:
    """Stands in for the network side of PrivateApt; everything after download is real."""

    def __init__(self, debs: dict[str, Path], index: str):
        self.debs, self.index, self.suite, self.root = debs, index, "fake-suite", Path("/nonexistent")

    def update(self):
        pass

    def index_text(self):
        return self.index

    def download(self, stanza, dest):
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / os.path.basename(stanza["Filename"])
        target.write_bytes(self.debs[stanza["Package"]].read_bytes())
        kernel._verify(target, stanza)
        return target


def _stanza(name: str, deb: Path, version: str, depends: str = "") -> str:
    import hashlib
    data = deb.read_bytes()
    return (f"Package: {name}\nVersion: {version}\n" + (f"Depends: {depends}\n" if depends else "")
            + f"Filename: pool/{deb.name}\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n\n")


@pytest.mark.skipif(subprocess.run(["which", "dpkg-deb"], stdout=subprocess.DEVNULL).returncode != 0,
                    reason="needs dpkg-deb (Debian host)")
def test_provisioning_skips_kernels_without_p2pdma(tmp_path, monkeypatch):
    good, bad = "6.16.3+deb13-amd64", "6.17.1+deb13-amd64"   # the newer one lacks P2PDMA
    mods = {"usr/lib/modules/{release}/kernel/fs/x.ko": b"\x7fELF"}
    cfg_ok = b"CONFIG_PCI_P2PDMA=y\n" + b"".join(f"{k}=m\n".encode() for k in kernel.LAB_CONFIG)
    debs = {
        f"linux-image-{good}": _fake_deb(tmp_path, f"linux-image-{good}", good, {
            "boot/vmlinuz-{release}": b"kernel", "boot/config-{release}": cfg_ok, **mods}),
        f"linux-image-{bad}": _fake_deb(tmp_path, f"linux-image-{bad}", bad, {
            "boot/vmlinuz-{release}": b"kernel", "boot/config-{release}": b"# CONFIG_PCI_P2PDMA is not set\n", **mods}),
    }
    index = "".join(_stanza(n, d, ("6.16.3-1" if good in n else "6.17.1-1")) for n, d in debs.items())
    apt = FakeApt(debs, index)
    monkeypatch.setattr(kernel, "PrivateApt", lambda *a, **k: apt)
    monkeypatch.setenv("NVMET_P2P_LAB_SUITE", "fake-suite")
    logs = []
    k, cached = kernel.ensure_kernel(tmp_path / "cache", logs.append)
    assert k.release == good and not cached
    assert any("rejected 6.17.1+deb13-amd64: CONFIG_PCI_P2PDMA=n" in m for m in logs)
    assert (Path(k.moddir) / "modules.dep").exists()          # depmod ran on the extracted tree
    assert Path(k.vmlinuz).read_bytes() == b"kernel"
    # second call: from the cache, no apt at all
    monkeypatch.setattr(kernel, "PrivateApt", None)
    k2, cached2 = kernel.ensure_kernel(tmp_path / "cache", logs.append)
    assert cached2 and k2.release == good


@pytest.mark.skipif(subprocess.run(["which", "dpkg-deb"], stdout=subprocess.DEVNULL).returncode != 0,
                    reason="needs dpkg-deb (Debian host)")
def test_provisioning_without_p2pdma_kernel_is_one_clear_error(tmp_path, monkeypatch):
    rel = "6.12.1+deb13-amd64"
    deb = _fake_deb(tmp_path, f"linux-image-{rel}", rel, {
        "boot/vmlinuz-{release}": b"k", "boot/config-{release}": b"# CONFIG_PCI_P2PDMA is not set\n"})
    apt = FakeApt({f"linux-image-{rel}": deb}, _stanza(f"linux-image-{rel}", deb, "6.12.1-1"))
    monkeypatch.setattr(kernel, "PrivateApt", lambda *a, **k: apt)
    monkeypatch.setenv("NVMET_P2P_LAB_SUITE", "fake-suite")
    with pytest.raises(LabError, match=r"no p2pdma-enabled kernel in fake-suite: "
                                       r".*6.12.1\+deb13-amd64: CONFIG_PCI_P2PDMA=n"):
        kernel.ensure_kernel(tmp_path / "cache", lambda m: None)


def test_tampered_download_is_refused(tmp_path, monkeypatch):
    rel = "6.16.3+deb13-amd64"
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"original")
    stanza = _stanza(f"linux-image-{rel}", deb, "1")
    deb.write_bytes(b"tampered")
    apt = FakeApt({f"linux-image-{rel}": deb}, stanza)
    monkeypatch.setattr(kernel, "PrivateApt", lambda *a, **k: apt)
    monkeypatch.setenv("NVMET_P2P_LAB_SUITE", "fake-suite")
    with pytest.raises(LabError, match="SHA256/size does not match the apt index"):
        kernel.ensure_kernel(tmp_path / "cache", lambda m: None)


# -- the runner as a command -------------------------------------------------------------------

def _run_tool(args, env_extra, cwd=ROOT):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, str(ROOT / "tools" / "lab" / "run"), *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def test_missing_qemu_is_one_line_and_125(tmp_path):
    p = _run_tool(["--results", str(tmp_path / "r"), "--", "true"], {"PATH": str(tmp_path)})
    assert p.returncode == 125
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("lab: error:")]
    assert errs == ["lab: error: qemu-system-x86_64 not found: install qemu-system-x86 "
                    "(bash tools/lab/setup)"], p.stderr
    assert "Traceback" not in p.stderr


def test_bad_topology_is_one_line_and_125(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("root_ports:\n  - name: rp1\n    nvme: {serial: a, cmb: lots}\n")
    p = _run_tool(["--topology", str(bad), "--", "true"], {})
    assert p.returncode == 125 and "Traceback" not in p.stderr
    assert p.stderr.strip() == f"lab: error: {bad}: root_ports[0].nvme.cmb: 'lots' is not a size (e.g. 64M, 1G)"


def test_unreachable_mirror_is_one_line_and_125(tmp_path):
    p = _run_tool(["--results", str(tmp_path / "r"), "--", "true"],
                  {"NVMET_P2P_LAB_CACHE": str(tmp_path / "cache"),
                   "NVMET_P2P_LAB_MIRROR": "http://127.0.0.1:9/debian"})
    assert p.returncode == 125 and "Traceback" not in p.stderr
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("lab: error:")]
    assert len(errs) == 1 and ("kernel download failed" in errs[0] or "apt-get update failed" in errs[0]), p.stderr


# -- conftest: topology selection --------------------------------------------------------------

def test_topology_marker_selection(tmp_path):
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_sel.py").write_text(
        "import pytest\n"
        "@pytest.mark.lab\ndef test_default_only(): pass\n"
        "@pytest.mark.lab\n@pytest.mark.topology('two-switches')\ndef test_two(): pass\n"
        "@pytest.mark.lab\n@pytest.mark.topology('all')\ndef test_all(): pass\n"
        "def test_fast(): pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    lab: lab\n")

    def outcomes(env):
        e = {k: v for k, v in os.environ.items() if not k.startswith("NVMET_P2P_LAB")}
        e.update(env)
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                             env=e, cwd=tmp_path, stdout=subprocess.PIPE, text=True).stdout
        res = {}
        for line in out.splitlines():
            for word in ("PASSED", "SKIPPED"):
                if line.startswith(word):
                    name = line.split("::")[-1].split()[0] if "::" in line else line
                    res[name] = word
        return out, res

    out, res = outcomes({"NVMET_P2P_LAB": "1", "NVMET_P2P_LAB_TOPOLOGY": "two-switches"})
    assert "test_two" in res and res["test_two"] == "PASSED", out
    assert res.get("test_all") == "PASSED", out
    assert "lab test for topology default; this boot is two-switches" in out
    out, res = outcomes({})
    assert res.get("test_fast") == "PASSED" and "NVMET_P2P_LAB is not set here" in out
    listing = tmp_path / "list.json"
    outcomes({"NVMET_P2P_LAB_LIST_TOPOLOGIES": str(listing)})
    import json
    got = {k.split("::")[-1]: v for k, v in json.loads(listing.read_text()).items()}
    assert got == {"test_default_only": ["default"], "test_two": ["two-switches"], "test_all": ["all"]}


def test_check_boots_each_topology_with_only_its_test_files():
    from labkit import selection
    tests = {"tests/lab/test_a.py::test_one": ["default"],
             "tests/lab/test_a.py::test_two[x->y]": ["two-switches"],
             "tests/lab/test_a.py::test_two[y->x]": ["two-switches"],
             "tests/lab/test_b.py::test_all": ["all"],
             "tests/lab/test_c.py::test_c1": ["rdma-p2p"],
             "tests/lab/test_c.py::test_c2": ["rdma-p2p", "two-switches"]}
    shipped = ["amd-epyc", "default", "rdma-p2p", "two-switches"]
    got = selection.plan(tests, shipped=shipped)
    # default first; then most tests first (two boots at once end together); ties by name
    assert got == [("default", ["tests/lab/test_a.py", "tests/lab/test_b.py"]),
                   ("two-switches", ["tests/lab/test_a.py", "tests/lab/test_b.py", "tests/lab/test_c.py"]),
                   ("rdma-p2p", ["tests/lab/test_b.py", "tests/lab/test_c.py"]),
                   ("amd-epyc", ["tests/lab/test_b.py"])]
    # --topology: just those; one no selected test wants is kept, with no files (check fails it)
    assert selection.plan({"t.py::x": ["default"]}, only=["amd-epyc", "default"], shipped=shipped) == \
        [("default", ["t.py"]), ("amd-epyc", [])]


def test_lab_slots_queue_runs_beyond_the_limit(tmp_path, monkeypatch):
    import threading

    held = runner.acquire_slot(tmp_path, count=1)
    got = []
    t = threading.Thread(target=lambda: got.append(runner.acquire_slot(tmp_path, count=1, poll=0.01)))
    t.start()
    t.join(0.3)
    assert t.is_alive() and not got          # the only slot is taken: the second run waits
    held.close()
    t.join(5)
    assert got                               # ... and starts once it is free
    got[0].close()
    monkeypatch.setenv("NVMET_P2P_LAB_SLOTS", "x")
    with pytest.raises(LabError, match="NVMET_P2P_LAB_SLOTS"):
        runner.acquire_slot(tmp_path)


# -- PCI NICs in topologies, the rxe_p2p module ------------------------------------------------

def test_rdma_p2p_topology_places_nics_on_hubs_with_a_spare_port():
    t = topology.load("rdma-p2p")
    assert t.needs_rxe_p2p and [(n.name, n.model, n.rdma) for n in t.pci_nics] == [
        ("nicnear", "e1000e", "rxp0"), ("nicfar", "virtio-net-pci", "rxp1")]
    near, far = t.pci_nics
    assert near.path == ["rp1", "sw1", "sw1-dp3"] and far.path == ["rp3"]
    argv = t.qemu_devices({n.serial: f"/img/{n.serial}" for n in t.nvme})
    joined = " ".join(argv)
    assert ("-netdev hubport,id=hp-nicnear,hubid=10 -netdev hubport,id=hp-nicnear-spare,hubid=10 "
            "-device e1000e,id=nic-nicnear,netdev=hp-nicnear,mac=52:54:00:9e:00:00,bus=sw1-dp3") in joined
    assert "-device virtio-net-pci,id=nic-nicfar,netdev=hp-nicfar,mac=52:54:00:9e:00:01,bus=rp3" in joined
    assert "cmb_size_mb=2" in joined                   # cmbSmall: too small for the I/O in flight
    g = t.guest_json()
    assert g["pci_nics"][0] == {"name": "nicnear", "model": "e1000e", "mac": "52:54:00:9e:00:00",
                                "ip": "10.79.0.1/24", "rdma": "rxp0", "path": ["rp1", "sw1", "sw1-dp3"],
                                "slot": "rp1 (00:04.0) > sw1 port 3"}
    assert not topology.load("default").needs_rxe_p2p


_RP = {"name": "rp1", "nvme": {"serial": "a"}}


@pytest.mark.parametrize("nic,extra,where,what", [
    ({"name": "n0", "model": "rtl8139"}, {}, "root_ports[1].nic.model", "e1000e, virtio-net-pci"),
    ({"name": "n0", "rdma": "rxp0"}, {}, "root_ports[1].nic.rdma", "needs the NIC's ip"),
    ({"name": "n0", "ip": "10.1.2.3"}, {}, "root_ports[1].nic.ip", "IPv4 address with prefix"),
    ({"name": "n0", "speed": 10}, {}, "root_ports[1].nic.speed", "unknown key"),
    ({"name": "dummy0"}, {"network": [{"name": "dummy0", "kind": "dummy"}]}, "network[0].name",
     "duplicate interface"),
    ({"name": "n0", "ip": "10.1.0.1/24", "rdma": "rxp0"},
     {"network": [{"name": "dummy0", "kind": "dummy", "ip": "10.2.0.1/24", "rdma": "rxe0"}]},
     "network", "UDP port 4791"),
])
def test_nic_errors_name_the_key(nic, extra, where, what):
    doc = {"root_ports": [_RP, {"name": "rp2", "nic": nic}], **extra}
    with pytest.raises(topology.TopologyError) as ei:
        topology.from_dict(doc, "bad", "bad.yaml")
    msg = str(ei.value)
    assert where in msg and what in msg, msg


_HDR = "7.3.4+deb13"
_BPO = "7.3.4-1~bpo13+1"
RXE_INDEX = f"""\
Package: linux-headers-{_HDR}-amd64
Version: {_BPO}
Depends: gcc-14-for-host, linux-base (>= 4.12~), linux-base-{_HDR}-amd64 (= {_BPO}),
 linux-headers-{_HDR}-common (= {_BPO}), linux-kbuild-{_HDR}
Filename: pool/main/l/linux/linux-headers-{_HDR}-amd64_{_BPO}_amd64.deb

Package: linux-headers-{_HDR}-common
Version: {_BPO}

Package: linux-kbuild-{_HDR}
Version: {_BPO}
Depends: pahole, libc6 (>= 2.38)

Package: linux-base-{_HDR}-amd64
Version: {_BPO}

Package: linux-base
Version: 4.12

Package: linux-source-7.3
Version: {_BPO}
Depends: binutils, xz-utils

Package: linux-source-7.2
Version: 7.2.12-1~bpo13+1
"""


def _kernel(tmp_path, version=_BPO) -> kernel.Kernel:
    return kernel.Kernel(release=f"{_HDR}-amd64", version=version, suite="trixie-backports",
                         tree=str(tmp_path), vmlinuz="", moddir="", config="")


def test_rxemod_selects_the_kernels_own_header_and_source_packages(tmp_path):
    headers, source = rxemod.select_packages(kernel.parse_packages(RXE_INDEX), _kernel(tmp_path))
    assert [h["Package"] for h in headers] == [f"linux-headers-{_HDR}-amd64", f"linux-base-{_HDR}-amd64",
                                               f"linux-headers-{_HDR}-common", f"linux-kbuild-{_HDR}"]
    assert source["Package"] == "linux-source-7.3"
    assert rxemod.compiler_for(headers) == "x86_64-linux-gnu-gcc-14"
    assert rxemod.build_distribution("trixie-backports") == ("trixie", ["trixie", "trixie-backports"])
    assert rxemod.build_distribution("forky") == ("forky", ["forky"])


def test_rxemod_kernel_gone_from_the_suite_is_one_clear_error(tmp_path):
    with pytest.raises(LabError, match=r"linux-headers-7\.3\.4\+deb13-amd64 and linux-source-7\.3 "
                                       r"7\.3\.4-2 not in trixie-backports .*--refresh-kernel"):
        rxemod.select_packages(kernel.parse_packages(RXE_INDEX), _kernel(tmp_path, "7.3.4-2"))


def test_rxemod_key_follows_patch_and_kernel_build(tmp_path):
    k = _kernel(tmp_path)
    a = rxemod.module_key(k, b"patch")
    assert a == rxemod.module_key(k, b"patch")
    assert a != rxemod.module_key(k, b"patch2")
    assert a != rxemod.module_key(_kernel(tmp_path, "7.3.4-1~bpo13+2"), b"patch")


def test_rxemod_shipped_patch_renames_and_keeps_the_licence():
    text = rxemod.patch_bytes().decode()
    assert text.startswith("SPDX-License-Identifier: GPL-2.0\n")
    for needle in ("+obj-m += rdma_rxe_p2p.o", '+\t.type = "rxe_p2p",', '+MODULE_ALIAS_RDMA_LINK("rxe_p2p");',
                   "+\terr = ib_register_device(dev, ibdev_name, dma_dev);", "+\tdev->dev.parent = dma_dev;",
                   "IOMMU_DOMAIN_IDENTITY", "+#define RXE_P2P_DRIVER_ID RDMA_DRIVER_UNKNOWN"):
        assert needle in text, needle
    # every DMA-address-to-pointer/page conversion of the driver is replaced, none is left
    assert text.count("-\t\tpage = ib_virt_dma_to_page(") == 3
    assert text.count("+\t\tpage = rxe_p2p_dma_to_page(") == 3


def _cached_module(cache: Path, k: kernel.Kernel, body: bytes = b"\x7fELF module") -> Path:
    key = rxemod.module_key(k, rxemod.patch_bytes())
    d = cache / "rxe_p2p" / f"{k.release}-{key}"
    d.mkdir(parents=True)
    ko = d / "rdma_rxe_p2p.ko"
    ko.write_bytes(body)
    m = rxemod.RxeModule(path=str(ko), release=k.release, kernel_version=k.version, key=key,
                         patch_sha256="", sha256=rxemod._sha256(ko))
    (d / "module.json").write_text(m.to_json())
    return ko


def test_rxemod_reuses_a_verified_cached_module_without_network(tmp_path, monkeypatch):
    k = _kernel(tmp_path)
    ko = _cached_module(tmp_path / "cache", k)
    monkeypatch.setenv("NVMET_P2P_LAB_MIRROR", "http://127.0.0.1:9/debian")
    m, cached = rxemod.ensure_module(tmp_path / "cache", k, lambda s: None)
    assert cached and m.path == str(ko)


def test_rxemod_tampered_cache_is_rebuilt_and_failures_are_one_line(tmp_path, monkeypatch):
    k = _kernel(tmp_path)
    ko = _cached_module(tmp_path / "cache", k)
    ko.write_bytes(b"tampered")                        # SHA256 no longer what module.json says
    monkeypatch.setenv("NVMET_P2P_LAB_MIRROR", "http://127.0.0.1:9/debian")
    monkeypatch.setattr(rxemod.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        rxemod.ensure_module(tmp_path / "cache", k, lambda s: None)
    monkeypatch.setattr(rxemod.os, "geteuid", lambda: 0)
    with pytest.raises(LabError) as ei:                # the rebuild needs the (unreachable) mirror
        rxemod.ensure_module(tmp_path / "cache", k, lambda s: None)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("building rdma_rxe_p2p.ko: cannot read the trixie-backports "
                                              "index: "), msg
    assert "127.0.0.1:9" in msg, msg
