import subprocess
import sys

from nvmet_p2p import cli


def test_help_lists_subcommands(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "usage: nvmet-p2p" in out


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.startswith("nvmet-p2p ")
