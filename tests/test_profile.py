"""Profile format and validation: every error class, with file, line and offending value."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from nvmet_p2p.errors import InputError
from nvmet_p2p.policy import profile
from nvmet_p2p.policy.profile import ProfileError
from support.machine import Machine, MiB, lab_machine

HOST = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
SUB = "nqn.2026-01.io.nvmet-p2p:test"
KEY = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"

BASE = f"""
version: 1
hosts:
  - nqn: {HOST}
ports:
  - id: 1
    transport: rdma
    rdma_device: rxe0
subsystems:
  - nqn: {SUB}
    hosts: [{HOST}]
    ports: [1]
    namespaces:
      - select: {{serial: cmbA}}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def resolve(tmp_path, text, inv=None, **kw):
    path = write(tmp_path, text)
    prof = profile.load(path, strict=False)
    return profile.resolve(prof, inv or lab_machine(), **kw)


def errors(tmp_path, text, inv=None) -> list[str]:
    with pytest.raises(ProfileError) as ei:
        resolve(tmp_path, text, inv)
    return [str(p) for p in ei.value.problems]


def one_error(tmp_path, text, inv=None) -> str:
    errs = errors(tmp_path, text, inv)
    assert len(errs) == 1, errs
    return errs[0]


# -- a valid profile --------------------------------------------------------------------------

def test_minimal_profile_resolves_against_the_lab_machine(tmp_path):
    r = resolve(tmp_path, BASE)
    [ns] = r.namespaces
    assert (ns.subsystem, ns.nsid, ns.ns.name, ns.controller.serial) == (SUB, 1, "nvme0n1", "cmbA")
    assert ns.policy == "placed" and ns.require == "any"
    port = r.ports[1]
    assert (port.address, port.adrfam, port.trsvcid, port.netdev) == ("10.77.0.1", "ipv4", 4420,
                                                                      "dummy0")
    assert port.clients == [] and "soft RDMA" in port.note
    assert ns.demand == 0            # no p2p client behind any port: nothing in flight in p2pmem
    assert r.hosts == {HOST: {}}
    assert r.subsystems[0].attrs == {"attr_allow_any_host": "0"}


def test_error_carries_file_line_column_and_value(tmp_path):
    text = BASE.replace("transport: rdma", "transport: roce")
    err = one_error(tmp_path, text)
    assert err.startswith(f"{tmp_path / 'p.yaml'}:6:16: ports[0].transport: ")
    assert "'roce'" in err and "rdma, tcp" in err


def test_all_errors_are_collected_in_file_order(tmp_path):
    text = BASE.replace("version: 1", "version: 1\nbudgt: {}").replace(
        "transport: rdma", "transport: roce").replace("serial: cmbA", "serial: nope")
    errs = errors(tmp_path, text)
    assert len(errs) == 3
    lines = [int(e.split(":")[1]) for e in errs]
    assert lines == sorted(lines)
    assert "budgt" in errs[0] and "roce" in errs[1] and "nope" in errs[2]


def test_profile_error_is_an_input_error_whose_message_lists_everything(tmp_path):
    text = BASE.replace("transport: rdma", "transport: roce").replace("serial: cmbA", "serial: x")
    with pytest.raises(InputError) as ei:
        resolve(tmp_path, text)
    msg = str(ei.value)
    assert msg.splitlines()[0].endswith("2 errors in profile (nothing was changed)")
    assert len(msg.splitlines()) == 3


# -- structural errors ------------------------------------------------------------------------

def test_yaml_syntax_error_has_a_line(tmp_path):
    err = one_error(tmp_path, "version: 1\nsubsystems: [\n  - a: b\n")
    assert ":3:" in err or ":4:" in err
    assert "not valid YAML" in err


def test_empty_file(tmp_path):
    assert "empty" in one_error(tmp_path, "# nothing\n")


@pytest.mark.parametrize("snippet,where,needle", [
    ("version: 1\nsubsystemz: []\nsubsystems: []", "subsystemz", "did you mean 'subsystems'"),
    (BASE.replace("rdma_device: rxe0", "rdma_device: rxe0\n    speed: 100"), "ports[0].speed",
     "unknown key 'speed' in port"),
])
def test_unknown_keys(tmp_path, snippet, where, needle):
    errs = errors(tmp_path, snippet)
    assert any(where in e and needle in e for e in errs), errs


def test_selecting_by_kernel_name_is_refused_with_the_reason(tmp_path):
    err = one_error(tmp_path, BASE.replace("{serial: cmbA}", "{serial: cmbA, device: nvme0n1}"))
    assert "unknown key 'device' in select" in err and "move between boots" in err


@pytest.mark.parametrize("old,new,needle", [
    ("version: 1", "version: one", "expected an integer, got 'one'"),
    ("version: 1", "version: 2", "2 is out of range (1..1)"),
    ("ports: [1]", "ports: 1", "expected a list, got '1'"),
    ("hosts: [", "allow_any_host: maybe\n    hosts: [", "expected true or false, got 'maybe'"),
    ("    namespaces:\n", "    namespaces: {a: 1}\n    x:\n", "expected a list, got a mapping"),
    ("- select: {serial: cmbA}", "- select: cmbA", "expected a mapping (select), got 'cmbA'"),
    ("- select: {serial: cmbA}", "- select: {serial: [cmbA]}", "expected a string, got a list"),
    ("- select: {serial: cmbA}", "- select: {serial: }", "expected a string, got nothing"),
])
def test_wrong_types(tmp_path, old, new, needle):
    errs = errors(tmp_path, BASE.replace(old, new))
    assert any(needle in e for e in errs), errs


def test_missing_required_keys(tmp_path):
    errs = errors(tmp_path, "version: 1\nports:\n  - rdma_device: rxe0\nsubsystems:\n"
                            "  - namespaces:\n      - nsid: 1\n")
    text = "\n".join(errs)
    assert "port needs 'transport'" in text
    assert "subsystem needs 'nqn'" in text
    assert "namespace needs 'select'" in text
    assert "profile" not in text or "profile needs" not in text
    assert "profile needs 'subsystems'" in one_error(tmp_path, "version: 1\n")


def test_duplicate_keys_are_errors(tmp_path):
    err = one_error(tmp_path, BASE.replace("    ports: [1]\n", "    ports: [1]\n    ports: [1]\n"))
    assert "key 'ports' given twice (first at line 11)" in err


@pytest.mark.parametrize("old,new,needle", [
    (f"nqn: {SUB}", "nqn: storage1", "'storage1' is not an NQN"),
    (f"nqn: {SUB}", "nqn: nqn.2014-08.org.nvmexpress.discovery", "'nqn.2014-08.org.nvmexpress"
     ".discovery' is not an NQN"),
    (f"nqn: {SUB}", "nqn: nqn.2026-01.io.x:" + "a" * 220, "longer than 223 bytes"),
    ("{serial: cmbA}", "{serial: cmbA}\n        p2p: {pinned: '03:00.0'}",
     "'03:00.0' is not a full PCI address with domain"),
    ("rdma_device: rxe0", "address: 10.77.0.300", "'10.77.0.300' is not an IPv4 or IPv6"),
    ("{serial: cmbA}", "{serial: cmbA}\n        budget: {io_size: 3XB}", "expected a size"),
    ("{serial: cmbA}", "{serial: cmbA}\n        budget: {io_size: 1KiB}", "'1KiB' is out of range"),
    ("{serial: cmbA}", "{serial: cmbA}\n        p2p: automatic", "expected one of off, kernel, "
     "placed, got 'automatic'"),
    ("{serial: cmbA}", "{serial: cmbA}\n        p2p: {require: pcie}", "expected one of any, "
     "bus_addr, got 'pcie'"),
    ("{serial: cmbA}", "{serial: cmbA}\n        nsid: 0", "0 is out of range (1..4294967294)"),
    ("id: 1", "id: 70000", "70000 is out of range (0..65535)"),
    ("rdma_device: rxe0", "rdma_device: rxe0\n    max_queue_size: 8", "8 is out of range (16..1024)"),
    ("hosts: [", "serial: 'this serial is far too long'\n    hosts: [", "longer than 20"),
])
def test_bad_values(tmp_path, old, new, needle):
    errs = errors(tmp_path, BASE.replace(old, new))
    assert any(needle in e for e in errs), errs


def test_yaml_11_traps_are_avoided(tmp_path):
    # a bare `off` is a boolean in YAML 1.1, a bare 0012 an octal integer: we read what was written
    m = Machine()
    hb = m.host_bridge()
    m.nvme(m.root_port(hb), "0012", cmb=16 * MiB)
    m.soft_rdma("rxe0", netdev="dummy0", ip="10.77.0.1/24")
    r = resolve(tmp_path, BASE.replace("{serial: cmbA}", "{serial: 0012}\n        p2p: off"),
                m.build())
    assert r.namespaces[0].controller.serial == "0012"
    assert r.namespaces[0].policy == "off"
    # ...and say that other YAML 1.1 loaders read 0012 as the number 10
    assert any("'0012' is read as text here" in str(w) and "quote it" in str(w)
               for w in r.warnings)


@pytest.mark.parametrize("text", [
    "{serial: cmbA}\n        p2p: false",
    "{serial: cmbA}\n        p2p: no",
    "{serial: cmbA}\n        p2p: {policy: false}",
    "{serial: cmbA}\n        p2p: {policy: placed, when_none: false, when_full: no}",
])
def test_yaml_11_false_means_off_where_off_is_a_keyword(tmp_path, text):
    """What a YAML 1.1 loader (an Ansible task's inline profile) makes of ``off``: false."""
    r = resolve(tmp_path, BASE.replace("{serial: cmbA}", text))
    ns = r.namespaces[0]
    if "when_none" in text:
        assert (ns.policy, ns.when_none, ns.when_full) == ("placed", "off", "off")
    else:
        assert ns.policy == "off"


def test_yaml_11_true_is_no_policy(tmp_path):
    errs = errors(tmp_path, BASE.replace("{serial: cmbA}", "{serial: cmbA}\n        p2p: true"))
    assert any("expected one of off, kernel, placed, got 'true'" in e for e in errs), errs


# -- selectors against the machine ------------------------------------------------------------

def test_selector_matching_nothing_names_close_serials(tmp_path):
    err = one_error(tmp_path, BASE.replace("serial: cmbA", "serial: cmbX"))
    assert err.endswith("selector {serial: cmbX} matches no namespace of this machine "
                        "(serials close to it: cmbC, cmbB, cmbA)") or "cmbA" in err
    assert ":13:17:" in err


def test_selector_matching_several_needs_each(tmp_path):
    err = one_error(tmp_path, BASE.replace("{serial: cmbA}", "{cmb: true}"))
    assert "matches 3 namespaces: cmbA/1 (nvme0n1), cmbB/1 (nvme1n1), cmbC/1 (nvme2n1)" in err
    assert "each: true" in err


def test_each_exports_every_match_in_serial_order_with_consecutive_nsids(tmp_path):
    r = resolve(tmp_path, BASE.replace("- select: {serial: cmbA}",
                                       "- select: {cmb: true}\n        each: true\n        nsid: 10"))
    assert [(n.nsid, n.controller.serial) for n in r.namespaces] == [
        (10, "cmbA"), (11, "cmbB"), (12, "cmbC")]
    r = resolve(tmp_path, BASE.replace("- select: {serial: cmbA}",
                                       "- select: {cmb: false}\n        each: true"))
    assert [(n.nsid, n.controller.serial) for n in r.namespaces] == [(1, "plain")]


def test_selectors_by_every_stable_identity(tmp_path):
    inv = lab_machine(ns_ids=True)
    ns = inv.namespaces["nvme1n1"]           # cmbB
    ctrl = inv.nvme[ns.controller]
    for sel in (f"{{wwid: '{ns.wwid}'}}", f"{{eui: '{ns.eui.upper()}'}}",
                f"{{nguid: '{ns.nguid[:8]}-{ns.nguid[8:]}'}}", f"{{uuid: '{ns.uuid}'}}",
                f"{{pci: '{ctrl.pci}'}}", "{by_id: /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_cmbB}",
                "{by_id: nvme-QEMU_NVMe_Ctrl_cmbB_1}", f"{{by_id: 'nvme-{ns.wwid}'}}",
                "{model: 'QEMU*', serial: cmbB}", "{serial: cmbB, nsid: 1}"):
        r = resolve(tmp_path, BASE.replace("{serial: cmbA}", sel), inv)
        assert [n.ns.name for n in r.namespaces] == ["nvme1n1"], sel
    err = one_error(tmp_path, BASE.replace("{serial: cmbA}", "{serial: cmbB, nsid: 2}"), inv)
    assert "matches no namespace" in err


def test_by_id_links_read_by_the_caller_are_honoured(tmp_path):
    r = resolve(tmp_path, BASE.replace("{serial: cmbA}", "{by_id: nvme-custom-link}"),
                by_id_links={"nvme-custom-link": "nvme2n1"})
    assert r.namespaces[0].controller.serial == "cmbC"


def test_fabrics_namespaces_are_not_candidates(tmp_path):
    inv = lab_machine()
    # an initiator connected to this very target shows the subsystem as another nvme controller
    from nvmet_p2p.pci.model import NvmeController, NvmeNamespace
    inv.nvme["nvme9"] = NvmeController(name="nvme9", transport="rdma", pci=None, serial="cmbA",
                                       namespaces=["nvme9n1"])
    inv.namespaces["nvme9n1"] = NvmeNamespace(name="nvme9n1", nsid=1, controller="nvme9", pci=None)
    r = resolve(tmp_path, BASE, inv)
    assert [n.ns.name for n in r.namespaces] == ["nvme0n1"]


def test_namespace_exported_twice(tmp_path):
    err = one_error(tmp_path, BASE + "      - select: {pci: '0000:03:00.0'}\n")
    assert "cmbA/1 (nvme0n1) is already exported by the entry at line 13" in err


def test_nsids_auto_assigned_and_duplicates_refused(tmp_path):
    r = resolve(tmp_path, BASE.replace("- select: {serial: cmbA}",
                                       "- select: {serial: cmbA}\n        nsid: 2\n"
                                       "      - select: {serial: cmbB}\n"
                                       "      - select: {serial: cmbC}"))
    assert [(n.nsid, n.controller.serial) for n in r.namespaces] == [
        (2, "cmbA"), (1, "cmbB"), (3, "cmbC")]
    err = one_error(tmp_path, BASE.replace("- select: {serial: cmbA}",
                                           "- select: {serial: cmbA}\n        nsid: 2\n"
                                           "      - select: {serial: cmbB}\n        nsid: 2"))
    assert "nsid 2 is used twice" in err


def test_multipath_head_cannot_be_a_p2p_client(tmp_path):
    m = Machine()
    hb = m.host_bridge()
    m.nvme(m.root_port(hb), "dual", cmb=16 * MiB, multipath=True)
    m.soft_rdma("rxe0", netdev="dummy0", ip="10.77.0.1/24")
    err = one_error(tmp_path, BASE.replace("serial: cmbA", "serial: dual"), m.build())
    assert "native-multipath head" in err and "nvme_core.multipath=N" in err
    r = resolve(tmp_path, BASE.replace("{serial: cmbA}", "{serial: dual}\n        p2p: off"),
                m.build())
    assert r.namespaces[0].policy == "off"


# -- ports ------------------------------------------------------------------------------------

def _nic_machine():
    m = Machine()
    hb = m.host_bridge()
    dsps = m.switch(m.root_port(hb), ports=3)
    m.nvme(dsps[0], "cmbA", cmb=64 * MiB)
    m.rdma_nic(dsps[1], "mlx5_0", netdev="ens1", ip="192.168.1.10/24")
    m.rdma_nic(dsps[2], "mlx5_1", netdev="ens2", ip="fe80::1/64")
    m.inv.net["ens2"].addresses.append("2001:db8::2/64")
    m.soft_rdma("rxe0", netdev="ens1")
    m.netdev("eth0", "10.0.0.5/24")
    m.netdev("bare")
    return m.build()


def _port(body: str) -> str:
    return BASE.replace("    transport: rdma\n    rdma_device: rxe0\n", body)


@pytest.mark.parametrize("body,expect", [
    ("    transport: rdma\n    rdma_device: mlx5_0\n", ("192.168.1.10", "ipv4", "ens1", "mlx5_0")),
    ("    transport: rdma\n    rdma_device: mlx5_1\n", ("2001:db8::2", "ipv6", "ens2", "mlx5_1")),
    ("    transport: rdma\n    address: 2001:db8::2\n", ("2001:db8::2", "ipv6", "ens2", "mlx5_1")),
    ("    transport: tcp\n    netdev: eth0\n", ("10.0.0.5", "ipv4", "eth0", None)),
    ("    transport: tcp\n    address: 10.0.0.5\n    trsvcid: 4421\n", ("10.0.0.5", "ipv4", "eth0", None)),
])
def test_port_addresses_come_from_the_device(tmp_path, body, expect):
    r = resolve(tmp_path, _port(body), _nic_machine())
    p = r.ports[1]
    assert (p.address, p.adrfam, p.netdev, p.rdma.name if p.rdma else None) == expect
    if p.rdma:
        assert p.clients == [p.rdma.pci]
    else:
        assert p.clients == [] and "nvmet-tcp never uses p2pmem" in p.note


@pytest.mark.parametrize("body,needle", [
    ("    transport: rdma\n    rdma_device: mlx5_9\n", "RDMA device 'mlx5_9' is not on this machine "
     "(RDMA devices: mlx5_0, mlx5_1, rxe0)"),
    ("    transport: rdma\n    netdev: ens9\n", "netdev 'ens9' is not on this machine"),
    ("    transport: rdma\n    address: 10.1.1.1\n", "address 10.1.1.1 is on no netdev"),
    ("    transport: tcp\n    netdev: bare\n", "netdev bare has no IP address"),
    ("    transport: rdma\n    netdev: eth0\n", "no RDMA device runs over eth0"),
    ("    transport: rdma\n    netdev: ens1\n", "several RDMA devices run over ens1 (mlx5_0, rxe0)"),
    ("    transport: tcp\n    rdma_device: mlx5_0\n", "rdma_device is for transport rdma"),
    ("    transport: rdma\n    rdma_device: mlx5_0\n    netdev: ens2\n", "netdev 'ens2' does not "
     "belong to mlx5_0"),
    ("    transport: rdma\n    rdma_device: mlx5_0\n    address: 10.0.0.5\n", "address 10.0.0.5 "
     "belongs to eth0, not ens1"),
    ("    transport: rdma\n", "port needs at least one of: rdma_device, netdev, address"),
])
def test_port_errors(tmp_path, body, needle):
    assert needle in one_error(tmp_path, _port(body), _nic_machine())


def test_two_ports_on_one_listen_address_and_duplicate_ids(tmp_path):
    body = ("    transport: rdma\n    rdma_device: mlx5_0\n  - id: 2\n    transport: rdma\n"
            "    rdma_device: mlx5_0\n    address: 192.168.1.10\n  - id: 2\n    transport: tcp\n    netdev: eth0\n")
    errs = errors(tmp_path, _port(body), _nic_machine())
    assert len(errs) == 2
    assert "port 2 listens on 192.168.1.10:4420 (rdma) like the port at line 5" in errs[0]
    assert "port id 2 used twice" in errs[1]


def test_wildcard_rdma_port_has_every_pci_nic_as_client(tmp_path):
    r = resolve(tmp_path, _port("    transport: rdma\n    address: 0.0.0.0\n"), _nic_machine())
    inv = _nic_machine()
    assert r.ports[1].clients == [inv.rdma["mlx5_0"].pci, inv.rdma["mlx5_1"].pci]
    assert any("every PCI RDMA NIC is a possible p2p client" in str(w) for w in r.warnings)


def test_port_params_and_default_ids(tmp_path):
    body = ("    transport: rdma\n    rdma_device: mlx5_0\n    inline_data_size: 0\n"
            "    max_queue_size: 64\n    mdts: 5\n  - transport: tcp\n    netdev: eth0\n")
    r = resolve(tmp_path, _port(body).replace("  - id: 1\n", "  - id: 1\n", 1), _nic_machine())
    assert r.ports[1].params == {"param_inline_data_size": "0", "param_max_queue_size": "64",
                                 "param_mdts": "5"}
    assert r.ports[2].transport == "tcp"          # position 2 in the list -> id 2


# -- subsystems and hosts ---------------------------------------------------------------------

def test_subsystem_errors(tmp_path):
    text = BASE.replace("hosts: [", "allow_any_host: true\n    hosts: [").replace(
        "ports: [1]", "ports: [1, 7]")
    text += text[text.index("  - nqn: " + SUB):]
    errs = "\n".join(errors(tmp_path, text))
    assert "allow_any_host cannot be combined with hosts" in errs
    assert "port 7 is not declared under ports (declared: 1)" in errs
    assert f"subsystem '{SUB}' declared twice (first at line 9)" in errs


def test_allow_any_host_only_when_written(tmp_path):
    r = resolve(tmp_path, BASE)
    assert r.subsystems[0].attrs["attr_allow_any_host"] == "0"
    r = resolve(tmp_path, BASE.replace(f"hosts: [{HOST}]", "allow_any_host: true"))
    assert r.subsystems[0].attrs["attr_allow_any_host"] == "1"
    r = resolve(tmp_path, BASE.replace(f"    hosts: [{HOST}]\n", ""))
    assert r.subsystems[0].attrs["attr_allow_any_host"] == "0"
    assert any("allows no host" in str(w) for w in r.warnings)


def test_undeclared_allowed_hosts_are_created_without_keys(tmp_path):
    other = "nqn.2014-08.org.nvmexpress:uuid:99999999-2222-3333-4444-555555555555"
    r = resolve(tmp_path, BASE.replace(f"hosts: [{HOST}]", f"hosts: [{HOST}, {other}]"))
    assert r.hosts == {HOST: {}, other: {}}
    assert r.subsystems[0].allowed_hosts == [HOST, other]


def test_dhchap_keys_are_read_from_files_and_never_shown(tmp_path):
    key = tmp_path / "host.key"
    key.write_text(KEY + "\n")
    os.chmod(key, 0o600)
    ctrl = tmp_path / "ctrl.key"
    ctrl.write_text(KEY.replace("ia6", "Xa6"))
    os.chmod(ctrl, 0o644)
    text = BASE.replace(f"  - nqn: {HOST}\n", f"  - nqn: {HOST}\n    dhchap_key_file: host.key\n"
                        f"    dhchap_ctrl_key_file: {ctrl}\n    dhchap_hash: hmac(sha512)\n", 1)
    r = resolve(tmp_path, text)
    assert r.hosts[HOST]["dhchap_key"] == KEY
    assert r.hosts[HOST]["dhchap_hash"] == "hmac(sha512)"
    assert "hidden" in repr(r.hosts[HOST]["dhchap_key"]) and KEY not in repr(r.hosts)
    warns = [str(w) for w in r.warnings]
    assert any("ctrl.key is readable by others (mode 0644)" in w for w in warns)
    assert not any(KEY[8:20] in w for w in warns)


def test_bad_key_files_are_errors_that_do_not_leak_content(tmp_path):
    (tmp_path / "bad.key").write_text("password123-not-a-dhchap-secret\n")
    text = BASE.replace(f"  - nqn: {HOST}\n", f"  - nqn: {HOST}\n    dhchap_key_file: bad.key\n"
                        f"    dhchap_ctrl_key_file: missing.key\n", 1)
    errs = errors(tmp_path, text)
    assert len(errs) == 2
    assert "does not hold one DH-HMAC-CHAP secret" in errs[0]
    assert "cannot read key file" in errs[1] and "missing.key" in errs[1]
    assert not any("password123" in e for e in errs)


def test_ctrl_key_needs_a_host_key(tmp_path):
    (tmp_path / "c.key").write_text(KEY)
    os.chmod(tmp_path / "c.key", 0o600)
    text = BASE.replace(f"  - nqn: {HOST}\n", f"  - nqn: {HOST}\n    dhchap_ctrl_key_file: c.key\n", 1)
    assert "a controller key needs a host key" in one_error(tmp_path, text)


# -- policy and budget inheritance ------------------------------------------------------------

def test_p2p_policy_inherits_profile_subsystem_namespace(tmp_path):
    text = BASE.replace("version: 1", "version: 1\np2p: {require: bus_addr, when_full: off}").replace(
        "    ports: [1]\n", "    ports: [1]\n    p2p: kernel\n").replace(
        "- select: {serial: cmbA}", "- select: {serial: cmbA}\n      - select: {serial: cmbB}\n"
        "        p2p: {pinned: '0000:03:00.0'}\n      - select: {serial: cmbC}\n        p2p: placed")
    r = profile.resolve(profile.load(write(tmp_path, text)), lab_machine())
    a, b, c = r.namespaces
    assert (a.policy, a.pinned, a.require, a.when_full) == ("kernel", None, "bus_addr", "off")
    assert (b.policy, b.pinned, b.require) == ("pinned", "0000:03:00.0", "bus_addr")
    assert (c.policy, c.pinned, c.when_none) == ("placed", None, "error")


def test_policy_given_after_an_inherited_pin_drops_it():
    merged = profile._merge_p2p({"pinned": "0000:03:00.0"}, None, {"policy": "off"})
    assert merged["policy"] == "off" and merged["pinned"] is None
    merged = profile._merge_p2p({"pinned": "0000:03:00.0"}, {"require": "bus_addr"}, None)
    assert merged["policy"] == "pinned" and merged["pinned"] == "0000:03:00.0"


def test_pinned_needs_a_provider_and_must_agree_with_policy(tmp_path):
    err = one_error(tmp_path, BASE.replace("{serial: cmbA}", "{serial: cmbA}\n"
                                           "        p2p: {policy: pinned}"))
    assert "policy pinned needs pinned: <provider BDF>" in err
    err = one_error(tmp_path, BASE.replace("{serial: cmbA}", "{serial: cmbA}\n"
                                           "        p2p: {policy: kernel, pinned: '0000:03:00.0'}"))
    assert "pinned 0000:03:00.0 conflicts with policy kernel" in err


@pytest.mark.parametrize("bdf,needle", [
    ("0000:42:00.0", "pinned provider 0000:42:00.0 is not a PCI function of this machine"),
    ("0000:06:00.0", "pinned provider 0000:06:00.0 has no p2p memory"),
])
def test_pinned_provider_the_kernel_would_refuse_with_enodev(tmp_path, bdf, needle):
    err = one_error(tmp_path, BASE.replace("{serial: cmbA}", f"{{serial: cmbA}}\n"
                                           f"        p2p: {{pinned: '{bdf}'}}"))
    assert needle in err and "ENODEV" in err


def test_unpublished_pinned_provider(tmp_path):
    inv = lab_machine()
    inv.pci["0000:04:00.0"].p2pmem.published = False
    err = one_error(tmp_path, BASE.replace("{serial: cmbA}", "{serial: cmbA}\n"
                                           "        p2p: {pinned: '0000:04:00.0'}"), inv)
    assert "has p2p memory but does not publish it" in err


def test_budget_inherits_and_is_bounded_by_ports_and_subsystem(tmp_path):
    body = ("    transport: rdma\n    rdma_device: mlx5_0\n    max_queue_size: 64\n    mdts: 5\n")
    text = _port(body).replace("version: 1", "version: 1\nbudget: {hosts: 3, io_size: 1MiB}").replace(
        "    ports: [1]\n", "    ports: [1]\n    qid_max: 2\n    budget: {queues: 8}\n").replace(
        "{serial: cmbA}", "{serial: cmbA}\n        budget: {queue_depth: 256}")
    [ns] = resolve(tmp_path, text, _nic_machine()).namespaces
    assert ns.budget == {"hosts": 3, "queues": 8, "queue_depth": 256, "io_size": MiB}
    assert ns.effective == {"hosts": 3, "queues": 2, "queue_depth": 64, "io_size": 128 * 1024}
    assert ns.demand == 3 * 2 * 64 * 128 * 1024
    # defaults: 1 host x 4 queues x depth 128 x 128 KiB
    [ns] = resolve(tmp_path, _port("    transport: rdma\n    rdma_device: mlx5_0\n"),
                   _nic_machine()).namespaces
    assert ns.demand == 64 * MiB


def test_demand_is_zero_without_a_p2p_client_or_with_p2p_off(tmp_path):
    [ns] = resolve(tmp_path, _port("    transport: tcp\n    netdev: eth0\n"), _nic_machine()).namespaces
    assert ns.demand == 0
    [ns] = resolve(tmp_path, _port("    transport: rdma\n    rdma_device: mlx5_0\n").replace(
        "{serial: cmbA}", "{serial: cmbA}\n        p2p: off"), _nic_machine()).namespaces
    assert ns.demand == 0


def test_sizes_and_formatting():
    assert profile.parse_size("128KiB") == 128 * 1024
    assert profile.parse_size("1M") == MiB and profile.parse_size("4096") == 4096
    assert profile.parse_size("2 GiB") == 2 << 30 and profile.parse_size("1MB") is None
    assert profile.format_size(64 * MiB) == "64 MiB" and profile.format_size(1536) == "1.5 KiB"


# -- the JSON Schema --------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def test_shipped_json_schema_is_in_sync_with_the_model():
    shipped = json.loads((REPO / "profiles" / "profile.schema.json").read_text())
    assert shipped == profile.json_schema(), (
        "profiles/profile.schema.json is stale: regenerate it with "
        "`nvmet-p2p profile schema > profiles/profile.schema.json`")


def test_json_schema_describes_every_key_and_forbids_others():
    s = profile.json_schema()
    assert s["additionalProperties"] is False and s["required"] == ["version", "subsystems"]
    sub = s["properties"]["subsystems"]["items"]
    ns = sub["properties"]["namespaces"]["items"]
    assert set(ns["properties"]) == set(profile.NAMESPACE.fields)
    assert set(ns["properties"]["select"]["properties"]) == set(profile.SELECT.fields)
    p2p = ns["properties"]["p2p"]["oneOf"]
    # false: what a YAML 1.1 loader makes of a bare off
    assert p2p[0]["enum"] == ["off", "kernel", "placed", False]
    assert p2p[1]["properties"]["policy"]["enum"] == list(profile.POLICIES) + [False]
    assert p2p[1]["properties"]["require"]["enum"] == ["any", "bus_addr"]
    port = s["properties"]["ports"]["items"]
    assert port["properties"]["max_queue_size"]["minimum"] == 16
    assert {"required": ["rdma_device"]} in port["anyOf"]


def test_device_path_is_the_stable_by_id_link_when_udev_made_one(tmp_path):
    links = {"nvme-QEMU_NVMe_Ctrl_cmbA": "nvme0n1", "nvme-QEMU_NVMe_Ctrl_cmbA_1": "nvme0n1",
             "nvme-eui.0011223344556677": "nvme0n1", "nvme-eui.0011223344556677-part1": "nvme0n1p1",
             "nvme-eui.8899aabbccddeeff": "nvme1n1"}
    r = resolve(tmp_path, BASE, by_id_links=links)
    assert r.namespaces[0].ns.name == "nvme0n1"
    assert r.namespaces[0].device_path == "/dev/disk/by-id/nvme-eui.0011223344556677"
    # no udev (the lab): the kernel name, which is all there is
    r = resolve(tmp_path, BASE)
    assert r.namespaces[0].device_path == "/dev/nvme0n1"


def test_stable_by_id_name_preference():
    links = {"nvme-Model_SER": "nvme3n1", "nvme-nvme.1b36-53455231-4d6f64656c-00000001": "nvme3n1",
             "nvme-uuid.6b2f1c0e-0000-4000-8000-000000000001": "nvme3n1"}
    assert profile.stable_by_id_name("nvme3n1", links).startswith("nvme-uuid.")
    assert profile.stable_by_id_name("nvme3n1", {"nvme-Model_SER": "nvme3n1"}) == "nvme-Model_SER"
    assert profile.stable_by_id_name("nvme4n1", links) is None


# -- names never become paths; NQN limits at N and N+1 (issue 14) ------------------------------

@pytest.mark.parametrize("nqn,needle", [
    ("nqn.2026-13.io.example:lab/plain", "must not contain '/'"),
    ("nqn.2026-11.io.x:../../hosts/evil", "must not contain '/'"),
    ("nqn.2026-13.io.example:lab-plain", "month 13"),
    ("nqn.2026-00.io.example:lab-plain", "month 00"),
])
def test_profile_nqn_follows_the_kernel_rules_of_a_state_file(tmp_path, nqn, needle):
    errs = errors(tmp_path, BASE.replace(f"nqn: {SUB}", f"nqn: '{nqn}'"))
    assert any(needle in e and ":9:" in e for e in errs), errs


def test_profile_nqn_length_limit_is_223_bytes(tmp_path):
    head = "nqn.2026-01.io.x:"
    ok = head + "a" * (223 - len(head))
    r = resolve(tmp_path, BASE.replace(f"nqn: {SUB}", f"nqn: {ok}"))
    assert r.subsystems[0].nqn == ok and len(ok) == 223
    err = one_error(tmp_path, BASE.replace(f"nqn: {SUB}", f"nqn: {ok}a"))
    assert "224 bytes long, longer than 223 bytes" in err


def _ranged_specs(spec, path=""):
    """Every Int/Size spec with a bound in the profile format, with its dotted path."""
    from nvmet_p2p.policy import schema
    if isinstance(spec, schema.Record):
        for name, f in spec.fields.items():
            yield from _ranged_specs(f.spec, f"{path}.{name}" if path else name)
    elif isinstance(spec, schema.ListOf):
        yield from _ranged_specs(spec.item, path + "[]")
    elif isinstance(spec, schema.Either):
        yield from _ranged_specs(spec.full, path)
    elif isinstance(spec, (schema.Int, schema.Size)) and (spec.lo is not None or spec.hi is not None):
        yield path, spec


RANGED = sorted({p: s for p, s in _ranged_specs(profile.PROFILE)}.items())


@pytest.mark.parametrize("path,spec", RANGED, ids=[p for p, _ in RANGED])
def test_every_profile_limit_at_n_and_n_plus_1(path, spec):
    import yaml

    from nvmet_p2p.policy import schema
    for value, ok in ((spec.lo, True), (spec.hi, True),
                      (None if spec.lo is None else spec.lo - 1, False),
                      (None if spec.hi is None else spec.hi + 1, False)):
        if value is None or value < 0:
            continue
        rep = schema.Report("p.yaml")
        got = spec.check(yaml.compose(str(value)), path, rep)
        assert (got == value and not rep.errors) if ok else (got is None and rep.errors), \
            (path, value, [str(e) for e in rep.errors])
