"""Which heavy optional libraries a command loads, and when.

Start-up time is not held here: it is measured against nvmetcli, the peer, by
``tools/bench/bench_startup.py`` (results with their date and machine in
docs/dev/benchmarks.md). The earlier rule -- at most 2x ``python -c pass``, held by refusing
``typing``, ``dataclasses``, ``logging`` ... at import -- is retired (issue 21).

What stays is the one lazy-import rule of the project's style: a heavy *optional* library is
imported only on the rare path that needs it, so that a command which does not use it neither
pays for it nor fails when it is missing:

* matplotlib (the ``plots`` extra): only when a bench run draws its plots;
* ansible: never by the package (the collection in ansible_collections imports us, not back);
* configshell-fb: only by the shell;
* prometheus_client: only by the metrics command and the exporter;
* waitress: only by the exporter.

Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import nvmet_p2p

OPTIONAL = ("matplotlib", "ansible", "configshell", "prometheus_client", "waitress", "pyroute2")

#: module -> the optional libraries its import may load (everything else refused)
ALLOWED = {
    "nvmet_p2p.commands.shell": {"configshell"},
    "nvmet_p2p.commands.metrics": {"prometheus_client"},
    "nvmet_p2p.commands.exporter": {"prometheus_client", "waitress"},
}

PKG = pathlib.Path(nvmet_p2p.__file__).parent
COMMANDS = sorted(f"nvmet_p2p.commands.{p.stem}" for p in (PKG / "commands").glob("*.py")
                  if p.stem != "__init__")


def _loaded_after(code: str) -> set[str]:
    probe = (f"import sys\n{code}\n"
             f"print(*sorted({{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r})))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_the_probe_sees_an_optional_library_when_it_is_loaded():
    assert _loaded_after("import nvmet_p2p.observe.metrics") == {"prometheus_client"}
    assert _loaded_after("import nvmet_p2p.pci.addresses") == {"pyroute2"}


def test_a_live_inventory_read_loads_pyroute2_and_a_saved_one_does_not():
    code = ("from nvmet_p2p.pci import inventory\n"
            "try:\n    inventory.live_netlink()\nexcept OSError:\n    pass\n")
    assert _loaded_after(code) == {"pyroute2"}
    assert _loaded_after("import nvmet_p2p.commands.topology, nvmet_p2p.commands.status") == set()


@pytest.mark.parametrize("module", COMMANDS)
def test_command_module_loads_only_the_optional_libraries_it_needs(module):
    loaded = _loaded_after(f"import {module}")
    assert loaded <= ALLOWED.get(module, set()), f"{module} imports {sorted(loaded)} at import"


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_load_no_optional_library(argv):
    """--version loads none; --help is built by argparse from every command module (issue 21),
    so it loads what their imports may load (ALLOWED), and nothing more."""
    code = ("import contextlib, io\nfrom nvmet_p2p import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        cli.main({argv!r})\n    except SystemExit:\n        pass")
    may = set().union(*ALLOWED.values()) if argv == ["--help"] else set()
    assert _loaded_after(code) <= may


def test_status_of_a_target_without_port_addresses_does_not_load_pyroute2():
    """The interface addresses serve only to find the RDMA device behind a port's address."""
    from nvmet_p2p.observe import status
    if status._ports_with_addresses("/"):
        pytest.skip("this host's nvmet tree has ports with addresses: status reads them")
    code = ("from nvmet_p2p.observe import status\n"
            "inv = status.read_inventory('/')\n")
    assert _loaded_after(code) == set()
    assert _loaded_after("from nvmet_p2p.pci import inventory\ninventory.read_inventory('/')") \
        == {"pyroute2"} or not any(os.scandir("/sys/class/net"))
