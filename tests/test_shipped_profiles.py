"""The profiles shipped in profiles/ are real starting points: each one validates and places
on a synthetic machine of the kind it was written for."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmet_p2p.policy import placement, profile
from support.machine import amd_machine, jbof_single_switch_machine, lab_machine

PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def place(name, inv):
    prof = profile.load(str(PROFILES / name))
    res = profile.resolve(prof, inv)
    return res, placement.place_or_raise(res, inv, explain=True)


def test_every_shipped_profile_is_structurally_valid():
    names = sorted(p.name for p in PROFILES.glob("*.yaml"))
    assert names == ["dual-socket.yaml", "jbof-single-switch.yaml", "lab-default.yaml"]
    for name in names:
        profile.load(str(PROFILES / name))


def test_lab_default_profile_on_the_lab_topology():
    inv = lab_machine()
    res, p = place("lab-default.yaml", inv)
    got = {(d.namespace.subsystem.rsplit(":", 1)[1], d.namespace.nsid): (d.p2pmem, d.status)
           for d in p.decisions}
    assert got == {("lab-cmb", 1): ("0000:03:00.0", "placed"),
                   ("lab-cmb", 2): ("0000:04:00.0", "placed"),
                   ("lab-cmb", 3): ("0000:05:00.0", "placed"),
                   ("lab-plain", 1): ("0", "off")}
    assert res.ports[1].address == "10.77.0.1" and res.ports[1].clients == []
    assert res.ports[2].address == "10.77.0.1" and res.ports[2].trsvcid == 4421
    assert all(d.map_type == "bus_addr" for d in p.decisions if d.status == "placed")
    st = p.state
    assert st.ports[1].attrs["param_inline_data_size"] == "0"
    assert st.subsystems["nqn.2026-01.io.nvmet-p2p:lab-cmb"].attrs["attr_allow_any_host"] == "0"


def test_jbof_profile_on_a_single_switch_jbof():
    inv = jbof_single_switch_machine()
    res, p = place("jbof-single-switch.yaml", inv)
    assert len(p.decisions) == 24
    assert all(d.status == "placed" and d.map_type == "bus_addr" for d in p.decisions)
    assert all(len(d.clients) == 3 for d in p.decisions)           # NVMe + both NIC ports
    # drives with a CMB keep their own; the others borrow, and nobody is oversubscribed
    for d in p.decisions:
        if inv.pci[d.namespace.nvme_pci].p2pmem is not None:
            assert d.p2pmem == d.namespace.nvme_pci
    assert all(u["assigned"] <= u["available"] for u in p.usage.values())
    assert res.namespaces[0].demand == 2 * 4 * 64 * 128 * 1024


def test_dual_socket_profile_keeps_each_socket_local():
    inv = amd_machine()
    res, p = place("dual-socket.yaml", inv)
    assert len(p.decisions) == 24
    for d in p.decisions:
        assert d.p2pmem.startswith("0000:")
        nvme_node = inv.pci[d.namespace.nvme_pci].numa_node
        assert inv.pci[d.p2pmem].numa_node == nvme_node
        nic = d.clients[1]
        assert inv.pci[nic].numa_node == nvme_node
    # 12 x 128 MiB per socket against 4 x 128 MiB of CMB: shared, but evenly
    loads = [u["assigned"] / u["available"] for u in p.usage.values()]
    assert max(loads) - min(loads) <= 128 * 2**20 / min(u["available"] for u in p.usage.values())
    assert any(d.knobs for d in p.decisions)


@pytest.mark.parametrize("name", ["jbof-single-switch.yaml", "dual-socket.yaml"])
def test_non_lab_profiles_say_what_is_missing_on_the_lab_machine(name):
    with pytest.raises(profile.ProfileError) as ei:
        place(name, lab_machine())
    assert "RDMA device 'mlx5_0' is not on this machine (RDMA devices: rxe0)" in str(ei.value)


def test_the_format_at_a_glance_is_a_valid_profile():
    readme = (PROFILES / "README.md").read_text()
    start = readme.index("## The format at a glance")
    block = readme[readme.index("```yaml\n", start) + 8:]
    block = block[:block.index("```")]
    rep = profile.Report("profiles/README.md")
    data = profile.parse(block, "profiles/README.md", rep)
    assert not rep.errors, [str(e) for e in rep.errors]
    assert data["subsystems"][0]["namespaces"][1]["p2p"]["pinned"] == "0000:3e:00.0"


def test_shipped_profiles_validate_against_the_shipped_schema_with_a_yaml_11_loader():
    """An editor, a CI linter or Ansible reads a profile with a YAML 1.1 loader (PyYAML's
    safe_load: a bare ``off`` is ``False``) and checks it against profiles/profile.schema.json
    with a standard JSON Schema validator: every shipped profile passes, and so does the
    same profile written the way a YAML 1.1 dumper writes it back."""
    import json

    import yaml
    jsonschema = _jsonschema()
    schema = json.loads((PROFILES / "profile.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted(PROFILES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        errs = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errs == [], f"{path.name}: {errs}"
        again = yaml.safe_load(yaml.safe_dump(doc))
        assert list(validator.iter_errors(again)) == []
        # and nvmet-p2p reads the dumped text as it reads the file
        assert profile.load_text(yaml.safe_dump(doc), path.name, str(PROFILES)).data == \
            profile.load(str(path)).data
    # the schema still refuses what the profile format refuses
    bad = yaml.safe_load("version: 1\nsubsystems: [{nqn: x, namespaces: [], p2p: true}]")
    assert any("p2p" in list(e.absolute_path) for e in validator.iter_errors(bad))


def _jsonschema():
    """jsonschema comes with the test extra (pip install -e '.[test]'); CI installs it."""
    import os
    try:
        import jsonschema
    except ImportError:
        assert not os.environ.get("CI"), "CI installs the test extra (tools/lab/setup): jsonschema"
        pytest.skip("jsonschema is not installed: run tools/lab/setup (the test extra has it)")
    return jsonschema
