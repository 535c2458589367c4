"""``topology`` rendering and matrix, and the ``topology`` / ``distance`` commands on
inventories given as JSON files (``--inventory``)."""

from __future__ import annotations

import json

import pytest

from nvmet_p2p import cli, exits
from nvmet_p2p.pci.distance import P2pdma
from nvmet_p2p.pci.topology import (
    build_matrix,
    host_bridge_summary,
    render_matrix,
    render_tree,
    topology_document,
)
from support.machine import RR_CR, Machine, lab


def _cells(matrix: dict) -> dict[tuple[str, str], tuple[str, int]]:
    return {(p["provider"], p["client"]): (p["map_type"], p["distance"]) for p in matrix["pairs"]}


def test_matrix_q35_lab():
    m = build_matrix(lab().inv)
    assert [c["name"] for c in m["clients"]] == ["nvme0", "nvme1", "nvme2", "nvme3", "rxe0"]
    assert [p["bdf"] for p in m["providers"]] == ["0000:03:00.0", "0000:04:00.0", "0000:05:00.0"]
    c = _cells(m)
    assert c[("0000:03:00.0", "nvme0")] == ("bus_addr", 0)
    assert c[("0000:03:00.0", "nvme1")] == ("bus_addr", 4)
    assert c[("0000:05:00.0", "nvme3")] == ("not_supported", -1)
    assert c[("0000:04:00.0", "rxe0")] == ("not_supported", -1)
    assert m["summary"] == {"providers": 3, "published": 3, "clients": 5, "pairs": 15,
                            "bus_addr": 9, "thru_host_bridge": 0, "not_supported": 6,
                            "uncertain": 0}


def test_matrix_uncertain_count_when_config_unreadable():
    m = build_matrix(lab(readable=False, iommu=True).inv)
    # the 6 same-switch pairs between different devices depend on unreadable downstream ports
    assert m["summary"]["uncertain"] == 6
    assert "no?" in render_matrix(m)


def test_render_matrix_blocks_and_unpublished_label():
    t = lab()
    t.inv.pci["0000:05:00.0"].p2pmem.published = False
    text = render_matrix(build_matrix(t.inv), width=2)
    assert text.count("provider ") == 3             # 5 clients in blocks of 2
    assert "0000:05:00.0 (unpublished)" in text
    assert "15 pairs: 9 bus_addr, 0 thru_host_bridge, 6 not_supported, 0 uncertain" in text


def test_tree_annotations():
    t = lab(dsp_acs=RR_CR, iommu=True)
    t.inv.pci["0000:03:00.0"].numa_node = 0
    t.multipath_head("nvme9n1", "nvme1")
    text = render_tree(t.inv)
    assert "[pci0000:00] identified by 0000:00:00.0 8086:29c0: NOT whitelisted" in text
    assert "+-00:04.0 1b36:000c  root port  [pcieport]  ACS 0x000c redirect RR+CR" in text
    line = next(x for x in text.splitlines() if "03:00.0 1b36:0010" in x)
    assert "node 0" in line and "nvme0 sn cmbA" in line and "CMB 64 MiB WDS+RDS+SQS" in line
    assert "p2pmem 64 MiB (63.9 MiB free, published)" in line
    assert "rxe0 soft RDMA (rdma_rxe) on dummy0 10.77.0.1/24" in text
    assert "nvme9n1 native-multipath head disk" in text
    assert "IOMMU on" in text


def test_tree_skylake_whitelist_line_and_pci_rnic():
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x2020)
    rp = t.root_port_at("0000:00:01.0", 0x8086, 0x2030, acs=0)
    t.rdma_nic_at("0000:01:00.0", rp, "mlx5_0", "ens1f0np0", ip="192.168.10.1")
    text = render_tree(t.inv)
    assert "8086:2020: whitelisted for p2pdma" in text
    assert "RDMA mlx5_0 on ens1f0np0 192.168.10.1/24" in text


def test_topology_document_has_inventory_and_matrix():
    doc = topology_document(lab().inv, kernel="5.3")
    assert doc["kernel"] == "5.3" and doc["kernel_source"] == "--kernel"
    assert set(doc) == {"kernel", "kernel_source", "host_bridges", "inventory", "matrix"}
    assert doc["inventory"]["pci"]["0000:03:00.0"]["p2pmem"]["published"] is True
    assert len(doc["matrix"]["pairs"]) == 15


# -- commands -------------------------------------------------------------------------------------

def _inv_file(tmp_path, topo: Machine, wrap: bool = False) -> str:
    p = tmp_path / "inv.json"
    doc = topo.inv.to_dict()
    if wrap:
        doc = {"kernel": "x", "inventory": doc}
    p.write_text(json.dumps(doc))
    return str(p)


def test_distance_command_json(tmp_path, capsys):
    f = _inv_file(tmp_path, lab(dsp_acs=RR_CR))
    assert cli.main(["distance", "--inventory", f, "--json", "0000:03:00.0", "nvme1n1"]) == exits.NO_P2P
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("provider", "clients", "map_type", "distance",
                                "kernel_parameter")} == {
        "provider": "0000:03:00.0", "clients": ["nvme1n1"], "map_type": "not_supported",
        "distance": -1, "kernel_parameter": "pci=disable_acs_redir=0000:02:00.0;0000:02:01.0"}
    assert out["reasons"] and isinstance(out["reasons"], list)


def test_distance_command_kernel_override_and_human(tmp_path, capsys):
    t = Machine()
    t.host_device("0000:00:00.0", 0x8086, 0x2020)
    rp = t.root_port_at("0000:00:01.0", 0x8086, 0x2030, acs=0)
    rp2 = t.root_port_at("0000:00:02.0", 0x8086, 0x2031, acs=0)
    t.nvme_at("0000:01:00.0", rp, "nvme0")
    t.rdma_nic_at("0000:02:00.0", rp2, "mlx5_0", "eth0", ip="10.1.1.1")
    f = _inv_file(tmp_path, t, wrap=True)
    assert cli.main(["distance", "--inventory", f, "0000:01:00.0", "10.1.1.1"]) == 0
    out = capsys.readouterr().out
    assert "THRU_HOST_BRIDGE, distance 4  (through the root complex)" in out
    assert cli.main(["distance", "--inventory", f, "--kernel", "5.5", "--json",
                     "0000:01:00.0", "mlx5_0"]) == exits.NO_P2P
    out = json.loads(capsys.readouterr().out)
    assert (out["map_type"], out["kernel"], out["kernel_source"]) == \
        ("not_supported", "5.5", "--kernel")


def test_distance_command_find(tmp_path, capsys):
    f = _inv_file(tmp_path, lab())
    assert cli.main(["distance", "--inventory", f, "--find", "--json", "nvme2n1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["best_distance"], out["ties"], out["random_choice"]) == (0, ["0000:05:00.0"], False)
    assert cli.main(["distance", "--inventory", f, "--find", "0000:06:00.0"]) == exits.NO_P2P
    assert "no published provider is compatible" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle, status", [
    (["0000:99:00.0", "nvme0n1"], "unknown provider '0000:99:00.0'", 2),
    (["0000:03:00.0", "mlx5_7"], "unknown client 'mlx5_7'", 2),
    (["0000:03:00.0"], "need a PROVIDER and at least one CLIENT", 2),
    (["--kernel", "five", "0000:03:00.0", "nvme0n1"], "not a kernel version: 'five'", 2),
])
def test_distance_command_errors(tmp_path, capsys, argv, needle, status):
    f = _inv_file(tmp_path, lab())
    assert cli.main(["distance", "--inventory", f] + argv) == status
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_inventory_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["topology", "--inventory", str(bad)]) == 2
    assert f"{bad}: not valid JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"hello": 1}))
    assert cli.main(["topology", "--inventory", str(bad)]) == 2
    assert "not an inventory document" in capsys.readouterr().err
    assert cli.main(["topology", "--inventory", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_topology_command_json_roundtrip(tmp_path, capsys):
    f = _inv_file(tmp_path, lab())
    assert cli.main(["topology", "--inventory", f, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["matrix"]["summary"]["pairs"] == 15
    # the topology JSON itself is accepted as --inventory
    again = tmp_path / "topo.json"
    again.write_text(json.dumps(doc))
    assert cli.main(["topology", "--inventory", str(again), "--no-matrix"]) == 0
    out = capsys.readouterr().out
    assert "03:00.0 1b36:0010" in out and "pairs:" not in out


def test_cli_imports_only_the_chosen_command():
    """`nvmet-p2p distance ...` must not pay for every other command's imports (seconds under
    the lab's TCG); `nvmet-p2p --help` still lists them all."""
    import subprocess
    import sys
    code = ("import sys\nfrom nvmet_p2p import cli\n"
            "try:\n    cli.main(['distance', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('nvmet_p2p.commands.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == \
        "['nvmet_p2p.commands._common', 'nvmet_p2p.commands._inventory', 'nvmet_p2p.commands.distance']"
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "--help"], capture_output=True,
                       text=True)
    assert "distance" in r.stdout and "topology" in r.stdout and "snapshot" in r.stdout


def test_tree_shows_reader_warnings_and_unknown_acs():
    t = lab(readable=False)
    t.inv.warnings = [f"w{i}" for i in range(12)]
    text = render_tree(t.inv)
    assert "warning: w0" in text and "warning: w9" in text and "warning: w10" not in text
    assert "warning: ... 2 more" in text
    assert "02:00.0 104c:8233  PCI bridge  [pcieport]  ACS ?" in text   # type unknown too


def test_amd_zen_host_bridge_line_says_what_the_kernel_does():
    """AMD family >= 0x17 (here 0x1a): the kernel trusts every host bridge through the CPU
    rule, whatever the whitelist table says; the tree says so for each host bridge."""
    zen = lab(cpu_family=0x1A).inv
    text = render_tree(zen)
    assert "AMD CPU rule: every host-bridge path allowed" in text.splitlines()[0]
    assert ("[pci0000:00] identified by 0000:00:00.0 8086:29c0: trusted for p2pdma through the "
            "root complex by the AMD CPU rule (not in the whitelist table)") in text
    assert "NOT whitelisted" not in text
    (hb,) = host_bridge_summary(zen, P2pdma(zen))
    assert (hb["whitelisted"], hb["trusted"], hb["trusted_by"]) == (False, True, "cpu_rule")
    # family 15 (the lab's TCG CPU): the table decides, and says no
    tcg = lab().inv
    assert "8086:29c0: NOT whitelisted for p2pdma through the root complex" in render_tree(tcg)
    (hb,) = host_bridge_summary(tcg, P2pdma(tcg))
    assert (hb["trusted"], hb["trusted_by"]) == (False, None)
