"""The Ansible collection ``nvmet_p2p.target`` (ansible_collections/nvmet_p2p/target) with the
real ansible-core tools: ``ansible-test sanity``, ``ansible-galaxy collection build/install``,
``ansible-doc``, and ``ansible-playbook -c local`` running the modules on a synthetic lab machine
(tests/sysfsfixture.py). Applying for real is the kernel's business: tests/lab/test_lab_ansible.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import sysfsfixture as sf
from fakenvmet import dump

from nvmet_p2p.nvmet.configfs import Configfs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTION = os.path.join(REPO, "ansible_collections", "nvmet_p2p", "target")
BIN = os.path.dirname(sys.executable)
BOOTSTRAP = os.path.join(REPO, "tools", "ansible-test-pip-bootstrap.py")
#: ansible-test keeps the sanity tests' virtualenvs below HOME; a private one, shared like the
#: lab kernel cache, so they are made once per machine
TEST_HOME = os.path.join(os.path.expanduser("~"), ".cache", "nvmet-p2p", "ansible-test-home")


def tool(name: str) -> str:
    path = os.path.join(BIN, name)
    assert os.path.exists(path), f"{name} is not in {BIN}: run `bash tools/lab/setup` (test extra)"
    return path


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, timeout=1500, **kw)


def ansible_env(**extra) -> dict:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=REPO, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    env.update(extra)
    return env


def test_ansible_test_sanity():
    """Every sanity test ansible-test has (validate-modules, import without nvmet_p2p, pylint,
    pep8, yamllint, ansible-doc ...), --local with its own venvs. ansible-test downloads a pip
    bootstrap script from a host this machine cannot reach; tools/ansible-test-pip-bootstrap.py
    stands in for it."""
    import types

    from ansible_test._internal.python_requirements import get_venv_packages
    pyver = "%d.%d" % sys.version_info[:2]
    pip = get_venv_packages(types.SimpleNamespace(version=pyver))["pip"]
    cache = os.path.join(TEST_HOME, ".ansible", "test", "cache")
    os.makedirs(cache, exist_ok=True)
    shutil.copy(BOOTSTRAP, os.path.join(cache, f"get_pip_{pip.replace('.', '_')}.py"))
    r = run([tool("ansible-test"), "sanity", "--local", "--python", pyver], cwd=COLLECTION,
            env=ansible_env(HOME=TEST_HOME))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-6000:]
    assert "Running sanity test \"validate-modules\"" in r.stdout + r.stderr


def test_galaxy_build_install_and_doc(tmp_path):
    env = ansible_env(ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "cols"))   # not the checkout's
    r = run([tool("ansible-galaxy"), "collection", "build", COLLECTION, "--output-path",
             str(tmp_path)], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    tarball = tmp_path / "nvmet_p2p-target-0.1.0.tar.gz"
    assert tarball.exists()
    r = run([tool("ansible-galaxy"), "collection", "install", str(tarball), "-p",
             str(tmp_path / "cols")], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = tmp_path / "cols" / "ansible_collections" / "nvmet_p2p" / "target"
    for m in ("apply", "status_info", "doctor_info", "topology_info"):
        assert (installed / "plugins" / "modules" / f"{m}.py").exists()
    assert not (installed / "tests" / "output").exists()
    r = run([tool("ansible-doc"), "-t", "module", "nvmet_p2p.target.apply"], env=env)
    assert r.returncode == 0 and "check mode" in r.stdout.lower(), r.stdout + r.stderr


PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: "{python}"
  tasks:
    - nvmet_p2p.target.topology_info: {{root: "{root}"}}
      register: topo
    - nvmet_p2p.target.doctor_info: {{root: "{root}"}}
      register: doctor
    - nvmet_p2p.target.status_info: {{root: "{root}", state_dir: "{sd}"}}
      register: status
    - name: plan in check mode with diff
      nvmet_p2p.target.apply:
        root: "{root}"
        state_dir: "{sd}"
        desired_state_content: {state}
      check_mode: true
      diff: true
      register: planned
    - name: a bad desired state
      nvmet_p2p.target.apply:
        root: "{root}"
        state_dir: "{sd}"
        desired_state_content: {{subsystems: [{{nqn: "nqn.2026-11.io.lab:x", namespaces: [{{nsid: 0}}]}}]}}
      register: bad
      ignore_errors: true
    - name: two sources
      nvmet_p2p.target.apply: {{root: "{root}", profile: /nonexistent.yaml, desired_state: /x.json}}
      register: two
      ignore_errors: true
    - ansible.builtin.copy:
        dest: "{out}"
        content: "{{{{ {{'topo': topo, 'doctor': doctor, 'status': status, 'planned': planned,
                        'bad': bad, 'two': two}} | to_json }}}}"
"""

KEY = "DHHC-1:00:ia6zGodOr5SEG0Fg9HYsAFa2oD6fpZmNkFG8oGbQTHfHxAq7:"
STATE = {"hosts": [{"nqn": "nqn.2014-08.org.nvmexpress:uuid:h1", "dhchap": {"key": KEY}}],
         "subsystems": [{"nqn": "nqn.2026-11.io.lab:a", "allowed_hosts":
                         ["nqn.2014-08.org.nvmexpress:uuid:h1"],
                         "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme0n1"},
                                         "p2pmem": "0000:03:00.0"}]}],
         "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4",
                                          "traddr": "10.77.0.1", "trsvcid": "4420"},
                    "subsystems": ["nqn.2026-11.io.lab:a"]}]}


def test_playbook_on_a_synthetic_machine(tmp_path):
    root = tmp_path / "m"
    sf.q35_lab(root, rxe=True, rxe_name="rxe0", nvmet_loaded=True)
    before = dump(Configfs(str(root)))
    out = tmp_path / "results.json"
    play = tmp_path / "play.yml"
    play.write_text(textwrap.dedent(PLAY).format(python=sys.executable, root=root,
                                                 sd=tmp_path / "sd", out=out,
                                                 state=json.dumps(STATE)))
    r = run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(play), "--diff"],
            env=ansible_env())
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["topo"]["topology"]["matrix"]["summary"]
    assert not res["doctor"]["doctor"]["can_offload"]                   # soft RDMA only
    assert res["status"]["status"]["schema"] == "nvmet-p2p/status"
    p = res["planned"]
    assert p["changed"] and p["configfs_writes"] == 0 and p["summary"]["create"] == 4
    assert dump(Configfs(str(root))) == before                        # check mode: no write
    assert not os.path.exists(tmp_path / "sd" / "last-apply.json")
    after = json.loads(p["diff"]["after"])
    assert after["subsystems"][0]["namespaces"][0]["p2pmem"] == "0000:03:00.0"
    assert KEY not in out.read_text() and KEY not in r.stdout          # masked everywhere
    assert "(secret)" in p["diff"]["after"]
    assert "+          \"p2pmem\": \"0000:03:00.0\"" in r.stdout         # --diff printed it
    bad = res["bad"]
    assert bad["failed"] and "$.subsystems[0].namespaces[0].nsid" in bad["msg"]
    assert bad["error_type"] == "StateFileError" and "Traceback" not in json.dumps(bad)
    assert res["two"]["failed"] and "mutually exclusive" in res["two"]["msg"]


def test_without_the_package_the_failure_says_what_to_do(tmp_path):
    """The module run by a Python that does not have nvmet_p2p (the system one, isolated)."""
    play = tmp_path / "play.yml"
    play.write_text(textwrap.dedent("""
        - hosts: localhost
          gather_facts: false
          vars: {ansible_python_interpreter: "%s"}
          tasks:
            - nvmet_p2p.target.doctor_info:
    """ % (tmp_path / "py")))
    py = tmp_path / "py"
    py.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    py.chmod(0o755)
    r = run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(play)],
            env=ansible_env())
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "Failed to import the required Python library (nvmet-p2p)" in text, text[-3000:]
