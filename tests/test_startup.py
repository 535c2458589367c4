"""Start-up boundaries (issue 12): what a command loads before it reads anything.

``tools/bench/bench_startup.py`` measures the cost in the lab; these tests hold the import
boundaries that cost was cut along, so that a top-level import added back fails here instead of
showing up as a slower benchmark weeks later. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

#: heavy stdlib and third-party modules a start-up should not load unless it needs them
HEAVY = ("typing", "dataclasses", "inspect", "threading", "copy", "difflib", "gzip", "datetime",
         "socket", "subprocess", "tempfile", "shutil", "importlib.resources", "asyncio", "yaml",
         "pyroute2", "pyudev", "configshell", "prometheus_client", "uuid", "platform", "hashlib",
         "textwrap", "unittest", "email", "http", "ssl", "pickle", "logging",
         "collections.abc")   # (this one is small, but a file to find and load like any other)

#: module -> the heavy modules it needs at import (and why); every other one of HEAVY is refused
ALLOWED = {
    # the engine every apply, restore, clear and status goes through
    "nvmet_p2p.nvmet.apply": (),
    "nvmet_p2p.nvmet.journal": (),
    "nvmet_p2p.service.devwait": (),
    "nvmet_p2p.pci.inventory": (),              # gzip: only for a /proc/config.gz fall-back
    "nvmet_p2p.observe.evidence": (),               # threading: only status --watch's sampler
    "nvmet_p2p.observe.status": (),
    "nvmet_p2p.pci.topology": (),
    "nvmet_p2p.pci.doctor": (),
    "nvmet_p2p.service.units": (),                  # its templates are read as files
    # records and sizes the shell and placement use: PyYAML only where a profile is parsed
    "nvmet_p2p.policy.profile": (),
    "nvmet_p2p.policy.schema": (),
    "nvmet_p2p.policy.placement": (),
    "nvmet_p2p.pci.snapshot": ("tempfile", "shutil"),   # it builds the snapshot in a temporary dir
    "nvmet_p2p.commands.doctor": ("textwrap",),     # its human report is wrapped
    "nvmet_p2p.commands.topology": (),
    "nvmet_p2p.commands.apply": (),
    "nvmet_p2p.commands.plan": (),
    "nvmet_p2p.commands.restore": (),
    "nvmet_p2p.commands.save": (),
    "nvmet_p2p.commands.clear": (),
    "nvmet_p2p.commands.status": (),
    "nvmet_p2p.commands.profile": (),
    "nvmet_p2p.commands.install_units": (),
}


def _loaded_after(code: str) -> tuple[set[str], list[str]]:
    probe = (f"import sys\n{code}\n"
             f"print('heavy:', *(m for m in {HEAVY!r} if m in sys.modules))\n"
             "print('ours:', *sorted(m for m in sys.modules if m.startswith('nvmet_p2p')))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    found = {line.split(":")[0]: line.split()[1:] for line in r.stdout.splitlines()
             if line.startswith(("heavy:", "ours:"))}
    return set(found["heavy"]), found["ours"]


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_module_loads_no_heavy_module_it_does_not_need(module):
    heavy, _ = _loaded_after(f"import {module}")
    assert heavy <= set(ALLOWED[module]), f"{module} now imports {sorted(heavy - set(ALLOWED[module]))}"


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_import_no_command_module(argv):
    """--help lists the commands from their source text; neither imports a command module,
    nor textwrap/locale for --version."""
    code = ("import contextlib, io\nfrom nvmet_p2p import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        cli.main({argv!r})\n    except SystemExit:\n        pass")
    heavy, ours = _loaded_after(code)
    assert ours == ["nvmet_p2p", "nvmet_p2p.cli", "nvmet_p2p.errors"]
    assert heavy <= ({"textwrap"} if argv == ["--help"] else set())


def test_install_units_renders_without_the_apply_engine():
    """It needs the state directory's default, not the engine that defines it (16 modules)."""
    _, ours = _loaded_after("import nvmet_p2p.commands.install_units")
    assert "nvmet_p2p.nvmet.apply" not in ours and "nvmet_p2p.nvmet.journal" not in ours
