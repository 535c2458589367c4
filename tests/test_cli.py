import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nvmet_p2p import cli, exits

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_subcommands(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "usage: nvmet-p2p" in out


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.startswith("nvmet-p2p ")


#: Every subcommand, exactly: a command added (or lost) must show up here and in --help (and
#: so in nvmet-p2p(8)'s list of the commands).
SUBCOMMANDS = {"apply", "bench", "clear", "completion", "distance", "doctor", "exporter", "help",
               "install-units",
               "metrics", "p2p-test", "plan", "profile", "restore", "save", "shell", "snapshot",
               "status", "topology", "watch"}
#: the commands that apply no kernel rules, so have no --kernel
WITHOUT_KERNEL = {"bench", "clear", "completion", "help", "install-units", "save", "snapshot"}


def _subparsers():
    p = cli.build_parser()
    (sub,) = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices


def test_exact_set_of_subcommands(capsys):
    assert set(_subparsers()) == SUBCOMMANDS
    assert cli.main([]) == 2
    listed = capsys.readouterr().out
    assert all(f"    {name}" in listed for name in SUBCOMMANDS)


def test_kernel_option_only_where_kernel_rules_apply(capsys):
    for name in SUBCOMMANDS:        # (each built as when it is run: its own module imported)
        (sub,) = [a for a in cli.build_parser(name)._actions
                  if a.__class__.__name__ == "_SubParsersAction"]
        p = sub.choices[name]
        has = any("--kernel" in a.option_strings for a in p._actions)
        assert has == (name not in WITHOUT_KERNEL), name
    with pytest.raises(SystemExit) as e:
        cli.main(["save", "--kernel", "6.1", "/nonexistent/x.json"])
    assert e.value.code == 2
    assert "unrecognized arguments: --kernel" in capsys.readouterr().err


# -- one argument-parsing behaviour for every command (issue 22.8) --------------------------------

@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """The lab's default topology as a sysfs tree (no nvmet loaded), its inventory file and the
    lab profile."""
    from support import sysfs as sf
    base = tmp_path_factory.mktemp("cli")
    sf.q35_lab(base / "root", rxe=True)
    inv = base / "inventory.json"
    with open(inv, "w") as f, contextlib.redirect_stdout(f):
        assert cli.main(["topology", "--root", str(base / "root"), "--json"]) == 0
    return base / "root", inv, str(REPO / "profiles" / "lab-default.yaml")


def _run(capsys, *argv):
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:            # argparse's own exits (usage errors, --help)
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_common_options_before_or_after_the_command(machine, capsys):
    root, _inv, _prof = machine
    rc1, out1, _ = _run(capsys, "--json", "--root", str(root), "topology", "--no-matrix")
    rc2, out2, _ = _run(capsys, "topology", "--no-matrix", "--root", str(root), "--json")
    rc3, out3, _ = _run(capsys, "--root", str(root), "topology", "--json", "--no-matrix")
    assert rc1 == rc2 == rc3 == 0 and json.loads(out1) == json.loads(out2) == json.loads(out3)


def test_profile_check_takes_the_common_options_after_its_file(machine, capsys):
    root, _inv, prof = machine
    rc, out, err = _run(capsys, "profile", "check", prof, "--json", "--root", str(root))
    assert rc == 0, err
    assert json.loads(out)["profile"] == prof
    rc, out, err = _run(capsys, "profile", "check", "--root", str(root), prof)
    assert rc == 0 and out.startswith(f"{prof}: OK on {root}"), err


@pytest.mark.parametrize("argv,usage,message", [
    (["status", "--bogus"], "usage: nvmet-p2p status", "unrecognized arguments: --bogus"),
    (["status", "--jsn"], "usage: nvmet-p2p status", "did you mean --json?"),
    (["topology", "--inv", "x.json"], "usage: nvmet-p2p topology", "did you mean --inventory?"),
    (["status", "--js"], "usage: nvmet-p2p status", "unrecognized arguments: --js"),
    (["plan", "--stat", "x.json"], "usage: nvmet-p2p plan", "did you mean --state?"),
    (["profile", "check", "--no-machin", "p.yaml"], "usage: nvmet-p2p profile check", "--no-machine"),
    (["stauts"], "usage: nvmet-p2p ", "did you mean 'status'?"),
    (["profile", "chek", "p.yaml"], "usage: nvmet-p2p profile", "did you mean 'check'?"),
    (["watch", "--policy", "reconcil"], "usage: nvmet-p2p watch", "did you mean 'reconcile'?"),
    (["--kernel", "6.1", "save", "x.json"], "usage: nvmet-p2p save", "--kernel does not apply to save"),
    (["save", "--kernel", "6.1", "x.json"], "usage: nvmet-p2p save", "unrecognized arguments: --kernel"),
])
def test_a_usage_error_shows_the_commands_usage_and_a_hint(capsys, argv, usage, message):
    """No prefix is taken for an option (a script saying --inv would change meaning the day an
    option --invert is added); the error names the command's usage, not the top level's."""
    rc, _out, err = _run(capsys, *argv)
    assert rc == exits.USAGE
    assert err.startswith(usage) and message in err, err


@pytest.mark.parametrize("argv,message", [
    (["plan", "--state", "S", "--explain"], "--explain only apply to --profile"),
    (["apply", "--plan", "P", "--inventory", "I"], "--inventory only apply to --profile or --state"),
    (["apply", "--plan", "P", "--explain"], "with --plan they would be ignored"),
    (["topology", "--inventory", "I", "--root", "/"], "--inventory and --root both name"),
    (["doctor", "--inventory", "I", "--root", "/"], "--inventory and --root both name"),
    (["distance", "--inventory", "I", "--root", "/", "0000:03:00.0", "x"], "give one"),
    (["restore", "F", "--without-provider", "hold"], "give --wait-devices SECONDS too"),
    (["status", "--io"], "give --sample SECONDS (or --watch)"),
    (["status", "--io-size", "128k"], "give --sample SECONDS"),
    (["status", "--interval", "0.5"], "give --sample SECONDS"),
    (["status", "--sample", "1", "--watch"], "--sample would be ignored"),
    (["clear", "--yes"], "--yes confirms --all"),
    (["profile", "check", "--no-machine", "--inventory", "I", "P"], "--inventory would be ignored"),
    (["metrics", "--json", "--textfile", "x.prom"], "give one"),
    (["install-units", "--print", "--dir", "/tmp/x"], "--dir would be ignored"),
])
def test_options_that_would_be_ignored_are_refused(capsys, argv, message, tmp_path, monkeypatch):
    """Refused before anything is read (the files named do not exist), with the command's
    usage and exit status 2."""
    monkeypatch.setenv("NVMET_P2P_STATE_DIR", str(tmp_path / "state"))
    rc, out, err = _run(capsys, *argv)
    assert rc == exits.USAGE, err
    assert err.startswith(f"usage: nvmet-p2p {argv[0]}") and message in err, err
    assert not (tmp_path / "state").exists() and out == ""


def test_the_shell_names_itself_in_its_errors(capsys):
    """`-c` once shared its dest with the command name: `nvmet-p2p ['cd /ports; ls']: error:`."""
    for argv in (["shell", "--json"], ["shell", "--json", "-c", "cd /ports; ls"]):
        rc, _out, err = _run(capsys, *argv)
        assert rc == exits.USAGE and err.startswith("nvmet-p2p shell: error: --json"), err


def test_doctor_on_an_inventory_file_names_the_file(machine, capsys):
    _root, inv, _prof = machine
    rc, out, _err = _run(capsys, "doctor", "--inventory", str(inv))
    assert f"source: {inv}," in out and "source: /," not in out
    rc, out, _err = _run(capsys, "doctor", "--inventory", str(inv), "--json")
    assert json.loads(out)["source"] == str(inv)


def test_notes_go_to_stderr_and_quiet_silences_them(machine, capsys):
    root, _inv, prof = machine          # (no nvmet tree: planned against an empty target)
    rc, out, err = _run(capsys, "plan", "--profile", prof, "--root", str(root))
    assert rc == 0 and "note:" not in out
    assert "nvmet-p2p plan: note: " in err and "planned against an empty nvmet target" in err
    rc, out2, err = _run(capsys, "-q", "plan", "--profile", prof, "--root", str(root))
    assert rc == 0 and out2 == out and err == ""


def test_help_command_prints_a_commands_help(capsys):
    rc, out, _ = _run(capsys, "help", "plan")
    assert rc == 0 and out.startswith("usage: nvmet-p2p plan") and "examples:" in out
    rc, out2, _ = _run(capsys, "plan", "--help")
    assert rc == 0 and out2 == out
    rc, out, _ = _run(capsys, "help", "profile", "check")
    assert rc == 0 and out.startswith("usage: nvmet-p2p profile check")
    rc, _, err = _run(capsys, "help", "stauts")
    assert rc == exits.USAGE and "did you mean 'status'?" in err


def test_top_level_help_lists_every_command_built_from_its_module(capsys):
    rc, out, _ = _run(capsys, "--help")
    assert rc == 0
    for mod in cli.command_modules():
        assert f"    {mod.NAME}" in out
        assert " ".join(mod.HELP.split()[:4]) in " ".join(out.split()), mod.NAME


def test_every_command_has_examples_in_its_help(capsys):
    for mod in cli.command_modules():
        rc, out, _ = _run(capsys, mod.NAME, "--help")
        assert rc == 0 and "examples:" in out, mod.NAME
        for ex in mod.EXAMPLES:
            assert ex.command in out
